//! The wire log as JSON lines: [`JsonLines`] is a [`WireSink`] that writes one JSON object per
//! unary RPC, with the request and response decoded field by field from the exact bytes that
//! were encoded for the wire.
//!
//! ```text
//! {"ts":"2024-05-01T12:34:56.789Z","endpoint":"http://127.0.0.1:2379","method":"/etcdserverpb.KV/Put",
//!  "request":{"key":"a","value":"1"},"response":{"header":{...}},"request_bytes":6,
//!  "response_bytes":31,"status":"OK","latency_ms":1.234}
//! ```
//! (one line per RPC; wrapped here for reading.)
//!
//! Decoding is driven by the descriptors in [`FILE_DESCRIPTOR_SET`], not by the generated Rust
//! types, so the log shows what went on the wire, including fields this crate does not know
//! about (as `"#<number>": <raw value>`). Field names are the ones in the `.proto` files; fields
//! absent on the wire (proto3 defaults) are absent from the JSON. Values:
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
//! | bytes that do not parse | `{"undecodable":"<base64>"}` |
//!
//! Nothing here runs unless a sink is attached with
//! [`ClientBuilder::wire_log`](crate::client::ClientBuilder::wire_log).

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

use crate::proto::FILE_DESCRIPTOR_SET;
use crate::wire::{WireRecord, WireSink};

// ---------------------------------------------------------------------------------------------
// the sink

/// A [`WireSink`] writing one JSON line per RPC to any writer (a file, stderr, a buffer).
///
/// Each line is formatted first, then written with the writer locked once and flushed, so lines
/// from concurrent RPCs never interleave. Line fields, in order:
///
/// - `ts`: RFC 3339 UTC time with milliseconds at which the answer (or error) arrived
///   (the request left `latency_ms` earlier);
/// - `endpoint`: the endpoint URL the request went to;
/// - `method`: the gRPC method path, e.g. `/etcdserverpb.KV/Txn`;
/// - `request`, `response`: the decoded messages (`response` is `null` on failure);
/// - `request_bytes`, `response_bytes`: encoded payload sizes (`0` for a missing response);
/// - `status`: `"OK"`, or `{"code":"Unavailable","message":"..."}`;
/// - `latency_ms`: from sending the request to the answer, with microsecond precision.
///
/// A retried request produces one line per attempt. Write errors are counted, never raised:
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
    fn record(&self, record: &WireRecord<'_>) {
        let mut line = render_record(record, SystemTime::now());
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

/// One record as a JSON object (no trailing newline); `now` is the `ts`.
fn render_record(record: &WireRecord<'_>, now: SystemTime) -> String {
    let index = index();
    let (input, output) = match index.methods.get(record.method) {
        Some((input, output)) => (input.as_str(), output.as_str()),
        None => ("", ""),
    };
    let request = record.request.encode_wire();
    let response = record.response.map(|r| r.encode_wire());
    let mut s =
        String::with_capacity(256 + 2 * (request.len() + response.as_ref().map_or(0, Vec::len)));
    s.push_str("{\"ts\":\"");
    rfc3339(now, &mut s);
    s.push_str("\",\"endpoint\":");
    json_string(record.endpoint, &mut s);
    s.push_str(",\"method\":");
    json_string(record.method, &mut s);
    s.push_str(",\"request\":");
    write_message(index, input, &request, 0, &mut s);
    s.push_str(",\"response\":");
    match &response {
        Some(bytes) => write_message(index, output, bytes, 0, &mut s),
        None => s.push_str("null"),
    }
    let _ = write!(
        s,
        ",\"request_bytes\":{},\"response_bytes\":{}",
        request.len(),
        response.as_ref().map_or(0, Vec::len)
    );
    s.push_str(",\"status\":");
    match record.status {
        None => s.push_str("\"OK\""),
        Some(status) => {
            s.push_str("{\"code\":");
            json_string(&format!("{:?}", status.code()), &mut s);
            s.push_str(",\"message\":");
            json_string(status.message(), &mut s);
            s.push('}');
        }
    }
    let _ = write!(
        s,
        ",\"latency_ms\":{:.3}}}",
        record.latency.as_secs_f64() * 1000.0
    );
    s
}

/// The JSON for one encoded message of type `type_name` (a full protobuf name such as
/// `etcdserverpb.PutRequest` or `mvccpb.KeyValue`, with or without a leading dot).
///
/// An unknown type name decodes every field as unknown (`"#<number>": <raw value>`); bytes that
/// are not a protobuf message give `{"undecodable":"<base64>"}`. Never panics.
pub fn decode_message(type_name: &str, bytes: &[u8]) -> String {
    let mut s = String::with_capacity(64 + 2 * bytes.len());
    let name = type_name.strip_prefix('.').unwrap_or(type_name);
    write_message(index(), name, bytes, 0, &mut s);
    s
}

// ---------------------------------------------------------------------------------------------
// descriptor index

/// Messages, enums and methods from [`FILE_DESCRIPTOR_SET`], by full name (no leading dot).
#[derive(Debug, Default)]
struct Index {
    messages: HashMap<String, HashMap<u32, Field>>,
    enums: HashMap<String, HashMap<i32, String>>,
    /// `/package.Service/Method` -> (input type, output type).
    methods: HashMap<String, (String, String)>,
}

#[derive(Debug)]
struct Field {
    name: String,
    kind: Kind,
    repeated: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Double,
    Float,
    Int64,
    Uint64,
    Int32,
    Uint32,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    Enum(String),
    Message(String),
    /// Proto2 groups and anything else: shown raw.
    Other,
}

impl Kind {
    /// How the elements of a packed repeated field of this kind are laid out, if it packs.
    fn packed(&self) -> Option<Packed> {
        match self {
            Kind::Int64
            | Kind::Uint64
            | Kind::Int32
            | Kind::Uint32
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Bool
            | Kind::Enum(_) => Some(Packed::Varint),
            Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => Some(Packed::Fixed64),
            Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => Some(Packed::Fixed32),
            Kind::String | Kind::Bytes | Kind::Message(_) | Kind::Other => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Packed {
    Varint,
    Fixed64,
    Fixed32,
}

/// The index, built on first use.
fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| match FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) {
        Ok(set) => Index::build(&set),
        // Cannot happen with the set build.rs wrote; everything then decodes as unknown fields.
        Err(_) => Index::default(),
    })
}

/// `prefix.name`, or `name` at the top level.
fn qualify(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn strip_dot(name: &str) -> String {
    name.strip_prefix('.').unwrap_or(name).to_string()
}

impl Index {
    fn build(set: &FileDescriptorSet) -> Self {
        let mut index = Index::default();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                index.add_message(package, message);
            }
            for e in &file.enum_type {
                index.add_enum(package, e);
            }
            for service in &file.service {
                let service_name = qualify(package, service.name());
                for method in &service.method {
                    index.methods.insert(
                        format!("/{service_name}/{}", method.name()),
                        (
                            strip_dot(method.input_type()),
                            strip_dot(method.output_type()),
                        ),
                    );
                }
            }
        }
        index
    }

    fn add_message(&mut self, prefix: &str, message: &DescriptorProto) {
        let full = qualify(prefix, message.name());
        let mut fields = HashMap::with_capacity(message.field.len());
        for f in &message.field {
            let type_name = strip_dot(f.type_name());
            let kind = match Type::try_from(f.r#type.unwrap_or(0)) {
                Ok(Type::Double) => Kind::Double,
                Ok(Type::Float) => Kind::Float,
                Ok(Type::Int64) => Kind::Int64,
                Ok(Type::Uint64) => Kind::Uint64,
                Ok(Type::Int32) => Kind::Int32,
                Ok(Type::Uint32) => Kind::Uint32,
                Ok(Type::Sint32) => Kind::Sint32,
                Ok(Type::Sint64) => Kind::Sint64,
                Ok(Type::Fixed32) => Kind::Fixed32,
                Ok(Type::Fixed64) => Kind::Fixed64,
                Ok(Type::Sfixed32) => Kind::Sfixed32,
                Ok(Type::Sfixed64) => Kind::Sfixed64,
                Ok(Type::Bool) => Kind::Bool,
                Ok(Type::String) => Kind::String,
                Ok(Type::Bytes) => Kind::Bytes,
                Ok(Type::Enum) => Kind::Enum(type_name),
                Ok(Type::Message) => Kind::Message(type_name),
                Ok(Type::Group) | Err(_) => Kind::Other,
            };
            let Ok(number) = u32::try_from(f.number()) else {
                continue;
            };
            fields.insert(
                number,
                Field {
                    name: f.name().to_string(),
                    kind,
                    repeated: f.label() == Label::Repeated,
                },
            );
        }
        for nested in &message.nested_type {
            self.add_message(&full, nested);
        }
        for e in &message.enum_type {
            self.add_enum(&full, e);
        }
        self.messages.insert(full, fields);
    }

    fn add_enum(&mut self, prefix: &str, e: &EnumDescriptorProto) {
        let values = e
            .value
            .iter()
            .map(|v| (v.number(), v.name().to_string()))
            .collect();
        self.enums.insert(qualify(prefix, e.name()), values);
    }
}

// ---------------------------------------------------------------------------------------------
// protobuf wire format

/// Deeper nesting than this is shown undecoded (prost's own recursion limit is 100).
const MAX_DEPTH: usize = 100;

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
    /// The bytes between a start-group and its end-group tag.
    Group(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return None; // more than 64 bits
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn fixed64(&mut self) -> Option<u64> {
        let bytes: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    fn fixed32(&mut self) -> Option<u32> {
        let bytes: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_le_bytes(bytes))
    }

    /// A field tag: (field number, wire type).
    fn tag(&mut self) -> Option<(u32, u8)> {
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).ok()?;
        if number == 0 || number > (1 << 29) - 1 {
            return None;
        }
        Some((number, (tag & 7) as u8))
    }

    /// One value of wire type `wire` (a group's start tag for `number` already read).
    fn value(&mut self, number: u32, wire: u8, depth: usize) -> Option<Raw<'a>> {
        Some(match wire {
            0 => Raw::Varint(self.varint()?),
            1 => Raw::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Raw::Len(self.take(len)?)
            }
            3 => {
                let start = self.pos;
                let end = self.skip_group(number, depth)?;
                Raw::Group(self.buf.get(start..end)?)
            }
            5 => Raw::Fixed32(self.fixed32()?),
            _ => return None, // 4 (end group) without a start, or 6/7
        })
    }

    /// Skips to the end-group tag of `number`; returns where that tag starts.
    fn skip_group(&mut self, number: u32, depth: usize) -> Option<usize> {
        if depth >= MAX_DEPTH {
            return None;
        }
        loop {
            let at = self.pos;
            let (n, wire) = self.tag()?;
            if wire == 4 {
                return (n == number).then_some(at);
            }
            self.value(n, wire, depth + 1)?;
        }
    }
}

/// Every field of a message, values grouped by field number in order of first appearance;
/// `None` when the bytes do not parse.
fn parse_fields(bytes: &[u8], depth: usize) -> Option<Vec<(u32, Vec<Raw<'_>>)>> {
    let mut reader = Reader::new(bytes);
    let mut fields: Vec<(u32, Vec<Raw<'_>>)> = Vec::new();
    let mut slots: HashMap<u32, usize> = HashMap::new();
    while !reader.done() {
        let (number, wire) = reader.tag()?;
        let value = reader.value(number, wire, depth)?;
        let slot = *slots.entry(number).or_insert_with(|| {
            fields.push((number, Vec::new()));
            fields.len() - 1
        });
        fields[slot].1.push(value);
    }
    Some(fields)
}

/// Writes the message `type_name` (unknown name: every field unknown) decoded from `bytes`.
fn write_message(index: &Index, type_name: &str, bytes: &[u8], depth: usize, out: &mut String) {
    let parsed = if depth > MAX_DEPTH {
        None
    } else {
        parse_fields(bytes, depth)
    };
    let Some(fields) = parsed else {
        out.push_str("{\"undecodable\":\"");
        base64(bytes, out);
        out.push_str("\"}");
        return;
    };
    let descriptor = index.messages.get(type_name);
    out.push('{');
    for (i, (number, values)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match descriptor.and_then(|d| d.get(number)) {
            Some(field) => {
                json_string(&field.name, out);
                out.push(':');
                write_field(index, field, values, depth, out);
            }
            None => {
                let _ = write!(out, "\"#{number}\":");
                write_unknown(index, values, depth, out);
            }
        }
    }
    out.push('}');
}

/// A known field: an array when repeated, else its value (the last one on the wire; a message
/// given more than once is merged, as protobuf parsers do).
fn write_field(index: &Index, field: &Field, values: &[Raw<'_>], depth: usize, out: &mut String) {
    if field.repeated {
        out.push('[');
        let mut first = true;
        for value in values {
            match (value, field.kind.packed()) {
                (Raw::Len(bytes), Some(layout)) => {
                    write_packed(index, &field.kind, layout, bytes, &mut first, out);
                }
                _ => {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    write_value(index, &field.kind, value, depth, out);
                }
            }
        }
        out.push(']');
        return;
    }
    if let Kind::Message(name) = &field.kind {
        if values.len() > 1 && values.iter().all(|v| matches!(v, Raw::Len(_))) {
            let merged: Vec<u8> = values
                .iter()
                .flat_map(|v| match v {
                    Raw::Len(bytes) => *bytes,
                    _ => &[],
                })
                .copied()
                .collect();
            write_message(index, name, &merged, depth + 1, out);
            return;
        }
    }
    match values.last() {
        Some(value) => write_value(index, &field.kind, value, depth, out),
        None => out.push_str("null"),
    }
}

/// The elements of one packed run, appended to an array being written.
fn write_packed(
    index: &Index,
    kind: &Kind,
    layout: Packed,
    bytes: &[u8],
    first: &mut bool,
    out: &mut String,
) {
    let mut reader = Reader::new(bytes);
    let mut elements = Vec::new();
    while !reader.done() {
        let element = match layout {
            Packed::Varint => reader.varint().map(Raw::Varint),
            Packed::Fixed64 => reader.fixed64().map(Raw::Fixed64),
            Packed::Fixed32 => reader.fixed32().map(Raw::Fixed32),
        };
        match element {
            Some(element) => elements.push(element),
            None => {
                elements.clear();
                break;
            }
        }
    }
    if bytes.is_empty() {
        return;
    }
    if elements.is_empty() {
        if !std::mem::take(first) {
            out.push(',');
        }
        out.push_str("{\"undecodable\":\"");
        base64(bytes, out);
        out.push_str("\"}");
        return;
    }
    for element in &elements {
        if !std::mem::take(first) {
            out.push(',');
        }
        write_value(index, kind, element, 0, out);
    }
}

/// One value of a known kind; a value whose wire type does not fit the kind is shown raw.
fn write_value(index: &Index, kind: &Kind, value: &Raw<'_>, depth: usize, out: &mut String) {
    match (kind, *value) {
        (Kind::Double, Raw::Fixed64(bits)) => float(f64::from_bits(bits), out),
        (Kind::Float, Raw::Fixed32(bits)) => {
            let v = f32::from_bits(bits);
            if v.is_finite() {
                let _ = write!(out, "{v:?}");
            } else {
                float(f64::from(v), out);
            }
        }
        (Kind::Int64, Raw::Varint(v)) | (Kind::Sfixed64, Raw::Fixed64(v)) => int(v as i64, out),
        (Kind::Uint64, Raw::Varint(v)) | (Kind::Fixed64, Raw::Fixed64(v)) => uint(v, out),
        (Kind::Int32, Raw::Varint(v)) => {
            let _ = write!(out, "{}", v as i32);
        }
        (Kind::Uint32, Raw::Varint(v)) => {
            let _ = write!(out, "{}", v as u32);
        }
        (Kind::Sint32, Raw::Varint(v)) => {
            let n = v as u32;
            let _ = write!(out, "{}", ((n >> 1) as i32) ^ -((n & 1) as i32));
        }
        (Kind::Sint64, Raw::Varint(v)) => int(((v >> 1) as i64) ^ -((v & 1) as i64), out),
        (Kind::Fixed32, Raw::Fixed32(v)) => {
            let _ = write!(out, "{v}");
        }
        (Kind::Sfixed32, Raw::Fixed32(v)) => {
            let _ = write!(out, "{}", v as i32);
        }
        (Kind::Bool, Raw::Varint(v)) => out.push_str(if v != 0 { "true" } else { "false" }),
        (Kind::Enum(name), Raw::Varint(v)) => {
            let number = v as i32;
            match index.enums.get(name).and_then(|values| values.get(&number)) {
                Some(label) => json_string(label, out),
                None => {
                    let _ = write!(out, "{number}");
                }
            }
        }
        (Kind::String | Kind::Bytes, Raw::Len(bytes)) => text_or_base64(bytes, out),
        (Kind::Message(name), Raw::Len(bytes)) => write_message(index, name, bytes, depth + 1, out),
        (_, raw) => write_raw(index, &raw, depth, out),
    }
}

/// An unknown field: its value, or an array of them when it occurs more than once.
fn write_unknown(index: &Index, values: &[Raw<'_>], depth: usize, out: &mut String) {
    if let [only] = values {
        write_raw(index, only, depth, out);
        return;
    }
    out.push('[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_raw(index, value, depth, out);
    }
    out.push(']');
}

/// A value without a descriptor: integers unsigned, length-delimited as text or base64, a group
/// as `{"group":{...its fields, unknown...}}`.
fn write_raw(index: &Index, value: &Raw<'_>, depth: usize, out: &mut String) {
    match *value {
        Raw::Varint(v) | Raw::Fixed64(v) => uint(v, out),
        Raw::Fixed32(v) => {
            let _ = write!(out, "{v}");
        }
        Raw::Len(bytes) => text_or_base64(bytes, out),
        Raw::Group(bytes) => {
            out.push_str("{\"group\":");
            write_message(index, "", bytes, depth + 1, out);
            out.push('}');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON output

/// Largest integer a JSON reader using doubles keeps exact.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn int(v: i64, out: &mut String) {
    if v.unsigned_abs() <= MAX_SAFE_INTEGER {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "\"{v}\"");
    }
}

fn uint(v: u64, out: &mut String) {
    if v <= MAX_SAFE_INTEGER {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "\"{v}\"");
    }
}

fn float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        // Debug keeps exponents short (`1e300`) and is always a valid JSON number.
        let _ = write!(out, "{v:?}");
    }
}

/// `bytes` as a JSON string when valid UTF-8, else `{"base64":"..."}`.
fn text_or_base64(bytes: &[u8], out: &mut String) {
    match std::str::from_utf8(bytes) {
        Ok(text) => json_string(text, out),
        Err(_) => {
            out.push_str("{\"base64\":\"");
            base64(bytes, out);
            out.push_str("\"}");
        }
    }
}

/// `s` as a quoted JSON string.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Standard base64 with padding.
fn base64(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
    for chunk in bytes.chunks(3) {
        let n = match *chunk {
            [a, b, c] => u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c),
            [a, b] => u32::from(a) << 16 | u32::from(b) << 8,
            [a] => u32::from(a) << 16,
            _ => 0,
        };
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(if chunk.len() > 1 { sextet(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n, 0) } else { '=' });
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(t: SystemTime, out: &mut String) {
    let millis: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    };
    const DAY: i128 = 86_400_000;
    let days = millis.div_euclid(DAY) as i64;
    let ms = millis.rem_euclid(DAY) as i64;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb as pb;
    use crate::proto::mvccpb;
    use std::sync::Arc;
    use std::time::Duration;

    fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
        m.encode_to_vec()
    }

    #[test]
    fn index_knows_methods_messages_and_enums() {
        let index = index();
        assert_eq!(
            index.methods.get("/etcdserverpb.KV/Txn"),
            Some(&(
                "etcdserverpb.TxnRequest".to_string(),
                "etcdserverpb.TxnResponse".to_string()
            ))
        );
        assert!(index.methods.contains_key("/etcdserverpb.Lease/LeaseGrant"));
        assert!(index.methods.contains_key("/v3lockpb.Lock/Lock"));
        assert!(index.messages.contains_key("mvccpb.KeyValue"));
        assert!(index
            .enums
            .contains_key("etcdserverpb.Compare.CompareResult"));
        assert!(index.enums.contains_key("mvccpb.Event.EventType"));
        let kv = &index.messages["mvccpb.KeyValue"];
        assert_eq!(kv[&2].name, "create_revision");
        assert_eq!(kv[&2].kind, Kind::Int64);
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
        // A leading dot is accepted too.
        assert_eq!(
            decode_message(".etcdserverpb.PutRequest", &encode(&req)),
            json
        );
        // Defaults are not sent, so they are absent.
        assert_eq!(
            decode_message(
                "etcdserverpb.PutRequest",
                &encode(&pb::PutRequest::default())
            ),
            "{}"
        );
    }

    #[test]
    fn lease_grant_uses_proto_field_names() {
        let req = pb::LeaseGrantRequest { ttl: 10, id: 42 };
        assert_eq!(
            decode_message("etcdserverpb.LeaseGrantRequest", &encode(&req)),
            r#"{"TTL":10,"ID":42}"#
        );
    }

    #[test]
    fn txn_request_with_compares_enums_oneofs_and_nested_ops() {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        use pb::request_op::Request;
        let put = pb::RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        };
        let nested = pb::RequestOp {
            request: Some(Request::RequestTxn(pb::TxnRequest {
                compare: vec![],
                success: vec![pb::RequestOp {
                    request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                        key: b"d".to_vec(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            })),
        };
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
                    result: CompareResult::NotEqual as i32,
                    target: CompareTarget::Value as i32,
                    key: b"k".to_vec(),
                    target_union: Some(TargetUnion::Value(b"x\"y".to_vec())),
                    range_end: b"l".to_vec(),
                },
                pb::Compare {
                    result: 99,
                    ..Default::default()
                },
            ],
            success: vec![put, nested],
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestRange(pb::RangeRequest {
                    key: b"k".to_vec(),
                    limit: 1,
                    ..Default::default()
                })),
            }],
        };
        let json = decode_message("etcdserverpb.TxnRequest", &encode(&req));
        assert_eq!(
            json,
            concat!(
                r#"{"compare":["#,
                r#"{"result":"GREATER","target":"CREATE","key":"k","create_revision":7},"#,
                r#"{"result":"NOT_EQUAL","target":"VALUE","key":"k","value":"x\"y","range_end":"l"},"#,
                r#"{"result":99}],"#,
                r#""success":[{"request_put":{"key":"k","value":"v"}},"#,
                r#"{"request_txn":{"success":[{"request_delete_range":{"key":"d"}}]}}],"#,
                r#""failure":[{"request_range":{"key":"k","limit":1}}]}"#
            )
        );
    }

    #[test]
    fn range_response_with_kvs_and_big_numbers() {
        let resp = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 14_841_639_068_965_178_418,
                member_id: 10_276_657_743_932_975_437,
                revision: 12,
                raft_term: 2,
            }),
            kvs: vec![
                mvccpb::KeyValue {
                    key: b"a".to_vec(),
                    create_revision: 3,
                    mod_revision: 12,
                    version: 4,
                    value: b"line\nbreak".to_vec(),
                    lease: 7_587_869_893_237_415_000,
                },
                mvccpb::KeyValue {
                    key: b"b".to_vec(),
                    create_revision: 5,
                    mod_revision: 5,
                    version: 1,
                    value: vec![],
                    lease: -1,
                },
            ],
            more: true,
            count: 2,
        };
        let json = decode_message("etcdserverpb.RangeResponse", &encode(&resp));
        assert_eq!(
            json,
            concat!(
                r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":12,"raft_term":2},"#,
                r#""kvs":[{"key":"a","create_revision":3,"mod_revision":12,"version":4,"value":"line\nbreak","lease":"7587869893237415000"},"#,
                r#"{"key":"b","create_revision":5,"mod_revision":5,"version":1,"lease":-1}],"#,
                r#""more":true,"count":2}"#
            )
        );
    }

    #[test]
    fn safe_integer_boundary() {
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
    }

    #[test]
    fn packed_and_unpacked_repeated_scalars() {
        // None of our protos has a repeated scalar, so the field descriptors are made up here.
        let index = index();
        let field = Field {
            name: "n".into(),
            kind: Kind::Int64,
            repeated: true,
        };
        // Packed [1, 300, -1] then one unpacked 5.
        let mut packed = Vec::new();
        prost::encoding::encode_varint(1, &mut packed);
        prost::encoding::encode_varint(300, &mut packed);
        prost::encoding::encode_varint(u64::MAX, &mut packed);
        let values = [Raw::Len(&packed), Raw::Varint(5)];
        let mut out = String::new();
        write_field(index, &field, &values, 0, &mut out);
        assert_eq!(out, "[1,300,-1,5]");

        let fixed = Field {
            name: "f".into(),
            kind: Kind::Double,
            repeated: true,
        };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&f64::NAN.to_le_bytes());
        let mut out = String::new();
        write_field(index, &fixed, &[Raw::Len(&bytes)], 0, &mut out);
        assert_eq!(out, r#"[1.5,"NaN"]"#);

        // A truncated packed run is shown undecoded, the rest of the array kept.
        let mut out = String::new();
        write_field(
            index,
            &fixed,
            &[Raw::Len(&bytes[..3]), Raw::Fixed64(2f64.to_bits())],
            0,
            &mut out,
        );
        assert_eq!(out, r#"[{"undecodable":"AAAA"},2.0]"#);

        // An empty packed run adds nothing.
        let mut out = String::new();
        write_field(index, &field, &[Raw::Len(&[]), Raw::Varint(2)], 0, &mut out);
        assert_eq!(out, "[2]");
        let mut out = String::new();
        write_field(index, &field, &[Raw::Varint(2), Raw::Len(&[])], 0, &mut out);
        assert_eq!(out, "[2]");

        // Repeated bytes from a real message.
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
        /// `PutRequest{key:"k"}` followed by unknown fields, the group ending with `end_tag`.
        fn with_unknowns(end_tag: u64) -> Vec<u8> {
            let mut bytes = pb::PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            }
            .encode_to_vec();
            // 100 varint 3, 101 fixed32 7, 102 fixed64 9, 100 again, 103 bytes "hi",
            // 104 group { 1: varint 1 }.
            for (tag, payload) in [
                (100u64 << 3, vec![3u8]),
                ((101 << 3) | 5, 7u32.to_le_bytes().to_vec()),
                ((102 << 3) | 1, 9u64.to_le_bytes().to_vec()),
                (100 << 3, vec![4]),
                ((103 << 3) | 2, vec![2, b'h', b'i']),
                ((104 << 3) | 3, vec![1 << 3, 1]),
            ] {
                prost::encoding::encode_varint(tag, &mut bytes);
                bytes.extend_from_slice(&payload);
            }
            prost::encoding::encode_varint(end_tag, &mut bytes);
            bytes
        }
        assert_eq!(
            decode_message("etcdserverpb.PutRequest", &with_unknowns((104 << 3) | 4)),
            r##"{"key":"k","#100":[3,4],"#101":7,"#102":9,"#103":"hi","#104":{"group":{"#1":1}}}"##
        );
        // A group closed by another field's end tag does not parse.
        let bad = with_unknowns((105 << 3) | 4);
        assert!(decode_message("etcdserverpb.PutRequest", &bad).starts_with("{\"undecodable\""));
        // Unknown message type: every field unknown.
        assert_eq!(
            decode_message("no.Such", &encode(&pb::LeaseGrantRequest { ttl: 3, id: 0 })),
            r##"{"#1":3}"##
        );
    }

    #[test]
    fn wire_type_mismatch_is_shown_raw() {
        // PutRequest.key (bytes, field 1) sent as a varint.
        assert_eq!(
            decode_message("etcdserverpb.PutRequest", &[1 << 3, 5]),
            r#"{"key":5}"#
        );
    }

    #[test]
    fn singular_message_given_twice_is_merged() {
        let mut bytes = encode(&pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                revision: 3,
                ..Default::default()
            }),
            ..Default::default()
        });
        bytes.extend(encode(&pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                raft_term: 9,
                ..Default::default()
            }),
            ..Default::default()
        }));
        assert_eq!(
            decode_message("etcdserverpb.RangeResponse", &bytes),
            r#"{"header":{"revision":3,"raft_term":9}}"#
        );
    }

    #[test]
    fn malformed_bytes_never_panic() {
        let cases: &[&[u8]] = &[
            &[0x0a, 0x05, b'a'], // length past the end
            &[0x08],             // varint cut short
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ], // > 64 bits
            &[0x00, 0x01],       // field number 0
            &[0x0e],             // wire type 6
            &[0x0c],             // end group, no start
            &[0x09, 1, 2, 3],    // fixed64 cut short
            &[0x0b, 0x08, 0x01], // group never ends
        ];
        for bytes in cases {
            let json = decode_message("etcdserverpb.PutRequest", bytes);
            let mut expected = String::from("{\"undecodable\":\"");
            base64(bytes, &mut expected);
            expected.push_str("\"}");
            assert_eq!(json, expected, "{bytes:?}");
        }
        // A malformed nested message is undecodable in place; the rest still decodes.
        let bytes = [0x0a, 0x02, 0x08, 0x80, 0x20, 0x05]; // header: cut varint; count: 5
        assert_eq!(
            decode_message("etcdserverpb.RangeResponse", &bytes),
            r#"{"header":{"undecodable":"CIA="},"count":5}"#
        );
        // Deep nesting stops at the limit without blowing the stack.
        let mut deep = Vec::new();
        for _ in 0..200 {
            let mut outer = vec![0x22]; // RequestOp.request_txn (TxnRequest)
            prost::encoding::encode_varint(deep.len() as u64 + 2, &mut outer);
            outer.push(0x12); // TxnRequest.success (RequestOp)
            prost::encoding::encode_varint(deep.len() as u64, &mut outer);
            outer.extend_from_slice(&deep);
            deep = outer;
        }
        let json = decode_message("etcdserverpb.RequestOp", &deep);
        assert!(json.contains("undecodable"), "{json}");
        // Random bytes: anything goes but a panic.
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
            let _ = decode_message("etcdserverpb.RangeResponse", &bytes);
        }
    }

    #[test]
    fn json_string_escaping() {
        let mut out = String::new();
        json_string("q\"b\\n\nr\rt\t\u{0}\u{1f}\u{7f}é☃\u{1F600}/", &mut out);
        assert_eq!(
            out,
            "\"q\\\"b\\\\n\\nr\\rt\\t\\u0000\\u001f\\u007fé☃\u{1F600}/\""
        );
        // Keys and values with quotes survive decoding too.
        let req = pb::PutRequest {
            key: b"\"}{\\".to_vec(),
            value: b"\x01".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            decode_message("etcdserverpb.PutRequest", &encode(&req)),
            r#"{"key":"\"}{\\","value":"\u0001"}"#
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            base64(input.as_bytes(), &mut out);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn rfc3339_timestamps() {
        let at = |ms: u64| {
            let mut out = String::new();
            rfc3339(UNIX_EPOCH + Duration::from_millis(ms), &mut out);
            out
        };
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_709_251_199_123), "2024-02-29T23:59:59.123Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        let mut out = String::new();
        rfc3339(UNIX_EPOCH - Duration::from_millis(1), &mut out);
        assert_eq!(out, "1969-12-31T23:59:59.999Z");
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

    #[test]
    fn sink_writes_one_line_per_record() {
        let buf = Shared::default();
        let sink = JsonLines::new(buf.clone());
        let request = pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let response = pb::PutResponse {
            header: Some(pb::ResponseHeader {
                revision: 5,
                ..Default::default()
            }),
            prev_kv: None,
        };
        sink.record(&WireRecord {
            method: "/etcdserverpb.KV/Put",
            endpoint: "http://127.0.0.1:2379",
            request: &request,
            response: Some(&response),
            status: None,
            latency: Duration::from_micros(1234),
        });
        let status = tonic::Status::unavailable("connection \"refused\"");
        sink.record(&WireRecord {
            method: "/etcdserverpb.KV/Put",
            endpoint: "http://127.0.0.1:2379",
            request: &request,
            response: None,
            status: Some(&status),
            latency: Duration::from_millis(2),
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(text.ends_with('\n'));
        let (ts, rest) = lines[0].split_at(32);
        assert!(
            ts.starts_with("{\"ts\":\"20") && ts.ends_with("Z\""),
            "{ts}"
        );
        assert_eq!(
            rest,
            concat!(
                r#","endpoint":"http://127.0.0.1:2379","method":"/etcdserverpb.KV/Put","#,
                r#""request":{"key":"k","value":"v"},"response":{"header":{"revision":5}},"#,
                r#""request_bytes":6,"response_bytes":4,"status":"OK","latency_ms":1.234}"#
            )
        );
        assert!(
            lines[1].ends_with(concat!(
                r#""response":null,"request_bytes":6,"response_bytes":0,"#,
                r#""status":{"code":"Unavailable","message":"connection \"refused\""},"#,
                r#""latency_ms":2.000}"#
            )),
            "{}",
            lines[1]
        );
        assert_eq!(sink.write_errors(), 0);
        assert!(format!("{sink:?}").contains("JsonLines"));
    }

    #[test]
    fn unknown_method_decodes_generically() {
        let request = pb::LeaseGrantRequest { ttl: 5, id: 0 };
        let line = render_record(
            &WireRecord {
                method: "/no.Such/Method",
                endpoint: "e",
                request: &request,
                response: None,
                status: None,
                latency: Duration::ZERO,
            },
            UNIX_EPOCH,
        );
        assert_eq!(
            line,
            concat!(
                r##"{"ts":"1970-01-01T00:00:00.000Z","endpoint":"e","method":"/no.Such/Method","##,
                r##""request":{"#1":5},"response":null,"request_bytes":2,"response_bytes":0,"##,
                r##""status":"OK","latency_ms":0.000}"##
            )
        );
    }

    #[test]
    fn write_errors_are_counted() {
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
        let request = pb::LeaseGrantRequest { ttl: 5, id: 0 };
        sink.record(&WireRecord {
            method: "/etcdserverpb.Lease/LeaseGrant",
            endpoint: "e",
            request: &request,
            response: None,
            status: None,
            latency: Duration::ZERO,
        });
        assert_eq!(sink.write_errors(), 1);
    }

    #[test]
    fn to_file_creates_and_truncates() {
        let path = std::env::temp_dir().join(format!("wirelog-test-{}.jsonl", std::process::id()));
        std::fs::write(&path, "old contents\n").unwrap();
        let sink = JsonLines::to_file(&path).unwrap();
        let request = pb::LeaseGrantRequest { ttl: 5, id: 0 };
        sink.record(&WireRecord {
            method: "/etcdserverpb.Lease/LeaseGrant",
            endpoint: "e",
            request: &request,
            response: None,
            status: None,
            latency: Duration::ZERO,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains(r#""request":{"TTL":5}"#), "{text}");
    }
}
