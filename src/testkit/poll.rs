//! The testkit's one wait loop: ask a probe every [`POLL`] until it answers or time runs out.

use std::time::{Duration, Instant};

/// Pause between two probes while waiting for something.
pub(crate) const POLL: Duration = Duration::from_millis(25);

/// Calls `probe` until it returns `Some`, sleeping [`POLL`] in between; `None` once `timeout`
/// has passed without an answer. The probe runs at least once, also with a zero timeout.
pub(crate) fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(answer) = probe() {
            return Some(answer);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
