//! Election flavours chosen at run time: [`DynElector`], the object-safe twin of [`Elector`].
//!
//! Same shape as [`crate::lock::DynLocker`]: boxed futures, a blanket implementation for every
//! `Elector + Clone + 'static`, and `Box<dyn DynElector>` (also `Arc<..>`, `&..`) implementing
//! [`Elector`] again. The RPCs are the wrapped flavour's own.

use std::future::Future;
use std::sync::Arc;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::lock::BoxFuture;
use crate::session::Session;

use super::{Elector, LeaderInfo, Leadership, Observer, RecipeElection, ServiceElection};

/// The object-safe form of [`Elector`]: same operations, same RPCs, boxed futures.
///
/// Implemented for every `Elector + Clone + 'static`; `Box<dyn DynElector>` is `Clone` and
/// implements [`Elector`]. Method names differ from [`Elector`]'s so that both traits can be in
/// scope without ambiguity.
///
/// ```no_run
/// # async fn demo() -> Result<(), etcd_lock::Error> {
/// use etcd_lock::election::{self, DynElector, Elector};
/// use etcd_lock::{Client, Session};
///
/// let client = Client::connect(["127.0.0.1:2379"]).await?;
/// let session = Session::new(&client).await?;
/// let elector: Box<dyn DynElector> = election::elector_for("recipe")?;
/// let leadership = elector.campaign(&session, b"svc/primary", b"10.0.0.7").await?;
/// elector.resign(leadership).await?;
/// # Ok(()) }
/// ```
pub trait DynElector: Send + Sync {
    /// [`Elector::campaign`], boxed (`KV/Txn` + prefix watch, or `Election/Campaign`).
    fn campaign_boxed<'a>(
        &'a self,
        session: &'a Session,
        name: &'a [u8],
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<Leadership>>;

    /// [`Elector::proclaim`], boxed (`KV/Txn` or `Election/Proclaim`).
    fn proclaim_boxed<'a>(
        &'a self,
        leadership: &'a mut Leadership,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<()>>;

    /// [`Elector::resign`], boxed (`KV/Txn` or `Election/Resign`).
    fn resign_boxed(&self, leadership: Leadership) -> BoxFuture<'_, Result<()>>;

    /// [`Elector::leader`], boxed (`KV/Range` or `Election/Leader`).
    fn leader_boxed<'a>(
        &'a self,
        client: &'a Client,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<LeaderInfo>>>;

    /// [`Elector::observe`], boxed (`KV/Range` + `Watch/Watch`, or `Election/Observe`).
    fn observe_boxed<'a>(
        &'a self,
        client: &'a Client,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<Observer>>;

    /// [`Elector::flavour`]: `recipe` or `service` for this crate's electors. No RPC.
    fn flavour_name(&self) -> &'static str;

    /// A boxed copy of this elector (what makes `Box<dyn DynElector>` `Clone`). No RPC.
    fn clone_boxed(&self) -> Box<dyn DynElector>;
}

impl<E: Elector + Clone + 'static> DynElector for E {
    fn campaign_boxed<'a>(
        &'a self,
        session: &'a Session,
        name: &'a [u8],
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<Leadership>> {
        Box::pin(Elector::campaign(self, session, name, value))
    }

    fn proclaim_boxed<'a>(
        &'a self,
        leadership: &'a mut Leadership,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Elector::proclaim(self, leadership, value))
    }

    fn resign_boxed(&self, leadership: Leadership) -> BoxFuture<'_, Result<()>> {
        Box::pin(Elector::resign(self, leadership))
    }

    fn leader_boxed<'a>(
        &'a self,
        client: &'a Client,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<LeaderInfo>>> {
        Box::pin(Elector::leader(self, client, name))
    }

    fn observe_boxed<'a>(
        &'a self,
        client: &'a Client,
        name: &'a [u8],
    ) -> BoxFuture<'a, Result<Observer>> {
        Box::pin(Elector::observe(self, client, name))
    }

    fn flavour_name(&self) -> &'static str {
        Elector::flavour(self)
    }

    fn clone_boxed(&self) -> Box<dyn DynElector> {
        Box::new(self.clone())
    }
}

impl Elector for dyn DynElector {
    async fn campaign(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
        value: &[u8],
    ) -> Result<Leadership> {
        let name = name.as_ref();
        // `async`: the future captures each borrow on its own; the boxed future alone would
        // need one lifetime shared by all of them.
        self.campaign_boxed(session, name, value).await
    }

    async fn proclaim(&self, leadership: &mut Leadership, value: &[u8]) -> Result<()> {
        self.proclaim_boxed(leadership, value).await
    }

    fn resign(&self, leadership: Leadership) -> impl Future<Output = Result<()>> + Send {
        self.resign_boxed(leadership)
    }

    async fn leader(
        &self,
        client: &Client,
        name: impl AsRef<[u8]> + Send,
    ) -> Result<Option<LeaderInfo>> {
        let name = name.as_ref();
        self.leader_boxed(client, name).await
    }

    async fn observe(&self, client: &Client, name: impl AsRef<[u8]> + Send) -> Result<Observer> {
        let name = name.as_ref();
        self.observe_boxed(client, name).await
    }

    fn flavour(&self) -> &'static str {
        self.flavour_name()
    }
}

impl Clone for Box<dyn DynElector> {
    fn clone(&self) -> Self {
        // `(**self)`: on the Box itself this would pick the blanket impl and recurse.
        (**self).clone_boxed()
    }
}

impl std::fmt::Debug for dyn DynElector + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DynElector")
            .field(&self.flavour_name())
            .finish()
    }
}

/// Implements [`Elector`] for a pointer type by forwarding to the pointee.
macro_rules! forward_elector {
    ($($ptr:ty),+) => {$(
        /// Forwards to the pointee (so `Box<dyn DynElector>` and friends are [`Elector`]s).
        impl<E: Elector + ?Sized> Elector for $ptr {
            fn campaign(
                &self,
                session: &Session,
                name: impl AsRef<[u8]> + Send,
                value: &[u8],
            ) -> impl Future<Output = Result<Leadership>> + Send {
                (**self).campaign(session, name, value)
            }

            fn proclaim(
                &self,
                leadership: &mut Leadership,
                value: &[u8],
            ) -> impl Future<Output = Result<()>> + Send {
                (**self).proclaim(leadership, value)
            }

            fn resign(&self, leadership: Leadership) -> impl Future<Output = Result<()>> + Send {
                (**self).resign(leadership)
            }

            fn leader(
                &self,
                client: &Client,
                name: impl AsRef<[u8]> + Send,
            ) -> impl Future<Output = Result<Option<LeaderInfo>>> + Send {
                (**self).leader(client, name)
            }

            fn observe(
                &self,
                client: &Client,
                name: impl AsRef<[u8]> + Send,
            ) -> impl Future<Output = Result<Observer>> + Send {
                (**self).observe(client, name)
            }

            fn flavour(&self) -> &'static str {
                (**self).flavour()
            }
        }
    )+};
}

forward_elector!(Box<E>, Arc<E>, &E);

/// The names [`elector_for`] accepts, in the order [`electors`] returns them.
pub const FLAVOURS: [&str; 2] = ["recipe", "service"];

/// The elector named `flavour` (`recipe` or `service`, any case, surrounding blanks ignored),
/// boxed. No RPC. Fails with [`Error::InvalidArgument`] (argument `flavour`) for any other
/// name.
pub fn elector_for(flavour: &str) -> Result<Box<dyn DynElector>> {
    match flavour.trim().to_ascii_lowercase().as_str() {
        "recipe" => Ok(Box::new(RecipeElection::new())),
        "service" => Ok(Box::new(ServiceElection::new())),
        _ => Err(Error::invalid(
            "flavour",
            format!("{flavour:?}: expected one of {}", FLAVOURS.join(", ")),
        )),
    }
}

/// Both election flavours, boxed, in the order of [`FLAVOURS`]. No RPC.
pub fn electors() -> Vec<Box<dyn DynElector>> {
    vec![
        Box::new(RecipeElection::new()),
        Box::new(ServiceElection::new()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_flavours() {
        for name in FLAVOURS {
            let elector = elector_for(name);
            assert_eq!(elector.map(|e| e.flavour()).ok(), Some(name));
        }
        let names: Vec<_> = electors().iter().map(|e| e.clone().flavour()).collect();
        assert_eq!(names, FLAVOURS);
        assert!(matches!(
            elector_for(""),
            Err(Error::InvalidArgument {
                argument: "flavour",
                ..
            })
        ));
    }
}
