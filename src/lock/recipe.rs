//! The client-side lock recipe, compatible with Go's `concurrency.Mutex`.
//!
//! Acquire, uncontended, is ONE `KV/Txn`:
//! ```text
//! If   create_revision(myKey) == 0
//! Then Put(myKey, "", lease), Range(prefix, sort create desc, limit 18, keys only)
//! Else Range(myKey),          Range(prefix, sort create asc, limit 1, keys only)
//! ```
//! (With other joins of the name in progress on this client, the Then branch lists up to 1025
//! keys instead; see `lock::queue::join_txn`.) The Then branch's Range starts with our key;
//! its `count` is 1 when the lock is free.
//! `myRev` is the txn's revision (Then) or myKey's create revision (Else). The lock is held
//! when the oldest key under the prefix is ours (Then: ours is the only key).
//!
//! Contended: `lock::queue` waits for every older key's DELETE on the client's long-lived
//! prefix watch — with no further RPC on the fast path, one re-check `KV/Range` per wake-up on the
//! slow path; a lone waiter far back in a long queue watches only its predecessor's key and
//! re-checks once (the far path). Go's `concurrency.Mutex` waits for the same keys (all older ones), never newer.

use crate::error::{Error, Result};
use crate::kv::GetOptions;
use crate::session::Session;

use super::guard::{Flavour, LockGuard};
use super::owned::{delete_if_created_at, key_gone_error, OwnedKey};
use super::queue::{join_txn, older_keys, owner_rev, predecessor, range_kvs, Older, Place, Turn};
use super::waiters::Registry;
use super::{key_for, prefix_for, Locker};
use crate::support::BoxFuture;

/// The client-side lock recipe (Go `concurrency.Mutex` compatible). Stateless and cheap: the
/// per-prefix watch it waits on belongs to the session's client.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecipeLock;

impl RecipeLock {
    /// A recipe locker.
    pub fn new() -> Self {
        RecipeLock
    }
}

/// [`Locker::try_lock`] for both flavours: one `KV/Txn` (the recipe's join, as in
/// [`Locker::lock`]); when another key is older, one more `KV/Txn If create_revision(key) ==
/// token Then DeleteRange(key)` removes ours again and the result is [`Error::Locked`].
pub(super) fn try_lock<'a>(
    session: &'a Session,
    name: &'a [u8],
    flavour: Flavour,
) -> BoxFuture<'a, Result<LockGuard>> {
    Box::pin(try_lock_now(session, name, flavour))
}

/// [`try_lock`]'s steps; boxed there, so they are compiled once, in this crate.
async fn try_lock_now(session: &Session, name: &[u8], flavour: Flavour) -> Result<LockGuard> {
    let attempt = Attempt::start(session, name, true).await?;
    if attempt.owner_rev == attempt.my_rev {
        return Ok(attempt.into_guard(flavour));
    }
    let Attempt {
        owned, key, my_rev, ..
    } = attempt;
    // On failure (or a dropped future) `owned` deletes the key in the background, by the
    // same conditional delete.
    if let Some(revision) = delete_if_created_at(session.client(), key, my_rev).await? {
        owned.absent_at(revision);
    }
    owned.gone();
    Err(Error::Locked {
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

/// The state of one acquisition after its first round trip.
struct Attempt {
    session: Session,
    name: Vec<u8>,
    prefix: Vec<u8>,
    key: Vec<u8>,
    my_rev: i64,
    owner_rev: i64,
    /// Every key older than ours, when the Then branch listed them all.
    older: Option<Older>,
    /// Our predecessor, when the txn read it (an `alone` join).
    predecessor: Option<Vec<u8>>,
    owned: OwnedKey,
}

impl Attempt {
    async fn start(session: &Session, name: &[u8], alone: bool) -> Result<Attempt> {
        let prefix = prefix_for(name)?;
        let claim = session.claim(name).await?;
        if session.is_lost() {
            return Err(session.lost_error());
        }
        let key = key_for(&prefix, session.lease());
        let mut owned = OwnedKey::new(key.clone(), claim);
        let own = GetOptions::new().with_keys_only();
        let txn = join_txn(&key, &prefix, b"", session.lease(), own, alone);
        let response = match session.client().txn(txn).await {
            Ok(r) => r,
            Err(e) if e.is_lease_not_found() => {
                owned.gone();
                return Err(session.lost_error());
            }
            Err(e) => return Err(e),
        };
        let (my_rev, older) = if response.succeeded() {
            let revision = response.revision();
            (revision, older_keys(&response, revision))
        } else {
            // Our key already existed (a previous process with this lease, or Go code sharing
            // it): adopt it, as Go does.
            match range_kvs(&response, 0).first() {
                Some(kv) => (kv.create_revision, None),
                None => return Err(Error::Protocol("lock txn: own key vanished".into())),
            }
        };
        owned.set_token(my_rev);
        // Only a lone joiner waits on its predecessor alone (see `Place::wait_turn`).
        let predecessor = predecessor(&response, my_rev).filter(|_| alone);
        let owner_rev = owner_rev(&response, my_rev);
        Ok(Attempt {
            session: session.clone(),
            name: name.to_vec(),
            prefix,
            key,
            my_rev,
            owner_rev,
            older,
            predecessor,
            owned,
        })
    }

    fn into_guard(self, flavour: Flavour) -> LockGuard {
        LockGuard::new(
            self.name,
            self.key,
            self.my_rev,
            self.session,
            flavour,
            self.owned,
        )
    }
}

/// [`Locker::lock`] of the recipe. Not generic and boxed: the lock's state machine, and the
/// ones it awaits, are compiled once, in this crate, rather than again in every crate that
/// calls `lock` with its own name type.
fn lock<'a>(session: &'a Session, name: &'a [u8]) -> BoxFuture<'a, Result<LockGuard>> {
    Box::pin(async move {
        let prefix = prefix_for(name)?;
        let client = session.client();
        // Before the txn: only a watch already open then has seen every later DELETE.
        let joining = Registry::of(client)
            .join(client, client.namespace(), &prefix)
            .await;
        let mut attempt = Attempt::start(session, name, joining.alone()).await?;
        if attempt.owner_rev == attempt.my_rev {
            return Ok(attempt.into_guard(Flavour::Recipe));
        }
        let place = Place {
            session,
            prefix: &attempt.prefix,
            key: &attempt.key,
            my_rev: attempt.my_rev,
        };
        match place
            .wait_turn(
                &joining.router(),
                joining.epoch_before(),
                attempt.older.take(),
                attempt.predecessor.take(),
            )
            .await?
        {
            Turn::Ours => Ok(attempt.into_guard(Flavour::Recipe)),
            Turn::SessionLost => Err(session.lost_error()),
            Turn::KeyGone => {
                let Attempt { owned, key, .. } = attempt;
                owned.gone();
                Err(key_gone_error(session, &key).await)
            }
        }
    })
}

impl Locker for RecipeLock {
    /// Takes the lock with the recipe: one `KV/Txn` when free; otherwise waits on the client's
    /// prefix watch for the older keys' DELETEs (see `lock::queue`).
    async fn lock(&self, session: &Session, name: impl AsRef<[u8]> + Send) -> Result<LockGuard> {
        lock(session, name.as_ref()).await
    }

    /// One `KV/Txn`, and one more to remove our key when the lock is held: see
    /// [`Locker::try_lock`].
    async fn try_lock(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
    ) -> Result<LockGuard> {
        try_lock(session, name.as_ref(), Flavour::Recipe).await
    }

    fn flavour(&self) -> &'static str {
        "recipe"
    }
}
