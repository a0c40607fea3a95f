//! The client's own HTTP/2 channel, against real members: it reconnects on the next call after
//! a member restarts, a PING left unanswered closes a dead connection (so a call on it fails
//! promptly instead of hanging), a cancelled call resets its HTTP/2 stream (the server sees the
//! cancellation), and answers and requests larger than the flow-control windows go through.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use common::{ok, unique};
use etcd_lock::kv::GetOptions;
use etcd_lock::lock::{Locker, ServiceLock};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Client, ClientOptions};

per_version!(
    next_call_after_a_restart_reconnects,
    unanswered_ping_fails_a_call_on_a_paused_member,
    cancelled_call_resets_its_stream,
    values_larger_than_the_windows_flow,
);

/// The member restarts under a connected client: the old connection ends, and the very next
/// call (a write, which is never repeated after it may have left) opens a new one and succeeds.
async fn next_call_after_a_restart_reconnects(bin: &EtcdBinary) {
    let mut cluster = common::single(bin);
    let client = common::connect_quick(&cluster.endpoints()).await;
    let key = unique("restart");
    ok(client.put(key.as_bytes(), "before").await);
    ok(cluster.member_mut(0).restart());
    ok(client.put(key.as_bytes(), "after").await);
    let got = ok(client.get(key.as_bytes()).await);
    assert_eq!(got.kvs()[0].value, b"after");
    // Once more: the same connection serves the next calls.
    ok(client.put(key.as_bytes(), "again").await);
}

/// A paused member answers nothing, PINGs included: a write without a deadline fails once a
/// PING goes unanswered (keep-alive 1 s + 1 s), saying so, rather than waiting for ever. (A
/// write, because a read would be sent again on a new connection to the same paused member.)
async fn unanswered_ping_fails_a_call_on_a_paused_member(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let options = ClientOptions::new()
        .with_request_timeout(None)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1));
    let client = ok(Client::connect_with(cluster.endpoints(), options).await);
    let key = unique("paused");
    ok(client.put(key.as_bytes(), "v").await);
    ok(cluster.member(0).pause());
    let started = Instant::now();
    let outcome =
        tokio::time::timeout(Duration::from_secs(20), client.put(key.as_bytes(), "w")).await;
    let waited = started.elapsed();
    ok(cluster.member(0).resume());
    let err = match outcome {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => panic!("a paused member answered"),
        Err(_) => panic!("no failure within 20 s: the dead connection was never closed"),
    };
    let text = format!("{err} -- {err:?}");
    assert!(text.contains("PING"), "{text}");
    assert!(waited < Duration::from_secs(8), "{waited:?}: {text}");
    // After the member resumes, the next call connects again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(key.as_bytes()).await {
            Ok(got) => {
                assert_eq!(got.count(), 1);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no reconnect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Lock service's `Lock` calls etcd started and those it finished, from its metrics.
fn lock_calls(cluster: &etcd_lock::testkit::Cluster) -> (u64, u64) {
    let metrics = ok(cluster.member(0).metrics());
    let count = |metric: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(metric) && l.contains(r#"grpc_method="Lock""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    };
    (
        count("grpc_server_started_total{"),
        count("grpc_server_handled_total{"),
    )
}

/// A server-side `Lock` call that waits behind a holder is given up: the channel resets its
/// stream, so etcd ends the handler (its metrics count it finished; etcd 3.4 and 3.5 report
/// the context's cancellation as `Unknown`), and the waiter's key goes.
async fn cancelled_call_resets_its_stream(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let name = unique("cancel");
    let (s1, s2) = (
        common::session(&client, 30).await,
        common::session(&client, 30).await,
    );
    let held = ok(ServiceLock::new().lock(&s1, name.as_bytes()).await);
    let waiting = tokio::time::timeout(
        Duration::from_millis(500),
        ServiceLock::new().lock(&s2, name.as_bytes()),
    )
    .await;
    assert!(waiting.is_err(), "the second lock must still be waiting");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (started, handled) = lock_calls(&cluster);
        assert_eq!(started, 2, "two Lock calls");
        if handled == started {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd still runs the cancelled Lock call: {}",
            ok(cluster.member(0).metrics())
                .lines()
                .filter(|l| l.contains("Lock"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::wait_key_count(&client, &name, 1, Duration::from_secs(5)).await;
    ok(held.unlock().await);
    ok(s1.close().await);
    ok(s2.close().await);
}

/// Six values of 1.25 MiB (each request beyond the server's stream window, the range answer
/// of 7.5 MiB beyond both our stream and connection windows) are written and read back whole.
async fn values_larger_than_the_windows_flow(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let prefix = unique("big");
    let value: Vec<u8> = (0..1_310_720u32).map(|i| (i % 251) as u8).collect();
    for i in 0..6 {
        ok(client.put(format!("{prefix}/{i}"), value.clone()).await);
    }
    let got = ok(client
        .get_with(prefix.as_bytes(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(got.kvs().len(), 6);
    for kv in got.kvs() {
        assert!(kv.value == value, "a value came back changed");
    }
}
