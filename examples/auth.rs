//! Authentication and roles, on a cluster that has it off, leaving it as it was found:
//! creates `root` (a random password) and a throwaway role and user allowed to read and write
//! one prefix only, turns auth on, shows what each client may do, then turns auth off and
//! deletes everything it created — `Auth/UserAdd`, `RoleAdd`, `RoleGrantPermission`,
//! `UserGrantRole`, `AuthEnable`, `Authenticate`, `AuthDisable`, `UserDelete`, `RoleDelete`.
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example auth
//! ```
//! It refuses to run (exit 1, nothing changed) when auth is already on or a `root` user
//! exists, since it would not know root's password to turn auth off again.

use etcd_lock::auth::{Permission, PermissionRange};
use etcd_lock::{Client, ClientOptions, EtcdErrorKind};

mod common;
use common::{endpoints, Result};

/// Names and secrets of this run.
struct Names {
    root_password: String,
    user: String,
    password: String,
    role: String,
    prefix: String,
    /// True when the role `root` was created here (and so is deleted at the end).
    created_root_role: bool,
}

async fn connect_as(user: &str, password: &str) -> Result<Client> {
    Ok(Client::builder(endpoints(), ClientOptions::new())?
        .auth(user, password)
        .connect()
        .await?)
}

/// With auth on: what the user, root and a client without credentials may do.
async fn show(admin: &Client, names: &Names) -> Result {
    let user = connect_as(&names.user, &names.password).await?;
    let mine = format!("{}greeting", names.prefix);
    user.put(mine.clone(), "hello").await?;
    println!("{}: put {mine}: allowed", names.user);
    match user.put("examples/elsewhere", "x").await {
        Err(e) if e.etcd_kind() == Some(EtcdErrorKind::PermissionDenied) => {
            println!("{}: put examples/elsewhere: refused ({e})", names.user)
        }
        other => {
            return Err(format!("a write outside the prefix should be refused: {other:?}").into())
        }
    }
    match admin.get(mine.clone()).await {
        Err(e) if e.etcd_kind() == Some(EtcdErrorKind::UserEmpty) => {
            println!("client without credentials: get {mine}: refused ({e})")
        }
        other => {
            return Err(format!("a client without a user should be refused: {other:?}").into())
        }
    }
    let root = connect_as("root", &names.root_password).await?;
    println!("root: users on the cluster {:?}", root.user_list().await?);
    println!(
        "root: {} has roles {:?}",
        names.user,
        root.user_get(&names.user).await?
    );
    Ok(())
}

/// Turns auth off (as root) if it is on, then deletes what this run created.
async fn restore(admin: &Client, names: &Names) -> Result {
    if let Ok(root) = connect_as("root", &names.root_password).await {
        match root.auth_disable().await {
            Ok(_) => println!("auth disabled"),
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::AuthNotEnabled) => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin
        .delete_with(
            names.prefix.clone(),
            etcd_lock::kv::DeleteOptions::new().with_prefix(),
        )
        .await?;
    for user in [names.user.as_str(), "root"] {
        match admin.user_delete(user).await {
            Ok(_) => println!("deleted user {user}"),
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::UserNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut roles = vec![names.role.as_str()];
    if names.created_root_role {
        roles.push("root");
    }
    for role in roles {
        match admin.role_delete(role).await {
            Ok(_) => println!("deleted role {role}"),
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::RoleNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let admin = Client::connect(endpoints()).await?;

    // With auth on, a client without credentials cannot even list users: refuse to go on.
    let users = match admin.user_list().await {
        Ok(users) => users,
        Err(e) if e.etcd_kind() == Some(EtcdErrorKind::UserEmpty) => {
            return Err("auth is already on: this example only runs where it is off".into())
        }
        Err(e) => return Err(e.into()),
    };
    if users.iter().any(|u| u == "root") {
        return Err(
            "a root user exists already; not touching a cluster whose root password is unknown"
                .into(),
        );
    }
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let names = Names {
        root_password: format!("root-{run}"),
        user: format!("examples-user-{}", std::process::id()),
        password: format!("pw-{run}"),
        role: format!("examples-role-{}", std::process::id()),
        prefix: format!("examples/auth/{}/", std::process::id()),
        created_root_role: !admin.role_list().await?.iter().any(|r| r == "root"),
    };

    let result = async {
        // etcd turns auth on only when a user `root` holds the role `root`.
        admin.user_add("root", &names.root_password).await?;
        if names.created_root_role {
            admin.role_add("root").await?;
        }
        admin.user_grant_role("root", "root").await?;
        // A role that may read and write one prefix, and a user holding it.
        admin.role_add(&names.role).await?;
        admin
            .role_grant_permission(
                &names.role,
                Permission::ReadWrite,
                PermissionRange::prefix(names.prefix.clone()),
            )
            .await?;
        admin.user_add(&names.user, &names.password).await?;
        admin.user_grant_role(&names.user, &names.role).await?;
        println!(
            "created root, role {} (read-write on {}*), user {}",
            names.role, names.prefix, names.user
        );
        admin.auth_enable().await?;
        println!("auth enabled");
        show(&admin, &names).await
    }
    .await;

    // Put the cluster back the way it was, whatever happened above.
    let restored = restore(&admin, &names).await;
    result?;
    restored?;
    let users = admin.user_list().await?;
    println!("auth is off again; users left: {users:?}");
    Ok(())
}
