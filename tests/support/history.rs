//! A history of what lock contenders did under faults, and a checker for it.
//!
//! Every worker records its lock attempts, acquisitions (name, key, fencing token), guarded
//! read-modify-write increments of a shared counter, and releases into one [`History`]; the
//! fault driver records the faults it injects and when the cluster was healed. Every event
//! gets a sequence number from one counter under one mutex, so the sequence is a total order
//! consistent with real time in the test process.
//!
//! Each guarded increment writes, in the same transaction as the counter, a *marker* key
//! (`<ops prefix><worker>-<n>` = `<token>:<new value>`). After the run the markers found in
//! etcd are the ground truth ([`Ground`]): they say which writes were applied and at which
//! revision, also for writes whose answer was lost (timeout, broken connection).
//!
//! [`check`] verifies, and names each violation by rule:
//!
//! * `[well-formed]` every worker alternates attempt -> acquire -> writes -> release, and writes
//!   only with the token of the lock it holds;
//! * `[tokens]` per lock name, fencing tokens strictly increase in acquisition order;
//! * `[ground-truth]` what the client reported matches etcd: a write reported applied has its
//!   marker, a write reported refused (fence failed) or conflicting has none, the marker holds
//!   the writer's token and value;
//! * `[exclusion-rev]` in etcd's revision order, applied guarded writes never go back to an
//!   older holder: each holder's writes form one contiguous run, runs ordered by token (no
//!   stale write interleaved with a newer holder's);
//! * `[exclusion-time]` between a holder's acquire and its release (release start, when the
//!   release succeeded; otherwise the end of its last confirmed write) no write of another
//!   holder both started and succeeded;
//! * `[counter]` no lost increment: applied writes carry the values initial+1, +2, ... in
//!   revision order, and the final counter equals initial + the number of applied writes
//!   (confirmed ones plus lost answers that did apply);
//! * `[conflict]` a holder whose fence held never found the counter changed since its own read
//!   (that would be another writer inside its hold);
//! * `[doubled]` no marker was written twice (an increment applied twice: a write retried
//!   after etcd had applied it, which the counter rule cannot see);
//! * `[overlap]` the holders' `Enter` .. `Leave` intervals (recorded where the lock alone
//!   protects the data, as a shared file would see them) never overlap;
//! * `[handoff]` after an `unlock()` cut short by a timeout or failed, a waiting worker
//!   acquires within [`HANDOFF_BOUND`] (the abandoned key must still go);
//! * `[worker]` a promise a worker checked itself held (e.g. a relocked guard's key exists);
//! * `[liveness]` once the cluster is healed, every live worker acquires the lock again.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A contender's number (the fault driver and out-of-process holders get their own).
pub type Worker = usize;

/// What etcd did with a guarded increment, as far as the worker knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The fence and the counter compare held: applied.
    Applied,
    /// The fence failed (`NotHeld` / `SessionLost`): etcd refused the write.
    Refused,
    /// The fence held but the counter changed since this holder read it: not applied.
    Conflict,
    /// No answer (timeout, broken connection, ...): applied or not; the markers tell.
    Unknown(String),
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `lock()` called.
    Attempt,
    /// `lock()` returned a guard.
    Acquire {
        /// Lock name.
        name: String,
        /// Lock key.
        key: String,
        /// Fencing token (the key's create revision).
        token: i64,
    },
    /// The test gave up waiting for `lock()`.
    TimedOut,
    /// A guarded increment finished (`seq` of the event = its completion).
    Write {
        /// Token of the guard used.
        token: i64,
        /// Sequence number taken just before the request was sent.
        invoked: u64,
        /// Marker key written in the same transaction.
        marker: String,
        /// Counter value written.
        value: u64,
        /// What the worker learnt.
        outcome: Outcome,
    },
    /// The hold ended (`unlock()` returned, or the holder is known gone).
    Release {
        /// Token of the guard released.
        token: i64,
        /// Sequence number taken just before `unlock()` was called.
        started: u64,
        /// `unlock()` returned `Ok`.
        ok: bool,
    },
    /// An error outside the write outcome (lock, read, unlock, session, ...).
    Error {
        /// What the worker was doing.
        during: &'static str,
        /// The error's kind.
        kind: String,
    },
    /// The driver injected a fault.
    Fault {
        /// Description.
        what: String,
    },
    /// The driver healed the cluster (majority up, all members healthy).
    Healed,
    /// An observation for the timeline (leader changes, probe reads); not checked.
    Note {
        /// Description.
        what: String,
    },
    /// The holder starts acting on the shared data as the only holder (what a process
    /// guarding a shared file does after `lock()` returns): the start of its interval.
    Enter {
        /// Token of the guard it holds.
        token: i64,
    },
    /// The holder stops acting on the shared data: the end of its interval.
    Leave {
        /// Token of the guard it held.
        token: i64,
    },
    /// The holder let go without a confirmed release: its `unlock()` was cut short by a
    /// timeout or failed (`how` starts with `unlock`), or the guard was dropped (`dropped`).
    Abandon {
        /// Token of the guard let go.
        token: i64,
        /// How it was let go.
        how: String,
    },
    /// A promise the worker checked itself was broken (e.g. a relocked guard's key vanished).
    Violation {
        /// What was seen.
        what: String,
    },
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the total order.
    pub seq: u64,
    /// Time since the history started.
    pub at: Duration,
    /// Who.
    pub worker: Worker,
    /// What.
    pub op: Op,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    events: Vec<Event>,
}

/// The shared recorder (cheap to clone).
#[derive(Debug, Clone)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
    start: Instant,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history starting now.
    pub fn new() -> Self {
        History {
            inner: Arc::new(Mutex::new(Inner {
                next: 1,
                events: Vec::new(),
            })),
            start: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a sequence number without recording anything (for invocation times).
    pub fn tick(&self) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next;
        inner.next += 1;
        seq
    }

    /// Records `op` for `worker` and returns its sequence number.
    pub fn record(&self, worker: Worker, op: Op) -> u64 {
        let at = self.start.elapsed();
        let mut inner = self.lock();
        let seq = inner.next;
        inner.next += 1;
        inner.events.push(Event {
            seq,
            at,
            worker,
            op,
        });
        seq
    }

    /// Records an error seen by `worker` while doing `during`.
    pub fn error(&self, worker: Worker, during: &'static str, kind: impl Into<String>) -> u64 {
        self.record(
            worker,
            Op::Error {
                during,
                kind: kind.into(),
            },
        )
    }

    /// Time since the history started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The sequence number the next event will get.
    pub fn peek(&self) -> u64 {
        self.lock().next
    }

    /// A copy of every event, in sequence order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// The first acquisition (by anyone but `except`) recorded after sequence number `after`.
    pub fn first_acquire_after(&self, after: u64, except: Option<Worker>) -> Option<Event> {
        self.lock()
            .events
            .iter()
            .find(|e| {
                e.seq > after && Some(e.worker) != except && matches!(e.op, Op::Acquire { .. })
            })
            .cloned()
    }
}

/// A write found applied in etcd (from its marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedWrite {
    /// The revision of the transaction (the marker's mod revision).
    pub revision: i64,
    /// The writer's token, as written into the marker.
    pub token: i64,
    /// The counter value written, as written into the marker.
    pub value: u64,
    /// The marker's version: 1 when the write was applied once, more when it was applied
    /// again (a request retried after etcd had already applied it).
    pub version: i64,
}

/// What etcd holds after the run.
#[derive(Debug, Clone, Default)]
pub struct Ground {
    /// Marker key -> applied write.
    pub applied: BTreeMap<String, AppliedWrite>,
    /// Counter value before the workers started.
    pub initial: u64,
    /// Counter value after they stopped.
    pub final_counter: u64,
}

impl Ground {
    /// Parses a marker value `<token>:<value>`.
    pub fn parse_marker(revision: i64, value: &[u8]) -> Option<AppliedWrite> {
        let text = std::str::from_utf8(value).ok()?;
        let (token, value) = text.split_once(':')?;
        Some(AppliedWrite {
            revision,
            token: token.parse().ok()?,
            value: value.parse().ok()?,
            version: 1,
        })
    }
}

/// The checker's verdict and the run's numbers.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every violation, prefixed with its rule (`[tokens]`, ...).
    pub violations: Vec<String>,
    /// `lock()` calls.
    pub attempts: usize,
    /// Successful `lock()` calls.
    pub acquisitions: usize,
    /// `lock()` waits the test gave up on.
    pub lock_timeouts: usize,
    /// Writes reported applied.
    pub applied_confirmed: usize,
    /// Writes refused by the fence.
    pub refused: usize,
    /// Writes refused by the counter compare.
    pub conflicts: usize,
    /// Writes without an answer.
    pub unknown: usize,
    /// ... of which etcd applied.
    pub unknown_applied: usize,
    /// Writes applied according to etcd.
    pub applied_total: usize,
    /// Errors (and unanswered writes) by `during:kind`.
    pub errors: BTreeMap<String, usize>,
    /// Each fault and the time from it to the next acquisition by anyone.
    pub faults: Vec<(String, Option<Duration>)>,
    /// The longest time without any acquisition, from the first fault to the first
    /// acquisition after the (last) heal.
    pub longest_gap: Option<Duration>,
    /// Unlocks abandoned (cut short or failed) while another worker waited.
    pub abandoned: usize,
    /// The longest time from such an abandoned unlock to the next waiter's acquisition.
    pub handoff_max: Option<Duration>,
}

impl Report {
    /// True without violations.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// The longest time from a fault to the next acquisition (`None` when a fault was never
    /// followed by one, or there was no fault).
    pub fn failover_max(&self) -> Option<Duration> {
        if self.faults.iter().any(|(_, d)| d.is_none()) {
            return None;
        }
        self.faults.iter().filter_map(|(_, d)| *d).max()
    }

    /// `kind=count` pairs, most frequent first.
    pub fn errors_text(&self) -> String {
        let mut pairs: Vec<_> = self.errors.iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut out = String::new();
        for (kind, n) in pairs {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{kind}={n}");
        }
        if out.is_empty() {
            out.push_str("none");
        }
        out
    }
}

/// One hold: from an acquisition to its release.
#[derive(Debug, Clone)]
struct Hold {
    worker: Worker,
    token: i64,
    acquired: u64,
    /// Release start when the release succeeded.
    released_ok: Option<u64>,
    /// Completion of the last write reported applied.
    last_confirmed: Option<u64>,
}

impl Hold {
    /// Up to when the holder provably held the lock (exclusive).
    fn proven_end(&self) -> Option<u64> {
        match (self.released_ok, self.last_confirmed) {
            (Some(r), Some(w)) => Some(r.max(w)),
            (r, w) => r.or(w),
        }
    }
}

/// Checks `events` against what etcd holds; `live` are the workers that must acquire again
/// after the `Healed` event (when there is one).
pub fn check(events: &[Event], ground: &Ground, live: &[Worker]) -> Report {
    let mut report = Report::default();
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| e.seq);

    let holds = well_formed(&events, &mut report);
    tokens(&events, &mut report);
    let writes = ground_truth(&events, ground, &mut report);
    exclusion_by_revision(&writes, &mut report);
    exclusion_by_time(&events, &holds, &mut report);
    counter(&writes, ground, &mut report);
    doubled(ground, &mut report);
    overlaps(&events, &mut report);
    handoffs(&events, &mut report);
    reported(&events, &mut report);
    liveness(&events, live, &mut report);
    failovers(&events, &mut report);
    report
}

/// Per worker: attempt -> acquire|timeout|error, writes inside a hold, one release per hold.
fn well_formed(events: &[&Event], report: &mut Report) -> Vec<Hold> {
    let mut holds: Vec<Hold> = Vec::new();
    // worker -> index into `holds` of its open hold
    let mut open: HashMap<Worker, usize> = HashMap::new();
    for e in events {
        match &e.op {
            Op::Attempt => {
                report.attempts += 1;
                if open.contains_key(&e.worker) {
                    report.violations.push(format!(
                        "[well-formed] worker {} calls lock() at #{} while holding",
                        e.worker, e.seq
                    ));
                }
            }
            Op::Acquire { token, .. } => {
                report.acquisitions += 1;
                if let Some(&i) = open.get(&e.worker) {
                    report.violations.push(format!(
                        "[well-formed] worker {} acquires (token {token}) at #{} while holding token {}",
                        e.worker, e.seq, holds[i].token
                    ));
                }
                open.insert(e.worker, holds.len());
                holds.push(Hold {
                    worker: e.worker,
                    token: *token,
                    acquired: e.seq,
                    released_ok: None,
                    last_confirmed: None,
                });
            }
            Op::TimedOut => {
                report.lock_timeouts += 1;
                *report
                    .errors
                    .entry("lock:wait-timeout".to_string())
                    .or_default() += 1;
            }
            Op::Write { token, outcome, .. } => {
                match outcome {
                    Outcome::Applied => report.applied_confirmed += 1,
                    Outcome::Refused => report.refused += 1,
                    Outcome::Conflict => report.conflicts += 1,
                    Outcome::Unknown(kind) => {
                        report.unknown += 1;
                        *report.errors.entry(format!("write:{kind}")).or_default() += 1;
                    }
                }
                match open.get(&e.worker) {
                    Some(&i) if holds[i].token == *token => {
                        if *outcome == Outcome::Applied {
                            holds[i].last_confirmed = Some(e.seq);
                        }
                    }
                    _ => report.violations.push(format!(
                        "[well-formed] worker {} writes with token {token} at #{} without holding it",
                        e.worker, e.seq
                    )),
                }
            }
            Op::Release { token, started, ok } => match open.remove(&e.worker) {
                Some(i) if holds[i].token == *token => {
                    if *ok {
                        holds[i].released_ok = Some(*started);
                    }
                }
                _ => report.violations.push(format!(
                    "[well-formed] worker {} releases token {token} at #{} without holding it",
                    e.worker, e.seq
                )),
            },
            Op::Error { during, kind } => {
                *report.errors.entry(format!("{during}:{kind}")).or_default() += 1;
            }
            Op::Enter { token } | Op::Leave { token } => match open.get(&e.worker) {
                Some(&i) if holds[i].token == *token => {}
                _ => report.violations.push(format!(
                    "[well-formed] worker {} enters or leaves with token {token} at #{} without holding it",
                    e.worker, e.seq
                )),
            },
            Op::Abandon { how, .. } => {
                *report.errors.entry(format!("release:{how}")).or_default() += 1;
            }
            Op::Fault { .. } | Op::Healed | Op::Note { .. } | Op::Violation { .. } => {}
        }
    }
    let mut still: Vec<_> = open.into_iter().collect();
    still.sort();
    for (worker, i) in still {
        report.violations.push(format!(
            "[well-formed] worker {worker} still holds token {} at the end",
            holds[i].token
        ));
    }
    holds
}

/// Per lock name, tokens strictly increase in acquisition order.
fn tokens(events: &[&Event], report: &mut Report) {
    let mut last: HashMap<&str, (i64, Worker, u64)> = HashMap::new();
    for e in events {
        if let Op::Acquire { name, token, .. } = &e.op {
            if let Some(&(prev, worker, seq)) = last.get(name.as_str()) {
                if *token <= prev {
                    report.violations.push(format!(
                        "[tokens] {name}: worker {} acquired token {token} at #{} after worker {worker} acquired token {prev} at #{seq}",
                        e.worker, e.seq
                    ));
                }
            }
            last.insert(name, (*token, e.worker, e.seq));
        }
    }
}

/// An applied write joined with the event that made it.
#[derive(Debug, Clone)]
struct AppliedEvent {
    worker: Worker,
    token: i64,
    revision: i64,
    value: u64,
    marker: String,
}

/// Compares what workers were told with the markers in etcd; returns the applied writes.
fn ground_truth(events: &[&Event], ground: &Ground, report: &mut Report) -> Vec<AppliedEvent> {
    let mut seen = HashMap::new();
    let mut applied = Vec::new();
    for e in events {
        let Op::Write {
            token,
            marker,
            value,
            outcome,
            ..
        } = &e.op
        else {
            continue;
        };
        if seen.insert(marker.as_str(), e.seq).is_some() {
            report.violations.push(format!(
                "[well-formed] marker {marker} used twice (#{})",
                e.seq
            ));
        }
        let found = ground.applied.get(marker);
        match (outcome, found) {
            (Outcome::Applied, None) => report.violations.push(format!(
                "[ground-truth] worker {} was told write {marker} (token {token}) applied, but etcd has no marker",
                e.worker
            )),
            (Outcome::Refused | Outcome::Conflict, Some(w)) => report.violations.push(format!(
                "[ground-truth] worker {} was told write {marker} (token {token}) was {outcome:?}, but etcd applied it at revision {}",
                e.worker, w.revision
            )),
            (Outcome::Unknown(_), Some(_)) => report.unknown_applied += 1,
            _ => {}
        }
        if let Some(w) = found {
            if w.token != *token || w.value != *value {
                report.violations.push(format!(
                    "[ground-truth] marker {marker} holds token {} value {}, worker {} wrote token {token} value {value}",
                    w.token, w.value, e.worker
                ));
            }
            if w.revision <= *token {
                report.violations.push(format!(
                    "[ground-truth] write {marker} at revision {} is not after its token {token}",
                    w.revision
                ));
            }
            applied.push(AppliedEvent {
                worker: e.worker,
                token: *token,
                revision: w.revision,
                value: w.value,
                marker: marker.clone(),
            });
        }
    }
    for marker in ground.applied.keys() {
        if !seen.contains_key(marker.as_str()) {
            report.violations.push(format!(
                "[ground-truth] etcd holds marker {marker} that no worker recorded"
            ));
        }
    }
    report.applied_total = applied.len();
    applied.sort_by_key(|w| w.revision);
    applied
}

/// In revision order, applied writes never return to an older holder.
fn exclusion_by_revision(writes: &[AppliedEvent], report: &mut Report) {
    let mut newest: Option<&AppliedEvent> = None;
    for w in writes {
        if let Some(n) = newest {
            if (w.token, w.worker) != (n.token, n.worker) && w.token <= n.token {
                report.violations.push(format!(
                    "[exclusion-rev] write {} (worker {}, token {}) applied at revision {} after write {} (worker {}, token {}) at revision {}",
                    w.marker, w.worker, w.token, w.revision, n.marker, n.worker, n.token, n.revision
                ));
                continue;
            }
        }
        newest = Some(w);
    }
}

/// No other holder's write starts and succeeds inside a proven hold.
fn exclusion_by_time(events: &[&Event], holds: &[Hold], report: &mut Report) {
    let confirmed: Vec<(Worker, i64, u64, u64, &str)> = events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Write {
                token,
                invoked,
                marker,
                outcome: Outcome::Applied,
                ..
            } => Some((e.worker, *token, *invoked, e.seq, marker.as_str())),
            _ => None,
        })
        .collect();
    for h in holds {
        let Some(end) = h.proven_end() else { continue };
        for &(worker, token, invoked, done, marker) in &confirmed {
            if (worker, token) == (h.worker, h.token) {
                continue;
            }
            if invoked > h.acquired && done < end {
                report.violations.push(format!(
                    "[exclusion-time] write {marker} (worker {worker}, token {token}, #{invoked}..#{done}) succeeded while worker {} held token {} (#{}..#{end})",
                    h.worker, h.token, h.acquired
                ));
            }
        }
    }
}

/// Values initial+1, +2, ... in revision order; the final counter matches.
fn counter(writes: &[AppliedEvent], ground: &Ground, report: &mut Report) {
    let mut expected = ground.initial;
    for w in writes {
        expected += 1;
        if w.value != expected {
            report.violations.push(format!(
                "[counter] write {} at revision {} set the counter to {}, expected {expected} (lost or duplicated increment)",
                w.marker, w.revision, w.value
            ));
            expected = w.value;
        }
    }
    let want = ground.initial + writes.len() as u64;
    if ground.final_counter != want {
        report.violations.push(format!(
            "[counter] final counter {} but {} increments applied on {} (want {want})",
            ground.final_counter,
            writes.len(),
            ground.initial
        ));
    }
    if report.conflicts > 0 {
        report.violations.push(format!(
            "[conflict] {} guarded writes found the counter changed since the holder's own read",
            report.conflicts
        ));
    }
}

/// A marker written more than once: one increment applied twice (a write retried after
/// etcd had applied it). The counter rule cannot see it: both applications wrote one value.
fn doubled(ground: &Ground, report: &mut Report) {
    for (marker, w) in &ground.applied {
        if w.version > 1 {
            report.violations.push(format!(
                "[doubled] write {marker} (token {}) was applied {} times, the last at revision {}",
                w.token, w.version, w.revision
            ));
        }
    }
}

/// The holders' intervals (`Enter` .. `Leave`, as a shared file would see them) never
/// overlap: at most one worker is inside at any point of the total order.
fn overlaps(events: &[&Event], report: &mut Report) {
    let mut inside: Option<(Worker, i64, u64)> = None;
    for e in events {
        match e.op {
            Op::Enter { token } => {
                if let Some((worker, held, since)) = inside {
                    if worker != e.worker {
                        report.violations.push(format!(
                            "[overlap] worker {} (token {token}) entered at #{} while worker {worker} (token {held}) was inside since #{since}",
                            e.worker, e.seq
                        ));
                    }
                }
                inside = Some((e.worker, token, e.seq));
            }
            Op::Leave { .. } if inside.is_some_and(|(worker, _, _)| worker == e.worker) => {
                inside = None;
            }
            _ => {}
        }
    }
}

/// Longest time from an abandoned `unlock()` (cut short or failed) to the next acquisition by
/// another worker, while one was waiting: the key of an abandoned unlock must still go.
pub const HANDOFF_BOUND: Duration = Duration::from_secs(2);

/// After each abandoned `unlock()`, a waiting worker acquires within [`HANDOFF_BOUND`].
fn handoffs(events: &[&Event], report: &mut Report) {
    let mut waiting: BTreeMap<Worker, u64> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        match &e.op {
            Op::Attempt => {
                waiting.insert(e.worker, e.seq);
            }
            Op::Acquire { .. } | Op::TimedOut | Op::Error { during: "lock", .. } => {
                waiting.remove(&e.worker);
            }
            Op::Abandon { token, how } if how.starts_with("unlock") => {
                if !waiting.keys().any(|&w| w != e.worker) {
                    continue;
                }
                report.abandoned += 1;
                let next = events[i + 1..]
                    .iter()
                    .find(|n| n.worker != e.worker && matches!(n.op, Op::Acquire { .. }))
                    .map(|n| n.at.saturating_sub(e.at));
                report.handoff_max = report.handoff_max.max(next);
                if next.is_none_or(|d| d > HANDOFF_BOUND) {
                    report.violations.push(format!(
                        "[handoff] worker {} abandoned unlock of token {token} ({how}) at #{}; the next waiter acquired {next:?} later (bound {HANDOFF_BOUND:?})",
                        e.worker, e.seq
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Promises the workers checked themselves.
fn reported(events: &[&Event], report: &mut Report) {
    for e in events {
        if let Op::Violation { what } = &e.op {
            report.violations.push(format!(
                "[worker] worker {} at #{}: {what}",
                e.worker, e.seq
            ));
        }
    }
}

/// After the (last) `Healed`, every live worker acquires again.
fn liveness(events: &[&Event], live: &[Worker], report: &mut Report) {
    let Some(healed) = events
        .iter()
        .rev()
        .find(|e| e.op == Op::Healed)
        .map(|e| e.seq)
    else {
        return;
    };
    for &w in live {
        let acquired = events
            .iter()
            .any(|e| e.worker == w && e.seq > healed && matches!(e.op, Op::Acquire { .. }));
        if !acquired {
            let timeouts = events
                .iter()
                .filter(|e| e.worker == w && e.seq > healed && e.op == Op::TimedOut)
                .count();
            report.violations.push(format!(
                "[liveness] worker {w} never acquired after the cluster healed (#{healed}; {timeouts} lock waits timed out since)"
            ));
        }
    }
}

/// For each fault, the time to the next acquisition by anyone; and the longest stretch
/// without acquisitions from the first fault until the first acquisition after the heal.
fn failovers(events: &[&Event], report: &mut Report) {
    if let Some(first) = events.iter().position(|e| matches!(e.op, Op::Fault { .. })) {
        let mut last = events[first].at;
        let mut longest = Duration::ZERO;
        let mut healed = false;
        for e in &events[first..] {
            match e.op {
                Op::Healed => healed = true,
                Op::Acquire { .. } => {
                    longest = longest.max(e.at.saturating_sub(last));
                    last = e.at;
                    if healed {
                        break;
                    }
                }
                _ => {}
            }
        }
        report.longest_gap = Some(longest);
    }
    for (i, e) in events.iter().enumerate() {
        if let Op::Fault { what } = &e.op {
            let next = events[i + 1..]
                .iter()
                .find(|n| matches!(n.op, Op::Acquire { .. }))
                .map(|n| n.at.saturating_sub(e.at));
            report.faults.push((what.clone(), next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds hand-made histories: sequence numbers and times in call order.
    #[derive(Default)]
    struct Script {
        events: Vec<Event>,
        ground: Ground,
        next: u64,
        revision: i64,
    }

    impl Script {
        fn push(&mut self, worker: Worker, op: Op) -> u64 {
            self.next += 1;
            self.events.push(Event {
                seq: self.next,
                at: Duration::from_millis(self.next * 10),
                worker,
                op,
            });
            self.next
        }
        fn tick(&mut self) -> u64 {
            self.next += 1;
            self.next
        }
        fn acquire(&mut self, worker: Worker, token: i64) -> u64 {
            self.push(worker, Op::Attempt);
            self.push(
                worker,
                Op::Acquire {
                    name: "L".into(),
                    key: format!("L/{worker}"),
                    token,
                },
            )
        }
        /// A write with `outcome`; applied in etcd at `revision` when `applied`.
        fn write(
            &mut self,
            worker: Worker,
            token: i64,
            value: u64,
            outcome: Outcome,
            applied_at: Option<i64>,
        ) -> String {
            let invoked = self.tick();
            let marker = format!("ops/{worker:02}-{invoked:06}");
            if let Some(revision) = applied_at {
                self.ground.applied.insert(
                    marker.clone(),
                    AppliedWrite {
                        revision,
                        token,
                        value,
                        version: 1,
                    },
                );
                self.ground.final_counter = self.ground.final_counter.max(value);
            }
            self.push(
                worker,
                Op::Write {
                    token,
                    invoked,
                    marker: marker.clone(),
                    value,
                    outcome,
                },
            );
            marker
        }
        fn release(&mut self, worker: Worker, token: i64, ok: bool) {
            let started = self.tick();
            self.push(worker, Op::Release { token, started, ok });
        }
        /// A clean hold: acquire at `token`, `n` applied increments, release.
        fn hold(&mut self, worker: Worker, n: u64) {
            self.revision += 1;
            let token = self.revision;
            self.acquire(worker, token);
            for _ in 0..n {
                self.revision += 1;
                let value = self.ground.final_counter + 1;
                let rev = self.revision;
                self.write(worker, token, value, Outcome::Applied, Some(rev));
            }
            self.release(worker, token, true);
            self.revision += 1; // the release's delete
        }
        fn check(&self, live: &[Worker]) -> Report {
            check(&self.events, &self.ground, live)
        }
    }

    fn assert_flags(report: &Report, rule: &str) {
        assert!(
            report.violations.iter().any(|v| v.starts_with(rule)),
            "expected a {rule} violation, got {:#?}",
            report.violations
        );
    }

    fn good() -> Script {
        let mut s = Script::default();
        s.push(
            100,
            Op::Fault {
                what: "kill".into(),
            },
        );
        for round in 0..3 {
            for w in 0..3 {
                s.hold(w, 1 + (round + w as u64) % 2);
            }
        }
        // A refused stale write and an unanswered one that did apply, both fine.
        s.revision += 1;
        let t = s.revision;
        s.acquire(0, t);
        s.write(0, t, s.ground.final_counter + 1, Outcome::Refused, None);
        s.release(0, t, false);
        s.revision += 1;
        let t = s.revision;
        s.acquire(1, t);
        s.revision += 1;
        let (v, r) = (s.ground.final_counter + 1, s.revision);
        s.write(1, t, v, Outcome::Unknown("timeout".into()), Some(r));
        s.release(1, t, true);
        s.push(100, Op::Healed);
        for w in 0..3 {
            s.hold(w, 1);
        }
        s
    }

    #[test]
    fn good_history_is_clean() {
        let s = good();
        let r = s.check(&[0, 1, 2]);
        assert!(r.is_clean(), "{:#?}", r.violations);
        assert_eq!(r.acquisitions, 14);
        assert_eq!(r.refused, 1);
        assert_eq!((r.unknown, r.unknown_applied), (1, 1));
        assert_eq!(r.applied_total as u64, s.ground.final_counter);
        assert_eq!(r.faults.len(), 1);
        assert!(r.failover_max().is_some());
        assert!(r
            .longest_gap
            .is_some_and(|g| g >= r.failover_max().unwrap_or_default()));
    }

    #[test]
    fn decreasing_token_is_flagged() {
        let mut s = good();
        s.acquire(0, 5);
        s.release(0, 5, true);
        assert_flags(&s.check(&[0, 1, 2]), "[tokens]");
    }

    #[test]
    fn interleaved_writes_are_flagged() {
        // Holder 0 (token 100) writes at 101, holder 1 (token 103) writes at 104, then a stale
        // write of holder 0 lands at 105.
        let mut s = Script::default();
        s.acquire(0, 100);
        s.write(0, 100, 1, Outcome::Applied, Some(101));
        s.acquire(1, 103);
        s.write(1, 103, 2, Outcome::Applied, Some(104));
        s.write(0, 100, 3, Outcome::Applied, Some(105));
        s.release(1, 103, true);
        s.release(0, 100, false);
        let r = s.check(&[]);
        assert_flags(&r, "[exclusion-rev]");
        assert_flags(&r, "[exclusion-time]");
    }

    #[test]
    fn write_inside_another_hold_is_flagged() {
        // Holder 0 holds (released cleanly later); worker 1's write starts and succeeds inside
        // that hold. Revisions alone look fine (only one writer applied anything).
        let mut s = Script::default();
        s.acquire(0, 10);
        s.acquire(1, 11);
        s.write(1, 11, 1, Outcome::Applied, Some(12));
        s.release(1, 11, true);
        s.release(0, 10, true);
        let r = s.check(&[]);
        assert_flags(&r, "[exclusion-time]");
        assert!(!r
            .violations
            .iter()
            .any(|v| v.starts_with("[exclusion-rev]")));
    }

    #[test]
    fn lost_increment_is_flagged() {
        // Two holders both wrote counter = 1: one increment lost.
        let mut s = Script::default();
        s.acquire(0, 10);
        s.write(0, 10, 1, Outcome::Applied, Some(11));
        s.release(0, 10, true);
        s.acquire(1, 13);
        s.write(1, 13, 1, Outcome::Applied, Some(14));
        s.release(1, 13, true);
        assert_flags(&s.check(&[]), "[counter]");
        // And a final counter that does not match the applied writes.
        let mut s = good();
        s.ground.final_counter += 1;
        assert_flags(&s.check(&[0, 1, 2]), "[counter]");
    }

    #[test]
    fn refused_but_applied_is_flagged() {
        let mut s = Script::default();
        s.acquire(0, 10);
        s.write(0, 10, 1, Outcome::Refused, Some(11));
        s.release(0, 10, false);
        assert_flags(&s.check(&[]), "[ground-truth]");
        let mut s = Script::default();
        s.acquire(0, 10);
        s.write(0, 10, 1, Outcome::Applied, None);
        s.release(0, 10, true);
        assert_flags(&s.check(&[]), "[ground-truth]");
    }

    #[test]
    fn conflict_is_flagged() {
        let mut s = Script::default();
        s.acquire(0, 10);
        s.write(0, 10, 1, Outcome::Conflict, None);
        s.release(0, 10, true);
        assert_flags(&s.check(&[]), "[conflict]");
    }

    #[test]
    fn missing_acquisition_after_heal_is_flagged() {
        let mut s = good();
        s.push(100, Op::Healed);
        s.hold(0, 1);
        s.push(2, Op::Attempt);
        s.push(2, Op::TimedOut);
        let r = s.check(&[0, 1, 2]);
        assert_flags(&r, "[liveness]");
        assert!(r.violations.iter().any(|v| v.contains("worker 1")));
        assert!(r.violations.iter().any(|v| v.contains("worker 2")));
    }

    #[test]
    fn write_applied_twice_is_flagged() {
        let mut s = Script::default();
        s.acquire(0, 10);
        let marker = s.write(0, 10, 1, Outcome::Applied, Some(12));
        s.release(0, 10, true);
        assert!(s.check(&[]).is_clean());
        if let Some(w) = s.ground.applied.get_mut(&marker) {
            w.version = 2;
        }
        assert_flags(&s.check(&[]), "[doubled]");
    }

    #[test]
    fn overlapping_intervals_are_flagged() {
        let mut s = Script::default();
        s.acquire(0, 10);
        s.push(0, Op::Enter { token: 10 });
        s.push(0, Op::Leave { token: 10 });
        s.release(0, 10, true);
        s.acquire(1, 12);
        s.push(1, Op::Enter { token: 12 });
        assert!(s
            .check(&[])
            .violations
            .iter()
            .all(|v| !v.starts_with("[overlap]")));
        s.acquire(2, 14);
        s.push(2, Op::Enter { token: 14 });
        s.push(1, Op::Leave { token: 12 });
        s.push(2, Op::Leave { token: 14 });
        assert_flags(&s.check(&[]), "[overlap]");
    }

    #[test]
    fn slow_handoff_after_abandoned_unlock_is_flagged() {
        let abandoned = |gap_events: u64| {
            let mut s = Script::default();
            s.acquire(0, 10);
            s.push(1, Op::Attempt);
            s.push(
                0,
                Op::Abandon {
                    token: 10,
                    how: "unlock-cut".into(),
                },
            );
            s.release(0, 10, false);
            // Each scripted event is 10 ms later than the one before.
            for _ in 0..gap_events {
                s.push(100, Op::Note { what: "-".into() });
            }
            s.push(
                1,
                Op::Acquire {
                    name: "L".into(),
                    key: "L/1".into(),
                    token: 12,
                },
            );
            s.release(1, 12, true);
            s.check(&[])
        };
        let quick = abandoned(3);
        assert!(quick.is_clean(), "{:#?}", quick.violations);
        assert_eq!(quick.abandoned, 1);
        let bound_in_events = HANDOFF_BOUND.as_millis() as u64 / 10;
        assert_flags(&abandoned(bound_in_events + 5), "[handoff]");
    }

    #[test]
    fn malformed_history_is_flagged() {
        let mut s = Script::default();
        s.acquire(0, 10);
        s.acquire(0, 11);
        s.write(1, 10, 1, Outcome::Refused, None);
        assert_flags(&s.check(&[]), "[well-formed]");
    }

    #[test]
    fn recorder_orders_events() {
        let h = History::new();
        let a = h.tick();
        let b = h.record(3, Op::Attempt);
        let c = h.record(
            3,
            Op::Acquire {
                name: "n".into(),
                key: "n/1".into(),
                token: 7,
            },
        );
        assert!(a < b && b < c);
        assert_eq!(h.events().len(), 2);
        assert_eq!(h.first_acquire_after(b, None).map(|e| e.seq), Some(c));
        assert!(h.first_acquire_after(b, Some(3)).is_none());
        assert_eq!(
            Ground::parse_marker(9, b"7:3"),
            Some(AppliedWrite {
                revision: 9,
                token: 7,
                value: 3,
                version: 1
            })
        );
    }
}
