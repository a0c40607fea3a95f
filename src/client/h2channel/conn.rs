//! One HTTP/2 connection: the handshake with our window sizes, and the task that drives it and
//! sends keep-alive PINGs, closing the connection (and so failing every call and stream on it)
//! when a PING goes unanswered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::bytes::Bytes;

use super::dial::{Destination, Io};
use super::error::{Stage, TransportError};

/// Initial HTTP/2 flow-control window of each stream we receive on (SETTINGS_INITIAL_WINDOW_SIZE).
/// 1 MiB: a large range answer or snapshot chunk flows without waiting for a WINDOW_UPDATE.
pub(crate) const STREAM_WINDOW: u32 = 1 << 20;

/// Initial flow-control window of the whole connection: several busy streams at once.
pub(crate) const CONNECTION_WINDOW: u32 = 4 << 20;

/// Connection settings of a channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Time allowed for TCP, TLS and the HTTP/2 preface; also the longest a call waits for a
    /// connection.
    pub(crate) connect_timeout: Duration,
    /// A PING goes out this often, also while no call is open; zero: never.
    pub(crate) keep_alive_interval: Duration,
    /// A PING unanswered this long closes the connection.
    pub(crate) keep_alive_timeout: Duration,
}

/// What the calls on a connection learn about its end.
#[derive(Debug)]
pub(super) struct ConnState {
    closed: AtomicBool,
    keep_alive_lost: AtomicBool,
    keep_alive_timeout: Duration,
}

impl ConnState {
    /// True once the connection ended (or a call found it unusable).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the connection unusable: the next call opens a new one.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The error of a call or stream that failed with `error` on this connection, after the
    /// request may have left.
    pub(super) fn lost(&self, error: h2::Error) -> TransportError {
        let message = if self.keep_alive_lost.load(Ordering::Acquire) {
            format!(
                "no answer to an HTTP/2 PING within {:?}: the connection was closed",
                self.keep_alive_timeout
            )
        } else if error.is_go_away() && error.is_remote() {
            "the server closed the connection (GOAWAY)".to_string()
        } else if error.is_reset() && error.is_remote() {
            "the server reset the stream".to_string()
        } else if error.is_io() {
            "the connection failed".to_string()
        } else {
            "the HTTP/2 stream failed".to_string()
        };
        TransportError::new(Stage::Sent, message, Some(Arc::new(error)))
    }
}

/// A live connection: the handle that opens streams, and its state.
#[derive(Debug, Clone)]
pub(super) struct Connection {
    pub(super) send: h2::client::SendRequest<Bytes>,
    pub(super) state: Arc<ConnState>,
}

/// Opens a connection to `dest` and spawns the task that drives it.
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
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<Io, Bytes>(io)
        .await
        .map_err(|e| failed(Arc::new(e)))?;
    let state = Arc::new(ConnState {
        closed: AtomicBool::new(false),
        keep_alive_lost: AtomicBool::new(false),
        keep_alive_timeout: settings.keep_alive_timeout,
    });
    let ping = connection.ping_pong();
    crate::support::spawn(drive(connection, ping, *settings, Arc::clone(&state)));
    Ok(Connection { send, state })
}

/// Runs the connection until it ends or a PING goes unanswered, then drops it: h2 then fails
/// every open stream, and the state tells new calls to connect again.
async fn drive(
    mut connection: h2::client::Connection<Io, Bytes>,
    ping: Option<h2::PingPong>,
    settings: Settings,
    state: Arc<ConnState>,
) {
    // Also when the task is dropped unfinished (its runtime shut down).
    let _closed = CloseOnDrop(Arc::clone(&state));
    let keep_alive = async move {
        // A zero interval turns keep-alive off (never a PING storm).
        let Some(mut ping) = ping.filter(|_| !settings.keep_alive_interval.is_zero()) else {
            return std::future::pending::<()>().await;
        };
        loop {
            tokio::time::sleep(settings.keep_alive_interval).await;
            let pong = ping.ping(h2::Ping::opaque());
            match tokio::time::timeout(settings.keep_alive_timeout, pong).await {
                Ok(Ok(_)) => {}
                // The connection failed: its own future ends the task.
                Ok(Err(_)) => return std::future::pending::<()>().await,
                Err(_) => return,
            }
        }
    };
    tokio::select! {
        _ = &mut connection => {}
        () = keep_alive => {
            state.keep_alive_lost.store(true, Ordering::Release);
            crate::trace::event!(WARN, "keep_alive_lost", timeout = ?settings.keep_alive_timeout);
        }
    }
    drop(connection);
}

/// Marks the connection closed when the task that drives it ends, however it ends.
struct CloseOnDrop(Arc<ConnState>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}
