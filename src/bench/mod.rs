//! lockbench v1 (DESIGN.md section 5): lock, KV and lease throughput against a live cluster,
//! with the client's own cost (requests, bytes, CPU) per op.
//!
//! | workload | what one op is | size |
//! |---|---|---|
//! | `W1`  | lock + unlock `lb/…/w1`, 1 worker, uncontended | 2000 |
//! | `W1F` | `KV/Put` + `KV/DeleteRange` of one key, 1 worker: the floor W1 is compared with | 2000 |
//! | `W2`  | 8 workers (own connection and session, TTL 10 s) × 250: lock, get + put counter, unlock | 2000 |
//! | `W3`  | `KV/Put` of a 256-byte value to a distinct key, 16 in flight on one connection | 20000 |
//! | `W4`  | linearizable `KV/Range` of those keys, value checked, 16 in flight | 20000 |
//! | `W5`  | `Lease/LeaseGrant` (TTL 10 s) + `Lease/LeaseRevoke`, 1 worker | 1000 |
//!
//! Every run uses fresh keys under `lb/<pid>-<nanos>/` and deletes them at the end. Each
//! workload is bounded by [`BenchConfig::timeout`]. Counters are summed over the clients the
//! workload opened (setup and teardown excluded); CPU is this process's user + system time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_lock::Error> {
//! use etcd_lock::bench::{self, BenchConfig, Flavour, Workload};
//! let config = BenchConfig { endpoints: vec!["http://127.0.0.1:2379".into()], ..BenchConfig::default() };
//! let results = bench::run_all(&[Workload::W1, Workload::W2], &[Flavour::Recipe], &config).await?;
//! for r in &results {
//!     println!("{}", r.to_json());
//! }
//! eprintln!("{}", bench::table(&results));
//! # Ok(()) }
//! ```

mod measure;
mod report;
mod workloads;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::DeleteOptions;
use crate::lock::{DynLocker, RecipeLock, ServiceLock};

pub use report::{table, BenchResult, CLIENT_NAME};

use measure::Outcome;
use workloads::Ctx;

/// One lockbench v1 workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Uncontended lock: 1 worker, 2000 cycles of lock + unlock.
    W1,
    /// The floor for W1: 1 worker, 2000 sequential cycles of put + delete of one key.
    W1F,
    /// Contended lock: 8 workers × 250 cycles of lock, read-increment-write a counter, unlock.
    W2,
    /// Puts: 20000 256-byte values to distinct keys, 16 in flight on one connection.
    W3,
    /// Linearizable gets of the W3 keys, 16 in flight on one connection.
    W4,
    /// Leases: 1000 cycles of grant (TTL 10 s) + revoke.
    W5,
}

impl Workload {
    /// Every workload, in the order [`run_all`] runs them (W1F before W1, W3 before W4).
    pub const ALL: [Workload; 6] = [
        Workload::W1F,
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
    ];

    /// The name as printed: `W1`, `W1F`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W1F => "W1F",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
        }
    }

    /// True for the workloads that take a lock (W1, W2) and so run once per [`Flavour`].
    pub fn uses_lock(self) -> bool {
        matches!(self, Workload::W1 | Workload::W2)
    }

    /// The number of ops DESIGN.md specifies (scale 1.0).
    pub fn design_ops(self) -> usize {
        match self {
            Workload::W1 | Workload::W1F | Workload::W2 => 2000,
            Workload::W3 | Workload::W4 => 20_000,
            Workload::W5 => 1000,
        }
    }

    /// Parses `W1,W2,...` (any case) or `all`.
    pub fn parse_list(list: &str) -> Result<Vec<Workload>> {
        if list.trim().eq_ignore_ascii_case("all") {
            return Ok(Workload::ALL.to_vec());
        }
        list.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::parse)
            .collect()
    }

    /// Rank in [`Workload::ALL`].
    fn order(self) -> usize {
        Workload::ALL.iter().position(|w| *w == self).unwrap_or(0)
    }

    /// The label of its timeout error.
    fn timeout_label(self) -> &'static str {
        match self {
            Workload::W1 => "lockbench W1",
            Workload::W1F => "lockbench W1F",
            Workload::W2 => "lockbench W2",
            Workload::W3 => "lockbench W3",
            Workload::W4 => "lockbench W4",
            Workload::W5 => "lockbench W5",
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
    /// `W1`, `W1F`, `W2`, `W3`, `W4`, `W5`, any case.
    fn from_str(s: &str) -> Result<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid(
                    "workload",
                    format!("{s:?}: expected W1, W1F, W2, W3, W4, W5 or all"),
                )
            })
    }
}

/// Which lock implementation the lock workloads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Flavour {
    /// [`RecipeLock`] (the default): the client-side recipe on KV/Watch/Txn.
    #[default]
    Recipe,
    /// [`ServiceLock`]: etcd's `v3lockpb.Lock` service.
    Service,
}

impl Flavour {
    /// `recipe` or `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Recipe => "recipe",
            Flavour::Service => "service",
        }
    }

    /// The lock this flavour names, as a run-time [`DynLocker`] (one code path for both).
    pub fn locker(self) -> Box<dyn DynLocker> {
        match self {
            Flavour::Recipe => Box::new(RecipeLock::new()),
            Flavour::Service => Box::new(ServiceLock::new()),
        }
    }

    /// Parses `recipe`, `service` or `both` (any case).
    pub fn parse_list(via: &str) -> Result<Vec<Flavour>> {
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
            _ => Err(Error::invalid(
                "flavour",
                format!("{s:?}: expected recipe, service (or both)"),
            )),
        }
    }
}

/// How to run the bench. Build with struct update syntax over `BenchConfig::default()`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// etcd endpoints (`http://host:port` or `host:port`). Default `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Multiplies every workload's DESIGN.md size (1.0 = as specified; 0.1 for a quick run).
    pub scale: f64,
    /// When set, every workload runs this many ops instead (W2 splits them among its workers).
    pub ops: Option<usize>,
    /// Upper bound on one workload, setup and teardown included. Default 120 s.
    pub timeout: Duration,
    /// W2's workers, each with its own connection and session. Default 8.
    pub workers: usize,
    /// W3/W4 requests in flight on their one connection. Default 16.
    pub in_flight: usize,
    /// TTL of the lock sessions, seconds. Default 10.
    pub session_ttl: i64,
    /// W3 value size in bytes. Default 256.
    pub value_size: usize,
    /// Top of the key space used; a run uses `<key_prefix>/<pid>-<nanos>/`. Default `lb`.
    pub key_prefix: String,
    /// After each workload's cleanup, compact the cluster's history up to the current revision
    /// (`KV/Compact`, physical), so every workload starts from a small store. Off by default:
    /// it discards history other users of the cluster may need. Use it on a dedicated cluster.
    pub compact: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            scale: 1.0,
            ops: None,
            timeout: Duration::from_secs(120),
            workers: 8,
            in_flight: 16,
            session_ttl: 10,
            value_size: 256,
            key_prefix: "lb".to_string(),
            compact: false,
        }
    }
}

impl BenchConfig {
    /// How many ops `workload` runs: [`BenchConfig::ops`], or its design size times `scale`,
    /// at least 1 (for W2 rounded up to a multiple of the workers).
    pub fn ops_for(&self, workload: Workload) -> usize {
        let ops = self
            .ops
            .unwrap_or_else(|| (workload.design_ops() as f64 * self.scale).round() as usize)
            .max(1);
        match workload {
            Workload::W2 => ops.div_ceil(self.workers.max(1)) * self.workers.max(1),
            _ => ops,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::invalid("scale", "must be a positive number"));
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid("timeout", "must be greater than zero"));
        }
        if self.workers == 0 || self.in_flight == 0 {
            return Err(Error::invalid("workers/in_flight", "must be at least 1"));
        }
        if self.session_ttl < 1 {
            return Err(Error::invalid("session_ttl", "must be at least 1 second"));
        }
        if self.endpoints.is_empty() {
            return Err(Error::invalid(
                "endpoints",
                "at least one endpoint is required",
            ));
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

    /// Runs one workload within the configured timeout.
    async fn run(&mut self, workload: Workload, flavour: Flavour) -> Result<BenchResult> {
        let flavour = workload.uses_lock().then_some(flavour);
        let after = self.config.timeout;
        let outcome = tokio::time::timeout(after, self.run_inner(workload, flavour))
            .await
            .map_err(|_| Error::Timeout {
                method: workload.timeout_label(),
                after,
                last_error: None,
            })??;
        Ok(BenchResult::from_outcome(workload, flavour, outcome))
    }

    async fn run_inner(&mut self, workload: Workload, flavour: Option<Flavour>) -> Result<Outcome> {
        let ops = self.config.ops_for(workload);
        let per_worker = ops / self.config.workers.max(1);
        match (workload, flavour) {
            (Workload::W1, f) => workloads::w1(self, f.unwrap_or_default().locker(), ops).await,
            (Workload::W2, f) => {
                let locker = f.unwrap_or_default().locker();
                workloads::w2(self, locker, per_worker).await
            }
            (Workload::W3, _) => workloads::w3(self, ops).await,
            (Workload::W4, _) => workloads::w4(self, ops).await,
            (Workload::W5, _) => workloads::w5(self, ops).await,
            (Workload::W1F, _) => workloads::w1f(self, ops).await,
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

/// Runs one workload (lock workloads with `flavour`; the others ignore it) on fresh keys, and
/// deletes them afterwards. Fails on a connection error or when the workload exceeds
/// [`BenchConfig::timeout`]; failed ops only make the result not `correct`.
pub async fn run(
    workload: Workload,
    flavour: Flavour,
    config: &BenchConfig,
) -> Result<BenchResult> {
    let mut ctx = Ctx::open(config).await?;
    let result = ctx.run(workload, flavour).await;
    ctx.cleanup().await;
    result
}

/// Runs `workloads` (lock workloads once per flavour) in the order of [`Workload::ALL`]: W1F
/// is added before W1 when W1 is asked for, and fills each W1 result's
/// [`BenchResult::ratio_to_floor`]; W4 reads the keys W3 wrote. Stops at the first workload that
/// fails (see [`run`]), after deleting the run's keys.
pub async fn run_all(
    workloads: &[Workload],
    flavours: &[Flavour],
    config: &BenchConfig,
) -> Result<Vec<BenchResult>> {
    let mut wanted: Vec<Workload> = workloads.to_vec();
    if wanted.contains(&Workload::W1) {
        wanted.push(Workload::W1F);
    }
    wanted.sort_by_key(|w| w.order());
    wanted.dedup();
    let mut flavours = flavours.to_vec();
    flavours.sort();
    flavours.dedup();
    if flavours.is_empty() && wanted.iter().any(|w| w.uses_lock()) {
        return Err(Error::invalid(
            "flavours",
            "W1/W2 need recipe, service or both",
        ));
    }

    let mut ctx = Ctx::open(config).await?;
    let mut results = Vec::new();
    let mut floor = None;
    for workload in wanted {
        let runs: &[Flavour] = if workload.uses_lock() {
            &flavours
        } else {
            &[Flavour::Recipe]
        };
        for &flavour in runs {
            let mut result = match ctx.run(workload, flavour).await {
                Ok(result) => result,
                Err(e) => {
                    ctx.cleanup().await;
                    return Err(e);
                }
            };
            match workload {
                Workload::W1F => floor = Some(result.ops_per_s),
                Workload::W1 => {
                    result.ratio_to_floor =
                        floor.filter(|f| *f > 0.0).map(|f| result.ops_per_s / f);
                }
                _ => {}
            }
            results.push(result);
        }
    }
    ctx.cleanup().await;
    Ok(results)
}
