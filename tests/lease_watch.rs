//! `Lease/*` and `Watch/Watch` against real etcd servers: every case starts its own single
//! member, once per etcd version.
#![cfg(feature = "testkit")]

mod common;

use std::fmt::Debug;
use std::time::{Duration, Instant};

use common::{ok, unique};
use etcd_lock::kv::{GetOptions, PutOptions};
use etcd_lock::lease::MAX_TTL_SECS;
use etcd_lock::proto::mvccpb::Event;
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::watch::{
    is_delete, EventType, WatchOptions, WatchResponse, Watcher, DEFAULT_WATCH_BUFFER,
};
use etcd_lock::{Client, Code, Error, EtcdErrorKind};

per_version!(
    lease_grant_time_to_live_and_list,
    lease_ttl_is_checked_before_the_wire,
    lease_keep_alive_once_and_keeper_stream,
    lease_revoke_deletes_attached_keys,
    lease_expires_and_its_key_disappears,
    watch_one_key,
    watch_prefix_and_range,
    watch_from_start_revision_replays_history,
    watch_prev_kv_and_two_watchers_on_one_key,
    watch_filters_no_put_no_delete,
    watch_progress_notify,
    watch_many_share_one_stream,
    watch_cancel_by_drop_stops_events,
    watch_compacted_start_revision,
    watch_refused_and_invalid_requests,
    watch_fragmented_replay_is_merged,
    watch_large_replay_without_fragment,
    watch_unread_watcher_lags_and_others_keep_receiving,
    watch_default_buffer_is_bounded,
    watch_mass_drop_cancels_every_watch,
);

// ---------------------------------------------------------------------------------------------
// helpers

const WAIT: Duration = Duration::from_secs(5);

fn err<T: Debug>(r: Result<T, Error>) -> Error {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn assert_invalid(e: &Error, name: &str) {
    assert!(
        matches!(e, Error::InvalidArgument { argument, .. } if *argument == name),
        "expected InvalidArgument {{ argument: {name:?} }}, got {e:?}"
    );
}

async fn started(bin: &EtcdBinary) -> (Cluster, Client) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    (cluster, client)
}

/// One value of etcd's Prometheus `/metrics` (`name` including its `{labels}`), read over
/// plain HTTP from the member's client port.
fn metric(cluster: &Cluster, name: &str) -> f64 {
    use std::io::{Read, Write};
    let port = cluster.member(0).client_port();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics connect");
    stream
        .set_read_timeout(Some(WAIT))
        .expect("metrics read timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("metrics request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("metrics answer");
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("metric {name} not in /metrics"))
}

const WATCH_STREAMS_OPENED: &str = "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"}";
const KEEP_ALIVE_STREAMS_OPENED: &str = "grpc_server_started_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"}";
const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";

/// Polls `cond` every 20 ms until it holds; panics after `WAIT`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next batch of `w`, within `WAIT`.
async fn batch(w: &mut Watcher) -> WatchResponse {
    let id = w.watch_id();
    match tokio::time::timeout(WAIT, w.next()).await {
        Err(_) => panic!("no watch response within {WAIT:?}"),
        Ok(None) => panic!("watch {id} ended"),
        Ok(Some(r)) => {
            let r = ok(r);
            assert_eq!(r.watch_id(), id, "response routed to the wrong watcher");
            r
        }
    }
}

/// Exactly `n` events of `w` (the last batch must not overshoot), within `WAIT` in total.
async fn events(w: &mut Watcher, n: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        let r = tokio::time::timeout_at(deadline, batch(w))
            .await
            .unwrap_or_else(|_| panic!("got {} of {n} events: {out:?}", out.len()));
        assert!(
            !r.events().is_empty(),
            "unexpected empty watch response {r:?}"
        );
        out.extend(r.events().iter().cloned());
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

/// `(kind, key without prefix, value)` of each event.
fn summary(prefix: &str, events: &[Event]) -> Vec<(&'static str, String, String)> {
    events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().expect("event without kv");
            let key = String::from_utf8_lossy(&kv.key);
            (
                match e.event_type() {
                    EventType::Put => "put",
                    EventType::Delete => "delete",
                    EventType::Unknown(n) => panic!("unknown event type {n}"),
                },
                key.strip_prefix(prefix).unwrap_or(&key).to_string(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

fn ev(kind: &'static str, key: &str, value: &str) -> (&'static str, String, String) {
    (kind, key.to_string(), value.to_string())
}

// ---------------------------------------------------------------------------------------------
// lease

async fn lease_grant_time_to_live_and_list(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("lease_grant");

    let granted = ok(client.lease_grant(30).await);
    assert!(granted.id() > 0, "id {}", granted.id());
    assert_eq!(granted.ttl(), 30);
    assert_ne!(granted.header().member_id, 0);
    assert_ne!(granted.header().cluster_id, 0);
    assert!(granted.revision() >= 1);
    assert!(granted.get_ref().error.is_empty());

    let chosen = 0x0bad_cafe_1234;
    let mine = ok(client.lease_grant_with_id(20, chosen).await);
    assert_eq!(mine.id(), chosen);
    assert_eq!(mine.ttl(), 20);
    let e = err(client.lease_grant_with_id(20, chosen).await);
    assert_eq!(e.etcd_kind(), Some(EtcdErrorKind::LeaseExists), "{e:?}");
    assert_eq!(e.code(), Some(Code::FailedPrecondition));

    // Keys attached to the lease.
    let k1 = format!("{p}k1");
    let k2 = format!("{p}k2");
    for k in [&k2, &k1] {
        ok(client
            .put_with(k.as_str(), "v", PutOptions::new().with_lease(granted.id()))
            .await);
    }
    ok(client.put(format!("{p}free"), "v").await);
    let ttl = ok(client.lease_time_to_live(granted.id(), true).await);
    assert_eq!(ttl.id(), granted.id());
    assert_eq!(ttl.granted_ttl(), 30);
    assert!((1..=30).contains(&ttl.ttl()), "remaining {}", ttl.ttl());
    let mut keys = ttl.keys().to_vec();
    keys.sort();
    assert_eq!(keys, [k1.as_bytes().to_vec(), k2.as_bytes().to_vec()]);

    let no_keys = ok(client.lease_time_to_live(granted.id(), false).await);
    assert!(no_keys.keys().is_empty(), "keys without asking");
    assert_eq!(no_keys.granted_ttl(), 30);

    let other = ok(client.lease_time_to_live(chosen, true).await);
    assert_eq!(other.id(), chosen);
    assert_eq!(other.granted_ttl(), 20);
    assert!(other.keys().is_empty());

    let unknown = ok(client.lease_time_to_live(chosen + 1, true).await);
    assert_eq!(unknown.ttl(), -1, "unknown lease");

    let mut ids = ok(client.leases().await).ids();
    ids.sort();
    let mut expected = vec![granted.id(), chosen];
    expected.sort();
    assert_eq!(ids, expected, "fresh server: exactly our leases");

    // The largest TTL etcd accepts.
    let max = ok(client.lease_grant(MAX_TTL_SECS).await);
    assert_eq!(max.ttl(), MAX_TTL_SECS);
    assert_eq!(ok(client.leases().await).ids().len(), 3);
}

async fn lease_ttl_is_checked_before_the_wire(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    ok(client.lease_grant(5).await);
    let before = client.stats();
    assert_eq!(before.unary_calls, 1, "the grant counted");

    for ttl in [0, -1, -60, MAX_TTL_SECS + 1, i64::MAX] {
        assert_invalid(&err(client.lease_grant(ttl).await), "ttl");
        assert_invalid(&err(client.lease_grant_with_id(ttl, 77).await), "ttl");
    }
    assert_invalid(&err(client.lease_grant_with_id(10, -1).await), "lease");
    for id in [0, -7] {
        assert_invalid(&err(client.lease_revoke(id).await), "lease");
        assert_invalid(&err(client.lease_time_to_live(id, true).await), "lease");
        assert_invalid(&err(client.lease_keep_alive_once(id).await), "lease");
    }
    let after = client.stats();
    assert_eq!(after, before, "a refused argument reached the wire");
}

async fn lease_keep_alive_once_and_keeper_stream(bin: &EtcdBinary) {
    let (cluster, client) = started(bin).await;
    let id = ok(client.lease_grant(10).await).id();
    assert_eq!(metric(&cluster, KEEP_ALIVE_STREAMS_OPENED), 0.0);

    let once = ok(client.lease_keep_alive_once(id).await);
    assert_eq!(once.id(), id);
    assert_eq!(once.ttl(), 10);
    assert_ne!(once.header().member_id, 0);
    assert!(once.revision() >= 1);

    let before = client.stats();
    let (mut keeper, first) = ok(client.lease_keep_alive(id).await);
    assert_eq!(keeper.id(), id);
    assert_eq!(first.id(), id);
    assert_eq!(first.ttl(), 10);
    for _ in 0..3 {
        let r = ok(keeper.keep_alive().await);
        assert_eq!(r.id(), id);
        assert_eq!(r.ttl(), 10);
    }
    let after = client.stats();
    assert_eq!(
        after.unary_calls, before.unary_calls,
        "keep-alives are stream messages"
    );
    assert_eq!(after.stream_messages_sent, before.stream_messages_sent + 4);
    assert_eq!(
        after.stream_messages_received,
        before.stream_messages_received + 4
    );
    assert_eq!(after.requests, before.requests + 4);
    assert!(after.bytes_sent > before.bytes_sent);
    assert!(after.bytes_received > before.bytes_received);
    // One stream for keep_alive_once, one for the keeper and its three refreshes.
    assert_eq!(metric(&cluster, KEEP_ALIVE_STREAMS_OPENED), 2.0);

    // The refresh really happened: the remaining TTL is back near 10.
    let ttl = ok(client.lease_time_to_live(id, false).await);
    assert!((8..=10).contains(&ttl.ttl()), "remaining {}", ttl.ttl());

    // Revoked under an open keeper: the next refresh reports the lease gone.
    ok(client.lease_revoke(id).await);
    let e = err(keeper.keep_alive().await);
    assert!(
        matches!(e, Error::LeaseExpired { lease } if lease == id),
        "{e:?}"
    );
    assert!(e.is_lease_not_found());

    // Unknown lease on a fresh stream.
    let e = err(client.lease_keep_alive_once(id + 1).await);
    assert!(
        matches!(e, Error::LeaseExpired { lease } if lease == id + 1),
        "{e:?}"
    );
}

async fn lease_revoke_deletes_attached_keys(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("revoke");
    let id = ok(client.lease_grant(60).await).id();
    let mut last = 0;
    for name in ["a", "b", "c"] {
        last = ok(client
            .put_with(format!("{p}{name}"), name, PutOptions::new().with_lease(id))
            .await)
        .revision();
    }
    ok(client.put(format!("{p}free"), "stays").await);
    last += 1;

    let revoked = ok(client.lease_revoke(id).await);
    assert_eq!(
        revoked.revision(),
        last + 1,
        "attached keys deleted in one revision"
    );
    assert_ne!(revoked.header().member_id, 0);
    let left = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix())
        .await);
    let keys: Vec<&[u8]> = left.kvs().iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [format!("{p}free").as_bytes()]);
    assert_eq!(ok(client.lease_time_to_live(id, true).await).ttl(), -1);
    assert!(!ok(client.leases().await).ids().contains(&id));

    for missing in [id, id + 12345] {
        let e = err(client.lease_revoke(missing).await);
        assert!(e.is_lease_not_found(), "{e:?}");
        assert_eq!(e.etcd_kind(), Some(EtcdErrorKind::LeaseNotFound));
        assert_eq!(e.code(), Some(Code::NotFound));
    }
    // Attaching to the revoked lease fails too.
    let e = err(client
        .put_with(format!("{p}late"), "v", PutOptions::new().with_lease(id))
        .await);
    assert!(e.is_lease_not_found(), "{e:?}");
}

async fn lease_expires_and_its_key_disappears(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let k = format!("{}k", unique("expire"));
    let granted_at = Instant::now();
    let lease = ok(client.lease_grant(1).await);
    // etcd raises TTLs below its minimum (1.5 x election timeout, rounded up: 2 s).
    assert!((1..=2).contains(&lease.ttl()), "ttl {}", lease.ttl());
    ok(client
        .put_with(k.as_str(), "v", PutOptions::new().with_lease(lease.id()))
        .await);
    assert_eq!(ok(client.get(k.as_str()).await).count(), 1);

    let deadline = granted_at + Duration::from_secs(8);
    loop {
        if ok(client.get(k.as_str()).await).kvs().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "key still there after 8 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone_after = granted_at.elapsed();
    assert!(
        gone_after >= Duration::from_millis(900),
        "key vanished after {gone_after:?}, before the lease TTL"
    );
    assert_eq!(
        ok(client.lease_time_to_live(lease.id(), false).await).ttl(),
        -1
    );
    let e = err(client.lease_keep_alive_once(lease.id()).await);
    assert!(e.is_lease_not_found(), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// watch

async fn watch_one_key(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_key");
    let k = format!("{p}k");
    let now = ok(client.get("probe").await).revision();
    let mut w = ok(client.watch(k.as_str()).await);
    assert_eq!(w.created_revision(), now);

    let r1 = ok(client.put(k.as_str(), "v1").await).revision();
    ok(client.put(format!("{p}k2"), "other key").await);
    ok(client.put(p.as_str(), "the prefix itself").await);
    let r2 = ok(client.put(k.as_str(), "v2").await).revision();
    let r3 = ok(client.delete(k.as_str()).await).revision();

    let got = events(&mut w, 3).await;
    assert_eq!(
        summary(&p, &got),
        [
            ev("put", "k", "v1"),
            ev("put", "k", "v2"),
            ev("delete", "k", "")
        ]
    );
    let kv = got[0].kv.as_ref().expect("kv");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );
    assert!(got[0].prev_kv.is_none(), "prev_kv without asking");
    let kv = got[1].kv.as_ref().expect("kv");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    let kv = got[2].kv.as_ref().expect("kv");
    assert_eq!(kv.mod_revision, r3);
    assert_eq!(kv.key, k.as_bytes());
    assert_eq!(kv.key_str(), Ok(k.as_str()));
    assert!(got[2].prev_kv.is_none());
    assert!(is_delete(&got[2]) && !is_delete(&got[1]));

    // Text views borrow the bytes as they are, and refuse what is not UTF-8.
    ok(client.put(format!("{p}bin"), vec![b'x', 0xff]).await);
    let read = ok(client.get(format!("{p}bin")).await);
    let bin = read.first().expect("the key just written");
    assert_eq!(bin.key_str(), Ok(format!("{p}bin").as_str()));
    assert_eq!(bin.value_str().map_err(|e| e.valid_up_to()), Err(1));

    // Also readable as a futures Stream.
    let r4 = ok(client.put(k.as_str(), "v3").await).revision();
    let next = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut w)).await;
    let batch = ok(next.expect("no event in time").expect("watch ended"));
    assert_eq!(batch.events().len(), 1);
    assert_eq!(
        batch.events()[0].kv.as_ref().map(|kv| kv.mod_revision),
        Some(r4)
    );
    assert!(batch.revision() >= r4);
    assert!(!batch.is_progress_notify());
}

async fn watch_prefix_and_range(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_prefix");
    let stem = &p[..p.len() - 1];
    let mut prefix = ok(client
        .watch_with(p.as_str(), WatchOptions::new().with_prefix())
        .await);
    let mut range = ok(client
        .watch_with(
            format!("{p}b"),
            WatchOptions::new().with_range_end(format!("{p}d")),
        )
        .await);
    let mut from = ok(client
        .watch_with(format!("{p}c"), WatchOptions::new().with_from_key())
        .await);
    let ids = [prefix.watch_id(), range.watch_id(), from.watch_id()];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    ok(client.put(format!("{stem}."), "below").await);
    ok(client.put(format!("{p}a"), "1").await);
    ok(client.put(format!("{p}b/c"), "2").await);
    ok(client.put(format!("{stem}x"), "above").await);
    ok(client.put(format!("{p}c"), "3").await);
    ok(client.delete(format!("{p}a")).await);
    ok(client.put(format!("{p}d"), "4").await);

    assert_eq!(
        summary(&p, &events(&mut prefix, 5).await),
        [
            ev("put", "a", "1"),
            ev("put", "b/c", "2"),
            ev("put", "c", "3"),
            ev("delete", "a", ""),
            ev("put", "d", "4"),
        ]
    );
    assert_eq!(
        summary(&p, &events(&mut range, 2).await),
        [ev("put", "b/c", "2"), ev("put", "c", "3")]
    );
    assert_eq!(
        summary(&p, &events(&mut from, 3).await),
        [
            ev("put", &format!("{stem}x"), "above"),
            ev("put", "c", "3"),
            ev("put", "d", "4"),
        ]
    );
}

async fn watch_from_start_revision_replays_history(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_replay");
    let k = format!("{p}k");
    let r1 = ok(client.put(k.as_str(), "v1").await).revision();
    let r2 = ok(client.put(k.as_str(), "v2").await).revision();
    let r3 = ok(client.put(k.as_str(), "v3").await).revision();
    let r4 = ok(client.delete(k.as_str()).await).revision();

    let mut w = ok(client
        .watch_with(k.as_str(), WatchOptions::new().with_start_revision(r2))
        .await);
    assert_eq!(w.created_revision(), r4);
    let got = events(&mut w, 3).await;
    assert_eq!(
        summary(&p, &got),
        [
            ev("put", "k", "v2"),
            ev("put", "k", "v3"),
            ev("delete", "k", "")
        ]
    );
    let revs: Vec<i64> = got
        .iter()
        .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
        .collect();
    assert_eq!(revs, [r2, r3, r4]);
    assert_eq!(got[0].kv.as_ref().map(|kv| kv.create_revision), Some(r1));

    // Live events follow the replay.
    let r5 = ok(client.put(k.as_str(), "v4").await).revision();
    let live = events(&mut w, 1).await;
    assert_eq!(summary(&p, &live), [ev("put", "k", "v4")]);
    let kv = live[0].kv.as_ref().expect("kv");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r5, r5, 1)
    );

    // From revision 1: the whole history of the key.
    let mut all = ok(client
        .watch_with(k.as_str(), WatchOptions::new().with_start_revision(1))
        .await);
    assert_eq!(events(&mut all, 5).await.len(), 5);
}

async fn watch_prev_kv_and_two_watchers_on_one_key(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_prev");
    let k = format!("{p}k");
    let r1 = ok(client.put(k.as_str(), "v1").await).revision();
    let mut with = ok(client
        .watch_with(k.as_str(), WatchOptions::new().with_prev_kv())
        .await);
    let mut without = ok(client.watch(k.as_str()).await);
    assert_ne!(with.watch_id(), without.watch_id());

    let r2 = ok(client.put(k.as_str(), "v2").await).revision();
    let r3 = ok(client.delete(k.as_str()).await).revision();

    let got = events(&mut with, 2).await;
    let prev = got[0].prev_kv.as_ref().expect("prev_kv on the put");
    assert_eq!(prev.key, k.as_bytes());
    assert_eq!(prev.value, b"v1");
    assert_eq!((prev.mod_revision, prev.version), (r1, 1));
    assert_eq!(got[0].kv.as_ref().map(|kv| kv.mod_revision), Some(r2));
    assert!(is_delete(&got[1]));
    let prev = got[1].prev_kv.as_ref().expect("prev_kv on the delete");
    assert_eq!(prev.value, b"v2");
    assert_eq!((prev.mod_revision, prev.version), (r2, 2));
    let deleted = got[1].kv.as_ref().expect("kv of the delete");
    assert_eq!(deleted.key, k.as_bytes());
    assert!(deleted.value.is_empty());
    assert_eq!(deleted.mod_revision, r3);

    let plain = events(&mut without, 2).await;
    assert!(plain.iter().all(|e| e.prev_kv.is_none()), "{plain:?}");
    assert_eq!(
        summary(&p, &plain),
        [ev("put", "k", "v2"), ev("delete", "k", "")]
    );
}

async fn watch_filters_no_put_no_delete(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_filters");
    let mut deletes_only = ok(client
        .watch_with(p.as_str(), WatchOptions::new().with_prefix().with_no_put())
        .await);
    let mut puts_only = ok(client
        .watch_with(
            p.as_str(),
            WatchOptions::new().with_prefix().with_no_delete(),
        )
        .await);

    for name in ["a", "b"] {
        ok(client.put(format!("{p}{name}"), name).await);
        ok(client.delete(format!("{p}{name}")).await);
    }
    // The last write of each kind: every filtered event would have come before it.
    ok(client.put(format!("{p}z"), "z").await);
    ok(client.delete(format!("{p}z")).await);

    assert_eq!(
        summary(&p, &events(&mut deletes_only, 3).await),
        [
            ev("delete", "a", ""),
            ev("delete", "b", ""),
            ev("delete", "z", "")
        ]
    );
    assert_eq!(
        summary(&p, &events(&mut puts_only, 3).await),
        [
            ev("put", "a", "a"),
            ev("put", "b", "b"),
            ev("put", "z", "z")
        ]
    );
}

async fn watch_progress_notify(bin: &EtcdBinary) {
    let cluster = match Cluster::builder(bin)
        .arg("--experimental-watch-progress-notify-interval=200ms")
        .start()
    {
        Ok(c) => c,
        Err(e) => panic!("starting etcd {}: {e}", bin.version()),
    };
    let client = common::client(&cluster).await;
    let k = format!("{}k", unique("progress"));
    let mut w = ok(client
        .watch_with(k.as_str(), WatchOptions::new().with_progress_notify())
        .await);
    let rev = ok(client.put(k.as_str(), "v").await).revision();

    let deadline = Instant::now() + WAIT;
    let mut saw_event = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "no progress notification in {WAIT:?}"
        );
        let r = batch(&mut w).await;
        if r.is_progress_notify() {
            assert!(r.events().is_empty());
            assert!(saw_event, "the event comes first");
            assert_eq!(r.revision(), rev, "progress carries the current revision");
            break;
        }
        assert_eq!(r.events().len(), 1, "{r:?}");
        assert_eq!(
            r.events()[0].kv.as_ref().map(|kv| kv.mod_revision),
            Some(rev)
        );
        saw_event = true;
    }
}

async fn watch_many_share_one_stream(bin: &EtcdBinary) {
    let (cluster, client) = started(bin).await;
    let p = unique("watch_many");
    assert_eq!(metric(&cluster, WATCH_STREAMS_OPENED), 0.0);
    let before = client.stats();

    // Five one after the other, five concurrently.
    let mut watchers = Vec::new();
    for i in 0..5 {
        watchers.push(ok(client.watch(format!("{p}{i}")).await));
    }
    let concurrent = futures_util::future::join_all((5..10).map(|i| {
        let client = client.clone();
        let key = format!("{p}{i}");
        async move { client.watch(key).await }
    }))
    .await;
    watchers.extend(concurrent.into_iter().map(ok));

    let created = client.stats();
    assert_eq!(
        created.unary_calls, before.unary_calls,
        "no unary call for watches"
    );
    assert_eq!(
        created.stream_messages_sent,
        before.stream_messages_sent + 10
    );
    assert_eq!(created.requests, before.requests + 10);
    assert_eq!(
        created.stream_messages_received,
        before.stream_messages_received + 10,
        "one `created` answer per watch"
    );
    let mut ids: Vec<i64> = watchers.iter().map(Watcher::watch_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "watch IDs are distinct");
    assert_eq!(
        metric(&cluster, WATCH_STREAMS_OPENED),
        1.0,
        "one shared stream"
    );
    assert_eq!(metric(&cluster, WATCHERS), 10.0);

    // Writes in reverse order; each watcher sees only its own key.
    let mut revs = [0; 10];
    for i in (0..10).rev() {
        revs[i] = ok(client.put(format!("{p}{i}"), format!("value {i}")).await).revision();
    }
    for (i, w) in watchers.iter_mut().enumerate() {
        let got = events(w, 1).await;
        assert_eq!(
            summary(&p, &got),
            [ev("put", &i.to_string(), &format!("value {i}"))]
        );
        assert_eq!(got[0].kv.as_ref().map(|kv| kv.mod_revision), Some(revs[i]));
    }
    let after = client.stats();
    assert_eq!(
        after.stream_messages_received,
        created.stream_messages_received + 10
    );
    assert_eq!(after.stream_messages_sent, created.stream_messages_sent);
    assert_eq!(metric(&cluster, WATCH_STREAMS_OPENED), 1.0);

    // A clone of the client shares the stream too.
    let clone = client.clone();
    let mut late = ok(clone.watch(format!("{p}late")).await);
    assert!(!ids.contains(&late.watch_id()));
    ok(client.put(format!("{p}late"), "x").await);
    assert_eq!(events(&mut late, 1).await.len(), 1);
    assert_eq!(metric(&cluster, WATCH_STREAMS_OPENED), 1.0);
    assert_eq!(clone.stats(), client.stats(), "clones share counters");
}

async fn watch_cancel_by_drop_stops_events(bin: &EtcdBinary) {
    let (cluster, client) = started(bin).await;
    let p = unique("watch_cancel");
    let a = format!("{p}a");
    let b = format!("{p}b");
    let dropped = ok(client.watch(a.as_str()).await);
    let mut kept = ok(client.watch(b.as_str()).await);
    let cancelled = ok(client.watch(b.as_str()).await);
    assert_eq!(metric(&cluster, WATCHERS), 3.0);
    let before = client.stats();

    drop(dropped);
    cancelled.cancel();
    // Two cancel requests go out and etcd confirms each.
    eventually("two cancels sent and confirmed", || {
        let now = client.stats();
        now.stream_messages_sent == before.stream_messages_sent + 2
            && now.stream_messages_received == before.stream_messages_received + 2
    })
    .await;
    assert_eq!(
        metric(&cluster, WATCHERS),
        1.0,
        "server-side watchers cancelled"
    );

    // A write to the cancelled key sends nothing; the kept watcher still works.
    let base = client.stats().stream_messages_received;
    ok(client.put(a.as_str(), "nobody listens").await);
    let rb = ok(client.put(b.as_str(), "kept").await).revision();
    let got = events(&mut kept, 1).await;
    assert_eq!(got[0].kv.as_ref().map(|kv| kv.mod_revision), Some(rb));
    assert_eq!(
        client.stats().stream_messages_received,
        base + 1,
        "only the kept watcher's event arrived"
    );
    assert_eq!(
        client.stats().stream_messages_sent,
        before.stream_messages_sent + 2
    );

    // The stream stays open for new watches.
    let mut again = ok(client.watch(a.as_str()).await);
    ok(client.put(a.as_str(), "again").await);
    assert_eq!(
        summary(&p, &events(&mut again, 1).await),
        [ev("put", "a", "again")]
    );
    assert_eq!(metric(&cluster, WATCH_STREAMS_OPENED), 1.0);
}

async fn watch_compacted_start_revision(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_compacted");
    let k = format!("{p}k");
    let r1 = ok(client.put(k.as_str(), "v1").await).revision();
    ok(client.put(k.as_str(), "v2").await);
    let r3 = ok(client.put(k.as_str(), "v3").await).revision();
    ok(client.compact(r3, true).await);

    // etcd may refuse at creation or cancel right after `created`; both end in WatchCompacted.
    let e = match client
        .watch_with(k.as_str(), WatchOptions::new().with_start_revision(r1))
        .await
    {
        Err(e) => e,
        Ok(mut w) => {
            let first = tokio::time::timeout(WAIT, w.next())
                .await
                .expect("no answer to a compacted watch");
            let e = match first {
                Some(Err(e)) => e,
                other => panic!("expected WatchCompacted, got {other:?}"),
            };
            let end = tokio::time::timeout(WAIT, w.next()).await;
            assert!(
                matches!(end, Ok(None)),
                "the compacted watch must end: {end:?}"
            );
            e
        }
    };
    assert!(
        matches!(e, Error::WatchCompacted { compact_revision } if compact_revision == r3),
        "{e:?}"
    );
    assert!(e.is_compacted());
    assert_eq!(e.etcd_kind(), Some(EtcdErrorKind::Compacted));
    assert_eq!(e.code(), Some(Code::OutOfRange));

    // From the compaction revision on, the history is there.
    let mut w = ok(client
        .watch_with(k.as_str(), WatchOptions::new().with_start_revision(r3))
        .await);
    assert_eq!(
        summary(&p, &events(&mut w, 1).await),
        [ev("put", "k", "v3")]
    );
}

async fn watch_refused_and_invalid_requests(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_refused");
    let mut first = ok(client.watch(format!("{p}first")).await);

    // An empty range (end before key): etcd refuses the watch on the shared stream.
    let e = err(client
        .watch_with(
            format!("{p}b"),
            WatchOptions::new().with_range_end(format!("{p}a")),
        )
        .await);
    assert!(matches!(e, Error::WatchClosed { .. }), "{e:?}");

    // The stream and the other watches are unaffected, and new watches are filed right.
    let mut second = ok(client.watch(format!("{p}second")).await);
    assert_ne!(second.watch_id(), first.watch_id());
    ok(client.put(format!("{p}second"), "2").await);
    ok(client.put(format!("{p}first"), "1").await);
    assert_eq!(
        summary(&p, &events(&mut second, 1).await),
        [ev("put", "second", "2")]
    );
    assert_eq!(
        summary(&p, &events(&mut first, 1).await),
        [ev("put", "first", "1")]
    );

    // Refused before the wire.
    let before = client.stats();
    assert_invalid(&err(client.watch("").await), "key");
    assert_invalid(
        &err(client
            .watch_with("", WatchOptions::new().with_prefix())
            .await),
        "key",
    );
    assert_invalid(
        &err(client
            .watch_with("k", WatchOptions::new().with_start_revision(-1))
            .await),
        "start_revision",
    );
    assert_eq!(client.stats(), before);
}

async fn watch_fragmented_replay_is_merged(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_fragment");
    // Three 1 MiB values replayed in one batch: over etcd's 1.5 MiB fragment size.
    let value = |i: u8| vec![b'a' + i; 1024 * 1024];
    let mut first = 0;
    for i in 0..3u8 {
        let rev = ok(client.put(format!("{p}{i}"), value(i)).await).revision();
        if i == 0 {
            first = rev;
        }
    }
    let mut w = ok(client
        .watch_with(
            p.as_str(),
            WatchOptions::new()
                .with_prefix()
                .with_start_revision(first)
                .with_fragment(),
        )
        .await);
    let got = events(&mut w, 3).await;
    for (i, e) in got.iter().enumerate() {
        let kv = e.kv.as_ref().expect("kv");
        assert_eq!(kv.key, format!("{p}{i}").as_bytes());
        assert!(kv.value == value(i as u8), "value {i} differs");
        assert_eq!(kv.mod_revision, first + i as i64);
    }
}

async fn watch_large_replay_without_fragment(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_large");
    let mut bystander = ok(client.watch(format!("{p}bystander")).await);
    // Four 1.4 MiB values replayed in one 5.6 MiB response (etcd sends it unfragmented).
    let value = |i: u8| vec![b'a' + i; 1400 * 1024];
    let mut first = 0;
    for i in 0..4u8 {
        let rev = ok(client.put(format!("{p}big/{i}"), value(i)).await).revision();
        if i == 0 {
            first = rev;
        }
    }
    let mut w = ok(client
        .watch_with(
            format!("{p}big/"),
            WatchOptions::new().with_prefix().with_start_revision(first),
        )
        .await);
    let got = events(&mut w, 4).await;
    for (i, e) in got.iter().enumerate() {
        let kv = e.kv.as_ref().expect("kv");
        assert!(kv.value == value(i as u8), "value {i} differs");
    }
    // The other watch on the shared stream is unaffected.
    ok(client.put(format!("{p}bystander"), "still here").await);
    assert_eq!(events(&mut bystander, 1).await.len(), 1);
}

/// Reads `w` until it ends with `Error::WatchLagged`: the events it delivered before, and the
/// revision it says to resume from. Panics if it ends otherwise or stalls for `WAIT`.
async fn read_until_lagged(w: &mut Watcher) -> (Vec<Event>, i64) {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, w.next()).await {
            Err(_) => panic!(
                "watcher neither delivered nor ended within {WAIT:?} after {} events",
                got.len()
            ),
            Ok(None) => panic!("watcher ended without an error after {} events", got.len()),
            Ok(Some(Ok(batch))) => got.extend(batch.events().iter().cloned()),
            Ok(Some(Err(Error::WatchLagged { next_revision }))) => {
                // Nothing after the error.
                assert!(
                    tokio::time::timeout(WAIT, w.next())
                        .await
                        .ok()
                        .flatten()
                        .is_none(),
                    "a lagged watcher must end"
                );
                return (got, next_revision);
            }
            Ok(Some(Err(e))) => panic!("expected WatchLagged, got {e:?}"),
        }
    }
}

/// A watcher that is kept but never read holds at most its buffer: once full, it is ended with
/// `WatchLagged` naming the first revision it missed, and a new watch from there gets exactly
/// the rest. The other watcher on the same shared stream gets every event, before and after.
async fn watch_unread_watcher_lags_and_others_keep_receiving(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_lagged");
    let mut slow = ok(client
        .watch_with(p.as_str(), WatchOptions::new().with_prefix().with_buffer(4))
        .await);
    let mut other = ok(client
        .watch_with(p.as_str(), WatchOptions::new().with_prefix())
        .await);
    let mut revisions = Vec::new();
    for i in 0..40 {
        revisions.push(ok(client.put(format!("{p}{i}"), "v").await).revision());
    }
    let (delivered, next_revision) = read_until_lagged(&mut slow).await;
    assert!(
        !delivered.is_empty() && delivered.len() < revisions.len(),
        "a 4-response buffer delivered {} of {} events",
        delivered.len(),
        revisions.len()
    );
    let last = delivered.last().and_then(|e| e.kv.as_ref()).expect("kv");
    assert_eq!(next_revision, last.mod_revision + 1);
    // Resuming from the named revision loses and repeats nothing.
    let missed = revisions.iter().filter(|&&r| r >= next_revision).count();
    let mut again = ok(client
        .watch_with(
            p.as_str(),
            WatchOptions::new()
                .with_prefix()
                .with_start_revision(next_revision),
        )
        .await);
    let rest = events(&mut again, missed).await;
    let mut all: Vec<i64> = delivered
        .iter()
        .chain(rest.iter())
        .map(|e| e.kv.as_ref().expect("kv").mod_revision)
        .collect();
    all.dedup();
    assert_eq!(all, revisions);
    // The other watcher was never held back, and still receives.
    assert_eq!(
        events(&mut other, revisions.len()).await.len(),
        revisions.len()
    );
    ok(client.put(format!("{p}after"), "x").await);
    assert_eq!(
        summary(&p, &events(&mut other, 1).await),
        [ev("put", "after", "x")]
    );
}

/// Without `with_buffer`, an unread watcher is bounded too: after `DEFAULT_WATCH_BUFFER`
/// responses it ends with `WatchLagged` instead of growing with every event.
async fn watch_default_buffer_is_bounded(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("watch_default_buffer");
    let mut slow = ok(client
        .watch_with(p.as_str(), WatchOptions::new().with_prefix())
        .await);
    let puts = DEFAULT_WATCH_BUFFER + 64;
    let mut in_flight = tokio::task::JoinSet::new();
    for chunk in 0..16 {
        let (client, p) = (client.clone(), p.clone());
        in_flight.spawn(async move {
            for i in (chunk..puts).step_by(16) {
                ok(client.put(format!("{p}{i}"), "v").await);
            }
        });
    }
    while let Some(done) = in_flight.join_next().await {
        ok(done);
    }
    let (delivered, _) = read_until_lagged(&mut slow).await;
    assert!(
        delivered.len() < puts,
        "the unread watcher delivered all {puts} events"
    );
}

/// Dropping far more watchers at once than the watch task's bounded command queue holds still
/// cancels every one of them on the server (the overflow goes through the task's list of
/// deferred cancels), and the stream stays usable.
async fn watch_mass_drop_cancels_every_watch(bin: &EtcdBinary) {
    let (cluster, client) = started(bin).await;
    let p = unique("watch_mass_drop");
    let mut watchers = Vec::new();
    for i in 0..300 {
        watchers.push(ok(client.watch(format!("{p}{i}")).await));
    }
    assert_eq!(metric(&cluster, WATCHERS), 300.0);
    let before = client.stats().stream_messages_sent;
    drop(watchers);
    eventually("300 cancels sent", || {
        client.stats().stream_messages_sent == before + 300
    })
    .await;
    eventually("no watcher left on the server", || {
        metric(&cluster, WATCHERS) == 0.0
    })
    .await;
    let mut again = ok(client.watch(format!("{p}again")).await);
    ok(client.put(format!("{p}again"), "x").await);
    assert_eq!(
        summary(&p, &events(&mut again, 1).await),
        [ev("put", "again", "x")]
    );
}
