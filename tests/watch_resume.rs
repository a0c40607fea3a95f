//! A watch survives the loss of the member it streams from: it resumes on another member from
//! the first revision it had not delivered, with no event missed or repeated; a compaction in
//! between ends it with the typed compacted error.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Client, Error};

per_version!(
    watch_resumes_on_another_member,
    compaction_during_outage_is_typed
);

/// A follower to kill (so writes elsewhere are not disturbed by an election), and the
/// endpoints of the other members.
fn follower_and_rest(cluster: &etcd_lock::testkit::Cluster) -> (usize, Vec<String>) {
    let leader = ok(cluster.wait_leader(Duration::from_secs(10)));
    let victim = (leader + 1) % 3;
    let rest = (0..3)
        .filter(|&i| i != victim)
        .map(|i| cluster.member(i).endpoint())
        .collect();
    (victim, rest)
}

async fn watch_resumes_on_another_member(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let prefix = common::unique("resume");
    // The watcher talks to a follower first; the writer to the other two members only.
    let (victim, rest) = follower_and_rest(&cluster);
    let mut endpoints = vec![cluster.member(victim).endpoint()];
    endpoints.extend(rest.iter().cloned());
    let watcher_client = ok(Client::connect(&endpoints).await);
    let writer = ok(Client::connect(&rest).await);
    let mut watcher = ok(watcher_client
        .watch_with(
            prefix.clone(),
            etcd_lock::watch::WatchOptions::new().with_prefix(),
        )
        .await);
    for i in 0..10 {
        ok(writer.put(format!("{prefix}{i:02}"), "v").await);
    }
    ok(cluster.member_mut(victim).kill());
    let killed = Instant::now();
    for i in 10..20 {
        ok(writer.put(format!("{prefix}{i:02}"), "v").await);
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 20 {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = match tokio::time::timeout(left, watcher.next()).await {
            Ok(Some(batch)) => ok(batch),
            other => panic!(
                "watch ended or stalled after {} events: {other:?}",
                seen.len()
            ),
        };
        for event in batch.events() {
            if let Some(kv) = &event.kv {
                seen.push(String::from_utf8_lossy(&kv.key).into_owned());
            }
        }
    }
    let want: Vec<String> = (0..20).map(|i| format!("{prefix}{i:02}")).collect();
    assert_eq!(seen, want, "events missing, repeated or out of order");
    println!(
        "watch resumed {:?} after the member was killed",
        killed.elapsed()
    );
    // Nothing more arrives (no duplicates queued).
    let extra = tokio::time::timeout(Duration::from_millis(300), watcher.next()).await;
    assert!(extra.is_err(), "unexpected extra batch: {extra:?}");
}

async fn compaction_during_outage_is_typed(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let prefix = common::unique("compact");
    let (victim, rest) = follower_and_rest(&cluster);
    let watcher_client = ok(Client::connect([cluster.member(victim).endpoint()]).await);
    let writer = ok(Client::connect(&rest).await);
    let mut watcher = ok(watcher_client
        .watch_with(
            prefix.clone(),
            etcd_lock::watch::WatchOptions::new().with_prefix(),
        )
        .await);
    ok(writer.put(format!("{prefix}a"), "1").await);
    let first = ok(tokio::time::timeout(Duration::from_secs(5), watcher.next())
        .await
        .map_err(|_| "no first event"));
    assert!(first.is_some());
    // The watcher's only member goes away; meanwhile history is written and compacted.
    ok(cluster.member_mut(victim).kill());
    for i in 0..5 {
        ok(writer.put(format!("{prefix}b{i}"), "2").await);
    }
    let rev = ok(writer.put(format!("{prefix}c"), "3").await).revision();
    ok(writer.compact(rev, true).await);
    ok(cluster.member_mut(victim).restart());
    let outcome = ok(
        tokio::time::timeout(Duration::from_secs(20), watcher.next())
            .await
            .map_err(|_| "watch neither resumed nor failed"),
    );
    match outcome {
        Some(Err(Error::WatchCompacted { compact_revision })) => assert_eq!(compact_revision, rev),
        other => panic!("expected WatchCompacted, got {other:?}"),
    }
}
