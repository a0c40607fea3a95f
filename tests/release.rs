//! Releasing a lock or leadership never leaves a key behind under a live lease, and never
//! deletes a key the same session took afterwards (issue 10, items 1, 4, 7, 8 and 10):
//!
//! * drop a guard (or leadership) and take the name again at once on the same session: the
//!   background delete of the old key must not remove the new one;
//! * an `unlock()`/`resign()` that fails (member down) or whose future is dropped mid-call:
//!   the key goes once the member is back, while the session stays alive;
//! * a waiter whose key someone else deleted gets `NotHeld`, and its session is not lost;
//! * `ServiceLock`'s unlock of a key that is already gone answers `Ok(())`, as documented,
//!   where the recipe answers `NotHeld`.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use common::{keys_under, ok, session};
use etcd_lock::election::{Elector, RecipeElection};
use etcd_lock::kv::GetOptions;
use etcd_lock::lock::{LockGuard, Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::{Client, ClientOptions, Error, Session};

lock_flavours!(
    drop_then_relock_keeps_the_new_key,
    failed_unlock_releases_the_lock_once_the_member_is_back,
    dropped_unlock_releases_the_lock,
);
election_flavours!(
    drop_then_campaign_keeps_the_new_key,
    failed_resign_releases_leadership_once_the_member_is_back,
);
per_version!(
    drop_then_try_lock_keeps_the_new_key,
    deleted_waiter_key_is_not_a_lost_session,
    unlock_of_a_deleted_key_per_flavour,
);

/// How often the drop-and-take-again race is tried per test.
const ROUNDS: usize = 12;
/// How long the member stays down while an unlock fails: longer than the 5 attempts
/// (100 ms .. 1.6 s apart) the cleanup used to give up after.
const DOWN_FOR: Duration = Duration::from_secs(4);
/// How long the background delete may take once the member is back.
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// Client settings: short request timeout so a call to a dead member fails quickly.
fn quick() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Some(Duration::from_secs(2)))
}

/// The create revision of `key`, if it exists.
async fn create_revision(client: &Client, key: &[u8]) -> Option<i64> {
    ok(client
        .get_with(key.to_vec(), GetOptions::new().with_keys_only())
        .await)
    .first()
    .map(|kv| kv.create_revision)
}

/// Asserts that another session cannot take `name` within `wait`.
async fn assert_cannot_take<L: Locker>(locker: &L, other: &Session, name: &str, wait: Duration) {
    if let Ok(taken) = tokio::time::timeout(wait, locker.lock(other, name.as_bytes())).await {
        let guard = ok(taken);
        panic!(
            "a second session took {name} (key {}) while the first still held it",
            guard.key_str()
        );
    }
}

async fn drop_then_relock_keeps_the_new_key<L: Locker>(bin: &EtcdBinary, locker: L) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let other_client = common::client(&cluster).await;
    let first = session(&client, 30).await;
    let other = session(&other_client, 30).await;
    for round in 0..ROUNDS {
        let name = common::unique("relock");
        let old = ok(locker.lock(&first, name.as_bytes()).await);
        let old_token = old.fencing_token();
        drop(old);
        let again = ok(locker.lock(&first, name.as_bytes()).await);
        assert!(
            again.fencing_token() > old_token,
            "round {round}: the new lock adopted the dropped guard's key (token {old_token}) \
             while its delete was still in flight"
        );
        // Give the dropped guard's background delete time to land.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            create_revision(&client, again.key()).await,
            Some(again.fencing_token()),
            "round {round}: the held lock's key was deleted behind the guard"
        );
        assert!(!again.is_lost());
        assert_cannot_take(&locker, &other, &name, Duration::from_millis(300)).await;
        ok(again.unlock().await);
    }
}

async fn drop_then_try_lock_keeps_the_new_key(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let first = session(&client, 30).await;
    let other = session(&common::client(&cluster).await, 30).await;
    let locker = RecipeLock::new();
    for round in 0..ROUNDS {
        let name = common::unique("retry");
        let old = ok(locker.try_lock(&first, name.as_bytes()).await);
        let old_token = old.fencing_token();
        drop(old);
        let again = ok(locker.try_lock(&first, name.as_bytes()).await);
        assert!(again.fencing_token() > old_token, "round {round}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            create_revision(&client, again.key()).await,
            Some(again.fencing_token()),
            "round {round}: the try_lock guard's key was deleted behind it"
        );
        match locker.try_lock(&other, name.as_bytes()).await {
            Err(Error::Locked { .. }) => {}
            other => panic!("round {round}: second session's try_lock: {other:?}"),
        }
        ok(again.unlock().await);
    }
}

async fn drop_then_campaign_keeps_the_new_key<E: Elector>(bin: &EtcdBinary, elector: E) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let first = session(&client, 30).await;
    let other = session(&common::client(&cluster).await, 30).await;
    for round in 0..ROUNDS {
        let name = common::unique("recampaign");
        let old = ok(elector.campaign(&first, name.as_bytes(), b"one").await);
        let old_rev = old.revision();
        drop(old);
        let again = ok(elector.campaign(&first, name.as_bytes(), b"two").await);
        assert!(again.revision() > old_rev, "round {round}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let leader = ok(elector.leader(&client, name.as_bytes()).await);
        assert_eq!(
            leader.as_ref().map(|l| l.key.clone()),
            Some(again.key().to_vec()),
            "round {round}: the leader key was deleted behind the leadership"
        );
        let rival = elector.campaign(&other, name.as_bytes(), b"rival");
        if let Ok(won) = tokio::time::timeout(Duration::from_millis(300), rival).await {
            panic!(
                "round {round}: a second session led while the first did: {:?}",
                ok(won).key_str()
            );
        }
        ok(again.resign().await);
    }
}

/// Kills the only member, runs `during` (which must fail), keeps the member down for
/// [`DOWN_FOR`], restarts it.
async fn with_member_down<T>(
    cluster: &mut Cluster,
    during: impl std::future::Future<Output = T>,
) -> T {
    ok(tokio::task::block_in_place(|| cluster.member_mut(0).kill()));
    let out = during.await;
    tokio::time::sleep(DOWN_FOR).await;
    ok(tokio::task::block_in_place(|| {
        cluster.member_mut(0).restart()
    }));
    out
}

/// Waits until `name/` is empty, then checks that `other` can take the lock and that
/// `owner` (whose unlock failed) is still alive.
async fn assert_released<L: Locker>(
    client: &Client,
    locker: &L,
    name: &str,
    owner: &Session,
    other: &Session,
) {
    let deadline = Instant::now() + RELEASE_BOUND;
    loop {
        let keys = match client
            .get_with(
                format!("{name}/"),
                GetOptions::new().with_prefix().with_keys_only(),
            )
            .await
        {
            Ok(r) => r.kvs().len(),
            Err(_) => usize::MAX,
        };
        if keys == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock key is still there {RELEASE_BOUND:?} after the member came back: \
             a failed unlock left it under a live lease ({:?})",
            keys_under(client, name).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken = tokio::time::timeout(RELEASE_BOUND, locker.lock(other, name.as_bytes())).await;
    ok(ok(ok(
        taken.map_err(|_| "second session could not take the lock")
    ))
    .unlock()
    .await);
    assert!(!owner.is_lost(), "the owner's session should have survived");
}

async fn failed_unlock_releases_the_lock_once_the_member_is_back<L: Locker>(
    bin: &EtcdBinary,
    locker: L,
) {
    let mut cluster = common::single(bin);
    let client = common::client_with(&cluster, quick()).await;
    let owner = session(&client, 60).await;
    let name = common::unique("failed-unlock");
    let guard: LockGuard = ok(locker.lock(&owner, name.as_bytes()).await);
    let unlocked = with_member_down(&mut cluster, guard.unlock()).await;
    assert!(
        unlocked.is_err(),
        "unlock with the member down: {unlocked:?}"
    );
    let checker = common::client(&cluster).await;
    let other = session(&checker, 30).await;
    assert_released(&checker, &locker, &name, &owner, &other).await;
}

async fn dropped_unlock_releases_the_lock<L: Locker>(bin: &EtcdBinary, locker: L) {
    let mut cluster = common::single(bin);
    let client = common::client_with(&cluster, quick()).await;
    let owner = session(&client, 60).await;
    let name = common::unique("dropped-unlock");
    let guard = ok(locker.lock(&owner, name.as_bytes()).await);
    // The member is down: the call is still retrying its connection when the timeout drops it
    // (or, rarely, has already failed).
    let cut_short = tokio::time::timeout(Duration::from_millis(40), guard.unlock());
    let outcome = with_member_down(&mut cluster, cut_short).await;
    assert!(
        !matches!(outcome, Ok(Ok(()))),
        "an unlock with the member down cannot succeed: {outcome:?}"
    );
    let checker = common::client(&cluster).await;
    let other = session(&checker, 30).await;
    assert_released(&checker, &locker, &name, &owner, &other).await;
}

async fn failed_resign_releases_leadership_once_the_member_is_back<E: Elector>(
    bin: &EtcdBinary,
    elector: E,
) {
    let mut cluster = common::single(bin);
    let client = common::client_with(&cluster, quick()).await;
    let owner = session(&client, 60).await;
    let name = common::unique("failed-resign");
    let leadership = ok(elector.campaign(&owner, name.as_bytes(), b"v").await);
    let resigned = with_member_down(&mut cluster, leadership.resign()).await;
    assert!(
        resigned.is_err(),
        "resign with the member down: {resigned:?}"
    );
    let checker = common::client(&cluster).await;
    let other = session(&checker, 30).await;
    let deadline = Instant::now() + RELEASE_BOUND;
    while !keys_under(&checker, &name).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the leader key is still there after the member came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let won = tokio::time::timeout(
        RELEASE_BOUND,
        elector.campaign(&other, name.as_bytes(), b"w"),
    );
    ok(
        ok(ok(won.await.map_err(|_| "second session could not lead")))
            .resign()
            .await,
    );
    assert!(!owner.is_lost(), "the owner's session should have survived");
}

async fn deleted_waiter_key_is_not_a_lost_session(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let admin = common::client(&cluster).await;
    let holder = session(&common::client(&cluster).await, 30).await;
    let waiter_client = common::client(&cluster).await;
    let waiter = session(&waiter_client, 30).await;
    let locker = RecipeLock::new();
    let elector = RecipeElection::new();
    let name = common::unique("deleted-waiter");
    let held = ok(locker.lock(&holder, name.as_bytes()).await);
    let wait = tokio::spawn({
        let waiter = waiter.clone();
        let name = name.clone();
        async move { locker.lock(&waiter, name.as_bytes()).await }
    });
    common::wait_key_count(&admin, &name, 2, Duration::from_secs(5)).await;
    let waiter_key = format!("{name}/{:x}", waiter.lease());
    ok(admin.delete(waiter_key.clone()).await);
    match tokio::time::timeout(Duration::from_secs(5), wait).await {
        Ok(Ok(Err(Error::NotHeld { key }))) => assert_eq!(key, waiter_key),
        other => panic!("waiter whose key was deleted: {other:?}"),
    }
    assert!(
        !waiter.is_lost(),
        "a key deleted by someone else must not mark the whole session lost"
    );
    // The session still works: after the holder leaves, it takes the lock.
    ok(held.unlock().await);
    ok(ok(locker.lock(&waiter, name.as_bytes()).await)
        .unlock()
        .await);

    // The same for a candidate.
    let election = common::unique("deleted-candidate");
    let leading = ok(elector.campaign(&holder, election.as_bytes(), b"a").await);
    let campaign = tokio::spawn({
        let waiter = waiter.clone();
        let election = election.clone();
        async move { elector.campaign(&waiter, election.as_bytes(), b"b").await }
    });
    common::wait_key_count(&admin, &election, 2, Duration::from_secs(5)).await;
    ok(admin
        .delete(format!("{election}/{:x}", waiter.lease()))
        .await);
    match tokio::time::timeout(Duration::from_secs(5), campaign).await {
        Ok(Ok(Err(Error::NotHeld { .. }))) => {}
        other => panic!("candidate whose key was deleted: {other:?}"),
    }
    assert!(!waiter.is_lost());
    ok(leading.resign().await);
}

async fn unlock_of_a_deleted_key_per_flavour(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let admin = common::client(&cluster).await;
    let owner = session(&common::client(&cluster).await, 30).await;

    // Recipe: the conditional delete finds no key with the token -> NotHeld, session intact.
    let name = common::unique("gone-recipe");
    let guard = ok(RecipeLock::new().lock(&owner, name.as_bytes()).await);
    ok(admin.delete(guard.key().to_vec()).await);
    match guard.unlock().await {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("recipe unlock of a deleted key: {other:?}"),
    }
    assert!(!owner.is_lost());

    // Service: released by the same conditional delete (not `Lock/Unlock`, whose bare header
    // cannot tell), so it tells a key that was already gone alike.
    let name = common::unique("gone-service");
    let guard = ok(ServiceLock::new().lock(&owner, name.as_bytes()).await);
    ok(admin.delete(guard.key().to_vec()).await);
    match guard.unlock().await {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("service unlock of a deleted key: {other:?}"),
    }
    assert!(!owner.is_lost());
    // Both leave the name free for the same session.
    ok(ok(ServiceLock::new().lock(&owner, name.as_bytes()).await)
        .unlock()
        .await);
}
