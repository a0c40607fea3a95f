//! # etcd-lock
//!
//! An etcd v3 client built straight from etcd's protobuf wire protocol, with distributed locks
//! done two ways.
//!
//! | module | what it does on the wire |
//! |---|---|
//! | [`client`] | connections, timeouts, endpoint failover, request counters |
//! | [`auth`] | `Auth/Authenticate` and the token on every call; users, roles, `AuthEnable` |
//! | `tls` (feature `tls`) | `tls::TlsOptions`: `https://` endpoints, CA bundle, client certificate, server name |
//! | [`kv`] | `KV/Range`, `KV/Put`, `KV/DeleteRange`, `KV/Compact` |
//! | [`txn`] | `KV/Txn` compares and branches |
//! | [`lease`] | `Lease/LeaseGrant`, `LeaseRevoke`, `LeaseKeepAlive`, `LeaseTimeToLive`, `LeaseLeases` |
//! | [`watch`] | `Watch/Watch`, many watches on one stream |
//! | [`maintenance`] | `Maintenance/Status`, `Cluster/MemberList` |
//! | [`session`] | a lease kept alive, with a "lost" signal |
//! | [`lock`] | [`lock::RecipeLock`] and [`lock::ServiceLock`] behind [`lock::Locker`] |
//! | [`election`] | [`election::RecipeElection`] and [`election::ServiceElection`] behind [`election::Elector`] |
//! | [`wire`] | the wire log hook |
//! | `wirelog` (feature `wire-log`) | `wirelog::JsonLines`: one JSON line per call attempt and per stream message, decoded from the exact wire bytes |
//! | [`proto`] | the generated messages and clients |
//! | [`error`] | the one [`Error`] type |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod election;
pub mod error;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod proto;
pub mod session;
#[cfg(feature = "tls")]
pub mod tls;
pub mod txn;
pub mod watch;
pub mod wire;
#[cfg(feature = "wire-log")]
pub mod wirelog;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use client::{Client, ClientOptions, ClientStats};
pub use election::{Elector, LeaderInfo, Leadership, Observer, RecipeElection, ServiceElection};
pub use error::{Error, EtcdErrorKind, Result};
pub use lock::{LockGuard, Locker, RecipeLock, ServiceLock};
pub use proto::mvccpb::KeyValue;
pub use session::{Session, SessionOptions};
#[cfg(feature = "tls")]
pub use tls::TlsOptions;
