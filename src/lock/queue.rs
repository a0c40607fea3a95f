//! Waiting for one's turn under a prefix: the part of the recipe that locks and elections share.
//!
//! Every participant owns one key under `NAME/`; whoever's key has the smallest create revision
//! is first. A participant's turn comes when every key older than its own has been deleted.
//!
//! * Fast path: the first txn listed every older key (`Range(prefix, create asc, limit 64)`) at
//!   revision `H`, and the client's prefix watch (`lock::waiters`) was already open before
//!   that txn. No key can be created older than ours later, so the turn has come once each
//!   listed key was deleted after `H`. The watch reports those DELETEs in revision order,
//!   together with any DELETE of our own key, so no RPC is needed to confirm our key either.
//! * Slow path (watch opened later, adopted key, more keys than listed, watch restarted): wait
//!   for the predecessor only, then one `KV/Txn` re-checks —
//!   `If create_revision(myKey) == myRev Then Range(prefix, max_create_revision = myRev-1,
//!   sort create desc, limit 1)` — confirming our key and finding the next predecessor.

use std::sync::Arc;

use crate::error::Result;
use crate::kv::{GetOptions, PutOptions, SortOrder, SortTarget};
use crate::proto::mvccpb::KeyValue;
use crate::session::Session;
use crate::txn::{Compare, CompareOp, Txn, TxnOp, TxnResponse};

use super::waiters::{PrefixWatch, Wait};

/// How many keys the first txn lists; a longer queue falls back to the slow path.
pub(crate) const LISTED_KEYS: i64 = 64;

/// `Range(prefix, sort create asc, keys only, limit)`.
pub(crate) fn oldest(limit: i64) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(limit)
        .with_keys_only()
}

/// The one round trip that joins the queue (locks and elections alike):
/// `If create_revision(key) == 0 Then Put(key, value, lease), Range(prefix, oldest 64)
/// Else Range(key, own), Range(prefix, oldest 1)`. `own` picks what the Else branch reads of an
/// existing own key (keys only for a lock; the value too for an election).
pub(crate) fn join_txn(
    key: &[u8],
    prefix: &[u8],
    value: &[u8],
    lease: i64,
    own: GetOptions,
) -> Txn {
    Txn::new()
        .when([Compare::create_revision(key.to_vec(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.to_vec(),
                value.to_vec(),
                PutOptions::new().with_lease(lease),
            ),
            TxnOp::get(prefix.to_vec(), oldest(LISTED_KEYS)),
        ])
        .or_else([
            TxnOp::get(key.to_vec(), own),
            TxnOp::get(prefix.to_vec(), oldest(1)),
        ])
}

/// The keys older than ours among those the first txn listed (in create order), with that
/// txn's revision — `None` when the list was cut short before reaching our key.
pub(crate) fn older_keys(listed: &[KeyValue], my_rev: i64) -> Option<(Vec<Vec<u8>>, i64)> {
    listed
        .iter()
        .any(|kv| kv.create_revision == my_rev)
        .then(|| {
            let keys = listed
                .iter()
                .filter(|kv| kv.create_revision < my_rev)
                .map(|kv| kv.key.clone())
                .collect();
            (keys, my_rev)
        })
}

/// The key-values of the `index`-th range in the branch of `response` that ran.
pub(crate) fn range_kvs(response: &TxnResponse, index: usize) -> &[KeyValue] {
    response.range(index).map_or(&[], |r| r.kvs.as_slice())
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// No older key is left and ours still exists.
    Ours,
    /// Our key is gone (deleted by someone else, or with its lease: the caller tells which).
    KeyGone,
    /// The session was lost while waiting.
    SessionLost,
}

/// One participant's place in the queue under `prefix`.
#[derive(Debug)]
pub(crate) struct Place<'a> {
    pub(crate) session: &'a Session,
    pub(crate) prefix: &'a [u8],
    pub(crate) key: &'a [u8],
    pub(crate) my_rev: i64,
}

impl Place<'_> {
    /// Waits for our turn. `epoch_before` is the prefix watch's epoch read before the first
    /// txn, `older` what that txn listed (see [`older_keys`]).
    pub(crate) async fn wait_turn(
        &self,
        router: &Arc<PrefixWatch>,
        epoch_before: Option<u64>,
        older: Option<(Vec<Vec<u8>>, i64)>,
    ) -> Result<Turn> {
        let lost = self.session.lost();
        tokio::pin!(lost);
        if let (Some(epoch), Some((older, revision))) = (epoch_before, older) {
            // Our own key's DELETE ends the wait too (deleted by someone else, or its lease).
            let own = router.wait_delete(epoch, self.key, self.my_rev - 1);
            let mut pending = Vec::new();
            let mut known = true;
            for key in &older {
                match router.wait_delete(epoch, key, revision) {
                    Wait::Deleted => {}
                    Wait::Unknown => known = false,
                    Wait::Pending(woken) => pending.push(woken),
                }
            }
            if known {
                let all_deleted = async {
                    for woken in pending {
                        if woken.await != Ok(true) {
                            return false;
                        }
                    }
                    true
                };
                let deleted = tokio::select! {
                    d = all_deleted => d,
                    gone = deleted_or_ended(own) => {
                        if gone {
                            return Ok(Turn::KeyGone);
                        }
                        false
                    }
                    _ = &mut lost => return Ok(Turn::SessionLost),
                };
                // Every older key is gone; was ours deleted meanwhile?
                if deleted {
                    match router.deleted_after(epoch, self.key, self.my_rev - 1) {
                        Some(false) => return Ok(Turn::Ours),
                        Some(true) => return Ok(Turn::KeyGone),
                        None => {}
                    }
                }
            }
        }
        let client = self.session.client();
        loop {
            let epoch = router.ensure(client).await?;
            let (pred_key, after) = match self.recheck().await? {
                Recheck::Ours => return Ok(Turn::Ours),
                Recheck::KeyGone => return Ok(Turn::KeyGone),
                Recheck::Behind(pred) => pred,
            };
            // The re-check saw our key at `after`: its DELETE after that wakes us too.
            let own = router.wait_delete(epoch, self.key, after);
            if let Wait::Pending(woken) = router.wait_delete(epoch, &pred_key, after) {
                tokio::select! {
                    _ = woken => {}
                    _ = deleted_or_ended(own) => {}
                    _ = &mut lost => return Ok(Turn::SessionLost),
                }
            }
            // Deleted, Unknown or woken: re-check.
        }
    }

    /// One `KV/Txn`: confirms our key is still ours and finds the predecessor.
    async fn recheck(&self) -> Result<Recheck> {
        let predecessor = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(self.my_rev - 1)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(1)
            .with_keys_only();
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.to_vec(),
                CompareOp::Equal,
                self.my_rev,
            )])
            .and_then([TxnOp::get(self.prefix.to_vec(), predecessor)]);
        let response = self.session.client().txn(txn).await?;
        if !response.succeeded() {
            return Ok(Recheck::KeyGone);
        }
        let revision = response.revision();
        Ok(match range_kvs(&response, 0).first() {
            None => Recheck::Ours,
            Some(kv) => Recheck::Behind((kv.key.clone(), revision)),
        })
    }
}

/// Resolves `true` once the awaited key is known deleted, `false` when the watch ended first;
/// never when the router cannot tell (the caller re-checks by other means then).
async fn deleted_or_ended(wait: Wait) -> bool {
    match wait {
        Wait::Deleted => true,
        Wait::Pending(woken) => woken.await == Ok(true),
        Wait::Unknown => std::future::pending().await,
    }
}

enum Recheck {
    Ours,
    KeyGone,
    /// The predecessor's key and the revision it was read at.
    Behind((Vec<u8>, i64)),
}
