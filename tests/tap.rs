//! `etcd_lock::tap` and `etcd-lock tap` against real etcd servers and the real `etcdctl` of each
//! version: results through the tap equal direct results, the log names and decodes what any
//! client sent, and every way a stream can end gives a close line and leaves no task behind.
#![cfg(all(feature = "testkit", feature = "cli"))]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_lock::proto::etcdserverpb as pb;
use etcd_lock::tap::{Tap, TapHandle};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::wirelog::JsonLines;
use etcd_lock::Locker as _;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_etcd-lock");

per_version!(
    etcdctl_gives_the_same_results_through_the_tap,
    log_of_a_contended_etcdctl_lock_names_txn_watch_and_keepalive,
    our_client_works_through_the_tap,
    hundreds_of_streams_and_large_messages_do_not_stall,
    a_stream_the_client_cancels_is_closed_and_released,
    a_member_killed_mid_stream_closes_every_stream,
    a_client_that_disconnects_abruptly_leaves_nothing,
    the_cli_tap_writes_the_log_file,
    cancelled_streams_and_abrupt_disconnects_leave_no_memory_behind,
    bytes_that_are_not_http2_pass_unchanged,
    a_member_that_stops_gracefully_ends_the_connection_as_closed,
);

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    /// Every line so far, parsed.
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// A tap in front of member 0 of `cluster`, logging to a buffer.
async fn tap(cluster: &Cluster) -> (TapHandle, Buffer) {
    let listener = common::ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let log = Buffer::default();
    let handle = common::ok(
        common::ok(Tap::new(listener, &cluster.endpoints()[0]))
            .wire_log(Arc::new(JsonLines::new(log.clone())))
            .spawn(),
    );
    (handle, log)
}

/// `etcdctl` of the cluster's version, pointed at `endpoint`.
fn etcdctl(cluster: &Cluster, endpoint: &str) -> Command {
    let mut cmd = Command::new(cluster.binary().etcdctl_path());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"));
    cmd
}

fn run(mut cmd: Command) -> Output {
    let out = common::ok(cmd.output());
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until the tap has no connection and no stream left.
async fn wait_idle(tap: &TapHandle) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tap.connections() + tap.streams() > 0 {
        assert!(
            Instant::now() < deadline,
            "still {} connections and {} streams",
            tap.connections(),
            tap.streams()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a line satisfies `want`; returns it.
async fn wait_line(log: &Buffer, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = log.lines().into_iter().find(|l| want(l)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} line in:\n{:#?}",
            log.lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `step`, failing the test (naming the step and the tap's live counts) when it takes
/// longer than 20 s: a stalled stream fails here instead of hanging the suite.
async fn within<T>(tap: &TapHandle, what: &str, step: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), step).await {
        Ok(out) => out,
        Err(_) => panic!(
            "{what}: no progress in 20 s ({} connections, {} streams in the tap)",
            tap.connections(),
            tap.streams()
        ),
    }
}

fn tap_addr(tap: &TapHandle) -> String {
    format!("http://{}", tap.local_addr())
}

/// `etcdctl watch KEY` started on `endpoint`; returns the child once the watch is created (its
/// stderr is not read; the watch prints nothing until an event).
fn spawn_watch(cluster: &Cluster, endpoint: &str, key: &str) -> std::process::Child {
    common::ok(
        etcdctl(cluster, endpoint)
            .args(["watch", key])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn(),
    )
}

/// The first `n` lines a child prints.
fn read_lines(child: &mut std::process::Child, n: usize) -> Vec<String> {
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut reader = BufReader::new(out);
    (0..n)
        .map(|_| {
            let mut line = String::new();
            common::ok(reader.read_line(&mut line));
            line.trim_end().to_string()
        })
        .collect()
}

/// put/get, watch and snapshot save give the same results through the tap as directly.
async fn etcdctl_gives_the_same_results_through_the_tap(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let direct = cluster.endpoints()[0].clone();
    let via = tap_addr(&tap);

    run({
        let mut c = etcdctl(&cluster, &via);
        c.args(["put", "tap/k", "through the tap"]);
        c
    });
    let get = |endpoint: &str| {
        let mut c = etcdctl(&cluster, endpoint);
        c.args(["get", "tap/", "--prefix", "-w", "json"]);
        let v: Value = common::ok(serde_json::from_slice(&run(c).stdout));
        (v["kvs"].clone(), v["header"]["revision"].clone())
    };
    assert_eq!(get(&via), get(&direct));
    assert_eq!(get(&via).0[0]["key"], "dGFwL2s=", "base64 of tap/k");

    // A watch through the tap and one direct see the same event.
    let mut watches = [
        spawn_watch(&cluster, &via, "tap/w"),
        spawn_watch(&cluster, &direct, "tap/w"),
    ];
    wait_line(&log, "watch created", |l| {
        l["kind"] == "recv" && l["method"] == "/etcdserverpb.Watch/Watch"
    })
    .await;
    std::thread::sleep(Duration::from_millis(300));
    run({
        let mut c = etcdctl(&cluster, &direct);
        c.args(["put", "tap/w", "event"]);
        c
    });
    let seen: Vec<Vec<String>> = watches.iter_mut().map(|w| read_lines(w, 3)).collect();
    assert_eq!(seen[0], ["PUT", "tap/w", "event"]);
    assert_eq!(seen[0], seen[1]);
    for mut w in watches {
        let _ = w.kill();
        let _ = w.wait();
    }

    // snapshot save: the same database through the tap.
    let dir = common::ok(tempfile::tempdir());
    let save = |endpoint: &str, name: &str| {
        let path = dir.path().join(name);
        run({
            let mut c = etcdctl(&cluster, endpoint);
            c.args(["snapshot", "save"]).arg(&path);
            c
        });
        let mut c = Command::new(cluster.binary().etcdctl_path());
        c.env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(&path);
        let v: Value = common::ok(serde_json::from_slice(&run(c).stdout));
        (
            v["hash"].clone(),
            v["revision"].clone(),
            v["totalKey"].clone(),
        )
    };
    let through = save(&via, "via.db");
    let straight = save(&direct, "direct.db");
    assert_eq!(through, straight);
    assert!(through.1.as_i64().is_some_and(|r| r >= 3), "{through:?}");
    let close = wait_line(&log, "snapshot close", |l| {
        l["kind"] == "close" && l["method"] == "/etcdserverpb.Maintenance/Snapshot"
    })
    .await;
    assert_eq!(close["how"], "trailers");
    assert_eq!(close["status"], "OK");
    assert!(
        close["received"].as_u64().is_some_and(|n| n >= 1),
        "{close}"
    );
    wait_idle(&tap).await;
}

/// A contended `etcdctl lock`: its Txn, its Watch on the holder's key and its LeaseKeepAlive
/// are in the tap's log, decoded, each line with the connection and client address.
async fn log_of_a_contended_etcdctl_lock_names_txn_watch_and_keepalive(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let direct = cluster.endpoints()[0].clone();
    // The holder: etcdctl's own hold form, direct.
    let mut holder = common::ok(
        etcdctl(&cluster, &direct)
            .args(["lock", "tap-lock"])
            .stdout(Stdio::piped())
            .spawn(),
    );
    let held = read_lines(&mut holder, 1);
    assert!(held[0].starts_with("tap-lock/"), "{held:?}");
    let waiter = common::ok(
        etcdctl(&cluster, &tap_addr(&tap))
            .args(["lock", "tap-lock", "--", "echo", "got it"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
    );
    let watch = wait_line(&log, "watch create", |l| {
        l["kind"] == "send" && l["method"] == "/etcdserverpb.Watch/Watch"
    })
    .await;
    let _ = Command::new("kill")
        .args(["-INT", &holder.id().to_string()])
        .status();
    let _ = holder.wait();
    let out = common::ok(waiter.wait_with_output());
    assert_eq!(text(&out.stdout).trim(), "got it", "{}", text(&out.stderr));
    wait_idle(&tap).await;

    let lines = log.lines();
    for line in &lines {
        assert!(line["conn"].as_u64().is_some(), "{line}");
        assert!(
            line["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:")),
            "{line}"
        );
    }
    // The Watch waits on the holder's key: created at the holder's revision.
    let create = &watch["message"]["create_request"];
    assert!(
        create["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("tap-lock/")),
        "{watch}"
    );
    let txn = lines
        .iter()
        .find(|l| l["kind"] == "call" && l["method"] == "/etcdserverpb.KV/Txn")
        .unwrap_or_else(|| panic!("no Txn call in {lines:#?}"));
    assert_eq!(txn["request"]["compare"][0]["target"], "CREATE", "{txn}");
    assert!(
        txn["request"]["success"][0]["request_put"]["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("tap-lock/")),
        "{txn}"
    );
    assert_eq!(txn["status"], "OK");
    assert!(
        txn["response"]["header"]["revision"].as_u64().is_some(),
        "{txn}"
    );
    let keepalive = lines
        .iter()
        .find(|l| l["kind"] == "send" && l["method"] == "/etcdserverpb.Lease/LeaseKeepAlive")
        .unwrap_or_else(|| panic!("no LeaseKeepAlive in {lines:#?}"));
    assert!(keepalive["message"]["ID"].as_str().is_some(), "{keepalive}");
    // The watch saw the holder's DELETE.
    assert!(
        lines.iter().any(|l| l["kind"] == "recv"
            && l["method"] == "/etcdserverpb.Watch/Watch"
            && l["message"]["events"][0]["type"] == "DELETE"),
        "{lines:#?}"
    );
    let connects = lines.iter().filter(|l| l["kind"] == "connect").count();
    let disconnects = lines.iter().filter(|l| l["kind"] == "disconnect").count();
    assert_eq!((connects, disconnects), (1, 1), "{lines:#?}");
}

/// Our own client (its wire log aside) through the tap: KV, a lock and a watch.
async fn our_client_works_through_the_tap(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    {
        let client = common::connect_quick(&[tap_addr(&tap)]).await;
        common::ok(client.put("tap/ours", "v1").await);
        let got = common::ok(client.get("tap/ours").await);
        assert_eq!(got.kvs()[0].value, b"v1");
        let session = common::session(&client, 10).await;
        let locker = common::boxed_locker("recipe");
        let guard = common::ok(locker.lock(&session, b"tap/ours-lock").await);
        common::ok(locker.unlock(guard).await);
        drop(session);
    }
    wait_idle(&tap).await;
    let lines = log.lines();
    let put = lines
        .iter()
        .find(|l| l["method"] == "/etcdserverpb.KV/Put")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(
        put["request"],
        serde_json::json!({"key": "tap/ours", "value": "v1"})
    );
    for method in ["/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.KV/Txn"] {
        assert!(
            lines
                .iter()
                .any(|l| l["kind"] == "call" && l["method"] == method),
            "no {method} in {lines:#?}"
        );
    }
}

/// 300 watch streams on one connection and a 1.5 MB value (many DATA frames each way): no
/// stream stalls and the value comes back byte for byte; the log has every stream.
async fn hundreds_of_streams_and_large_messages_do_not_stall(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let channel = common::ok(
        common::ok(tonic::transport::Endpoint::from_shared(tap_addr(&tap)))
            .connect()
            .await,
    );
    let mut streams = Vec::new();
    for _ in 0..300 {
        let mut watch = pb::watch_client::WatchClient::new(channel.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        common::ok(
            tx.send(pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        key: b"tap/many".to_vec(),
                        ..Default::default()
                    },
                )),
            })
            .await,
        );
        let inbound =
            common::ok(within(&tap, "opening a watch", watch.watch(tokio_stream_of(rx))).await)
                .into_inner();
        streams.push((tx, inbound));
    }
    for (_, inbound) in &mut streams {
        let created =
            common::ok(within(&tap, "watch created", inbound.message()).await).expect("created");
        assert!(created.created);
    }
    let mut kv = pb::kv_client::KvClient::new(channel.clone());
    let event_value = vec![b'e'; 20_000];
    // The watchers read while the put is in flight, as a real client's would: 300 events of
    // 20 KB are more than the client's 5 MiB connection window, so a client that read none
    // until the put's answer came could wait for it forever (with or without the tap; the
    // answer's DATA queues behind the unread events for the same window).
    let put = within(
        &tap,
        "put of the watched key",
        kv.put(pb::PutRequest {
            key: b"tap/many".to_vec(),
            value: event_value.clone(),
            ..Default::default()
        }),
    );
    let events = within(
        &tap,
        "300 watch events",
        futures_util::future::join_all(streams.iter_mut().map(|(_, inbound)| inbound.message())),
    );
    let (put, events) = tokio::join!(put, events);
    common::ok(put);
    for event in events {
        let event = common::ok(event).expect("event");
        assert_eq!(
            event.events[0].kv.as_ref().map(|kv| &kv.value),
            Some(&event_value)
        );
    }
    let value = (0..1_500_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>();
    common::ok(
        within(
            &tap,
            "1.5 MB put",
            kv.put(pb::PutRequest {
                key: b"tap/big".to_vec(),
                value: value.clone(),
                ..Default::default()
            }),
        )
        .await,
    );
    let got = common::ok(
        within(
            &tap,
            "1.5 MB range",
            kv.range(pb::RangeRequest {
                key: b"tap/big".to_vec(),
                ..Default::default()
            }),
        )
        .await,
    )
    .into_inner();
    assert!(got.kvs[0].value == value, "the value changed on the way");
    // The 300 watches are still forwarded (the unary calls' tasks end right after them).
    let deadline = Instant::now() + Duration::from_secs(5);
    while tap.streams() != 300 {
        assert!(
            Instant::now() < deadline,
            "{} streams, want 300",
            tap.streams()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(streams);
    drop(kv);
    drop(channel);
    wait_idle(&tap).await;
    let lines = log.lines();
    let closes = lines
        .iter()
        .filter(|l| l["kind"] == "close" && l["method"] == "/etcdserverpb.Watch/Watch")
        .count();
    assert_eq!(closes, 300);
    // The 1.5 MB Put was cut out of many DATA frames and decoded whole.
    let put = lines
        .iter()
        .find(|l| l["method"] == "/etcdserverpb.KV/Put" && l["request"]["key"] == "tap/big")
        .unwrap_or_else(|| panic!("no Put"));
    // key: tag, length, 7 bytes; value: tag, 3-byte length, 1_500_000 bytes.
    assert_eq!(put["request_bytes"].as_u64(), Some(9 + 4 + 1_500_000));
    let range = lines
        .iter()
        .find(|l| l["method"] == "/etcdserverpb.KV/Range")
        .unwrap_or_else(|| panic!("no Range"));
    assert!(
        range["response_bytes"]
            .as_u64()
            .is_some_and(|n| n > 1_500_000),
        "{range}"
    );
}

/// An mpsc receiver as a `Stream` for tonic.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A watch the client drops is reset with CANCEL: the tap passes the reset on, logs a
/// `cancelled` close with the reason, and keeps no stream.
async fn a_stream_the_client_cancels_is_closed_and_released(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let channel = common::ok(
        common::ok(tonic::transport::Endpoint::from_shared(tap_addr(&tap)))
            .connect()
            .await,
    );
    let mut watch = pb::watch_client::WatchClient::new(channel.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    common::ok(
        tx.send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: b"tap/cancel".to_vec(),
                    ..Default::default()
                },
            )),
        })
        .await,
    );
    let mut inbound = common::ok(watch.watch(tokio_stream_of(rx)).await).into_inner();
    assert!(
        common::ok(inbound.message().await)
            .expect("created")
            .created
    );
    assert_eq!(tap.streams(), 1);
    drop(inbound);
    drop(tx);
    let close = wait_line(&log, "close", |l| l["kind"] == "close").await;
    assert_eq!(close["how"], "cancelled", "{close}");
    assert_eq!(close["reset_reason"], "CANCEL", "{close}");
    assert_eq!(
        (close["sent"].as_u64(), close["received"].as_u64()),
        (Some(1), Some(1))
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while tap.streams() > 0 {
        assert!(Instant::now() < deadline, "the stream task is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection itself is still good.
    let mut kv = pb::kv_client::KvClient::new(channel.clone());
    common::ok(
        kv.put(pb::PutRequest {
            key: b"tap/cancel".to_vec(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(tap.connections(), 1);
    drop(kv);
    drop(watch);
    drop(channel);
    wait_idle(&tap).await;
}

/// The member dies while a client watches through the tap: the client's connection is
/// dropped too (as it would be directly), the watch gets a `connection_lost` close naming the
/// upstream, and nothing is left.
async fn a_member_killed_mid_stream_closes_every_stream(bin: &EtcdBinary) {
    let mut cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let mut watcher = spawn_watch(&cluster, &tap_addr(&tap), "tap/killed");
    wait_line(&log, "watch created", |l| l["kind"] == "recv").await;
    assert_eq!((tap.connections(), tap.streams()), (1, 1));
    common::ok(cluster.member_mut(0).kill());
    let close = wait_line(&log, "close", |l| l["kind"] == "close").await;
    assert_eq!(close["how"], "connection_lost", "{close}");
    assert!(
        close["status"]["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("upstream")),
        "{close}"
    );
    let gone = wait_line(&log, "disconnect", |l| {
        l["kind"] == "disconnect" && l["conn"] == close["conn"]
    })
    .await;
    assert_eq!(gone["how"], "upstream_lost", "{gone}");
    // etcdctl keeps retrying a member that is gone; the tap refuses each new connection at
    // once (its upstream connect fails), and keeps nothing for it.
    let _ = watcher.kill();
    let _ = watcher.wait();
    wait_idle(&tap).await;
}

/// `etcdctl watch` killed with SIGKILL (no GOAWAY, no RST_STREAM): the tap logs the watch as
/// `connection_lost` on the client's side, resets it upstream, and keeps nothing.
async fn a_client_that_disconnects_abruptly_leaves_nothing(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let mut watcher = spawn_watch(&cluster, &tap_addr(&tap), "tap/abrupt");
    wait_line(&log, "watch created", |l| l["kind"] == "recv").await;
    assert_eq!((tap.connections(), tap.streams()), (1, 1));
    common::ok(watcher.kill());
    let _ = watcher.wait();
    let close = wait_line(&log, "close", |l| l["kind"] == "close").await;
    assert_eq!(close["how"], "connection_lost", "{close}");
    assert!(
        close["status"]["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("client")),
        "{close}"
    );
    wait_idle(&tap).await;
    // The member no longer has the watch: a put reaches no watcher (the tap would log a recv).
    run({
        let mut c = etcdctl(&cluster, &cluster.endpoints()[0]);
        c.args(["put", "tap/abrupt", "after"]);
        c
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        log.lines().iter().filter(|l| l["kind"] == "recv").count(),
        1,
        "only the created answer"
    );
}

/// `etcd-lock tap` prints the address it listens on and writes the log file; SIGTERM stops it.
async fn the_cli_tap_writes_the_log_file(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let dir = common::ok(tempfile::tempdir());
    let file = dir.path().join("tap.jsonl");
    let (mut tap, addr) = spawn_cli_tap(&cluster.endpoints()[0], &file);
    run({
        let mut c = etcdctl(&cluster, &addr);
        c.args(["put", "tap/cli", "v"]);
        c
    });
    let out = run({
        let mut c = etcdctl(&cluster, &addr);
        c.args(["get", "tap/cli", "--print-value-only"]);
        c
    });
    assert_eq!(text(&out.stdout).trim(), "v");
    let _ = Command::new("kill")
        .args(["-TERM", &tap.id().to_string()])
        .status();
    let status = common::ok(tap.wait());
    assert_eq!(status.code(), Some(0));
    let log = common::ok(std::fs::read_to_string(&file));
    let lines: Vec<Value> = log
        .lines()
        .map(|l| common::ok(serde_json::from_str(l)))
        .collect();
    let methods: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "call")
        .filter_map(|l| l["method"].as_str())
        .collect();
    assert_eq!(
        methods,
        ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range"],
        "{log}"
    );
    assert_eq!(lines[1]["request"]["value"], "v");
}

/// How many cancelled watches and abrupt disconnects the memory test sends through each tap.
const CHURN: usize = 500;

/// `etcd-lock tap` started in front of `upstream`, logging to `file`; its address.
fn spawn_cli_tap(upstream: &str, file: &std::path::Path) -> (std::process::Child, String) {
    let mut tap = common::ok(
        Command::new(BIN)
            .args(["tap", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .arg("--wire-log")
            .arg(file)
            .stdout(Stdio::piped())
            .spawn(),
    );
    let first = read_lines(&mut tap, 1);
    let addr = first[0]
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    (tap, addr)
}

/// The resident set of process `pid`, in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = common::ok(std::fs::read_to_string(format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// An HTTP/2 connection of our own (h2 directly, so it can be reset or cut at will) to `addr`;
/// its connection task runs until the returned handle is aborted.
async fn raw_h2(
    addr: &str,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let socket = common::ok(tokio::net::TcpStream::connect(addr).await);
    // An abrupt end is an RST, not a FIN: nothing of the connection is closed politely.
    common::ok(socket.set_zero_linger());
    let (send, conn) = common::ok(h2::client::handshake(socket).await);
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

/// Opens a watch on `key` and waits for its `created` answer; the stream's halves.
async fn open_watch(
    send: &h2::client::SendRequest<bytes::Bytes>,
    key: &str,
) -> (h2::SendStream<bytes::Bytes>, h2::RecvStream) {
    use prost::Message as _;
    let request = common::ok(
        http::Request::post("http://etcd/etcdserverpb.Watch/Watch")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(()),
    );
    let mut send = common::ok(send.clone().ready().await);
    let (response, mut stream) = common::ok(send.send_request(request, false));
    let message = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            },
        )),
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    common::ok(stream.send_data(framed.into(), false));
    let mut body = common::ok(response.await).into_body();
    let mut got = Vec::new();
    while got.len() < 5
        || got.len() < 5 + u32::from_be_bytes(got[1..5].try_into().unwrap()) as usize
    {
        let chunk = common::ok(body.data().await.expect("the created answer"));
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let created = common::ok(pb::WatchResponse::decode(&got[5..]));
    assert!(created.created, "{created:?}");
    (stream, body)
}

/// `n` watches reset by the client (CANCEL) on one connection, then `n` connections each with
/// a watch, cut without GOAWAY or RST_STREAM; 25 at a time.
async fn churn(addr: &str, n: usize) {
    let (send, task) = raw_h2(addr).await;
    for batch in 0..n.div_ceil(25) {
        let watches = (0..25.min(n - batch * 25)).map(|_| open_watch(&send, "tap/churn"));
        for (mut stream, _body) in futures_util::future::join_all(watches).await {
            stream.send_reset(h2::Reason::CANCEL);
        }
    }
    drop(send);
    task.abort();
    for batch in 0..n.div_ceil(25) {
        let cut = (0..25.min(n - batch * 25)).map(|_| async {
            let (send, task) = raw_h2(addr).await;
            let watch = open_watch(&send, "tap/churn").await;
            task.abort();
            let _ = task.await;
            drop(watch);
        });
        futures_util::future::join_all(cut).await;
    }
}

/// Waits until `value()` is at most `want`; the last value seen.
async fn settle(what: &str, want: usize, value: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = value();
        if now <= want {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now}, want {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Hundreds of watches the client cancels and of connections cut abruptly, through one tap,
/// leave nothing behind: the in-process tap's live counts return to 0 and the runtime's task
/// count to its value before; the resident memory of a spawned `etcd-lock tap` (logging to a
/// file) returns to within a margin of its value after a warm-up of the same traffic. Every
/// stream also gets its close line.
async fn cancelled_streams_and_abrupt_disconnects_leave_no_memory_behind(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let dir = common::ok(tempfile::tempdir());
    let (mut cli, cli_addr) = spawn_cli_tap(&cluster.endpoints()[0], &dir.path().join("tap.jsonl"));
    let pid = cli.id();
    let addr = tap.local_addr().to_string();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };

    // Warm-up: the same traffic, so buffers and the allocator's pools reach their size.
    churn(&addr, 50).await;
    churn(&cli_addr, 50).await;
    wait_idle(&tap).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks_before = tasks();
    let rss_before = rss_kib(pid);

    // Two rounds: memory that only grew once (allocator pools) shows in the first, a leak in
    // both.
    let mut rss = vec![rss_before];
    for _ in 0..2 {
        churn(&addr, CHURN).await;
        churn(&cli_addr, CHURN).await;
        wait_idle(&tap).await;
        settle("tasks", tasks_before, tasks).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss.push(rss_kib(pid));
    }
    eprintln!(
        "tap memory: RSS (KiB) after warm-up, then after each round of {CHURN} cancelled \
         watches and {CHURN} abrupt disconnects: {rss:?}; runtime tasks {tasks_before} -> {}; \
         live connections {}, streams {}",
        tasks(),
        tap.connections(),
        tap.streams()
    );
    // A leaked connection holds two sockets and two 32 KiB relay buffers: 1000 of them would
    // add over 64 MiB. A leaked stream is smaller, but the counts above catch it. The growth
    // seen is under 16 KiB per round; the margin leaves room for allocator pools.
    for after in &rss[1..] {
        assert!(
            *after <= rss_before + 2048,
            "RSS grew from {rss_before} KiB: {rss:?}"
        );
    }
    let closes = log.lines().iter().filter(|l| l["kind"] == "close").count();
    assert_eq!(closes, 2 * (2 * CHURN + 50), "one close line per watch");
    let _ = cli.kill();
    let _ = cli.wait();
}

/// Sends one HTTP/1.1 request on a new connection to `addr` and reads the whole answer.
async fn http1_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = common::ok(tokio::net::TcpStream::connect(addr).await);
    let request = format!("GET {path} HTTP/1.1\r\nHost: tap\r\nConnection: close\r\n\r\n");
    common::ok(socket.write_all(request.as_bytes()).await);
    let mut answer = Vec::new();
    common::ok(
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .expect("the answer in 10 s"),
    );
    text(&answer)
}

/// The tap copies bytes, not just HTTP/2: an HTTP/1.1 request for etcd's `/version` gets the
/// member's own answer through it, and the connection's `disconnect` line says the log could
/// not follow it.
async fn bytes_that_are_not_http2_pass_unchanged(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let member = cluster.endpoints()[0]
        .trim_start_matches("http://")
        .to_string();
    let body = |answer: &str| {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    };
    let direct = body(&http1_get(&member, "/version").await);
    let tapped = body(&http1_get(&tap.local_addr().to_string(), "/version").await);
    assert!(direct.contains("etcdserver"), "{direct}");
    assert_eq!(tapped, direct);
    let gone = wait_line(&log, "disconnect", |l| l["kind"] == "disconnect").await;
    assert!(
        gone["cause"]
            .as_str()
            .is_some_and(|c| c.contains("not an HTTP/2 connection preface")),
        "{gone}"
    );
    assert_eq!(gone["streams"], 0, "{gone}");
    wait_idle(&tap).await;
}

/// The member stops with SIGTERM while a client's connection through the tap is idle: the
/// client's HTTP/2 connection ends (the member's GOAWAY and close pass through), and the
/// `disconnect` line says the member closed it, not that it was lost.
async fn a_member_that_stops_gracefully_ends_the_connection_as_closed(bin: &EtcdBinary) {
    let mut cluster = common::single(bin);
    let (tap, log) = tap(&cluster).await;
    let socket = common::ok(tokio::net::TcpStream::connect(tap.local_addr()).await);
    let (send, conn) = common::ok(h2::client::handshake(socket).await);
    let mut conn = tokio::spawn(conn);
    // One watch opened and ended, so the connection is known to work and is idle.
    {
        let (mut stream, body) = open_watch(&send, "tap/graceful").await;
        stream.send_reset(h2::Reason::CANCEL);
        drop(body);
    }
    wait_line(&log, "close", |l| l["kind"] == "close").await;
    common::ok(
        tokio::task::spawn_blocking(move || {
            let result = cluster.member_mut(0).terminate();
            (cluster, result)
        })
        .await,
    )
    .1
    .unwrap_or_else(|e| panic!("terminate: {e}"));
    let ended = within(&tap, "the client's connection ends", &mut conn).await;
    assert!(ended.is_ok(), "{ended:?}");
    let gone = wait_line(&log, "disconnect", |l| l["kind"] == "disconnect").await;
    assert_eq!(gone["how"], "upstream_closed", "{gone}");
    assert_eq!(gone["streams"], 1, "{gone}");
    drop(send);
    wait_idle(&tap).await;
}
