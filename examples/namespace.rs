//! Namespaces: two tenants share one connection through `client.namespaced(prefix)` views.
//! Each writes, lists, watches and locks with short keys; the views add their prefix to every
//! key sent and strip it from every key returned, and neither sees the other's keys or locks —
//! `KV/Put`, `KV/Range`, `KV/DeleteRange`, `Watch/Watch`, `KV/Txn` (the lock recipe).
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example namespace
//! ```
//! The tenants live under `examples/ns/<pid>/a/` and `.../b/`; both are deleted at the end.

use std::time::Duration;

use etcd_lock::kv::{DeleteOptions, GetOptions};
use etcd_lock::watch::WatchOptions;
use etcd_lock::{Client, Locker, RecipeLock, Session};

mod common;
use common::{endpoints, Result};

/// Every key of a view, as the view sees them (the whole keyspace `\0`.. maps to its prefix).
async fn keys(view: &Client) -> Result<Vec<String>> {
    let all = view
        .get_with("\0", GetOptions::new().with_from_key())
        .await?;
    Ok(all
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let root = format!("examples/ns/{}/", std::process::id());
    let a = client.namespaced(format!("{root}a/"))?;
    let b = client.namespaced(format!("{root}b/"))?;

    // Tenant b watches its whole namespace; events come back with short keys.
    let mut watch_b = b
        .watch_with("\0", WatchOptions::new().with_from_key())
        .await?;

    a.put("config", "a's config").await?;
    b.put("config", "b's config").await?;
    println!("a sees {:?}, b sees {:?}", keys(&a).await?, keys(&b).await?);
    let raw = client
        .get_with(root.clone(), GetOptions::new().with_prefix())
        .await?;
    let raw: Vec<_> = raw
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    println!("the plain client sees {raw:?}");
    let a_value = a
        .get("config")
        .await?
        .first()
        .map(|kv| kv.value.clone())
        .unwrap_or_default();
    if a_value != b"a's config" || raw.len() != 2 {
        return Err("the namespaces are not separate".into());
    }

    let batch = tokio::time::timeout(Duration::from_secs(5), watch_b.next())
        .await
        .map_err(|_| "b's watch saw nothing within 5 s")?
        .ok_or("watch ended")??;
    for event in batch.events() {
        let kv = event.kv.clone().unwrap_or_default();
        println!(
            "b's watch: {:?} {}",
            event.event_type(),
            String::from_utf8_lossy(&kv.key)
        );
        if kv.key != b"config" {
            return Err("b's watch saw a key that is not b's".into());
        }
    }

    // The same lock name in both namespaces: two different locks, held at the same time.
    let (session_a, session_b) = (Session::new(&a).await?, Session::new(&b).await?);
    let lock = RecipeLock::new();
    let guard_a = lock.lock(&session_a, b"jobs").await?;
    let guard_b = tokio::time::timeout(Duration::from_secs(5), lock.lock(&session_b, b"jobs"))
        .await
        .map_err(|_| "b waited for a's lock: namespaces leak")??;
    println!(
        "a holds {} and b holds {} at once",
        guard_a.key_str(),
        guard_b.key_str()
    );
    guard_a.unlock().await?;
    guard_b.unlock().await?;
    session_a.close().await?;
    session_b.close().await?;

    // Deleting "everything" in a view deletes only that tenant's keys.
    let gone = a
        .delete_with("\0", DeleteOptions::new().with_from_key())
        .await?;
    println!(
        "a deleted its {} key(s); b still sees {:?}",
        gone.deleted(),
        keys(&b).await?
    );
    if keys(&b).await?.is_empty() {
        return Err("deleting a's namespace removed b's keys".into());
    }
    client
        .delete_with(root, DeleteOptions::new().with_prefix())
        .await?;
    Ok(())
}
