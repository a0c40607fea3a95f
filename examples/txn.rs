//! Transactions: a compare-and-swap on a counter — `KV/Txn` with a compare on the value and
//! both branches — retried until it wins, then one that is meant to lose.
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example txn
//! ```
//! Writes `examples/txn/<pid>/counter` and deletes it before it exits.

use etcd_lock::kv::{GetOptions, PutOptions};
use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use etcd_lock::Client;

mod common;
use common::{endpoints, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;
    let key = format!("examples/txn/{}/counter", std::process::id());

    // Create the counter only if it does not exist yet (create_revision 0 = no such key).
    let created = client
        .txn(
            Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), "0", PutOptions::new())]),
        )
        .await?;
    println!(
        "create {key} if absent: succeeded = {}",
        created.succeeded()
    );

    // Increment three times with compare-and-swap: read, then write only if the value is
    // still the one read. On failure the else branch reads the current value in the same
    // round trip, so the retry needs no extra Range.
    let mut current = "0".to_string();
    for _ in 0..3 {
        loop {
            let next = (current.parse::<u64>()? + 1).to_string();
            let answer = client
                .txn(
                    Txn::new()
                        .when([Compare::value(
                            key.clone(),
                            CompareOp::Equal,
                            current.clone(),
                        )])
                        .and_then([TxnOp::put(key.clone(), next.clone(), PutOptions::new())])
                        .or_else([TxnOp::get(key.clone(), GetOptions::new())]),
                )
                .await?;
            if answer.succeeded() {
                println!("cas {current} -> {next}: won");
                current = next;
                break;
            }
            // Lost the race: take the value the else branch read and try again.
            let seen = answer.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(get) => get.first().map(|kv| kv.value.clone()),
                _ => None,
            });
            current = String::from_utf8(seen.ok_or("counter vanished")?)?;
            println!("cas lost, counter is now {current}; retrying");
        }
    }

    // A compare that cannot hold: the else branch runs instead.
    let stale = client
        .txn(
            Txn::new()
                .when([Compare::value(key.clone(), CompareOp::Equal, "0")])
                .and_then([TxnOp::put(key.clone(), "999", PutOptions::new())])
                .or_else([TxnOp::get(key.clone(), GetOptions::new())]),
        )
        .await?;
    println!(
        "cas with the stale value 0: succeeded = {}",
        stale.succeeded()
    );
    if stale.succeeded() {
        return Err("a compare against a stale value succeeded".into());
    }

    let value = client.get(key.clone()).await?;
    let value = value.first().map(|kv| kv.value.clone()).unwrap_or_default();
    println!("final value {}", String::from_utf8_lossy(&value));
    client.delete(key).await?;
    if value != b"3" {
        return Err(format!("expected 3, got {:?}", String::from_utf8_lossy(&value)).into());
    }
    Ok(())
}
