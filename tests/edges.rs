//! Safety at the edges: a slow member, a cancelled call, a lease that comes back.
//!
//! Each case goes through the public API against real members, on every matrix version:
//! * a request held up on a slow member (a [`DelayProxy`] in front of it) and applied after
//!   the client moved on never deletes a key the same session created later (unlock, and a
//!   cancelled `lock()`), for both lock flavours;
//! * a fencing token is the key's create revision even when a key was left behind by a guard
//!   dropped outside a runtime, or created by another session on the same lease;
//! * a session given up on stays given up, and its keys go;
//! * a `lock()` cancelled at any point leaves no join count behind;
//! * a cancelled election `resume()` never deletes the leader key it did not check;
//! * lock names that are path prefixes of each other behave as documented (Go's layout);
//! * a waiter that hears nothing re-checks its place with a read (a lost DELETE event cannot
//!   leave it waiting for ever).
#![cfg(feature = "testkit")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{keys_under, ok, session, unique};
use etcd_lock::election::{Elector, RecipeElection};
use etcd_lock::kv::GetOptions;
use etcd_lock::lock::{self, DynLocker, Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::{Cluster, DelayProxy, EtcdBinary};
use etcd_lock::{Client, ClientOptions, Error, Session, SessionOptions};

lock_flavours!(
    late_unlock_never_deletes_the_next_key,
    late_cleanup_of_a_cancelled_lock_never_deletes_the_next_key,
);
per_version!(
    token_is_the_create_revision_after_a_guard_dropped_outside_a_runtime,
    token_is_the_create_revision_with_a_shared_lease,
    session_given_up_stays_given_up,
    cancelled_locks_leave_no_join_count,
    cancelled_resume_keeps_the_leader_key,
    quiet_waiters_recheck_their_place,
    nested_names_block_their_parent_only,
);

/// How long the slow member holds every request: longer than the client's request timeout.
const HELD: Duration = Duration::from_secs(4);
/// The client's request timeout in these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

fn proxy_for(cluster: &Cluster, member: usize) -> DelayProxy {
    let port = cluster.member(member).client_port();
    ok(DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], port))))
}

/// A client that talks to `first` until a request times out there, then to the other members.
async fn client_via(first: &DelayProxy, cluster: &Cluster) -> Client {
    let mut endpoints = vec![first.endpoint()];
    endpoints.extend(cluster.endpoints().into_iter().skip(1));
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Some(REQUEST_TIMEOUT));
    ok(Client::connect_with(endpoints, options).await)
}

/// The create revision of `key`, read from a member the proxy does not slow down.
async fn create_revision(client: &Client, key: &[u8]) -> Option<i64> {
    let found = ok(client
        .get_with(key.to_vec(), GetOptions::new().with_keys_only())
        .await);
    found.first().map(|kv| kv.create_revision)
}

/// Waits until a put sent through `proxy` after everything held there is visible: every
/// request the proxy held before it has reached its member by then.
async fn drain(proxy: &DelayProxy, direct: &Client, marker: &str) {
    let through = ok(Client::connect_with(
        [proxy.endpoint()],
        ClientOptions::new().with_request_timeout(Some(HELD * 4)),
    )
    .await);
    ok(through.put(marker, "drained").await);
    let deadline = Instant::now() + HELD * 4;
    while ok(direct.get(marker).await).first().is_none() {
        assert!(
            Instant::now() < deadline,
            "the proxy never delivered {marker}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// While `guard_key` (created at `token`) is held, a rival session must not get the lock.
async fn still_held(direct: &Client, key: &[u8], token: i64, name: &str) {
    assert_eq!(
        create_revision(direct, key).await,
        Some(token),
        "the held key {} was deleted by a late request",
        String::from_utf8_lossy(key)
    );
    let rival = session(direct, 10).await;
    match RecipeLock::new().try_lock(&rival, name.as_bytes()).await {
        Err(Error::Locked { .. }) => {}
        other => panic!("a rival got in while the lock was held: {other:?}"),
    }
    ok(rival.close().await);
}

/// `unlock()` times out at a slow member; the background delete through another member
/// releases the claim; the same session locks again (a new key); the held request then
/// reaches the slow member. It must not delete the new key.
async fn late_unlock_never_deletes_the_next_key<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::three(bin);
    let proxy = proxy_for(&cluster, 0);
    let direct = common::client(&cluster).await;
    let client = client_via(&proxy, &cluster).await;
    let s = session(&client, 30).await;
    let name = unique("late-unlock");
    let first = ok(locker.lock(&s, name.as_bytes()).await);
    proxy.set_delay(HELD);
    match first.unlock().await {
        Err(e) if e.is_timeout() => {}
        other => panic!("unlock through the slow member should time out: {other:?}"),
    }
    // The background delete (through another member now) removes the key and frees the name.
    common::wait_key_count(&direct, &name, 0, Duration::from_secs(10)).await;
    let again = ok(
        tokio::time::timeout(Duration::from_secs(5), locker.lock(&s, name.as_bytes()))
            .await
            .map_err(|_| "relock timed out"),
    );
    let again = ok(again);
    let (key, token) = (again.key().to_vec(), again.fencing_token());
    drain(&proxy, &direct, &format!("{name}marker")).await;
    proxy.set_delay(Duration::ZERO);
    still_held(&direct, &key, token, &name).await;
    assert!(!again.is_lost());
    ok(again.unlock().await);
    ok(s.close().await);
    assert!(keys_under(&direct, &name).await.is_empty());
}

/// A `lock()` is cancelled while its join request is held at a slow member; its cleanup fails
/// over; the same session locks again through another member; the held join and the first
/// cleanup attempt then reach the slow member. The new key must survive.
async fn late_cleanup_of_a_cancelled_lock_never_deletes_the_next_key<L: Locker>(
    bin: &EtcdBinary,
    locker: L,
) {
    let cluster = common::three(bin);
    let proxy = proxy_for(&cluster, 0);
    let direct = common::client(&cluster).await;
    let client = client_via(&proxy, &cluster).await;
    let holder = session(&direct, 30).await;
    let waiter = session(&client, 30).await;
    let name = unique("late-cleanup");
    let held = ok(locker.lock(&holder, name.as_bytes()).await);
    proxy.set_delay(HELD);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        locker.lock(&waiter, name.as_bytes()),
    )
    .await;
    assert!(cancelled.is_err(), "the lock was held: {cancelled:?}");
    ok(held.unlock().await);
    // The cleanup times out at the slow member, fails over, and frees the name; then the same
    // session takes the lock through another member.
    let again = ok(tokio::time::timeout(
        Duration::from_secs(8),
        locker.lock(&waiter, name.as_bytes()),
    )
    .await
    .map_err(|_| "relock timed out"));
    let again = ok(again);
    let (key, token) = (again.key().to_vec(), again.fencing_token());
    drain(&proxy, &direct, &format!("{name}marker")).await;
    proxy.set_delay(Duration::ZERO);
    // Whatever the held requests were, they have been applied now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_held(&direct, &key, token, &name).await;
    ok(again.unlock().await);
    ok(holder.close().await);
    ok(waiter.close().await);
}

/// A service lock whose guard was dropped outside a runtime leaves its key; the next
/// `ServiceLock::lock` of the session adopts it, with one unrelated write in between. The
/// token must be the adopted key's create revision, not the answer's header.
async fn token_is_the_create_revision_after_a_guard_dropped_outside_a_runtime(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let s = session(&client, 30).await;
    let name = unique("token-dropped");
    let locker = ServiceLock::new();
    // A first cycle, so the session has seen its own delete of the key.
    ok(ok(locker.lock(&s, name.as_bytes()).await).unlock().await);
    let second = ok(locker.lock(&s, name.as_bytes()).await);
    let left = second.fencing_token();
    assert_eq!(create_revision(&client, second.key()).await, Some(left));
    // Dropped on a thread without a runtime: nothing can delete the key.
    ok(std::thread::spawn(move || drop(second))
        .join()
        .map_err(|_| "drop panicked"));
    ok(client.put(format!("{name}unrelated"), "x").await);
    let third = ok(locker.lock(&s, name.as_bytes()).await);
    assert_eq!(
        create_revision(&client, third.key()).await,
        Some(third.fencing_token()),
        "token of an adopted key"
    );
    assert_eq!(
        third.fencing_token(),
        left,
        "the adopted key is the one left behind"
    );
    ok(third.unlock().await);
    ok(s.close().await);
}

/// Another session on the same lease creates the key; this session's `ServiceLock::lock`
/// adopts it after its client saw a later revision and one unrelated write happened.
async fn token_is_the_create_revision_with_a_shared_lease(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let a = session(&client, 30).await;
    let b = ok(Session::with_options(&client, SessionOptions::new().with_lease(a.lease())).await);
    let name = unique("token-shared");
    let other = unique("token-shared-other");
    let locker = ServiceLock::new();
    let by_b = ok(RecipeLock::new().lock(&b, name.as_bytes()).await);
    let created = by_b.fencing_token();
    // `a` takes and lets go of another name: its client sees later revisions.
    ok(ok(locker.lock(&a, other.as_bytes()).await).unlock().await);
    ok(client.put(format!("{name}unrelated"), "x").await);
    let by_a = ok(locker.lock(&a, name.as_bytes()).await);
    assert_eq!(by_a.key(), by_b.key(), "one lease, one key");
    assert_eq!(
        by_a.fencing_token(),
        created,
        "the token must be the shared key's create revision"
    );
    ok(by_a.unlock().await);
    // The same key, so `b`'s guard finds it gone.
    match by_b.unlock().await {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("the shared key was released by `a`: {other:?}"),
    }
    ok(a.close().await);
}

/// The answers to the session's keep-alives are held past their timeout while etcd itself
/// receives every refresh (the lease stays alive on the server): the client gives the session
/// up at its local deadline. From then on it stays given up, whatever answers arrive, and its
/// key goes at once (the client revokes the lease it gave up on) rather than whenever etcd
/// would expire it.
async fn session_given_up_stays_given_up(bin: &EtcdBinary) {
    const TTL: i64 = 3;
    let cluster = common::single(bin);
    let direct = common::client(&cluster).await;
    let proxy = proxy_for(&cluster, 0);
    let client = ok(Client::connect_with([proxy.endpoint()], ClientOptions::new()).await);
    let s = session(&client, TTL).await;
    let name = unique("given-up");
    let guard = ok(RecipeLock::new().lock(&s, name.as_bytes()).await);
    // Keep-alives go out every second and time out after one: answers held 1.5 s never count.
    proxy.set_reply_delay(Duration::from_millis(1500));
    let held = Instant::now();
    while !s.is_lost() {
        assert!(
            held.elapsed() < Duration::from_secs(10),
            "the session never gave up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gave_up = Instant::now();
    // etcd still has the lease (refreshed by every held keep-alive); the key must go anyway,
    // well before etcd would expire the lease (TTL after the last refresh).
    common::wait_key_count(&direct, &name, 0, Duration::from_millis(1500)).await;
    assert!(gave_up.elapsed() < Duration::from_millis(1500));
    proxy.set_reply_delay(Duration::ZERO);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert!(s.is_lost(), "the lost session came back");
        assert!(guard.is_lost(), "the guard came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rival = session(&direct, 10).await;
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        RecipeLock::new().lock(&rival, name.as_bytes()),
    )
    .await;
    let got = ok(ok(got.map_err(|_| "rival timed out")));
    ok(got.unlock().await);
    ok(rival.close().await);
}

/// `lock()` futures dropped at every point — including while a join opens the client's prefix
/// watch — leave no join in progress, and the far path stays usable.
async fn cancelled_locks_leave_no_join_count(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let name = unique("join-count");
    let lockers: [Box<dyn DynLocker>; 2] =
        [Box::new(RecipeLock::new()), Box::new(ServiceLock::new())];
    for locker in &lockers {
        let (s1, s2) = (session(&client, 10).await, session(&client, 10).await);
        // Polled in order: the first join is in progress when the second starts, so the second
        // opens the prefix watch — and is dropped right there (a zero timeout polls it once).
        let first = locker.lock(&s1, name.as_bytes());
        let second = tokio::time::timeout(Duration::ZERO, locker.lock(&s2, name.as_bytes()));
        let (first, second) = tokio::join!(first, second);
        assert!(second.is_err(), "a zero timeout cancels the second lock");
        ok(ok(first).unlock().await);
        // Cancelled at other points too: a held lock and waiters given up after 0..30 ms.
        let held = ok(locker.lock(&s1, name.as_bytes()).await);
        for ms in 0..30u64 {
            let _ =
                tokio::time::timeout(Duration::from_millis(ms), locker.lock(&s2, name.as_bytes()))
                    .await;
        }
        ok(held.unlock().await);
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock::stats(&client).joins_in_progress != 0 {
            assert!(
                Instant::now() < deadline,
                "{}: joins left in progress: {:?}",
                locker.flavour(),
                lock::stats(&client)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ok(s1.close().await);
        ok(s2.close().await);
    }
    common::wait_key_count(&client, &name, 0, Duration::from_secs(5)).await;
}

/// A leader's process "crashes" (its leadership is forgotten, its lease lives on); a new
/// process adopts the lease and resumes, but its check txn is held at a slow member and the
/// resume is cancelled. The leader key it never checked must stay.
async fn cancelled_resume_keeps_the_leader_key(bin: &EtcdBinary) {
    let cluster = common::three(bin);
    let direct = common::client(&cluster).await;
    let old = session(&direct, 30).await;
    let name = unique("resume-cancel");
    let leading = ok(RecipeElection::new()
        .campaign(&old, name.as_bytes(), b"v")
        .await);
    let (key, rev) = (leading.key().to_vec(), leading.revision());
    // The crash: nothing of the old process resigns or deletes.
    std::mem::forget(leading);
    let proxy = proxy_for(&cluster, 0);
    let client = client_via(&proxy, &cluster).await;
    let adopted =
        ok(Session::with_options(&client, SessionOptions::new().with_lease(old.lease())).await);
    // The check is answered at once but its answer is held (holding the request instead would
    // let the member see the cancel mid-txn, which etcd 3.5.1 can panic on, etcd issue 14110).
    proxy.set_reply_delay(HELD);
    let resumed = tokio::time::timeout(
        Duration::from_millis(300),
        RecipeElection::new().resume(&adopted, name.as_bytes(), &key, rev),
    )
    .await;
    assert!(resumed.is_err(), "the check's answer was held");
    // Time for any background delete (requests are not held), and for the held answers to
    // come through before the session's client talks through the proxy again.
    tokio::time::sleep(HELD + Duration::from_secs(1)).await;
    proxy.set_reply_delay(Duration::ZERO);
    assert_eq!(
        create_revision(&direct, &key).await,
        Some(rev),
        "the unchecked leader key was deleted"
    );
    // Resumed for real now, it is the leader, and resigns cleanly.
    let leadership = ok(RecipeElection::new()
        .resume(&adopted, name.as_bytes(), &key, rev)
        .await);
    ok(leadership.resign().await);
    ok(old.close().await);
}

/// A recipe waiter behind a long hold hears no event; after 3 s it re-checks its place with one
/// linearizable `KV/Txn` (then after 6 s more, ...), so a DELETE that etcd failed to deliver
/// cannot keep it waiting for ever.
async fn quiet_waiters_recheck_their_place(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let direct = common::client(&cluster).await;
    let name = unique("quiet");
    let holder = session(&direct, 30).await;
    let held = ok(RecipeLock::new().lock(&holder, name.as_bytes()).await);
    let waiter_client = common::client(&cluster).await;
    let waiter = session(&waiter_client, 30).await;
    let waiting = {
        let (waiter, name) = (waiter.clone(), name.clone());
        tokio::spawn(async move { RecipeLock::new().lock(&waiter, name.as_bytes()).await })
    };
    common::wait_key_count(&direct, &name, 2, Duration::from_secs(5)).await;
    let before = waiter_client.stats().unary_calls;
    tokio::time::sleep(Duration::from_millis(7500)).await;
    let rechecks = waiter_client.stats().unary_calls - before;
    assert!(
        (1..=2).contains(&rechecks),
        "{rechecks} reads while waiting 7.5 s behind a holder (expected one, at 3 s)"
    );
    ok(held.unlock().await);
    let got = ok(ok(tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .map_err(|_| "waiter timed out"))
    .map_err(|e| e.to_string()));
    let got = ok(got);
    ok(got.unlock().await);
    ok(holder.close().await);
    ok(waiter.close().await);
}

/// Go's layout puts lock `a/b`'s keys under lock `a`'s prefix: a holder of `a/b` blocks `a` for
/// both flavours (as Go's `Mutex` and etcd's Lock service do), a holder of `a` does not block
/// `a/b`. Documented in the README ("Lock names that are path prefixes of each other").
async fn nested_names_block_their_parent_only(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let base = unique("nested");
    let (parent, child) = (format!("{base}a"), format!("{base}a/b"));
    let (s1, s2) = (session(&client, 10).await, session(&client, 10).await);
    let held_child = ok(RecipeLock::new().lock(&s1, child.as_bytes()).await);
    match RecipeLock::new().try_lock(&s2, parent.as_bytes()).await {
        Err(Error::Locked { .. }) => {}
        other => panic!("a holder of {child} must block {parent}: {other:?}"),
    }
    let service = tokio::time::timeout(
        Duration::from_millis(500),
        ServiceLock::new().lock(&s2, parent.as_bytes()),
    )
    .await;
    assert!(
        service.is_err(),
        "the service flavour counts nested keys too"
    );
    ok(held_child.unlock().await);
    // The other way round: the parent's holder does not block the child.
    let held_parent = ok(RecipeLock::new().lock(&s1, parent.as_bytes()).await);
    let child_guard = ok(RecipeLock::new().try_lock(&s2, child.as_bytes()).await);
    ok(child_guard.unlock().await);
    ok(held_parent.unlock().await);
    ok(s1.close().await);
    ok(s2.close().await);
}
