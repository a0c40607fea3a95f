//! `Auth` service: users, roles, permissions, turning authentication on and off, and the token
//! every request carries once it is on.
//!
//! A client built with [`ClientBuilder::auth`](crate::client::ClientBuilder::auth) sends
//! `Auth/Authenticate` while connecting and then puts the token etcd returned into the `token`
//! metadata of every call: unary requests, the watch and keep-alive streams, and the Lock and
//! Election services. When etcd answers `invalid auth token` (a simple token expires after
//! `--auth-token-ttl` seconds unused, default 300), the client authenticates again and repeats
//! the request once; streams are re-opened with the new token. The caller sees no error.
//!
//! ```no_run
//! # async fn demo(root: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
//! use etcd_lock::auth::{Permission, PermissionRange};
//! // As root, before `auth_enable`: a user that may read and write everything under `app/`.
//! root.role_add("app-rw").await?;
//! root.role_grant_permission("app-rw", Permission::ReadWrite, PermissionRange::prefix("app/"))
//!     .await?;
//! root.user_add("app", "secret").await?;
//! root.user_grant_role("app", "app-rw").await?;
//! # Ok(()) }
//! ```

use std::sync::RwLock;

use tonic::metadata::AsciiMetadataValue;

use crate::client::{Client, Retry};
use crate::error::{Error, EtcdErrorKind, Result};
use crate::kv::{header_of, prefix_end, response_wrapper};
use crate::proto::authpb;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::auth_client::AuthClient;

pub(crate) const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
pub(crate) const AUTH_ENABLE: &str = "/etcdserverpb.Auth/AuthEnable";
pub(crate) const AUTH_DISABLE: &str = "/etcdserverpb.Auth/AuthDisable";
pub(crate) const AUTH_STATUS: &str = "/etcdserverpb.Auth/AuthStatus";
pub(crate) const USER_ADD: &str = "/etcdserverpb.Auth/UserAdd";
pub(crate) const USER_DELETE: &str = "/etcdserverpb.Auth/UserDelete";
pub(crate) const USER_CHANGE_PASSWORD: &str = "/etcdserverpb.Auth/UserChangePassword";
pub(crate) const USER_GRANT_ROLE: &str = "/etcdserverpb.Auth/UserGrantRole";
pub(crate) const USER_REVOKE_ROLE: &str = "/etcdserverpb.Auth/UserRevokeRole";
pub(crate) const ROLE_ADD: &str = "/etcdserverpb.Auth/RoleAdd";
pub(crate) const ROLE_DELETE: &str = "/etcdserverpb.Auth/RoleDelete";
pub(crate) const ROLE_GRANT_PERMISSION: &str = "/etcdserverpb.Auth/RoleGrantPermission";
pub(crate) const ROLE_REVOKE_PERMISSION: &str = "/etcdserverpb.Auth/RoleRevokePermission";

/// The metadata key etcd reads the token from.
const TOKEN: &str = "token";

/// Methods whose requests or responses carry a password or a token: the wire log gets `{}`.
pub(crate) fn is_secret(method: &str) -> bool {
    matches!(method, AUTHENTICATE | USER_ADD | USER_CHANGE_PASSWORD)
}

/// User name and password; `Debug` does not print the password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The auth state a client and its clones share.
#[derive(Default)]
pub(crate) struct AuthState {
    pub(crate) credentials: Option<Credentials>,
    token: RwLock<Option<AsciiMetadataValue>>,
    /// One re-authentication at a time; the others wait and use its token.
    renewing: tokio::sync::Mutex<()>,
}

impl AuthState {
    pub(crate) fn new(credentials: Option<Credentials>) -> Self {
        AuthState {
            credentials,
            ..Default::default()
        }
    }
}

impl AuthState {
    /// The current token, if any.
    pub(crate) fn current(&self) -> Option<AsciiMetadataValue> {
        self.token.read().ok().and_then(|t| t.clone())
    }
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let has_token = self.token.read().is_ok_and(|t| t.is_some());
        f.debug_struct("AuthState")
            .field("credentials", &self.credentials)
            .field("token", &if has_token { "<redacted>" } else { "none" })
            .finish()
    }
}

/// What a role may do on its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Range and watch.
    Read,
    /// Put, delete, and the writes inside txns.
    Write,
    /// Both.
    ReadWrite,
}

/// The keys a permission covers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PermissionRange {
    key: Vec<u8>,
    range_end: Vec<u8>,
}

impl PermissionRange {
    /// Exactly this key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        PermissionRange {
            key: key.into(),
            range_end: Vec::new(),
        }
    }
    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        PermissionRange {
            range_end: prefix_end(&key),
            key,
        }
    }
    /// Keys in `[start, end)`.
    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        PermissionRange {
            key: start.into(),
            range_end: end.into(),
        }
    }
    /// Every key `>= key`.
    pub fn from_key(key: impl Into<Vec<u8>>) -> Self {
        PermissionRange {
            key: key.into(),
            range_end: vec![0],
        }
    }
}

response_wrapper!(
    /// Answer to `Auth/AuthStatus`.
    AuthStatusResponse,
    pb::AuthStatusResponse
);

impl AuthStatusResponse {
    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// The auth store revision (bumped by every user, role or permission change).
    pub fn auth_revision(&self) -> u64 {
        self.0.auth_revision
    }
}

fn check_name(argument: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(argument, "must not be empty"));
    }
    Ok(())
}

/// Sends one `Auth` RPC through the client's request path and keeps only the header revision.
macro_rules! auth_call {
    ($client:expr, $method:expr, $req:expr, $rpc:ident) => {
        $client
            .unary($method, Retry::NotSent, $req, |ch, r| async move {
                AuthClient::new(ch).$rpc(r).await
            })
            .await
            .map(|resp| header_of(&resp.header).revision)
    };
}

impl Client {
    /// The current token, if the client has one.
    pub(crate) fn token(&self) -> Option<AsciiMetadataValue> {
        self.inner.auth.current()
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

    /// Whether a failed call should be repeated with a new token: the client has credentials
    /// and etcd's answer is one a fresh token can cure.
    pub(crate) fn token_may_help(&self, error: &Error) -> bool {
        self.inner.auth.credentials.is_some() && error.wants_new_token()
    }

    /// Authenticates again, unless another caller already replaced `stale` meanwhile.
    pub(crate) async fn renew_token(&self, stale: Option<&AsciiMetadataValue>) -> Result<()> {
        let Some(credentials) = self.inner.auth.credentials.as_ref() else {
            return Ok(());
        };
        let _one_at_a_time = self.inner.auth.renewing.lock().await;
        if self.token().as_ref() != stale {
            return Ok(());
        }
        // Boxed: `unary` may call back into this function.
        let token = Box::pin(self.authenticate(&credentials.user, &credentials.password)).await?;
        if let Ok(mut slot) = self.inner.auth.token.write() {
            *slot = Some(token);
        }
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
                self.renew_token(token.as_ref()).await?;
                call(self.token()).await
            }
            other => other,
        }
    }

    /// `Auth/Authenticate` at connect time. A cluster without auth is fine (no token is sent,
    /// as Go's client does); if auth is enabled later, the first refused request authenticates.
    pub(crate) async fn authenticate_at_connect(&self) -> Result<()> {
        match self.renew_token(None).await {
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::AuthNotEnabled) => Ok(()),
            other => other,
        }
    }

    /// `Auth/Authenticate`: trades a user name and password for a token (sent without one).
    async fn authenticate(&self, user: &str, password: &str) -> Result<AsciiMetadataValue> {
        let req = pb::AuthenticateRequest {
            name: user.to_string(),
            password: password.to_string(),
        };
        let resp = self
            .unary(AUTHENTICATE, Retry::Idempotent, req, |ch, r| async move {
                AuthClient::new(ch).authenticate(r).await
            })
            .await?;
        AsciiMetadataValue::try_from(resp.token.as_str())
            .map_err(|_| Error::Protocol("Authenticate returned a token that is not ASCII".into()))
    }

    /// Turns authentication on: `Auth/AuthEnable`. etcd requires a user `root` holding the role
    /// `root` first (else the typed `RootUserMissing` error). Returns the revision.
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
    /// client.user_add("root", "rootpw").await?;
    /// client.role_add("root").await?;
    /// client.user_grant_role("root", "root").await?;
    /// client.auth_enable().await?;
    /// # Ok(()) }
    /// ```
    pub async fn auth_enable(&self) -> Result<i64> {
        auth_call!(self, AUTH_ENABLE, pb::AuthEnableRequest {}, auth_enable)
    }

    /// Turns authentication off (needs root): `Auth/AuthDisable`. Returns the revision.
    pub async fn auth_disable(&self) -> Result<i64> {
        auth_call!(self, AUTH_DISABLE, pb::AuthDisableRequest {}, auth_disable)
    }

    /// Whether authentication is on, and the auth store revision: `Auth/AuthStatus`.
    /// etcd added this RPC in 3.5; older servers give [`Error::Unsupported`].
    pub async fn auth_status(&self) -> Result<AuthStatusResponse> {
        let result = self
            .unary(
                AUTH_STATUS,
                Retry::Idempotent,
                pb::AuthStatusRequest {},
                |ch, r| async move { AuthClient::new(ch).auth_status(r).await },
            )
            .await;
        match result {
            Ok(resp) => Ok(AuthStatusResponse(resp)),
            Err(e) if e.code() == Some(tonic::Code::Unimplemented) => Err(Error::Unsupported {
                method: AUTH_STATUS,
                reason: "etcd added it in 3.5; on 3.4 an authenticated request (or \
                         `UserList` as root) tells whether auth is on"
                    .into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Adds a user with a password: `Auth/UserAdd`. Returns the revision.
    pub async fn user_add(&self, name: &str, password: &str) -> Result<i64> {
        check_name("user", name)?;
        let req = pb::AuthUserAddRequest {
            name: name.to_string(),
            password: password.to_string(),
            options: Some(authpb::UserAddOptions { no_password: false }),
            hashed_password: String::new(),
        };
        auth_call!(self, USER_ADD, req, user_add)
    }

    /// Deletes a user: `Auth/UserDelete`. Returns the revision.
    pub async fn user_delete(&self, name: &str) -> Result<i64> {
        check_name("user", name)?;
        let req = pb::AuthUserDeleteRequest {
            name: name.to_string(),
        };
        auth_call!(self, USER_DELETE, req, user_delete)
    }

    /// Sets a user's password: `Auth/UserChangePassword`. The user's current tokens stay
    /// valid until they expire. Returns the revision.
    pub async fn user_change_password(&self, name: &str, password: &str) -> Result<i64> {
        check_name("user", name)?;
        let req = pb::AuthUserChangePasswordRequest {
            name: name.to_string(),
            password: password.to_string(),
            hashed_password: String::new(),
        };
        auth_call!(self, USER_CHANGE_PASSWORD, req, user_change_password)
    }

    /// Grants a role to a user: `Auth/UserGrantRole`. Returns the revision.
    pub async fn user_grant_role(&self, user: &str, role: &str) -> Result<i64> {
        check_name("user", user)?;
        check_name("role", role)?;
        let req = pb::AuthUserGrantRoleRequest {
            user: user.to_string(),
            role: role.to_string(),
        };
        auth_call!(self, USER_GRANT_ROLE, req, user_grant_role)
    }

    /// Takes a role away from a user: `Auth/UserRevokeRole`. Returns the revision.
    pub async fn user_revoke_role(&self, user: &str, role: &str) -> Result<i64> {
        check_name("user", user)?;
        check_name("role", role)?;
        let req = pb::AuthUserRevokeRoleRequest {
            name: user.to_string(),
            role: role.to_string(),
        };
        auth_call!(self, USER_REVOKE_ROLE, req, user_revoke_role)
    }

    /// Adds a role without permissions: `Auth/RoleAdd`. Returns the revision.
    pub async fn role_add(&self, name: &str) -> Result<i64> {
        check_name("role", name)?;
        let req = pb::AuthRoleAddRequest {
            name: name.to_string(),
        };
        auth_call!(self, ROLE_ADD, req, role_add)
    }

    /// Deletes a role: `Auth/RoleDelete`. Returns the revision.
    pub async fn role_delete(&self, name: &str) -> Result<i64> {
        check_name("role", name)?;
        let req = pb::AuthRoleDeleteRequest {
            role: name.to_string(),
        };
        auth_call!(self, ROLE_DELETE, req, role_delete)
    }

    /// Lets a role read, write or both on a key, a prefix or a range:
    /// `Auth/RoleGrantPermission`. Returns the revision.
    pub async fn role_grant_permission(
        &self,
        role: &str,
        permission: Permission,
        keys: PermissionRange,
    ) -> Result<i64> {
        check_name("role", role)?;
        if keys.key.is_empty() {
            return Err(Error::invalid("key", "a permission needs a non-empty key"));
        }
        let perm_type = match permission {
            Permission::Read => authpb::permission::Type::Read,
            Permission::Write => authpb::permission::Type::Write,
            Permission::ReadWrite => authpb::permission::Type::Readwrite,
        };
        let req = pb::AuthRoleGrantPermissionRequest {
            name: role.to_string(),
            perm: Some(authpb::Permission {
                perm_type: perm_type as i32,
                key: keys.key,
                range_end: keys.range_end,
            }),
        };
        auth_call!(self, ROLE_GRANT_PERMISSION, req, role_grant_permission)
    }

    /// Removes a role's permission on exactly this key or range:
    /// `Auth/RoleRevokePermission`. Returns the revision.
    pub async fn role_revoke_permission(&self, role: &str, keys: PermissionRange) -> Result<i64> {
        check_name("role", role)?;
        let req = pb::AuthRoleRevokePermissionRequest {
            role: role.to_string(),
            key: keys.key,
            range_end: keys.range_end,
        };
        auth_call!(self, ROLE_REVOKE_PERMISSION, req, role_revoke_permission)
    }
}

/// Auth reads (`UserGet`, `UserList`, `RoleGet`, `RoleList`).
pub(crate) const USER_GET: &str = "/etcdserverpb.Auth/UserGet";
pub(crate) const USER_LIST: &str = "/etcdserverpb.Auth/UserList";
pub(crate) const ROLE_GET: &str = "/etcdserverpb.Auth/RoleGet";
pub(crate) const ROLE_LIST: &str = "/etcdserverpb.Auth/RoleList";

/// One permission of a role, as [`Client::role_get`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RolePermission {
    /// Read, write or both.
    pub permission: Permission,
    /// The first key covered.
    pub key: Vec<u8>,
    /// The end of the range (exclusive); empty for exactly `key`, `[0]` for every key from
    /// `key` on.
    pub range_end: Vec<u8>,
}

impl Client {
    /// The roles granted to a user: `Auth/UserGet`. With auth on, a user may read itself;
    /// other users need root. An unknown user is [`EtcdErrorKind::UserNotFound`].
    pub async fn user_get(&self, name: &str) -> Result<Vec<String>> {
        check_name("user", name)?;
        let req = pb::AuthUserGetRequest {
            name: name.to_string(),
        };
        self.unary(USER_GET, Retry::Idempotent, req, |ch, r| async move {
            AuthClient::new(ch).user_get(r).await
        })
        .await
        .map(|resp| resp.roles)
    }

    /// Every user name, sorted: `Auth/UserList` (root only once auth is on).
    pub async fn user_list(&self) -> Result<Vec<String>> {
        let req = pb::AuthUserListRequest {};
        self.unary(USER_LIST, Retry::Idempotent, req, |ch, r| async move {
            AuthClient::new(ch).user_list(r).await
        })
        .await
        .map(|resp| resp.users)
    }

    /// A role's permissions: `Auth/RoleGet`. With auth on, a user may read its own roles;
    /// other roles need root. An unknown role is [`EtcdErrorKind::RoleNotFound`].
    pub async fn role_get(&self, name: &str) -> Result<Vec<RolePermission>> {
        check_name("role", name)?;
        let req = pb::AuthRoleGetRequest {
            role: name.to_string(),
        };
        let resp = self
            .unary(ROLE_GET, Retry::Idempotent, req, |ch, r| async move {
                AuthClient::new(ch).role_get(r).await
            })
            .await?;
        resp.perm
            .into_iter()
            .map(|p| {
                let permission = match authpb::permission::Type::try_from(p.perm_type) {
                    Ok(authpb::permission::Type::Read) => Permission::Read,
                    Ok(authpb::permission::Type::Write) => Permission::Write,
                    Ok(authpb::permission::Type::Readwrite) => Permission::ReadWrite,
                    Err(_) => {
                        return Err(Error::Protocol(format!(
                            "RoleGet returned permission type {}",
                            p.perm_type
                        )))
                    }
                };
                Ok(RolePermission {
                    permission,
                    key: p.key,
                    range_end: p.range_end,
                })
            })
            .collect()
    }

    /// Every role name, sorted: `Auth/RoleList` (root only once auth is on).
    pub async fn role_list(&self) -> Result<Vec<String>> {
        let req = pb::AuthRoleListRequest {};
        self.unary(ROLE_LIST, Retry::Idempotent, req, |ch, r| async move {
            AuthClient::new(ch).role_list(r).await
        })
        .await
        .map(|resp| resp.roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_secrets() {
        assert_eq!(PermissionRange::prefix("app/").range_end, b"app0".to_vec());
        assert_eq!(PermissionRange::from_key("a").range_end, vec![0]);
        assert!(PermissionRange::key("k").range_end.is_empty());
        let creds = Credentials {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
        assert!(is_secret(AUTHENTICATE) && !is_secret(AUTH_ENABLE));
    }
}
