//! A key a session owns under a lock or election name, from the txn that creates it until it is
//! known gone, together with the session's claim on the name.
//!
//! One rule for every way a key can be left behind — an abandoned `lock()`/`campaign()`, a
//! dropped guard or leadership, an `unlock()`/`resign()` that failed or whose future was
//! dropped mid-call: the key is deleted in the background (`KV/Txn` `If create_revision(key) ==
//! token Then DeleteRange(key)`), retried while the session lives, and the session's claim on
//! the name is held until that delete is done. A new `lock()` by the same session on the same
//! name waits for the claim, so it can never adopt the old key and then lose it to the delete
//! still in flight (which would leave it holding a guard for a key that is gone).
//!
//! If the session ends first, its lease takes the key with it. If etcd refuses the delete for
//! good (e.g. permission denied) for a key known to exist, the session is closed
//! (`Lease/LeaseRevoke`) so the lease takes the key: a key under a live lease would block every
//! other waiter on the cluster. A key that was never confirmed (its creating txn failed) is
//! given up on such a refusal instead.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::kv::DeleteOptions;
use crate::session::{NameClaim, Session};
use crate::txn::{Compare, CompareOp, Txn, TxnOp};

/// First and longest pause between background delete attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// A key under a lock or election prefix that this session created (or adopted) and must
/// remove unless told it is gone. Dropping it while armed starts the background delete.
#[derive(Debug)]
pub(crate) struct OwnedKey {
    key: Vec<u8>,
    token: Option<i64>,
    claim: Option<NameClaim>,
}

impl OwnedKey {
    /// A key about to be created by `claim`'s session; its create revision is not known yet.
    pub(crate) fn new(key: Vec<u8>, claim: NameClaim) -> Self {
        OwnedKey {
            key,
            token: None,
            claim: Some(claim),
        }
    }

    /// Records the key's create revision once known: the background delete is then
    /// conditional on it.
    pub(crate) fn set_token(&mut self, token: i64) {
        self.token = Some(token);
    }

    /// The key is known gone (deleted by this session's own call, by someone else, or with its
    /// lease): release the name at once and delete nothing.
    pub(crate) fn gone(mut self) {
        self.claim.take();
    }
}

impl Drop for OwnedKey {
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        if self.token.is_none() {
            // The call that would create the key ended unseen: it may still be applied after
            // any delete of ours.
            claim.session().mark_keys_uncertain();
        }
        // Without a runtime nothing can delete the key; then nothing is in flight either, and
        // the name may be claimed again at once (a new lock adopts the key, as Go does).
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        claim.cleaning();
        let key = std::mem::take(&mut self.key);
        let token = self.token;
        handle.spawn(async move {
            delete_while_session_lives(claim.session(), key, token).await;
            drop(claim);
        });
    }
}

/// Deletes `key` (conditionally on `token`), retrying with backoff until it succeeds or the
/// session is lost; a refusal that retrying cannot cure ends the session instead.
async fn delete_while_session_lives(session: &Session, key: Vec<u8>, token: Option<i64>) {
    let mut pause = FIRST_PAUSE;
    loop {
        if session.is_lost() {
            return;
        }
        match session.client().txn(delete_txn(key.clone(), token)).await {
            Ok(_) => return,
            // The key was never confirmed (the txn that would have created it failed, and etcd
            // checks a txn's permissions as a whole, so a refusal now means it refused that
            // put too): nothing to remove.
            Err(e) if gives_up(&e) && token.is_none() => return,
            // The key exists and can no longer be deleted by us: let the lease take it.
            Err(e) if gives_up(&e) => {
                let _ = session.clone().close().await;
                return;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = session.lost() => return,
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Failures that a later attempt cannot cure: the request itself is refused.
fn gives_up(error: &Error) -> bool {
    error.is_permission_denied()
        || error.is_auth_failed()
        || matches!(error, Error::InvalidArgument { .. })
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

/// What a release call (`unlock`, `resign`) answered, for [`OwnedKey::settle`].
#[derive(Debug)]
pub(crate) enum Released {
    /// The key was deleted by this call.
    Deleted,
    /// The answer cannot tell whether the key was still there (etcd's Lock/Unlock and
    /// Election/Resign return only a header): trust it unless the session is known lost.
    Unknown,
    /// Nothing was deleted: the key was already gone.
    NothingDeleted,
}

impl OwnedKey {
    /// Settles a release of `key` by one call whose outcome is `answer`: the key is known gone
    /// on an answer; on a failure it is handed to the background delete (which retries while
    /// the session lives) and the failure is returned as it happened.
    pub(crate) async fn settle(
        self,
        session: &Session,
        key: &[u8],
        answer: Result<Released>,
    ) -> Result<()> {
        match answer {
            Ok(Released::Deleted) => {
                self.gone();
                Ok(())
            }
            Ok(Released::Unknown) => {
                self.gone();
                if session.is_lost() {
                    return Err(session.lost_error());
                }
                Ok(())
            }
            Ok(Released::NothingDeleted) => {
                self.gone();
                Err(key_gone_error(session, key).await)
            }
            Err(e) => {
                drop(self);
                Err(e)
            }
        }
    }
}

/// The error for "this session's key is not there any more". Costs one
/// `Lease/LeaseTimeToLive` unless the session is already known lost: a key deleted by someone
/// else is [`Error::NotHeld`] and leaves the session (and its other locks) alone; a lease that
/// is gone is [`Error::SessionLost`] and marks the session lost.
pub(crate) async fn key_gone_error(session: &Session, key: &[u8]) -> Error {
    if session.is_lost() {
        return session.lost_error();
    }
    match lease_alive(session).await {
        Ok(false) => session.lost_error(),
        // Alive, or unknown (the check itself failed): do not declare the session lost.
        _ => Error::NotHeld {
            key: String::from_utf8_lossy(key).into_owned(),
        },
    }
}

async fn lease_alive(session: &Session) -> Result<bool> {
    match session
        .client()
        .lease_time_to_live(session.lease(), false)
        .await
    {
        Ok(ttl) => Ok(ttl.ttl() > 0),
        Err(e) if e.is_lease_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
