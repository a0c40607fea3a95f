//! The connection handle: endpoints, timeouts, failover and per-client counters.
//!
//! A [`Client`] is cheap to clone (one `Arc`); every clone shares the HTTP/2 connections, the
//! multiplexed watch stream and the request counters. All methods take `&self`. The typed
//! request wrappers live next to their service: [`crate::kv`], [`crate::lease`],
//! [`crate::watch`], [`crate::maintenance`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, EtcdErrorKind, Result};
use crate::watch::WatchHub;
use crate::wire::{WireRecord, WireSink};

/// Connection settings. Build with [`ClientOptions::new`] (or `Default`) and the `with_*` setters.
#[derive(Debug, Clone)]
#[must_use]
#[non_exhaustive]
pub struct ClientOptions {
    /// Time allowed to open the TCP/HTTP2 connection to one endpoint. Default 5 s.
    pub connect_timeout: Duration,
    /// Deadline for each unary request, sent to etcd as `grpc-timeout` too. `None` = no limit.
    /// Default 10 s. Streams (watch, keep-alive) and the server-side `Lock` call are not bounded by it.
    pub request_timeout: Option<Duration>,
    /// HTTP/2 PING interval used to notice dead connections. Default 10 s.
    pub keep_alive_interval: Duration,
    /// How long to wait for a PING answer before the connection counts as dead. Default 5 s.
    pub keep_alive_timeout: Duration,
    /// TLS settings for `https://` endpoints (and bare `host:port` ones, which then use TLS,
    /// as etcdctl does). `None`: bare endpoints are `http://`; `https://` ones trust the
    /// system's CAs.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsOptions>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(10)),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ClientOptions {
    /// The defaults: 5 s connect timeout, 10 s request timeout, 10 s/5 s HTTP/2 keep-alive.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the per-endpoint connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// Sets (or with `None` removes) the per-request deadline.
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }
    /// Sets the HTTP/2 keep-alive PING interval and answer timeout.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }
    /// Sets the TLS settings (CA bundle, client certificate, server name); see
    /// [`crate::tls::TlsOptions`].
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: crate::tls::TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Request and byte counters of one client (shared by its clones).
///
/// `requests` counts what the client asked of etcd: each unary RPC plus each message sent on a
/// stream (watch create/cancel, lease keep-alive). Bytes are protobuf payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Unary RPCs sent plus stream messages sent.
    pub requests: u64,
    /// Unary RPCs sent (retries included).
    pub unary_calls: u64,
    /// Messages sent on watch and keep-alive streams.
    pub stream_messages_sent: u64,
    /// Messages received on watch and keep-alive streams.
    pub stream_messages_received: u64,
    /// Protobuf bytes sent.
    pub bytes_sent: u64,
    /// Protobuf bytes received.
    pub bytes_received: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    unary_calls: AtomicU64,
    stream_sent: AtomicU64,
    stream_received: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl Counters {
    pub(crate) fn stream_sent(&self, bytes: usize) {
        self.stream_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn stream_received(&self, bytes: usize) {
        self.stream_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Whether a failed request may be sent again to another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and other requests without side effects: retry on any "unavailable".
    Idempotent,
    /// Writes: retry only when the request certainly never reached a server.
    NotSent,
}

/// One endpoint and its (lazily reconnecting) channel.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) url: String,
    pub(crate) channel: Channel,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) members: Vec<Member>,
    current: AtomicUsize,
    pub(crate) options: ClientOptions,
    pub(crate) counters: Counters,
    pub(crate) wire: Option<Arc<dyn WireSink>>,
    watch_hub: OnceLock<WatchHub>,
    pub(crate) lock_watches: crate::lock::waiters::Registry,
    pub(crate) auth: crate::auth::AuthState,
}

/// A connection to an etcd cluster. Clone it freely: clones share connections and counters.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// Connects to the given endpoints (`http://host:port` or `host:port`) with default options.
    ///
    /// Opens an HTTP/2 connection to every endpoint in parallel and fails with
    /// [`Error::Connect`] only if none answers within the connect timeout; unreachable ones are
    /// retried in the background and used for failover later.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), etcd_lock::Error> {
    /// let client = etcd_lock::Client::connect(["127.0.0.1:2379"]).await?;
    /// client.put("greeting", "hello").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect<E, S>(endpoints: E) -> Result<Client>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_with(endpoints, ClientOptions::default()).await
    }

    /// Connects with explicit [`ClientOptions`].
    pub async fn connect_with<E, S>(endpoints: E, options: ClientOptions) -> Result<Client>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ClientBuilder::new(endpoints, options)?.connect().await
    }

    /// Starts building a client, e.g. to attach a wire log.
    pub fn builder<E, S>(endpoints: E, options: ClientOptions) -> Result<ClientBuilder>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ClientBuilder::new(endpoints, options)
    }

    /// The endpoint URLs this client was given.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.members.iter().map(|m| m.url.clone()).collect()
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// A snapshot of this client's request counters.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        let unary = c.unary_calls.load(Ordering::Relaxed);
        let sent = c.stream_sent.load(Ordering::Relaxed);
        ClientStats {
            requests: unary + sent,
            unary_calls: unary,
            stream_messages_sent: sent,
            stream_messages_received: c.stream_received.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        }
    }

    /// The index and channel of the endpoint requests currently go to.
    pub(crate) fn current(&self) -> (usize, Channel) {
        let i = self.inner.current.load(Ordering::Relaxed) % self.inner.members.len();
        (i, self.inner.members[i].channel.clone())
    }

    /// Moves on to the next endpoint after `failed` failed (no-op if another caller already did).
    pub(crate) fn fail_over(&self, failed: usize) {
        let n = self.inner.members.len();
        let _ = self.inner.current.compare_exchange(
            failed,
            (failed + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub(crate) fn wire(&self) -> Option<&Arc<dyn WireSink>> {
        self.inner.wire.as_ref()
    }

    pub(crate) fn watch_hub(&self) -> &WatchHub {
        self.inner
            .watch_hub
            .get_or_init(|| WatchHub::start(Arc::downgrade(&self.inner)))
    }

    /// Sends one unary RPC with the client's request timeout, counting it, logging it to the
    /// wire log when one is attached, and failing over to the next endpoint when `retry` allows.
    pub(crate) async fn unary<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        retry: Retry,
        request: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + std::fmt::Debug,
        Resp: prost::Message + std::fmt::Debug,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.unary_timeout(
            method,
            retry,
            self.inner.options.request_timeout,
            request,
            call,
        )
        .await
    }

    /// [`Client::unary`] with an explicit deadline (`None`: wait as long as the server takes).
    pub(crate) async fn unary_timeout<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        retry: Retry,
        timeout: Option<Duration>,
        request: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + std::fmt::Debug,
        Resp: prost::Message + std::fmt::Debug,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let counters = &self.inner.counters;
        let request_len = request.encoded_len();
        let mut backoff = Duration::from_millis(25);
        let mut attempts = 0usize;
        let secret = crate::auth::is_secret(method);
        let mut token_renewed = false;
        loop {
            let (index, channel) = self.current();
            // Authenticate goes without a token: etcd checks a stale one even there.
            let token = (method != crate::auth::AUTHENTICATE)
                .then(|| self.token())
                .flatten();
            let mut req = self.request_with_token(request.clone(), token.as_ref());
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(remaining) = remaining {
                if remaining.is_zero() {
                    return Err(Error::Timeout {
                        method,
                        after: timeout.unwrap_or_default(),
                    });
                }
                req.set_timeout(remaining);
            }
            counters.unary_calls.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes_sent
                .fetch_add(request_len as u64, Ordering::Relaxed);
            attempts += 1;
            let sent_at = Instant::now();
            let outcome = match remaining {
                Some(remaining) => {
                    match tokio::time::timeout(remaining, call(channel, req)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(tonic::Status::deadline_exceeded("client-side deadline")),
                    }
                }
                None => call(channel, req).await,
            };
            let latency = sent_at.elapsed();
            if let Some(sink) = self.wire() {
                sink.record(&WireRecord {
                    method,
                    endpoint: &self.inner.members[index].url,
                    // Passwords and tokens never reach the wire log: an empty message stands in.
                    request: if secret { &() } else { &request },
                    response: outcome.as_ref().ok().map(|r| {
                        if secret {
                            &() as &dyn WireMessage
                        } else {
                            r.get_ref() as &dyn WireMessage
                        }
                    }),
                    status: outcome.as_ref().err(),
                    latency,
                });
            }
            match outcome {
                Ok(response) => {
                    let response = response.into_inner();
                    counters
                        .bytes_received
                        .fetch_add(response.encoded_len() as u64, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(status) => {
                    // tonic enforces `grpc-timeout` itself and reports it as Cancelled.
                    let expired =
                        deadline.is_some_and(|d| Instant::now() + Duration::from_millis(1) >= d);
                    if expired
                        && matches!(
                            status.code(),
                            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                        )
                    {
                        return Err(Error::Timeout {
                            method,
                            after: timeout.unwrap_or_default(),
                        });
                    }
                    if status.code() == tonic::Code::DeadlineExceeded {
                        if deadline.is_some_and(|d| Instant::now() + Duration::from_millis(1) >= d)
                        {
                            return Err(Error::Timeout {
                                method,
                                after: timeout.unwrap_or_default(),
                            });
                        }
                        return Err(Error::from_status(status));
                    }
                    let error = Error::from_status(status);
                    // An expired token: authenticate again and repeat the request, once.
                    if !token_renewed && self.token_may_help(&error) {
                        token_renewed = true;
                        self.renew_token(token.as_ref()).await?;
                        continue;
                    }
                    if !should_retry(&error, retry) || attempts >= 16 {
                        return Err(error);
                    }
                    self.fail_over(index);
                    // Go through every endpoint once quickly; back off when all were tried.
                    if attempts.is_multiple_of(self.inner.members.len()) {
                        let pause = match deadline {
                            Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                            None => backoff,
                        };
                        tokio::time::sleep(pause).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
            }
        }
    }
}

pub(crate) use crate::wire::WireMessage;

/// Decides whether a failed request may go to another endpoint.
fn should_retry(error: &Error, retry: Retry) -> bool {
    match error.etcd_kind() {
        // Refused before proposing to raft: nothing was applied.
        Some(EtcdErrorKind::NoLeader | EtcdErrorKind::NotLeader | EtcdErrorKind::Stopped) => {
            return true
        }
        // The request may have been applied: only reads may be repeated.
        Some(EtcdErrorKind::ServerTimeout | EtcdErrorKind::LeaderChanged) => {
            return retry == Retry::Idempotent
        }
        Some(_) => return false,
        None => {}
    }
    match error {
        Error::Status { status } if status.code() == tonic::Code::Unavailable => {
            retry == Retry::Idempotent || never_sent(status)
        }
        // The connection broke (reset, closed) with the request queued or in flight.
        Error::Status { status } if is_transport_failure(status) => {
            retry == Retry::Idempotent || never_sent(status)
        }
        _ => false,
    }
}

/// True when tonic reports a broken connection rather than an answer from etcd.
fn is_transport_failure(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some_and(|s| s.is::<tonic::transport::Error>())
        || (status.code() == tonic::Code::Cancelled && status.message() == "operation was canceled")
        || (status.code() == tonic::Code::Unknown && status.message() == "transport error")
}

/// True when a transport failure happened while connecting, so the request never left.
fn never_sent(status: &tonic::Status) -> bool {
    let text = format!(
        "{} {:?}",
        status.message(),
        std::error::Error::source(status)
    );
    text.contains("connect") || text.contains("Connection refused")
}

/// Builds a [`Client`]: endpoints and options, plus optional extras such as a wire log, TLS
/// settings or a user to authenticate as.
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    targets: Vec<Target>,
    options: ClientOptions,
    wire: Option<Arc<dyn WireSink>>,
    credentials: Option<crate::auth::Credentials>,
}

impl ClientBuilder {
    fn new<E, S>(endpoints: E, options: ClientOptions) -> Result<Self>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let targets = endpoints
            .into_iter()
            .map(|e| normalize_endpoint(e.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        if targets.is_empty() {
            return Err(Error::invalid(
                "endpoints",
                "at least one endpoint is required",
            ));
        }
        if options.connect_timeout.is_zero() {
            return Err(Error::invalid(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        Ok(ClientBuilder {
            targets,
            options,
            wire: None,
            credentials: None,
        })
    }

    /// Records every RPC (method, request, response, sizes, latency) into `sink`. Requests and
    /// answers that carry a password or token (`Authenticate`, `UserAdd`,
    /// `UserChangePassword`) are logged as `{}`.
    pub fn wire_log(mut self, sink: Arc<dyn WireSink>) -> Self {
        self.wire = Some(sink);
        self
    }

    /// Uses TLS with these settings (CA bundle, client certificate, server name): the same as
    /// [`ClientOptions::with_tls`]. Bare `host:port` endpoints then use TLS too.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsOptions) -> Self {
        self.options.tls = Some(tls);
        self
    }

    /// Authenticates as `user` (`Auth/Authenticate`) while connecting, and sends the token
    /// on every call, renewing it when etcd reports it invalid (see [`crate::auth`]). A wrong
    /// password fails the connect with the typed `AuthFailed` error; a cluster without auth
    /// is accepted (no token is sent until etcd asks for one).
    pub fn auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(crate::auth::Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Opens connections (in parallel) and returns the client; see [`Client::connect`].
    /// With TLS, each connection also completes one `Maintenance/Status` call, so a server
    /// that refuses the client certificate fails here with [`Error::Tls`], not on first use.
    pub async fn connect(self) -> Result<Client> {
        if self.credentials.as_ref().is_some_and(|c| c.user.is_empty()) {
            return Err(Error::invalid("user", "the user name must not be empty"));
        }
        let o = &self.options;
        #[cfg(feature = "tls")]
        let tls_config = o
            .tls
            .as_ref()
            .map(crate::tls::TlsOptions::client_config)
            .transpose()?;
        #[cfg(not(feature = "tls"))]
        let tls_config: Option<()> = None;
        let urls: Vec<String> = self
            .targets
            .iter()
            .map(|t| t.url(tls_config.is_some()))
            .collect();
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in &urls {
            #[allow(unused_mut)]
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::invalid("endpoints", format!("{url}: {e}")))?
                .connect_timeout(o.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(o.keep_alive_interval)
                .keep_alive_timeout(o.keep_alive_timeout)
                .keep_alive_while_idle(true);
            #[cfg(feature = "tls")]
            if url.starts_with("https://") {
                let config = tls_config.clone().unwrap_or_else(|| {
                    tonic::transport::ClientTlsConfig::new().with_native_roots()
                });
                endpoint = endpoint.tls_config(config).map_err(|e| Error::Tls {
                    reason: format!("{url}: {}", transport_reason(&e)),
                })?;
            }
            endpoints.push(endpoint);
        }
        let attempts = endpoints.iter().zip(&urls).map(|(e, url)| {
            let e = e.clone();
            let limit = o.connect_timeout;
            let tls = url.starts_with("https://");
            async move {
                let channel = match tokio::time::timeout(limit, e.connect()).await {
                    Ok(Ok(channel)) => channel,
                    Ok(Err(err)) => return Err(failure(&err)),
                    Err(_) => return Err(Failure::Other(format!("no answer within {limit:?}"))),
                };
                if tls {
                    probe(channel.clone(), limit).await?;
                }
                Ok(channel)
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let mut members = Vec::with_capacity(results.len());
        let mut first_live = None;
        let mut last_reason = String::new();
        let mut tls_reason = None;
        for ((url, endpoint), result) in urls.iter().zip(endpoints).zip(results) {
            let channel = match result {
                Ok(channel) => {
                    first_live.get_or_insert(members.len());
                    channel
                }
                Err(failure) => {
                    let (Failure::Tls(reason) | Failure::Other(reason)) = &failure;
                    last_reason = format!("{url}: {reason}");
                    if matches!(failure, Failure::Tls(_)) {
                        tls_reason = Some(last_reason.clone());
                    }
                    endpoint.connect_lazy()
                }
            };
            members.push(Member {
                url: url.clone(),
                channel,
            });
        }
        let Some(first_live) = first_live else {
            if let Some(reason) = tls_reason {
                return Err(Error::Tls { reason });
            }
            return Err(Error::Connect {
                endpoints: urls.join(","),
                reason: last_reason,
            });
        };
        let client = Client {
            inner: Arc::new(Inner {
                members,
                current: AtomicUsize::new(first_live),
                options: self.options,
                counters: Counters::default(),
                wire: self.wire,
                watch_hub: OnceLock::new(),
                lock_watches: Default::default(),
                auth: crate::auth::AuthState::new(self.credentials),
            }),
        };
        if client.inner.auth.credentials.is_some() {
            client.authenticate_at_connect().await?;
        }
        Ok(client)
    }
}

/// Why one endpoint could not be connected.
#[derive(Debug)]
enum Failure {
    /// The TLS handshake failed, or the server refused our certificate.
    Tls(String),
    /// Anything else (refused, unreachable, timed out).
    Other(String),
}

fn failure(err: &tonic::transport::Error) -> Failure {
    #[cfg(feature = "tls")]
    if let Some(reason) = crate::tls::failure_in(err) {
        return Failure::Tls(reason);
    }
    Failure::Other(transport_reason(err))
}

/// One `Maintenance/Status` on a fresh TLS connection. With TLS 1.3 the server checks the
/// client certificate after the client considers the handshake done, so a refusal only shows
/// on the first request; any answer from etcd (even an error) means TLS is fine. The server's
/// alert can be lost when it resets the connection at once: try up to three times.
async fn probe(channel: Channel, limit: Duration) -> std::result::Result<(), Failure> {
    let deadline = Instant::now() + limit;
    let mut grpc = crate::proto::etcdserverpb::maintenance_client::MaintenanceClient::new(channel);
    let mut closed = String::new();
    for _ in 0..3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let call = grpc.status(crate::proto::etcdserverpb::StatusRequest {});
        match tokio::time::timeout(left, call).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(status)) => match Error::from_status(status) {
                Error::Tls { reason } => return Err(Failure::Tls(reason)),
                Error::Status { status } if is_transport_failure(&status) => {
                    closed = transport_status_reason(&status);
                }
                _ => return Ok(()),
            },
            Err(_) => {
                return Err(Failure::Other(format!(
                    "no answer to Maintenance/Status within {limit:?}"
                )))
            }
        }
    }
    Err(Failure::Tls(format!(
        "the server closed the connection right after the TLS handshake ({closed}); if it \
         requires client certificates, pass one (TlsOptions::with_identity_files, --cert/--key)"
    )))
}

/// The innermost cause of a transport failure reported as a status.
fn transport_status_reason(status: &tonic::Status) -> String {
    let mut source: &dyn std::error::Error = status;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// The innermost cause of a transport error, which is the readable one ("Connection refused").
fn transport_reason(err: &tonic::transport::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// A checked endpoint: the scheme as given (`None` for bare `host:port`) and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: Option<bool>,
    authority: String,
}

impl Target {
    /// The URL to dial: bare `host:port` uses TLS when TLS settings were given, as etcdctl does.
    fn url(&self, tls_configured: bool) -> String {
        let scheme = if self.https.unwrap_or(tls_configured) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.authority)
    }
}

/// Accepts `host:port`, `http://host:port` and (with the `tls` feature) `https://host:port`;
/// refuses other schemes and malformed input.
fn normalize_endpoint(raw: &str) -> Result<Target> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(Error::invalid("endpoints", "empty endpoint"));
    }
    let (https, rest) = if let Some(rest) = raw.strip_prefix("http://") {
        (Some(false), rest)
    } else if let Some(rest) = raw.strip_prefix("https://") {
        if !cfg!(feature = "tls") {
            return Err(Error::invalid(
                "endpoints",
                format!("{raw}: https:// endpoints need etcd-lock's `tls` cargo feature, which this build does not have"),
            ));
        }
        (Some(true), rest)
    } else if raw.contains("://") {
        return Err(Error::invalid(
            "endpoints",
            format!("{raw}: only http:// and https:// endpoints are supported"),
        ));
    } else {
        (None, raw)
    };
    let authority = rest.trim_end_matches('/');
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || authority.contains('/') {
        return Err(Error::invalid(
            "endpoints",
            format!("{raw}: expected host:port, http://host:port or https://host:port"),
        ));
    }
    Ok(Target {
        https,
        authority: authority.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_endpoint;

    #[test]
    fn endpoints_are_normalized_or_refused() {
        let url = |raw: &str, tls: bool| normalize_endpoint(raw).ok().map(|t| t.url(tls));
        assert_eq!(
            url("127.0.0.1:2379", false).as_deref(),
            Some("http://127.0.0.1:2379")
        );
        assert_eq!(
            url("127.0.0.1:2379", true).as_deref(),
            Some("https://127.0.0.1:2379")
        );
        assert_eq!(
            url("http://localhost:2379/", true).as_deref(),
            Some("http://localhost:2379")
        );
        let https = normalize_endpoint("https://localhost:2379");
        if cfg!(feature = "tls") {
            assert_eq!(
                https.ok().map(|t| t.url(false)).as_deref(),
                Some("https://localhost:2379")
            );
        } else {
            let text = https.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains("`tls` cargo feature"), "{text}");
        }
        for bad in [
            "",
            "localhost",
            "ftp://x:1",
            "http://:2379",
            "x:99999",
            "a:1/b",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad} accepted");
        }
    }
}
