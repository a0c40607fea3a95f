//! `etcd-lock bench`: lockbench v1 (DESIGN.md section 5).

use etcd_lock::bench::{self, BenchConfig, Flavour, Workload};

use crate::args::BenchArgs;
use crate::{EXIT_FAILED, EXIT_USAGE};

pub(crate) async fn run(a: BenchArgs) -> u8 {
    let workloads = match Workload::parse_list(&a.workloads) {
        Ok(list) if !list.is_empty() => list,
        _ => {
            eprintln!(
                "etcd-lock bench: --workload: expected a comma-separated list of W1 W1F W2 W3 W4 W5, or all; got {:?}",
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
    let config = BenchConfig {
        endpoints: a.common.endpoints.clone(),
        scale: a.scale,
        compact: a.compact,
        ..BenchConfig::default()
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
