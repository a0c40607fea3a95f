//! Watching: a prefix watch sees puts and deletes as they happen (with the previous value),
//! then a second watch replays history from an old revision — `Watch/Watch` (one shared
//! stream for both), `KV/Put`, `KV/DeleteRange`.
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example watch
//! ```
//! Writes under `examples/watch/<pid>/` and deletes what it wrote.

use std::time::Duration;

use etcd_lock::kv::DeleteOptions;
use etcd_lock::watch::{EventType, WatchOptions, Watcher};
use etcd_lock::Client;

mod common;
use common::{endpoints, Result};

/// Reads events until `want` have arrived (or 5 s pass), printing each.
async fn collect(watcher: &mut Watcher, label: &str, want: usize) -> Result<Vec<EventType>> {
    let mut seen = Vec::new();
    while seen.len() < want {
        let batch = tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .map_err(|_| format!("{label}: only {} of {want} events within 5 s", seen.len()))?
            .ok_or("watch ended")??;
        for event in batch.events() {
            let kv = event.kv.clone().unwrap_or_default();
            let prev = event
                .prev_kv
                .as_ref()
                .map(|p| String::from_utf8_lossy(&p.value).into_owned());
            println!(
                "{label}: {:?} {} = {} (mod revision {}, previous value {prev:?})",
                event.event_type(),
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value),
                kv.mod_revision,
            );
            seen.push(event.event_type());
        }
    }
    Ok(seen)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let prefix = format!("examples/watch/{}/", std::process::id());

    // Watch the prefix from now on; ask for the previous value of every changed key.
    let mut live = client
        .watch_with(
            prefix.clone(),
            WatchOptions::new().with_prefix().with_prev_kv(),
        )
        .await?;
    println!("watching {prefix}* (watch id {})", live.watch_id());

    let first = client
        .put(format!("{prefix}a"), "1")
        .await?
        .header()
        .revision;
    client.put(format!("{prefix}a"), "2").await?;
    client.put(format!("{prefix}b"), "x").await?;
    client
        .delete_with(prefix.clone(), DeleteOptions::new().with_prefix())
        .await?;

    let kinds = collect(&mut live, "live", 5).await?;
    let expected = [
        EventType::Put,
        EventType::Put,
        EventType::Put,
        EventType::Delete,
        EventType::Delete,
    ];
    if kinds != expected {
        return Err(format!("expected {expected:?}, saw {kinds:?}").into());
    }
    live.cancel();

    // History: a watch that starts at the first put's revision replays the same events.
    let mut replay = client
        .watch_with(
            prefix.clone(),
            WatchOptions::new().with_prefix().with_start_revision(first),
        )
        .await?;
    let replayed = collect(&mut replay, "replay", 5).await?;
    if replayed != expected {
        return Err(format!("replay: expected {expected:?}, saw {replayed:?}").into());
    }
    println!("replayed {} events from revision {first}", replayed.len());
    Ok(())
}
