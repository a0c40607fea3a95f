//! `etcd-lock bench`: lockbench v1, JSON lines on stdout; progress lines on stderr when it is
//! a terminal (and not `--quiet`): each run as it starts and ends (workload, flavour, run
//! number, elapsed, rate), and every 5 s the run in progress with its elapsed time.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bench::{self, BenchConfig, Flavour, Workload};

use crate::args::BenchArgs;
use crate::{EXIT_FAILED, EXIT_USAGE};

/// The run in progress (label, start), for the ticker.
static CURRENT: Mutex<Option<(String, Instant)>> = Mutex::new(None);

fn progress(line: &str) {
    say!("bench: {line}");
    if let Ok(mut current) = CURRENT.lock() {
        *current = line
            .strip_suffix(" started")
            .map(|label| (label.to_string(), Instant::now()));
    }
}

/// Every 5 s: which run is going on and for how long.
async fn ticker() {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        every.tick().await;
        let current = CURRENT.lock().ok().and_then(|c| c.clone());
        if let Some((label, started)) = current {
            say!(
                "bench: {label}: {:.0} s elapsed",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

pub(crate) async fn run(a: BenchArgs) -> u8 {
    let show_progress = !a.quiet && std::io::stderr().is_terminal();
    let workloads = match Workload::parse_list(&a.workloads) {
        Ok(list) if !list.is_empty() => list,
        _ => {
            say!(
                "bench: --workload: expected a comma-separated list of W1 W1F W1T W2 W2F W3 W4 W5 W6 W7 W2L, all or scale; got {:?}",
                a.workloads
            );
            return EXIT_USAGE;
        }
    };
    let flavours = match Flavour::parse_list(&a.via) {
        Ok(list) => list,
        Err(_) => {
            say!(
                "bench: --via: expected recipe, service or both, got {:?}",
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
        progress: show_progress.then_some(bench::Progress(progress)),
        ..defaults.clone()
    };
    let results = if show_progress {
        tokio::select! {
            r = bench::run_all(&workloads, &flavours, &config) => r,
            // The ticker never ends.
            _ = ticker() => return EXIT_FAILED,
        }
    } else {
        bench::run_all(&workloads, &flavours, &config).await
    };
    match results {
        Ok(results) => {
            for r in &results {
                crate::output::line(&r.to_json());
            }
            {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "{}", bench::table(&results));
            }
            if results.iter().all(|r| r.correct) {
                0
            } else {
                say!("bench: some workload was not correct");
                1
            }
        }
        Err(e) => {
            say!("bench: {}", crate::explain(&e));
            EXIT_FAILED
        }
    }
}
