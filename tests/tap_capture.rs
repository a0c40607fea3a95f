//! The tap's log held against packet captures of both its sides (issue 23), with the same
//! tshark-based comparer as the client's own wire log (`tests/capture/`).
//!
//! Per etcd version: one member and an in-process tap in front of it; one `dumpcap` records
//! the clients' side (the tap's port), another the upstream side (the member's port), while
//! the real `etcdctl` puts, gets, watches and takes a contended lock through the tap. Each
//! capture, decoded by tshark alone, must agree with the tap's log message for message: the
//! same calls, stream messages, fields, byte counts and stream ends, on both sides. An edited
//! copy of the log (a watch event dropped) must be refused for both.
//!
//! Needs `tshark` and `dumpcap` (`scripts/install-tools`), Python 3 and the right to capture
//! on `lo`. Files are kept (path printed) when the test fails or `ETCD_LOCK_KEEP_CAPTURE` is set.
#![cfg(all(feature = "testkit", feature = "cli"))]

#[path = "capture/mod.rs"]
mod capture;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture::{path_str, python, require_tools, text, Dumpcap, PROTO};
use etcd_lock::tap::Tap;
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::wirelog::JsonLines;

per_version!(both_sides_of_the_tap_match_its_log);

fn etcdctl(cluster: &Cluster, endpoint: &str) -> Command {
    let mut cmd = Command::new(cluster.binary().etcdctl_path());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> String {
    let out = common::ok(cmd.output());
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Waits up to 10 s for `child` to exit; kills it and fails the test otherwise.
fn wait_exit(child: &mut std::process::Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::ok(child.try_wait()).is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn first_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    if let Some(out) = child.stdout.as_mut() {
        common::ok(BufReader::new(out).read_line(&mut line));
    }
    line
}

/// Checks the log against one capture; returns the comparer's report.
fn check(side: &str, pcap: &Path, port: u16, log: &Path, dir: &Path, bin: &EtcdBinary) -> String {
    let decoded = dir.join(format!("decoded-{side}.json"));
    let out = python(&[
        "check".into(),
        "--pcap".into(),
        path_str(pcap),
        "--port".into(),
        port.to_string(),
        "--proto".into(),
        PROTO.into(),
        "--out".into(),
        path_str(&decoded),
        "--log".into(),
        path_str(log),
    ]);
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(
        out.status.success(),
        "etcd {}: the tap's log does not match the {side} capture (files kept in {}):\n{report}",
        bin.version(),
        dir.display()
    );
    let decoded_text = common::ok(std::fs::read_to_string(&decoded));
    for method in [
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Watch/Watch",
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Lease/LeaseKeepAlive",
    ] {
        assert!(
            decoded_text.contains(&format!("\"{method}\"")),
            "etcd {}: the {side} capture has no {method} exchange",
            bin.version()
        );
    }
    // An edited log (the watch's event dropped) is refused against this capture too.
    let original = common::ok(std::fs::read_to_string(log));
    let edited: String = original
        .lines()
        .filter(|l| !(l.contains("\"kind\":\"recv\"") && l.contains("\"events\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(edited, original, "no watch event in the log");
    let edited_path = dir.join(format!("edited-{side}.jsonl"));
    common::ok(std::fs::write(&edited_path, edited));
    let out = python(&[
        "compare".into(),
        "--decoded".into(),
        path_str(&decoded),
        "--log".into(),
        path_str(&edited_path),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "etcd {}: the edited log passed against the {side} capture: {}",
        bin.version(),
        text(&out.stdout)
    );
    report
}

async fn both_sides_of_the_tap_match_its_log(bin: &EtcdBinary) {
    require_tools();
    let cluster = common::single(bin);
    let member_port = cluster.member(0).client_port();
    let dir = std::env::temp_dir().join(format!(
        "etcd-lock-tap-capture-{}-{}",
        std::process::id(),
        bin.version()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    common::ok(std::fs::create_dir_all(&dir));
    let log = dir.join("tap.jsonl");
    let listener = common::ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let tap = common::ok(
        common::ok(Tap::new(listener, &cluster.endpoints()[0]))
            .wire_log(Arc::new(common::ok(JsonLines::to_file(&log))))
            .spawn(),
    );
    let tap_port = tap.local_addr().port();
    let via = format!("http://{}", tap.local_addr());
    let client_pcap = dir.join("client-side.pcapng");
    let upstream_pcap = dir.join("upstream-side.pcapng");
    let client_dir = dir.join("client");
    let upstream_dir = dir.join("upstream");
    common::ok(std::fs::create_dir_all(&client_dir));
    common::ok(std::fs::create_dir_all(&upstream_dir));
    let mut client_capture = Dumpcap::start(tap_port, &client_pcap, &client_dir);
    let mut upstream_capture = Dumpcap::start(member_port, &upstream_pcap, &upstream_dir);

    run({
        let mut c = etcdctl(&cluster, &via);
        c.args(["put", "cap/k", "v"]);
        c
    });
    run({
        let mut c = etcdctl(&cluster, &via);
        c.args(["get", "cap/k"]);
        c
    });
    // A watch that sees one event, then its client closes (SIGINT).
    let mut watch = common::ok(
        etcdctl(&cluster, &via)
            .args(["watch", "cap/w"])
            .stdout(Stdio::piped())
            .spawn(),
    );
    std::thread::sleep(Duration::from_millis(500));
    run({
        let mut c = etcdctl(&cluster, &via);
        c.args(["put", "cap/w", "event"]);
        c
    });
    assert_eq!(first_line(&mut watch).trim(), "PUT");
    // SIGTERM, not SIGINT: `etcdctl watch` has no handler for either, so both end it the same
    // way, but a suite started in the background (`scripts/test &`) passes SIGINT on ignored.
    let _ = Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status();
    wait_exit(&mut watch, "etcdctl watch after SIGTERM");
    // A contended lock: the holder's keep-alives and the waiter's watch cross the tap.
    let mut holder = common::ok(
        etcdctl(&cluster, &via)
            .args(["lock", "cap/lock"])
            .stdout(Stdio::piped())
            .spawn(),
    );
    assert!(first_line(&mut holder).starts_with("cap/lock/"));
    let waiter = common::ok(
        etcdctl(&cluster, &via)
            .args(["lock", "cap/lock", "--", "echo", "got it"])
            .stdout(Stdio::piped())
            .spawn(),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let _ = Command::new("kill")
        .args(["-INT", &holder.id().to_string()])
        .status();
    let _ = holder.wait();
    let out = common::ok(waiter.wait_with_output());
    assert_eq!(text(&out.stdout).trim(), "got it");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tap.connections() > 0 {
        assert!(Instant::now() < deadline, "tap connections left open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client_capture.stop();
    upstream_capture.stop();

    let client = check("client", &client_pcap, tap_port, &log, &dir, bin);
    let upstream = check("upstream", &upstream_pcap, member_port, &log, &dir, bin);
    eprintln!(
        "etcd {}: client side: {}; upstream side: {}",
        bin.version(),
        client.trim(),
        upstream.trim()
    );
    if std::env::var_os("ETCD_LOCK_KEEP_CAPTURE").is_some() {
        eprintln!("etcd {}: files kept in {}", bin.version(), dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
