//! The proof of holding a lock: its key, fencing token and session.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::PutOptions;
use crate::session::Session;
use crate::txn::{Compare, CompareOp, Txn, TxnOp, TxnResponse};

use super::owned::{delete_if_created_at, OwnedKey, Released};
use crate::support::BoxFuture;

/// How the lock was taken (both are released the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Recipe,
    Service,
}

/// A held lock. Release it with [`LockGuard::unlock`]; dropping it instead releases it in the
/// background as a safety net only: a conditional delete (`KV/Txn` `If create_revision(key) ==
/// token Then DeleteRange(key)`, when a tokio runtime is running), retried while the session
/// lives. Until that delete is done, a new `lock()` of the same name on the same session waits.
#[derive(Debug)]
#[must_use = "a lock is released when its guard is unlocked or dropped"]
pub struct LockGuard {
    name: Vec<u8>,
    key: Vec<u8>,
    token: i64,
    session: Session,
    flavour: Flavour,
    /// Deletes the key in the background unless it is known gone (see `lock::owned`).
    owned: OwnedKey,
}

impl LockGuard {
    pub(crate) fn new(
        name: Vec<u8>,
        key: Vec<u8>,
        token: i64,
        session: Session,
        flavour: Flavour,
        owned: OwnedKey,
    ) -> Self {
        crate::trace::event!(INFO, "lock acquired", lock = %name.escape_ascii(), key = %key.escape_ascii(), fencing_token = token);
        LockGuard {
            name,
            key,
            token,
            session,
            flavour,
            owned,
        }
    }

    /// The lock name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }
    /// The lock key, `NAME/<lease hex>`.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    /// The lock key as text (lossy for non-UTF-8 names).
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
    /// How the lock was taken: `"recipe"` (client-side `KV/Txn` + watch) or `"service"`
    /// (etcd's `Lock/Lock`), as [`crate::lock::Locker::flavour`] names them.
    pub fn flavour(&self) -> &'static str {
        match self.flavour {
            Flavour::Recipe => "recipe",
            Flavour::Service => "service",
        }
    }
    /// The lease the key is attached to.
    pub fn lease(&self) -> i64 {
        self.session.lease()
    }
    /// The fencing token: the key's create revision. Strictly increases across successive
    /// holders of the same name.
    pub fn fencing_token(&self) -> i64 {
        self.token
    }
    /// The session holding the lock.
    pub fn session(&self) -> &Session {
        &self.session
    }
    /// True once the session's lease is known lost: the lock may be held by someone else now.
    pub fn is_lost(&self) -> bool {
        self.session.is_lost()
    }
    /// Resolves when the session (and with it the lock) is lost.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.session.lost()
    }

    fn client(&self) -> &Client {
        self.session.client()
    }

    fn fence(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.token)
    }

    /// Runs `txn` only while this lock is still held: one `KV/Txn` whose outer compare is
    /// `create_revision(key) == fencing_token` and whose success branch is `txn` nested.
    /// Returns the answer of `txn`; fails with [`Error::NotHeld`] (or [`Error::SessionLost`])
    /// when etcd refused it because the lock is gone.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let guarded = Txn::new().when([self.fence()]).and_then([TxnOp::txn(txn)]);
        let response = self.client().txn(guarded).await?;
        if !response.succeeded() {
            return Err(self.not_held());
        }
        match response
            .into_inner()
            .responses
            .pop()
            .and_then(|r| r.response)
        {
            Some(crate::proto::etcdserverpb::response_op::Response::ResponseTxn(inner)) => {
                Ok(crate::txn::TxnResponse(inner))
            }
            _ => Err(Error::Protocol(
                "guarded txn answered without its nested txn".into(),
            )),
        }
    }

    /// Writes `key = value` only while this lock is held (a guarded `KV/Txn`, see [`LockGuard::txn`]).
    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        self.txn(Txn::new().and_then([TxnOp::put(key, value, PutOptions::new())]))
            .await
            .map(|_| ())
    }

    fn not_held(&self) -> Error {
        if self.session.is_lost() {
            self.session.lost_error()
        } else {
            Error::NotHeld {
                key: self.key_str(),
            }
        }
    }

    /// Releases the lock. Unlocking twice is impossible: this consumes the guard.
    ///
    /// Both flavours send one `KV/Txn If create_revision(key) == fencing_token Then
    /// DeleteRange(key)`: the delete names the key by its create revision, so even a copy of
    /// this request applied long after it was sent (held up by a slow member while this
    /// session took the lock again) cannot remove a newer key. etcd's `Lock/Unlock` is not
    /// used: it deletes by name only (see `lock::service`). When the compare fails, the key
    /// was already gone: the result is [`Error::NotHeld`] (deleted by someone else), or
    /// [`Error::SessionLost`] when one `Lease/LeaseTimeToLive` finds the lease gone (etcd
    /// released the lock when the lease expired).
    ///
    /// If the call fails (unreachable cluster, timeout) or this future is dropped before it
    /// completes (e.g. inside `tokio::time::timeout`), the key is not left behind: the same
    /// conditional delete is retried in the background while the session lives; the error is
    /// returned as it happened. Until that delete is done the session's claim on the name
    /// stays, so a new `lock()` of the same name on the same session waits for it.
    pub async fn unlock(self) -> Result<()> {
        unlock(self).await
    }
}

/// [`LockGuard::unlock`]. Boxed, in a function that is not `async`: its state machine, and the
/// ones it awaits, are compiled once, in this crate, not again in each calling crate.
fn unlock(guard: LockGuard) -> BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        let LockGuard {
            key,
            session,
            owned,
            token,
            // Read only by the `tracing` event below.
            name: _name,
            flavour: _,
        } = guard;
        // `owned` lives across the call: dropped with this future, it deletes in the background.
        let answer = delete_if_created_at(session.client(), key.clone(), token)
            .await
            .map(|deleted_at| match deleted_at {
                Some(revision) => Released::Deleted(Some(revision)),
                None => Released::NothingDeleted,
            });
        let result = owned.settle(&session, &key, answer).await;
        crate::trace::event!(INFO, "lock released", lock = %_name.escape_ascii(), key = %key.escape_ascii(), fencing_token = token, outcome = if result.is_ok() { "ok" } else { "error" });
        result
    })
}
