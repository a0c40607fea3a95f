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
//!
//! Per-name state lives only while used: an uncontended lock creates none; a watch unused for
//! [`IDLE_CLOSE`] closes itself and its entry is removed; opening a watch beyond
//! [`MAX_IDLE_WATCHES`] unused ones closes the least recently used. A waiter registers on one
//! key at a time (the newest older key still there) and checks the others against the
//! remembered DELETEs when woken, so a thousand waiters in one process cost about one wake-up
//! per handoff, not one per older key.
//!
//! Ownership and lock order. A client's [`Registry`] (in the client's extension slot) owns the
//! routers, one `Arc<PrefixWatch>` per (namespace, prefix), in `watches`, and the join counts
//! in `joins`; waiters and a router's own watch task hold `Arc`s (the task only a `Weak`). Each
//! `PrefixWatch` owns its `State` behind one std mutex; the watch task is the only writer of
//! DELETEs into it, waiters only register and read. Four locks, always taken in this order and
//! never held across an `.await` except the first: `PrefixWatch::opening` (tokio, held while
//! one watch opens) → `Registry::watches` → `PrefixWatch::state`; `Registry::joins` is never
//! held with another. (`trim_idle` reads routers' states under `watches`; `retire_if_idle`
//! releases `state` before it takes `watches`.) One poisoning policy: see [`locked`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::Result;
use crate::watch::{is_delete, WatchOptions};

/// Locks one of this module's std mutexes. Poisoning policy, the only one here: a poisoned
/// lock is taken over as it is (`PoisonError::into_inner`). No critical section in this module
/// calls user code, and each leaves the maps consistent after every single insert or remove;
/// the worst a panic half-way can leave is a waiter not woken, which its re-check timer
/// (`lock::queue::Rechecks`) covers.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many recent DELETEs are remembered for waiters that register late.
const REMEMBERED_DELETES: usize = 4096;
/// A prefix watch with no waiters for this long closes itself (its task checks every sixth of
/// it), and the registry forgets the prefix: per-name state does not outlive its use.
const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// At most this many prefix watches without waiters are kept open per client for reuse; opening
/// one more closes the least recently used of them (a scheduler locking thousands of names
/// contends on few at a time, so watches stay bounded by that, not by the names ever used).
const MAX_IDLE_WATCHES: usize = 64;

/// The per-client registry of prefix watches (see [`Registry::of`]), keyed by
/// *(namespace, lock prefix)*: each namespaced view of a client gets its own routers, whose
/// watches speak that view's key space (see `crate::namespace`).
///
/// Per-name state lives only while it is used: a router exists for a prefix with a waiter or
/// with a watch open for reuse (closed when idle, see [`IDLE_CLOSE`], [`MAX_IDLE_WATCHES`]),
/// and a join count exists while a lock or campaign on that prefix is in progress.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    watches: Mutex<HashMap<RouterKey, Arc<PrefixWatch>>>,
    /// Joins in progress per prefix on this client (entries removed at zero).
    joins: Mutex<HashMap<RouterKey, usize>>,
    stats: Arc<WaitStats>,
}

/// *(namespace prefix, lock prefix)*; the namespace is empty for a plain client.
type RouterKey = (Vec<u8>, Vec<u8>);

/// Counters of how waits went, per client (see [`crate::lock::stats`]).
#[derive(Debug, Default)]
pub(crate) struct WaitStats {
    pub(crate) fast_waits: AtomicU64,
    pub(crate) slow_waits: AtomicU64,
    pub(crate) far_waits: AtomicU64,
    pub(crate) watches_opened: AtomicU64,
}

/// A snapshot of a client's lock waiting state (see [`crate::lock::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RegistrySnapshot {
    pub(crate) routers: usize,
    pub(crate) watches_open: usize,
    pub(crate) joins_in_progress: usize,
    pub(crate) fast_waits: u64,
    pub(crate) slow_waits: u64,
    pub(crate) far_waits: u64,
    pub(crate) watches_opened: u64,
}

/// A join (lock or campaign) in progress on one prefix; counted until dropped.
#[derive(Debug)]
pub(crate) struct Joining {
    registry: Arc<Registry>,
    key: RouterKey,
    /// The router when one was open (or opened) before the join txn.
    router: Option<Arc<PrefixWatch>>,
    /// Its epoch before the txn: only a watch open then has seen every later DELETE.
    epoch_before: Option<u64>,
}

impl Joining {
    /// The watch epoch read before the join txn (`None`: no watch was open then).
    pub(crate) fn epoch_before(&self) -> Option<u64> {
        self.epoch_before
    }

    /// Whether this is the only join on its prefix in progress on this client right now.
    pub(crate) fn alone(&self) -> bool {
        locked(&self.registry.joins)
            .get(&self.key)
            .is_none_or(|&n| n <= 1)
    }

    /// The router to wait on (created, without any RPC, when none was open before the txn).
    pub(crate) fn router(&self) -> Arc<PrefixWatch> {
        match &self.router {
            Some(router) => Arc::clone(router),
            None => self.registry.router(&self.key),
        }
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        let mut joins = locked(&self.registry.joins);
        if let Some(n) = joins.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                joins.remove(&self.key);
            }
        }
    }
}

impl Registry {
    /// The registry of `client` (shared by its clones), kept in the client's extension slot:
    /// the client itself knows nothing of locks.
    pub(crate) fn of(client: &Client) -> Arc<Registry> {
        client.extension(|_| Registry::default())
    }

    /// The registry of `client` if any lock or election ever used it (no side effect).
    pub(crate) fn existing(client: &Client) -> Option<Arc<Registry>> {
        client.existing_extension::<Registry>()
    }

    /// Call before a join txn on `prefix`. A router already open is used as it is. When
    /// another join on the same prefix is already in progress on this client (many tasks
    /// queueing in one process), the watch is opened first (one `WatchCreateRequest`) so that
    /// this join can wait on the fast path; a lone uncontended lock opens nothing and leaves
    /// no per-name state behind.
    pub(crate) async fn join(
        self: &Arc<Self>,
        client: &Client,
        namespace: Option<&[u8]>,
        prefix: &[u8],
    ) -> Joining {
        let key = (namespace.unwrap_or_default().to_vec(), prefix.to_vec());
        let others = {
            let mut joins = locked(&self.joins);
            let n = joins.entry(key.clone()).or_insert(0);
            *n += 1;
            *n > 1
        };
        // The guard that takes the count back exists before the first `.await`: a caller
        // dropped while the watch opens (a `timeout` around `lock()`) leaves no count behind.
        let mut joining = Joining {
            registry: Arc::clone(self),
            key,
            router: None,
            epoch_before: None,
        };
        let mut router = self.find(&joining.key);
        if others && router.as_ref().and_then(|r| r.live_epoch()).is_none() {
            let opened = self.router(&joining.key);
            // A failed open only means this join waits on the slow path.
            let _ = opened.ensure(client).await;
            router = Some(opened);
        }
        joining.epoch_before = router.as_ref().and_then(|r| r.live_epoch());
        joining.router = router;
        joining
    }

    fn find(&self, key: &RouterKey) -> Option<Arc<PrefixWatch>> {
        locked(&self.watches).get(key).cloned()
    }

    /// The router for `key`, created (without any RPC) if needed; creating one trims the idle
    /// ones beyond [`MAX_IDLE_WATCHES`].
    fn router(self: &Arc<Self>, key: &RouterKey) -> Arc<PrefixWatch> {
        let mut map = locked(&self.watches);
        if let Some(found) = map.get(key) {
            return Arc::clone(found);
        }
        trim_idle(&mut map);
        let router = Arc::new(PrefixWatch::new(
            key.1.clone(),
            Arc::downgrade(self),
            key.clone(),
            Arc::clone(&self.stats),
        ));
        map.insert(key.clone(), Arc::clone(&router));
        router
    }

    /// Forgets `router` (closed for idleness) unless the map already holds another one.
    fn forget(&self, router: &PrefixWatch) {
        let mut map = locked(&self.watches);
        if map
            .get(&router.key)
            .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), router))
        {
            map.remove(&router.key);
        }
    }

    /// How this client's waits went so far, and what is open now (no RPC).
    pub(crate) fn snapshot(&self) -> RegistrySnapshot {
        let (routers, watches_open) = {
            let map = locked(&self.watches);
            let open = map.values().filter(|r| r.live_epoch().is_some()).count();
            (map.len(), open)
        };
        RegistrySnapshot {
            routers,
            watches_open,
            joins_in_progress: locked(&self.joins).len(),
            fast_waits: self.stats.fast_waits.load(Ordering::Relaxed),
            slow_waits: self.stats.slow_waits.load(Ordering::Relaxed),
            far_waits: self.stats.far_waits.load(Ordering::Relaxed),
            watches_opened: self.stats.watches_opened.load(Ordering::Relaxed),
        }
    }
}

/// Drops routers without waiters that are closed, idle too long, or beyond the
/// [`MAX_IDLE_WATCHES`] most recently used (a dropped router closes its watch).
fn trim_idle(map: &mut HashMap<RouterKey, Arc<PrefixWatch>>) {
    // A router that never opened (or lost) its watch is given a moment: its waiter may be
    // about to open it.
    map.retain(|_, r| {
        !r.unused_for(IDLE_CLOSE)
            && (r.live_epoch().is_some() || !r.unused_for(Duration::from_secs(1)))
    });
    let mut idle: Vec<(Instant, RouterKey)> = map
        .iter()
        .filter(|(_, r)| !r.has_waiters())
        .map(|(k, r)| (r.last_used(), k.clone()))
        .collect();
    if idle.len() < MAX_IDLE_WATCHES {
        return;
    }
    idle.sort_unstable_by_key(|(used, _)| *used);
    for (_, key) in idle.iter().take(idle.len() + 1 - MAX_IDLE_WATCHES) {
        map.remove(key);
    }
}

#[derive(Debug)]
struct Waiter {
    after: i64,
    /// `true`: the key was deleted after `after`; `false`: the watch ended, re-check.
    wake: oneshot::Sender<bool>,
}

#[derive(Debug)]
struct State {
    /// Incremented for every watch opened; 0 = never opened.
    epoch: u64,
    alive: bool,
    waiters: HashMap<Vec<u8>, Vec<Waiter>>,
    /// Keys that some join txn listed as older than its own, not yet seen deleted, as
    /// *(create revision, key)* (one txn may create several keys at one revision). Shared by every waiter on the fast path, so memory grows with the
    /// queue, not with waiters times queue.
    listed: BTreeSet<(i64, Vec<u8>)>,
    /// The create revisions in `listed` of each key (two while a re-created key's older
    /// incarnation's DELETE is still in flight).
    listed_revs: HashMap<Vec<u8>, Vec<i64>>,
    /// Fast-path waiters by their own create revision: woken (`true`) once no key in `listed`
    /// is older than theirs, or (`false`) when the watch ends.
    turns: BTreeMap<i64, Vec<oneshot::Sender<bool>>>,
    deleted: HashMap<Vec<u8>, i64>,
    order: VecDeque<(Vec<u8>, i64)>,
    /// DELETEs at or below this revision may have been forgotten.
    forgotten_up_to: i64,
    last_used: Instant,
    /// When the watch last reported a DELETE (`None`: none since it opened): a queue that
    /// moves is heard.
    last_heard: Option<Instant>,
    /// DELETEs remembered since cancelled waiters were last swept out.
    since_sweep: usize,
    task: Option<JoinHandle<()>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            epoch: 0,
            alive: false,
            waiters: HashMap::new(),
            listed: BTreeSet::new(),
            listed_revs: HashMap::new(),
            turns: BTreeMap::new(),
            deleted: HashMap::new(),
            order: VecDeque::new(),
            forgotten_up_to: 0,
            last_used: Instant::now(),
            last_heard: None,
            since_sweep: 0,
            task: None,
        }
    }
}

impl State {
    fn close(&mut self) {
        self.alive = false;
        for (_, waiters) in self.waiters.drain() {
            for w in waiters {
                let _ = w.wake.send(false);
            }
        }
        for (_, turns) in std::mem::take(&mut self.turns) {
            for wake in turns {
                let _ = wake.send(false);
            }
        }
        self.listed.clear();
        self.listed_revs.clear();
    }

    /// Whether any waiter of either kind is registered.
    fn has_waiters(&self) -> bool {
        !self.waiters.is_empty() || !self.turns.is_empty()
    }

    /// Applies the DELETEs of one watch response, `(key, revision)` in revision order: remembers
    /// them, wakes the waiters on those keys, drops the listed keys they delete, and wakes the
    /// fast-path waiters with no listed key older than theirs left.
    fn on_deletes<'k>(&mut self, deletes: impl IntoIterator<Item = (&'k [u8], i64)>) {
        let mut unlisted = false;
        for (key, revision) in deletes {
            self.last_heard = Some(Instant::now());
            self.remember(key.to_vec(), revision);
            if let Some(waiters) = self.waiters.remove(key) {
                // A DELETE at or before a waiter's Range is an older incarnation of the key,
                // still in flight: keep waiting for the one it saw.
                let (wake, keep): (Vec<_>, Vec<_>) =
                    waiters.into_iter().partition(|w| revision > w.after);
                for w in wake {
                    let _ = w.wake.send(true);
                }
                if !keep.is_empty() {
                    self.waiters.insert(key.to_vec(), keep);
                }
            }
            if let Some(revs) = self.listed_revs.get_mut(key) {
                // Every incarnation created before this DELETE is gone.
                revs.retain(|&created| {
                    let gone = created < revision;
                    if gone {
                        self.listed.remove(&(created, key.to_vec()));
                        unlisted = true;
                    }
                    !gone
                });
                if revs.is_empty() {
                    self.listed_revs.remove(key);
                }
            }
        }
        if unlisted {
            self.wake_turns();
        }
    }

    /// Wakes every fast-path waiter with no listed key older than its own.
    fn wake_turns(&mut self) {
        let oldest = self
            .listed
            .first()
            .map_or(i64::MAX, |(created, _)| *created);
        while let Some(entry) = self.turns.first_entry() {
            if *entry.key() > oldest {
                break;
            }
            for wake in entry.remove() {
                let _ = wake.send(true);
            }
        }
    }

    /// The fast path's registration (see [`PrefixWatch::wait_turn`]).
    fn wait_turn(
        &mut self,
        epoch: u64,
        older: Vec<(Vec<u8>, i64)>,
        revision: i64,
        my_rev: i64,
    ) -> Wait {
        // Every check first: a key this watch cannot vouch for sends the waiter to re-check.
        let mut keep = Vec::with_capacity(older.len());
        for (key, created) in older {
            match self.deleted_after(epoch, &key, revision) {
                None => return Wait::Unknown,
                Some(true) => {}
                Some(false) => keep.push((key, created)),
            }
        }
        for (key, created) in keep {
            let revs = self.listed_revs.entry(key.clone()).or_default();
            if !revs.contains(&created) {
                revs.push(created);
                self.listed.insert((created, key));
            }
        }
        if self
            .listed
            .first()
            .is_none_or(|(created, _)| *created >= my_rev)
        {
            return Wait::Deleted;
        }
        let (tx, rx) = oneshot::channel();
        self.turns.entry(my_rev).or_default().push(tx);
        Wait::Pending(rx)
    }
}

/// A long-lived watch on one lock prefix.
#[derive(Debug)]
pub(crate) struct PrefixWatch {
    prefix: Vec<u8>,
    /// Where this router is filed, so that it can take itself out when idle.
    registry: Weak<Registry>,
    key: RouterKey,
    stats: Arc<WaitStats>,
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
    fn new(
        prefix: Vec<u8>,
        registry: Weak<Registry>,
        key: RouterKey,
        stats: Arc<WaitStats>,
    ) -> Self {
        PrefixWatch {
            prefix,
            registry,
            key,
            stats,
            state: Mutex::new(State::default()),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts a wait that needed no RPC beyond the join txn (`fast`), or one that fell back
    /// to re-checking with `KV/Range`s.
    pub(crate) fn count_wait(&self, fast: bool) {
        let counter = if fast {
            &self.stats.fast_waits
        } else {
            &self.stats.slow_waits
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a far wait (predecessor watch + one re-check, see `lock::queue`) that ended in
    /// our turn.
    pub(crate) fn count_far_wait(&self) {
        self.stats.far_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// No waiter, and none registered for longer than `idle`.
    fn unused_for(&self, idle: Duration) -> bool {
        let s = locked(&self.state);
        !s.has_waiters() && s.last_used.elapsed() > idle
    }

    fn has_waiters(&self) -> bool {
        locked(&self.state).has_waiters()
    }

    fn last_used(&self) -> Instant {
        locked(&self.state).last_used
    }

    /// Closes the watch of `epoch` if it has been unused for [`IDLE_CLOSE`], and takes this
    /// router out of the registry. Returns whether it closed.
    fn retire_if_idle(&self, epoch: u64) -> bool {
        {
            let mut s = locked(&self.state);
            if s.epoch != epoch || s.has_waiters() || s.last_used.elapsed() <= IDLE_CLOSE {
                return false;
            }
            s.close();
            s.deleted.clear();
            s.order.clear();
        }
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(self);
        }
        true
    }

    /// Whether the watch reported a DELETE under the prefix within `span` (no RPC): a queue
    /// that moves needs no re-check of a waiter's place (see `lock::queue::Rechecks`).
    pub(crate) fn heard_within(&self, span: Duration) -> bool {
        let s = locked(&self.state);
        s.alive && s.last_heard.is_some_and(|heard| heard.elapsed() < span)
    }

    /// The epoch of the open watch, if one is open (no RPC).
    pub(crate) fn live_epoch(&self) -> Option<u64> {
        let s = locked(&self.state);
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
        let mut state = locked(&self.state);
        state.epoch += 1;
        state.alive = true;
        state.deleted.clear();
        state.order.clear();
        state.listed.clear();
        state.listed_revs.clear();
        state.forgotten_up_to = watcher.created_revision();
        state.last_used = Instant::now();
        // Opening is not hearing: a waiter that joins a fresh watch and hears no DELETE for
        // `RECHECK_FIRST` re-checks (tests/edges.rs `quiet_waiters_recheck_their_place`: with
        // the open counted, the first re-check slipped to 9 s whenever the open took longer
        // than the timer's lateness).
        state.last_heard = None;
        self.stats.watches_opened.fetch_add(1, Ordering::Relaxed);
        let epoch = state.epoch;
        let router = Arc::downgrade(self);
        let task = crate::support::spawn(async move {
            let check = IDLE_CLOSE / 6;
            let mut idle_check =
                tokio::time::interval_at(tokio::time::Instant::now() + check, check);
            loop {
                let batch = tokio::select! {
                    batch = watcher.next() => batch,
                    _ = idle_check.tick() => {
                        match router.upgrade() {
                            Some(router) if !router.retire_if_idle(epoch) => continue,
                            // Closed for idleness (dropping `watcher` cancels the watch), or
                            // the router is gone.
                            _ => return,
                        }
                    }
                };
                let Some(batch) = batch else { break };
                let Some(router) = router.upgrade() else {
                    return;
                };
                let Ok(batch) = batch else { break };
                let mut s = locked(&router.state);
                if s.epoch != epoch {
                    return;
                }
                s.on_deletes(
                    batch
                        .events()
                        .iter()
                        .filter(|e| is_delete(e))
                        .filter_map(|e| e.kv.as_ref())
                        .map(|kv| (kv.key.as_slice(), kv.mod_revision)),
                );
            }
            if let Some(router) = router.upgrade() {
                let mut s = locked(&router.state);
                if s.epoch == epoch {
                    s.close();
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
        let mut s = locked(&self.state);
        s.last_used = Instant::now();
        s.wait_delete_at(epoch, key, after)
    }
}

impl PrefixWatch {
    /// The fast path: registers a waiter whose key was created at `my_rev` and whose join txn
    /// listed, at `revision`, every older key (`(key, create revision)`), on the watch of
    /// `epoch`. The listed keys go into one table shared by all waiters (each key once), and
    /// the waiter keeps nothing but a wake-up: `Deleted` when no listed key older than
    /// `my_rev` is left now, `Pending` resolving `true` once that is so, `false` if the watch
    /// ends first, `Unknown` when the watch cannot vouch for the interval after `revision`.
    pub(crate) fn wait_turn(
        &self,
        epoch: u64,
        older: Vec<(Vec<u8>, i64)>,
        revision: i64,
        my_rev: i64,
    ) -> Wait {
        let mut s = locked(&self.state);
        s.last_used = Instant::now();
        s.wait_turn(epoch, older, revision, my_rev)
    }

    /// Whether `key` is known deleted after revision `after` by the watch of `epoch`:
    /// `Some(true)` deleted, `Some(false)` certainly not (yet), `None` cannot tell.
    pub(crate) fn deleted_after(&self, epoch: u64, key: &[u8], after: i64) -> Option<bool> {
        locked(&self.state).deleted_after(epoch, key, after)
    }
}

impl State {
    /// See [`PrefixWatch::wait_delete`].
    fn wait_delete_at(&mut self, epoch: u64, key: &[u8], after: i64) -> Wait {
        match self.deleted_after(epoch, key, after) {
            Some(true) => return Wait::Deleted,
            Some(false) => {}
            None => return Wait::Unknown,
        }
        let (tx, rx) = oneshot::channel();
        self.waiters
            .entry(key.to_vec())
            .or_default()
            .push(Waiter { after, wake: tx });
        Wait::Pending(rx)
    }

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
        // Now and then, drop waiters whose receivers are gone (cancelled waits): sweeping on
        // every DELETE would cost O(waiters) per event with a thousand tasks queued.
        self.since_sweep += 1;
        if self.since_sweep >= 64 {
            self.since_sweep = 0;
            self.waiters.retain(|_, ws| {
                ws.retain(|w| !w.wake.is_closed());
                !ws.is_empty()
            });
            self.turns.retain(|_, ws| {
                ws.retain(|w| !w.is_closed());
                !ws.is_empty()
            });
        }
    }
}

impl Drop for PrefixWatch {
    fn drop(&mut self) {
        let mut s = locked(&self.state);
        if let Some(task) = s.task.take() {
            task.abort();
        }
        s.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_waiters_see_remembered_deletes() {
        let w = PrefixWatch::new(
            b"p/".to_vec(),
            Weak::new(),
            (Vec::new(), b"p/".to_vec()),
            Arc::default(),
        );
        {
            let mut s = locked(&w.state);
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

    /// A router state with its watch open (epoch 1) that remembers every DELETE after 10.
    fn open_state() -> State {
        State {
            epoch: 1,
            alive: true,
            forgotten_up_to: 10,
            ..State::default()
        }
    }

    fn keys(listed: &[(&str, i64)]) -> Vec<(Vec<u8>, i64)> {
        listed
            .iter()
            .map(|(k, rev)| (k.as_bytes().to_vec(), *rev))
            .collect()
    }

    fn pending(wait: Wait) -> oneshot::Receiver<bool> {
        match wait {
            Wait::Pending(rx) => rx,
            other => panic!("expected a pending wait, got {other:?}"),
        }
    }

    fn delete(s: &mut State, key: &str, revision: i64) {
        s.on_deletes([(key.as_bytes(), revision)]);
    }

    #[test]
    fn fast_path_turns_come_in_create_order() {
        let mut s = open_state();
        // b (created at 30) and c (40) queue behind a (20); each txn listed the older keys.
        let mut b = pending(s.wait_turn(1, keys(&[("a", 20)]), 30, 30));
        let mut c = pending(s.wait_turn(1, keys(&[("a", 20), ("b", 30)]), 40, 40));
        // Shared: each listed key is held once, however many waiters listed it.
        assert_eq!(s.listed.len(), 2);
        assert_eq!(s.turns.len(), 2);
        delete(&mut s, "a", 41);
        assert_eq!(b.try_recv(), Ok(true));
        assert!(c.try_recv().is_err(), "c still has b ahead");
        delete(&mut s, "b", 42);
        assert_eq!(c.try_recv(), Ok(true));
        assert!(s.listed.is_empty() && s.turns.is_empty());
    }

    #[test]
    fn memory_grows_with_the_queue_not_its_square() {
        let mut s = open_state();
        // k0 (created at 100) holds; k1..k199 queue behind it, each listing all older keys.
        let mut queue = vec![(b"k0".to_vec(), 100)];
        let mut woken = Vec::new();
        for i in 1..200i64 {
            let my_rev = 100 + i;
            woken.push(pending(s.wait_turn(1, queue.clone(), my_rev, my_rev)));
            queue.push((format!("k{i}").into_bytes(), my_rev));
        }
        // Each of the 199 older keys is held once, not once per waiter that listed it.
        assert_eq!(s.listed.len(), 199);
        assert_eq!(s.listed_revs.len(), 199);
        // FIFO: each DELETE wakes exactly the next waiter.
        for i in 0..199usize {
            s.on_deletes([(format!("k{i}").as_bytes(), 400 + i as i64)]);
            assert_eq!(woken[i].try_recv(), Ok(true), "waiter {}", i + 1);
            if let Some(next) = woken.get_mut(i + 1) {
                assert!(next.try_recv().is_err(), "waiter {} woke early", i + 2);
            }
        }
        assert!(s.listed.is_empty() && s.turns.is_empty());
    }

    #[test]
    fn a_waiter_ahead_giving_up_out_of_order_does_not_wake_early() {
        let mut s = open_state();
        let mut c = pending(s.wait_turn(1, keys(&[("a", 20), ("b", 30)]), 40, 40));
        // b (a waiter ahead of c, behind a) is cancelled: its DELETE comes first.
        delete(&mut s, "b", 41);
        assert!(c.try_recv().is_err());
        delete(&mut s, "a", 42);
        assert_eq!(c.try_recv(), Ok(true));
    }

    #[test]
    fn deletes_heard_before_registering_count() {
        let mut s = open_state();
        // The watch delivers a's DELETE (41) before c's join answer (read at 40) is handled.
        delete(&mut s, "a", 41);
        let mut c = pending(s.wait_turn(1, keys(&[("a", 20), ("b", 30)]), 40, 40));
        assert_eq!(s.listed.len(), 1, "a is known gone and not listed");
        delete(&mut s, "b", 43);
        assert_eq!(c.try_recv(), Ok(true));
        // Everything older already gone: the turn is ours without waiting.
        delete(&mut s, "d", 44);
        assert!(matches!(
            s.wait_turn(1, keys(&[("d", 35)]), 40, 45),
            Wait::Deleted
        ));
    }

    #[test]
    fn an_older_incarnations_delete_does_not_end_a_wait_for_the_newer() {
        let mut s = open_state();
        // A DELETE of a at 15 is of an older incarnation than the a (created 20) that this
        // waiter's txn read at 30: a is still to be waited for.
        delete(&mut s, "a", 15);
        let mut b = pending(s.wait_turn(1, keys(&[("a", 20)]), 30, 30));
        // a is deleted at 35 and created again at 36; c lists the new a before the watch
        // delivers the DELETE at 35 (its answer overtook the watch).
        let mut c = pending(s.wait_turn(1, keys(&[("b", 30), ("a", 36)]), 50, 50));
        assert_eq!(s.listed_revs.get(b"a".as_slice()), Some(&vec![20, 36]));
        delete(&mut s, "a", 35);
        assert_eq!(b.try_recv(), Ok(true));
        assert!(c.try_recv().is_err());
        delete(&mut s, "b", 51);
        assert!(c.try_recv().is_err(), "the new a (36) is still there");
        delete(&mut s, "a", 52);
        assert_eq!(c.try_recv(), Ok(true));
    }

    #[test]
    fn keys_created_in_one_txn_are_both_waited_for() {
        let mut s = open_state();
        let mut c = pending(s.wait_turn(1, keys(&[("a", 20), ("x", 20)]), 30, 30));
        assert_eq!(s.listed.len(), 2);
        delete(&mut s, "a", 31);
        assert!(c.try_recv().is_err());
        // Both DELETEs in one watch response.
        s.on_deletes([(b"y".as_slice(), 32), (b"x".as_slice(), 32)]);
        assert_eq!(c.try_recv(), Ok(true));
    }

    #[test]
    fn what_the_watch_cannot_vouch_for_sends_waiters_to_recheck() {
        let mut s = open_state();
        // Read before the oldest remembered DELETE: it may have been forgotten.
        assert!(matches!(
            s.wait_turn(1, keys(&[("a", 5)]), 9, 9),
            Wait::Unknown
        ));
        // Another watch (restarted since the txn).
        assert!(matches!(
            s.wait_turn(2, keys(&[("a", 20)]), 30, 30),
            Wait::Unknown
        ));
        assert!(s.listed.is_empty(), "nothing listed for a refused wait");
        // The watch ends: every waiter is told to re-check, the table is emptied.
        let mut b = pending(s.wait_turn(1, keys(&[("a", 20)]), 30, 30));
        let mut k = pending(s.wait_delete_at(1, b"a", 30));
        s.close();
        assert_eq!(b.try_recv(), Ok(false));
        assert_eq!(k.try_recv(), Ok(false));
        assert!(s.listed.is_empty() && s.listed_revs.is_empty() && !s.has_waiters());
        assert!(matches!(
            s.wait_turn(1, keys(&[("a", 20)]), 30, 30),
            Wait::Unknown
        ));
    }

    #[test]
    fn a_key_waiter_ignores_an_older_incarnations_delete() {
        let mut s = open_state();
        let mut w = pending(s.wait_delete_at(1, b"a", 30));
        delete(&mut s, "a", 25);
        assert!(w.try_recv().is_err());
        delete(&mut s, "a", 31);
        assert_eq!(w.try_recv(), Ok(true));
    }

    #[test]
    fn cancelled_waiters_are_swept() {
        let mut s = open_state();
        for i in 0..10 {
            drop(s.wait_turn(1, keys(&[("a", 20)]), 30 + i, 30 + i));
        }
        assert_eq!(s.turns.len(), 10);
        for i in 0..64 {
            delete(&mut s, &format!("z{i}"), 100 + i);
        }
        assert!(s.turns.is_empty(), "dropped receivers swept out");
    }
}
