//! The proof of holding a lock: its key, fencing token and session.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::{DeleteOptions, PutOptions};
use crate::session::{NameClaim, Session};
use crate::txn::{Compare, CompareOp, Txn, TxnOp, TxnResponse};

/// How the lock was taken, which decides how it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Recipe,
    Service,
}

/// A held lock. Release it with [`LockGuard::unlock`]; dropping it instead releases it in the
/// background (a conditional delete, when a tokio runtime is running) as a safety net only.
#[derive(Debug)]
#[must_use = "a lock is released when its guard is unlocked or dropped"]
pub struct LockGuard {
    name: Vec<u8>,
    key: Vec<u8>,
    token: i64,
    session: Session,
    flavour: Flavour,
    released: bool,
    _claim: Option<NameClaim>,
}

impl LockGuard {
    pub(crate) fn new(
        name: Vec<u8>,
        key: Vec<u8>,
        token: i64,
        session: Session,
        flavour: Flavour,
        claim: Option<NameClaim>,
    ) -> Self {
        LockGuard {
            name,
            key,
            token,
            session,
            flavour,
            released: false,
            _claim: claim,
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

    /// Releases the lock. Recipe locks send `KV/DeleteRange(key)`; service locks send
    /// `Lock/Unlock{key}`. Fails with [`Error::NotHeld`] when the key was already gone (or
    /// [`Error::SessionLost`] when the lease expired meanwhile: etcd released it then).
    /// Unlocking twice is impossible: this consumes the guard.
    pub async fn unlock(mut self) -> Result<()> {
        self.released = true;
        match self.flavour {
            Flavour::Recipe => {
                let deleted = self.client().delete(self.key.clone()).await?.deleted();
                if deleted == 0 {
                    return Err(self.not_held());
                }
                Ok(())
            }
            Flavour::Service => {
                super::service::unlock_key(self.client(), self.key.clone()).await?;
                if self.session.is_lost() {
                    return Err(self.session.lost_error());
                }
                Ok(())
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        spawn_conditional_delete(self.client(), self.key.clone(), Some(self.token));
    }
}

/// Deletes `key` in the background if its create revision is still `token`
/// (`KV/Txn`: if `create_revision(key) == token` then delete). Needs a tokio runtime.
pub(crate) fn spawn_conditional_delete(client: &Client, key: Vec<u8>, token: Option<i64>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let client = client.clone();
    handle.spawn(async move {
        delete_with_retries(&client, key, token).await;
    });
}

/// Runs [`delete_txn`], repeating it (at most 5 times, with backoff) while the cluster is
/// unreachable or a member fails: a waiter key left behind would block the queue until its
/// session ends. Repeating is safe: the delete is conditional on the token, or targets a key
/// that only this (abandoned) attempt can own.
async fn delete_with_retries(client: &Client, key: Vec<u8>, token: Option<i64>) {
    let mut pause = std::time::Duration::from_millis(100);
    for _ in 0..5 {
        match client.txn(delete_txn(key.clone(), token)).await {
            Ok(_) => return,
            Err(e) if e.is_unavailable() || e.is_timeout() || e.code().is_some() => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(_) => return,
        }
    }
}

/// `KV/Txn` deleting `key`, guarded by `create_revision(key) == token` when a token is given.
fn delete_txn(key: Vec<u8>, token: Option<i64>) -> Txn {
    let delete = TxnOp::delete(key.clone(), DeleteOptions::new());
    match token {
        Some(token) => Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, token)])
            .and_then([delete]),
        None => Txn::new().and_then([delete]),
    }
}

/// Disarmable drop guard for a lock attempt in progress: if the attempt is abandoned (future
/// dropped, timeout, error), the waiter key is deleted in the background — conditionally on its
/// create revision when known — and the session's claim on the name is held until that delete
/// is done, so a new attempt by the same session cannot lose its fresh key to it.
#[derive(Debug)]
pub(crate) struct PendingKey {
    key: Vec<u8>,
    token: Option<i64>,
    claim: Option<NameClaim>,
}

impl PendingKey {
    pub(crate) fn new(key: Vec<u8>, claim: NameClaim) -> Self {
        PendingKey {
            key,
            token: None,
            claim: Some(claim),
        }
    }

    /// Records the key's create revision once known.
    pub(crate) fn set_token(&mut self, token: i64) {
        self.token = Some(token);
    }

    /// The attempt succeeded: hand the claim to the guard, delete nothing.
    pub(crate) fn disarm(mut self) -> Option<NameClaim> {
        self.claim.take()
    }

    /// The attempt failed and nothing needs deleting (e.g. the key is known gone).
    pub(crate) fn forget(mut self) {
        self.claim.take();
    }
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        claim.cleaning();
        let client = claim.session().client().clone();
        let key = std::mem::take(&mut self.key);
        let token = self.token;
        handle.spawn(async move {
            delete_with_retries(&client, key, token).await;
            drop(claim);
        });
    }
}
