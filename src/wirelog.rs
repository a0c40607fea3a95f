//! The wire log as JSON lines: [`JsonLines`] is a [`WireSink`] that writes one JSON object per
//! unary call attempt and per stream event, with every message decoded field by field from the
//! exact bytes that crossed the wire (sent bytes as encoded, received bytes as the gRPC decoder
//! got them, before prost decoded them).
//!
//! # Lines
//!
//! Every line has `ts` (RFC 3339 UTC with milliseconds, when the line was written) and `kind`:
//!
//! - `call`: one unary call attempt (a retried call gives one line per attempt):
//!   `call` (process-wide id shared by the attempts), `attempt` (from 1), `endpoint`,
//!   `authority`, `method`, `metadata` (what was sent and changes behaviour: `grpc-timeout`
//!   exactly as sent, `hasleader`, `token` always `"<redacted>"`), `request`,
//!   `request_bytes`, `response` (`null` on failure), `response_bytes`, `status` (`"OK"` or
//!   `{"code","message"}` plus `"cause"` when the transport failed), `retry` (`null`, or
//!   `{"reason"}` when this attempt failed and the request is sent again) and `latency_ms`.
//! - `open`: a stream is opened: `stream` (process-wide id), `endpoint`, `authority`, `method`,
//!   `metadata`.
//! - `send` / `recv`: one message on a stream: `stream`, `seq` (from 1 per stream and
//!   direction), `method`, `message`, `bytes`.
//! - `close`: a stream ended: `stream`, `method`, `how` (`trailers`: the server ended it with a
//!   grpc-status; `cancelled`: we dropped it, which resets it with `CANCEL`; `reset`: the server
//!   reset it; `connection_lost`: the transport failed), `status`, `sent`, `received`.
//!
//! `*_bytes` and `bytes` are the protobuf payload lengths (the gRPC message without its 5-byte
//! prefix). Methods that carry a password or a token (`Auth/Authenticate`) show their
//! messages as `"<redacted>"`, sizes kept. A contended recipe lock, from a real run against
//! etcd 3.5.1 (trimmed: headers cut to `…`, lines wrapped):
//!
//! ```text
//! EXCERPT
//! ```
//!
//! # Messages
//!
//! Decoding is driven by the descriptors in [`FILE_DESCRIPTOR_SET`](crate::proto::FILE_DESCRIPTOR_SET)
//! (parsed with prost-reflect), not by the generated Rust types, so the log shows what went on
//! the wire, including fields this crate does not know about (as `"#<number>": <raw value>`).
//! Field names are the ones in the `.proto` files; fields absent on the wire (proto3 defaults)
//! are absent from the JSON; known fields come in field-number order, unknown ones after them.
//!
//! | protobuf | JSON |
//! |---|---|
//! | 32-bit integers, `float`, `double` | numbers (`"NaN"`, `"Infinity"`, `"-Infinity"` as strings) |
//! | 64-bit integers | numbers up to 2^53 - 1 in magnitude, decimal strings beyond |
//! | `bool` | `true` / `false` |
//! | enums | the value name, or the number when the name is unknown |
//! | `string`, `bytes` | a string when the bytes are valid UTF-8, else `{"base64":"..."}` |
//! | messages | objects (oneof members under their own field name) |
//! | `repeated` | arrays (packed or not) |
//! | unknown fields | `"#N"`: unsigned integer, text or base64, `{"group":{..}}`; an array if repeated |
//! | a message that does not parse | `{"undecodable":"<base64>"}` |
//!
//! Nothing here runs unless a sink is attached with
//! [`ClientBuilder::wire_log`](crate::client::ClientBuilder::wire_log).

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::wire::{Failure, Metadata, WireEvent, WireSink};

mod decode;

pub use decode::decode_message;
use decode::{json_string, pool, rfc3339, uint, write_message};

/// A [`WireSink`] writing one JSON line per call attempt and per stream event to any writer
/// (a file, stderr, a buffer); the line format is in the [module docs](self).
///
/// Each line is formatted first, then written with the writer locked once and flushed, so lines
/// from concurrent calls and streams never interleave. Write errors are counted, never raised:
/// see [`JsonLines::write_errors`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use etcd_lock::{Client, ClientOptions, wirelog::JsonLines};
///
/// let log = Arc::new(JsonLines::to_file("etcd-wire.jsonl")?);
/// let client = Client::builder(["127.0.0.1:2379"], ClientOptions::new())?
///     .wire_log(log)
///     .connect()
///     .await?;
/// client.put("greeting", "hello").await?;
/// # Ok(()) }
/// ```
pub struct JsonLines {
    out: Mutex<Box<dyn Write + Send>>,
    write_errors: AtomicU64,
}

impl fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLines")
            .field("write_errors", &self.write_errors())
            .finish_non_exhaustive()
    }
}

impl JsonLines {
    /// Writes lines to `writer`.
    pub fn new<W: Write + Send + 'static>(writer: W) -> Self {
        JsonLines {
            out: Mutex::new(Box::new(writer)),
            write_errors: AtomicU64::new(0),
        }
    }

    /// Writes lines to the process's standard error.
    pub fn stderr() -> Self {
        Self::new(io::stderr())
    }

    /// Writes lines to the file at `path`, created or truncated.
    pub fn to_file(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::new(File::create(path)?))
    }

    /// How many lines could not be written (or flushed) so far.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }
}

impl WireSink for JsonLines {
    fn record(&self, event: &WireEvent<'_>) {
        let mut line = render_event(event, SystemTime::now());
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Which message of a method: its request (`true`) or response type.
fn write_body(method: &str, request: bool, bytes: &[u8], out: &mut String) {
    let descriptor = pool()
        .and_then(|p| p.method(method))
        .map(|(input, output)| if request { input } else { output });
    write_message(descriptor, bytes, out);
}

/// `host:port` of an endpoint URL, as sent in HTTP/2's `:authority`.
fn authority(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

fn write_endpoint(endpoint: &str, s: &mut String) {
    s.push_str(",\"endpoint\":");
    json_string(endpoint, s);
    s.push_str(",\"authority\":");
    json_string(authority(endpoint), s);
}

fn write_metadata(metadata: &Metadata, s: &mut String) {
    s.push_str(",\"metadata\":{");
    for (i, (key, value)) in metadata.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(key, s);
        s.push(':');
        json_string(value, s);
    }
    s.push('}');
}

fn write_status(status: Option<&Failure>, s: &mut String) {
    s.push_str(",\"status\":");
    match status {
        None => s.push_str("\"OK\""),
        Some(failure) => {
            s.push_str("{\"code\":");
            json_string(&format!("{:?}", failure.code), s);
            s.push_str(",\"message\":");
            json_string(&failure.message, s);
            if let Some(cause) = &failure.cause {
                s.push_str(",\"cause\":");
                json_string(cause, s);
            }
            s.push('}');
        }
    }
}

/// One event as a JSON object (no trailing newline); `now` is the `ts`.
fn render_event(event: &WireEvent<'_>, now: SystemTime) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("{\"ts\":\"");
    rfc3339(now, &mut s);
    s.push('"');
    match event {
        WireEvent::Call(call) => {
            let _ = write!(
                s,
                ",\"kind\":\"call\",\"call\":{},\"attempt\":{}",
                call.call, call.attempt
            );
            write_endpoint(call.endpoint, &mut s);
            s.push_str(",\"method\":");
            json_string(call.method, &mut s);
            write_metadata(call.metadata, &mut s);
            s.push_str(",\"request\":");
            if call.redacted {
                s.push_str("\"<redacted>\"");
            } else {
                write_body(call.method, true, call.request, &mut s);
            }
            let _ = write!(s, ",\"request_bytes\":{}", call.request_bytes);
            s.push_str(",\"response\":");
            match call.response {
                None => s.push_str("null"),
                Some(_) if call.redacted => s.push_str("\"<redacted>\""),
                Some(bytes) => write_body(call.method, false, bytes, &mut s),
            }
            let _ = write!(s, ",\"response_bytes\":{}", call.response_bytes);
            write_status(call.status, &mut s);
            s.push_str(",\"retry\":");
            match call.retry {
                None => s.push_str("null"),
                Some(reason) => {
                    s.push_str("{\"reason\":");
                    json_string(reason, &mut s);
                    s.push('}');
                }
            }
            let _ = write!(
                s,
                ",\"latency_ms\":{:.3}",
                call.latency.as_secs_f64() * 1000.0
            );
        }
        WireEvent::Open(open) => {
            let _ = write!(s, ",\"kind\":\"open\",\"stream\":{}", open.stream);
            write_endpoint(open.endpoint, &mut s);
            s.push_str(",\"method\":");
            json_string(open.method, &mut s);
            write_metadata(open.metadata, &mut s);
        }
        WireEvent::Send(message) | WireEvent::Recv(message) => {
            let (kind, request) = match event {
                WireEvent::Send(_) => ("send", true),
                _ => ("recv", false),
            };
            let _ = write!(
                s,
                ",\"kind\":\"{kind}\",\"stream\":{},\"seq\":",
                message.stream
            );
            uint(message.seq, &mut s);
            s.push_str(",\"method\":");
            json_string(message.method, &mut s);
            s.push_str(",\"message\":");
            write_body(message.method, request, message.message, &mut s);
            let _ = write!(s, ",\"bytes\":{}", message.message.len());
        }
        WireEvent::Close(close) => {
            let _ = write!(s, ",\"kind\":\"close\",\"stream\":{}", close.stream);
            s.push_str(",\"method\":");
            json_string(close.method, &mut s);
            s.push_str(",\"how\":");
            json_string(close.how.as_str(), &mut s);
            write_status(close.status, &mut s);
            let _ = write!(
                s,
                ",\"sent\":{},\"received\":{}",
                close.sent, close.received
            );
        }
    }
    s.push('}');
    s
}
