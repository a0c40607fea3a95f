//! Lease service wrappers: `LeaseGrant`, `LeaseRevoke`, `LeaseKeepAlive` (stream),
//! `LeaseTimeToLive`, `LeaseLeases`.

use tokio::sync::mpsc;

use crate::client::{Client, Grpc, Retry};
use crate::error::{Code, Error, GrpcStatus, Result};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::support::{header_of, require_leader, response_wrapper};

pub(crate) const GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
pub(crate) const REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
pub(crate) const KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
pub(crate) const TIME_TO_LIVE: &str = "/etcdserverpb.Lease/LeaseTimeToLive";
pub(crate) const LEASES: &str = "/etcdserverpb.Lease/LeaseLeases";

/// The largest TTL etcd accepts (its `MaxLeaseTTL`, 9 000 000 000 s).
pub const MAX_TTL_SECS: i64 = 9_000_000_000;

pub(crate) fn check_ttl(ttl: i64) -> Result<()> {
    if ttl <= 0 {
        return Err(Error::invalid(
            "ttl",
            format!("{ttl} s: a lease TTL must be at least 1 second"),
        ));
    }
    if ttl > MAX_TTL_SECS {
        return Err(Error::invalid(
            "ttl",
            format!("{ttl} s is above etcd's maximum of {MAX_TTL_SECS} s"),
        ));
    }
    Ok(())
}

fn check_id(id: i64) -> Result<()> {
    if id <= 0 {
        return Err(Error::invalid(
            "lease",
            format!("{id}: lease IDs are positive"),
        ));
    }
    Ok(())
}

response_wrapper!(
    /// Answer to `LeaseGrant`.
    LeaseGrantResponse,
    pb::LeaseGrantResponse
);
response_wrapper!(
    /// Answer to `LeaseRevoke`.
    LeaseRevokeResponse,
    pb::LeaseRevokeResponse
);
response_wrapper!(
    /// Answer to one `LeaseKeepAlive` message.
    LeaseKeepAliveResponse,
    pb::LeaseKeepAliveResponse
);
response_wrapper!(
    /// Answer to `LeaseTimeToLive`.
    LeaseTimeToLiveResponse,
    pb::LeaseTimeToLiveResponse
);
response_wrapper!(
    /// Answer to `LeaseLeases`.
    LeasesResponse,
    pb::LeaseLeasesResponse
);

impl LeaseGrantResponse {
    /// The granted lease ID.
    pub fn id(&self) -> i64 {
        self.0.id
    }
    /// The TTL granted, in seconds (etcd may raise a small TTL to its minimum).
    pub fn ttl(&self) -> i64 {
        self.0.ttl
    }
}

impl LeaseKeepAliveResponse {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.0.id
    }
    /// The TTL the lease was refreshed to, in seconds.
    pub fn ttl(&self) -> i64 {
        self.0.ttl
    }
}

impl LeaseTimeToLiveResponse {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.0.id
    }
    /// Remaining seconds; -1 when the lease does not exist (expired or revoked).
    pub fn ttl(&self) -> i64 {
        self.0.ttl
    }
    /// The TTL the lease was granted with.
    pub fn granted_ttl(&self) -> i64 {
        self.0.granted_ttl
    }
    /// Keys attached to the lease (when asked for).
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.0.keys
    }
}

impl LeasesResponse {
    /// IDs of all live leases.
    pub fn ids(&self) -> Vec<i64> {
        self.0.leases.iter().map(|l| l.id).collect()
    }
}

/// An open `LeaseKeepAlive` stream for one lease. Each [`LeaseKeeper::keep_alive`] sends one
/// request on the stream and waits for its answer. Dropping the keeper closes the stream.
#[derive(Debug)]
pub struct LeaseKeeper {
    id: i64,
    client: Client,
    /// The endpoint the stream was opened on.
    endpoint: usize,
    requests: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    responses: crate::wire::Inbound<pb::LeaseKeepAliveResponse>,
}

impl LeaseKeeper {
    /// The lease this stream refreshes.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Gives the stream up because its member stopped answering: the client's next requests
    /// (and the next keep-alive stream) go to another endpoint.
    pub(crate) fn abandon(self) {
        self.client.fail_over(self.endpoint);
    }

    /// Refreshes the lease once over the open stream. A TTL of 0 in the answer means the lease
    /// is gone: returned as [`Error::LeaseExpired`].
    pub async fn keep_alive(&mut self) -> Result<LeaseKeepAliveResponse> {
        let req = pb::LeaseKeepAliveRequest { id: self.id };
        self.client
            .counters()
            .stream_sent(prost::Message::encoded_len(&req));
        self.requests
            .send(req)
            .await
            .map_err(|_| Error::WatchClosed {
                reason: "keep-alive stream closed".into(),
            })?;
        self.receive().await
    }

    async fn receive(&mut self) -> Result<LeaseKeepAliveResponse> {
        match self.responses.message().await {
            Ok(Some(resp)) => {
                self.client
                    .counters()
                    .stream_received(prost::Message::encoded_len(&resp));
                if resp.ttl <= 0 {
                    return Err(Error::LeaseExpired { lease: self.id });
                }
                Ok(LeaseKeepAliveResponse(resp))
            }
            Ok(None) => Err(Error::Status {
                status: Box::new(GrpcStatus::new(
                    Code::Unavailable,
                    "keep-alive stream ended",
                )),
            }),
            Err(status) => {
                let limit = self.client.options().max_response_bytes;
                Err(crate::client::too_large(KEEP_ALIVE, &status, limit)
                    .unwrap_or_else(|| Error::from_status(status)))
            }
        }
    }
}

impl Client {
    /// Grants a lease of `ttl` seconds: `Lease/LeaseGrant` with ID 0 (etcd picks the ID).
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse> {
        self.lease_grant_with_id(ttl, 0).await
    }

    /// Grants a lease with a chosen ID (0 = let etcd choose): `Lease/LeaseGrant`.
    pub async fn lease_grant_with_id(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse> {
        check_ttl(ttl)?;
        if id < 0 {
            return Err(Error::invalid(
                "lease",
                "lease IDs are positive (0 = etcd picks)",
            ));
        }
        let req = pb::LeaseGrantRequest { ttl, id };
        let resp = self.unary(GRANT, Retry::NotSent, req).await?;
        if !resp.error.is_empty() {
            return Err(Error::Protocol(format!(
                "lease grant failed: {}",
                resp.error
            )));
        }
        Ok(LeaseGrantResponse(resp))
    }

    /// Revokes a lease and deletes every key attached to it: `Lease/LeaseRevoke`.
    /// An unknown lease fails with the typed `LeaseNotFound` error.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        check_id(id)?;
        let req = pb::LeaseRevokeRequest { id };
        self.unary(REVOKE, Retry::NotSent, req)
            .await
            .map(LeaseRevokeResponse)
    }

    /// Opens a `Lease/LeaseKeepAlive` stream for `id` and refreshes the lease once; keep the
    /// returned [`LeaseKeeper`] to refresh again over the same stream. With auth, the stream
    /// carries the token and is opened again once with a new token if etcd refuses it.
    ///
    /// The stream carries etcd's require-leader metadata (`hasleader: true`, as Go's
    /// `clientv3.WithRequireLeader`): a member without a leader refuses to open it, and ends
    /// an open one about three election timeouts after losing its leader, with
    /// `Unavailable: etcdserver: no leader`. Either failure moves the client to its next
    /// endpoint, so the next stream (see [`Session`](crate::Session)) goes to a member that
    /// can still reach the leader, which alone can refresh the lease.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<(LeaseKeeper, LeaseKeepAliveResponse)> {
        check_id(id)?;
        self.with_token_retry(|token| self.open_keep_alive(id, token))
            .await
    }

    async fn open_keep_alive(
        &self,
        id: i64,
        token: Option<tonic::metadata::AsciiMetadataValue>,
    ) -> Result<(LeaseKeeper, LeaseKeepAliveResponse)> {
        let (tx, rx) = mpsc::channel(4);
        let first = pb::LeaseKeepAliveRequest { id };
        self.counters()
            .stream_sent(prost::Message::encoded_len(&first));
        // Queue the first request before opening: etcd sends response headers with its first answer.
        let _ = tx.try_send(first);
        let requests =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let tap = crate::wire::StreamTap::new(self.wire(), KEEP_ALIVE);
        let requests = tap.outbound(requests);
        let (endpoint, channel) = self.current();
        let mut grpc = LeaseClient::stream(channel, self.options());
        let mut request = self.request_with_token(requests, token.as_ref());
        require_leader(&mut request);
        tap.open(|| self.endpoint_url(endpoint), &request);
        let open = tap.opened(grpc.lease_keep_alive(request));
        let timeout = self.options().request_timeout;
        let opened = match timeout {
            Some(t) => tokio::time::timeout(t, open).await.map_err(|_| {
                self.fail_over(endpoint);
                Error::Timeout {
                    method: KEEP_ALIVE,
                    after: t,
                    last_error: None,
                }
            })?,
            None => open.await,
        };
        let responses = match opened {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let error = Error::from_status(status);
                if error.is_unavailable() {
                    self.fail_over(endpoint);
                }
                return Err(error);
            }
        };
        let mut keeper = LeaseKeeper {
            id,
            client: self.clone(),
            endpoint,
            requests: tx,
            responses,
        };
        let first = match timeout {
            Some(t) => match tokio::time::timeout(t, keeper.receive()).await {
                Ok(first) => first,
                Err(_) => {
                    keeper.abandon();
                    return Err(Error::Timeout {
                        method: KEEP_ALIVE,
                        after: t,
                        last_error: None,
                    });
                }
            },
            None => keeper.receive().await,
        }?;
        Ok((keeper, first))
    }

    /// Refreshes a lease once on a short-lived `Lease/LeaseKeepAlive` stream.
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        self.lease_keep_alive(id).await.map(|(_, first)| first)
    }

    /// Asks for a lease's remaining TTL (and its keys with `with_keys`): `Lease/LeaseTimeToLive`.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        with_keys: bool,
    ) -> Result<LeaseTimeToLiveResponse> {
        check_id(id)?;
        let req = pb::LeaseTimeToLiveRequest {
            id,
            keys: with_keys,
        };
        self.unary(TIME_TO_LIVE, Retry::Idempotent, req)
            .await
            .map(|r| LeaseTimeToLiveResponse(crate::namespace::lease_keys(self.namespace(), r)))
    }

    /// Lists all live leases: `Lease/LeaseLeases`.
    pub async fn leases(&self) -> Result<LeasesResponse> {
        let req = pb::LeaseLeasesRequest {};
        self.unary(LEASES, Retry::Idempotent, req)
            .await
            .map(LeasesResponse)
    }
}

#[allow(dead_code)]
fn _assert_header(r: &LeaseGrantResponse) -> &pb::ResponseHeader {
    header_of(&r.0.header)
}
