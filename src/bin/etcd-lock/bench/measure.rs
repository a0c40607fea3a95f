//! What a workload measures: wall time, per-op latencies, client request/byte counters and the
//! process's CPU time, taken as differences between a start and a stop snapshot.

use std::time::{Duration, Instant};

use etcd_lock::client::{Client, ClientStats};
use etcd_lock::error::{Error, Result};

/// User + system CPU time of this whole process so far (`getrusage(RUSAGE_SELF)`).
#[cfg(unix)]
pub(super) fn cpu_time() -> Duration {
    fn from_timeval(t: libc::timeval) -> Duration {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    }
    // SAFETY: `rusage` is plain integers, so all-zero is a valid value; `getrusage` only writes
    // into the struct it is handed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, exclusively borrowed `rusage` and a valid `who` constant.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    from_timeval(usage.ru_utime) + from_timeval(usage.ru_stime)
}

/// CPU time is not measured on this platform.
#[cfg(not(unix))]
pub(super) fn cpu_time() -> Duration {
    Duration::ZERO
}

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`); `None` where
/// that file does not exist.
pub(super) fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Snapshots taken when the timed part of a workload starts.
#[derive(Debug)]
pub(super) struct Meter {
    clients: Vec<Client>,
    before: Vec<ClientStats>,
    cpu: Duration,
    started: Instant,
}

/// Differences between [`Meter::start`] and [`Meter::stop`], summed over the clients.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Measured {
    pub(super) secs: f64,
    pub(super) requests: u64,
    /// Unary RPCs only (no stream messages).
    pub(super) unary: u64,
    pub(super) bytes: u64,
    pub(super) cpu: Duration,
}

impl Meter {
    pub(super) fn start(clients: &[Client]) -> Meter {
        Meter {
            clients: clients.to_vec(),
            before: clients.iter().map(Client::stats).collect(),
            cpu: cpu_time(),
            started: Instant::now(),
        }
    }

    pub(super) fn stop(self) -> Measured {
        let secs = self.started.elapsed().as_secs_f64();
        let cpu = cpu_time().saturating_sub(self.cpu);
        let mut measured = Measured {
            secs,
            cpu,
            ..Measured::default()
        };
        for (client, before) in self.clients.iter().zip(&self.before) {
            let after = client.stats();
            measured.requests += after.requests.saturating_sub(before.requests);
            measured.unary += after.unary_calls.saturating_sub(before.unary_calls);
            measured.bytes += (after.bytes_sent + after.bytes_received)
                .saturating_sub(before.bytes_sent + before.bytes_received);
        }
        measured
    }
}

/// Per-op latencies and failures of one worker (or of all, once merged).
#[derive(Debug, Default)]
pub(super) struct Samples {
    pub(super) latencies: Vec<Duration>,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// When set, at most this many latencies are kept, a uniform sample of all (reservoir).
    cap: Option<usize>,
    /// Successful ops recorded so far, and the sampler's xorshift state.
    seen: u64,
    rng: u64,
}

impl Samples {
    pub(super) fn with_capacity(n: usize) -> Samples {
        Samples {
            latencies: Vec::with_capacity(n),
            ..Samples::default()
        }
    }

    /// Keeps at most `cap` latencies, a uniform random sample of all recorded (for runs too
    /// long to keep each: W2L would otherwise grow this process by 16 bytes a handoff, which
    /// is what it watches for).
    pub(super) fn bounded(cap: usize) -> Samples {
        Samples {
            latencies: Vec::with_capacity(cap),
            cap: Some(cap.max(1)),
            rng: 0x9E37_79B9_7F4A_7C15,
            ..Samples::default()
        }
    }

    /// Records a successful op that took `latency`, or a failure.
    pub(super) fn record(&mut self, latency: Duration, result: Result<()>) {
        if let Err(e) = result {
            self.fail(&e);
            return;
        }
        self.seen += 1;
        match self.cap {
            Some(cap) if self.latencies.len() >= cap => {
                // Reservoir sampling: the n-th latency replaces a kept one with chance cap/n.
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let slot = (self.rng % self.seen) as usize;
                if let Some(kept) = self.latencies.get_mut(slot) {
                    *kept = latency;
                }
            }
            _ => self.latencies.push(latency),
        }
    }

    pub(super) fn fail(&mut self, error: &Error) {
        self.fail_with(error.to_string());
    }

    pub(super) fn fail_with(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    pub(super) fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// (p50, p99) in milliseconds, nearest-rank; zeros when nothing succeeded.
    pub(super) fn percentiles_ms(&mut self) -> (f64, f64) {
        self.latencies.sort_unstable();
        (
            percentile_ms(&self.latencies, 0.50),
            percentile_ms(&self.latencies, 0.99),
        )
    }
}

/// Nearest-rank percentile of sorted durations, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// What a workload hands back: its op count, samples, counters, any extra correctness
/// failure beyond op errors (`Err(why)`), and what the scale workloads report besides.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) ops: u64,
    pub(super) samples: Samples,
    pub(super) measured: Measured,
    pub(super) check: std::result::Result<(), String>,
    pub(super) extra: Extra,
}

impl Outcome {
    pub(super) fn new(ops: u64, samples: Samples, measured: Measured) -> Outcome {
        Outcome {
            ops,
            samples,
            measured,
            check: Ok(()),
            extra: Extra::default(),
        }
    }
}

/// What some workloads report besides throughput and latency (see [`super::BenchResult`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Extra {
    /// W2, W2L: contenders (workers, each its own client and session).
    pub(crate) contenders: Option<usize>,
    /// W6: distinct names.
    pub(crate) names: Option<usize>,
    /// W7: waiting tasks (sessions) on the one client.
    pub(crate) waiters: Option<usize>,
    /// This process's RSS right after the timed part, KiB.
    pub(crate) rss_kib: Option<u64>,
    /// W6: RSS again after the idle period, KiB.
    pub(crate) rss_after_idle_kib: Option<u64>,
    /// Watches open at the end (W6: the most on one client; W7: on the client).
    pub(crate) watches_open: Option<usize>,
    /// W6: the most per-name entries ([`etcd_lock::lock::LockStats::prefixes`]) on one client.
    pub(crate) prefixes: Option<usize>,
    /// W6: watches open after the idle period (most on one client).
    pub(crate) watches_after_idle: Option<usize>,
    /// W6: per-name entries after the idle period (most on one client).
    pub(crate) prefixes_after_idle: Option<usize>,
    /// W7: waits that fell back to the slow path ([`etcd_lock::lock::LockStats::slow_waits`]).
    pub(crate) slow_waits: Option<u64>,
    /// W7: waits that stayed on the fast path.
    pub(crate) fast_waits: Option<u64>,
    /// W2L: the samples taken during the run.
    pub(crate) series: Vec<Sample>,
}

/// One W2L sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the run started.
    pub(crate) t_s: f64,
    /// Handoffs completed since the previous sample.
    pub(crate) ops: u64,
    /// This process's RSS, KiB.
    pub(crate) rss_kib: Option<u64>,
    /// Watches open on all the run's clients together.
    pub(crate) watches_open: usize,
    /// The most per-name entries on one client.
    pub(crate) prefixes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for ms in (1..=100).rev() {
            s.record(Duration::from_millis(ms), Ok(()));
        }
        let (p50, p99) = s.percentiles_ms();
        assert!((p50 - 50.0).abs() < 1e-9 && (p99 - 99.0).abs() < 1e-9);
        assert_eq!(Samples::default().percentiles_ms(), (0.0, 0.0));
    }

    #[test]
    fn bounded_samples_stay_bounded_and_representative() {
        let mut s = Samples::bounded(1000);
        for ms in 1..=10_000u64 {
            s.record(Duration::from_micros(ms * 100), Ok(()));
        }
        assert_eq!(s.latencies.len(), 1000);
        assert_eq!(s.latencies.capacity(), 1000);
        let (p50, p99) = s.percentiles_ms();
        // Uniform 0.1..1000 ms: thinning keeps the shape within a few percent.
        assert!((p50 - 500.0).abs() < 50.0, "p50 {p50}");
        assert!((p99 - 990.0).abs() < 30.0, "p99 {p99}");
    }

    #[test]
    fn cpu_time_advances() {
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_time() > before);
    }
}
