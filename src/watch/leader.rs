//! etcd's require-leader metadata for long-lived streams (`Watch`, `LeaseKeepAlive`).
//!
//! With `hasleader: true` on a stream, etcd (3.4 and 3.5 alike) refuses to open it on a member
//! that knows no leader, and a stream already open is registered with a monitor that checks
//! the member's leader once per election timeout: after three checks in a row without one, it
//! cancels every registered stream with `Unavailable: etcdserver: no leader`. That is the only
//! way a client learns that a member it can still reach has been cut off from its peers:
//! the member keeps answering on its client port, it just stops seeing new revisions. Unary
//! calls are not affected by this module; they fail over on their own errors.

use tonic::metadata::AsciiMetadataValue;

/// The metadata key etcd looks for (its `rpctypes.MetadataRequireLeaderKey`).
const REQUIRE_LEADER_KEY: &str = "hasleader";
/// The only value etcd honours (its `rpctypes.MetadataHasLeader`).
const REQUIRE_LEADER_VALUE: &str = "true";

/// Marks a stream request so that etcd ends the stream when its member loses the leader.
pub(crate) fn require_leader<T>(request: &mut tonic::Request<T>) {
    request.metadata_mut().insert(
        REQUIRE_LEADER_KEY,
        AsciiMetadataValue::from_static(REQUIRE_LEADER_VALUE),
    );
}
