//! The JSON-lines wire log against real etcd servers, once per etcd version: every RPC gives
//! one valid JSON line naming its method, with requests and responses decoded from the bytes
//! that crossed the wire.
#![cfg(all(feature = "testkit", feature = "wire-log"))]

mod common;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use common::{ok, unique};
use etcd_lock::kv::{GetOptions, PutOptions};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp};
use etcd_lock::wirelog::JsonLines;
use etcd_lock::{Client, ClientOptions};
use serde_json::Value;

per_version!(every_rpc_is_one_decoded_json_line);

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    /// Every line written so far, parsed; panics on a line that is not one JSON object.
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => panic!("wire log is not UTF-8: {e}"),
        };
        assert!(text.is_empty() || text.ends_with('\n'), "{text}");
        text.lines()
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(v @ Value::Object(_)) => v,
                Ok(other) => panic!("not a JSON object: {other}"),
                Err(e) => panic!("not JSON ({e}): {line}"),
            })
            .collect()
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `v` as an i64, whether the log wrote it as a number or (beyond 2^53) as a string.
fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => i,
            None => panic!("not an integer: {n}"),
        },
        Value::String(s) => match s.parse() {
            Ok(i) => {
                assert!(
                    i64::unsigned_abs(i) > (1 << 53) - 1,
                    "small integer as a string: {s}"
                );
                i
            }
            Err(e) => panic!("not an integer string {s:?}: {e}"),
        },
        other => panic!("not an integer: {other}"),
    }
}

/// `v` as a u64, whether written as a number or (beyond 2^53) as a string.
fn uint(v: &Value) -> u64 {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(i) => i,
            None => panic!("not an unsigned integer: {n}"),
        },
        Value::String(s) => match s.parse::<u64>() {
            Ok(i) => {
                assert!(i > (1 << 53) - 1, "small integer as a string: {s}");
                i
            }
            Err(e) => panic!("not an unsigned integer string {s:?}: {e}"),
        },
        other => panic!("not an unsigned integer: {other}"),
    }
}

/// The fields every line has, whatever the RPC.
fn check_envelope(line: &Value, endpoint: &str) {
    let ts = line["ts"].as_str().unwrap_or_default();
    // 2024-05-01T12:34:56.789Z
    assert_eq!(ts.len(), 24, "ts {ts:?}");
    let b = ts.as_bytes();
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        assert_eq!(b[i], c, "ts {ts:?}");
    }
    assert!(ts.starts_with("20"), "ts {ts:?}");
    assert_eq!(line["endpoint"], endpoint, "{line}");
    assert!(
        line["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("/etcdserverpb.")),
        "{line}"
    );
    assert!(line["request"].is_object(), "{line}");
    assert!(line["request_bytes"].is_u64(), "{line}");
    assert!(line["response_bytes"].is_u64(), "{line}");
    assert!(
        line["latency_ms"].as_f64().is_some_and(|l| l >= 0.0),
        "{line}"
    );
    let obj = line
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        obj.unwrap_or_default(),
        [
            "attempt",
            "authority",
            "call",
            "endpoint",
            "kind",
            "latency_ms",
            "metadata",
            "method",
            "request",
            "request_bytes",
            "response",
            "response_bytes",
            "retry",
            "status",
            "ts"
        ],
        "{line}"
    );
}

fn ok_line(line: &Value) {
    assert_eq!(line["status"], "OK", "{line}");
    assert!(line["response"].is_object(), "{line}");
    assert!(
        line["response_bytes"].as_u64().is_some_and(|n| n > 0),
        "{line}"
    );
}

async fn every_rpc_is_one_decoded_json_line(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let endpoint = cluster.endpoints()[0].clone();
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let client = ok(
        ok(Client::builder(cluster.endpoints(), ClientOptions::new()))
            .wire_log(log.clone())
            .connect()
            .await,
    );
    assert!(buf.lines().is_empty(), "connecting is not an RPC");

    let p = unique("wirelog");
    let key = format!("{p}k \"quoted\"");
    let bin_key = format!("{p}bin");

    let put = ok(client.put(key.as_str(), "v1").await);
    ok(client
        .put_with(bin_key.as_str(), vec![0xff, 0x00, 0xfe], PutOptions::new())
        .await);
    let got = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(got.kvs().len(), 2);
    let txn = ok(client
        .txn(
            Txn::new()
                .when([Compare::create_revision(
                    key.as_str(),
                    CompareOp::Less,
                    put.revision() + 1,
                )])
                .and_then([
                    TxnOp::put(key.as_str(), "v2", PutOptions::new()),
                    TxnOp::get(key.as_str(), GetOptions::new()),
                ])
                .or_else([TxnOp::delete(key.as_str(), Default::default())]),
        )
        .await);
    assert!(txn.succeeded());
    let lease = ok(client.lease_grant(60).await);
    let missing = client.lease_revoke(0x7777).await;
    assert!(missing.is_err(), "{missing:?}");

    let lines = buf.lines();
    let methods: Vec<&str> = lines.iter().filter_map(|l| l["method"].as_str()).collect();
    assert_eq!(
        methods,
        [
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.KV/Range",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.Lease/LeaseGrant",
            "/etcdserverpb.Lease/LeaseRevoke",
        ],
        "{lines:#?}"
    );
    for line in &lines {
        check_envelope(line, &endpoint);
    }
    assert_eq!(log.write_errors(), 0);

    // Put: the key as text (quotes and all), the sizes of the encoded messages.
    let l = &lines[0];
    ok_line(l);
    assert_eq!(l["request"]["key"], key.as_str(), "{l}");
    assert_eq!(l["request"]["value"], "v1", "{l}");
    assert_eq!(
        l["request"].as_object().map(|o| o.len()),
        Some(2),
        "defaults are not on the wire: {l}"
    );
    assert_eq!(l["request_bytes"], key.len() as u64 + 6, "{l}");
    assert_eq!(
        int(&l["response"]["header"]["revision"]),
        put.revision(),
        "{l}"
    );
    assert_eq!(
        uint(&l["response"]["header"]["raft_term"]),
        put.header().raft_term
    );
    assert_eq!(
        uint(&l["response"]["header"]["member_id"]),
        put.header().member_id
    );
    assert_eq!(
        uint(&l["response"]["header"]["cluster_id"]),
        put.header().cluster_id,
        "{l}"
    );

    // Put of a value that is not UTF-8: base64.
    let l = &lines[1];
    ok_line(l);
    assert_eq!(l["request"]["key"], bin_key.as_str(), "{l}");
    assert_eq!(l["request"]["value"]["base64"], "/wD+", "{l}");

    // Range: request options and every returned key/value.
    let l = &lines[2];
    ok_line(l);
    assert_eq!(l["request"]["key"], p.as_str(), "{l}");
    assert!(l["request"]["range_end"].is_string(), "{l}");
    let resp = &l["response"];
    assert_eq!(int(&resp["header"]["revision"]), got.revision(), "{l}");
    assert_eq!(int(&resp["count"]), 2, "{l}");
    let kvs = resp["kvs"].as_array().cloned().unwrap_or_default();
    assert_eq!(kvs.len(), 2, "{l}");
    assert_eq!(kvs[0]["key"], bin_key.as_str(), "{l}");
    assert_eq!(kvs[0]["value"]["base64"], "/wD+", "{l}");
    assert_eq!(kvs[1]["key"], key.as_str(), "{l}");
    assert_eq!(kvs[1]["value"], "v1", "{l}");
    assert_eq!(int(&kvs[1]["create_revision"]), put.revision(), "{l}");
    assert_eq!(int(&kvs[1]["mod_revision"]), put.revision(), "{l}");
    assert_eq!(int(&kvs[1]["version"]), 1, "{l}");
    assert!(kvs[1].get("lease").is_none(), "lease 0 is not sent: {l}");

    // Txn: compares with enum names and oneof members, both branches, nested responses.
    let l = &lines[3];
    ok_line(l);
    let req = &l["request"];
    assert_eq!(req["compare"][0]["result"], "LESS", "{l}");
    assert_eq!(req["compare"][0]["target"], "CREATE", "{l}");
    assert_eq!(req["compare"][0]["key"], key.as_str(), "{l}");
    assert_eq!(
        int(&req["compare"][0]["create_revision"]),
        put.revision() + 1,
        "{l}"
    );
    assert_eq!(req["success"][0]["request_put"]["key"], key.as_str(), "{l}");
    assert_eq!(req["success"][0]["request_put"]["value"], "v2", "{l}");
    assert_eq!(
        req["success"][1]["request_range"]["key"],
        key.as_str(),
        "{l}"
    );
    assert_eq!(
        req["failure"][0]["request_delete_range"]["key"],
        key.as_str(),
        "{l}"
    );
    let resp = &l["response"];
    assert_eq!(resp["succeeded"], true, "{l}");
    assert_eq!(int(&resp["header"]["revision"]), txn.revision(), "{l}");
    assert!(
        resp["responses"][0]["response_put"]["header"].is_object(),
        "{l}"
    );
    let kv = &resp["responses"][1]["response_range"]["kvs"][0];
    assert_eq!(kv["key"], key.as_str(), "{l}");
    assert_eq!(kv["value"], "v2", "{l}");
    assert_eq!(int(&kv["version"]), 2, "{l}");

    // LeaseGrant: field names as in the .proto; the ID etcd picked.
    let l = &lines[4];
    ok_line(l);
    assert_eq!(l["request"], serde_json::json!({"TTL": 60}), "{l}");
    assert_eq!(int(&l["response"]["ID"]), lease.id(), "{l}");
    assert_eq!(int(&l["response"]["TTL"]), 60, "{l}");
    assert!(
        int(&l["response"]["header"]["revision"]) >= txn.revision(),
        "{l}"
    );

    // LeaseRevoke of a lease that does not exist: the status, no response.
    let l = &lines[5];
    assert_eq!(int(&l["request"]["ID"]), 0x7777, "{l}");
    assert!(l["response"].is_null(), "{l}");
    assert_eq!(l["response_bytes"], 0, "{l}");
    assert_eq!(l["status"]["code"], "NotFound", "{l}");
    assert!(
        l["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lease not found")),
        "{l}"
    );

    // The put line, for the record.
    eprintln!(
        "etcd {}: {}",
        bin.version(),
        String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|e| e.into_inner()))
            .lines()
            .next()
            .unwrap_or_default()
    );
}
