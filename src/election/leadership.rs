//! The proof of leading an election: its key, create revision and session.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::PutOptions;
use crate::lock::{delete_if_created_at, key_gone_error, OwnedKey, Released};
use crate::proto::v3electionpb as pb;
use crate::session::Session;
use crate::txn::{Compare, CompareOp, Txn, TxnOp, TxnResponse};

use super::{check_value, service};
use crate::support::BoxFuture;

/// How leadership was won, which decides how it is proclaimed and resigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Recipe,
    Service,
}

/// Leadership of one election. Give it up with [`Leadership::resign`]; dropping it instead
/// deletes the leader key in the background as a safety net only: a conditional delete
/// (`KV/Txn` `If create_revision(key) == revision Then DeleteRange(key)`, when a tokio runtime
/// is running), retried while the session lives. Until that delete is done, a new campaign for
/// the same name on the same session waits.
#[derive(Debug)]
#[must_use = "leadership is given up when it is resigned or dropped"]
pub struct Leadership {
    name: Vec<u8>,
    key: Vec<u8>,
    rev: i64,
    value: Vec<u8>,
    session: Session,
    flavour: Flavour,
    /// Deletes the key in the background unless it is known gone (see `lock::owned`).
    owned: OwnedKey,
}

impl Leadership {
    pub(crate) fn new(
        name: Vec<u8>,
        key: Vec<u8>,
        rev: i64,
        value: Vec<u8>,
        session: Session,
        flavour: Flavour,
        owned: OwnedKey,
    ) -> Self {
        crate::trace::event!(INFO, "election won", election = %name.escape_ascii(), key = %key.escape_ascii(), revision = rev);
        Leadership {
            name,
            key,
            rev,
            value,
            session,
            flavour,
            owned,
        }
    }

    /// The election name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }
    /// The leader key, `NAME/<lease hex>`.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    /// The leader key as text (lossy for non-UTF-8 names).
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
    /// The leader key's create revision: identifies this leadership and fences writes
    /// (strictly increases from one leader to the next).
    pub fn revision(&self) -> i64 {
        self.rev
    }
    /// The lease the leader key is attached to.
    pub fn lease(&self) -> i64 {
        self.session.lease()
    }
    /// The value last published by this leader (campaign value or latest proclaim).
    pub fn value(&self) -> &[u8] {
        &self.value
    }
    /// The session holding the leadership.
    pub fn session(&self) -> &Session {
        &self.session
    }
    /// True once the session's lease is known lost: someone else may lead now.
    pub fn is_lost(&self) -> bool {
        self.session.is_lost()
    }
    /// Resolves when the session (and with it the leadership) is lost.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.session.lost()
    }
    /// The leadership as etcd's `v3electionpb.LeaderKey` (name, key, rev, lease), e.g. to hand it
    /// to another process that proclaims or resigns through the Election service.
    pub fn leader_key(&self) -> pb::LeaderKey {
        pb::LeaderKey {
            name: self.name.clone(),
            key: self.key.clone(),
            rev: self.rev,
            lease: self.lease(),
        }
    }

    fn client(&self) -> &Client {
        self.session.client()
    }

    fn fence(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.rev)
    }

    /// Publishes `value` as the leader's value, only while still leading.
    ///
    /// Recipe: one `KV/Txn` `If create_revision(key) == revision Then Put(key, value, lease)`.
    /// Service: `Election/Proclaim{leader, value}`.
    /// When the key is gone (resigned, deleted, lease expired) the value is not written and the
    /// result is [`Error::NotHeld`], or [`Error::SessionLost`] when the lease is gone (told
    /// apart by one `Lease/LeaseTimeToLive`). Oversized values: [`Error::InvalidArgument`].
    pub async fn proclaim(&mut self, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        check_value(&value)?;
        match self.flavour {
            Flavour::Recipe => {
                let txn = Txn::new().when([self.fence()]).and_then([TxnOp::put(
                    self.key.clone(),
                    value.clone(),
                    PutOptions::new().with_lease(self.lease()),
                )]);
                let response = match self.client().txn(txn).await {
                    Ok(r) => r,
                    Err(e) if e.is_lease_not_found() => return Err(self.session.lost_error()),
                    Err(e) => return Err(e),
                };
                if !response.succeeded() {
                    return Err(key_gone_error(&self.session, &self.key).await);
                }
            }
            Flavour::Service => {
                match service::proclaim(self.client(), self.leader_key(), value.clone()).await {
                    Ok(()) => {}
                    Err(e) if service::is_not_leader(&e) => {
                        return Err(key_gone_error(&self.session, &self.key).await)
                    }
                    Err(e) if e.is_lease_not_found() => return Err(self.session.lost_error()),
                    Err(e) => return Err(e),
                }
            }
        }
        self.value = value;
        Ok(())
    }

    /// Runs `txn` only while still leading: one `KV/Txn` whose outer compare is
    /// `create_revision(key) == revision` and whose success branch is `txn` nested.
    /// Returns the answer of `txn`; fails with [`Error::NotHeld`] (or [`Error::SessionLost`])
    /// when etcd refused it because the leadership is gone.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let guarded = Txn::new().when([self.fence()]).and_then([TxnOp::txn(txn)]);
        let response = self.client().txn(guarded).await?;
        if !response.succeeded() {
            return Err(key_gone_error(&self.session, &self.key).await);
        }
        match response
            .into_inner()
            .responses
            .pop()
            .and_then(|r| r.response)
        {
            Some(crate::proto::etcdserverpb::response_op::Response::ResponseTxn(inner)) => {
                Ok(TxnResponse(inner))
            }
            _ => Err(Error::Protocol(
                "guarded txn answered without its nested txn".into(),
            )),
        }
    }

    /// Gives up leadership: the next candidate in line leads.
    ///
    /// Recipe: one `KV/Txn` `If create_revision(key) == revision Then DeleteRange(key)`; when
    /// nothing was deleted the result is [`Error::NotHeld`] or [`Error::SessionLost`] (as for
    /// [`Leadership::proclaim`]). Service: `Election/Resign{leader}`, which etcd answers the
    /// same whether or not the key was still there, so only a session already known lost is
    /// reported ([`Error::SessionLost`]).
    ///
    /// If the call fails or this future is dropped before it completes, the key is deleted in
    /// the background (conditionally on the revision), retrying while the session lives, and
    /// a new campaign of this session for the same name waits until that is done. Either way
    /// no key of this leadership is left behind.
    pub async fn resign(self) -> Result<()> {
        resign(self).await
    }
}

/// [`Leadership::resign`]. Boxed, in a function that is not `async`: its state machine, and
/// the ones it awaits, are compiled once, in this crate, not again in each calling crate.
fn resign(leadership: Leadership) -> BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        let Leadership {
            name,
            key,
            rev,
            session,
            flavour,
            owned,
            ..
        } = leadership;
        let client = session.client();
        // `owned` lives across the call: dropped with this future, it deletes in the background.
        let answer = match flavour {
            Flavour::Recipe => {
                delete_if_created_at(client, key.clone(), rev)
                    .await
                    .map(|deleted_at| match deleted_at {
                        Some(revision) => Released::Deleted(Some(revision)),
                        None => Released::NothingDeleted,
                    })
            }
            Flavour::Service => {
                let leader = pb::LeaderKey {
                    name,
                    key: key.clone(),
                    rev,
                    lease: session.lease(),
                };
                service::resign(client, leader)
                    .await
                    .map(|()| Released::Unknown)
            }
        };
        let result = owned.settle(&session, &key, answer).await;
        crate::trace::event!(INFO, "election resigned", key = %key.escape_ascii(), revision = rev, outcome = if result.is_ok() { "ok" } else { "error" });
        result
    })
}
