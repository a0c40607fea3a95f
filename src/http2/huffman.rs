//! The Huffman code of HPACK (RFC 7541, Appendix B), decoding only.
//!
//! The code is canonical: within one code length, codes are consecutive in symbol order, and
//! each length's first code follows the last code of the length before. So the bit length of
//! each of the 257 symbols (256 bytes and EOS) defines the whole code, and decoding needs only,
//! per length, its first code and where its symbols start in the symbol list sorted by length.

/// Bit length of the code of each byte value, then of EOS (index 256).
#[rustfmt::skip]
const LENGTHS: [u8; 257] = [
    // 0-31: control bytes
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    // ' ' ! " # $ % & ' ( ) * + , - . /
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    // 0-9 : ; < = > ?
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    // @ A-O
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    // P-Z [ \ ] ^ _
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    // ` a-o
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    // p-z { | } ~ DEL
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    // 128-255
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    // EOS
    30,
];

/// The longest code, in bits.
const MAX_LEN: usize = 30;
/// The end-of-string symbol, which must never appear in a string.
const EOS: u16 = 256;

/// The canonical code's decoding tables, built once from [`LENGTHS`].
struct Code {
    /// Per length: its first code.
    first: [u32; MAX_LEN + 1],
    /// Per length: how many symbols have it.
    count: [u16; MAX_LEN + 1],
    /// Per length: index in `symbols` of its first symbol.
    start: [u16; MAX_LEN + 1],
    /// Symbols sorted by code length, then by value.
    symbols: [u16; 257],
}

impl Code {
    const fn build() -> Code {
        let mut count = [0u16; MAX_LEN + 1];
        let mut i = 0;
        while i < LENGTHS.len() {
            count[LENGTHS[i] as usize] += 1;
            i += 1;
        }
        let mut first = [0u32; MAX_LEN + 1];
        let mut start = [0u16; MAX_LEN + 1];
        let mut code = 0u32;
        let mut index = 0u16;
        let mut len = 1;
        while len <= MAX_LEN {
            first[len] = code;
            start[len] = index;
            code = (code + count[len] as u32) << 1;
            index += count[len];
            len += 1;
        }
        let mut symbols = [0u16; 257];
        let mut next = start;
        let mut symbol = 0;
        while symbol < LENGTHS.len() {
            let len = LENGTHS[symbol] as usize;
            symbols[next[len] as usize] = symbol as u16;
            next[len] += 1;
            symbol += 1;
        }
        Code {
            first,
            count,
            start,
            symbols,
        }
    }

    /// The symbol whose code is `code`, `len` bits long, if there is one.
    fn symbol(&self, code: u32, len: usize) -> Option<u16> {
        let offset = code.checked_sub(self.first[len])?;
        if offset < u32::from(self.count[len]) {
            Some(self.symbols[usize::from(self.start[len]) + offset as usize])
        } else {
            None
        }
    }
}

static CODE: Code = Code::build();

/// A Huffman-coded string that is not valid: EOS inside it, or padding that is longer than 7
/// bits or not a prefix of EOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadHuffman;

/// Decodes a Huffman-coded string literal, appending its bytes to `out`.
pub(crate) fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), BadHuffman> {
    let mut code = 0u32;
    let mut len = 0usize;
    for &byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if let Some(symbol) = CODE.symbol(code, len) {
                if symbol == EOS {
                    return Err(BadHuffman);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            } else if len == MAX_LEN {
                return Err(BadHuffman);
            }
        }
    }
    // What is left is padding: fewer than 8 bits, all ones (the start of EOS).
    if len > 7 || code != (1 << len) - 1 {
        return Err(BadHuffman);
    }
    Ok(())
}

/// Bytes from hex digits, spaces ignored (the RFC's examples are written that way).
#[cfg(test)]
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|d| (d as char).to_digit(16).unwrap_or(0) as u8)
        .collect();
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(text: &str) -> Result<Vec<u8>, BadHuffman> {
        let mut out = Vec::new();
        decode(&hex(text), &mut out).map(|()| out)
    }

    /// The code (value, length) of `symbol` as the canonical construction gives it.
    fn code_of(symbol: u16) -> (u32, usize) {
        let len = LENGTHS[symbol as usize] as usize;
        let at = CODE.symbols[usize::from(CODE.start[len])..]
            .iter()
            .position(|s| *s == symbol)
            .unwrap_or(usize::MAX);
        (CODE.first[len] + at as u32, len)
    }

    #[test]
    fn the_code_is_complete_and_matches_the_rfc_table() {
        // Kraft's sum of a complete prefix code is exactly 1.
        let kraft: u64 = LENGTHS
            .iter()
            .map(|&l| 1u64 << (MAX_LEN - l as usize))
            .sum();
        assert_eq!(kraft, 1 << MAX_LEN);
        // Codes from Appendix B, spread over every length.
        for (symbol, code, len) in [
            (0u16, 0x1ff8u32, 13usize),
            (1, 0x7fffd8, 23),
            (9, 0xffffea, 24),
            (10, 0x3ffffffc, 30),
            (22, 0x3ffffffe, 30),
            (b' ' as u16, 0x14, 6),
            (b'0' as u16, 0x0, 5),
            (b':' as u16, 0x5c, 7),
            (b'X' as u16, 0xfc, 8),
            (b'\\' as u16, 0x7fff0, 19),
            (b'a' as u16, 0x3, 5),
            (b'z' as u16, 0x7b, 7),
            (b'~' as u16, 0x1ffd, 13),
            (127, 0xffffffc, 28),
            (128, 0xfffe6, 20),
            (153, 0x1fffdc, 21),
            (192, 0x3ffffe0, 26),
            (199, 0x1ffffec, 25),
            (203, 0x7ffffde, 27),
            (249, 0xffffffe, 28),
            (255, 0x3ffffee, 26),
            (256, 0x3fffffff, 30),
        ] {
            assert_eq!(code_of(symbol), (code, len), "symbol {symbol}");
        }
    }

    #[test]
    fn rfc_examples_decode() {
        // RFC 7541, C.4 and C.6.
        for (coded, text) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
        ] {
            assert_eq!(decoded(coded), Ok(text.as_bytes().to_vec()), "{text}");
        }
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // '0' (00000) then three zero bits: padding must be ones.
        assert_eq!(decoded("00"), Err(BadHuffman));
        // '0' and three bits of padding; with another byte of ones the padding is 11 bits.
        assert_eq!(decoded("07"), Ok(b"0".to_vec()));
        assert_eq!(decoded("07ff"), Err(BadHuffman));
        assert_eq!(decoded("ffff ffff"), Err(BadHuffman));
        // Empty input is the empty string.
        assert_eq!(decoded(""), Ok(Vec::new()));
    }
}
