//! The one way this crate opens a generated gRPC client for a stream (unary calls go through
//! `unary.rs`, which sets the same decode limit), so every call site gets the same
//! message size limits (tonic's own default would refuse any answer over 4 MiB with a bare
//! `OutOfRange` status, where etcd itself sends up to 2 GiB).
//!
//! The limits are enforced by tonic's decoder while it reads the 5-byte gRPC message prefix,
//! before any of the message is buffered: a server announcing a 400 MiB answer costs the
//! client nothing but the prefix. [`too_large`] turns that refusal into
//! [`Error::MessageTooLarge`].

use super::h2channel::Channel;

use super::ClientOptions;
use crate::error::{Error, MessageKind};
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
    /// For a stream: decodes messages up to [`ClientOptions::max_response_bytes`] and sends
    /// messages up to [`ClientOptions::max_request_bytes`]; a bigger one ends the stream.
    fn stream(channel: Channel, options: &ClientOptions) -> Self;
}

macro_rules! grpc {
    ($($client:ident),* $(,)?) => {$(
        impl Grpc for $client<Channel> {
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

/// The prefix of tonic's own refusal of a message over the decode limit
/// (`tonic::codec::decode`, `Status::out_of_range`). It carries no typed source, so it is
/// recognised by code and text; a server that sends this text itself only gets its answer
/// reported as too large, which is what it claims.
const DECODE_LIMIT_PREFIX: &str = "Error, decoded message length too large: found ";

/// [`Error::MessageTooLarge`] for `method` when `status` is tonic's refusal of an answer over
/// `limit`, with the announced size; `None` for any other status.
pub(crate) fn too_large(
    method: &'static str,
    status: &tonic::Status,
    limit: usize,
) -> Option<Error> {
    if status.code() != tonic::Code::OutOfRange {
        return None;
    }
    let rest = status.message().strip_prefix(DECODE_LIMIT_PREFIX)?;
    let bytes = rest
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some(Error::MessageTooLarge {
        method,
        what: MessageKind::Response,
        bytes,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_decode_limit_refusal_is_message_too_large() {
        let status = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 419430400 bytes, the limit is: 4194304 bytes",
        );
        match too_large("/etcdserverpb.Lease/LeaseGrant", &status, 4 << 20) {
            Some(Error::MessageTooLarge {
                bytes, limit, what, ..
            }) => {
                assert_eq!(
                    (bytes, limit, what),
                    (419_430_400, 4 << 20, MessageKind::Response)
                );
            }
            other => panic!("{other:?}"),
        }
        // etcd's own OutOfRange answers stay what they are.
        let future =
            tonic::Status::out_of_range("etcdserver: mvcc: required revision is a future revision");
        assert!(too_large("m", &future, 1).is_none());
    }
}
