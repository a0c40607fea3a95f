//! Namespaces: a view of a client whose keys all live under one prefix (Go's
//! `client/v3/namespace`).
//!
//! ```no_run
//! # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
//! let tenant = client.namespaced("tenant-a/")?;
//! tenant.put("config", "v1").await?;                 // KV/Put key = "tenant-a/config"
//! let got = tenant.get("config").await?;             // KV/Range key = "tenant-a/config"
//! assert_eq!(got.first().map(|kv| kv.key.as_slice()), Some(&b"config"[..])); // stripped
//! # Ok(()) }
//! ```
//!
//! # What is mapped
//!
//! A namespaced [`Client`] prepends its prefix to every key it sends and strips it from every
//! key it returns:
//!
//! - `KV/Range`, `KV/Put`, `KV/DeleteRange`: key and range end in; `kvs`, `prev_kv`,
//!   `prev_kvs` out.
//! - `KV/Txn`: every compare's key and range end, every op (nested txns included) in; every
//!   nested range/put/delete/txn answer out.
//! - `Watch`: the create request's key and range end in; each event's `kv` and `prev_kv` out.
//! - `Lock/Lock` `name` and `Lock/Unlock` `key` in; the `Lock` answer's `key` out.
//! - `Election/Campaign`, `Leader`, `Observe` `name`, and the `LeaderKey` (name and key) of
//!   `Proclaim`/`Resign` in; the `LeaderKey` of `Campaign` and the `kv` of `Leader`/`Observe` out.
//! - The lock and election recipes, sessions, guards and fenced writes are built on the calls
//!   above, so their keys live under the prefix with no mapping of their own.
//!
//! Range ends follow Go's `prefixInterval`: an end of `"\0"` (from-key, or the whole key
//! space) becomes the end of the namespace, [`prefix_end`]`(prefix)`, so a from-key read or
//! delete stops at the namespace's last key; any other non-empty end gets the prefix
//! prepended; an empty end (a single key) stays empty. Unlike Go, whose end for a prefix ending
//! in `0xff` is computed with a carry (`"a\xff"` -> `"b\0"`, which includes the key `"b"`),
//! [`prefix_end`] drops trailing `0xff` bytes first (`"a\xff"` -> `"b"`).
//!
//! Lease IDs are not mapped: a key put with a lease inside a namespace is attached to it as
//! usual and vanishes when the lease ends. `Lease/LeaseTimeToLive` with keys lists only the
//! lease's keys inside the namespace, stripped (Go's `namespace.NewLease`). `Compact`, cluster, maintenance
//! and auth calls are not key-scoped and act on the whole cluster, as in Go.
//!
//! # Shared per-client state
//!
//! A namespaced view is a [`Client`] sharing the plain client's connections, counters, watch
//! stream and per-client state (the extension slot). Keys are mapped *before* they reach that
//! shared state and stripped *after* they leave it:
//!
//! - The watch hub only ever sees full keys: a view maps its create request before filing it,
//!   and its [`Watcher`](crate::watch::Watcher) strips each batch as it is read. Events are
//!   routed by watch, never by key, so views cannot receive each other's events.
//! - The lock prefix-watch registry (`lock::waiters`) is keyed by *(namespace, lock prefix)*,
//!   not by the lock prefix alone: lock `a` in `x/`, lock `a` outside any namespace and lock
//!   `a` in `y/` get three routers, each with its own watch opened through its own view.
//!   Keying by the full key instead would let the plain client's lock `x/a` and namespace
//!   `x/`'s lock `a` share one router while speaking different key spaces.
//!
//! This keeps one watch stream per client however many namespaces are used. Without a
//! namespace every mapping function returns its argument untouched: no copy, no allocation,
//! no extra RPC.

use std::sync::Arc;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;
use crate::proto::v3electionpb;
use crate::proto::v3lockpb;
pub use crate::support::prefix_end;

impl Client {
    /// A view of this client whose keys all live under `prefix` (no RPC is sent). The view
    /// shares this client's connections, counters and watch stream; see the
    /// [module docs](crate::namespace) for what is mapped. Namespacing a namespaced view nests:
    /// `client.namespaced("a/")?.namespaced("b/")?` puts its keys under `a/b/`.
    ///
    /// An empty prefix is refused with [`Error::InvalidArgument`] (use the client itself).
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
    /// use etcd_lock::{Locker, RecipeLock, Session};
    /// let tenant = client.namespaced("tenant-a/")?;
    /// let session = Session::new(&tenant).await?;
    /// let guard = RecipeLock::new().lock(&session, b"jobs").await?; // keys under tenant-a/jobs/
    /// guard.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub fn namespaced(&self, prefix: impl Into<Vec<u8>>) -> Result<Client> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(Error::invalid(
                "prefix",
                "a namespace prefix must not be empty; use the client itself for the whole key space",
            ));
        }
        let full: Vec<u8> = match &self.namespace {
            Some(outer) => outer.iter().copied().chain(prefix).collect(),
            None => prefix,
        };
        Ok(Client {
            inner: Arc::clone(&self.inner),
            namespace: Some(full.into()),
        })
    }

    /// The key prefix of this view (`None` for a client made by `connect`).
    pub fn namespace(&self) -> Option<&[u8]> {
        self.namespace.as_deref()
    }
}

/// `prefix + key`.
fn prefixed(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + key.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(key);
    out
}

/// Maps a key in place.
fn map_key(prefix: &[u8], key: &mut Vec<u8>) {
    *key = prefixed(prefix, key);
}

/// Maps a range end in place: `""` stays (single key), `"\0"` becomes the namespace's end,
/// anything else gets the prefix.
fn map_end(prefix: &[u8], end: &mut Vec<u8>) {
    if end.is_empty() {
        return;
    }
    *end = if end.as_slice() == [0] {
        prefix_end(prefix)
    } else {
        prefixed(prefix, end)
    };
}

/// Strips the prefix from a returned key (a key outside the namespace is left whole).
fn strip(prefix: &[u8], key: &mut Vec<u8>) {
    if key.starts_with(prefix) {
        key.drain(..prefix.len());
    }
}

fn strip_kv(prefix: &[u8], kv: &mut mvccpb::KeyValue) {
    strip(prefix, &mut kv.key);
}

pub(crate) fn range_request(ns: Option<&[u8]>, mut r: pb::RangeRequest) -> pb::RangeRequest {
    if let Some(p) = ns {
        map_key(p, &mut r.key);
        map_end(p, &mut r.range_end);
    }
    r
}

pub(crate) fn put_request(ns: Option<&[u8]>, mut r: pb::PutRequest) -> pb::PutRequest {
    if let Some(p) = ns {
        map_key(p, &mut r.key);
    }
    r
}

pub(crate) fn delete_request(
    ns: Option<&[u8]>,
    mut r: pb::DeleteRangeRequest,
) -> pb::DeleteRangeRequest {
    if let Some(p) = ns {
        map_key(p, &mut r.key);
        map_end(p, &mut r.range_end);
    }
    r
}

pub(crate) fn txn_request(ns: Option<&[u8]>, r: pb::TxnRequest) -> pb::TxnRequest {
    match ns {
        Some(p) => map_txn(p, r),
        None => r,
    }
}

fn map_txn(p: &[u8], mut r: pb::TxnRequest) -> pb::TxnRequest {
    use pb::request_op::Request;
    for c in &mut r.compare {
        map_key(p, &mut c.key);
        map_end(p, &mut c.range_end);
    }
    for op in r.success.iter_mut().chain(r.failure.iter_mut()) {
        op.request = op.request.take().map(|req| match req {
            Request::RequestRange(x) => Request::RequestRange(range_request(Some(p), x)),
            Request::RequestPut(x) => Request::RequestPut(put_request(Some(p), x)),
            Request::RequestDeleteRange(x) => {
                Request::RequestDeleteRange(delete_request(Some(p), x))
            }
            Request::RequestTxn(x) => Request::RequestTxn(map_txn(p, x)),
        });
    }
    r
}

pub(crate) fn range_response(ns: Option<&[u8]>, mut r: pb::RangeResponse) -> pb::RangeResponse {
    if let Some(p) = ns {
        r.kvs.iter_mut().for_each(|kv| strip_kv(p, kv));
    }
    r
}

pub(crate) fn put_response(ns: Option<&[u8]>, mut r: pb::PutResponse) -> pb::PutResponse {
    if let (Some(p), Some(kv)) = (ns, r.prev_kv.as_mut()) {
        strip_kv(p, kv);
    }
    r
}

pub(crate) fn delete_response(
    ns: Option<&[u8]>,
    mut r: pb::DeleteRangeResponse,
) -> pb::DeleteRangeResponse {
    if let Some(p) = ns {
        r.prev_kvs.iter_mut().for_each(|kv| strip_kv(p, kv));
    }
    r
}

pub(crate) fn txn_response(ns: Option<&[u8]>, mut r: pb::TxnResponse) -> pb::TxnResponse {
    use pb::response_op::Response;
    let Some(p) = ns else {
        return r;
    };
    for op in &mut r.responses {
        op.response = op.response.take().map(|resp| match resp {
            Response::ResponseRange(x) => Response::ResponseRange(range_response(ns, x)),
            Response::ResponsePut(x) => Response::ResponsePut(put_response(ns, x)),
            Response::ResponseDeleteRange(x) => {
                Response::ResponseDeleteRange(delete_response(ns, x))
            }
            Response::ResponseTxn(x) => Response::ResponseTxn(txn_response(Some(p), x)),
        });
    }
    r
}

pub(crate) fn watch_request(
    ns: Option<&[u8]>,
    mut r: pb::WatchCreateRequest,
) -> pb::WatchCreateRequest {
    if let Some(p) = ns {
        map_key(p, &mut r.key);
        map_end(p, &mut r.range_end);
    }
    r
}

pub(crate) fn watch_response(ns: Option<&[u8]>, mut r: pb::WatchResponse) -> pb::WatchResponse {
    if let Some(p) = ns {
        for event in &mut r.events {
            event.kv.iter_mut().for_each(|kv| strip_kv(p, kv));
            event.prev_kv.iter_mut().for_each(|kv| strip_kv(p, kv));
        }
    }
    r
}

/// The keys of a `Lease/LeaseTimeToLive` answer: those inside the namespace, stripped; keys
/// of the same lease outside it are left out (as Go's `namespace.NewLease` does).
pub(crate) fn lease_keys(
    ns: Option<&[u8]>,
    mut r: pb::LeaseTimeToLiveResponse,
) -> pb::LeaseTimeToLiveResponse {
    if let Some(p) = ns {
        r.keys.retain(|k| k.starts_with(p));
        r.keys.iter_mut().for_each(|k| strip(p, k));
    }
    r
}

/// `Lock/Lock`'s `name` (the lock's key prefix is `name + "/"` on the server).
pub(crate) fn lock_request(
    ns: Option<&[u8]>,
    mut r: v3lockpb::LockRequest,
) -> v3lockpb::LockRequest {
    if let Some(p) = ns {
        map_key(p, &mut r.name);
    }
    r
}

/// The key of a `Lock/Lock` answer, stripped.
pub(crate) fn lock_response_key(ns: Option<&[u8]>, mut key: Vec<u8>) -> Vec<u8> {
    if let Some(p) = ns {
        strip(p, &mut key);
    }
    key
}

/// An election name (`Campaign`, `Leader`, `Observe`).
pub(crate) fn election_name(ns: Option<&[u8]>, mut name: Vec<u8>) -> Vec<u8> {
    if let Some(p) = ns {
        map_key(p, &mut name);
    }
    name
}

/// A `LeaderKey` going out (`Proclaim`, `Resign`): its name and key.
pub(crate) fn leader_key_in(
    ns: Option<&[u8]>,
    mut k: v3electionpb::LeaderKey,
) -> v3electionpb::LeaderKey {
    if let Some(p) = ns {
        map_key(p, &mut k.name);
        map_key(p, &mut k.key);
    }
    k
}

/// A `LeaderKey` coming back (`Campaign`): its name and key, stripped.
pub(crate) fn leader_key_out(
    ns: Option<&[u8]>,
    mut k: v3electionpb::LeaderKey,
) -> v3electionpb::LeaderKey {
    if let Some(p) = ns {
        strip(p, &mut k.name);
        strip(p, &mut k.key);
    }
    k
}

/// The leader's key-value of a `Leader`/`Observe` answer, stripped.
pub(crate) fn leader_kv(ns: Option<&[u8]>, mut kv: mvccpb::KeyValue) -> mvccpb::KeyValue {
    if let Some(p) = ns {
        strip_kv(p, &mut kv);
    }
    kv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ns: &[u8], key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let r = range_request(
            Some(ns),
            pb::RangeRequest {
                key: key.to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            },
        );
        (r.key, r.range_end)
    }

    #[test]
    fn range_ends_map_like_gos_prefix_interval() {
        // Single key: no end.
        assert_eq!(range(b"x/", b"k", b""), (b"x/k".to_vec(), Vec::new()));
        // From-key / whole key space: the namespace's end.
        assert_eq!(
            range(b"x/", b"\0", b"\0"),
            (b"x/\0".to_vec(), b"x0".to_vec())
        );
        assert_eq!(range(b"x/", b"k", b"\0"), (b"x/k".to_vec(), b"x0".to_vec()));
        // A prefix end computed by the caller in the view's key space: prefixed.
        assert_eq!(range(b"x/", b"a", b"b"), (b"x/a".to_vec(), b"x/b".to_vec()));
        // Trailing 0xff: dropped before the increment (Go would give "b\0").
        assert_eq!(range(b"a\xff", b"k", b"\0").1, b"b".to_vec());
        // All 0xff: the end of the whole key space.
        assert_eq!(range(b"\xff\xff", b"k", b"\0").1, vec![0]);
    }

    #[test]
    fn without_a_namespace_nothing_moves() {
        let req = pb::RangeRequest {
            key: b"k".to_vec(),
            range_end: vec![0],
            ..Default::default()
        };
        let ptr = req.key.as_ptr();
        let out = range_request(None, req);
        assert_eq!(out.key.as_ptr(), ptr);
        assert_eq!(out.range_end, vec![0]);
    }

    #[test]
    fn nested_txn_ops_and_answers_are_mapped() {
        use pb::request_op::Request;
        use pb::response_op::Response;
        let inner = pb::TxnRequest {
            compare: vec![pb::Compare {
                key: b"c".to_vec(),
                range_end: vec![0],
                ..Default::default()
            }],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestPut(pb::PutRequest {
                    key: b"p".to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        let outer = pb::TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(inner)),
            }],
        };
        let mapped = txn_request(Some(b"n/"), outer);
        let Some(Request::RequestTxn(inner)) = &mapped.failure[0].request else {
            panic!("nested txn lost");
        };
        assert_eq!(inner.compare[0].key, b"n/c");
        assert_eq!(inner.compare[0].range_end, b"n0");
        let Some(Request::RequestPut(put)) = &inner.success[0].request else {
            panic!("nested put lost");
        };
        assert_eq!(put.key, b"n/p");

        let kv = |k: &[u8]| mvccpb::KeyValue {
            key: k.to_vec(),
            ..Default::default()
        };
        let answer = pb::TxnResponse {
            responses: vec![pb::ResponseOp {
                response: Some(Response::ResponseTxn(pb::TxnResponse {
                    responses: vec![pb::ResponseOp {
                        response: Some(Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                            prev_kvs: vec![kv(b"n/d")],
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let stripped = txn_response(Some(b"n/"), answer);
        let Some(Response::ResponseTxn(t)) = &stripped.responses[0].response else {
            panic!("nested answer lost");
        };
        let Some(Response::ResponseDeleteRange(d)) = &t.responses[0].response else {
            panic!("nested delete answer lost");
        };
        assert_eq!(d.prev_kvs[0].key, b"d");
    }
}
