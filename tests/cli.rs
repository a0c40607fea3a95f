//! The `etcd-lock` binary against real etcd servers: flock semantics, exit codes, environment,
//! lease loss, signal forwarding, wire log and bench output.
#![cfg(all(feature = "testkit", feature = "cli"))]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use etcd_lock::kv::GetOptions;
use etcd_lock::testkit::{Cluster, EtcdBinary};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-lock");

per_version!(
    second_process_waits_for_the_first,
    timeout_exits_124_and_leaves_nothing,
    exit_code_and_environment_pass_through,
    lost_lease_terminates_the_command,
    sigterm_is_forwarded_and_the_lock_released,
    wire_log_lines_are_json_naming_methods,
    verbose_logs_go_to_stderr_only,
);

fn etcd_lock(cluster: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--endpoints")
        .arg(cluster.endpoints().join(","))
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let cmd: &mut Command = cmd.borrow_mut();
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("running etcd-lock: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn keys_under(cluster: &Cluster, name: &str) -> usize {
    let client = common::client(cluster).await;
    let r = common::ok(
        client
            .get_with(format!("{name}/"), GetOptions::new().with_prefix())
            .await,
    );
    r.kvs().len()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// Reads the child's stdout until a line containing `want` (bounded).
fn wait_line(child: &mut std::process::Child, want: &str, within: Duration) {
    use std::io::{BufRead, BufReader};
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => return,
            Ok(_) => continue,
            Err(e) => panic!("no line with {want:?}: {e}"),
        }
    }
}

async fn second_process_waits_for_the_first(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let mut first = common::ok(
        etcd_lock(
            &cluster,
            &["job", "--", "sh", "-c", "echo first-in; sleep 1.5"],
        )
        .stdout(Stdio::piped())
        .spawn(),
    );
    wait_line(&mut first, "first-in", Duration::from_secs(10));
    let started = Instant::now();
    let second = run(etcd_lock(&cluster, &["job", "--", "echo", "second-in"]));
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(text(&second.stdout), "second-in\n");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "second ran after {:?} while the first held the lock",
        started.elapsed()
    );
    assert!(common::ok(first.wait()).success());
    assert_eq!(keys_under(&cluster, "job").await, 0);
}

async fn timeout_exits_124_and_leaves_nothing(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let mut holder = common::ok(
        etcd_lock(&cluster, &["busy", "--", "sh", "-c", "echo held; sleep 3"])
            .stdout(Stdio::piped())
            .spawn(),
    );
    wait_line(&mut holder, "held", Duration::from_secs(10));
    let started = Instant::now();
    let out = run(etcd_lock(
        &cluster,
        &["--timeout", "0.5", "busy", "--", "echo", "never"],
    ));
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(text(&out.stdout).is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("timed out") && err.lines().count() == 1,
        "{err}"
    );
    // Only the holder's key is left.
    assert_eq!(keys_under(&cluster, "busy").await, 1);
    assert!(common::ok(holder.wait()).success());
    assert_eq!(keys_under(&cluster, "busy").await, 0);
}

async fn exit_code_and_environment_pass_through(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let out = run(etcd_lock(
        &cluster,
        &[
            "env",
            "--",
            "sh",
            "-c",
            "echo \"$ETCD_LOCK_KEY $ETCD_LOCK_FENCE\"; exit 7",
        ],
    ));
    assert_eq!(out.status.code(), Some(7));
    let stdout = text(&out.stdout);
    let mut parts = stdout.split_whitespace();
    let (key, fence) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    assert!(key.starts_with("env/") && key.len() > 4, "{stdout}");
    assert!(u64::from_str_radix(&key[4..], 16).is_ok(), "{key}");
    assert!(fence.parse::<i64>().is_ok_and(|f| f > 1), "{fence}");
    let missing = run(etcd_lock(&cluster, &["env", "--", "/nonexistent/cmd"]));
    assert_eq!(missing.status.code(), Some(127));
    let usage = run(etcd_lock(&cluster, &["--ttl", "0", "env", "--", "true"]));
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage.stderr));
    let help = run(Command::new(BIN).arg("--help"));
    assert!(help.status.success() && text(&help.stdout).contains("EXIT STATUS"));
    let bad = run(Command::new(BIN).arg("--bogus"));
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(keys_under(&cluster, "env").await, 0);
}

async fn lost_lease_terminates_the_command(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let mut child = common::ok(
        etcd_lock(
            &cluster,
            &[
                "--ttl",
                "2",
                "--kill-after",
                "1",
                "lost",
                "--",
                "sh",
                "-c",
                "echo held; exec sleep 30",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn(),
    );
    wait_line(&mut child, "held", Duration::from_secs(10));
    let pid = child.id();
    signal(pid, "-STOP");
    std::thread::sleep(Duration::from_millis(3500));
    // The lease expired meanwhile: the key is gone and another process can take the lock.
    let other = run(etcd_lock(
        &cluster,
        &["--timeout", "5", "lost", "--", "true"],
    ));
    assert!(other.status.success(), "{}", text(&other.stderr));
    signal(pid, "-CONT");
    let started = Instant::now();
    let out = common::ok(child.wait_with_output());
    assert_eq!(out.status.code(), Some(122), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("lost"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn sigterm_is_forwarded_and_the_lock_released(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let script = "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    let mut child = common::ok(
        etcd_lock(&cluster, &["fwd", "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .spawn(),
    );
    wait_line(&mut child, "ready", Duration::from_secs(10));
    signal(child.id(), "-TERM");
    let status = common::ok(child.wait());
    assert_eq!(status.code(), Some(3));
    assert_eq!(keys_under(&cluster, "fwd").await, 0);
}

async fn wire_log_lines_are_json_naming_methods(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let dir = std::env::temp_dir().join(format!(
        "etcd-lock-wire-{}-{}",
        std::process::id(),
        bin.version()
    ));
    let log = dir.with_extension("jsonl");
    let out = run(etcd_lock(
        &cluster,
        &["--wire-log", &log.to_string_lossy(), "wired", "--", "true"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let content = common::ok(std::fs::read_to_string(&log));
    let _ = std::fs::remove_file(&log);
    let mut methods = Vec::new();
    for line in content.lines() {
        let value: serde_json::Value = common::ok(serde_json::from_str(line));
        methods.push(value["method"].as_str().unwrap_or_default().to_string());
    }
    for want in [
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Lease/LeaseRevoke",
    ] {
        assert!(
            methods.iter().any(|m| m == want),
            "{want} missing from {methods:?}"
        );
    }
    assert!(
        content.contains("wired/"),
        "the lock key is decoded as text"
    );
}

#[test]
fn bench_prints_one_json_line_per_flavour() {
    let bin = common::binary("3.5.1");
    let cluster = common::single(&bin);
    let out = run(Command::new(BIN)
        .args(["bench", "--endpoints"])
        .arg(cluster.endpoints().join(","))
        .args(["--workload", "W1", "--via", "both", "--scale", "0.05"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| common::ok(serde_json::from_str(l)))
        .collect();
    let w1: Vec<_> = lines.iter().filter(|v| v["workload"] == "W1").collect();
    assert_eq!(w1.len(), 2, "{lines:?}");
    for v in w1 {
        assert_eq!(v["correct"], true);
        assert!(v["ops_per_s"].as_f64().is_some_and(|x| x > 0.0));
    }
}

/// `-v` prints etcd-lock's info events (the library's lock acquired/released, the CLI's command
/// started/finished) on stderr, never stdout, which is the command's; without it (and without
/// RUST_LOG) nothing is logged; `-vv` adds debug events; a RUST_LOG that does not
/// parse is reported and ignored; `--via service` goes through the same code path.
async fn verbose_logs_go_to_stderr_only(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = common::unique("verbose");
    let name = name.trim_end_matches('/');
    let quiet = run(etcd_lock(&cluster, &[name, "--", "echo", "out"]).env_remove("RUST_LOG"));
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert_eq!(text(&quiet.stdout), "out\n");
    assert_eq!(text(&quiet.stderr), "", "nothing logged by default");

    for via in ["recipe", "service"] {
        let out = run(
            etcd_lock(&cluster, &["-v", "--via", via, name, "--", "echo", "out"])
                .env_remove("RUST_LOG"),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n", "logs must not reach stdout");
        let err = text(&out.stderr);
        assert!(
            err.contains("INFO") && err.contains("command started while holding the lock"),
            "{err}"
        );
        assert!(err.contains(&format!("lock={name}")), "{err}");
        assert!(err.contains("command finished"), "{err}");
        // The library's own events (feature `tracing`, on in `cli`): the handoff, with the
        // fencing token, in order around the command.
        let acquired = err.find("lock acquired");
        let started = err.find("command started");
        let released = err.find("lock released");
        assert!(
            acquired < started && started < released && acquired.is_some(),
            "{err}"
        );
        assert!(err.contains("fencing_token="), "{err}");
        assert!(!err.contains("DEBUG"), "-v is info only: {err}");
    }

    let out = run(
        etcd_lock(&cluster, &["-vv", "--via", "service", name, "--", "true"])
            .env_remove("RUST_LOG"),
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("DEBUG") && err.contains("via=\"service\""),
        "{err}"
    );

    // RUST_LOG alone (a target=level list) turns the same events on.
    let out = run(etcd_lock(&cluster, &[name, "--", "true"]).env("RUST_LOG", "etcd_lock=info"));
    assert!(
        text(&out.stderr).contains("command started"),
        "{}",
        text(&out.stderr)
    );
    let out = run(etcd_lock(&cluster, &[name, "--", "true"]).env("RUST_LOG", "etcd_lock=loud"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ignoring RUST_LOG"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(keys_under(&cluster, name).await, 0);
}
