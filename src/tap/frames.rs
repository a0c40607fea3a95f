//! Reads the HTTP/2 frames (RFC 9113) in one direction of a connection the tap relays, from the
//! bytes exactly as they pass, in pieces of any size; the bytes themselves are forwarded
//! elsewhere, unchanged.
//!
//! DATA payloads are reported as they arrive (padding left out), so no frame is held whole;
//! header blocks are gathered across CONTINUATION frames and reported once complete.
//! Frames that carry nothing the log needs (SETTINGS, PING, WINDOW_UPDATE, PRIORITY, and
//! unknown types) are skipped.

use crate::http2::{
    header_fragment, Head, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED,
    PREFACE, PUSH_PROMISE, RST_STREAM,
};

/// Header blocks and control frames larger than this are not gathered (the bytes still pass);
/// their direction stops being read. SETTINGS_MAX_HEADER_LIST_SIZE is far below this in gRPC.
const MAX_BLOCK: usize = 4 << 20;

/// Something a direction said, in the order it said it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event<'a> {
    /// A complete header block (HEADERS plus any CONTINUATION): request or response headers,
    /// or trailers; `end_stream` when the sender ends the stream with it.
    Headers {
        stream: u32,
        end_stream: bool,
        block: &'a [u8],
    },
    /// A PUSH_PROMISE's header block: decoded only to keep the compression context in step.
    Promise { block: &'a [u8] },
    /// Part of a DATA frame's payload, padding excluded.
    Data { stream: u32, data: &'a [u8] },
    /// A DATA frame with END_STREAM was read to its end.
    DataEnd { stream: u32 },
    /// RST_STREAM with its error code.
    Reset { stream: u32, code: u32 },
    /// GOAWAY: the last stream the sender processes, and its error code.
    GoAway { last_stream: u32, code: u32 },
}

/// A frame being read.
#[derive(Debug)]
struct Current {
    kind: u8,
    flags: u8,
    stream: u32,
    /// Payload bytes not read yet.
    left: usize,
    /// DATA: the pad length byte is still to come.
    pad_byte: bool,
    /// DATA: padding bytes at the end of the payload.
    pad: usize,
}

/// One direction's frame reader.
#[derive(Debug)]
pub(super) struct FrameReader {
    /// Preface bytes still expected (client to member only).
    preface: usize,
    /// A frame header being gathered.
    head: [u8; 9],
    head_len: usize,
    current: Option<Current>,
    /// The payload of a frame that is gathered whole (HEADERS, CONTINUATION, PUSH_PROMISE,
    /// RST_STREAM, GOAWAY).
    payload: Vec<u8>,
    /// A header block waiting for its CONTINUATION frames: (stream, end_stream, promise).
    block_of: Option<(u32, bool, bool)>,
    block: Vec<u8>,
    /// The bytes stopped making sense as HTTP/2; nothing more is read.
    failed: Option<&'static str>,
}

impl FrameReader {
    /// A reader for the client's side (`client = true`: a preface comes first) or the
    /// member's.
    pub(super) fn new(client: bool) -> Self {
        FrameReader {
            preface: if client { PREFACE.len() } else { 0 },
            head: [0; 9],
            head_len: 0,
            current: None,
            payload: Vec::new(),
            block_of: None,
            block: Vec::new(),
            failed: None,
        }
    }

    /// Why the reader stopped, if it did.
    pub(super) fn failed(&self) -> Option<&'static str> {
        self.failed
    }

    /// Reads `bytes`, the next ones of the direction, calling `each` for what they complete.
    pub(super) fn feed(&mut self, mut bytes: &[u8], each: &mut dyn FnMut(Event<'_>)) {
        while !bytes.is_empty() && self.failed.is_none() {
            if self.preface > 0 {
                let at = PREFACE.len() - self.preface;
                let n = self.preface.min(bytes.len());
                if bytes[..n] != PREFACE[at..at + n] {
                    self.failed = Some("not an HTTP/2 connection preface");
                    return;
                }
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            let Some(current) = &mut self.current else {
                let n = (9 - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len == 9 {
                    self.head_len = 0;
                    self.start_frame(each);
                }
                continue;
            };
            if current.kind == DATA {
                if current.pad_byte {
                    current.pad_byte = false;
                    current.pad = usize::from(bytes[0]);
                    current.left -= 1;
                    bytes = &bytes[1..];
                    if current.pad > current.left {
                        self.failed = Some("DATA padding longer than its frame");
                        return;
                    }
                } else {
                    let data_left = current.left - current.pad;
                    let n = data_left.min(bytes.len());
                    if n > 0 {
                        each(Event::Data {
                            stream: current.stream,
                            data: &bytes[..n],
                        });
                    }
                    let skip = if n == data_left {
                        current.pad.min(bytes.len() - n)
                    } else {
                        0
                    };
                    current.left -= n + skip;
                    if n == data_left {
                        current.pad -= skip;
                    }
                    bytes = &bytes[n + skip..];
                }
            } else if gathered(current.kind) {
                let n = current.left.min(bytes.len());
                self.payload.extend_from_slice(&bytes[..n]);
                current.left -= n;
                bytes = &bytes[n..];
            } else {
                let n = current.left.min(bytes.len());
                current.left -= n;
                bytes = &bytes[n..];
            }
            if self.current.as_ref().is_some_and(|c| c.left == 0) {
                self.end_frame(each);
            }
        }
    }

    /// A frame header was read.
    fn start_frame(&mut self, each: &mut dyn FnMut(Event<'_>)) {
        let Head {
            len,
            kind,
            flags,
            stream,
        } = Head::parse(&self.head);
        if self.block_of.is_some() && kind != CONTINUATION {
            self.failed = Some("a header block interrupted by another frame");
            return;
        }
        if gathered(kind) && len > MAX_BLOCK {
            self.failed = Some("a header block or control frame too large to read");
            return;
        }
        self.payload.clear();
        self.current = Some(Current {
            kind,
            flags,
            stream,
            left: len,
            pad_byte: kind == DATA && flags & PADDED != 0,
            pad: 0,
        });
        if len == 0 {
            self.end_frame(each);
        }
    }

    /// A frame's payload was read to its end.
    fn end_frame(&mut self, each: &mut dyn FnMut(Event<'_>)) {
        let Some(frame) = self.current.take() else {
            return;
        };
        let payload = std::mem::take(&mut self.payload);
        match frame.kind {
            DATA => {
                if frame.pad_byte {
                    self.failed = Some("a padded DATA frame without its pad length");
                } else if frame.flags & END_STREAM != 0 {
                    each(Event::DataEnd {
                        stream: frame.stream,
                    });
                }
            }
            HEADERS | PUSH_PROMISE => {
                let promise = frame.kind == PUSH_PROMISE;
                let Some(fragment) = header_fragment(frame.kind, frame.flags, &payload) else {
                    self.failed = Some("a header frame shorter than its padding");
                    return;
                };
                self.block.clear();
                self.block.extend_from_slice(fragment);
                self.block_of = Some((frame.stream, frame.flags & END_STREAM != 0, promise));
                if frame.flags & END_HEADERS != 0 {
                    self.end_block(each);
                }
            }
            CONTINUATION => {
                if self.block_of.is_none() {
                    self.failed = Some("CONTINUATION without a header block");
                    return;
                }
                if self.block.len() + payload.len() > MAX_BLOCK {
                    self.failed = Some("a header block too large to read");
                    return;
                }
                self.block.extend_from_slice(&payload);
                if frame.flags & END_HEADERS != 0 {
                    self.end_block(each);
                }
            }
            RST_STREAM => match payload.get(..4) {
                Some(code) => each(Event::Reset {
                    stream: frame.stream,
                    code: u32::from_be_bytes([code[0], code[1], code[2], code[3]]),
                }),
                None => self.failed = Some("RST_STREAM shorter than 4 bytes"),
            },
            GOAWAY => match payload.get(..8) {
                Some(p) => each(Event::GoAway {
                    last_stream: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                    code: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                }),
                None => self.failed = Some("GOAWAY shorter than 8 bytes"),
            },
            _ => {}
        }
        // Keep the allocation for the next frame unless it grew large.
        if payload.capacity() <= 64 << 10 {
            self.payload = payload;
            self.payload.clear();
        }
    }

    fn end_block(&mut self, each: &mut dyn FnMut(Event<'_>)) {
        if let Some((stream, end_stream, promise)) = self.block_of.take() {
            if promise {
                each(Event::Promise { block: &self.block });
            } else {
                each(Event::Headers {
                    stream,
                    end_stream,
                    block: &self.block,
                });
            }
        }
        if self.block.capacity() > 64 << 10 {
            self.block = Vec::new();
        }
    }
}

/// Frames whose payload is gathered whole before it is read.
fn gathered(kind: u8) -> bool {
    matches!(
        kind,
        HEADERS | CONTINUATION | PUSH_PROMISE | RST_STREAM | GOAWAY
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::PRIORITY;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Events as owned values, from `bytes` fed in pieces of `step` bytes.
    fn events(client: bool, bytes: &[u8], step: usize) -> (Vec<String>, Option<&'static str>) {
        let mut reader = FrameReader::new(client);
        let mut out = Vec::new();
        let mut data: Vec<(u32, Vec<u8>)> = Vec::new();
        for piece in bytes.chunks(step) {
            reader.feed(piece, &mut |event| match event {
                Event::Data { stream, data: d } => match data.last_mut() {
                    Some((s, buf)) if *s == stream => buf.extend_from_slice(d),
                    _ => data.push((stream, d.to_vec())),
                },
                other => {
                    for (stream, d) in data.drain(..) {
                        out.push(format!("data {stream} {d:?}"));
                    }
                    out.push(format!("{other:?}"));
                }
            });
        }
        for (stream, d) in data.drain(..) {
            out.push(format!("data {stream} {d:?}"));
        }
        (out, reader.failed())
    }

    #[test]
    fn frames_split_anywhere_read_the_same() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS, skipped
        bytes.extend(frame(HEADERS, END_HEADERS, 1, b"abc"));
        bytes.extend(frame(DATA, 0, 1, b"hello"));
        // Padded DATA: pad length 2, "xy", two bytes of padding.
        bytes.extend(frame(DATA, PADDED | END_STREAM, 1, &[2, b'x', b'y', 0, 0]));
        // HEADERS with padding and priority, then a CONTINUATION.
        bytes.extend(frame(
            HEADERS,
            PADDED | PRIORITY | END_STREAM,
            3,
            &[1, 0, 0, 0, 0, 16, b'd', b'e', 0],
        ));
        bytes.extend(frame(0x9, END_HEADERS, 3, b"f"));
        bytes.extend(frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        bytes.extend(frame(0x6, 0, 0, &[0; 8])); // PING, skipped
        bytes.extend(frame(DATA, END_STREAM, 5, b""));
        let mut goaway = 7u32.to_be_bytes().to_vec();
        goaway.extend(2u32.to_be_bytes());
        goaway.extend(b"debug");
        bytes.extend(frame(GOAWAY, 0, 0, &goaway));
        let whole = events(true, &bytes, bytes.len());
        assert_eq!(whole.1, None);
        assert_eq!(
            whole.0,
            vec![
                "Headers { stream: 1, end_stream: false, block: [97, 98, 99] }".to_string(),
                "data 1 [104, 101, 108, 108, 111, 120, 121]".into(),
                "DataEnd { stream: 1 }".into(),
                "Headers { stream: 3, end_stream: true, block: [100, 101, 102] }".into(),
                "Reset { stream: 3, code: 8 }".into(),
                "DataEnd { stream: 5 }".into(),
                "GoAway { last_stream: 7, code: 2 }".into(),
            ]
        );
        for step in [1, 2, 3, 7, 10] {
            assert_eq!(events(true, &bytes, step), whole, "in pieces of {step}");
        }
    }

    #[test]
    fn what_is_not_http2_stops_the_reader() {
        assert_eq!(
            events(true, b"GET / HTTP/1.1\r\n", 4).1,
            Some("not an HTTP/2 connection preface")
        );
        let mut bytes = frame(HEADERS, 0, 1, b"a");
        bytes.extend(frame(DATA, 0, 1, b"b"));
        assert_eq!(
            events(false, &bytes, 5).1,
            Some("a header block interrupted by another frame")
        );
        assert_eq!(
            events(false, &frame(DATA, PADDED, 1, &[9, 1]), 1).1,
            Some("DATA padding longer than its frame")
        );
    }
}
