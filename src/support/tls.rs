//! Reading a rustls failure out of a transport error (feature `tls`). [`crate::error`] uses it
//! to turn a TLS failure into [`Error::Tls`](crate::Error::Tls), and the connect path to tell
//! a handshake failure from an unreachable endpoint; it lives below both so that neither
//! `error` nor `tls` has to import the other.

/// Texts rustls (and tokio-rustls) start their errors with: a rustls error that reaches us as
/// text only (an I/O error rebuilt from its message by a layer in between) is recognised by it.
const RUSTLS_TEXTS: [&str; 6] = [
    "tls handshake eof",
    "received fatal alert: ",
    "invalid peer certificate: ",
    "received corrupt message",
    "peer is incompatible: ",
    "peer sent no certificates",
];

/// The rustls error inside a transport failure, explained; `None` when the failure is not
/// about TLS.
pub(crate) fn failure_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        let typed = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = typed {
            return Some(explain(&tls.to_string()));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            if RUSTLS_TEXTS.iter().any(|t| text.starts_with(t)) {
                return Some(explain(&text));
            }
        }
        next = e.source();
    }
    None
}

/// rustls' text plus what to check.
fn explain(text: &str) -> String {
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let hint = if has(&["NotValidForName", "not valid for name"]) {
        "the server's certificate is not valid for the name connected to; use a host name \
         the certificate lists, or set the expected name (TlsOptions::with_domain_name)"
    } else if has(&["UnknownIssuer", "BadSignature"]) {
        "the server's certificate is not signed by a trusted CA; pass the CA that issued it \
         (TlsOptions::with_ca_pem_file, --cacert)"
    } else if has(&["xpired", "NotValidYet", "not valid yet"]) {
        "the server's certificate is expired or not yet valid (check both clocks)"
    } else if text.starts_with("received fatal alert: ")
        && has(&[
            "CertificateRequired",
            "BadCertificate",
            "UnknownCA",
            "CertificateUnknown",
        ])
    {
        "the server refused the client certificate: it requires one signed by a CA it \
         trusts (TlsOptions::with_identity_files, --cert/--key)"
    } else if text.starts_with("received corrupt message") || text == "tls handshake eof" {
        "the server does not speak TLS here (try an http:// endpoint)"
    } else {
        return text.to_string();
    };
    format!("{hint} ({text})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_rustls_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let text = failure_in(&io).unwrap_or_default();
        assert!(text.contains("trusted CA"), "{text}");
        assert!(failure_in(&std::io::Error::other("plain")).is_none());
        // Only the text survived.
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: BadCertificate",
        );
        let text = failure_in(&io).unwrap_or_default();
        assert!(text.contains("client certificate"), "{text}");
    }
}
