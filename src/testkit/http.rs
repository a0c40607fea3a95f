//! A minimal HTTP/1.1 GET over `std::net`, enough for etcd's `/health` and `/metrics`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Connect timeout for loopback requests.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest response body read (etcd's `/metrics` is ~150 KiB).
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// A parsed response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// `GET path` on `127.0.0.1:port`; `timeout` bounds each read and write.
pub(crate) fn get(port: u16, path: &str, timeout: Duration) -> io::Result<Response> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    parse(&raw)
}

/// True when `GET /health` answers `{"health":"true"...}`.
pub(crate) fn is_healthy(port: u16, timeout: Duration) -> bool {
    match get(port, "/health", timeout) {
        Ok(r) => r.status == 200 && r.body.contains("\"health\":\"true\""),
        Err(_) => false,
    }
}

/// `Some(true)` when `/metrics` has `etcd_server_is_leader 1`, `None` when it cannot be read.
pub(crate) fn is_leader(port: u16, timeout: Duration) -> Option<bool> {
    let r = get(port, "/metrics", timeout).ok()?;
    if r.status != 200 {
        return None;
    }
    r.body.lines().find_map(|line| {
        let value = line.strip_prefix("etcd_server_is_leader ")?;
        Some(
            value
                .trim()
                .parse::<f64>()
                .map(|v| v == 1.0)
                .unwrap_or(false),
        )
    })
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn parse(raw: &[u8]) -> io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad HTTP status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a `Transfer-Encoding: chunked` body (etcd 3.4 and 3.5 chunk `/metrics`).
fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size"))?;
        let size_line = String::from_utf8_lossy(&data[..eol]);
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size in response"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"health\":\"true\"}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{\"health\":\"true\"}"));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    6\r\netcd_s\r\n11\r\nerver_is_leader 1\r\n0\r\n\r\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.body, "etcd_server_is_leader 1");
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
