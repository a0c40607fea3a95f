//! `etcd-lock bench`: lockbench v1 (DESIGN.md section 5).

use etcd_lock::bench::{self, BenchConfig, Flavour, Workload};

use crate::args::BenchArgs;
use crate::{EXIT_FAILED, EXIT_USAGE};

pub(crate) async fn run(a: BenchArgs) -> u8 {
    let workloads: Vec<Workload> = if a.workloads.eq_ignore_ascii_case("all") {
        vec![
            Workload::W1F,
            Workload::W1,
            Workload::W2,
            Workload::W3,
            Workload::W4,
            Workload::W5,
        ]
    } else {
        let mut list = Vec::new();
        for w in a
            .workloads
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
        {
            match w.parse::<Workload>() {
                Ok(w) => list.push(w),
                Err(_) => {
                    eprintln!(
                        "etcd-lock bench: unknown workload {w:?} (W1 W1F W2 W3 W4 W5 or all)"
                    );
                    return EXIT_USAGE;
                }
            }
        }
        list
    };
    let flavours = match a.via.as_str() {
        "both" => vec![Flavour::Recipe, Flavour::Service],
        "recipe" => vec![Flavour::Recipe],
        "service" => vec![Flavour::Service],
        other => {
            eprintln!("etcd-lock bench: --via: expected recipe, service or both, got {other:?}");
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
