//! HTTP/2's wire format (RFC 9113) and header compression (RFC 7541), shared by the client's
//! channel (`client::h2channel`, which speaks it) and the tap (which reads it as it relays).
//!
//! - this file: the connection preface, frame types, flags, settings and error codes, and the
//!   9-byte frame header;
//! - `hpack.rs`: the header-block decoder (and the static table both directions use);
//! - `encoder.rs`: the header-block encoder the client sends requests with;
//! - `error.rs`: how a stream of the client failed, as a type;
//! - `huffman.rs`: the Huffman code string literals may be sent in.

pub(crate) mod encoder;
mod error;
pub(crate) mod hpack;
pub(crate) mod huffman;

use std::fmt;

pub(crate) use error::Http2Error;

/// What a client sends first on a connection, before any frame.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY_FRAME: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;

/// Frame flags.
pub(crate) const END_STREAM: u8 = 0x1;
/// SETTINGS and PING: this frame acknowledges the peer's.
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY: u8 = 0x20;

/// Settings identifiers.
pub(crate) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(crate) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(crate) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(crate) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// The flow-control window every stream and the connection start with, and the frame size every
/// peer accepts, until SETTINGS say otherwise.
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;
pub(crate) const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest flow-control window (2^31 - 1).
pub(crate) const MAX_WINDOW: u32 = 0x7fff_ffff;

/// An HTTP/2 error code (RST_STREAM, GOAWAY), printed by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Reason(pub(crate) u32);

impl Reason {
    pub(crate) const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub(crate) const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub(crate) const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub(crate) const REFUSED_STREAM: Reason = Reason(0x7);
    pub(crate) const CANCEL: Reason = Reason(0x8);
    pub(crate) const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub(crate) const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub(crate) const INADEQUATE_SECURITY: Reason = Reason(0xc);

    /// The code's name in RFC 9113, section 7, if it has one.
    pub(crate) fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        usize::try_from(self.0)
            .ok()
            .and_then(|i| NAMES.get(i).copied())
    }
}

impl From<u32> for Reason {
    fn from(code: u32) -> Self {
        Reason(code)
    }
}

impl From<Reason> for u32 {
    fn from(reason: Reason) -> Self {
        reason.0
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Reason({:#x})", self.0),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// Payload length.
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    /// Stream id, the reserved bit cleared.
    pub(crate) stream: u32,
}

impl Head {
    /// Reads a frame header.
    pub(crate) fn parse(h: &[u8; 9]) -> Head {
        Head {
            len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW,
        }
    }

    /// Appends a frame header for a payload of `len` bytes (below 2^24) to `out`.
    pub(crate) fn write(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
        let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
    }
}

/// Appends a frame with a 4-byte payload (RST_STREAM's or WINDOW_UPDATE's).
pub(crate) fn write_u32_frame(out: &mut Vec<u8>, kind: u8, stream: u32, value: u32) {
    Head::write(out, 4, kind, 0, stream);
    out.extend_from_slice(&value.to_be_bytes());
}

/// The header block fragment in a HEADERS or PUSH_PROMISE frame's payload: without the pad
/// length, the priority fields (HEADERS with PRIORITY), the promised stream id (PUSH_PROMISE)
/// and the padding. `None` when the payload is shorter than those.
pub(crate) fn header_fragment(kind: u8, flags: u8, payload: &[u8]) -> Option<&[u8]> {
    let mut skip = 0;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*payload.first()?);
        skip += 1;
    }
    if kind == PUSH_PROMISE {
        skip += 4;
    } else if flags & PRIORITY != 0 {
        skip += 5;
    }
    payload.get(skip..payload.len().checked_sub(pad)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_round_trip() {
        let mut out = Vec::new();
        Head::write(&mut out, 0x01_0203, HEADERS, END_HEADERS | END_STREAM, 7);
        assert_eq!(out, [1, 2, 3, 1, 5, 0, 0, 0, 7]);
        let mut h = [0u8; 9];
        h.copy_from_slice(&out);
        // The reserved bit is not part of the id.
        h[5] |= 0x80;
        let head = Head::parse(&h);
        assert_eq!(
            head,
            Head {
                len: 0x01_0203,
                kind: HEADERS,
                flags: END_HEADERS | END_STREAM,
                stream: 7
            }
        );
    }

    #[test]
    fn header_fragments_leave_out_padding_and_priority() {
        let plain = [1, 2, 3];
        assert_eq!(header_fragment(HEADERS, 0, &plain), Some(&plain[..]));
        let padded = [2, 9, 9, 0, 0];
        assert_eq!(header_fragment(HEADERS, PADDED, &padded), Some(&[9, 9][..]));
        let prioritised = [0, 0, 0, 1, 16, 7];
        assert_eq!(
            header_fragment(HEADERS, PRIORITY, &prioritised),
            Some(&[7][..])
        );
        let promise = [0, 0, 0, 2, 5];
        assert_eq!(header_fragment(PUSH_PROMISE, 0, &promise), Some(&[5][..]));
        assert_eq!(header_fragment(HEADERS, PADDED, &[4, 1]), None);
        assert_eq!(header_fragment(HEADERS, PADDED, &[]), None);
    }

    #[test]
    fn reasons_print_by_name() {
        assert_eq!(format!("{:?}", Reason::CANCEL), "CANCEL");
        assert_eq!(format!("{:?}", Reason::from(13)), "HTTP_1_1_REQUIRED");
        assert_eq!(format!("{:?}", Reason::from(0x42)), "Reason(0x42)");
        assert_eq!(u32::from(Reason::REFUSED_STREAM), 7);
    }
}
