//! The task that drives one connection: reads frames into the shared state, writes what the
//! state queued, and sends keep-alive PINGs, closing the connection (and so failing every call
//! and stream on it) when one goes unanswered.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::conn::{Settings, Shared};
use super::dial::Io;
use super::state::KEEP_ALIVE_PING;
use crate::http2::{Head, Http2Error, Reason, DEFAULT_MAX_FRAME, GOAWAY, PING, SETTINGS};

/// Room for a few frames of the largest size this client accepts (SETTINGS_MAX_FRAME_SIZE is
/// left at its default).
const READ_BUFFER: usize = 64 << 10;

/// Keep-alive: when the next PING goes out, or when the one sent is overdue.
#[derive(Debug)]
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

/// One connection's I/O.
#[derive(Debug)]
pub(super) struct Driver {
    io: Io,
    shared: Arc<Shared>,
    read: Vec<u8>,
    /// Read bytes not yet parsed: `read[start..end]`.
    start: usize,
    end: usize,
    /// Bytes being written: `write[written..]`.
    write: Vec<u8>,
    written: usize,
    flush: bool,
    keep_alive: Option<KeepAlive>,
}

impl Driver {
    pub(super) fn new(io: Io, shared: Arc<Shared>, settings: &Settings) -> Self {
        let keep_alive = (!settings.keep_alive_interval.is_zero()).then(|| KeepAlive {
            interval: settings.keep_alive_interval,
            timeout: settings.keep_alive_timeout,
            timer: Box::pin(tokio::time::sleep(settings.keep_alive_interval)),
            waiting: false,
        });
        Driver {
            io,
            shared,
            read: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            write: Vec::new(),
            written: 0,
            flush: false,
            keep_alive,
        }
    }

    /// Sends the client preface and SETTINGS, and runs the connection until the server's
    /// SETTINGS arrive (a server that speaks HTTP/2).
    pub(super) async fn handshake(&mut self) -> Result<(), Http2Error> {
        poll_fn(|cx| {
            if let Poll::Ready(result) = self.poll_drive(cx) {
                // Over before it began: the server's GOAWAY says why, if it sent one.
                let refusal = self.shared.lock().refusal();
                return Poll::Ready(result.and(Err(refusal)));
            }
            if self.shared.lock().settings_received {
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        })
        .await
    }

    /// Drives the connection until it ends; then fails what is left on it.
    pub(super) async fn run(mut self) {
        // Also when the task is dropped unfinished (its runtime shut down).
        let guard = FailOnDrop(Arc::clone(&self.shared));
        let result = poll_fn(|cx| self.poll_drive(cx)).await;
        let error = match result {
            Ok(()) => Http2Error::Closed,
            Err(error) => {
                if matches!(error, Http2Error::KeepAlive(_)) {
                    crate::trace::event!(WARN, "keep_alive_lost", error = %error);
                }
                error
            }
        };
        self.shared.with(|inner| inner.fail_all(error));
        drop(guard);
        // Closing the socket: best effort, bounded.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::io::AsyncWriteExt::shutdown(&mut self.io),
        )
        .await;
    }

    /// One round: read and handle what arrived, write what is queued, keep-alive. Ready when
    /// the connection is over.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Http2Error>> {
        loop {
            let mut progress = false;
            if self.poll_read(cx)? {
                progress = true;
            }
            if self.poll_write(cx)? {
                progress = true;
            }
            if self.poll_keep_alive(cx)? {
                progress = true;
            }
            if !progress {
                return if self.shared.lock().finished() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
        }
    }

    /// Reads what the socket has and handles every complete frame. True when bytes came.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Result<bool, Http2Error> {
        let mut buf = ReadBuf::new(&mut self.read[self.end..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => return Ok(false),
            Poll::Ready(Err(e)) => return Err(Http2Error::Io(Arc::new(e))),
            Poll::Ready(Ok(())) => {}
        }
        let n = buf.filled().len();
        if n == 0 {
            return Err(Http2Error::Io(Arc::new(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ))));
        }
        self.end += n;
        let mut failure = None;
        self.shared.with(|inner| {
            while let Some(frame) = self.read.get(self.start..self.end) {
                let Some(head) = frame.get(..9) else { break };
                let mut h = [0u8; 9];
                h.copy_from_slice(head);
                let head = Head::parse(&h);
                if !inner.settings_received && head.kind != SETTINGS {
                    // A server's preface is a SETTINGS frame (RFC 9113, section 3.4).
                    failure = Some((
                        Reason::PROTOCOL_ERROR,
                        "the server does not speak HTTP/2: its first frame is not SETTINGS",
                    ));
                    break;
                }
                if head.len > DEFAULT_MAX_FRAME {
                    failure = Some((Reason::FRAME_SIZE_ERROR, "a frame over 16 KiB"));
                    break;
                }
                let Some(payload) = frame.get(9..9 + head.len) else {
                    break;
                };
                self.start += 9 + head.len;
                if let Err(e) = inner.on_frame(head, payload) {
                    failure = Some(e);
                    break;
                }
            }
            if let Some((reason, _)) = failure {
                // Tell the server why; written below if the socket takes it at once.
                Head::write(&mut inner.out, 8, GOAWAY, 0, 0);
                inner.out.extend_from_slice(&0u32.to_be_bytes());
                inner.out.extend_from_slice(&reason.0.to_be_bytes());
            }
        });
        if let Some((_, what)) = failure {
            let _ = self.poll_write(cx);
            return Err(Http2Error::Protocol(what));
        }
        // Keep the unparsed tail at the front, so a whole frame always fits.
        self.read.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        Ok(true)
    }

    /// Writes what the state queued, then flushes. True when bytes went out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, Http2Error> {
        if self.written == self.write.len() {
            self.write.clear();
            self.written = 0;
            let write = &mut self.write;
            self.shared.with(|inner| {
                inner.frame_queued();
                std::mem::swap(write, &mut inner.out);
                inner.owed = 0;
                inner.dirty = false;
                if !inner
                    .driver
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    inner.driver = Some(cx.waker().clone());
                }
            });
        }
        let mut progress = false;
        while self.written < self.write.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(Http2Error::Io(Arc::new(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(Http2Error::Io(Arc::new(e))),
                Poll::Pending => return Ok(progress),
            }
        }
        if self.flush {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush = false,
                Poll::Ready(Err(e)) => return Err(Http2Error::Io(Arc::new(e))),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Sends a PING when the connection was quiet for the interval; fails the connection when
    /// one goes unanswered for the timeout. True when a PING was queued.
    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Result<bool, Http2Error> {
        let Some(keep_alive) = &mut self.keep_alive else {
            return Ok(false);
        };
        if keep_alive.waiting && std::mem::take(&mut self.shared.lock().ping_acked) {
            keep_alive.waiting = false;
            let next = Instant::now() + keep_alive.interval;
            keep_alive.timer.as_mut().reset(next);
        }
        if keep_alive.timer.as_mut().poll(cx).is_pending() {
            return Ok(false);
        }
        if keep_alive.waiting {
            return Err(Http2Error::KeepAlive(keep_alive.timeout));
        }
        keep_alive.waiting = true;
        let overdue = Instant::now() + keep_alive.timeout;
        keep_alive.timer.as_mut().reset(overdue);
        self.shared.with(|inner| {
            inner.ping_acked = false;
            Head::write(&mut inner.out, 8, PING, 0, 0);
            inner.out.extend_from_slice(&KEEP_ALIVE_PING);
            inner.dirty = true;
        });
        Ok(true)
    }
}

/// Fails every stream and closes the connection to new ones when the connection task ends,
/// however it ends.
struct FailOnDrop(Arc<Shared>);

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        self.0.mark_closed();
        self.0.with(|inner| inner.fail_all(Http2Error::Closed));
    }
}
