//! The scheme rules, in one place: which URL a client dials for an endpoint, whether it uses
//! TLS, and when plaintext is refused.
//!
//! Every URL the client dials passes [`dial_url`]: the endpoints given to the builder, an
//! endpoint named in one call (`status_of`, `snapshot_from`, ...), the members' client URLs
//! that auto-sync installs, and the leader URL `move_leader` sends to. The rules:
//!
//! - schemes are compared without regard to case (`HTTPS://` is `https://`) and written in
//!   lower case, so the TLS decision never depends on spelling;
//! - a bare `host:port` uses TLS when the client has TLS settings (as etcdctl does);
//! - with TLS settings, an `http://` endpoint the *user* named is refused, unless
//!   [`ClientOptions::allow_plaintext_with_tls`](super::ClientOptions) says otherwise;
//! - with TLS settings, an `http://` URL the *cluster* advertised (member list) is dialled as
//!   `https://`: a member cannot talk the client down to plaintext.

use crate::error::{Error, Result};

/// Where a URL came from, which decides what an `http://` scheme means under TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Named by the user: refused under TLS unless plaintext is allowed.
    Configured,
    /// Read from the cluster (`MemberList`): upgraded to `https://` under TLS.
    Advertised,
}

/// The client's TLS stance, as far as the scheme rules are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// TLS settings were given.
    pub(crate) tls: bool,
    /// `http://` endpoints named by the user are accepted although TLS settings were given.
    pub(crate) allow_plaintext: bool,
}

/// A URL split into its scheme (`None` for a bare `host:port`) and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed<'a> {
    https: Option<bool>,
    authority: &'a str,
}

/// Accepts `host:port`, `http://host:port` and `https://host:port` (scheme in any case, one
/// trailing `/` allowed); refuses other schemes and malformed input.
fn parse(raw: &str) -> Result<Parsed<'_>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(Error::invalid("endpoints", "empty endpoint"));
    }
    let (https, rest) = match raw.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (Some(false), rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (Some(true), rest),
        Some(_) => {
            return Err(Error::invalid(
                "endpoints",
                format!("{raw}: only http:// and https:// endpoints are supported"),
            ))
        }
        None => (None, raw),
    };
    let authority = rest.trim_end_matches('/');
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || authority.contains('/') {
        return Err(Error::invalid(
            "endpoints",
            format!("{raw}: expected host:port, http://host:port or https://host:port"),
        ));
    }
    Ok(Parsed { https, authority })
}

/// The URL to dial for `raw` under `rules`, or why it is refused.
pub(crate) fn dial_url(raw: &str, origin: Origin, rules: Rules) -> Result<String> {
    let parsed = parse(raw)?;
    let https = match parsed.https {
        Some(true) => true,
        None => rules.tls,
        Some(false) if !rules.tls => false,
        Some(false) => match origin {
            Origin::Advertised => true,
            Origin::Configured if rules.allow_plaintext => false,
            Origin::Configured => {
                return Err(Error::invalid(
                    "endpoints",
                    format!(
                        "{}: a plaintext http:// endpoint while TLS is configured; use \
                         https:// (or a bare host:port, which then uses TLS), or accept \
                         plaintext explicitly with \
                         ClientOptions::with_allow_plaintext_with_tls(true)",
                        raw.trim()
                    ),
                ))
            }
        },
    };
    if https && !cfg!(feature = "tls") {
        return Err(Error::invalid(
            "endpoints",
            format!(
                "{}: https:// endpoints need etcd-lock's `tls` cargo feature, which this build \
                 does not have",
                raw.trim()
            ),
        ));
    }
    let scheme = if https { "https" } else { "http" };
    Ok(format!("{scheme}://{}", parsed.authority))
}

/// Whether a URL produced by [`dial_url`] is plaintext.
pub(crate) fn is_plaintext(url: &str) -> bool {
    url.starts_with("http://")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Rules = Rules {
        tls: false,
        allow_plaintext: false,
    };
    const TLS: Rules = Rules {
        tls: true,
        allow_plaintext: false,
    };

    fn url(raw: &str, origin: Origin, rules: Rules) -> Option<String> {
        dial_url(raw, origin, rules).ok()
    }

    #[test]
    fn endpoints_are_normalized_or_refused() {
        use Origin::Configured as C;
        assert_eq!(
            url("127.0.0.1:2379", C, PLAIN).as_deref(),
            Some("http://127.0.0.1:2379")
        );
        assert_eq!(
            url("HTTP://localhost:2379/", C, PLAIN).as_deref(),
            Some("http://localhost:2379")
        );
        if cfg!(feature = "tls") {
            assert_eq!(
                url("127.0.0.1:2379", C, TLS).as_deref(),
                Some("https://127.0.0.1:2379")
            );
            assert_eq!(
                url("HttpS://localhost:2379", C, PLAIN).as_deref(),
                Some("https://localhost:2379")
            );
        } else {
            let text = dial_url("https://localhost:2379", C, PLAIN)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(text.contains("`tls` cargo feature"), "{text}");
        }
        for bad in [
            "",
            "localhost",
            "ftp://x:1",
            "http://:2379",
            "x:99999",
            "a:1/b",
            "unix://a:1",
        ] {
            assert!(dial_url(bad, C, PLAIN).is_err(), "{bad} accepted");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn plaintext_under_tls_is_refused_or_upgraded() {
        const TLS_OPT_IN: Rules = Rules {
            tls: true,
            allow_plaintext: true,
        };
        for raw in ["http://10.0.0.1:2379", "HTTP://10.0.0.1:2379"] {
            let refused = dial_url(raw, Origin::Configured, TLS)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                refused.contains("with_allow_plaintext_with_tls"),
                "{raw}: {refused}"
            );
            assert_eq!(
                url(raw, Origin::Configured, TLS_OPT_IN).as_deref(),
                Some("http://10.0.0.1:2379")
            );
            // What the cluster advertises is upgraded, opt-in or not.
            for rules in [TLS, TLS_OPT_IN] {
                assert_eq!(
                    url(raw, Origin::Advertised, rules).as_deref(),
                    Some("https://10.0.0.1:2379"),
                    "{raw}"
                );
            }
            assert_eq!(
                url(raw, Origin::Advertised, PLAIN).as_deref(),
                Some("http://10.0.0.1:2379")
            );
        }
        assert!(is_plaintext("http://a:1") && !is_plaintext("https://a:1"));
    }
}
