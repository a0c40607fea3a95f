//! The HTTP/2 state of one client connection, without I/O: the streams, both directions' flow
//! control, header compression, and the frames waiting to be written. The connection task
//! (`driver.rs`) feeds it the frames it reads and writes out what it queues; calls and their
//! bodies (`conn.rs`, `body.rs`) open streams, send data and take what arrived. All under one
//! mutex, held only for these short updates.

mod recv;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::task::{Context, Poll, Waker};

use prost::bytes::Bytes;
use tonic::codegen::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::http2::encoder::{Encoder, Indexing};
use crate::http2::hpack::Decoder;
use crate::http2::{
    self, header_fragment, write_u32_frame, Head, Http2Error, Reason, ACK, CONTINUATION, DATA,
    DEFAULT_MAX_FRAME, DEFAULT_WINDOW, END_HEADERS, END_STREAM, GOAWAY, HEADERS, MAX_WINDOW,
    PADDED, PING, PRIORITY_FRAME, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};

/// Initial HTTP/2 flow-control window of each stream we receive on (SETTINGS_INITIAL_WINDOW_SIZE).
/// 1 MiB: a large range answer or snapshot chunk flows without waiting for a WINDOW_UPDATE.
pub(super) const STREAM_WINDOW: u32 = 1 << 20;

/// Initial flow-control window of the whole connection: several busy streams at once.
pub(super) const CONNECTION_WINDOW: u32 = 4 << 20;

/// The dynamic table our decoder allows the server (SETTINGS_HEADER_TABLE_SIZE, its default).
const HEADER_TABLE: usize = 4096;
/// The largest response header block this client gathers (headers or trailers).
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// The largest header list (decoded) a response may carry; a larger one resets its stream.
const MAX_HEADER_LIST: usize = 1 << 20;
/// Answers this client owes the server (PING and SETTINGS acknowledgements) may wait unwritten
/// up to this many bytes; a server that keeps asking without reading ends the connection.
const MAX_OWED: usize = 1 << 20;
/// The highest stream id a client may open.
const MAX_STREAM_ID: u32 = MAX_WINDOW;
/// Queued frames beyond this wait for the next write (request data stays with its stream).
const WRITE_BATCH: usize = 256 << 10;
/// The payload of our keep-alive PINGs.
pub(super) const KEEP_ALIVE_PING: [u8; 8] = *b"etcdlock";

/// A request's head: what its HEADERS frame carries.
#[derive(Debug)]
pub(super) struct RequestHead<'a> {
    pub(super) scheme: &'a str,
    pub(super) authority: &'a str,
    pub(super) path: &'a str,
    pub(super) headers: &'a HeaderMap,
    pub(super) user_agent: &'a str,
}

/// Why a stream could not be opened now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OpenError {
    /// The connection takes no new streams (GOAWAY received, ids used up, or ended): open
    /// one on a new connection.
    Closed,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS is reached: wait for a stream to end.
    Full,
}

/// What a response body reads next.
#[derive(Debug)]
pub(super) enum Received {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
}

/// One stream, as this client sees it.
#[derive(Debug)]
struct Stream {
    /// The response's status and headers, until the call takes them.
    head: Option<(StatusCode, HeaderMap)>,
    got_head: bool,
    data: VecDeque<Bytes>,
    /// Bytes in `data`.
    buffered: usize,
    trailers: Option<HeaderMap>,
    /// The server ended its side (END_STREAM).
    recv_end: bool,
    /// What the server may still send before a WINDOW_UPDATE.
    recv_window: i64,
    /// Bytes handed up since the last WINDOW_UPDATE for this stream.
    consumed: u32,
    /// The stream failed (reset, or the connection ended): reads fail once the data already
    /// received is read, sends fail at once.
    error: Option<Http2Error>,
    /// What the server lets us send.
    send_window: i64,
    /// Request data waiting for window.
    queued: VecDeque<Bytes>,
    queued_len: usize,
    /// The request ends after the queued data.
    end_queued: bool,
    /// Our END_STREAM went out (or the stream was reset): nothing more is sent.
    send_end: bool,
    recv_waker: Option<Waker>,
    send_waker: Option<Waker>,
}

impl Stream {
    fn new(send_window: i64) -> Self {
        Stream {
            head: None,
            got_head: false,
            data: VecDeque::new(),
            buffered: 0,
            trailers: None,
            recv_end: false,
            recv_window: i64::from(STREAM_WINDOW),
            consumed: 0,
            error: None,
            send_window,
            queued: VecDeque::new(),
            queued_len: 0,
            end_queued: false,
            send_end: false,
            recv_waker: None,
            send_waker: None,
        }
    }

    fn wake(&mut self, wake: &mut Vec<Waker>) {
        wake.extend(self.recv_waker.take());
        wake.extend(self.send_waker.take());
    }

    fn fail(&mut self, error: Http2Error, wake: &mut Vec<Waker>) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self.send_end = true;
        self.queued.clear();
        self.queued_len = 0;
        self.wake(wake);
    }
}

/// A header block being gathered across CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// The state of one connection.
#[derive(Debug)]
pub(super) struct Inner {
    /// Frames ready to be written, in order.
    pub(super) out: Vec<u8>,
    /// Bytes of acknowledgements in `out` (reset when the connection task takes `out`).
    pub(super) owed: usize,
    /// Set when `out` or a stream's queued data changed: the connection task has work.
    pub(super) dirty: bool,
    streams: HashMap<u32, Stream>,
    next_id: u32,
    /// Streams with request data or an END_STREAM still to frame.
    sending: Vec<u32>,
    conn_send_window: i64,
    /// The server's SETTINGS_INITIAL_WINDOW_SIZE.
    peer_stream_window: i64,
    peer_max_frame: usize,
    peer_max_streams: usize,
    encoder: Encoder,
    decoder: Decoder,
    block: Option<Block>,
    /// Scratch space for encoding a header block.
    scratch: Vec<u8>,
    /// What the server may still send on the connection before a WINDOW_UPDATE.
    conn_recv_window: i64,
    /// Bytes handed up (or dropped) since the last connection WINDOW_UPDATE.
    conn_consumed: u32,
    /// The last stream id a GOAWAY from the server said it processes.
    goaway: Option<(u32, Reason)>,
    /// No new stream may be opened here.
    pub(super) draining: bool,
    /// The connection ended, and why.
    pub(super) ended: Option<Http2Error>,
    /// The server's first SETTINGS arrived.
    pub(super) settings_received: bool,
    /// Our keep-alive PING was answered.
    pub(super) ping_acked: bool,
    /// `Connection` handles alive (the channel's and its calls').
    pub(super) handles: usize,
    /// The connection task, woken when `dirty` is set.
    pub(super) driver: Option<Waker>,
    /// Calls waiting for a stream slot.
    slot_waiters: Vec<Waker>,
    /// Tasks to wake once the lock is released.
    pub(super) wake: Vec<Waker>,
}

impl Inner {
    /// A new connection's state, with the client preface, our SETTINGS and the connection
    /// window's raise queued.
    pub(super) fn new() -> Self {
        let mut inner = Inner {
            out: Vec::with_capacity(1024),
            owed: 0,
            dirty: true,
            streams: HashMap::new(),
            next_id: 1,
            sending: Vec::new(),
            conn_send_window: i64::from(DEFAULT_WINDOW),
            peer_stream_window: i64::from(DEFAULT_WINDOW),
            peer_max_frame: DEFAULT_MAX_FRAME,
            peer_max_streams: usize::MAX,
            encoder: Encoder::default(),
            decoder: Decoder::with_limit(HEADER_TABLE),
            block: None,
            scratch: Vec::new(),
            conn_recv_window: i64::from(CONNECTION_WINDOW),
            conn_consumed: 0,
            goaway: None,
            draining: false,
            ended: None,
            settings_received: false,
            ping_acked: false,
            handles: 0,
            driver: None,
            slot_waiters: Vec::new(),
            wake: Vec::new(),
        };
        inner.out.extend_from_slice(http2::PREFACE);
        // SETTINGS: no server push, our stream window.
        Head::write(&mut inner.out, 12, SETTINGS, 0, 0);
        for (id, value) in [
            (http2::SETTINGS_ENABLE_PUSH, 0),
            (http2::SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
        ] {
            inner.out.extend_from_slice(&id.to_be_bytes());
            inner.out.extend_from_slice(&value.to_be_bytes());
        }
        write_u32_frame(
            &mut inner.out,
            WINDOW_UPDATE,
            0,
            CONNECTION_WINDOW - DEFAULT_WINDOW,
        );
        inner
    }

    /// The failure of a stream this state no longer holds: the connection's end, if it ended.
    fn gone(&self) -> Http2Error {
        self.ended.clone().unwrap_or(Http2Error::Closed)
    }

    /// Why new streams are refused here: the server's GOAWAY, if it sent one.
    pub(super) fn refusal(&self) -> Http2Error {
        match self.goaway {
            Some((_, reason)) => Http2Error::Refused(reason),
            None => Http2Error::Closed,
        }
    }

    /// True when the connection task may stop: nobody can open a stream on it and none is
    /// open.
    pub(super) fn finished(&self) -> bool {
        self.streams.is_empty() && (self.handles == 0 || self.draining)
    }

    /// Opens a stream with `head`, queueing `data` (request data already in memory) and the
    /// end of the request when `end`.
    pub(super) fn open(
        &mut self,
        head: &RequestHead<'_>,
        data: &[Bytes],
        end: bool,
    ) -> Result<u32, OpenError> {
        if self.draining || self.ended.is_some() {
            return Err(OpenError::Closed);
        }
        if self.streams.len() >= self.peer_max_streams {
            return Err(OpenError::Full);
        }
        let id = self.next_id;
        if id > MAX_STREAM_ID {
            self.draining = true;
            return Err(OpenError::Closed);
        }
        self.next_id += 2;
        let headers_end = end && data.iter().all(Bytes::is_empty);
        self.write_headers(id, head, headers_end);
        let mut stream = Stream::new(self.peer_stream_window);
        stream.send_end = headers_end;
        stream.end_queued = end;
        for piece in data.iter().filter(|d| !d.is_empty()) {
            stream.queued_len += piece.len();
            stream.queued.push_back(piece.clone());
        }
        let more = !stream.send_end;
        self.streams.insert(id, stream);
        if more {
            self.sending.push(id);
            self.frame_stream(id);
        }
        self.dirty = true;
        Ok(id)
    }

    /// Encodes the request headers and writes them as HEADERS (and CONTINUATION) frames.
    fn write_headers(&mut self, id: u32, head: &RequestHead<'_>, end_stream: bool) {
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        let encoder = &mut self.encoder;
        encoder.begin(&mut block);
        for (name, value) in [
            (":method", "POST"),
            (":scheme", head.scheme),
            (":path", head.path),
            (":authority", head.authority),
        ] {
            encoder.field(
                &mut block,
                name.as_bytes(),
                value.as_bytes(),
                Indexing::Index,
            );
        }
        for (name, value) in head.headers {
            if name == "user-agent" || connection_specific(name) {
                continue;
            }
            let how = if name == "grpc-timeout" {
                Indexing::Never
            } else {
                Indexing::Index
            };
            encoder.field(&mut block, name.as_ref(), value.as_bytes(), how);
        }
        encoder.field(
            &mut block,
            b"user-agent",
            head.user_agent.as_bytes(),
            Indexing::Index,
        );
        let mut chunks = block.chunks(self.peer_max_frame).peekable();
        let mut kind = HEADERS;
        let stream_flag = if end_stream { END_STREAM } else { 0 };
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let last = chunks.peek().is_none();
            let mut flags = if last { END_HEADERS } else { 0 };
            if kind == HEADERS {
                flags |= stream_flag;
            }
            Head::write(&mut self.out, chunk.len(), kind, flags, id);
            self.out.extend_from_slice(chunk);
            if last {
                break;
            }
            kind = CONTINUATION;
        }
        self.scratch = block;
    }

    /// Frames as much of stream `id`'s queued data as the windows allow.
    fn frame_stream(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        while !stream.send_end {
            let Some(front) = stream.queued.front_mut() else {
                if stream.end_queued {
                    Head::write(&mut self.out, 0, DATA, END_STREAM, id);
                    stream.send_end = true;
                }
                break;
            };
            let window = stream.send_window.min(self.conn_send_window);
            if window <= 0 {
                break;
            }
            let n = front
                .len()
                .min(self.peer_max_frame)
                .min(usize::try_from(window).unwrap_or(usize::MAX));
            let piece = front.split_to(n);
            if front.is_empty() {
                stream.queued.pop_front();
            }
            stream.queued_len -= n;
            stream.send_window -= n as i64;
            self.conn_send_window -= n as i64;
            let end = stream.end_queued && stream.queued.is_empty();
            Head::write(&mut self.out, n, DATA, if end { END_STREAM } else { 0 }, id);
            self.out.extend_from_slice(&piece);
            stream.send_end = end;
        }
        if stream.queued_len == 0 {
            self.wake.extend(stream.send_waker.take());
        }
    }

    /// Frames the queued data of every stream, as the windows allow, up to one write's worth.
    pub(super) fn frame_queued(&mut self) {
        if self.sending.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.sending);
        for &id in &ids {
            if self.out.len() < WRITE_BATCH {
                self.frame_stream(id);
            }
        }
        let streams = &self.streams;
        self.sending = ids
            .into_iter()
            .filter(|id| streams.get(id).is_some_and(|s| !s.send_end))
            .collect();
    }

    /// Registers a call waiting for a stream slot.
    pub(super) fn wait_slot(&mut self, cx: &Context<'_>) {
        self.slot_waiters.push(cx.waker().clone());
    }

    /// Queues more request data on stream `id`; the request ends after it when `end`.
    pub(super) fn send(&mut self, id: u32, data: Bytes, end: bool) -> Result<(), Http2Error> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Err(self.gone());
        };
        if let Some(error) = &stream.error {
            return Err(error.clone());
        }
        if stream.send_end {
            return Ok(());
        }
        if !data.is_empty() {
            stream.queued_len += data.len();
            stream.queued.push_back(data);
        }
        stream.end_queued |= end;
        if !self.sending.contains(&id) {
            self.sending.push(id);
        }
        self.frame_stream(id);
        self.dirty = true;
        Ok(())
    }

    /// Ready when stream `id` has no request data waiting for window.
    pub(super) fn poll_send_ready(&mut self, id: u32, cx: &Context<'_>) -> Poll<Result<(), ()>> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(()));
        };
        if stream.error.is_some() || stream.send_end {
            return Poll::Ready(Err(()));
        }
        if stream.queued_len == 0 {
            return Poll::Ready(Ok(()));
        }
        stream.send_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready once stream `id` is over for sending (reset, ended, or released).
    pub(super) fn poll_send_over(&mut self, id: u32, cx: &Context<'_>) -> Poll<()> {
        match self.streams.get_mut(&id) {
            Some(stream) if stream.error.is_none() && !stream.send_end => {
                stream.send_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Resets stream `id` with `reason` (its request body failed): nothing more is sent or
    /// received on it.
    pub(super) fn reset(&mut self, id: u32, reason: Reason) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if stream.error.is_none() {
                write_u32_frame(&mut self.out, RST_STREAM, id, reason.0);
                self.dirty = true;
            }
            stream.fail(Http2Error::LocalReset(reason), &mut self.wake);
        }
    }

    /// The response's status and headers, once they arrived.
    pub(super) fn poll_head(
        &mut self,
        id: u32,
        cx: &Context<'_>,
    ) -> Poll<Result<(StatusCode, HeaderMap), Http2Error>> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(self.gone()));
        };
        if let Some(head) = stream.head.take() {
            return Poll::Ready(Ok(head));
        }
        if let Some(error) = &stream.error {
            return Poll::Ready(Err(error.clone()));
        }
        stream.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The response body's next piece: data (whose window goes back to the server), then the
    /// trailers, then the end; or the stream's failure once the data received is read.
    pub(super) fn poll_received(
        &mut self,
        id: u32,
        cx: &Context<'_>,
    ) -> Poll<Result<Received, Http2Error>> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(self.gone()));
        };
        if let Some(data) = stream.data.pop_front() {
            let n = data.len();
            stream.buffered -= n;
            stream.consumed += n as u32;
            if !stream.recv_end && stream.consumed >= STREAM_WINDOW / 2 {
                write_u32_frame(&mut self.out, WINDOW_UPDATE, id, stream.consumed);
                stream.recv_window += i64::from(stream.consumed);
                stream.consumed = 0;
                self.dirty = true;
            }
            self.release_connection_window(n);
            return Poll::Ready(Ok(Received::Data(data)));
        }
        if stream.recv_end {
            return Poll::Ready(Ok(match stream.trailers.take() {
                Some(trailers) => Received::Trailers(trailers),
                None => Received::End,
            }));
        }
        if let Some(error) = &stream.error {
            return Poll::Ready(Err(error.clone()));
        }
        stream.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// `n` bytes received on the connection were handed up or dropped: the server may send
    /// them again once enough have gathered for a WINDOW_UPDATE.
    fn release_connection_window(&mut self, n: usize) {
        self.conn_consumed += n as u32;
        if self.conn_consumed >= CONNECTION_WINDOW / 2 && self.ended.is_none() {
            write_u32_frame(&mut self.out, WINDOW_UPDATE, 0, self.conn_consumed);
            self.conn_recv_window += i64::from(self.conn_consumed);
            self.conn_consumed = 0;
            self.dirty = true;
        }
    }

    /// The call is over or given up: forgets stream `id`, resetting it (CANCEL) if either side
    /// is still open, and gives its unread data's window back.
    pub(super) fn release(&mut self, id: u32) {
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        let open = !(stream.recv_end && stream.send_end);
        if open && stream.error.is_none() && self.ended.is_none() {
            write_u32_frame(&mut self.out, RST_STREAM, id, Reason::CANCEL.0);
            self.dirty = true;
        }
        if stream.buffered > 0 {
            self.release_connection_window(stream.buffered);
        }
        self.wake.append(&mut self.slot_waiters);
    }

    /// The connection ended with `error`: every stream fails with it (a stream whose response
    /// is complete keeps it), and no new stream is opened.
    pub(super) fn fail_all(&mut self, error: Http2Error) {
        self.draining = true;
        if self.ended.is_none() {
            self.ended = Some(error.clone());
        }
        let goaway = self.goaway;
        for stream in self.streams.values_mut() {
            if !stream.recv_end {
                let error = match (&error, goaway) {
                    (Http2Error::Io(_), Some((_, reason))) => Http2Error::GoAway(reason),
                    _ => error.clone(),
                };
                stream.fail(error, &mut self.wake);
            } else {
                stream.send_end = true;
                stream.wake(&mut self.wake);
            }
        }
        self.wake.append(&mut self.slot_waiters);
    }
}

/// HTTP/2 forbids these in requests (RFC 9113, section 8.2.2).
fn connection_specific(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "host"
    )
}
