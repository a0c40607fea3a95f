//! Endpoint auto-sync from `Cluster/MemberList` (off by default): a client given one member
//! learns the others and keeps working when the first one dies.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::ClientOptions;

per_version!(client_learns_members_and_survives_losing_its_seed);

async fn client_learns_members_and_survives_losing_its_seed(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let seed = cluster.member(0).endpoint();
    let plain = ok(etcd_lock::Client::connect([seed.clone()]).await);
    let options = ClientOptions::new().with_auto_sync(Some(Duration::from_millis(200)));
    let client = ok(etcd_lock::Client::connect_with([seed.clone()], options).await);
    assert_eq!(client.endpoints(), vec![seed.clone()]);

    let deadline = Instant::now() + Duration::from_secs(10);
    while client.endpoints().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "never synced: {:?}",
            client.endpoints()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut want = cluster.endpoints();
    want.sort();
    assert_eq!(client.endpoints(), want);
    // Without auto-sync nothing changes.
    assert_eq!(plain.endpoints(), vec![seed]);

    ok(client.put("synced", "yes").await);
    ok(cluster.member_mut(0).kill());
    ok(cluster.wait_leader(Duration::from_secs(10)));
    let started = Instant::now();
    let got = ok(client.get("synced").await);
    assert_eq!(
        got.first().map(|kv| kv.value.clone()),
        Some(b"yes".to_vec())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The client without auto-sync has nowhere else to go.
    assert!(plain.get("synced").await.is_err());
}
