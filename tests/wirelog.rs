//! The JSON-lines wire log against real etcd servers, once per etcd version: every unary call
//! attempt gives one valid JSON line naming its method, with requests and responses decoded
//! from the bytes that crossed the wire; every stream (Watch, LeaseKeepAlive, Observe, Snapshot) gives
//! an open line, one line per message each way and a close line.
#![cfg(all(feature = "testkit", feature = "wire-log"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ok, unique};
use etcd_lock::election::{Elector, ServiceElection};
use etcd_lock::kv::{GetOptions, PutOptions};
use etcd_lock::lock::{Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp};
use etcd_lock::wirelog::JsonLines;
use etcd_lock::{Client, ClientOptions};
use serde_json::Value;

per_version!(
    every_rpc_is_one_decoded_json_line,
    contended_recipe_lock_shows_its_streams,
    contended_service_lock,
    election_observe_stream,
    retried_read_logs_each_attempt,
    token_and_password_never_logged,
    concurrent_lines_never_interleave,
    killed_member_ends_streams_as_connection_lost,
    leaderless_member_ends_streams_with_trailers,
    snapshot_stream_is_logged,
);

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

/// A client for `cluster` logging to `log`.
async fn logged(endpoints: &[String], log: &Arc<JsonLines>) -> Client {
    ok(ok(Client::builder(endpoints, ClientOptions::new()))
        .wire_log(log.clone())
        .connect()
        .await)
}

fn kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

/// The ids of the streams opened for `method`.
fn streams(lines: &[Value], method: &str) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l["kind"] == "open" && l["method"] == method)
        .filter_map(|l| l["stream"].as_u64())
        .collect()
}

/// Polls the log until `done` holds for its lines (bounded), then returns them.
async fn wait_lines(buf: &Shared, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = buf.lines();
        if done(&lines) {
            return lines;
        }
        if Instant::now() > deadline {
            let streams: Vec<String> = lines
                .iter()
                .filter(|l| l["kind"] == "open" || l["kind"] == "close")
                .map(|l| l.to_string())
                .collect();
            panic!("{what}: {streams:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every opened stream has exactly one close line, after its messages, whose counts match
/// the message lines; every message line belongs to an opened stream and counts from 1.
fn check_stream_bookkeeping(lines: &[Value]) {
    let mut opened: BTreeMap<u64, usize> = BTreeMap::new();
    let mut sent: BTreeMap<u64, u64> = BTreeMap::new();
    let mut received: BTreeMap<u64, u64> = BTreeMap::new();
    let mut closed: BTreeSet<u64> = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(id) = l["stream"].as_u64() else {
            continue;
        };
        match l["kind"].as_str() {
            Some("open") => {
                assert!(opened.insert(id, i).is_none(), "opened twice: {l}");
                assert!(l["metadata"].is_object(), "{l}");
                assert!(l["authority"].is_string(), "{l}");
            }
            Some(k @ ("send" | "recv")) => {
                assert!(opened.contains_key(&id), "message before open: {l}");
                assert!(!closed.contains(&id), "message after close: {l}");
                let counter = if k == "send" {
                    &mut sent
                } else {
                    &mut received
                };
                let seq = counter.entry(id).or_default();
                *seq += 1;
                assert_eq!(l["seq"], *seq, "{l}");
                assert!(l["message"].is_object(), "{l}");
                assert!(
                    l["message"].get("undecodable").is_none(),
                    "undecodable: {l}"
                );
                assert!(l["bytes"].is_u64(), "{l}");
            }
            Some("close") => {
                assert!(opened.contains_key(&id), "close before open: {l}");
                assert!(closed.insert(id), "closed twice: {l}");
                assert_eq!(l["sent"], sent.get(&id).copied().unwrap_or(0), "{l}");
                assert_eq!(
                    l["received"],
                    received.get(&id).copied().unwrap_or(0),
                    "{l}"
                );
            }
            _ => panic!("unexpected stream line {l}"),
        }
    }
    for id in opened.keys() {
        assert!(closed.contains(id), "stream {id} never closed: {lines:#?}");
    }
}

/// All opened streams closed (the condition for [`wait_lines`] after dropping clients).
fn all_closed(lines: &[Value]) -> bool {
    let opened = kind(lines, "open").len();
    opened > 0 && kind(lines, "close").len() >= opened
}

/// A holder and a waiter on a recipe lock, each with its own client and a 2 s session, both
/// logging to one sink. The log shows the waiter's watch stream (its create request and the
/// DELETE event of the holder's key), the waiter's Txn after that event, the keep-alive
/// send/recv pairs, and a close line for every stream once the clients are dropped.
async fn contended_recipe_lock_shows_its_streams(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let name = format!("{}lock", unique("wirelog-recipe"));
    let holder_client = logged(&cluster.endpoints(), &log).await;
    let waiter_client = logged(&cluster.endpoints(), &log).await;
    let holder_session = common::session(&holder_client, 2).await;
    let waiter_session = common::session(&waiter_client, 2).await;
    let holder = ok(RecipeLock::new()
        .lock(&holder_session, name.as_bytes())
        .await);
    let waiter = {
        let (session, name) = (waiter_session.clone(), name.clone());
        tokio::spawn(async move { RecipeLock::new().lock(&session, name.as_bytes()).await })
    };
    let observer = common::client(&cluster).await;
    common::wait_key_count(&observer, &name, 2, Duration::from_secs(10)).await;
    // Long enough for keep-alives (every TTL/3) to flow on both sessions.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let holder_key = holder.key_str();
    ok(holder.unlock().await);
    let guard = ok(
        ok(tokio::time::timeout(Duration::from_secs(10), waiter).await).map_err(|e| e.to_string()),
    );
    let guard = ok(guard);
    let waiter_key = guard.key_str();
    ok(guard.unlock().await);
    ok(holder_session.close().await);
    ok(waiter_session.close().await);
    drop((holder_client, waiter_client));
    let lines = wait_lines(&buf, "every stream closed", all_closed).await;
    check_stream_bookkeeping(&lines);

    // The watch stream: opened with require-leader, its create request on the lock prefix.
    let watches = streams(&lines, "/etcdserverpb.Watch/Watch");
    assert!(!watches.is_empty(), "no watch stream: {lines:#?}");
    let open = lines
        .iter()
        .find(|l| l["kind"] == "open" && l["method"] == "/etcdserverpb.Watch/Watch");
    let open = open.cloned().unwrap_or_default();
    assert_eq!(open["metadata"]["hasleader"], "true", "{open}");
    assert_eq!(open["endpoint"], cluster.endpoints()[0].as_str(), "{open}");
    let prefix = format!("{name}/");
    let create = lines
        .iter()
        .find(|l| l["kind"] == "send" && l["message"]["create_request"]["key"] == prefix.as_str());
    let create = match create {
        Some(c) => c,
        None => panic!("no watch create on {prefix}: {lines:#?}"),
    };
    let stream = create["stream"].clone();
    assert!(
        create["message"]["create_request"]["range_end"].is_string(),
        "{create}"
    );
    // etcd confirms the create on the same stream.
    assert!(
        lines.iter().any(|l| l["kind"] == "recv"
            && l["stream"] == stream
            && l["message"]["created"] == true),
        "{lines:#?}"
    );
    // The DELETE of the holder's key reaches the watch; the waiter's Txn follows it.
    let delete_at = lines.iter().position(|l| {
        l["kind"] == "recv"
            && l["stream"] == stream
            && l["message"]["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e["type"] == "DELETE" && e["kv"]["key"] == holder_key.as_str())
            })
    });
    let delete_at = match delete_at {
        Some(i) => i,
        None => panic!("no DELETE of {holder_key}: {lines:#?}"),
    };
    let delete = &lines[delete_at];
    let recv_bytes = delete["bytes"].as_u64().unwrap_or(0);
    assert!(recv_bytes > holder_key.len() as u64, "{delete}");
    let wake = lines[delete_at..].iter().find(|l| {
        l["kind"] == "call"
            && l["method"] == "/etcdserverpb.KV/Txn"
            && l["request"].to_string().contains(&waiter_key)
    });
    match wake {
        Some(t) => {
            assert_eq!(t["status"], "OK", "{t}");
            assert!(t["metadata"]["grpc-timeout"].is_string(), "{t}");
        }
        None => panic!("no Txn of the waiter after the DELETE: {lines:#?}"),
    }
    // The waiter's very first Txn (its create) came before the DELETE.
    assert!(
        lines[..delete_at].iter().any(|l| l["kind"] == "call"
            && l["method"] == "/etcdserverpb.KV/Txn"
            && l["request"].to_string().contains(&waiter_key)),
        "{lines:#?}"
    );

    // Keep-alive streams: one per session, requests and answers paired by seq, at least two
    // refreshes after the first.
    let keep_alives = streams(&lines, "/etcdserverpb.Lease/LeaseKeepAlive");
    assert!(keep_alives.len() >= 2, "{lines:#?}");
    for id in &keep_alives {
        let sends: Vec<&Value> = lines
            .iter()
            .filter(|l| l["kind"] == "send" && l["stream"] == *id)
            .collect();
        let recvs: Vec<&Value> = lines
            .iter()
            .filter(|l| l["kind"] == "recv" && l["stream"] == *id)
            .collect();
        assert!(sends.len() >= 2, "stream {id}: {sends:#?}");
        assert!(recvs.len() >= 2, "stream {id}: {recvs:#?}");
        for (send, recv) in sends.iter().zip(&recvs) {
            assert_eq!(
                send["message"]["ID"], recv["message"]["ID"],
                "{send} {recv}"
            );
            assert!(
                recv["message"]["TTL"].as_i64().is_some_and(|t| t > 0),
                "{recv}"
            );
            // LeaseKeepAliveRequest{ID}: a tag and a varint.
            let id_len = (64 - uint(&send["message"]["ID"]).leading_zeros() as u64).div_ceil(7);
            assert_eq!(send["bytes"], 1 + id_len, "{send}");
        }
    }
    // For the docs: the waiter's story as raw lines (`--nocapture`).
    let text =
        String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    let raw: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let watch = l["stream"] == stream;
        let waiter_txn =
            l["method"] == "/etcdserverpb.KV/Txn" && l["request"].to_string().contains(&waiter_key);
        if watch || waiter_txn {
            eprintln!("etcd {} wire: {}", bin.version(), raw[i]);
        }
    }
    // Closing: we dropped every stream.
    for close in kind(&lines, "close") {
        assert_eq!(close["how"], "cancelled", "{close}");
    }
}

/// The service flavour: both `Lock` calls with the key etcd answered, and the holder's release
/// (a `KV/Txn` deleting its key on its create revision, never `Lock/Unlock`); the waiter's
/// `Lock` returns only after that release.
async fn contended_service_lock(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let name = format!("{}lock", unique("wirelog-service"));
    let client = logged(&cluster.endpoints(), &log).await;
    let holder_session = common::session(&client, 2).await;
    let waiter_session = common::session(&client, 2).await;
    let holder = ok(ServiceLock::new()
        .lock(&holder_session, name.as_bytes())
        .await);
    let waiter = {
        let (session, name) = (waiter_session.clone(), name.clone());
        tokio::spawn(async move { ServiceLock::new().lock(&session, name.as_bytes()).await })
    };
    common::wait_key_count(&client, &name, 2, Duration::from_secs(10)).await;
    // Long enough for both sessions' first keep-alive (at TTL/3).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ok(holder.unlock().await);
    let guard = ok(
        ok(tokio::time::timeout(Duration::from_secs(10), waiter).await).map_err(|e| e.to_string()),
    );
    let guard = ok(guard);
    let waiter_key = guard.key_str();
    ok(guard.unlock().await);
    let lines = buf.lines();
    let locks: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "call" && l["method"] == "/v3lockpb.Lock/Lock")
        .collect();
    assert_eq!(locks.len(), 2, "{lines:#?}");
    for l in &locks {
        assert_eq!(l["request"]["name"], name.as_str(), "{l}");
        assert!(
            l["request"]["lease"].is_i64() || l["request"]["lease"].is_string(),
            "{l}"
        );
        assert_eq!(l["status"], "OK", "{l}");
    }
    assert!(
        !lines
            .iter()
            .any(|l| l["kind"] == "call" && l["method"] == "/v3lockpb.Lock/Unlock"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l["kind"] == "call"
            && l["method"] == "/etcdserverpb.KV/Txn"
            && l["request"]["compare"][0]["target"] == "CREATE"
            && l["request"]["success"][0]["request_delete_range"]["key"].is_string()),
        "{lines:#?}"
    );
    // The waiter's Lock was answered only after the holder unlocked, a second later.
    let waited = lines
        .iter()
        .find(|l| l["response"]["key"] == waiter_key.as_str());
    let waited = waited.cloned().unwrap_or_default();
    assert!(
        waited["latency_ms"].as_f64().is_some_and(|ms| ms >= 900.0),
        "{waited}"
    );
    ok(holder_session.close().await);
    ok(waiter_session.close().await);
    drop(client);
    let lines = wait_lines(&buf, "every stream closed", all_closed).await;
    check_stream_bookkeeping(&lines);
    assert_eq!(
        streams(&lines, "/etcdserverpb.Lease/LeaseKeepAlive").len(),
        2,
        "{lines:#?}"
    );
}

/// `Election/Observe`: the open line, the request, the leader as received, and the close
/// when the observer is dropped.
async fn election_observe_stream(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let name = format!("{}election", unique("wirelog-observe"));
    let client = logged(&cluster.endpoints(), &log).await;
    let session = common::session(&client, 10).await;
    let leader = ok(ServiceElection::new()
        .campaign(&session, name.as_bytes(), b"v1")
        .await);
    let mut observer = ok(ServiceElection::new()
        .observe(&client, name.as_bytes())
        .await);
    let seen = ok(
        ok(tokio::time::timeout(Duration::from_secs(10), observer.next()).await)
            .ok_or("observer ended"),
    );
    assert_eq!(ok(seen).value_str(), "v1");
    drop(observer);
    let lines = wait_lines(&buf, "observe closed", |lines| {
        lines
            .iter()
            .any(|l| l["kind"] == "close" && l["method"] == "/v3electionpb.Election/Observe")
    })
    .await;
    let ids = streams(&lines, "/v3electionpb.Election/Observe");
    assert_eq!(ids.len(), 1, "{lines:#?}");
    let of = |k: &str| {
        lines
            .iter()
            .filter(|l| l["kind"] == k && l["stream"] == ids[0])
            .cloned()
            .collect::<Vec<_>>()
    };
    let sends = of("send");
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert_eq!(sends[0]["message"]["name"], name.as_str());
    let recvs = of("recv");
    assert!(!recvs.is_empty());
    assert_eq!(recvs[0]["message"]["kv"]["key"], leader.key_str().as_str());
    assert_eq!(recvs[0]["message"]["kv"]["value"], "v1");
    let close = of("close");
    assert_eq!(close[0]["how"], "cancelled", "{close:?}");
    assert_eq!(close[0]["sent"], 1);
    ok(leader.resign().await);
    ok(session.close().await);
}

/// A read sent first to a member that was just killed, then to a live one: one line per
/// attempt with one call id, the first with the transport cause and a retry reason.
async fn retried_read_logs_each_attempt(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let leader = ok(cluster.wait_leader(Duration::from_secs(10)));
    let follower = (leader + 1) % 3;
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(follower);
    let dead = endpoints[0].clone();
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let client = logged(&endpoints, &log).await;
    ok(client.get("wirelog/retry").await);
    let first = buf.lines();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0]["endpoint"],
        dead.as_str(),
        "the client starts on the first endpoint"
    );
    ok(cluster.member_mut(follower).kill());
    ok(client.get("wirelog/retry").await);
    let lines = buf.lines();
    let attempts = &lines[1..];
    assert!(attempts.len() >= 2, "{lines:#?}");
    let call = &attempts[0]["call"];
    assert_ne!(*call, first[0]["call"]);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["call"], *call, "{a}");
        assert_eq!(a["attempt"], i as u64 + 1, "{a}");
        assert_eq!(a["method"], "/etcdserverpb.KV/Range", "{a}");
        assert_eq!(a["request"], attempts[0]["request"], "{a}");
    }
    let failed = &attempts[0];
    assert_eq!(failed["endpoint"], dead.as_str(), "{failed}");
    // Refused (Unavailable) or cut mid-connection (Unknown "transport error", Cancelled), as
    // the kill races the client's connection.
    assert!(
        ["Unavailable", "Unknown", "Cancelled"]
            .contains(&failed["status"]["code"].as_str().unwrap_or("")),
        "{failed}"
    );
    assert!(failed["status"]["cause"].is_string(), "{failed}");
    assert!(failed["response"].is_null(), "{failed}");
    assert_eq!(failed["response_bytes"], 0, "{failed}");
    assert!(failed["retry"]["reason"].is_string(), "{failed}");
    let last = &attempts[attempts.len() - 1];
    assert_ne!(last["endpoint"], dead.as_str(), "{last}");
    assert_eq!(last["status"], "OK", "{last}");
    assert!(last["retry"].is_null(), "{last}");
}

/// With auth, every call carries the token; the log shows it only as `"<redacted>"`, and
/// neither the password nor a token value appears anywhere in the log.
async fn token_and_password_never_logged(bin: &EtcdBinary) {
    const PASSWORD: &str = "wirelog-secret-pw";
    let cluster = common::single(bin);
    {
        let admin = common::client(&cluster).await;
        ok(admin.user_add("root", PASSWORD).await);
        ok(admin.role_add("root").await);
        ok(admin.user_grant_role("root", "root").await);
        ok(admin.auth_enable().await);
    }
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let client = ok(
        ok(Client::builder(cluster.endpoints(), ClientOptions::new()))
            .auth("root", PASSWORD)
            .wire_log(log.clone())
            .connect()
            .await,
    );
    ok(client.put("wirelog/auth", "1").await);
    let mut watcher = ok(client.watch("wirelog/auth").await);
    ok(client.put("wirelog/auth", "2").await);
    let batch = ok(
        tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .map_err(|_| "no event"),
    );
    assert!(batch.is_some_and(|b| b.is_ok()));
    drop(watcher);
    drop(client);
    let text =
        String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(!text.contains(PASSWORD), "{text}");
    // etcd's simple tokens look like `<16 letters>.<index>`.
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')) {
        if let Some((head, tail)) = word.split_once('.') {
            let looks_like_token = head.len() >= 16
                && head.chars().all(|c| c.is_ascii_alphabetic())
                && !tail.is_empty()
                && tail.chars().all(|c| c.is_ascii_digit());
            assert!(!looks_like_token, "token-like {word:?} in {text}");
        }
    }
    let lines = buf.lines();
    let auth = lines
        .iter()
        .find(|l| l["method"] == "/etcdserverpb.Auth/Authenticate");
    let auth = auth.cloned().unwrap_or_default();
    assert_eq!(auth["request"], "<redacted>", "{auth}");
    assert_eq!(auth["response"], "<redacted>", "{auth}");
    assert!(
        auth["request_bytes"].as_u64().is_some_and(|n| n > 0),
        "{auth}"
    );
    assert!(auth["metadata"].get("token").is_none(), "{auth}");
    let puts: Vec<&Value> = lines
        .iter()
        .filter(|l| l["method"] == "/etcdserverpb.KV/Put")
        .collect();
    assert_eq!(puts.len(), 2);
    for l in puts {
        assert_eq!(l["metadata"]["token"], "<redacted>", "{l}");
    }
    let open = lines.iter().find(|l| l["kind"] == "open");
    let open = open.cloned().unwrap_or_default();
    assert_eq!(open["metadata"]["token"], "<redacted>", "{open}");
    assert_eq!(open["metadata"]["hasleader"], "true", "{open}");
}

/// 16 calls in flight at once plus a watch stream: every line is one JSON object (the
/// parser would fail on an interleaved line), each call one line with its own id.
async fn concurrent_lines_never_interleave(bin: &EtcdBinary) {
    let cluster: Cluster = common::single(bin);
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let client = logged(&cluster.endpoints(), &log).await;
    let p = unique("wirelog-concurrent");
    let mut watcher = ok(client
        .watch_with(
            p.as_str(),
            etcd_lock::watch::WatchOptions::new().with_prefix(),
        )
        .await);
    let value = "x".repeat(4096);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (client, key, value) = (client.clone(), format!("{p}{i}"), value.clone());
            tokio::spawn(async move { client.put(key, value).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        ok(ok(t.await.map_err(|e| e.to_string())));
    }
    let mut events = 0;
    while events < 16 {
        let batch = ok(
            tokio::time::timeout(Duration::from_secs(10), watcher.next())
                .await
                .map_err(|_| "no event"),
        );
        events += ok(ok(batch.ok_or("watch ended"))).events().len();
    }
    let lines = buf.lines();
    let puts: Vec<&Value> = lines
        .iter()
        .filter(|l| l["method"] == "/etcdserverpb.KV/Put")
        .collect();
    assert_eq!(puts.len(), 16);
    let ids: BTreeSet<u64> = puts.iter().filter_map(|l| l["call"].as_u64()).collect();
    assert_eq!(ids.len(), 16);
    for l in &puts {
        assert_eq!(l["request"]["value"], value.as_str());
        // key + value + tags and lengths.
        let key_len = l["request"]["key"].as_str().map_or(0, str::len) as u64;
        assert_eq!(l["request_bytes"], key_len + 4096 + 5, "{l}");
    }
    let recv_events: usize = lines
        .iter()
        .filter(|l| l["kind"] == "recv")
        .map(|l| l["message"]["events"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(recv_events, 16);
}

/// A watch stream whose member is killed ends with `connection_lost`, the Unavailable status
/// and the transport cause; it is told apart from our own cancel.
async fn killed_member_ends_streams_as_connection_lost(bin: &EtcdBinary) {
    let mut cluster = common::single(bin);
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let client = logged(&cluster.endpoints(), &log).await;
    let watcher = ok(client.watch("wirelog/killed").await);
    let lines = wait_lines(&buf, "watch created", |lines| {
        lines
            .iter()
            .any(|l| l["kind"] == "recv" && l["message"]["created"] == true)
    })
    .await;
    let stream = streams(&lines, "/etcdserverpb.Watch/Watch")[0];
    ok(cluster.member_mut(0).kill());
    let lines = wait_lines(&buf, "watch stream closed", |lines| {
        lines
            .iter()
            .any(|l| l["kind"] == "close" && l["stream"] == stream)
    })
    .await;
    let close = lines
        .iter()
        .find(|l| l["kind"] == "close" && l["stream"] == stream);
    let close = close.cloned().unwrap_or_default();
    assert_eq!(close["how"], "connection_lost", "{close}");
    assert!(close["status"]["code"].is_string(), "{close}");
    assert!(close["status"]["cause"].is_string(), "{close}");
    assert_eq!(close["sent"], 1, "{close}");
    drop(watcher);
    drop(client);
}

/// A member that loses its leader ends the require-leader watch stream itself, with
/// grpc-status Unavailable "no leader" in trailers: logged as `trailers`, without a cause.
async fn leaderless_member_ends_streams_with_trailers(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let endpoint = cluster.endpoints()[0].clone();
    let client = logged(&[endpoint], &log).await;
    let watcher = ok(client.watch("wirelog/leaderless").await);
    let lines = wait_lines(&buf, "watch created", |lines| {
        lines
            .iter()
            .any(|l| l["kind"] == "recv" && l["message"]["created"] == true)
    })
    .await;
    let stream = streams(&lines, "/etcdserverpb.Watch/Watch")[0];
    ok(cluster.member_mut(1).kill());
    ok(cluster.member_mut(2).kill());
    // About three election timeouts (1 s each by default) after the leader is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    let close = loop {
        let lines = buf.lines();
        if let Some(close) = lines
            .iter()
            .find(|l| l["kind"] == "close" && l["stream"] == stream)
        {
            break close.clone();
        }
        assert!(Instant::now() < deadline, "watch stream never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(close["how"], "trailers", "{close}");
    assert_eq!(close["status"]["code"], "Unavailable", "{close}");
    assert!(
        close["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no leader")),
        "{close}"
    );
    assert!(close["status"].get("cause").is_none(), "{close}");
    drop(watcher);
    drop(client);
}

/// `Maintenance/Snapshot` (a small keyspace): the open line, the one request (seq 1), one recv
/// line per message whose `bytes` add up to the received payload sizes, and a close with
/// `how: trailers`, status OK, counting one message sent and every message received.
async fn snapshot_stream_is_logged(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let buf = Shared::default();
    let log = Arc::new(JsonLines::new(buf.clone()));
    let client = logged(&cluster.endpoints(), &log).await;
    let prefix = unique("wirelog-snapshot");
    for i in 0..20 {
        ok(client.put(format!("{prefix}/{i}"), vec![b'v'; 1000]).await);
    }
    // The client's counters add up the encoded size of every message it received.
    let before = client.stats();
    let mut out = Vec::new();
    let info = ok(client.snapshot(&mut out).await);
    let after = client.stats();
    assert_eq!(info.bytes, out.len() as u64);
    let messages = after.stream_messages_received - before.stream_messages_received;
    let payload = after.bytes_received - before.bytes_received;
    assert!(messages >= 2, "{messages} messages: data then digest");
    let method = "/etcdserverpb.Maintenance/Snapshot";
    let lines = wait_lines(&buf, "snapshot closed", |lines| {
        lines
            .iter()
            .any(|l| l["kind"] == "close" && l["method"] == method)
    })
    .await;
    check_stream_bookkeeping(&lines);
    let ids = streams(&lines, method);
    assert_eq!(ids.len(), 1, "{lines:#?}");
    let of = |k: &str| {
        lines
            .iter()
            .filter(|l| l["kind"] == k && l["stream"] == ids[0])
            .cloned()
            .collect::<Vec<_>>()
    };
    let open = of("open");
    assert_eq!(open.len(), 1);
    let sends = of("send");
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert_eq!(sends[0]["seq"], 1);
    assert_eq!(sends[0]["bytes"], 0, "an empty SnapshotRequest: {sends:?}");
    let recvs = of("recv");
    assert_eq!(recvs.len() as u64, messages, "one recv line per message");
    // Exactly the bytes received; each message is more than its blob (header, remaining).
    let logged: u64 = recvs.iter().map(|l| uint(&l["bytes"])).sum();
    assert_eq!(logged, payload, "{recvs:#?}");
    assert!(logged > info.bytes, "{logged} <= {}", info.bytes);
    let close = of("close");
    assert_eq!(close.len(), 1, "{close:?}");
    assert_eq!(close[0]["how"], "trailers", "{close:?}");
    assert_eq!(close[0]["status"], "OK", "{close:?}");
    assert_eq!(close[0]["sent"], 1);
    assert_eq!(close[0]["received"], messages);
}
