//! The code under test: a job runner that must run a job at most once at a time across
//! machines, using an etcd lock, and records the result under the lock's fence.

use etcd_lock::{Client, Locker, RecipeLock, Session};

/// Runs `job` while holding the lock `jobs/<name>`, then stores its output under
/// `results/<name>` with a write that etcd refuses if the lock was lost meanwhile.
pub async fn run_exclusive<F, Fut>(
    client: &Client,
    name: &str,
    job: F,
) -> Result<(), etcd_lock::Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let session = Session::new(client).await?;
    let guard = RecipeLock::new()
        .lock(&session, format!("jobs/{name}"))
        .await?;
    let output = job().await;
    guard.put(format!("results/{name}"), output).await?;
    guard.unlock().await?;
    session.close().await
}
