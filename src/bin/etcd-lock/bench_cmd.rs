//! `etcd-lock bench`: lockbench v1 (DESIGN.md section 5).

use std::time::Duration;

use etcd_lock::bench::{self, BenchConfig, Flavour, Workload};

use crate::args::BenchArgs;
use crate::{EXIT_FAILED, EXIT_USAGE};

pub(crate) async fn run(a: BenchArgs) -> u8 {
    let workloads = match Workload::parse_list(&a.workloads) {
        Ok(list) if !list.is_empty() => list,
        _ => {
            eprintln!(
                "etcd-lock bench: --workload: expected a comma-separated list of W1 W1F W1T W2 W2F W3 W4 W5 W6 W7 W2L, all or scale; got {:?}",
                a.workloads
            );
            return EXIT_USAGE;
        }
    };
    let flavours = match Flavour::parse_list(&a.via) {
        Ok(list) => list,
        Err(_) => {
            eprintln!(
                "etcd-lock bench: --via: expected recipe, service or both, got {:?}",
                a.via
            );
            return EXIT_USAGE;
        }
    };
    let defaults = BenchConfig::default();
    let config = BenchConfig {
        endpoints: a.common.endpoints.clone(),
        scale: a.scale,
        compact: a.compact,
        contenders: a.contenders.clone(),
        names: a.names.unwrap_or(defaults.names),
        waiters: a.waiters.unwrap_or(defaults.waiters),
        idle: a.idle_secs.map_or(defaults.idle, Duration::from_secs),
        long_run: a
            .duration_secs
            .map_or(defaults.long_run, Duration::from_secs),
        sample_every: a
            .sample_secs
            .map_or(defaults.sample_every, Duration::from_secs),
        ..defaults.clone()
    };
    match bench::run_all(&workloads, &flavours, &config).await {
        Ok(results) => {
            for r in &results {
                println!("{}", r.to_json());
            }
            eprintln!("{}", bench::table(&results));
            if results.iter().all(|r| r.correct) {
                0
            } else {
                eprintln!("etcd-lock bench: some workload was not correct");
                1
            }
        }
        Err(e) => {
            eprintln!("etcd-lock bench: {e}");
            EXIT_FAILED
        }
    }
}
