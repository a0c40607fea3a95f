//! Starts every etcd process of the testkit from one long-lived thread, so members die with
//! the test process.
//!
//! Each child asks the kernel for SIGKILL when its parent goes away (`PR_SET_PDEATHSIG`, set
//! between `fork` and `exec`). Linux ties that signal to the *thread* that forked, not to the
//! process: a member started from a `spawn_blocking` worker (which tokio retires after ten idle
//! seconds) or from a test's own thread would be killed when that thread ends. So the forks
//! happen on one dedicated thread that lives as long as the process. If the test process died
//! between the fork and the `prctl`, the child would miss the signal; it compares its parent
//! id with the test process id afterwards and exits instead of running etcd.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;

type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// The spawner thread's queue; the thread runs as long as this sender exists (forever).
static QUEUE: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();

/// `cmd.spawn()` on the spawner thread, with the parent-death signal set in the child.
pub(crate) fn spawn(mut cmd: Command) -> io::Result<Child> {
    die_with_parent(&mut cmd);
    let queue = QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("etcd-testkit-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .map(|_| tx)
                .map_err(|e| format!("starting the testkit's spawner thread: {e}"))
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))?;
    let (reply_tx, reply_rx) = mpsc::channel();
    queue
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the testkit's spawner thread has stopped"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the testkit's spawner thread has stopped"))?
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // Read before the fork: the child must compare against the test process, not itself.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid); it allocates nothing on success.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The test process is already gone: do not start an orphan.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn child_gets_the_parent_death_signal() {
        // /proc/<pid>/status has no PDEATHSIG field; check that spawning works from a thread
        // that ends right away and that the child outlives that thread.
        let child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            spawn(cmd)
        })
        .join()
        .map_err(|_| "thread panicked");
        let mut child = match child {
            Ok(Ok(c)) => c,
            other => panic!("spawn failed: {other:?}"),
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            child.try_wait().map(|s| s.is_none()).unwrap_or(false),
            "the child died with the short-lived thread that asked for it"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
