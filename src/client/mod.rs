//! The connection handle: endpoints, timeouts, failover and per-client counters.
//!
//! A [`Client`] is cheap to clone (one `Arc`); every clone shares the HTTP/2 connections, the
//! multiplexed watch stream and the request counters. All methods take `&self`. The typed
//! request wrappers live next to their service: [`crate::kv`], [`crate::lease`],
//! [`crate::watch`], [`crate::maintenance`].
//!
//! This module is the ground floor of the crate: it knows endpoints, deadlines, retries and the
//! auth token, and imports nothing of ours but `error`, `proto`, `wire` and `support`. State
//! that upper layers keep per client (the watch hub, the lock prefix watches) hangs on the
//! client through a type-keyed extension slot (`extensions.rs`) whose types the client never
//! names.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use h2channel::Channel;

use crate::error::Result;
use crate::wire::WireSink;

/// Connection settings. Build with [`ClientOptions::new`] (or `Default`) and the `with_*` setters.
///
/// # What a failed request does next
///
/// Every unary RPC goes to the current endpoint. When it fails because the member (or the
/// connection to it) failed, later requests go to the next endpoint; whether *this* request is
/// sent again depends on what it is:
///
/// - **Reads are repeated** on the next endpoint until the request timeout: `Range`, a `Txn`
///   whose branches (nested txns included) hold only gets, `Status`, `MemberList`,
///   `LeaseTimeToLive`, `LeaseLeases`, `Authenticate`, `AuthStatus`, the election service's
///   `Leader`. They are repeated after a broken connection, `Unavailable`, and etcd's
///   `no leader`, `not leader`, `leader changed`, `server stopped` and `request timed out`.
/// - **Writes are repeated only when the request provably never reached etcd**: the connection
///   could not be opened, the server refused the HTTP/2 stream (`REFUSED_STREAM`), or it sent a
///   GOAWAY that excludes our stream. This is decided from error types, never from message
///   text. Everything else fails the call, because etcd may already have applied the write:
///   `server stopped`, `leader changed` and `request timed out` can all come after the
///   proposal, and a connection that broke may have carried it. Go's `clientv3` follows the
///   same rule for mutable RPCs.
///
/// So a `put`, `delete`, write `txn`, `lease_grant`, lock or election call can fail with such
/// an error during a leader change or a member shutdown, where a read would have succeeded.
/// Repeat it yourself if doing it twice is harmless, or read back first: a guarded txn (a
/// `Compare` on the key's version or revision) makes a repeated write safe.
#[derive(Debug, Clone)]
#[must_use]
#[non_exhaustive]
pub struct ClientOptions {
    /// Time allowed to open the TCP/HTTP2 connection to one endpoint. Default 5 s.
    pub connect_timeout: Duration,
    /// Deadline for each unary request, sent to etcd as `grpc-timeout` too. `None` = no limit.
    /// Default 10 s. Streams (watch, keep-alive) and the server-side `Lock` call are not bounded by it.
    pub request_timeout: Option<Duration>,
    /// HTTP/2 PING interval used to notice dead connections, also while no call is open.
    /// Default 10 s; zero sends no PINGs.
    pub keep_alive_interval: Duration,
    /// How long to wait for a PING answer before the connection counts as dead. Default 5 s.
    pub keep_alive_timeout: Duration,
    /// Refresh the endpoint list from `Cluster/MemberList` this often (like Go's
    /// `AutoSyncInterval`). `None` (the default): use the given endpoints only.
    pub auto_sync_interval: Option<Duration>,
    /// TLS settings for `https://` endpoints (and bare `host:port` ones, which then use TLS,
    /// as etcdctl does). `None`: bare endpoints are `http://`; `https://` ones trust the
    /// system's CAs.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub tls: Option<crate::tls::TlsOptions>,
    /// With TLS settings, also accept endpoints given explicitly as `http://` (used in clear).
    /// Default `false`: such an endpoint fails the connect with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument), so TLS settings never
    /// quietly fall back to plaintext. See [`ClientOptions::with_allow_plaintext_with_tls`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub allow_plaintext_with_tls: bool,
    /// Send etcd's require-leader metadata (`hasleader: true`) with every unary RPC, as Go's
    /// `clientv3.WithRequireLeader` does. Default `false`. See
    /// [`ClientOptions::with_require_leader`].
    pub require_leader: bool,
    /// Largest request message (protobuf bytes) a unary RPC may send; a bigger one fails with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge) before anything is sent.
    /// Default `usize::MAX`: no client-side limit, etcd's `--max-request-bytes` decides.
    pub max_request_bytes: usize,
    /// Largest response message (protobuf bytes) accepted. Default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`] (`i32::MAX`, the limit etcd's own Go client and server
    /// use), so a large range never hits gRPC's usual 4 MiB default.
    pub max_response_bytes: usize,
}

/// Default [`ClientOptions::max_response_bytes`]: 2^31 - 1 bytes, Go's `math.MaxInt32`, which is
/// both etcd's server-side gRPC send limit and `clientv3`'s default receive limit.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(10)),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            auto_sync_interval: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            allow_plaintext_with_tls: false,
            require_leader: false,
            max_request_bytes: usize::MAX,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl ClientOptions {
    /// Refuses a request of `len` encoded bytes over `max_request_bytes` before it is sent.
    pub(crate) fn check_request_size(
        &self,
        method: &'static str,
        len: usize,
    ) -> crate::error::Result<()> {
        if len > self.max_request_bytes {
            return Err(crate::error::Error::MessageTooLarge {
                method,
                what: crate::error::MessageKind::Request,
                bytes: len,
                limit: self.max_request_bytes,
            });
        }
        Ok(())
    }

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
    /// Refreshes the endpoint list from `Cluster/MemberList` every `interval` (`None`: never).
    /// Members that joined are added, members that left are dropped; connections to members
    /// that stay are kept.
    pub fn with_auto_sync(mut self, interval: Option<Duration>) -> Self {
        self.auto_sync_interval = interval;
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
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls(mut self, tls: crate::tls::TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
    /// With TLS settings, accepts endpoints written explicitly as `http://` and talks to them
    /// in clear (a mixed list of TLS and plaintext members). Off by default: without it such
    /// an endpoint is refused when connecting.
    ///
    /// Even with it, nothing secret goes in clear: a client with a user and password refuses
    /// plaintext endpoints under TLS (every request carries the token), and `Authenticate`,
    /// `UserAdd` and `UserChangePassword` are sent to TLS endpoints only. URLs the cluster
    /// advertises (auto-sync, `move_leader`) are always dialled with TLS under TLS settings.
    ///
    /// ```
    /// let options = etcd_lock::ClientOptions::new().with_allow_plaintext_with_tls(true);
    /// assert!(options.allow_plaintext_with_tls);
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_allow_plaintext_with_tls(mut self, allow: bool) -> Self {
        self.allow_plaintext_with_tls = allow;
        self
    }
    /// Makes every unary RPC of this client carry etcd's require-leader metadata
    /// (`hasleader: true`). A member that knows no leader (cut off from its peers, or during an
    /// election) then answers at once with `etcdserver: no leader`
    /// ([`EtcdErrorKind::NoLeader`](crate::error::EtcdErrorKind::NoLeader)) instead of serving
    /// a possibly stale serializable read or holding a linearizable one until it times out.
    ///
    /// A read that gets this answer goes to each other endpoint once; when every endpoint
    /// said `no leader`, the call fails with it (no waiting out the request timeout). A write
    /// is not sent again (see above). It is a client-wide option rather than a per-call one
    /// because it is about the cluster, not the request: a caller that wants both behaviours
    /// keeps two clients. The watch and keep-alive streams always carry it (see
    /// [`crate::watch`]).
    ///
    /// ```
    /// let options = etcd_lock::ClientOptions::new().with_require_leader(true);
    /// assert!(options.require_leader);
    /// ```
    pub fn with_require_leader(mut self, require: bool) -> Self {
        self.require_leader = require;
        self
    }
    /// Sets the largest request (`max_request_bytes`, default no limit) and response
    /// (`max_response_bytes`, default [`DEFAULT_MAX_RESPONSE_BYTES`]) message sizes, in
    /// protobuf bytes. A request over its limit is refused before it is sent; a response over
    /// its limit fails the call. Either way the error is
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge). Values below 1 are read as 1.
    ///
    /// ```
    /// let options = etcd_lock::ClientOptions::new().with_max_message_bytes(2 << 20, 64 << 20);
    /// assert_eq!(options.max_response_bytes, 64 << 20);
    /// ```
    pub fn with_max_message_bytes(mut self, request: usize, response: usize) -> Self {
        self.max_request_bytes = request.max(1);
        self.max_response_bytes = response.max(1);
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
    /// One unary request of `bytes` sent (each attempt counts).
    pub(crate) fn unary_sent(&self, bytes: usize) {
        self.unary_calls.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    /// One unary answer of `bytes` received.
    pub(crate) fn unary_received(&self, bytes: usize) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
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

/// Builds a lazily connecting channel for an endpoint URL with the client's settings.
pub(crate) type ChannelFactory = Box<dyn Fn(&str) -> Result<Channel> + Send + Sync>;

pub(crate) struct Inner {
    /// The endpoints in use; replaced whole by the auto-sync task.
    pub(crate) members: RwLock<Arc<[Member]>>,
    /// Builds a lazily connecting channel for an endpoint URL with this client's settings.
    pub(crate) make_channel: ChannelFactory,
    pub(crate) sync_task: OnceLock<tokio::task::JoinHandle<()>>,
    current: AtomicUsize,
    pub(crate) options: ClientOptions,
    pub(crate) counters: Counters,
    pub(crate) wire: Option<Arc<dyn WireSink>>,
    /// Per-client state of the layers above (watch hub, lock routers), keyed by type.
    pub(crate) extensions: extensions::Extensions,
    pub(crate) token: token::TokenState,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("members", &self.members)
            .field("current", &self.current)
            .field("options", &self.options)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.sync_task.get() {
            task.abort();
        }
    }
}

/// A connection to an etcd cluster. Clone it freely: clones share connections and counters.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    /// The key prefix of a namespaced view (`crate::namespace`); `None` for a plain client.
    pub(crate) namespace: Option<Arc<[u8]>>,
}

impl Client {
    /// Connects to the given endpoints (`http://host:port` or `host:port`) with default options.
    ///
    /// Opens an HTTP/2 connection to every endpoint in parallel and fails with
    /// [`Error::Connect`](crate::Error::Connect) only if none answers within the connect timeout; unreachable ones are
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

    /// The endpoint URLs in use: the ones given, or the cluster's members after an auto-sync.
    pub fn endpoints(&self) -> Vec<String> {
        self.members().iter().map(|m| m.url.clone()).collect()
    }

    /// The current endpoint list (cheap: an `Arc` clone under a read lock).
    pub(crate) fn members(&self) -> Arc<[Member]> {
        match self.inner.members.read() {
            Ok(m) => Arc::clone(&m),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
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
    ///
    /// The stored index is kept below the list's length (see [`Client::replace_members`]);
    /// the modulo only guards a reader that raced with a list change.
    pub(crate) fn current(&self) -> (usize, Channel) {
        let members = self.members();
        let i = self.inner.current.load(Ordering::Relaxed) % members.len();
        (i, members[i].channel.clone())
    }

    /// The URL of endpoint `index` (empty if the list changed meanwhile).
    pub(crate) fn endpoint_url(&self, index: usize) -> String {
        self.members()
            .get(index)
            .map(|m| m.url.clone())
            .unwrap_or_default()
    }

    /// Moves on to the next endpoint after `failed` (an index [`Client::current`] returned)
    /// failed; a no-op if another caller already moved on.
    ///
    /// Compares against the position `current()` reports, not the raw stored value, so a
    /// stored index that is out of range (a list that shrank under a racing reader) still moves.
    pub(crate) fn fail_over(&self, failed: usize) {
        let n = self.members().len().max(1);
        let moved =
            self.inner
                .current
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |stored| {
                    (stored % n == failed).then_some((failed + 1) % n)
                });
        if moved.is_ok() {
            crate::trace::event!(WARN, "failover", from = %self.endpoint_url(failed), to = %self.endpoint_url((failed + 1) % n));
        }
    }

    /// Installs a new endpoint list and points the current index at the same URL when it is
    /// still listed, else at the first endpoint, so the index always lies within the list.
    pub(crate) fn replace_members(&self, members: Arc<[Member]>) {
        let Ok(mut slot) = self.inner.members.write() else {
            return;
        };
        let old = slot.len().max(1);
        let was = self.inner.current.load(Ordering::Relaxed) % old;
        let url = slot.get(was).map(|m| m.url.as_str());
        let now = members
            .iter()
            .position(|m| Some(m.url.as_str()) == url)
            .unwrap_or(0);
        *slot = members;
        // Stored under the write lock: no `current()` sees the new list with the old index.
        self.inner.current.store(now, Ordering::Relaxed);
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub(crate) fn wire(&self) -> Option<&Arc<dyn WireSink>> {
        self.inner.wire.as_ref()
    }
}

mod connect;
mod endpoint;
mod extensions;
mod grpc;
mod h2channel;
mod rpc;
mod scheme;
mod sync;
pub(crate) mod token;
mod unary;

pub use connect::ClientBuilder;
pub(crate) use extensions::WeakClient;
pub(crate) use grpc::{too_large, Grpc};
