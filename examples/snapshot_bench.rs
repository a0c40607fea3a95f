//! Snapshot benchmark: how fast `Client::snapshot_to_file` saves a large keyspace,
//! next to the server version's own `etcdctl snapshot save`, in the same run.
//!
//! ```text
//! cargo run --release --example snapshot_bench -- \
//!     --endpoint http://127.0.0.1:2379 [--keys 100000] [--value-size 1024] [--runs 3]
//! ```
//!
//! 1. Load: `--keys` puts of `--value-size` random bytes under `snapbench/`, `--in-flight` at
//!    a time on one connection (skipped when the keys are already there).
//! 2. `--runs` rounds, the two tools alternating who goes first. Each etcd-lock run connects a
//!    fresh client and calls `snapshot_to_file` (stream, sha256 check, fsync, rename); each
//!    etcdctl run is `etcdctl --endpoints E snapshot save FILE` as a child process (its start
//!    is included, as is our connect). Files go to `--dir` (default `/dev/shm`) and are removed.
//! 3. Where the time goes, one run each: the same stream into `tokio::io::sink()` (checked,
//!    no file), and a raw `Maintenance/Snapshot` stream read with the generated client (no
//!    check, no file). Their difference is the cost of our SHA-256.
//!
//! One JSON line per run on stdout, then a summary line with the medians and
//! `ratio` = etcdctl secs / etcd-lock secs (above 1.0: etcd-lock is faster). `max_rss_mb` is
//! this process's peak resident memory (`getrusage`), printed before and after the snapshots
//! to show that the database, many times larger, is streamed and never held whole;
//! `cpu_secs` the CPU time of the run (this process, or the etcdctl child).
//! The etcdctl binary: `--etcdctl PATH`, else `.cache/etcd/v<server version>/etcdctl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use etcd_lock::kv::{DeleteOptions, GetOptions};
use etcd_lock::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_lock::proto::etcdserverpb::SnapshotRequest;
use etcd_lock::Client;

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const PREFIX: &str = "snapbench/";
const USAGE: &str = "usage: snapshot_bench [--endpoint URL] [--keys N] [--value-size BYTES] \
                     [--in-flight N] [--runs N] [--dir DIR] [--etcdctl PATH] [--keep]";

#[derive(Debug)]
struct Config {
    endpoint: String,
    keys: usize,
    value_size: usize,
    in_flight: usize,
    runs: usize,
    dir: PathBuf,
    etcdctl: Option<PathBuf>,
    keep: bool,
}

fn parse() -> Result<Config> {
    let shm = Path::new("/dev/shm");
    let mut config = Config {
        endpoint: std::env::var("ETCD_ENDPOINTS")
            .ok()
            .and_then(|l| l.split(',').next().map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1:2379".into()),
        keys: 100_000,
        value_size: 1024,
        in_flight: 64,
        runs: 3,
        dir: if shm.is_dir() {
            shm.into()
        } else {
            std::env::temp_dir()
        },
        etcdctl: None,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--keep" {
            config.keep = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = args
            .next()
            .ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {value:?}"))
        };
        match flag.as_str() {
            "--endpoint" | "--endpoints" => config.endpoint = value.clone(),
            "--keys" => config.keys = number()?,
            "--value-size" => config.value_size = number()?,
            "--in-flight" => config.in_flight = number()?.max(1),
            "--runs" => config.runs = number()?.max(1),
            "--dir" => config.dir = value.into(),
            "--etcdctl" => config.etcdctl = Some(value.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    Ok(config)
}

/// `getrusage(who)`, or `None` when the call fails.
fn rusage(who: libc::c_int) -> Option<libc::rusage> {
    // SAFETY: `rusage` is plain integers, so all-zero is a valid value; `getrusage` only
    // writes into the struct it is handed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, exclusively borrowed `rusage` and a valid `who` constant.
    (unsafe { libc::getrusage(who, &mut usage) } == 0).then_some(usage)
}

/// This process's peak resident set size so far, in MiB (`ru_maxrss`, which Linux reports in
/// KiB).
fn max_rss_mb() -> f64 {
    rusage(libc::RUSAGE_SELF).map_or(f64::NAN, |u| u.ru_maxrss as f64 / 1024.0)
}

/// User + system CPU seconds so far of this process (`RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`: the etcdctl runs).
fn cpu_secs(who: libc::c_int) -> f64 {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    rusage(who).map_or(f64::NAN, |u| secs(u.ru_utime) + secs(u.ru_stime))
}

/// Writes `keys` values of `size` bytes (xorshift noise, so nothing compresses) under
/// [`PREFIX`], `in_flight` puts at a time; returns the seconds it took.
async fn load(client: &Client, config: &Config) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..config.in_flight {
        let (client, next) = (client.clone(), next.clone());
        let (keys, size) = (config.keys, config.value_size);
        workers.spawn(async move {
            let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (worker as u64 + 1);
            let mut value = vec![0u8; size];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<(), etcd_lock::Error>(());
                }
                for chunk in value.chunks_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
                }
                client.put(format!("{PREFIX}{i:08}"), value.clone()).await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One line of output.
fn line(tool: &str, run: usize, bytes: u64, secs: f64, cpu: f64) {
    println!(
        "{{\"bench\":\"snapshot\",\"tool\":\"{tool}\",\"run\":{run},\"bytes\":{bytes},\"secs\":{secs:.3},\"mb_per_s\":{:.1},\"cpu_secs\":{cpu:.3},\"max_rss_mb\":{:.1}}}",
        bytes as f64 / 1e6 / secs,
        max_rss_mb()
    );
}

/// Runs `f`, returning its result and the CPU seconds `who` spent meanwhile.
async fn with_cpu<T>(
    who: libc::c_int,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<(T, f64)> {
    let before = cpu_secs(who);
    let out = f.await?;
    Ok((out, cpu_secs(who) - before))
}

async fn ours(config: &Config, file: &Path) -> Result<(u64, f64)> {
    let started = Instant::now();
    let client = Client::connect([config.endpoint.as_str()]).await?;
    let info = client.snapshot_to_file(file).await?;
    Ok((info.bytes, started.elapsed().as_secs_f64()))
}

fn etcdctl(path: &Path, config: &Config, file: &Path) -> Result<(u64, f64)> {
    let started = Instant::now();
    let out = Command::new(path)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", config.endpoint))
        .arg("snapshot")
        .arg("save")
        .arg(file)
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "etcdctl snapshot save failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok((std::fs::metadata(file)?.len(), secs))
}

/// The same stream, checked by etcd-lock, written nowhere.
async fn ours_to_sink(config: &Config) -> Result<(u64, f64)> {
    let client = Client::connect([config.endpoint.as_str()]).await?;
    let started = Instant::now();
    let info = client.snapshot(&mut tokio::io::sink()).await?;
    Ok((info.bytes, started.elapsed().as_secs_f64()))
}

/// The same stream read with the generated client only: no sha256, no file.
async fn raw_stream(config: &Config) -> Result<(u64, f64)> {
    let url = if config.endpoint.contains("://") {
        config.endpoint.clone()
    } else {
        format!("http://{}", config.endpoint)
    };
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .connect()
        .await?;
    let started = Instant::now();
    let mut stream = MaintenanceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .snapshot(SnapshotRequest {})
        .await?
        .into_inner();
    let mut bytes = 0u64;
    while let Some(message) = stream.message().await? {
        bytes += message.blob.len() as u64;
    }
    Ok((bytes, started.elapsed().as_secs_f64()))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let config = parse()?;
    let client = Client::connect([config.endpoint.as_str()]).await?;
    let version = client.status().await?.version().to_string();
    let etcdctl_path = match &config.etcdctl {
        Some(path) => path.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".cache/etcd")
            .join(format!("v{version}"))
            .join("etcdctl"),
    };
    if !etcdctl_path.is_file() {
        return Err(format!("no etcdctl at {} (use --etcdctl)", etcdctl_path.display()).into());
    }

    // 1. The keyspace.
    let present = client
        .get_with(PREFIX, GetOptions::new().with_prefix().with_count_only())
        .await?
        .count();
    if present < config.keys as i64 {
        let secs = load(&client, &config).await?;
        println!(
            "{{\"bench\":\"snapshot\",\"phase\":\"load\",\"keys\":{},\"value_size\":{},\"in_flight\":{},\"secs\":{secs:.2},\"puts_per_s\":{:.0}}}",
            config.keys, config.value_size, config.in_flight, config.keys as f64 / secs
        );
    }
    let db_size = client.status().await?.db_size();
    println!(
        "{{\"bench\":\"snapshot\",\"phase\":\"ready\",\"etcd\":\"{version}\",\"db_size\":{db_size},\"max_rss_mb\":{:.1},\"dir\":\"{}\"}}",
        max_rss_mb(),
        config.dir.display()
    );

    // 2. Interleaved runs.
    let (mine, theirs) = (
        config
            .dir
            .join(format!("snapbench-etcd-lock-{}.db", std::process::id())),
        config
            .dir
            .join(format!("snapbench-etcdctl-{}.db", std::process::id())),
    );
    let (mut our_secs, mut their_secs, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=config.runs {
        for turn in 0..2 {
            if (turn == 0) == (run % 2 == 1) {
                let ((bytes, secs), cpu) =
                    with_cpu(libc::RUSAGE_SELF, ours(&config, &mine)).await?;
                line("etcd-lock", run, bytes, secs, cpu);
                our_secs.push(secs);
                sizes.push(bytes);
                std::fs::remove_file(&mine)?;
            } else {
                let ((bytes, secs), cpu) = with_cpu(libc::RUSAGE_CHILDREN, async {
                    etcdctl(&etcdctl_path, &config, &theirs)
                })
                .await?;
                line("etcdctl", run, bytes, secs, cpu);
                their_secs.push(secs);
                std::fs::remove_file(&theirs)?;
            }
        }
    }

    // 3. Where the time goes.
    let ((bytes, sink_secs), cpu) = with_cpu(libc::RUSAGE_SELF, ours_to_sink(&config)).await?;
    line("etcd-lock-to-sink", 1, bytes, sink_secs, cpu);
    let ((bytes, raw_secs), cpu) = with_cpu(libc::RUSAGE_SELF, raw_stream(&config)).await?;
    line("raw-stream-no-hash", 1, bytes, raw_secs, cpu);

    let (ours_med, theirs_med) = (median(our_secs), median(their_secs));
    let bytes = sizes.last().copied().unwrap_or(0) as f64;
    println!(
        "{{\"bench\":\"snapshot\",\"summary\":true,\"etcd\":\"{version}\",\"bytes\":{bytes},\"etcd_lock_secs\":{ours_med:.3},\"etcdctl_secs\":{theirs_med:.3},\"etcd_lock_mb_per_s\":{:.1},\"etcdctl_mb_per_s\":{:.1},\"ratio\":{:.2},\"hash_share\":{:.2},\"max_rss_mb\":{:.1}}}",
        bytes / 1e6 / ours_med,
        bytes / 1e6 / theirs_med,
        theirs_med / ours_med,
        ((sink_secs - raw_secs) / ours_med).max(0.0),
        max_rss_mb()
    );

    if !config.keep {
        client
            .delete_with(PREFIX, DeleteOptions::new().with_prefix())
            .await?;
    }
    Ok(())
}
