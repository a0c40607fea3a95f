//! TLS on either side of the tap: it terminates the client's TLS with its own certificate
//! (asking for a client certificate when given a CA for them) and opens its own TLS to the
//! member (with a client certificate for mutual TLS when given one). rustls with ring, as the
//! client's `tls` feature uses; ALPN `h2` on both sides, as gRPC requires.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use super::conn::Io;
use super::Config;
use crate::wire::TlsPeer;

fn invalid(what: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {error}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM text; at least one.
fn certificates(pem: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, e))?;
    if certs.is_empty() {
        return Err(invalid(what, "no PEM certificate found"));
    }
    Ok(certs)
}

fn roots(ca_pem: &[u8], what: &str) -> io::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_pem, what)? {
        roots.add(cert).map_err(|e| invalid(what, e))?;
    }
    Ok(roots)
}

/// The client-side TLS configuration: the tap's certificate chain and key (PEM), and, for
/// mutual TLS, the CA (PEM) that client certificates must chain to (clients without one are
/// then refused).
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let chain = certificates(cert_pem, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("key", e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", e))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "client CA")?),
                provider(),
            )
            .build()
            .map_err(|e| invalid("client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid("key", e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The upstream TLS configuration: the CA (PEM) the member's certificate must chain to and,
/// for mutual TLS, the tap's client certificate chain and key (PEM).
pub fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> io::Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", e))?
        .with_root_certificates(roots(ca_pem, "upstream CA")?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certificates(cert, "upstream certificate")?,
                PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid("upstream key", e))?,
            )
            .map_err(|e| invalid("upstream key", e))?,
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The client's side of a new connection: plaintext, or the TLS handshake with the client
/// certificate's subject.
pub(super) async fn accept(
    config: &Config,
    socket: TcpStream,
) -> io::Result<(Box<dyn Io>, Option<TlsPeer>)> {
    let Some(server) = &config.client_tls else {
        return Ok((Box::new(socket), None));
    };
    let tls = tokio_rustls::TlsAcceptor::from(Arc::clone(server))
        .accept(socket)
        .await?;
    let subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| subject(cert));
    Ok((Box::new(tls), Some(TlsPeer::new(subject))))
}

/// The connection to the member: plaintext, or TLS with the server certificate's subject.
pub(super) async fn connect(config: &Config) -> io::Result<(Box<dyn Io>, Option<TlsPeer>)> {
    let upstream = &config.upstream;
    let tcp = TcpStream::connect((upstream.host.as_str(), upstream.port)).await?;
    let _ = tcp.set_nodelay(true);
    let Some(client) = &config.upstream_tls else {
        return Ok((Box::new(tcp), None));
    };
    let name = ServerName::try_from(upstream.host.clone())
        .map_err(|e| invalid("upstream host name", e))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(client))
        .connect(name, tcp)
        .await?;
    let subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| subject(cert));
    Ok((Box::new(tls), Some(TlsPeer::new(subject))))
}

/// A certificate's subject as `CN=..,O=..` (RFC 4514 order: last RDN first), read from its DER
/// by hand (the subject is all the log needs of it); `"<unparsed>"` if the DER is not a
/// certificate.
pub(super) fn subject(cert: &[u8]) -> String {
    subject_of(cert).unwrap_or_else(|| "<unparsed>".to_string())
}

/// One DER element: its tag and contents, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in der.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let body = der.get(header..header + len)?;
    Some((tag, body, &der[header + len..]))
}

fn subject_of(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, mut tbs, _) = element(certificate)?;
    // [0] version, optional.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (_, mut rdns, _) = element(tbs)?;
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (_, set, rest) = element(rdns)?;
        rdns = rest;
        let mut set = set;
        while !set.is_empty() {
            let (_, pair, rest) = element(set)?;
            set = rest;
            let (_, oid, value) = element(pair)?;
            let (_, value, _) = element(value)?;
            parts.push(format!(
                "{}={}",
                attribute_name(oid),
                String::from_utf8_lossy(value)
            ));
        }
    }
    parts.reverse();
    Some(parts.join(","))
}

/// The short name of an X.520 attribute, or its dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        _ => {
            let mut arcs = Vec::new();
            if let Some(first) = oid.first() {
                arcs.push(u64::from(first / 40));
                arcs.push(u64::from(first % 40));
            }
            let mut value = 0u64;
            for b in oid.iter().skip(1) {
                value = (value << 7) | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    arcs.push(value);
                    value = 0;
                }
            }
            arcs.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(".")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// A certificate made by `openssl req -x509 -subj "/C=DE/O=Example Org/CN=etcd-0"`;
    /// `openssl x509 -noout -subject -nameopt RFC2253` prints `CN=etcd-0,O=Example Org,C=DE`.
    const CERT: &str = "MIIBvTCCAWOgAwIBAgIUKK3KpnatoAX6h65M9wB7pDqG6WwwCgYIKoZIzj0EAwIwNDELMAkGA1UEBhMCREUxFDASBgNVBAoMC0V4YW1wbGUgT3JnMQ8wDQYDVQQDDAZldGNkLTAwHhcNMjYxMjA1MTMxNDE1WhcNMzYxMjAyMTMxNDE1WjA0MQswCQYDVQQGEwJERTEUMBIGA1UECgwLRXhhbXBsZSBPcmcxDzANBgNVBAMMBmV0Y2QtMDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPCm3KPwUz7AIY1Cl6m5tiA8RORlckk+QPIksYeQXgX3P0//6tyIs9hsbt/6dU4yWQJnr6YXNOZIfAslqzNv2SyjUzBRMB0GA1UdDgQWBBQ5MPF/q7uzfvFZ2GcuZKSH+petizAfBgNVHSMEGDAWgBQ5MPF/q7uzfvFZ2GcuZKSH+petizAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIB5s4S9z3vvwNT4jx1O+zXAtOpqorV0qhTBCxcrDqrssAiEA1RoBbUZdxCaOlujqnCKl5R0LrhdABx5TsXyoV4WCSTI=";

    #[test]
    fn subjects_read_as_openssl_prints_them() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(CERT)
            .unwrap();
        assert_eq!(subject(&der), "CN=etcd-0,O=Example Org,C=DE");
        assert_eq!(subject(&der[..40]), "<unparsed>");
        assert_eq!(subject(b"not DER"), "<unparsed>");
        assert_eq!(
            attribute_name(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
