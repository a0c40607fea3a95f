//! TLS for `https://` endpoints (feature `tls`): a CA bundle, a client certificate for mutual
//! TLS, and a server-name override. rustls with the ring provider (tokio-rustls); no OpenSSL.
//!
//! Files are read and checked when the client connects, so a missing file, a file that holds no
//! PEM certificate, or a key that does not belong to the certificate fails at once with
//! [`Error::InvalidArgument`] naming `ca`, `cert` or `key`. Handshake failures (an untrusted
//! server certificate, a name mismatch, a server that refuses the client certificate) fail
//! [`Client::connect`](crate::Client::connect) with [`Error::Tls`], whose reason is rustls' own
//! text plus what to check.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_lock::Error> {
//! use etcd_lock::{tls::TlsOptions, Client, ClientOptions};
//! let client = Client::builder(["https://etcd.internal:2379"], ClientOptions::new())?
//!     .tls(
//!         TlsOptions::new()
//!             .with_ca_pem_file("ca.pem")
//!             .with_identity_files("client.pem", "client-key.pem")
//!             .with_domain_name("etcd.internal"),
//!     )
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{Error, Result};

/// Where PEM data comes from.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(path) => write!(f, "{}", path.display()),
            Pem::Inline(bytes) => write!(f, "<{} bytes of PEM>", bytes.len()),
        }
    }
}

impl Pem {
    fn describe(&self) -> String {
        format!("{self:?}")
    }

    fn read(&self, argument: &'static str) -> Result<Vec<u8>> {
        match self {
            Pem::Inline(bytes) => Ok(bytes.clone()),
            Pem::File(path) => std::fs::read(path)
                .map_err(|e| Error::invalid(argument, format!("{}: {e}", path.display()))),
        }
    }
}

/// TLS settings of a client: whom to trust, who we are, which name to expect.
///
/// Without a CA the system's trust store is used (as `etcdctl` does without `--cacert`).
/// The key is never printed by `Debug`.
#[derive(Clone, Default)]
#[must_use]
#[non_exhaustive]
pub struct TlsOptions {
    ca: Vec<Pem>,
    identity: Option<(Pem, Pem)>,
    domain_name: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca)
            .field("cert", &self.identity.as_ref().map(|(cert, _)| cert))
            .field("key", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

impl TlsOptions {
    /// No CA (system trust store), no client certificate, the endpoint's host as server name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificates in this PEM file (a bundle may hold several), instead of the
    /// system trust store. May be given more than once.
    pub fn with_ca_pem_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca.push(Pem::File(path.as_ref().to_path_buf()));
        self
    }

    /// Trusts the CA certificates in this PEM text.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca.push(Pem::Inline(pem.into()));
        self
    }

    /// Presents this certificate (chain) and private key, both PEM files, to servers that ask
    /// for one (etcd's `--client-cert-auth`).
    pub fn with_identity_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.identity = Some((
            Pem::File(cert.as_ref().to_path_buf()),
            Pem::File(key.as_ref().to_path_buf()),
        ));
        self
    }

    /// Presents this certificate (chain) and private key, both PEM text.
    pub fn with_identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((Pem::Inline(cert.into()), Pem::Inline(key.into())));
        self
    }

    /// Checks the server certificate against this name instead of the endpoint's host (for
    /// endpoints given as IP addresses, or behind a proxy).
    pub fn with_domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// The server name override, if any.
    pub fn domain_name(&self) -> Option<&str> {
        self.domain_name.as_deref()
    }

    /// Reads and checks every file, then builds rustls' client configuration (ALPN `h2`).
    pub(crate) fn client_config(&self) -> Result<ClientTls> {
        let mut roots = rustls::RootCertStore::empty();
        if self.ca.is_empty() {
            add_system_roots(&mut roots);
        }
        for source in &self.ca {
            let pem = source.read("ca")?;
            for cert in certificates(&pem, "ca", source)? {
                roots.add(cert).map_err(|e| {
                    Error::invalid(
                        "ca",
                        format!("{}: not a usable CA certificate: {e}", source.describe()),
                    )
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls {
                reason: e.to_string(),
            })?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert_source, key_source)) => {
                let cert_pem = cert_source.read("cert")?;
                let key_pem = key_source.read("key")?;
                let chain = certificates(&cert_pem, "cert", cert_source)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    Error::invalid(
                        "key",
                        format!(
                            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found: {e}",
                            key_source.describe()
                        ),
                    )
                })?;
                let mismatch = |e: rustls::Error| {
                    Error::invalid(
                        "key",
                        format!(
                            "{} cannot be used with certificate {}: {e}",
                            key_source.describe(),
                            cert_source.describe()
                        ),
                    )
                };
                rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider)
                    .map_err(mismatch)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(mismatch)?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let domain_name = match &self.domain_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
                Error::invalid("domain_name", format!("{name:?} is not a DNS name: {e}"))
            })?),
            None => None,
        };
        Ok(ClientTls {
            config: Arc::new(config),
            domain_name,
        })
    }
}

/// What a TLS connection needs: rustls' client configuration and the server name to expect.
#[derive(Debug, Clone)]
pub(crate) struct ClientTls {
    /// Trust anchors, client certificate, ALPN `h2`.
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The server name override; `None`: the endpoint's host.
    domain_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// The name the server's certificate must be valid for: the override, else `host` (a DNS
    /// name or an IP address).
    pub(crate) fn server_name(&self, host: &str) -> std::io::Result<ServerName<'static>> {
        if let Some(name) = &self.domain_name {
            return Ok(name.clone());
        }
        ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a valid server name: {e}"),
            )
        })
    }
}

/// Adds the system's trust store (as etcdctl uses without `--cacert`); certificates it cannot
/// parse are skipped.
fn add_system_roots(roots: &mut rustls::RootCertStore) {
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
}

/// Every certificate in `pem`; at least one.
fn certificates(
    pem: &[u8],
    argument: &'static str,
    source: &Pem,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::invalid(
                argument,
                format!("{}: bad PEM certificate: {e}", source.describe()),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::invalid(
            argument,
            format!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) found",
                source.describe()
            ),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_bad_files_name_the_argument() {
        let missing = TlsOptions::new().with_ca_pem_file("/nonexistent/ca.pem");
        assert!(matches!(
            missing.client_config(),
            Err(Error::InvalidArgument { argument: "ca", .. })
        ));
        let garbage = TlsOptions::new().with_ca_pem("not a certificate");
        assert!(matches!(
            garbage.client_config(),
            Err(Error::InvalidArgument { argument: "ca", .. })
        ));
        let key = TlsOptions::new().with_identity_pem("", "");
        assert!(matches!(
            key.client_config(),
            Err(Error::InvalidArgument {
                argument: "cert",
                ..
            })
        ));
        let debug = format!("{:?}", TlsOptions::new().with_identity_pem("c", "secret"));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
