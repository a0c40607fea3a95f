//! Protobuf bytes to JSON: prost-reflect parses them against the descriptors of our `proto/`
//! files; the rendering rules (see the [module docs](super)) are ours.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, Value};
use prost_types::field_descriptor_proto::Type;
use prost_types::FileDescriptorSet;

use crate::proto::FILE_DESCRIPTOR_SET;

/// The descriptors, plus each method's input and output type by gRPC path.
#[derive(Debug)]
pub(super) struct Pool {
    pool: DescriptorPool,
    methods: HashMap<String, (MessageDescriptor, MessageDescriptor)>,
    /// Each method's path and whether its requests and its responses are streams.
    streaming: HashMap<String, (bool, bool)>,
}

/// The pool, built once. `None` only if our own descriptor set were unusable (a build error).
pub(super) fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(build).as_ref()
}

fn build() -> Option<Pool> {
    let mut set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).ok()?;
    // `string` fields are declared `bytes` here: prost-reflect refuses a message whose string
    // is not UTF-8, but the log shows what was sent, and renders both types alike anyway.
    for file in &mut set.file {
        let mut stack: Vec<&mut prost_types::DescriptorProto> =
            file.message_type.iter_mut().collect();
        while let Some(message) = stack.pop() {
            for field in &mut message.field {
                if field.r#type() == Type::String {
                    field.set_type(Type::Bytes);
                }
            }
            stack.extend(message.nested_type.iter_mut());
        }
    }
    let pool = DescriptorPool::from_file_descriptor_set(set).ok()?;
    let mut methods = HashMap::new();
    let mut streaming = HashMap::new();
    for service in pool.services() {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            streaming.insert(
                path.clone(),
                (method.is_client_streaming(), method.is_server_streaming()),
            );
            methods.insert(path, (method.input(), method.output()));
        }
    }
    Some(Pool {
        pool,
        methods,
        streaming,
    })
}

impl Pool {
    /// The request and response types of a gRPC method path.
    pub(super) fn method(&self, path: &str) -> Option<&(MessageDescriptor, MessageDescriptor)> {
        self.methods.get(path)
    }

    /// A method the descriptors declare: its path, borrowed from the pool, and whether its
    /// requests and its responses are streams.
    pub(super) fn streaming(&self, path: &str) -> Option<(&str, bool, bool)> {
        self.streaming
            .get_key_value(path)
            .map(|(path, &(requests, responses))| (path.as_str(), requests, responses))
    }
}

/// Writes `bytes`, a message of type `message` (`None`: unknown type), as JSON.
pub(super) fn write_message(message: Option<&MessageDescriptor>, bytes: &[u8], out: &mut String) {
    let Some(descriptor) = message else {
        // No descriptor: every field is unknown.
        match raw_fields(bytes) {
            Some(fields) => write_raw_fields(&fields, out, true),
            None => undecodable(bytes, out),
        }
        return;
    };
    match DynamicMessage::decode(descriptor.clone(), bytes) {
        Ok(decoded) => write_dynamic(&decoded, out),
        Err(_) => undecodable(bytes, out),
    }
}

/// The JSON for one encoded message of type `type_name` (a full protobuf name such as
/// `etcdserverpb.PutRequest` or `mvccpb.KeyValue`, with or without a leading dot).
///
/// An unknown type name decodes every field as unknown (`"#<number>": <raw value>`); bytes that
/// are not a protobuf message of that type give `{"undecodable":"<base64>"}`. Never panics.
pub fn decode_message(type_name: &str, bytes: &[u8]) -> String {
    let mut out = String::with_capacity(64 + 2 * bytes.len());
    let name = type_name.strip_prefix('.').unwrap_or(type_name);
    let descriptor = pool().and_then(|p| p.pool.get_message_by_name(name));
    write_message(descriptor.as_ref(), bytes, &mut out);
    out
}

fn undecodable(bytes: &[u8], out: &mut String) {
    out.push_str("{\"undecodable\":\"");
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
    out.push_str("\"}");
}

/// Known fields in field-number order (oneof members under their own name), then unknown ones.
fn write_dynamic(message: &DynamicMessage, out: &mut String) {
    out.push('{');
    let mut first = true;
    for (field, value) in message.fields() {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        json_string(field.name(), out);
        out.push(':');
        write_value(&field.kind(), value, out);
    }
    let mut unknown = Vec::new();
    for field in message.unknown_fields() {
        field.encode(&mut unknown);
    }
    if !unknown.is_empty() {
        match raw_fields(&unknown) {
            Some(fields) => {
                if !first {
                    out.push(',');
                }
                write_raw_fields(&fields, out, false);
            }
            // prost-reflect already parsed them: cannot happen, but stay visible if it does.
            None => {
                if !first {
                    out.push(',');
                }
                out.push_str("\"#unknown\":");
                undecodable(&unknown, out);
            }
        }
    }
    out.push('}');
}

fn write_value(kind: &Kind, value: &Value, out: &mut String) {
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(v) => {
            let _ = write!(out, "{v}");
        }
        Value::U32(v) => {
            let _ = write!(out, "{v}");
        }
        Value::I64(v) => int(*v, out),
        Value::U64(v) => uint(*v, out),
        Value::F32(v) => {
            if v.is_finite() {
                let _ = write!(out, "{v:?}");
            } else {
                float(f64::from(*v), out);
            }
        }
        Value::F64(v) => float(*v, out),
        Value::String(s) => json_string(s, out),
        Value::Bytes(b) => text_or_base64(b, out),
        Value::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(v) => json_string(v.name(), out),
            None => {
                let _ = write!(out, "{n}");
            }
        },
        Value::Message(m) => write_dynamic(m, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(kind, item, out);
            }
            out.push(']');
        }
        Value::Map(map) => {
            let value_kind = match kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other.clone(),
            };
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let key = match key {
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(v) => v.to_string(),
                    MapKey::I64(v) => v.to_string(),
                    MapKey::U32(v) => v.to_string(),
                    MapKey::U64(v) => v.to_string(),
                    MapKey::String(s) => s.clone(),
                };
                json_string(&key, out);
                out.push(':');
                write_value(&value_kind, value, out);
            }
            out.push('}');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// fields without a descriptor

/// One value of a field without a descriptor, as its wire type gives it.
#[derive(Debug, PartialEq)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
    /// The fields between a start-group and its end-group tag.
    Group(Vec<(u32, Raw<'a>)>),
}

/// Splits `bytes` into `(number, value)` pairs in wire order; `None` if they do not parse.
fn raw_fields(bytes: &[u8]) -> Option<Vec<(u32, Raw<'_>)>> {
    let mut rest = bytes;
    let fields = raw_until(&mut rest, None, 0)?;
    rest.is_empty().then_some(fields)
}

/// Reads fields until the input ends (`group: None`) or the end tag of group `group`.
fn raw_until<'a>(
    rest: &mut &'a [u8],
    group: Option<u32>,
    depth: usize,
) -> Option<Vec<(u32, Raw<'a>)>> {
    if depth > 64 {
        return None;
    }
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let key = prost::encoding::decode_varint(rest).ok()?;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n > 0)?;
        let value = match key & 7 {
            0 => Raw::Varint(prost::encoding::decode_varint(rest).ok()?),
            1 => {
                let (head, tail) = rest.split_first_chunk::<8>()?;
                *rest = tail;
                Raw::Fixed64(u64::from_le_bytes(*head))
            }
            2 => {
                let len = usize::try_from(prost::encoding::decode_varint(rest).ok()?).ok()?;
                if len > rest.len() {
                    return None;
                }
                let (head, tail) = rest.split_at(len);
                *rest = tail;
                Raw::Len(head)
            }
            3 => Raw::Group(raw_until(rest, Some(number), depth + 1)?),
            4 => {
                return (group == Some(number)).then_some(fields);
            }
            5 => {
                let (head, tail) = rest.split_first_chunk::<4>()?;
                *rest = tail;
                Raw::Fixed32(u32::from_le_bytes(*head))
            }
            _ => return None,
        };
        fields.push((number, value));
    }
    // The input ended: fine at the top, a group left open otherwise.
    group.is_none().then_some(fields)
}

/// `"#N": value` members (an array when a number occurs more than once), in first-seen order;
/// `braces` wraps them in an object.
fn write_raw_fields(fields: &[(u32, Raw<'_>)], out: &mut String, braces: bool) {
    let mut order: Vec<u32> = Vec::new();
    let mut by_number: HashMap<u32, Vec<&Raw<'_>>> = HashMap::new();
    for (number, value) in fields {
        let values = by_number.entry(*number).or_default();
        if values.is_empty() {
            order.push(*number);
        }
        values.push(value);
    }
    if braces {
        out.push('{');
    }
    for (i, number) in order.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"#{number}\":");
        match by_number[number].as_slice() {
            [only] => write_raw(only, out),
            values => {
                out.push('[');
                for (j, value) in values.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_raw(value, out);
                }
                out.push(']');
            }
        }
    }
    if braces {
        out.push('}');
    }
}

/// A value without a descriptor: integers unsigned, length-delimited as text or base64, a group
/// as `{"group":{...its fields, unknown...}}`.
fn write_raw(value: &Raw<'_>, out: &mut String) {
    match value {
        Raw::Varint(v) | Raw::Fixed64(v) => uint(*v, out),
        Raw::Fixed32(v) => {
            let _ = write!(out, "{v}");
        }
        Raw::Len(bytes) => text_or_base64(bytes, out),
        Raw::Group(fields) => {
            out.push_str("{\"group\":");
            write_raw_fields(fields, out, true);
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

pub(super) fn uint(v: u64, out: &mut String) {
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
            base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
            out.push_str("\"}");
        }
    }
}

/// `s` as a quoted JSON string.
pub(super) fn json_string(s: &str, out: &mut String) {
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

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(super) fn rfc3339(t: SystemTime, out: &mut String) {
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
