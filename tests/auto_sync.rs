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

per_version!(failover_still_moves_after_auto_sync_shrinks_the_list);

/// The client starts with three addresses nobody listens on, then the cluster's first member
/// in sorted order, so it works from index 3. Auto-sync replaces the list with the three members
/// (sorted): the index must keep pointing at the same member and keep moving when it dies.
/// Then that member is killed: requests, a watch and a session's keep-alive must reach the
/// live members.
async fn failover_still_moves_after_auto_sync_shrinks_the_list(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let mut members = cluster.endpoints();
    members.sort();
    let used = members[0].clone();
    let Some(used_index) = cluster.endpoints().iter().position(|e| *e == used) else {
        panic!("{used} is not a member");
    };
    let dead = [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:3",
    ];
    let given: Vec<String> = dead
        .iter()
        .map(|s| s.to_string())
        .chain([used.clone()])
        .collect();
    let options = ClientOptions::new()
        .with_auto_sync(Some(Duration::from_millis(200)))
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Some(Duration::from_secs(5)));
    let client = ok(etcd_lock::Client::connect_with(given, options).await);
    ok(client.put("shrink/before", "1").await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.endpoints() != members {
        assert!(
            Instant::now() < deadline,
            "never synced: {:?}",
            client.endpoints()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session = common::session(&client, 3).await;
    let mut watcher = ok(client.watch("shrink/after").await);

    ok(cluster.member_mut(used_index).kill());
    ok(cluster.wait_leader(Duration::from_secs(10)));

    // Requests: the first one after the kill may fail (it may have reached the dead member),
    // but within a bound the client must be on a live member.
    let started = Instant::now();
    loop {
        if client.put("shrink/after", "2").await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "requests stay on the dead member {used}"
        );
    }
    // The watch resumed elsewhere and sees that put.
    let seen = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
    match seen {
        Ok(Some(Ok(batch))) => assert!(!batch.events().is_empty()),
        other => panic!("watch did not move off the dead member: {other:?}"),
    }
    // The keep-alive moved too: the 3 s lease outlives several TTLs.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!session.is_lost(), "keep-alive stayed on the dead member");
    let ttl = ok(client.lease_time_to_live(session.lease(), false).await);
    assert!(ttl.ttl() > 0, "session lease expired: {ttl:?}");
}
