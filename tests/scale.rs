//! How the locks behave as their work grows (issue 15), against real etcd: the service
//! flavour's fencing token without an extra RPC, many waiters on one client, a long queue of
//! lone waiters, and per-name state that does not outlive its use.
#![cfg(feature = "testkit")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ok, session, wait_key_count};
use etcd_lock::lock::{self, Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Client, LockGuard, SessionOptions};
use tokio::sync::Barrier;

per_version!(
    service_token_comes_from_the_lock_answer_when_provable,
    many_waiters_on_one_client_stay_on_the_fast_path,
    lone_waiters_far_back_watch_only_their_predecessor,
    prefix_watches_stay_bounded_over_many_names,
    idle_prefix_watches_close_and_leave_no_state,
);

/// The key's create revision as etcd has it, read by another client.
async fn create_revision(reader: &Client, guard: &LockGuard) -> Option<i64> {
    ok(reader.get(guard.key().to_vec()).await)
        .first()
        .map(|kv| kv.create_revision)
}

/// `ServiceLock` takes its fencing token from `Lock`'s answer when the header revision is
/// provably the key's create revision, and reads the key otherwise; either way the token is
/// the create revision.
async fn service_token_comes_from_the_lock_answer_when_provable(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = common::unique("svc-token");
    let client = common::client(&cluster).await;
    let reader = common::client(&cluster).await;
    let s = session(&client, 10).await;
    let locker = ServiceLock::new();

    // Nobody else writes: after the first cycle, every cycle is Lock/Lock + the conditional
    // delete's KV/Txn.
    for cycle in 0..10 {
        let before = client.stats().unary_calls;
        let g = ok(locker.lock(&s, name.as_bytes()).await);
        assert_eq!(
            create_revision(&reader, &g).await,
            Some(g.fencing_token()),
            "cycle {cycle}"
        );
        ok(g.unlock().await);
        let used = client.stats().unary_calls - before;
        if cycle > 0 {
            assert_eq!(used, 2, "cycle {cycle}: {used} unary calls");
        }
    }

    // Someone else writes between the cycles: the answer cannot prove it, one Range reads it.
    for cycle in 0..3 {
        ok(reader.put(format!("{name}other"), "x").await);
        let before = client.stats().unary_calls;
        let g = ok(locker.lock(&s, name.as_bytes()).await);
        assert_eq!(
            create_revision(&reader, &g).await,
            Some(g.fencing_token()),
            "busy cycle {cycle}"
        );
        assert_eq!(client.stats().unary_calls - before, 2, "Lock + Range");
        ok(g.unlock().await);
    }

    // A contended Lock answers with a later header revision: the token is still the key's.
    let rival_client = common::client(&cluster).await;
    let rival = session(&rival_client, 10).await;
    let held = ok(locker.lock(&rival, name.as_bytes()).await);
    let waiting = tokio::spawn({
        let (s, name) = (s.clone(), name.clone());
        async move { ServiceLock::new().lock(&s, name.as_bytes()).await }
    });
    wait_key_count(&reader, &name, 2, Duration::from_secs(5)).await;
    ok(reader.put(format!("{name}other"), "y").await);
    ok(held.unlock().await);
    let g = ok(ok(waiting.await));
    assert_eq!(create_revision(&reader, &g).await, Some(g.fencing_token()));
    ok(g.unlock().await);

    // An adopted lease may carry keys this session never saw created. The proof does not care
    // who created the key: it needs only this session's own delete of it just before. So the
    // first cycle reads, the next ones (after this session's own release) do not.
    let adopted = ok(etcd_lock::Session::with_options(
        &client,
        SessionOptions::new().with_lease(rival.lease()),
    )
    .await);
    for cycle in 0..3 {
        let before = client.stats().unary_calls;
        let g = ok(locker.lock(&adopted, name.as_bytes()).await);
        assert_eq!(create_revision(&reader, &g).await, Some(g.fencing_token()));
        let want = if cycle == 0 { 2 } else { 1 };
        assert_eq!(
            client.stats().unary_calls - before,
            want,
            "adopted cycle {cycle}"
        );
        ok(g.unlock().await);
    }

    // An abandoned Lock call may be applied after its cleanup; whatever it left, the token read
    // off an answer is still the key's create revision.
    let blocker = ok(locker.lock(&rival, name.as_bytes()).await);
    let abandoned =
        tokio::time::timeout(Duration::from_millis(200), locker.lock(&s, name.as_bytes())).await;
    assert!(abandoned.is_err(), "the lock was held by the rival");
    ok(blocker.unlock().await);
    // The first lock waits for the abandoned call's cleanup (which reads the key a few times
    // on this client): measure from the next one.
    let g = ok(locker.lock(&s, name.as_bytes()).await);
    assert_eq!(create_revision(&reader, &g).await, Some(g.fencing_token()));
    ok(g.unlock().await);
    for _ in 0..3 {
        let before = client.stats().unary_calls;
        let g = ok(locker.lock(&s, name.as_bytes()).await);
        assert_eq!(create_revision(&reader, &g).await, Some(g.fencing_token()));
        assert!(client.stats().unary_calls - before <= 2, "Lock (+ Range)");
        ok(g.unlock().await);
    }
    ok(s.close().await);
    ok(rival.close().await);
}

/// 200 sessions on ONE client queue for one name, twice each: every wait but possibly the very
/// first is on the fast path (the client's one prefix watch), each handoff costs the join txn
/// and the release, and the process sees one holder at a time.
async fn many_waiters_on_one_client_stay_on_the_fast_path(bin: &EtcdBinary) {
    const WAITERS: usize = 200;
    let cluster = common::single(bin);
    let name = common::unique("many-waiters");
    let client = common::client(&cluster).await;
    let mut sessions = Vec::new();
    for _ in 0..WAITERS {
        sessions.push(session(&client, 20).await);
    }
    let holding = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(WAITERS));
    let before_stats = lock::stats(&client);
    let before_calls = client.stats().unary_calls;
    let mut tasks = Vec::new();
    for s in &sessions {
        let (s, name, holding, barrier) = (
            s.clone(),
            name.clone(),
            Arc::clone(&holding),
            Arc::clone(&barrier),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            for _ in 0..2 {
                let g = ok(RecipeLock::new().lock(&s, name.as_bytes()).await);
                assert!(!holding.swap(true, Ordering::SeqCst), "two holders at once");
                tokio::task::yield_now().await;
                holding.store(false, Ordering::SeqCst);
                ok(g.unlock().await);
            }
        }));
    }
    for t in tasks {
        ok(t.await);
    }
    let calls = client.stats().unary_calls - before_calls;
    let stats = lock::stats(&client);
    let slow = stats.slow_waits - before_stats.slow_waits;
    let fast = stats.fast_waits - before_stats.fast_waits;
    assert!(slow <= 1, "{slow} slow waits (fast {fast})");
    assert!(fast >= (2 * WAITERS as u64) - 10, "only {fast} fast waits");
    // A join txn and a conditional delete per handoff, plus one re-check per slow wait.
    let handoffs = 2 * WAITERS as u64;
    assert!(
        calls <= 2 * handoffs + slow,
        "{calls} unary calls for {handoffs} handoffs"
    );
    assert_eq!(stats.prefix_watches, 1, "one prefix watch for the name");
    for s in sessions {
        ok(s.close().await);
    }
}

/// 24 waiters, each alone on its own client, queue behind a holder in a known order: the ones
/// with more than 16 keys ahead watch only their predecessor's key (no prefix watch), and the
/// lock still goes round in queue order with one holder at a time.
async fn lone_waiters_far_back_watch_only_their_predecessor(bin: &EtcdBinary) {
    const WAITERS: usize = 24;
    let cluster = common::single(bin);
    let name = common::unique("far");
    let control = common::client(&cluster).await;
    let first = session(&control, 10).await;
    let holder = ok(RecipeLock::new().lock(&first, name.as_bytes()).await);
    let order = Arc::new(Mutex::new(Vec::new()));
    let holding = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..WAITERS {
        let waiter_client = common::client(&cluster).await;
        clients.push(waiter_client.clone());
        let (order, holding, task_name) = (Arc::clone(&order), Arc::clone(&holding), name.clone());
        tasks.push(tokio::spawn(async move {
            let s = session(&waiter_client, 10).await;
            let g = ok(RecipeLock::new().lock(&s, task_name.as_bytes()).await);
            assert!(!holding.swap(true, Ordering::SeqCst), "two holders at once");
            order.lock().map(|mut o| o.push(i)).ok();
            tokio::time::sleep(Duration::from_millis(2)).await;
            holding.store(false, Ordering::SeqCst);
            ok(g.unlock().await);
            ok(s.close().await);
        }));
        wait_key_count(&control, &name, i + 2, Duration::from_secs(5)).await;
    }
    // Waiter i has i + 1 keys ahead (the holder's and i waiters'): from 16 on, more than 16.
    // A waiter's key exists once its join txn is applied; its watch opens after the answer
    // arrives, so the last ones may still be opening theirs on a loaded machine.
    for (i, c) in clients.iter().enumerate().skip(16) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while c.open_watches() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lock::stats(c).prefix_watches, 0, "waiter {i}");
        assert_eq!(
            c.open_watches(),
            1,
            "waiter {i}: its predecessor's key only"
        );
    }
    ok(holder.unlock().await);
    for t in tasks {
        ok(t.await);
    }
    let order = order.lock().map(|o| o.clone()).unwrap_or_default();
    assert_eq!(order, (0..WAITERS).collect::<Vec<_>>());
    let far: u64 = clients.iter().map(|c| lock::stats(c).far_waits).sum();
    assert_eq!(far, (WAITERS - 16) as u64, "far waits");
    for (i, c) in clients.iter().enumerate().skip(16) {
        assert_eq!(
            c.open_watches(),
            0,
            "waiter {i}: no watch left after its far wait"
        );
    }
    ok(first.close().await);
}

/// Locking 100 names one after the other, each contended once on the same client: the client
/// keeps at most 64 idle prefix watches, not one per name ever used.
async fn prefix_watches_stay_bounded_over_many_names(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let base = common::unique("names");
    let client = common::client(&cluster).await;
    let holder = session(&client, 10).await;
    let waiter = session(&client, 10).await;
    for i in 0..100 {
        let name = format!("{base}n{i}");
        let held = ok(RecipeLock::new().lock(&holder, name.as_bytes()).await);
        let waiting = tokio::spawn({
            let (waiter, name) = (waiter.clone(), name.clone());
            async move { RecipeLock::new().lock(&waiter, name.as_bytes()).await }
        });
        wait_key_count(&client, &name, 2, Duration::from_secs(5)).await;
        ok(held.unlock().await);
        ok(ok(ok(waiting.await)).unlock().await);
        let stats = lock::stats(&client);
        assert!(
            stats.prefixes <= 65 && stats.prefix_watches <= 65,
            "name {i}: {stats:?}"
        );
    }
    let stats = lock::stats(&client);
    assert!(stats.watches_opened >= 100, "{stats:?}");
    assert!(
        client.open_watches() <= 65,
        "{} watches",
        client.open_watches()
    );
    ok(holder.close().await);
    ok(waiter.close().await);
}

/// A prefix watch unused for 30 s closes by itself and the name's state is forgotten.
async fn idle_prefix_watches_close_and_leave_no_state(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = common::unique("idle");
    let client = common::client(&cluster).await;
    let holder = session(&client, 60).await;
    let waiter = session(&client, 60).await;
    let held = ok(RecipeLock::new().lock(&holder, name.as_bytes()).await);
    let waiting = tokio::spawn({
        let (waiter, name) = (waiter.clone(), name.clone());
        async move { RecipeLock::new().lock(&waiter, name.as_bytes()).await }
    });
    wait_key_count(&client, &name, 2, Duration::from_secs(5)).await;
    ok(held.unlock().await);
    ok(ok(ok(waiting.await)).unlock().await);
    let open = lock::stats(&client);
    assert_eq!((open.prefixes, open.prefix_watches), (1, 1), "{open:?}");
    assert_eq!(client.open_watches(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    loop {
        let stats = lock::stats(&client);
        if stats.prefixes == 0 && client.open_watches() == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open after 50 s idle: {stats:?}, {} watches",
            client.open_watches()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The name still works, and opens a fresh watch when contended again.
    let held = ok(RecipeLock::new().lock(&holder, name.as_bytes()).await);
    ok(held.unlock().await);
    ok(holder.close().await);
    ok(waiter.close().await);
}
