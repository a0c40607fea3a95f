//! The synchronous twin of the README's "Testing your code against etcd 3.4 and 3.5" example
//! (which uses the async face, as examples/downstream does), kept compiling and passing here:
//! the same assertion on every installed etcd version.
#![cfg(feature = "testkit")]

use std::time::Duration;

use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::{Client, Locker, RecipeLock, Session};

#[tokio::test(flavor = "multi_thread")]
async fn lock_survives_a_leader_kill_on_every_version() -> Result<(), Box<dyn std::error::Error>> {
    for bin in EtcdBinary::matrix()? {
        let mut cluster = Cluster::three(&bin)?;
        let client = Client::connect(cluster.endpoints()).await?;
        let session = Session::new(&client).await?;

        let guard = RecipeLock::new().lock(&session, b"jobs/nightly").await?;
        let leader = cluster.wait_leader(Duration::from_secs(10))?;
        cluster.member_mut(leader).kill()?; // SIGKILL, reaped
        cluster.wait_leader(Duration::from_secs(10))?; // a new leader among the other two

        // The lock key is replicated: the holder's fenced write still goes through.
        guard.put("jobs/nightly-result", "done").await?;
        guard.unlock().await?;
        session.close().await?;
        println!("etcd {}: ok", bin.version());
    } // every member killed and its data dir removed here, also on panic
    Ok(())
}
