//! Generated protobuf messages and tonic clients for etcd's wire API, built from `proto/` at
//! compile time (the code itself lives in `OUT_DIR`). Package names follow etcd's:
//! [`etcdserverpb`], [`mvccpb`], [`authpb`], [`v3lockpb`], [`v3electionpb`].
//!
//! # Public on purpose, and what that costs
//!
//! This module is the one place where another crate's types are part of this crate's API:
//! the prost messages (so that an auditor can see exactly what goes on the wire, and so that
//! responses such as [`mvccpb::KeyValue`] come back as etcd sent them) and the tonic clients
//! generated next to them (for an RPC this crate does not wrap). Their shape follows prost's
//! and tonic's code generators, so **a prost or tonic upgrade that changes them is a major
//! (breaking) release of this crate**. Everything outside `proto` uses the crate's own types:
//! errors carry [`crate::Code`] and [`crate::GrpcStatus`], never a `tonic::Status` or
//! `tonic::Code`.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]

/// `etcdserverpb`: KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
/// `mvccpb`: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
/// `authpb`: users, roles, permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}
/// `v3lockpb`: the server-side Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
/// `v3electionpb`: the server-side Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// The encoded `FileDescriptorSet` of every proto file above (used by the wire log to decode).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptor.bin"));
