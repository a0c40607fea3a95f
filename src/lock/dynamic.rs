//! Lock flavours chosen at run time: [`DynLocker`], the object-safe twin of [`Locker`].
//!
//! [`Locker`] returns `impl Future` from its methods, which keeps the recipe's hot path free of
//! allocations but makes `dyn Locker` impossible. [`DynLocker`] has the same methods returning
//! boxed futures; every `Locker + Clone + 'static` implements it, and `Box<dyn DynLocker>`
//! (also `Arc<dyn DynLocker>`, `&dyn DynLocker`) implements [`Locker`] again, so code written
//! against `L: Locker` takes a flavour read from configuration unchanged. The wire traffic is
//! the wrapped flavour's own: boxing adds one allocation per call, no RPC.
//!
//! Why a trait object rather than an enum over the two flavours: an enum is closed (a user's
//! own `Locker`, or a test double, cannot join it), while `Vec<Box<dyn DynLocker>>` holds any
//! mix.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::session::Session;

use super::{LockGuard, Locker, RecipeLock, ServiceLock};

/// A boxed `Send` future, as returned by the object-safe traits [`DynLocker`] and
/// [`crate::election::DynElector`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Locker`]: same operations, same RPCs, boxed futures.
///
/// Implemented for every `Locker + Clone + 'static` (wrap a locker that is not `Clone` in an
/// [`Arc`]); `Box<dyn DynLocker>` is `Clone` and implements [`Locker`]. Method names differ
/// from [`Locker`]'s so that both traits can be in scope without ambiguity.
///
/// ```no_run
/// # async fn demo() -> Result<(), etcd_lock::Error> {
/// use etcd_lock::lock::{self, DynLocker, Locker};
/// use etcd_lock::{Client, Session};
///
/// let client = Client::connect(["127.0.0.1:2379"]).await?;
/// let session = Session::new(&client).await?;
/// // e.g. from a configuration file: "recipe" or "service"
/// let locker: Box<dyn DynLocker> = lock::locker_for("service")?;
/// let guard = locker.lock(&session, "jobs/nightly").await?;
/// locker.unlock(guard).await?;
/// // Once, without waiting: `Error::Locked` when someone else holds it.
/// match locker.try_lock(&session, "jobs/nightly").await {
///     Ok(guard) => guard.unlock().await?,
///     Err(etcd_lock::Error::Locked { .. }) => println!("busy"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
pub trait DynLocker: Send + Sync {
    /// [`Locker::lock`], boxed: the wrapped flavour's RPCs (`KV/Txn` and a prefix watch for
    /// the recipe, `Lock/Lock` for the service).
    fn lock_boxed<'a>(
        &'a self,
        session: &'a Session,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<LockGuard>>;

    /// [`Locker::try_lock`], boxed: two `KV/Txn`s at most, for both flavours (see there).
    fn try_lock_boxed<'a>(
        &'a self,
        session: &'a Session,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<LockGuard>>;

    /// [`Locker::unlock`], boxed (`KV/DeleteRange` or `Lock/Unlock`, by flavour).
    fn unlock_boxed(&self, guard: LockGuard) -> BoxFuture<'_, Result<()>>;

    /// [`Locker::flavour`]: `recipe` or `service` for this crate's lockers. No RPC.
    fn flavour_name(&self) -> &'static str;

    /// A boxed copy of this locker (what makes `Box<dyn DynLocker>` `Clone`). No RPC.
    fn clone_boxed(&self) -> Box<dyn DynLocker>;
}

impl<L: Locker + Clone + 'static> DynLocker for L {
    fn lock_boxed<'a>(
        &'a self,
        session: &'a Session,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<LockGuard>> {
        Box::pin(Locker::lock(self, session, name))
    }

    fn try_lock_boxed<'a>(
        &'a self,
        session: &'a Session,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<LockGuard>> {
        Box::pin(Locker::try_lock(self, session, name))
    }

    fn unlock_boxed(&self, guard: LockGuard) -> BoxFuture<'_, Result<()>> {
        Box::pin(Locker::unlock(self, guard))
    }

    fn flavour_name(&self) -> &'static str {
        Locker::flavour(self)
    }

    fn clone_boxed(&self) -> Box<dyn DynLocker> {
        Box::new(self.clone())
    }
}

impl Locker for dyn DynLocker {
    /// The wrapped flavour's [`Locker::lock`].
    async fn lock(&self, session: &Session, name: impl AsRef<[u8]> + Send) -> Result<LockGuard> {
        // `async`: the future captures each borrow on its own; the boxed future alone would
        // need one lifetime shared by all of them.
        self.lock_boxed(session, name.as_ref()).await
    }

    /// The wrapped flavour's [`Locker::try_lock`].
    async fn try_lock(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
    ) -> Result<LockGuard> {
        self.try_lock_boxed(session, name.as_ref()).await
    }

    /// The wrapped flavour's [`Locker::unlock`].
    fn unlock(&self, guard: LockGuard) -> impl Future<Output = Result<()>> + Send {
        self.unlock_boxed(guard)
    }

    fn flavour(&self) -> &'static str {
        self.flavour_name()
    }
}

impl Clone for Box<dyn DynLocker> {
    fn clone(&self) -> Self {
        // `(**self)`: on the Box itself this would pick the blanket impl and recurse.
        (**self).clone_boxed()
    }
}

impl std::fmt::Debug for dyn DynLocker + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DynLocker")
            .field(&self.flavour_name())
            .finish()
    }
}

/// Implements [`Locker`] for a pointer type by forwarding to the pointee.
macro_rules! forward_locker {
    ($($ptr:ty),+) => {$(
        /// Forwards to the pointee (so `Box<dyn DynLocker>`, `Arc<dyn DynLocker>` shared
        /// across tasks, and `&dyn DynLocker` are [`Locker`]s).
        impl<L: Locker + ?Sized> Locker for $ptr {
            fn lock(
                &self,
                session: &Session,
                name: impl AsRef<[u8]> + Send,
            ) -> impl Future<Output = Result<LockGuard>> + Send {
                (**self).lock(session, name)
            }

            fn try_lock(
                &self,
                session: &Session,
                name: impl AsRef<[u8]> + Send,
            ) -> impl Future<Output = Result<LockGuard>> + Send {
                (**self).try_lock(session, name)
            }

            fn lock_timeout(
                &self,
                session: &Session,
                name: impl AsRef<[u8]> + Send,
                timeout: std::time::Duration,
            ) -> impl Future<Output = Result<LockGuard>> + Send {
                (**self).lock_timeout(session, name, timeout)
            }

            fn unlock(&self, guard: LockGuard) -> impl Future<Output = Result<()>> + Send {
                (**self).unlock(guard)
            }

            fn flavour(&self) -> &'static str {
                (**self).flavour()
            }
        }
    )+};
}

forward_locker!(Box<L>, Arc<L>, &L);

/// The names [`locker_for`] accepts, in the order [`lockers`] returns them.
pub const FLAVOURS: [&str; 2] = ["recipe", "service"];

/// The locker named `flavour` (`recipe` or `service`, any case, surrounding blanks ignored),
/// boxed. No RPC. Fails with [`Error::InvalidArgument`] (argument `flavour`) for any other
/// name.
pub fn locker_for(flavour: &str) -> Result<Box<dyn DynLocker>> {
    match flavour.trim().to_ascii_lowercase().as_str() {
        "recipe" => Ok(Box::new(RecipeLock::new())),
        "service" => Ok(Box::new(ServiceLock::new())),
        _ => Err(Error::invalid(
            "flavour",
            format!("{flavour:?}: expected one of {}", FLAVOURS.join(", ")),
        )),
    }
}

/// Both lock flavours, boxed, in the order of [`FLAVOURS`]. No RPC.
pub fn lockers() -> Vec<Box<dyn DynLocker>> {
    vec![Box::new(RecipeLock::new()), Box::new(ServiceLock::new())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_flavours() {
        for name in FLAVOURS {
            let locker = locker_for(&format!(" {} ", name.to_uppercase()));
            assert_eq!(locker.map(|l| l.flavour()).ok(), Some(name));
        }
        let names: Vec<_> = lockers().iter().map(|l| l.flavour()).collect();
        assert_eq!(names, FLAVOURS);
        let cloned = lockers().remove(1).clone();
        assert_eq!(cloned.flavour_name(), "service");
        assert!(matches!(
            locker_for("mutex"),
            Err(Error::InvalidArgument {
                argument: "flavour",
                ..
            })
        ));
    }
}
