//! Leader election, both flavours in one queue: alice campaigns with the client-side recipe
//! (`RecipeElection`: `KV/Txn`, `KV/Range`, `Watch/Watch`), bob with etcd's election service
//! (`ServiceElection`: `Election/Campaign`, `Election/Proclaim`, `Election/Resign`). An
//! observer (`Election/Observe` stream) reports each leader and value as it changes.
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example election
//! ```

use std::time::Duration;

use etcd_lock::{Client, Elector, LeaderInfo, Observer, RecipeElection, ServiceElection, Session};

mod common;
use common::{endpoints, Result};

/// The observer's next report, within 10 s.
async fn next_leader(observer: &mut Observer) -> Result<LeaderInfo> {
    let info = tokio::time::timeout(Duration::from_secs(10), observer.next())
        .await
        .map_err(|_| "no leader change within 10 s")?
        .ok_or("the observer stopped")??;
    println!(
        "observer: leader {} says {:?}",
        info.key_str(),
        info.value_str()
    );
    Ok(info)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let name = format!("examples/election/{}", std::process::id()).into_bytes();
    let (recipe, service) = (RecipeElection::new(), ServiceElection::new());
    let alice = Session::new(&client).await?;
    let bob = Session::new(&client).await?;

    // Alice campaigns first and wins at once.
    let mut alice_lead = recipe.campaign(&alice, &name, b"alice at 10.0.0.1").await?;
    println!(
        "alice leads (key {}, revision {})",
        alice_lead.key_str(),
        alice_lead.revision()
    );
    let mut observer = service.observe(&client, &name).await?;
    next_leader(&mut observer).await?;

    // Bob campaigns too and waits in line, in the background.
    let bob_campaign = {
        let (bob, name) = (bob.clone(), name.clone());
        tokio::spawn(async move { service.campaign(&bob, &name, b"bob at 10.0.0.2").await })
    };

    // The leader publishes a new value; observers see it.
    alice_lead.proclaim("alice at 10.0.0.9").await?;
    let seen = next_leader(&mut observer).await?;
    if seen.value_str() != "alice at 10.0.0.9" {
        return Err(format!(
            "expected alice's new value, observed {:?}",
            seen.value_str()
        )
        .into());
    }

    // Alice steps down: bob's campaign completes and the observer reports him.
    alice_lead.resign().await?;
    println!("alice resigned");
    let bob_lead = tokio::time::timeout(Duration::from_secs(10), bob_campaign)
        .await
        .map_err(|_| "bob did not become leader within 10 s")???;
    println!(
        "bob leads (key {}, revision {})",
        bob_lead.key_str(),
        bob_lead.revision()
    );
    let seen = next_leader(&mut observer).await?;
    if seen.key != bob_lead.key() {
        return Err("the observer did not report bob as the new leader".into());
    }
    let current = recipe.leader(&client, &name).await?.ok_or("no leader")?;
    println!(
        "leader query: {} says {:?}",
        current.key_str(),
        current.value_str()
    );

    bob_lead.resign().await?;
    alice.close().await?;
    bob.close().await?;
    Ok(())
}
