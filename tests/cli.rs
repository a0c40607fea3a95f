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
    hold_form_prints_the_key_like_etcdctl_lock,
    one_try_is_deterministic,
    key_deleted_by_someone_else_means_lost,
    credentials_never_reach_the_command,
    non_utf8_names_and_arguments_pass_through,
    kill_after_must_fit_the_ttl,
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
            "echo \"$ETCD_LOCK_KEY $ETCD_LOCK_FENCE $ETCD_LOCK_REV\"; exit 7",
        ],
    ));
    assert_eq!(out.status.code(), Some(7));
    let stdout = text(&out.stdout);
    let mut parts = stdout.split_whitespace();
    let (key, fence) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    assert!(key.starts_with("env/") && key.len() > 4, "{stdout}");
    assert!(u64::from_str_radix(&key[4..], 16).is_ok(), "{key}");
    assert!(fence.parse::<i64>().is_ok_and(|f| f > 1), "{fence}");
    // etcdctl's variable: the revision the lock was taken at (the key's create revision).
    assert_eq!(parts.next(), Some(fence), "ETCD_LOCK_REV: {stdout}");
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
                "0.5",
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
    // stderr is a pipe here: the table, but no progress lines.
    assert!(
        !text(&out.stderr).contains("bench: run"),
        "{}",
        text(&out.stderr)
    );
    let w1: Vec<_> = lines.iter().filter(|v| v["workload"] == "W1").collect();
    assert_eq!(w1.len(), 2, "{lines:?}");
    for v in w1 {
        assert_eq!(v["correct"], true);
        assert!(v["ops_per_s"].as_f64().is_some_and(|x| x > 0.0));
        assert!(v["ratio_to_txn_floor"].as_f64().is_some(), "{v}");
    }
    // W1's floors ran too: W1T (the recipe's two requests, built in the CLI's bench from the
    // public Txn builder) at two RPCs per op, W1F (put + delete).
    for floor in ["W1T", "W1F"] {
        let runs: Vec<_> = lines.iter().filter(|v| v["workload"] == floor).collect();
        assert!(!runs.is_empty(), "{floor}: {lines:?}");
        for v in runs {
            assert_eq!(v["correct"], true, "{v}");
            // Two per op, plus at most a keep-alive or two of the run's session.
            let rpcs = v["rpcs_per_op"].as_f64().unwrap_or(0.0);
            assert!((2.0..2.1).contains(&rpcs), "{v}");
        }
    }
}

/// A connection failure: the library's text (no CLI flag in it), then the CLI's own hint,
/// once.
#[test]
fn unreachable_endpoint_names_the_flag_once() {
    let port = {
        let listener = common::ok(std::net::TcpListener::bind("127.0.0.1:0"));
        common::ok(listener.local_addr()).port()
    };
    let out = run(Command::new(BIN).args([
        "--endpoints",
        &format!("127.0.0.1:{port}"),
        "--dial-timeout",
        "1",
        "job",
        "--",
        "true",
    ]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("could not connect to etcd"), "{stderr}");
    assert_eq!(stderr.matches("check --endpoints").count(), 1, "{stderr}");
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

/// Starts `etcd-lock NAME` (the hold form) and returns it with the first stdout line.
fn hold(cluster: &Cluster, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = common::ok(
        etcd_lock(cluster, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
    );
    let mut line = String::new();
    if let Some(out) = child.stdout.as_mut() {
        common::ok(std::io::BufReader::new(out).read_line(&mut line));
    }
    (child, line)
}

/// `etcd-lock NAME` without CMD holds the lock and prints its key, as `etcdctl lock NAME`
/// does, until a signal; `etcdctl lock` waits meanwhile (same key layout); `-w json` prints
/// one JSON line. Released on SIGINT/SIGTERM with status 0.
async fn hold_form_prints_the_key_like_etcdctl_lock(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let (mut ours, line) = hold(&cluster, &["held"]);
    let key = line.trim().to_string();
    assert!(
        key.starts_with("held/") && u64::from_str_radix(&key[5..], 16).is_ok(),
        "{line:?}"
    );
    // etcdctl cannot take it while we hold it.
    let etcdctl = common::ok(
        cluster
            .etcdctl()
            .args(["lock", "held", "--", "echo", "etcdctl-in"])
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
    );
    std::thread::sleep(Duration::from_millis(500));
    signal(ours.id(), "-INT");
    let status = common::ok(ours.wait());
    assert_eq!(status.code(), Some(0));
    let out = common::ok(etcdctl.wait_with_output());
    assert_eq!(
        text(&out.stdout).trim(),
        "etcdctl-in",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(keys_under(&cluster, "held").await, 0);

    // etcdctl's own hold form prints the same shape of line.
    let mut etcdctl = common::ok(
        cluster
            .etcdctl()
            .args(["lock", "held"])
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::piped())
            .spawn(),
    );
    let mut theirs = String::new();
    if let Some(out) = etcdctl.stdout.as_mut() {
        use std::io::BufRead;
        common::ok(std::io::BufReader::new(out).read_line(&mut theirs));
    }
    assert!(
        theirs.starts_with("held/") && theirs.len() == line.len(),
        "{theirs:?} vs {line:?}"
    );
    signal(etcdctl.id(), "-INT");
    let _ = etcdctl.wait();

    let (mut json, line) = hold(&cluster, &["-w", "json", "held"]);
    let v: serde_json::Value = common::ok(serde_json::from_str(&line));
    assert_eq!(v["name"], "held");
    let key = v["key"].as_str().unwrap_or_default().to_string();
    assert!(key.starts_with("held/"), "{line}");
    assert_eq!(v["lease"].as_str(), Some(&key[5..]));
    assert!(v["revision"].as_i64().is_some_and(|r| r > 1));
    signal(json.id(), "-TERM");
    assert_eq!(common::ok(json.wait()).code(), Some(0));
    assert_eq!(keys_under(&cluster, "held").await, 0);
}

/// `-n` and `--wait 0` (`-w 0`) are exactly one try: always 0 on a free lock, always the
/// conflict status on a held one (1 for -n as flock, 124 for a zero wait, -E overrides), for
/// both flavours, and nothing is left in etcd.
async fn one_try_is_deterministic(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    for _ in 0..5 {
        for args in [
            &["-n"][..],
            &["-w", "0"],
            &["--via", "service", "--wait", "0"],
        ] {
            let mut all = args.to_vec();
            all.extend(["once", "true"]);
            let out = run(etcd_lock(&cluster, &all));
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?}: {}",
                text(&out.stderr)
            );
        }
    }
    let (mut holder, _) = hold(&cluster, &["once"]);
    for (args, code) in [
        (&["-n"][..], 1),
        (&["--nonblock", "-E", "9"], 9),
        (&["-w", "0"], 124),
        (&["--timeout", "0", "--conflict-exit-code", "3"], 3),
        (&["--via", "service", "-n"], 1),
    ] {
        let mut all = args.to_vec();
        all.extend(["once", "echo", "never"]);
        let started = Instant::now();
        let out = run(etcd_lock(&cluster, &all));
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "one try does not wait"
        );
    }
    assert_eq!(
        keys_under(&cluster, "once").await,
        1,
        "only the holder's key"
    );
    signal(holder.id(), "-TERM");
    assert_eq!(common::ok(holder.wait()).code(), Some(0));
    assert_eq!(keys_under(&cluster, "once").await, 0);
}

/// Someone deletes the lock key while CMD runs (an operator breaking the lock, a buggy
/// client): etcd-lock notices through a watch on the key, stops CMD and exits 122.
async fn key_deleted_by_someone_else_means_lost(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    for via in ["recipe", "service"] {
        let name = format!("deleted-{via}");
        let mut child = common::ok(
            etcd_lock(
                &cluster,
                &[
                    "--via",
                    via,
                    &name,
                    "--",
                    "sh",
                    "-c",
                    "echo held; exec sleep 20",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
        );
        wait_line(&mut child, "held", Duration::from_secs(10));
        let client = common::client(&cluster).await;
        let started = Instant::now();
        common::ok(
            client
                .delete_with(
                    format!("{name}/"),
                    etcd_lock::kv::DeleteOptions::new().with_prefix(),
                )
                .await,
        );
        let out = common::ok(child.wait_with_output());
        assert_eq!(out.status.code(), Some(122), "{via}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("deleted"),
            "{}",
            text(&out.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
    }
}

/// Credentials come from ETCDCTL_PASSWORD or --password-file without a warning, from the
/// command line with one, and never reach CMD's environment. Without a password and without
/// a terminal, a clear usage error. (The member has no auth enabled: etcd accepts the
/// connection either way, which is enough to see where the password goes.)
async fn credentials_never_reach_the_command(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let show_env = [
        "creds",
        "--",
        "sh",
        "-c",
        "env | grep '^ETCDCTL_' | sort; true",
    ];
    let out = run(etcd_lock(&cluster, &show_env)
        .env("ETCDCTL_USER", "root:from-user")
        .env("ETCDCTL_PASSWORD", "from-env")
        .env("ETCDCTL_DIAL_TIMEOUT", "3s"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let env = text(&out.stdout);
    assert!(
        !env.contains("from-user") && !env.contains("from-env"),
        "{env}"
    );
    assert!(
        env.contains("ETCDCTL_DIAL_TIMEOUT=3s"),
        "other variables pass: {env}"
    );
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    let file = std::env::temp_dir().join(format!(
        "etcd-lock-pw-{}-{}",
        std::process::id(),
        bin.version()
    ));
    common::ok(std::fs::write(&file, "from-file\n"));
    let out = run(etcd_lock(
        &cluster,
        &[
            "--user",
            "root",
            "--password-file",
            &file.to_string_lossy(),
            "creds",
            "true",
        ],
    ));
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    let out = run(etcd_lock(
        &cluster,
        &["--user", "root:on-argv", "creds", "true"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("warning") && err.contains("ps"), "{err}");
    assert!(
        !err.contains("on-argv"),
        "the warning does not repeat it: {err}"
    );

    let out =
        run(etcd_lock(&cluster, &["--user", "root", "creds", "true"])
            .env_remove("ETCDCTL_PASSWORD"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ETCDCTL_PASSWORD"),
        "{}",
        text(&out.stderr)
    );

    // bench refuses what it cannot honour, rather than connect in plaintext.
    for (flag, env) in [
        (Some("--cacert=/nonexistent"), None),
        (None, Some(("ETCDCTL_USER", "root:pw"))),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "bench",
            "--endpoints",
            &cluster.endpoints().join(","),
            "--workload",
            "W5",
            "--scale",
            "0.01",
        ]);
        if let Some(flag) = flag {
            cmd.arg(flag);
        }
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("plaintext"),
            "{}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).is_empty());
    }
}

/// Names and CMD arguments are bytes: a non-UTF-8 name becomes the key's bytes in etcd, a
/// non-UTF-8 argument reaches CMD unchanged; no panic anywhere.
async fn non_utf8_names_and_arguments_pass_through(bin: &EtcdBinary) {
    use std::os::unix::ffi::OsStrExt;
    let cluster = common::single(bin);
    let name = std::ffi::OsStr::from_bytes(b"bytes-\xff\xfe");
    let arg = std::ffi::OsStr::from_bytes(b"arg-\xc3\x28");
    let out_file = std::env::temp_dir().join(format!(
        "etcd-lock-bytes-{}-{}",
        std::process::id(),
        bin.version()
    ));
    let mut cmd = etcd_lock(&cluster, &[]);
    cmd.arg(name)
        .args([
            "--",
            "sh",
            "-c",
            "printf '%s' \"$1\" > \"$2\"; printf '%s' \"$ETCD_LOCK_KEY\" >> \"$2\"",
            "sh",
        ])
        .arg(arg)
        .arg(&out_file);
    let out = run(cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = common::ok(std::fs::read(&out_file));
    let _ = std::fs::remove_file(&out_file);
    assert!(got.starts_with(b"arg-\xc3\x28bytes-\xff\xfe/"), "{got:?}");

    let mut cmd = etcd_lock(&cluster, &["-w", "json"]);
    cmd.arg(name);
    let (child, line) = {
        use std::io::BufRead;
        let mut child = common::ok(cmd.stdout(Stdio::piped()).spawn());
        let mut line = String::new();
        if let Some(o) = child.stdout.as_mut() {
            common::ok(std::io::BufReader::new(o).read_line(&mut line));
        }
        (child, line)
    };
    let v: serde_json::Value = common::ok(serde_json::from_str(&line));
    assert!(v["key_base64"].is_string() && v["key"].is_null(), "{line}");
    signal(child.id(), "-INT");
    let _ = common::ok(child.wait_with_output());
}

/// A --kill-after that leaves no room for SIGKILL before the lease could expire is refused.
async fn kill_after_must_fit_the_ttl(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let out = run(etcd_lock(
        &cluster,
        &["--ttl", "3", "--kill-after", "5", "fit", "true"],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not fit"),
        "{}",
        text(&out.stderr)
    );
    // Without --kill-after, a short TTL lowers the default grace instead.
    let out = run(etcd_lock(&cluster, &["--ttl", "3", "fit", "true"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(keys_under(&cluster, "fit").await, 0);
}
