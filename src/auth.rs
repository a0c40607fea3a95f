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

use crate::client::token::{USER_ADD, USER_CHANGE_PASSWORD};
use crate::client::{Client, Retry};
use crate::error::{Code, Error, Result};
use crate::proto::authpb;
use crate::proto::etcdserverpb as pb;
use crate::support::{header_of, prefix_end, response_wrapper};

pub(crate) const AUTH_ENABLE: &str = "/etcdserverpb.Auth/AuthEnable";
pub(crate) const AUTH_DISABLE: &str = "/etcdserverpb.Auth/AuthDisable";
pub(crate) const AUTH_STATUS: &str = "/etcdserverpb.Auth/AuthStatus";
pub(crate) const USER_DELETE: &str = "/etcdserverpb.Auth/UserDelete";
pub(crate) const USER_GRANT_ROLE: &str = "/etcdserverpb.Auth/UserGrantRole";
pub(crate) const USER_REVOKE_ROLE: &str = "/etcdserverpb.Auth/UserRevokeRole";
pub(crate) const ROLE_ADD: &str = "/etcdserverpb.Auth/RoleAdd";
pub(crate) const ROLE_DELETE: &str = "/etcdserverpb.Auth/RoleDelete";
pub(crate) const ROLE_GRANT_PERMISSION: &str = "/etcdserverpb.Auth/RoleGrantPermission";
pub(crate) const ROLE_REVOKE_PERMISSION: &str = "/etcdserverpb.Auth/RoleRevokePermission";

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
            .unary($method, Retry::NotSent, $req)
            .await
            .map(|resp| header_of(&resp.header).revision)
    };
}

impl Client {
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
            .unary(AUTH_STATUS, Retry::Idempotent, pb::AuthStatusRequest {})
            .await;
        match result {
            Ok(resp) => Ok(AuthStatusResponse(resp)),
            Err(e) if e.code() == Some(Code::Unimplemented) => Err(Error::Unsupported {
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
    /// other users need root. An unknown user is [`EtcdErrorKind::UserNotFound`](crate::error::EtcdErrorKind::UserNotFound).
    pub async fn user_get(&self, name: &str) -> Result<Vec<String>> {
        check_name("user", name)?;
        let req = pb::AuthUserGetRequest {
            name: name.to_string(),
        };
        self.unary(USER_GET, Retry::Idempotent, req)
            .await
            .map(|resp| resp.roles)
    }

    /// Every user name, sorted: `Auth/UserList` (root only once auth is on).
    pub async fn user_list(&self) -> Result<Vec<String>> {
        let req = pb::AuthUserListRequest {};
        self.unary(USER_LIST, Retry::Idempotent, req)
            .await
            .map(|resp| resp.users)
    }

    /// A role's permissions: `Auth/RoleGet`. With auth on, a user may read its own roles;
    /// other roles need root. An unknown role is [`EtcdErrorKind::RoleNotFound`](crate::error::EtcdErrorKind::RoleNotFound).
    pub async fn role_get(&self, name: &str) -> Result<Vec<RolePermission>> {
        check_name("role", name)?;
        let req = pb::AuthRoleGetRequest {
            role: name.to_string(),
        };
        let resp = self.unary(ROLE_GET, Retry::Idempotent, req).await?;
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
        self.unary(ROLE_LIST, Retry::Idempotent, req)
            .await
            .map(|resp| resp.roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_ranges() {
        assert_eq!(PermissionRange::prefix("app/").range_end, b"app0".to_vec());
        assert_eq!(PermissionRange::from_key("a").range_end, vec![0]);
        assert!(PermissionRange::key("k").range_end.is_empty());
    }
}
