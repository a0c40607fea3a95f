//! KV service wrappers: `Range`, `Put`, `DeleteRange`, `Compact` (transactions are in
//! [`crate::txn`]). Keys and values are bytes; anything `Into<Vec<u8>>` goes in.

use crate::client::{Client, Retry};
use crate::error::{Error, Result};
use crate::namespace;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb::KeyValue;
pub use crate::support::prefix_end;
use crate::support::response_wrapper;

pub(crate) const RANGE: &str = "/etcdserverpb.KV/Range";
pub(crate) const PUT: &str = "/etcdserverpb.KV/Put";
pub(crate) const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
pub(crate) const COMPACT: &str = "/etcdserverpb.KV/Compact";

/// Which keys a request covers besides its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum KeySpan {
    /// Just the key.
    #[default]
    Single,
    /// Every key starting with the key.
    Prefix,
    /// Every key `>=` the key (`range_end = "\0"`).
    FromKey,
    /// `[key, end)`.
    Until(Vec<u8>),
}

impl KeySpan {
    pub(crate) fn range_end(&self, key: &[u8]) -> Vec<u8> {
        match self {
            KeySpan::Single => Vec::new(),
            KeySpan::Prefix => prefix_end(key),
            KeySpan::FromKey => vec![0],
            KeySpan::Until(end) => end.clone(),
        }
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid(
            "key",
            "etcd refuses empty keys; use a non-empty key (or b\"\\0\" with from_key() for all keys)",
        ));
    }
    Ok(())
}

/// Sort order of a range result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Ascending.
    Ascend,
    /// Descending.
    Descend,
}

/// Field a range result is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortTarget {
    /// The key bytes.
    Key,
    /// The key's version (number of puts since creation).
    Version,
    /// The revision that created the key.
    Create,
    /// The revision of the last modification.
    Mod,
    /// The value bytes.
    Value,
}

/// Options of a `Range` request (see [`Client::get_with`]).
#[derive(Debug, Clone, Default)]
#[must_use]
#[non_exhaustive]
pub struct GetOptions {
    pub(crate) span: KeySpan,
    pub(crate) limit: i64,
    pub(crate) revision: i64,
    pub(crate) sort: Option<(SortTarget, SortOrder)>,
    pub(crate) keys_only: bool,
    pub(crate) count_only: bool,
    pub(crate) serializable: bool,
    pub(crate) min_mod_revision: i64,
    pub(crate) max_mod_revision: i64,
    pub(crate) min_create_revision: i64,
    pub(crate) max_create_revision: i64,
}

impl GetOptions {
    /// No options: a linearizable read of one key at the newest revision.
    pub fn new() -> Self {
        Self::default()
    }
    /// Every key starting with the key (`range_end` = prefix end).
    pub fn with_prefix(mut self) -> Self {
        self.span = KeySpan::Prefix;
        self
    }
    /// Every key greater than or equal to the key (`range_end = "\0"`).
    pub fn with_from_key(mut self) -> Self {
        self.span = KeySpan::FromKey;
        self
    }
    /// Keys in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.span = KeySpan::Until(end.into());
        self
    }
    /// At most `limit` keys (0 = no limit).
    pub fn with_limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }
    /// Read at this revision (0 = newest); a compacted one fails with `Compacted`.
    pub fn with_revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }
    /// Sorts the result.
    pub fn with_sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.sort = Some((target, order));
        self
    }
    /// Returns keys without values.
    pub fn with_keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }
    /// Returns only the count.
    pub fn with_count_only(mut self) -> Self {
        self.count_only = true;
        self
    }
    /// Serves the read from the member's local state (faster, possibly stale).
    pub fn with_serializable(mut self) -> Self {
        self.serializable = true;
        self
    }
    /// Only keys modified at or after `rev`.
    pub fn with_min_mod_revision(mut self, rev: i64) -> Self {
        self.min_mod_revision = rev;
        self
    }
    /// Only keys modified at or before `rev`.
    pub fn with_max_mod_revision(mut self, rev: i64) -> Self {
        self.max_mod_revision = rev;
        self
    }
    /// Only keys created at or after `rev`.
    pub fn with_min_create_revision(mut self, rev: i64) -> Self {
        self.min_create_revision = rev;
        self
    }
    /// Only keys created at or before `rev`.
    pub fn with_max_create_revision(mut self, rev: i64) -> Self {
        self.max_create_revision = rev;
        self
    }

    pub(crate) fn to_request(&self, key: Vec<u8>) -> Result<pb::RangeRequest> {
        check_key(&key)?;
        for (name, v) in [
            ("limit", self.limit),
            ("revision", self.revision),
            ("min_mod_revision", self.min_mod_revision),
            ("max_mod_revision", self.max_mod_revision),
            ("min_create_revision", self.min_create_revision),
            ("max_create_revision", self.max_create_revision),
        ] {
            if v < 0 {
                return Err(Error::invalid(name, format!("{v} is negative")));
            }
        }
        let (target, order) = match self.sort {
            None => (
                pb::range_request::SortTarget::Key,
                pb::range_request::SortOrder::None,
            ),
            Some((t, o)) => (
                match t {
                    SortTarget::Key => pb::range_request::SortTarget::Key,
                    SortTarget::Version => pb::range_request::SortTarget::Version,
                    SortTarget::Create => pb::range_request::SortTarget::Create,
                    SortTarget::Mod => pb::range_request::SortTarget::Mod,
                    SortTarget::Value => pb::range_request::SortTarget::Value,
                },
                match o {
                    SortOrder::Ascend => pb::range_request::SortOrder::Ascend,
                    SortOrder::Descend => pb::range_request::SortOrder::Descend,
                },
            ),
        };
        Ok(pb::RangeRequest {
            range_end: self.span.range_end(&key),
            key,
            limit: self.limit,
            revision: self.revision,
            sort_order: order as i32,
            sort_target: target as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
        })
    }
}

/// Options of a `Put` request (see [`Client::put_with`]).
#[derive(Debug, Clone, Default)]
#[must_use]
#[non_exhaustive]
pub struct PutOptions {
    pub(crate) lease: i64,
    pub(crate) prev_kv: bool,
    pub(crate) ignore_value: bool,
    pub(crate) ignore_lease: bool,
}

impl PutOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Attaches the key to a lease: it is deleted when the lease ends.
    pub fn with_lease(mut self, lease: i64) -> Self {
        self.lease = lease;
        self
    }
    /// Returns the previous key-value pair.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Keeps the current value (the value given must be empty; the key must exist).
    pub fn with_ignore_value(mut self) -> Self {
        self.ignore_value = true;
        self
    }
    /// Keeps the current lease (no lease may be given; the key must exist).
    pub fn with_ignore_lease(mut self) -> Self {
        self.ignore_lease = true;
        self
    }

    pub(crate) fn to_request(&self, key: Vec<u8>, value: Vec<u8>) -> Result<pb::PutRequest> {
        check_key(&key)?;
        if self.lease < 0 {
            return Err(Error::invalid("lease", "lease IDs are positive"));
        }
        Ok(pb::PutRequest {
            key,
            value,
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        })
    }
}

/// Options of a `DeleteRange` request (see [`Client::delete_with`]).
#[derive(Debug, Clone, Default)]
#[must_use]
#[non_exhaustive]
pub struct DeleteOptions {
    pub(crate) span: KeySpan,
    pub(crate) prev_kv: bool,
}

impl DeleteOptions {
    /// No options: delete one key.
    pub fn new() -> Self {
        Self::default()
    }
    /// Deletes every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        self.span = KeySpan::Prefix;
        self
    }
    /// Deletes every key `>=` the key.
    pub fn with_from_key(mut self) -> Self {
        self.span = KeySpan::FromKey;
        self
    }
    /// Deletes keys in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.span = KeySpan::Until(end.into());
        self
    }
    /// Returns the deleted key-value pairs.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    pub(crate) fn to_request(&self, key: Vec<u8>) -> Result<pb::DeleteRangeRequest> {
        check_key(&key)?;
        Ok(pb::DeleteRangeRequest {
            range_end: self.span.range_end(&key),
            key,
            prev_kv: self.prev_kv,
        })
    }
}

response_wrapper!(
    /// Answer to `Range`.
    GetResponse,
    pb::RangeResponse
);
response_wrapper!(
    /// Answer to `Put`.
    PutResponse,
    pb::PutResponse
);
response_wrapper!(
    /// Answer to `DeleteRange`.
    DeleteResponse,
    pb::DeleteRangeResponse
);
response_wrapper!(
    /// Answer to `Compact`.
    CompactResponse,
    pb::CompactionResponse
);

impl KeyValue {
    /// The key as UTF-8 text. etcd keys are bytes: a key that is not valid UTF-8 gives the
    /// [`Utf8Error`](std::str::Utf8Error) (where the bad byte is) instead of a lossy copy.
    /// Returns a borrow; nothing is copied.
    pub fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.key)
    }

    /// The value as UTF-8 text, or the [`Utf8Error`](std::str::Utf8Error) when it is not
    /// (binary values are fine in etcd; read them from `value`). Borrows, never replaces bytes.
    pub fn value_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.value)
    }
}

impl GetResponse {
    /// The key-value pairs found (empty with `count_only`).
    pub fn kvs(&self) -> &[KeyValue] {
        &self.0.kvs
    }
    /// The first key-value pair, if any.
    pub fn first(&self) -> Option<&KeyValue> {
        self.0.kvs.first()
    }
    /// How many keys are in the range (independent of `limit`).
    pub fn count(&self) -> i64 {
        self.0.count
    }
    /// True when `limit` cut the result short.
    pub fn more(&self) -> bool {
        self.0.more
    }
}

impl PutResponse {
    /// The previous pair, when `with_prev_kv` was asked and the key existed.
    pub fn prev_kv(&self) -> Option<&KeyValue> {
        self.0.prev_kv.as_ref()
    }
}

impl DeleteResponse {
    /// How many keys were deleted.
    pub fn deleted(&self) -> i64 {
        self.0.deleted
    }
    /// The deleted pairs, when `with_prev_kv` was asked.
    pub fn prev_kvs(&self) -> &[KeyValue] {
        &self.0.prev_kvs
    }
}

impl Client {
    /// Reads one key: `KV/Range` with `key` and no range end (linearizable).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<GetResponse> {
        self.get_with(key, GetOptions::new()).await
    }

    /// Reads with options: `KV/Range` with the range end, limit, revision, sort and filters
    /// given in `options`.
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
    /// use etcd_lock::kv::{GetOptions, SortOrder, SortTarget};
    /// let oldest = client
    ///     .get_with("locks/a/", GetOptions::new().with_prefix()
    ///         .with_sort(SortTarget::Create, SortOrder::Ascend).with_limit(1))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_with(
        &self,
        key: impl Into<Vec<u8>>,
        options: GetOptions,
    ) -> Result<GetResponse> {
        let req = namespace::range_request(self.namespace(), options.to_request(key.into())?);
        self.unary(RANGE, Retry::Idempotent, req)
            .await
            .map(|r| GetResponse(namespace::range_response(self.namespace(), r)))
    }

    /// Writes a key: `KV/Put` with `key` and `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse> {
        self.put_with(key, value, PutOptions::new()).await
    }

    /// Writes a key with options: `KV/Put` with `lease`, `prev_kv`, `ignore_value`, `ignore_lease`.
    /// A write is never retried on another endpoint once it may have reached a server.
    pub async fn put_with(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: PutOptions,
    ) -> Result<PutResponse> {
        let req = namespace::put_request(
            self.namespace(),
            options.to_request(key.into(), value.into())?,
        );
        self.unary(PUT, Retry::NotSent, req)
            .await
            .map(|r| PutResponse(namespace::put_response(self.namespace(), r)))
    }

    /// Deletes one key: `KV/DeleteRange` with `key` and no range end.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<DeleteResponse> {
        self.delete_with(key, DeleteOptions::new()).await
    }

    /// Deletes with options: `KV/DeleteRange` with a prefix/from-key/explicit range end and `prev_kv`.
    pub async fn delete_with(
        &self,
        key: impl Into<Vec<u8>>,
        options: DeleteOptions,
    ) -> Result<DeleteResponse> {
        let req = namespace::delete_request(self.namespace(), options.to_request(key.into())?);
        self.unary(DELETE_RANGE, Retry::NotSent, req)
            .await
            .map(|r| DeleteResponse(namespace::delete_response(self.namespace(), r)))
    }

    /// Compacts the key-value history up to `revision`: `KV/Compact`. With `physical`, the call
    /// returns only after the compaction is applied to the backend.
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<CompactResponse> {
        if revision <= 0 {
            return Err(Error::invalid(
                "revision",
                "compaction revision must be positive",
            ));
        }
        let req = pb::CompactionRequest { revision, physical };
        self.unary(COMPACT, Retry::NotSent, req)
            .await
            .map(CompactResponse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_views_of_keys_and_values_are_exact() {
        let kv = KeyValue {
            key: b"app/\xc3\xa9".to_vec(),
            value: vec![b'v', 0xff],
            ..Default::default()
        };
        assert_eq!(kv.key_str(), Ok("app/\u{e9}"));
        let bad = kv.value_str().err().map(|e| e.valid_up_to());
        assert_eq!(bad, Some(1));
    }

    #[test]
    fn empty_keys_and_negative_numbers_are_refused() {
        assert!(GetOptions::new().to_request(Vec::new()).is_err());
        assert!(GetOptions::new()
            .with_limit(-1)
            .to_request(b"k".to_vec())
            .is_err());
        assert!(PutOptions::new()
            .to_request(Vec::new(), b"v".to_vec())
            .is_err());
        assert!(DeleteOptions::new().to_request(Vec::new()).is_err());
    }
}
