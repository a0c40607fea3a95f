//! Bad-input sweep against real etcd 3.5.1 and 3.4.23: every public entry point gets hostile
//! input (empty and oversized keys and names, values over etcd's 1.5 MiB request limit, TTLs
//! <= 0 and absurdly large, unknown lease IDs, future and compacted revisions, txns with over
//! 128 ops or duplicate keys, malformed endpoints, servers that are not etcd). Each must fail
//! with the expected typed error within a bounded time, the server must stay healthy, and no
//! key may be left behind. The table of inputs and errors is printed (`--nocapture`) and
//! written to `target/bad-input-table.md`.
#![cfg(feature = "testkit")]

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::auth::{Permission, PermissionRange};
use etcd_lock::election::{Elector, RecipeElection, ServiceElection};
use etcd_lock::kv::{GetOptions, PutOptions};
use etcd_lock::lease::MAX_TTL_SECS;
use etcd_lock::lock::{Locker, RecipeLock, ServiceLock, MAX_NAME_LEN};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp};
use etcd_lock::watch::WatchOptions;
use etcd_lock::{Client, ClientOptions, Code, Error, EtcdErrorKind, Session, SessionOptions};
use tokio::io::AsyncWriteExt;

per_version!(sweep);

/// Client-side refusals: nothing is sent, so this is generous for a loaded 2-core machine.
const LOCAL: Duration = Duration::from_secs(1);
/// Answers from etcd.
const SERVER: Duration = Duration::from_secs(5);
/// Fake servers and unreachable ports: bounded by the connect (2 s) and request (3 s) timeouts.
const FAKE: Duration = Duration::from_secs(12);

const MIB: usize = 1024 * 1024;
/// Over etcd's `--max-request-bytes` (1.5 MiB), under the gRPC limit (+512 KiB).
const OVER_LIMIT: usize = MIB * 16 / 10;
/// Over the gRPC message limit etcd sets (request limit + 512 KiB).
const OVER_GRPC: usize = 3 * MIB;
/// A lease ID nobody granted.
const UNKNOWN_LEASE: i64 = 0x7e57_0000_dead_beef;

struct Row {
    entry: String,
    input: String,
    error: String,
    message: String,
    elapsed: Duration,
}

struct Sweep<'a> {
    cluster: &'a Cluster,
    client: Client,
    rows: Vec<Row>,
}

fn argument(name: &'static str) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::InvalidArgument { argument, .. } if *argument == name)
}

fn kind(k: EtcdErrorKind) -> impl Fn(&Error) -> bool {
    move |e| e.etcd_kind() == Some(k)
}

fn code(c: Code) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::Status { status } if status.code() == c)
}

/// The variant (and the detail that matters) of an error, for the table.
fn variant(e: &Error) -> String {
    match e {
        Error::InvalidArgument { argument, .. } => format!("InvalidArgument(`{argument}`)"),
        Error::Etcd { kind, status } => format!("Etcd({kind:?}) [{:?}]", status.code()),
        Error::Status { status } => format!("Status [{:?}]", status.code()),
        Error::Connect { .. } => "Connect".into(),
        Error::Timeout { .. } => "Timeout".into(),
        Error::Tls { .. } => "Tls".into(),
        Error::Unsupported { .. } => "Unsupported".into(),
        Error::WatchCompacted { .. } => "WatchCompacted".into(),
        Error::WatchClosed { .. } => "WatchClosed".into(),
        Error::SessionLost { .. } => "SessionLost".into(),
        Error::LeaseExpired { .. } => "LeaseExpired".into(),
        Error::Locked { .. } => "Locked".into(),
        Error::NotHeld { .. } => "NotHeld".into(),
        Error::AlreadyHeld { .. } => "AlreadyHeld".into(),
        Error::Protocol(_) => "Protocol".into(),
        other => format!("{other:?}"),
    }
}

fn cell(text: &str) -> String {
    let mut text = text.replace('|', "\\|").replace('\n', " ");
    if text.len() > 150 {
        let mut cut = 150;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

impl Sweep<'_> {
    /// Runs one hostile call: it must fail within `bound` with an error `check` accepts, and
    /// the server must still be healthy and answer a write and a read afterwards.
    async fn row<T, F>(
        &mut self,
        entry: &str,
        input: &str,
        bound: Duration,
        check: impl Fn(&Error) -> bool,
        call: F,
    ) where
        F: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let outcome = tokio::time::timeout(bound + Duration::from_secs(5), call).await;
        let elapsed = started.elapsed();
        let error = match outcome {
            Err(_) => panic!("{entry} with {input}: no answer within {bound:?} + 5 s"),
            Ok(Ok(_)) => panic!("{entry} with {input}: accepted"),
            Ok(Err(e)) => e,
        };
        assert!(
            check(&error),
            "{entry} with {input}: unexpected {error:?} ({error})"
        );
        assert!(
            elapsed <= bound,
            "{entry} with {input}: took {elapsed:?} (bound {bound:?})"
        );
        self.rows.push(Row {
            entry: entry.to_string(),
            input: input.to_string(),
            error: variant(&error),
            message: error.to_string(),
            elapsed,
        });
        // Still healthy, still serving.
        assert!(
            self.cluster.member(0).is_healthy(),
            "etcd unhealthy after {entry} with {input}"
        );
        ok(self.client.put("sweep/canary", "ok").await);
        let canary = ok(self.client.get("sweep/canary").await);
        assert_eq!(canary.kvs().len(), 1);
        ok(self.client.delete("sweep/canary").await);
    }

    fn table(&self, version: &str) -> String {
        let mut out = format!(
            "### etcd {version}: {} hostile inputs, each a typed error\n\n\
             | # | entry point | hostile input | error | message | ms |\n\
             |---|---|---|---|---|---|\n",
            self.rows.len()
        );
        for (i, r) in self.rows.iter().enumerate() {
            out.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} |\n",
                i + 1,
                cell(&r.entry),
                cell(&r.input),
                r.error,
                cell(&r.message),
                r.elapsed.as_millis()
            ));
        }
        out
    }
}

/// A loopback listener that is not etcd: it accepts and closes, or answers garbage. Aborted
/// when dropped.
struct Fake {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake(garbage: bool) -> Fake {
    let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let port = ok(listener.local_addr()).port();
    let task = tokio::spawn(async move {
        // Bounded: at most 200 connections, then the listener closes.
        for _ in 0..200 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            if garbage {
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot etcd\n\x00\xff\xfe",
                    )
                    .await;
                let _ = socket.write_all(&[0x17; 4096]).await;
            }
            drop(socket);
        }
    });
    Fake { port, task }
}

/// A connect failure whose reason says one of `what`.
fn connect_failed_with(what: &'static [&'static str]) -> impl Fn(&Error) -> bool {
    move |e: &Error| matches!(e, Error::Connect { reason, .. } if what.iter().any(|w| reason.contains(w)))
}

fn fake_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Some(Duration::from_secs(3)))
}

/// Connects to `endpoint` and sends one `Range`: the whole path a caller would take.
async fn connect_and_get(endpoint: String) -> Result<(), Error> {
    let client = Client::connect_with([endpoint], fake_options()).await?;
    client.get("k").await.map(drop)
}

async fn sweep(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let mut s = Sweep {
        cluster: &cluster,
        client: client.clone(),
        rows: Vec::new(),
    };
    let c = &client;
    let big_key = vec![b'k'; OVER_LIMIT];
    let huge_key = vec![b'k'; OVER_GRPC];
    let long_name = vec![b'n'; MAX_NAME_LEN + 1];

    // --- endpoints and connecting --------------------------------------------------------
    for bad in [
        "",
        "localhost",
        "ftp://127.0.0.1:2379",
        "http://:2379",
        "127.0.0.1:99999",
        "127.0.0.1:0",
        "127.0.0.1:2379/v3",
        "http://[::1",
        "unix:///tmp/etcd.sock",
    ] {
        s.row(
            "Client::connect",
            &format!("{bad:?}"),
            LOCAL,
            argument("endpoints"),
            Client::connect([bad]),
        )
        .await;
    }
    s.row(
        "Client::connect",
        "no endpoints at all",
        LOCAL,
        argument("endpoints"),
        Client::connect(Vec::<String>::new()),
    )
    .await;
    s.row(
        "Client::connect_with",
        "connect_timeout = 0",
        LOCAL,
        argument("connect_timeout"),
        Client::connect_with(
            cluster.endpoints(),
            ClientOptions::new().with_connect_timeout(Duration::ZERO),
        ),
    )
    .await;
    let builder = ok(Client::builder(cluster.endpoints(), ClientOptions::new()));
    s.row(
        "ClientBuilder::auth",
        "empty user name",
        LOCAL,
        argument("user"),
        builder.auth("", "x").connect(),
    )
    .await;
    let closed_port = {
        let l = ok(std::net::TcpListener::bind("127.0.0.1:0"));
        ok(l.local_addr()).port()
    };
    s.row(
        "Client::connect",
        "a port nobody listens on",
        FAKE,
        |e: &Error| matches!(e, Error::Connect { .. }),
        Client::connect_with([format!("127.0.0.1:{closed_port}")], fake_options()),
    )
    .await;
    // A connection counts once the server's SETTINGS arrived: a server that is not HTTP/2
    // fails the connect, saying what it did.
    let accept_close = fake(false).await;
    s.row(
        "Client::connect + get",
        "a TCP server that accepts and closes",
        FAKE,
        // The close reaches the client as an end of stream, or as a reset when the server
        // closed with our preface unread.
        connect_failed_with(&["the server closed the connection", "reset by peer"]),
        connect_and_get(format!("127.0.0.1:{}", accept_close.port)),
    )
    .await;
    let garbage = fake(true).await;
    s.row(
        "Client::connect + get",
        "a TCP server that answers garbage",
        FAKE,
        connect_failed_with(&["does not speak HTTP/2"]),
        connect_and_get(format!("127.0.0.1:{}", garbage.port)),
    )
    .await;
    #[cfg(feature = "tls")]
    {
        let plain = cluster.endpoints()[0].replace("http://", "https://");
        s.row(
            "Client::connect",
            "https:// to a plain-HTTP etcd",
            FAKE,
            |e: &Error| matches!(e, Error::Tls { .. }),
            Client::connect_with([plain], fake_options()),
        )
        .await;
    }
    drop((accept_close, garbage));

    // --- KV -----------------------------------------------------------------------------
    s.row("put", "empty key", LOCAL, argument("key"), c.put("", "v"))
        .await;
    s.row("get", "empty key", LOCAL, argument("key"), c.get(""))
        .await;
    s.row("delete", "empty key", LOCAL, argument("key"), c.delete(""))
        .await;
    s.row(
        "put",
        "1.6 MiB key",
        SERVER,
        kind(EtcdErrorKind::RequestTooLarge),
        c.put(big_key.clone(), "v"),
    )
    .await;
    s.row(
        "put",
        "1.6 MiB value",
        SERVER,
        kind(EtcdErrorKind::RequestTooLarge),
        c.put("sweep/v", vec![0u8; OVER_LIMIT]),
    )
    .await;
    s.row(
        "put",
        "3 MiB value",
        SERVER,
        code(Code::ResourceExhausted),
        c.put("sweep/v", vec![0u8; OVER_GRPC]),
    )
    .await;
    s.row(
        "get",
        "3 MiB key",
        SERVER,
        code(Code::ResourceExhausted),
        c.get(huge_key.clone()),
    )
    .await;
    s.row(
        "delete",
        "3 MiB key",
        SERVER,
        code(Code::ResourceExhausted),
        c.delete(huge_key.clone()),
    )
    .await;
    s.row(
        "put_with",
        "unknown lease ID",
        SERVER,
        kind(EtcdErrorKind::LeaseNotFound),
        c.put_with("sweep/l", "v", PutOptions::new().with_lease(UNKNOWN_LEASE)),
    )
    .await;
    s.row(
        "put_with",
        "negative lease ID",
        LOCAL,
        argument("lease"),
        c.put_with("sweep/l", "v", PutOptions::new().with_lease(-1)),
    )
    .await;
    s.row(
        "put_with",
        "ignore_value on a missing key",
        SERVER,
        kind(EtcdErrorKind::KeyNotFound),
        c.put_with("sweep/missing", "", PutOptions::new().with_ignore_value()),
    )
    .await;
    for (name, options) in [
        ("limit", GetOptions::new().with_limit(-1)),
        ("revision", GetOptions::new().with_revision(-5)),
        (
            "max_create_revision",
            GetOptions::new().with_max_create_revision(i64::MIN),
        ),
    ] {
        s.row(
            "get_with",
            &format!("negative {name}"),
            LOCAL,
            argument(name),
            c.get_with("sweep/x", options),
        )
        .await;
    }

    // Revisions: future ones, and ones compacted away.
    for v in ["1", "2", "3"] {
        ok(c.put("sweep/c", v).await);
    }
    let rev = ok(c.get("sweep/c").await).revision();
    ok(c.compact(rev, true).await);
    s.row(
        "get_with",
        "revision 1 000 000 ahead",
        SERVER,
        kind(EtcdErrorKind::FutureRevision),
        c.get_with("sweep/c", GetOptions::new().with_revision(rev + 1_000_000)),
    )
    .await;
    s.row(
        "get_with",
        "compacted revision",
        SERVER,
        kind(EtcdErrorKind::Compacted),
        c.get_with("sweep/c", GetOptions::new().with_revision(rev - 1)),
    )
    .await;
    s.row(
        "compact",
        "future revision",
        SERVER,
        kind(EtcdErrorKind::FutureRevision),
        c.compact(rev + 1_000_000, false),
    )
    .await;
    s.row(
        "compact",
        "already compacted revision",
        SERVER,
        kind(EtcdErrorKind::Compacted),
        c.compact(rev - 1, false),
    )
    .await;
    s.row(
        "compact",
        "revision 0",
        LOCAL,
        argument("revision"),
        c.compact(0, false),
    )
    .await;
    s.row(
        "watch_with + next",
        "compacted start revision",
        SERVER,
        |e: &Error| matches!(e, Error::WatchCompacted { .. }),
        async {
            // etcd confirms the watch, then cancels it: the error comes with the first batch.
            let mut watcher = c
                .watch_with("sweep/c", WatchOptions::new().with_start_revision(rev - 1))
                .await?;
            match watcher.next().await {
                Some(Err(e)) => Err(e),
                other => Ok(other.is_some()),
            }
        },
    )
    .await;
    ok(c.delete("sweep/c").await);

    // --- watch --------------------------------------------------------------------------
    s.row("watch", "empty key", LOCAL, argument("key"), c.watch(""))
        .await;
    s.row(
        "watch_with",
        "negative start revision",
        LOCAL,
        argument("start_revision"),
        c.watch_with("sweep/w", WatchOptions::new().with_start_revision(-1)),
    )
    .await;

    // --- txn ----------------------------------------------------------------------------
    let ops = (0..129).map(|i| TxnOp::put(format!("sweep/t/{i}"), "v", PutOptions::new()));
    s.row(
        "txn",
        "129 puts (etcd's --max-txn-ops is 128)",
        SERVER,
        kind(EtcdErrorKind::TooManyOps),
        c.txn(Txn::new().and_then(ops)),
    )
    .await;
    let dup = [
        TxnOp::put("sweep/d", "1", PutOptions::new()),
        TxnOp::put("sweep/d", "2", PutOptions::new()),
    ];
    s.row(
        "txn",
        "two puts of one key",
        SERVER,
        kind(EtcdErrorKind::DuplicateKey),
        c.txn(Txn::new().and_then(dup)),
    )
    .await;
    s.row(
        "txn",
        "compare on an empty key",
        LOCAL,
        argument("key"),
        c.txn(Txn::new().when([Compare::value("", CompareOp::Equal, "x")])),
    )
    .await;
    s.row(
        "txn",
        "put of an empty key inside",
        LOCAL,
        argument("key"),
        c.txn(Txn::new().and_then([TxnOp::put("", "v", PutOptions::new())])),
    )
    .await;
    s.row(
        "txn",
        "1.6 MiB value inside",
        SERVER,
        kind(EtcdErrorKind::RequestTooLarge),
        c.txn(Txn::new().and_then([TxnOp::put(
            "sweep/t",
            vec![0u8; OVER_LIMIT],
            PutOptions::new(),
        )])),
    )
    .await;

    // --- leases -------------------------------------------------------------------------
    for ttl in [0, -1, i64::MIN, MAX_TTL_SECS + 1, i64::MAX] {
        s.row(
            "lease_grant",
            &format!("TTL {ttl}"),
            LOCAL,
            argument("ttl"),
            c.lease_grant(ttl),
        )
        .await;
    }
    s.row(
        "lease_grant_with_id",
        "negative ID",
        LOCAL,
        argument("lease"),
        c.lease_grant_with_id(10, -7),
    )
    .await;
    let taken = ok(c.lease_grant(60).await).id();
    s.row(
        "lease_grant_with_id",
        "an ID already granted",
        SERVER,
        kind(EtcdErrorKind::LeaseExists),
        c.lease_grant_with_id(60, taken),
    )
    .await;
    ok(c.lease_revoke(taken).await);
    s.row(
        "lease_revoke",
        "unknown lease ID",
        SERVER,
        kind(EtcdErrorKind::LeaseNotFound),
        c.lease_revoke(UNKNOWN_LEASE),
    )
    .await;
    s.row(
        "lease_revoke",
        "lease ID 0",
        LOCAL,
        argument("lease"),
        c.lease_revoke(0),
    )
    .await;
    s.row(
        "lease_keep_alive_once",
        "unknown lease ID",
        SERVER,
        Error::is_lease_not_found,
        c.lease_keep_alive_once(UNKNOWN_LEASE),
    )
    .await;
    s.row(
        "lease_time_to_live",
        "negative lease ID",
        LOCAL,
        argument("lease"),
        c.lease_time_to_live(-1, false),
    )
    .await;

    // --- sessions -----------------------------------------------------------------------
    for ttl in [0, -3, MAX_TTL_SECS + 1] {
        s.row(
            "Session::with_options",
            &format!("TTL {ttl}"),
            LOCAL,
            argument("ttl"),
            Session::with_options(c, SessionOptions::new().with_ttl(ttl)),
        )
        .await;
    }
    s.row(
        "Session::with_options",
        "adopt an unknown lease",
        SERVER,
        Error::is_lease_not_found,
        Session::with_options(c, SessionOptions::new().with_lease(UNKNOWN_LEASE)),
    )
    .await;

    // --- locks --------------------------------------------------------------------------
    let session = ok(Session::new(c).await);
    let lost = ok(Session::new(c).await);
    ok(lost.clone().close().await);
    let recipe = RecipeLock::new();
    let service = ServiceLock::new();
    type Boxed = Box<dyn Fn(&Error) -> bool>;
    let lock_cases: Vec<(&str, &[u8], Boxed, &Session)> = vec![
        ("empty name", b"", Box::new(argument("name")), &session),
        (
            "name of 32 KiB + 1",
            &long_name,
            Box::new(argument("name")),
            &session,
        ),
        (
            "name of 1.6 MiB",
            &big_key,
            Box::new(argument("name")),
            &session,
        ),
        (
            "a closed session",
            b"sweep/lock",
            Box::new(Error::is_session_lost),
            &lost,
        ),
    ];
    for (input, name, check, sess) in &lock_cases {
        s.row(
            "RecipeLock::lock",
            input,
            SERVER,
            check,
            recipe.lock(sess, name),
        )
        .await;
        s.row(
            "ServiceLock::lock",
            input,
            SERVER,
            check,
            service.lock(sess, name),
        )
        .await;
    }
    s.row(
        "RecipeLock::try_lock",
        "empty name",
        LOCAL,
        argument("name"),
        recipe.try_lock(&session, b""),
    )
    .await;
    let held = ok(recipe.lock(&session, b"sweep/twice").await);
    s.row(
        "RecipeLock::lock",
        "a name this session already holds",
        LOCAL,
        |e: &Error| matches!(e, Error::AlreadyHeld { .. }),
        recipe.lock(&session, b"sweep/twice"),
    )
    .await;
    s.row(
        "ServiceLock::lock",
        "a name this session already holds",
        LOCAL,
        |e: &Error| matches!(e, Error::AlreadyHeld { .. }),
        service.lock(&session, b"sweep/twice"),
    )
    .await;
    ok(held.unlock().await);

    // --- elections ----------------------------------------------------------------------
    let too_big_value = vec![0u8; etcd_lock::election::MAX_VALUE_LEN + 1];
    let recipe_e = RecipeElection::new();
    let service_e = ServiceElection::new();
    for (input, name, value, arg) in [
        ("empty name", &b""[..], &b"v"[..], "name"),
        ("name of 32 KiB + 1", &long_name[..], &b"v"[..], "name"),
        (
            "value of 1 MiB + 1",
            &b"sweep/e"[..],
            &too_big_value[..],
            "value",
        ),
    ] {
        s.row(
            "RecipeElection::campaign",
            input,
            LOCAL,
            argument(arg),
            recipe_e.campaign(&session, name, value),
        )
        .await;
        s.row(
            "ServiceElection::campaign",
            input,
            LOCAL,
            argument(arg),
            service_e.campaign(&session, name, value),
        )
        .await;
    }
    s.row(
        "RecipeElection::leader",
        "empty name",
        LOCAL,
        argument("name"),
        recipe_e.leader(c, b""),
    )
    .await;
    s.row(
        "ServiceElection::observe",
        "empty name",
        LOCAL,
        argument("name"),
        service_e.observe(c, b""),
    )
    .await;
    s.row(
        "RecipeElection::campaign",
        "a closed session",
        SERVER,
        |e: &Error| e.is_session_lost(),
        recipe_e.campaign(&lost, b"sweep/e", b"v"),
    )
    .await;
    ok(session.close().await);

    // --- auth ---------------------------------------------------------------------------
    s.row(
        "user_add",
        "empty user name",
        LOCAL,
        argument("user"),
        c.user_add("", "pw"),
    )
    .await;
    s.row(
        "role_add",
        "empty role name",
        LOCAL,
        argument("role"),
        c.role_add(""),
    )
    .await;
    s.row(
        "role_grant_permission",
        "unknown role",
        SERVER,
        kind(EtcdErrorKind::RoleNotFound),
        c.role_grant_permission(
            "no-such-role",
            Permission::Read,
            PermissionRange::prefix("a/"),
        ),
    )
    .await;
    s.row(
        "role_grant_permission",
        "empty key",
        LOCAL,
        argument("key"),
        c.role_grant_permission("r", Permission::Write, PermissionRange::key("")),
    )
    .await;
    s.row(
        "user_grant_role",
        "unknown user",
        SERVER,
        kind(EtcdErrorKind::UserNotFound),
        c.user_grant_role("no-such-user", "root"),
    )
    .await;
    s.row(
        "user_delete",
        "unknown user",
        SERVER,
        kind(EtcdErrorKind::UserNotFound),
        c.user_delete("no-such-user"),
    )
    .await;
    s.row(
        "auth_enable",
        "no root user",
        SERVER,
        kind(EtcdErrorKind::RootUserMissing),
        c.auth_enable(),
    )
    .await;
    if bin.version().starts_with("3.4") {
        s.row(
            "auth_status",
            "on etcd 3.4 (added in 3.5)",
            SERVER,
            |e: &Error| matches!(e, Error::Unsupported { .. }),
            c.auth_status(),
        )
        .await;
    }

    // --- afterwards: healthy, and nothing left behind -----------------------------------
    assert!(cluster.member(0).is_healthy());
    ok(c.status().await);
    let left = ok(c
        .get_with("\0", GetOptions::new().with_from_key().with_keys_only())
        .await);
    let keys: Vec<String> = left
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    assert!(keys.is_empty(), "keys left behind: {keys:?}");
    assert!(ok(c.leases().await).ids().is_empty(), "leases left behind");

    let table = s.table(bin.version());
    println!("\n{table}");
    write_table(bin.version(), &table);
}

/// Writes this version's table next to the others and joins them into
/// `target/bad-input-table.md`.
fn write_table(version: &str, table: &str) {
    static JOIN: Mutex<()> = Mutex::new(());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let parts = target.join("bad-input");
    ok(std::fs::create_dir_all(&parts));
    ok(std::fs::write(parts.join(format!("{version}.md")), table));
    let _joined = JOIN.lock().unwrap_or_else(|p| p.into_inner());
    let mut all = String::from("## Bad-input sweep (tests/bad_input.rs)\n\n");
    for v in common::VERSIONS {
        if let Ok(text) = std::fs::read_to_string(parts.join(format!("{v}.md"))) {
            all.push_str(&text);
            all.push('\n');
        }
    }
    ok(std::fs::write(target.join("bad-input-table.md"), all));
}
