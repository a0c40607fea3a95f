//! Packet-capture plumbing for tests that hold the wire log against the wire: `dumpcap` on
//! loopback, and the tshark-based comparer `tests/capture/compare.py`. Shared so that any test
//! (a CLI run, an in-process client, a future `Maintenance/Snapshot` test) can capture its own
//! traffic: `Dumpcap::start(port, ..)`, run the client with a wire log, `stop()`, then
//! `compare(..)` with the logs.
#![allow(dead_code, unreachable_pub)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The comparer script.
pub const COMPARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/capture/compare.py");
/// Our `.proto` files, which tshark reads.
pub const PROTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");

/// Panics with the install hint when tshark, dumpcap or python3 is missing.
pub fn require_tools() {
    for (tool, arg) in [
        ("tshark", "--version"),
        ("dumpcap", "--version"),
        ("python3", "--version"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{tool} is missing: run scripts/install-tools (tshark, dumpcap) and install Python 3"
        );
    }
}

/// Runs `compare.py` with `args` (`check ...`, `compare ...`, `decode ...`).
pub fn python(args: &[String]) -> Output {
    ok(Command::new("python3").arg(COMPARE).args(args).output())
}

/// A path as an argument string.
pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Lossy UTF-8 of process output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `dumpcap` recording the member's client port (and our UDP markers) on `lo` into a file.
///
/// "Capturing on 'lo'" is printed before the capture really runs, and dumpcap writes its file
/// in batches, so readiness is proven by a marker datagram (to a UDP port the filter also lets
/// through) found in the file; another marker after the traffic proves that everything before
/// it was written before dumpcap is stopped.
pub struct Dumpcap {
    child: Child,
    file: PathBuf,
    stderr: PathBuf,
    socket: UdpSocket,
    marker_port: u16,
}

impl Dumpcap {
    pub fn start(port: u16, file: &Path, dir: &Path) -> Dumpcap {
        // Bound for the test's lifetime, so the port stays ours and the markers are received.
        let sink = ok(UdpSocket::bind("127.0.0.1:0"));
        let marker_port = ok(sink.local_addr()).port();
        let stderr = dir.join("dumpcap.err");
        let child = ok(Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f"])
            .arg(format!(
                "tcp port {port} or (udp and dst port {marker_port})"
            ))
            .arg("-w")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(ok(std::fs::File::create(&stderr)))
            .spawn());
        let mut capture = Dumpcap {
            child,
            file: file.to_path_buf(),
            stderr,
            socket: sink,
            marker_port,
        };
        capture.wait_marker("start");
        capture
    }

    /// Sends `etcd-lock-capture-<what>-<pid>` every 20 ms until it is in the file.
    fn wait_marker(&mut self, what: &str) {
        let marker = format!("etcd-lock-capture-{what}-{}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let _ = self
                .socket
                .send_to(marker.as_bytes(), ("127.0.0.1", self.marker_port));
            std::thread::sleep(Duration::from_millis(20));
            let bytes = std::fs::read(&self.file).unwrap_or_default();
            if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dumpcap exited ({status}): {}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dumpcap did not record the {what} marker within 15 s: {}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }

    /// Waits until everything sent so far is in the file, then stops dumpcap (SIGTERM by PID).
    pub fn stop(&mut self) {
        self.wait_marker("end");
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(Instant::now() < deadline, "dumpcap did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        // "Packets received/dropped on interface 'Loopback: lo': 96/0 (...)": a capture with
        // holes would make the comparison fail for the wrong reason.
        let report = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let dropped = report
            .lines()
            .find(|l| l.contains("received/dropped"))
            .and_then(|l| l.rsplit_once(": "))
            .and_then(|(_, counts)| counts.split_whitespace().next())
            .and_then(|rd| rd.split_once('/'))
            .and_then(|(_, d)| d.parse::<u64>().ok());
        assert_eq!(
            dropped,
            Some(0),
            "dumpcap lost packets or gave no count: {report}"
        );
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("capture test plumbing: {e}"),
    }
}
