//! HPACK header-block encoding (RFC 7541) for the requests the client sends.
//!
//! A field found whole in the static or dynamic table goes out as one index. Any other field
//! goes out as a literal, its name indexed when a table has it. Fields that repeat from call to
//! call (`:path`, `:authority`, `content-type`, `te`, a token) are added to the dynamic table,
//! so from the second call on a request's header block is a few bytes. Fields that change on
//! every call (`grpc-timeout`) and long values are sent without indexing. Strings go out raw,
//! not Huffman-coded.

use super::hpack::{Table, ENTRY_OVERHEAD, STATIC};

/// The dynamic table size the encoder uses when the peer allows that much (the default of
/// SETTINGS_HEADER_TABLE_SIZE).
const TABLE_SIZE: usize = 4096;
/// Values longer than this are never added to the table.
const MAX_INDEXED_VALUE: usize = 512;

/// How a field may be stored by the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Indexing {
    /// Added to the dynamic table (literal with incremental indexing).
    Index,
    /// Sent as a literal each time (literal without indexing).
    Never,
}

/// One direction's encoding context: the dynamic table the peer's decoder mirrors.
#[derive(Debug)]
pub(crate) struct Encoder {
    table: Table,
    /// A size change to announce at the start of the next block.
    announce: Option<usize>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            table: Table::new(TABLE_SIZE),
            announce: None,
        }
    }
}

impl Encoder {
    /// The peer's SETTINGS_HEADER_TABLE_SIZE: the table shrinks to fit it (never grows past
    /// 4 KiB), and the next block announces the new size.
    pub(crate) fn set_peer_limit(&mut self, limit: usize) {
        let max = limit.min(TABLE_SIZE);
        if max != self.table.max {
            self.table.set_max(max);
            self.announce = Some(max);
        }
    }

    /// Starts a header block in `out`: a pending table size update comes first.
    pub(crate) fn begin(&mut self, out: &mut Vec<u8>) {
        if let Some(size) = self.announce.take() {
            integer(out, 0x20, 5, size);
        }
    }

    /// Appends one field to the block in `out`.
    pub(crate) fn field(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8], how: Indexing) {
        let (whole, name_index) = self.find(name, value);
        if let Some(index) = whole {
            integer(out, 0x80, 7, index);
            return;
        }
        let index = how == Indexing::Index
            && value.len() <= MAX_INDEXED_VALUE
            && name.len() + value.len() + ENTRY_OVERHEAD <= self.table.max;
        if index {
            integer(out, 0x40, 6, name_index);
        } else {
            integer(out, 0x00, 4, name_index);
        }
        if name_index == 0 {
            string(out, name);
        }
        string(out, value);
        if index {
            self.table.insert(name.to_vec(), value.to_vec());
        }
    }

    /// The index of the field `name: value` if a table holds it whole, and the index of a
    /// table entry with that name (0 if none).
    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, usize) {
        let mut name_index = 0;
        for (i, (n, v)) in STATIC.iter().enumerate() {
            if n.as_bytes() == name {
                if v.as_bytes() == value {
                    return (Some(i + 1), i + 1);
                }
                if name_index == 0 {
                    name_index = i + 1;
                }
            }
        }
        for (i, (n, v)) in self.table.entries.iter().enumerate() {
            if n == name {
                if v == value {
                    return (Some(i + 62), i + 62);
                }
                if name_index == 0 {
                    name_index = i + 62;
                }
            }
        }
        (None, name_index)
    }
}

/// An integer with an `n`-bit prefix after the flag bits `flags` (RFC 7541, 5.1).
fn integer(out: &mut Vec<u8>, flags: u8, n: u32, value: usize) {
    let limit = (1usize << n) - 1;
    if value < limit {
        // Below the prefix's limit, so it fits in the byte.
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | limit as u8);
    let mut rest = value - limit;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A raw (not Huffman-coded) string literal.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::super::hpack::Decoder;
    use super::super::huffman::hex;
    use super::*;

    fn decoded(decoder: &mut Decoder, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut fields = Vec::new();
        let result = decoder.decode(block, |n, v| fields.push((n.to_vec(), v.to_vec())));
        assert_eq!(result, Ok(()));
        fields
    }

    #[test]
    fn integers_follow_the_rfc_examples() {
        // RFC 7541, C.1: 10 and 1337 with a 5-bit prefix, 42 with an 8-bit one.
        let mut out = Vec::new();
        integer(&mut out, 0, 5, 10);
        integer(&mut out, 0, 5, 1337);
        integer(&mut out, 0, 8, 42);
        assert_eq!(out, hex("0a 1f9a0a 2a"));
    }

    #[test]
    fn repeated_fields_become_one_byte_each() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::with_limit(4096);
        let request = [
            (&b":method"[..], &b"POST"[..], Indexing::Index),
            (b":scheme", b"http", Indexing::Index),
            (b":path", b"/etcdserverpb.KV/Put", Indexing::Index),
            (b":authority", b"127.0.0.1:2379", Indexing::Index),
            (b"content-type", b"application/grpc", Indexing::Index),
            (b"te", b"trailers", Indexing::Index),
            (b"grpc-timeout", b"4999m", Indexing::Never),
        ];
        let mut first = Vec::new();
        encoder.begin(&mut first);
        for (n, v, how) in request {
            encoder.field(&mut first, n, v, how);
        }
        let mut second = Vec::new();
        encoder.begin(&mut second);
        for (n, v, how) in request {
            encoder.field(&mut second, n, v, how);
        }
        let expected: Vec<_> = request
            .iter()
            .map(|(n, v, _)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(decoded(&mut decoder, &first), expected);
        assert_eq!(decoded(&mut decoder, &second), expected);
        // Six indexed fields, then grpc-timeout as a literal (in no table): its flag byte,
        // then its name and value with their lengths.
        assert_eq!(second.len(), 6 + 1 + 13 + 6, "{second:?}");
        assert_eq!(&second[..2], &[0x83, 0x86]);
    }

    #[test]
    fn a_smaller_peer_table_is_announced_and_respected() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::with_limit(4096);
        let mut block = Vec::new();
        encoder.begin(&mut block);
        encoder.field(&mut block, b"token", &[b'x'; 100], Indexing::Index);
        decoded(&mut decoder, &block);
        assert_eq!(encoder.table.entries.len(), 1);

        // The peer allows 64 bytes: the entry (137 bytes) is evicted and the size announced.
        encoder.set_peer_limit(64);
        assert!(encoder.table.entries.is_empty());
        let mut block = Vec::new();
        encoder.begin(&mut block);
        encoder.field(&mut block, b"token", &[b'x'; 100], Indexing::Index);
        encoder.field(&mut block, b"a", b"b", Indexing::Index);
        encoder.field(&mut block, b"a", b"b", Indexing::Index);
        assert_eq!(block[..2], [0x3f, 0x21]);
        let fields = decoded(&mut decoder, &block);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[2], (b"a".to_vec(), b"b".to_vec()));
        // Too large for the table, the token went out as a literal and was not stored.
        assert_eq!(encoder.table.entries.len(), 1);
        assert_eq!(*block.last().unwrap_or(&0), 0xbe);
    }
}
