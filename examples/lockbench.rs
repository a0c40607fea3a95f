//! lockbench v1 from the command line, without the CLI:
//!
//! ```text
//! cargo run --release --features bench --example lockbench -- \
//!     --endpoints http://127.0.0.1:2379 --workload all --via both [--scale 0.1]
//! ```
//!
//! Prints one JSON line per result on stdout and a table on stderr; exits 1 when a result is
//! not correct, 2 on bad arguments, 3 when the bench could not run.

use etcd_lock::bench::{self, BenchConfig, Flavour, Workload};

const USAGE: &str = "usage: lockbench [--endpoints URL,URL] [--workload W1,W2|all] \
                     [--via recipe|service|both] [--scale X]";

fn parse(
    args: impl Iterator<Item = String>,
) -> Result<(Vec<Workload>, Vec<Flavour>, BenchConfig), String> {
    let mut config = BenchConfig::default();
    let (mut workloads, mut flavours) = (
        Workload::ALL.to_vec(),
        vec![Flavour::Recipe, Flavour::Service],
    );
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--endpoints" => {
                config.endpoints = value()?.split(',').map(|e| e.trim().to_string()).collect();
            }
            "--workload" => {
                workloads = Workload::parse_list(&value()?).map_err(|e| e.to_string())?
            }
            "--via" => flavours = Flavour::parse_list(&value()?).map_err(|e| e.to_string())?,
            "--scale" => {
                let v = value()?;
                config.scale = v
                    .parse()
                    .map_err(|_| format!("--scale: not a number: {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((workloads, flavours, config))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (workloads, flavours, config) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    match bench::run_all(&workloads, &flavours, &config).await {
        Ok(results) => {
            for r in &results {
                println!("{}", r.to_json());
            }
            eprint!("{}", bench::table(&results));
            if results.iter().all(|r| r.correct) {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("lockbench: {e}");
            std::process::ExitCode::from(3)
        }
    }
}
