//! The one way this crate opens a generated gRPC client, so every call site gets the same
//! message size limits (tonic's own default would refuse any answer over 4 MiB with a bare
//! `OutOfRange` status, where etcd itself sends up to 2 GiB).

use tonic::transport::Channel;

use super::ClientOptions;
use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::v3electionpb::election_client::ElectionClient;
use crate::proto::v3lockpb::lock_client::LockClient;

/// A generated client on a channel of ours, with the size limits every call site needs.
pub(crate) trait Grpc: Sized {
    /// For a unary RPC: decodes an answer of any size, because `Client::unary` (the one path
    /// every unary answer takes) then refuses one over
    /// [`ClientOptions::max_response_bytes`] with a typed
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge).
    fn unary(channel: Channel) -> Self;

    /// For a stream: decodes messages up to [`ClientOptions::max_response_bytes`] and sends
    /// messages up to [`ClientOptions::max_request_bytes`]; a bigger one ends the stream.
    fn stream(channel: Channel, options: &ClientOptions) -> Self;
}

macro_rules! grpc {
    ($($client:ident),* $(,)?) => {$(
        impl Grpc for $client<Channel> {
            fn unary(channel: Channel) -> Self {
                $client::new(channel).max_decoding_message_size(usize::MAX)
            }
            fn stream(channel: Channel, options: &ClientOptions) -> Self {
                $client::new(channel)
                    .max_decoding_message_size(options.max_response_bytes)
                    .max_encoding_message_size(options.max_request_bytes)
            }
        }
    )*};
}

grpc!(
    AuthClient,
    ClusterClient,
    KvClient,
    LeaseClient,
    MaintenanceClient,
    WatchClient,
    ElectionClient,
    LockClient,
);
