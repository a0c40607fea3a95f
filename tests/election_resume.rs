//! Issue 12, "Elections resumed": a leader process is killed without resigning; another
//! process adopts its lease and resumes the leadership from the saved key and revision
//! (`RecipeElection::resume`, `ServiceElection::resume`), still leads, proclaims and resigns.
//! Resumes with a wrong revision, key or lease fail with typed errors.
#![cfg(feature = "testkit")]

mod common;

use std::time::Duration;

use common::child::ChildTest;
use common::ok;
use etcd_lock::election::{Elector, RecipeElection, ServiceElection};
use etcd_lock::proto::v3electionpb::LeaderKey;
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Error, Leadership, Session, SessionOptions};

const CHILD_ENV: &str = "ETCD_LOCK_TEST_RESUME_LEADER";

/// Not a test on its own: when started by `resume_after_restart`, campaigns with a TTL 30
/// session, prints `RESUME <lease> <rev> <key hex>` once elected, and waits to be killed.
#[tokio::test]
async fn leader_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [endpoint, name, flavour] = parts[..] else {
        panic!("bad spec {spec}")
    };
    let client = ok(etcd_lock::Client::connect([endpoint]).await);
    let s = ok(Session::with_options(&client, SessionOptions::new().with_ttl(30)).await);
    let leadership = match flavour {
        "service" => {
            ServiceElection::new()
                .campaign(&s, name.as_bytes(), b"first")
                .await
        }
        _ => {
            RecipeElection::new()
                .campaign(&s, name.as_bytes(), b"first")
                .await
        }
    };
    let leadership = ok(leadership);
    let saved = leadership.leader_key();
    println!("RESUME {} {} {}", saved.lease, saved.rev, hex(&saved.key));
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop(leadership);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| ok(u8::from_str_radix(&text[i..i + 2], 16)))
        .collect()
}

async fn resume_with(
    flavour: &str,
    session: &Session,
    saved: &LeaderKey,
) -> Result<Leadership, Error> {
    match flavour {
        "service" => ServiceElection::new().resume(session, saved).await,
        _ => {
            RecipeElection::new()
                .resume(session, &saved.name, &saved.key, saved.rev)
                .await
        }
    }
}

async fn resume_after_restart(bin: &EtcdBinary, flavour: &str) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let name = common::unique("resume");
    let endpoint = cluster.endpoints()[0].clone();

    // The first leader: another process, killed (SIGKILL) without resigning or revoking.
    let spec = format!("{endpoint}|{name}|{flavour}");
    let mut child = ChildTest::spawn("leader_child", CHILD_ENV, &spec);
    let line = child
        .line_starting("RESUME ", Duration::from_secs(20))
        .await;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [_, lease, rev, key] = fields[..] else {
        panic!("bad line {line}")
    };
    let saved = LeaderKey {
        name: name.as_bytes().to_vec(),
        key: unhex(key),
        rev: ok(rev.parse()),
        lease: ok(lease.parse()),
    };
    ok(child.child.kill().await);
    ok(child.child.wait().await);

    // The key outlives the process: its lease has 30 s left.
    let elector = RecipeElection::new();
    let leader = ok(elector.leader(&client, name.as_bytes()).await);
    let leader = leader.unwrap_or_else(|| panic!("no leader after the kill"));
    assert_eq!(
        (leader.key.clone(), leader.create_revision),
        (saved.key.clone(), saved.rev)
    );

    // This process adopts the lease and resumes.
    let options = SessionOptions::new().with_lease(saved.lease);
    let session = ok(Session::with_options(&client, options).await);

    // Wrong arguments first: typed errors, nothing written, the key stays.
    let wrong_rev = LeaderKey {
        rev: saved.rev + 1,
        ..saved.clone()
    };
    match resume_with(flavour, &session, &wrong_rev).await {
        Err(Error::NotHeld { key }) => assert_eq!(key.as_bytes(), saved.key.as_slice()),
        other => panic!("resume with a wrong revision: {other:?}"),
    }
    let mut other_key = saved.key.clone();
    other_key.push(b'0');
    let wrong_key = LeaderKey {
        key: other_key,
        ..saved.clone()
    };
    match resume_with(flavour, &session, &wrong_key).await {
        Err(Error::InvalidArgument { argument, .. }) => assert_eq!(argument, "key"),
        other => panic!("resume with a wrong key: {other:?}"),
    }
    if flavour == "service" {
        let wrong_lease = LeaderKey {
            lease: saved.lease + 1,
            ..saved.clone()
        };
        match resume_with(flavour, &session, &wrong_lease).await {
            Err(Error::InvalidArgument { argument, .. }) => assert_eq!(argument, "lease"),
            other => panic!("resume with a wrong lease: {other:?}"),
        }
    }
    let zero = LeaderKey {
        rev: 0,
        ..saved.clone()
    };
    assert!(matches!(
        resume_with(flavour, &session, &zero).await,
        Err(Error::InvalidArgument {
            argument: "revision",
            ..
        })
    ));

    let mut leadership = ok(resume_with(flavour, &session, &saved).await);
    assert_eq!(leadership.key(), saved.key.as_slice());
    assert_eq!(leadership.revision(), saved.rev);
    assert_eq!(leadership.value(), b"first");
    assert_eq!(leadership.leader_key(), saved);

    // A second resume on the same session and name: the name is in use.
    assert!(matches!(
        resume_with(flavour, &session, &saved).await,
        Err(Error::AlreadyHeld { .. })
    ));

    // Still the leader: observe shows the same key, a second candidate does not win.
    let mut observer = ok(elector.observe(&client, name.as_bytes()).await);
    let seen = tokio::time::timeout(Duration::from_secs(5), observer.next()).await;
    let seen = ok(seen
        .unwrap_or_else(|_| panic!("no observation"))
        .unwrap_or_else(|| panic!("observer ended")));
    assert_eq!(
        (seen.key.clone(), seen.create_revision),
        (saved.key.clone(), saved.rev)
    );
    let rival_session = common::session(&client, 30).await;
    let rival = {
        let (s, n) = (rival_session.clone(), name.clone());
        tokio::spawn(async move {
            RecipeElection::new()
                .campaign(&s, n.as_bytes(), b"rival")
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !rival.is_finished(),
        "the rival won while the resumed leader leads"
    );

    // Proclaim works and is seen.
    ok(leadership.proclaim("second").await);
    let now = ok(elector.leader(&client, name.as_bytes()).await);
    assert_eq!(
        now.map(|l| (l.key, l.value)),
        Some((saved.key.clone(), b"second".to_vec()))
    );
    let seen = tokio::time::timeout(Duration::from_secs(5), observer.next()).await;
    let seen = ok(seen
        .unwrap_or_else(|_| panic!("no observation"))
        .unwrap_or_else(|| panic!("observer ended")));
    assert_eq!(
        (seen.key.clone(), seen.value.clone()),
        (saved.key.clone(), b"second".to_vec())
    );

    // Resign hands over to the rival.
    ok(leadership.resign().await);
    let won = tokio::time::timeout(Duration::from_secs(10), rival).await;
    let rival_leadership = ok(ok(won.unwrap_or_else(|_| panic!("rival never won"))));
    assert!(rival_leadership.revision() > saved.rev);

    // The old key is gone: resuming it again is refused.
    match resume_with(flavour, &session, &saved).await {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("resume after resign: {other:?}"),
    }
    ok(rival_leadership.resign().await);
    ok(session.close().await);
    ok(rival_session.close().await);
}

async fn recipe(bin: &EtcdBinary) {
    resume_after_restart(bin, "recipe").await;
}

async fn service(bin: &EtcdBinary) {
    resume_after_restart(bin, "service").await;
}

per_version!(recipe, service);

/// A candidate that is not (yet) the leader is not resumed: `NotHeld`, and its key is left for
/// a campaign with the same session to adopt.
async fn waiting_candidate_is_not_resumed(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let name = common::unique("resume-wait");
    let elector = RecipeElection::new();
    let first = common::session(&client, 30).await;
    let leader = ok(elector.campaign(&first, name.as_bytes(), b"a").await);
    let second = common::session(&client, 30).await;
    let waiting = {
        let (s, n) = (second.clone(), name.clone());
        tokio::spawn(async move { RecipeElection::new().campaign(&s, n.as_bytes(), b"b").await })
    };
    common::wait_key_count(&client, &name, 2, Duration::from_secs(10)).await;
    waiting.abort();
    let _ = waiting.await;
    // The aborted campaign deletes its key in the background; once it is gone, write it again
    // as a candidate that a crashed process left behind.
    common::wait_key_count(&client, &name, 1, Duration::from_secs(10)).await;
    let key = format!("{name}/{:x}", second.lease());
    let put = etcd_lock::kv::PutOptions::new().with_lease(second.lease());
    let written = ok(client.put_with(key.clone(), "b", put).await);
    let rev = written.revision();
    match elector
        .resume(&second, name.as_bytes(), key.as_bytes(), rev)
        .await
    {
        Err(Error::NotHeld { key: k }) => assert_eq!(k, key),
        other => panic!("resume of a waiting candidate: {other:?}"),
    }
    assert_eq!(common::keys_under(&client, &name).await.len(), 2);
    ok(leader.resign().await);
    ok(first.close().await);
    ok(second.close().await);
}

per_version!(waiting_candidate_is_not_resumed);
