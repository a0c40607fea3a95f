//! The `tracing` feature against real etcd servers: a small recording subscriber (written
//! here, no `tracing-subscriber`) sees the `rpc` spans and the `retry`/`failover` events when
//! the member in use is killed, the `token renewed` event when etcd drops an expired token,
//! and `lock acquired`/`lock released` on a handoff between two sessions, for both lock
//! flavours. No recorded field may hold a password, a token or a value.
//!
//! Each test installs its recorder as the thread's default subscriber: the test body runs on
//! its own thread (the runtime's `block_on`), so every client call it awaits is recorded there,
//! and nothing from the tests running beside it.
#![cfg(all(feature = "tracing", feature = "testkit"))]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ok;
use etcd_lock::lock::Locker;
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::{Client, ClientOptions};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

per_version!(failover_is_traced, token_renewal_is_traced);
lock_flavours!(lock_handoff_is_traced);

// ---------------------------------------------------------------------------------------------
// the recorder

/// One span or event as recorded: its name and its fields, rendered as text.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Entry {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Spans by ID (fields recorded later are merged in), in creation order.
    spans: Vec<Entry>,
    events: Vec<Entry>,
}

/// A subscriber that keeps every span and event of this crate (targets `etcd_lock::*`).
#[derive(Debug, Clone, Default)]
struct Recorder {
    log: Arc<Mutex<Log>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spans(&self, name: &str) -> Vec<Entry> {
        self.log()
            .spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    fn events(&self, name: &str) -> Vec<Entry> {
        self.log()
            .events
            .iter()
            .filter(|e| e.name == name)
            .cloned()
            .collect()
    }

    /// Panics if any recorded field holds one of `secrets`, or something shaped like an etcd
    /// simple token (`<16 letters>.<index>`, etcd's `fmt.Sprintf("%s.%d", prefix, index)`).
    fn assert_no_secrets(&self, secrets: &[&str]) {
        let log = self.log();
        for entry in log.spans.iter().chain(&log.events) {
            for (name, value) in &entry.fields {
                for secret in secrets {
                    assert!(
                        !value.contains(secret),
                        "{} field {name} holds {secret:?}: {value:?}",
                        entry.name
                    );
                }
                assert!(
                    !looks_like_token(value),
                    "{} field {name} looks like a token: {value:?}",
                    entry.name
                );
            }
        }
    }
}

fn looks_like_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|start| {
        let letters = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let rest = &bytes[start + letters..];
        letters >= 16 && rest.len() > 1 && rest[0] == b'.' && rest[1].is_ascii_digit()
    })
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("etcd_lock")
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut log = self.log();
        log.spans.push(Entry {
            name: span.metadata().name().to_string(),
            fields,
        });

        // IDs are positions in `spans`, plus one (0 is not a valid ID).
        Id::from_u64(log.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut log = self.log();
        if let Some(entry) = log.spans.get_mut(span.into_u64() as usize - 1) {
            values.record(&mut Fields(&mut entry.fields));
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.log().events.push(Entry {
            name: event.metadata().name().to_string(),
            fields,
        });
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// `http://127.0.0.1:2379` and `127.0.0.1:2379` alike.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
}

const RANGE: &str = "/etcdserverpb.KV/Range";

// ---------------------------------------------------------------------------------------------
// failover

/// Kill the member the client reads from: the next read is retried on another member, and the
/// recorder sees why and where.
async fn failover_is_traced(bin: &EtcdBinary) {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let mut cluster = common::three(bin);
    let endpoints = cluster.endpoints();
    let client = common::connect_quick(&endpoints).await;
    let p = common::unique("trace_failover");
    let value = format!("value-not-to-trace-{p}");
    ok(client.put(format!("{p}k"), value.as_str()).await);
    ok(client.get(format!("{p}k")).await);

    let first = recorder
        .spans("rpc")
        .pop()
        .expect("an rpc span for the first read");
    assert_eq!(first.field("method"), RANGE);
    assert_eq!(first.field("attempt"), "1");
    assert_eq!(first.field("outcome"), "ok");
    let used = first.field("endpoint").to_string();
    let index = endpoints
        .iter()
        .position(|e| authority(e) == authority(&used))
        .unwrap_or_else(|| panic!("span endpoint {used:?} is none of {endpoints:?}"));
    ok(cluster.member_mut(index).kill());

    let read = ok(client.get(format!("{p}k")).await);
    assert_eq!(
        read.first().map(|kv| kv.value.clone()),
        Some(value.clone().into_bytes())
    );

    let second = recorder
        .spans("rpc")
        .pop()
        .expect("an rpc span for the second read");
    assert_eq!(second.field("method"), RANGE);
    assert_eq!(second.field("outcome"), "ok", "{second:?}");
    assert_ne!(
        authority(second.field("endpoint")),
        authority(&used),
        "{second:?}"
    );
    let attempts: u32 = second.field("attempt").parse().unwrap_or(0);
    assert!(attempts >= 2, "{second:?}");

    let retries = recorder.events("retry");
    let retry = retries
        .iter()
        .find(|r| authority(r.field("endpoint")) == authority(&used))
        .unwrap_or_else(|| panic!("no retry away from {used}: {retries:?}"));
    assert_eq!(retry.field("method"), RANGE);
    assert!(!retry.field("reason").is_empty(), "{retry:?}");

    let failovers = recorder.events("failover");
    let failover = failovers
        .iter()
        .find(|f| authority(f.field("from")) == authority(&used))
        .unwrap_or_else(|| panic!("no failover from {used}: {failovers:?}"));
    assert_ne!(authority(failover.field("to")), authority(&used));
    assert!(
        endpoints
            .iter()
            .any(|e| authority(e) == authority(failover.field("to"))),
        "{failover:?}"
    );
    recorder.assert_no_secrets(&[&value]);
}

// ---------------------------------------------------------------------------------------------
// token renewal

const ROOT_PW: &str = "root-password-not-to-trace";
/// Longer than `--auth-token-ttl=2` plus etcd's 1 s expiry tick, with margin (as tests/auth.rs).
const TOKEN_EXPIRY: Duration = Duration::from_millis(4500);

/// etcd forgets the token after `--auth-token-ttl`: the next read is refused, the client
/// authenticates again and repeats it, and the recorder sees the renewal, never the secrets.
async fn token_renewal_is_traced(bin: &EtcdBinary) {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let cluster = match Cluster::builder(bin).arg("--auth-token-ttl=2").start() {
        Ok(c) => c,
        Err(e) => panic!("starting etcd {}: {e}", bin.version()),
    };
    let admin = common::client(&cluster).await;
    ok(admin.user_add("root", ROOT_PW).await);
    ok(admin.role_add("root").await);
    ok(admin.user_grant_role("root", "root").await);
    ok(admin.auth_enable().await);

    let client = ok(
        ok(Client::builder(cluster.endpoints(), ClientOptions::new()))
            .auth("root", ROOT_PW)
            .connect()
            .await,
    );
    assert_eq!(recorder.events("token renewed").len(), 1, "the connect");
    let p = common::unique("trace_token");
    let value = format!("value-not-to-trace-{p}");
    ok(client.put(format!("{p}k"), value.as_str()).await);

    tokio::time::sleep(TOKEN_EXPIRY).await;
    let spans_before = recorder.spans("rpc").len();
    let read = ok(client.get(format!("{p}k")).await);
    assert_eq!(
        read.first().map(|kv| kv.value.clone()),
        Some(value.clone().into_bytes())
    );

    let renewed = recorder.events("token renewed");
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    assert!(
        renewed.iter().all(|e| e.field("user") == "root"),
        "{renewed:?}"
    );
    let spans = recorder.spans("rpc");
    let after: Vec<&Entry> = spans[spans_before..].iter().collect();
    // The read (repeated once with the new token) and the Authenticate inside it.
    let read_span = after
        .iter()
        .find(|s| s.field("method") == RANGE)
        .unwrap_or_else(|| panic!("no Range span: {after:?}"));
    assert_eq!(read_span.field("attempt"), "2", "{read_span:?}");
    assert_eq!(read_span.field("outcome"), "ok", "{read_span:?}");
    let auth_span = after
        .iter()
        .find(|s| s.field("method") == "/etcdserverpb.Auth/Authenticate")
        .unwrap_or_else(|| panic!("no Authenticate span: {after:?}"));
    assert_eq!(auth_span.field("outcome"), "ok", "{auth_span:?}");
    recorder.assert_no_secrets(&[ROOT_PW, &value]);
    drop(admin);
}

// ---------------------------------------------------------------------------------------------
// lock handoff

/// Session A holds the lock and writes through it; session B waits; A unlocks and B takes over
/// with a larger fencing token. Both handoffs are recorded with name, key and token.
async fn lock_handoff_is_traced<L: Locker>(bin: &EtcdBinary, locker: L) {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let cluster = common::single(bin);
    let client = common::client(&cluster).await;
    let name = common::unique("trace_lock");
    let a = common::session(&client, 10).await;
    let b = common::session(&client, 10).await;

    let held = ok(locker.lock(&a, name.as_bytes()).await);
    let value = format!("value-not-to-trace-{name}");
    ok(held.put(format!("{name}data"), value.as_str()).await);
    let (key_a, token_a) = (held.key_str(), held.fencing_token());
    let handoff = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.unlock().await
    };
    let (next, released) = tokio::join!(locker.lock(&b, name.as_bytes()), handoff);
    ok(released);
    let next = ok(next);
    let (key_b, token_b) = (next.key_str(), next.fencing_token());
    assert!(token_b > token_a, "{token_b} after {token_a}");
    ok(next.unlock().await);

    let log: Vec<(String, String, String, String)> = {
        let log = recorder.log();
        log.events
            .iter()
            .filter(|e| e.name.starts_with("lock ") && e.field("lock") == name)
            .map(|e| {
                (
                    e.name.clone(),
                    e.field("key").to_string(),
                    e.field("fencing_token").to_string(),
                    e.field("outcome").to_string(),
                )
            })
            .collect()
    };
    let entry = |what: &str, key: &str, token: i64, outcome: &str| {
        (
            what.to_string(),
            key.to_string(),
            token.to_string(),
            outcome.to_string(),
        )
    };
    let acquired_a = entry("lock acquired", &key_a, token_a, "");
    let released_a = entry("lock released", &key_a, token_a, "ok");
    let acquired_b = entry("lock acquired", &key_b, token_b, "");
    let released_b = entry("lock released", &key_b, token_b, "ok");
    let at = |e: &(String, String, String, String)| {
        log.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e:?} not in {log:?}"))
    };
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(at(&acquired_a) < at(&released_a), "{log:?}");
    assert!(at(&acquired_a) < at(&acquired_b), "{log:?}");
    assert!(at(&acquired_b) < at(&released_b), "{log:?}");
    // The guarded write and the unlocks went through `rpc` spans too.
    assert!(
        recorder
            .spans("rpc")
            .iter()
            .any(|s| s.field("method") == "/etcdserverpb.KV/Txn" && s.field("outcome") == "ok"),
        "no Txn span"
    );
    recorder.assert_no_secrets(&[&value]);
}
