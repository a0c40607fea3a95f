//! Auth reads against real servers, once per etcd version: `UserGet`, `UserList`, `RoleGet`,
//! `RoleList` show what the writes set up (roles of a user, a role's permissions with their
//! key ranges), unknown names are typed errors, and with auth on a user reads itself and its
//! own roles but not the lists (root only).
#![cfg(feature = "testkit")]

mod common;

use common::ok;
use etcd_lock::auth::{Permission, PermissionRange};
use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Client, ClientOptions, Error, EtcdErrorKind};

per_version!(users_and_roles_read_back_as_written);

fn kind<T: std::fmt::Debug>(result: Result<T, Error>) -> Option<EtcdErrorKind> {
    match result {
        Ok(v) => panic!("expected an etcd error, got {v:?}"),
        Err(e) => e.etcd_kind(),
    }
}

async fn users_and_roles_read_back_as_written(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let admin = common::client(&cluster).await;
    assert!(ok(admin.user_list().await).is_empty());
    assert!(ok(admin.role_list().await).is_empty());

    ok(admin.role_add("reader").await);
    ok(admin.role_add("writer").await);
    ok(admin
        .role_grant_permission("reader", Permission::Read, PermissionRange::prefix("app/"))
        .await);
    ok(admin
        .role_grant_permission("reader", Permission::ReadWrite, PermissionRange::key("cfg"))
        .await);
    ok(admin
        .role_grant_permission("writer", Permission::Write, PermissionRange::from_key("w"))
        .await);
    ok(admin.user_add("bob", "bob-pw").await);
    ok(admin.user_add("amy", "amy-pw").await);
    ok(admin.user_grant_role("bob", "writer").await);
    ok(admin.user_grant_role("bob", "reader").await);

    assert_eq!(ok(admin.user_list().await), ["amy", "bob"]);
    assert_eq!(ok(admin.role_list().await), ["reader", "writer"]);
    assert_eq!(ok(admin.user_get("bob").await), ["reader", "writer"]);
    assert!(ok(admin.user_get("amy").await).is_empty());

    let mut perms = ok(admin.role_get("reader").await);
    perms.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(perms.len(), 2);
    assert_eq!(
        (
            perms[0].permission,
            &perms[0].key[..],
            &perms[0].range_end[..]
        ),
        (Permission::Read, &b"app/"[..], &b"app0"[..])
    );
    assert_eq!(
        (
            perms[1].permission,
            &perms[1].key[..],
            &perms[1].range_end[..]
        ),
        (Permission::ReadWrite, &b"cfg"[..], &b""[..])
    );
    let writer = ok(admin.role_get("writer").await);
    assert_eq!(writer.len(), 1);
    assert_eq!(writer[0].permission, Permission::Write);
    assert_eq!(writer[0].range_end, [0]);

    // Unknown and empty names.
    assert_eq!(
        kind(admin.user_get("nobody").await),
        Some(EtcdErrorKind::UserNotFound)
    );
    assert_eq!(
        kind(admin.role_get("nothing").await),
        Some(EtcdErrorKind::RoleNotFound)
    );
    assert!(matches!(
        admin.user_get("").await,
        Err(Error::InvalidArgument {
            argument: "user",
            ..
        })
    ));
    assert!(matches!(
        admin.role_get("").await,
        Err(Error::InvalidArgument {
            argument: "role",
            ..
        })
    ));

    // With auth on: bob reads himself and his roles; the lists and others need root.
    ok(admin.user_add("root", "root-pw").await);
    ok(admin.role_add("root").await);
    ok(admin.user_grant_role("root", "root").await);
    ok(admin.auth_enable().await);
    let connect = |user: &'static str, pw: &'static str| {
        let endpoints = cluster.endpoints();
        async move {
            ok(Client::builder(endpoints, ClientOptions::new())
                .map(|b| b.auth(user, pw))
                .expect("builder")
                .connect()
                .await)
        }
    };
    let bob = connect("bob", "bob-pw").await;
    assert_eq!(ok(bob.user_get("bob").await), ["reader", "writer"]);
    assert_eq!(ok(bob.role_get("writer").await).len(), 1);
    let denied = |r: Result<Vec<String>, Error>| r.err().is_some_and(|e| e.is_permission_denied());
    assert!(denied(bob.user_get("amy").await));
    assert!(denied(bob.user_list().await));
    assert!(denied(bob.role_list().await));
    assert!(bob
        .role_get("root")
        .await
        .err()
        .is_some_and(|e| e.is_permission_denied()));
    let root = connect("root", "root-pw").await;
    assert_eq!(ok(root.user_list().await), ["amy", "bob", "root"]);
    assert_eq!(ok(root.role_list().await), ["reader", "root", "writer"]);
    assert_eq!(ok(root.user_get("amy").await), Vec::<String>::new());
    ok(root.auth_disable().await);
}
