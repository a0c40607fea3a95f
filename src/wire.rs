//! Wire log hook: every unary RPC attempt and every message of every stream can be reported to
//! a [`WireSink`] as a [`WireEvent`], with the exact protobuf bytes that crossed the wire.
//!
//! - Unary calls: one [`WireEvent::Call`] per attempt (a retried call gives several, sharing
//!   one call id), with the metadata that was sent (`grpc-timeout`, `hasleader`, the token
//!   redacted), the request bytes, the received response bytes and the status.
//! - Streams (`Watch/Watch`, `Lease/LeaseKeepAlive`, `Election/Observe`,
//!   `Maintenance/Snapshot`, and any other stream that uses the same hooks):
//!   [`WireEvent::Open`], then one [`WireEvent::Send`] or [`WireEvent::Recv`] per message,
//!   then one [`WireEvent::Close`] saying how it ended.
//!
//! A unary call's request and answer are the bytes the unary path sends and receives (it
//! encodes and decodes around the transport, see `client/unary.rs`); a stream's received
//! bytes are taken from the gRPC decoder before prost decodes them (see `wire/codec.rs`). So a
//! field this crate's protos lack is still in them. Nothing is copied, encoded or formatted
//! when no sink is attached.
//!
//! For crate authors adding a stream (as `Maintenance/Snapshot` does): create a `StreamTap` with
//! the client's sink and the method path; pass the outgoing message stream through
//! `StreamTap::outbound` (or log a single request with `StreamTap::sent`), call
//! `StreamTap::open` with the final `tonic::Request` (so its metadata is logged), await the
//! RPC through `StreamTap::opened`, and read messages with `Inbound::message`. Dropping the
//! `Inbound` before the end logs the stream as cancelled. For a server-streaming call:
//!
//! ```text
//! let tap = crate::wire::StreamTap::new(client.wire(), SNAPSHOT);   // "/etcdserverpb.Maintenance/Snapshot"
//! let request = client.request_with_token(pb::SnapshotRequest {}, token.as_ref());
//! tap.open(|| client.endpoint_url(index), &request);                // open line (metadata)
//! tap.sent(request.get_ref());                                       // send line, seq 1
//! let mut chunks = tap.opened(grpc.snapshot(request)).await?.into_inner();  // Inbound<_>
//! while let Some(chunk) = chunks.message().await? { .. }             // recv lines; close at end
//! ```

use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use prost::bytes::Bytes;
use prost::Message as _;

use crate::http2::{Http2Error, Reason};

pub(crate) mod codec;

/// Receives one [`WireEvent`] per call attempt and per stream event.
///
/// Called synchronously from the task that saw the event; keep it short (format and write).
pub trait WireSink: Debug + Send + Sync {
    /// Called once per event, in the order the events happened on each call or stream.
    fn record(&self, event: &WireEvent<'_>);
}

/// Something that happened on the wire, as handed to a [`WireSink`].
#[derive(Debug)]
#[non_exhaustive]
pub enum WireEvent<'a> {
    /// One attempt of a unary call ended (answered, failed, or dropped by the caller).
    Call(CallRecord<'a>),
    /// A stream was opened (its HTTP/2 request is about to be sent).
    Open(StreamOpen<'a>),
    /// A message was handed to the transport on a stream.
    Send(StreamMessage<'a>),
    /// A message was received on a stream.
    Recv(StreamMessage<'a>),
    /// A stream ended.
    Close(StreamClose<'a>),
    /// A client connected to a tap (`crate::tap`, feature `tap`) and its upstream connection
    /// was made; never sent by the client.
    Connect(&'a Peer),
    /// A tapped client connection ended; never sent by the client.
    Disconnect(ConnectionClose<'a>),
}

/// The client connection a tapped call or stream came in on (feature `tap`): the same for every
/// line of one connection, so that one client can be followed among many.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Peer {
    /// Process-wide connection id, from 1.
    pub connection: u64,
    /// The client's address as the tap's listener saw it (`ip:port`).
    pub client: String,
    /// The upstream member's URL.
    pub upstream: String,
    /// TLS on the client side: `None` for plaintext.
    pub client_tls: Option<TlsPeer>,
    /// TLS on the upstream side: `None` for plaintext.
    pub upstream_tls: Option<TlsPeer>,
}

/// One TLS side of a tapped connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsPeer {
    /// The subject of the certificate the peer presented (client certificate on the client
    /// side, server certificate upstream), RFC 4514 style (`CN=etcd,O=example`); `None` when
    /// the peer presented none (a client without a certificate).
    pub subject: Option<String>,
}

impl TlsPeer {
    /// A TLS side whose peer presented a certificate with `subject` (or none).
    pub fn new(subject: Option<String>) -> Self {
        TlsPeer { subject }
    }
}

/// A tapped client connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnectionClose<'a> {
    /// The connection.
    pub peer: &'a Peer,
    /// Why it ended: `closed` (the client closed it), `goaway` (the client sent a GOAWAY with
    /// an error code), `error` (the client's connection failed), `upstream_closed` (the member
    /// ended the connection: it closed it with no stream open, or sent a GOAWAY without an
    /// error, passed on, after which either side closed it), `upstream_goaway` (the member's
    /// GOAWAY with an error code, passed on) or `upstream_lost` (the member's connection
    /// failed or closed with streams still open; the client's connection was dropped too).
    pub how: &'static str,
    /// The HTTP/2 error code of a GOAWAY or connection error, when there was one.
    pub reason: Option<u32>,
    /// A description of a transport failure.
    pub cause: Option<&'a str>,
    /// Streams (calls included) the connection carried.
    pub streams: u64,
}

/// Request metadata that was sent and changes etcd's behaviour, as `(key, value)` pairs:
/// `grpc-timeout` exactly as sent, `hasleader`, and `token` always as `"<redacted>"`.
pub type Metadata = [(&'static str, String)];

/// A failed call or stream: the gRPC status and, when the transport failed, its cause.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Failure {
    /// The gRPC status code (the crate's own [`Code`](crate::error::Code), as
    /// [`Error::code`](crate::Error::code) reports it).
    pub code: crate::error::Code,
    /// The status message.
    pub message: String,
    /// The transport error chain behind the status (`": "`-joined), when there is one.
    pub cause: Option<String>,
}

impl Failure {
    /// Copies what the log shows of a `tonic::Status`.
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        let mut cause = String::new();
        let mut next = std::error::Error::source(status);
        while let Some(error) = next {
            if !cause.is_empty() {
                cause.push_str(": ");
            }
            cause.push_str(&error.to_string());
            next = error.source();
        }
        Failure {
            code: crate::error::Code::from_tonic(status.code()),
            message: status.message().to_string(),
            cause: (!cause.is_empty()).then_some(cause),
        }
    }
}

/// One attempt of a unary call.
#[derive(Debug)]
#[non_exhaustive]
pub struct CallRecord<'a> {
    /// Process-wide call id, shared by all attempts of one call.
    pub call: u64,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// gRPC method path, e.g. `/etcdserverpb.KV/Range`.
    pub method: &'static str,
    /// The endpoint URL the attempt went to.
    pub endpoint: &'a str,
    /// Metadata sent with the attempt.
    pub metadata: &'a Metadata,
    /// The request message as encoded for the wire (empty when `redacted`).
    pub request: &'a [u8],
    /// Length of the encoded request.
    pub request_bytes: usize,
    /// The response message exactly as received (`None` on failure; empty when `redacted`).
    pub response: Option<&'a [u8]>,
    /// Length of the received response (0 on failure).
    pub response_bytes: usize,
    /// True for methods carrying passwords or tokens: the bodies are withheld.
    pub redacted: bool,
    /// The failure; `None` when the call succeeded.
    pub status: Option<&'a Failure>,
    /// Why the request is sent again, when this attempt failed and another follows.
    pub retry: Option<&'a str>,
    /// Time from sending the request to the answer (or the failure).
    pub latency: Duration,
    /// The client connection, for a call seen by a tap; `None` for our own client's calls.
    pub peer: Option<&'a Peer>,
}

/// A stream being opened.
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamOpen<'a> {
    /// Process-wide stream id.
    pub stream: u64,
    /// gRPC method path, e.g. `/etcdserverpb.Watch/Watch`.
    pub method: &'static str,
    /// The endpoint URL the stream goes to.
    pub endpoint: &'a str,
    /// Metadata sent when opening.
    pub metadata: &'a Metadata,
    /// The client connection, for a stream seen by a tap; `None` for our own client's streams.
    pub peer: Option<&'a Peer>,
}

/// One message on a stream.
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamMessage<'a> {
    /// The stream's id (see [`StreamOpen::stream`]).
    pub stream: u64,
    /// Sequence number of the message in its direction, from 1.
    pub seq: u64,
    /// gRPC method path of the stream.
    pub method: &'static str,
    /// The message as encoded for the wire (sent) or exactly as received.
    pub message: &'a [u8],
    /// The client connection, for a stream seen by a tap; `None` for our own client's streams.
    pub peer: Option<&'a Peer>,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseHow {
    /// The server ended it with trailers carrying a grpc-status.
    Trailers,
    /// We dropped or cancelled it (HTTP/2 `RST_STREAM` with `CANCEL`), or never finished opening it.
    Cancelled,
    /// The server reset the stream (HTTP/2 `RST_STREAM` from the peer).
    Reset,
    /// The connection carrying it failed.
    ConnectionLost,
}

impl CloseHow {
    /// The name the JSON log uses: `trailers`, `cancelled`, `reset` or `connection_lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseHow::Trailers => "trailers",
            CloseHow::Cancelled => "cancelled",
            CloseHow::Reset => "reset",
            CloseHow::ConnectionLost => "connection_lost",
        }
    }

    /// Tells from a stream's error how it ended, from the error's types: an HTTP/2 reset
    /// received from the peer is `Reset`; our own reset with `CANCEL` is `Cancelled`; a status
    /// without a transport source came in trailers; any other transport failure (a GOAWAY, an
    /// I/O error, a PING unanswered) is `ConnectionLost`.
    pub(crate) fn of(status: &tonic::Status) -> Self {
        let mut next = std::error::Error::source(status);
        if next.is_none() {
            return CloseHow::Trailers;
        }
        while let Some(error) = next {
            match error.downcast_ref::<Http2Error>() {
                Some(Http2Error::Reset(_)) => return CloseHow::Reset,
                Some(Http2Error::LocalReset(Reason::CANCEL)) => return CloseHow::Cancelled,
                Some(_) => return CloseHow::ConnectionLost,
                None => {}
            }
            next = error.source();
        }
        CloseHow::ConnectionLost
    }
}

/// End of a stream.
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamClose<'a> {
    /// The stream's id.
    pub stream: u64,
    /// gRPC method path of the stream.
    pub method: &'static str,
    /// How it ended.
    pub how: CloseHow,
    /// The failure; `None` when it ended with grpc-status OK (or was cancelled by us).
    pub status: Option<&'a Failure>,
    /// Messages sent on it.
    pub sent: u64,
    /// Messages received on it.
    pub received: u64,
    /// The HTTP/2 error code of the `RST_STREAM` that ended it, when a tap saw one (our own
    /// client's streams leave it `None`).
    pub reset_reason: Option<u32>,
    /// The client connection, for a stream seen by a tap; `None` for our own client's streams.
    pub peer: Option<&'a Peer>,
}

/// The next process-wide call or stream id (one sequence for both).
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The metadata of `request` that the log shows.
fn metadata_of(map: &tonic::metadata::MetadataMap) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for key in ["grpc-timeout", "hasleader", "token"] {
        if let Some(value) = map.get(key) {
            let shown = if key == "token" {
                "<redacted>".to_string()
            } else {
                value.to_str().unwrap_or("<not ascii>").to_string()
            };
            out.push((key, shown));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// unary calls

/// Logs the attempts of one unary call. Inert (no allocation, nothing formatted) without a sink.
pub(crate) struct CallTap {
    state: Option<Box<CallState>>,
}

struct CallState {
    sink: Arc<dyn WireSink>,
    call: u64,
    method: &'static str,
    redacted: bool,
    /// The request bytes, encoded once for all attempts.
    request: Bytes,
    attempt: Option<Attempt>,
    attempts: u32,
}

struct Attempt {
    endpoint: String,
    metadata: Vec<(&'static str, String)>,
    started: Instant,
    latency: Option<Duration>,
    received: Option<Bytes>,
    outcome: Option<std::result::Result<(), Failure>>,
}

impl Debug for CallTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallTap")
            .field("active", &self.state.is_some())
            .finish()
    }
}

impl CallTap {
    /// A tap for one call of `method`; `redacted` withholds the bodies (passwords, tokens).
    pub(crate) fn new(
        sink: Option<&Arc<dyn WireSink>>,
        method: &'static str,
        redacted: bool,
    ) -> Self {
        CallTap {
            state: sink.map(|sink| {
                Box::new(CallState {
                    sink: Arc::clone(sink),
                    call: next_id(),
                    method,
                    redacted,
                    request: Bytes::new(),
                    attempt: None,
                    attempts: 0,
                })
            }),
        }
    }

    /// An attempt is about to be sent as `request` (the encoded message, sent as it is) to the
    /// endpoint `endpoint()` names; logs the previous attempt first if it is still pending.
    pub(crate) fn attempt(
        &mut self,
        endpoint: impl FnOnce() -> String,
        request: &tonic::Request<Bytes>,
    ) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        state.emit(None);
        state.request = request.get_ref().clone();
        state.attempts += 1;
        state.attempt = Some(Attempt {
            endpoint: endpoint(),
            metadata: metadata_of(request.metadata()),
            started: Instant::now(),
            latency: None,
            received: None,
            outcome: None,
        });
    }

    /// Records the attempt's outcome: the answer's bytes exactly as received, or the failure
    /// (the line is written when the next attempt starts, on [`CallTap::retry`], or when the
    /// call ends).
    pub(crate) fn outcome(&mut self, outcome: &std::result::Result<Bytes, tonic::Status>) {
        let Some(attempt) = self.state.as_mut().and_then(|s| s.attempt.as_mut()) else {
            return;
        };
        attempt.latency = Some(attempt.started.elapsed());
        attempt.outcome = Some(match outcome {
            Ok(response) => {
                attempt.received = Some(response.clone());
                Ok(())
            }
            Err(status) => {
                attempt.received = None;
                Err(Failure::from_status(status))
            }
        });
    }

    /// The attempt failed and the request will be sent again, because of `reason`.
    pub(crate) fn retry(&mut self, reason: &dyn Display) {
        if let Some(state) = self.state.as_mut() {
            state.emit(Some(&reason.to_string()));
        }
    }
}

impl CallState {
    /// Writes the pending attempt's line, if any.
    fn emit(&mut self, retry: Option<&str>) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let dropped;
        let status = match &attempt.outcome {
            Some(Ok(())) => None,
            Some(Err(failure)) => Some(failure),
            None => {
                dropped = Failure {
                    code: crate::error::Code::Cancelled,
                    message: "dropped before the answer arrived".into(),
                    cause: None,
                };
                Some(&dropped)
            }
        };
        let request = &self.request[..];
        let response = if status.is_none() {
            attempt.received.as_deref()
        } else {
            None
        };
        let record = CallRecord {
            call: self.call,
            attempt: self.attempts,
            method: self.method,
            endpoint: &attempt.endpoint,
            metadata: &attempt.metadata,
            request: if self.redacted { &[] } else { request },
            request_bytes: request.len(),
            response: response.map(|r| if self.redacted { &[][..] } else { r }),
            response_bytes: response.map_or(0, <[u8]>::len),
            redacted: self.redacted,
            status,
            retry,
            latency: attempt.latency.unwrap_or_else(|| attempt.started.elapsed()),
            peer: None,
        };
        self.sink.record(&WireEvent::Call(record));
    }
}

impl Drop for CallTap {
    fn drop(&mut self) {
        if let Some(state) = self.state.as_mut() {
            state.emit(None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// streams

/// Logs one stream: open, each message, close. Inert without a sink.
pub(crate) struct StreamTap {
    log: Option<Arc<StreamLog>>,
}

impl Debug for StreamTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamTap")
            .field("active", &self.log.is_some())
            .finish()
    }
}

#[derive(Debug)]
struct StreamLog {
    sink: Arc<dyn WireSink>,
    stream: u64,
    method: &'static str,
    opened: AtomicBool,
    closed: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
}

impl StreamLog {
    fn sent(&self, bytes: &[u8]) {
        let seq = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        self.sink.record(&WireEvent::Send(StreamMessage {
            stream: self.stream,
            seq,
            method: self.method,
            message: bytes,
            peer: None,
        }));
    }

    fn received(&self, bytes: &[u8]) {
        let seq = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        self.sink.record(&WireEvent::Recv(StreamMessage {
            stream: self.stream,
            seq,
            method: self.method,
            message: bytes,
            peer: None,
        }));
    }

    /// Writes the close line, once, and only for a stream whose open line was written.
    fn close(&self, how: CloseHow, status: Option<&Failure>) {
        if !self.opened.load(Ordering::Relaxed) || self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.sink.record(&WireEvent::Close(StreamClose {
            stream: self.stream,
            method: self.method,
            how,
            status,
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            reset_reason: None,
            peer: None,
        }));
    }
}

impl Drop for StreamLog {
    /// A stream whose close was never seen (every handle on it dropped) ended by our hand.
    fn drop(&mut self) {
        self.close(CloseHow::Cancelled, None);
    }
}

impl StreamTap {
    /// A tap for a new stream of `method` (an id is taken only when a sink is attached).
    pub(crate) fn new(sink: Option<&Arc<dyn WireSink>>, method: &'static str) -> Self {
        StreamTap {
            log: sink.map(|sink| {
                Arc::new(StreamLog {
                    sink: Arc::clone(sink),
                    stream: next_id(),
                    method,
                    opened: AtomicBool::new(false),
                    closed: AtomicBool::new(false),
                    sent: AtomicU64::new(0),
                    received: AtomicU64::new(0),
                })
            }),
        }
    }

    /// Wraps the outgoing message stream: each message is logged as the transport takes it.
    pub(crate) fn outbound<S>(&self, messages: S) -> Outbound<S> {
        Outbound {
            inner: Box::pin(messages),
            log: self.log.clone(),
        }
    }

    /// Logs the single request of a server-streaming RPC (e.g. `Election/Observe`); call it
    /// after [`StreamTap::open`].
    pub(crate) fn sent<M: prost::Message>(&self, message: &M) {
        if let Some(log) = &self.log {
            log.sent(&message.encode_to_vec());
        }
    }

    /// Writes the open line with the endpoint `endpoint()` names and `request`'s metadata.
    pub(crate) fn open<T>(&self, endpoint: impl FnOnce() -> String, request: &tonic::Request<T>) {
        if let Some(log) = &self.log {
            log.opened.store(true, Ordering::Relaxed);
            log.sink.record(&WireEvent::Open(StreamOpen {
                stream: log.stream,
                method: log.method,
                endpoint: &endpoint(),
                metadata: &metadata_of(request.metadata()),
                peer: None,
            }));
        }
    }

    /// Awaits the RPC that opens the stream; a failure is logged as the stream's close, a
    /// success gives the response stream wrapped in an [`Inbound`].
    pub(crate) async fn opened<T, F>(
        self,
        open: F,
    ) -> std::result::Result<tonic::Response<Inbound<T>>, tonic::Status>
    where
        F: Future<
            Output = std::result::Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
        >,
    {
        let log = self.log.clone();
        // Logs the stream as cancelled if this future is dropped before the RPC answers.
        let mut guard = OpenGuard(log.clone());
        let result = open.await;
        guard.0 = None;
        match result {
            Ok(response) => Ok(response.map(|inner| Inbound { inner, log })),
            Err(status) => {
                if let Some(log) = &log {
                    log.close(CloseHow::of(&status), Some(&Failure::from_status(&status)));
                }
                Err(status)
            }
        }
    }
}

/// Logs a stream whose opening was abandoned (e.g. timed out) as cancelled.
struct OpenGuard(Option<Arc<StreamLog>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(log) = &self.0 {
            log.close(CloseHow::Cancelled, None);
        }
    }
}

/// The outgoing half of a logged stream (see [`StreamTap::outbound`]).
#[derive(Debug)]
pub(crate) struct Outbound<S> {
    inner: Pin<Box<S>>,
    log: Option<Arc<StreamLog>>,
}

impl<S> Stream for Outbound<S>
where
    S: Stream,
    S::Item: prost::Message,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let (Poll::Ready(Some(message)), Some(log)) = (&polled, &self.log) {
            log.sent(&message.encode_to_vec());
        }
        polled
    }
}

/// The incoming half of a logged stream: read it with [`Inbound::message`]. Dropping it before
/// the stream ended logs the stream as cancelled.
pub(crate) struct Inbound<T> {
    inner: tonic::Streaming<T>,
    log: Option<Arc<StreamLog>>,
}

impl<T> Debug for Inbound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("logged", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: prost::Message> Inbound<T> {
    /// The next message, as [`tonic::Streaming::message`] gives it; logs it (from the exact
    /// received bytes) and, at the end, the close line.
    pub(crate) async fn message(&mut self) -> std::result::Result<Option<T>, tonic::Status> {
        let Some(log) = self.log.clone() else {
            return self.inner.message().await;
        };
        let (result, bytes) = codec::capture(self.inner.message()).await;
        match &result {
            Ok(Some(message)) => match bytes {
                Some(bytes) => log.received(&bytes),
                // Not seen by the decoder (it should always be): the encoding is the same.
                None => log.received(&message.encode_to_vec()),
            },
            Ok(None) => log.close(CloseHow::Trailers, None),
            Err(status) => log.close(CloseHow::of(status), Some(&Failure::from_status(status))),
        }
        result
    }
}

impl<T> Drop for Inbound<T> {
    fn drop(&mut self) {
        if let Some(log) = &self.log {
            log.close(CloseHow::Cancelled, None);
        }
    }
}
