//! Issue 12, "Per-request options": message size limits and require-leader in `ClientOptions`.
//!
//! - A range answer over gRPC's usual 4 MiB default decodes with the default options; a small
//!   configured response limit fails with `Error::MessageTooLarge`; a request over the request
//!   limit is refused before it is sent. The same holds outside KV: a 5 MiB `Auth/RoleGet`.
//! - `with_require_leader(true)`: on a member cut off from its peers (the two others of a
//!   3-member cluster stopped), a serializable read fails at once with `no leader`, where a
//!   client without the option is served stale data.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::error::MessageKind;
use etcd_lock::kv::GetOptions;
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{ClientOptions, Error, EtcdErrorKind};

const MIB: usize = 1024 * 1024;

async fn message_size_limits(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let prefix = common::unique("big");
    // Five values of 1.1 MiB (each put stays under etcd's 1.5 MiB request limit).
    let value = vec![b'x'; MIB + MIB / 10];
    for i in 0..5 {
        ok(client.put(format!("{prefix}/{i}"), value.clone()).await);
    }
    let all = GetOptions::new().with_prefix();
    let response = ok(client.get_with(format!("{prefix}/"), all.clone()).await);
    assert_eq!(response.kvs().len(), 5);
    let bytes = prost::Message::encoded_len(response.get_ref());
    assert!(bytes > 5 * MIB, "answer of {bytes} bytes");
    assert_eq!(
        client.options().max_response_bytes,
        etcd_lock::client::DEFAULT_MAX_RESPONSE_BYTES
    );

    // A client with a 1 MiB response limit: the same read is refused, typed.
    let options = ClientOptions::new().with_max_message_bytes(64 * 1024, MIB);
    let small = common::client_with(&cluster, options).await;
    match small.get_with(format!("{prefix}/"), all.clone()).await {
        Err(Error::MessageTooLarge {
            what, bytes, limit, ..
        }) => {
            assert_eq!((what, limit), (MessageKind::Response, MIB));
            assert!(bytes > 5 * MIB);
        }
        other => panic!("5 MiB answer under a 1 MiB limit: {other:?}"),
    }
    // A small answer still passes.
    let one = ok(small
        .get_with(format!("{prefix}/"), all.clone().with_keys_only())
        .await);
    assert_eq!(one.kvs().len(), 5);

    // A request over the 64 KiB request limit is not sent: the key is not written.
    match small
        .put(format!("{prefix}/request"), vec![b'y'; 100 * 1024])
        .await
    {
        Err(Error::MessageTooLarge { what, limit, .. }) => {
            assert_eq!((what, limit), (MessageKind::Request, 64 * 1024))
        }
        other => panic!("100 KiB put under a 64 KiB limit: {other:?}"),
    }
    let absent = ok(client.get(format!("{prefix}/request")).await);
    assert!(absent.kvs().is_empty());
    ok(small.put(format!("{prefix}/small"), "fits").await);

    // The watch stream gets the same response limit: a 1.1 MiB event is over 1 MiB, refused
    // from its length prefix and reported typed.
    let mut watcher = ok(small.watch(format!("{prefix}/0")).await);
    ok(client.put(format!("{prefix}/0"), value.clone()).await);
    let next = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
    match next {
        Ok(Some(Err(Error::MessageTooLarge { what, limit, .. }))) => {
            assert_eq!((what, limit), (MessageKind::Response, MIB));
        }
        other => panic!("1.1 MiB watch event under a 1 MiB limit: {other:?}"),
    }
}

async fn require_leader_fails_fast_on_an_isolated_member(bin: &EtcdBinary) {
    let mut cluster = common::three(bin);
    ok(tokio::task::block_in_place(|| {
        cluster.wait_leader(Duration::from_secs(10))
    }));
    let key = common::unique("isolated");
    let writer = common::client(&cluster).await;
    ok(writer.put(key.clone(), "before").await);

    let endpoint = cluster.member(0).endpoint();
    let base = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Some(Duration::from_secs(10)));
    let strict = ok(etcd_lock::Client::connect_with(
        [endpoint.clone()],
        base.clone().with_require_leader(true),
    )
    .await);
    let lenient = ok(etcd_lock::Client::connect_with([endpoint.clone()], base.clone()).await);
    // With a leader, the option changes nothing.
    let serializable = GetOptions::new().with_serializable();
    ok(strict.get_with(key.clone(), serializable.clone()).await);
    ok(strict.put(key.clone(), "with a leader").await);

    // Cut member 0 off: stop the two others.
    for i in [1, 2] {
        ok(cluster.member_mut(i).kill());
    }
    // Member 0 notices within a few election timeouts; until then it may still serve.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let started = Instant::now();
        match strict.get_with(key.clone(), serializable.clone()).await {
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::NoLeader) => {
                // Refused at once: no waiting for the 10 s request timeout.
                let took = started.elapsed();
                assert!(took < Duration::from_secs(2), "no leader after {took:?}");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("require-leader read: {e:?}"),
        }
        assert!(Instant::now() < deadline, "member 0 still claims a leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once more, timed: every call fails fast, reads and writes alike.
    let started = Instant::now();
    let read = strict.get_with(key.clone(), serializable.clone()).await;
    assert!(
        matches!(&read, Err(e) if e.etcd_kind() == Some(EtcdErrorKind::NoLeader)),
        "{read:?}"
    );
    let write = strict.put(key.clone(), "no leader").await;
    assert!(
        matches!(&write, Err(e) if e.etcd_kind() == Some(EtcdErrorKind::NoLeader)),
        "{write:?}"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    println!(
        "etcd {}: require-leader read + write on an isolated member: {took:?}",
        bin.version()
    );

    // Without the option, the same member serves its stale copy.
    let stale = ok(lenient.get_with(key.clone(), serializable).await);
    assert_eq!(
        stale.first().map(|kv| kv.value.clone()),
        Some(b"with a leader".to_vec())
    );
}

per_version!(
    message_size_limits,
    require_leader_fails_fast_on_an_isolated_member,
    an_auth_answer_over_4_mib_decodes
);

/// Not only KV: a `Auth/RoleGet` answer over gRPC's usual 4 MiB decode limit (a role with five
/// 1.1 MiB permission keys; the auth store keeps the role as one bolt value, which has no
/// 32 KiB key limit) decodes with the default options and is refused, typed, under a 1 MiB
/// response limit.
async fn an_auth_answer_over_4_mib_decodes(bin: &EtcdBinary) {
    use etcd_lock::auth::{Permission, PermissionRange};
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let role = common::unique("bigrole").replace('/', "-");
    ok(client.role_add(&role).await);
    for i in 0..5u8 {
        let mut key = vec![b'a' + i];
        key.resize(MIB + MIB / 10, b'k');
        ok(client
            .role_grant_permission(&role, Permission::Read, PermissionRange::key(key))
            .await);
    }
    let perms = ok(client.role_get(&role).await);
    assert_eq!(perms.len(), 5);
    let bytes: usize = perms.iter().map(|p| p.key.len()).sum();
    assert!(bytes > 5 * MIB, "{bytes} bytes of keys");

    let options = ClientOptions::new().with_max_message_bytes(usize::MAX, MIB);
    let small = common::client_with(&cluster, options).await;
    match small.role_get(&role).await {
        Err(Error::MessageTooLarge {
            what, bytes, limit, ..
        }) => {
            assert_eq!((what, limit), (MessageKind::Response, MIB));
            assert!(bytes > 5 * MIB);
        }
        other => panic!("5 MiB RoleGet under a 1 MiB limit: {other:?}"),
    }
    ok(client.role_delete(&role).await);
}
