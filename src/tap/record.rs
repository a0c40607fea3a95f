//! The log of one tapped stream: gRPC messages cut out of the DATA bytes in each direction (a
//! length-prefixed message may span DATA frames, and one frame may hold several messages),
//! then reported to the sink as the client's wire log reports its own calls and streams.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::http2::Reason;

use crate::wire::{
    self, CallRecord, CloseHow, Failure, Peer, StreamClose, StreamMessage, StreamOpen, WireEvent,
    WireSink,
};

/// Messages larger than this are counted but not kept for the log (the forwarding itself has
/// no limit): no log line may make the tap hold an unbounded buffer.
const MAX_LOGGED_MESSAGE: usize = 64 << 20;

/// Methods whose messages carry passwords or tokens: their bodies are withheld, as the client's
/// own log does.
const SECRET_METHODS: [&str; 3] = [
    "/etcdserverpb.Auth/Authenticate",
    "/etcdserverpb.Auth/UserAdd",
    "/etcdserverpb.Auth/UserChangePassword",
];

/// One direction's gRPC framing: a 5-byte prefix (compressed flag, big-endian length), then
/// the message.
#[derive(Debug, Default)]
pub(super) struct Framer {
    /// A message (prefix included) whose bytes are still arriving.
    partial: Vec<u8>,
    /// Bytes still to skip of a message too large to keep.
    skip: usize,
}

impl Framer {
    /// Feeds `data`, calling `each` with every message it completes (without its prefix) and
    /// with the length of each message too large to keep.
    pub(super) fn feed(&mut self, mut data: &[u8], mut each: impl FnMut(Frame<'_>)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            if self.partial.is_empty() {
                // Whole messages straight from the frame, without copying.
                if let Some(len) = prefix_len(data) {
                    if len > MAX_LOGGED_MESSAGE {
                        each(Frame::Skipped);
                        self.skip = len;
                        data = &data[5..];
                        continue;
                    }
                    if data.len() >= 5 + len {
                        each(Frame::Message(&data[5..5 + len]));
                        data = &data[5 + len..];
                        continue;
                    }
                }
            }
            // Accumulate the prefix, then the message.
            let want = match prefix_len(&self.partial) {
                None => 5 - self.partial.len(),
                Some(len) if len > MAX_LOGGED_MESSAGE => {
                    each(Frame::Skipped);
                    self.skip = len;
                    self.partial.clear();
                    continue;
                }
                Some(len) => 5 + len - self.partial.len(),
            };
            let n = want.min(data.len());
            self.partial.extend_from_slice(&data[..n]);
            data = &data[n..];
            if let Some(len) = prefix_len(&self.partial) {
                if self.partial.len() == 5 + len {
                    each(Frame::Message(&self.partial[5..]));
                    self.partial.clear();
                }
            }
        }
    }

    /// Bytes of an unfinished message held (its prefix included).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.partial.len() + self.skip
    }
}

/// What [`Framer::feed`] found.
#[derive(Debug)]
pub(super) enum Frame<'a> {
    /// A whole message, without its prefix.
    Message(&'a [u8]),
    /// A message too large to keep for the log (counted, not shown).
    Skipped,
}

/// The message length in a complete 5-byte prefix at the start of `bytes`.
fn prefix_len(bytes: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = bytes.get(1..5)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(prefix)).ok()
}

/// How a tapped stream ended, as the tap saw it; the first one seen wins.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// The member answered with a grpc-status (in trailers, or a trailers-only response).
    Status(Option<Failure>),
    /// The client reset the stream with this reason.
    ClientReset(Reason),
    /// The member reset the stream with this reason.
    UpstreamReset(Reason),
    /// A connection failed; which one and why.
    ConnectionLost(String),
}

/// The status in a header block (trailers, or a trailers-only response): `Some(None)` for OK,
/// `None` when there is no `grpc-status`.
pub(super) fn status_of(headers: &http::HeaderMap) -> Option<Option<Failure>> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    if code == 0 {
        return Some(None);
    }
    let message = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    Some(Some(Failure {
        code: crate::error::Code::from_tonic(tonic::Code::from(code)),
        message,
        cause: None,
    }))
}

/// gRPC's percent-encoding of `grpc-message`.
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(hex) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(hex);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request metadata the log shows: `grpc-timeout` exactly as sent, `hasleader`, and the
/// credentials (`token`, `authorization`) always as `"<redacted>"`.
fn metadata_of(headers: &http::HeaderMap) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for key in ["grpc-timeout", "hasleader", "token", "authorization"] {
        if let Some(value) = headers.get(key) {
            let shown = if matches!(key, "token" | "authorization") {
                "<redacted>".to_string()
            } else {
                value.to_str().unwrap_or("<not ascii>").to_string()
            };
            out.push((key, shown));
        }
    }
    out
}

/// A method path as a `&'static str`: the descriptors' own for etcd's methods, else from a
/// small process-wide table of the others seen (at most [`OTHER_METHODS`], then `"<other>"`),
/// so a client sending made-up paths cannot grow the tap's memory.
fn intern(path: &str) -> (&'static str, Option<(bool, bool)>) {
    use std::sync::{Mutex, PoisonError};
    if let Some((known, requests, responses)) = crate::wirelog::known_method(path) {
        return (known, Some((requests, responses)));
    }
    static OTHERS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut others = OTHERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(seen) = others.iter().find(|p| **p == path) {
        return (seen, None);
    }
    if others.len() >= OTHER_METHODS || path.len() > 256 {
        return ("<other>", None);
    }
    let leaked: &'static str = Box::leak(path.to_string().into_boxed_str());
    others.push(leaked);
    (leaked, None)
}

/// How many method paths unknown to our protos get their own name in the log.
const OTHER_METHODS: usize = 64;

/// The log of one stream; unary methods give one `call` line at the end, all others `open`,
/// `send`/`recv` and `close` lines.
#[derive(Debug)]
pub(super) struct StreamRecord {
    sink: Arc<dyn WireSink>,
    peer: Arc<Peer>,
    id: u64,
    method: &'static str,
    /// The URL the client addressed: its `:scheme` and `:authority`, which the tap forwards
    /// unchanged (the member's own URL is on the connection's `connect` line).
    endpoint: String,
    unary: bool,
    redacted: bool,
    metadata: Vec<(&'static str, String)>,
    started: Instant,
    requests: Framer,
    responses: Framer,
    /// Unary: the request and response messages.
    request: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
    sent: u64,
    received: u64,
    outcome: Option<Outcome>,
    /// Why the stream's connection ended, once the connection task knows: it names the side
    /// that went away better than the stream, which sees both connections fail together.
    connection_end: Arc<OnceLock<String>>,
}

impl StreamRecord {
    /// Starts the log of a stream opened with `headers` on `path`; writes its open line.
    pub(super) fn open(
        sink: Arc<dyn WireSink>,
        peer: Arc<Peer>,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        connection_end: Arc<OnceLock<String>>,
    ) -> Self {
        let (method, streaming) = intern(uri.path());
        let endpoint = match uri.authority() {
            Some(authority) => format!("{}://{authority}", uri.scheme_str().unwrap_or("http")),
            None => peer.upstream.clone(),
        };
        let record = StreamRecord {
            sink,
            id: wire::next_id(),
            method,
            endpoint,
            unary: streaming == Some((false, false)),
            redacted: SECRET_METHODS.contains(&method),
            metadata: metadata_of(headers),
            started: Instant::now(),
            requests: Framer::default(),
            responses: Framer::default(),
            request: None,
            response: None,
            sent: 0,
            received: 0,
            outcome: None,
            peer,
            connection_end,
        };
        if !record.unary {
            record.sink.record(&WireEvent::Open(StreamOpen {
                stream: record.id,
                method: record.method,
                endpoint: &record.endpoint,
                metadata: &record.metadata,
                peer: Some(&record.peer),
            }));
        }
        record
    }

    /// DATA bytes from the client, exactly as received.
    pub(super) fn client_data(&mut self, data: &[u8]) {
        let mut framer = std::mem::take(&mut self.requests);
        framer.feed(data, |frame| match frame {
            Frame::Message(message) => self.message(true, message),
            Frame::Skipped => self.sent += 1,
        });
        self.requests = framer;
    }

    /// DATA bytes from the member, exactly as received.
    pub(super) fn upstream_data(&mut self, data: &[u8]) {
        let mut framer = std::mem::take(&mut self.responses);
        framer.feed(data, |frame| match frame {
            Frame::Message(message) => self.message(false, message),
            Frame::Skipped => self.received += 1,
        });
        self.responses = framer;
    }

    fn message(&mut self, request: bool, bytes: &[u8]) {
        let seq = if request {
            self.sent += 1;
            self.sent
        } else {
            self.received += 1;
            self.received
        };
        if self.unary {
            let slot = if request {
                &mut self.request
            } else {
                &mut self.response
            };
            if slot.is_none() {
                *slot = Some(bytes.to_vec());
            }
            return;
        }
        let message = StreamMessage {
            stream: self.id,
            seq,
            method: self.method,
            message: if self.redacted { &[] } else { bytes },
            peer: Some(&self.peer),
        };
        self.sink.record(&if request {
            WireEvent::Send(message)
        } else {
            WireEvent::Recv(message)
        });
    }

    /// Records how the stream ended, unless an earlier end was already recorded.
    pub(super) fn outcome(&mut self, outcome: Outcome) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
        }
    }

    /// Writes the call line (unary) or the close line; an end never seen counts as the
    /// connection lost.
    pub(super) fn finish(mut self) {
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Outcome::ConnectionLost("stream abandoned".into()));
        let (how, failure, reset) = match outcome {
            Outcome::Status(failure) => (CloseHow::Trailers, failure, None),
            Outcome::ClientReset(reason) => (
                CloseHow::Cancelled,
                Some(Failure {
                    code: crate::error::Code::Cancelled,
                    message: format!("reset by the client ({reason:?})"),
                    cause: None,
                }),
                Some(reason),
            ),
            Outcome::UpstreamReset(reason) => (
                CloseHow::Reset,
                Some(Failure {
                    code: crate::error::Code::Unavailable,
                    message: format!("reset by the member ({reason:?})"),
                    cause: None,
                }),
                Some(reason),
            ),
            Outcome::ConnectionLost(cause) => (
                CloseHow::ConnectionLost,
                Some(Failure {
                    code: crate::error::Code::Unavailable,
                    message: "connection lost".into(),
                    cause: Some(self.connection_end.get().cloned().unwrap_or(cause)),
                }),
                None,
            ),
        };
        if self.unary {
            let request = self.request.as_deref().unwrap_or_default();
            let response = if failure.is_none() {
                self.response.as_deref()
            } else {
                None
            };
            self.sink.record(&WireEvent::Call(CallRecord {
                call: self.id,
                attempt: 1,
                method: self.method,
                endpoint: &self.endpoint,
                metadata: &self.metadata,
                request: if self.redacted { &[] } else { request },
                request_bytes: request.len(),
                response: response.map(|r| if self.redacted { &[][..] } else { r }),
                response_bytes: response.map_or(0, <[u8]>::len),
                redacted: self.redacted,
                status: failure.as_ref(),
                retry: None,
                latency: self.started.elapsed(),
                peer: Some(&self.peer),
            }));
            return;
        }
        let status = match how {
            // A cancelled stream is logged with status OK by the client's own log.
            CloseHow::Cancelled => None,
            _ => failure.as_ref(),
        };
        self.sink.record(&WireEvent::Close(StreamClose {
            stream: self.id,
            method: self.method,
            how,
            status,
            sent: self.sent,
            received: self.received,
            reset_reason: reset.map(u32::from),
            peer: Some(&self.peer),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Messages come out whole whatever the DATA frame boundaries: every split of a byte run of
    /// three messages (one empty) gives the same three messages.
    #[test]
    fn messages_span_and_share_frames() {
        let mut bytes = frame(b"hello");
        bytes.extend(frame(b""));
        bytes.extend(frame(&[7u8; 300]));
        let want = vec![b"hello".to_vec(), Vec::new(), vec![7u8; 300]];
        for a in 0..bytes.len() {
            for b in a..bytes.len() {
                let mut framer = Framer::default();
                let mut got = Vec::new();
                for part in [&bytes[..a], &bytes[a..b], &bytes[b..]] {
                    framer.feed(part, |f| match f {
                        Frame::Message(m) => got.push(m.to_vec()),
                        Frame::Skipped => panic!("skipped"),
                    });
                }
                assert_eq!(got, want, "split at {a} and {b}");
                assert_eq!(framer.pending(), 0);
            }
        }
    }

    #[test]
    fn oversized_messages_are_skipped_not_held() {
        let mut framer = Framer::default();
        let mut prefix = vec![0u8];
        let len = MAX_LOGGED_MESSAGE + 1;
        prefix.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        let mut skipped = Vec::new();
        let mut got = Vec::new();
        let mut feed = |framer: &mut Framer, bytes: &[u8]| {
            framer.feed(bytes, |f| match f {
                Frame::Message(m) => got.push(m.to_vec()),
                Frame::Skipped => skipped.push(len),
            })
        };
        feed(&mut framer, &prefix[..3]);
        feed(&mut framer, &prefix[3..]);
        feed(&mut framer, &vec![1u8; len]);
        feed(&mut framer, &frame(b"x"));
        assert_eq!(skipped, [len]);
        assert_eq!(got, [b"x".to_vec()]);
        assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn statuses_and_metadata() {
        let mut headers = http::HeaderMap::new();
        assert!(status_of(&headers).is_none());
        headers.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert!(matches!(status_of(&headers), Some(None)));
        headers.insert("grpc-status", http::HeaderValue::from_static("9"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("etcdserver:%20mvcc%3A bad%"),
        );
        let failure = status_of(&headers).flatten().unwrap();
        assert_eq!(failure.code, crate::error::Code::FailedPrecondition);
        assert_eq!(failure.message, "etcdserver: mvcc: bad%");

        let mut headers = http::HeaderMap::new();
        headers.insert("token", http::HeaderValue::from_static("secret.1"));
        headers.insert("grpc-timeout", http::HeaderValue::from_static("4999m"));
        headers.insert("user-agent", http::HeaderValue::from_static("grpc-go"));
        assert_eq!(
            metadata_of(&headers),
            [
                ("grpc-timeout", "4999m".to_string()),
                ("token", "<redacted>".to_string())
            ]
        );
    }

    #[test]
    fn method_names_are_static_and_bounded() {
        let (put, kind) = intern("/etcdserverpb.KV/Put");
        assert_eq!(put, "/etcdserverpb.KV/Put");
        assert_eq!(kind, Some((false, false)));
        assert_eq!(
            intern("/etcdserverpb.Watch/Watch").1,
            Some((true, true)),
            "Watch is a bidirectional stream"
        );
        let (other, kind) = intern("/example.Svc/Do");
        assert_eq!((other, kind), ("/example.Svc/Do", None));
        for i in 0..2 * OTHER_METHODS {
            intern(&format!("/made.up/M{i}"));
        }
        assert_eq!(intern("/made.up/last").0, "<other>");
    }
}
