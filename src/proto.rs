//! Generated protobuf messages and tonic clients for etcd's wire API, built from `proto/` at
//! compile time (the code itself lives in `OUT_DIR`). Package names follow etcd's:
//! [`etcdserverpb`], [`mvccpb`], [`authpb`], [`v3lockpb`], [`v3electionpb`].
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
