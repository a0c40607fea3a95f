//! TLS and mutual TLS: connects to `https://` endpoints with a CA bundle and, when given, a
//! client certificate (what `etcdctl --cacert/--cert/--key` take), then writes, reads back
//! and asks the member for its status over the encrypted channel — `KV/Put`, `KV/Range`,
//! `KV/DeleteRange`, `Maintenance/Status`. Needs the `tls` feature.
//!
//! ```text
//! ETCD_ENDPOINTS=https://127.0.0.1:2379 ETCD_CACERT=ca.pem \
//!     ETCD_CERT=client.pem ETCD_KEY=client-key.pem \
//!     cargo run --features tls --example tls
//! ```
//! `ETCD_CACERT` unset: the system trust store. `ETCD_CERT`/`ETCD_KEY` unset: no client
//! certificate. `ETCD_SERVER_NAME`: check the server certificate against this name instead of
//! the endpoint's host. `scripts/examples` starts a member with `--client-cert-auth` and
//! certificates made for the run, and runs this against it.

use etcd_lock::{Client, ClientOptions, TlsOptions};

mod common;
use common::Result;

/// Endpoints from `ETCD_ENDPOINTS` (comma-separated), else `https://127.0.0.1:2379`.
fn endpoints() -> Vec<String> {
    common::endpoints_or("https://127.0.0.1:2379")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut tls = TlsOptions::new();
    match env("ETCD_CACERT") {
        Some(ca) => {
            println!("trusting the CA in {ca}");
            tls = tls.with_ca_pem_file(ca);
        }
        None => println!("trusting the system's CAs"),
    }
    match (env("ETCD_CERT"), env("ETCD_KEY")) {
        (Some(cert), Some(key)) => {
            println!("presenting the client certificate {cert}");
            tls = tls.with_identity_files(cert, key);
        }
        (None, None) => println!("no client certificate"),
        _ => return Err("set both ETCD_CERT and ETCD_KEY, or neither".into()),
    }
    if let Some(name) = env("ETCD_SERVER_NAME") {
        tls = tls.with_domain_name(name);
    }

    // Certificates are read and checked here; a bad file or a failed handshake is a typed
    // error (InvalidArgument naming the file, or Tls with rustls' reason).
    let client = Client::builder(endpoints(), ClientOptions::new())?
        .tls(tls)
        .connect()
        .await?;
    println!("connected to {:?}", client.endpoints());

    let key = format!("examples/tls/{}", std::process::id());
    client.put(key.clone(), "sent over TLS").await?;
    let got = client.get(key.clone()).await?;
    let value = got.first().map(|kv| kv.value.clone()).unwrap_or_default();
    println!(
        "put and got back {key} = {}",
        String::from_utf8_lossy(&value)
    );
    client.delete(key).await?;
    if value != b"sent over TLS" {
        return Err("the value read back differs".into());
    }
    let status = client.status().await?;
    println!(
        "member {:x} runs etcd {}",
        status.member_id(),
        status.version()
    );
    Ok(())
}
