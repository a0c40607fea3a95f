//! HPACK header-block decoding (RFC 7541): the response headers the client's channel receives,
//! and both directions of the connections the tap relays.
//!
//! A [`Decoder`] follows the sender's dynamic table by applying the same blocks in the same
//! order. The tap passes every byte through unchanged, so both ends keep their own compression
//! contexts and the tap keeps one decoder per direction.

use std::collections::VecDeque;

use super::huffman;

/// The dynamic table's size before any size update (SETTINGS_HEADER_TABLE_SIZE's default).
const DEFAULT_TABLE_SIZE: usize = 4096;
/// The largest table a size update may ask for by default: the tap holds at most this much per
/// direction even if a peer advertises more.
const MAX_TABLE_SIZE: usize = 1 << 20;
/// What an entry costs in the table beyond its name and value (RFC 7541, 4.1).
pub(super) const ENTRY_OVERHEAD: usize = 32;

/// The static table (RFC 7541, Appendix A); index 1 is the first entry.
#[rustfmt::skip]
pub(super) const STATIC: [(&str, &str); 61] = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
];

/// Why a header block could not be decoded. After one, the decoder's table may no longer match
/// the sender's, so the caller stops decoding that direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HpackError {
    /// The block ended inside a representation.
    Truncated,
    /// An integer too large for this decoder.
    Overflow,
    /// An index that is in neither table.
    BadIndex,
    /// A Huffman-coded string that is not valid.
    BadHuffman,
    /// A size update above the decoder's limit, or one after the first header field.
    BadSizeUpdate,
}

/// A dynamic table (RFC 7541, 2.3.2), as the encoder keeps it and the decoder mirrors it.
#[derive(Debug)]
pub(super) struct Table {
    /// Newest entry first: dynamic index 62 is `entries[0]`.
    pub(super) entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Sum of the entries' sizes.
    pub(super) size: usize,
    /// The table's current maximum size.
    pub(super) max: usize,
}

impl Table {
    pub(super) fn new(max: usize) -> Self {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    /// Adds an entry, evicting the oldest ones to make room.
    pub(super) fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max {
            // An entry larger than the table empties it and is not added (RFC 7541, 4.4).
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.size += size;
        self.entries.push_front((name, value));
        self.evict();
    }

    /// A new maximum size; entries that no longer fit are evicted.
    pub(super) fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max {
            match self.entries.pop_back() {
                Some((name, value)) => self.size -= name.len() + value.len() + ENTRY_OVERHEAD,
                None => self.size = 0,
            }
        }
    }
}

/// One direction's decoding context: its dynamic table.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: Table,
    /// The largest size a size update may set.
    limit: usize,
}

impl Default for Decoder {
    /// A decoder that accepts tables up to 1 MiB.
    fn default() -> Self {
        Decoder::with_limit(MAX_TABLE_SIZE)
    }
}

/// A cursor over one header block.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    fn peek(&self) -> Result<u8, HpackError> {
        self.bytes.first().copied().ok_or(HpackError::Truncated)
    }

    /// An integer with an `n`-bit prefix (RFC 7541, 5.1); the prefix's flag bits are ignored.
    fn integer(&mut self, n: u32) -> Result<usize, HpackError> {
        let limit = (1usize << n) - 1;
        let first = usize::from(self.peek()?) & limit;
        self.bytes = &self.bytes[1..];
        if first < limit {
            return Ok(first);
        }
        let mut value = limit;
        let mut shift = 0u32;
        loop {
            let byte = self.peek()?;
            self.bytes = &self.bytes[1..];
            if shift > 28 {
                return Err(HpackError::Overflow);
            }
            value = value
                .checked_add(usize::from(byte & 0x7f) << shift)
                .ok_or(HpackError::Overflow)?;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A string literal (RFC 7541, 5.2), Huffman-coded or raw.
    fn string(&mut self) -> Result<Vec<u8>, HpackError> {
        let huffman = self.peek()? & 0x80 != 0;
        let len = self.integer(7)?;
        if len > self.bytes.len() {
            return Err(HpackError::Truncated);
        }
        let (raw, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        if !huffman {
            return Ok(raw.to_vec());
        }
        let mut out = Vec::with_capacity(len + len / 2);
        huffman::decode(raw, &mut out).map_err(|huffman::BadHuffman| HpackError::BadHuffman)?;
        Ok(out)
    }
}

impl Decoder {
    /// A decoder that refuses size updates above `limit` (the SETTINGS_HEADER_TABLE_SIZE the
    /// receiver advertised).
    pub(crate) fn with_limit(limit: usize) -> Self {
        Decoder {
            table: Table::new(DEFAULT_TABLE_SIZE.min(limit)),
            limit,
        }
    }

    /// Decodes one complete header block, calling `each` with every field in order and
    /// updating the dynamic table as the sender did.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        mut each: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut input = Input { bytes: block };
        let mut fields = 0usize;
        while let Ok(first) = input.peek() {
            if first & 0x80 != 0 {
                // Indexed field.
                let index = input.integer(7)?;
                let (name, value) = self.entry(index)?;
                each(name, value);
                fields += 1;
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing.
                let (name, value) = self.literal(&mut input, 6)?;
                each(&name, &value);
                self.table.insert(name, value);
                fields += 1;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update: only at the start of a block.
                let size = input.integer(5)?;
                if size > self.limit || fields > 0 {
                    return Err(HpackError::BadSizeUpdate);
                }
                self.table.set_max(size);
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                let (name, value) = self.literal(&mut input, 4)?;
                each(&name, &value);
                fields += 1;
            }
        }
        Ok(())
    }

    /// A literal field whose name is indexed (with an `n`-bit prefix) or given.
    fn literal(&self, input: &mut Input<'_>, n: u32) -> Result<(Vec<u8>, Vec<u8>), HpackError> {
        let index = input.integer(n)?;
        let name = if index == 0 {
            input.string()?
        } else {
            self.entry(index)?.0.to_vec()
        };
        Ok((name, input.string()?))
    }

    /// The entry at `index` in the static table, then the dynamic one.
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError::BadIndex),
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => self
                .table
                .entries
                .get(index - 62)
                .map(|(name, value)| (name.as_slice(), value.as_slice()))
                .ok_or(HpackError::BadIndex),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::huffman::hex;
    use super::*;

    fn fields(decoder: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let result = decoder.decode(&hex(block), |name, value| {
            out.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        });
        assert_eq!(result, Ok(()));
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn requests_with_huffman_share_one_table() {
        // RFC 7541, C.4: three requests on one connection.
        let mut decoder = Decoder::default();
        assert_eq!(
            fields(&mut decoder, "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(decoder.table.size, 57);
        assert_eq!(
            fields(&mut decoder, "8286 84be 5886 a8eb 1064 9cbf"),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        assert_eq!(decoder.table.size, 110);
        assert_eq!(
            fields(
                &mut decoder,
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"
            ),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(decoder.table.size, 164);
    }

    #[test]
    fn eviction_follows_the_sender() {
        // RFC 7541, C.5: responses with a 256-byte table, entries evicted as they go.
        let mut decoder = Decoder::default();
        assert_eq!(fields(&mut decoder, "3fe1 01"), Vec::new());
        assert_eq!(decoder.table.max, 256);
        let first = fields(
            &mut decoder,
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
        );
        assert_eq!(first[0], (":status".into(), "302".into()));
        assert_eq!(decoder.table.size, 222);
        assert_eq!(
            fields(&mut decoder, "4803 3330 37c1 c0bf"),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        // ":status: 302" was evicted to make room for ":status: 307".
        assert_eq!(decoder.table.size, 222);
        assert_eq!(decoder.table.entries.len(), 4);
    }

    #[test]
    fn bad_blocks_are_errors_not_panics() {
        let mut decoder = Decoder::default();
        let mut ignore = |_: &[u8], _: &[u8]| {};
        assert_eq!(
            decoder.decode(&[0x80], &mut ignore),
            Err(HpackError::BadIndex)
        );
        assert_eq!(
            decoder.decode(&[0xbe], &mut ignore),
            Err(HpackError::BadIndex)
        );
        assert_eq!(
            decoder.decode(&[0x41, 0x05, b'a'], &mut ignore),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            decoder.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut ignore),
            Err(HpackError::Overflow)
        );
        assert_eq!(
            decoder.decode(&[0x3f, 0xff, 0xff, 0x7f], &mut ignore),
            Err(HpackError::BadSizeUpdate)
        );
        assert_eq!(
            decoder.decode(&[0x82, 0x20], &mut ignore),
            Err(HpackError::BadSizeUpdate)
        );
        // A client that advertised the default table refuses a larger one.
        let mut client = Decoder::with_limit(4096);
        assert_eq!(
            client.decode(&[0x3f, 0xe2, 0x1f], &mut ignore),
            Err(HpackError::BadSizeUpdate)
        );
        assert_eq!(client.decode(&[0x3f, 0xe1, 0x1f], &mut ignore), Ok(()));
        assert_eq!(
            decoder.decode(&[0x40, 0x81, 0x00, 0x00], &mut ignore),
            Err(HpackError::BadHuffman)
        );
    }
}
