//! The wire log held against a packet capture of the same traffic (issue 11).
//!
//! Per etcd version: one member; `dumpcap` records loopback traffic on its client port while
//! the `etcd-lock` CLI takes locks with `--wire-log`: each flavour (`--via recipe|service`)
//! alone, and contended (a holder that keeps the lock for 2.5 s with `--ttl 2`, so keep-alives
//! are sent, plus a waiter). `tests/capture/compare.py` then decodes the capture with tshark
//! alone (HTTP/2, gRPC and protobuf dissectors reading `proto/`) and requires the same calls,
//! stream messages, fields and byte counts as the logs. Finally edited copies of the logs (a
//! line dropped, a field value changed, a byte count changed) must each be refused.
//!
//! Needs `tshark` and `dumpcap` (`scripts/install-tools`), Python 3, and the right to capture
//! on `lo` (root or CAP_NET_RAW); without them the test fails with that hint. The capture, the
//! logs and tshark's decode are kept (path printed) when the test fails or when
//! `ETCD_LOCK_KEEP_CAPTURE` is set.
#![cfg(all(feature = "testkit", feature = "cli"))]

#[path = "capture/mod.rs"]
mod capture;
mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use capture::{path_str, python, require_tools, text, Dumpcap, PROTO};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_lock::election::{Elector, ServiceElection};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::wirelog::JsonLines;
use etcd_lock::{Client, ClientOptions};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_etcd-lock");

per_version!(log_matches_capture);

/// What each process of the scenario logged, by role.
struct Logs {
    dir: PathBuf,
}

impl Logs {
    fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.jsonl"))
    }
}

const ROLES: [&str; 7] = [
    "recipe-alone",
    "service-alone",
    "recipe-holder",
    "recipe-waiter",
    "service-holder",
    "service-waiter",
    "service-election",
];

async fn log_matches_capture(bin: &EtcdBinary) {
    require_tools();
    let cluster = common::single(bin);
    let port = cluster.member(0).client_port();
    let endpoint = cluster.endpoints().join(",");
    let dir = std::env::temp_dir().join(format!(
        "etcd-lock-capture-{}-{}",
        std::process::id(),
        bin.version()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    common::ok(std::fs::create_dir_all(&dir));
    let logs = Logs { dir: dir.clone() };
    let pcap = dir.join("wire.pcapng");

    let started = Instant::now();
    let mut capture = Dumpcap::start(port, &pcap, &dir);
    let election = {
        let (endpoint, log) = (endpoint.clone(), logs.path("service-election"));
        std::thread::spawn(move || run_election(endpoint, log))
    };
    run_scenarios(&endpoint, &logs);
    if let Err(panic) = election.join() {
        std::panic::resume_unwind(panic);
    }
    capture.stop();
    let captured_secs = started.elapsed().as_secs_f64();

    // The real logs agree with the capture.
    let decoded = dir.join("decoded.json");
    let mut args: Vec<String> = vec![
        "check".into(),
        "--pcap".into(),
        path_str(&pcap),
        "--port".into(),
        port.to_string(),
        "--proto".into(),
        PROTO.into(),
        "--out".into(),
        path_str(&decoded),
    ];
    for role in ROLES {
        args.push("--log".into());
        args.push(path_str(&logs.path(role)));
    }
    let out = python(&args);
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(
        out.status.success(),
        "etcd {}: the wire logs do not match the capture (files kept in {}):\n{report}",
        bin.version(),
        dir.display()
    );
    // Every kind of traffic the scenario makes was seen and compared.
    for method in [
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Lease/LeaseRevoke",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Watch/Watch",
        "/v3lockpb.Lock/Lock",
        "/v3electionpb.Election/Campaign",
        "/v3electionpb.Election/Observe",
        "/v3electionpb.Election/Proclaim",
        "/v3electionpb.Election/Resign",
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/Range",
    ] {
        let decoded_text = common::ok(std::fs::read_to_string(&decoded));
        assert!(
            decoded_text.contains(&format!("\"{method}\"")),
            "etcd {}: the capture has no {method} exchange",
            bin.version()
        );
    }
    eprintln!(
        "etcd {}: {} (capture {captured_secs:.1} s, decode+compare {:.1} s)",
        bin.version(),
        report.trim(),
        started.elapsed().as_secs_f64() - captured_secs
    );

    // Edited logs are refused, each with a message naming what differs.
    for edit in edits() {
        let original = common::ok(std::fs::read_to_string(logs.path(edit.role)));
        let edited = (edit.apply)(&original).unwrap_or_else(|| {
            panic!(
                "etcd {}: {}: nothing to edit in the {} log:\n{original}",
                bin.version(),
                edit.what,
                edit.role
            )
        });
        assert_ne!(edited, original, "{}: the edit changed nothing", edit.what);
        let edited_path = dir.join(format!("edited-{}.jsonl", edit.role));
        common::ok(std::fs::write(&edited_path, edited));
        let mut args: Vec<String> = vec!["compare".into(), "--decoded".into(), path_str(&decoded)];
        for role in ROLES {
            args.push("--log".into());
            args.push(if role == edit.role {
                path_str(&edited_path)
            } else {
                path_str(&logs.path(role))
            });
        }
        let out = python(&args);
        let report = text(&out.stdout) + &text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "etcd {}: {}: the comparer should refuse the edited log:\n{report}",
            bin.version(),
            edit.what
        );
        let first = report
            .lines()
            .find(|l| edit.expect.iter().any(|w| l.contains(w)))
            .unwrap_or_default()
            .trim();
        eprintln!(
            "etcd {}: refused as it should be, {}: {first}",
            bin.version(),
            edit.what
        );
        for want in edit.expect {
            assert!(
                report.contains(want),
                "etcd {}: {}: the report does not say {want:?}:\n{report}",
                bin.version(),
                edit.what
            );
        }
    }
    if std::env::var_os("ETCD_LOCK_KEEP_CAPTURE").is_some() {
        eprintln!(
            "etcd {}: capture and logs kept in {}",
            bin.version(),
            dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Runs the six CLI processes: each flavour alone, and each flavour contended (the holder keeps
/// the lock 2.5 s with a 2 s TTL, so its keep-alive stream carries several messages while the
/// waiter waits). The four groups run side by side on distinct lock names.
fn run_scenarios(endpoint: &str, logs: &Logs) {
    let lock = |role: &str, via: &str, name: &str, cmd: &[&str]| -> Child {
        let mut c = Command::new(BIN);
        c.args([
            "--endpoints",
            endpoint,
            "--ttl",
            "2",
            "--via",
            via,
            "--wire-log",
        ])
        .arg(logs.path(role))
        .arg(name)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        common::ok(c.spawn())
    };
    let hold = ["sh", "-c", "echo held; sleep 2.5"];
    let alone = [
        lock(
            "recipe-alone",
            "recipe",
            "cap/recipe-alone",
            &["sleep", "1"],
        ),
        lock(
            "service-alone",
            "service",
            "cap/service-alone",
            &["sleep", "1"],
        ),
    ];
    let mut holders = [
        (
            lock("recipe-holder", "recipe", "cap/recipe-queue", &hold),
            "recipe",
        ),
        (
            lock("service-holder", "service", "cap/service-queue", &hold),
            "service",
        ),
    ];
    let mut waiters = Vec::new();
    for (holder, via) in holders.iter_mut() {
        wait_line(holder, "held", Duration::from_secs(10));
        let name = format!("cap/{via}-queue");
        waiters.push(lock(&format!("{via}-waiter"), via, &name, &["true"]));
    }
    let all = alone
        .into_iter()
        .chain(holders.into_iter().map(|(c, _)| c))
        .chain(waiters);
    for (child, role) in all.zip([
        "recipe-alone",
        "service-alone",
        "recipe-holder",
        "service-holder",
        "recipe-waiter",
        "service-waiter",
    ]) {
        let out = wait_output(child, Duration::from_secs(20));
        assert!(
            out.status.success(),
            "{role}: etcd-lock exited with {:?}: {}",
            out.status,
            text(&out.stderr)
        );
    }
}

/// An in-process client following an election through the `Election/Observe` stream while it
/// campaigns, proclaims and resigns (`ServiceElection`, TTL 2 s), and putting and reading back a
/// 40 kB binary value. It runs on its own runtime,
/// dropped at the end, so its connection closes as a CLI process's does when it exits.
fn run_election(endpoint: String, log: PathBuf) {
    let runtime = common::ok(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    );
    runtime.block_on(async move {
        let sink = Arc::new(common::ok(JsonLines::to_file(&log)));
        let client = common::ok(
            common::ok(Client::builder([endpoint], ClientOptions::new()))
                .wire_log(sink)
                .connect()
                .await,
        );
        let session = common::session(&client, 2).await;
        let elector = ServiceElection::new();
        let name = b"cap/election";
        let mut observer = common::ok(elector.observe(&client, name).await);
        let mut leader = common::ok(elector.campaign(&session, name, b"first").await);
        for want in ["first", "second"] {
            if want == "second" {
                common::ok(leader.proclaim("second").await);
            }
            let seen = tokio::time::timeout(Duration::from_secs(10), observer.next()).await;
            match seen {
                Ok(Some(Ok(info))) => assert_eq!(info.value_str(), want),
                other => panic!("observing the election: {other:?}"),
            }
        }
        // Meanwhile keep-alives flow on the 2 s lease. A 40 kB value that is not UTF-8 (base64 in
        // the log) goes out and comes back split over several HTTP/2 DATA frames.
        let big: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
        common::ok(client.put("cap/big", big.clone()).await);
        let got = common::ok(client.get("cap/big").await);
        assert_eq!(got.kvs().first().map(|kv| kv.value.clone()), Some(big));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        common::ok(leader.resign().await);
        drop(observer);
        common::ok(session.close().await);
    });
}

/// Waits for a line containing `want` on the child's stdout.
fn wait_line(child: &mut Child, want: &str, within: Duration) {
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = want.to_string();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let found = lines.any(|l| l.is_ok_and(|l| l.contains(&needle)));
        let _ = tx.send(found);
    });
    match rx.recv_timeout(within) {
        Ok(true) => {}
        other => panic!("no {want:?} line from the holder: {other:?}"),
    }
}

/// Waits for the child to exit (bounded), then returns its output.
fn wait_output(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return common::ok(child.wait_with_output()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                panic!("etcd-lock did not exit within {within:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// edits the comparer must refuse

struct Edit {
    what: &'static str,
    role: &'static str,
    apply: fn(&str) -> Option<String>,
    expect: &'static [&'static str],
}

fn edits() -> Vec<Edit> {
    vec![
        Edit {
            what: "a unary call line dropped (the waiter's first Txn)",
            role: "recipe-waiter",
            apply: |log| edit_first(log, |v| is_call(v, "/etcdserverpb.KV/Txn"), |_| None),
            expect: &["missing from the log", "/etcdserverpb.KV/Txn"],
        },
        Edit {
            what: "a response field changed (the holder's Txn header revision + 1)",
            role: "recipe-holder",
            apply: |log| {
                edit_first(
                    log,
                    |v| is_call(v, "/etcdserverpb.KV/Txn"),
                    |mut v| {
                        let rev = v["response"]["header"]["revision"].as_i64()?;
                        v["response"]["header"]["revision"] = (rev + 1).into();
                        Some(v)
                    },
                )
            },
            expect: &["differs from the capture", "response.header.revision"],
        },
        Edit {
            what: "a byte count changed (the service holder's Lock response_bytes + 1)",
            role: "service-holder",
            apply: |log| {
                edit_first(
                    log,
                    |v| is_call(v, "/v3lockpb.Lock/Lock"),
                    |mut v| {
                        let n = v["response_bytes"].as_u64()?;
                        v["response_bytes"] = (n + 1).into();
                        Some(v)
                    },
                )
            },
            expect: &["response_bytes: log"],
        },
        Edit {
            what: "request metadata changed (the first LeaseGrant's grpc-timeout)",
            role: "recipe-alone",
            apply: |log| {
                edit_first(
                    log,
                    |v| is_call(v, "/etcdserverpb.Lease/LeaseGrant"),
                    |mut v| {
                        v["metadata"].as_object_mut()?;
                        v["metadata"]["grpc-timeout"] = "5S".into();
                        Some(v)
                    },
                )
            },
            expect: &["metadata.grpc-timeout"],
        },
        Edit {
            what: "a stream message dropped (an event the recipe waiter's watch received)",
            role: "recipe-waiter",
            apply: |log| {
                edit_first(
                    log,
                    |v| {
                        v["kind"] == "recv"
                            && v["method"] == "/etcdserverpb.Watch/Watch"
                            && v["message"].get("events").is_some()
                    },
                    |_| None,
                )
            },
            expect: &["recv seq", "missing from the log"],
        },
        Edit {
            what: "a stream's close line dropped (the holder's keep-alive stream)",
            role: "recipe-holder",
            apply: |log| {
                edit_first(
                    log,
                    |v| v["kind"] == "close" && v["method"] == "/etcdserverpb.Lease/LeaseKeepAlive",
                    |_| None,
                )
            },
            expect: &["close line missing"],
        },
        Edit {
            what: "a stream field changed (the holder's first keep-alive request lease ID + 1)",
            role: "recipe-holder",
            apply: |log| {
                edit_first(
                    log,
                    |v| v["kind"] == "send" && v["method"] == "/etcdserverpb.Lease/LeaseKeepAlive",
                    |mut v| {
                        let id = &v["message"]["ID"];
                        let next = match id {
                            Value::Number(n) => Value::from(n.as_i64()? + 1),
                            Value::String(s) => {
                                Value::from((s.parse::<i64>().ok()? + 1).to_string())
                            }
                            _ => return None,
                        };
                        v["message"]["ID"] = next;
                        Some(v)
                    },
                )
            },
            expect: &["send[seq 1].message.ID"],
        },
        Edit {
            what: "a stream byte count changed (a keep-alive response's bytes - 1)",
            role: "service-waiter",
            apply: |log| {
                edit_first(
                    log,
                    |v| v["kind"] == "recv" && v["method"] == "/etcdserverpb.Lease/LeaseKeepAlive",
                    |mut v| {
                        let n = v["bytes"].as_u64()?;
                        v["bytes"] = n.checked_sub(1)?.into();
                        Some(v)
                    },
                )
            },
            expect: &["].bytes: log"],
        },
    ]
}

fn is_call(v: &Value, method: &str) -> bool {
    v.get("kind").is_none_or(|k| k == "call") && v["method"] == method
}

/// The log with its first line matching `pick` replaced by `change(line)` (dropped when that
/// gives `None`); `None` when no line matches.
fn edit_first(
    log: &str,
    pick: impl Fn(&Value) -> bool,
    change: impl Fn(Value) -> Option<Value>,
) -> Option<String> {
    let mut out = String::new();
    let mut done = false;
    for line in log.lines() {
        let value: Value = common::ok(serde_json::from_str(line));
        if !done && pick(&value) {
            done = true;
            if let Some(v) = change(value) {
                out.push_str(&v.to_string());
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    done.then_some(out)
}
