//! Both lock flavours against real etcd 3.5.1 and 3.4.23: exclusion, order, interop with
//! `etcdctl lock`, crash and pause of a holder process, cancellation, RPC counts.
#![cfg(feature = "testkit")]

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::ChildTest;
use common::{keys_under, ok, session, wait_key_count};
use etcd_lock::lock::{Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Client, Error, Session, SessionOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

lock_flavours!(
    mutual_exclusion,
    waiters_acquire_in_queue_order,
    fencing_tokens_increase,
    cancelled_wait_leaves_no_key,
    crashed_holder_is_replaced_after_ttl,
    paused_holder_loses_and_is_fenced,
    same_session_twice_is_refused,
    try_lock_is_two_txns_and_joins_the_flavours_queue,
    lock_timeout_is_a_timeout_and_removes_its_key,
);
per_version!(
    contended_recipe_handoff_needs_no_extra_rpc,
    revoked_waiter_never_acquires,
    uncontended_recipe_is_one_rpc,
    try_lock_reports_locked,
    flavours_and_etcdctl_exclude_each_other,
);

async fn mutual_exclusion<L: Locker + Clone + 'static>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("mutex");
    let counter_key = format!("{name}counter");
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = common::client(&cluster).await;
        let (locker, inside, overlaps) = (locker.clone(), inside.clone(), overlaps.clone());
        let (name, counter_key) = (name.clone(), counter_key.clone());
        tasks.push(tokio::spawn(async move {
            let session = session(&client, 10).await;
            for _ in 0..50 {
                let guard = ok(locker.lock(&session, name.as_bytes()).await);
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let current = ok(client.get(counter_key.clone()).await)
                    .first()
                    .map(|kv| {
                        String::from_utf8_lossy(&kv.value)
                            .parse::<u64>()
                            .unwrap_or(0)
                    })
                    .unwrap_or(0);
                tokio::task::yield_now().await;
                ok(client
                    .put(counter_key.clone(), (current + 1).to_string())
                    .await);
                inside.store(false, Ordering::SeqCst);
                ok(locker.unlock(guard).await);
            }
            ok(session.close().await);
        }));
    }
    for t in tasks {
        ok(t.await);
    }
    let client = common::client(&cluster).await;
    let value = ok(client.get(counter_key).await);
    assert_eq!(
        value.first().map(|kv| kv.value.clone()),
        Some(b"400".to_vec())
    );
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
    assert!(keys_under(&client, &name).await.is_empty());
}

async fn waiters_acquire_in_queue_order<L: Locker + Clone + 'static>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("order");
    let client = common::client(&cluster).await;
    let first = session(&client, 10).await;
    let holder = ok(locker.lock(&first, name.as_bytes()).await);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let waiter_client = common::client(&cluster).await;
        let (locker, order, task_name) = (locker.clone(), order.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let (client, name) = (waiter_client, task_name);
            let s = session(&client, 10).await;
            let g = ok(locker.lock(&s, name.as_bytes()).await);
            order.lock().map(|mut o| o.push(i)).ok();
            ok(g.unlock().await);
            ok(s.close().await);
        }));
        // Queue them one by one: the next starts only once this one's key exists.
        wait_key_count(&client, &name, i + 2, Duration::from_secs(5)).await;
    }
    ok(holder.unlock().await);
    for t in tasks {
        ok(t.await);
    }
    let order = order.lock().map(|o| o.clone()).unwrap_or_default();
    assert_eq!(order, vec![0, 1, 2, 3]);
    ok(first.close().await);
}

async fn fencing_tokens_increase<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("fence");
    let client = common::client(&cluster).await;
    let mut last = 0;
    for _ in 0..3 {
        let s = session(&client, 10).await;
        let g = ok(locker.lock(&s, name.as_bytes()).await);
        assert!(
            g.fencing_token() > last,
            "token {} after {last}",
            g.fencing_token()
        );
        assert_eq!(g.key_str(), format!("{name}/{:x}", s.lease()));
        // The token is the key's create revision.
        let kv = ok(client.get(g.key().to_vec()).await);
        assert_eq!(
            kv.first().map(|kv| kv.create_revision),
            Some(g.fencing_token())
        );
        ok(g.put(format!("{name}data"), "x").await);
        last = g.fencing_token();
        ok(g.unlock().await);
        ok(s.close().await);
    }
}

async fn cancelled_wait_leaves_no_key<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("cancel");
    let client = common::client(&cluster).await;
    let holder_session = session(&client, 10).await;
    let guard = ok(locker.lock(&holder_session, name.as_bytes()).await);
    let waiter_session = session(&client, 10).await;
    let attempt = tokio::time::timeout(
        Duration::from_millis(400),
        locker.lock(&waiter_session, name.as_bytes()),
    )
    .await;
    assert!(attempt.is_err(), "the lock should still be held");
    // Only the holder's key remains once the background cleanup ran.
    wait_key_count(&client, &name, 1, Duration::from_secs(3)).await;
    assert_eq!(keys_under(&client, &name).await, vec![guard.key_str()]);
    // The same session can wait again right away, and gets the lock once it is free.
    let again = locker.lock(&waiter_session, name.as_bytes());
    ok(guard.unlock().await);
    let g2 = ok(tokio::time::timeout(Duration::from_secs(5), again)
        .await
        .map_err(|_| "timeout"));
    let g2 = ok(g2);
    ok(g2.unlock().await);
    ok(holder_session.close().await);
    ok(waiter_session.close().await);
    assert!(keys_under(&client, &name).await.is_empty());
}

async fn same_session_twice_is_refused<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("twice");
    let client = common::client(&cluster).await;
    let s = session(&client, 10).await;
    let g = ok(locker.lock(&s, name.as_bytes()).await);
    let second = locker.lock(&s, name.as_bytes()).await;
    assert!(
        matches!(second, Err(Error::AlreadyHeld { .. })),
        "{second:?}"
    );
    assert!(matches!(
        locker.lock(&s, b"").await,
        Err(Error::InvalidArgument {
            argument: "name",
            ..
        })
    ));
    // Revoke the lease behind the guard's back. Both flavours release with a delete conditional
    // on the fencing token, which finds nothing and reports it.
    ok(client.lease_revoke(s.lease()).await);
    let unlocked = g.unlock().await;
    assert!(
        matches!(
            unlocked,
            Err(Error::SessionLost { .. }) | Err(Error::NotHeld { .. })
        ),
        "{}: {unlocked:?}",
        locker.flavour()
    );
    assert!(keys_under(&client, &name).await.is_empty());
}

async fn uncontended_recipe_is_one_rpc(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = common::unique("onerpc");
    let client = common::client(&cluster).await;
    let s = session(&client, 10).await;
    let locker = RecipeLock::new();
    for _ in 0..3 {
        let before = client.stats();
        let g = ok(locker.lock(&s, name.as_bytes()).await);
        let after_lock = client.stats();
        ok(g.unlock().await);
        let after_unlock = client.stats();
        assert_eq!(after_lock.requests - before.requests, 1, "acquire");
        assert_eq!(after_unlock.requests - after_lock.requests, 1, "release");
    }
    ok(s.close().await);
}

/// `Locker::try_lock` on the concrete types, both flavours (names as `&str`).
async fn try_lock_reports_locked(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let (a, b) = (session(&client, 10).await, session(&client, 10).await);
    async fn check<L: Locker>(locker: L, client: &Client, a: &Session, b: &Session) {
        let name = common::unique("try");
        let g = ok(locker.try_lock(a, name.as_str()).await);
        assert_eq!(g.flavour(), locker.flavour());
        let busy = locker.try_lock(b, name.as_str()).await;
        assert!(matches!(busy, Err(Error::Locked { .. })), "{busy:?}");
        assert_eq!(keys_under(client, &name).await, vec![g.key_str()]);
        ok(g.unlock().await);
        let g = ok(locker.try_lock(b, name.clone()).await);
        ok(g.unlock().await);
        assert!(keys_under(client, &name).await.is_empty());
    }
    check(RecipeLock::new(), &client, &a, &b).await;
    check(ServiceLock::new(), &client, &a, &b).await;
}

/// `DynLocker::try_lock_boxed` (through `Box<dyn DynLocker>`), each flavour: a busy lock costs
/// the trier exactly two `KV/Txn`s (join, conditional delete of its own key) and leaves only
/// the holder's key; a lock taken by `try_lock` holds off the flavour's own waiters (for the
/// service, a `Lock/Lock` waiting in the server) until it is released.
async fn try_lock_is_two_txns_and_joins_the_flavours_queue<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("trydyn");
    let client = common::client(&cluster).await;
    let holder = session(&client, 10).await;
    let held = ok(locker.lock(&holder, name.as_bytes()).await);
    let trier_client = common::client(&cluster).await;
    let trier = session(&trier_client, 10).await;
    let before = trier_client.stats();
    let busy = locker.try_lock(&trier, name.as_bytes()).await;
    let after = trier_client.stats();
    assert!(matches!(busy, Err(Error::Locked { .. })), "{busy:?}");
    assert_eq!(after.unary_calls - before.unary_calls, 2, "join + delete");
    assert_eq!(keys_under(&client, &name).await, vec![held.key_str()]);
    ok(held.unlock().await);

    // Taken by try_lock; a waiter of the same flavour must wait for its release.
    let tried = ok(locker.try_lock(&trier, name.as_bytes()).await);
    assert_eq!(tried.flavour(), locker.flavour());
    let waiter = session(&client, 10).await;
    let wait = locker.lock(&waiter, name.as_bytes());
    tokio::pin!(wait);
    let early = tokio::time::timeout(Duration::from_millis(700), &mut wait).await;
    assert!(early.is_err(), "a waiter got the lock held by try_lock");
    ok(tried.unlock().await);
    let got = ok(ok(tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .map_err(|_| "the waiter did not get the lock after the release")));
    ok(got.unlock().await);
    assert!(keys_under(&client, &name).await.is_empty());
}

/// `Locker::lock_timeout` (through `Box<dyn DynLocker>`), each flavour: a held lock gives
/// `Error::LockTimeout` (a timeout, not `Locked`) after the bound, the waiter's key is removed,
/// and the same session's next bounded wait gets the lock once it is free.
async fn lock_timeout_is_a_timeout_and_removes_its_key<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("bounded");
    let client = common::client(&cluster).await;
    let holder = session(&client, 10).await;
    let held = ok(locker.lock(&holder, name.as_bytes()).await);
    let waiter = session(&client, 10).await;
    let started = Instant::now();
    let timed_out = locker
        .lock_timeout(&waiter, name.as_bytes(), Duration::from_millis(500))
        .await;
    let waited = started.elapsed();
    match &timed_out {
        Err(e @ Error::LockTimeout { after, .. }) => {
            assert!(e.is_timeout());
            assert_eq!(*after, Duration::from_millis(500));
            assert!(e.to_string().contains(&name), "{e}");
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    wait_key_count(&client, &name, 1, Duration::from_secs(3)).await;
    assert_eq!(keys_under(&client, &name).await, vec![held.key_str()]);
    let again = locker.lock_timeout(&waiter, name.as_bytes(), Duration::from_secs(5));
    ok(held.unlock().await);
    let g = ok(again.await);
    ok(g.unlock().await);
    assert!(keys_under(&client, &name).await.is_empty());
}

/// Starts `etcdctl lock NAME -- CMD..` and waits until it prints the key it holds.
async fn etcdctl_lock(
    bin: &EtcdBinary,
    endpoints: &[String],
    name: &str,
    cmd: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = ok(tokio::process::Command::new(bin.etcdctl_path())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("lock")
        .arg(name)
        .arg("--")
        .args(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn());
    let stdout = child.stdout.take().map(BufReader::new);
    let lines = match stdout {
        Some(s) => s.lines(),
        None => panic!("no stdout"),
    };
    (child, lines)
}

async fn flavours_and_etcdctl_exclude_each_other(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = common::unique("interop");
    let name = name.trim_end_matches('/').to_string();
    let client = common::client(&cluster).await;
    let s1 = session(&client, 10).await;
    let s2 = session(&client, 10).await;

    // Recipe holds: the service flavour and etcdctl must wait.
    let g = ok(RecipeLock::new().lock(&s1, name.as_bytes()).await);
    let service = tokio::time::timeout(
        Duration::from_millis(500),
        ServiceLock::new().lock(&s2, name.as_bytes()),
    )
    .await;
    assert!(
        service.is_err(),
        "service lock acquired while the recipe held it"
    );
    let (mut ctl, mut lines) =
        etcdctl_lock(bin, &cluster.endpoints(), &name, &["echo", "ctl-ran"]).await;
    let early = tokio::time::timeout(Duration::from_millis(800), lines.next_line()).await;
    assert!(
        early.is_err(),
        "etcdctl got the lock while the recipe held it: {early:?}"
    );
    ok(g.unlock().await);
    let out = ok(
        tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .map_err(|_| "etcdctl never got the lock"),
    );
    assert!(ok(out).is_some());
    let _ = ctl.wait().await;
    wait_key_count(&client, &name, 0, Duration::from_secs(3)).await;

    // Service holds: recipe and etcdctl wait.
    let g = ok(ServiceLock::new().lock(&s2, name.as_bytes()).await);
    let recipe = tokio::time::timeout(
        Duration::from_millis(500),
        RecipeLock::new().lock(&s1, name.as_bytes()),
    )
    .await;
    assert!(
        recipe.is_err(),
        "recipe lock acquired while the service lock held it"
    );
    wait_key_count(&client, &name, 1, Duration::from_secs(3)).await;
    ok(g.unlock().await);

    // etcdctl holds (runs `sleep 1`): the recipe waits until it is done.
    let (mut ctl, mut lines) = etcdctl_lock(
        bin,
        &cluster.endpoints(),
        &name,
        &["sh", "-c", "echo held; sleep 1"],
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    let started = Instant::now();
    let g = ok(RecipeLock::new().lock(&s1, name.as_bytes()).await);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "recipe did not wait for etcdctl"
    );
    let _ = ctl.wait().await;
    ok(g.unlock().await);
}

// ---- a lock holder in a separate process: this test binary re-executed ----

const CHILD_ENV: &str = "ETCD_LOCK_TEST_HOLDER";

/// Not a test on its own: when started by `spawn_holder`, takes the lock, reports, and after
/// noticing the loss tries a guarded write and reports whether etcd refused it.
#[tokio::test]
async fn holder_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [endpoint, name, flavour, fence_key] = parts[..] else {
        panic!("bad spec {spec}")
    };
    let client = ok(Client::connect([endpoint]).await);
    let s = ok(Session::with_options(&client, SessionOptions::new().with_ttl(2)).await);
    let guard = match flavour {
        "service" => ok(ServiceLock::new().lock(&s, name.as_bytes()).await),
        _ => ok(RecipeLock::new().lock(&s, name.as_bytes()).await),
    };
    println!("LOCKED {}", guard.fencing_token());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !guard.is_lost() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match guard.put(fence_key, "stale").await {
        Ok(()) => println!("WRITE accepted"),
        Err(e) => println!(
            "WRITE refused {}",
            e.is_session_lost() || matches!(e, Error::NotHeld { .. })
        ),
    }
}

/// Starts `holder_child` in a separate process and waits until it holds the lock.
async fn spawn_holder(endpoint: &str, name: &str, flavour: &str, fence_key: &str) -> ChildTest {
    let spec = format!("{endpoint}|{name}|{flavour}|{fence_key}");
    let mut holder = ChildTest::spawn("holder_child", CHILD_ENV, &spec);
    let line = holder
        .line_starting("LOCKED", Duration::from_secs(15))
        .await;
    assert!(line.starts_with("LOCKED"));
    holder
}

async fn crashed_holder_is_replaced_after_ttl<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("crash");
    let name = name.trim_end_matches('/');
    let client = common::client(&cluster).await;
    let mut holder = spawn_holder(&cluster.endpoints()[0], name, locker.flavour(), "unused").await;
    let s = session(&client, 10).await;
    holder.signal("-KILL");
    let _ = holder.child.wait().await;
    let killed = Instant::now();
    let g = ok(
        tokio::time::timeout(Duration::from_secs(2 + 2), locker.lock(&s, name.as_bytes()))
            .await
            .map_err(|_| "waiter did not get the lock within TTL + 2 s"),
    );
    let g = ok(g);
    assert!(killed.elapsed() < Duration::from_secs(4));
    ok(g.unlock().await);
    ok(s.close().await);
}

async fn paused_holder_loses_and_is_fenced<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let name = common::unique("pause");
    let name = name.trim_end_matches('/');
    let fence_key = format!("{name}/../data");
    let client = common::client(&cluster).await;
    let mut holder =
        spawn_holder(&cluster.endpoints()[0], name, locker.flavour(), &fence_key).await;
    holder.signal("-STOP");
    let s = session(&client, 10).await;
    let stopped = Instant::now();
    let g = ok(
        tokio::time::timeout(Duration::from_secs(2 + 2), locker.lock(&s, name.as_bytes()))
            .await
            .map_err(|_| "waiter did not get the lock within TTL + 2 s of the pause"),
    );
    let g = ok(g);
    assert!(stopped.elapsed() < Duration::from_secs(4));
    ok(g.put(fence_key.clone(), "fresh").await);
    holder.signal("-CONT");
    let line = holder.line_starting("WRITE", Duration::from_secs(10)).await;
    assert_eq!(line, "WRITE refused true");
    let value = ok(client.get(fence_key).await);
    assert_eq!(
        value.first().map(|kv| kv.value.clone()),
        Some(b"fresh".to_vec())
    );
    let _ = holder.child.wait().await;
    ok(g.unlock().await);
    ok(s.close().await);
}

/// Holds `name` from a fresh session until the returned sender fires; returns once held.
async fn hold_until_told(
    client: &Client,
    name: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let s = session(client, 10).await;
    let g = ok(RecipeLock::new().lock(&s, name.as_bytes()).await);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = rx.await;
        ok(g.unlock().await);
        ok(s.close().await);
    });
    (tx, task)
}

/// Once a client's prefix watch is open, a waiter's whole acquisition is its one txn: the
/// handoff is the holder's DeleteRange, seen on the watch.
async fn contended_recipe_handoff_needs_no_extra_rpc(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = common::unique("handoff");
    let holder_client = common::client(&cluster).await;
    let waiter_client = common::client(&cluster).await;
    let s = session(&waiter_client, 10).await;
    for round in 0..3 {
        let (release, task) = hold_until_told(&holder_client, &name).await;
        let before = waiter_client.stats();
        let locker = RecipeLock::new();
        let waiting = locker.lock(&s, name.as_bytes());
        let released = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = release.send(());
        };
        let (g, ()) = tokio::join!(waiting, released);
        let g = ok(g);
        let used = waiter_client.stats().requests - before.requests;
        // Round 0 opens the watch (create message) and re-checks once; later rounds: 1 txn.
        if round > 0 {
            assert_eq!(
                used, 1,
                "round {round}: {used} requests for a contended acquire"
            );
        }
        ok(g.unlock().await);
        ok(task.await);
    }
    ok(s.close().await);
}

/// A waiter whose lease is revoked while it waits reports the loss instead of acquiring.
async fn revoked_waiter_never_acquires(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = common::unique("revoked");
    let holder_client = common::client(&cluster).await;
    let waiter_client = common::client(&cluster).await;
    // Warm up: open the waiter client's prefix watch with one contended acquisition.
    let (release, task) = hold_until_told(&holder_client, &name).await;
    let warm = session(&waiter_client, 10).await;
    let locker = RecipeLock::new();
    let waiting = locker.lock(&warm, name.as_bytes());
    let _ = release.send(());
    ok(ok(waiting.await).unlock().await);
    ok(task.await);

    let (release, task) = hold_until_told(&holder_client, &name).await;
    let s = session(&waiter_client, 10).await;
    let waiting = tokio::spawn({
        let s = s.clone();
        let name = name.clone();
        async move {
            RecipeLock::new()
                .lock(&s, name.as_bytes())
                .await
                .map(|g| g.key_str())
        }
    });
    wait_key_count(&holder_client, &name, 2, Duration::from_secs(5)).await;
    ok(holder_client.lease_revoke(s.lease()).await);
    wait_key_count(&holder_client, &name, 1, Duration::from_secs(5)).await;
    let _ = release.send(());
    ok(task.await);
    let outcome = ok(tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .map_err(|_| "waiter hung"));
    let outcome = ok(outcome);
    assert!(
        matches!(outcome, Err(Error::SessionLost { .. })),
        "{outcome:?}"
    );
    assert!(keys_under(&holder_client, &name).await.is_empty());
}
