//! # etcd-lock
//!
//! An etcd v3 client built straight from etcd's protobuf wire protocol, with distributed locks
//! done two ways.
//!
//! | module | what it does on the wire |
//! |---|---|
//! | [`client`] | connections, timeouts, endpoint failover, request counters, the auth token on every call (`Auth/Authenticate`, renewed when refused) |
//! | [`auth`] | users, roles, permissions, `AuthEnable`/`AuthDisable`/`AuthStatus` |
//! | `tls` (feature `tls`) | `tls::TlsOptions`: `https://` endpoints, CA bundle, client certificate, server name |
//! | [`kv`] | `KV/Range`, `KV/Put`, `KV/DeleteRange`, `KV/Compact` |
//! | [`txn`] | `KV/Txn` compares and branches |
//! | [`lease`] | `Lease/LeaseGrant`, `LeaseRevoke`, `LeaseKeepAlive`, `LeaseTimeToLive`, `LeaseLeases` |
//! | [`watch`] | `Watch/Watch`, many watches on one stream |
//! | [`namespace`] | `Client::namespaced(prefix)`: the calls above, and locks and elections, with every key under a prefix |
//! | [`maintenance`] | `Maintenance/Status`, `Defragment`, `Hash`, `HashKV`, `Alarm`, `MoveLeader`, `Downgrade`, `Snapshot`; `Cluster/MemberList` |
//! | [`cluster`] | `Cluster/MemberAdd`, `MemberRemove`, `MemberUpdate`, `MemberPromote` |
//! | [`session`] | a lease kept alive, with a "lost" signal |
//! | [`lock`] | [`lock::RecipeLock`] and [`lock::ServiceLock`] behind [`lock::Locker`] |
//! | [`election`] | [`election::RecipeElection`] and [`election::ServiceElection`] behind [`election::Elector`] |
//! | [`wire`] | the wire log hook |
//! | `wirelog` (feature `wire-log`) | `wirelog::JsonLines`: one JSON line per call attempt and per stream message, decoded from the exact wire bytes |
//! | [`proto`] | the generated messages and clients |
//! | [`error`] | the one [`Error`] type, with the crate's own gRPC [`Code`] and [`GrpcStatus`] |
//!
//! With the `tracing` feature, every unary RPC runs in an `rpc` span and failovers, retries,
//! token renewals, watch resumes, keep-alive and session losses and lock and election
//! handoffs are `tracing` events (see the README's "Tracing" section for names and fields).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod client;
pub mod cluster;
pub mod election;
pub mod error;
mod http2;
pub mod kv;
#[cfg(test)]
mod layering;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod namespace;
pub mod proto;
pub mod session;
mod support;
#[cfg(feature = "tap")]
#[cfg_attr(docsrs, doc(cfg(feature = "tap")))]
pub mod tap;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod trace;
pub mod txn;
pub mod watch;
pub mod wire;
#[cfg(feature = "wire-log")]
#[cfg_attr(docsrs, doc(cfg(feature = "wire-log")))]
pub mod wirelog;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use client::{Client, ClientOptions, ClientStats};
pub use election::{Elector, LeaderInfo, Leadership, Observer, RecipeElection, ServiceElection};
pub use error::{Code, Error, EtcdErrorKind, GrpcStatus, Result};
pub use lock::{LockGuard, Locker, RecipeLock, ServiceLock};
pub use proto::mvccpb::KeyValue;
pub use session::{Session, SessionOptions};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::TlsOptions;

// Compile-time checks: the handles a program shares between tasks and threads stay
// `Send + Sync`, and the streams a task owns stay `Send` (a field that is not would otherwise
// surface only in a user's build).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Client>();
    send_sync::<ClientOptions>();
    send_sync::<Session>();
    send_sync::<LockGuard>();
    send_sync::<Leadership>();
    send::<Observer>();
    send::<watch::Watcher>();
    send_sync::<Box<dyn lock::DynLocker>>();
    send_sync::<Box<dyn election::DynElector>>();
    send_sync::<Error>();
};

/// The README's Rust code blocks, compiled (and the runnable ones run) as doctests. They use
/// the `testkit` and `tls` features, so they are checked in `--all-features` test runs.
#[cfg(all(doctest, feature = "testkit", feature = "tls"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
