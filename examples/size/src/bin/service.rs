//! Locks `size/lock` with the lock service (`Lock/Lock`, `Lock/Unlock`),
//! prints the fencing token, unlocks and revokes the session's lease.
//!
//! ```text
//! service [ENDPOINT]    (default 127.0.0.1:2379)
//! ```

use etcd_lock::{Client, Locker, ServiceLock, Session};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), etcd_lock::Error> {
    let endpoint = std::env::args().nth(1);
    let client = Client::connect([endpoint.as_deref().unwrap_or("127.0.0.1:2379")]).await?;
    let session = Session::new(&client).await?;
    let lock = ServiceLock::new();
    let guard = lock.lock(&session, b"size/lock").await?;
    println!("{}", guard.fencing_token());
    lock.unlock(guard).await?;
    session.close().await
}
