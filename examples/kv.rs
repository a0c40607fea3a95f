//! Keys and values: put, get (one key, then a prefix), a put that returns the previous value,
//! and a delete of the prefix — `KV/Put`, `KV/Range`, `KV/DeleteRange`.
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example kv
//! ```
//! Everything it writes lives under `examples/kv/<pid>/` and is deleted before it exits.

use etcd_lock::kv::{DeleteOptions, GetOptions, PutOptions};
use etcd_lock::Client;

mod common;
use common::{endpoints, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let prefix = format!("examples/kv/{}/", std::process::id());

    // Three puts; each answer carries the revision the write created.
    for (name, colour) in [
        ("apple", "red"),
        ("banana", "yellow"),
        ("cherry", "dark red"),
    ] {
        let put = client.put(format!("{prefix}{name}"), colour).await?;
        println!(
            "put {prefix}{name} = {colour} (revision {})",
            put.header().revision
        );
    }

    // One key.
    let got = client.get(format!("{prefix}apple")).await?;
    let kv = got.first().ok_or("apple was just written, yet not found")?;
    println!(
        "get {} -> {} (created at revision {}, version {})",
        String::from_utf8_lossy(&kv.key),
        String::from_utf8_lossy(&kv.value),
        kv.create_revision,
        kv.version
    );

    // The whole prefix in reverse key order, at most two keys (count still says 3).
    let options = GetOptions::new().with_prefix().with_limit(2).with_sort(
        etcd_lock::kv::SortTarget::Key,
        etcd_lock::kv::SortOrder::Descend,
    );
    let page = client.get_with(prefix.clone(), options).await?;
    println!(
        "get prefix, limit 2: {} of {} keys (more: {})",
        page.kvs().len(),
        page.count(),
        page.more()
    );
    for kv in page.kvs() {
        println!(
            "  {} = {}",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value)
        );
    }

    // Overwrite and see what was there before.
    let put = client
        .put_with(
            format!("{prefix}apple"),
            "green",
            PutOptions::new().with_prev_kv(),
        )
        .await?;
    let before = put
        .prev_kv()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    println!("put apple = green, previous value {before:?}");
    if before.as_deref() != Some("red") {
        return Err(format!("expected the previous value red, got {before:?}").into());
    }

    // Delete everything under the prefix.
    let deleted = client
        .delete_with(prefix.clone(), DeleteOptions::new().with_prefix())
        .await?;
    println!("deleted {} keys under {prefix}", deleted.deleted());
    if deleted.deleted() != 3 {
        return Err(format!("expected 3 keys deleted, got {}", deleted.deleted()).into());
    }
    Ok(())
}
