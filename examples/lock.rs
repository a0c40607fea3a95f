//! Distributed locks, both flavours on the same name: the client-side recipe (`RecipeLock`:
//! `KV/Txn`, `KV/Range`, `Watch/Watch`, `KV/DeleteRange`, Go `concurrency.Mutex` compatible)
//! and etcd's lock service (`ServiceLock`: `Lock/Lock`, `Lock/Unlock`). They exclude each
//! other, so a second session's `try_lock` fails while either holds the name. The holder
//! writes through `LockGuard::put`, a `KV/Txn` fenced by its token (the key's create revision).
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example lock
//! ```

use std::time::Duration;

use etcd_lock::{Client, Error, Locker, RecipeLock, ServiceLock, Session};

mod common;
use common::{endpoints, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let name = format!("examples/lock/{}", std::process::id()).into_bytes();
    // Two sessions (two leases, kept alive in the background): two would-be holders.
    let alice = Session::new(&client).await?;
    let bob = Session::new(&client).await?;
    let recipe = RecipeLock::new();
    let service = ServiceLock::new();

    // 1. Alice takes the lock with the recipe.
    let guard = recipe.lock(&alice, &name).await?;
    println!(
        "alice holds {} via the recipe (fencing token {})",
        guard.key_str(),
        guard.fencing_token()
    );
    // Bob's try_lock gives up at once instead of queueing.
    match recipe.try_lock(&bob, &name).await {
        Err(Error::Locked { .. }) => println!("bob: try_lock refused, alice holds it"),
        other => {
            return Err(format!("bob's try_lock should fail with Locked, got {other:?}").into())
        }
    }
    // Writes fenced by the token succeed while the lock is held.
    let data = format!("examples/lock/{}-data", std::process::id());
    guard.put(data.clone(), "written by alice").await?;
    let alice_token = guard.fencing_token();
    recipe.unlock(guard).await?;
    println!("alice released the lock");

    // 2. Bob takes it through etcd's lock service; the recipe sees it as held too.
    let guard = tokio::time::timeout(Duration::from_secs(10), service.lock(&bob, &name))
        .await
        .map_err(|_| "the service lock was not granted within 10 s")??;
    println!(
        "bob holds {} via the Lock service (fencing token {})",
        guard.key_str(),
        guard.fencing_token()
    );
    if guard.fencing_token() <= alice_token {
        return Err("fencing tokens must increase from one holder to the next".into());
    }
    match recipe.try_lock(&alice, &name).await {
        Err(Error::Locked { .. }) => println!("alice: try_lock refused, bob holds it"),
        other => {
            return Err(format!("alice's try_lock should fail with Locked, got {other:?}").into())
        }
    }
    service.unlock(guard).await?;
    println!("bob released the lock");

    client.delete(data).await?;
    alice.close().await?;
    bob.close().await?;
    Ok(())
}
