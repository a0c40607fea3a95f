//! The client-side lock recipe, compatible with Go's `concurrency.Mutex`.
//!
//! Acquire, uncontended, is ONE `KV/Txn`:
//! ```text
//! If   create_revision(myKey) == 0
//! Then Put(myKey, "", lease), Range(prefix, sort create asc, limit 64, keys only)
//! Else Range(myKey),          Range(prefix, sort create asc, limit 1, keys only)
//! ```
//! `myRev` is the txn's revision (Then) or myKey's create revision (Else). The lock is held
//! when the oldest key under the prefix is ours.
//!
//! Contended, fast path (the client's prefix watch, [`super::waiters`], was already open when
//! the txn ran, and the Then branch listed every older key): no key can ever be created older
//! than ours, so the lock is ours once each key in that list has been deleted after the txn's
//! revision. The watch reports those DELETEs in revision order, together with any DELETE of our
//! own key (lease expired), so when the last older key goes we know without another RPC
//! whether our key is still there. A handoff costs the releaser's DeleteRange and nothing else.
//!
//! Contended, slow path (first wait on this client, adopted key, over 63 older keys, or the
//! watch restarted): wait for the predecessor only, then ONE `KV/Txn` re-checks:
//! `If create_revision(myKey) == myRev Then Range(prefix, max_create_revision = myRev-1, sort create desc, limit 1)`
//! which both confirms our key still exists (lease alive) and finds the next predecessor.
//! Go's `concurrency.Mutex` waits for the same keys (all older ones) and never for newer ones.

use crate::error::{Error, Result};
use crate::kv::{GetOptions, PutOptions, SortOrder, SortTarget};
use crate::proto::mvccpb::KeyValue;
use crate::session::Session;
use crate::txn::{Compare, CompareOp, Txn, TxnOp, TxnResponse};

use super::guard::{Flavour, LockGuard, PendingKey};
use super::waiters::PrefixWatch;
use super::waiters::Wait;
use super::{key_for, prefix_for, Locker};
use std::sync::Arc;

/// The client-side lock recipe (Go `concurrency.Mutex` compatible). Stateless and cheap: the
/// per-prefix watch it waits on belongs to the session's client.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecipeLock;

impl RecipeLock {
    /// A recipe locker.
    pub fn new() -> Self {
        RecipeLock
    }

    /// Takes the lock only if it is free right now: one `KV/Txn` (as in [`Locker::lock`]); when
    /// another key is older, one `KV/DeleteRange` removes ours again and the result is
    /// [`Error::Locked`].
    pub async fn try_lock(&self, session: &Session, name: &[u8]) -> Result<LockGuard> {
        let attempt = Attempt::start(session, name).await?;
        if attempt.owner_rev == attempt.my_rev {
            return Ok(attempt.into_guard());
        }
        let Attempt { pending, key, .. } = attempt;
        // On failure `pending` is dropped and retries the delete in the background.
        session.client().delete(key).await?;
        pending.forget();
        Err(Error::Locked {
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }
}

/// The state of one acquisition after its first round trip.
struct Attempt {
    session: Session,
    name: Vec<u8>,
    prefix: Vec<u8>,
    key: Vec<u8>,
    my_rev: i64,
    owner_rev: i64,
    /// Every key older than ours with the first txn's revision, when the Then branch listed
    /// them all (`None`: adopted key, or too many to list).
    older: Option<(Vec<Vec<u8>>, i64)>,
    pending: PendingKey,
}

/// How many keys the first txn lists; more waiters than that fall back to the slow path.
const LISTED_KEYS: i64 = 64;

impl Attempt {
    async fn start(session: &Session, name: &[u8]) -> Result<Attempt> {
        let prefix = prefix_for(name)?;
        let claim = session.claim(name).await?;
        if session.is_lost() {
            return Err(session.lost_error());
        }
        let key = key_for(&prefix, session.lease());
        let mut pending = PendingKey::new(key.clone(), claim);

        let oldest = |limit| {
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(limit)
                .with_keys_only()
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(
                    key.clone(),
                    "",
                    PutOptions::new().with_lease(session.lease()),
                ),
                TxnOp::get(prefix.clone(), oldest(LISTED_KEYS)),
            ])
            .or_else([
                TxnOp::get(key.clone(), GetOptions::new().with_keys_only()),
                TxnOp::get(prefix.clone(), oldest(1)),
            ]);
        let response = match session.client().txn(txn).await {
            Ok(r) => r,
            Err(e) if e.is_lease_not_found() => {
                pending.forget();
                return Err(session.lost_error());
            }
            Err(e) => return Err(e),
        };
        let revision = response.revision();
        let (my_rev, older) = if response.succeeded() {
            let listed = first_kvs(&response, 1);
            let complete = listed.iter().any(|kv| kv.create_revision == revision);
            let older = complete.then(|| {
                let keys = listed
                    .iter()
                    .filter(|kv| kv.create_revision < revision)
                    .map(|kv| kv.key.clone())
                    .collect();
                (keys, revision)
            });
            (revision, older)
        } else {
            // Our key already existed (a previous process with this lease, or Go code sharing
            // it): adopt it, as Go does.
            match first_kvs(&response, 0).first() {
                Some(kv) => (kv.create_revision, None),
                None => return Err(Error::Protocol("lock txn: own key vanished".into())),
            }
        };
        pending.set_token(my_rev);
        let owner_rev = first_kvs(&response, 1)
            .first()
            .map_or(my_rev, |kv| kv.create_revision);
        Ok(Attempt {
            session: session.clone(),
            name: name.to_vec(),
            prefix,
            key,
            my_rev,
            owner_rev,
            older,
            pending,
        })
    }

    fn into_guard(self) -> LockGuard {
        let claim = self.pending.disarm();
        LockGuard::new(
            self.name,
            self.key,
            self.my_rev,
            self.session,
            Flavour::Recipe,
            claim,
        )
    }

    /// Waits until no key older than ours is left under the prefix.
    async fn wait_for_turn(
        mut self,
        router: &Arc<PrefixWatch>,
        epoch_before: Option<u64>,
    ) -> Result<LockGuard> {
        let lost = self.session.lost();
        tokio::pin!(lost);
        // Fast path: the watch was open before the first txn ran, so every DELETE after that
        // txn's revision reaches the router.
        if let (Some(epoch), Some((older, revision))) = (epoch_before, self.older.take()) {
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
                    _ = &mut lost => return Err(self.session.lost_error()),
                };
                // Every older key is gone; was ours deleted meanwhile (lease expired)?
                if deleted {
                    match router.deleted_after(epoch, &self.key, self.my_rev - 1) {
                        Some(false) => return Ok(self.into_guard()),
                        Some(true) => return Err(self.session.lost_error()),
                        None => {}
                    }
                }
            }
        }
        // Slow path: predecessor by predecessor, one re-check txn per wake-up.
        let client = self.session.client().clone();
        let mut next = None;
        loop {
            let (epoch, (pred_key, after)) = match next.take() {
                Some(n) => n,
                None => {
                    let epoch = router.ensure(&client).await?;
                    match self.recheck().await? {
                        None => return Ok(self.into_guard()),
                        Some(pred) => (epoch, pred),
                    }
                }
            };
            if let Wait::Pending(woken) = router.wait_delete(epoch, &pred_key, after) {
                tokio::select! {
                    _ = woken => {}
                    _ = &mut lost => return Err(self.session.lost_error()),
                }
            }
            // Deleted, Unknown or woken: re-check with one txn.
        }
    }

    /// One `KV/Txn`: confirms our key is still ours and returns the predecessor (key and the
    /// revision it was read at), or `None` when we are the oldest.
    async fn recheck(&mut self) -> Result<Option<(Vec<u8>, i64)>> {
        let predecessor = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(self.my_rev - 1)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(1)
            .with_keys_only();
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                self.my_rev,
            )])
            .and_then([TxnOp::get(self.prefix.clone(), predecessor)]);
        let response = self.session.client().txn(txn).await?;
        if !response.succeeded() {
            return Err(self.session.lost_error());
        }
        let revision = response.revision();
        Ok(first_kvs(&response, 0)
            .first()
            .map(|kv| (kv.key.clone(), revision)))
    }
}

/// The key-values of the `index`-th range in the branch that ran.
fn first_kvs(response: &TxnResponse, index: usize) -> &[KeyValue] {
    response.range(index).map_or(&[], |r| r.kvs.as_slice())
}

impl Locker for RecipeLock {
    /// Takes the lock with the recipe: one `KV/Txn` when free; otherwise waits on the client's
    /// prefix watch for the predecessor's DELETE and re-checks with one `KV/Txn` per wake-up.
    async fn lock(&self, session: &Session, name: &[u8]) -> Result<LockGuard> {
        let prefix = prefix_for(name)?;
        let router = session.client().inner.lock_watches.get(&prefix);
        // Read before the txn: only a watch already open then has seen every later DELETE.
        let epoch_before = router.live_epoch();
        let attempt = Attempt::start(session, name).await?;
        if attempt.owner_rev == attempt.my_rev {
            return Ok(attempt.into_guard());
        }
        attempt.wait_for_turn(&router, epoch_before).await
    }

    fn flavour(&self) -> &'static str {
        "recipe"
    }
}
