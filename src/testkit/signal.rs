//! Sending signals with `kill(2)` (through `libc`), and waiting for a stop to take effect.

use std::path::Path;
use std::time::{Duration, Instant};

use super::TestkitError;

/// Sends signal `sig` (`STOP`, `CONT`, `TERM`, `KILL`, `INT` or `HUP`) to process `pid`.
pub(crate) fn send(pid: u32, sig: &'static str) -> Result<(), TestkitError> {
    let fail = |detail: String| TestkitError::Signal {
        signal: sig,
        pid,
        detail,
    };
    let number = match sig {
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        _ => return Err(fail("unknown signal name".to_string())),
    };
    let pid = libc::pid_t::try_from(pid).map_err(|_| fail("not a valid process id".into()))?;
    if pid <= 0 {
        // kill(2) would signal a whole process group (0) or every process (-1).
        return Err(fail("not a valid process id".into()));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, number) } == 0 {
        Ok(())
    } else {
        Err(fail(std::io::Error::last_os_error().to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_and_continues_a_child_and_refuses_bad_input() {
        let mut child = match std::process::Command::new("sleep").arg("30").spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start sleep: {e}"),
        };
        let pid = child.id();
        assert!(send(pid, "STOP").is_ok());
        wait_stopped(pid, true);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('T'));
        assert!(send(pid, "CONT").is_ok());
        wait_stopped(pid, false);
        assert!(send(pid, "KILL").is_ok());
        let status = child.wait().ok().and_then(|s| {
            use std::os::unix::process::ExitStatusExt;
            s.signal()
        });
        assert_eq!(status, Some(libc::SIGKILL));
        // The process is gone (reaped): ESRCH, reported with the signal and pid.
        let gone = send(pid, "TERM");
        assert!(
            matches!(&gone, Err(TestkitError::Signal { signal: "TERM", detail, .. }) if detail.contains("No such process")),
            "{gone:?}"
        );
        assert!(matches!(
            send(pid, "USR9"),
            Err(TestkitError::Signal { .. })
        ));
        assert!(matches!(send(0, "TERM"), Err(TestkitError::Signal { .. })));
    }
}
