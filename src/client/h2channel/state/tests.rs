//! The connection state against frames written by hand, as a server would send them.

use std::io;
use std::task::Waker;

use crate::http2::PRIORITY;

use super::*;

const OK: Result<(), (Reason, &str)> = Ok(());

/// The frames in `bytes` (after the client preface, if it starts with one).
fn frames(bytes: &[u8]) -> Vec<(Head, Vec<u8>)> {
    let mut rest = bytes.strip_prefix(&http2::PREFACE[..]).unwrap_or(bytes);
    let mut out = Vec::new();
    while rest.len() >= 9 {
        let mut h = [0u8; 9];
        h.copy_from_slice(&rest[..9]);
        let head = Head::parse(&h);
        out.push((head, rest[9..9 + head.len].to_vec()));
        rest = &rest[9 + head.len..];
    }
    assert!(rest.is_empty(), "a partial frame was written");
    out
}

/// What the client wrote since the last call.
fn written(inner: &mut Inner) -> Vec<(Head, Vec<u8>)> {
    inner.frame_queued();
    frames(&std::mem::take(&mut inner.out))
}

/// A connection past its handshake: our prefaces taken, the server's empty SETTINGS applied.
fn connected() -> Inner {
    let mut inner = Inner::new();
    assert_eq!(inner.on_frame(head(SETTINGS, 0, 0, 0), &[]), OK);
    inner.out.clear();
    inner
}

fn head(kind: u8, flags: u8, stream: u32, len: usize) -> Head {
    Head {
        len,
        kind,
        flags,
        stream,
    }
}

/// Feeds one frame.
fn feed(inner: &mut Inner, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let result = inner.on_frame(head(kind, flags, stream, payload.len()), payload);
    assert_eq!(result, OK);
}

fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    headers.insert("grpc-timeout", HeaderValue::from_static("5000m"));
    headers
}

fn open(inner: &mut Inner, data: &[u8], end: bool) -> u32 {
    let headers = request_headers();
    let head = RequestHead {
        scheme: "http",
        authority: "127.0.0.1:2379",
        path: "/etcdserverpb.KV/Put",
        headers: &headers,
        user_agent: "etcd-lock/test",
    };
    let data = [Bytes::copy_from_slice(data)];
    match inner.open(&head, &data, end) {
        Ok(id) => id,
        Err(e) => panic!("open failed: {e:?}"),
    }
}

/// A request head with short names, for calls whose headers do not matter.
fn short_head(headers: &HeaderMap) -> RequestHead<'_> {
    RequestHead {
        scheme: "http",
        authority: "a",
        path: "/p",
        headers,
        user_agent: "u",
    }
}

/// A header block, as a server encodes it.
fn block(encoder: &mut Encoder, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    encoder.begin(&mut out);
    for (name, value) in fields {
        encoder.field(&mut out, name.as_bytes(), value.as_bytes(), Indexing::Index);
    }
    out
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn head_of(inner: &mut Inner, id: u32) -> Poll<Result<(StatusCode, HeaderMap), Http2Error>> {
    inner.poll_head(id, &cx())
}

fn next(inner: &mut Inner, id: u32) -> Poll<Result<Received, Http2Error>> {
    inner.poll_received(id, &cx())
}

#[test]
fn a_connection_starts_with_preface_settings_and_a_larger_window() {
    let mut inner = Inner::new();
    assert!(inner.out.starts_with(http2::PREFACE));
    let sent = written(&mut inner);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0.kind, SETTINGS);
    assert_eq!(
        sent[0].1,
        [0, 2, 0, 0, 0, 0, 0, 4, 0, 0x10, 0, 0],
        "push off, 1 MiB stream window"
    );
    assert_eq!((sent[1].0.kind, sent[1].0.stream), (WINDOW_UPDATE, 0));
    assert_eq!(
        sent[1].1,
        (CONNECTION_WINDOW - DEFAULT_WINDOW).to_be_bytes()
    );
    // The server's SETTINGS are acknowledged.
    feed(&mut inner, SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    assert!(inner.settings_received);
    let sent = written(&mut inner);
    assert_eq!(sent[0].0, head(SETTINGS, ACK, 0, 0));
}

#[test]
fn a_unary_request_is_headers_then_one_data_frame_that_ends_it() {
    let mut inner = connected();
    let id = open(&mut inner, b"hello", true);
    assert_eq!(id, 1);
    let sent = written(&mut inner);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0, head(HEADERS, END_HEADERS, 1, sent[0].1.len()));
    let mut fields = Vec::new();
    let decoded = Decoder::with_limit(4096).decode(&sent[0].1, |n, v| {
        fields.push(format!(
            "{}: {}",
            String::from_utf8_lossy(n),
            String::from_utf8_lossy(v)
        ))
    });
    assert_eq!(decoded, Ok(()));
    assert_eq!(
        fields,
        [
            ":method: POST",
            ":scheme: http",
            ":path: /etcdserverpb.KV/Put",
            ":authority: 127.0.0.1:2379",
            "content-type: application/grpc",
            "te: trailers",
            "grpc-timeout: 5000m",
            "user-agent: etcd-lock/test",
        ]
    );
    assert_eq!(sent[1], (head(DATA, END_STREAM, 1, 5), b"hello".to_vec()));
    // The next stream has the next odd id, and a shorter header block.
    assert_eq!(open(&mut inner, b"", true), 3);
    let again = written(&mut inner);
    assert_eq!(again[0].0.flags, END_HEADERS | END_STREAM);
    assert!(again[0].1.len() < 30, "{}", again[0].1.len());
}

#[test]
fn request_data_waits_for_the_servers_window() {
    let mut inner = connected();
    // A 10-byte stream window.
    feed(&mut inner, SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]);
    inner.out.clear();
    let id = open(&mut inner, &[7; 25], true);
    let sent = written(&mut inner);
    assert_eq!(sent[1].0, head(DATA, 0, id, 10));
    assert!(inner.poll_send_ready(id, &cx()).is_pending());
    feed(&mut inner, WINDOW_UPDATE, 0, id, &10u32.to_be_bytes());
    let sent = written(&mut inner);
    assert_eq!(sent, [(head(DATA, 0, id, 10), vec![7; 10])]);
    feed(&mut inner, WINDOW_UPDATE, 0, id, &100u32.to_be_bytes());
    let sent = written(&mut inner);
    assert_eq!(sent, [(head(DATA, END_STREAM, id, 5), vec![7; 5])]);
    assert!(inner.poll_send_ready(id, &cx()).is_ready());
}

#[test]
fn a_response_is_headers_data_and_trailers() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", true);
    inner.out.clear();
    assert!(head_of(&mut inner, id).is_pending());
    let mut server = Encoder::default();
    let headers = block(
        &mut server,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    feed(&mut inner, HEADERS, END_HEADERS, id, &headers);
    let Poll::Ready(Ok((status, headers))) = head_of(&mut inner, id) else {
        panic!("no head");
    };
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/grpc");
    feed(&mut inner, DATA, 0, id, b"abc");
    let trailers = block(&mut server, &[("grpc-status", "0")]);
    feed(&mut inner, HEADERS, END_HEADERS | END_STREAM, id, &trailers);
    assert!(matches!(next(&mut inner, id), Poll::Ready(Ok(Received::Data(d))) if d == "abc"));
    let Poll::Ready(Ok(Received::Trailers(trailers))) = next(&mut inner, id) else {
        panic!("no trailers");
    };
    assert_eq!(trailers["grpc-status"], "0");
    // Complete both ways: forgetting it sends nothing.
    inner.release(id);
    assert!(written(&mut inner).is_empty());
}

#[test]
fn a_trailers_only_response_ends_the_body_at_once() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", true);
    let mut server = Encoder::default();
    let only = block(&mut server, &[(":status", "200"), ("grpc-status", "5")]);
    feed(&mut inner, HEADERS, END_HEADERS | END_STREAM, id, &only);
    let Poll::Ready(Ok((_, headers))) = head_of(&mut inner, id) else {
        panic!("no head");
    };
    assert_eq!(headers["grpc-status"], "5");
    assert!(matches!(
        next(&mut inner, id),
        Poll::Ready(Ok(Received::End))
    ));
}

#[test]
fn headers_across_continuation_and_padding_and_priority() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", true);
    let mut server = Encoder::default();
    let whole = block(
        &mut server,
        &[(":status", "200"), ("x-long", &"v".repeat(40))],
    );
    let (first, second) = whole.split_at(10);
    // HEADERS with two bytes of padding and priority fields, then CONTINUATION.
    let mut payload = vec![2, 0, 0, 0, 0, 16];
    payload.extend_from_slice(first);
    payload.extend_from_slice(&[0, 0]);
    feed(&mut inner, HEADERS, PADDED | PRIORITY, id, &payload);
    assert!(head_of(&mut inner, id).is_pending());
    feed(&mut inner, CONTINUATION, END_HEADERS, id, second);
    let Poll::Ready(Ok((_, headers))) = head_of(&mut inner, id) else {
        panic!("no head");
    };
    assert_eq!(headers["x-long"], "v".repeat(40).as_str());
    // Padded DATA: the padding is not data.
    feed(&mut inner, DATA, PADDED, id, &[3, b'o', b'k', 0, 0, 0]);
    assert!(matches!(next(&mut inner, id), Poll::Ready(Ok(Received::Data(d))) if d == "ok"));
}

#[test]
fn goaway_refuses_the_streams_above_its_last_id() {
    let mut inner = connected();
    let ids: Vec<u32> = (0..3).map(|_| open(&mut inner, b"x", true)).collect();
    assert_eq!(ids, [1, 3, 5]);
    let mut goaway = 3u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    feed(&mut inner, GOAWAY, 0, 0, &goaway);
    let Poll::Ready(Err(refused)) = head_of(&mut inner, 5) else {
        panic!("stream 5 was not refused");
    };
    assert!(refused.not_processed(), "{refused}");
    assert!(head_of(&mut inner, 1).is_pending());
    assert!(head_of(&mut inner, 3).is_pending());
    assert!(inner.draining);
    let headers = request_headers();
    let head = short_head(&headers);
    assert_eq!(inner.open(&head, &[], true), Err(OpenError::Closed));
    // The connection then breaks: the accepted streams may have run.
    let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
    inner.fail_all(Http2Error::Io(std::sync::Arc::new(eof)));
    let Poll::Ready(Err(lost)) = head_of(&mut inner, 1) else {
        panic!("stream 1 did not fail");
    };
    assert!(matches!(lost, Http2Error::GoAway(_)), "{lost}");
    assert!(!lost.not_processed());
}

#[test]
fn a_reset_after_a_complete_response_keeps_it() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", false);
    let mut server = Encoder::default();
    let only = block(&mut server, &[(":status", "200"), ("grpc-status", "0")]);
    feed(&mut inner, HEADERS, END_HEADERS | END_STREAM, id, &only);
    feed(&mut inner, RST_STREAM, 0, id, &0u32.to_be_bytes());
    assert!(matches!(head_of(&mut inner, id), Poll::Ready(Ok(_))));
    assert!(matches!(
        next(&mut inner, id),
        Poll::Ready(Ok(Received::End))
    ));
    // Sending stops.
    assert!(inner.poll_send_ready(id, &cx()).is_ready());
    assert!(inner.poll_send_over(id, &cx()).is_ready());
}

#[test]
fn a_reset_fails_the_stream_after_the_data_received() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", true);
    let mut server = Encoder::default();
    let headers = block(&mut server, &[(":status", "200")]);
    feed(&mut inner, HEADERS, END_HEADERS, id, &headers);
    feed(&mut inner, DATA, 0, id, b"event");
    feed(&mut inner, RST_STREAM, 0, id, &8u32.to_be_bytes());
    assert!(matches!(head_of(&mut inner, id), Poll::Ready(Ok(_))));
    assert!(matches!(
        next(&mut inner, id),
        Poll::Ready(Ok(Received::Data(_)))
    ));
    let Poll::Ready(Err(error)) = next(&mut inner, id) else {
        panic!("the reset was not reported");
    };
    assert_eq!(error.reset_reason(), Some(Reason::CANCEL));
    // The server ended it: no reset goes back.
    inner.release(id);
    assert!(written(&mut inner)
        .iter()
        .all(|(h, _)| h.kind != RST_STREAM));
}

#[test]
fn windows_go_back_as_the_body_is_read() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", true);
    inner.out.clear();
    let chunk = vec![1u8; DEFAULT_MAX_FRAME];
    let frames_per_half = (STREAM_WINDOW / 2) as usize / DEFAULT_MAX_FRAME;
    for _ in 0..frames_per_half {
        feed(&mut inner, DATA, 0, id, &chunk);
    }
    // Received but not read: nothing goes back.
    assert!(written(&mut inner).is_empty());
    for _ in 0..frames_per_half {
        assert!(matches!(
            next(&mut inner, id),
            Poll::Ready(Ok(Received::Data(_)))
        ));
    }
    let sent = written(&mut inner);
    assert_eq!(
        sent,
        [(
            head(WINDOW_UPDATE, 0, id, 4),
            (STREAM_WINDOW / 2).to_be_bytes().to_vec()
        )]
    );
    // Streams given up hand their unread data back to the connection, which gets it back
    // once half its window was used.
    let (a, b) = (open(&mut inner, b"x", true), open(&mut inner, b"x", true));
    inner.out.clear();
    let per_stream = 60;
    for id in [a, b] {
        for _ in 0..per_stream {
            feed(&mut inner, DATA, 0, id, &chunk);
        }
    }
    inner.release(a);
    assert_eq!(
        written(&mut inner),
        [(head(RST_STREAM, 0, a, 4), 8u32.to_be_bytes().to_vec())]
    );
    inner.release(b);
    let returned = (frames_per_half + 2 * per_stream) * DEFAULT_MAX_FRAME;
    assert_eq!(
        written(&mut inner),
        [
            (head(RST_STREAM, 0, b, 4), 8u32.to_be_bytes().to_vec()),
            (
                head(WINDOW_UPDATE, 0, 0, 4),
                (returned as u32).to_be_bytes().to_vec()
            ),
        ]
    );
}

#[test]
fn data_beyond_the_window_resets_the_stream() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", true);
    inner.out.clear();
    let chunk = vec![0u8; DEFAULT_MAX_FRAME];
    for _ in 0..STREAM_WINDOW as usize / DEFAULT_MAX_FRAME {
        feed(&mut inner, DATA, 0, id, &chunk);
    }
    feed(&mut inner, DATA, 0, id, b"one too many");
    let sent = written(&mut inner);
    assert_eq!(
        sent,
        [(head(RST_STREAM, 0, id, 4), 3u32.to_be_bytes().to_vec())]
    );
    let error = loop {
        match next(&mut inner, id) {
            Poll::Ready(Ok(Received::Data(_))) => {}
            Poll::Ready(Err(error)) => break error,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(error.reset_reason(), Some(Reason::FLOW_CONTROL_ERROR));
}

#[test]
fn pings_are_answered_and_protocol_errors_end_the_connection() {
    let mut inner = connected();
    feed(&mut inner, PING, 0, 0, b"12345678");
    assert_eq!(
        written(&mut inner),
        [(head(PING, ACK, 0, 8), b"12345678".to_vec())]
    );
    feed(&mut inner, PING, ACK, 0, &KEEP_ALIVE_PING);
    assert!(inner.ping_acked);
    let promise = inner.on_frame(head(PUSH_PROMISE, END_HEADERS, 1, 4), &[0, 0, 0, 2]);
    assert_eq!(promise.map_err(|e| e.0), Err(Reason::PROTOCOL_ERROR));
    let bad_ping = inner.on_frame(head(PING, 0, 0, 3), b"abc");
    assert_eq!(bad_ping.map_err(|e| e.0), Err(Reason::FRAME_SIZE_ERROR));
    let id = open(&mut inner, b"x", true);
    let garbage = inner.on_frame(head(HEADERS, END_HEADERS, id, 1), &[0x80]);
    assert_eq!(garbage.map_err(|e| e.0), Err(Reason::COMPRESSION_ERROR));
}

#[test]
fn the_servers_stream_limit_holds_new_streams() {
    let mut inner = connected();
    feed(&mut inner, SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1]);
    let first = open(&mut inner, b"x", true);
    let headers = request_headers();
    let head = short_head(&headers);
    assert_eq!(inner.open(&head, &[], true), Err(OpenError::Full));
    inner.release(first);
    assert!(inner.open(&head, &[], true).is_ok());
}

#[test]
fn a_header_list_that_expands_past_its_bound_resets_only_its_stream() {
    let mut inner = connected();
    let id = open(&mut inner, b"x", true);
    inner.out.clear();
    // One 500-byte field added to the table, then referenced 2100 times (1 byte each):
    // 1.1 MB of headers from a 2.6 KB block.
    let mut server = Encoder::default();
    let mut bomb = block(
        &mut server,
        &[(":status", "200"), ("x-big", &"b".repeat(500))],
    );
    bomb.extend(std::iter::repeat_n(0xbe, 2100));
    feed(&mut inner, HEADERS, END_HEADERS, id, &bomb);
    assert_eq!(
        written(&mut inner),
        [(head(RST_STREAM, 0, id, 4), 1u32.to_be_bytes().to_vec())]
    );
    let Poll::Ready(Err(error)) = head_of(&mut inner, id) else {
        panic!("the stream was not reset");
    };
    assert_eq!(error.reset_reason(), Some(Reason::PROTOCOL_ERROR));
    // The connection goes on, its table in step with the server's.
    let next_id = open(&mut inner, b"x", true);
    let small = block(
        &mut server,
        &[(":status", "200"), ("x-big", &"b".repeat(500))],
    );
    assert!(small.len() < 4, "the field is indexed now");
    feed(&mut inner, HEADERS, END_HEADERS, next_id, &small);
    assert!(matches!(head_of(&mut inner, next_id), Poll::Ready(Ok(_))));
}

#[test]
fn a_server_that_asks_without_reading_ends_the_connection() {
    let mut inner = connected();
    let ping = head(PING, 0, 0, 8);
    let mut answered = 0;
    let error = loop {
        match inner.on_frame(ping, b"flooding") {
            Ok(()) => answered += 1,
            Err(error) => break error,
        }
        assert!(answered < 100_000, "the answers grew without bound");
    };
    assert_eq!(error.0, Reason::ENHANCE_YOUR_CALM);
    // A server that reads its answers may ping as often as it likes.
    let mut inner = connected();
    for _ in 0..100_000 {
        assert_eq!(inner.on_frame(ping, b"flooding"), OK);
        if inner.out.len() > 64 << 10 {
            inner.out.clear();
            inner.owed = 0;
        }
    }
}
