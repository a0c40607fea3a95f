//! Leases: grant a lease, attach a key to it, keep it alive, read its TTL and keys, then
//! revoke it and see the key go — `Lease/LeaseGrant`, `Lease/LeaseKeepAlive`,
//! `Lease/LeaseTimeToLive`, `Lease/LeaseLeases`, `Lease/LeaseRevoke`, `KV/Put`, `KV/Range`.
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example lease
//! ```
//! Its key `examples/lease/<pid>/heartbeat` disappears with the lease before it exits.

use etcd_lock::kv::PutOptions;
use etcd_lock::Client;

mod common;
use common::{endpoints, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let key = format!("examples/lease/{}/heartbeat", std::process::id());

    // A 10 s lease; etcd picks the ID.
    let lease = client.lease_grant(10).await?;
    let id = lease.id();
    println!("granted lease {id:x} with TTL {} s", lease.ttl());

    // A key that lives as long as the lease.
    client
        .put_with(key.clone(), "alive", PutOptions::new().with_lease(id))
        .await?;
    println!("put {key} attached to lease {id:x}");

    // Keep it alive by hand twice (a Session does this in the background for locks).
    let (mut keeper, first) = client.lease_keep_alive(id).await?;
    println!("keep-alive: TTL back to {} s", first.ttl());
    let again = keeper.keep_alive().await?;
    println!("keep-alive again: TTL {} s", again.ttl());

    // What etcd knows about it.
    let ttl = client.lease_time_to_live(id, true).await?;
    let keys: Vec<_> = ttl
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    println!(
        "time-to-live: {} s left of {} s, keys {keys:?}",
        ttl.ttl(),
        ttl.granted_ttl()
    );
    if keys != [key.clone()] {
        return Err(format!("expected the lease to carry {key}, it carries {keys:?}").into());
    }
    let all = client.leases().await?.ids();
    println!(
        "leases on the cluster: {}, ours among them: {}",
        all.len(),
        all.contains(&id)
    );

    // Revoking the lease deletes its keys at once.
    drop(keeper);
    client.lease_revoke(id).await?;
    let after = client.get(key.clone()).await?;
    println!(
        "revoked lease {id:x}; {key} present afterwards: {}",
        after.count() > 0
    );
    if after.count() != 0 {
        return Err("the key outlived its revoked lease".into());
    }
    Ok(())
}
