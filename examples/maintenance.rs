//! Maintenance: save a snapshot of the database to a file (`Maintenance/Snapshot`, streamed
//! to disk with progress, its trailing sha256 checked, the file renamed into place only when
//! whole), then list alarms (`Maintenance/Alarm`) and compare the members' key-value hashes
//! at one revision (`Maintenance/HashKV` sent to each member).
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example maintenance -- [SNAPSHOT_FILE]
//! ```
//! Without an argument the snapshot goes to a temporary file that is removed at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_lock::maintenance::SnapshotOptions;
use etcd_lock::Client;

mod common;
use common::{endpoints, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let (path, keep) = match std::env::args().nth(1) {
        Some(path) => (std::path::PathBuf::from(path), true),
        None => (
            std::env::temp_dir().join(format!("etcd-lock-example-{}.db", std::process::id())),
            false,
        ),
    };

    // Snapshot to a file, printing progress every 25% of the stream.
    let printed = Arc::new(AtomicU64::new(0));
    let options = SnapshotOptions::new().with_progress(move |p| {
        if let Some(total) = p.total {
            let quarter = p.bytes * 4 / total.max(1);
            if quarter > printed.swap(quarter, Ordering::Relaxed) {
                println!("  snapshot: {} of {total} bytes", p.bytes);
            }
        }
    });
    let info = client.snapshot_to_file_with(&path, options).await?;
    let on_disk = std::fs::metadata(&path)?.len();
    let digest: String = info.sha256.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "saved snapshot to {} ({} bytes, sha256 {digest})",
        path.display(),
        info.bytes
    );
    if on_disk != info.bytes {
        return Err(format!("file has {on_disk} bytes, the stream had {}", info.bytes).into());
    }
    if !keep {
        std::fs::remove_file(&path)?;
    }

    // Alarms (NOSPACE, CORRUPT) raised on any member.
    let alarms = client.alarm_list().await?;
    println!("alarms: {:?}", alarms.alarms());

    // Every member's key-value hash at one revision must agree.
    let revision = client.get("examples/maintenance").await?.header().revision;
    let mut hashes = Vec::new();
    for member in client.member_list().await?.members() {
        let Some(url) = member.client_ur_ls.first() else {
            continue;
        };
        let hash = client.hash_kv(url, revision).await?;
        println!(
            "member {:x}: hash_kv at revision {revision} = {:08x}",
            member.id,
            hash.hash()
        );
        hashes.push(hash.hash());
    }
    hashes.dedup();
    if hashes.len() != 1 {
        return Err(format!("members' hashes differ at revision {revision}: {hashes:x?}").into());
    }
    println!("all members agree at revision {revision}");
    Ok(())
}
