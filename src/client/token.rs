//! The auth token a client sends: the credentials given to the builder, the token etcd
//! returned for them, and its renewal when etcd refuses it.
//!
//! This is the part of authentication the request path needs, so it lives in the client; the
//! `Auth` service wrappers (users, roles, `AuthEnable`) are in [`crate::auth`], one floor up.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use tonic::metadata::AsciiMetadataValue;

use super::{Client, Retry};
use crate::error::{Error, EtcdErrorKind, Result};
use crate::proto::etcdserverpb as pb;
use crate::support::BoxFuture;

/// `Auth/Authenticate`: sent without a token, its request and answer carry secrets.
pub(crate) const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
/// `Auth/UserAdd`: its request carries a password.
pub(crate) const USER_ADD: &str = "/etcdserverpb.Auth/UserAdd";
/// `Auth/UserChangePassword`: its request carries a password.
pub(crate) const USER_CHANGE_PASSWORD: &str = "/etcdserverpb.Auth/UserChangePassword";

/// The metadata key etcd reads the token from.
const TOKEN: &str = "token";

/// Methods whose requests or responses carry a password or a token: the wire log gets `{}`.
pub(crate) fn is_secret(method: &str) -> bool {
    matches!(method, AUTHENTICATE | USER_ADD | USER_CHANGE_PASSWORD)
}

/// Authenticates again for a client ([`Client::renew_token`] calls it). Held as a function
/// pointer that only [`Credentials::new`] takes, so the renewal, `Auth/Authenticate` and its
/// messages are only in a program that gives credentials (`ClientBuilder::auth`); without
/// them the linker leaves them out.
type Renewal = for<'a> fn(
    &'a Client,
    Option<&'a AsciiMetadataValue>,
    Option<Instant>,
) -> BoxFuture<'a, Result<()>>;

/// User name and password; `Debug` does not print the password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
    /// How the client authenticates with them.
    renew: Renewal,
}

impl Credentials {
    pub(crate) fn new(user: String, password: String) -> Self {
        Credentials {
            user,
            password,
            renew: |client, stale, deadline| Box::pin(client.authenticate_again(stale, deadline)),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The credentials and token a client and its clones share.
#[derive(Default)]
pub(crate) struct TokenState {
    pub(crate) credentials: Option<Credentials>,
    token: RwLock<Option<AsciiMetadataValue>>,
    /// One re-authentication at a time; the others wait and use its token.
    renewing: tokio::sync::Mutex<()>,
}

impl TokenState {
    pub(crate) fn new(credentials: Option<Credentials>) -> Self {
        TokenState {
            credentials,
            ..Default::default()
        }
    }
}

impl TokenState {
    /// The current token, if any.
    pub(crate) fn current(&self) -> Option<AsciiMetadataValue> {
        self.token.read().ok().and_then(|t| t.clone())
    }
}

impl std::fmt::Debug for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let has_token = self.token.read().is_ok_and(|t| t.is_some());
        f.debug_struct("TokenState")
            .field("credentials", &self.credentials)
            .field("token", &if has_token { "<redacted>" } else { "none" })
            .finish()
    }
}

impl Client {
    /// The current token, if the client has one.
    pub(crate) fn token(&self) -> Option<AsciiMetadataValue> {
        self.inner.token.current()
    }

    /// Wraps `message` in a request carrying `token` (if any) in the `token` metadata.
    pub(crate) fn request_with_token<T>(
        &self,
        message: T,
        token: Option<&AsciiMetadataValue>,
    ) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = token {
            request.metadata_mut().insert(TOKEN, token.clone());
        }
        request
    }

    /// Whether the client was built with a user and password.
    pub(crate) fn has_credentials(&self) -> bool {
        self.inner.token.credentials.is_some()
    }

    /// Whether a failed call should be repeated with a new token: the client has credentials
    /// and etcd's answer is one a fresh token can cure.
    pub(crate) fn token_may_help(&self, error: &Error) -> bool {
        self.inner.token.credentials.is_some() && error.wants_new_token()
    }

    /// Authenticates again (`Auth/Authenticate`), unless another caller already replaced
    /// `stale` meanwhile; nothing without credentials.
    ///
    /// Bounded by `deadline` (the caller's; `None`: the client's request timeout from now),
    /// both while waiting for another caller's renewal and for `Authenticate` itself, so a
    /// server that never hands out a usable token fails the caller, never hangs it. The
    /// renewal never calls itself: `Client::unary` does not renew for `Authenticate`.
    pub(crate) async fn renew_token(
        &self,
        stale: Option<&AsciiMetadataValue>,
        deadline: Option<Instant>,
    ) -> Result<()> {
        match &self.inner.token.credentials {
            Some(credentials) => (credentials.renew)(self, stale, deadline).await,
            None => Ok(()),
        }
    }

    /// [`Client::renew_token`] for a client with credentials (through [`Renewal`]).
    async fn authenticate_again(
        &self,
        stale: Option<&AsciiMetadataValue>,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let Some(credentials) = self.inner.token.credentials.as_ref() else {
            return Ok(());
        };
        let started = Instant::now();
        let deadline = deadline.or_else(|| self.inner.options.request_timeout.map(|t| started + t));
        let timed_out = || Error::Timeout {
            method: AUTHENTICATE,
            after: deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(started)),
            last_error: None,
        };
        let lock = self.inner.token.renewing.lock();
        let _one_at_a_time = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), lock)
                .await
                .map_err(|_| timed_out())?,
            None => lock.await,
        };
        if self.token().as_ref() != stale {
            return Ok(());
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(timed_out()),
            },
            None => None,
        };
        // `unary` may call back into `renew_token` (for other methods than this one): the
        // boxed future `Renewal` returns keeps that recursion finite in size.
        let token = self
            .authenticate(&credentials.user, &credentials.password, left)
            .await?;
        if let Ok(mut slot) = self.inner.token.token.write() {
            *slot = Some(token);
        }
        crate::trace::event!(INFO, "token renewed", user = %credentials.user);
        Ok(())
    }

    /// Runs `call` with the current token; when etcd refuses the token, authenticates again and
    /// runs it once more with the new one (used to open streams).
    pub(crate) async fn with_token_retry<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Option<AsciiMetadataValue>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let token = self.token();
        match call(token.clone()).await {
            Err(e) if self.token_may_help(&e) => {
                self.renew_token(token.as_ref(), None).await?;
                call(self.token()).await
            }
            other => other,
        }
    }

    /// `Auth/Authenticate` at connect time. A cluster without auth is fine (no token is sent,
    /// as Go's client does); if auth is enabled later, the first refused request authenticates.
    pub(crate) async fn authenticate_at_connect(&self) -> Result<()> {
        match self.renew_token(None, None).await {
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::AuthNotEnabled) => Ok(()),
            other => other,
        }
    }

    /// `Auth/Authenticate`: trades a user name and password for a token (sent without one),
    /// within `timeout`.
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        timeout: Option<Duration>,
    ) -> Result<AsciiMetadataValue> {
        let req = pb::AuthenticateRequest {
            name: user.to_string(),
            password: password.to_string(),
        };
        let resp = self
            .unary_timeout(AUTHENTICATE, Retry::Idempotent, timeout, req)
            .await?;
        AsciiMetadataValue::try_from(resp.token.as_str())
            .map_err(|_| Error::Protocol("Authenticate returned a token that is not ASCII".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_and_the_wire_log() {
        let creds = Credentials::new("u".into(), "hunter2".into());
        assert!(!format!("{creds:?}").contains("hunter2"));
        let state = TokenState::new(Some(creds));
        assert!(!format!("{state:?}").contains("hunter2"));
        assert!(is_secret(AUTHENTICATE) && is_secret(USER_ADD) && is_secret(USER_CHANGE_PASSWORD));
        assert!(!is_secret("/etcdserverpb.Auth/AuthEnable"));
    }
}
