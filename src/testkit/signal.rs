//! Sending signals through the `kill` command (no `unsafe`, no libc).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::TestkitError;

/// Runs `kill -<sig> <pid>`.
pub(crate) fn send(pid: u32, sig: &'static str) -> Result<(), TestkitError> {
    let fail = |detail: String| TestkitError::Signal {
        signal: sig,
        pid,
        detail,
    };
    let out = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(format!("cannot run `kill`: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Waits (at most 1 s) until `/proc/<pid>/stat` shows the process stopped (`T`)
/// or not stopped. Best effort: returns at once where `/proc` is unavailable.
pub(crate) fn wait_stopped(pid: u32, stopped: bool) {
    let path = Path::new("/proc").join(pid.to_string()).join("stat");
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(&path) else {
            return;
        };
        // "pid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if matches!(state, Some("T") | Some("t")) == stopped {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
