//! Issue 12, "Watch request_progress": `Watcher::request_progress` sends a
//! `WatchProgressRequest` on the shared stream; the answer reaches the watcher as a progress
//! notification, and it never becomes the revision a broken stream resumes from (etcd before
//! 3.5.8 / 3.4.25 could answer ahead of queued events, etcd issue 15220).
#![cfg(feature = "testkit")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::kv::GetOptions;
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::watch::WatchOptions;

async fn progress_answer_reaches_the_watcher(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let prefix = common::unique("progress");
    let mut watcher = ok(client
        .watch_with(format!("{prefix}/"), WatchOptions::new().with_prefix())
        .await);
    // A second watch on the same stream that did not ask: it gets no answer.
    let mut bystander = ok(client.watch(format!("{prefix}-other")).await);
    let mut last = 0;
    for i in 0..5 {
        last = ok(client.put(format!("{prefix}/{i}"), "v").await).revision();
    }
    ok(watcher.request_progress().await);
    let mut events = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let notification = loop {
        assert!(Instant::now() < deadline, "no progress notification");
        // etcd 3.5.8+ drops a request that finds the watch catching up: ask again.
        let Ok(batch) = tokio::time::timeout(Duration::from_secs(1), watcher.next()).await else {
            ok(watcher.request_progress().await);
            continue;
        };
        let batch = ok(batch.unwrap_or_else(|| panic!("watch ended")));
        if batch.is_progress_notify() {
            break batch;
        }
        events += batch.events().len();
    };
    assert!(
        notification.revision() >= last,
        "progress at {} before the last put at {last}",
        notification.revision()
    );
    assert_eq!(notification.watch_id(), -1);
    assert!(notification.events().is_empty());
    // The events still arrive (after the notification on servers that answer at once).
    while events < 5 {
        let batch = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
        let batch = ok(batch
            .unwrap_or_else(|_| panic!("events missing after the notification"))
            .unwrap_or_else(|| panic!("watch ended")));
        assert!(!batch.is_progress_notify(), "a second notification");
        events += batch.events().len();
    }
    assert_eq!(events, 5);
    let quiet = tokio::time::timeout(Duration::from_millis(300), bystander.next()).await;
    assert!(quiet.is_err(), "the bystander got {quiet:?}");

    // Several requests at once (the watch is idle and synced now): answered, at or past `last`.
    for _ in 0..3 {
        ok(watcher.request_progress().await);
    }
    let batch = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
    let batch = ok(batch
        .unwrap_or_else(|_| panic!("no answer to repeated requests"))
        .unwrap_or_else(|| panic!("watch ended")));
    assert!(batch.is_progress_notify() && batch.revision() >= last);
    // A request on a watcher that was dropped meanwhile is harmless; the stream still works.
    drop(bystander);
    ok(client.put(format!("{prefix}/after"), "v").await);
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
        let batch = ok(batch
            .unwrap_or_else(|_| panic!("no event after the requests"))
            .unwrap_or_else(|| panic!("watch ended")));
        if !batch.events().is_empty() {
            assert_eq!(batch.events().len(), 1);
            break;
        }
    }
}

/// The watch runs on member 0 of three; a writer on members 1 and 2 puts keys while the reader
/// asks for progress after every response; member 0 is killed halfway. Every put (as the final
/// range shows them) must be delivered exactly once, in order, across the failover.
async fn resume_after_failover_delivers_every_event_once(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    ok(tokio::task::block_in_place(|| {
        cluster.wait_leader(Duration::from_secs(10))
    }));
    let endpoints = cluster.endpoints();
    // Member 0 first: the watch stream opens there.
    let watching = common::connect_quick(&endpoints).await;
    let writer = common::connect_quick(&endpoints[1..]).await;
    let prefix = common::unique("progress-resume");
    let mut watcher = ok(watching
        .watch_with(format!("{prefix}/"), WatchOptions::new().with_prefix())
        .await);
    assert_eq!(watching.endpoints()[0], endpoints[0]);

    const PUTS: usize = 300;
    let put_task = {
        let (writer, prefix) = (writer.clone(), prefix.clone());
        tokio::spawn(async move {
            for i in 0..PUTS {
                // A put that failed in the failover may or may not have been applied: the
                // final range decides what was written.
                if writer.put(format!("{prefix}/{i:04}"), "v").await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if i % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };

    let mut seen: Vec<i64> = Vec::new();
    let mut notifications = 0usize;
    let mut notifications_after_kill = 0usize;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if put_task.is_finished() {
            break;
        }
        assert!(Instant::now() < deadline, "writer did not finish");
        // Nothing for a while (etcd 3.5.8+ may leave a request unanswered): ask again.
        let Ok(batch) = tokio::time::timeout(Duration::from_millis(500), watcher.next()).await
        else {
            ok(watcher.request_progress().await);
            continue;
        };
        let batch = ok(batch.unwrap_or_else(|| panic!("watch ended")));
        if batch.is_progress_notify() {
            notifications += 1;
            if killed {
                notifications_after_kill += 1;
            }
        }
        seen.extend(
            batch
                .events()
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
        );
        ok(watcher.request_progress().await);
        if !killed && seen.len() >= PUTS / 3 {
            ok(cluster.member_mut(0).kill());
            killed = true;
        }
    }
    ok(put_task.await);
    let written = ok(writer
        .get_with(format!("{prefix}/"), GetOptions::new().with_prefix())
        .await);
    let expected: Vec<i64> = written.kvs().iter().map(|kv| kv.mod_revision).collect();
    let expected: BTreeSet<i64> = expected.into_iter().collect();
    // Read until every written revision has been seen (or the stream stays quiet).
    while seen.len() < expected.len() {
        let batch = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
        let batch = ok(batch
            .unwrap_or_else(|_| panic!("missing events: saw {} of {}", seen.len(), expected.len()))
            .unwrap_or_else(|| panic!("watch ended")));
        seen.extend(
            batch
                .events()
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
        );
    }
    assert!(killed, "member 0 was never killed");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "events repeated or out of order"
    );
    let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen_set, expected, "delivered != written");
    assert!(
        notifications > 0 && notifications_after_kill > 0,
        "progress answers: {notifications} in all, {notifications_after_kill} after the kill"
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), watcher.next()).await;
    if let Ok(Some(Ok(batch))) = &extra {
        assert!(batch.events().is_empty(), "an extra event: {batch:?}");
    }
}

per_version!(
    progress_answer_reaches_the_watcher,
    resume_after_failover_delivers_every_event_once
);

/// The case etcd issue 15220 is about, made likely: a watch that starts far back in history is
/// "unsynced" and gets its past events from the server in rounds of 1000 revisions every
/// 100 ms, while etcd 3.5.1 and 3.4.23 answer a progress request at once with the current
/// revision. When that answer arrives before the events below it, member 0 (where the stream
/// is) is killed at once: the watch must resume from its last delivered event + 1, not from the
/// answer's revision, or the events in between are lost.
async fn early_progress_answer_is_not_a_resume_point(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    ok(tokio::task::block_in_place(|| {
        cluster.wait_leader(Duration::from_secs(10))
    }));
    let endpoints = cluster.endpoints();
    let writer = common::connect_quick(&endpoints[1..]).await;
    let prefix = common::unique("early-progress");
    // 3000 revisions of history, written by 8 tasks.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (writer, prefix) = (writer.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..375 {
                ok(writer.put(format!("{prefix}/{t}-{i:03}"), "v").await);
            }
        }));
    }
    for task in tasks {
        ok(task.await);
    }
    let written = ok(writer
        .get_with(format!("{prefix}/"), GetOptions::new().with_prefix())
        .await);
    let expected: BTreeSet<i64> = written.kvs().iter().map(|kv| kv.mod_revision).collect();
    assert_eq!(expected.len(), 3000);
    let first = expected.iter().copied().min().unwrap_or_default();
    let last = expected.iter().copied().max().unwrap_or_default();

    let watching = common::connect_quick(&endpoints).await;
    let options = WatchOptions::new().with_prefix().with_start_revision(first);
    let mut watcher = ok(watching.watch_with(format!("{prefix}/"), options).await);
    ok(watcher.request_progress().await);
    let mut seen: Vec<i64> = Vec::new();
    let mut early_answer = false;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "missing events: saw {} of {} (early answer: {early_answer})",
            seen.len(),
            expected.len()
        );
        let Ok(batch) = tokio::time::timeout(Duration::from_secs(5), watcher.next()).await else {
            continue;
        };
        let batch = ok(batch.unwrap_or_else(|| panic!("watch ended")));
        if batch.is_progress_notify() && !killed {
            let behind = seen.last().copied().unwrap_or(0) < batch.revision();
            early_answer = behind;
            // Kill the member the stream is on while events below the answer are undelivered
            // (on fixed servers the answer comes after them: the kill just exercises resume).
            ok(cluster.member_mut(0).kill());
            killed = true;
        }
        seen.extend(
            batch
                .events()
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
        );
        if seen.len() == expected.len() && !killed {
            // No answer at all (3.5.8+ drops a request that finds the watch catching up).
            break;
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "events repeated or out of order"
    );
    let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen_set, expected, "delivered != written");
    assert_eq!(seen.last().copied(), Some(last));
    println!(
        "etcd {}: progress answer before the events below it: {early_answer}",
        bin.version()
    );
}

per_version!(early_progress_answer_is_not_a_resume_point);
