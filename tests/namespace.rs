//! Namespaced views (`Client::namespaced`) against real etcd: two namespaces and the plain
//! client on one member; KV, txn, watch, leases, both lock flavours and both election flavours
//! stay inside their prefix and return stripped keys.
#![cfg(feature = "testkit")]

mod common;

use std::time::Duration;

use common::{keys_under, ok, session};
use etcd_lock::election::Elector;
use etcd_lock::kv::{DeleteOptions, GetOptions, PutOptions};
use etcd_lock::lock::{Locker, RecipeLock};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use etcd_lock::watch::WatchOptions;
use etcd_lock::{Client, Error};

per_version!(
    kv_stays_inside_and_keys_come_back_stripped,
    txn_compares_and_ops_are_mapped,
    watch_sees_only_its_namespace_stripped,
    leased_key_vanishes_with_the_lease,
    empty_prefix_is_refused,
    namespaced_calls_cost_the_same_rpcs,
);
lock_flavours!(locks_exclude_within_a_namespace_only);
election_flavours!(elections_live_in_their_namespace);

/// The plain client and two namespaces `BASE/a/`, `BASE/b/` of it.
async fn setup(bin: &EtcdBinary, name: &str) -> (Cluster, Client, String, Client, Client) {
    let cluster = common::single(bin);
    let plain = common::client(&cluster).await;
    let base = common::unique(name);
    let a = ok(plain.namespaced(format!("{base}a/")));
    let b = ok(plain.namespaced(format!("{base}b/")));
    (cluster, plain, base, a, b)
}

fn keys(kvs: &[etcd_lock::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

async fn kv_stays_inside_and_keys_come_back_stripped(bin: &EtcdBinary) {
    let (_cluster, plain, base, a, b) = setup(bin, "ns-kv").await;
    for k in ["k1", "k2", "z"] {
        ok(a.put(k, format!("a-{k}")).await);
    }
    ok(b.put("k1", "b-k1").await);
    // Right after namespace a's last possible key, outside it.
    ok(plain.put(format!("{base}a0"), "outside").await);

    let got = ok(a.get("k1").await);
    assert_eq!(keys(got.kvs()), ["k1"]);
    assert_eq!(got.kvs()[0].value, b"a-k1");
    assert_eq!(ok(b.get("k1").await).kvs()[0].value, b"b-k1");
    assert!(ok(b.get("k2").await).kvs().is_empty(), "b sees a's key");

    let raw = ok(plain
        .get_with(format!("{base}a/"), GetOptions::new().with_prefix())
        .await);
    assert_eq!(
        keys(raw.kvs()),
        [
            format!("{base}a/k1"),
            format!("{base}a/k2"),
            format!("{base}a/z")
        ]
    );

    let prefixed = ok(a.get_with("k", GetOptions::new().with_prefix()).await);
    assert_eq!(keys(prefixed.kvs()), ["k1", "k2"]);
    // The whole key space of the view: "\0" from-key stops at the namespace's end.
    let all = ok(a.get_with("\0", GetOptions::new().with_from_key()).await);
    assert_eq!(keys(all.kvs()), ["k1", "k2", "z"]);
    let from = ok(a.get_with("k2", GetOptions::new().with_from_key()).await);
    assert_eq!(keys(from.kvs()), ["k2", "z"]);
    let until = ok(a
        .get_with("k1", GetOptions::new().with_range_end("z"))
        .await);
    assert_eq!(keys(until.kvs()), ["k1", "k2"]);

    let put = ok(a
        .put_with("k1", "again", PutOptions::new().with_prev_kv())
        .await);
    assert_eq!(put.prev_kv().map(|kv| kv.key.clone()), Some(b"k1".to_vec()));

    let deleted = ok(a
        .delete_with("k", DeleteOptions::new().with_prefix().with_prev_kv())
        .await);
    assert_eq!(deleted.deleted(), 2);
    assert_eq!(keys(deleted.prev_kvs()), ["k1", "k2"]);
    assert_eq!(
        keys(ok(b.get("k1").await).kvs()),
        ["k1"],
        "b's k1 deleted by a"
    );

    let rest = ok(a
        .delete_with("\0", DeleteOptions::new().with_from_key())
        .await);
    assert_eq!(rest.deleted(), 1, "from-key delete left the namespace");
    assert_eq!(
        ok(plain.get(format!("{base}a0")).await).kvs()[0].value,
        b"outside"
    );
}

async fn txn_compares_and_ops_are_mapped(bin: &EtcdBinary) {
    let (_cluster, plain, base, a, b) = setup(bin, "ns-txn").await;
    ok(a.put("c", "1").await);
    ok(a.put("p", "old").await);
    ok(a.put("d", "gone").await);
    let txn = || {
        Txn::new()
            .when([
                Compare::value("c", CompareOp::Equal, "1"),
                Compare::version("\0", CompareOp::Greater, 0).with_range_end("\0"),
            ])
            .and_then([
                TxnOp::put("p", "new", PutOptions::new().with_prev_kv()),
                TxnOp::get("c", GetOptions::new()),
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::version("c", CompareOp::Greater, 0)])
                        .and_then([
                            TxnOp::delete("d", DeleteOptions::new().with_prev_kv()),
                            TxnOp::get("\0", GetOptions::new().with_from_key()),
                        ]),
                ),
            ])
    };
    // b has no "c": its compares fail although a's keys exist.
    assert!(!ok(b.txn(txn()).await).succeeded());

    let response = ok(a.txn(txn()).await);
    assert!(response.succeeded());
    let ops = response.op_responses();
    let TxnOpResponse::Put(put) = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!(put.prev_kv().map(|kv| kv.key.clone()), Some(b"p".to_vec()));
    assert_eq!(
        put.prev_kv().map(|kv| kv.value.clone()),
        Some(b"old".to_vec())
    );
    let TxnOpResponse::Get(get) = &ops[1] else {
        panic!("{ops:?}")
    };
    assert_eq!(keys(get.kvs()), ["c"]);
    let TxnOpResponse::Txn(nested) = &ops[2] else {
        panic!("{ops:?}")
    };
    assert!(nested.succeeded());
    let nested = nested.op_responses();
    let TxnOpResponse::Delete(del) = &nested[0] else {
        panic!("{nested:?}")
    };
    assert_eq!(keys(del.prev_kvs()), ["d"]);
    assert_eq!(del.prev_kvs()[0].value, b"gone");
    let TxnOpResponse::Get(all) = &nested[1] else {
        panic!("{nested:?}")
    };
    assert_eq!(keys(all.kvs()), ["c", "p"]);

    let raw = ok(plain
        .get_with(base.clone(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(
        keys(raw.kvs()),
        [format!("{base}a/c"), format!("{base}a/p")]
    );
}

async fn watch_sees_only_its_namespace_stripped(bin: &EtcdBinary) {
    let (_cluster, plain, base, a, b) = setup(bin, "ns-watch").await;
    let mut by_prefix = ok(a
        .watch_with("w/", WatchOptions::new().with_prefix().with_prev_kv())
        .await);
    let mut everything = ok(a
        .watch_with("\0", WatchOptions::new().with_from_key())
        .await);
    // The plain client on the same shared watch stream: full keys.
    let mut raw = ok(plain
        .watch_with(format!("{base}a/w/"), WatchOptions::new().with_prefix())
        .await);
    ok(b.put("w/1", "b").await);
    ok(plain.put(format!("{base}a0"), "outside").await);
    ok(a.put("x", "not under w/").await);
    ok(a.put("w/1", "one").await);
    ok(a.put("w/1", "two").await);
    ok(a.delete("w/1").await);

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let batch = tokio::time::timeout(Duration::from_secs(10), by_prefix.next()).await;
        let batch = ok(ok(batch).unwrap_or_else(|| panic!("watch ended")));
        seen.extend(batch.events().iter().cloned());
    }
    let kv_keys: Vec<_> = seen
        .iter()
        .map(|e| e.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default())
        .collect();
    assert_eq!(kv_keys, [b"w/1".to_vec(), b"w/1".to_vec(), b"w/1".to_vec()]);
    assert_eq!(
        seen[0].kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"one".to_vec())
    );
    let prev = |i: usize| {
        seen[i]
            .prev_kv
            .as_ref()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
    };
    assert_eq!(prev(1), Some((b"w/1".to_vec(), b"one".to_vec())));
    assert_eq!(prev(2), Some((b"w/1".to_vec(), b"two".to_vec())));

    let mut all = Vec::new();
    while all.len() < 4 {
        let batch = tokio::time::timeout(Duration::from_secs(10), everything.next()).await;
        let batch = ok(ok(batch).unwrap_or_else(|| panic!("watch ended")));
        all.extend(
            batch
                .events()
                .iter()
                .map(|e| e.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default()),
        );
    }
    let first = tokio::time::timeout(Duration::from_secs(10), raw.next()).await;
    let first = ok(ok(first).unwrap_or_else(|| panic!("watch ended")));
    assert_eq!(
        first.events()[0].kv.as_ref().map(|kv| kv.key.clone()),
        Some(format!("{base}a/w/1").into_bytes())
    );
    // Neither b's put nor the plain key just past the namespace's end.
    assert_eq!(
        all,
        [
            b"x".to_vec(),
            b"w/1".to_vec(),
            b"w/1".to_vec(),
            b"w/1".to_vec()
        ]
    );
}

async fn leased_key_vanishes_with_the_lease(bin: &EtcdBinary) {
    let (_cluster, plain, base, a, _b) = setup(bin, "ns-lease").await;
    let lease = ok(a.lease_grant(30).await).id();
    ok(a.put_with("l", "v", PutOptions::new().with_lease(lease))
        .await);
    let raw = ok(plain.get(format!("{base}a/l")).await);
    assert_eq!(raw.kvs()[0].lease, lease);
    // The same lease on a key outside the namespace: listed by the plain client only.
    ok(plain
        .put_with(
            format!("{base}outside"),
            "v",
            PutOptions::new().with_lease(lease),
        )
        .await);
    let seen_in_a = ok(a.lease_time_to_live(lease, true).await)
        .into_inner()
        .keys;
    assert_eq!(seen_in_a, [b"l".to_vec()]);
    let mut seen_plain = ok(plain.lease_time_to_live(lease, true).await)
        .into_inner()
        .keys;
    seen_plain.sort();
    assert_eq!(
        seen_plain,
        [
            format!("{base}a/l").into_bytes(),
            format!("{base}outside").into_bytes()
        ]
    );
    ok(a.lease_revoke(lease).await);
    assert!(ok(a.get("l").await).kvs().is_empty());
    assert!(ok(plain.get(format!("{base}a/l")).await).kvs().is_empty());
    assert!(ok(plain.get(format!("{base}outside")).await)
        .kvs()
        .is_empty());
}

async fn empty_prefix_is_refused(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let plain = common::client(&cluster).await;
    match plain.namespaced("") {
        Err(Error::InvalidArgument { argument, .. }) => assert_eq!(argument, "prefix"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let a = ok(plain.namespaced("x/"));
    assert!(matches!(
        a.namespaced(Vec::new()),
        Err(Error::InvalidArgument { .. })
    ));
    // Nesting concatenates; the nested view's keys land under both prefixes.
    let ab = ok(a.namespaced("y/"));
    assert_eq!(ab.namespace(), Some(&b"x/y/"[..]));
    assert_eq!(plain.namespace(), None);
    ok(ab.put("k", "v").await);
    assert_eq!(ok(plain.get("x/y/k").await).kvs()[0].value, b"v");
    // Empty keys stay refused inside a namespace (the prefix itself is not addressable).
    assert!(matches!(
        a.get("").await,
        Err(Error::InvalidArgument { .. })
    ));
}

async fn locks_exclude_within_a_namespace_only<L: Locker + Clone + 'static>(
    bin: &EtcdBinary,
    locker: L,
) {
    let (_cluster, plain, base, a, b) = setup(bin, "ns-lock").await;
    let name = "job";
    let (sa, sb, sp) = (
        session(&a, 10).await,
        session(&b, 10).await,
        session(&plain, 10).await,
    );
    let ga = ok(locker.lock(&sa, name.as_bytes()).await);
    assert!(ga.key().starts_with(b"job/"), "{}", ga.key_str());
    // The same name in namespace b and outside any namespace: held at the same time.
    let gb = tokio::time::timeout(Duration::from_secs(5), locker.lock(&sb, name.as_bytes())).await;
    let gb = ok(ok(gb));
    let gp = tokio::time::timeout(Duration::from_secs(5), locker.lock(&sp, name.as_bytes())).await;
    let gp = ok(ok(gp));
    assert_eq!(
        keys_under(&plain, &format!("{base}a/{name}")).await,
        [format!("{base}a/{}", ga.key_str())]
    );
    assert_eq!(
        keys_under(&plain, &format!("{base}b/{name}")).await,
        [format!("{base}b/{}", gb.key_str())]
    );
    // A fenced write through the guard lands in the namespace.
    ok(ga.put("data", "under the lock").await);
    assert_eq!(
        ok(plain.get(format!("{base}a/data")).await).kvs()[0].value,
        b"under the lock"
    );

    // A second holder in namespace a waits for the first.
    let other = ok(plain.namespaced(format!("{base}a/")));
    let sa2 = session(&other, 10).await;
    let waiting = {
        let (locker, sa2) = (locker.clone(), sa2.clone());
        tokio::spawn(async move { locker.lock(&sa2, b"job").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "two holders of a/job at once");
    ok(ga.unlock().await);
    let ga2 = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    let ga2 = ok(ok(ok(ga2)));

    // The plain client's lock on namespace a's full name is the very same lock: it waits for
    // a's holder and is handed the lock when it leaves (routers of the plain client and of
    // the view share the client but not their state).
    let full = format!("{base}a/{name}");
    let sp2 = session(&plain, 10).await;
    let waiting = {
        let locker = locker.clone();
        tokio::spawn(async move { locker.lock(&sp2, full.as_bytes()).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "plain a/job and namespaced job held at once"
    );
    ok(ga2.unlock().await);
    let gfull = ok(ok(ok(tokio::time::timeout(
        Duration::from_secs(5),
        waiting,
    )
    .await)));

    // Plain `job` holder hands over to another plain waiter, although the view's router for
    // `job` was opened first on the same client.
    let sp3 = session(&plain, 10).await;
    let waiting = {
        let locker = locker.clone();
        tokio::spawn(async move { locker.lock(&sp3, b"job").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    ok(gp.unlock().await);
    let gp2 = ok(ok(ok(tokio::time::timeout(
        Duration::from_secs(5),
        waiting,
    )
    .await)));
    for guard in [gb, gfull, gp2] {
        ok(guard.unlock().await);
    }
}

async fn elections_live_in_their_namespace<E: Elector + Clone + 'static>(
    bin: &EtcdBinary,
    elector: E,
) {
    let (_cluster, plain, base, a, b) = setup(bin, "ns-elect").await;
    let name = b"leader";
    let (sa, sb) = (session(&a, 10).await, session(&b, 10).await);
    let la = ok(elector.campaign(&sa, name, b"A").await);
    // The same election name in namespace b: its own leader, at the same time.
    let lb = tokio::time::timeout(Duration::from_secs(5), elector.campaign(&sb, name, b"B")).await;
    let lb = ok(ok(lb));
    assert!(la.key().starts_with(b"leader/"), "{}", la.key_str());
    assert!(lb.key().starts_with(b"leader/"), "{}", lb.key_str());

    let seen_a = ok(elector.leader(&a, name).await).unwrap_or_else(|| panic!("no leader in a"));
    assert_eq!(seen_a.key, la.key());
    assert_eq!(seen_a.value, b"A");
    let seen_b = ok(elector.leader(&b, name).await).unwrap_or_else(|| panic!("no leader in b"));
    assert_eq!(seen_b.key, lb.key());
    assert_eq!(seen_b.value, b"B");
    let full = format!("{base}a/leader");
    let seen_plain = ok(elector.leader(&plain, full.as_bytes()).await)
        .unwrap_or_else(|| panic!("no leader under the full name"));
    assert_eq!(
        seen_plain.key,
        [format!("{base}a/").as_bytes(), la.key()].concat()
    );

    let mut observer = ok(elector.observe(&a, name).await);
    let first = tokio::time::timeout(Duration::from_secs(5), observer.next()).await;
    let first = ok(ok(first).unwrap_or_else(|| panic!("observer ended")));
    assert_eq!(first.key, la.key());
    let mut la = la;
    ok(elector.proclaim(&mut la, b"A2").await);
    let next = tokio::time::timeout(Duration::from_secs(5), observer.next()).await;
    let next = ok(ok(next).unwrap_or_else(|| panic!("observer ended")));
    assert_eq!(
        (next.key.as_slice(), next.value.as_slice()),
        (la.key(), &b"A2"[..])
    );
    assert_eq!(
        ok(plain
            .get(full.clone() + "/" + &format!("{:x}", sa.lease()))
            .await)
        .kvs()[0]
            .value,
        b"A2"
    );

    ok(elector.resign(la).await);
    assert!(ok(elector.leader(&a, name).await).is_none());
    assert!(ok(elector.leader(&b, name).await).is_some());
    ok(elector.resign(lb).await);
}

async fn namespaced_calls_cost_the_same_rpcs(bin: &EtcdBinary) {
    let (_cluster, plain, _base, a, _b) = setup(bin, "ns-rpcs").await;
    let s = session(&a, 10).await;
    let locker = RecipeLock::new();
    for _ in 0..3 {
        let before = plain.stats();
        let g = ok(locker.lock(&s, b"one").await);
        let after_lock = plain.stats();
        ok(g.unlock().await);
        let after_unlock = plain.stats();
        assert_eq!(after_lock.requests - before.requests, 1, "acquire");
        assert_eq!(after_unlock.requests - after_lock.requests, 1, "release");
    }
    // A view counts on its client's counters, one unary call per KV call.
    let before = a.stats();
    ok(a.put("k", "v").await);
    ok(a.get("k").await);
    ok(
        a.txn(Txn::new().and_then([TxnOp::get("k", GetOptions::new())]))
            .await,
    );
    assert_eq!(plain.stats().unary_calls - before.unary_calls, 3);
    assert_eq!(a.stats(), plain.stats());
    ok(s.close().await);
}
