//! Building a [`Client`]: endpoint parsing, TLS and auth settings, the initial connections.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use super::h2channel::{self, Channel, Destination, TransportError};
use super::scheme::{self, Origin};
use super::token::{Credentials, TokenState};
use super::unary::is_transport_failure;
use super::{Client, ClientOptions, Counters, Inner, Member};
use crate::error::{Error, Result};
use crate::wire::WireSink;

/// Builds a [`Client`]: endpoints and options, plus optional extras such as a wire log, TLS
/// settings or a user to authenticate as.
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    /// The endpoints as given (trimmed).
    targets: Vec<String>,
    options: ClientOptions,
    wire: Option<Arc<dyn WireSink>>,
    credentials: Option<Credentials>,
}

impl ClientBuilder {
    pub(super) fn new<E, S>(endpoints: E, options: ClientOptions) -> Result<Self>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        // Checked now for form; the scheme rules that depend on TLS apply at `connect`.
        let any_scheme = scheme::Rules {
            tls: false,
            allow_plaintext: true,
        };
        let targets = endpoints
            .into_iter()
            .map(|e| {
                let raw = e.as_ref().trim();
                scheme::dial_url(raw, Origin::Configured, any_scheme).map(|_| raw.to_string())
            })
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

    /// Reports every unary call attempt and every stream's open, messages and close to `sink`
    /// (see [`WireEvent`](crate::wire::WireEvent)), with the exact bytes sent and received.
    /// Requests and answers that carry a password or token (`Authenticate`, `UserAdd`,
    /// `UserChangePassword`) are withheld; the token metadata is shown as `"<redacted>"`.
    pub fn wire_log(mut self, sink: Arc<dyn WireSink>) -> Self {
        self.wire = Some(sink);
        self
    }

    /// Uses TLS with these settings (CA bundle, client certificate, server name): the same as
    /// [`ClientOptions::with_tls`]. Bare `host:port` endpoints then use TLS too.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, tls: crate::tls::TlsOptions) -> Self {
        self.options.tls = Some(tls);
        self
    }

    /// Authenticates as `user` (`Auth/Authenticate`) while connecting, and sends the token
    /// on every call, renewing it when etcd reports it invalid (see [`crate::auth`]). A wrong
    /// password fails the connect with the typed `AuthFailed` error; a cluster without auth
    /// is accepted (no token is sent until etcd asks for one).
    pub fn auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::new(user.into(), password.into()));
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
        let rules = scheme::Rules {
            tls: tls_config.is_some(),
            allow_plaintext: allow_plaintext(o),
        };
        let urls: Vec<String> = self
            .targets
            .iter()
            .map(|t| scheme::dial_url(t, Origin::Configured, rules))
            .collect::<Result<_>>()?;
        if rules.tls && self.credentials.is_some() {
            if let Some(plain) = urls.iter().find(|u| scheme::is_plaintext(u)) {
                return Err(Error::invalid(
                    "endpoints",
                    format!(
                        "{plain}: with TLS configured, a user's password and token are never \
                         sent in clear, and every request carries the token; use https:// \
                         endpoints (allow_plaintext_with_tls does not lift this)"
                    ),
                ));
            }
        }
        let make_channel = {
            let settings = channel_settings(o);
            #[allow(clippy::clone_on_copy)]
            let tls_config = tls_config.clone();
            move |url: &str| -> Result<Channel> {
                let _ = &tls_config;
                #[cfg(feature = "tls")]
                let tls = match (&tls_config, url.starts_with("https://")) {
                    (_, false) => None,
                    (Some(config), true) => Some(config.clone()),
                    // An https:// endpoint without TLS settings: the system's trust store.
                    (None, true) => Some(crate::tls::TlsOptions::new().client_config()?),
                };
                let dest = Destination::parse(
                    url,
                    #[cfg(feature = "tls")]
                    tls,
                )
                .map_err(|e| Error::invalid("endpoints", e))?;
                Ok(Channel::lazy(dest, settings))
            }
        };
        let channels = urls
            .iter()
            .map(|url| make_channel(url))
            .collect::<Result<Vec<_>>>()?;
        let attempts = channels.iter().map(|channel| {
            let channel = channel.clone();
            let limit = o.connect_timeout;
            let max_response_bytes = o.max_response_bytes;
            async move {
                let tls = channel.is_tls();
                if let Err(err) = channel.connect().await {
                    return Err(failure_for(&err, tls));
                }
                if tls {
                    probe(channel, max_response_bytes, limit).await?;
                }
                Ok(())
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let mut members = Vec::with_capacity(results.len());
        let mut first_live = None;
        let mut last_reason = String::new();
        let mut tls_reason = None;
        // A member that failed keeps its channel: it connects on the next call that needs it.
        for ((url, channel), result) in urls.iter().zip(channels).zip(results) {
            match result {
                Ok(()) => {
                    first_live.get_or_insert(members.len());
                }
                Err(failure) => {
                    let (Failure::Tls(reason) | Failure::Other(reason)) = &failure;
                    last_reason = format!("{url}: {reason}");
                    if matches!(failure, Failure::Tls(_)) {
                        tls_reason = Some(last_reason.clone());
                    }
                }
            }
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
        let auto_sync = self.options.auto_sync_interval;
        let client = Client {
            inner: Arc::new(Inner {
                members: RwLock::new(members.into()),
                make_channel: Box::new(make_channel),
                sync_task: OnceLock::new(),
                current: AtomicUsize::new(first_live),
                options: self.options,
                counters: Counters::default(),
                wire: self.wire,
                extensions: Default::default(),
                token: TokenState::new(self.credentials),
            }),
            namespace: None,
        };
        if client.inner.token.credentials.is_some() {
            client.authenticate_at_connect().await?;
        }
        if let Some(interval) = auto_sync {
            client.start_auto_sync(interval);
        }
        Ok(client)
    }
}

impl ClientBuilder {
    /// A client whose channels connect lazily, without contacting any endpoint (unit tests).
    #[cfg(test)]
    pub(crate) fn unconnected(self) -> Client {
        let settings = channel_settings(&self.options);
        let make = move |url: &str| -> Result<Channel> {
            let dest = Destination::parse(
                url,
                #[cfg(feature = "tls")]
                None,
            )
            .map_err(|e| Error::invalid("endpoints", e))?;
            Ok(Channel::lazy(dest, settings))
        };
        let plain = scheme::Rules {
            tls: false,
            allow_plaintext: true,
        };
        let members: Vec<Member> = self
            .targets
            .iter()
            .filter_map(|t| {
                let url = scheme::dial_url(t, Origin::Configured, plain).ok()?;
                make(&url).ok().map(|channel| Member { url, channel })
            })
            .collect();
        Client {
            inner: Arc::new(Inner {
                members: RwLock::new(members.into()),
                make_channel: Box::new(make),
                sync_task: OnceLock::new(),
                current: AtomicUsize::new(0),
                options: self.options,
                counters: Counters::default(),
                wire: self.wire,
                extensions: Default::default(),
                token: TokenState::new(self.credentials),
            }),
            namespace: None,
        }
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

/// Like [`failure`], but a connection reset or closed during an https connect is a TLS
/// failure: the server hung up on the handshake (e.g. a plain-HTTP port; etcd 3.4 resets).
fn failure_for(err: &TransportError, tls: bool) -> Failure {
    match failure(err) {
        Failure::Other(reason) if tls && hung_up(err) => Failure::Tls(format!(
            "the server closed the connection during the TLS handshake ({reason}); does it speak TLS on this port?"
        )),
        other => other,
    }
}

/// True when an I/O error in the chain says the peer reset or closed the connection.
fn hung_up(err: &TransportError) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | UnexpectedEof
            ) {
                return true;
            }
        }
        source = e.source();
    }
    false
}

fn failure(err: &TransportError) -> Failure {
    #[cfg(feature = "tls")]
    if let Some(reason) = crate::support::tls::failure_in(err) {
        return Failure::Tls(reason);
    }
    Failure::Other(transport_reason(err))
}

/// The method the TLS probe sends (the client layer names no service module).
const STATUS: &str = "/etcdserverpb.Maintenance/Status";

/// One `Maintenance/Status` on a fresh TLS connection. With TLS 1.3 the server checks the
/// client certificate after the client considers the handshake done, so a refusal only shows
/// on the first request; any answer from etcd (even an error) means TLS is fine. The server's
/// alert can be lost when it resets the connection at once: try up to three times.
async fn probe(
    channel: Channel,
    max_response_bytes: usize,
    limit: Duration,
) -> std::result::Result<(), Failure> {
    let deadline = Instant::now() + limit;
    let mut closed = String::new();
    for _ in 0..3 {
        let left = deadline.saturating_duration_since(Instant::now());
        // An empty `StatusRequest` encodes to no bytes.
        let request = tonic::Request::new(prost::bytes::Bytes::new());
        let call = super::unary::send(channel.clone(), max_response_bytes, STATUS, request);
        match tokio::time::timeout(left, call).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(status)) => match Error::from_status(status) {
                Error::Tls { reason } => return Err(Failure::Tls(reason)),
                Error::Status { status } if is_transport_failure(status.as_tonic()) => {
                    closed = transport_status_reason(status.as_tonic());
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
fn transport_reason(err: &TransportError) -> String {
    h2channel::innermost(err)
}

/// What a member's channel takes from the options: the connect timeout and HTTP/2 keep-alive.
fn channel_settings(options: &ClientOptions) -> h2channel::Settings {
    h2channel::Settings {
        connect_timeout: options.connect_timeout,
        keep_alive_interval: options.keep_alive_interval,
        keep_alive_timeout: options.keep_alive_timeout,
    }
}

/// `ClientOptions::allow_plaintext_with_tls`, `false` in a build without TLS.
pub(super) fn allow_plaintext(options: &ClientOptions) -> bool {
    #[cfg(feature = "tls")]
    return options.allow_plaintext_with_tls;
    #[cfg(not(feature = "tls"))]
    {
        let _ = options;
        false
    }
}
