//! Issue 26 against real etcd: TLS settings never fall back to plaintext, a password never
//! goes in clear (items 4), and the wire log keeps snapshot data and other people out of its
//! file (item 6).
#![cfg(all(feature = "testkit", feature = "tls", feature = "wire-log"))]

mod common;
mod fake_etcd;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::testkit::{Cluster, EtcdBinary, TlsFiles};
use etcd_lock::wirelog::{ExistingFile, JsonLines};
use etcd_lock::{Client, ClientOptions, Error, TlsOptions};
use fake_etcd::FakeEtcd;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

per_version!(
    explicit_http_endpoint_is_refused_under_tls,
    password_never_goes_to_a_plaintext_endpoint,
    snapshot_data_stays_out_of_the_wire_log,
    merged_watch_fragments_are_capped,
);

/// A folder for this test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "etcd-lock-sec-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        ok(std::fs::create_dir_all(&dir));
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA (`ca.pem`), a server certificate for 127.0.0.1 and localhost signed by it, and a
/// client certificate (`client.pem`, `client-key.pem`: etcd with a trusted CA asks for one).
fn pki(dir: &Scratch) -> TlsFiles {
    let mut params = ok(CertificateParams::new(Vec::<String>::new()));
    params
        .distinguished_name
        .push(DnType::CommonName, "sec test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = ok(KeyPair::generate());
    let ca_cert = ok(params.self_signed(&ca_key));
    let issuer = Issuer::new(params, ca_key);
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let leaf = ok(CertificateParams::new(names));
    let key = ok(KeyPair::generate());
    let cert = ok(leaf.signed_by(&key, &issuer));
    let client = ok(CertificateParams::new(Vec::<String>::new()));
    let client_key = ok(KeyPair::generate());
    let client_cert = ok(client.signed_by(&client_key, &issuer));
    ok(std::fs::write(dir.path("client.pem"), client_cert.pem()));
    ok(std::fs::write(
        dir.path("client-key.pem"),
        client_key.serialize_pem(),
    ));
    ok(std::fs::write(dir.path("ca.pem"), ca_cert.pem()));
    ok(std::fs::write(dir.path("server.pem"), cert.pem()));
    ok(std::fs::write(
        dir.path("server-key.pem"),
        key.serialize_pem(),
    ));
    TlsFiles::new(
        dir.path("ca.pem"),
        dir.path("server.pem"),
        dir.path("server-key.pem"),
    )
}

fn options() -> ClientOptions {
    ClientOptions::new().with_connect_timeout(Duration::from_secs(5))
}

/// The reason of an `InvalidArgument("endpoints")` refusal; panics on anything else.
fn refused_endpoints(result: Result<Client, Error>) -> String {
    match result {
        Err(Error::InvalidArgument { argument, reason }) => {
            assert_eq!(argument, "endpoints", "{reason}");
            reason
        }
        Err(other) => panic!("expected InvalidArgument(endpoints), got {other:?} ({other})"),
        Ok(client) => panic!(
            "connected to {:?} although TLS is configured",
            client.endpoints()
        ),
    }
}

/// Fails on the old code: TLS settings plus an explicit `http://` endpoint connected, and
/// every request went in clear.
async fn explicit_http_endpoint_is_refused_under_tls(bin: &EtcdBinary) {
    let dir = Scratch::new("http");
    let _ = pki(&dir);
    let cluster = common::single(bin);
    let plain = cluster.member(0).endpoint();
    assert!(plain.starts_with("http://"), "{plain}");
    let tls = || TlsOptions::new().with_ca_pem_file(dir.path("ca.pem"));

    let result = ok(Client::builder([&plain], options()))
        .tls(tls())
        .connect()
        .await;
    let reason = refused_endpoints(result);
    assert!(reason.contains("with_allow_plaintext_with_tls"), "{reason}");
    // The same spelled in capitals.
    let upper = plain.replacen("http://", "HTTP://", 1);
    let result = ok(Client::builder([&upper], options()))
        .tls(tls())
        .connect()
        .await;
    refused_endpoints(result);

    // With the explicit opt-in it is used, in clear, as asked.
    let opted = options().with_allow_plaintext_with_tls(true);
    let client = ok(ok(Client::builder([&plain], opted))
        .tls(tls())
        .connect()
        .await);
    assert!(client.endpoints()[0].starts_with("http://"));
    ok(client.put("sec/k", "v").await);
    // A call aimed at one member follows the same rules.
    assert!(client.status_of(&plain).await.is_ok());
    drop(client);

    // But never with a user and password: every request would carry the token in clear.
    let result = ok(Client::builder(
        [&plain],
        options().with_allow_plaintext_with_tls(true),
    ))
    .tls(tls())
    .auth("root", "pw")
    .connect()
    .await;
    let reason = refused_endpoints(result);
    assert!(reason.contains("never sent in clear"), "{reason}");
}

/// Fails on the old code: in a mixed list `[http://plain, https://tls]` with TLS settings
/// and a user, `Authenticate` went to the plaintext endpoint (here a fake etcd that records
/// what it gets): the password was on the wire in clear.
async fn password_never_goes_to_a_plaintext_endpoint(bin: &EtcdBinary) {
    let dir = Scratch::new("auth");
    let files = pki(&dir);
    let cluster = match Cluster::builder(bin).tls(files).start() {
        Ok(c) => c,
        Err(e) => panic!("starting TLS etcd {}: {e}", bin.version()),
    };
    let secure = cluster.member(0).endpoint();
    let fake = FakeEtcd::start(Vec::new()).await;
    let password = "correct horse battery staple";
    for opt_in in [false, true] {
        let result = ok(Client::builder(
            [fake.endpoint.as_str(), secure.as_str()],
            options().with_allow_plaintext_with_tls(opt_in),
        ))
        .tls(TlsOptions::new().with_ca_pem_file(dir.path("ca.pem")))
        .auth("root", password)
        .connect()
        .await;
        refused_endpoints(result);
    }
    let calls = fake.calls();
    let leaked = calls.iter().any(|c| {
        c.message
            .windows(password.len())
            .any(|w| w == password.as_bytes())
    });
    assert!(
        !leaked,
        "the password reached the plaintext endpoint: {calls:?}"
    );
    assert!(calls.is_empty(), "nothing at all is sent there: {calls:?}");

    // Over TLS alone the same builder connects (auth is off in this cluster: etcd answers
    // `auth not enabled`, which the client takes as "send no token").
    let tls = TlsOptions::new()
        .with_ca_pem_file(dir.path("ca.pem"))
        .with_identity_files(dir.path("client.pem"), dir.path("client-key.pem"));
    let client = ok(Client::builder([secure.as_str()], options()))
        .tls(tls)
        .auth("root", password)
        .connect()
        .await;
    ok(ok(client).put("sec/tls", "v").await);
}

/// Reads the JSON lines of `path` until `done` holds (the log is written as events happen).
async fn log_lines(
    path: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if done(&lines) {
            return lines;
        }
        assert!(Instant::now() < deadline, "the log never got there: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails on the old code: the log file was created 0644, an existing file was truncated,
/// and every Snapshot chunk was logged with its bytes (the whole database).
async fn snapshot_data_stays_out_of_the_wire_log(bin: &EtcdBinary) {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("wirelog");
    let path = dir.path("wire.jsonl");
    let cluster = common::single(bin);
    let sink = Arc::new(ok(JsonLines::to_file(&path)));
    let mode = ok(std::fs::metadata(&path)).permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // An existing log is neither truncated nor reused unless asked.
    let again = JsonLines::to_file(&path);
    assert!(
        matches!(&again, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists),
        "{again:?}"
    );
    assert!(JsonLines::to_file_with(&path, ExistingFile::Append).is_ok());

    let client = ok(ok(Client::builder(cluster.endpoints(), options()))
        .wire_log(sink)
        .connect()
        .await);
    let marker = "do-not-log-this-value-".repeat(20);
    for i in 0..20 {
        ok(client.put(format!("sec/snap/{i}"), marker.as_bytes()).await);
    }
    let mut out = Vec::new();
    let info = ok(client.snapshot(&mut out).await);
    assert!(info.bytes > 0);
    const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";
    let lines = log_lines(&path, |lines| {
        lines
            .iter()
            .any(|l| l["kind"] == "close" && l["method"] == SNAPSHOT)
    })
    .await;
    let chunks: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["kind"] == "recv" && l["method"] == SNAPSHOT)
        .collect();
    assert!(chunks.len() >= 2, "data then digest: {chunks:?}");
    let mut data = 0u64;
    for chunk in &chunks {
        let blob = &chunk["message"]["blob"];
        let keys: Vec<&String> = blob
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["bytes", "sha256"], "{chunk}");
        let digest = blob["sha256"].as_str().unwrap_or_default();
        assert_eq!(digest.len(), 64, "{chunk}");
        data += blob["bytes"].as_u64().unwrap_or_default();
    }
    // Every byte written (database, then etcd's 32-byte digest), by size only.
    assert_eq!(data, info.bytes);
    let logged: String = chunks.iter().map(|c| c.to_string()).collect();
    assert!(
        !logged.contains("do-not-log-this-value") && !logged.contains("base64"),
        "snapshot data in the log"
    );
    assert!(
        (logged.len() as u64) < info.bytes,
        "{} bytes of log lines for a {}-byte snapshot",
        logged.len(),
        info.bytes
    );
}

/// Fails on the old code: fragments of one watch response were merged with no cap, so a
/// server could grow one response without bound, each fragment under the message limit. Here
/// etcd (max request size 100 kB, to which it adds 512 KiB of gRPC overhead) splits a 2 MB
/// catch-up batch into fragments of about 600 kB, each under the client's 1 MiB response
/// limit; the limit applies to the merged response.
async fn merged_watch_fragments_are_capped(bin: &EtcdBinary) {
    use etcd_lock::watch::WatchOptions;
    const LIMIT: usize = 1 << 20;
    let cluster = match Cluster::builder(bin)
        .arg("--max-request-bytes=100000")
        .start()
    {
        Ok(c) => c,
        Err(e) => panic!("starting etcd {}: {e}", bin.version()),
    };
    let client = common::client(&cluster).await;
    let prefix = common::unique("fragments");
    let value = vec![b'f'; 50_000];
    let first = ok(client.put(format!("{prefix}0"), value.clone()).await).revision();
    for i in 1..40 {
        ok(client.put(format!("{prefix}{i}"), value.clone()).await);
    }
    let watch = |client: Client| {
        let prefix = prefix.clone();
        async move {
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(first)
                .with_fragment();
            let mut watcher = ok(client.watch_with(prefix, options).await);
            let next = tokio::time::timeout(Duration::from_secs(30), watcher.next()).await;
            match next {
                Ok(Some(result)) => result,
                other => panic!("no watch answer: {other:?}"),
            }
        }
    };
    // Under the default limit the fragments merge into one batch of all 40 events.
    let all = ok(watch(client.clone()).await);
    assert_eq!(all.events().len(), 40);

    let small = common::client_with(
        &cluster,
        ClientOptions::new().with_max_message_bytes(usize::MAX, LIMIT),
    )
    .await;
    match watch(small).await {
        Err(Error::MessageTooLarge { bytes, limit, .. }) => {
            assert_eq!(limit, LIMIT);
            // The merged size when it crossed the limit (two fragments, about 1.2 MB); an
            // unfragmented batch would have been refused at its whole size (2 MB).
            assert!(bytes > LIMIT && bytes < 1_500_000, "{bytes}");
            println!("merged fragments refused at {bytes} bytes");
        }
        Err(other) => panic!("expected MessageTooLarge, got {other:?}"),
        Ok(batch) => panic!(
            "{} events merged past the {LIMIT}-byte limit",
            batch.events().len()
        ),
    }
}
