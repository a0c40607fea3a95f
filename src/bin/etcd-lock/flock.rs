//! `etcd-lock NAME [CMD..]`: take the lock, run CMD while holding it (or hold it and print the
//! key), release it.
//!
//! The promise: CMD is never running while another holder can acquire the lock.
//! - etcd-lock dies (any signal, SIGKILL, panic): the kernel kills CMD (`child.rs`).
//! - Keep-alives stop being answered: CMD gets SIGTERM at `valid_until - kill_after - margin`
//!   and SIGKILL at `valid_until - margin`, so it is gone before etcd can expire the lease
//!   (`Session::valid_until` is the send time of the last answered keep-alive plus the TTL).
//! - Someone deletes the lock key: SIGTERM at once, SIGKILL after `--kill-after`.
//! - Signals etcd-lock catches are forwarded; etcd-lock keeps the lock until CMD exits.

use std::time::{Duration, Instant};

use etcd_lock::lock::{DynLocker, LockGuard, Locker, RecipeLock};
use etcd_lock::watch::WatchOptions;
use etcd_lock::{Client, Error, Session, SessionOptions};

use crate::args::LockArgs;
use crate::signals::{self, Caught, Signals};
use crate::{child, output, EXIT_FAILED, EXIT_USAGE};

/// The lock was lost while CMD ran (or while held without CMD).
pub(crate) const EXIT_LOST: u8 = 122;
/// `--timeout`/`--wait` ran out.
const EXIT_TIMEOUT: u8 = 124;
/// `-n` found the lock busy (flock's status).
const EXIT_CONFLICT: u8 = 1;
/// How long after taking the lock the watch on its key opens (see [`key_deleted`]).
const KEY_WATCH_DELAY: Duration = Duration::from_millis(250);
/// `--kill-after` when not given (lowered to fit a short TTL).
const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(5);

fn fail(message: impl std::fmt::Display) -> u8 {
    say!("{message}");
    EXIT_FAILED
}

/// How much earlier than `valid_until` CMD must be gone: 200 ms for scheduling (the timer
/// firing late on a loaded machine, kill(2), the kernel tearing CMD down) plus 1% of the TTL
/// for clock-rate drift between this machine and etcd's leader (NTP slews at most 500 ppm,
/// so 1% is twenty times that).
pub(crate) fn margin(ttl_secs: i64) -> Duration {
    Duration::from_millis(200) + Duration::from_millis(ttl_secs.max(0) as u64 * 10)
}

/// How far `valid_until` may fall below the TTL on a healthy session: keep-alives go out
/// every TTL/3 (at least 300 ms), and one may take up to a tenth of the TTL to be answered.
/// Below this, keep-alives are failing.
pub(crate) fn healthy_floor(ttl_secs: i64) -> Duration {
    let ttl_ms = ttl_secs.max(0) as u64 * 1000;
    let period = (ttl_ms / 3).max(300);
    Duration::from_millis(ttl_ms.saturating_sub(period).saturating_sub(ttl_ms / 10))
}

/// The largest `--kill-after` that fits `ttl_secs`: termination must not start while the
/// session is healthy, so `kill_after + margin <= healthy_floor`.
pub(crate) fn max_kill_after(ttl_secs: i64) -> Duration {
    healthy_floor(ttl_secs).saturating_sub(margin(ttl_secs))
}

/// `--kill-after` checked against the TTL; the default is lowered to fit.
fn kill_after_for(a: &LockArgs, ttl: i64) -> Result<Duration, String> {
    let max = max_kill_after(ttl);
    match a.kill_after {
        None => Ok(DEFAULT_KILL_AFTER.min(max)),
        Some(k) if k <= max => Ok(k),
        Some(k) => Err(format!(
            "--kill-after {:.3}s does not fit a {ttl}s TTL: CMD must be stopped before the \
             lease can expire, and termination must not start while keep-alives are answered \
             (at most {:.3}s here; raise --ttl or lower --kill-after)",
            k.as_secs_f64(),
            max.as_secs_f64()
        )),
    }
}

/// Waits for `fut` unless a signal that ends waiting arrives first (`Err(128+N)`).
async fn or_signal<T>(
    signals: &mut Signals,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, u8> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            value = &mut fut => return Ok(value),
            caught = signals.recv() => match caught {
                Some(c) if c.ends_wait() => return Err(signals::exit_code(c.signo)),
                Some(_) => {}
                None => return Err(EXIT_FAILED),
            }
        }
    }
}

pub(crate) async fn run(a: LockArgs) -> u8 {
    // Before anything else: a signal from here on is ours to handle, never a silent death.
    let mut signals = match signals::install() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot install signal handlers: {e}")),
    };
    let name_shown = a.name.to_string_lossy().into_owned();
    let name = {
        use std::os::unix::ffi::OsStrExt;
        a.name.as_bytes().to_vec()
    };
    if let Err(message) = kill_after_for(&a, a.ttl) {
        say!("{message}");
        return EXIT_USAGE;
    }
    let client = match or_signal(&mut signals, crate::connect(&a.common)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(e),
        Err(code) => return code,
    };
    let options = SessionOptions::new().with_ttl(a.ttl);
    let session = match or_signal(&mut signals, Session::with_options(&client, options)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e @ Error::InvalidArgument { .. })) => {
            say!("--ttl: {e}");
            return EXIT_USAGE;
        }
        Ok(Err(e)) => return fail(crate::explain(&e)),
        Err(code) => return code,
    };
    // etcd may grant another TTL than asked (it has a minimum): check against the real one.
    let kill_after = match kill_after_for(&a, session.ttl()) {
        Ok(k) => k,
        Err(message) => {
            say!("{message}");
            let _ = session.close().await;
            return EXIT_USAGE;
        }
    };

    // One try (`-n`, `--wait 0`) uses the recipe's one-round-trip try for both flavours: etcd's
    // Lock service has no "try" form, and both flavours share the key layout (they exclude
    // each other), so the result is the same lock.
    let locker: Box<dyn DynLocker> = if a.one_try() {
        Box::new(RecipeLock::new())
    } else {
        a.via.locker()
    };
    tracing::debug!(
        lock = %name_shown,
        via = locker.flavour(),
        lease = %format_args!("{:x}", session.lease()),
        "session open, waiting for the lock"
    );
    let acquire = async {
        if a.one_try() {
            return Some(locker.try_lock(&session, &name).await);
        }
        let timeout = async {
            match a.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = locker.lock(&session, &name) => Some(r),
            _ = timeout => None,
        }
    };
    let guard = match or_signal(&mut signals, acquire).await {
        Ok(Some(Ok(guard))) => guard,
        Ok(Some(Err(Error::Locked { .. }))) => {
            let _ = session.close().await;
            let code = a.conflict_exit.unwrap_or(if a.nonblock {
                EXIT_CONFLICT
            } else {
                EXIT_TIMEOUT
            });
            say!("lock {name_shown} is held by another (one try)");
            return code;
        }
        Ok(Some(Err(e))) => {
            let _ = session.close().await;
            return fail(crate::explain(&e));
        }
        Ok(None) => {
            // Revoking the lease deletes our waiter key before we exit.
            let _ = session.close().await;
            say!(
                "timed out after {:?} waiting for lock {name_shown}",
                a.timeout.unwrap_or_default()
            );
            return a.conflict_exit.unwrap_or(EXIT_TIMEOUT);
        }
        Err(code) => {
            let _ = session.close().await;
            say!("interrupted while waiting for lock {name_shown}");
            return code;
        }
    };
    let held = Held {
        guard,
        session,
        kill_after,
        name_shown,
    };
    if a.command.is_empty() {
        output::held(
            a.common.write_out,
            &name,
            held.guard.key(),
            held.guard.lease(),
            held.guard.fencing_token(),
        );
        return held.hold(&mut signals).await;
    }
    held.run(&a.command, &mut signals).await
}

/// Why the lock is no longer ours.
enum Loss {
    /// The lease is about to expire (or is gone).
    Expiring,
    /// Someone deleted the lock key.
    KeyDeleted,
}

struct Held {
    guard: LockGuard,
    session: Session,
    kill_after: Duration,
    name_shown: String,
}

impl Held {
    /// Resolves when the lock must be treated as lost: `kill_after + margin` before the lease
    /// could expire, or when the key is deleted.
    async fn lost(&self) -> Loss {
        let early = self.kill_after + margin(self.session.ttl());
        tokio::select! {
            _ = self.session.expiring(early) => Loss::Expiring,
            _ = key_deleted(self.session.client().clone(), self.guard.key().to_vec(), self.guard.fencing_token()) => Loss::KeyDeleted,
        }
    }

    /// A warning on stderr each time keep-alives stop being answered (`valid_until` falls
    /// below what a healthy session keeps).
    async fn warn_keep_alive(&self) {
        let floor = healthy_floor(self.session.ttl());
        loop {
            self.session.expiring(floor).await;
            let Some(until) = self.session.valid_until() else {
                return std::future::pending().await;
            };
            say!(
                "warning: keep-alives for lease {:x} are not answered; the lock on {} is \
                 certain for {:.1}s more",
                self.session.lease(),
                self.name_shown,
                until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            );
            // Re-arm once a keep-alive is answered again.
            while self.session.valid_until().is_some_and(|u| u <= until) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            say!(
                "keep-alives for lease {:x} answered again",
                self.session.lease()
            );
        }
    }

    fn explain(&self, loss: &Loss, what: &str) {
        match loss {
            Loss::Expiring => say!(
                "lock {} lost: lease {:x} is expiring or gone (keep-alives not answered); {what}",
                self.name_shown,
                self.session.lease()
            ),
            Loss::KeyDeleted => say!(
                "lock {} lost: its key {} was deleted by someone else; {what}",
                self.name_shown,
                self.guard.key_str()
            ),
        }
    }

    /// The hold form: keep the lock until a signal (release, exit 0) or its loss (exit 122).
    async fn hold(self, signals: &mut Signals) -> u8 {
        let outcome = {
            let lost = self.lost();
            let warn = self.warn_keep_alive();
            tokio::pin!(lost, warn);
            loop {
                tokio::select! {
                    loss = &mut lost => break Err(loss),
                    _ = &mut warn => {}
                    caught = signals.recv() => match caught {
                        Some(c) if c.ends_wait() => break Ok(()),
                        Some(_) => {}
                        None => break Ok(()),
                    }
                }
            }
        };
        match outcome {
            Ok(()) => self.release(0).await,
            Err(loss) => {
                self.explain(&loss, "exiting");
                let _ = tokio::time::timeout(Duration::from_secs(2), self.session.close()).await;
                EXIT_LOST
            }
        }
    }

    /// Runs CMD while holding the lock.
    async fn run(self, command: &[std::ffi::OsString], signals: &mut Signals) -> u8 {
        let shown = command[0].to_string_lossy().into_owned();
        let mut cmd = match child::spawn(command, self.guard.key(), self.guard.fencing_token()) {
            Ok(c) => c,
            Err((code, message)) => {
                say!("{message}");
                return self.release(code).await;
            }
        };
        tracing::info!(
            command = %shown,
            pid = cmd.id(),
            lock = %self.name_shown,
            fence = self.guard.fencing_token(),
            "command started while holding the lock"
        );
        let outcome = {
            let lost = self.lost();
            let warn = self.warn_keep_alive();
            tokio::pin!(lost, warn);
            let mut signals_open = true;
            loop {
                tokio::select! {
                    status = cmd.wait() => break Ok(child::exit_code(status)),
                    loss = &mut lost => break Err(loss),
                    _ = &mut warn => {}
                    caught = signals.recv(), if signals_open => match caught {
                        Some(c) => forward(&cmd, c),
                        None => signals_open = false,
                    }
                }
            }
        };
        match outcome {
            Ok(code) => {
                tracing::info!(command = %shown, exit_code = code, "command finished; releasing the lock");
                self.release(code).await
            }
            Err(loss) => {
                self.explain(&loss, &format!("terminating {shown}"));
                let now = Instant::now();
                let mut kill_at = now + self.kill_after;
                if let Some(until) = self.session.valid_until() {
                    kill_at =
                        kill_at.min(until.checked_sub(margin(self.session.ttl())).unwrap_or(now));
                } else if matches!(loss, Loss::Expiring) {
                    kill_at = now;
                }
                child::terminate(&mut cmd, kill_at).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), self.session.close()).await;
                EXIT_LOST
            }
        }
    }

    /// Unlocks, closes the session and returns `code`.
    async fn release(self, code: u8) -> u8 {
        if let Err(e) = self.guard.unlock().await {
            say!("releasing lock {}: {}", self.name_shown, crate::explain(&e));
        }
        let _ = self.session.close().await;
        code
    }
}

/// Forwards a caught signal to CMD unless CMD already received it from the terminal.
fn forward(cmd: &tokio::process::Child, caught: Caught) {
    if child::already_delivered(cmd, caught) {
        tracing::debug!(
            signal = caught.signo,
            "terminal signal already reached the command"
        );
        return;
    }
    child::signal(cmd, caught.signo);
}

/// Resolves when the lock key (created at `revision`) is deleted or replaced: a watch on the
/// one key from the revision after its creation (on the client's shared watch stream: no new
/// connection), with a direct read when the watch breaks (compaction, stream lost).
///
/// The watch opens [`KEY_WATCH_DELAY`] after the lock is taken, so a short CMD costs no watch
/// stream at all; nothing is missed meanwhile, since the watch starts at the revision after the
/// key's creation and etcd replays what happened since.
async fn key_deleted(client: Client, key: Vec<u8>, revision: i64) {
    tokio::time::sleep(KEY_WATCH_DELAY).await;
    let mut from = revision + 1;
    loop {
        let options = WatchOptions::new().with_start_revision(from).with_no_put();
        if let Ok(mut watcher) = client.watch_with(key.clone(), options).await {
            while let Some(Ok(batch)) = watcher.next().await {
                if batch.events().iter().any(etcd_lock::watch::is_delete) {
                    return;
                }
            }
        }
        // The watch ended: read the key itself. An unreachable etcd is the lease's business.
        if let Ok(r) = client.get(key.clone()).await {
            if r.first().map(|kv| kv.create_revision) != Some(revision) {
                return;
            }
            from = r.revision() + 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_after_budget() {
        // The default TTL leaves room for the default grace.
        assert!(max_kill_after(60) >= DEFAULT_KILL_AFTER);
        // TTL 10 still takes the default 5 s.
        assert!(max_kill_after(10) >= DEFAULT_KILL_AFTER);
        // A 2 s TTL leaves under a second.
        assert!(max_kill_after(2) < Duration::from_secs(1));
        assert!(max_kill_after(2) > Duration::from_millis(500));
        // Termination never starts above the healthy floor.
        for ttl in [1, 2, 5, 10, 60, 3600] {
            assert!(max_kill_after(ttl) + margin(ttl) <= healthy_floor(ttl));
            assert!(healthy_floor(ttl) < Duration::from_secs(ttl as u64));
        }
    }
}
