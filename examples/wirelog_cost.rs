//! Cost of the wire log per RPC: W3-style puts (256-byte values to distinct keys, 16 in flight
//! on one connection), alternating runs without a sink and with a `JsonLines` file sink.
//!
//! ```sh
//! cargo run --release --features wire-log --example wirelog_cost -- http://127.0.0.1:2379 20000 3
//! ```
//! Prints one JSON line per run: `sink`, `ops`, `secs`, `us_per_op` (wall), `cpu_us_per_op`
//! (this process's user+sys time, from /proc/self/stat), `log_bytes_per_op`.

use std::sync::Arc;
use std::time::Instant;

use etcd_lock::wirelog::{ExistingFile, JsonLines};
use etcd_lock::{Client, ClientOptions};
use futures_util::stream::{self, StreamExt};

/// This process's user+sys CPU time in seconds (Linux; 0 elsewhere).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let ops: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let log_path = std::env::temp_dir().join(format!("wirelog-cost-{}.jsonl", std::process::id()));
    let value = vec![b'x'; 256];
    for round in 0..rounds {
        for with_sink in [false, true] {
            let mut builder = Client::builder([endpoint.as_str()], ClientOptions::new())?;
            if with_sink {
                builder = builder.wire_log(Arc::new(JsonLines::to_file_with(
                    &log_path,
                    ExistingFile::Overwrite,
                )?));
            }
            let client = builder.connect().await?;
            let prefix = format!("wirelog-cost/{}/{round}/{with_sink}/", std::process::id());
            let (cpu0, t0) = (cpu_secs(), Instant::now());
            let results: Vec<_> = stream::iter(0..ops)
                .map(|i| {
                    let (client, key, value) =
                        (client.clone(), format!("{prefix}{i}"), value.clone());
                    async move { client.put(key, value).await }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - cpu0);
            let failed = results.iter().filter(|r| r.is_err()).count();
            let log_bytes = if with_sink {
                std::fs::metadata(&log_path).map_or(0, |m| m.len())
            } else {
                0
            };
            client
                .delete_with(
                    prefix.as_str(),
                    etcd_lock::kv::DeleteOptions::new().with_prefix(),
                )
                .await?;
            println!(
                "{{\"sink\":{},\"ops\":{ops},\"failed\":{failed},\"secs\":{secs:.3},\"us_per_op\":{:.2},\"cpu_us_per_op\":{:.2},\"log_bytes_per_op\":{}}}",
                if with_sink { "\"file\"" } else { "null" },
                secs * 1e6 / ops as f64,
                cpu * 1e6 / ops as f64,
                log_bytes / ops as u64
            );
        }
    }
    let _ = std::fs::remove_file(&log_path);
    Ok(())
}
