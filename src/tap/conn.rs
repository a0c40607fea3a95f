//! One client connection: a connection of its own to the member, and the bytes of each
//! direction copied to the other as they arrive, unchanged. Every frame, SETTINGS, PING and
//! WINDOW_UPDATE included, reaches the other end as it was sent, so the client and the member
//! negotiate with each other and flow control runs end to end: the tap holds no more than one
//! read buffer per direction. Each piece is read (frames followed, messages logged) before it
//! is written on, so a request is in the log before its answer can come back.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::frames::FrameReader;
use super::streams::Streams;
use super::{Config, Counter, Live};
use crate::wire::{ConnectionClose, Peer, WireEvent};

/// A byte stream HTTP/2 runs over: TCP, or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Bytes read at once, per direction.
const BUFFER: usize = 32 << 10;
/// How long the member gets to close its side after the client closed the connection.
const DRAIN: Duration = Duration::from_secs(2);

/// Why a direction stopped.
#[derive(Debug)]
enum End {
    /// Its source closed the connection; the destination's writing side was shut down.
    Closed,
    /// Reading from the source failed.
    ReadFailed(io::Error),
    /// Writing to the destination failed.
    WriteFailed(io::Error),
}

/// One direction: read from one side, write to the other.
struct Pump {
    buf: Box<[u8]>,
    filled: usize,
    written: usize,
    /// Bytes were written since the destination was last flushed (TLS holds them until then).
    unflushed: bool,
    /// The source closed: flush and shut down the destination, then stop.
    closing: bool,
}

impl Pump {
    fn new() -> Self {
        Pump {
            buf: vec![0; BUFFER].into_boxed_slice(),
            filled: 0,
            written: 0,
            unflushed: false,
            closing: false,
        }
    }

    /// Copies until the source has nothing more for now (`Pending`) or the direction ends.
    /// `seen` reads each piece before it is written on.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut dyn Io,
        to: &mut dyn Io,
        mut seen: impl FnMut(&[u8]),
    ) -> Poll<End> {
        let mut from = Pin::new(from);
        let mut to = Pin::new(to);
        loop {
            while self.written < self.filled {
                match to
                    .as_mut()
                    .poll_write(cx, &self.buf[self.written..self.filled])
                {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(End::WriteFailed(io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        self.unflushed = true;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(End::WriteFailed(error)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.closing {
                if let Err(error) = std::task::ready!(to.as_mut().poll_flush(cx)) {
                    return Poll::Ready(End::WriteFailed(error));
                }
                // The peer may be gone already: the direction is over either way.
                let _ = std::task::ready!(to.as_mut().poll_shutdown(cx));
                return Poll::Ready(End::Closed);
            }
            let mut read = ReadBuf::new(&mut self.buf);
            match from.as_mut().poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 {
                        self.closing = true;
                        continue;
                    }
                    seen(&self.buf[..n]);
                    self.filled = n;
                    self.written = 0;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(End::ReadFailed(error)),
                Poll::Pending => {
                    if self.unflushed {
                        match to.as_mut().poll_flush(cx) {
                            Poll::Ready(Ok(())) => self.unflushed = false,
                            Poll::Ready(Err(error)) => return Poll::Ready(End::WriteFailed(error)),
                            Poll::Pending => {}
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Which direction ended first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Client to member.
    Up,
    /// Member to client.
    Down,
}

/// Serves one accepted TCP connection until it or its upstream connection ends.
pub(super) async fn serve(
    socket: TcpStream,
    client: SocketAddr,
    config: Arc<Config>,
    live: Arc<Live>,
) {
    let _counted = Counter::new(&live.connections);
    let _ = socket.set_nodelay(true);
    let mut peer = Peer {
        connection: crate::wire::next_id(),
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
    let mut client_io = match super::tls::accept(&config, socket).await {
        Ok((io, tls)) => {
            peer.client_tls = tls;
            io
        }
        Err(error) => return lost(&peer, format!("client TLS handshake: {error}")),
    };
    let mut upstream_io = match super::tls::connect(&config).await {
        Ok((io, tls)) => {
            peer.upstream_tls = tls;
            io
        }
        Err(error) => return lost(&peer, format!("upstream: {error}")),
    };
    let peer = Arc::new(peer);
    if let Some(sink) = &config.sink {
        sink.record(&WireEvent::Connect(&peer));
    }
    let mut streams = Streams::new(config.sink.clone(), Arc::clone(&peer), Arc::clone(&live));
    let mut requests = FrameReader::new(true);
    let mut responses = FrameReader::new(false);
    let mut up = Pump::new();
    let mut down = Pump::new();
    // Both directions, until the first one ends.
    let (up_end, down_end) = poll_fn(|cx| {
        let up_end = up
            .poll(cx, &mut *client_io, &mut *upstream_io, |bytes| {
                requests.feed(bytes, &mut |event| streams.client(event))
            })
            .map(Some);
        let down_end = down
            .poll(cx, &mut *upstream_io, &mut *client_io, |bytes| {
                responses.feed(bytes, &mut |event| streams.upstream(event))
            })
            .map(Some);
        match (up_end, down_end) {
            (Poll::Pending, Poll::Pending) => Poll::Pending,
            (up, down) => Poll::Ready((
                match up {
                    Poll::Ready(end) => end,
                    Poll::Pending => None,
                },
                match down {
                    Poll::Ready(end) => end,
                    Poll::Pending => None,
                },
            )),
        }
    })
    .await;

    let (how, reason, mut cause) = ending(&up_end, &down_end, &streams);
    // The client closed: the member, whose writing side was shut down, closes its own; its
    // last frames still pass to the client and into the log.
    if matches!(up_end, Some(End::Closed)) && down_end.is_none() {
        let _ = tokio::time::timeout(
            DRAIN,
            poll_fn(|cx| {
                down.poll(cx, &mut *upstream_io, &mut *client_io, |bytes| {
                    responses.feed(bytes, &mut |event| streams.upstream(event))
                })
            }),
        )
        .await;
    }
    // Either side otherwise: both connections are dropped, so the other end sees its
    // connection lost as it would without the tap.
    drop(client_io);
    drop(upstream_io);
    streams.end(&match (how, &cause) {
        ("upstream_lost", Some(cause)) => format!("upstream: {cause}"),
        ("upstream_closed" | "upstream_goaway", _) => format!("upstream: {how}"),
        (_, Some(cause)) => format!("client: {cause}"),
        (how, None) => format!("client: connection {how}"),
    });
    // Bytes that stopped making sense as HTTP/2 were still forwarded, but not logged.
    let unread = [("client", &requests), ("member", &responses)]
        .into_iter()
        .find_map(|(side, reader)| Some((side, reader.failed()?)));
    if let Some((side, why)) = unread {
        let note = format!("the log stopped following the {side}'s frames: {why}");
        cause = Some(match cause {
            Some(cause) => format!("{cause}; {note}"),
            None => note,
        });
    }
    if let Some(sink) = &config.sink {
        sink.record(&WireEvent::Disconnect(ConnectionClose {
            peer: &peer,
            how,
            reason,
            cause: cause.as_deref(),
            streams: streams.opened,
        }));
    }
}

/// How the connection ended, from the direction that ended first: the `how` of the
/// disconnect line, the GOAWAY's error code, and the failure.
fn ending(
    up: &Option<End>,
    down: &Option<End>,
    streams: &Streams,
) -> (&'static str, Option<u32>, Option<String>) {
    let (side, end) = match (up, down) {
        (Some(end), _) => (Side::Up, end),
        (None, Some(end)) => (Side::Down, end),
        (None, None) => return ("error", None, Some("no direction ended".into())),
    };
    match (side, end) {
        // The client closed. After the member's GOAWAY that is the member ending the
        // connection (a client with nothing in flight closes as soon as it reads the GOAWAY,
        // often before the member's own close arrives).
        (Side::Up, End::Closed) => match (streams.upstream_goaway, streams.client_goaway) {
            (Some(0), _) => ("upstream_closed", None, None),
            (Some(code), _) => ("upstream_goaway", Some(code), None),
            (None, Some(code)) if code != 0 => ("goaway", Some(code), None),
            (None, _) => ("closed", None, None),
        },
        (Side::Up, End::ReadFailed(error)) | (Side::Down, End::WriteFailed(error)) => {
            ("error", None, Some(error.to_string()))
        }
        // The member closed: with streams open it is lost to them.
        (Side::Down, End::Closed) if streams.open_count() > 0 => (
            "upstream_lost",
            None,
            Some("the member closed the connection".into()),
        ),
        (Side::Down, End::Closed) => match streams.upstream_goaway {
            Some(code) if code != 0 => ("upstream_goaway", Some(code), None),
            _ => ("upstream_closed", None, None),
        },
        (Side::Down, End::ReadFailed(error)) | (Side::Up, End::WriteFailed(error)) => {
            ("upstream_lost", None, Some(error.to_string()))
        }
    }
}
