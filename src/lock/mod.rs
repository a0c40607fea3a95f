//! Distributed locks, two ways behind one [`Locker`] trait.
//!
//! * [`RecipeLock`]: the client-side recipe on KV/Lease/Watch/Txn, with the key layout and
//!   waiting order of Go's `concurrency.Mutex` (so Go services, `etcdctl lock` and this crate
//!   exclude each other).
//! * [`ServiceLock`]: etcd's server-side `v3lockpb.Lock/Lock` and `Lock/Unlock`.
//!
//! To pick the flavour at run time (from configuration, a command-line flag), use
//! [`DynLocker`]: [`locker_for`] returns a `Box<dyn DynLocker>`, which is itself a [`Locker`].
//!
//! Both put a key `NAME/<lease in lowercase hex>` attached to the session's lease; the holder
//! is the key with the smallest create revision under `NAME/`. A [`LockGuard`] carries that key
//! and its create revision, the **fencing token**: it strictly increases from one holder to the
//! next, and [`LockGuard::txn`] makes etcd itself refuse a write from a holder that lost the lock.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_lock::Error> {
//! use std::time::Duration;
//! use etcd_lock::{Client, Session, lock::{Locker, RecipeLock}};
//!
//! let client = Client::connect(["127.0.0.1:2379"]).await?;
//! let session = Session::new(&client).await?;
//! let locker = RecipeLock::new();
//! // At most 15 s: then `Error::LockTimeout`, and the waiter's key is removed.
//! let guard = locker
//!     .lock_timeout(&session, "/com/lock/hello-boy", Duration::from_secs(15))
//!     .await?;
//! println!("holding {} with fencing token {}", guard.key_str(), guard.fencing_token());
//! guard.unlock().await?;
//! # Ok(()) }
//! ```

mod dynamic;
mod guard;
mod owned;
pub(crate) mod queue;
mod recipe;
mod service;
pub(crate) mod waiters;

pub use dynamic::{locker_for, lockers, BoxFuture, DynLocker, FLAVOURS};
pub use guard::LockGuard;
// Shared with `crate::election` (same key layout, same cleanup rules).
pub(crate) use owned::{delete_if_created_at, key_gone_error, OwnedKey, Released};
pub use recipe::RecipeLock;
pub use service::ServiceLock;

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::session::Session;

/// What one client's lock and election waiters hold now and how their waits went so far
/// (see [`stats`]). Counted over the client and all its clones and namespaced views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LockStats {
    /// Lock or election prefixes with per-name state on this client: waiters, or a prefix
    /// watch kept open for reuse. Bounded by the names contended at once, not by the names
    /// ever used: an idle prefix watch closes after 30 s, and at most 64 idle ones are kept.
    pub prefixes: usize,
    /// Prefix watches open now (each is one watch on the client's shared `Watch/Watch` stream).
    pub prefix_watches: usize,
    /// Locks and campaigns being taken right now.
    pub joins_in_progress: usize,
    /// Waits that took no RPC after the join txn (the fast path: DELETEs seen on the watch).
    pub fast_waits: u64,
    /// Waits that fell back to re-checking with `KV/Range`s (first wait on a prefix, a queue
    /// longer than the first txn lists, a restarted watch, forgotten DELETEs).
    pub slow_waits: u64,
    /// Waits of a lone waiter far back in a long queue, which watched only its predecessor's
    /// key and re-checked once with a `KV/Range` when it went (as Go's `Mutex` does).
    pub far_waits: u64,
    /// Prefix watches opened so far (`WatchCreateRequest`s sent for them).
    pub watches_opened: u64,
}

/// The lock waiting state of `client` (no RPC): see [`LockStats`]. Use it to check that a
/// long-running process does not accumulate watches or per-name state, or how many waits took
/// the slow path.
pub fn stats(client: &crate::Client) -> LockStats {
    let Some(registry) = waiters::Registry::existing(client) else {
        return LockStats::default();
    };
    let s = registry.snapshot();
    LockStats {
        prefixes: s.routers,
        prefix_watches: s.watches_open,
        joins_in_progress: s.joins_in_progress,
        fast_waits: s.fast_waits,
        slow_waits: s.slow_waits,
        far_waits: s.far_waits,
        watches_opened: s.watches_opened,
    }
}

/// Longest lock name accepted (etcd's default request limit is 1.5 MiB; names are keys).
pub const MAX_NAME_LEN: usize = 32 * 1024;

/// A way to take a named lock for a session.
///
/// Names are bytes: anything that is `AsRef<[u8]>` (`&str`, `String`, `b"..."`, `Vec<u8>`).
pub trait Locker: Send + Sync {
    /// Waits until `session` holds lock `name` and returns its guard. The wait has no bound of
    /// its own: use [`Locker::lock_timeout`] for one, or drop the future (dropping it removes
    /// the waiter's key).
    fn lock(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
    ) -> impl Future<Output = Result<LockGuard>> + Send;

    /// Takes lock `name` only if it is free right now, without waiting: [`Error::Locked`] when
    /// another session's key is older than ours. Both flavours send the same requests, one
    /// `KV/Txn` that puts this session's key `NAME/<lease hex>` and reads the oldest key under
    /// `NAME/`, then, when ours is not the oldest, one `KV/Txn If create_revision(key) == token
    /// Then DeleteRange(key)` that removes it again. etcd's `Lock` service has no "try" call
    /// (a `Lock/Lock` with a short deadline is a wait that was cancelled, not a try), so the
    /// service flavour tries with these KV requests; they work on the service's keys because
    /// the server runs the same recipe on the same key layout.
    fn try_lock(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
    ) -> impl Future<Output = Result<LockGuard>> + Send;

    /// [`Locker::lock`], bounded: waits at most `timeout` and then fails with
    /// [`Error::LockTimeout`] (for which [`Error::is_timeout`] is true). The waiter's key is
    /// then removed as for a dropped [`Locker::lock`] (in the background, by a delete
    /// conditional on its create revision, while the session keeps this name claimed so a new
    /// `lock` of it waits for that delete).
    fn lock_timeout(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
        timeout: Duration,
    ) -> impl Future<Output = Result<LockGuard>> + Send {
        let shown = String::from_utf8_lossy(name.as_ref()).into_owned();
        let wait = self.lock(session, name);
        async move {
            match tokio::time::timeout(timeout, wait).await {
                Ok(taken) => taken,
                Err(_) => Err(Error::LockTimeout {
                    name: shown,
                    after: timeout,
                }),
            }
        }
    }

    /// Releases a lock taken with [`Locker::lock`]. Same as [`LockGuard::unlock`].
    fn unlock(&self, guard: LockGuard) -> impl Future<Output = Result<()>> + Send {
        guard.unlock()
    }

    /// A short name of the implementation (`recipe` or `service`), for reports.
    fn flavour(&self) -> &'static str;
}

/// Checks a lock name and returns the key prefix `NAME/`.
pub(crate) fn prefix_for(name: &[u8]) -> Result<Vec<u8>> {
    named_prefix(name, "a lock name must not be empty")
}

/// Checks a lock or election name (non-empty, at most [`MAX_NAME_LEN`] bytes) and returns the
/// key prefix `NAME/`; `empty` is the message for an empty name.
pub(crate) fn named_prefix(name: &[u8], empty: &str) -> Result<Vec<u8>> {
    if name.is_empty() {
        return Err(Error::invalid("name", empty));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            "name",
            format!(
                "{} bytes is longer than the {MAX_NAME_LEN}-byte limit",
                name.len()
            ),
        ));
    }
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    Ok(prefix)
}

/// The key a session owns under a lock: `NAME/<lease as lowercase hex>` (Go's layout).
pub(crate) fn key_for(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_matches_go() {
        let prefix = prefix_for(b"/com/lock/hello-boy").unwrap_or_default();
        assert_eq!(prefix, b"/com/lock/hello-boy/");
        assert_eq!(
            key_for(&prefix, 0x694d7a3f1c2b0e05),
            b"/com/lock/hello-boy/694d7a3f1c2b0e05"
        );
        assert!(prefix_for(b"").is_err());
        assert!(prefix_for(&vec![b'a'; MAX_NAME_LEN + 1]).is_err());
    }
}
