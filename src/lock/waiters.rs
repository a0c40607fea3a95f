//! One long-lived watch per (client, lock prefix), routing DELETE events to local waiters.
//!
//! Why not a new watch per wait, as Go does: a watch that starts at a past revision is filed by
//! etcd as "unsynced" and served by a loop that runs every 100 ms, which caps handoffs at about
//! 10 per second per waiter chain. This watch is opened "from now" (synced) once and kept.
//!
//! No event can be missed between a waiter's Range (at header revision `H`) and its registration:
//! the watch is opened before that Range, so every DELETE after `H` reaches this router; DELETEs
//! that arrive before the waiter registers are remembered (bounded), and a waiter whose `H` is
//! older than what was forgotten is told to re-check at once. If the watch breaks, every waiter
//! is woken to re-check, and the next wait opens a fresh watch.
//!
//! A member that is cut off from its peers but still reachable would keep this watch open and
//! silent while the majority hands the lock on. The client's shared watch stream carries
//! etcd's require-leader metadata (see `crate::watch`), so that member ends the stream and the
//! watch resumes on another member from its next unseen revision: the DELETE still arrives.
//! Any end of the watch itself (no member would take it, a compacted resume revision, or
//! `Error::WatchLagged` if this router ever fell a whole buffer behind) is treated alike:
//! every waiter re-checks with a Range, and the next wait opens a fresh watch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::watch::{is_delete, WatchOptions};

/// How many recent DELETEs are remembered for waiters that register late.
const REMEMBERED_DELETES: usize = 4096;
/// A prefix watch with no waiters for this long is closed on the next registry lookup.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// The per-client registry of prefix watches (see [`Registry::of`]), keyed by
/// *(namespace, lock prefix)*: each namespaced view of a client gets its own routers, whose
/// watches speak that view's key space (see `crate::namespace`).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    watches: Mutex<HashMap<RouterKey, Arc<PrefixWatch>>>,
}

/// *(namespace prefix, lock prefix)*; the namespace is empty for a plain client.
type RouterKey = (Vec<u8>, Vec<u8>);

impl Registry {
    /// The registry of `client` (shared by its clones), kept in the client's extension slot:
    /// the client itself knows nothing of locks.
    pub(crate) fn of(client: &Client) -> Arc<Registry> {
        client.extension(|_| Registry::default())
    }

    /// The router for `prefix` in `namespace` (`None`: a plain client), created (without any
    /// RPC) if needed; idle ones are closed.
    pub(crate) fn get(&self, namespace: Option<&[u8]>, prefix: &[u8]) -> Arc<PrefixWatch> {
        let Ok(mut map) = self.watches.lock() else {
            return Arc::new(PrefixWatch::new(prefix.to_vec()));
        };
        let key = (namespace.unwrap_or_default().to_vec(), prefix.to_vec());
        map.retain(|k, w| *k == key || !w.idle_for(IDLE_CLOSE));
        Arc::clone(
            map.entry(key)
                .or_insert_with(|| Arc::new(PrefixWatch::new(prefix.to_vec()))),
        )
    }
}

#[derive(Debug)]
struct Waiter {
    after: i64,
    /// `true`: the key was deleted after `after`; `false`: the watch ended, re-check.
    wake: oneshot::Sender<bool>,
}

#[derive(Debug, Default)]
struct State {
    /// Incremented for every watch opened; 0 = never opened.
    epoch: u64,
    alive: bool,
    waiters: HashMap<Vec<u8>, Vec<Waiter>>,
    deleted: HashMap<Vec<u8>, i64>,
    order: VecDeque<(Vec<u8>, i64)>,
    /// DELETEs at or below this revision may have been forgotten.
    forgotten_up_to: i64,
    last_used: Option<Instant>,
    task: Option<JoinHandle<()>>,
}

impl State {
    fn close(&mut self) {
        self.alive = false;
        for (_, waiters) in self.waiters.drain() {
            for w in waiters {
                let _ = w.wake.send(false);
            }
        }
    }
}

/// A long-lived watch on one lock prefix.
#[derive(Debug)]
pub(crate) struct PrefixWatch {
    prefix: Vec<u8>,
    state: Mutex<State>,
    opening: tokio::sync::Mutex<()>,
}

/// What a waiter should do next.
#[derive(Debug)]
pub(crate) enum Wait {
    /// The key is known deleted after the given revision.
    Deleted,
    /// The router cannot vouch for the interval (watch closed or restarted, or the DELETE may
    /// have been forgotten): re-read with an RPC.
    Unknown,
    /// Resolves with `true` when the key is deleted, `false` when the watch ended first.
    Pending(oneshot::Receiver<bool>),
}

impl PrefixWatch {
    fn new(prefix: Vec<u8>) -> Self {
        PrefixWatch {
            prefix,
            state: Mutex::new(State::default()),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    fn lock_state(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::Protocol("lock watch state poisoned".into()))
    }

    fn idle_for(&self, idle: Duration) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.waiters.is_empty() && s.last_used.is_some_and(|t| t.elapsed() > idle))
    }

    /// The epoch of the open watch, if one is open (no RPC).
    pub(crate) fn live_epoch(&self) -> Option<u64> {
        let s = self.state.lock().ok()?;
        s.alive.then_some(s.epoch)
    }

    /// Makes sure the watch is open (one `WatchCreateRequest` if not) and returns its epoch.
    pub(crate) async fn ensure(self: &Arc<Self>, client: &Client) -> Result<u64> {
        if let Some(epoch) = self.live_epoch() {
            return Ok(epoch);
        }
        let _opening = self.opening.lock().await;
        if let Some(epoch) = self.live_epoch() {
            return Ok(epoch);
        }
        let mut watcher = client
            .watch_with(
                self.prefix.clone(),
                WatchOptions::new().with_prefix().with_no_put(),
            )
            .await?;
        let mut state = self.lock_state()?;
        state.epoch += 1;
        state.alive = true;
        state.deleted.clear();
        state.order.clear();
        state.forgotten_up_to = watcher.created_revision();
        state.last_used = Some(Instant::now());
        let epoch = state.epoch;
        let router = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Some(batch) = watcher.next().await {
                let Some(router) = router.upgrade() else {
                    return;
                };
                let Ok(batch) = batch else { break };
                let Ok(mut s) = router.state.lock() else {
                    return;
                };
                if s.epoch != epoch {
                    return;
                }
                for event in batch.events().iter().filter(|e| is_delete(e)) {
                    let Some(kv) = event.kv.as_ref() else {
                        continue;
                    };
                    s.remember(kv.key.clone(), kv.mod_revision);
                    if let Some(waiters) = s.waiters.remove(&kv.key) {
                        // A DELETE at or before a waiter's Range is an older incarnation of
                        // the key, still in flight: keep waiting for the one it saw.
                        let (wake, keep): (Vec<_>, Vec<_>) =
                            waiters.into_iter().partition(|w| kv.mod_revision > w.after);
                        for w in wake {
                            let _ = w.wake.send(true);
                        }
                        if !keep.is_empty() {
                            s.waiters.insert(kv.key.clone(), keep);
                        }
                    }
                }
            }
            if let Some(router) = router.upgrade() {
                if let Ok(mut s) = router.state.lock() {
                    if s.epoch == epoch {
                        s.close();
                    }
                }
            }
        });
        if let Some(old) = state.task.replace(task) {
            old.abort();
        }
        Ok(epoch)
    }

    /// Registers interest in the deletion of `key` after revision `after`, as seen by the watch
    /// of `epoch`.
    pub(crate) fn wait_delete(&self, epoch: u64, key: &[u8], after: i64) -> Wait {
        let Ok(mut s) = self.state.lock() else {
            return Wait::Unknown;
        };
        s.last_used = Some(Instant::now());
        match s.deleted_after(epoch, key, after) {
            Some(true) => return Wait::Deleted,
            Some(false) => {}
            None => return Wait::Unknown,
        }
        let (tx, rx) = oneshot::channel();
        s.waiters
            .entry(key.to_vec())
            .or_default()
            .push(Waiter { after, wake: tx });
        Wait::Pending(rx)
    }
}

impl PrefixWatch {
    /// Whether `key` is known deleted after revision `after` by the watch of `epoch`:
    /// `Some(true)` deleted, `Some(false)` certainly not (yet), `None` cannot tell.
    pub(crate) fn deleted_after(&self, epoch: u64, key: &[u8], after: i64) -> Option<bool> {
        self.state.lock().ok()?.deleted_after(epoch, key, after)
    }
}

impl State {
    fn deleted_after(&self, epoch: u64, key: &[u8], after: i64) -> Option<bool> {
        if !self.alive || self.epoch != epoch || after < self.forgotten_up_to {
            return None;
        }
        Some(self.deleted.get(key).is_some_and(|&rev| rev > after))
    }

    fn remember(&mut self, key: Vec<u8>, revision: i64) {
        self.deleted.insert(key.clone(), revision);
        self.order.push_back((key, revision));
        while self.order.len() > REMEMBERED_DELETES {
            if let Some((old, rev)) = self.order.pop_front() {
                if self.deleted.get(&old) == Some(&rev) {
                    self.deleted.remove(&old);
                }
                self.forgotten_up_to = self.forgotten_up_to.max(rev);
            }
        }
        // Drop waiters whose receivers are gone (cancelled waits).
        self.waiters.retain(|_, ws| {
            ws.retain(|w| !w.wake.is_closed());
            !ws.is_empty()
        });
    }
}

impl Drop for PrefixWatch {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(task) = s.task.take() {
                task.abort();
            }
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_waiters_see_remembered_deletes() {
        let w = PrefixWatch::new(b"p/".to_vec());
        {
            let mut s = w.state.lock().unwrap_or_else(|e| e.into_inner());
            s.epoch = 1;
            s.alive = true;
            s.forgotten_up_to = 10;
            s.remember(b"p/a".to_vec(), 20);
        }
        assert!(matches!(w.wait_delete(1, b"p/a", 15), Wait::Deleted));
        assert!(matches!(w.wait_delete(1, b"p/a", 25), Wait::Pending(_)));
        assert!(matches!(w.wait_delete(1, b"p/b", 5), Wait::Unknown));
        assert!(matches!(w.wait_delete(2, b"p/b", 15), Wait::Unknown));
        assert_eq!(w.deleted_after(1, b"p/a", 15), Some(true));
        assert_eq!(w.deleted_after(1, b"p/b", 15), Some(false));
        assert_eq!(w.deleted_after(1, b"p/b", 9), None);
    }
}
