//! `testkit::ContainerCluster`: 3-member etcd clusters in Docker containers (images
//! `etcd-lock/etcd:3.5.1` and `etcd-lock/etcd:3.4.23` from `scripts/build-images`), driven
//! through `etcd_lock::Client` while members are killed, restarted, paused and cut off the
//! network, and removed without a trace on drop (also on panic).
//!
//! Needs Docker and the images. Without Docker each test prints `SKIPPED <name>: no docker`
//! and passes, except with `CI` set to any non-empty value, where it fails. Missing images
//! always fail, saying how to provide them.
#![cfg(feature = "testkit")]

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ok, unique};
use etcd_lock::testkit::{ContainerCluster, CONTAINER_LABEL};
use etcd_lock::Client;

per_image!(
    leader_kill_restart_and_follower_pause,
    disconnect_and_reconnect
);

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs blocking testkit code without stalling the runtime's other worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn start(image: &str) -> ContainerCluster {
    let started = Instant::now();
    let cluster = match blocking(|| ContainerCluster::start(image, 3)) {
        Ok(c) => c,
        Err(e) => panic!("starting 3 containers of {image}: {e}"),
    };
    eprintln!(
        "{image}: 3 members healthy after {:?} at {:?}",
        started.elapsed(),
        cluster.endpoints()
    );
    cluster
}

fn wait_leader(cluster: &ContainerCluster) -> usize {
    match blocking(|| cluster.wait_leader(Duration::from_secs(10))) {
        Ok(i) => i,
        Err(e) => panic!("no leader: {e}"),
    }
}

fn wait_healthy(cluster: &ContainerCluster) {
    if let Err(e) = blocking(|| cluster.wait_healthy(Duration::from_secs(15))) {
        panic!("not healthy: {e}");
    }
}

/// Panics with `what` and the error (timeouts carry the member logs' tails).
fn fault<E: std::fmt::Display>(what: &str, r: Result<(), E>) {
    if let Err(e) = r {
        panic!("{what}: {e}");
    }
}

/// `put` until it succeeds (a failover may cost a failed attempt) or 10 s pass.
async fn put_eventually(client: &Client, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.put(key, value).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("put {key} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("put {key} kept failing for 10 s: {e}"),
        }
    }
}

/// A linearizable `get`, retried on errors for up to 10 s: a member that was just restarted,
/// resumed or reconnected may drop read-index requests until it has learned the current
/// leader (seen on 3.4.23 as one 3 s timeout right after `/health` turned true).
async fn value_of(client: &Client, key: &str) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(key).await {
            Ok(got) => return got.kvs().first().map(|kv| kv.value.clone()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("get {key} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("get {key} kept failing for 10 s: {e}"),
        }
    }
}

/// Every endpoint except member `skip`'s.
fn others(cluster: &ContainerCluster, skip: usize) -> Vec<String> {
    (0..cluster.members())
        .filter(|&i| i != skip)
        .map(|i| cluster.endpoint(i))
        .collect()
}

fn refused(cluster: &ContainerCluster, i: usize) -> bool {
    TcpStream::connect_timeout(
        &([127, 0, 0, 1], cluster.host_port(i)).into(),
        Duration::from_secs(1),
    )
    .is_err()
}

/// Output lines of `docker args`.
fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"));
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Containers (also stopped ones) and networks labelled with cluster `network`.
fn leftovers(network: &str) -> (Vec<String>, Vec<String>) {
    let filter = format!("label={CONTAINER_LABEL}={network}");
    let containers = docker_lines(&["ps", "-a", "--format", "{{.Names}}", "--filter", &filter]);
    let networks = docker_lines(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &filter,
    ]);
    (containers, networks)
}

/// Drops `cluster` and checks that `docker ps -a` and `docker network ls` show none of it.
fn drop_and_check_gone(cluster: ContainerCluster) {
    let network = cluster.network().to_string();
    let names: Vec<String> = (0..cluster.members())
        .map(|i| cluster.container_name(i).to_string())
        .collect();
    assert_eq!(leftovers(&network).0.len(), names.len());
    blocking(|| drop(cluster));
    let all = docker_lines(&["ps", "-a", "--format", "{{.Names}}"]);
    for name in &names {
        assert!(!all.contains(name), "container {name} left behind");
    }
    assert_eq!(leftovers(&network), (vec![], vec![]), "left behind");
}

// ---------------------------------------------------------------------------------------------
// cases

async fn leader_kill_restart_and_follower_pause(image: &str) {
    let cluster = start(image);
    let client = common::connect_quick(&cluster.endpoints()).await;
    let prefix = unique("containers");
    let k = format!("{prefix}k");
    ok(client.put(k.as_str(), "v1").await);
    assert_eq!(value_of(&client, &k).await.as_deref(), Some(&b"v1"[..]));

    // Kill the leader: a new one is elected and writes go through the other members.
    let old = wait_leader(&cluster);
    let old_endpoint = cluster.endpoint(old);
    fault("kill", cluster.kill(old));
    assert!(refused(&cluster, old), "killed member still accepts TCP");
    let new = wait_leader(&cluster);
    assert_ne!(new, old);
    put_eventually(&client, &k, "v2").await;
    let survivors = common::connect_quick(&others(&cluster, old)).await;
    assert_eq!(value_of(&survivors, &k).await.as_deref(), Some(&b"v2"[..]));

    // Restart it: same port, same data, caught up.
    fault("restart", blocking(|| cluster.restart(old)));
    assert_eq!(cluster.endpoint(old), old_endpoint);
    wait_healthy(&cluster);
    let restarted = common::connect_quick(&[old_endpoint]).await;
    assert_eq!(value_of(&restarted, &k).await.as_deref(), Some(&b"v2"[..]));

    // Pause a follower: the others keep serving; resume: healthy again.
    let leader = wait_leader(&cluster);
    let follower = (leader + 1) % cluster.members();
    fault("pause", cluster.pause(follower));
    let live = common::connect_quick(&others(&cluster, follower)).await;
    put_eventually(&live, &k, "v3").await;
    assert_eq!(value_of(&live, &k).await.as_deref(), Some(&b"v3"[..]));
    fault("resume", cluster.resume(follower));
    wait_healthy(&cluster);
    let thawed = common::connect_quick(&[cluster.endpoint(follower)]).await;
    assert_eq!(value_of(&thawed, &k).await.as_deref(), Some(&b"v3"[..]));
    assert!(cluster.logs(follower).contains("etcd"), "logs are readable");

    // Restart a running member (`docker restart`): same port, healthy again.
    let port = cluster.host_port(follower);
    fault("restart running", blocking(|| cluster.restart(follower)));
    assert_eq!(cluster.host_port(follower), port);
    wait_healthy(&cluster);

    // Drop with a paused member: still nothing left behind.
    fault("pause before drop", cluster.pause(follower));
    drop((client, survivors, restarted, live, thawed));
    drop_and_check_gone(cluster);
}

async fn disconnect_and_reconnect(image: &str) {
    let cluster = start(image);
    let k = format!("{}k", unique("partition"));
    let leader = wait_leader(&cluster);
    let port = cluster.host_port(leader);

    // Cut the leader off: its published port is gone, the others elect a new leader.
    fault("disconnect", cluster.disconnect(leader));
    assert!(
        refused(&cluster, leader),
        "the published port still accepts connections"
    );
    let new = wait_leader(&cluster);
    assert_ne!(new, leader);
    let rest = common::connect_quick(&others(&cluster, leader)).await;
    put_eventually(&rest, &k, "written while partitioned").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Reconnect: same port, peers find it again, it catches up.
    fault("reconnect", cluster.reconnect(leader));
    assert_eq!(cluster.host_port(leader), port);
    wait_healthy(&cluster);
    let back = common::connect_quick(&[cluster.endpoint(leader)]).await;
    assert_eq!(
        value_of(&back, &k).await.as_deref(),
        Some(&b"written while partitioned"[..])
    );
    assert!(blocking(|| cluster.leader()).is_some());

    // Drop with a disconnected member: still nothing left behind.
    fault("disconnect before drop", cluster.disconnect(new));
    drop((rest, back));
    drop_and_check_gone(cluster);
}

/// A test that panics while holding a cluster leaves no container and no network behind.
#[test]
fn nothing_left_behind_after_a_panic() {
    let Some(image) = common::image("3.5.1") else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let cluster = match ContainerCluster::start(&image, 1) {
            Ok(c) => c,
            Err(e) => panic!("starting 1 container: {e}"),
        };
        let _ = tx.send(cluster.network().to_string());
        panic!("test failure while the cluster runs");
    })
    .join();
    assert!(result.is_err(), "the thread panicked");
    let network = rx.recv().expect("the cluster started");
    assert_eq!(leftovers(&network), (vec![], vec![]), "left behind");
}

#[test]
fn missing_image_says_how_to_provide_it() {
    if common::skip_without_docker() {
        return;
    }
    let err = match ContainerCluster::image_for("v0.0.0-none") {
        Ok(image) => panic!("found {image}"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains("scripts/"), "{err}");
    assert!(err.contains("docker tag"), "{err}");
    assert!(err.contains("etcd-lock/etcd:0.0.0-none"), "{err}");
    let err = match ContainerCluster::start("etcd-lock/etcd:0.0.0-none", 1) {
        Ok(_) => panic!("started a missing image"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not found locally"), "{err}");
}
