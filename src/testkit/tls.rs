//! Certificate files for members that serve clients over TLS (see [`TlsFiles`]).

use std::path::{Path, PathBuf};

/// The PEM files a TLS member uses, set with [`ClusterBuilder::tls`](super::ClusterBuilder::tls).
///
/// Members then listen for clients on `https://127.0.0.1:<client_port>` with `--cert-file`,
/// `--key-file` and `--trusted-ca-file`, plus `--client-cert-auth` when asked for. Their
/// `/health` and `/metrics` move to a plain-HTTP `--listen-metrics-urls` port, so the
/// testkit's health checks need no TLS (and no client certificate).
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsFiles {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_cert_auth: bool,
    pub(crate) etcdctl_identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The CA that clients are checked against (`--trusted-ca-file`, also passed to
    /// `etcdctl` as `--cacert`), and the server's certificate and key.
    pub fn new(ca: impl AsRef<Path>, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        TlsFiles {
            ca: ca.as_ref().to_path_buf(),
            cert: cert.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
            client_cert_auth: false,
            etcdctl_identity: None,
        }
    }

    /// Requires every client to present a certificate signed by the CA (`--client-cert-auth`).
    pub fn with_client_cert_auth(mut self) -> Self {
        self.client_cert_auth = true;
        self
    }

    /// The client certificate and key [`Cluster::etcdctl`](super::Cluster::etcdctl) presents.
    pub fn with_etcdctl_identity(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.etcdctl_identity = Some((cert.as_ref().to_path_buf(), key.as_ref().to_path_buf()));
        self
    }

    /// The etcd flags for these files.
    pub(crate) fn server_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--cert-file={}", self.cert.display()),
            format!("--key-file={}", self.key.display()),
            format!("--trusted-ca-file={}", self.ca.display()),
        ];
        if self.client_cert_auth {
            args.push("--client-cert-auth".to_string());
        }
        args
    }

    /// The etcdctl flags for these files.
    pub(crate) fn etcdctl_args(&self) -> Vec<String> {
        let mut args = vec![format!("--cacert={}", self.ca.display())];
        if let Some((cert, key)) = &self.etcdctl_identity {
            args.push(format!("--cert={}", cert.display()));
            args.push(format!("--key={}", key.display()));
        }
        args
    }
}
