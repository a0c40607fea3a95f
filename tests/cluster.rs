//! `Maintenance/Status`, `Cluster/MemberList`, connecting and endpoint failover against real
//! etcd servers and clusters (once per etcd version), plus connection failures.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use common::{ok, unique};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::watch::is_delete;
use etcd_lock::{Client, ClientOptions, Error};

per_version!(
    status_of_a_single_member,
    status_and_member_list_of_three_members,
    dead_endpoints_before_a_live_one,
    failover_when_the_current_follower_dies,
    failover_when_the_current_leader_dies,
    in_flight_read_fails_over_when_its_member_dies,
    watch_resumes_on_another_member_after_a_kill,
    request_timeout_on_a_paused_member_is_a_typed_timeout,
);

// ---------------------------------------------------------------------------------------------
// helpers

/// A loopback port nobody listens on (bound once by us, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn fast_connect() -> ClientOptions {
    ClientOptions::new().with_connect_timeout(Duration::from_secs(1))
}

async fn connect_to(endpoints: &[String], options: ClientOptions) -> Client {
    match Client::connect_with(endpoints, options).await {
        Ok(c) => c,
        Err(e) => panic!("connecting to {endpoints:?}: {e}"),
    }
}

/// The index (in `cluster`) of the member with etcd member ID `id`, via `Cluster/MemberList`.
async fn index_of(client: &Client, cluster: &Cluster, id: u64) -> usize {
    let list = ok(client.member_list().await);
    let name = list
        .members()
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.name.clone())
        .unwrap_or_else(|| panic!("member {id:x} not in {:?}", list.members()));
    cluster
        .members()
        .iter()
        .position(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no testkit member named {name}"))
}

/// True when some established connection to 127.0.0.1:`port` has unread bytes queued at the
/// receiving end (`/proc/net/tcp` rx_queue): a request reached a member that cannot read it.
fn bytes_queued_at(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = f
            .get(1)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        let established = f.get(3) == Some(&"01");
        let rx_queue = f
            .get(4)
            .and_then(|q| q.split(':').nth(1))
            .and_then(|q| u32::from_str_radix(q, 16).ok())
            .unwrap_or(0);
        local_port == Some(port) && established && rx_queue > 0
    })
}

fn wait_leader(cluster: &Cluster) -> usize {
    match cluster.wait_leader(Duration::from_secs(10)) {
        Ok(i) => i,
        Err(e) => panic!("no leader: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// status and members

async fn status_of_a_single_member(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;

    let status = ok(client.status().await);
    assert_eq!(status.version(), bin.version());
    assert_ne!(status.leader(), 0);
    assert_ne!(status.member_id(), 0);
    assert_eq!(status.leader(), status.member_id(), "a single member leads");
    assert!(status.is_leader());
    assert!(status.raft_index() > 0);
    assert!(status.raft_term() >= 1);
    assert!(status.db_size() > 0);
    assert_ne!(status.header().cluster_id, 0);
    assert_eq!(status.header().member_id, status.member_id());

    // Writes move the raft index and the revision; the member stays the same.
    let put = ok(client.put(format!("{}k", unique("status")), "v").await);
    let later = ok(client.status().await);
    assert!(later.raft_index() > status.raft_index());
    assert_eq!(later.revision(), put.revision());
    assert_eq!(later.member_id(), status.member_id());
    assert_eq!(later.header().cluster_id, put.header().cluster_id);

    let list = ok(client.member_list().await);
    assert_eq!(list.members().len(), 1);
    let m = &list.members()[0];
    assert_eq!(m.id, status.member_id());
    assert_eq!(m.name, cluster.member(0).name());
    assert_eq!(m.client_ur_ls, [cluster.member(0).endpoint()]);
    assert!(!m.is_learner);
}

async fn status_and_member_list_of_three_members(bin: &EtcdBinary) {
    let cluster = common::three(bin);
    let leader_index = wait_leader(&cluster);
    let client = common::client(&cluster).await;

    let list = ok(client.member_list().await);
    let members = list.members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert_ne!(list.header().cluster_id, 0);
    let mut names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    let mut expected: Vec<&str> = cluster.members().iter().map(|m| m.name()).collect();
    expected.sort();
    assert_eq!(names, expected);
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct member IDs");
    assert!(!ids.contains(&0));
    for m in members {
        let tk = cluster
            .members()
            .iter()
            .find(|t| t.name() == m.name)
            .expect("known member");
        assert_eq!(m.client_ur_ls, [tk.endpoint()], "client URLs of {}", m.name);
        assert_eq!(
            m.peer_ur_ls,
            [format!("http://127.0.0.1:{}", tk.peer_port())],
            "peer URLs of {}",
            m.name
        );
        assert!(!m.is_learner);
    }
    assert!(ids.contains(&list.header().member_id));

    // Status from each member: same leader and cluster, own member ID, one leader.
    let mut leaders = 0;
    let mut seen = Vec::new();
    for (i, endpoint) in cluster.endpoints().iter().enumerate() {
        let one = connect_to(std::slice::from_ref(endpoint), ClientOptions::new()).await;
        let status = ok(one.status().await);
        assert_eq!(status.version(), bin.version());
        assert!(ids.contains(&status.member_id()));
        assert!(ids.contains(&status.leader()));
        assert_eq!(status.header().cluster_id, list.header().cluster_id);
        assert!(status.raft_index() > 0);
        assert!(status.db_size() > 0);
        assert_eq!(index_of(&one, &cluster, status.member_id()).await, i);
        if status.is_leader() {
            leaders += 1;
            assert_eq!(i, leader_index, "the testkit sees the same leader");
        }
        seen.push((status.member_id(), status.leader()));
    }
    assert_eq!(leaders, 1);
    assert!(seen.iter().all(|(_, l)| *l == seen[0].1), "{seen:?}");
    let mut members_seen: Vec<u64> = seen.iter().map(|(m, _)| *m).collect();
    members_seen.sort();
    assert_eq!(members_seen, ids);
}

// ---------------------------------------------------------------------------------------------
// connecting

#[tokio::test]
async fn unreachable_endpoint_fails_within_the_connect_timeout() {
    let port = free_port();
    let started = Instant::now();
    let result = Client::connect_with([format!("127.0.0.1:{port}")], fast_connect()).await;
    let took = started.elapsed();
    let e = match result {
        Ok(c) => panic!("connected to a closed port: {c:?}"),
        Err(e) => e,
    };
    assert!(took < Duration::from_secs(3), "took {took:?}");
    match &e {
        Error::Connect { endpoints, reason } => {
            assert_eq!(endpoints, &format!("http://127.0.0.1:{port}"));
            assert!(!reason.is_empty());
        }
        other => panic!("expected Error::Connect, got {other:?}"),
    }
    assert!(e.is_unavailable());
    assert_eq!(e.code(), None);

    // Several dead endpoints: all named in the error.
    let (a, b) = (free_port(), free_port());
    let started = Instant::now();
    let e = match Client::connect_with(
        [format!("127.0.0.1:{a}"), format!("http://127.0.0.1:{b}/")],
        fast_connect(),
    )
    .await
    {
        Ok(c) => panic!("connected to closed ports: {c:?}"),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(3));
    match &e {
        Error::Connect { endpoints, .. } => assert_eq!(
            endpoints,
            &format!("http://127.0.0.1:{a},http://127.0.0.1:{b}")
        ),
        other => panic!("expected Error::Connect, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_endpoints_and_options_are_refused() {
    let invalid = |r: Result<Client, Error>, name: &str| match r {
        Err(Error::InvalidArgument { argument, .. }) if argument == name => {}
        other => panic!("expected InvalidArgument {name:?}, got {other:?}"),
    };
    invalid(Client::connect(Vec::<String>::new()).await, "endpoints");
    invalid(Client::connect(["ftp://127.0.0.1:1"]).await, "endpoints");
    invalid(Client::connect(["127.0.0.1"]).await, "endpoints");
    invalid(Client::connect(["127.0.0.1:2379", ""]).await, "endpoints");
    invalid(
        Client::connect_with(
            ["127.0.0.1:2379"],
            ClientOptions::new().with_connect_timeout(Duration::ZERO),
        )
        .await,
        "connect_timeout",
    );
}

async fn dead_endpoints_before_a_live_one(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let live = cluster.endpoints()[0].clone();
    let dead = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let endpoints = [dead[0].clone(), dead[1].clone(), live.clone()];

    let started = Instant::now();
    let client = connect_to(&endpoints, fast_connect()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        client.endpoints(),
        [
            format!("http://{}", dead[0]),
            format!("http://{}", dead[1]),
            live.clone()
        ]
    );
    assert_eq!(client.options().connect_timeout, Duration::from_secs(1));

    // The client starts on the live endpoint: one call, no detour over the dead ones.
    let k = format!("{}k", unique("dead_first"));
    let put = ok(client.put(k.as_str(), "v").await);
    let got = ok(client.get(k.as_str()).await);
    assert_eq!(got.kvs().len(), 1);
    assert_eq!(got.kvs()[0].value, b"v");
    assert_eq!(got.kvs()[0].mod_revision, put.revision());
    assert_eq!(client.stats().unary_calls, 2);
    let status = ok(client.status().await);
    assert_eq!(status.version(), bin.version());

    // Live first, dead after: same.
    let client = connect_to(&[live, dead[0].clone()], fast_connect()).await;
    assert_eq!(ok(client.get(k.as_str()).await).count(), 1);
    assert_eq!(client.stats().unary_calls, 1);
}

// ---------------------------------------------------------------------------------------------
// failover

/// Starts three members, connects with the leader (or a follower) as first endpoint, checks
/// the client talks to it, kills it and measures how long the next read takes.
/// Every endpoint of a 3-member `cluster`, member `first`'s first (the client starts there).
fn endpoints_from(cluster: &Cluster, first: usize) -> Vec<String> {
    let mut endpoints = vec![cluster.member(first).endpoint()];
    endpoints.extend(
        (0..3)
            .filter(|i| *i != first)
            .map(|i| cluster.member(i).endpoint()),
    );
    endpoints
}

async fn failover(bin: &EtcdBinary, kill_leader: bool) {
    let mut cluster = common::three(bin);
    let leader = wait_leader(&cluster);
    let first = if kill_leader {
        leader
    } else {
        (leader + 1) % 3
    };
    let endpoints = endpoints_from(&cluster, first);
    let client = connect_to(&endpoints, ClientOptions::new()).await;

    let k = format!("{}k", unique("failover"));
    let put = ok(client.put(k.as_str(), "before").await);
    assert_eq!(ok(client.get(k.as_str()).await).count(), 1);
    let status = ok(client.status().await);
    let current = index_of(&client, &cluster, status.member_id()).await;
    assert_eq!(current, first, "the client starts on the first endpoint");
    assert_eq!(status.is_leader(), kill_leader);

    match cluster.member_mut(first).kill() {
        Ok(()) => {}
        Err(e) => panic!("kill: {e}"),
    }
    let started = Instant::now();
    let got = ok(client.get(k.as_str()).await);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "read after failover took {took:?}"
    );
    assert_eq!(got.kvs().len(), 1);
    assert_eq!(got.kvs()[0].value, b"before");
    assert_eq!(got.kvs()[0].mod_revision, put.revision());

    let now = ok(client.status().await);
    assert_ne!(
        now.member_id(),
        status.member_id(),
        "still on the dead member?"
    );
    assert_ne!(index_of(&client, &cluster, now.member_id()).await, first);
    assert_ne!(now.leader(), 0);
    if kill_leader {
        assert_ne!(now.leader(), status.member_id(), "a new leader");
    }
    let put = ok(client.put(k.as_str(), "after").await);
    let got = ok(client.get(k.as_str()).await);
    assert_eq!(got.kvs()[0].value, b"after");
    assert_eq!(got.kvs()[0].mod_revision, put.revision());
    eprintln!(
        "etcd {}: read after killing the {} took {took:?}",
        bin.version(),
        if kill_leader { "leader" } else { "follower" }
    );
}

async fn failover_when_the_current_follower_dies(bin: &EtcdBinary) {
    failover(bin, false).await;
}

async fn failover_when_the_current_leader_dies(bin: &EtcdBinary) {
    failover(bin, true).await;
}

async fn in_flight_read_fails_over_when_its_member_dies(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let first = (wait_leader(&cluster) + 1) % 3;
    let endpoints = endpoints_from(&cluster, first);
    let client = connect_to(&endpoints, ClientOptions::new()).await;
    let k = format!("{}k", unique("in_flight"));
    ok(client.put(k.as_str(), "v").await);
    let port = cluster.member(first).client_port();
    assert!(!bytes_queued_at(port));

    // Freeze the member, send a read to it, and kill the member while the read waits.
    match cluster.member(first).pause() {
        Ok(()) => {}
        Err(e) => panic!("pause: {e}"),
    }
    let reader = tokio::spawn({
        let client = client.clone();
        let k = k.clone();
        async move {
            let started = Instant::now();
            let result = client.get(k).await;
            (result, started.elapsed())
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bytes_queued_at(port) {
        assert!(
            Instant::now() < deadline,
            "the read never reached the member"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match cluster.member_mut(first).kill() {
        Ok(()) => {}
        Err(e) => panic!("kill: {e}"),
    }
    let (result, took) = reader.await.expect("reader task");
    let got = match result {
        Ok(got) => got,
        Err(e) => panic!("the read was not retried on a live member: {e:?}"),
    };
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(got.kvs().len(), 1);
    assert_eq!(got.kvs()[0].value, b"v");
    assert!(
        client.stats().unary_calls >= 3,
        "put, failed read, retried read"
    );
}

async fn watch_resumes_on_another_member_after_a_kill(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    let leader = wait_leader(&cluster);
    let first = (leader + 1) % 3;
    let endpoints = endpoints_from(&cluster, first);
    let client = connect_to(&endpoints, ClientOptions::new()).await;
    let p = unique("watch_failover");
    let k = format!("{p}k");

    let mut w = ok(client.watch(k.as_str()).await);
    let rev = ok(client.put(k.as_str(), "1").await).revision();
    let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("event in time")
        .expect("watch open");
    assert_eq!(
        ok(batch).events()[0].kv.as_ref().map(|kv| kv.mod_revision),
        Some(rev)
    );

    match cluster.member_mut(first).kill() {
        Ok(()) => {}
        Err(e) => panic!("kill: {e}"),
    }
    // The open watch resumes on a live member from the next revision: the delete written
    // after the kill reaches the same watcher, exactly once.
    let started = Instant::now();
    // A read first: reads fail over freely, while a write on the connection that just died
    // may be reported as possibly-sent instead of being retried.
    ok(client.get(k.as_str()).await);
    let rev = ok(client.delete(k.as_str()).await).revision();
    let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("the watch must resume within 5 s")
        .expect("watch open");
    let batch = ok(batch);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(batch.events().len(), 1);
    assert!(is_delete(&batch.events()[0]));
    assert_eq!(
        batch.events()[0].kv.as_ref().map(|kv| kv.mod_revision),
        Some(rev)
    );
    // A new watch opens on the live member too and sees new writes.
    let mut again = ok(client.watch(k.as_str()).await);
    let rev = ok(client.put(k.as_str(), "2").await).revision();
    let batch = tokio::time::timeout(Duration::from_secs(5), again.next())
        .await
        .expect("event in time")
        .expect("watch open");
    assert_eq!(
        ok(batch).events()[0].kv.as_ref().map(|kv| kv.mod_revision),
        Some(rev)
    );
    let extra = tokio::time::timeout(Duration::from_millis(300), w.next()).await;
    assert!(
        matches!(extra, Ok(Some(Ok(ref b))) if b.events().len() == 1),
        "the first watcher sees the put once: {extra:?}"
    );
}

async fn request_timeout_on_a_paused_member_is_a_typed_timeout(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let timeout = Duration::from_secs(1);
    let client = common::client_with(
        &cluster,
        ClientOptions::new().with_request_timeout(Some(timeout)),
    )
    .await;
    let k = format!("{}k", unique("paused"));
    ok(client.put(k.as_str(), "v").await);

    match cluster.member(0).pause() {
        Ok(()) => {}
        Err(e) => panic!("pause: {e}"),
    }
    let started = Instant::now();
    let result = client.get(k.as_str()).await;
    let took = started.elapsed();
    match cluster.member(0).resume() {
        Ok(()) => {}
        Err(e) => panic!("resume: {e}"),
    }
    let e = match result {
        Ok(r) => panic!("a paused member answered: {r:?}"),
        Err(e) => e,
    };
    assert!(
        took >= timeout - Duration::from_millis(50) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(
        matches!(e, Error::Timeout { method: "/etcdserverpb.KV/Range", after, .. } if after == timeout),
        "expected Error::Timeout for KV/Range after {timeout:?}, got {e:?}"
    );
    assert!(e.is_timeout());

    // Resumed: the same client works again.
    assert_eq!(ok(client.get(k.as_str()).await).count(), 1);
}
