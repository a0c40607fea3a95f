//! `etcd-lock NAME -- CMD`: take the lock, run CMD while holding it, release it.

use std::process::Stdio;
use std::time::Duration;

use etcd_lock::lock::{DynLocker, LockGuard, Locker};
use etcd_lock::{Error, Session, SessionOptions};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::args::LockArgs;
use crate::{EXIT_FAILED, EXIT_USAGE};

const EXIT_LOST: u8 = 122;
const EXIT_TIMEOUT: u8 = 124;
const EXIT_CANNOT_EXEC: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;
const EXIT_INTERRUPTED: u8 = 130;

fn fail(message: impl std::fmt::Display) -> u8 {
    eprintln!("etcd-lock: {message}");
    EXIT_FAILED
}

pub(crate) async fn run(a: LockArgs) -> u8 {
    // One code path for both flavours: `--via` picks a `Box<dyn DynLocker>` at run time.
    let locker: Box<dyn DynLocker> = a.via.locker();
    let client = match crate::connect(&a.common).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let session = match Session::with_options(&client, SessionOptions::new().with_ttl(a.ttl)).await
    {
        Ok(s) => s,
        Err(e @ Error::InvalidArgument { .. }) => {
            eprintln!("etcd-lock: --ttl: {e}");
            return EXIT_USAGE;
        }
        Err(e) => return fail(e),
    };
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        _ => return fail("cannot install signal handlers"),
    };

    // Wait for the lock, bounded by --timeout and interruptible by SIGINT/SIGTERM.
    tracing::debug!(
        lock = %a.name,
        via = locker.flavour(),
        lease = %format_args!("{:x}", session.lease()),
        "session open, waiting for the lock"
    );
    let acquire = locker.lock(&session, a.name.as_bytes());
    let timeout = async {
        match a.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        r = acquire => Ok(r),
        _ = timeout => Err(EXIT_TIMEOUT),
        _ = interrupt.recv() => Err(EXIT_INTERRUPTED),
        _ = terminate.recv() => Err(EXIT_INTERRUPTED),
    };
    let guard = match outcome {
        Ok(Ok(guard)) => guard,
        Ok(Err(e)) => {
            let _ = session.close().await;
            return fail(e);
        }
        Err(code) => {
            // Revoking the lease deletes our waiter key before we exit.
            let _ = session.close().await;
            if code == EXIT_TIMEOUT {
                eprintln!(
                    "etcd-lock: timed out after {:?} waiting for lock {}",
                    a.timeout.unwrap_or_default(),
                    a.name
                );
            } else {
                eprintln!("etcd-lock: interrupted while waiting for lock {}", a.name);
            }
            return code;
        }
    };

    let mut child = match spawn(&a.command, &guard) {
        Ok(child) => {
            tracing::info!(
                command = %a.command[0],
                pid = child.id(),
                lock = %a.name,
                fence = guard.fencing_token(),
                "command started while holding the lock"
            );
            child
        }
        Err((code, message)) => {
            let _ = guard.unlock().await;
            let _ = session.close().await;
            eprintln!("etcd-lock: {message}");
            return code;
        }
    };
    let lost = guard.lost();
    tokio::pin!(lost);
    let code = loop {
        tokio::select! {
            status = child.wait() => break exit_code(status),
            _ = &mut lost => {
                eprintln!(
                    "etcd-lock: lock {} lost (lease {:x} expired or revoked); terminating {}",
                    a.name, guard.lease(), a.command[0]
                );
                terminate_child(&mut child, a.kill_after).await;
                let _ = session.close().await;
                return EXIT_LOST;
            }
            _ = interrupt.recv() => forward(&child, libc::SIGINT),
            _ = terminate.recv() => forward(&child, libc::SIGTERM),
        }
    };
    tracing::info!(command = %a.command[0], exit_code = code, "command finished; releasing the lock");
    if let Err(e) = guard.unlock().await {
        eprintln!("etcd-lock: releasing lock {}: {e}", a.name);
    }
    let _ = session.close().await;
    code
}

fn spawn(command: &[String], guard: &LockGuard) -> Result<Child, (u8, String)> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("ETCD_LOCK_KEY", guard.key_str())
        .env("ETCD_LOCK_FENCE", guard.fencing_token().to_string())
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            (EXIT_NOT_FOUND, format!("{}: command not found", command[0]))
        }
        _ => (
            EXIT_CANNOT_EXEC,
            format!("{}: cannot execute: {e}", command[0]),
        ),
    })
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => code.clamp(0, 255) as u8,
            (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
            _ => EXIT_FAILED,
        },
        Err(e) => fail(format!("waiting for the command: {e}")),
    }
}

fn forward(child: &Child, sig: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a PID we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// SIGTERM, then SIGKILL after `grace` if the child is still running.
async fn terminate_child(child: &mut Child, grace: Duration) {
    forward(child, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
