//! Peer-only partitions: one member of a 3-member container cluster loses every packet to and
//! from its peers (port 2380, filtered inside its own network namespace by
//! `ContainerCluster::isolate_peers`) while the client still reaches its client port. The
//! member answers, but has no leader and sees no new revision: streams on it must not go
//! silent. Images `etcd-lock/etcd:3.5.1` and `etcd-lock/etcd:3.4.23` (`scripts/build-images`).
//!
//! Needs Docker, root (for `nsenter` + `iptables`) and the images. Without Docker the tests
//! print a note and pass, except when `CI` is set to anything non-empty, where they fail.
#![cfg(feature = "testkit")]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{keys_under, ok, unique};
use etcd_lock::testkit::ContainerCluster;
use etcd_lock::{Client, LockGuard, Locker, RecipeLock, ServiceLock, Session};
use etcd_lock::{Error, SessionOptions};

per_image!(
    watch_on_isolated_member_fails_over_and_delivers,
    recipe_waiter_on_isolated_member_gets_the_lock,
    service_waiter_on_isolated_member_waits_for_the_heal,
    keep_alive_on_isolated_member_keeps_the_lease,
);

/// What the require-leader check costs: etcd cancels a stream after three election timeouts
/// (1 s each by default) without a leader, plus the one it takes to notice the leader is gone.
/// The bound leaves room for a loaded machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
/// How long a healed member may take to let a blocked `ServiceLock` waiter through (seen:
/// about 3 s on 3.4.23, about 11 s on 3.5.1).
const HEAL_BOUND: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs blocking testkit code without stalling the runtime's other worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A started 3-member cluster, its leader, and a follower (the member to isolate).
fn start(image: &str) -> (ContainerCluster, usize, usize) {
    let cluster = match blocking(|| ContainerCluster::start(image, 3)) {
        Ok(c) => c,
        Err(e) => panic!("starting 3 containers of {image}: {e}"),
    };
    let leader = match blocking(|| cluster.wait_leader(Duration::from_secs(15))) {
        Ok(i) => i,
        Err(e) => panic!("no leader: {e}"),
    };
    (cluster, leader, (leader + 1) % 3)
}

fn isolate(cluster: &ContainerCluster, i: usize) -> Instant {
    if let Err(e) = blocking(|| cluster.isolate_peers(i)) {
        panic!("isolating member {i} from its peers: {e}");
    }
    Instant::now()
}

fn heal(cluster: &ContainerCluster, i: usize) {
    if let Err(e) = blocking(|| cluster.heal_peers(i)) {
        panic!("healing member {i}: {e}");
    }
}

/// Every endpoint, member `first` first: the client starts out on it.
fn pinned_to(cluster: &ContainerCluster, first: usize) -> Vec<String> {
    let n = cluster.members();
    (0..n).map(|k| cluster.endpoint((first + k) % n)).collect()
}

/// Every endpoint except member `skip`'s.
fn others(cluster: &ContainerCluster, skip: usize) -> Vec<String> {
    (0..cluster.members())
        .filter(|&i| i != skip)
        .map(|i| cluster.endpoint(i))
        .collect()
}

async fn session(client: &Client, ttl: i64) -> Session {
    ok(Session::with_options(client, SessionOptions::new().with_ttl(ttl)).await)
}

/// `f` retried on errors for up to 10 s (the majority may be electing a new leader).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what} kept failing for 10 s: {e}"),
        }
    }
}

/// Polls until `name/` holds `want` keys (read through `client`), within 10 s.
async fn wait_keys(client: &Client, name: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys_under(client, name).await.len() != want {
        assert!(
            Instant::now() < deadline,
            "expected {want} keys under {name}/: {:?}",
            keys_under(client, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The remaining TTL of `lease`, read through `client` (a member of the majority).
async fn remaining_ttl(client: &Client, lease: i64) -> i64 {
    eventually("lease_time_to_live", || {
        client.lease_time_to_live(lease, false)
    })
    .await
    .ttl()
}

// ---------------------------------------------------------------------------------------------
// cases

/// A watch whose stream is on the member that gets isolated is moved to another member when
/// etcd ends the stream for want of a leader (require-leader metadata), resumes from its next
/// unseen revision, and delivers a PUT made through the majority within `FAILOVER_BOUND`.
/// Without the metadata the isolated member keeps the stream open and silent.
async fn watch_on_isolated_member_fails_over_and_delivers(image: &str) {
    let (cluster, _leader, isolated) = start(image);
    let key = format!("{}k", unique("partition_watch"));
    let watching = common::connect_quick(&pinned_to(&cluster, isolated)).await;
    let writer = common::connect_quick(&others(&cluster, isolated)).await;
    let mut watcher = ok(watching.watch(key.as_str()).await);
    // The stream is live on the member about to be isolated.
    ok(writer.put(key.as_str(), "before").await);
    let first = tokio::time::timeout(Duration::from_secs(5), watcher.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "{first:?}");

    isolate(&cluster, isolated);
    eventually("put through the majority", || {
        writer.put(key.as_str(), "during")
    })
    .await;
    let put_at = Instant::now();
    let got = tokio::time::timeout(FAILOVER_BOUND, watcher.next()).await;
    let batch = match got {
        Ok(Some(Ok(batch))) => batch,
        other => panic!(
            "the PUT made through the majority did not reach the watcher within \
             {FAILOVER_BOUND:?}: {other:?}"
        ),
    };
    let values: Vec<&[u8]> = batch
        .events()
        .iter()
        .filter_map(|e| e.kv.as_ref().map(|kv| kv.value.as_slice()))
        .collect();
    assert_eq!(values, [b"during".as_slice()]);
    eprintln!(
        "{image}: watch delivered {:?} after the put",
        put_at.elapsed()
    );
    heal(&cluster, isolated);
}

/// The holder (majority side) and a waiter whose client starts on the member that is then
/// isolated; the holder unlocks while the waiter's member is cut off. Returns the waiter's
/// lock task, the time of the unlock, and the clients and sessions to check afterwards.
struct Scene {
    cluster: ContainerCluster,
    isolated: usize,
    name: String,
    observer: Client,
    holder: Session,
    waiter: tokio::task::JoinHandle<Result<LockGuard, Error>>,
    unlocked_at: Instant,
}

async fn unlock_while_waiter_isolated<L>(image: &str, locker: L) -> Scene
where
    L: Locker + Clone + Send + Sync + 'static,
{
    let (cluster, leader, isolated) = start(image);
    let name = unique("partition_lock").trim_end_matches('/').to_string();
    let holder_client = common::connect_quick(&pinned_to(&cluster, leader)).await;
    let waiter_client = common::connect_quick(&pinned_to(&cluster, isolated)).await;
    let observer = common::connect_quick(&others(&cluster, isolated)).await;
    let holder = session(&holder_client, 5).await;
    // TTL 10: the waiter's keep-alive stream starts on the member being isolated and must move
    // to the majority; a session whose last answered keep-alive is a TTL old is given up for
    // good (no late answer revives it), so the TTL leaves room for that move on a busy machine.
    let waiter_session = session(&waiter_client, 10).await;
    let guard = ok(locker.lock(&holder, name.as_bytes()).await);
    let waiter = {
        let (locker, name) = (locker.clone(), name.clone());
        tokio::spawn(async move { locker.lock(&waiter_session, name.as_bytes()).await })
    };
    wait_keys(&observer, &name, 2).await;

    isolate(&cluster, isolated);
    // The holder's client is on the leader, inside the majority: one attempt must do.
    ok(locker.unlock(guard).await);
    let unlocked_at = Instant::now();
    Scene {
        cluster,
        isolated,
        name,
        observer,
        holder,
        waiter,
        unlocked_at,
    }
}

/// `RecipeLock`: the waiter's prefix watch is on the isolated member. etcd ends it for want of
/// a leader, the hub resumes it on another member, the DELETE of the holder's key arrives and
/// the waiter takes the lock within `FAILOVER_BOUND`, while its member is still isolated. The
/// holder's session (on the majority) stays alive throughout.
async fn recipe_waiter_on_isolated_member_gets_the_lock(image: &str) {
    let mut scene = unlock_while_waiter_isolated(image, RecipeLock::new()).await;
    let got = tokio::time::timeout(FAILOVER_BOUND, &mut scene.waiter).await;
    let guard = match got {
        Ok(Ok(Ok(guard))) => guard,
        Ok(Ok(Err(e))) => panic!("the waiter's lock() failed: {e}"),
        Ok(Err(e)) => panic!("the waiter's task failed: {e}"),
        Err(_) => panic!(
            "the waiter did not get the lock within {FAILOVER_BOUND:?} of the unlock; keys: {:?}",
            keys_under(&scene.observer, &scene.name).await
        ),
    };
    eprintln!(
        "{image}: recipe waiter got the lock {:?} after the unlock",
        scene.unlocked_at.elapsed()
    );
    assert_eq!(
        keys_under(&scene.observer, &scene.name).await,
        [String::from_utf8_lossy(guard.key()).into_owned()]
    );
    assert!(!scene.holder.is_lost(), "the holder's session was lost");
    assert!(remaining_ttl(&scene.observer, scene.holder.lease()).await > 0);
    heal(&scene.cluster, scene.isolated);
}

/// `ServiceLock`, pinned as observed (3.4.23 and 3.5.1 alike): etcd runs the Lock service
/// inside the member the call reached, through an in-process client that watches that same
/// member without require-leader. The blocked `Lock` call on the isolated member therefore
/// hears nothing until the partition heals, whatever this client does: its own streams fail
/// over, but the unary `Lock` call has no deadline and etcd gives no sign. Once healed, the
/// member catches up, its watch delivers the DELETE, and the waiter gets the lock (within
/// `HEAL_BOUND`). Use
/// `RecipeLock` where a member cut off from its peers must not stall waiters.
async fn service_waiter_on_isolated_member_waits_for_the_heal(image: &str) {
    let mut scene = unlock_while_waiter_isolated(image, ServiceLock::new()).await;
    let early = tokio::time::timeout(FAILOVER_BOUND, &mut scene.waiter).await;
    assert!(
        early.is_err(),
        "the service waiter returned while its member was isolated: {early:?}"
    );
    // The waiter's key is still there, its lease kept alive from the majority side.
    assert_eq!(keys_under(&scene.observer, &scene.name).await.len(), 1);
    assert!(!scene.holder.is_lost(), "the holder's session was lost");

    heal(&scene.cluster, scene.isolated);
    let healed_at = Instant::now();
    let got = tokio::time::timeout(HEAL_BOUND, &mut scene.waiter).await;
    match got {
        Ok(Ok(Ok(guard))) => assert_eq!(
            keys_under(&scene.observer, &scene.name).await,
            [String::from_utf8_lossy(guard.key()).into_owned()]
        ),
        other => panic!("the service waiter did not get the lock after the heal: {other:?}"),
    }
    eprintln!(
        "{image}: service waiter got the lock {:?} after the heal",
        healed_at.elapsed()
    );
}

/// A session whose keep-alive stream is on the member that gets isolated keeps its lease for
/// more than twice its TTL: the stream moves to another member (etcd ends it for want of a
/// leader, or a refresh times out), and the lease is still live as seen from the majority.
async fn keep_alive_on_isolated_member_keeps_the_lease(image: &str) {
    let (cluster, _leader, isolated) = start(image);
    let client = common::connect_quick(&pinned_to(&cluster, isolated)).await;
    let observer = common::connect_quick(&others(&cluster, isolated)).await;
    let ttl = 4;
    let kept = session(&client, ttl).await;
    let since = isolate(&cluster, isolated);
    let hold = Duration::from_secs(2 * ttl as u64 + 2);
    while since.elapsed() < hold {
        assert!(
            !kept.is_lost(),
            "session lost {:?} after isolating its member",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = remaining_ttl(&observer, kept.lease()).await;
    assert!(
        left > 0,
        "lease gone {hold:?} after isolating the keep-alive's member"
    );
    heal(&cluster, isolated);
}
