//! Small helpers shared by the service wrappers and the client, with nothing of ours below
//! them but [`crate::proto`]: the response header accessor, the response newtype macro, the
//! prefix range end, etcd's require-leader stream metadata, SHA-256 (snapshot digests, the wire
//! log's snapshot chunks), the one function every task of the crate is spawned through, and
//! (feature `tls`) the reading of rustls failures out of transport errors.
//!
//! They live here rather than in `kv` or `tls` so that every layer can use them without
//! importing a module at its own level or above (see `ARCHITECTURE.md`, section 1).

pub(crate) mod sha256;
#[cfg(feature = "tls")]
pub(crate) mod tls;

use std::future::Future;
use std::pin::Pin;

use tonic::metadata::AsciiMetadataValue;

use crate::proto::etcdserverpb as pb;

/// A boxed future. The public calls whose futures are big (`Session::with_options`, `lock`,
/// `unlock`, ...) await one built by a plain function of this crate, so that their state
/// machines are compiled once, here, and not again in every crate that awaits them.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Spawns `task` on the current runtime as a [`BoxFuture`]. Every task of this crate is then
/// one type to tokio, whose per-task machinery (the harness, its poll, shutdown and join code)
/// is compiled once instead of once per kind of task. Panics outside a runtime, as
/// `tokio::spawn` does.
pub(crate) fn spawn(
    task: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    spawn_boxed(Box::pin(task))
}

fn spawn_boxed(task: BoxFuture<'static, ()>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(task)
}

/// [`spawn`] on the runtime of `handle`.
pub(crate) fn spawn_on(
    handle: &tokio::runtime::Handle,
    task: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    spawn_boxed_on(handle, Box::pin(task))
}

fn spawn_boxed_on(
    handle: &tokio::runtime::Handle,
    task: BoxFuture<'static, ()>,
) -> tokio::task::JoinHandle<()> {
    handle.spawn(task)
}

/// The header etcd puts on every response, or an all-zero one if it was missing.
pub(crate) fn header_of(h: &Option<pb::ResponseHeader>) -> &pb::ResponseHeader {
    static EMPTY: pb::ResponseHeader = pb::ResponseHeader {
        cluster_id: 0,
        member_id: 0,
        revision: 0,
        raft_term: 0,
    };
    h.as_ref().unwrap_or(&EMPTY)
}

/// Declares a public newtype over a generated response message with the accessors every
/// answer shares (`header`, `revision`, `into_inner`, `get_ref`). The calling module must have
/// `pb` in scope as `crate::proto::etcdserverpb`.
macro_rules! response_wrapper {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name(pub(crate) $inner);

        impl $name {
            /// The response header (cluster ID, member ID, store revision, raft term).
            pub fn header(&self) -> &pb::ResponseHeader {
                $crate::support::header_of(&self.0.header)
            }
            /// The store revision when the request was applied (`header.revision`).
            pub fn revision(&self) -> i64 {
                self.header().revision
            }
            /// The raw protobuf response.
            pub fn into_inner(self) -> $inner {
                self.0
            }
            /// The raw protobuf response, borrowed.
            pub fn get_ref(&self) -> &$inner {
                &self.0
            }
        }
    };
}
pub(crate) use response_wrapper;

/// The end of the key range that covers every key starting with `prefix`
/// (the prefix with its last byte below 0xff incremented; `"\0"` when there is none, i.e. all keys).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The metadata key etcd looks for (its `rpctypes.MetadataRequireLeaderKey`).
const REQUIRE_LEADER_KEY: &str = "hasleader";
/// The only value etcd honours (its `rpctypes.MetadataHasLeader`).
const REQUIRE_LEADER_VALUE: &str = "true";

/// Marks a long-lived stream request (`Watch`, `LeaseKeepAlive`) so that etcd ends the stream
/// when its member loses the leader.
///
/// With `hasleader: true` on a stream, etcd (3.4 and 3.5 alike) refuses to open it on a member
/// that knows no leader, and a stream already open is registered with a monitor that checks
/// the member's leader once per election timeout: after three checks in a row without one, it
/// cancels every registered stream with `Unavailable: etcdserver: no leader`. That is the only
/// way a client learns that a member it can still reach has been cut off from its peers:
/// the member keeps answering on its client port, it just stops seeing new revisions. Unary
/// calls are not affected; they fail over on their own errors.
pub(crate) fn require_leader<T>(request: &mut tonic::Request<T>) {
    request.metadata_mut().insert(
        REQUIRE_LEADER_KEY,
        AsciiMetadataValue::from_static(REQUIRE_LEADER_VALUE),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn a_missing_header_reads_as_zero_and_streams_require_a_leader() {
        assert_eq!(header_of(&None).revision, 0);
        let mut request = tonic::Request::new(());
        require_leader(&mut request);
        let value = request.metadata().get(REQUIRE_LEADER_KEY);
        assert_eq!(value.and_then(|v| v.to_str().ok()), Some("true"));
    }
}
