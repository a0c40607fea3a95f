//! The streams of one relayed connection, followed from the frames both sides send: which are
//! open, what each carried, and how each ended, reported to the sink as the client's own wire
//! log reports its calls and streams.
//!
//! A stream opens with the client's HEADERS on a new stream id. It is over, for the log and for
//! [`TapHandle::streams`](super::TapHandle::streams), when the member ends its side
//! (END_STREAM, on trailers or DATA), when either side resets it, when the member's GOAWAY
//! says it was never processed, or when the connection ends.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use crate::http2::Reason;

use super::frames::Event;
use super::record::{status_of, Outcome, StreamRecord};
use super::Live;
use crate::http2::hpack::Decoder;
use crate::wire::{Failure, Peer, WireSink};

/// One open stream; `record` is `None` without a sink.
#[derive(Debug)]
struct Stream {
    record: Option<StreamRecord>,
    /// The member sent its response headers; its next header block is the trailers.
    responded: bool,
}

/// One direction's header decoding, or why it stopped.
#[derive(Debug, Default)]
struct Headers {
    decoder: Decoder,
    failed: bool,
}

impl Headers {
    /// The fields of `block`, or `None` once this direction's blocks cannot be decoded (the
    /// compression context is then lost for the rest of the connection).
    fn decode(&mut self, block: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        if self.failed {
            return None;
        }
        let mut fields = Vec::new();
        match self.decoder.decode(block, |name, value| {
            fields.push((name.to_vec(), value.to_vec()))
        }) {
            Ok(()) => Some(fields),
            Err(_) => {
                self.failed = true;
                None
            }
        }
    }
}

/// The regular (not pseudo) fields as a header map; fields that are not valid HTTP are left
/// out.
fn header_map(fields: &[(Vec<u8>, Vec<u8>)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in fields {
        if name.first() == Some(&b':') {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// The request's URI from its pseudo-header fields (`:scheme`, `:authority`, `:path`).
fn request_uri(fields: &[(Vec<u8>, Vec<u8>)]) -> http::Uri {
    let pseudo = |key: &[u8]| {
        fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_slice())
    };
    let mut builder = http::Uri::builder().path_and_query(pseudo(b":path").unwrap_or(b"/"));
    if let Some(authority) = pseudo(b":authority") {
        builder = builder
            .scheme(pseudo(b":scheme").unwrap_or(b"http"))
            .authority(authority);
    }
    builder
        .build()
        .unwrap_or_else(|_| http::Uri::from_static("/<invalid-path>"))
}

/// The streams of one connection and what the log needs to follow them.
#[derive(Debug)]
pub(super) struct Streams {
    sink: Option<Arc<dyn WireSink>>,
    peer: Arc<Peer>,
    live: Arc<Live>,
    connection_end: Arc<OnceLock<String>>,
    open: HashMap<u32, Stream>,
    /// The highest stream id the client opened: a lower one is never new.
    last_opened: u32,
    /// Streams the connection carried.
    pub(super) opened: u64,
    /// The error code of the client's GOAWAY, if it sent one.
    pub(super) client_goaway: Option<u32>,
    /// The error code of the member's last GOAWAY, if it sent one.
    pub(super) upstream_goaway: Option<u32>,
    requests: Headers,
    responses: Headers,
}

impl Streams {
    pub(super) fn new(sink: Option<Arc<dyn WireSink>>, peer: Arc<Peer>, live: Arc<Live>) -> Self {
        Streams {
            sink,
            peer,
            live,
            connection_end: Arc::new(OnceLock::new()),
            open: HashMap::new(),
            last_opened: 0,
            opened: 0,
            client_goaway: None,
            upstream_goaway: None,
            requests: Headers::default(),
            responses: Headers::default(),
        }
    }

    /// Streams open now.
    pub(super) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Something the client sent.
    pub(super) fn client(&mut self, event: Event<'_>) {
        match event {
            Event::Headers { stream, block, .. } => {
                // Without a sink nothing is decoded: only the frames are followed.
                let fields = match self.sink {
                    Some(_) => self.requests.decode(block),
                    None => None,
                };
                if stream <= self.last_opened || stream % 2 == 0 {
                    // Trailers from the client, or not a stream a client may open.
                    return;
                }
                self.last_opened = stream;
                self.opened += 1;
                self.live.streams.fetch_add(1, Ordering::SeqCst);
                let record = self.sink.as_ref().map(|sink| {
                    let fields = fields.unwrap_or_else(|| {
                        vec![(b":path".to_vec(), b"/<undecodable-headers>".to_vec())]
                    });
                    StreamRecord::open(
                        Arc::clone(sink),
                        Arc::clone(&self.peer),
                        &request_uri(&fields),
                        &header_map(&fields),
                        Arc::clone(&self.connection_end),
                    )
                });
                self.open.insert(
                    stream,
                    Stream {
                        record,
                        responded: false,
                    },
                );
            }
            Event::Promise { block } => {
                if self.sink.is_some() {
                    let _ = self.requests.decode(block);
                }
            }
            Event::Data { stream, data } => {
                if let Some(record) = self.record(stream) {
                    record.client_data(data);
                }
            }
            Event::DataEnd { .. } => {}
            Event::Reset { stream, code } => {
                self.finish(stream, Outcome::ClientReset(Reason::from(code)));
            }
            Event::GoAway { code, .. } => self.client_goaway = Some(code),
        }
    }

    /// Something the member sent.
    pub(super) fn upstream(&mut self, event: Event<'_>) {
        match event {
            Event::Headers {
                stream,
                end_stream,
                block,
            } => {
                let fields = match self.sink {
                    Some(_) => self.responses.decode(block),
                    None => None,
                };
                let Some(open) = self.open.get_mut(&stream) else {
                    return;
                };
                let trailers = std::mem::replace(&mut open.responded, true);
                if !end_stream {
                    return;
                }
                let status = fields
                    .map(|fields| status_of(&header_map(&fields)))
                    .unwrap_or_else(|| Some(unknown("the member's headers could not be decoded")));
                let status = status.unwrap_or_else(|| {
                    unknown(if trailers {
                        "no grpc-status in the trailers"
                    } else {
                        "no grpc-status in the response"
                    })
                });
                self.finish(stream, Outcome::Status(status));
            }
            Event::Promise { block } => {
                if self.sink.is_some() {
                    let _ = self.responses.decode(block);
                }
            }
            Event::Data { stream, data } => {
                if let Some(record) = self.record(stream) {
                    record.upstream_data(data);
                }
            }
            Event::DataEnd { stream } => {
                let status = unknown("the response ended without trailers");
                self.finish(stream, Outcome::Status(status));
            }
            Event::Reset { stream, code } => {
                self.finish(stream, Outcome::UpstreamReset(Reason::from(code)));
            }
            Event::GoAway { last_stream, code } => {
                self.upstream_goaway = Some(code);
                // Streams above the last one the member processes never get an answer.
                let refused: Vec<u32> = self
                    .open
                    .keys()
                    .copied()
                    .filter(|id| *id > last_stream)
                    .collect();
                for stream in refused {
                    let why = format!(
                        "upstream: GOAWAY ({:?}) with last stream {last_stream}: not processed",
                        Reason::from(code)
                    );
                    self.finish(stream, Outcome::ConnectionLost(why));
                }
            }
        }
    }

    fn record(&mut self, stream: u32) -> Option<&mut StreamRecord> {
        self.open.get_mut(&stream)?.record.as_mut()
    }

    /// Ends `stream`, if open, with `outcome`, and writes its log line.
    fn finish(&mut self, stream: u32, outcome: Outcome) {
        if let Some(open) = self.open.remove(&stream) {
            self.live.streams.fetch_sub(1, Ordering::SeqCst);
            if let Some(mut record) = open.record {
                record.outcome(outcome);
                record.finish();
            }
        }
    }

    /// The connection ended (`cause` says which side and how): every stream still open ends
    /// with it.
    pub(super) fn end(&mut self, cause: &str) {
        let _ = self.connection_end.set(cause.to_string());
        let open: Vec<u32> = self.open.keys().copied().collect();
        for stream in open {
            self.finish(stream, Outcome::ConnectionLost(cause.to_string()));
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        // A connection task aborted (the tap shut down) still gives back its count.
        self.live
            .streams
            .fetch_sub(self.open.len(), Ordering::SeqCst);
    }
}

fn unknown(message: &str) -> Option<Failure> {
    Some(Failure {
        code: crate::error::Code::Unknown,
        message: message.into(),
        cause: None,
    })
}
