//! CMD as a child that can never outlive etcd-lock.
//!
//! flock(1) gets this for free (CMD inherits the locked file descriptor); a lease lives in
//! etcd-lock's keep-alive loop instead, so CMD is tied to etcd-lock's life: the child sets
//! `PR_SET_PDEATHSIG = SIGKILL` between fork and exec, then checks that its parent is still
//! the etcd-lock that forked it (if etcd-lock died before the prctl, the child was already
//! re-parented and no death signal will ever come: it exits instead of running CMD).
//!
//! The death signal fires when the *thread* that forked exits, not the process. etcd-lock
//! forks from its main thread (the single-threaded runtime runs on it), which lives as long
//! as the process; [`spawn`] refuses to fork from any other thread.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Instant;

use tokio::process::{Child, Command};

/// CMD could not be executed.
pub(crate) const EXIT_CANNOT_EXEC: u8 = 126;
/// CMD was not found.
pub(crate) const EXIT_NOT_FOUND: u8 = 127;

/// Environment variables that carry credentials: never passed to CMD.
const CREDENTIAL_VARS: [&str; 2] = ["ETCDCTL_USER", "ETCDCTL_PASSWORD"];

/// Starts `command` with the lock's environment (`ETCD_LOCK_KEY`, `ETCD_LOCK_REV`,
/// `ETCD_LOCK_FENCE`), without credential variables, killed by the kernel if etcd-lock dies.
pub(crate) fn spawn(
    command: &[OsString],
    key: &[u8],
    revision: i64,
) -> Result<Child, (u8, String)> {
    use std::os::unix::ffi::OsStrExt;
    let shown = command[0].to_string_lossy().into_owned();
    // SAFETY: getpid/gettid have no preconditions.
    let (parent, thread) = unsafe { (libc::getpid(), libc::gettid()) };
    if parent != thread {
        return Err((
            crate::EXIT_FAILED,
            "internal error: CMD must be started from the main thread".into(),
        ));
    }
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("ETCD_LOCK_KEY", std::ffi::OsStr::from_bytes(key))
        .env("ETCD_LOCK_REV", revision.to_string())
        .env("ETCD_LOCK_FENCE", revision.to_string())
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    for var in CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // etcd-lock is already gone: do not run CMD without it.
                return Err(std::io::Error::other("etcd-lock exited before CMD started"));
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => (EXIT_NOT_FOUND, format!("{shown}: command not found")),
        _ => (EXIT_CANNOT_EXEC, format!("{shown}: cannot execute: {e}")),
    })
}

/// Sends `signo` to the child (if it was not reaped yet).
pub(crate) fn signal(child: &Child, signo: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a PID we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid as libc::pid_t, signo);
        }
    }
}

/// True when a signal etcd-lock caught already reached the child: the kernel sent it to the
/// terminal's foreground process group (Ctrl-C, Ctrl-\, resize, hang-up) and the child is
/// still in etcd-lock's process group.
pub(crate) fn already_delivered(child: &Child, caught: crate::signals::Caught) -> bool {
    let Some(pid) = child.id() else {
        return true;
    };
    // SAFETY: getpgid/getpgrp have no preconditions; a failing getpgid returns -1.
    caught.from_terminal && unsafe { libc::getpgid(pid as libc::pid_t) == libc::getpgrp() }
}

/// SIGTERM now, SIGKILL at `kill_at` if the child still runs; returns once it is reaped.
pub(crate) async fn terminate(child: &mut Child, kill_at: Instant) {
    signal(child, libc::SIGTERM);
    let deadline = tokio::time::Instant::from_std(kill_at);
    if tokio::time::timeout_at(deadline, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// The exit status to report for the child's end: its code, or 128+N for signal N.
pub(crate) fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => code.clamp(0, 255) as u8,
            (None, Some(sig)) => crate::signals::exit_code(sig),
            _ => crate::EXIT_FAILED,
        },
        Err(e) => {
            say!("waiting for the command: {e}");
            crate::EXIT_FAILED
        }
    }
}
