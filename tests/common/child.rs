//! A helper process for tests: this very test binary re-executed to run one `#[tokio::test]`
//! (which acts only when its environment variable is set), talking back over stdout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use super::ok;

/// A re-executed test binary running one test as a separate process.
pub struct ChildTest {
    /// The process (killed on drop).
    pub child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    test: &'static str,
}

impl ChildTest {
    /// Runs test `test` of this binary in a new process with `env=spec` set.
    pub fn spawn(test: &'static str, env: &str, spec: &str) -> ChildTest {
        let exe = ok(std::env::current_exe());
        let mut child = ok(tokio::process::Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn());
        let lines = match child.stdout.take() {
            Some(s) => BufReader::new(s).lines(),
            None => panic!("no stdout"),
        };
        ChildTest { child, lines, test }
    }

    /// The next line containing `prefix`, from `prefix` on (bounded by `within`).
    pub async fn line_starting(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.next_line()).await {
                // libtest prints "test <name> ... " on the same line first.
                Ok(Ok(Some(line))) if line.contains(prefix) => {
                    return line[line.find(prefix).unwrap_or(0)..].trim().to_string()
                }
                Ok(Ok(Some(_))) => continue,
                other => panic!("{}: no {prefix} line: {other:?}", self.test),
            }
        }
    }

    /// Sends `sig` (e.g. `-STOP`) to the process with kill(1).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().map(|p| p.to_string()).unwrap_or_default();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    }
}
