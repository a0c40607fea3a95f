//! Cluster membership against real 3-member clusters, once per etcd version: bad input is
//! refused with typed errors, a voter added without a process is renamed (`MemberUpdate`) and
//! removed, and a learner joins (`--initial-cluster-state existing`), is refused promotion
//! while it has not caught up, is promoted once it has, serves a lock as a voter, and is
//! removed. A lock is taken and released after every step. One cluster per version.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use common::{ok, unique};
use etcd_lock::lock::{Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Client, Error, EtcdErrorKind, Session};

per_version!(learner_joins_is_promoted_and_removed_while_locks_work);

/// Takes and releases a lock of each flavour through `client`.
async fn lock_cycle(client: &Client, step: &str) {
    let session = ok(Session::new(client).await);
    let name = unique(&format!("membership-{step}"));
    let guard = ok(RecipeLock::new().lock(&session, name.as_bytes()).await);
    ok(guard.unlock().await);
    let guard = ok(ServiceLock::new().lock(&session, name.as_bytes()).await);
    ok(guard.unlock().await);
    ok(session.close().await);
}

/// `member_add` (or `_as_learner`), repeated while etcd answers `unhealthy cluster`: a member
/// refuses reconfiguration until it has been connected to a quorum for 5 s (etcd's
/// `HealthInterval`), which a cluster started a moment ago has not.
async fn add(
    client: &Client,
    url: &str,
    learner: bool,
) -> Result<etcd_lock::cluster::MemberAddResponse, Error> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let result = if learner {
            client.member_add_as_learner([url]).await
        } else {
            client.member_add([url]).await
        };
        match result {
            Err(e)
                if e.etcd_kind() == Some(EtcdErrorKind::Unhealthy) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => return other,
        }
    }
}

fn kind(result: Result<impl std::fmt::Debug, Error>) -> Option<EtcdErrorKind> {
    match result {
        Ok(v) => panic!("expected an etcd error, got {v:?}"),
        Err(e) => e.etcd_kind(),
    }
}

fn invalid(result: Result<impl std::fmt::Debug, Error>) -> &'static str {
    match result {
        Err(Error::InvalidArgument { argument, .. }) => argument,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

async fn learner_joins_is_promoted_and_removed_while_locks_work(bin: &EtcdBinary) {
    let started = Instant::now();
    let mut cluster = common::three(bin);
    let client = common::client(&cluster).await;
    lock_cycle(&client, "start").await;
    let voters: Vec<u64> = ok(client.member_list().await)
        .members()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(voters.len(), 3);

    // Bad input: refused before anything is sent, or by etcd with a typed error.
    assert_eq!(
        invalid(client.member_add(Vec::<String>::new()).await),
        "peer_urls"
    );
    assert_eq!(
        invalid(client.member_add(["127.0.0.1:1"]).await),
        "peer_urls"
    );
    assert_eq!(invalid(client.member_remove(0).await), "id");
    assert_eq!(invalid(client.member_promote(0).await), "id");
    assert_eq!(
        invalid(client.member_update(voters[0], Vec::<String>::new()).await),
        "peer_urls"
    );
    let unknown = 0x0bad_cafe_u64;
    assert_eq!(
        kind(client.member_remove(unknown).await),
        Some(EtcdErrorKind::MemberNotFound)
    );
    assert_eq!(
        kind(client.member_promote(unknown).await),
        Some(EtcdErrorKind::MemberNotFound)
    );
    assert_eq!(
        kind(client.member_update(unknown, ["http://127.0.0.1:1"]).await),
        Some(EtcdErrorKind::MemberNotFound)
    );
    assert_eq!(
        kind(client.member_promote(voters[1]).await),
        Some(EtcdErrorKind::MemberNotLearner)
    );
    let taken = cluster.member(0).peer_port();
    assert_eq!(
        kind(add(&client, &format!("http://127.0.0.1:{taken}"), false).await),
        Some(EtcdErrorKind::PeerUrlExists)
    );
    lock_cycle(&client, "bad-input").await;

    // A voter that never starts: announced, its peer URL changed, removed again. 3 of 4
    // voters still make a quorum meanwhile.
    let ghost_url = format!(
        "http://127.0.0.1:{}",
        cluster.plan_member().map(|p| p.client_port()).unwrap_or(1)
    );
    let added = ok(add(&client, &ghost_url, false).await);
    let ghost = added.member_id();
    assert!(ghost != 0 && !voters.contains(&ghost));
    assert_eq!(added.members().len(), 4);
    assert!(added
        .member()
        .is_some_and(|m| !m.is_learner && m.peer_ur_ls == [ghost_url.clone()]));
    lock_cycle(&client, "voter-added").await;
    let moved_url = format!("http://127.0.0.2:{}", cluster.member(1).peer_port());
    let updated = ok(client.member_update(ghost, [moved_url.clone()]).await);
    assert!(updated
        .members()
        .iter()
        .any(|m| m.id == ghost && m.peer_ur_ls == [moved_url.clone()]));
    let listed = ok(client.member_list().await);
    let ghost_listed = listed.members().iter().find(|m| m.id == ghost);
    assert_eq!(
        ghost_listed.map(|m| m.peer_ur_ls.clone()),
        Some(vec![moved_url])
    );
    lock_cycle(&client, "voter-updated").await;
    let after = ok(client.member_remove(ghost).await);
    assert_eq!(after.members().len(), 3);
    assert!(after.members().iter().all(|m| m.id != ghost));
    lock_cycle(&client, "voter-removed").await;

    // A learner: announced, refused promotion before it runs, started, promoted, removed.
    let planned = ok(cluster.plan_member());
    let added = ok(add(&client, &planned.peer_url(), true).await);
    let learner = added.member_id();
    assert!(added.member().is_some_and(|m| m.is_learner));
    let initial = added.initial_cluster(planned.name());
    assert_eq!(initial.split(',').count(), 4, "{initial}");
    assert!(
        initial.contains(&format!("{}={}", planned.name(), planned.peer_url())),
        "{initial}"
    );
    assert_eq!(
        kind(client.member_promote(learner).await),
        Some(EtcdErrorKind::LearnerNotReady),
        "a learner that has not started cannot be in sync"
    );
    lock_cycle(&client, "learner-added").await;

    let index = ok(cluster.join(planned, &initial));
    let learner_endpoint = cluster.member(index).endpoint();
    let status = ok(client.status_of(&learner_endpoint).await);
    assert_eq!(status.member_id(), learner);
    assert!(status.is_learner());
    lock_cycle(&client, "learner-started").await;

    // Promotable once in sync with the leader: retry while etcd says it is not ready yet.
    let deadline = Instant::now() + Duration::from_secs(20);
    let promoted = loop {
        match client.member_promote(learner).await {
            Ok(resp) => break resp,
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::LearnerNotReady) => {
                assert!(Instant::now() < deadline, "learner never caught up: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("member_promote: {e}"),
        }
    };
    assert_eq!(promoted.members().len(), 4);
    assert!(promoted.members().iter().all(|m| !m.is_learner));
    assert!(!ok(client.status_of(&learner_endpoint).await).is_learner());
    // The promoted member serves locks itself.
    let direct = common::connect_quick(&[learner_endpoint]).await;
    lock_cycle(&direct, "promoted-direct").await;
    lock_cycle(&client, "promoted").await;

    let after = ok(client.member_remove(learner).await);
    assert_eq!(after.members().len(), 3);
    ok(cluster.remove_member(index));
    let listed = ok(client.member_list().await);
    let mut ids: Vec<u64> = listed.members().iter().map(|m| m.id).collect();
    ids.sort_unstable();
    let mut want = voters.clone();
    want.sort_unstable();
    assert_eq!(ids, want);
    lock_cycle(&client, "learner-removed").await;
    eprintln!(
        "membership test on etcd {}: {:?}",
        bin.version(),
        started.elapsed()
    );
}
