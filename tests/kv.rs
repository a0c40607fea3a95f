//! `KV/Range`, `KV/Put`, `KV/DeleteRange`, `KV/Compact` and `KV/Txn` against real etcd servers:
//! every case starts its own single member, once per etcd version, and checks the decoded
//! responses field by field.
#![cfg(feature = "testkit")]

mod common;

use std::fmt::Debug;

use common::{ok, unique};
use etcd_lock::kv::{DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use etcd_lock::{Client, Code, Error, EtcdErrorKind, KeyValue};

per_version!(
    put_and_get_decode_every_field,
    put_returns_prev_kv_only_when_asked,
    put_ignore_value,
    put_ignore_lease_and_lease_attach,
    range_spans_limit_and_count,
    range_at_old_revision,
    range_sort_by_every_target,
    range_keys_only_count_only_serializable,
    range_min_max_revision_filters,
    delete_single_prefix_range_from_key,
    txn_compares_take_the_right_branch,
    txn_ops_and_nested_txn_decode,
    compact_then_read_compacted_and_future_revisions,
    request_too_large_keeps_the_server_healthy,
    txn_op_limit_and_duplicate_keys,
    empty_key_is_refused_before_the_wire,
    range_response_over_4_mib,
);

// ---------------------------------------------------------------------------------------------
// helpers

/// The error of a call that must fail.
fn err<T: Debug>(r: Result<T, Error>) -> Error {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// Asserts `e` is the etcd error `kind` (typed, with the gRPC code etcd uses for it).
fn assert_etcd(e: &Error, kind: EtcdErrorKind, code: Code) {
    assert!(
        matches!(e, Error::Etcd { kind: k, .. } if *k == kind),
        "expected Error::Etcd {{ kind: {kind:?} }}, got {e:?}"
    );
    assert_eq!(e.etcd_kind(), Some(kind), "{e:?}");
    assert_eq!(e.code(), Some(code), "{e:?}");
}

/// The keys of `kvs` with `prefix` stripped (keys outside the prefix are kept whole).
fn names(prefix: &str, kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            match key.strip_prefix(prefix) {
                Some(rest) => rest.to_string(),
                None => key,
            }
        })
        .collect()
}

fn only(resp: &etcd_lock::kv::GetResponse) -> &KeyValue {
    assert_eq!(resp.kvs().len(), 1, "expected one kv, got {:?}", resp.kvs());
    resp.first().expect("one kv")
}

async fn started(bin: &EtcdBinary) -> (etcd_lock::testkit::Cluster, Client) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    (cluster, client)
}

/// Keys just below and just above the prefix range of `p` (which ends with '/').
fn outside(p: &str) -> (String, String) {
    let stem = &p[..p.len() - 1];
    (format!("{stem}."), format!("{stem}x"))
}

// ---------------------------------------------------------------------------------------------
// put / get

async fn put_and_get_decode_every_field(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("put_get");
    let k = format!("{p}k");

    let empty = ok(client.get(k.as_str()).await);
    assert!(empty.kvs().is_empty());
    assert!(empty.first().is_none());
    assert_eq!(empty.count(), 0);
    assert!(!empty.more());
    let h0 = *empty.header();
    assert_ne!(h0.cluster_id, 0, "cluster_id");
    assert_ne!(h0.member_id, 0, "member_id");
    assert!(h0.raft_term >= 1, "raft_term {}", h0.raft_term);
    assert!(h0.revision >= 1, "revision {}", h0.revision);
    assert_eq!(empty.revision(), h0.revision);

    let put1 = ok(client.put(k.as_str(), "v1").await);
    assert_eq!(put1.revision(), h0.revision + 1);
    assert_eq!(put1.header().cluster_id, h0.cluster_id);
    assert_eq!(put1.header().member_id, h0.member_id);
    assert!(put1.prev_kv().is_none());

    let got = ok(client.get(k.as_str()).await);
    assert_eq!(got.revision(), put1.revision());
    assert_eq!(got.count(), 1);
    assert!(!got.more());
    let kv = only(&got);
    assert_eq!(kv.key, k.as_bytes());
    assert_eq!(kv.value, b"v1");
    assert_eq!(kv.create_revision, put1.revision());
    assert_eq!(kv.mod_revision, put1.revision());
    assert_eq!(kv.version, 1);
    assert_eq!(kv.lease, 0);

    // A put to another key moves the store revision but not k.
    let other = ok(client.put(format!("{p}other"), "x").await);
    assert_eq!(other.revision(), put1.revision() + 1);

    let put2 = ok(client.put(k.as_str(), "v2").await);
    assert_eq!(put2.revision(), other.revision() + 1);
    let got = ok(client.get(k.as_str()).await);
    assert_eq!(got.revision(), put2.revision());
    let kv = only(&got);
    assert_eq!(kv.value, b"v2");
    assert_eq!(kv.create_revision, put1.revision());
    assert_eq!(kv.mod_revision, put2.revision());
    assert_eq!(kv.version, 2);
    assert_eq!(kv.lease, 0);

    // Bytes round-trip untouched (not UTF-8, embedded NUL).
    let bin_key = [p.as_bytes(), &[0x00, 0xff, 0x80]].concat();
    let bin_value = vec![0xffu8, 0x00, 0xfe, 0x7f];
    let put3 = ok(client.put(bin_key.clone(), bin_value.clone()).await);
    let kv = ok(client.get(bin_key.clone()).await).first().cloned();
    let kv = kv.expect("binary key present");
    assert_eq!(kv.key, bin_key);
    assert_eq!(kv.value, bin_value);
    assert_eq!(kv.mod_revision, put3.revision());

    // An empty value is a value.
    ok(client.put(k.as_str(), "").await);
    let got = ok(client.get(k.as_str()).await);
    assert_eq!(only(&got).value, b"");
    assert_eq!(only(&got).version, 3);
}

async fn put_returns_prev_kv_only_when_asked(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let k = format!("{}k", unique("prev_kv"));
    let with_prev = || PutOptions::new().with_prev_kv();

    let first = ok(client.put_with(k.as_str(), "v1", with_prev()).await);
    assert!(first.prev_kv().is_none(), "new key has no prev_kv");

    let second = ok(client.put_with(k.as_str(), "v2", with_prev()).await);
    let prev = second.prev_kv().expect("prev_kv of an existing key");
    assert_eq!(prev.key, k.as_bytes());
    assert_eq!(prev.value, b"v1");
    assert_eq!(prev.create_revision, first.revision());
    assert_eq!(prev.mod_revision, first.revision());
    assert_eq!(prev.version, 1);
    assert_eq!(prev.lease, 0);
    assert_eq!(second.revision(), first.revision() + 1);

    let third = ok(client.put(k.as_str(), "v3").await);
    assert!(third.prev_kv().is_none(), "prev_kv without asking");

    let fourth = ok(client.put_with(k.as_str(), "v4", with_prev()).await);
    let prev = fourth.prev_kv().expect("prev_kv");
    assert_eq!(prev.value, b"v3");
    assert_eq!(prev.version, 3);
    assert_eq!(prev.mod_revision, third.revision());
    assert_eq!(prev.create_revision, first.revision());
}

async fn put_ignore_value(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("ignore_value");
    let k = format!("{p}k");
    let lease = ok(client.lease_grant(60).await).id();

    let created = ok(client
        .put_with(k.as_str(), "keep", PutOptions::new().with_lease(lease))
        .await);
    let kept = ok(client
        .put_with(
            k.as_str(),
            "",
            PutOptions::new()
                .with_ignore_value()
                .with_ignore_lease()
                .with_prev_kv(),
        )
        .await);
    assert_eq!(kept.revision(), created.revision() + 1);
    assert_eq!(
        kept.prev_kv().map(|kv| kv.value.as_slice()),
        Some(&b"keep"[..])
    );
    let kv = ok(client.get(k.as_str()).await);
    let kv = only(&kv);
    assert_eq!(kv.value, b"keep", "value kept");
    assert_eq!(kv.lease, lease, "lease kept (ignore_lease)");
    assert_eq!(kv.version, 2);
    assert_eq!(kv.mod_revision, kept.revision());
    assert_eq!(kv.create_revision, created.revision());

    // ignore_value alone keeps the value; the lease is the request's (none): etcd detaches it.
    let detached = ok(client
        .put_with(k.as_str(), "", PutOptions::new().with_ignore_value())
        .await);
    let kv = ok(client.get(k.as_str()).await);
    let kv = only(&kv);
    assert_eq!(kv.value, b"keep");
    assert_eq!(kv.lease, 0);
    assert_eq!(kv.mod_revision, detached.revision());

    // The key must exist.
    let missing = format!("{p}missing");
    let e = err(client
        .put_with(missing.as_str(), "", PutOptions::new().with_ignore_value())
        .await);
    assert_etcd(&e, EtcdErrorKind::KeyNotFound, Code::InvalidArgument);
    assert!(ok(client.get(missing.as_str()).await).kvs().is_empty());

    // A value together with ignore_value is refused by the server.
    let e = err(client
        .put_with(k.as_str(), "x", PutOptions::new().with_ignore_value())
        .await);
    assert_etcd(&e, EtcdErrorKind::ValueProvided, Code::InvalidArgument);
    assert_eq!(only(&ok(client.get(k.as_str()).await)).value, b"keep");
}

async fn put_ignore_lease_and_lease_attach(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("ignore_lease");
    let k = format!("{p}k");
    let lease = ok(client.lease_grant(60).await).id();
    assert!(lease > 0);

    // Attach.
    let put = ok(client
        .put_with(k.as_str(), "v1", PutOptions::new().with_lease(lease))
        .await);
    let got = ok(client.get(k.as_str()).await);
    assert_eq!(only(&got).lease, lease);
    assert_eq!(only(&got).mod_revision, put.revision());
    let ttl = ok(client.lease_time_to_live(lease, true).await);
    assert_eq!(ttl.keys(), [k.as_bytes().to_vec()]);

    // ignore_lease: new value, same lease.
    let put2 = ok(client
        .put_with(k.as_str(), "v2", PutOptions::new().with_ignore_lease())
        .await);
    let got = ok(client.get(k.as_str()).await);
    let kv = only(&got);
    assert_eq!(kv.value, b"v2");
    assert_eq!(kv.lease, lease);
    assert_eq!(kv.version, 2);
    assert_eq!(kv.mod_revision, put2.revision());

    // A plain put detaches the lease.
    ok(client.put(k.as_str(), "v3").await);
    assert_eq!(only(&ok(client.get(k.as_str()).await)).lease, 0);
    assert!(ok(client.lease_time_to_live(lease, true).await)
        .keys()
        .is_empty());

    // A lease together with ignore_lease is refused by the server.
    let e = err(client
        .put_with(
            k.as_str(),
            "v4",
            PutOptions::new().with_lease(lease).with_ignore_lease(),
        )
        .await);
    assert_etcd(&e, EtcdErrorKind::LeaseProvided, Code::InvalidArgument);

    // ignore_lease on a missing key.
    let e = err(client
        .put_with(
            format!("{p}missing"),
            "v",
            PutOptions::new().with_ignore_lease(),
        )
        .await);
    assert_etcd(&e, EtcdErrorKind::KeyNotFound, Code::InvalidArgument);

    // An unknown lease.
    let e = err(client
        .put_with(
            format!("{p}k2"),
            "v",
            PutOptions::new().with_lease(0x0123_4567_89ab),
        )
        .await);
    assert!(e.is_lease_not_found(), "{e:?}");
    assert_etcd(&e, EtcdErrorKind::LeaseNotFound, Code::NotFound);
    assert!(ok(client.get(format!("{p}k2")).await).kvs().is_empty());

    // A negative lease never reaches the wire.
    let before = client.stats().unary_calls;
    let e = err(client
        .put_with(format!("{p}k3"), "v", PutOptions::new().with_lease(-5))
        .await);
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                argument: "lease",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(client.stats().unary_calls, before);
}

// ---------------------------------------------------------------------------------------------
// range

/// Puts `a`..`e` under `p` plus one key just outside the prefix on each side.
async fn five_keys(client: &Client, p: &str) -> Vec<i64> {
    let (below, above) = outside(p);
    ok(client.put(below, "below").await);
    let mut revs = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        revs.push(ok(client.put(format!("{p}{name}"), name.to_uppercase()).await).revision());
    }
    ok(client.put(above, "above").await);
    revs
}

async fn range_spans_limit_and_count(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("spans");
    let revs = five_keys(&client, &p).await;
    let (below, above) = outside(&p);

    // Prefix: exactly the five, in key order, with their values.
    let all = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(names(&p, all.kvs()), ["a", "b", "c", "d", "e"]);
    assert_eq!(all.count(), 5);
    assert!(!all.more());
    for (kv, rev) in all.kvs().iter().zip(&revs) {
        assert_eq!(kv.create_revision, *rev);
        assert_eq!(
            kv.value,
            String::from_utf8_lossy(&kv.key[p.len()..])
                .to_uppercase()
                .as_bytes()
        );
    }

    // From key: c and everything after it, including the key above the prefix.
    let from = ok(client
        .get_with(format!("{p}c"), GetOptions::new().with_from_key())
        .await);
    assert_eq!(names(&p, from.kvs()), ["c", "d", "e", above.as_str()]);
    assert_eq!(from.count(), 4);

    // From the lowest key: everything.
    let everything = ok(client
        .get_with(below.as_str(), GetOptions::new().with_from_key())
        .await);
    assert_eq!(everything.count(), 7);

    // Explicit [b, d).
    let ranged = ok(client
        .get_with(
            format!("{p}b"),
            GetOptions::new().with_range_end(format!("{p}d")),
        )
        .await);
    assert_eq!(names(&p, ranged.kvs()), ["b", "c"]);
    assert_eq!(ranged.count(), 2);

    // An empty range.
    let none = ok(client
        .get_with(
            format!("{p}b"),
            GetOptions::new().with_range_end(format!("{p}b")),
        )
        .await);
    assert!(none.kvs().is_empty());

    // Limit: first n, `more` set, `count` still the whole range.
    let two = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix().with_limit(2))
        .await);
    assert_eq!(names(&p, two.kvs()), ["a", "b"]);
    assert!(two.more());
    assert_eq!(two.count(), 5);
    let four = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix().with_limit(4))
        .await);
    assert_eq!(four.kvs().len(), 4);
    assert!(four.more());
    for limit in [5, 6] {
        let r = ok(client
            .get_with(
                p.as_str(),
                GetOptions::new().with_prefix().with_limit(limit),
            )
            .await);
        assert_eq!(r.kvs().len(), 5, "limit {limit}");
        assert!(!r.more(), "limit {limit}");
        assert_eq!(r.count(), 5);
    }

    // A negative limit never reaches the wire.
    let before = client.stats().unary_calls;
    let e = err(client
        .get_with(p.as_str(), GetOptions::new().with_limit(-1))
        .await);
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                argument: "limit",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(client.stats().unary_calls, before);
}

async fn range_at_old_revision(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let k = format!("{}k", unique("old_rev"));
    let r1 = ok(client.put(k.as_str(), "v1").await).revision();
    let r2 = ok(client.put(k.as_str(), "v2").await).revision();
    let r3 = ok(client.delete(k.as_str()).await).revision();
    assert_eq!((r2, r3), (r1 + 1, r1 + 2));

    let at = |rev| client.get_with(k.as_str(), GetOptions::new().with_revision(rev));
    let old = ok(at(r1).await);
    let kv = only(&old);
    assert_eq!(kv.value, b"v1");
    assert_eq!(kv.version, 1);
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));
    // The header carries the current store revision, not the one read.
    assert_eq!(old.revision(), r3);

    let mid = ok(at(r2).await);
    let kv = only(&mid);
    assert_eq!(kv.value, b"v2");
    assert_eq!(kv.version, 2);
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));

    assert!(ok(at(r3).await).kvs().is_empty(), "deleted at r3");
    assert!(ok(at(r1 - 1).await).kvs().is_empty(), "not created yet");
    assert!(ok(client.get(k.as_str()).await).kvs().is_empty());
}

async fn range_sort_by_every_target(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("sort");
    // Five keys whose orders by key, create, mod, version and value all differ:
    //   key:     a b c d e
    //   create:  d b e a c
    //   mod:     b d c a e
    //   version: b(1) e(2) a(3) c(4) d(5)
    //   value:   c(1) e(2) a(3) d(4) b(5)
    let value = |name: &str| match name {
        "a" => "3",
        "b" => "5",
        "c" => "1",
        "d" => "4",
        _ => "2",
    };
    for name in ["d", "b", "e", "a", "c"] {
        ok(client.put(format!("{p}{name}"), value(name)).await);
    }
    for (name, updates) in [("d", 4), ("c", 3), ("a", 2), ("e", 1)] {
        for _ in 0..updates {
            ok(client.put(format!("{p}{name}"), value(name)).await);
        }
    }
    let (below, above) = outside(&p);
    ok(client.put(below, "0").await);
    ok(client.put(above, "9").await);

    let cases = [
        (SortTarget::Key, ["a", "b", "c", "d", "e"]),
        (SortTarget::Create, ["d", "b", "e", "a", "c"]),
        (SortTarget::Mod, ["b", "d", "c", "a", "e"]),
        (SortTarget::Version, ["b", "e", "a", "c", "d"]),
        (SortTarget::Value, ["c", "e", "a", "d", "b"]),
    ];
    for (target, ascending) in cases {
        let asc = ok(client
            .get_with(
                p.as_str(),
                GetOptions::new()
                    .with_prefix()
                    .with_sort(target, SortOrder::Ascend),
            )
            .await);
        assert_eq!(names(&p, asc.kvs()), ascending, "{target:?} ascending");
        let desc = ok(client
            .get_with(
                p.as_str(),
                GetOptions::new()
                    .with_prefix()
                    .with_sort(target, SortOrder::Descend),
            )
            .await);
        let mut descending = ascending;
        descending.reverse();
        assert_eq!(names(&p, desc.kvs()), descending, "{target:?} descending");
        assert_eq!(desc.count(), 5);
    }

    // Sort applies before the limit: the oldest and the newest key.
    let oldest = ok(client
        .get_with(
            p.as_str(),
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1),
        )
        .await);
    assert_eq!(names(&p, oldest.kvs()), ["d"]);
    assert!(oldest.more());
    assert_eq!(oldest.count(), 5);
    let last_modified = ok(client
        .get_with(
            p.as_str(),
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Mod, SortOrder::Descend)
                .with_limit(2),
        )
        .await);
    assert_eq!(names(&p, last_modified.kvs()), ["e", "a"]);

    // The versions really are what the table says.
    let by_key = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix())
        .await);
    let versions: Vec<i64> = by_key.kvs().iter().map(|kv| kv.version).collect();
    assert_eq!(versions, [3, 1, 4, 5, 2]);
}

async fn range_keys_only_count_only_serializable(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("keys_only");
    let revs = five_keys(&client, &p).await;

    let keys = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix().with_keys_only())
        .await);
    assert_eq!(names(&p, keys.kvs()), ["a", "b", "c", "d", "e"]);
    assert_eq!(keys.count(), 5);
    for (kv, rev) in keys.kvs().iter().zip(&revs) {
        assert!(kv.value.is_empty(), "keys_only returned a value: {kv:?}");
        assert_eq!(kv.create_revision, *rev, "metadata still present");
        assert_eq!(kv.mod_revision, *rev);
        assert_eq!(kv.version, 1);
    }

    let counted = ok(client
        .get_with(
            p.as_str(),
            GetOptions::new().with_prefix().with_count_only(),
        )
        .await);
    assert!(counted.kvs().is_empty(), "count_only returned kvs");
    assert_eq!(counted.count(), 5);
    let counted = ok(client
        .get_with(
            format!("{p}b"),
            GetOptions::new()
                .with_range_end(format!("{p}e"))
                .with_count_only(),
        )
        .await);
    assert_eq!(counted.count(), 3);
    assert!(counted.kvs().is_empty());

    let serial = ok(client
        .get_with(format!("{p}c"), GetOptions::new().with_serializable())
        .await);
    let kv = only(&serial);
    assert_eq!(kv.value, b"C");
    assert_eq!(kv.mod_revision, revs[2]);
    assert!(serial.revision() >= revs[4]);
    let serial_all = ok(client
        .get_with(
            p.as_str(),
            GetOptions::new().with_prefix().with_serializable(),
        )
        .await);
    assert_eq!(serial_all.count(), 5);
}

async fn range_min_max_revision_filters(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("filters");
    // Created in the order d b e a c, then modified d, c, a, e (b never).
    let mut create = std::collections::HashMap::new();
    let mut modified = std::collections::HashMap::new();
    for name in ["d", "b", "e", "a", "c"] {
        let rev = ok(client.put(format!("{p}{name}"), "v").await).revision();
        create.insert(name, rev);
        modified.insert(name, rev);
    }
    for name in ["d", "c", "a", "e"] {
        let rev = ok(client.put(format!("{p}{name}"), "w").await).revision();
        modified.insert(name, rev);
    }
    let get = |o: GetOptions| client.get_with(p.as_str(), o.with_prefix());

    let r = ok(get(GetOptions::new().with_min_create_revision(create["a"])).await);
    assert_eq!(names(&p, r.kvs()), ["a", "c"], "created at/after a");
    let r = ok(get(GetOptions::new().with_max_create_revision(create["b"])).await);
    assert_eq!(names(&p, r.kvs()), ["b", "d"], "created at/before b");
    let r = ok(get(GetOptions::new().with_min_mod_revision(modified["a"])).await);
    assert_eq!(names(&p, r.kvs()), ["a", "e"], "modified at/after a");
    let r = ok(get(GetOptions::new().with_max_mod_revision(modified["d"])).await);
    assert_eq!(names(&p, r.kvs()), ["b", "d"], "modified at/before d");
    let r = ok(get(GetOptions::new()
        .with_min_mod_revision(modified["d"])
        .with_max_mod_revision(modified["a"]))
    .await);
    assert_eq!(names(&p, r.kvs()), ["a", "c", "d"]);
    let r = ok(get(GetOptions::new()
        .with_min_create_revision(create["b"])
        .with_max_create_revision(create["a"]))
    .await);
    assert_eq!(names(&p, r.kvs()), ["a", "b", "e"]);
    let values: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.value.as_slice()).collect();
    assert_eq!(values, [&b"w"[..], b"v", b"w"], "b was never modified");
    let r = ok(get(GetOptions::new().with_min_mod_revision(modified["e"] + 1)).await);
    assert!(r.kvs().is_empty());

    let before = client.stats().unary_calls;
    let e = err(client
        .get_with(p.as_str(), GetOptions::new().with_min_mod_revision(-1))
        .await);
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                argument: "min_mod_revision",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(client.stats().unary_calls, before);
}

// ---------------------------------------------------------------------------------------------
// delete

async fn delete_single_prefix_range_from_key(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("delete");
    let (below, above) = outside(&p);
    ok(client.put(below.as_str(), "below").await);
    ok(client.put(above.as_str(), "above").await);

    // Single key, without and with prev_kv.
    let put = ok(client.put(format!("{p}one"), "1").await);
    let del = ok(client.delete(format!("{p}one")).await);
    assert_eq!(del.deleted(), 1);
    assert!(del.prev_kvs().is_empty(), "prev_kvs without asking");
    assert_eq!(del.revision(), put.revision() + 1);
    assert!(ok(client.get(format!("{p}one")).await).kvs().is_empty());

    let put = ok(client.put(format!("{p}two"), "2").await);
    let del = ok(client
        .delete_with(format!("{p}two"), DeleteOptions::new().with_prev_kv())
        .await);
    assert_eq!(del.deleted(), 1);
    assert_eq!(del.prev_kvs().len(), 1);
    let prev = &del.prev_kvs()[0];
    assert_eq!(prev.key, format!("{p}two").as_bytes());
    assert_eq!(prev.value, b"2");
    assert_eq!(prev.mod_revision, put.revision());
    assert_eq!(prev.version, 1);

    // A missing key: nothing deleted, the revision does not move.
    let miss = ok(client.delete(format!("{p}missing")).await);
    assert_eq!(miss.deleted(), 0);
    assert_eq!(miss.revision(), del.revision());

    // Prefix with prev_kv: all of them, in one revision; the neighbours stay.
    for name in ["a", "b", "c", "d"] {
        ok(client.put(format!("{p}pre/{name}"), name).await);
    }
    ok(client.put(format!("{p}pre0"), "outside pre/").await);
    let del = ok(client
        .delete_with(
            format!("{p}pre/"),
            DeleteOptions::new().with_prefix().with_prev_kv(),
        )
        .await);
    assert_eq!(del.deleted(), 4);
    assert_eq!(
        names(&format!("{p}pre/"), del.prev_kvs()),
        ["a", "b", "c", "d"]
    );
    let values: Vec<&[u8]> = del
        .prev_kvs()
        .iter()
        .map(|kv| kv.value.as_slice())
        .collect();
    assert_eq!(values, [b"a", b"b", b"c", b"d"]);
    let left = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(names(&p, left.kvs()), ["pre0"]);
    let after = ok(client.put(format!("{p}probe"), "x").await);
    assert_eq!(
        after.revision(),
        del.revision() + 1,
        "one revision for the batch"
    );

    // Explicit range [b, d).
    for name in ["a", "b", "c", "d"] {
        ok(client.put(format!("{p}r/{name}"), name).await);
    }
    let del = ok(client
        .delete_with(
            format!("{p}r/b"),
            DeleteOptions::new().with_range_end(format!("{p}r/d")),
        )
        .await);
    assert_eq!(del.deleted(), 2);
    assert!(del.prev_kvs().is_empty());
    let left = ok(client
        .get_with(format!("{p}r/"), GetOptions::new().with_prefix())
        .await);
    assert_eq!(names(&format!("{p}r/"), left.kvs()), ["a", "d"]);

    // From key: everything >= p/r/d, which includes the key above the prefix.
    let del = ok(client
        .delete_with(
            format!("{p}r/d"),
            DeleteOptions::new().with_from_key().with_prev_kv(),
        )
        .await);
    assert_eq!(del.deleted(), 2);
    assert_eq!(names(&p, del.prev_kvs()), ["r/d", above.as_str()]);
    assert_eq!(ok(client.get(above.as_str()).await).count(), 0);
    assert_eq!(ok(client.get(below.as_str()).await).count(), 1);
}

// ---------------------------------------------------------------------------------------------
// txn

async fn txn_compares_take_the_right_branch(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("compare");
    let k = format!("{p}k");
    let marker = format!("{p}else");
    let missing = format!("{p}missing");
    let lease = ok(client.lease_grant(60).await).id();
    let created = ok(client
        .put_with(k.as_str(), "m", PutOptions::new().with_lease(lease))
        .await)
    .revision();
    let modified = ok(client
        .put_with(k.as_str(), "m", PutOptions::new().with_lease(lease))
        .await)
    .revision();
    let k = k.as_str();
    let m = missing.as_str();
    use CompareOp::*;

    let cases: Vec<(Vec<Compare>, bool)> = vec![
        // value
        (vec![Compare::value(k, Equal, "m")], true),
        (vec![Compare::value(k, Equal, "x")], false),
        (vec![Compare::value(k, NotEqual, "x")], true),
        (vec![Compare::value(k, NotEqual, "m")], false),
        (vec![Compare::value(k, Less, "n")], true),
        (vec![Compare::value(k, Less, "m")], false),
        (vec![Compare::value(k, Greater, "l")], true),
        (vec![Compare::value(k, Greater, "m")], false),
        // version
        (vec![Compare::version(k, Equal, 2)], true),
        (vec![Compare::version(k, Equal, 1)], false),
        (vec![Compare::version(k, NotEqual, 1)], true),
        (vec![Compare::version(k, NotEqual, 2)], false),
        (vec![Compare::version(k, Less, 3)], true),
        (vec![Compare::version(k, Less, 2)], false),
        (vec![Compare::version(k, Greater, 1)], true),
        (vec![Compare::version(k, Greater, 2)], false),
        // create revision
        (vec![Compare::create_revision(k, Equal, created)], true),
        (vec![Compare::create_revision(k, Equal, modified)], false),
        (vec![Compare::create_revision(k, NotEqual, modified)], true),
        (vec![Compare::create_revision(k, NotEqual, created)], false),
        (vec![Compare::create_revision(k, Less, created + 1)], true),
        (vec![Compare::create_revision(k, Less, created)], false),
        (
            vec![Compare::create_revision(k, Greater, created - 1)],
            true,
        ),
        (vec![Compare::create_revision(k, Greater, created)], false),
        // mod revision
        (vec![Compare::mod_revision(k, Equal, modified)], true),
        (vec![Compare::mod_revision(k, Equal, created)], false),
        (vec![Compare::mod_revision(k, NotEqual, created)], true),
        (vec![Compare::mod_revision(k, NotEqual, modified)], false),
        (vec![Compare::mod_revision(k, Less, modified + 1)], true),
        (vec![Compare::mod_revision(k, Less, modified)], false),
        (vec![Compare::mod_revision(k, Greater, created)], true),
        (vec![Compare::mod_revision(k, Greater, modified)], false),
        // lease
        (vec![Compare::lease(k, Equal, lease)], true),
        (vec![Compare::lease(k, Equal, 0)], false),
        (vec![Compare::lease(k, NotEqual, 0)], true),
        (vec![Compare::lease(k, NotEqual, lease)], false),
        (vec![Compare::lease(k, Less, lease + 1)], true),
        (vec![Compare::lease(k, Less, lease)], false),
        (vec![Compare::lease(k, Greater, lease - 1)], true),
        (vec![Compare::lease(k, Greater, lease)], false),
        // a missing key has version 0 and create revision 0
        (vec![Compare::version(m, Equal, 0)], true),
        (vec![Compare::create_revision(m, Equal, 0)], true),
        (vec![Compare::create_revision(m, Greater, 0)], false),
        // all compares must hold
        (
            vec![Compare::value(k, Equal, "m"), Compare::version(k, Equal, 2)],
            true,
        ),
        (
            vec![Compare::value(k, Equal, "m"), Compare::version(k, Equal, 3)],
            false,
        ),
        // over a prefix (k and, once it exists, the marker)
        (
            vec![Compare::version(p.as_str(), Greater, 0).with_prefix()],
            true,
        ),
        (
            vec![Compare::lease(k, Equal, lease).with_range_end(format!("{p}l"))],
            true,
        ),
    ];
    let mut marker_version = 0;
    for (i, (compares, expected)) in cases.into_iter().enumerate() {
        let what = format!("case {i}: {compares:?}");
        let n = compares.len();
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::get(k, GetOptions::new())])
            .or_else([TxnOp::put(
                marker.as_str(),
                format!("{i}"),
                PutOptions::new().with_prev_kv(),
            )]);
        assert_eq!(txn.len(), n + 2, "{what}");
        let resp = ok(client.txn(txn).await);
        assert_eq!(resp.succeeded(), expected, "{what}");
        let ops = resp.op_responses();
        assert_eq!(ops.len(), 1, "{what}");
        match (&ops[0], expected) {
            (TxnOpResponse::Get(get), true) => {
                let kv = only(get);
                assert_eq!(kv.value, b"m", "{what}");
                assert_eq!(kv.mod_revision, modified, "{what}");
                assert_eq!(kv.lease, lease, "{what}");
                assert_eq!(get.revision(), resp.revision(), "{what}");
                assert!(resp.range(0).is_some(), "{what}");
                assert!(resp.put_header(0).is_none(), "{what}");
            }
            (TxnOpResponse::Put(put), false) => {
                marker_version += 1;
                assert_eq!(put.revision(), resp.revision(), "{what}");
                assert_eq!(
                    put.prev_kv().map(|kv| kv.version).unwrap_or(0),
                    marker_version - 1,
                    "{what}"
                );
                assert_eq!(
                    resp.put_header(0).map(|h| h.revision),
                    Some(resp.revision()),
                    "{what}"
                );
                assert!(resp.range(0).is_none(), "{what}");
            }
            (other, _) => panic!("{what}: wrong branch answer {other:?}"),
        }
    }
    assert!(marker_version > 0);
    // The compares never changed k.
    let kv = ok(client.get(k).await);
    assert_eq!(only(&kv).mod_revision, modified);
    // The prefix compare fails once one key in the range breaks it.
    let resp = ok(client
        .txn(Txn::new().when([Compare::value(p.as_str(), Equal, "m").with_prefix()]))
        .await);
    assert!(!resp.succeeded(), "the marker's value is not m");
    assert!(resp.op_responses().is_empty());
}

async fn txn_ops_and_nested_txn_decode(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("txn_ops");
    let key = |name: &str| format!("{p}{name}");
    let ra = ok(client.put(key("a"), "1").await).revision();
    ok(client.put(key("b"), "2").await);
    let rc = ok(client.put(key("c"), "3").await).revision();

    // An empty txn succeeds and does nothing.
    let empty = Txn::new();
    assert!(empty.is_empty());
    let resp = ok(client.txn(empty).await);
    assert!(resp.succeeded());
    assert!(resp.op_responses().is_empty());
    assert_eq!(resp.revision(), rc);

    let nested = Txn::new()
        .when([Compare::version(key("c"), CompareOp::Equal, 1)])
        .and_then([
            TxnOp::put(key("d"), "4", PutOptions::new()),
            TxnOp::get(key(""), GetOptions::new().with_prefix().with_count_only()),
        ])
        .or_else([TxnOp::delete(key("c"), DeleteOptions::new())]);
    let txn = Txn::new()
        .when([Compare::value(key("a"), CompareOp::Equal, "1")])
        .and_then([
            TxnOp::put(key("a"), "10", PutOptions::new().with_prev_kv()),
            TxnOp::get(key("a"), GetOptions::new()),
            TxnOp::delete(key("b"), DeleteOptions::new().with_prev_kv()),
            TxnOp::txn(nested),
            TxnOp::get(key(""), GetOptions::new().with_prefix().with_keys_only()),
        ])
        .or_else([TxnOp::get(key("a"), GetOptions::new())]);
    assert_eq!(txn.len(), 7);
    let resp = ok(client.txn(txn).await);
    assert!(resp.succeeded());
    let rev = resp.revision();
    assert_eq!(rev, rc + 1, "the whole txn is one revision");
    assert_ne!(resp.header().member_id, 0);
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 5, "{ops:?}");

    let TxnOpResponse::Put(put) = &ops[0] else {
        panic!("op 0: {:?}", ops[0])
    };
    let prev = put.prev_kv().expect("prev_kv of a");
    assert_eq!(prev.value, b"1");
    assert_eq!(prev.mod_revision, ra);
    assert_eq!(put.revision(), rev);
    assert_eq!(resp.put_header(0).map(|h| h.revision), Some(rev));

    let TxnOpResponse::Get(get) = &ops[1] else {
        panic!("op 1: {:?}", ops[1])
    };
    let kv = only(get);
    assert_eq!(kv.value, b"10", "the range sees the put before it");
    assert_eq!(kv.mod_revision, rev);
    assert_eq!(kv.create_revision, ra);
    assert_eq!(kv.version, 2);
    let raw = resp.range(1).expect("range at 1");
    assert_eq!(raw.kvs, get.kvs());
    assert!(resp.put_header(1).is_none());

    let TxnOpResponse::Delete(del) = &ops[2] else {
        panic!("op 2: {:?}", ops[2])
    };
    assert_eq!(del.deleted(), 1);
    assert_eq!(names(&p, del.prev_kvs()), ["b"]);
    assert_eq!(del.prev_kvs()[0].value, b"2");

    let TxnOpResponse::Txn(inner) = &ops[3] else {
        panic!("op 3: {:?}", ops[3])
    };
    assert!(inner.succeeded(), "c has version 1");
    let inner_ops = inner.op_responses();
    assert_eq!(inner_ops.len(), 2);
    assert!(
        matches!(&inner_ops[0], TxnOpResponse::Put(_)),
        "{inner_ops:?}"
    );
    let TxnOpResponse::Get(count) = &inner_ops[1] else {
        panic!("nested op 1: {:?}", inner_ops[1])
    };
    assert!(count.kvs().is_empty());
    assert_eq!(count.count(), 3, "a, c and the new d (b deleted before)");

    let TxnOpResponse::Get(keys) = &ops[4] else {
        panic!("op 4: {:?}", ops[4])
    };
    assert_eq!(names(&p, keys.kvs()), ["a", "c", "d"]);
    assert!(keys.kvs().iter().all(|kv| kv.value.is_empty()));

    // Everything applied at one revision.
    let d = ok(client.get(key("d")).await);
    assert_eq!(only(&d).value, b"4");
    assert_eq!(only(&d).create_revision, rev);
    assert!(ok(client.get(key("b")).await).kvs().is_empty());

    // The failure branch, with its own answers.
    let resp = ok(client
        .txn(
            Txn::new()
                .when([Compare::value(key("a"), CompareOp::Equal, "1")])
                .and_then([TxnOp::put(key("never"), "x", PutOptions::new())])
                .or_else([
                    TxnOp::get(key("a"), GetOptions::new()),
                    TxnOp::delete(key("c"), DeleteOptions::new()),
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::create_revision(key("c"), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key("e"), "5", PutOptions::new())]),
                    ),
                ]),
        )
        .await);
    assert!(!resp.succeeded());
    assert_eq!(resp.revision(), rev + 1);
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 3);
    match &ops[0] {
        TxnOpResponse::Get(get) => assert_eq!(only(get).value, b"10"),
        other => panic!("op 0: {other:?}"),
    }
    match &ops[1] {
        TxnOpResponse::Delete(del) => assert_eq!(del.deleted(), 1),
        other => panic!("op 1: {other:?}"),
    }
    match &ops[2] {
        TxnOpResponse::Txn(inner) => {
            // etcd evaluates every compare of the txn tree before running any op, so the
            // nested compare still sees c, deleted only by the op before it.
            assert!(
                !inner.succeeded(),
                "nested compare saw the delete before it"
            );
            assert!(inner.op_responses().is_empty());
        }
        other => panic!("op 2: {other:?}"),
    }
    assert!(ok(client.get(key("never")).await).kvs().is_empty());
    assert!(ok(client.get(key("c")).await).kvs().is_empty());
    assert!(ok(client.get(key("e")).await).kvs().is_empty());
}

// ---------------------------------------------------------------------------------------------
// errors

async fn compact_then_read_compacted_and_future_revisions(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let k = format!("{}k", unique("compact"));
    let r1 = ok(client.put(k.as_str(), "v1").await).revision();
    let r2 = ok(client.put(k.as_str(), "v2").await).revision();
    let r3 = ok(client.put(k.as_str(), "v3").await).revision();
    let at = |rev| client.get_with(k.as_str(), GetOptions::new().with_revision(rev));

    let compacted = ok(client.compact(r2, true).await);
    assert_eq!(compacted.revision(), r3);
    assert_ne!(compacted.header().member_id, 0);

    let e = err(at(r1).await);
    assert!(e.is_compacted(), "{e:?}");
    assert_eq!(e.etcd_kind(), Some(EtcdErrorKind::Compacted));
    assert_etcd(&e, EtcdErrorKind::Compacted, Code::OutOfRange);
    assert!(!e.is_unavailable());

    // The compaction revision itself is kept.
    let kept = ok(at(r2).await);
    assert_eq!(only(&kept).value, b"v2");
    assert_eq!(only(&ok(at(r3).await)).value, b"v3");

    // Compacting again at or below the compaction revision.
    for rev in [r1, r2] {
        let e = err(client.compact(rev, true).await);
        assert!(e.is_compacted(), "compact({rev}): {e:?}");
    }
    // ... or in the future.
    let e = err(client.compact(r3 + 100, false).await);
    assert_etcd(&e, EtcdErrorKind::FutureRevision, Code::OutOfRange);

    // A read in the future.
    let e = err(at(r3 + 1).await);
    assert_etcd(&e, EtcdErrorKind::FutureRevision, Code::OutOfRange);
    assert!(!e.is_compacted());

    // A non-physical compaction also takes effect for reads.
    let r4 = ok(client.put(k.as_str(), "v4").await).revision();
    ok(client.compact(r4, false).await);
    assert!(err(at(r3).await).is_compacted());
    assert_eq!(only(&ok(at(r4).await)).value, b"v4");

    // Revision 0 / negative never reach the wire.
    let before = client.stats().unary_calls;
    for rev in [0, -1] {
        let e = err(client.compact(rev, true).await);
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    argument: "revision",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let e = err(client
        .get_with(k.as_str(), GetOptions::new().with_revision(-1))
        .await);
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                argument: "revision",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(client.stats().unary_calls, before);
}

async fn request_too_large_keeps_the_server_healthy(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let k = format!("{}big", unique("too_large"));

    // Over etcd's --max-request-bytes (1.5 MiB) but under gRPC's receive cap (that + 512 KiB):
    // etcd's own error.
    let e = err(client.put(k.as_str(), vec![b'x'; 1792 * 1024]).await);
    assert_etcd(&e, EtcdErrorKind::RequestTooLarge, Code::InvalidArgument);

    // 2 MiB of value passes the gRPC receive cap (2 MiB for the whole message): refused by
    // gRPC itself before etcd sees it, so it is a plain status, not an etcd error.
    let e = err(client.put(k.as_str(), vec![b'x'; 2 * 1024 * 1024]).await);
    assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e:?}");
    assert!(matches!(e, Error::Status { .. }), "{e:?}");
    assert_eq!(e.etcd_kind(), None);

    // Nothing was written and the same client and server keep working.
    assert!(ok(client.get(k.as_str()).await).kvs().is_empty());
    let fits = vec![b'y'; 1024 * 1024];
    let put = ok(client.put(k.as_str(), fits.clone()).await);
    let got = ok(client.get(k.as_str()).await);
    assert_eq!(only(&got).value, fits);
    assert_eq!(only(&got).mod_revision, put.revision());
    let status = ok(client.status().await);
    assert_ne!(status.leader(), 0);
}

async fn txn_op_limit_and_duplicate_keys(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("txn_limits");
    let puts = |n: usize| {
        (0..n).map(|i| TxnOp::put(format!("{p}{i:03}"), format!("{i}"), PutOptions::new()))
    };

    let e = err(client.txn(Txn::new().and_then(puts(129))).await);
    assert_etcd(&e, EtcdErrorKind::TooManyOps, Code::InvalidArgument);
    let e = err(client
        .txn(
            Txn::new()
                .when([Compare::version(p.as_str(), CompareOp::Equal, 0)])
                .or_else(puts(129)),
        )
        .await);
    assert_etcd(&e, EtcdErrorKind::TooManyOps, Code::InvalidArgument);
    let none = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(none.count(), 0, "a refused txn writes nothing");

    // 128 per branch is the default limit and passes.
    let resp = ok(client.txn(Txn::new().and_then(puts(128))).await);
    assert!(resp.succeeded());
    assert_eq!(resp.op_responses().len(), 128);
    let all = ok(client
        .get_with(
            p.as_str(),
            GetOptions::new().with_prefix().with_count_only(),
        )
        .await);
    assert_eq!(all.count(), 128);

    // Two puts of one key.
    let dup = format!("{p}dup");
    let e = err(client
        .txn(Txn::new().and_then([
            TxnOp::put(dup.as_str(), "1", PutOptions::new()),
            TxnOp::put(dup.as_str(), "2", PutOptions::new()),
        ]))
        .await);
    assert_etcd(&e, EtcdErrorKind::DuplicateKey, Code::InvalidArgument);
    // A put and a delete covering the same key.
    let e = err(client
        .txn(Txn::new().and_then([
            TxnOp::put(dup.as_str(), "1", PutOptions::new()),
            TxnOp::delete(p.as_str(), DeleteOptions::new().with_prefix()),
        ]))
        .await);
    assert_etcd(&e, EtcdErrorKind::DuplicateKey, Code::InvalidArgument);
    assert!(ok(client.get(dup.as_str()).await).kvs().is_empty());
    assert_eq!(
        ok(client
            .get_with(
                p.as_str(),
                GetOptions::new().with_prefix().with_count_only()
            )
            .await)
        .count(),
        128,
        "the refused txn deleted nothing"
    );
    // The same key in the two branches is fine: only one runs.
    let resp = ok(client
        .txn(
            Txn::new()
                .when([Compare::version(dup.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(dup.as_str(), "then", PutOptions::new())])
                .or_else([TxnOp::put(dup.as_str(), "else", PutOptions::new())]),
        )
        .await);
    assert!(resp.succeeded());
    assert_eq!(only(&ok(client.get(dup.as_str()).await)).value, b"then");
}

async fn empty_key_is_refused_before_the_wire(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    // The counter does count real calls.
    let before = client.stats();
    ok(client.get("probe").await);
    let after = client.stats();
    assert_eq!(after.unary_calls, before.unary_calls + 1);
    assert_eq!(after.requests, before.requests + 1);
    assert!(after.bytes_sent > before.bytes_sent);
    assert!(after.bytes_received > before.bytes_received);

    let before = client.stats();
    let refusals: Vec<(&str, Error)> = vec![
        ("get", err(client.get("").await)),
        (
            "get prefix",
            err(client.get_with("", GetOptions::new().with_prefix()).await),
        ),
        ("put", err(client.put("", "v").await)),
        (
            "put prev_kv",
            err(client
                .put_with(Vec::new(), "v", PutOptions::new().with_prev_kv())
                .await),
        ),
        ("delete", err(client.delete("").await)),
        (
            "delete prefix",
            err(client
                .delete_with("", DeleteOptions::new().with_prefix())
                .await),
        ),
        (
            "txn compare",
            err(client
                .txn(Txn::new().when([Compare::value("", CompareOp::Equal, "v")]))
                .await),
        ),
        (
            "txn put",
            err(client
                .txn(Txn::new().and_then([TxnOp::put("", "v", PutOptions::new())]))
                .await),
        ),
        (
            "txn else get",
            err(client
                .txn(Txn::new().or_else([TxnOp::get("", GetOptions::new())]))
                .await),
        ),
        (
            "nested txn delete",
            err(client
                .txn(Txn::new().and_then([TxnOp::txn(
                    Txn::new().and_then([TxnOp::delete("", DeleteOptions::new())]),
                )]))
                .await),
        ),
    ];
    for (what, e) in &refusals {
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    argument: "key",
                    ..
                }
            ),
            "{what}: {e:?}"
        );
        assert_eq!(
            e.code(),
            None,
            "{what}: client-side errors carry no gRPC code"
        );
        assert!(!e.to_string().is_empty());
    }
    let now = client.stats();
    assert_eq!(
        now.unary_calls, before.unary_calls,
        "an empty key reached the wire"
    );
    assert_eq!(now.requests, before.requests);
    assert_eq!(now.bytes_sent, before.bytes_sent);
}

async fn range_response_over_4_mib(bin: &EtcdBinary) {
    let (_cluster, client) = started(bin).await;
    let p = unique("large_range");
    // Four values of 1.4 MiB: each put is under etcd's 1.5 MiB request limit, and etcd serves
    // reads of any size (its gRPC send limit is 2 GiB), so the prefix read (5.6 MiB) is valid.
    let value = |i: u8| vec![b'a' + i; 1400 * 1024];
    for i in 0..4u8 {
        ok(client.put(format!("{p}{i}"), value(i)).await);
    }
    let keys = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix().with_keys_only())
        .await);
    assert_eq!(names(&p, keys.kvs()), ["0", "1", "2", "3"]);
    let all = ok(client
        .get_with(p.as_str(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(all.count(), 4);
    for (i, kv) in all.kvs().iter().enumerate() {
        assert!(kv.value == value(i as u8), "value {i} differs");
    }
}
