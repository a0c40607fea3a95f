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
//! Lines written by a tap (`etcd_lock::tap`, feature `tap`) also carry `conn` (connection id)
//! and `client` (the client's address) after `kind`; a reset stream's `close` line has
//! `reset_reason` (the HTTP/2 error code's name, e.g. `"CANCEL"`); and two more kinds
//! describe connections: `connect` (`upstream`, `client_tls`, `upstream_tls`: `null` for
//! plaintext, else `{"subject":..}`) and `disconnect` (`how`, `reason`, `cause`, `streams`).
//!
//! `*_bytes` and `bytes` are the protobuf payload lengths (the gRPC message without its 5-byte
//! prefix). Methods that carry a password or a token (`Auth/Authenticate`) show their
//! messages as `"<redacted>"`, sizes kept. `Maintenance/Snapshot` answers (the whole database,
//! auth bucket included) show each chunk's data only as `"blob":{"bytes":N,"sha256":"<hex>"}`.
//!
//! [`JsonLines::to_file`] creates the file `0600` and refuses an existing one (see
//! [`ExistingFile`] to append or overwrite); symlinks are never followed.
//!
//! A contended recipe lock, from a real run against etcd 3.5.1 before issue 15 (a lone join's
//! first Txn now has one `DESCEND` range, `limit:18`, instead of `ASCEND` `limit:64`; the waiter's side, trimmed:
//! endpoint/authority and header ids removed, the first Txn's failure branch elided as `…`):
//! the waiter's Txn puts its key behind the holder's; its watch on the lock prefix is created;
//! a re-check Txn still finds the predecessor; the DELETE of the holder's key wakes it; the
//! next Txn finds no predecessor, so it holds the lock; its own DELETE follows at unlock, then
//! the client is dropped and the stream closed:
//!
//! ```text
//! {"ts":"2026-11-28T08:45:53.224Z","kind":"call","call":4,"attempt":1,"method":"/etcdserverpb.KV/Txn","metadata":{"grpc-timeout":"9999977u"},"request":{"compare":[{"target":"CREATE","key":"t/wirelog-recipe/0/lock/3aaea22155111108","create_revision":0}],"success":[{"request_put":{"key":"t/wirelog-recipe/0/lock/3aaea22155111108","lease":"4228495364192276744"}},{"request_range":{"key":"t/wirelog-recipe/0/lock/","range_end":"t/wirelog-recipe/0/lock0","limit":64,"sort_order":"ASCEND","sort_target":"CREATE","keys_only":true}}],"failure":[…]},"request_bytes":280,"response":{"header":{…,"revision":3,"raft_term":2},"succeeded":true,"responses":[{"response_put":{"header":{"revision":3}}},{"response_range":{"header":{"revision":3},"kvs":[{"key":"t/wirelog-recipe/0/lock/3aaea22155111106","create_revision":2,"mod_revision":2,"version":1,"lease":"4228495364192276742"},{"key":"t/wirelog-recipe/0/lock/3aaea22155111108","create_revision":3,"mod_revision":3,"version":1,"lease":"4228495364192276744"}],"count":2}}]},"response_bytes":168,"status":"OK","retry":null,"latency_ms":1.835}
//! {"ts":"2026-11-28T08:45:53.225Z","kind":"open","stream":5,"method":"/etcdserverpb.Watch/Watch","metadata":{"hasleader":"true"}}
//! {"ts":"2026-11-28T08:45:53.225Z","kind":"send","stream":5,"seq":1,"method":"/etcdserverpb.Watch/Watch","message":{"create_request":{"key":"t/wirelog-recipe/0/lock/","range_end":"t/wirelog-recipe/0/lock0","filters":["NOPUT"]}},"bytes":57}
//! {"ts":"2026-11-28T08:45:53.226Z","kind":"recv","stream":5,"seq":1,"method":"/etcdserverpb.Watch/Watch","message":{"header":{…,"revision":3,"raft_term":2},"created":true},"bytes":29}
//! {"ts":"2026-11-28T08:45:54.837Z","kind":"recv","stream":5,"seq":2,"method":"/etcdserverpb.Watch/Watch","message":{"header":{…,"revision":4,"raft_term":2},"events":[{"type":"DELETE","kv":{"key":"t/wirelog-recipe/0/lock/3aaea22155111106","mod_revision":4}}]},"bytes":77}
//! {"ts":"2026-11-28T08:45:54.840Z","kind":"call","call":10,"attempt":1,"method":"/etcdserverpb.KV/Txn","metadata":{"grpc-timeout":"9999981u"},"request":{"compare":[{"target":"CREATE","key":"t/wirelog-recipe/0/lock/3aaea22155111108","create_revision":3}],"success":[{"request_range":{"key":"t/wirelog-recipe/0/lock/","range_end":"t/wirelog-recipe/0/lock0","limit":1,"sort_order":"DESCEND","sort_target":"CREATE","keys_only":true,"max_create_revision":2}}]},"request_bytes":114,"response":{"header":{…,"revision":4,"raft_term":2},"succeeded":true,"responses":[{"response_range":{"header":{"revision":4},"count":1}}]},"response_bytes":39,"status":"OK","retry":null,"latency_ms":2.720}
//! {"ts":"2026-11-28T08:45:54.857Z","kind":"close","stream":5,"method":"/etcdserverpb.Watch/Watch","how":"cancelled","status":"OK","sent":1,"received":3}
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

use crate::wire::{Failure, Metadata, Peer, TlsPeer, WireEvent, WireSink};

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
    /// Lines are kept in a buffer and written when it fills or on [`JsonLines::flush`],
    /// instead of one write per line.
    buffered: bool,
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
            buffered: false,
        }
    }

    /// Writes lines to `writer` through a 64 KiB buffer: one write per buffer-full instead of
    /// one per line, for busy logs (a tap in front of a loaded member). Lines are still written
    /// whole and in order; call [`JsonLines::flush`] to write the buffer now (e.g. on a
    /// timer, and before exiting). Write errors are counted when the buffer is written.
    pub fn buffered<W: Write + Send + 'static>(writer: W) -> Self {
        JsonLines {
            out: Mutex::new(Box::new(io::BufWriter::with_capacity(64 << 10, writer))),
            write_errors: AtomicU64::new(0),
            buffered: true,
        }
    }

    /// Writes buffered lines now (see [`JsonLines::buffered`]); a no-op for unbuffered sinks,
    /// which write each line as it comes.
    pub fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if out.flush().is_err() {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes lines to the process's standard error.
    pub fn stderr() -> Self {
        Self::new(io::stderr())
    }

    /// Writes lines to a new file at `path`, readable and writable by its owner only
    /// (`0600`); fails if `path` exists (a file, a symlink, anything). The same as
    /// [`JsonLines::to_file_with`] with [`ExistingFile::Refuse`].
    ///
    /// The log holds keys, values and lease IDs (never passwords or tokens), so it is treated
    /// as a secret file. Before 0.2 this truncated an existing file and followed symlinks.
    pub fn to_file(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::to_file_with(path, ExistingFile::Refuse)
    }

    /// Writes lines to the file at `path`, created `0600` when it does not exist; `existing`
    /// says what to do when it does. A symlink at `path` is never followed (`O_NOFOLLOW`), and
    /// an existing path that is not a regular file is refused. An existing file that is
    /// appended to or overwritten is narrowed to `0600` first.
    ///
    /// Errors are `std::io::Error`s whose kind says why: `AlreadyExists` (with
    /// [`ExistingFile::Refuse`]), `InvalidInput` (not a regular file), or what the system
    /// reported (e.g. `ELOOP` for a symlink, `PermissionDenied`).
    ///
    /// ```no_run
    /// use etcd_lock::wirelog::{ExistingFile, JsonLines};
    /// let log = JsonLines::to_file_with("etcd-wire.jsonl", ExistingFile::Append)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn to_file_with(path: impl AsRef<Path>, existing: ExistingFile) -> io::Result<Self> {
        Ok(Self::new(open_log_file(path.as_ref(), existing)?))
    }

    /// [`JsonLines::to_file`] (a new file, `0600`, no symlink followed) written through the
    /// buffer of [`JsonLines::buffered`].
    pub fn to_file_buffered(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::buffered(open_log_file(
            path.as_ref(),
            ExistingFile::Refuse,
        )?))
    }

    /// How many lines could not be written (or flushed) so far.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }
}

/// What [`JsonLines::to_file_with`] does when the file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExistingFile {
    /// Fail with `AlreadyExists` (the default): a log never lands in a file someone else
    /// prepared.
    #[default]
    Refuse,
    /// Add lines at the end of the existing file.
    Append,
    /// Empty the existing file, then write.
    Overwrite,
}

/// Opens the wire-log file: `0600`, no symlinks followed, regular files only.
fn open_log_file(path: &Path, existing: ExistingFile) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    match existing {
        // O_CREAT | O_EXCL: fails on any existing path, a symlink (even dangling) included.
        ExistingFile::Refuse => options.create_new(true),
        ExistingFile::Append => options.create(true).append(true),
        ExistingFile::Overwrite => options.create(true).truncate(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

impl WireSink for JsonLines {
    fn record(&self, event: &WireEvent<'_>) {
        let mut line = render_event(event, SystemTime::now());
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let written = out.write_all(line.as_bytes());
        let done = if self.buffered {
            written
        } else {
            written.and_then(|()| out.flush())
        };
        if done.is_err() {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A gRPC method path the descriptors declare, as a `&'static str` (the pool lives as long
/// as the process), with whether its requests and its responses are streams; `None` for a
/// method our protos do not have.
#[cfg(feature = "tap")]
pub(crate) fn known_method(path: &str) -> Option<(&'static str, bool, bool)> {
    pool().and_then(|p| p.streaming(path))
}

/// Which message of a method: its request (`true`) or response type.
fn write_body(method: &str, request: bool, bytes: &[u8], out: &mut String) {
    let descriptor = pool()
        .and_then(|p| p.method(method))
        .map(|(input, output)| if request { input } else { output });
    write_message(descriptor, bytes, out);
}

/// `Maintenance/Snapshot`: its answers carry the whole database, auth bucket included.
const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";
/// `SnapshotResponse.blob`'s field number.
const SNAPSHOT_BLOB: u32 = 3;

/// A `SnapshotResponse` without its data: every other field decoded as usual, and `blob` as
/// `{"bytes":N,"sha256":"<hex>"}`, enough to match chunks against a file without writing the
/// database (users' password hashes included) into the log. A message that does not parse
/// is shown as `{"undecodable_bytes":N,"sha256":"<hex>"}`, never as its bytes.
fn write_snapshot_chunk(bytes: &[u8], out: &mut String) {
    let Some((rest, blob)) = split_field(bytes, SNAPSHOT_BLOB) else {
        let _ = write!(
            out,
            "{{\"undecodable_bytes\":{},\"sha256\":\"{}\"}}",
            bytes.len(),
            sha256_hex(bytes)
        );
        return;
    };
    write_body(SNAPSHOT, false, &rest, out);
    let Some(blob) = blob else {
        return;
    };
    if out.ends_with('}') {
        out.pop();
        if !out.ends_with('{') {
            out.push(',');
        }
        let _ = write!(
            out,
            "\"blob\":{{\"bytes\":{},\"sha256\":\"{}\"}}}}",
            blob.len(),
            sha256_hex(blob)
        );
    }
}

/// Splits a protobuf message into its bytes without field `number` (length-delimited) and the
/// last value of that field (the one a decoder keeps); `None` when the bytes do not parse.
fn split_field(bytes: &[u8], number: u32) -> Option<(Vec<u8>, Option<&[u8]>)> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut rest = Vec::with_capacity(64.min(bytes.len()));
    let mut found = None;
    let mut buf = bytes;
    while !buf.is_empty() {
        let start = bytes.len() - buf.len();
        let (field, wire_type) = decode_key(&mut buf).ok()?;
        let skip = match wire_type {
            WireType::Varint => {
                decode_varint(&mut buf).ok()?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => usize::try_from(decode_varint(&mut buf).ok()?).ok()?,
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        let value = buf.get(..skip)?;
        buf = &buf[skip..];
        let end = bytes.len() - buf.len();
        if field == number && wire_type == WireType::LengthDelimited {
            found = Some(value);
        } else {
            rest.extend_from_slice(&bytes[start..end]);
        }
    }
    Some((rest, found))
}

/// The SHA-256 of `bytes` in lower-case hex.
fn sha256_hex(bytes: &[u8]) -> String {
    let mut hash = crate::support::sha256::Sha256::default();
    hash.update(bytes);
    hash.finish()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
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
            s.push_str(",\"kind\":\"call\"");
            write_peer(call.peer, &mut s);
            let _ = write!(s, ",\"call\":{},\"attempt\":{}", call.call, call.attempt);
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
            s.push_str(",\"kind\":\"open\"");
            write_peer(open.peer, &mut s);
            let _ = write!(s, ",\"stream\":{}", open.stream);
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
            let _ = write!(s, ",\"kind\":\"{kind}\"");
            write_peer(message.peer, &mut s);
            let _ = write!(s, ",\"stream\":{},\"seq\":", message.stream);
            uint(message.seq, &mut s);
            s.push_str(",\"method\":");
            json_string(message.method, &mut s);
            s.push_str(",\"message\":");
            if !request && message.method == SNAPSHOT {
                write_snapshot_chunk(message.message, &mut s);
            } else {
                write_body(message.method, request, message.message, &mut s);
            }
            let _ = write!(s, ",\"bytes\":{}", message.message.len());
        }
        WireEvent::Close(close) => {
            s.push_str(",\"kind\":\"close\"");
            write_peer(close.peer, &mut s);
            let _ = write!(s, ",\"stream\":{}", close.stream);
            s.push_str(",\"method\":");
            json_string(close.method, &mut s);
            s.push_str(",\"how\":");
            json_string(close.how.as_str(), &mut s);
            if let Some(reason) = close.reset_reason {
                s.push_str(",\"reset_reason\":");
                write_reason(reason, &mut s);
            }
            write_status(close.status, &mut s);
            let _ = write!(
                s,
                ",\"sent\":{},\"received\":{}",
                close.sent, close.received
            );
        }
        WireEvent::Connect(peer) => {
            s.push_str(",\"kind\":\"connect\"");
            write_peer(Some(peer), &mut s);
            s.push_str(",\"upstream\":");
            json_string(&peer.upstream, &mut s);
            write_tls("client_tls", peer.client_tls.as_ref(), &mut s);
            write_tls("upstream_tls", peer.upstream_tls.as_ref(), &mut s);
        }
        WireEvent::Disconnect(close) => {
            s.push_str(",\"kind\":\"disconnect\"");
            write_peer(Some(close.peer), &mut s);
            s.push_str(",\"how\":");
            json_string(close.how, &mut s);
            s.push_str(",\"reason\":");
            match close.reason {
                Some(reason) => write_reason(reason, &mut s),
                None => s.push_str("null"),
            }
            if let Some(cause) = close.cause {
                s.push_str(",\"cause\":");
                json_string(cause, &mut s);
            }
            let _ = write!(s, ",\"streams\":{}", close.streams);
        }
    }
    s.push('}');
    s
}

/// `"conn"` and `"client"` of a line a tap wrote; nothing for our own client's lines.
fn write_peer(peer: Option<&Peer>, s: &mut String) {
    if let Some(peer) = peer {
        let _ = write!(s, ",\"conn\":{},\"client\":", peer.connection);
        json_string(&peer.client, s);
    }
}

/// `"<side>":null` for plaintext, else `{"subject":..}` (`null` when no certificate was shown).
fn write_tls(side: &str, tls: Option<&TlsPeer>, s: &mut String) {
    let _ = write!(s, ",\"{side}\":");
    match tls {
        None => s.push_str("null"),
        Some(tls) => {
            s.push_str("{\"subject\":");
            match &tls.subject {
                Some(subject) => json_string(subject, s),
                None => s.push_str("null"),
            }
            s.push('}');
        }
    }
}

/// An HTTP/2 error code by its RFC 9113 name (`"CANCEL"`), or its number when unnamed.
fn write_reason(code: u32, s: &mut String) {
    match crate::http2::Reason::from(code).name() {
        Some(name) => {
            let _ = write!(s, "\"{name}\"");
        }
        None => uint(u64::from(code), s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb as pb;
    use crate::wire::codec::{capture, WireCodec};
    use crate::wire::{CallRecord, CloseHow, StreamClose, StreamMessage, StreamOpen};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};
    use tonic::codec::Codec as _;

    fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
        m.encode_to_vec()
    }

    /// The decoder hands the exact received bytes to the log, unknown field included, while
    /// the prost message it returns has lost that field (a re-encoding would not show it).
    #[tokio::test]
    async fn decoder_keeps_received_bytes_with_unknown_fields() {
        // RangeResponse{count: 5} plus unknown field 15 (varint 7): all ASCII, so the frame
        // fits in a `String` body.
        let payload = [0x20u8, 0x05, 0x78, 0x07];
        let mut frame = vec![0u8, 0, 0, 0, payload.len() as u8];
        frame.extend_from_slice(&payload);
        let body = String::from_utf8(frame).unwrap();
        let mut codec = WireCodec::<pb::RangeRequest, pb::RangeResponse>::default();
        let mut stream = tonic::Streaming::new_response(
            codec.decoder(),
            body,
            tonic::codegen::http::StatusCode::OK,
            None,
            None,
        );
        let (message, bytes) = capture(stream.message()).await;
        let message = message.unwrap().unwrap();
        assert_eq!(message.count, 5);
        assert_eq!(bytes.as_deref(), Some(&payload[..]));
        assert_eq!(
            decode_message("etcdserverpb.RangeResponse", &payload),
            r##"{"count":5,"#15":7}"##
        );
        assert_eq!(
            encode(&message),
            [0x20, 0x05],
            "prost drops the unknown field"
        );

        // Without a capture scope the decoder copies nothing and still decodes.
        let frame = [0u8, 0, 0, 0, 2, 0x20, 0x06];
        let body = String::from_utf8(frame.to_vec()).unwrap();
        let mut stream = tonic::Streaming::new_response(
            codec.decoder(),
            body,
            tonic::codegen::http::StatusCode::OK,
            None,
            None,
        );
        assert_eq!(stream.message().await.unwrap().unwrap().count, 6);
    }

    #[test]
    fn methods_and_types_come_from_the_descriptors() {
        let pool = pool().unwrap();
        let (input, output) = pool.method("/etcdserverpb.KV/Txn").unwrap();
        assert_eq!(input.full_name(), "etcdserverpb.TxnRequest");
        assert_eq!(output.full_name(), "etcdserverpb.TxnResponse");
        assert!(pool.method("/v3lockpb.Lock/Lock").is_some());
        assert!(pool.method("/v3electionpb.Election/Observe").is_some());
        assert!(pool.method("/etcdserverpb.Watch/Watch").is_some());
    }

    #[test]
    fn put_request_with_binary_value_and_lease() {
        let req = pb::PutRequest {
            key: b"a/key".to_vec(),
            value: vec![0xff, 0x00, 0x80],
            lease: 0x1234,
            prev_kv: true,
            ..Default::default()
        };
        let json = decode_message("etcdserverpb.PutRequest", &encode(&req));
        assert_eq!(
            json,
            r#"{"key":"a/key","value":{"base64":"/wCA"},"lease":4660,"prev_kv":true}"#
        );
        assert_eq!(
            decode_message(".etcdserverpb.PutRequest", &encode(&req)),
            json
        );
        assert_eq!(
            decode_message(
                "etcdserverpb.PutRequest",
                &encode(&pb::PutRequest::default())
            ),
            "{}"
        );
        // A `string` field that is not UTF-8 (AuthenticateRequest.name) is shown, not refused.
        let bytes = [0x0a, 0x02, 0xff, 0xfe];
        assert_eq!(
            decode_message("etcdserverpb.AuthenticateRequest", &bytes),
            r#"{"name":{"base64":"//4="}}"#
        );
    }

    #[test]
    fn txn_with_enums_oneofs_and_nested_ops() {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        use pb::request_op::Request;
        let req = pb::TxnRequest {
            compare: vec![
                pb::Compare {
                    result: CompareResult::Greater as i32,
                    target: CompareTarget::Create as i32,
                    key: b"k".to_vec(),
                    target_union: Some(TargetUnion::CreateRevision(7)),
                    range_end: vec![],
                },
                pb::Compare {
                    result: 99,
                    ..Default::default()
                },
            ],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(pb::TxnRequest {
                    success: vec![pb::RequestOp {
                        request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                            key: b"d".to_vec(),
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            }],
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestRange(pb::RangeRequest {
                    key: b"k".to_vec(),
                    limit: 1,
                    ..Default::default()
                })),
            }],
        };
        assert_eq!(
            decode_message("etcdserverpb.TxnRequest", &encode(&req)),
            concat!(
                r#"{"compare":[{"result":"GREATER","target":"CREATE","key":"k","create_revision":7},"#,
                r#"{"result":99}],"#,
                r#""success":[{"request_txn":{"success":[{"request_delete_range":{"key":"d"}}]}}],"#,
                r#""failure":[{"request_range":{"key":"k","limit":1}}]}"#
            )
        );
    }

    #[test]
    fn safe_integer_boundary_and_repeated_bytes() {
        let at = |n: i64| {
            decode_message(
                "etcdserverpb.ResponseHeader",
                &encode(&pb::ResponseHeader {
                    revision: n,
                    ..Default::default()
                }),
            )
        };
        assert_eq!(at((1 << 53) - 1), r#"{"revision":9007199254740991}"#);
        assert_eq!(at(1 << 53), r#"{"revision":"9007199254740992"}"#);
        assert_eq!(at(-((1 << 53) - 1)), r#"{"revision":-9007199254740991}"#);
        assert_eq!(at(i64::MIN), r#"{"revision":"-9223372036854775808"}"#);
        let header = pb::ResponseHeader {
            cluster_id: u64::MAX,
            ..Default::default()
        };
        assert_eq!(
            decode_message("etcdserverpb.ResponseHeader", &encode(&header)),
            r#"{"cluster_id":"18446744073709551615"}"#
        );
        let resp = pb::LeaseTimeToLiveResponse {
            header: None,
            id: 1,
            ttl: 5,
            granted_ttl: 10,
            keys: vec![b"x".to_vec(), vec![0xfe]],
        };
        assert_eq!(
            decode_message("etcdserverpb.LeaseTimeToLiveResponse", &encode(&resp)),
            r#"{"ID":1,"TTL":5,"grantedTTL":10,"keys":["x",{"base64":"/g=="}]}"#
        );
    }

    #[test]
    fn unknown_fields_and_unknown_types() {
        let mut bytes = encode(&pb::PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        // 100 varint 3, 101 fixed32 7, 102 fixed64 9, 100 again, 103 bytes "hi",
        // 104 group { 1: varint 1 }.
        for (tag, payload) in [
            (100u64 << 3, vec![3u8]),
            ((101 << 3) | 5, 7u32.to_le_bytes().to_vec()),
            ((102 << 3) | 1, 9u64.to_le_bytes().to_vec()),
            (100 << 3, vec![4]),
            ((103 << 3) | 2, vec![2, b'h', b'i']),
            ((104 << 3) | 3, vec![1 << 3, 1]),
            ((104 << 3) | 4, vec![]),
        ] {
            prost::encoding::encode_varint(tag, &mut bytes);
            bytes.extend_from_slice(&payload);
        }
        assert_eq!(
            decode_message("etcdserverpb.PutRequest", &bytes),
            r##"{"key":"k","#100":[3,4],"#101":7,"#102":9,"#103":"hi","#104":{"group":{"#1":1}}}"##
        );
        assert_eq!(
            decode_message("no.Such", &encode(&pb::LeaseGrantRequest { ttl: 3, id: 0 })),
            r##"{"#1":3}"##
        );
    }

    #[test]
    fn malformed_bytes_are_undecodable_never_a_panic() {
        let cases: &[&[u8]] = &[
            &[0x0a, 0x05, b'a'],       // length past the end
            &[0x08],                   // varint cut short
            &[0x00, 0x01],             // field number 0
            &[0x0e],                   // wire type 6
            &[0x09, 1, 2, 3],          // fixed64 cut short
            &[0x0b, 0x08, 0x01],       // group never ends
            &[0x0a, 0x02, 0x08, 0x80], // nested message cut short
        ];
        for bytes in cases {
            let json = decode_message("etcdserverpb.RangeResponse", bytes);
            let expected = format!(
                "{{\"undecodable\":\"{}\"}}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
            );
            assert_eq!(json, expected, "{bytes:?}");
            if bytes.len() != 4 {
                // (the last case is a well-formed bytes field when the type is unknown)
                let json = decode_message("no.Such", bytes);
                assert!(json.starts_with("{\"undecodable\""), "{json}");
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len % 40)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_message("etcdserverpb.TxnRequest", &bytes);
            let _ = decode_message("no.Such", &bytes);
        }
    }

    #[test]
    fn json_string_escaping_and_timestamps() {
        let mut out = String::new();
        json_string("q\"b\\n\nr\rt\t\u{0}\u{1f}\u{7f}é☃/", &mut out);
        assert_eq!(out, "\"q\\\"b\\\\n\\nr\\rt\\t\\u0000\\u001f\\u007fé☃/\"");
        let at = |ms: u64| {
            let mut out = String::new();
            rfc3339(UNIX_EPOCH + Duration::from_millis(ms), &mut out);
            out
        };
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_709_251_199_123), "2024-02-29T23:59:59.123Z");
        assert_eq!(at(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn call_lines() {
        let request = encode(&pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        let response = encode(&pb::PutResponse {
            header: Some(pb::ResponseHeader {
                revision: 5,
                ..Default::default()
            }),
            prev_kv: None,
        });
        let metadata = [
            ("grpc-timeout", "9999m".to_string()),
            ("token", "<redacted>".to_string()),
        ];
        let ok = CallRecord {
            call: 7,
            attempt: 2,
            method: "/etcdserverpb.KV/Put",
            endpoint: "http://127.0.0.1:2379",
            metadata: &metadata,
            request: &request,
            request_bytes: request.len(),
            response: Some(&response),
            response_bytes: response.len(),
            redacted: false,
            status: None,
            retry: None,
            latency: Duration::from_micros(1234),
            peer: None,
        };
        assert_eq!(
            render_event(&WireEvent::Call(ok), UNIX_EPOCH),
            concat!(
                r#"{"ts":"1970-01-01T00:00:00.000Z","kind":"call","call":7,"attempt":2,"#,
                r#""endpoint":"http://127.0.0.1:2379","authority":"127.0.0.1:2379","#,
                r#""method":"/etcdserverpb.KV/Put","#,
                r#""metadata":{"grpc-timeout":"9999m","token":"<redacted>"},"#,
                r#""request":{"key":"k","value":"v"},"request_bytes":6,"#,
                r#""response":{"header":{"revision":5}},"response_bytes":4,"status":"OK","#,
                r#""retry":null,"latency_ms":1.234}"#
            )
        );
        let failure = Failure {
            code: crate::error::Code::Unavailable,
            message: "connection \"refused\"".into(),
            cause: Some("transport error: connection refused".into()),
        };
        let failed = CallRecord {
            call: 7,
            attempt: 1,
            method: "/etcdserverpb.Auth/Authenticate",
            endpoint: "https://h:1/",
            metadata: &[],
            request: &[],
            request_bytes: 9,
            response: None,
            response_bytes: 0,
            redacted: true,
            status: Some(&failure),
            retry: Some("next endpoint"),
            latency: Duration::from_millis(2),
            peer: None,
        };
        assert_eq!(
            render_event(&WireEvent::Call(failed), UNIX_EPOCH),
            concat!(
                r#"{"ts":"1970-01-01T00:00:00.000Z","kind":"call","call":7,"attempt":1,"#,
                r#""endpoint":"https://h:1/","authority":"h:1","#,
                r#""method":"/etcdserverpb.Auth/Authenticate","metadata":{},"#,
                r#""request":"<redacted>","request_bytes":9,"response":null,"response_bytes":0,"#,
                r#""status":{"code":"Unavailable","message":"connection \"refused\"","#,
                r#""cause":"transport error: connection refused"},"#,
                r#""retry":{"reason":"next endpoint"},"latency_ms":2.000}"#
            )
        );
    }

    #[test]
    fn stream_lines() {
        let metadata = [("hasleader", "true".to_string())];
        let open = StreamOpen {
            stream: 3,
            method: "/etcdserverpb.Watch/Watch",
            endpoint: "http://127.0.0.1:2379",
            metadata: &metadata,
            peer: None,
        };
        assert_eq!(
            render_event(&WireEvent::Open(open), UNIX_EPOCH),
            concat!(
                r#"{"ts":"1970-01-01T00:00:00.000Z","kind":"open","stream":3,"#,
                r#""endpoint":"http://127.0.0.1:2379","authority":"127.0.0.1:2379","#,
                r#""method":"/etcdserverpb.Watch/Watch","metadata":{"hasleader":"true"}}"#
            )
        );
        let create = encode(&pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: b"a".to_vec(),
                    start_revision: 4,
                    ..Default::default()
                },
            )),
        });
        let send = StreamMessage {
            stream: 3,
            seq: 1,
            method: "/etcdserverpb.Watch/Watch",
            message: &create,
            peer: None,
        };
        assert_eq!(
            render_event(&WireEvent::Send(send), UNIX_EPOCH),
            concat!(
                r#"{"ts":"1970-01-01T00:00:00.000Z","kind":"send","stream":3,"seq":1,"#,
                r#""method":"/etcdserverpb.Watch/Watch","#,
                r#""message":{"create_request":{"key":"a","start_revision":4}},"bytes":7}"#
            )
        );
        let event = encode(&pb::WatchResponse {
            watch_id: 0,
            events: vec![crate::proto::mvccpb::Event {
                r#type: 1,
                kv: Some(crate::proto::mvccpb::KeyValue {
                    key: b"a".to_vec(),
                    mod_revision: 9,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        });
        let recv = StreamMessage {
            stream: 3,
            seq: 2,
            method: "/etcdserverpb.Watch/Watch",
            message: &event,
            peer: None,
        };
        assert_eq!(
            render_event(&WireEvent::Recv(recv), UNIX_EPOCH),
            concat!(
                r#"{"ts":"1970-01-01T00:00:00.000Z","kind":"recv","stream":3,"seq":2,"#,
                r#""method":"/etcdserverpb.Watch/Watch","#,
                r#""message":{"events":[{"type":"DELETE","kv":{"key":"a","mod_revision":9}}]},"#,
                r#""bytes":11}"#
            )
        );
        let failure = Failure {
            code: crate::error::Code::Unavailable,
            message: "etcdserver: no leader".into(),
            cause: None,
        };
        for (how, status, tail) in [
            (
                CloseHow::Trailers,
                None,
                r#""how":"trailers","status":"OK""#,
            ),
            (
                CloseHow::Cancelled,
                None,
                r#""how":"cancelled","status":"OK""#,
            ),
            (
                CloseHow::Trailers,
                Some(&failure),
                r#""how":"trailers","status":{"code":"Unavailable","message":"etcdserver: no leader"}"#,
            ),
        ] {
            let close = StreamClose {
                stream: 3,
                method: "/etcdserverpb.Watch/Watch",
                how,
                status,
                sent: 1,
                received: 2,
                reset_reason: None,
                peer: None,
            };
            assert_eq!(
                render_event(&WireEvent::Close(close), UNIX_EPOCH),
                format!(
                    "{{\"ts\":\"1970-01-01T00:00:00.000Z\",\"kind\":\"close\",\"stream\":3,\
                     \"method\":\"/etcdserverpb.Watch/Watch\",{tail},\"sent\":1,\"received\":2}}"
                )
            );
        }
    }

    /// A `Write` shared with the test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn grant_line() -> (Vec<u8>, [(&'static str, String); 0]) {
        (encode(&pb::LeaseGrantRequest { ttl: 5, id: 0 }), [])
    }

    /// An unanswered `LeaseGrant` attempt carrying `request` and `metadata` (see `grant_line`).
    fn grant_record<'a>(request: &'a [u8], metadata: &'a Metadata) -> CallRecord<'a> {
        CallRecord {
            call: 1,
            attempt: 1,
            method: "/etcdserverpb.Lease/LeaseGrant",
            endpoint: "e",
            metadata,
            request,
            request_bytes: request.len(),
            response: None,
            response_bytes: 0,
            redacted: false,
            status: None,
            retry: None,
            latency: Duration::ZERO,
            peer: None,
        }
    }

    #[test]
    fn sink_writes_whole_lines_and_counts_errors() {
        let (request, metadata) = grant_line();
        let record = || grant_record(&request, &metadata);
        let buf = Shared::default();
        let sink = JsonLines::new(buf.clone());
        sink.record(&WireEvent::Call(record()));
        sink.record(&WireEvent::Call(record()));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        assert!(text.contains(r#""request":{"TTL":5}"#), "{text}");
        assert_eq!(sink.write_errors(), 0);

        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = JsonLines::new(Broken);
        sink.record(&WireEvent::Call(record()));
        assert_eq!(sink.write_errors(), 1);
        assert!(format!("{sink:?}").contains("JsonLines"));

        let path = std::env::temp_dir().join(format!("wirelog-test-{}.jsonl", std::process::id()));
        std::fs::write(&path, "old contents\n").unwrap();
        let sink = JsonLines::to_file_with(&path, ExistingFile::Overwrite).unwrap();
        sink.record(&WireEvent::Call(record()));
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn buffered_sinks_write_whole_lines_when_full_or_flushed() {
        let (request, metadata) = grant_line();
        let record = || grant_record(&request, &metadata);
        let buf = Shared::default();
        let sink = JsonLines::buffered(buf.clone());
        sink.record(&WireEvent::Call(record()));
        assert!(buf.0.lock().unwrap().is_empty(), "written before a flush");
        sink.flush();
        let one = buf.0.lock().unwrap().len();
        assert!(one > 0);
        // Enough lines to fill the buffer: whole lines reach the writer without a flush.
        for _ in 0..(64 << 10) / one + 1 {
            sink.record(&WireEvent::Call(record()));
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.len() > one && text.ends_with('\n'), "{}", text.len());
        assert_eq!(sink.write_errors(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn log_files_are_private_new_files_unless_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("wirelog-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (request, metadata) = grant_line();
        let record = || grant_record(&request, &metadata);

        // A new file: 0600, whatever the umask allows.
        let new = dir.join("new.jsonl");
        JsonLines::to_file(&new)
            .unwrap()
            .record(&WireEvent::Call(record()));
        assert_eq!(mode(&new), 0o600);
        // An existing one: refused by default, untouched.
        let err = JsonLines::to_file(&new).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read_to_string(&new).unwrap().lines().count(), 1);
        // Append keeps the old lines; a world-readable file is narrowed to 0600.
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o644)).unwrap();
        JsonLines::to_file_with(&new, ExistingFile::Append)
            .unwrap()
            .record(&WireEvent::Call(record()));
        assert_eq!(std::fs::read_to_string(&new).unwrap().lines().count(), 2);
        assert_eq!(mode(&new), 0o600);

        // A symlink is never followed, whatever the mode; its target is left alone.
        let target = dir.join("target.txt");
        std::fs::write(&target, "precious\n").unwrap();
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for existing in [
            ExistingFile::Refuse,
            ExistingFile::Append,
            ExistingFile::Overwrite,
        ] {
            assert!(
                JsonLines::to_file_with(&link, existing).is_err(),
                "{existing:?} followed the symlink"
            );
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        // Not a regular file.
        let err = JsonLines::to_file_with(&dir, ExistingFile::Append).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::IsADirectory
            ),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshot_chunks_are_logged_by_size_and_digest() {
        let chunk = pb::SnapshotResponse {
            header: Some(pb::ResponseHeader {
                revision: 7,
                ..Default::default()
            }),
            remaining_bytes: 10,
            blob: b"abc".to_vec(),
        };
        let mut bytes = encode(&chunk);
        // An unknown field after the blob is still shown.
        bytes.extend_from_slice(&[0x78, 0x07]);
        let recv = StreamMessage {
            stream: 1,
            seq: 2,
            method: SNAPSHOT,
            message: &bytes,
            peer: None,
        };
        let line = render_event(&WireEvent::Recv(recv), UNIX_EPOCH);
        // sha256("abc"), FIPS 180-2 appendix B.1.
        let digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(
            line.contains(&format!(
                r##""message":{{"header":{{"revision":7}},"remaining_bytes":10,"#15":7,"blob":{{"bytes":3,"sha256":"{digest}"}}}}"##
            )),
            "{line}"
        );
        assert!(!line.contains("abc") && !line.contains("YWJj"), "{line}");
        // Only data: no other field.
        let only = encode(&pb::SnapshotResponse {
            blob: b"secret".to_vec(),
            ..Default::default()
        });
        let mut out = String::new();
        write_snapshot_chunk(&only, &mut out);
        assert!(out.starts_with(r#"{"blob":{"bytes":6,"sha256":""#), "{out}");
        // Garbage is never echoed.
        let mut out = String::new();
        write_snapshot_chunk(&[0x1a, 0x05, b's', b'e'], &mut out);
        assert!(
            out.starts_with(r#"{"undecodable_bytes":4,"sha256":""#),
            "{out}"
        );
        // The request side is logged as usual.
        assert_eq!(decode_message("etcdserverpb.SnapshotRequest", &[]), "{}");
    }

    #[test]
    fn close_how_from_error_types() {
        assert_eq!(
            CloseHow::of(&tonic::Status::unavailable("etcdserver: no leader")),
            CloseHow::Trailers
        );
        let cancel = crate::http2::Http2Error::LocalReset(crate::http2::Reason::CANCEL);
        let reset = tonic::Status::from_error(Box::new(cancel));
        // Our own reset.
        assert_eq!(CloseHow::of(&reset), CloseHow::Cancelled);
        let received = crate::http2::Http2Error::Reset(crate::http2::Reason::CANCEL);
        let reset = tonic::Status::from_error(Box::new(received));
        assert_eq!(CloseHow::of(&reset), CloseHow::Reset);
        let io = tonic::Status::from_error(Box::new(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert_eq!(CloseHow::of(&io), CloseHow::ConnectionLost);
        let failure = Failure::from_status(&io);
        assert_eq!(failure.cause.as_deref(), Some("broken pipe"));
    }
}
