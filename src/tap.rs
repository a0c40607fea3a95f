//! A transparent gRPC tap (feature `tap`): an HTTP/2 proxy in front of one etcd member that
//! forwards every call and stream unchanged and reports each one to a [`WireSink`] in the
//! client's wire-log format, so the traffic of any client (Go's clientv3, `etcdctl`, this
//! crate's own) can be audited.
//!
//! - **Forwarding.** Each client connection gets its own connection to the member, and the
//!   bytes of both directions are copied unchanged: every HTTP/2 frame (HEADERS with every
//!   header and metadata entry, DATA, trailers, `RST_STREAM`, GOAWAY, and SETTINGS, PING and
//!   WINDOW_UPDATE too), so the client and the member negotiate with each other and flow
//!   control runs end to end. The tap holds one read buffer per direction; it reads each piece
//!   (frames followed, messages logged) before writing it on. When either connection ends, the
//!   other is closed too.
//! - **Log.** Header blocks are decoded with HPACK as each side's compression context stands;
//!   messages are cut out of the exact DATA bytes (a length-prefixed gRPC message may
//!   span DATA frames) and decoded as [`JsonLines`](crate::wirelog::JsonLines) decodes the
//!   client's own: unary methods give one `call` line, streams `open`, `send`, `recv` and
//!   `close` lines. Every line also carries `conn` (a connection id) and `client` (the
//!   client's address); `endpoint` and `authority` are what the client addressed (its
//!   `:scheme` and `:authority`, forwarded unchanged). A `connect` line per connection names
//!   the member, which side used TLS and the peer certificate subjects; a `disconnect` line
//!   says how the connection ended. Tokens in metadata
//!   are redacted; `Auth/Authenticate`, `UserAdd` and `UserChangePassword` bodies are withheld.
//!   A `close` line for a reset stream has `reset_reason`, the HTTP/2 error code.
//! - **TLS.** On either side, with given certificates: [`tls::server_config`] terminates the
//!   client's TLS (mutual TLS when given a CA for client certificates), [`tls::client_config`]
//!   opens the tap's own TLS to the member (mutual TLS with a client certificate).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use etcd_lock::{tap::Tap, wirelog::JsonLines};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:23790").await?;
//! let tap = Tap::new(listener, "http://127.0.0.1:2379")?
//!     .wire_log(Arc::new(JsonLines::to_file("audit.jsonl")?))
//!     .spawn()?;
//! // Point any etcd client at 127.0.0.1:23790 ...
//! println!("{} connections, {} streams", tap.connections(), tap.streams());
//! tap.shutdown().await;
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::wire::WireSink;

mod conn;
mod frames;
mod record;
mod streams;
pub mod tls;

/// The member the tap forwards to.
#[derive(Debug, Clone)]
struct Upstream {
    /// The URL as given (`http://host:port`), shown in the log's `endpoint`.
    url: String,
    host: String,
    port: u16,
    tls: bool,
}

impl Upstream {
    /// `http://host:port`, `https://host:port` or `host:port` (plaintext).
    fn parse(url: &str) -> io::Result<Upstream> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upstream {url:?}: {why}"),
            )
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if url.contains("://") {
            return Err(bad("the scheme must be http or https"));
        } else {
            (false, url)
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err(bad("a member URL has no path"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("no port (host:port)"))?;
        let port = port.parse::<u16>().map_err(|_| bad("bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let scheme = if tls { "https" } else { "http" };
        Ok(Upstream {
            url: format!("{scheme}://{authority}"),
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// What every connection of one tap shares.
#[derive(Debug)]
struct Config {
    upstream: Upstream,
    sink: Option<Arc<dyn WireSink>>,
    client_tls: Option<Arc<rustls::ServerConfig>>,
    upstream_tls: Option<Arc<rustls::ClientConfig>>,
}

/// Live connections and streams of one tap.
#[derive(Debug, Default)]
struct Live {
    connections: AtomicUsize,
    streams: AtomicUsize,
}

/// Counts one live connection or stream while it exists.
struct Counter<'a>(&'a AtomicUsize);

impl<'a> Counter<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Counter(count)
    }
}

impl Drop for Counter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Builds a tap: a listener, the member to forward to, an optional sink and optional TLS.
#[derive(Debug)]
pub struct Tap {
    listener: TcpListener,
    config: Config,
}

impl Tap {
    /// A tap accepting on `listener` and forwarding to the member at `upstream`
    /// (`http://host:port`, `https://host:port`, or `host:port` for plaintext). Fails with
    /// `InvalidInput` for a URL it cannot use.
    pub fn new(listener: TcpListener, upstream: &str) -> io::Result<Tap> {
        Ok(Tap {
            listener,
            config: Config {
                upstream: Upstream::parse(upstream)?,
                sink: None,
                client_tls: None,
                upstream_tls: None,
            },
        })
    }

    /// Reports every call, stream and connection to `sink` (e.g. a
    /// [`JsonLines`](crate::wirelog::JsonLines)). Without one, nothing is decoded or copied.
    pub fn wire_log(mut self, sink: Arc<dyn WireSink>) -> Self {
        self.config.sink = Some(sink);
        self
    }

    /// Terminates the clients' TLS with `config` (see [`tls::server_config`]).
    pub fn client_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.config.client_tls = Some(config);
        self
    }

    /// Connects to the member over TLS with `config` (see [`tls::client_config`]); the
    /// upstream URL must be `https://`, whose host is the name checked against the member's
    /// certificate.
    pub fn upstream_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.config.upstream_tls = Some(config);
        self
    }

    /// Starts accepting on the current tokio runtime. Fails with `InvalidInput` when the
    /// upstream URL's scheme and the TLS settings disagree (`https://` needs
    /// [`Tap::upstream_tls`], which needs `https://`).
    pub fn spawn(self) -> io::Result<TapHandle> {
        let Tap { listener, config } = self;
        if config.upstream.tls != config.upstream_tls.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "upstream {}: an https:// member needs upstream TLS settings and only it \
                     takes them",
                    config.upstream.url
                ),
            ));
        }
        let local_addr = listener.local_addr()?;
        let live = Arc::new(Live::default());
        let task = tokio::spawn(accept_loop(listener, Arc::new(config), Arc::clone(&live)));
        Ok(TapHandle {
            local_addr,
            live,
            task,
        })
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<Config>, live: Arc<Live>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, client)) => {
                    connections.spawn(conn::serve(
                        socket,
                        client,
                        Arc::clone(&config),
                        Arc::clone(&live),
                    ));
                }
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A running tap. Dropping it (or [`TapHandle::shutdown`]) stops it: the listener closes and
/// every connection and stream task ends at once.
#[derive(Debug)]
pub struct TapHandle {
    local_addr: SocketAddr,
    live: Arc<Live>,
    task: JoinHandle<()>,
}

impl TapHandle {
    /// The address the tap accepts on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Client connections being served now.
    pub fn connections(&self) -> usize {
        self.live.connections.load(Ordering::SeqCst)
    }

    /// Streams (unary calls included) being forwarded now.
    pub fn streams(&self) -> usize {
        self.live.streams.load(Ordering::SeqCst)
    }

    /// Stops the tap and waits until its tasks are gone.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for TapHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = Upstream::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 2379, false));
        let u = Upstream::parse("127.0.0.1:2379").unwrap();
        assert_eq!(u.url, "http://127.0.0.1:2379");
        let u = Upstream::parse("https://etcd.local:2379/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("etcd.local", 2379, true));
        let u = Upstream::parse("http://[::1]:2379").unwrap();
        assert_eq!(u.host, "::1");
        for bad in [
            "unix:///x",
            "http://h",
            "http://h:p",
            "http://:1",
            "http://h:1/v3",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
