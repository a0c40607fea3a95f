//! The tap with TLS on either side, against real etcd members serving mutual TLS and the real
//! `etcdctl` of each version, with certificates made at test time (rcgen): the tap terminates
//! the client's TLS with its own certificate (asking for a client certificate), opens its own
//! mutual TLS to the member, and logs which side was TLS with the peer certificate subjects.
#![cfg(all(feature = "testkit", feature = "tap"))]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ok;
use etcd_lock::tap::{tls, Tap, TapHandle};
use etcd_lock::testkit::{Cluster, EtcdBinary, TlsFiles};
use etcd_lock::wirelog::JsonLines;
use etcd_lock::{Client, ClientOptions, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;

per_version!(
    mutual_tls_on_both_sides_with_etcdctl,
    client_tls_to_a_plaintext_member_with_our_client,
);

/// A folder of PEM files, removed on drop: a CA; `etcd` (the member), `tap` (the tap's server
/// certificate), `client` (etcdctl's) and `tap-client` (the tap's certificate upstream).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: ok(tempfile::tempdir()),
        };
        let (ca_pem, ca) = new_ca();
        pki.write("ca.pem", &ca_pem);
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        for (name, hosts) in [
            ("etcd", &["localhost", "127.0.0.1"][..]),
            ("tap", &["localhost", "127.0.0.1"]),
            ("client", &[]),
            ("tap-client", &[]),
        ] {
            let (cert, key) = leaf(&ca, name, hosts, &both);
            pki.write(&format!("{name}.pem"), &cert);
            pki.write(&format!("{name}-key.pem"), &key);
        }
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        ok(std::fs::read(self.path(name)))
    }

    fn write(&self, name: &str, text: &str) {
        ok(std::fs::write(self.path(name), text));
    }
}

fn new_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = ok(CertificateParams::new(Vec::<String>::new()));
    params
        .distinguished_name
        .push(DnType::CommonName, "tap test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
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
        .push(DnType::OrganizationName, "etcd-lock tests");
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

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

async fn wait_idle(tap: &TapHandle) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tap.connections() + tap.streams() > 0 {
        assert!(Instant::now() < deadline, "the tap still has tasks");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn etcdctl(cluster: &Cluster, endpoint: &str, pki: &Pki, identity: bool) -> Command {
    let mut cmd = Command::new(cluster.binary().etcdctl_path());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", pki.path("ca.pem").display()))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=5s");
    if identity {
        cmd.arg(format!("--cert={}", pki.path("client.pem").display()))
            .arg(format!("--key={}", pki.path("client-key.pem").display()));
    }
    cmd
}

/// etcd serving mutual TLS; the tap terminating the clients' mutual TLS and opening its own
/// to the member: etcdctl put/get and lock work through it; a client without a certificate
/// is refused by the tap; the log names both TLS sides and the certificate subjects.
async fn mutual_tls_on_both_sides_with_etcdctl(bin: &EtcdBinary) {
    let pki = Pki::new();
    let files = TlsFiles::new(
        pki.path("ca.pem"),
        pki.path("etcd.pem"),
        pki.path("etcd-key.pem"),
    )
    .with_client_cert_auth();
    let cluster = match Cluster::builder(bin).tls(files).start() {
        Ok(c) => c,
        Err(e) => panic!("starting TLS etcd {}: {e}", bin.version()),
    };
    let member = cluster.member(0).endpoint();
    assert!(member.starts_with("https://"), "{member}");
    let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let log = Buffer::default();
    let server = ok(tls::server_config(
        &pki.read("tap.pem"),
        &pki.read("tap-key.pem"),
        Some(&pki.read("ca.pem")),
    ));
    let upstream = ok(tls::client_config(
        &pki.read("ca.pem"),
        Some((&pki.read("tap-client.pem"), &pki.read("tap-client-key.pem"))),
    ));
    let tap = ok(ok(Tap::new(listener, &member))
        .wire_log(Arc::new(JsonLines::new(log.clone())))
        .client_tls(server)
        .upstream_tls(upstream)
        .spawn());
    let via = format!("https://{}", tap.local_addr());

    let out = ok(etcdctl(&cluster, &via, &pki, true)
        .args(["put", "tls/k", "v"])
        .output());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ok(etcdctl(&cluster, &via, &pki, true)
        .args(["lock", "tls-lock", "--", "echo", "locked"])
        .output());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "locked");
    let out = ok(etcdctl(&cluster, &via, &pki, true)
        .args(["get", "tls/k", "--print-value-only"])
        .output());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    // No client certificate: the tap refuses the handshake.
    let out = ok(etcdctl(&cluster, &via, &pki, false)
        .args(["get", "tls/k"])
        .output());
    assert!(!out.status.success());
    wait_idle(&tap).await;

    let lines = log.lines();
    let connect = lines
        .iter()
        .find(|l| l["kind"] == "connect")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    // rcgen encodes CN before O; RFC 4514 writes the RDNs back to front.
    assert_eq!(
        connect["client_tls"]["subject"], "O=etcd-lock tests,CN=client",
        "{connect}"
    );
    assert_eq!(
        connect["upstream_tls"]["subject"], "O=etcd-lock tests,CN=etcd",
        "{connect}"
    );
    assert!(connect["upstream"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://")));
    assert!(
        lines.iter().any(|l| l["kind"] == "call"
            && l["method"] == "/etcdserverpb.KV/Put"
            && l["request"]["key"] == "tls/k"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l["kind"] == "disconnect"
            && l["cause"]
                .as_str()
                .is_some_and(|c| c.starts_with("client TLS handshake"))),
        "no refused handshake in {lines:#?}"
    );
}

/// TLS on the client side only (plaintext member), with our own client trusting the tap's
/// certificate: the log says the client side was TLS without a client certificate.
async fn client_tls_to_a_plaintext_member_with_our_client(bin: &EtcdBinary) {
    let pki = Pki::new();
    let cluster = common::single(bin);
    let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let log = Buffer::default();
    let server = ok(tls::server_config(
        &pki.read("tap.pem"),
        &pki.read("tap-key.pem"),
        None,
    ));
    let tap = ok(ok(Tap::new(listener, &cluster.endpoints()[0]))
        .wire_log(Arc::new(JsonLines::new(log.clone())))
        .client_tls(server)
        .spawn());
    {
        let client = ok(ok(Client::builder(
            [format!("https://{}", tap.local_addr())],
            ClientOptions::new().with_connect_timeout(Duration::from_secs(5)),
        ))
        .tls(TlsOptions::new().with_ca_pem_file(pki.path("ca.pem")))
        .connect()
        .await);
        ok(client.put("tls/ours", "v").await);
        let got = ok(client.get("tls/ours").await);
        assert_eq!(got.kvs()[0].value, b"v");
    }
    wait_idle(&tap).await;
    let lines = log.lines();
    let connect = lines
        .iter()
        .find(|l| l["kind"] == "connect")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(connect["client_tls"], serde_json::json!({"subject": null}));
    assert_eq!(connect["upstream_tls"], Value::Null);
    // A plaintext upstream with upstream TLS settings (or the reverse) is refused up front.
    let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let upstream = ok(tls::client_config(&pki.read("ca.pem"), None));
    let err = ok(Tap::new(listener, &cluster.endpoints()[0]))
        .upstream_tls(upstream)
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}
