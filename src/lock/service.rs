//! The server-side lock: etcd's `v3lockpb.Lock` service (`Lock/Lock`, `Lock/Unlock`).
//!
//! etcd runs the same recipe as Go's `concurrency.Mutex` inside the server, with the same key
//! layout, so this flavour and [`super::RecipeLock`] exclude each other. `Lock/Lock` blocks on
//! the server until the lock is held, then returns the key and a header.
//!
//! # The fencing token without an extra RPC
//!
//! The token is the key's create revision `c`. etcd's answer carries only a header revision
//! `h`: when the server did not have to wait, `h` is the revision of the txn that put the key,
//! so `h == c`; when it waited, `h` comes from a later read and `h > c`. The answer alone cannot
//! tell which, so this flavour proves it from what the client saw before sending:
//!
//! * `r0` is the highest revision this client saw in a `Lock/Lock` or `Lock/Unlock` answer
//!   before the call went out. The store's revision was at least `r0` when it was sent.
//! * The session granted its own lease and never abandoned a call that could have put a key
//!   under it (`Session::keys_uncertain` is false), and its claim on the name means no earlier
//!   key of its own is left: so the key was put by this very call, after the send: `c > r0`.
//! * The answer was produced after the put: `c <= h`.
//!
//! So when `h == r0 + 1`, `c == h` and no RPC is needed: that is every cycle of a lock taken
//! and released over and over with nobody else writing in between (lockbench W1: 2 RPCs per
//! cycle, as Go's client). Otherwise one `KV/Range(key, keys only)` reads `c`, as before.
//!
//! # Auth: one user at a time
//!
//! With auth enabled, do not let two users wait on this service at once; use
//! [`super::RecipeLock`] instead. etcd runs every `Lock/Lock` through one client inside the
//! server, and that client's single watch stream is permission-checked as the user whose wait
//! opened it (etcd issue 17502, reported for 3.4 and 3.5, closed without a fix). So while user1
//! waits on a lock under its prefix, user2's `Lock/Lock` that has to wait under its own
//! permitted prefix fails with `permission denied` (gRPC code `Unknown` wrapping that text, so
//! [`crate::Error::is_permission_denied`] is false), and on etcd 3.5.1 user1's wait then stays
//! stuck after its holder lets go. Uncontended locks, a single user, or users that never wait
//! at the same moment are unaffected. The recipe waits on the caller's own client and token,
//! so each user waits under its own permissions. `tests/auth.rs` pins this on both versions.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::client::{Client, Grpc, Retry};
use crate::error::Result;
use crate::kv::GetOptions;
use crate::namespace;
use crate::proto::v3lockpb as pb;
use crate::proto::v3lockpb::lock_client::LockClient;
use crate::session::Session;

use super::guard::{Flavour, LockGuard};
use super::owned::{key_gone_error, OwnedKey};
use super::{key_for, prefix_for, Locker};

pub(crate) const LOCK: &str = "/v3lockpb.Lock/Lock";
pub(crate) const UNLOCK: &str = "/v3lockpb.Lock/Unlock";

/// etcd's server-side lock service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceLock;

impl ServiceLock {
    /// A service locker.
    pub fn new() -> Self {
        ServiceLock
    }
}

/// The highest revision this client saw in a `Lock/Lock` or `Lock/Unlock` answer (kept in the
/// client's extension slot, shared by its clones).
#[derive(Debug, Default)]
struct SeenRevision(AtomicI64);

impl SeenRevision {
    fn of(client: &Client) -> std::sync::Arc<SeenRevision> {
        client.extension(|_| SeenRevision::default())
    }
    fn saw(&self, header: Option<&crate::proto::etcdserverpb::ResponseHeader>) {
        if let Some(h) = header {
            self.0.fetch_max(h.revision, Ordering::SeqCst);
        }
    }
    fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// `Lock/Unlock{key}`.
pub(crate) async fn unlock_key(client: &Client, key: Vec<u8>) -> Result<()> {
    let req = namespace::unlock_request(client.namespace(), pb::UnlockRequest { key });
    let answer = client
        .unary(UNLOCK, Retry::NotSent, req, |ch, r| async move {
            LockClient::unary(ch).unlock(r).await
        })
        .await?;
    SeenRevision::of(client).saw(answer.header.as_ref());
    Ok(())
}

/// The fencing token read off the `Lock/Lock` answer's header revision `h`, when it provably
/// is the key's create revision (see the module docs): `r0` was read before the call was sent.
fn token_from_answer(session: &Session, r0: i64, h: i64) -> Option<i64> {
    (r0 > 0 && h == r0 + 1 && !session.keys_uncertain()).then_some(h)
}

impl Locker for ServiceLock {
    /// Sends `Lock/Lock{name, lease}` (no request timeout: it blocks server-side until the lock
    /// is ours), then `KV/Range(key)` for the fencing token unless the answer's header provably
    /// gives it (see the module docs). A dropped call is cancelled on the server, which then
    /// deletes its waiter key; the key is also deleted from here in case the server had
    /// already granted it.
    async fn lock(&self, session: &Session, name: &[u8]) -> Result<LockGuard> {
        let prefix = prefix_for(name)?;
        let claim = session.claim(name).await?;
        if session.is_lost() {
            return Err(session.lost_error());
        }
        let client = session.client();
        let mut owned = OwnedKey::new(key_for(&prefix, session.lease()), claim);
        let req = pb::LockRequest {
            name: name.to_vec(),
            lease: session.lease(),
        };
        let req = namespace::lock_request(client.namespace(), req);
        let seen = SeenRevision::of(client);
        // Read before sending: the store was at least this far when the call went out.
        let r0 = seen.get();
        let call = client.unary_timeout(LOCK, Retry::NotSent, None, req, |ch, r| async move {
            LockClient::unary(ch).lock(r).await
        });
        let lost = session.lost();
        let response = tokio::select! {
            r = call => r,
            _ = lost => return Err(session.lost_error()),
        };
        let (key, h) = match response {
            Ok(r) => {
                let h = r.header.as_ref().map_or(0, |h| h.revision);
                seen.saw(r.header.as_ref());
                (namespace::lock_response_key(client.namespace(), r.key), h)
            }
            Err(e) if e.is_lease_not_found() => {
                owned.gone();
                return Err(session.lost_error());
            }
            Err(e) => return Err(e),
        };
        let token = match token_from_answer(session, r0, h) {
            Some(token) => token,
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
    }

    fn flavour(&self) -> &'static str {
        "service"
    }
}
