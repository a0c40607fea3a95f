//! The client's HTTP/2 channel to one endpoint, with its own HTTP/2 client (RFC 9113, the
//! parts gRPC uses): a `tower_service::Service` over `http` requests that tonic's generated
//! clients and `tonic::client::Grpc` call as they would call tonic's own channel. Each call
//! opens its stream from the caller's task; one task per connection reads and writes.
//!
//! - `dial.rs`: TCP (`TCP_NODELAY`) and TLS (feature `tls`), one byte-stream type;
//! - `state.rs`: the connection's HTTP/2 state without I/O: streams, flow control both ways,
//!   header compression, the frames to write;
//! - `driver.rs`: the connection task: reads frames, writes, keep-alive PINGs;
//! - `conn.rs`: opening a connection (prefaces, SETTINGS), the handles on it and its streams;
//! - `body.rs`: the request body pumped within flow control, the response body;
//! - `error.rs`: how far a failed call got (the retry rule reads it).
//!
//! The channel is lazy and heals itself: it connects on the first call that needs a connection
//! (or when [`Channel::connect`] is called), and when the connection ends (closed, broken, or a
//! PING unanswered) the next call opens a new one. A call never waits longer than the connect
//! timeout for a connection; calls waiting on one connection attempt share its failure.

mod body;
mod conn;
mod dial;
mod driver;
mod error;
mod state;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;

pub(crate) use body::ResponseBody;
pub(crate) use conn::Settings;
pub(crate) use dial::Destination;
pub(crate) use error::{innermost, Stage, TransportError};

use conn::Connection;
use state::RequestHead;

/// The `user-agent` every request carries.
const USER_AGENT: &str = concat!("etcd-lock/", env!("CARGO_PKG_VERSION"));

/// A lazily connecting, self-healing HTTP/2 channel to one endpoint. Cheap to clone (one
/// `Arc`); every clone shares the connection.
#[derive(Clone)]
pub(crate) struct Channel {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("authority", &self.shared.dest.authority)
            .finish_non_exhaustive()
    }
}

struct Shared {
    dest: Destination,
    settings: Settings,
    /// The current connection, if one was opened.
    connection: Mutex<Option<Connection>>,
    /// Held while connecting; holds the last failed attempt (when it ended, and why), which
    /// the calls that waited on it share.
    connecting: tokio::sync::Mutex<Option<(Instant, TransportError)>>,
}

impl Channel {
    /// A channel that connects on first use.
    pub(crate) fn lazy(dest: Destination, settings: Settings) -> Channel {
        Channel {
            shared: Arc::new(Shared {
                dest,
                settings,
                connection: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Connects now (within the connect timeout), unless a connection is open.
    pub(crate) async fn connect(&self) -> Result<(), TransportError> {
        self.shared.connection().await.map(|_| ())
    }

    /// True for an `https://` channel.
    pub(crate) fn is_tls(&self) -> bool {
        self.shared.dest.is_tls()
    }
}

impl Shared {
    /// The open connection, if it is still usable.
    fn live(&self) -> Option<Connection> {
        let current = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The open connection, or a new one; waits at most the connect timeout. Boxed: the
    /// connect path (dial, TLS, handshake) is then compiled once, not into every caller.
    fn connection(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Connection, TransportError>> + Send + '_>> {
        Box::pin(async move {
            if let Some(connection) = self.live() {
                return Ok(connection);
            }
            let since = Instant::now();
            let limit = self.settings.connect_timeout;
            match tokio::time::timeout(limit, self.reconnect(since)).await {
                Ok(result) => result,
                Err(_) => Err(TransportError::new(
                    Stage::Connect,
                    format!("no connection to {} within {limit:?}", self.dest.authority),
                    None,
                )),
            }
        })
    }

    /// Opens a connection, one attempt at a time; a call that waited while an attempt failed
    /// gets that failure instead of starting another.
    async fn reconnect(&self, since: Instant) -> Result<Connection, TransportError> {
        let mut last_failure = self.connecting.lock().await;
        if let Some(connection) = self.live() {
            return Ok(connection);
        }
        if let Some((at, failure)) = last_failure.as_ref() {
            if *at >= since {
                return Err(failure.clone());
            }
        }
        match conn::open(&self.dest, &self.settings).await {
            Ok(connection) => {
                *self
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
                *last_failure = None;
                Ok(connection)
            }
            Err(failure) => {
                *last_failure = Some((Instant::now(), failure.clone()));
                Err(failure)
            }
        }
    }

    /// One call: a stream on the connection, the request's headers and body, the response's
    /// headers.
    async fn call(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<ResponseBody>, tonic::Status> {
        let (parts, mut body) = request.into_parts();
        let ready = body::ready_now(&mut body)?;
        let end = ready.ended;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let head = RequestHead {
            scheme: self.dest.scheme.as_str(),
            authority: self.dest.authority.as_str(),
            path,
            headers: &parts.headers,
            user_agent: USER_AGENT,
        };
        // A connection found closed here never carried the request: try a new one, once.
        let mut again = true;
        let stream = loop {
            let connection = match self.live() {
                Some(connection) => connection,
                None => self
                    .connection()
                    .await
                    .map_err(TransportError::into_status)?,
            };
            match connection.open_stream(&head, &ready.data, end).await {
                Ok(stream) => break stream,
                Err(()) => {
                    connection.close();
                    if !again {
                        let failure = TransportError::new(
                            Stage::NotSent,
                            "the connection closed before the request was sent",
                            None,
                        );
                        return Err(failure.into_status());
                    }
                    again = false;
                }
            }
        };
        let pump = (!end).then(|| body::Pump::spawn(body, stream.sender()));
        let (status, headers) = match stream.response_head().await {
            Ok(head) => head,
            Err(e) => {
                if let Some(status) = pump.as_ref().and_then(body::Pump::failure) {
                    return Err(status);
                }
                return Err(stream.connection.lost(e).into_status());
            }
        };
        let mut response = http::Response::new(ResponseBody::new(stream, pump));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The future of one call.
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, tonic::Status>> + Send>>;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<ResponseBody>;
    type Error = tonic::Status;
    type Future = ResponseFuture;

    /// Always ready: a call waits for its connection (and HTTP/2's stream limit) itself.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.call(request).await })
    }
}
