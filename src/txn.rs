//! `KV/Txn`: compare-and-swap over several keys, applied atomically at one revision.
//!
//! ```no_run
//! # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
//! use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp};
//! use etcd_lock::kv::{GetOptions, PutOptions};
//! // Create "config" only if it does not exist yet, otherwise read it.
//! let txn = Txn::new()
//!     .when([Compare::create_revision("config", CompareOp::Equal, 0)])
//!     .and_then([TxnOp::put("config", "v1", PutOptions::new())])
//!     .or_else([TxnOp::get("config", GetOptions::new())]);
//! let response = client.txn(txn).await?;
//! println!("created: {}", response.succeeded());
//! # Ok(()) }
//! ```

use crate::client::{Client, Retry};
use crate::error::Result;
use crate::kv::{
    check_key, DeleteOptions, DeleteResponse, GetOptions, GetResponse, KeySpan, PutOptions,
    PutResponse,
};
use crate::namespace;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::support::{header_of, response_wrapper};

pub(crate) const TXN: &str = "/etcdserverpb.KV/Txn";

/// How a [`Compare`] relates the key's field to the given operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

impl CompareOp {
    fn wire(self) -> i32 {
        (match self {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::NotEqual => CompareResult::NotEqual,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
        }) as i32
    }
}

/// One condition of a transaction (`etcdserverpb.Compare`).
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Compare(pub(crate) pb::Compare);

impl Compare {
    fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: CompareTarget, u: TargetUnion) -> Self {
        Compare(pb::Compare {
            result: op.wire(),
            target: target as i32,
            key: key.into(),
            range_end: Vec::new(),
            target_union: Some(u),
        })
    }
    /// Compares the key's value (bytes).
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Value,
            TargetUnion::Value(value.into()),
        )
    }
    /// Compares the key's version (0 = the key does not exist).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Version,
            TargetUnion::Version(version),
        )
    }
    /// Compares the key's create revision (0 = the key does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Create,
            TargetUnion::CreateRevision(revision),
        )
    }
    /// Compares the key's last modification revision.
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        )
    }
    /// Compares the key's lease ID (0 = no lease).
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Self {
        Self::new(key, op, CompareTarget::Lease, TargetUnion::Lease(lease))
    }
    /// Applies the comparison to every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        self.0.range_end = KeySpan::Prefix.range_end(&self.0.key);
        self
    }
    /// Applies the comparison to every key in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.0.range_end = end.into();
        self
    }
}

/// One operation of a transaction branch (`etcdserverpb.RequestOp`).
/// Invalid input is remembered and reported by [`Client::txn`], before anything is sent.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct TxnOp(pub(crate) pb::RequestOp, Option<(&'static str, String)>);

impl TxnOp {
    fn from(r: Result<Request>) -> Self {
        match r {
            Ok(r) => TxnOp(pb::RequestOp { request: Some(r) }, None),
            Err(crate::Error::InvalidArgument { argument, reason }) => {
                TxnOp(pb::RequestOp { request: None }, Some((argument, reason)))
            }
            Err(e) => TxnOp(pb::RequestOp { request: None }, Some(("op", e.to_string()))),
        }
    }
    /// A `Range` inside the transaction.
    pub fn get(key: impl Into<Vec<u8>>, options: GetOptions) -> Self {
        Self::from(options.to_request(key.into()).map(Request::RequestRange))
    }
    /// A `Put` inside the transaction.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, options: PutOptions) -> Self {
        Self::from(
            options
                .to_request(key.into(), value.into())
                .map(Request::RequestPut),
        )
    }
    /// A `DeleteRange` inside the transaction.
    pub fn delete(key: impl Into<Vec<u8>>, options: DeleteOptions) -> Self {
        Self::from(
            options
                .to_request(key.into())
                .map(Request::RequestDeleteRange),
        )
    }
    /// A nested transaction.
    pub fn txn(txn: Txn) -> Self {
        Self::from(txn.into_request().map(Request::RequestTxn))
    }
}

/// A transaction: `when` all compares hold, run `and_then` ops, otherwise `or_else` ops.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Txn {
    compare: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction (no compares: the success branch runs).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds conditions (all must hold).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compare.extend(compares);
        self
    }
    /// Adds operations to the success branch.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }
    /// Adds operations to the failure branch.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Number of compares plus operations (etcd limits ops per branch with `--max-txn-ops`).
    pub fn len(&self) -> usize {
        self.compare.len() + self.success.len() + self.failure.len()
    }

    /// True when the transaction has no compares and no operations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn into_request(self) -> Result<pb::TxnRequest> {
        let mut compare = Vec::with_capacity(self.compare.len());
        for c in self.compare {
            check_key(&c.0.key)?;
            compare.push(c.0);
        }
        let ops = |ops: Vec<TxnOp>| -> Result<Vec<pb::RequestOp>> {
            ops.into_iter()
                .map(|op| match op.1 {
                    Some((argument, reason)) => Err(crate::Error::invalid(argument, reason)),
                    None => Ok(op.0),
                })
                .collect()
        };
        Ok(pb::TxnRequest {
            compare,
            success: ops(self.success)?,
            failure: ops(self.failure)?,
        })
    }
}

response_wrapper!(
    /// Answer to `Txn`.
    TxnResponse,
    pb::TxnResponse
);

/// The answer to one operation of the branch that ran.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TxnOpResponse {
    /// Answer to [`TxnOp::get`].
    Get(GetResponse),
    /// Answer to [`TxnOp::put`].
    Put(PutResponse),
    /// Answer to [`TxnOp::delete`].
    Delete(DeleteResponse),
    /// Answer to [`TxnOp::txn`].
    Txn(TxnResponse),
}

impl TxnResponse {
    /// True when every compare held and the success branch ran.
    pub fn succeeded(&self) -> bool {
        self.0.succeeded
    }

    /// The answers of the branch that ran, in order.
    pub fn op_responses(&self) -> Vec<TxnOpResponse> {
        self.0
            .responses
            .iter()
            .filter_map(|r| {
                Some(match r.response.clone()? {
                    Response::ResponseRange(r) => TxnOpResponse::Get(GetResponse(r)),
                    Response::ResponsePut(r) => TxnOpResponse::Put(PutResponse(r)),
                    Response::ResponseDeleteRange(r) => TxnOpResponse::Delete(DeleteResponse(r)),
                    Response::ResponseTxn(r) => TxnOpResponse::Txn(TxnResponse(r)),
                })
            })
            .collect()
    }

    /// The `Range` answer at position `index` of the branch that ran, borrowed.
    pub fn range(&self, index: usize) -> Option<&pb::RangeResponse> {
        match self.0.responses.get(index)?.response.as_ref()? {
            Response::ResponseRange(r) => Some(r),
            _ => None,
        }
    }

    /// The header of the `Put` at position `index`, if that op was a put.
    pub fn put_header(&self, index: usize) -> Option<&pb::ResponseHeader> {
        match self.0.responses.get(index)?.response.as_ref()? {
            Response::ResponsePut(r) => Some(header_of(&r.header)),
            _ => None,
        }
    }
}

/// True when neither branch, nor any nested transaction's branches, writes: etcd serves such a
/// txn as a read, so sending it again cannot apply anything twice.
fn is_read_only(txn: &pb::TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(nested)) => is_read_only(nested),
            Some(Request::RequestPut(_) | Request::RequestDeleteRange(_)) | None => false,
        })
}

impl Client {
    /// Runs a transaction: one `KV/Txn` with the compares and both branches.
    ///
    /// A txn that only reads (every op of both branches, nested txns included, is a `get`) is
    /// retried on another endpoint like a `Range`. A txn with a `put` or `delete` anywhere is
    /// sent again only when it provably never reached a server (see [`ClientOptions`]).
    ///
    /// [`ClientOptions`]: crate::ClientOptions
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let req = namespace::txn_request(self.namespace(), txn.into_request()?);
        let retry = if is_read_only(&req) {
            Retry::Idempotent
        } else {
            Retry::NotSent
        };
        self.unary(TXN, retry, req)
            .await
            .map(|r| TxnResponse(namespace::txn_response(self.namespace(), r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_only(txn: Txn) -> bool {
        match txn.into_request() {
            Ok(req) => is_read_only(&req),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn only_txns_without_writes_count_as_reads() {
        let get = || TxnOp::get("k", GetOptions::new());
        let put = || TxnOp::put("k", "v", PutOptions::new());
        let delete = || TxnOp::delete("k", DeleteOptions::new());
        let guard = || Compare::version("k", CompareOp::Equal, 0);
        assert!(read_only(Txn::new()));
        assert!(read_only(Txn::new().when([guard()]).and_then([get()])));
        assert!(read_only(
            Txn::new()
                .and_then([get(), TxnOp::txn(Txn::new().or_else([get()]))])
                .or_else([get()])
        ));
        assert!(!read_only(Txn::new().when([guard()]).and_then([put()])));
        assert!(!read_only(Txn::new().and_then([get()]).or_else([delete()])));
        // A write two levels down, in the branch that may never run, still counts.
        let deep = Txn::new().or_else([TxnOp::txn(Txn::new().and_then([delete()]))]);
        assert!(!read_only(Txn::new().and_then([get(), TxnOp::txn(deep)])));
    }
}
