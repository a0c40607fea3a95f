//! # etcd-lock
//!
//! An etcd v3 client built straight from etcd's protobuf wire protocol, with distributed locks
//! done two ways.
//!
//! | module | what it does on the wire |
//! |---|---|
//! | [`client`] | connections, timeouts, endpoint failover, request counters |
//! | [`kv`] | `KV/Range`, `KV/Put`, `KV/DeleteRange`, `KV/Compact` |
//! | [`txn`] | `KV/Txn` compares and branches |
//! | [`lease`] | `Lease/LeaseGrant`, `LeaseRevoke`, `LeaseKeepAlive`, `LeaseTimeToLive`, `LeaseLeases` |
//! | [`watch`] | `Watch/Watch`, many watches on one stream |
//! | [`maintenance`] | `Maintenance/Status`, `Cluster/MemberList` |
//! | [`wire`] | the wire log hook |
//! | [`proto`] | the generated messages and clients |
//! | [`error`] | the one [`Error`] type |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod error;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod proto;
pub mod txn;
pub mod watch;
pub mod wire;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use client::{Client, ClientOptions, ClientStats};
pub use error::{Error, EtcdErrorKind, Result};
pub use proto::mvccpb::KeyValue;
