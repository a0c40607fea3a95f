//! Leader election, two ways behind one [`Elector`] trait.
//!
//! * [`RecipeElection`]: the client-side recipe on KV/Lease/Watch/Txn, with the key layout and
//!   order of Go's `concurrency.Election` (so Go services, `etcdctl elect` and this crate take
//!   part in the same elections).
//! * [`ServiceElection`]: etcd's server-side `v3electionpb.Election` service (`Campaign`,
//!   `Proclaim`, `Leader`, `Observe`, `Resign`), which runs the same recipe inside the server.
//!
//! To pick the flavour at run time, use [`DynElector`]: [`elector_for`] returns a
//! `Box<dyn DynElector>`, which is itself an [`Elector`].
//!
//! Every candidate puts a key `NAME/<lease in lowercase hex>` attached to its session's lease,
//! holding the value it wants to publish; the leader is the key with the smallest create
//! revision under `NAME/`. A [`Leadership`] carries that key and its create revision, which
//! fences writes like a lock's token ([`Leadership::txn`]). Leadership ends when the key is
//! deleted: [`Leadership::resign`], the session's lease expiring (crash), or a revoke.
//!
//! "Not the leader any more" is reported as [`Error::NotHeld`] (with the leader key), or as
//! [`Error::SessionLost`] when the reason is that the session's lease is gone.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_lock::Error> {
//! use etcd_lock::{Client, Session, election::{Elector, RecipeElection}};
//!
//! let client = Client::connect(["127.0.0.1:2379"]).await?;
//! let session = Session::new(&client).await?;
//! let election = RecipeElection::new();
//! // Blocks until every older candidate is gone; wrap it in a timeout to bound the wait.
//! let mut leadership = election.campaign(&session, b"/svc/primary", b"10.0.0.7:8080").await?;
//! leadership.proclaim("10.0.0.7:9090").await?;
//! let now = election.leader(&client, b"/svc/primary").await?;
//! assert_eq!(now.map(|l| l.value), Some(b"10.0.0.7:9090".to_vec()));
//! leadership.resign().await?;
//! # Ok(()) }
//! ```

mod dynamic;
mod leadership;
mod observe;
mod recipe;
mod resume;
mod service;

pub use dynamic::{elector_for, electors, DynElector, FLAVOURS};
pub use leadership::Leadership;
pub use observe::Observer;
pub use recipe::RecipeElection;
pub use service::ServiceElection;

use std::future::Future;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::proto::mvccpb::KeyValue;
use crate::session::{NameClaim, Session};

/// Longest election name accepted (names are key prefixes; same limit as lock names).
pub const MAX_NAME_LEN: usize = crate::lock::MAX_NAME_LEN;

/// Largest value a candidate may publish (etcd refuses requests over 1.5 MiB by default).
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// The current leader of an election: its key and the value it published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderInfo {
    /// The leader key, `NAME/<lease hex>`.
    pub key: Vec<u8>,
    /// The value the leader published (at campaign or with its latest proclaim).
    pub value: Vec<u8>,
    /// The key's create revision: identifies this leadership, strictly increases from one
    /// leader to the next.
    pub create_revision: i64,
    /// The revision of the key's last write (the campaign or the latest proclaim).
    pub mod_revision: i64,
    /// The lease the leader key is attached to.
    pub lease: i64,
}

impl LeaderInfo {
    /// The leader key as text (lossy for non-UTF-8 names).
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
    /// The published value as text (lossy for non-UTF-8 values).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
    /// True when `other` describes the same leadership with the same published value.
    pub(crate) fn same_state(&self, other: &LeaderInfo) -> bool {
        self.create_revision == other.create_revision
            && self.key == other.key
            && self.value == other.value
    }
}

impl From<KeyValue> for LeaderInfo {
    fn from(kv: KeyValue) -> Self {
        LeaderInfo {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            lease: kv.lease,
        }
    }
}

/// A way to run leader elections.
///
/// Both implementations use the same keys, so candidates of either flavour (and Go's
/// `concurrency.Election`, `etcdctl elect`) line up in one queue per name. Names are bytes:
/// anything that is `AsRef<[u8]>` (`&str`, `String`, `b"..."`, `Vec<u8>`).
pub trait Elector: Send + Sync {
    /// Becomes a candidate in election `name` with `value`, and waits until `session` leads.
    /// Wrap the future in a timeout to bound the wait; dropping it removes the candidate key.
    /// Fails with [`Error::InvalidArgument`] for an empty or oversized name or an oversized
    /// value, [`Error::AlreadyHeld`] when this session already campaigns for `name`, and
    /// [`Error::SessionLost`] when the session's lease is gone.
    fn campaign(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
        value: &[u8],
    ) -> impl Future<Output = Result<Leadership>> + Send;

    /// Publishes a new value as leader. Same as [`Leadership::proclaim`].
    fn proclaim(
        &self,
        leadership: &mut Leadership,
        value: &[u8],
    ) -> impl Future<Output = Result<()>> + Send {
        leadership.proclaim(value.to_vec())
    }

    /// Gives up leadership (or candidacy). Same as [`Leadership::resign`].
    fn resign(&self, leadership: Leadership) -> impl Future<Output = Result<()>> + Send {
        leadership.resign()
    }

    /// The current leader of `name` and its value, or `None` when nobody campaigns.
    fn leader(
        &self,
        client: &Client,
        name: impl AsRef<[u8]> + Send,
    ) -> impl Future<Output = Result<Option<LeaderInfo>>> + Send;

    /// Follows election `name`: the returned [`Observer`] yields the current leader (if any),
    /// then every later leader, and again whenever a leader proclaims a different value —
    /// each state once, in order (create revisions never go down).
    fn observe(
        &self,
        client: &Client,
        name: impl AsRef<[u8]> + Send,
    ) -> impl Future<Output = Result<Observer>> + Send;

    /// A short name of the implementation (`recipe` or `service`), for reports.
    fn flavour(&self) -> &'static str;
}

/// Checks an election name and returns the key prefix `NAME/`.
pub(crate) fn prefix_for(name: &[u8]) -> Result<Vec<u8>> {
    crate::lock::named_prefix(name, "an election name must not be empty")
}

/// Refuses values over [`MAX_VALUE_LEN`] (empty values are allowed, as in Go).
pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::invalid(
            "value",
            format!(
                "{} bytes is longer than the {MAX_VALUE_LEN}-byte limit",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// The start both flavours' campaigns share, before anything is sent: the name and value
/// checked, then this session's claim on the name (waiting for a background delete of its
/// earlier key there, see [`Session::claim`]); a session already lost fails here. Returns
/// the key prefix `NAME/` and the claim.
pub(crate) async fn start_campaign(
    session: &Session,
    name: &[u8],
    value: &[u8],
) -> Result<(Vec<u8>, NameClaim)> {
    let prefix = prefix_for(name)?;
    check_value(value)?;
    let claim = session.claim(name).await?;
    if session.is_lost() {
        return Err(session.lost_error());
    }
    Ok((prefix, claim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        assert_eq!(prefix_for(b"e").unwrap_or_default(), b"e/");
        assert!(matches!(
            prefix_for(b""),
            Err(Error::InvalidArgument {
                argument: "name",
                ..
            })
        ));
        assert!(prefix_for(&vec![b'a'; MAX_NAME_LEN + 1]).is_err());
        assert!(check_value(b"").is_ok());
        assert!(check_value(&vec![0; MAX_VALUE_LEN]).is_ok());
        assert!(matches!(
            check_value(&vec![0; MAX_VALUE_LEN + 1]),
            Err(Error::InvalidArgument {
                argument: "value",
                ..
            })
        ));
    }

    #[test]
    fn same_state_ignores_mod_revision() {
        let a = LeaderInfo {
            key: b"e/1".to_vec(),
            value: b"v".to_vec(),
            create_revision: 5,
            mod_revision: 5,
            lease: 1,
        };
        let mut b = a.clone();
        b.mod_revision = 9;
        assert!(a.same_state(&b));
        b.value = b"w".to_vec();
        assert!(!a.same_state(&b));
    }
}
