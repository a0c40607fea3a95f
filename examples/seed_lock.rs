//! The Go seed program, ported: take `/com/lock/hello-boy` within a 15 s deadline, work for
//! 7 s (a 1 s sleep loop that also stops when the deadline or the lock's session ends), unlock.
//!
//! ```text
//! cargo run --example seed_lock -- http://127.0.0.1:2379
//! ```
//! Endpoints come from the arguments (comma-separated lists allowed), else
//! `ETCDCTL_ENDPOINTS`, else `127.0.0.1:2379`.

use std::time::Duration;

use etcd_lock::{Client, Error, Locker, RecipeLock, Session};
use tokio::time::{sleep, timeout_at, Instant};

const NAME: &[u8] = b"/com/lock/hello-boy";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Endpoints as arguments, each possibly a comma-separated list.
    let mut endpoints: Vec<String> = std::env::args()
        .skip(1)
        .flat_map(|a| a.split(',').map(String::from).collect::<Vec<_>>())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        endpoints = std::env::var("ETCDCTL_ENDPOINTS")
            .unwrap_or_else(|_| "127.0.0.1:2379".into())
            .split(',')
            .map(String::from)
            .collect();
    }
    let client = Client::connect(&endpoints).await?;
    // concurrency.NewSession: a 60 s lease kept alive in the background.
    let session = Session::new(&client).await?;
    let mutex = RecipeLock::new();

    // ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
    let deadline = Instant::now() + Duration::from_secs(15);
    let guard = match timeout_at(deadline, mutex.lock(&session, NAME)).await {
        Ok(guard) => guard?,
        Err(_) => {
            eprintln!("could not take the lock within 15 s");
            session.close().await?;
            return Ok(());
        }
    };
    println!(
        "acquired lock {} (fencing token {})",
        guard.key_str(),
        guard.fencing_token()
    );

    let lost = guard.lost();
    tokio::pin!(lost);
    for second in 1..=7 {
        tokio::select! {
            _ = sleep(Duration::from_secs(1)) => println!("working... {second}s"),
            _ = tokio::time::sleep_until(deadline) => { println!("deadline reached"); break }
            _ = &mut lost => { println!("session lost: stopping work"); break }
        }
    }

    mutex.unlock(guard).await?;
    println!("released lock");
    session.close().await?;
    Ok(())
}
