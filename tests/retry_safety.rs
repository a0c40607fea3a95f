//! Retry safety against real clusters: a write is never applied twice by the client's own
//! failover, and a read-only transaction (the lock's slow-path re-check) survives a leader loss.
#![cfg(feature = "testkit")]

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ok, session, unique};
use etcd_lock::kv::GetOptions;
use etcd_lock::lock::{Locker, RecipeLock};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::{Client, ClientOptions};

per_version!(
    writes_are_not_applied_twice_across_graceful_leader_stops,
    writes_are_not_applied_twice_when_their_member_is_removed,
    slow_path_waiters_survive_a_leader_kill_in_fifo_order,
);

/// How many writers keep a `Put` in flight at every moment.
const PUT_WRITERS: usize = 24;
/// How many tasks keep a `LeaseGrant` in flight.
const GRANT_WRITERS: usize = 4;
/// How many times the leader is stopped with SIGTERM.
const STOPS: usize = 4;

fn wait_leader(cluster: &Cluster) -> usize {
    match cluster.wait_leader(Duration::from_secs(15)) {
        Ok(i) => i,
        Err(e) => panic!("no leader: {e}"),
    }
}

/// Sends SIGTERM (etcd's graceful stop) to member `i` and waits until the process is gone.
fn stop_gracefully(cluster: &mut Cluster, i: usize) {
    let Some(pid) = cluster.member(i).pid() else {
        panic!("member {i} is not running");
    };
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "kill -TERM {pid}: {status:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.member_mut(i).is_running() {
        assert!(Instant::now() < deadline, "member {i} ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the writers saw: keys whose `Put` returned Ok, and lease grants by outcome.
#[derive(Default)]
struct Outcomes {
    put_ok: Vec<String>,
    put_failed: usize,
    granted: HashSet<i64>,
    grant_failed: usize,
}

/// Tasks that keep `Put`s of fresh keys under `prefix` and `LeaseGrant`s in flight.
struct Writers {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(client: &Client, prefix: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let mut tasks = Vec::new();
        for w in 0..PUT_WRITERS {
            let (client, stop, outcomes) = (client.clone(), stop.clone(), outcomes.clone());
            let prefix = prefix.to_string();
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}{w}/{n}");
                    n += 1;
                    let result = client.put(key.clone(), "v").await;
                    let failed = result.is_err();
                    if let Ok(mut o) = outcomes.lock() {
                        match result {
                            Ok(_) => o.put_ok.push(key),
                            Err(_) => o.put_failed += 1,
                        }
                    }
                    if failed {
                        // No busy loop while no member answers.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
        for _ in 0..GRANT_WRITERS {
            let (client, stop, outcomes) = (client.clone(), stop.clone(), outcomes.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let result = client.lease_grant(600).await;
                    let failed = result.is_err();
                    if let Ok(mut o) = outcomes.lock() {
                        match result {
                            Ok(lease) => {
                                o.granted.insert(lease.id());
                            }
                            Err(_) => o.grant_failed += 1,
                        }
                    }
                    if failed {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
        Writers {
            stop,
            outcomes,
            tasks,
        }
    }

    async fn finish(self) -> Outcomes {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            ok(task.await);
        }
        match self.outcomes.lock() {
            Ok(mut o) => std::mem::take(&mut *o),
            Err(_) => panic!("a writer panicked"),
        }
    }
}

/// Every key under `prefix` was written once (version 1), every acknowledged put is there, and
/// no lease exists beyond those granted plus at most one per failed grant.
async fn assert_applied_once(client: &Client, prefix: &str, outcomes: &Outcomes) {
    assert!(
        outcomes.put_ok.len() > 100,
        "too few writes to mean anything"
    );
    let kvs = ok(client
        .get_with(prefix.to_string(), GetOptions::new().with_prefix())
        .await);
    let twice: Vec<String> = kvs
        .kvs()
        .iter()
        .filter(|kv| kv.version != 1)
        .map(|kv| {
            format!(
                "{} (version {})",
                String::from_utf8_lossy(&kv.key),
                kv.version
            )
        })
        .collect();
    assert!(
        twice.is_empty(),
        "{} of {} puts applied more than once ({} puts failed): {:?}",
        twice.len(),
        kvs.kvs().len(),
        outcomes.put_failed,
        &twice[..twice.len().min(5)]
    );
    let stored: HashSet<Vec<u8>> = kvs.kvs().iter().map(|kv| kv.key.clone()).collect();
    let missing = outcomes
        .put_ok
        .iter()
        .filter(|k| !stored.contains(k.as_bytes()))
        .count();
    assert_eq!(missing, 0, "acknowledged puts are missing");

    // Each grant asks the member it reaches to pick an ID, so a grant applied twice leaves a
    // lease nobody was told about. A failed grant may have been applied once, no more.
    let leases = ok(client.leases().await).ids();
    assert!(outcomes.granted.iter().all(|id| leases.contains(id)));
    let unknown = leases
        .iter()
        .filter(|id| !outcomes.granted.contains(id))
        .count();
    assert!(
        unknown <= outcomes.grant_failed,
        "{unknown} leases nobody was told about, only {} grants failed ({} succeeded)",
        outcomes.grant_failed,
        outcomes.granted.len()
    );
}

async fn writes_are_not_applied_twice_across_graceful_leader_stops(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let client = common::client(&cluster).await;
    let prefix = unique("once-sigterm");
    let writers = Writers::start(&client, &prefix);
    tokio::task::block_in_place(|| {
        for _ in 0..STOPS {
            std::thread::sleep(Duration::from_millis(700));
            let leader = wait_leader(&cluster);
            stop_gracefully(&mut cluster, leader);
            wait_leader(&cluster);
            ok(cluster.member_mut(leader).restart());
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    let outcomes = writers.finish().await;
    tokio::task::block_in_place(|| ok(cluster.wait_healthy(Duration::from_secs(15))));
    assert_applied_once(&client, &prefix, &outcomes).await;
}

/// Removes the member at `url` from the cluster with `etcdctl member remove`, sent to `via`.
async fn remove_member(cluster: &Cluster, client: &Client, url: &str, via: &[String]) {
    let list = ok(client.member_list().await);
    let Some(id) = list
        .members()
        .iter()
        .find(|m| m.client_ur_ls.iter().any(|u| u == url))
        .map(|m| m.id)
    else {
        panic!("{url} is not a member");
    };
    // etcd refuses ("unhealthy cluster") until the remaining members have been connected for
    // 5 s; ask again until then.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ok(cluster
            .etcdctl()
            .arg(format!("--endpoints={}", via.join(",")))
            .args(["member", "remove", &format!("{id:x}")])
            .output());
        // "member not found": an earlier attempt that reported a failure was applied.
        if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("not found") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member remove {id:x}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A removed member stops its server with proposals it forwarded still pending: etcd answers
/// them `server stopped` although the rest of the cluster commits them. The client talks to
/// the member being removed, twice (3 -> 2 -> 1 members), with writes in flight.
async fn writes_are_not_applied_twice_when_their_member_is_removed(bin: &EtcdBinary) {
    let cluster = common::three(bin);
    // etcd refuses to remove a member until its peers have been connected for 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let leader = wait_leader(&cluster);
    let all = cluster.endpoints();
    // Followers first, the leader last: the client works from the first one.
    let order: Vec<String> = (1..=3).map(|k| all[(leader + k) % 3].clone()).collect();
    let client = ok(Client::connect(order.clone()).await);
    let prefix = unique("once-removed");
    let writers = Writers::start(&client, &prefix);
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        remove_member(&cluster, &client, &order[round], &order[round + 1..]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = writers.finish().await;
    assert_applied_once(&client, &prefix, &outcomes).await;
}

/// Waiters that each use their own client wait on the slow path: one re-check `KV/Txn` (a
/// read) per wake-up. The first waiter's re-check is made to meet a leader change: its prefix
/// watch runs on member C, its requests go to member B, and B is paused when the holder
/// releases, so the re-check waits in B's socket; the leader is then killed and B resumed, so
/// B answers it `leader changed` (or `request timed out`) once C and B elected a new leader.
/// Every waiter must still get the lock, in the order it queued.
async fn slow_path_waiters_survive_a_leader_kill_in_fifo_order(bin: &EtcdBinary) {
    const WAITERS: usize = 3;
    let mut cluster = common::three(bin);
    let name = unique("fifo-kill");
    let leader = wait_leader(&cluster);
    let (c, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let urls = cluster.endpoints();
    let order = vec![urls[c].clone(), urls[b].clone(), urls[leader].clone()];

    // No HTTP/2 PING may end a connection while a member is paused: the watch stays on C. The
    // request timeout leaves room for an election slowed down by a loaded machine.
    let options = ClientOptions::new()
        .with_request_timeout(Some(Duration::from_secs(15)))
        .with_keep_alive(Duration::from_secs(120), Duration::from_secs(60));
    // The holder talks to the leader: its release must not depend on C catching up.
    let holder_order = vec![urls[leader].clone(), urls[c].clone(), urls[b].clone()];
    let holder_client = ok(Client::connect_with(holder_order, options.clone()).await);
    let holder_session = session(&holder_client, 30).await;
    let held = ok(RecipeLock::new()
        .lock(&holder_session, name.as_bytes())
        .await);

    let served = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    let mut waiters = Vec::new();
    for w in 0..WAITERS {
        let client = ok(Client::connect_with(order.clone(), options.clone()).await);
        let s = session(&client, 30).await;
        let (served, lock_name) = (served.clone(), name.clone());
        waiters.push(tokio::spawn(async move {
            let guard = match RecipeLock::new().lock(&s, lock_name.as_bytes()).await {
                Ok(g) => g,
                Err(e) => return Err(format!("waiter {w}: lock() failed: {e}")),
            };
            if let Ok(mut o) = served.lock() {
                o.push(w);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            guard
                .unlock()
                .await
                .map_err(|e| format!("waiter {w}: unlock failed: {e}"))?;
            s.close()
                .await
                .map_err(|e| format!("waiter {w}: close: {e}"))
        }));
        clients.push(client);
        // Queue strictly one after another: the order they must be served in.
        common::wait_key_count(&holder_client, &name, w + 2, Duration::from_secs(10)).await;
    }

    // Let each waiter finish the re-check that follows its joining txn (its key exists before
    // that re-check is answered), so that none is in flight on C when C is paused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Move the waiters' requests (not their open watch) from C to B: a read that times out on
    // a paused C makes each client fail over.
    ok(cluster.member(c).pause());
    let probes: Vec<_> = clients
        .iter()
        .map(|client| {
            let client = client.clone();
            tokio::spawn(async move { client.get("probe").await.is_err() })
        })
        .collect();
    for probe in probes {
        assert!(ok(probe.await), "a read on a paused member answered");
    }
    ok(cluster.member(c).resume());
    tokio::task::block_in_place(|| ok(cluster.member(c).wait_healthy(Duration::from_secs(15))));

    ok(cluster.member(b).pause());
    ok(held.unlock().await);
    // The first waiter hears the DELETE on C and sends its re-check to the paused B.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| ok(cluster.member_mut(leader).kill()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(cluster.member(b).resume());

    for waiter in waiters {
        let outcome = match tokio::time::timeout(Duration::from_secs(30), waiter).await {
            Ok(joined) => ok(joined),
            Err(_) => panic!("a waiter was not served within 30 s"),
        };
        if let Err(e) = outcome {
            panic!("{e}");
        }
    }
    let served = match served.lock() {
        Ok(o) => o.clone(),
        Err(_) => panic!("poisoned"),
    };
    assert_eq!(
        served,
        (0..WAITERS).collect::<Vec<_>>(),
        "served out of FIFO order"
    );
}
