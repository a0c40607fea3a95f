//! One HTTP/2 connection: opening it (TCP/TLS, the prefaces, the server's SETTINGS), the
//! handle calls open streams with, and the handle of one stream.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use prost::bytes::Bytes;
use tonic::codegen::http::{HeaderMap, StatusCode};

use super::dial::Destination;
use super::driver::Driver;
use super::error::{Stage, TransportError};
use super::state::{Inner, OpenError, Received, RequestHead};
use crate::http2::{Http2Error, Reason};

/// Connection settings of a channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Time allowed for TCP, TLS and the HTTP/2 prefaces; also the longest a call waits for a
    /// connection.
    pub(crate) connect_timeout: Duration,
    /// A PING goes out this often, also while no call is open; zero: never.
    pub(crate) keep_alive_interval: Duration,
    /// A PING unanswered this long closes the connection.
    pub(crate) keep_alive_timeout: Duration,
}

/// What the connection task and every handle share.
#[derive(Debug)]
pub(super) struct Shared {
    inner: Mutex<Inner>,
    /// Set once no new stream may be opened here (mirrors `Inner::draining`, read without the
    /// lock).
    closed: AtomicBool,
}

impl Shared {
    /// Runs `f` on the state under the lock, then wakes (outside the lock) the tasks it woke,
    /// and the connection task when there is something to write.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self.lock();
        let result = f(&mut inner);
        let driver = if inner.dirty {
            inner.driver.clone()
        } else {
            None
        };
        if inner.draining {
            self.closed.store(true, Ordering::Release);
        }
        let wake = std::mem::take(&mut inner.wake);
        drop(inner);
        for waker in wake {
            waker.wake();
        }
        if let Some(driver) = driver {
            driver.wake();
        }
        result
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once the connection takes no new streams.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the connection closed to new streams (the mirror flag only: the driver decides
    /// the rest).
    pub(super) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// A handle on a live connection: opens streams. Cheap to clone; the connection task ends
/// once every handle and every stream is gone (or the server ends the connection).
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) shared: Arc<Shared>,
    /// The keep-alive timeout, for the message of a connection a PING found dead.
    keep_alive_timeout: Duration,
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        Connection {
            shared: Arc::clone(&self.shared),
            keep_alive_timeout: self.keep_alive_timeout,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.with(|inner| {
            inner.handles -= 1;
            if inner.finished() {
                inner.dirty = true;
            }
        });
    }
}

/// Opens a connection to `dest`: the byte stream, the client preface and SETTINGS, then waits
/// for the server's SETTINGS; spawns the task that drives it.
pub(super) async fn open(
    dest: &Destination,
    settings: &Settings,
) -> Result<Connection, TransportError> {
    let failed = |e: Arc<dyn std::error::Error + Send + Sync>| {
        TransportError::new(
            Stage::Connect,
            format!("cannot connect to {}", dest.authority),
            Some(e),
        )
    };
    let io = dest.dial().await.map_err(|e| failed(Arc::new(e)))?;
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner::new()),
        closed: AtomicBool::new(false),
    });
    // The handle returned below; counted now, so the handshake does not see an unused
    // connection.
    shared.lock().handles = 1;
    let mut driver = Driver::new(io, Arc::clone(&shared), settings);
    driver.handshake().await.map_err(|e| match e {
        Http2Error::Io(io) => failed(io),
        other => failed(Arc::new(other)),
    })?;
    crate::support::spawn(driver.run());
    Ok(Connection {
        shared,
        keep_alive_timeout: settings.keep_alive_timeout,
    })
}

impl Connection {
    /// True once the connection takes no new streams.
    pub(super) fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Marks the connection unusable: the next call opens a new one.
    pub(super) fn close(&self) {
        self.shared.mark_closed();
    }

    /// Opens a stream: the request's HEADERS, and `data` with the end of the request when
    /// `end`. Waits while the server's stream limit is reached. `Err(())`: the connection
    /// takes no new streams (the request was not sent).
    pub(super) async fn open_stream(
        &self,
        head: &RequestHead<'_>,
        data: &[Bytes],
        end: bool,
    ) -> Result<StreamRef, ()> {
        poll_fn(|cx| {
            self.shared.with(|inner| match inner.open(head, data, end) {
                Ok(id) => Poll::Ready(Ok(id)),
                Err(OpenError::Closed) => Poll::Ready(Err(())),
                Err(OpenError::Full) => {
                    inner.wait_slot(cx);
                    Poll::Pending
                }
            })
        })
        .await
        .map(|id| StreamRef {
            connection: self.clone(),
            id,
        })
    }

    /// The error of a call or stream that failed with `error` on this connection.
    pub(super) fn lost(&self, error: Http2Error) -> TransportError {
        let message = match &error {
            Http2Error::KeepAlive(_) => format!(
                "no answer to an HTTP/2 PING within {:?}: the connection was closed",
                self.keep_alive_timeout
            ),
            Http2Error::Refused(_) | Http2Error::GoAway(_) => {
                "the server closed the connection (GOAWAY)".to_string()
            }
            Http2Error::Reset(_) => "the server reset the stream".to_string(),
            Http2Error::Io(_) => "the connection failed".to_string(),
            _ => "the HTTP/2 stream failed".to_string(),
        };
        let stage = if error.not_processed() {
            Stage::Refused
        } else {
            Stage::Sent
        };
        TransportError::new(stage, message, Some(Arc::new(error)))
    }
}

/// One open stream. Dropping it ends the stream: reset (CANCEL) if the call is not complete.
#[derive(Debug)]
pub(super) struct StreamRef {
    pub(super) connection: Connection,
    pub(super) id: u32,
}

impl StreamRef {
    /// The response's status and headers.
    pub(super) async fn response_head(&self) -> Result<(StatusCode, HeaderMap), Http2Error> {
        poll_fn(|cx| self.shared().with(|inner| inner.poll_head(self.id, cx))).await
    }

    /// The response body's next piece.
    pub(super) fn poll_received(&self, cx: &Context<'_>) -> Poll<Result<Received, Http2Error>> {
        self.shared().with(|inner| inner.poll_received(self.id, cx))
    }

    /// A handle that sends the rest of the request (for the request pump).
    pub(super) fn sender(&self) -> Sender {
        Sender {
            shared: Arc::clone(self.shared()),
            id: self.id,
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.connection.shared
    }
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        let id = self.id;
        self.shared().with(|inner| inner.release(id));
    }
}

/// Sends request data on one stream, within its flow-control window.
#[derive(Debug)]
pub(super) struct Sender {
    shared: Arc<Shared>,
    id: u32,
}

impl Sender {
    /// Waits until the data sent before has gone out within the window; `Err` once the stream
    /// is over (reset, or released).
    pub(super) async fn ready(&self) -> Result<(), ()> {
        poll_fn(|cx| self.shared.with(|inner| inner.poll_send_ready(self.id, cx))).await
    }

    /// Resolves once the stream is over for sending (reset, ended, or released).
    pub(super) async fn ended(&self) {
        poll_fn(|cx| self.shared.with(|inner| inner.poll_send_over(self.id, cx))).await
    }

    /// Sends `data`, ending the request after it when `end`.
    pub(super) fn send(&self, data: Bytes, end: bool) -> Result<(), Http2Error> {
        self.shared.with(|inner| inner.send(self.id, data, end))
    }

    /// Resets the stream with CANCEL (the request body failed).
    pub(super) fn cancel(&self) {
        self.shared
            .with(|inner| inner.reset(self.id, Reason::CANCEL));
    }
}
