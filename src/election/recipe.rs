//! The client-side election recipe, compatible with Go's `concurrency.Election`.
//!
//! Campaign, uncontended, is ONE `KV/Txn` (Go's txn plus the two reads that decide the rest):
//! ```text
//! If   create_revision(myKey) == 0
//! Then Put(myKey, value, lease), Range(prefix, sort create desc, limit 18, keys only)
//! Else Range(myKey),             Range(prefix, sort create asc, limit 1, keys only)
//! ```
//! (up to 1025 keys listed when other campaigns on the name are in progress on this client).
//! `myRev` is the txn's revision (Then) or myKey's create revision (Else; if that key holds
//! another value, one more guarded `KV/Txn` writes ours, as Go's Campaign does with Proclaim).
//! We lead when the oldest key under the prefix is ours; otherwise `lock::queue` waits
//! for every older key's DELETE on the client's long-lived prefix watch (shared with the locks),
//! with no RPC per wake-up on its fast path and one re-check `KV/Range` per wake-up on its slow path
//! (a lone candidate far back in a long queue watches only its predecessor's key instead).

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::{GetOptions, PutOptions, SortOrder, SortTarget};
use crate::lock::queue::{
    join_txn, older_keys, owner_rev, predecessor, range_kvs, Older, Place, Turn,
};
use crate::lock::waiters::{PrefixWatch, Registry};
use crate::lock::{key_for, key_gone_error, OwnedKey};
use crate::session::Session;
use crate::txn::{Compare, CompareOp, Txn, TxnOp};
use std::sync::Arc;

use super::leadership::{Flavour, Leadership};
use super::observe::{self, Observer};
use super::{prefix_for, start_campaign, Elector, LeaderInfo};
use crate::support::BoxFuture;

/// The client-side election recipe (Go `concurrency.Election` compatible). Stateless and cheap:
/// the per-prefix watch a candidate waits on belongs to the session's client.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecipeElection;

impl RecipeElection {
    /// A recipe elector.
    pub fn new() -> Self {
        RecipeElection
    }

    /// Takes back a leadership after a restart (Go's `concurrency.ResumeElection`): `session`
    /// runs on the lease the leader key was written with (adopt it with
    /// [`SessionOptions::with_lease`](crate::SessionOptions::with_lease), which keeps it alive),
    /// `key` and `revision` are [`Leadership::key`] and [`Leadership::revision`] (or the `key`
    /// and `rev` of [`Leadership::leader_key`]) saved by the process that won.
    ///
    /// Sends one read-only `KV/Txn`: `Range(key)` and `Range(NAME/, sort create asc, limit 1)`,
    /// and writes nothing. The key must still exist with that create revision and the session's
    /// lease, and be the oldest under `NAME/`; the value it holds becomes
    /// [`Leadership::value`]. Errors: [`Error::InvalidArgument`] when `key` is not
    /// `NAME/<session lease in hex>` or `revision` is not positive; [`Error::AlreadyHeld`] when
    /// the session already campaigns for `name`; [`Error::SessionLost`] when the lease is gone;
    /// [`Error::NotHeld`] when the key is gone or was re-created, or an older candidate leads
    /// (the key is left alone: [`Elector::campaign`] with the same session adopts it and
    /// waits). Proclaim and resign then work as after a campaign (`KV/Txn` fenced on the
    /// revision).
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client, lease: i64, key: Vec<u8>, rev: i64)
    /// # -> Result<(), etcd_lock::Error> {
    /// use etcd_lock::{RecipeElection, Session, SessionOptions};
    /// // `lease`, `key` and `rev` were saved by the process that won the campaign.
    /// let session = Session::with_options(&client, SessionOptions::new().with_lease(lease)).await?;
    /// let mut leadership = RecipeElection::new()
    ///     .resume(&session, b"/svc/primary", &key, rev)
    ///     .await?;
    /// leadership.proclaim("back again").await?;
    /// # Ok(()) }
    /// ```
    pub async fn resume(
        &self,
        session: &Session,
        name: &[u8],
        key: &[u8],
        revision: i64,
    ) -> Result<Leadership> {
        super::resume::resume(session, name, key, revision, Flavour::Recipe).await
    }
}

/// `Range(prefix, sort create asc, limit 1)`: the leader's key-value.
pub(crate) fn first_created() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1)
}

/// A candidacy after its first round trip.
struct Candidate {
    session: Session,
    name: Vec<u8>,
    prefix: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    my_rev: i64,
    owned: OwnedKey,
}

impl Candidate {
    fn into_leadership(self) -> Leadership {
        Leadership::new(
            self.name,
            self.key,
            self.my_rev,
            self.value,
            self.session,
            Flavour::Recipe,
            self.owned,
        )
    }

    /// Waits until no key older than ours is left under the prefix.
    async fn wait_for_turn(
        self,
        router: &Arc<PrefixWatch>,
        epoch_before: Option<u64>,
        older: Option<Older>,
        predecessor: Option<Vec<u8>>,
    ) -> Result<Leadership> {
        let place = Place {
            session: &self.session,
            prefix: &self.prefix,
            key: &self.key,
            my_rev: self.my_rev,
        };
        match place
            .wait_turn(router, epoch_before, older, predecessor)
            .await?
        {
            Turn::Ours => Ok(self.into_leadership()),
            Turn::SessionLost => Err(self.session.lost_error()),
            Turn::KeyGone => {
                let Candidate {
                    session,
                    key,
                    owned,
                    ..
                } = self;
                owned.gone();
                Err(key_gone_error(&session, &key).await)
            }
        }
    }
}

impl Elector for RecipeElection {
    /// Campaigns with the recipe: one `KV/Txn` when nobody leads (plus one guarded `KV/Txn` if
    /// this session's key already existed with another value); otherwise waits on the client's
    /// prefix watch (one `WatchCreateRequest` the first time) for the predecessor's DELETE and
    /// re-checks with one `KV/Range` per wake-up. A dropped campaign deletes its key (a
    /// conditional `KV/Txn` in the background).
    async fn campaign(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
        value: &[u8],
    ) -> Result<Leadership> {
        campaign(session, name.as_ref(), value).await
    }

    /// `KV/Range(NAME/, sort by create revision ascending, limit 1)`.
    async fn leader(
        &self,
        client: &Client,
        name: impl AsRef<[u8]> + Send,
    ) -> Result<Option<LeaderInfo>> {
        let name = name.as_ref();
        let prefix = prefix_for(name)?;
        let response = client.get_with(prefix, first_created()).await?;
        Ok(response.into_inner().kvs.into_iter().next().map(Into::into))
    }

    /// A linearizable `KV/Range(NAME/, sort create asc, limit 1)` for the current leader as of
    /// its header revision R, then one `WatchCreateRequest` on the client's shared watch stream
    /// for `NAME/` (PUTs and DELETEs) from R + 1 (as Go's `Observe`: never a stale leader first,
    /// even through a member that is behind). Later, one `KV/Range` at the DELETE's revision each time the leader key is deleted, to
    /// find the next leader exactly as it was then. A broken watch is reopened from the last
    /// revision seen; a compacted one falls back to reading the current leader.
    async fn observe(&self, client: &Client, name: impl AsRef<[u8]> + Send) -> Result<Observer> {
        let name = name.as_ref();
        let prefix = prefix_for(name)?;
        observe::recipe(client.clone(), prefix).await
    }

    fn flavour(&self) -> &'static str {
        "recipe"
    }
}

/// [`Elector::campaign`] of the recipe flavour. Not generic and boxed: its state machine, and the
/// ones it awaits, are compiled once, in this crate, whatever name type callers pass.
fn campaign<'a>(
    session: &'a Session,
    name: &'a [u8],
    value: &'a [u8],
) -> BoxFuture<'a, Result<Leadership>> {
    Box::pin(async move {
        let (prefix, claim) = start_campaign(session, name, value).await?;
        let lease = session.lease();
        let key = key_for(&prefix, lease);
        let mut owned = OwnedKey::new(key.clone(), claim);
        let client = session.client();

        // Before the txn: only a watch already open then has seen every later DELETE.
        let joining = Registry::of(client)
            .join(client, client.namespace(), &prefix)
            .await;
        let alone = joining.alone();
        let txn = join_txn(&key, &prefix, value, lease, GetOptions::new(), alone);
        let response = match client.txn(txn).await {
            Ok(r) => r,
            Err(e) if e.is_lease_not_found() => {
                owned.gone();
                return Err(session.lost_error());
            }
            Err(e) => return Err(e),
        };
        let (my_rev, older) = if response.succeeded() {
            let revision = response.revision();
            (revision, older_keys(&response, revision))
        } else {
            // Our key already existed (an earlier campaign with this lease, or Go code sharing
            // it): adopt it, and publish our value if it holds another one.
            let Some(kv) = range_kvs(&response, 0).first() else {
                return Err(Error::Protocol("campaign txn: own key vanished".into()));
            };
            if kv.value != value {
                let update = Txn::new()
                    .when([Compare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        kv.create_revision,
                    )])
                    .and_then([TxnOp::put(
                        key.clone(),
                        value,
                        PutOptions::new().with_lease(lease),
                    )]);
                if !client.txn(update).await?.succeeded() {
                    owned.gone();
                    return Err(key_gone_error(session, &key).await);
                }
            }
            (kv.create_revision, None)
        };
        owned.set_token(my_rev);
        // Only a lone candidate waits on its predecessor alone (see `Place::wait_turn`).
        let predecessor = predecessor(&response, my_rev).filter(|_| alone);
        let owner_rev = owner_rev(&response, my_rev);
        let candidate = Candidate {
            session: session.clone(),
            name: name.to_vec(),
            prefix,
            key,
            value: value.to_vec(),
            my_rev,
            owned,
        };
        if owner_rev == my_rev {
            return Ok(candidate.into_leadership());
        }
        candidate
            .wait_for_turn(
                &joining.router(),
                joining.epoch_before(),
                older,
                predecessor,
            )
            .await
    })
}
