//! Results: one JSON line per workload (fields in the fixed lockbench v1 order, the same as the Go
//! bench in `bench/go` prints) and a table.

use std::fmt::Write as _;

use super::measure::Outcome;
use super::{Flavour, Workload};

/// The `client` field of every result.
pub(crate) const CLIENT_NAME: &str = "etcd-lock";

/// The measurements of one workload run (one flavour).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchResult {
    /// Always [`CLIENT_NAME`].
    pub(crate) client: &'static str,
    /// The lock flavour for W1/W2; `None` for the others (printed as `kv` or `lease`).
    pub(crate) impl_: Option<Flavour>,
    /// Which workload.
    pub(crate) workload: Workload,
    /// Ops run (W2: handoffs, i.e. workers × cycles).
    pub(crate) ops: u64,
    /// Wall time of the timed part, seconds.
    pub(crate) secs: f64,
    /// `ops / secs`.
    pub(crate) ops_per_s: f64,
    /// Median latency of the successful ops, ms (W2: acquire wait; W1, W1F, W5: a whole cycle).
    pub p50_ms: f64,
    /// 99th percentile latency of the successful ops, ms.
    pub p99_ms: f64,
    /// Every op succeeded, and for W2 the counter is right and no overlap was seen.
    pub(crate) correct: bool,
    /// Requests (unary RPCs + stream messages sent) per op, summed over the workload's clients.
    pub(crate) rpcs_per_op: f64,
    /// Protobuf bytes sent + received per op.
    pub(crate) bytes_per_op: f64,
    /// This process's user + system CPU time per op, microseconds.
    pub(crate) cpu_us_per_op: f64,
    /// W1: `ops_per_s` over W1F's; W2: over W2F's (from the same [`super::run_all`]).
    pub(crate) ratio_to_floor: Option<f64>,
    /// W1: `ops_per_s` over W1T's, the same requests without lock logic (from the same
    /// [`super::run_all`]): what the lock logic itself costs.
    pub(crate) ratio_to_txn_floor: Option<f64>,
    /// W6: `ops_per_s` over W1's of the same flavour (from the same [`super::run_all`]).
    pub ratio_to_w1: Option<f64>,
    /// Unary RPCs per op (without stream messages): W7's "lock RPCs per handoff".
    pub(crate) unary_per_op: f64,
    /// What the scale workloads report besides (contenders, RSS, watches, slow waits, W2L's
    /// samples).
    pub(crate) extra: super::Extra,
    /// Ops that failed.
    pub(crate) errors: u64,
    /// Why `correct` is false: the first op error, or the W2 check that failed.
    pub(crate) detail: Option<String>,
}

impl BenchResult {
    pub(super) fn from_outcome(
        workload: Workload,
        impl_: Option<Flavour>,
        mut outcome: Outcome,
    ) -> BenchResult {
        let (p50_ms, p99_ms) = outcome.samples.percentiles_ms();
        let extra = std::mem::take(&mut outcome.extra);
        let m = outcome.measured;
        let ops = outcome.ops.max(1) as f64;
        let errors = outcome.samples.errors;
        let detail = match outcome.check {
            Err(why) => Some(why),
            Ok(()) => outcome.samples.first_error.take(),
        };
        BenchResult {
            client: CLIENT_NAME,
            impl_,
            workload,
            ops: outcome.ops,
            secs: m.secs,
            ops_per_s: if m.secs > 0.0 {
                outcome.ops as f64 / m.secs
            } else {
                0.0
            },
            p50_ms,
            p99_ms,
            correct: errors == 0 && detail.is_none(),
            rpcs_per_op: m.requests as f64 / ops,
            bytes_per_op: m.bytes as f64 / ops,
            cpu_us_per_op: m.cpu.as_secs_f64() * 1e6 / ops,
            ratio_to_floor: None,
            ratio_to_txn_floor: None,
            ratio_to_w1: None,
            unary_per_op: m.unary as f64 / ops,
            extra,
            errors,
            detail,
        }
    }

    /// The `impl` field: `recipe`/`service` for lock workloads, `lease` for W5, else `kv`.
    pub(crate) fn impl_label(&self) -> &'static str {
        match (self.impl_, self.workload) {
            (Some(flavour), _) => flavour.as_str(),
            (None, Workload::W5) => "lease",
            (None, _) => "kv",
        }
    }

    /// One JSON line, fields in the lockbench v1 order:
    /// `{"client":"etcd-lock","impl":"recipe","workload":"W1","ops":2000,"secs":..,"ops_per_s":..,
    /// "p50_ms":..,"p99_ms":..,"correct":true,"rpcs_per_op":..,"bytes_per_op":..,"cpu_us_per_op":..}`,
    /// plus `"ratio_to_floor"` when known (W1, W2), `"ratio_to_txn_floor"` (W1), `"errors"`
    /// when some op failed, and the
    /// scale workloads' fields when set: `"unary_per_op"`, `"contenders"`, `"names"`,
    /// `"waiters"`, `"ratio_to_w1"`, `"rss_kib"`, `"rss_after_idle_kib"`, `"watches_open"`,
    /// `"prefixes"`, `"watches_after_idle"`, `"prefixes_after_idle"`, `"slow_waits"`,
    /// `"fast_waits"`, and W2L's `"samples":[{"t_s":..,"ops":..,"rss_kib":..,
    /// "watches_open":..,"prefixes":..},..]`.
    pub(crate) fn to_json(&self) -> String {
        let mut s = format!(
            "{{\"client\":\"{}\",\"impl\":\"{}\",\"workload\":\"{}\",\"ops\":{},\"secs\":{},\
             \"ops_per_s\":{},\"p50_ms\":{},\"p99_ms\":{},\"correct\":{},\"rpcs_per_op\":{},\
             \"bytes_per_op\":{},\"cpu_us_per_op\":{}",
            self.client,
            self.impl_label(),
            self.workload,
            self.ops,
            num(self.secs, 4),
            num(self.ops_per_s, 1),
            num(self.p50_ms, 3),
            num(self.p99_ms, 3),
            self.correct,
            num(self.rpcs_per_op, 3),
            num(self.bytes_per_op, 1),
            num(self.cpu_us_per_op, 2),
        );
        if let Some(ratio) = self.ratio_to_floor {
            let _ = write!(s, ",\"ratio_to_floor\":{}", num(ratio, 3));
        }
        if let Some(ratio) = self.ratio_to_txn_floor {
            let _ = write!(s, ",\"ratio_to_txn_floor\":{}", num(ratio, 3));
        }
        if self.errors > 0 {
            let _ = write!(s, ",\"errors\":{}", self.errors);
        }
        if self.workload.is_scale() {
            self.write_scale_fields(&mut s);
        }
        s.push('}');
        s
    }

    fn write_scale_fields(&self, s: &mut String) {
        let e = &self.extra;
        let _ = write!(s, ",\"unary_per_op\":{}", num(self.unary_per_op, 3));
        let mut field = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                let _ = write!(s, ",\"{name}\":{v}");
            }
        };
        field("contenders", e.contenders.map(|v| v.to_string()));
        field("names", e.names.map(|v| v.to_string()));
        field("waiters", e.waiters.map(|v| v.to_string()));
        field("ratio_to_w1", self.ratio_to_w1.map(|v| num(v, 3)));
        field("rss_kib", e.rss_kib.map(|v| v.to_string()));
        field(
            "rss_after_idle_kib",
            e.rss_after_idle_kib.map(|v| v.to_string()),
        );
        field("watches_open", e.watches_open.map(|v| v.to_string()));
        field("prefixes", e.prefixes.map(|v| v.to_string()));
        field(
            "watches_after_idle",
            e.watches_after_idle.map(|v| v.to_string()),
        );
        field(
            "prefixes_after_idle",
            e.prefixes_after_idle.map(|v| v.to_string()),
        );
        field("slow_waits", e.slow_waits.map(|v| v.to_string()));
        field("fast_waits", e.fast_waits.map(|v| v.to_string()));
        if !e.series.is_empty() {
            let items: Vec<String> = e
                .series
                .iter()
                .map(|p| {
                    format!(
                        "{{\"t_s\":{},\"ops\":{},\"rss_kib\":{},\"watches_open\":{},\"prefixes\":{}}}",
                        num(p.t_s, 1),
                        p.ops,
                        p.rss_kib.map_or_else(|| "null".to_string(), |v| v.to_string()),
                        p.watches_open,
                        p.prefixes
                    )
                })
                .collect();
            field("samples", Some(format!("[{}]", items.join(","))));
        }
    }
}

/// A JSON number with `decimals` digits, or `null` when not finite.
fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "null".to_string()
    }
}

/// An aligned, human-readable table of results (for stderr), with a line per failure reason.
pub(crate) fn table(results: &[BenchResult]) -> String {
    let mut out = format!(
        "{:<5} {:<8} {:>6} {:>8} {:>9} {:>8} {:>8} {:>4} {:>7} {:>8} {:>9} {:>8} {:>8}\n",
        "load",
        "impl",
        "ops",
        "secs",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "ok",
        "rpc/op",
        "B/op",
        "cpu us/op",
        "vs W1F",
        "vs W1T"
    );
    for r in results {
        let ratio = r
            .ratio_to_floor
            .map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
        let txn_ratio = r
            .ratio_to_txn_floor
            .map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
        let _ = writeln!(
            out,
            "{:<5} {:<8} {:>6} {:>8.3} {:>9.1} {:>8.3} {:>8.3} {:>4} {:>7.3} {:>8.1} {:>9.2} {:>8} {:>8}",
            r.workload.as_str(),
            r.impl_label(),
            r.ops,
            r.secs,
            r.ops_per_s,
            r.p50_ms,
            r.p99_ms,
            if r.correct { "yes" } else { "NO" },
            r.rpcs_per_op,
            r.bytes_per_op,
            r.cpu_us_per_op,
            ratio,
            txn_ratio
        );
    }
    for r in results.iter().filter(|r| !r.correct) {
        let _ = writeln!(
            out,
            "{} {}: not correct ({} failed ops): {}",
            r.workload,
            r.impl_label(),
            r.errors,
            r.detail.as_deref().unwrap_or("?")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BenchResult {
        BenchResult {
            client: CLIENT_NAME,
            impl_: Some(Flavour::Recipe),
            workload: Workload::W1,
            ops: 2000,
            secs: 1.5,
            ops_per_s: 1333.3333,
            p50_ms: 0.7,
            p99_ms: 1.25,
            correct: true,
            rpcs_per_op: 2.0,
            bytes_per_op: 300.0,
            cpu_us_per_op: 40.0,
            ratio_to_floor: Some(0.97),
            ratio_to_txn_floor: Some(0.985),
            ratio_to_w1: None,
            unary_per_op: 2.0,
            extra: super::super::Extra::default(),
            errors: 0,
            detail: None,
        }
    }

    #[test]
    fn json_line_has_design_fields_in_order() {
        let json = sample().to_json();
        assert_eq!(
            json,
            "{\"client\":\"etcd-lock\",\"impl\":\"recipe\",\"workload\":\"W1\",\"ops\":2000,\
             \"secs\":1.5000,\"ops_per_s\":1333.3,\"p50_ms\":0.700,\"p99_ms\":1.250,\
             \"correct\":true,\"rpcs_per_op\":2.000,\"bytes_per_op\":300.0,\
             \"cpu_us_per_op\":40.00,\"ratio_to_floor\":0.970,\"ratio_to_txn_floor\":0.985}"
        );
        let mut kv = sample();
        kv.impl_ = None;
        kv.workload = Workload::W5;
        kv.ratio_to_floor = None;
        kv.ratio_to_txn_floor = None;
        kv.secs = f64::NAN;
        let json = kv.to_json();
        assert!(json.contains("\"impl\":\"lease\"") && json.contains("\"secs\":null"));
        assert!(!json.contains("ratio_to_floor"));
    }

    #[test]
    fn table_lists_every_result_and_failures() {
        let mut bad = sample();
        bad.correct = false;
        bad.detail = Some("counter is Some(\"1999\"), expected 2000".into());
        let t = table(&[sample(), bad]);
        assert_eq!(t.lines().count(), 4);
        assert!(t.contains("expected 2000"));
    }
}
