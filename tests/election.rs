//! Both election flavours against real etcd 3.5.1 and 3.4.23: one leader at a time in queue
//! order, a killed leader process replaced within its TTL and seen by an observer, fencing of
//! a stale leader's proclaim, cancellation, interop with `etcdctl elect`, and an observer
//! opened through a member that missed a leader's end.
#![cfg(feature = "testkit")]

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::ChildTest;
use common::{keys_under, ok, session, wait_key_count};
use etcd_lock::election::{
    Elector, LeaderInfo, Leadership, Observer, RecipeElection, ServiceElection, MAX_VALUE_LEN,
};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Client, Error, Session, SessionOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

election_flavours!(
    one_leader_at_a_time_in_queue_order,
    killed_leader_process_is_replaced_and_observed,
    stale_leader_cannot_proclaim,
    cancelled_campaign_leaves_no_key,
);
per_version!(flavours_and_etcdctl_agree, uncontended_recipe_rpcs);

const WAIT: Duration = Duration::from_secs(10);

/// A unique election name (no trailing slash).
fn name(what: &str) -> String {
    common::unique(what).trim_end_matches('/').to_string()
}

/// Awaits `fut` for at most `within`, panicking with `what` on timeout.
async fn within<T>(within: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(within, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {within:?}: {what}"),
    }
}

/// The next state an observer yields (bounded).
async fn next_leader(observer: &mut Observer) -> LeaderInfo {
    match within(WAIT, "observer", observer.next()).await {
        Some(Ok(l)) => l,
        other => panic!("observer ended: {other:?}"),
    }
}

/// The current leader's (key, value) as `elector` reports it.
async fn leader_of<E: Elector>(
    elector: &E,
    client: &Client,
    name: &str,
) -> Option<(String, String)> {
    ok(elector.leader(client, name.as_bytes()).await).map(|l| (l.key_str(), l.value_str()))
}

fn state(l: &Leadership) -> Option<(String, String)> {
    Some((l.key_str(), String::from_utf8_lossy(l.value()).into_owned()))
}

async fn one_leader_at_a_time_in_queue_order<E: Elector + Clone + 'static>(
    bin: &EtcdBinary,
    elector: E,
) {
    let cluster = common::single(bin);
    let name = name("queue");
    let client = common::client(&cluster).await;
    let leading = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let won = Arc::new(Mutex::new(Vec::new()));
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let own_client = common::client(&cluster).await;
        let (release_tx, release_rx) = oneshot::channel::<()>();
        releases.push(release_tx);
        let (elector, leading, overlaps, won, task_name) = (
            elector.clone(),
            leading.clone(),
            overlaps.clone(),
            won.clone(),
            name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (s, name) = (session(&own_client, 10).await, task_name);
            let value = format!("v{i}");
            let before = own_client.stats().unary_calls;
            let l = ok(elector
                .campaign(&s, name.as_bytes(), value.as_bytes())
                .await);
            if elector.flavour() == "recipe" {
                // Predecessor-only waiting: the first txn, one re-check once the prefix watch
                // is open, one re-check when the predecessor goes. Candidate 2 is not woken
                // (no extra re-check) when candidate 0 resigns.
                let calls = own_client.stats().unary_calls - before;
                assert!(
                    calls <= 3,
                    "candidate {i} sent {calls} unary RPCs to campaign"
                );
            }
            if leading.fetch_add(1, Ordering::SeqCst) != 0 {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            // Whoever campaigned sees itself as the leader, with its value.
            assert_eq!(
                leader_of(&elector, &own_client, &name).await,
                Some((l.key_str(), value))
            );
            won.lock().map(|mut w| w.push((i, l.revision()))).ok();
            let _ = release_rx.await;
            leading.fetch_sub(1, Ordering::SeqCst);
            ok(l.resign().await);
            ok(s.close().await);
        }));
        // Queue them one by one: the next starts only once this one's key exists.
        wait_key_count(&client, &name, i + 1, WAIT).await;
    }
    for (j, release) in releases.into_iter().enumerate() {
        let deadline = Instant::now() + WAIT;
        while won.lock().map(|w| w.len()).unwrap_or(0) < j + 1 {
            assert!(Instant::now() < deadline, "candidate {j} never led");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Nobody else gets in while candidate j leads.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(won.lock().map(|w| w.len()).unwrap_or(0), j + 1);
        assert_eq!(leading.load(Ordering::SeqCst), 1);
        let (_, value) = leader_of(&elector, &client, &name)
            .await
            .unwrap_or_default();
        assert_eq!(value, format!("v{j}"));
        let _ = release.send(());
    }
    for t in tasks {
        ok(t.await);
    }
    let won = won.lock().map(|w| w.clone()).unwrap_or_default();
    assert_eq!(won.iter().map(|w| w.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(won.windows(2).all(|w| w[0].1 < w[1].1), "{won:?}");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two leaders at once");
    assert!(keys_under(&client, &name).await.is_empty());
    assert_eq!(leader_of(&elector, &client, &name).await, None);
}

async fn killed_leader_process_is_replaced_and_observed<E: Elector + Clone + 'static>(
    bin: &EtcdBinary,
    elector: E,
) {
    let cluster = common::single(bin);
    let name = name("crash");
    let client = common::client(&cluster).await;
    let mut child = spawn_candidate(&cluster.endpoints()[0], &name, elector.flavour(), "child");
    let child_key = child.line_starting("LEADER", WAIT).await;
    let child_key = child_key.trim_start_matches("LEADER ").to_string();

    let mut observer = ok(elector.observe(&client, name.as_bytes()).await);
    let first = next_leader(&mut observer).await;
    assert_eq!(
        (first.key_str(), first.value_str()),
        (child_key.clone(), "child".into())
    );

    // Two in-process candidates queue behind the child, each with its own client and session.
    let mut waiting = Vec::new();
    for (i, value) in ["b", "c"].into_iter().enumerate() {
        let own_client = common::client(&cluster).await;
        let (elector, task_name) = (elector.clone(), name.clone());
        waiting.push(tokio::spawn(async move {
            let (s, name) = (session(&own_client, 10).await, task_name);
            let l = elector
                .campaign(&s, name.as_bytes(), value.as_bytes())
                .await;
            (s, ok(l))
        }));
        wait_key_count(&client, &name, i + 2, WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        waiting.iter().all(|t| !t.is_finished()),
        "led while the child did"
    );

    child.signal("-KILL");
    let _ = child.child.wait().await;
    let killed = Instant::now();
    let mut waiting = waiting.into_iter();
    let (sb, lb) = match waiting.next() {
        Some(t) => ok(within(Duration::from_secs(2 + 2), "b to lead within TTL + 2 s", t).await),
        None => unreachable!(),
    };
    assert!(killed.elapsed() < Duration::from_secs(4));
    assert_eq!(lb.value(), b"b");
    let c = match waiting.next() {
        Some(t) => t,
        None => unreachable!(),
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!c.is_finished(), "c led while b did");
    assert_eq!(leader_of(&elector, &client, &name).await, state(&lb));
    let b_key = lb.key_str();
    ok(lb.resign().await);
    let (sc, lc) = ok(within(WAIT, "c to lead after b resigned", c).await);
    let c_key = lc.key_str();
    ok(lc.resign().await);

    // The observer saw each leader once, in order.
    let second = next_leader(&mut observer).await;
    let third = next_leader(&mut observer).await;
    let seen: Vec<_> = [&first, &second, &third]
        .iter()
        .map(|l| (l.key_str(), l.value_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (child_key, "child".to_string()),
            (b_key, "b".to_string()),
            (c_key, "c".to_string())
        ]
    );
    assert!(first.create_revision < second.create_revision);
    assert!(second.create_revision < third.create_revision);
    let extra = tokio::time::timeout(Duration::from_millis(500), observer.next()).await;
    assert!(extra.is_err(), "unexpected observation {extra:?}");
    ok(sb.close().await);
    ok(sc.close().await);
    wait_key_count(&client, &name, 0, WAIT).await;
}

async fn stale_leader_cannot_proclaim<E: Elector + Clone + 'static>(bin: &EtcdBinary, elector: E) {
    let cluster = common::single(bin);
    let name = name("stale");
    let client = common::client(&cluster).await;
    let s1 = session(&client, 10).await;
    let mut old = ok(elector.campaign(&s1, name.as_bytes(), b"old").await);
    let client2 = common::client(&cluster).await;
    let s2 = session(&client2, 10).await;
    let next = {
        let (elector, name, s2) = (elector.clone(), name.clone(), s2.clone());
        tokio::spawn(async move { elector.campaign(&s2, name.as_bytes(), b"new").await })
    };
    wait_key_count(&client, &name, 2, WAIT).await;

    // The old leader's lease is revoked behind its session's back.
    ok(client.lease_revoke(s1.lease()).await);
    let mut new = ok(ok(within(WAIT, "the next candidate to lead", next).await));
    let refused = elector.proclaim(&mut old, b"stale").await;
    assert!(
        matches!(refused, Err(Error::SessionLost { .. })),
        "{refused:?}"
    );
    ok(elector.proclaim(&mut new, b"fresh").await);
    assert_eq!(
        leader_of(&elector, &client, &name).await,
        Some((new.key_str(), "fresh".to_string()))
    );
    assert_eq!(new.value(), b"fresh");
    let resigned = old.resign().await;
    assert!(
        matches!(resigned, Err(Error::SessionLost { .. })),
        "{resigned:?}"
    );

    // A leader whose key was deleted by someone else, session alive: "not held".
    ok(client.delete(new.key().to_vec()).await);
    let refused = new.proclaim("gone").await;
    assert!(matches!(refused, Err(Error::NotHeld { .. })), "{refused:?}");
    assert_eq!(leader_of(&elector, &client, &name).await, None);
    let resigned = new.resign().await;
    match elector.flavour() {
        "recipe" => assert!(
            matches!(resigned, Err(Error::NotHeld { .. })),
            "{resigned:?}"
        ),
        _ => assert!(resigned.is_ok(), "{resigned:?}"),
    }
    ok(s2.close().await);
    assert!(keys_under(&client, &name).await.is_empty());
}

async fn cancelled_campaign_leaves_no_key<E: Elector>(bin: &EtcdBinary, elector: E) {
    let cluster = common::single(bin);
    let name = name("cancel");
    let client = common::client(&cluster).await;
    let holder_session = session(&client, 10).await;
    let holder = ok(elector
        .campaign(&holder_session, name.as_bytes(), b"h")
        .await);
    let waiter_session = session(&client, 10).await;
    let attempt = tokio::time::timeout(
        Duration::from_millis(400),
        elector.campaign(&waiter_session, name.as_bytes(), b"w"),
    )
    .await;
    assert!(attempt.is_err(), "the election should still be led");
    // Only the leader's key remains once the background cleanup ran.
    wait_key_count(&client, &name, 1, Duration::from_secs(5)).await;
    assert_eq!(keys_under(&client, &name).await, vec![holder.key_str()]);

    // Refused before anything is sent.
    let empty = elector.campaign(&waiter_session, b"", b"w").await;
    assert!(
        matches!(
            empty,
            Err(Error::InvalidArgument {
                argument: "name",
                ..
            })
        ),
        "{empty:?}"
    );
    let huge = vec![b'x'; MAX_VALUE_LEN + 1];
    let big = elector
        .campaign(&waiter_session, name.as_bytes(), &huge)
        .await;
    assert!(
        matches!(
            big,
            Err(Error::InvalidArgument {
                argument: "value",
                ..
            })
        ),
        "{big:?}"
    );
    let twice = elector
        .campaign(&holder_session, name.as_bytes(), b"h2")
        .await;
    assert!(matches!(twice, Err(Error::AlreadyHeld { .. })), "{twice:?}");

    // The same session can campaign again right away, and leads once the holder resigns.
    let again = elector.campaign(&waiter_session, name.as_bytes(), b"w2");
    ok(holder.resign().await);
    let l = ok(within(WAIT, "campaign after the holder resigned", again).await);
    assert_eq!(
        leader_of(&elector, &client, &name).await,
        Some((l.key_str(), "w2".to_string()))
    );
    ok(l.resign().await);
    ok(holder_session.close().await);
    ok(waiter_session.close().await);
    assert!(keys_under(&client, &name).await.is_empty());
}

async fn uncontended_recipe_rpcs(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let name = name("rpcs");
    let client = common::client(&cluster).await;
    // TTL 60: no keep-alive (sent every 20 s) falls into the counted windows.
    let s = session(&client, 60).await;
    let elector = RecipeElection::new();
    for round in 0..3 {
        let before = client.stats().requests;
        let mut l = ok(elector.campaign(&s, name.as_bytes(), b"v").await);
        let campaigned = client.stats().requests;
        ok(l.proclaim(format!("v{round}")).await);
        let proclaimed = client.stats().requests;
        let seen = leader_of(&elector, &client, &name).await;
        let read = client.stats().requests;
        ok(l.resign().await);
        let resigned = client.stats().requests;
        assert_eq!(seen, Some((l_key(&s, &name), format!("v{round}"))));
        assert_eq!(campaigned - before, 1, "campaign");
        assert_eq!(proclaimed - campaigned, 1, "proclaim");
        assert_eq!(read - proclaimed, 1, "leader");
        assert_eq!(resigned - read, 1, "resign");
    }
    ok(s.close().await);
}

fn l_key(s: &Session, name: &str) -> String {
    format!("{name}/{:x}", s.lease())
}

// ---- etcdctl elect ----

struct Ctl {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Ctl {
    /// `etcdctl elect NAME VALUE` (campaign) or `etcdctl elect -l NAME` (observe).
    fn spawn(bin: &EtcdBinary, endpoints: &[String], args: &[&str]) -> Ctl {
        let mut child = ok(tokio::process::Command::new(bin.etcdctl_path())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("elect")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn());
        let lines = match child.stdout.take() {
            Some(s) => BufReader::new(s).lines(),
            None => panic!("no stdout"),
        };
        Ctl { child, lines }
    }

    /// The next two lines: a leader key and its value.
    async fn leader(&mut self, within_: Duration) -> (String, String) {
        let mut two = Vec::new();
        while two.len() < 2 {
            match within(within_, "etcdctl output", self.lines.next_line()).await {
                Ok(Some(line)) => two.push(line),
                other => panic!("etcdctl ended: {other:?}"),
            }
        }
        (two[0].clone(), two[1].clone())
    }

    /// True if a line arrives within `wait`.
    async fn prints_within(&mut self, wait: Duration) -> bool {
        matches!(
            tokio::time::timeout(wait, self.lines.next_line()).await,
            Ok(Ok(Some(_)))
        )
    }

    /// SIGINT (etcdctl resigns / stops observing), then the rest of its output.
    async fn interrupt(mut self) -> Vec<String> {
        let pid = self.child.id().map(|p| p.to_string()).unwrap_or_default();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -INT {pid}");
        let mut rest = Vec::new();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.next_line()).await
        {
            rest.push(line);
        }
        let _ = within(WAIT, "etcdctl to exit", self.child.wait()).await;
        rest
    }
}

async fn flavours_and_etcdctl_agree(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let endpoints = cluster.endpoints();
    let name = name("interop");
    let client = common::client(&cluster).await;
    let (recipe, service) = (RecipeElection::new(), ServiceElection::new());
    let both = |client: Client, name: String| async move {
        let r = leader_of(&RecipeElection::new(), &client, &name).await;
        let s = leader_of(&ServiceElection::new(), &client, &name).await;
        assert_eq!(r, s, "recipe and service disagree on the leader");
        r
    };

    // The recipe leads first; three observers start: etcdctl, recipe, service.
    let sa = session(&client, 10).await;
    let mut a = ok(recipe.campaign(&sa, name.as_bytes(), b"a").await);
    let a_state = (a.key_str(), "a".to_string());
    let mut ctl_observer = Ctl::spawn(bin, &endpoints, &["-l", &name]);
    assert_eq!(ctl_observer.leader(WAIT).await, a_state);
    let mut observers = [
        ok(recipe.observe(&client, name.as_bytes()).await),
        ok(service.observe(&client, name.as_bytes()).await),
    ];
    for o in &mut observers {
        let l = next_leader(o).await;
        assert_eq!((l.key_str(), l.value_str()), a_state);
    }
    assert_eq!(
        both(client.clone(), name.clone()).await,
        Some(a_state.clone())
    );

    // The service flavour and etcdctl queue behind it.
    let client_b = common::client(&cluster).await;
    let sb = session(&client_b, 10).await;
    let b_task = {
        let (sb, name) = (sb.clone(), name.clone());
        tokio::spawn(async move {
            ServiceElection::new()
                .campaign(&sb, name.as_bytes(), b"b")
                .await
        })
    };
    wait_key_count(&client, &name, 2, WAIT).await;
    let mut ctl_candidate = Ctl::spawn(bin, &endpoints, &[&name, "c"]);
    wait_key_count(&client, &name, 3, WAIT).await;
    assert!(
        !ctl_candidate
            .prints_within(Duration::from_millis(500))
            .await,
        "etcdctl elected while the recipe led"
    );
    assert!(
        !b_task.is_finished(),
        "service elected while the recipe led"
    );

    // A proclaim reaches every observer.
    ok(a.proclaim("a2").await);
    let a2_state = (a.key_str(), "a2".to_string());
    assert_eq!(ctl_observer.leader(WAIT).await, a2_state);
    for o in &mut observers {
        let l = next_leader(o).await;
        assert_eq!((l.key_str(), l.value_str()), a2_state);
    }
    assert_eq!(both(client.clone(), name.clone()).await, Some(a2_state));

    // The recipe resigns: the service candidate leads.
    ok(a.resign().await);
    let b = ok(ok(within(WAIT, "service candidate to lead", b_task).await));
    let b_state = (format!("{name}/{:x}", sb.lease()), "b".to_string());
    assert_eq!(state(&b), Some(b_state.clone()));
    assert_eq!(
        both(client.clone(), name.clone()).await,
        Some(b_state.clone())
    );
    assert_eq!(ctl_observer.leader(WAIT).await, b_state);
    for o in &mut observers {
        let l = next_leader(o).await;
        assert_eq!((l.key_str(), l.value_str()), b_state);
    }
    assert!(
        !ctl_candidate
            .prints_within(Duration::from_millis(300))
            .await,
        "etcdctl elected while the service candidate led"
    );

    // The service candidate resigns: etcdctl leads and prints its key and value.
    ok(b.resign().await);
    let c_state = ctl_candidate.leader(WAIT).await;
    assert!(c_state.0.starts_with(&format!("{name}/")), "{c_state:?}");
    assert_eq!(c_state.1, "c");
    assert_eq!(
        both(client.clone(), name.clone()).await,
        Some(c_state.clone())
    );
    assert_eq!(ctl_observer.leader(WAIT).await, c_state);
    for o in &mut observers {
        let l = next_leader(o).await;
        assert_eq!((l.key_str(), l.value_str()), c_state);
    }

    // etcdctl resigns on SIGINT: no leader, and nobody saw anything more.
    let rest = ctl_candidate.interrupt().await;
    assert!(rest.is_empty(), "{rest:?}");
    wait_key_count(&client, &name, 0, WAIT).await;
    assert_eq!(both(client.clone(), name.clone()).await, None);
    for o in &mut observers {
        let extra = tokio::time::timeout(Duration::from_millis(300), o.next()).await;
        assert!(extra.is_err(), "unexpected observation {extra:?}");
    }
    let rest = ctl_observer.interrupt().await;
    assert!(rest.is_empty(), "etcdctl observer printed more: {rest:?}");
    ok(sa.close().await);
    ok(sb.close().await);
}

// ---- a candidate in a separate process: this test binary re-executed ----

const CHILD_ENV: &str = "ETCD_LOCK_TEST_CANDIDATE";

/// Not a test on its own: when started by `spawn_candidate`, campaigns with a TTL 2 session,
/// prints `LEADER <key>` once elected, and keeps leading until killed.
#[tokio::test]
async fn candidate_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [endpoint, name, flavour, value] = parts[..] else {
        panic!("bad spec {spec}")
    };
    let client = ok(Client::connect([endpoint]).await);
    let s = ok(Session::with_options(&client, SessionOptions::new().with_ttl(2)).await);
    let leadership = match flavour {
        "service" => {
            ServiceElection::new()
                .campaign(&s, name.as_bytes(), value.as_bytes())
                .await
        }
        _ => {
            RecipeElection::new()
                .campaign(&s, name.as_bytes(), value.as_bytes())
                .await
        }
    };
    let leadership = ok(leadership);
    println!("LEADER {}", leadership.key_str());
    tokio::time::sleep(Duration::from_secs(60)).await;
    ok(leadership.resign().await);
}

/// Starts `candidate_child` in a separate process (it prints `LEADER <key>` once elected).
fn spawn_candidate(endpoint: &str, name: &str, flavour: &str, value: &str) -> ChildTest {
    let spec = format!("{endpoint}|{name}|{flavour}|{value}");
    ChildTest::spawn("candidate_child", CHILD_ENV, &spec)
}

/// Item 9 of issue 10: an observer opened through a member that missed the old leader's end
/// must not report that leader. Each round: `a` leads and `b` waits (through the other two
/// members), member F is frozen, `a`'s session is revoked so `b` leads, F is continued, and an
/// observer opened at once through F alone must yield `b` first, never the revoked `a`. The
/// recipe's observation then starts with exactly one `KV/Range` and one watch create.
async fn observer_on_a_lagging_member_never_reports_a_revoked_leader<
    E: Elector + Clone + 'static,
>(
    bin: &EtcdBinary,
    elector: E,
) {
    let cluster = common::three(bin);
    let leader = ok(tokio::task::block_in_place(|| {
        cluster.wait_leader(Duration::from_secs(10))
    }));
    let lagging = (leader + 1) % 3;
    let others: Vec<String> = (0..3)
        .filter(|&i| i != lagging)
        .map(|i| cluster.member(i).endpoint())
        .collect();
    let client = ok(Client::connect(&others).await);
    // Connected before the freeze, so the observe calls go out the moment F runs again.
    let through_f = ok(Client::connect([cluster.member(lagging).endpoint()]).await);
    for round in 0..5 {
        let name = name("lagging-observe");
        let sa = session(&client, 30).await;
        let la = ok(elector.campaign(&sa, name.as_bytes(), b"a").await);
        let sb = session(&client, 30).await;
        let waiting = {
            let (elector, name, sb) = (elector.clone(), name.clone(), sb.clone());
            tokio::spawn(async move { elector.campaign(&sb, name.as_bytes(), b"b").await })
        };
        wait_key_count(&client, &name, 2, WAIT).await;
        // F has applied both keys (a linearizable read through it), then misses a's end.
        assert_eq!(keys_under(&through_f, &name).await.len(), 2);
        ok(cluster.member(lagging).pause());
        ok(sa.close().await);
        drop(la);
        let lb = ok(ok(within(WAIT, "b to lead after a's revoke", waiting).await));
        ok(cluster.member(lagging).resume());
        let mut observer = ok(elector.observe(&through_f, name.as_bytes()).await);
        let first = next_leader(&mut observer).await;
        assert_eq!(
            (first.key_str(), first.value_str()),
            (lb.key_str(), "b".to_string()),
            "round {round}: the first leader observed through F is stale"
        );
        drop(observer);
        ok(lb.resign().await);
        ok(sb.close().await);
    }
    if elector.flavour() == "recipe" {
        // Starting an observation costs one `KV/Range` and one watch create, as before.
        let name = name("observe-rpcs");
        let s = session(&client, 30).await;
        let l = ok(elector.campaign(&s, name.as_bytes(), b"c").await);
        let before = through_f.stats();
        let mut observer = ok(elector.observe(&through_f, name.as_bytes()).await);
        assert_eq!(next_leader(&mut observer).await.key_str(), l.key_str());
        let after = through_f.stats();
        assert_eq!(after.unary_calls - before.unary_calls, 1, "observe: Range");
        assert_eq!(
            after.stream_messages_sent - before.stream_messages_sent,
            1,
            "observe: watch create"
        );
        drop(observer);
        ok(l.resign().await);
        ok(s.close().await);
    }
}

election_flavours!(observer_on_a_lagging_member_never_reports_a_revoked_leader);
