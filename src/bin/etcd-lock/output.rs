//! What etcd-lock prints on stdout: the held key (`etcdctl lock` prints it), the leader's key
//! and value (`etcdctl elect`), or one JSON line each with `-w json`. Writes never panic (a
//! closed pipe or terminal must not end etcd-lock while it holds a lock).

use std::io::Write;

use base64::Engine as _;

use crate::args::WriteOut;

/// Writes `text` and a newline to stdout, flushed; errors are ignored.
pub(crate) fn line(text: &str) {
    bytes_line(text.as_bytes());
}

/// Writes raw bytes (a key, a value: etcd keeps bytes) and a newline to stdout.
pub(crate) fn bytes_line(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// One JSON string field: `"name":"text"` for UTF-8, `"name_base64":"..."` otherwise.
fn field(name: &str, bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("\"{name}\":{}", quote(text)),
        Err(_) => format!(
            "\"{name}_base64\":\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The held lock: its key (simple), or `{"name","key","lease","revision"}`.
pub(crate) fn held(format: WriteOut, name: &[u8], key: &[u8], lease: i64, revision: i64) {
    match format {
        WriteOut::Simple => bytes_line(key),
        WriteOut::Json => line(&format!(
            "{{{},{},\"lease\":\"{lease:x}\",\"revision\":{revision}}}",
            field("name", name),
            field("key", key)
        )),
    }
}

/// A leader: key and value on two lines (simple, as `etcdctl elect`), or one JSON line.
pub(crate) fn leader(
    format: WriteOut,
    name: &[u8],
    key: &[u8],
    value: &[u8],
    lease: i64,
    revision: i64,
) {
    match format {
        WriteOut::Simple => {
            bytes_line(key);
            bytes_line(value);
        }
        WriteOut::Json => line(&format!(
            "{{{},{},{},\"lease\":\"{lease:x}\",\"revision\":{revision}}}",
            field("name", name),
            field("key", key),
            field("value", value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_escape_and_fall_back_to_base64() {
        assert_eq!(field("k", b"a\"b\n"), r#""k":"a\"b\n""#);
        assert_eq!(field("k", &[0xff]), r#""k_base64":"/w==""#);
    }
}
