//! One client connection: its own HTTP/2 connection to the member, one task per stream, and
//! the end of either connection passed on to the other (a GOAWAY with its error code, or the
//! connection dropped when the other one was lost without one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::Reason;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::coalesce::Coalesced;
use super::record::StreamRecord;
use super::{Config, Counter, Live};
use crate::wire::{ConnectionClose, Peer, WireEvent};

/// A byte stream HTTP/2 runs over: TCP, or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Stream window: per stream and direction, the most the tap holds before the reader reads.
const STREAM_WINDOW: u32 = 1 << 20;
/// Connection window, per connection and direction.
const CONNECTION_WINDOW: u32 = 16 << 20;
/// How long stream tasks get to write their close lines once both connections are gone.
const DRAIN: Duration = Duration::from_secs(2);

/// Serves one accepted TCP connection until it or its upstream connection ends.
pub(super) async fn serve(
    socket: TcpStream,
    client: SocketAddr,
    config: Arc<Config>,
    live: Arc<Live>,
) {
    let _counted = Counter::new(&live.connections);
    let connection = crate::wire::next_id();
    let _ = socket.set_nodelay(true);
    let mut peer = Peer {
        connection,
        client: client.to_string(),
        upstream: config.upstream.url.clone(),
        client_tls: None,
        upstream_tls: None,
    };
    let lost = |peer: &Peer, cause: String| {
        if let Some(sink) = &config.sink {
            sink.record(&WireEvent::Disconnect(ConnectionClose {
                peer,
                how: "error",
                reason: None,
                cause: Some(&cause),
                streams: 0,
            }));
        }
    };
    let client_io = match super::tls::accept(&config, socket).await {
        Ok((io, tls)) => {
            peer.client_tls = tls;
            io
        }
        Err(error) => return lost(&peer, format!("client TLS handshake: {error}")),
    };
    let (upstream_io, upstream_tls) = match super::tls::connect(&config).await {
        Ok(pair) => pair,
        Err(error) => return lost(&peer, format!("upstream: {error}")),
    };
    peer.upstream_tls = upstream_tls;
    let (send_request, upstream_conn) = match h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_pending_accept_reset_streams(1000)
        .handshake::<_, Bytes>(Coalesced(upstream_io))
        .await
    {
        Ok(pair) => pair,
        Err(error) => return lost(&peer, format!("upstream HTTP/2 handshake: {error}")),
    };
    let server = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_pending_accept_reset_streams(1000)
        .handshake::<_, Bytes>(Coalesced(client_io))
        .await;
    let mut server = match server {
        Ok(server) => server,
        Err(error) => return lost(&peer, format!("client HTTP/2 handshake: {error}")),
    };
    let peer = Arc::new(peer);
    if let Some(sink) = &config.sink {
        sink.record(&WireEvent::Connect(&peer));
    }
    let connection_end = Arc::new(std::sync::OnceLock::new());
    let mut streams = JoinSet::new();
    // This connection's streams still being forwarded.
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut opened = 0u64;
    let mut upstream_conn = Box::pin(upstream_conn);
    let mut upstream_open = true;
    // How the member ended its side, when it did so with a GOAWAY passed on to the client.
    let mut upstream_end: Option<(&'static str, Option<Reason>)> = None;
    let (how, reason, cause): (&'static str, Option<Reason>, Option<String>) = loop {
        tokio::select! {
            incoming = server.accept() => match incoming {
                Some(Ok((request, respond))) => {
                    opened += 1;
                    // Reap finished stream tasks here rather than being woken for each one:
                    // the set stays as small as the number of live streams.
                    while streams.try_join_next().is_some() {}
                    let log = config.sink.as_ref().map(|sink| {
                        std::sync::Mutex::new(StreamRecord::open(
                            Arc::clone(sink),
                            Arc::clone(&peer),
                            request.uri(),
                            request.headers(),
                            Arc::clone(&connection_end),
                        ))
                    });
                    let upstream = send_request.clone();
                    let live = Arc::clone(&live);
                    let active = Arc::clone(&active);
                    streams.spawn(async move {
                        let _counted = Counter::new(&live.streams);
                        let _active = Counter::new(&active);
                        super::forward::forward(request, respond, upstream, log).await;
                    });
                }
                Some(Err(error)) => break client_error(&error),
                None => {
                    let (how, reason) = upstream_end.unwrap_or(("closed", None));
                    break (how, reason, None);
                }
            },
            ended = &mut upstream_conn, if upstream_open => {
                upstream_open = false;
                match ended {
                    // The member closed the connection with streams still open (killed, or
                    // its GOAWAY's streams cut short): the client's connection goes the same
                    // way, so the client sees a lost connection as it would directly.
                    Ok(()) if active.load(std::sync::atomic::Ordering::SeqCst) > 0 => {
                        break ("upstream_lost", None, Some("the member closed the connection".into()));
                    }
                    // The member closed its idle connection: a GOAWAY (NO_ERROR) tells the
                    // client, which reconnects.
                    Ok(()) => {
                        upstream_end = Some(("upstream_closed", None));
                        server.graceful_shutdown();
                    }
                    Err(error) => match error.reason() {
                        Some(reason) if error.is_go_away() => {
                            upstream_end = Some(("upstream_goaway", Some(reason)));
                            server.abrupt_shutdown(reason);
                        }
                        // Lost without a GOAWAY: the client's connection is dropped too.
                        _ => break ("upstream_lost", None, Some(error.to_string())),
                    },
                }
            },
        }
    };
    // Streams still open see their connections fail and log it, with the side that went.
    let _ = connection_end.set(match (how, &cause) {
        ("upstream_lost", Some(cause)) => format!("upstream: {cause}"),
        ("upstream_closed" | "upstream_goaway", _) => format!("upstream: {how}"),
        (_, Some(cause)) => format!("client: {cause}"),
        (how, None) => format!("client: connection {how}"),
    });
    drop(server);
    drop(send_request);
    if how == "upstream_lost" {
        drop(upstream_conn);
        let _ = tokio::time::timeout(DRAIN, async {
            while streams.join_next().await.is_some() {}
        })
        .await;
    } else {
        // The client went: its streams reset theirs upstream (CANCEL), as the member would
        // see a client's closed connection end them; the upstream connection is driven until
        // those resets are out.
        let _ = tokio::time::timeout(DRAIN, async {
            let mut upstream_conn = upstream_conn;
            loop {
                tokio::select! {
                    next = streams.join_next() => if next.is_none() { break },
                    _ = &mut upstream_conn, if upstream_open => upstream_open = false,
                }
            }
            // Flush the resets: one more turn of the connection.
            if upstream_open {
                let _ = tokio::time::timeout(Duration::from_millis(50), upstream_conn).await;
            }
        })
        .await;
    }
    streams.abort_all();
    if let Some(sink) = &config.sink {
        sink.record(&WireEvent::Disconnect(ConnectionClose {
            peer: &peer,
            how,
            reason: reason.map(u32::from),
            cause: cause.as_deref(),
            streams: opened,
        }));
    }
}

/// How a failed client connection ended.
fn client_error(error: &h2::Error) -> (&'static str, Option<Reason>, Option<String>) {
    if error.is_go_away() {
        ("goaway", error.reason(), None)
    } else {
        ("error", error.reason(), Some(error.to_string()))
    }
}
