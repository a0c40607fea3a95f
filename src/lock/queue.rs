//! Waiting for one's turn under a prefix: the part of the recipe that locks and elections share.
//!
//! Every participant owns one key under `NAME/`; whoever's key has the smallest create revision
//! is first. A participant's turn comes when every key older than its own has been deleted.
//!
//! * Fast path: the first txn listed every older key (`Range(prefix, create asc, limit N)`) at
//!   revision `H`, and the client's prefix watch (`lock::waiters`) was already open before
//!   that txn. No key can be created older than ours later, so the turn has come once each
//!   listed key was deleted after `H`. The watch reports those DELETEs in revision order,
//!   together with any DELETE of our own key, so no RPC is needed to confirm our key either.
//! * Slow path (watch opened later, adopted key, more keys than listed, watch restarted): wait
//!   for the predecessor only, then one `KV/Range` re-checks —
//!   `Range(prefix, max_create_revision = myRev, sort create desc, limit 2, keys only)` —
//!   confirming our key (the newest of the two) and finding the next predecessor.
//! * Far path (more than [`NEAR_KEYS`] keys ahead, and no other join of the name in progress
//!   on this client): watch only the predecessor's key from the txn's revision + 1, then one
//!   re-check `KV/Range`. It spares etcd and every client the work of delivering each DELETE to
//!   every contender when hundreds of processes queue for one name.

use std::sync::Arc;

use crate::error::Result;
use crate::kv::{GetOptions, PutOptions, SortOrder, SortTarget};
use crate::proto::mvccpb::KeyValue;
use crate::session::Session;
use crate::txn::{Compare, CompareOp, Txn, TxnOp, TxnResponse};

use super::waiters::{PrefixWatch, Wait};
use crate::watch::{is_delete, WatchOptions};

/// A waiter with more older keys than this, and alone on its client in this queue, waits the
/// way Go's `Mutex` does (see [`Place::wait_turn`]).
pub(crate) const NEAR_KEYS: usize = 16;

/// How many keys the first txn lists; a longer queue falls back to the slow path. The answer
/// grows with the queue, not with this limit (keys only, about 70 bytes each), and etcd reads
/// the whole prefix to sort it by create revision anyway; 1024 keeps a thousand waiters (even
/// in one process) on the fast path.
pub(crate) const LISTED_KEYS: i64 = 1024;

/// `Range(prefix, sort create asc, keys only, limit)`.
pub(crate) fn oldest(limit: i64) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(limit)
        .with_keys_only()
}

/// `Range(prefix, sort create desc, keys only, limit)`.
fn newest(limit: i64) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(limit)
        .with_keys_only()
}

/// The one round trip that joins the queue (locks and elections alike):
/// `If create_revision(key) == 0 Then Put(key, value, lease), Range(prefix, newest N + 1)
/// Else Range(key, own), Range(prefix, oldest 1)`. `own` picks what the Else branch reads of an
/// existing own key (keys only for a lock; the value too for an election).
///
/// The Then branch's one Range, in create order from the newest, starts with our own key and
/// tells everything a joiner needs: its `count` says whether ours is the only key (we hold it),
/// the next key is our predecessor, and when `count` keys came back, all older keys are listed.
/// etcd reads every key under the prefix to sort it by create revision, whatever the limit, so
/// one such Range instead of two halves the server's work per join in a long queue.
///
/// `alone` (no other join on this prefix in progress on this client): N is [`NEAR_KEYS`] + 1,
/// enough for a short queue's fast path and a long queue's far wait, and the answer stays small
/// however long the queue. Otherwise (many waiters in one process share the client's prefix
/// watch) N is [`LISTED_KEYS`].
pub(crate) fn join_txn(
    key: &[u8],
    prefix: &[u8],
    value: &[u8],
    lease: i64,
    own: GetOptions,
    alone: bool,
) -> Txn {
    let listed = if alone {
        NEAR_KEYS as i64 + 1
    } else {
        LISTED_KEYS
    };
    Txn::new()
        .when([Compare::create_revision(key.to_vec(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.to_vec(),
                value.to_vec(),
                PutOptions::new().with_lease(lease),
            ),
            TxnOp::get(prefix.to_vec(), newest(listed + 1)),
        ])
        .or_else([
            TxnOp::get(key.to_vec(), own),
            TxnOp::get(prefix.to_vec(), oldest(1)),
        ])
}

/// The create revision of the oldest key under the prefix as the join txn saw it, or `0` when
/// it is not ours and was not listed. `my_rev` is our key's create revision.
pub(crate) fn owner_rev(response: &TxnResponse, my_rev: i64) -> i64 {
    let Some(range) = response.range(1) else {
        return my_rev;
    };
    if !response.succeeded() {
        // Else branch: Range(prefix, oldest 1).
        return range.kvs.first().map_or(my_rev, |kv| kv.create_revision);
    }
    // Then branch: newest first, ours at the head.
    if range.count <= 1 {
        return my_rev;
    }
    if range.kvs.len() as i64 == range.count {
        return range.kvs.last().map_or(0, |kv| kv.create_revision);
    }
    0
}

/// The keys older than ours that the join txn's Then branch listed, oldest first, each with its
/// create revision, and that txn's revision — `None` when the list was cut short (more keys
/// than listed).
pub(crate) fn older_keys(response: &TxnResponse, my_rev: i64) -> Option<Older> {
    let range = response.range(1)?;
    if !response.succeeded() || range.kvs.len() as i64 != range.count {
        return None;
    }
    let keys = range
        .kvs
        .iter()
        .rev()
        .filter(|kv| kv.create_revision < my_rev)
        .map(|kv| (kv.key.clone(), kv.create_revision))
        .collect();
    Some((keys, my_rev))
}

/// Our predecessor (the newest key older than ours) as the join txn's Then branch listed it.
pub(crate) fn predecessor(response: &TxnResponse, my_rev: i64) -> Option<Vec<u8>> {
    if !response.succeeded() {
        return None;
    }
    range_kvs(response, 1)
        .iter()
        .find(|kv| kv.create_revision < my_rev)
        .map(|kv| kv.key.clone())
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

/// What a join txn listed (see [`older_keys`]): every key older than ours with its create
/// revision, oldest first, and the revision it was read at.
pub(crate) type Older = (Vec<(Vec<u8>, i64)>, i64);

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
    ///
    /// A waiter far back in a long queue (more than [`NEAR_KEYS`] older keys) that joined
    /// `alone` (no other join on this prefix in progress on its client; its txn then read its
    /// `predecessor`) does not use the client's
    /// prefix watch: every client on that watch hears every DELETE under the prefix, which
    /// costs etcd and each client work per handoff in proportion to the queue. It watches only
    /// its predecessor's key from the txn's revision + 1 (so nothing is missed; etcd may take
    /// up to 100 ms to catch such a watch up, far less than the wait for that many handoffs),
    /// then one re-check `KV/Range` tells whether its turn came. Many waiters of one process
    /// share the client's watch instead: there each DELETE reaches the client once.
    pub(crate) async fn wait_turn(
        &self,
        router: &Arc<PrefixWatch>,
        epoch_before: Option<u64>,
        older: Option<Older>,
        predecessor: Option<Vec<u8>>,
    ) -> Result<Turn> {
        let lost = self.session.lost();
        tokio::pin!(lost);
        let mut rechecks = Rechecks::new();
        let near = older
            .as_ref()
            .is_some_and(|(keys, _)| keys.len() <= NEAR_KEYS);
        if let (Some(mut predecessor), false) = (predecessor, near) {
            let mut revision = self.my_rev;
            loop {
                match self
                    .wait_far(&predecessor, revision, &mut lost, &mut rechecks)
                    .await
                {
                    Far::SessionLost => return Ok(Turn::SessionLost),
                    Far::Deleted => match self.recheck().await? {
                        Recheck::Ours => {
                            router.count_far_wait();
                            return Ok(Turn::Ours);
                        }
                        Recheck::KeyGone => return Ok(Turn::KeyGone),
                        // Out of order (a waiter ahead gave up): wait on the slow path.
                        Recheck::Behind(_) => break,
                    },
                    // No word for a while: a linearizable look, in case a DELETE was lost. It
                    // is insurance only: when it fails (an isolated member), keep waiting.
                    Far::Quiet => match self.recheck().await {
                        Ok(Recheck::Ours) => {
                            router.count_far_wait();
                            return Ok(Turn::Ours);
                        }
                        Ok(Recheck::KeyGone) => return Ok(Turn::KeyGone),
                        Ok(Recheck::Behind((key, seen_at))) => {
                            predecessor = key;
                            revision = seen_at;
                        }
                        Err(_) => {}
                    },
                    Far::Ended => break,
                }
            }
            router.count_wait(false);
            return self.wait_slow(router, &mut lost, &mut rechecks).await;
        }
        if let (Some(epoch), Some((older, revision))) = (epoch_before, older) {
            if let Some(turn) = self
                .wait_listed(router, epoch, older, revision, &mut lost, &mut rechecks)
                .await
            {
                router.count_wait(true);
                return Ok(turn);
            }
        }
        router.count_wait(false);
        self.wait_slow(router, &mut lost, &mut rechecks).await
    }

    /// Go's way on the client's prefix watch: wait for the predecessor only, then re-check.
    async fn wait_slow(
        &self,
        router: &Arc<PrefixWatch>,
        lost: &mut (impl std::future::Future<Output = ()> + Unpin),
        rechecks: &mut Rechecks,
    ) -> Result<Turn> {
        let client = self.session.client();
        loop {
            let epoch = router.ensure(client).await?;
            let (pred_key, after) = match self.recheck().await? {
                Recheck::Ours => return Ok(Turn::Ours),
                Recheck::KeyGone => return Ok(Turn::KeyGone),
                Recheck::Behind(pred) => pred,
            };
            // The re-check saw our key at `after`: its DELETE after that wakes us too.
            let own = deleted_or_ended(router.wait_delete(epoch, self.key, after));
            tokio::pin!(own);
            if let Wait::Pending(woken) = router.wait_delete(epoch, &pred_key, after) {
                tokio::pin!(woken);
                loop {
                    tokio::select! {
                        _ = &mut woken => break,
                        _ = &mut own => break,
                        // Quiet for too long, and the queue not seen moving: a look in case a
                        // DELETE was lost. Insurance only: a failed look (an isolated member)
                        // changes nothing, the watch may still deliver.
                        _ = rechecks.due() => {
                            if router.heard_within(RECHECK_FIRST) {
                                continue;
                            }
                            // Raced with the watch, which may deliver meanwhile.
                            let looked = tokio::select! {
                                r = self.recheck() => r,
                                _ = &mut woken => break,
                                _ = &mut own => break,
                            };
                            match looked {
                                Ok(Recheck::Ours) => return Ok(Turn::Ours),
                                Ok(Recheck::KeyGone) => return Ok(Turn::KeyGone),
                                Ok(Recheck::Behind((key, _))) if key == pred_key => {}
                                // Another predecessor now: wait for that one instead.
                                Ok(Recheck::Behind(_)) => break,
                                Err(_) => {}
                            }
                        }
                        _ = &mut *lost => return Ok(Turn::SessionLost),
                    }
                }
            }
            // Deleted, Unknown, woken, or a new predecessor: re-check.
        }
    }

    /// Waits for the DELETE of `predecessor` (seen existing at `revision`) on a watch of that
    /// one key from `revision + 1`.
    async fn wait_far(
        &self,
        predecessor: &[u8],
        revision: i64,
        lost: &mut (impl std::future::Future<Output = ()> + Unpin),
        rechecks: &mut Rechecks,
    ) -> Far {
        let options = WatchOptions::new()
            .with_start_revision(revision + 1)
            .with_no_put();
        let watch = self
            .session
            .client()
            .watch_with(predecessor.to_vec(), options);
        let mut watcher = tokio::select! {
            w = watch => match w {
                Ok(w) => w,
                Err(_) => return Far::Ended,
            },
            _ = &mut *lost => return Far::SessionLost,
        };
        loop {
            tokio::select! {
                batch = watcher.next() => match batch {
                    Some(Ok(batch)) if batch.events().iter().any(is_delete) => return Far::Deleted,
                    Some(Ok(_)) => {}
                    // Compacted, lagged or closed: the caller re-checks on the slow path.
                    Some(Err(_)) | None => return Far::Ended,
                },
                _ = rechecks.due() => return Far::Quiet,
                _ = &mut *lost => return Far::SessionLost,
            }
        }
    }

    /// The fast path: waits, on the watch of `epoch`, until every key in `older` (listed at
    /// `revision`, with their create revisions) was deleted after `revision`, with no RPC.
    /// The keys go into the router's one table of listed keys, shared by every waiter on the
    /// prefix (see `PrefixWatch::wait_turn`); this task keeps only its wake-up, so a thousand
    /// waiters in one process cost memory in proportion to the queue, not to its square.
    /// `None`: the router cannot vouch for the interval (watch ended, DELETEs forgotten); the
    /// caller re-checks with RPCs.
    async fn wait_listed(
        &self,
        router: &Arc<PrefixWatch>,
        epoch: u64,
        older: Vec<(Vec<u8>, i64)>,
        revision: i64,
        lost: &mut (impl std::future::Future<Output = ()> + Unpin),
        rechecks: &mut Rechecks,
    ) -> Option<Turn> {
        // Our own key's DELETE ends the wait too (deleted by someone else, or its lease).
        let own = deleted_or_ended(router.wait_delete(epoch, self.key, self.my_rev - 1));
        tokio::pin!(own);
        match router.wait_turn(epoch, older, revision, self.my_rev) {
            Wait::Deleted => {}
            Wait::Unknown => return None,
            Wait::Pending(woken) => {
                tokio::pin!(woken);
                loop {
                    tokio::select! {
                        done = &mut woken => {
                            if done != Ok(true) {
                                return None;
                            }
                            break;
                        }
                        gone = &mut own => return if gone { Some(Turn::KeyGone) } else { None },
                        // Quiet for too long, and the queue not seen moving: a linearizable
                        // look, in case a DELETE was lost. Still behind: keep waiting here.
                        _ = rechecks.due() => {
                            if router.heard_within(RECHECK_FIRST) {
                                continue;
                            }
                            // Insurance only: a failed look keeps waiting on the watch, which
                            // may also deliver while the look is on its way.
                            let looked = tokio::select! {
                                r = self.recheck() => r,
                                done = &mut woken => {
                                    if done != Ok(true) {
                                        return None;
                                    }
                                    break;
                                }
                                gone = &mut own => return if gone { Some(Turn::KeyGone) } else { None },
                            };
                            match looked {
                                Ok(Recheck::Ours) => return Some(Turn::Ours),
                                Ok(Recheck::KeyGone) => return Some(Turn::KeyGone),
                                Ok(Recheck::Behind(_)) | Err(_) => continue,
                            }
                        }
                        _ = &mut *lost => return Some(Turn::SessionLost),
                    }
                }
            }
        }
        // Every older key is gone; was ours deleted meanwhile?
        match router.deleted_after(epoch, self.key, self.my_rev - 1)? {
            false => Some(Turn::Ours),
            true => Some(Turn::KeyGone),
        }
    }

    /// One `KV/Range`: confirms our key is still ours and finds the predecessor —
    /// `Range(prefix, max_create_revision = myRev, sort create desc, limit 2, keys only)`. The
    /// newest key created at or before `myRev` is ours exactly when ours still exists (create
    /// revisions are unique), and the one after it is the predecessor. One read at one
    /// revision, like the `If create_revision(myKey) == myRev Then Range(..)` txn it replaces,
    /// but never a `KV/Txn`: etcd 3.5.0-3.5.4 panic when a read-only txn's context ends while
    /// the member applies it (etcd issue 14110), which a slow member and any client deadline or
    /// cancellation can bring about. A `KV/Range` that ends that way only fails.
    async fn recheck(&self) -> Result<Recheck> {
        let mine_and_predecessor = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(self.my_rev)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(2)
            .with_keys_only();
        let response = self
            .session
            .client()
            .get_with(self.prefix.to_vec(), mine_and_predecessor)
            .await?;
        Ok(read_place(
            response.kvs(),
            self.key,
            self.my_rev,
            response.revision(),
        ))
    }
}

/// What a re-check's Range (see `Queue::recheck`) says of our place: `kvs` are the newest keys
/// created at or before `my_rev`, newest first, read at `revision`.
fn read_place(kvs: &[KeyValue], key: &[u8], my_rev: i64, revision: i64) -> Recheck {
    match kvs {
        [mine, rest @ ..] if mine.create_revision == my_rev && mine.key == key => match rest {
            [] => Recheck::Ours,
            [predecessor, ..] => Recheck::Behind((predecessor.key.clone(), revision)),
        },
        _ => Recheck::KeyGone,
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

/// How a far wait ended.
enum Far {
    Deleted,
    Ended,
    /// The re-check interval ran out (see [`Rechecks`]).
    Quiet,
    SessionLost,
}

/// The first pause before a waiter re-checks its place with a linearizable `KV/Range` although
/// no event woke it; each later pause doubles, up to [`RECHECK_LONGEST`]. A waiter on the
/// client's prefix watch skips the read while the watch reported a DELETE within the last
/// `RECHECK_FIRST` (the queue moves, so its events are flowing); a far waiter, alone on its
/// one-key watch, reads on every tick.
///
/// Why at all: a waiter is woken only by watch events, and etcd 3.4 and 3.5 have had bugs that
/// drop DELETE events around compaction (etcd issues 18089 and 19179); a waiter whose
/// predecessor's DELETE is lost would otherwise wait for ever. Why these numbers: a handoff
/// takes milliseconds (lockbench W2: about 1 ms), so a waiter that has heard nothing for 3 s
/// is either behind a long critical section — where one read per 3..30 s per waiter costs etcd
/// nothing measurable — or lost an event, which then delays its turn by at most the current
/// pause. A lost DELETE stalls the queue behind the waiter that missed it, so the prefix goes
/// quiet exactly when a re-check is needed; a queue that moves sends no such read.
pub(crate) const RECHECK_FIRST: std::time::Duration = std::time::Duration::from_secs(3);
/// The longest pause between two re-checks of a waiter (see [`RECHECK_FIRST`]).
pub(crate) const RECHECK_LONGEST: std::time::Duration = std::time::Duration::from_secs(30);

/// When a waiter next re-checks its place although nothing woke it (see [`RECHECK_FIRST`]).
#[derive(Debug)]
pub(crate) struct Rechecks {
    at: tokio::time::Instant,
    pause: std::time::Duration,
}

impl Rechecks {
    pub(crate) fn new() -> Self {
        Rechecks {
            at: tokio::time::Instant::now() + RECHECK_FIRST,
            pause: RECHECK_FIRST,
        }
    }

    /// Resolves when the next re-check is due, and schedules the one after it.
    pub(crate) async fn due(&mut self) {
        tokio::time::sleep_until(self.at).await;
        self.pause = (self.pause * 2).min(RECHECK_LONGEST);
        self.at = tokio::time::Instant::now() + self.pause;
    }
}

enum Recheck {
    Ours,
    KeyGone,
    /// The predecessor's key and the revision it was read at.
    Behind((Vec<u8>, i64)),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, create_revision: i64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision,
            ..KeyValue::default()
        }
    }

    fn place(kvs: &[KeyValue]) -> String {
        match read_place(kvs, b"n/b", 20, 31) {
            Recheck::Ours => "ours".into(),
            Recheck::KeyGone => "gone".into(),
            Recheck::Behind((key, at)) => {
                format!("behind {} at {at}", String::from_utf8_lossy(&key))
            }
        }
    }

    #[test]
    fn a_recheck_reads_our_key_then_the_predecessor() {
        assert_eq!(place(&[kv("n/b", 20)]), "ours");
        assert_eq!(place(&[kv("n/b", 20), kv("n/a", 12)]), "behind n/a at 31");
        // Ours is gone: the newest key at or before our revision is someone older.
        assert_eq!(place(&[kv("n/a", 12)]), "gone");
        assert_eq!(place(&[]), "gone");
        // Our key name, created again later, is not the key this wait joined with (the Range
        // leaves it out by its create revision; a wrong answer must still not pass as ours).
        assert_eq!(place(&[kv("n/b", 25), kv("n/a", 12)]), "gone");
        // Another key at our revision cannot exist; if a server said so, it is not ours.
        assert_eq!(place(&[kv("n/c", 20)]), "gone");
    }
}
