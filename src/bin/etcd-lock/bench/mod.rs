//! lockbench v1, private to the CLI (`etcd-lock bench`): lock, KV and lease throughput against
//! a live cluster, with the client's own cost (requests, bytes, CPU) per op. It uses only the
//! library's public API.
//!
//! | workload | what one op is | size |
//! |---|---|---|
//! | `W1`  | lock + unlock `lb/…/w1`, 1 worker, uncontended | 2000 |
//! | `W1F` | `KV/Put` + `KV/DeleteRange` of one key, 1 worker: the floor other clients' W1 is compared with | 2000 |
//! | `W1T` | the recipe's two requests with no lock logic, 1 worker: its join `KV/Txn` (put with lease + create-ordered Range) and the release `KV/Txn If create_revision(key) == token Then DeleteRange(key)` | 2000 |
//! | `W2`  | 8 workers (own connection and session, TTL 10 s) × 250: lock, get + put counter, unlock | 2000 |
//! | `W3`  | `KV/Put` of a 256-byte value to a distinct key, 16 in flight on one connection | 20000 |
//! | `W4`  | linearizable `KV/Range` of those keys, value checked, 16 in flight | 20000 |
//! | `W5`  | `Lease/LeaseGrant` (TTL 10 s) + `Lease/LeaseRevoke`, 1 worker | 1000 |
//! | `W2F` | the critical path of a W2 handoff without a lock, 1 worker: `KV/DeleteRange` of a key, `KV/Range` + `KV/Put` of a counter | 2000 |
//! | `W6`  | 8 workers lock + unlock 10,000 distinct names, every 5th name twice at once (contended) | 12000 |
//! | `W7`  | 1000 sessions on ONE client, a task each, lock + unlock one name twice | 2000 |
//! | `W2L` | W2 with 64 contenders for 10 minutes, sampled every 30 s (RSS, open watches) | time |
//!
//! W2 runs once per entry of [`BenchConfig::contenders`] (8 by default; the scale study uses
//! 8, 64 and 256) and reports its throughput over W2F's (`ratio_to_floor`) when both ran; W6
//! reports its throughput over W1's (`ratio_to_w1`) and the watches, per-name state and RSS
//! left after the run and after [`BenchConfig::idle`]; W7 counts the waits that fell back to
//! the slow path. `all` is the v1 set plus W2F; W6, W7 and W2L run when named.
//!
//! Every run uses fresh keys under `lb/<pid>-<nanos>/` and deletes them at the end. Each
//! workload is bounded by [`BenchConfig::timeout`]. Counters are summed over the clients the
//! workload opened (setup and teardown excluded); CPU is this process's user + system time.

mod measure;
mod report;
mod scale;
mod workloads;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_lock::client::Client;
use etcd_lock::error::{Error, Result};
use etcd_lock::kv::DeleteOptions;
use etcd_lock::lock::{DynLocker, RecipeLock, ServiceLock};

pub(crate) use measure::Extra;
pub(crate) use report::{table, BenchResult};

use measure::Outcome;
use workloads::Ctx;

/// A refused bench argument, as the library words its own.
fn invalid(argument: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        argument,
        reason: reason.into(),
    }
}

/// One lockbench v1 workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Workload {
    /// Uncontended lock: 1 worker, 2000 cycles of lock + unlock.
    W1,
    /// The floor for W1: 1 worker, 2000 sequential cycles of put + delete of one key.
    W1F,
    /// The request floor for W1: 1 worker, 2000 sequential cycles of the exact requests an
    /// uncontended recipe lock + unlock sends (the join `KV/Txn` and the conditional delete
    /// `KV/Txn`), with no lock logic around them.
    W1T,
    /// Contended lock: 8 workers × 250 cycles of lock, read-increment-write a counter, unlock.
    W2,
    /// Puts: 20000 256-byte values to distinct keys, 16 in flight on one connection.
    W3,
    /// Linearizable gets of the W3 keys, 16 in flight on one connection.
    W4,
    /// Leases: 1000 cycles of grant (TTL 10 s) + revoke.
    W5,
    /// The floor for W2: 2000 sequential handoff critical paths without a lock (delete a key,
    /// get + put the counter).
    W2F,
    /// Many names: 10,000 distinct names locked and released by 8 workers, a fifth contended.
    W6,
    /// Many waiters in one process: 1000 sessions on one client queue for one name.
    W7,
    /// The long run: W2 with 64 contenders for 10 minutes, sampled every 30 s.
    W2L,
}

impl Workload {
    /// What `all` runs, in the order [`run_all`] runs them (W1F and W1T before W1, W2F before
    /// W2, W3 before W4).
    pub(crate) const ALL: [Workload; 8] = [
        Workload::W1F,
        Workload::W1T,
        Workload::W1,
        Workload::W2F,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
    ];

    /// Every workload, in run order: [`Workload::ALL`], then W6, W7 and W2L.
    pub(crate) const EVERY: [Workload; 11] = [
        Workload::W1F,
        Workload::W1T,
        Workload::W1,
        Workload::W2F,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
        Workload::W7,
        Workload::W2L,
    ];

    /// The name as printed: `W1`, `W1F`, ...
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W1F => "W1F",
            Workload::W1T => "W1T",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W2F => "W2F",
            Workload::W6 => "W6",
            Workload::W7 => "W7",
            Workload::W2L => "W2L",
        }
    }

    /// True for the workloads added by the scale study (W2F, W6, W7, W2L) and W2, whose JSON
    /// lines carry the extra fields (see [`BenchResult::to_json`]).
    pub(crate) fn is_scale(self) -> bool {
        matches!(
            self,
            Workload::W2 | Workload::W2F | Workload::W6 | Workload::W7 | Workload::W2L
        )
    }

    /// True for the workloads that take a lock and so run once per [`Flavour`].
    pub(crate) fn uses_lock(self) -> bool {
        matches!(
            self,
            Workload::W1 | Workload::W2 | Workload::W6 | Workload::W7 | Workload::W2L
        )
    }

    /// The number of ops at scale 1.0 (the module table; W6: names, W7: waiters; W2L runs
    /// for a time instead).
    pub(crate) fn design_ops(self) -> usize {
        match self {
            Workload::W1 | Workload::W1F | Workload::W1T | Workload::W2 | Workload::W2F => 2000,
            Workload::W3 | Workload::W4 => 20_000,
            Workload::W5 | Workload::W7 => 1000,
            Workload::W6 => 10_000,
            Workload::W2L => 0,
        }
    }

    /// Parses `W1,W2,...` (any case), `all` ([`Workload::ALL`]) or `scale` (W2F, W2, W6, W7).
    pub(crate) fn parse_list(list: &str) -> Result<Vec<Workload>> {
        if list.trim().eq_ignore_ascii_case("all") {
            return Ok(Workload::ALL.to_vec());
        }
        if list.trim().eq_ignore_ascii_case("scale") {
            return Ok(vec![
                Workload::W2F,
                Workload::W2,
                Workload::W6,
                Workload::W7,
            ]);
        }
        list.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::parse)
            .collect()
    }

    /// Rank in [`Workload::EVERY`].
    fn order(self) -> usize {
        Workload::EVERY.iter().position(|w| *w == self).unwrap_or(0)
    }

    /// The label of its timeout error.
    fn timeout_label(self) -> &'static str {
        match self {
            Workload::W1 => "lockbench W1",
            Workload::W1F => "lockbench W1F",
            Workload::W1T => "lockbench W1T",
            Workload::W2 => "lockbench W2",
            Workload::W3 => "lockbench W3",
            Workload::W4 => "lockbench W4",
            Workload::W5 => "lockbench W5",
            Workload::W2F => "lockbench W2F",
            Workload::W6 => "lockbench W6",
            Workload::W7 => "lockbench W7",
            Workload::W2L => "lockbench W2L",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Workload {
    type Err = Error;
    /// `W1`, `W1F`, `W1T`, `W2`, `W2F`, `W3`, `W4`, `W5`, `W6`, `W7`, `W2L`, any case.
    fn from_str(s: &str) -> Result<Workload> {
        Workload::EVERY
            .into_iter()
            .find(|w| w.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                invalid(
                    "workload",
                    format!(
                        "{s:?}: expected W1, W1F, W1T, W2, W2F, W3, W4, W5, W6, W7, W2L, all or scale"
                    ),
                )
            })
    }
}

/// Which lock implementation the lock workloads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) enum Flavour {
    /// [`RecipeLock`] (the default): the client-side recipe on KV/Watch/Txn.
    #[default]
    Recipe,
    /// [`ServiceLock`]: etcd's `v3lockpb.Lock` service.
    Service,
}

impl Flavour {
    /// `recipe` or `service`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Flavour::Recipe => "recipe",
            Flavour::Service => "service",
        }
    }

    /// The lock this flavour names, as a run-time [`DynLocker`] (one code path for both).
    pub(crate) fn locker(self) -> Box<dyn DynLocker> {
        match self {
            Flavour::Recipe => Box::new(RecipeLock::new()),
            Flavour::Service => Box::new(ServiceLock::new()),
        }
    }

    /// Parses `recipe`, `service` or `both` (any case).
    pub(crate) fn parse_list(via: &str) -> Result<Vec<Flavour>> {
        if via.trim().eq_ignore_ascii_case("both") {
            return Ok(vec![Flavour::Recipe, Flavour::Service]);
        }
        via.parse().map(|f| vec![f])
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavour {
    type Err = Error;
    /// `recipe` or `service`, any case.
    fn from_str(s: &str) -> Result<Flavour> {
        match s.trim().to_ascii_lowercase().as_str() {
            "recipe" => Ok(Flavour::Recipe),
            "service" => Ok(Flavour::Service),
            _ => Err(invalid(
                "flavour",
                format!("{s:?}: expected recipe, service (or both)"),
            )),
        }
    }
}

/// How to run the bench. Build with struct update syntax over `BenchConfig::default()`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchConfig {
    /// etcd endpoints (`http://host:port` or `host:port`). Default `http://127.0.0.1:2379`.
    pub(crate) endpoints: Vec<String>,
    /// Multiplies every workload's size in the module table (1.0 = as listed; 0.1 for a quick run).
    pub(crate) scale: f64,
    /// When set, every workload runs this many ops instead (W2 splits them among its workers).
    pub(crate) ops: Option<usize>,
    /// Upper bound on one workload, setup and teardown included. Default 120 s.
    pub(crate) timeout: Duration,
    /// W2's workers (when [`BenchConfig::contenders`] is empty) and W6's, each with its own
    /// connection and session. Default 8.
    pub(crate) workers: usize,
    /// W2 runs once per entry, with that many contenders (e.g. `[8, 64, 256]`); empty: once
    /// with [`BenchConfig::workers`].
    pub(crate) contenders: Vec<usize>,
    /// W6: distinct names (times `scale`). Default 10,000.
    pub(crate) names: usize,
    /// W7: waiting tasks (sessions) on the one client (times `scale`). Default 1000.
    pub(crate) waiters: usize,
    /// W6: how long to stay idle before counting watches and RSS again. Default 40 s, past
    /// the 30 to 35 s after which an unused prefix watch closes.
    pub(crate) idle: Duration,
    /// W2L: how long to run. Default 10 minutes.
    pub(crate) long_run: Duration,
    /// W2L: time between samples. Default 30 s.
    pub(crate) sample_every: Duration,
    /// W2L: contenders. Default 64.
    pub(crate) long_contenders: usize,
    /// W3/W4 requests in flight on their one connection. Default 16.
    pub(crate) in_flight: usize,
    /// TTL of the lock sessions, seconds. Default 10.
    pub(crate) session_ttl: i64,
    /// W3 value size in bytes. Default 256.
    pub(crate) value_size: usize,
    /// Top of the key space used; a run uses `<key_prefix>/<pid>-<nanos>/`. Default `lb`.
    pub(crate) key_prefix: String,
    /// After each workload's cleanup, compact the cluster's history up to the current revision
    /// (`KV/Compact`, physical), so every workload starts from a small store. Off by default:
    /// it discards history other users of the cluster may need. Use it on a dedicated cluster.
    pub(crate) compact: bool,
    /// Called with one line of text as each run of a workload starts and ends (workload,
    /// flavour, run number, elapsed time and rate), e.g. to show progress on a terminal.
    /// Default `None`.
    pub(crate) progress: Option<Progress>,
}

/// A progress callback for [`BenchConfig::progress`]: a function given one line of text.
/// Any two compare equal: the callback does not change what a run measures.
#[derive(Clone, Copy)]
pub(crate) struct Progress(pub fn(&str));

impl PartialEq for Progress {
    fn eq(&self, _: &Progress) -> bool {
        true
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            scale: 1.0,
            ops: None,
            timeout: Duration::from_secs(120),
            workers: 8,
            contenders: Vec::new(),
            names: 10_000,
            waiters: 1000,
            idle: Duration::from_secs(40),
            long_run: Duration::from_secs(600),
            sample_every: Duration::from_secs(30),
            long_contenders: 64,
            in_flight: 16,
            session_ttl: 10,
            value_size: 256,
            key_prefix: "lb".to_string(),
            compact: false,
            progress: None,
        }
    }
}

impl BenchConfig {
    /// How many ops `workload` runs: [`BenchConfig::ops`], or its size times `scale`, at least
    /// 1 (for W2 rounded up to a multiple of the workers). W6 counts names and W7 waiters
    /// ([`BenchConfig::names`], [`BenchConfig::waiters`]).
    pub(crate) fn ops_for(&self, workload: Workload) -> usize {
        let base = match workload {
            Workload::W6 => self.names,
            Workload::W7 => self.waiters,
            other => other.design_ops(),
        };
        let ops = self
            .ops
            .unwrap_or_else(|| (base as f64 * self.scale).round() as usize)
            .max(1);
        match workload {
            Workload::W2 => ops.div_ceil(self.workers.max(1)) * self.workers.max(1),
            _ => ops,
        }
    }

    /// The contender counts W2 runs with.
    fn w2_contenders(&self) -> Vec<usize> {
        if self.contenders.is_empty() {
            vec![self.workers.max(1)]
        } else {
            self.contenders.clone()
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(invalid("scale", "must be a positive number"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than zero"));
        }
        if self.workers == 0 || self.in_flight == 0 {
            return Err(invalid("workers/in_flight", "must be at least 1"));
        }
        if self.contenders.contains(&0) || self.long_contenders == 0 {
            return Err(invalid("contenders", "must be at least 1"));
        }
        if self.names == 0 || self.waiters == 0 {
            return Err(invalid("names/waiters", "must be at least 1"));
        }
        if self.session_ttl < 1 {
            return Err(invalid("session_ttl", "must be at least 1 second"));
        }
        if self.endpoints.is_empty() {
            return Err(invalid("endpoints", "at least one endpoint is required"));
        }
        Ok(())
    }
}

impl<'a> Ctx<'a> {
    /// Connects the control client and picks this run's unique key prefix.
    async fn open(config: &'a BenchConfig) -> Result<Ctx<'a>> {
        config.validate()?;
        let control = Client::connect(&config.endpoints).await?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let base = format!(
            "{}/{}-{nanos}",
            config.key_prefix.trim_end_matches('/'),
            std::process::id()
        );
        Ok(Ctx {
            config,
            base,
            control,
            kv_keys: 0,
        })
    }

    /// Runs one workload within the configured timeout (plus W6's idle time and W2L's run).
    async fn run(
        &mut self,
        workload: Workload,
        flavour: Flavour,
        contenders: usize,
    ) -> Result<BenchResult> {
        let flavour = workload.uses_lock().then_some(flavour);
        let after = match workload {
            Workload::W6 => self.config.timeout + self.config.idle,
            Workload::W2L => self.config.timeout + self.config.long_run,
            _ => self.config.timeout,
        };
        let outcome = tokio::time::timeout(after, self.run_inner(workload, flavour, contenders))
            .await
            .map_err(|_| Error::Timeout {
                method: workload.timeout_label(),
                after,
                last_error: None,
            })??;
        Ok(BenchResult::from_outcome(workload, flavour, outcome))
    }

    async fn run_inner(
        &mut self,
        workload: Workload,
        flavour: Option<Flavour>,
        contenders: usize,
    ) -> Result<Outcome> {
        let ops = self.config.ops_for(workload);
        let locker = flavour.unwrap_or_default().locker();
        match workload {
            Workload::W1 => workloads::w1(self, locker, ops).await,
            Workload::W2 => {
                let contenders = contenders.max(1);
                let cycles = self
                    .config
                    .ops
                    .unwrap_or_else(|| (2000.0 * self.config.scale).round() as usize)
                    .max(1)
                    .div_ceil(contenders);
                workloads::w2(self, locker, contenders, cycles).await
            }
            Workload::W2F => scale::w2f(self, ops).await,
            Workload::W6 => scale::w6(self, locker, ops).await,
            Workload::W7 => scale::w7(self, locker, ops).await,
            Workload::W2L => scale::w2l(self, locker, self.config.long_contenders).await,
            Workload::W3 => workloads::w3(self, ops).await,
            Workload::W4 => workloads::w4(self, ops).await,
            Workload::W5 => workloads::w5(self, ops).await,
            Workload::W1F => workloads::w1f(self, ops).await,
            Workload::W1T => workloads::w1t(self, ops).await,
        }
    }

    /// Deletes everything under the run's prefix (best effort, bounded to 10 s).
    async fn cleanup(&mut self) {
        let prefix = format!("{}/", self.base);
        let delete = self
            .control
            .delete_with(prefix, DeleteOptions::new().with_prefix());
        let deleted = tokio::time::timeout(Duration::from_secs(10), delete).await;
        self.kv_keys = 0;
        if self.config.compact {
            if let Ok(Ok(deleted)) = deleted {
                let compact = self.control.compact(deleted.revision(), true);
                let _ = tokio::time::timeout(Duration::from_secs(30), compact).await;
            }
        }
    }
}

/// Runs `workloads` (lock workloads once per flavour, W2 once per contender count) in the
/// order of [`Workload::EVERY`]: W1F and W1T are added before W1 and W2F before W2 when those
/// are asked for, and fill [`BenchResult::ratio_to_floor`] of W1 and W2 and
/// [`BenchResult::ratio_to_txn_floor`] of W1; W6 gets
/// [`BenchResult::ratio_to_w1`] when W1 of its flavour ran; W4 reads the keys W3 wrote. Stops at
/// the first workload that fails (a connection error, or a workload over
/// [`BenchConfig::timeout`]; failed ops only make a result not `correct`), after deleting the
/// run's keys.
pub(crate) async fn run_all(
    workloads: &[Workload],
    flavours: &[Flavour],
    config: &BenchConfig,
) -> Result<Vec<BenchResult>> {
    let mut wanted: Vec<Workload> = workloads.to_vec();
    if wanted.contains(&Workload::W1) {
        wanted.push(Workload::W1F);
        wanted.push(Workload::W1T);
    }
    if wanted.contains(&Workload::W2) {
        wanted.push(Workload::W2F);
    }
    wanted.sort_by_key(|w| w.order());
    wanted.dedup();
    let mut flavours = flavours.to_vec();
    flavours.sort();
    flavours.dedup();
    if flavours.is_empty() && wanted.iter().any(|w| w.uses_lock()) {
        return Err(invalid(
            "flavours",
            "lock workloads need recipe, service or both",
        ));
    }

    let mut ctx = Ctx::open(config).await?;
    let mut results: Vec<BenchResult> = Vec::new();
    let total_runs: usize = wanted
        .iter()
        .map(|&w| {
            let flavours = if w.uses_lock() { flavours.len() } else { 1 };
            let counts = if w == Workload::W2 {
                config.w2_contenders().len()
            } else {
                1
            };
            flavours * counts
        })
        .sum();
    let mut run_number = 0;
    for workload in wanted {
        let runs: &[Flavour] = if workload.uses_lock() {
            &flavours
        } else {
            &[Flavour::Recipe]
        };
        let counts = if workload == Workload::W2 {
            config.w2_contenders()
        } else {
            vec![config.workers.max(1)]
        };
        for &flavour in runs {
            for &contenders in &counts {
                run_number += 1;
                let label = if workload.uses_lock() {
                    format!("{workload:?} {flavour:?} ({contenders} contenders)")
                } else {
                    format!("{workload:?}")
                };
                let started = std::time::Instant::now();
                if let Some(Progress(progress)) = config.progress {
                    progress(&format!("run {run_number}/{total_runs}: {label} started"));
                }
                let mut result = match ctx.run(workload, flavour, contenders).await {
                    Ok(result) => result,
                    Err(e) => {
                        ctx.cleanup().await;
                        return Err(e);
                    }
                };
                let rate_of = |w: Workload, f: Option<Flavour>| {
                    results
                        .iter()
                        .find(|r| r.workload == w && r.impl_ == f && r.ops_per_s > 0.0)
                        .map(|r| r.ops_per_s)
                };
                match workload {
                    Workload::W1 => {
                        result.ratio_to_floor =
                            rate_of(Workload::W1F, None).map(|f| result.ops_per_s / f);
                        result.ratio_to_txn_floor =
                            rate_of(Workload::W1T, None).map(|f| result.ops_per_s / f);
                    }
                    Workload::W2 => {
                        result.ratio_to_floor =
                            rate_of(Workload::W2F, None).map(|f| result.ops_per_s / f);
                    }
                    Workload::W6 => {
                        result.ratio_to_w1 =
                            rate_of(Workload::W1, Some(flavour)).map(|w1| result.ops_per_s / w1);
                    }
                    _ => {}
                }
                if let Some(Progress(progress)) = config.progress {
                    progress(&format!(
                        "run {run_number}/{total_runs}: {label} done: {} ops in {:.1} s, {:.0} ops/s",
                        result.ops,
                        started.elapsed().as_secs_f64(),
                        result.ops_per_s
                    ));
                }
                results.push(result);
                // Keep each workload's keys from slowing the next one down (W4 reads W3's).
                if workload != Workload::W3 {
                    ctx.cleanup().await;
                }
            }
        }
    }
    ctx.cleanup().await;
    Ok(results)
}
