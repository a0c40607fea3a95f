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
//! Every delete names the key it means by its create revision, never by its name alone: a
//! request can be applied long after it was sent (held by a slow member while the client moved
//! on to another), and by then the same name may hold a newer key of the same session. When
//! the token is not known (the creating call's answer was never seen), one linearizable
//! `KV/Range(key)` reads it first; a key that is not there then is not deleted at all.
//!
//! If the session ends first, its lease takes the key with it. If etcd refuses the delete for
//! good (e.g. permission denied) for a key known to exist, the session is closed
//! (`Lease/LeaseRevoke`) so the lease takes the key: a key under a live lease would block every
//! other waiter on the cluster. A key that was never confirmed (its creating txn failed) is
//! given up on such a refusal instead.

use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::{DeleteOptions, GetOptions};
use crate::session::{NameClaim, Session};
use crate::txn::{Compare, CompareOp, Txn, TxnOp};

/// Pauses before looking again for a key whose creating call was abandoned unanswered and that
/// was not there at the first look (see `delete_while_session_lives`).
const UNSEEN_LOOKS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(500),
];

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

    /// Records that this session deleted the key itself at `revision` (see
    /// [`NameClaim::absent_at`]).
    pub(crate) fn absent_at(&self, revision: i64) {
        if let Some(claim) = self.claim.as_ref() {
            claim.absent_at(revision);
        }
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
        // Without a runtime nothing can delete the key; then nothing is in flight either, and
        // the name may be claimed again at once (a new lock adopts the key, as Go does, and
        // reads its create revision: see `lock::service` for why no shortcut applies then).
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        claim.cleaning();
        let key = std::mem::take(&mut self.key);
        let token = self.token;
        crate::support::spawn_on(&handle, async move {
            delete_while_session_lives(&claim, key, token).await;
            drop(claim);
        });
    }
}

/// Deletes `key` (conditionally on `token`, read first when unknown), retrying with backoff
/// until it succeeds or the session is lost; a refusal that retrying cannot cure ends the
/// session instead.
async fn delete_while_session_lives(claim: &NameClaim, key: Vec<u8>, mut token: Option<i64>) {
    let session = claim.session();
    let mut pause = FIRST_PAUSE;
    let mut unseen_looks = 0;
    loop {
        if session.is_lost() {
            return;
        }
        let attempt = match token {
            Some(token) => delete_if_created_at(session.client(), key.clone(), token).await,
            None => match created_revision(session, &key).await {
                // Not there now. The abandoned call may still be on its way (sent just
                // before it was dropped, its server-side work not done yet): look again a
                // few times over the next ~0.75 s before deciding there is nothing to delete.
                Ok(None) if unseen_looks < UNSEEN_LOOKS.len() => {
                    let pause = UNSEEN_LOOKS[unseen_looks];
                    unseen_looks += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = session.lost() => return,
                    }
                    continue;
                }
                Ok(None) => return,
                Ok(Some(found)) => {
                    token = Some(found);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        match attempt {
            Ok(deleted_at) => {
                if let Some(revision) = deleted_at {
                    claim.absent_at(revision);
                }
                return;
            }
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

/// The create revision of `key` if it exists under this session's lease: one linearizable
/// `KV/Range(key, keys only)`.
async fn created_revision(session: &Session, key: &[u8]) -> Result<Option<i64>> {
    let found = session
        .client()
        .get_with(key.to_vec(), GetOptions::new().with_keys_only())
        .await?;
    Ok(found
        .first()
        .filter(|kv| kv.lease == session.lease())
        .map(|kv| kv.create_revision))
}

/// Failures that a later attempt cannot cure: the request itself is refused.
fn gives_up(error: &Error) -> bool {
    error.is_permission_denied()
        || error.is_auth_failed()
        || matches!(error, Error::InvalidArgument { .. })
}

/// `KV/Txn` `If create_revision(key) == token Then DeleteRange(key)`: deletes `key` only if it
/// is still the key created at revision `token`, so a request applied late can never remove a
/// newer key of the same name. Returns the revision of the delete when it deleted the key
/// (the key is known absent at that revision), `None` when the key was already gone or is
/// another one.
pub(crate) async fn delete_if_created_at(
    client: &Client,
    key: Vec<u8>,
    token: i64,
) -> Result<Option<i64>> {
    let txn = Txn::new()
        .when([Compare::create_revision(
            key.clone(),
            CompareOp::Equal,
            token,
        )])
        .and_then([TxnOp::delete(key, DeleteOptions::new())]);
    let response = client.txn(txn).await?;
    Ok(response.succeeded().then(|| response.revision()))
}

/// What a release call (`unlock`, `resign`) answered, for [`OwnedKey::settle`].
#[derive(Debug)]
pub(crate) enum Released {
    /// The key was deleted by this call, at the given revision when the answer tells it (the
    /// key is then known absent at that revision).
    Deleted(Option<i64>),
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
            Ok(Released::Deleted(revision)) => {
                if let Some(revision) = revision {
                    self.absent_at(revision);
                }
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
        // etcd truncates the remaining time to whole seconds: 0 is "under a second left", not
        // gone; a lease that is gone is refused as not found (or reported with TTL -1).
        Ok(ttl) => Ok(ttl.ttl() >= 0),
        Err(e) if e.is_lease_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
