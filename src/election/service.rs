//! The server-side election: etcd's `v3electionpb.Election` service.
//!
//! etcd runs Go's `concurrency.Election` inside the server with the same key layout, so this
//! flavour and [`super::RecipeElection`] line up in the same queue. `Election/Campaign` blocks
//! on the server until the candidate leads and returns its `LeaderKey{name, key, rev, lease}`.
//! `Election/Observe` starts from a linearizable read on the member it reaches, so, like the
//! recipe, it never yields a leader that was gone before the call (checked by pausing a member
//! in `tests/election.rs`). With auth on, see [`ServiceElection`] for a limit of etcd's.

use futures_util::Stream;

use crate::client::{Client, Grpc, Retry};
use crate::error::{Error, Result};
use crate::kv::GetOptions;
use crate::lock::{key_for, key_gone_error, OwnedKey};
use crate::namespace;
use crate::proto::v3electionpb as pb;
use crate::proto::v3electionpb::election_client::ElectionClient;
use crate::session::Session;

use super::leadership::{Flavour, Leadership};
use super::observe::Observer;
use super::{prefix_for, start_campaign, Elector, LeaderInfo};
use crate::support::BoxFuture;

pub(crate) const CAMPAIGN: &str = "/v3electionpb.Election/Campaign";
pub(crate) const PROCLAIM: &str = "/v3electionpb.Election/Proclaim";
pub(crate) const LEADER: &str = "/v3electionpb.Election/Leader";
pub(crate) const OBSERVE: &str = "/v3electionpb.Election/Observe";
pub(crate) const RESIGN: &str = "/v3electionpb.Election/Resign";

/// etcd's server-side election service.
///
/// # Auth: one user at a time
///
/// With auth enabled, do not let two users wait on this service at once; use
/// [`super::RecipeElection`] instead. etcd runs every `Election/Campaign` through one client
/// inside the server, and that client's single watch stream is permission-checked as the user
/// whose wait opened it (etcd issue 17502, reported for 3.4 and 3.5, closed without a fix). So while user1's candidate waits under user1's prefix, user2's
/// `Campaign` that has to wait under its own permitted prefix fails with `permission denied`
/// (sent as gRPC code `Unknown` wrapping Go's status text; read as the relayed code, so
/// [`Error::is_permission_denied`] is true), and
/// on etcd 3.5.1 user1's campaign then stays stuck after its leader resigns. An uncontended
/// campaign, a single user, or users that never wait at the same moment are unaffected. The
/// recipe waits on the caller's own client and token, so each user waits under its own
/// permissions. `tests/auth.rs` pins this on both versions; the same limit holds for
/// [`crate::lock::ServiceLock`].
///
/// ```no_run
/// # async fn demo(session: etcd_lock::Session) -> Result<(), etcd_lock::Error> {
/// use std::time::Duration;
/// use etcd_lock::election::{Elector, ServiceElection};
/// // Give up after 30 s; the dropped campaign removes its candidate key.
/// let election = ServiceElection::new();
/// let campaign = election.campaign(&session, b"/svc/primary", b"node-1");
/// match tokio::time::timeout(Duration::from_secs(30), campaign).await {
///     Ok(leadership) => leadership?.resign().await?,
///     Err(_) => println!("someone else still leads"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceElection;

impl ServiceElection {
    /// A service elector.
    pub fn new() -> Self {
        ServiceElection
    }

    /// Takes back a leadership after a restart from the `v3electionpb.LeaderKey` that
    /// `Election/Campaign` returned ([`Leadership::leader_key`], saved by the process that
    /// won). `session` must run on `leader.lease` (adopt it with
    /// [`SessionOptions::with_lease`](crate::SessionOptions::with_lease)); otherwise
    /// [`Error::InvalidArgument`] names `lease`.
    ///
    /// The Election service has no resume call, so this checks through KV like
    /// [`super::RecipeElection::resume`]: one read-only `KV/Txn` (`Range(key)`, `Range(NAME/,
    /// sort create asc, limit 1)`), with the same errors. The resumed leadership proclaims with
    /// `Election/Proclaim` and resigns with `Election/Resign`, as after a service campaign.
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client, saved: etcd_lock::proto::v3electionpb::LeaderKey)
    /// # -> Result<(), etcd_lock::Error> {
    /// use etcd_lock::{ServiceElection, Session, SessionOptions};
    /// let options = SessionOptions::new().with_lease(saved.lease);
    /// let session = Session::with_options(&client, options).await?;
    /// let leadership = ServiceElection::new().resume(&session, &saved).await?;
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self, session: &Session, leader: &pb::LeaderKey) -> Result<Leadership> {
        if leader.lease != session.lease() {
            return Err(Error::invalid(
                "lease",
                format!(
                    "the leader key is on lease {:x}, the session on lease {:x}: resume with a \
                     session on the leader's lease",
                    leader.lease,
                    session.lease()
                ),
            ));
        }
        super::resume::resume(
            session,
            &leader.name,
            &leader.key,
            leader.rev,
            Flavour::Service,
        )
        .await
    }
}

/// True for the service's "not leader" answer (`election: not leader`, Go's
/// `concurrency.ErrElectionNotLeader`, sent as gRPC code Unknown).
pub(crate) fn is_not_leader(e: &Error) -> bool {
    status_says(e, "election: not leader")
}

fn status_says(e: &Error, text: &str) -> bool {
    match e {
        Error::Status { status } | Error::Etcd { status, .. } => status.message().contains(text),
        _ => false,
    }
}

/// `Election/Proclaim{leader, value}`.
pub(crate) async fn proclaim(client: &Client, leader: pb::LeaderKey, value: Vec<u8>) -> Result<()> {
    let req = pb::ProclaimRequest {
        leader: Some(namespace::leader_key_in(client.namespace(), leader)),
        value,
    };
    client
        .unary(PROCLAIM, Retry::NotSent, req)
        .await
        .map(|_| ())
}

/// `Election/Resign{leader}`.
pub(crate) async fn resign(client: &Client, leader: pb::LeaderKey) -> Result<()> {
    let req = pb::ResignRequest {
        leader: Some(namespace::leader_key_in(client.namespace(), leader)),
    };
    client.unary(RESIGN, Retry::NotSent, req).await.map(|_| ())
}

impl Elector for ServiceElection {
    /// Sends `Election/Campaign{name, lease, value}` (no request timeout: it blocks server-side
    /// until this candidate leads), then `KV/Range(key)` to confirm the key still exists with
    /// the returned revision (etcd's Campaign does not re-check its own key after waiting, so
    /// a lease that expired meanwhile would otherwise go unnoticed). A dropped call is cancelled
    /// on the server, which then deletes the candidate key; the key is also deleted from here
    /// (a `KV/Txn` in the background) in case the server had already elected it.
    async fn campaign(
        &self,
        session: &Session,
        name: impl AsRef<[u8]> + Send,
        value: &[u8],
    ) -> Result<Leadership> {
        campaign(session, name.as_ref(), value).await
    }

    /// `Election/Leader{name}`; etcd's "election: no leader" answer becomes `Ok(None)`.
    async fn leader(
        &self,
        client: &Client,
        name: impl AsRef<[u8]> + Send,
    ) -> Result<Option<LeaderInfo>> {
        let name = name.as_ref();
        prefix_for(name)?;
        let req = pb::LeaderRequest {
            name: namespace::election_name(client.namespace(), name.to_vec()),
        };
        let response = client.unary(LEADER, Retry::Idempotent, req).await;
        match response {
            Ok(r) => {
                Ok(r.kv.map(|kv| namespace::leader_kv(client.namespace(), kv).into()))
            }
            Err(e) if status_says(&e, "election: no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `Election/Observe{name}`, a server stream; the call goes out when the [`Observer`] is
    /// first read (etcd sends nothing, not even headers, until there is a leader). etcd sends
    /// the current leader, then every write to the leader key and each next leader; repeats
    /// of the same state are dropped. The stream ends with an error if the call breaks.
    async fn observe(&self, client: &Client, name: impl AsRef<[u8]> + Send) -> Result<Observer> {
        let name = name.as_ref();
        prefix_for(name)?;
        Ok(Observer::new(
            name.to_vec(),
            "service",
            observe_stream(client.clone(), name.to_vec()),
        ))
    }

    fn flavour(&self) -> &'static str {
        "service"
    }
}

enum ObserveState {
    Start(Client, Vec<u8>),
    Open(Client, Box<crate::wire::Inbound<pb::LeaderResponse>>),
    Done,
}

fn observe_stream(client: Client, name: Vec<u8>) -> impl Stream<Item = Result<LeaderInfo>> + Send {
    futures_util::stream::unfold(ObserveState::Start(client, name), |state| async move {
        let (client, mut stream) = match state {
            ObserveState::Done => return None,
            ObserveState::Open(client, stream) => (client, stream),
            ObserveState::Start(client, name) => {
                let req = pb::LeaderRequest {
                    name: namespace::election_name(client.namespace(), name),
                };
                client
                    .counters()
                    .stream_sent(prost::Message::encoded_len(&req));
                let (index, channel) = client.current();
                // With auth: the token rides on the stream; refused once, it is renewed.
                let opened = client
                    .with_token_retry(|token| {
                        let (channel, req) = (channel.clone(), req.clone());
                        let request = client.request_with_token(req, token.as_ref());
                        let tap = crate::wire::StreamTap::new(client.wire(), OBSERVE);
                        tap.open(|| client.endpoint_url(index), &request);
                        tap.sent(request.get_ref());
                        let mut grpc = ElectionClient::stream(channel, client.options());
                        async move {
                            tap.opened(grpc.observe(request))
                                .await
                                .map_err(Error::from_status)
                        }
                    })
                    .await;
                match opened {
                    Ok(response) => (client, Box::new(response.into_inner())),
                    Err(e) => {
                        if e.is_unavailable() {
                            client.fail_over(index);
                        }
                        return Some((Err(e), ObserveState::Done));
                    }
                }
            }
        };
        match stream.message().await {
            Ok(Some(resp)) => {
                client
                    .counters()
                    .stream_received(prost::Message::encoded_len(&resp));
                match resp.kv {
                    Some(kv) => {
                        let kv = namespace::leader_kv(client.namespace(), kv);
                        Some((Ok(kv.into()), ObserveState::Open(client, stream)))
                    }
                    None => Some((
                        Err(Error::Protocol(
                            "Observe answered without a key-value".into(),
                        )),
                        ObserveState::Done,
                    )),
                }
            }
            Ok(None) => Some((
                Err(Error::WatchClosed {
                    reason: format!("{OBSERVE} ended by the server"),
                }),
                ObserveState::Done,
            )),
            Err(status) => Some((Err(Error::from_status(status)), ObserveState::Done)),
        }
    })
}

/// [`Elector::campaign`] of the service flavour. Not generic and boxed: its state machine, and the
/// ones it awaits, are compiled once, in this crate, whatever name type callers pass.
fn campaign<'a>(
    session: &'a Session,
    name: &'a [u8],
    value: &'a [u8],
) -> BoxFuture<'a, Result<Leadership>> {
    Box::pin(async move {
        let (prefix, claim) = start_campaign(session, name, value).await?;
        let client = session.client();
        let mut owned = OwnedKey::new(key_for(&prefix, session.lease()), claim);
        let req = pb::CampaignRequest {
            name: namespace::election_name(client.namespace(), name.to_vec()),
            lease: session.lease(),
            value: value.to_vec(),
        };
        let call = client.unary_timeout(CAMPAIGN, Retry::NotSent, None, req);
        let lost = session.lost();
        let response = tokio::select! {
            r = call => r,
            _ = lost => return Err(session.lost_error()),
        };
        let leader = match response {
            Ok(r) => r
                .leader
                .map(|k| namespace::leader_key_out(client.namespace(), k)),
            Err(e) if e.is_lease_not_found() => {
                owned.gone();
                return Err(session.lost_error());
            }
            Err(e) => return Err(e),
        };
        let Some(leader) = leader else {
            return Err(Error::Protocol(
                "Campaign answered without a leader key".into(),
            ));
        };
        owned.set_token(leader.rev);
        let found = client
            .get_with(leader.key.clone(), GetOptions::new().with_keys_only())
            .await?;
        if found.first().map(|kv| kv.create_revision) != Some(leader.rev) {
            owned.gone();
            return Err(key_gone_error(session, &leader.key).await);
        }
        Ok(Leadership::new(
            name.to_vec(),
            leader.key,
            leader.rev,
            value.to_vec(),
            session.clone(),
            Flavour::Service,
            owned,
        ))
    })
}
