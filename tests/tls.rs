//! TLS and mutual TLS against real etcd 3.5.1 and 3.4.23, with certificates made at test time
//! (rcgen): etcd runs with `--cert-file/--key-file/--trusted-ca-file --client-cert-auth`; the
//! client connects with the right CA and client certificate, and is refused, with a typed and
//! readable error, for a wrong CA, a missing client certificate and a mismatched server name.
#![cfg(all(feature = "testkit", feature = "tls"))]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::lock::{Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::{Cluster, EtcdBinary, TlsFiles};
use etcd_lock::{Client, ClientOptions, Error, Session, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

per_version!(
    mutual_tls_connects_and_locks,
    wrong_ca_is_refused,
    missing_client_certificate_is_refused,
    mismatched_server_name_is_refused,
);

/// A folder of PEM files, removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    /// `ca.pem`; `server.pem`/`server-key.pem` for localhost and 127.0.0.1; `client.pem` /
    /// `client-key.pem`; and `other-ca.pem`, a CA that signed none of them.
    fn new() -> Pki {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "etcd-lock-pki-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        ok(std::fs::create_dir_all(&dir));
        let pki = Pki { dir };
        let (ca_pem, ca) = new_ca("etcd-lock test CA");
        let (other_pem, _) = new_ca("some other CA");
        pki.write("ca.pem", &ca_pem);
        pki.write("other-ca.pem", &other_pem);
        let server_usages = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert, key) = leaf(&ca, "etcd", &["localhost", "127.0.0.1"], &server_usages);
        pki.write("server.pem", &cert);
        pki.write("server-key.pem", &key);
        let (cert, key) = leaf(&ca, "client", &[], &[ExtendedKeyUsagePurpose::ClientAuth]);
        pki.write("client.pem", &cert);
        pki.write("client-key.pem", &key);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, text: &str) {
        ok(std::fs::write(self.path(name), text));
    }

    fn server_files(&self) -> TlsFiles {
        TlsFiles::new(
            self.path("ca.pem"),
            self.path("server.pem"),
            self.path("server-key.pem"),
        )
        .with_client_cert_auth()
        .with_etcdctl_identity(self.path("client.pem"), self.path("client-key.pem"))
    }

    /// Trusts our CA and presents the client certificate.
    fn client_tls(&self) -> TlsOptions {
        TlsOptions::new()
            .with_ca_pem_file(self.path("ca.pem"))
            .with_identity_files(self.path("client.pem"), self.path("client-key.pem"))
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = ok(CertificateParams::new(Vec::<String>::new()));
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = ok(KeyPair::generate());
    let cert = ok(params.self_signed(&key));
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    ca: &Issuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = ok(CertificateParams::new(names));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    let key = ok(KeyPair::generate());
    let cert = ok(params.signed_by(&key, ca));
    (cert.pem(), key.serialize_pem())
}

fn tls_cluster(bin: &EtcdBinary, pki: &Pki) -> Cluster {
    match Cluster::builder(bin).tls(pki.server_files()).start() {
        Ok(c) => c,
        Err(e) => panic!("starting TLS etcd {}: {e}", bin.version()),
    }
}

fn options() -> ClientOptions {
    ClientOptions::new().with_connect_timeout(Duration::from_secs(5))
}

/// Connects with `tls` and expects [`Error::Tls`] within a bounded time; returns its reason.
async fn refused(endpoints: &[String], tls: TlsOptions) -> String {
    let started = Instant::now();
    let result = Client::builder(endpoints, options())
        .map(|b| b.tls(tls))
        .map(|b| b.connect());
    let result = match result {
        Ok(connecting) => connecting.await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    match result {
        Err(Error::Tls { reason }) => {
            let text = Error::Tls {
                reason: reason.clone(),
            }
            .to_string();
            println!("refused in {elapsed:?}: {text}");
            reason
        }
        Err(other) => panic!("expected Error::Tls, got {other:?} ({other})"),
        Ok(_) => panic!("connected although TLS should have failed"),
    }
}

async fn mutual_tls_connects_and_locks(bin: &EtcdBinary) {
    let pki = Pki::new();
    let cluster = tls_cluster(bin, &pki);
    let endpoint = cluster.member(0).endpoint();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");

    let client = ok(Client::builder([&endpoint], options()))
        .tls(pki.client_tls())
        .connect()
        .await;
    let client = ok(client);
    ok(client.put("tls/k", "v").await);
    let got = ok(client.get("tls/k").await);
    assert_eq!(got.first().map(|kv| kv.value.clone()), Some(b"v".to_vec()));

    // Watch and keep-alive streams and both lock flavours over TLS.
    let mut watcher = ok(client.watch("tls/k").await);
    ok(client.put("tls/k", "w").await);
    let batch = ok(tokio::time::timeout(Duration::from_secs(5), watcher.next())
        .await
        .map_err(|_| "no watch event within 5 s"));
    assert!(batch.is_some_and(|b| b.is_ok()));
    let session = ok(Session::new(&client).await);
    let guard = ok(RecipeLock::new().lock(&session, b"tls/lock").await);
    ok(guard.unlock().await);
    let guard = ok(ServiceLock::new().lock(&session, b"tls/lock").await);
    ok(guard.unlock().await);
    ok(session.close().await);

    // A bare host:port uses TLS once TLS options are given (as etcdctl does), and the server
    // name can be overridden: the certificate lists `localhost`.
    let bare = endpoint.trim_start_matches("https://").to_string();
    let client = ok(Client::builder([&bare], options()))
        .tls(pki.client_tls().with_domain_name("localhost"))
        .connect()
        .await;
    let client = ok(client);
    assert!(client.endpoints()[0].starts_with("https://"));
    ok(client.delete("tls/k").await);

    // etcdctl gets the same files from the testkit.
    let out = ok(cluster.etcdctl().args(["get", "tls/k"]).output());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wrong_ca_is_refused(bin: &EtcdBinary) {
    let pki = Pki::new();
    let cluster = tls_cluster(bin, &pki);
    let tls = TlsOptions::new()
        .with_ca_pem_file(pki.path("other-ca.pem"))
        .with_identity_files(pki.path("client.pem"), pki.path("client-key.pem"));
    let reason = refused(&cluster.endpoints(), tls).await;
    assert!(reason.contains("not signed by a trusted CA"), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
}

async fn missing_client_certificate_is_refused(bin: &EtcdBinary) {
    let pki = Pki::new();
    let cluster = tls_cluster(bin, &pki);
    let tls = TlsOptions::new().with_ca_pem_file(pki.path("ca.pem"));
    let reason = refused(&cluster.endpoints(), tls).await;
    // Usually etcd's alert arrives ("received fatal alert: BadCertificate"); when etcd resets
    // the connection first, the client can only tell that it was closed after the handshake.
    assert!(reason.contains("client certificate"), "{reason}");
}

async fn mismatched_server_name_is_refused(bin: &EtcdBinary) {
    let pki = Pki::new();
    let cluster = tls_cluster(bin, &pki);
    let tls = pki.client_tls().with_domain_name("not-etcd.example");
    let reason = refused(&cluster.endpoints(), tls).await;
    assert!(reason.contains("not valid for the name"), "{reason}");
    assert!(reason.contains("not-etcd.example"), "{reason}");
}

/// Missing files, bad PEM and a key of another certificate fail before any connection, naming
/// the argument. (No server needed: the files are checked first.)
#[tokio::test]
async fn bad_files_name_the_argument() {
    let pki = Pki::new();
    pki.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n");
    pki.write("empty.pem", "");
    let endpoint = ["https://127.0.0.1:1"];
    let cases: Vec<(&str, TlsOptions, &str)> = vec![
        (
            "missing CA file",
            TlsOptions::new().with_ca_pem_file(pki.path("nope.pem")),
            "ca",
        ),
        (
            "CA file with broken PEM",
            TlsOptions::new().with_ca_pem_file(pki.path("garbage.pem")),
            "ca",
        ),
        (
            "empty CA file",
            TlsOptions::new().with_ca_pem_file(pki.path("empty.pem")),
            "ca",
        ),
        (
            "missing certificate file",
            TlsOptions::new().with_identity_files(pki.path("nope.pem"), pki.path("client-key.pem")),
            "cert",
        ),
        (
            "missing key file",
            TlsOptions::new().with_identity_files(pki.path("client.pem"), pki.path("nope.pem")),
            "key",
        ),
        (
            "key file without a key",
            TlsOptions::new().with_identity_files(pki.path("client.pem"), pki.path("ca.pem")),
            "key",
        ),
        (
            "key of another certificate",
            TlsOptions::new()
                .with_identity_files(pki.path("client.pem"), pki.path("server-key.pem")),
            "key",
        ),
    ];
    for (what, tls, argument) in cases {
        let started = Instant::now();
        let result = ok(Client::builder(endpoint, options()))
            .tls(tls)
            .connect()
            .await;
        match result {
            Err(Error::InvalidArgument {
                argument: got,
                reason,
            }) => {
                assert_eq!(got, argument, "{what}: {reason}");
                println!("{what}: invalid argument `{got}`: {reason}");
            }
            other => panic!("{what}: expected InvalidArgument({argument}), got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "{what}");
    }
}

/// The CLI takes etcdctl's flags: `--cacert`, `--cert`, `--key`.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_takes_etcdctl_tls_flags() {
    let bin = common::binary("3.5.1");
    let pki = Pki::new();
    let cluster = tls_cluster(&bin, &pki);
    let run = |extra: &[&Path]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-lock"));
        cmd.arg("--endpoints")
            .arg(cluster.endpoints().join(","))
            .arg("--cacert")
            .arg(pki.path("ca.pem"));
        if let [cert, key] = extra {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        cmd.args(["--timeout", "20", "tls/cli", "--", "true"])
            .stdin(std::process::Stdio::null());
        ok(cmd.output())
    };
    let (cert, key) = (pki.path("client.pem"), pki.path("client-key.pem"));
    let out = run(&[cert.as_path(), key.as_path()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("client certificate"), "{stderr}");
}
