//! The server-side lock: etcd's `v3lockpb.Lock` service (`Lock/Lock`) for acquisition.
//!
//! etcd runs the same recipe as Go's `concurrency.Mutex` inside the server, with the same key
//! layout, so this flavour and [`super::RecipeLock`] exclude each other. `Lock/Lock` blocks on
//! the server until the lock is held, then returns the key and a header.
//!
//! # Release: a conditional delete, not `Lock/Unlock`
//!
//! etcd's `Lock/Unlock{key}` runs a plain `DeleteRange(key)` on the server. The key is
//! `NAME/<lease hex>` every time this session takes `NAME`, so an `Unlock` held up on a slow
//! member and applied after this session took the lock again would delete the *new* key: the
//! next waiter gets the lock while this holder's guard still looks valid. This flavour
//! therefore releases with the same one round trip the recipe uses, `KV/Txn If
//! create_revision(key) == token Then DeleteRange(key)`: a late copy finds another create
//! revision and deletes nothing. Same RPC count as `Lock/Unlock` (one), and the answer tells
//! whether the key was still there, which `Lock/Unlock`'s bare header cannot.
//!
//! # Cancellation
//!
//! A dropped `lock()` cancels its `Lock/Lock`. etcd's server then gives up its wait and
//! deletes its waiter key with a plain delete (Go's `Mutex.Lock` error path), and this client
//! deletes the key too in case the server had already granted it: one `KV/Range(key)` reads
//! its create revision, then the conditional delete above, retried while the session lives,
//! holding the session's claim on the name meanwhile. The server's own cleanup is the one
//! delete of this flavour that does not name its key by create revision, and no client can
//! change that: if a member holds the cancelled call back (a slow network path) until this
//! session is waiting for the same name again through another member, that cleanup removes the
//! new waiter key, and the new `lock()` then fails with [`crate::Error::NotHeld`] rather than
//! wait on. Only if the member applies it in the instant the new waiter becomes the holder can
//! it remove a held key. The recipe flavour has no such delete.
//!
//! # The fencing token without an extra RPC
//!
//! The token is the key's create revision `c`. etcd's answer carries only a header revision
//! `h`, the revision the server read the key at (`c <= h`); when it waited, `h > c` in general.
//! When this session's previous claim of the name ended with its own conditional delete of the
//! key at revision `r`, the key did not exist at `r`, so `r < c <= h`. If `h == r + 1`, then
//! `c == h` whoever created the key (this call, a late copy of an older call, another session
//! sharing the lease): no RPC is needed. That is every cycle of a lock taken and released over
//! and over with nobody else writing in between (lockbench W1: 2 RPCs per cycle, as Go's
//! client). Otherwise — the first lock of a name on a session, other writes in between, a key
//! left behind by a guard dropped outside a runtime — one `KV/Range(key, keys only)` reads `c`.
//!
//! # Auth: one user at a time
//!
//! With auth enabled, do not let two users wait on this service at once; use
//! [`super::RecipeLock`] instead. etcd runs every `Lock/Lock` through one client inside the
//! server, and that client's single watch stream is permission-checked as the user whose wait
//! opened it (etcd issue 17502, reported for 3.4 and 3.5, closed without a fix). So while user1
//! waits on a lock under its prefix, user2's `Lock/Lock` that has to wait under its own
//! permitted prefix fails with `permission denied` (sent as gRPC code `Unknown` wrapping Go's
//! status text; read as the relayed code, so [`crate::Error::is_permission_denied`] is true),
//! and on etcd 3.5.1 user1's wait then stays
//! stuck after its holder lets go. Uncontended locks, a single user, or users that never wait
//! at the same moment are unaffected. The recipe waits on the caller's own client and token,
//! so each user waits under its own permissions. `tests/auth.rs` pins this on both versions.

use crate::client::Retry;
use crate::error::Result;
use crate::kv::GetOptions;
use crate::namespace;
use crate::proto::v3lockpb as pb;
use crate::session::Session;

use super::guard::{Flavour, LockGuard};
use super::owned::{key_gone_error, OwnedKey};
use super::{key_for, prefix_for, Locker};
use crate::support::BoxFuture;

pub(crate) const LOCK: &str = "/v3lockpb.Lock/Lock";

/// etcd's server-side lock service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceLock;

impl ServiceLock {
    /// A service locker.
    pub fn new() -> Self {
        ServiceLock
    }
}

impl Locker for ServiceLock {
    /// Sends `Lock/Lock{name, lease}` (no request timeout: it blocks server-side until the lock
    /// is ours), then `KV/Range(key)` for the fencing token unless the answer's header provably
    /// gives it (see the module docs). A dropped call is cancelled on the server, which then
    /// deletes its waiter key; the key is also deleted from here in case the server had already
    /// granted it: one `KV/Range(key)` reads its create revision, then `KV/Txn If
    /// create_revision(key) == that Then DeleteRange(key)`.
    async fn lock(&self, session: &Session, name: impl AsRef<[u8]> + Send) -> Result<LockGuard> {
        lock(session, name.as_ref()).await
    }

    /// Not a `Lock/Lock` call: etcd's `Lock` service has no try, and a `Lock/Lock` cancelled
    /// after a short deadline is a wait that was abandoned, whose cleanup is the server's plain
    /// delete (see the module docs). Instead the recipe's try, on the same key layout the
    /// server uses: one `KV/Txn` that puts `NAME/<lease hex>` and reads the oldest key, and,
    /// when the lock is held elsewhere, one conditional `KV/Txn` delete of our key, then
    /// [`crate::Error::Locked`]. A lock taken this way excludes the service's waiters exactly
    /// as one taken with `Lock/Lock` does (the server waits for older keys under `NAME/`), and
    /// its guard releases the same way.
    async fn try_lock(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
    ) -> Result<LockGuard> {
        super::recipe::try_lock(session, name.as_ref(), Flavour::Service).await
    }

    fn flavour(&self) -> &'static str {
        "service"
    }
}

/// [`Locker::lock`] of the service flavour. Not generic and boxed: its state machine, and the
/// ones it awaits, are compiled once, in this crate, whatever name type callers pass.
fn lock<'a>(session: &'a Session, name: &'a [u8]) -> BoxFuture<'a, Result<LockGuard>> {
    Box::pin(async move {
        let prefix = prefix_for(name)?;
        let claim = session.claim(name).await?;
        if session.is_lost() {
            return Err(session.lost_error());
        }
        let client = session.client();
        let absent_before = claim.absent_before();
        let req = pb::LockRequest {
            name: name.to_vec(),
            lease: session.lease(),
        };
        let req = namespace::lock_request(client.namespace(), req);
        let mut owned = OwnedKey::new(key_for(&prefix, session.lease()), claim);
        let call = client.unary_timeout(LOCK, Retry::NotSent, None, req);
        let lost = session.lost();
        let response = tokio::select! {
            r = call => r,
            _ = lost => return Err(session.lost_error()),
        };
        let (key, h) = match response {
            Ok(r) => {
                let h = r.header.as_ref().map_or(0, |h| h.revision);
                (namespace::lock_response_key(client.namespace(), r.key), h)
            }
            Err(e) if e.is_lease_not_found() => {
                owned.gone();
                return Err(session.lost_error());
            }
            Err(e) => return Err(e),
        };
        // See the module docs: `c == h` when the key was absent at `h - 1`.
        let token = match absent_before.filter(|r| h == r + 1) {
            Some(_) => h,
            None => {
                let found = client
                    .get_with(key.clone(), GetOptions::new().with_keys_only())
                    .await?;
                let Some(token) = found.first().map(|kv| kv.create_revision) else {
                    owned.gone();
                    return Err(key_gone_error(session, &key).await);
                };
                token
            }
        };
        owned.set_token(token);
        Ok(LockGuard::new(
            name.to_vec(),
            key,
            token,
            session.clone(),
            Flavour::Service,
            owned,
        ))
    })
}
