//! The client against a hostile server (issue 26, items 3 and 5): a fake etcd (see
//! `fake_etcd/`) that refuses every token, or pads an answer to hundreds of MiB.
//!
//! - A server answering `invalid auth token` to `Authenticate` must fail the connect (or the
//!   call whose token it refused), not deadlock the client: the renewal never renews for
//!   `Authenticate` itself, and later renewals on the same client still run.
//! - An answer whose length prefix is over `max_response_bytes` fails with
//!   `Error::MessageTooLarge` from the prefix alone: the server gets to send no more than
//!   HTTP/2 flow control lets through before the client resets the stream, never the message.

mod fake_etcd;

use std::time::Duration;

use etcd_lock::error::{EtcdErrorKind, MessageKind};
use etcd_lock::{Client, ClientOptions, Error};
use fake_etcd::{Answer, FakeEtcd};
use tonic::Code;

const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
const PUT: &str = "/etcdserverpb.KV/Put";
const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
const STATUS: &str = "/etcdserverpb.Maintenance/Status";

/// A deadlocked call never ends; a working one ends within the request timeout (1 s here).
/// This bound only tells the two apart, so it is generous for a loaded machine.
const HUNG: Duration = Duration::from_secs(60);

fn invalid_token() -> Answer {
    Answer::Status(
        Code::InvalidArgument,
        "etcdserver: invalid auth token".into(),
    )
}

fn options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_request_timeout(Some(Duration::from_secs(1)))
}

/// `AuthenticateResponse { token }`.
fn token_answer(token: &str) -> Answer {
    let resp = etcd_lock::proto::etcdserverpb::AuthenticateResponse {
        header: None,
        token: token.into(),
    };
    Answer::Message(prost::Message::encode_to_vec(&resp))
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(HUNG, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} hung (a deadlocked token renewal never ends)"),
    }
}

/// Fails on the old code: `Authenticate` answered `invalid auth token` made `unary` renew the
/// token, which called `Authenticate` again under the renewal lock it already held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_token_answer_to_authenticate_fails_the_connect() {
    let fake = FakeEtcd::start(vec![(AUTHENTICATE, vec![invalid_token()])]).await;
    let connect = async {
        Client::builder([fake.endpoint.as_str()], options())?
            .auth("alice", "pw")
            .connect()
            .await
    };
    match within("connect", connect).await {
        Err(e) => {
            assert_eq!(e.etcd_kind(), Some(EtcdErrorKind::InvalidAuthToken), "{e}");
            println!("connect failed as it should: {e}");
        }
        Ok(_) => panic!("connected although every Authenticate was refused"),
    }
    // Authenticate is a read: repeated on the one endpoint by the retry rules at most, never
    // recursively from a renewal.
    assert!(fake.count(AUTHENTICATE) >= 1);
}

/// Fails on the old code: a `Put` whose token is refused renews it; the renewal's
/// `Authenticate` is refused too, and renewed again under the held lock: the put and every
/// later renewal on the client hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renewal_fails_the_call_and_later_renewals_still_run() {
    let fake = FakeEtcd::start(vec![
        (AUTHENTICATE, vec![token_answer("t1"), invalid_token()]),
        (PUT, vec![invalid_token()]),
    ])
    .await;
    let client = within("connect", async {
        Client::builder([fake.endpoint.as_str()], options())?
            .auth("alice", "pw")
            .connect()
            .await
    })
    .await;
    let client = match client {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    for round in 1..=2 {
        let before = fake.count(AUTHENTICATE);
        match within("put", client.put("k", "v")).await {
            Err(e) => assert_eq!(
                e.etcd_kind(),
                Some(EtcdErrorKind::InvalidAuthToken),
                "round {round}: {e}"
            ),
            Ok(_) => panic!("round {round}: the put succeeded"),
        }
        // Each round tried a renewal (the lock of the previous one was released).
        assert!(fake.count(AUTHENTICATE) > before, "round {round}");
    }
}

/// A `LeaseGrantResponse` (ID 7, TTL 5) followed by an unknown bytes field (number 100) of
/// `pad` bytes: a valid message prost would decode, after buffering it whole.
fn padded_lease_grant(pad: usize) -> Answer {
    let resp = etcd_lock::proto::etcdserverpb::LeaseGrantResponse {
        header: None,
        id: 7,
        ttl: 5,
        error: String::new(),
    };
    let mut prefix = prost::Message::encode_to_vec(&resp);
    prost::encoding::encode_key(100, prost::encoding::WireType::LengthDelimited, &mut prefix);
    prost::encoding::encode_varint(pad as u64, &mut prefix);
    Answer::Padded { prefix, pad }
}

/// Fails on the old code: unary clients decoded without a limit, so the client buffered the
/// whole 300 MiB answer, decoded it, dropped the unknown field, and the size check afterwards
/// (on the re-encoded message) passed: the grant "succeeded".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padded_answer_is_refused_from_its_length_prefix() {
    const PAD: usize = 300 << 20;
    const LIMIT: usize = 4 << 20;
    let fake = FakeEtcd::start(vec![(LEASE_GRANT, vec![padded_lease_grant(PAD)])]).await;
    let options = options()
        .with_request_timeout(Some(Duration::from_secs(30)))
        .with_max_message_bytes(usize::MAX, LIMIT);
    let client = match Client::connect_with([fake.endpoint.as_str()], options).await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    let result = within("lease_grant", client.lease_grant(10)).await;
    match result {
        Err(Error::MessageTooLarge {
            method,
            what,
            bytes,
            limit,
        }) => {
            assert_eq!(method, LEASE_GRANT);
            assert_eq!(what, MessageKind::Response);
            assert_eq!(limit, LIMIT);
            assert!(bytes > PAD, "the announced size, {bytes}");
        }
        Err(other) => panic!("expected MessageTooLarge, got {other:?} ({other})"),
        Ok(_) => panic!("a {PAD}-byte answer was accepted under a {LIMIT}-byte limit"),
    }
    // Not buffered: only what flow control let through before the reset (a few MiB).
    let sent = fake.padding_sent();
    assert!(sent < 64 << 20, "the server sent {sent} bytes of padding");
    println!("padding sent before the client reset the stream: {sent} bytes");
    drop(client);
}

/// `unary_at` (calls aimed at one member) has the same decode limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_aimed_at_one_member_have_the_limit_too() {
    const LIMIT: usize = 1 << 20;
    let status = etcd_lock::proto::etcdserverpb::StatusResponse {
        version: "3.5.1".into(),
        ..Default::default()
    };
    let mut prefix = prost::Message::encode_to_vec(&status);
    let pad = 8 << 20;
    prost::encoding::encode_key(100, prost::encoding::WireType::LengthDelimited, &mut prefix);
    prost::encoding::encode_varint(pad as u64, &mut prefix);
    let fake = FakeEtcd::start(vec![(STATUS, vec![Answer::Padded { prefix, pad }])]).await;
    let options = options().with_max_message_bytes(usize::MAX, LIMIT);
    let client = match Client::connect_with([fake.endpoint.as_str()], options).await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    match within("status_of", client.status_of(&fake.endpoint)).await {
        Err(Error::MessageTooLarge { method, limit, .. }) => {
            assert_eq!((method, limit), (STATUS, LIMIT));
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
}

/// The `Snapshot` stream decodes with the limit too: a chunk announced at 64 MiB under a
/// 1 MiB limit ends the snapshot with `MessageTooLarge` as its cause, after the server sent
/// no more than flow control let through. (On the old code the cause was a bare
/// `OutOfRange` status.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_snapshot_chunk_is_message_too_large() {
    const LIMIT: usize = 1 << 20;
    const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";
    let chunk = etcd_lock::proto::etcdserverpb::SnapshotResponse {
        header: None,
        remaining_bytes: 1,
        blob: Vec::new(),
    };
    let mut prefix = prost::Message::encode_to_vec(&chunk);
    let pad = 64 << 20;
    prost::encoding::encode_key(3, prost::encoding::WireType::LengthDelimited, &mut prefix);
    prost::encoding::encode_varint(pad as u64, &mut prefix);
    let fake = FakeEtcd::start(vec![(SNAPSHOT, vec![Answer::Padded { prefix, pad }])]).await;
    let options = options().with_max_message_bytes(usize::MAX, LIMIT);
    let client = match Client::connect_with([fake.endpoint.as_str()], options).await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    let mut out = Vec::new();
    match within("snapshot", client.snapshot(&mut out)).await {
        Err(Error::Snapshot {
            cause: Some(cause), ..
        }) => match *cause {
            Error::MessageTooLarge { method, limit, .. } => {
                assert_eq!((method, limit), (SNAPSHOT, LIMIT));
            }
            other => panic!("expected MessageTooLarge as the cause, got {other:?}"),
        },
        other => panic!("expected Error::Snapshot, got {other:?}"),
    }
    assert!(out.is_empty());
    let sent = fake.padding_sent();
    assert!(sent < 32 << 20, "the server sent {sent} bytes of padding");
}

/// TLS settings with a throwaway CA, for a client that reaches the plaintext fake only through
/// the explicit opt-in.
#[cfg(feature = "tls")]
fn tls_options() -> etcd_lock::TlsOptions {
    let mut params = match rcgen::CertificateParams::new(Vec::<String>::new()) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = match rcgen::KeyPair::generate() {
        Ok(k) => k,
        Err(e) => panic!("{e}"),
    };
    match params.self_signed(&key) {
        Ok(cert) => etcd_lock::TlsOptions::new().with_ca_pem(cert.pem()),
        Err(e) => panic!("{e}"),
    }
}

/// `MemberListResponse` with one member (ID 1) advertising `url`.
#[cfg(feature = "tls")]
fn member_list(url: &str) -> Answer {
    use etcd_lock::proto::etcdserverpb as pb;
    let resp = pb::MemberListResponse {
        header: None,
        members: vec![pb::Member {
            id: 1,
            name: "m1".into(),
            peer_ur_ls: Vec::new(),
            client_ur_ls: vec![url.into()],
            is_learner: false,
        }],
    };
    Answer::Message(prost::Message::encode_to_vec(&resp))
}

/// Fails on the old code: auto-sync rewrote `http://` to `https://` only in lower case (and
/// only when an endpoint already used https), so a member advertising `HTTP://` was dialled
/// in clear although TLS was configured. Under TLS settings every advertised URL is dialled
/// with TLS, whatever its spelling, even with the plaintext opt-in for configured endpoints.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_sync_dials_advertised_urls_with_tls() {
    const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";
    // A member advertising `HTTP://127.0.0.1:1` (in capitals; nothing listens there).
    let fake = FakeEtcd::start(vec![(MEMBER_LIST, vec![member_list("HTTP://127.0.0.1:1")])]).await;
    let options = options()
        .with_allow_plaintext_with_tls(true)
        .with_auto_sync(Some(Duration::from_millis(50)));
    let client = match Client::builder([fake.endpoint.as_str()], options) {
        Ok(b) => b.tls(tls_options()).connect().await,
        Err(e) => Err(e),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    let synced = within("auto-sync", async {
        loop {
            let endpoints = client.endpoints();
            if endpoints != [fake.endpoint.clone()] {
                return endpoints;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(synced, ["https://127.0.0.1:1"]);
}

/// Fails on the old code: `move_leader` sent `MoveLeader` to the leader's advertised URL as
/// given, here `http://` (the fake itself), in clear although TLS was configured. Now that URL
/// is dialled with TLS (and the plaintext fake never gets the call).
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_dials_the_advertised_leader_with_tls() {
    const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";
    const MOVE_LEADER: &str = "/etcdserverpb.Maintenance/MoveLeader";
    let status = etcd_lock::proto::etcdserverpb::StatusResponse {
        leader: 1,
        ..Default::default()
    };
    // The scripted fake names the leader's URL: `target`, a second plaintext fake that
    // records whatever reaches it.
    let target = FakeEtcd::start(Vec::new()).await;
    let fake = FakeEtcd::start(vec![
        (
            STATUS,
            vec![Answer::Message(prost::Message::encode_to_vec(&status))],
        ),
        (MEMBER_LIST, vec![member_list(&target.endpoint)]),
    ])
    .await;
    let client = match Client::builder(
        [fake.endpoint.as_str()],
        options().with_allow_plaintext_with_tls(true),
    ) {
        Ok(b) => b.tls(tls_options()).connect().await,
        Err(e) => Err(e),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    let result = within("move_leader", client.move_leader(2)).await;
    assert!(result.is_err(), "the plaintext fake cannot answer over TLS");
    assert_eq!(target.count(MOVE_LEADER), 0, "MoveLeader went in clear");
    assert!(target.calls().is_empty(), "{:?}", target.calls());
}
