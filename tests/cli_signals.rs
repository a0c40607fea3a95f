//! The `etcd-lock` binary's promise, tested as a person meets it: in a real terminal (tmux,
//! private socket) and with `kill` from another shell. CMD is never running while another
//! holder can acquire the lock: each scenario ends with a second holder whose own CMD reads
//! the first CMD's state from /proc at the moment it holds the lock, and must find it gone.
//!
//! CMD is a small python3 program that blocks the forwarded signals and records each one it
//! receives (`sigwaitinfo`: number, `si_code`, sender pid), so a signal delivered twice (once
//! by the terminal, once forwarded) shows as two lines. Needs tmux and python3
//! (scripts/install-tools).
//!
//! `ETCD_LOCK_CLI_UNDER_TEST=/path/to/etcd-lock` runs the first holder with another build (the
//! probes stay this build's), e.g. to watch these scenarios fail on an older binary.
#![cfg(all(feature = "testkit", feature = "cli"))]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use etcd_lock::testkit::{Cluster, EtcdBinary};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-lock");

per_version!(
    ctrl_c_and_ctrl_backslash_reach_cmd_once,
    closing_the_pane_keeps_the_lock_while_cmd_runs,
    signals_from_kill_are_forwarded_with_128_plus_n,
    kill_9_of_etcd_lock_takes_cmd_along,
    sigterm_while_waiting_exits_143,
    cmd_is_gone_before_the_lease_can_expire,
    password_prompt_on_a_terminal,
);

/// Records every signal it receives; dies by the ones named in its second argument.
const RECORDER: &str = r#"
import os, signal, sys, time
log = sys.argv[1]
die_on = set(sys.argv[2].split(',')) if len(sys.argv) > 2 and sys.argv[2] else set()
sigs = {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
def write(line):
    with open(log, 'a') as f:
        f.write(line + '\n')
write('pid %d ppid %d' % (os.getpid(), os.getppid()))
while True:
    info = signal.sigwaitinfo(sigs)
    name = signal.Signals(info.si_signo).name[3:]
    write('sig %s code %d from %d' % (name, info.si_code, info.si_pid))
    if name in die_on:
        signal.signal(info.si_signo, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {info.si_signo})
        os.kill(os.getpid(), info.si_signo)
        time.sleep(5)
"#;

/// A scratch folder with the recorder script, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str, bin: &EtcdBinary) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "etcd-lock-sig-{}-{tag}-{}",
            std::process::id(),
            bin.version()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        common::ok(std::fs::create_dir_all(&dir));
        common::ok(std::fs::write(dir.join("recorder.py"), RECORDER));
        Scratch { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// etcd-lock's stderr, when the test sent it to `stderr.txt`.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr.txt")).unwrap_or_default()
    }
    /// ` 2>>stderr.txt`, for a command line typed in the terminal.
    fn to_stderr_file(&self) -> String {
        format!(" 2>>{}", self.path("stderr.txt").display())
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.path("signals.log")).unwrap_or_default()
    }
    /// The recorder's command line, logging to `signals.log`, dying by `die_on`.
    fn recorder(&self, die_on: &str) -> String {
        format!(
            "python3 {} {} {die_on}",
            self.path("recorder.py").display(),
            self.path("signals.log").display()
        )
    }
    /// (CMD pid, its parent's pid) once the recorder started; `context` (the terminal's
    /// screen) goes into the failure message.
    fn cmd_pids(&self, context: impl Fn() -> String) -> (u32, u32) {
        let started = wait_for_or(
            "the command to start",
            Duration::from_secs(30),
            context,
            || {
                let log = self.log();
                let first = log.lines().next()?.to_string();
                let mut words = first.split_whitespace();
                match (words.next(), words.next(), words.next(), words.next()) {
                    (Some("pid"), Some(pid), Some("ppid"), Some(ppid)) => {
                        Some((pid.parse().ok()?, ppid.parse().ok()?))
                    }
                    _ => None,
                }
            },
        );
        started
    }
    /// The recorded signals: (name, si_code, sender pid).
    fn signals(&self) -> Vec<(String, i32, u32)> {
        self.log()
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                match w.as_slice() {
                    ["sig", name, "code", code, "from", pid] => {
                        Some((name.to_string(), code.parse().ok()?, pid.parse().ok()?))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tmux server on a private socket, with one window running an interactive shell (job
/// control: each command line its own foreground process group, as in a real terminal).
struct Tmux {
    socket: String,
    server_pid: Option<u32>,
}

impl Tmux {
    fn start(tag: &str) -> Tmux {
        let socket = format!("etcd-lock-test-{}-{tag}", std::process::id());
        let mut tmux = Tmux {
            socket,
            server_pid: None,
        };
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "200",
            "-y",
            "50",
            "sh",
        ]);
        assert!(out.status.success(), "tmux: {}", text(&out.stderr));
        let pid = tmux.cmd(&["display-message", "-p", "-t", "t", "#{pid}"]);
        tmux.server_pid = text(&pid.stdout).trim().parse().ok();
        tmux
    }
    fn cmd(&self, args: &[&str]) -> Output {
        common::ok(
            Command::new("tmux")
                .arg("-L")
                .arg(&self.socket)
                .args(args)
                .stdin(Stdio::null())
                .output(),
        )
    }
    /// Types `line` and Enter.
    fn type_line(&self, line: &str) {
        assert!(self
            .cmd(&["send-keys", "-t", "t", "-l", line])
            .status
            .success());
        assert!(self
            .cmd(&["send-keys", "-t", "t", "Enter"])
            .status
            .success());
    }
    /// Presses a key such as `C-c`.
    fn press(&self, key: &str) {
        assert!(self.cmd(&["send-keys", "-t", "t", key]).status.success());
    }
    fn screen(&self) -> String {
        text(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout)
    }
    /// Closes the window (the terminal hangs up on everything in it).
    fn close(&self) {
        let _ = self.cmd(&["kill-window", "-t", "t"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
        if let Some(pid) = self.server_pid {
            signal(pid, "-KILL");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `probe` every 20 ms until it returns `Some`, or panics after `within`.
fn wait_for<T>(what: &str, within: Duration, probe: impl FnMut() -> Option<T>) -> T {
    wait_for_or(what, within, String::new, probe)
}

/// [`wait_for`], with `context()` in the panic message.
fn wait_for_or<T>(
    what: &str,
    within: Duration,
    context: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// True while `pid` runs (a zombie, already dead but not yet reaped, does not count).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            None | Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

/// The binary whose promise is tested (the first holder).
fn under_test() -> String {
    std::env::var("ETCD_LOCK_CLI_UNDER_TEST").unwrap_or_else(|_| BIN.to_string())
}

fn etcd_lock_line(cluster: &Cluster, args: &str) -> String {
    format!(
        "{} --endpoints {} {args}",
        under_test(),
        cluster.endpoints().join(",")
    )
}

/// A second holder: waits up to `wait` for `name` and, once it holds it, reports whether
/// `first_cmd` is still running at that moment ("overlap") or not ("clear").
fn second_holder(cluster: &Cluster, name: &str, wait: &str, first_cmd: u32) -> Output {
    let check = format!(
        "s=$(sed 's/.*) //' /proc/{first_cmd}/stat 2>/dev/null | cut -c1); \
         case \"$s\" in ''|Z|X) echo clear;; *) echo overlap;; esac"
    );
    common::ok(
        Command::new(BIN)
            .args([
                "--endpoints",
                &cluster.endpoints().join(","),
                "--wait",
                wait,
                name,
            ])
            .args(["--", "sh", "-c", &check])
            .stdin(Stdio::null())
            .output(),
    )
}

fn assert_clear(second: &Output) {
    assert!(
        second.status.success() && text(&second.stdout).trim() == "clear",
        "second holder: status {:?}, stdout {:?}, stderr {:?}",
        second.status.code(),
        text(&second.stdout),
        text(&second.stderr)
    );
}

fn rc_file(scratch: &Scratch) -> Option<i32> {
    std::fs::read_to_string(scratch.path("rc"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Ctrl-C and Ctrl-\ in the terminal: CMD (in the same foreground process group) gets each
/// exactly once, from the terminal, not a second time forwarded by etcd-lock; the lock stays
/// held while CMD survives them. Then `kill -TERM` of etcd-lock is forwarded, CMD dies by it,
/// and etcd-lock exits 143 after releasing.
async fn ctrl_c_and_ctrl_backslash_reach_cmd_once(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let scratch = Scratch::new("ctrlc", bin);
    let tmux = Tmux::start(&format!("ctrlc-{}", bin.version()));
    let line = etcd_lock_line(
        &cluster,
        &format!("--ttl 8 ctrlc -- {}", scratch.recorder("TERM")),
    );
    tmux.type_line(&format!(
        "{line}; echo $? > {}",
        scratch.path("rc").display()
    ));
    let (cmd, etcd_lock) = scratch.cmd_pids(|| tmux.screen());

    tmux.press("C-c");
    wait_for("SIGINT at the command", Duration::from_secs(10), || {
        scratch.signals().iter().any(|s| s.0 == "INT").then_some(())
    });
    tmux.press("C-\\");
    wait_for("SIGQUIT at the command", Duration::from_secs(10), || {
        scratch
            .signals()
            .iter()
            .any(|s| s.0 == "QUIT")
            .then_some(())
    });
    // A forwarded copy would come from etcd-lock within milliseconds; give it a second.
    std::thread::sleep(Duration::from_secs(1));
    let seen = scratch.signals();
    let from_etcd_lock: Vec<_> = seen.iter().filter(|s| s.2 == etcd_lock).collect();
    assert!(
        from_etcd_lock.is_empty(),
        "terminal signals delivered again by etcd-lock: {seen:?}\n{}",
        tmux.screen()
    );
    assert_eq!(seen.iter().filter(|s| s.0 == "INT").count(), 1, "{seen:?}");
    assert!(
        running(cmd) && running(etcd_lock),
        "both survive: CMD handled the keys"
    );

    // The lock is still held: a one-try holder finds it busy.
    let busy = common::ok(
        Command::new(BIN)
            .args([
                "--endpoints",
                &cluster.endpoints().join(","),
                "-n",
                "ctrlc",
                "true",
            ])
            .stdin(Stdio::null())
            .output(),
    );
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy.stderr));

    signal(etcd_lock, "-TERM");
    let rc = wait_for("etcd-lock to exit", Duration::from_secs(20), || {
        rc_file(&scratch)
    });
    assert_eq!(rc, 143, "{}", tmux.screen());
    let term: Vec<_> = scratch
        .signals()
        .into_iter()
        .filter(|s| s.0 == "TERM")
        .collect();
    assert_eq!(term.len(), 1);
    assert_eq!(term[0].2, etcd_lock, "SIGTERM forwarded by etcd-lock");
    assert_clear(&second_holder(&cluster, "ctrlc", "10", cmd));
}

/// Closing the terminal hangs up on etcd-lock and CMD together. A CMD that survives the
/// hang-up keeps running, so etcd-lock must keep the lock (and the lease) until it ends: a
/// second holder waiting longer than the TTL must not get it meanwhile.
async fn closing_the_pane_keeps_the_lock_while_cmd_runs(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let scratch = Scratch::new("pane", bin);
    let tmux = Tmux::start(&format!("pane-{}", bin.version()));
    // The recorder ignores HUP (records it) and dies by TERM.
    let line = etcd_lock_line(
        &cluster,
        &format!("--ttl 4 pane -- {}", scratch.recorder("TERM")),
    );
    tmux.type_line(&format!("{line}{}", scratch.to_stderr_file()));
    let (cmd, etcd_lock) = scratch.cmd_pids(|| tmux.screen());
    tmux.close();
    wait_for("SIGHUP at the command", Duration::from_secs(10), || {
        scratch.signals().iter().any(|s| s.0 == "HUP").then_some(())
    });
    assert!(running(cmd), "the command survives the hang-up");
    // Two and a half TTLs later the lock must still be held (by the living etcd-lock, for the
    // living CMD).
    let second = second_holder(&cluster, "pane", "10", cmd);
    assert_eq!(
        second.status.code(),
        Some(124),
        "a second holder got the lock while the first CMD ran: {} {}\nfirst holder: {}",
        text(&second.stdout),
        text(&second.stderr),
        scratch.stderr()
    );
    assert!(running(etcd_lock), "etcd-lock holds on while CMD runs");
    // CMD ends: the lock is released, and the next holder finds CMD gone.
    signal(cmd, "-TERM");
    assert_clear(&second_holder(&cluster, "pane", "10", cmd));
    wait_for("etcd-lock to exit", Duration::from_secs(10), || {
        (!running(etcd_lock)).then_some(())
    });
}

/// `kill -HUP`, `-QUIT`, `-USR1`, `-USR2` from another shell: forwarded once to CMD (sender: etcd-lock),
/// CMD dies by it, etcd-lock releases and exits 128+N.
async fn signals_from_kill_are_forwarded_with_128_plus_n(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let tmux = Tmux::start(&format!("kill-{}", bin.version()));
    for (sig, code) in [("HUP", 129), ("QUIT", 131), ("USR1", 138), ("USR2", 140)] {
        let scratch = Scratch::new(&format!("kill-{sig}"), bin);
        let name = format!("kill-{sig}");
        let line = etcd_lock_line(
            &cluster,
            &format!("--ttl 8 {name} -- {}", scratch.recorder(sig)),
        );
        tmux.type_line(&format!(
            "{line}; echo $? > {}",
            scratch.path("rc").display()
        ));
        let (cmd, etcd_lock) = scratch.cmd_pids(|| tmux.screen());
        signal(etcd_lock, &format!("-{sig}"));
        let rc = wait_for("etcd-lock to exit", Duration::from_secs(20), || {
            rc_file(&scratch)
        });
        assert_clear(&second_holder(&cluster, &name, "12", cmd));
        assert_eq!(rc, code, "SIG{sig}: {}", tmux.screen());
        let seen = scratch.signals();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            (seen[0].0.as_str(), seen[0].2),
            (sig, etcd_lock),
            "{seen:?}"
        );
    }
}

/// `kill -9` of etcd-lock: nothing can be caught, the lease lives on until its TTL runs out,
/// and CMD must not be running when the next holder gets the lock. The same for a signal
/// etcd-lock does not catch and whose default action ends it (SIGALRM).
async fn kill_9_of_etcd_lock_takes_cmd_along(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let tmux = Tmux::start(&format!("kill9-{}", bin.version()));
    for sig in ["KILL", "ALRM"] {
        let scratch = Scratch::new(&format!("kill9-{sig}"), bin);
        let name = format!("kill9-{sig}");
        let line = etcd_lock_line(
            &cluster,
            &format!("--ttl 2 {name} -- {}", scratch.recorder("")),
        );
        tmux.type_line(&format!("{line}{}", scratch.to_stderr_file()));
        let (cmd, etcd_lock) = scratch.cmd_pids(|| tmux.screen());
        signal(etcd_lock, &format!("-{sig}"));
        assert_clear(&second_holder(&cluster, &name, "10", cmd));
        wait_for("CMD to be gone", Duration::from_secs(5), || {
            (!running(cmd)).then_some(())
        });
    }
}

/// SIGTERM while waiting for the lock: 143 (128 + 15), and its waiter key is gone.
async fn sigterm_while_waiting_exits_143(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let endpoints = cluster.endpoints().join(",");
    let mut holder = common::ok(
        Command::new(BIN)
            .args(["--endpoints", &endpoints, "waitterm"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn(),
    );
    // The hold form prints the key once it holds the lock.
    let mut line = String::new();
    {
        use std::io::BufRead;
        let Some(out) = holder.stdout.as_mut() else {
            panic!("no stdout")
        };
        common::ok(std::io::BufReader::new(out).read_line(&mut line));
    }
    assert!(line.starts_with("waitterm/"), "{line}");
    let waiter = common::ok(
        Command::new(under_test())
            .args(["--endpoints", &endpoints, "waitterm", "true"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn(),
    );
    let client = common::client(&cluster).await;
    // Wait until the waiter's key is there (two keys under the name).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = common::ok(
            client
                .get_with("waitterm/", etcd_lock::kv::GetOptions::new().with_prefix())
                .await,
        );
        if r.kvs().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "waiter never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(waiter.id(), "-TERM");
    let out = common::ok(waiter.wait_with_output());
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    let r = common::ok(
        client
            .get_with("waitterm/", etcd_lock::kv::GetOptions::new().with_prefix())
            .await,
    );
    assert_eq!(r.kvs().len(), 1, "the waiter's key is gone");
    signal(holder.id(), "-INT");
    let status = common::ok(holder.wait());
    assert_eq!(
        status.code(),
        Some(0),
        "the hold form releases on a signal and exits 0"
    );
}

/// The only member pauses: no keep-alive is answered any more. etcd-lock warns, then stops
/// CMD (which ignores SIGTERM, so SIGKILL is what ends it) before the lease's TTL has run out
/// since the last keep-alive it could have had answered (before the pause), and exits 122.
/// After the member resumes, a second holder finds CMD gone.
async fn cmd_is_gone_before_the_lease_can_expire(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let scratch = Scratch::new("pause", bin);
    let ttl = 6.0;
    // --kill-after above the keep-alive period (TTL/3): the old order (SIGTERM at the local
    // deadline, SIGKILL kill-after later) cannot end CMD before the TTL has run out.
    let mut first = common::ok(
        Command::new(under_test())
            .args(["--endpoints", &cluster.endpoints().join(",")])
            .args(["--ttl", "6", "--kill-after", "2.5", "pause", "--"])
            .args(scratch.recorder("").split_whitespace())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn(),
    );
    let (cmd, _) = scratch.cmd_pids(String::new);
    // Let a keep-alive or two be answered, then pause the member.
    std::thread::sleep(Duration::from_millis(1500));
    let paused_at = Instant::now();
    common::ok(cluster.member(0).pause());
    let gone_at = wait_for("CMD to be stopped", Duration::from_secs(30), || {
        (!running(cmd)).then(Instant::now)
    });
    let after = gone_at.duration_since(paused_at).as_secs_f64();
    assert!(
        after < ttl,
        "CMD ran {after:.2}s after the pause, beyond the {ttl}s TTL since the last keep-alive"
    );
    common::ok(cluster.member(0).resume());
    let status = wait_for("etcd-lock to exit", Duration::from_secs(20), || {
        first.try_wait().ok().flatten()
    });
    let mut err = String::new();
    if let Some(mut e) = first.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(122), "{err}");
    assert!(err.contains("not answered"), "keep-alive warning: {err}");
    let signals = scratch.signals();
    assert!(
        signals.iter().any(|s| s.0 == "TERM"),
        "SIGTERM came first: {signals:?}"
    );
    assert_clear(&second_holder(&cluster, "pause", "20", cmd));
}

/// `--user NAME` without a password, in a terminal: etcd-lock asks for it without echo (the
/// typed password never shows on the screen), then runs CMD.
async fn password_prompt_on_a_terminal(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let scratch = Scratch::new("prompt", bin);
    let tmux = Tmux::start(&format!("prompt-{}", bin.version()));
    let line = etcd_lock_line(&cluster, "--user root prompt -- echo cmd-ran");
    tmux.type_line(&format!(
        "{line}; echo $? > {}",
        scratch.path("rc").display()
    ));
    wait_for("the prompt", Duration::from_secs(20), || {
        tmux.screen().contains("Password for root:").then_some(())
    });
    tmux.type_line("s3cret-typed");
    let rc = wait_for("etcd-lock to exit", Duration::from_secs(20), || {
        rc_file(&scratch)
    });
    let screen = tmux.screen();
    assert_eq!(rc, 0, "{screen}");
    assert!(screen.contains("cmd-ran"), "{screen}");
    assert!(
        !screen.contains("s3cret-typed"),
        "the password was echoed: {screen}"
    );
}

/// `bench` on a terminal prints progress lines on stderr (run, workload, elapsed, rate);
/// `--quiet` silences them. (On a pipe they are off: see tests/cli.rs.)
#[test]
fn bench_progress_on_a_terminal() {
    let bin = common::binary("3.5.1");
    let cluster = common::single(&bin);
    let scratch = Scratch::new("bench", &bin);
    let tmux = Tmux::start("bench");
    for quiet in [false, true] {
        let _ = std::fs::remove_file(scratch.path("rc"));
        tmux.type_line("clear");
        let line = format!(
            "{BIN} bench --endpoints {} --workload W5 --scale 0.05 {} > {}; echo $? > {}",
            cluster.endpoints().join(","),
            if quiet { "--quiet" } else { "" },
            scratch.path("out.jsonl").display(),
            scratch.path("rc").display()
        );
        tmux.type_line(&line);
        let rc = wait_for("bench to end", Duration::from_secs(60), || {
            rc_file(&scratch)
        });
        let screen = tmux.screen();
        assert_eq!(rc, 0, "{screen}");
        let out = common::ok(std::fs::read_to_string(scratch.path("out.jsonl")));
        assert!(
            out.contains("\"workload\":\"W5\""),
            "JSON stays on stdout: {out}"
        );
        if quiet {
            assert!(!screen.contains("bench: run"), "{screen}");
        } else {
            assert!(screen.contains("bench: run 1/1: W5 started"), "{screen}");
            assert!(screen.contains("ops/s"), "{screen}");
        }
    }
}
