//! One error type for everything the client does.
//!
//! etcd reports its own failures as gRPC statuses whose message starts with `etcdserver:`.
//! [`Error::Etcd`] keeps the status as received (a [`GrpcStatus`]: [`Code`] and message) and
//! adds a named [`EtcdErrorKind`] so callers can match on meaning instead of on strings. Input
//! that etcd would refuse, or that can never be right, is refused before anything goes on the
//! wire with [`Error::InvalidArgument`], which names the argument.
//!
//! The types here are the crate's own: a tonic upgrade does not change them. (The one place
//! where tonic and prost types are public on purpose is [`crate::proto`].)
//!
//! # Text and causes
//!
//! An error's text (`Display`) says what went wrong in terms of this library's API and never
//! repeats its cause: when there is one (the failure behind a request timeout, the transport
//! error behind a gRPC status, the stream error that interrupted a snapshot), it is the
//! error's [`source`](std::error::Error::source). Print the whole chain to see it, e.g. with
//! anyhow's `{:#}`, or by walking `source()`:
//!
//! ```
//! fn chain(error: &dyn std::error::Error) -> String {
//!     let mut text = error.to_string();
//!     let mut cause = error.source();
//!     while let Some(c) = cause {
//!         text = format!("{text}: {c}");
//!         cause = c.source();
//!     }
//!     text
//! }
//! let e = etcd_lock::Error::LockTimeout {
//!     name: "jobs/nightly".into(),
//!     after: std::time::Duration::from_secs(2),
//! };
//! assert!(e.is_timeout());
//! assert_eq!(
//!     chain(&e),
//!     "lock jobs/nightly was not acquired within 2s (other sessions held it or were queued first)"
//! );
//! ```

use std::time::Duration;

/// Which message of a call [`Error::MessageTooLarge`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The request (refused before it was sent): `ClientOptions::max_request_bytes`.
    Request,
    /// The response (dropped after it arrived): `ClientOptions::max_response_bytes`.
    Response,
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
        })
    }
}

/// Shorthand for `Result<T, etcd_lock::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to etcd or using a lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was refused before anything was sent.
    #[error("invalid argument `{argument}`: {reason}")]
    InvalidArgument {
        /// The name of the refused argument (`key`, `ttl`, `endpoints`, ...).
        argument: &'static str,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },

    /// No endpoint could be reached within the connect timeout.
    #[error("could not connect to etcd at {endpoints}: {reason} (is etcd running, and reachable at these addresses?)")]
    Connect {
        /// The endpoints that were tried, comma separated.
        endpoints: String,
        /// The last connection error seen.
        reason: String,
    },

    /// TLS could not be set up: a CA bundle, certificate or key that cannot be used, a server
    /// certificate that is not trusted or not valid for the server name, or a server that
    /// refused the client certificate. `reason` carries the innermost cause (rustls' text).
    #[error("TLS error: {reason}")]
    Tls {
        /// What went wrong, naming the endpoint or file when known, and what to check.
        reason: String,
    },

    /// The server does not implement this RPC (e.g. `Auth/AuthStatus` before etcd 3.5).
    #[error("{method} is not supported by this etcd server: {reason}")]
    Unsupported {
        /// The gRPC method, e.g. `/etcdserverpb.Auth/AuthStatus`.
        method: &'static str,
        /// Which etcd versions have it.
        reason: String,
    },

    /// A request did not complete within the client's request timeout.
    ///
    /// When earlier attempts failed and were retried on other endpoints until the deadline,
    /// `last_error` keeps the last of those failures (e.g. a connection closed by a server
    /// that is not etcd), so the cause is not lost: it is the error's
    /// [`source`](std::error::Error::source), and the text says there is one without repeating
    /// it (print the chain, e.g. anyhow's `{:#}`, to see it).
    #[error(
        "{method} timed out after {after:?}{} (raise the request timeout or check cluster health)",
        if last_error.is_some() { "; the last attempt failed" } else { "" }
    )]
    Timeout {
        /// The gRPC method, e.g. `/etcdserverpb.KV/Range`.
        method: &'static str,
        /// The timeout that expired.
        after: Duration,
        /// The failure of the last attempt before the deadline, when there was one.
        #[source]
        last_error: Option<Box<Error>>,
    },

    /// etcd answered with one of its own, known errors.
    #[error("{kind}: {}", status.message())]
    Etcd {
        /// What the error means.
        kind: EtcdErrorKind,
        /// The status as received (code and message kept).
        status: Box<GrpcStatus>,
    },

    /// Any other gRPC status (transport failure, unknown server error, ...). The text is the
    /// status's code and message; for a transport failure, the chain of causes down to the I/O
    /// error (e.g. `broken pipe`) is the [`source`](std::error::Error::source), not part of
    /// the text.
    #[error(transparent)]
    Status {
        /// The status as received.
        status: Box<GrpcStatus>,
    },

    /// A message was over the size limit set in `ClientOptions::with_max_message_bytes`:
    /// a request (refused before it was sent) or a response (dropped after it arrived).
    #[error("{method}: {what} of {bytes} bytes is over the client's {limit}-byte limit (raise it with ClientOptions::with_max_message_bytes, or ask for less, e.g. with a range limit)")]
    MessageTooLarge {
        /// The gRPC method.
        method: &'static str,
        /// Which message was over its limit.
        what: MessageKind,
        /// The message's protobuf size.
        bytes: usize,
        /// The limit in force.
        limit: usize,
    },

    /// A watch could not start (or was stopped) because its revision was compacted away.
    #[error("watch revision was compacted; the oldest revision still available is {compact_revision} (restart from it, or re-read the current state)")]
    WatchCompacted {
        /// The current compaction revision reported by etcd.
        compact_revision: i64,
    },

    /// A watch was cancelled by the server or the stream ended.
    #[error("watch stopped: {reason}")]
    WatchClosed {
        /// Why the watch ended, as far as the client knows.
        reason: String,
    },

    /// A watcher fell too far behind: its buffer of undelivered responses (see
    /// `WatchOptions::with_buffer`) was full when the next one arrived, so the watch was
    /// cancelled instead of dropping events or stalling the other watches of the client.
    /// Every response before `next_revision` was delivered; none at or after it.
    #[error("watcher fell behind (its buffer was full) and was ended; watch again with start revision {next_revision} and read it faster, or give it a larger buffer")]
    WatchLagged {
        /// The first revision not delivered: pass it to `WatchOptions::with_start_revision`.
        next_revision: i64,
    },

    /// The session's lease expired, was revoked, or could not be kept alive.
    #[error("session lost: lease {lease:x} is gone (expired, revoked, or keep-alive failed); open a new session")]
    SessionLost {
        /// The lease ID of the lost session.
        lease: i64,
    },

    /// A keep-alive answered TTL 0: the lease expired or was revoked.
    #[error("lease {lease:x} expired or was revoked")]
    LeaseExpired {
        /// The lease ID.
        lease: i64,
    },

    /// `Locker::try_lock` found the lock held by another session.
    #[error("lock {name} is held by another session")]
    Locked {
        /// The lock name (lossy for non-UTF-8 names).
        name: String,
    },

    /// `Locker::lock_timeout` did not get the lock within its bound. The waiter's key is
    /// removed (see `Locker::lock_timeout`); nothing was taken.
    #[error("lock {name} was not acquired within {after:?} (other sessions held it or were queued first)")]
    LockTimeout {
        /// The lock name (lossy for non-UTF-8 names).
        name: String,
        /// The bound that expired.
        after: Duration,
    },

    /// The lock or leadership was not held any more when the operation ran (its key was
    /// deleted or replaced: released elsewhere, or its lease expired).
    #[error("key {key} is not held any more (released elsewhere or its lease expired); take the lock or campaign again")]
    NotHeld {
        /// The lock key that was expected.
        key: String,
    },

    /// The same session already holds (or waits for) this lock name.
    #[error("session already holds or waits for lock {name}; a session owns one key per name")]
    AlreadyHeld {
        /// The lock name.
        name: String,
    },

    /// The server sent something the client cannot interpret (missing field, unexpected shape).
    #[error("unexpected response from etcd: {0}")]
    Protocol(String),

    /// A `Maintenance/Snapshot` stream was refused: its trailing sha256 did not match, it ended
    /// early, or the member was lost mid-stream (`cause` then holds the transport error).
    #[error("snapshot refused after {received} bytes: {failure}")]
    Snapshot {
        /// What was wrong with the stream.
        failure: SnapshotFailure,
        /// Bytes received (and written) before the failure was seen.
        received: u64,
        /// The error that ended the stream, for [`SnapshotFailure::Interrupted`].
        #[source]
        cause: Option<Box<Error>>,
    },
}

impl Error {
    pub(crate) fn invalid(argument: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            argument,
            reason: reason.into(),
        }
    }

    /// Classifies a gRPC status received from etcd.
    pub(crate) fn from_status(status: tonic::Status) -> Self {
        #[cfg(feature = "tls")]
        if let Some(reason) = crate::support::tls::failure_in(&status) {
            return Error::Tls { reason };
        }
        let status = unwrap_relayed(status);
        match EtcdErrorKind::from_message(status.message()) {
            Some(kind) => Error::Etcd {
                kind,
                status: Box::new(GrpcStatus(status)),
            },
            None => Error::Status {
                status: Box::new(GrpcStatus(status)),
            },
        }
    }

    /// The gRPC code of a server-side error (`None` for client-side errors).
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Etcd { status, .. } | Error::Status { status } => Some(status.code()),
            Error::WatchCompacted { .. } => Some(Code::OutOfRange),
            _ => None,
        }
    }

    /// The named etcd error, if this is one.
    pub fn etcd_kind(&self) -> Option<EtcdErrorKind> {
        match self {
            Error::Etcd { kind, .. } => Some(*kind),
            Error::WatchCompacted { .. } => Some(EtcdErrorKind::Compacted),
            Error::LeaseExpired { .. } => Some(EtcdErrorKind::LeaseNotFound),
            _ => None,
        }
    }

    /// True for "required revision has been compacted", from a request or a watch.
    pub fn is_compacted(&self) -> bool {
        self.etcd_kind() == Some(EtcdErrorKind::Compacted)
    }

    /// True when the lease named in the request does not exist (expired or revoked).
    pub fn is_lease_not_found(&self) -> bool {
        self.etcd_kind() == Some(EtcdErrorKind::LeaseNotFound)
    }

    /// True when the session (its lease) is gone.
    pub fn is_session_lost(&self) -> bool {
        matches!(self, Error::SessionLost { .. })
    }

    /// True when the request never reached a server that could answer it, or the answer was
    /// "unavailable" (down member, no leader, ...). Such failures are worth retrying elsewhere.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Connect { .. }) || self.code() == Some(Code::Unavailable)
    }

    /// True for a client-side timeout: a request's ([`Error::Timeout`]) or a bounded lock
    /// wait's ([`Error::LockTimeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::LockTimeout { .. })
    }

    /// True when etcd refused the request for lack of permission (`etcdserver: permission
    /// denied`): the user's roles do not cover the key.
    pub fn is_permission_denied(&self) -> bool {
        self.etcd_kind() == Some(EtcdErrorKind::PermissionDenied)
    }

    /// True when a user name and password were refused (`etcdserver: authentication failed`).
    pub fn is_auth_failed(&self) -> bool {
        self.etcd_kind() == Some(EtcdErrorKind::AuthFailed)
    }

    /// True for etcd's answers that a fresh auth token may cure: the token expired or is
    /// unknown (`invalid auth token`), the auth store changed since the token was checked
    /// (`revision of auth store is old`), or no token was sent (`user name is empty`).
    pub(crate) fn wants_new_token(&self) -> bool {
        matches!(
            self.etcd_kind(),
            Some(
                EtcdErrorKind::InvalidAuthToken
                    | EtcdErrorKind::AuthOldRevision
                    | EtcdErrorKind::UserEmpty
            )
        )
    }
}

/// etcd's Lock and Election services call the server's own KV API through an in-process gRPC
/// client and return that client's error as `Unknown` with Go's status text, e.g. `rpc error:
/// code = PermissionDenied desc = etcdserver: permission denied`. Such a status is read as the
/// status it relays (code and message), so it maps to the same typed kind as a direct answer.
fn unwrap_relayed(status: tonic::Status) -> tonic::Status {
    if status.code() != tonic::Code::Unknown {
        return status;
    }
    match parse_relayed(status.message()) {
        Some((code, desc)) => {
            let desc = desc.to_owned();
            tonic::Status::with_metadata(code, desc, status.metadata().clone())
        }
        None => status,
    }
}

/// Reads Go's `rpc error: code = NAME desc = TEXT` into its code and text.
pub(crate) fn parse_relayed(text: &str) -> Option<(tonic::Code, &str)> {
    let (name, desc) = text
        .strip_prefix("rpc error: code = ")?
        .split_once(" desc = ")?;
    Some((code_named(name)?.to_tonic(), desc))
}

/// The gRPC code Go's `codes.Code.String()` spells `name`.
fn code_named(name: &str) -> Option<Code> {
    Some(match name {
        "OK" => Code::Ok,
        "Canceled" => Code::Cancelled,
        "Unknown" => Code::Unknown,
        "InvalidArgument" => Code::InvalidArgument,
        "DeadlineExceeded" => Code::DeadlineExceeded,
        "NotFound" => Code::NotFound,
        "AlreadyExists" => Code::AlreadyExists,
        "PermissionDenied" => Code::PermissionDenied,
        "ResourceExhausted" => Code::ResourceExhausted,
        "FailedPrecondition" => Code::FailedPrecondition,
        "Aborted" => Code::Aborted,
        "OutOfRange" => Code::OutOfRange,
        "Unimplemented" => Code::Unimplemented,
        "Internal" => Code::Internal,
        "Unavailable" => Code::Unavailable,
        "DataLoss" => Code::DataLoss,
        "Unauthenticated" => Code::Unauthenticated,
        _ => return None,
    })
}

/// A gRPC status as received: its [`Code`] and message.
///
/// Its text is `gRPC error CODE: MESSAGE` (the message left out when it only repeats the
/// cause's text). Its [`source`](std::error::Error::source) is what tonic gives as the status's
/// cause, for a transport failure the chain down to the I/O error; the types in that chain
/// are private to this crate or follow tonic's version, this one does not.
#[derive(Debug)]
pub struct GrpcStatus(tonic::Status);

impl GrpcStatus {
    /// The gRPC status code.
    pub fn code(&self) -> Code {
        Code::from_tonic(self.0.code())
    }

    /// The status message (etcd's own text, e.g. `etcdserver: no leader`).
    pub fn message(&self) -> &str {
        self.0.message()
    }

    /// The status as tonic delivered it (for the client's own checks of the source chain).
    pub(crate) fn as_tonic(&self) -> &tonic::Status {
        &self.0
    }

    /// A status made here, not received (e.g. a stream that ended without one).
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        GrpcStatus(tonic::Status::new(code.to_tonic(), message))
    }
}

impl std::fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gRPC error {:?}", self.code())?;
        let message = self.message();
        let repeats_cause =
            std::error::Error::source(&self.0).is_some_and(|cause| cause.to_string() == message);
        if message.is_empty() || repeats_cause {
            Ok(())
        } else {
            write!(f, ": {message}")
        }
    }
}

impl std::error::Error for GrpcStatus {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// The 17 gRPC status codes (see gRPC's `statuscodes.md`), as [`Error::code`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 0: not an error.
    Ok,
    /// 1: the operation was cancelled, typically by the caller.
    Cancelled,
    /// 2: an unknown error (also tonic's code for a broken connection).
    Unknown,
    /// 3: the request is invalid whatever the system's state (etcd: empty key, bad range...).
    InvalidArgument,
    /// 4: the deadline expired before the operation completed.
    DeadlineExceeded,
    /// 5: a requested entity was not found (etcd: lease not found).
    NotFound,
    /// 6: the entity to create already exists.
    AlreadyExists,
    /// 7: the caller may not do this (etcd: permission denied).
    PermissionDenied,
    /// 8: a resource is exhausted (etcd: request too large, too many requests, no space).
    ResourceExhausted,
    /// 9: the system is not in a state that allows the operation (etcd: not leader...).
    FailedPrecondition,
    /// 10: aborted, typically by a concurrency conflict.
    Aborted,
    /// 11: past the valid range (etcd: compacted or future revision).
    OutOfRange,
    /// 12: the server does not implement the method.
    Unimplemented,
    /// 13: an internal error of the server.
    Internal,
    /// 14: the service is unavailable for now (etcd: no leader, server stopped...).
    Unavailable,
    /// 15: unrecoverable data loss or corruption.
    DataLoss,
    /// 16: no valid credentials (etcd: invalid auth token).
    Unauthenticated,
}

impl Code {
    /// The code's number on the wire (`grpc-status`).
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    pub(crate) fn from_tonic(code: tonic::Code) -> Code {
        use tonic::Code as T;
        match code {
            T::Ok => Code::Ok,
            T::Cancelled => Code::Cancelled,
            T::Unknown => Code::Unknown,
            T::InvalidArgument => Code::InvalidArgument,
            T::DeadlineExceeded => Code::DeadlineExceeded,
            T::NotFound => Code::NotFound,
            T::AlreadyExists => Code::AlreadyExists,
            T::PermissionDenied => Code::PermissionDenied,
            T::ResourceExhausted => Code::ResourceExhausted,
            T::FailedPrecondition => Code::FailedPrecondition,
            T::Aborted => Code::Aborted,
            T::OutOfRange => Code::OutOfRange,
            T::Unimplemented => Code::Unimplemented,
            T::Internal => Code::Internal,
            T::Unavailable => Code::Unavailable,
            T::DataLoss => Code::DataLoss,
            T::Unauthenticated => Code::Unauthenticated,
        }
    }

    fn to_tonic(self) -> tonic::Code {
        tonic::Code::from_i32(self as i32)
    }
}

/// etcd's own errors, identified by the message etcd sends (its `rpctypes` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EtcdErrorKind {
    /// `etcdserver: key is not provided`
    EmptyKey,
    /// `etcdserver: key not found` (put with `ignore_value`/`ignore_lease` on a missing key)
    KeyNotFound,
    /// `etcdserver: value is provided` (value given together with `ignore_value`)
    ValueProvided,
    /// `etcdserver: lease is provided` (lease given together with `ignore_lease`)
    LeaseProvided,
    /// `etcdserver: too many operations in txn request` (server flag `--max-txn-ops`, default 128)
    TooManyOps,
    /// `etcdserver: duplicate key given in txn request`
    DuplicateKey,
    /// `etcdserver: mvcc: required revision has been compacted`
    Compacted,
    /// `etcdserver: mvcc: required revision is a future revision`
    FutureRevision,
    /// `etcdserver: mvcc: database space exceeded`
    NoSpace,
    /// `etcdserver: requested lease not found`
    LeaseNotFound,
    /// `etcdserver: lease already exists`
    LeaseExists,
    /// `etcdserver: too large lease TTL`
    LeaseTtlTooLarge,
    /// `etcdserver: request is too large` (server flag `--max-request-bytes`, default 1.5 MiB)
    RequestTooLarge,
    /// `etcdserver: too many requests`
    TooManyRequests,
    /// `etcdserver: no leader`
    NoLeader,
    /// `etcdserver: not leader`
    NotLeader,
    /// `etcdserver: leader changed`
    LeaderChanged,
    /// `etcdserver: request timed out` (and its variants): the request may or may not apply
    ServerTimeout,
    /// `etcdserver: server stopped`
    Stopped,
    /// `etcdserver: unhealthy cluster`
    Unhealthy,
    /// `etcdserver: permission denied`
    PermissionDenied,
    /// `etcdserver: invalid auth token`
    InvalidAuthToken,
    /// `etcdserver: authentication failed, invalid user ID or password`
    AuthFailed,
    /// `etcdserver: authentication is not enabled`
    AuthNotEnabled,
    /// `etcdserver: user name not found`
    UserNotFound,
    /// `etcdserver: user name is empty` (also: auth is on and the request carried no token)
    UserEmpty,
    /// `etcdserver: role name is empty`
    RoleEmpty,
    /// `etcdserver: role is not granted to the user`
    RoleNotGranted,
    /// `etcdserver: permission is not granted to the role`
    PermissionNotGranted,
    /// `etcdserver: invalid auth management` (e.g. revoking root's root role)
    InvalidAuthManagement,
    /// `etcdserver: revision of auth store is old` (users or roles changed meanwhile; retry)
    AuthOldRevision,
    /// `etcdserver: user name already exists`
    UserExists,
    /// `etcdserver: role name not found`
    RoleNotFound,
    /// `etcdserver: role name already exists`
    RoleExists,
    /// `etcdserver: root user does not exist` / `does not have root role`
    RootUserMissing,
    /// `etcdserver: member not found`
    MemberNotFound,
    /// `etcdserver: corrupt cluster`
    Corrupt,
    /// `etcdserver: member ID already exist`
    MemberExists,
    /// `etcdserver: Peer URLs already exists`
    PeerUrlExists,
    /// `etcdserver: given member URLs are invalid`
    MemberBadUrls,
    /// `etcdserver: can only promote a learner member`
    MemberNotLearner,
    /// `etcdserver: can only promote a learner member which is in sync with leader`
    LearnerNotReady,
    /// `etcdserver: too many learner members in cluster`
    TooManyLearners,
    /// `etcdserver: re-configuration failed due to not enough started members`
    MemberNotEnoughStarted,
    /// `etcdserver: bad leader transferee` (`MoveLeader` to a learner or an unknown member)
    BadLeaderTransferee,
    /// `etcdserver: invalid downgrade target version` (3.5+)
    InvalidDowngradeTarget,
    /// `etcdserver: wrong downgrade target version format` (3.5+)
    WrongDowngradeVersionFormat,
    /// `etcdserver: no inflight downgrade job` (3.5+)
    NoInflightDowngrade,
    /// `etcdserver: cluster has a downgrade job in progress` (3.5+)
    DowngradeInProgress,
}

impl EtcdErrorKind {
    /// Maps an `etcdserver: ...` status message to its kind; `None` when it is not one of etcd's.
    pub fn from_message(message: &str) -> Option<Self> {
        use EtcdErrorKind::*;
        let m = message.strip_prefix("etcdserver: ")?;
        let kind = match m {
            "key is not provided" => EmptyKey,
            "key not found" => KeyNotFound,
            "value is provided" => ValueProvided,
            "lease is provided" => LeaseProvided,
            "too many operations in txn request" => TooManyOps,
            "duplicate key given in txn request" => DuplicateKey,
            "mvcc: required revision has been compacted" => Compacted,
            "mvcc: required revision is a future revision" => FutureRevision,
            "mvcc: database space exceeded" => NoSpace,
            "requested lease not found" => LeaseNotFound,
            "lease already exists" => LeaseExists,
            "too large lease TTL" => LeaseTtlTooLarge,
            "request is too large" => RequestTooLarge,
            "too many requests" => TooManyRequests,
            "no leader" => NoLeader,
            "not leader" => NotLeader,
            "leader changed" => LeaderChanged,
            "server stopped" => Stopped,
            "unhealthy cluster" => Unhealthy,
            "permission denied" => PermissionDenied,
            "invalid auth token" => InvalidAuthToken,
            "authentication failed, invalid user ID or password" => AuthFailed,
            "authentication is not enabled" => AuthNotEnabled,
            "user name not found" => UserNotFound,
            "user name is empty" => UserEmpty,
            "role name is empty" => RoleEmpty,
            "role is not granted to the user" => RoleNotGranted,
            "permission is not granted to the role" => PermissionNotGranted,
            "invalid auth management" => InvalidAuthManagement,
            "revision of auth store is old" => AuthOldRevision,
            "user name already exists" => UserExists,
            "role name not found" => RoleNotFound,
            "role name already exists" => RoleExists,
            "root user does not exist" | "root user does not have root role" => RootUserMissing,
            "member not found" => MemberNotFound,
            "corrupt cluster" => Corrupt,
            "member ID already exist" => MemberExists,
            "Peer URLs already exists" => PeerUrlExists,
            "given member URLs are invalid" => MemberBadUrls,
            "can only promote a learner member" => MemberNotLearner,
            "can only promote a learner member which is in sync with leader" => LearnerNotReady,
            "too many learner members in cluster" => TooManyLearners,
            "re-configuration failed due to not enough started members" => MemberNotEnoughStarted,
            "bad leader transferee" => BadLeaderTransferee,
            "invalid downgrade target version" => InvalidDowngradeTarget,
            "wrong downgrade target version format" => WrongDowngradeVersionFormat,
            "no inflight downgrade job" => NoInflightDowngrade,
            "cluster has a downgrade job in progress" => DowngradeInProgress,
            m if m.starts_with("request timed out") => ServerTimeout,
            _ => return None,
        };
        Some(kind)
    }
}

impl std::fmt::Display for EtcdErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use EtcdErrorKind::*;
        let text = match self {
            EmptyKey => "empty key",
            KeyNotFound => "key not found",
            ValueProvided => "value given with ignore_value",
            LeaseProvided => "lease given with ignore_lease",
            TooManyOps => "too many operations in one txn",
            DuplicateKey => "duplicate key in txn",
            Compacted => "revision compacted",
            FutureRevision => "future revision",
            NoSpace => "database space exceeded",
            LeaseNotFound => "lease not found",
            LeaseExists => "lease already exists",
            LeaseTtlTooLarge => "lease TTL too large",
            RequestTooLarge => "request too large",
            TooManyRequests => "too many requests",
            NoLeader => "no leader",
            NotLeader => "not leader",
            LeaderChanged => "leader changed",
            ServerTimeout => "server-side timeout (the request may have been applied)",
            Stopped => "server stopped",
            Unhealthy => "unhealthy cluster",
            PermissionDenied => "permission denied (the user's roles do not cover this key)",
            InvalidAuthToken => "invalid auth token",
            AuthFailed => "authentication failed (check the user name and password)",
            AuthNotEnabled => "authentication is not enabled on this cluster",
            UserNotFound => "user not found",
            UserEmpty => "no user name (authenticate first: auth is enabled)",
            RoleEmpty => "empty role name",
            RoleNotGranted => "role not granted to the user",
            PermissionNotGranted => "permission not granted to the role",
            InvalidAuthManagement => "invalid auth management",
            AuthOldRevision => "auth store changed during the request (retry)",
            UserExists => "user already exists",
            RoleNotFound => "role not found",
            RoleExists => "role already exists",
            RootUserMissing => {
                "root user missing (add user root with role root before enabling auth)"
            }
            MemberNotFound => "member not found",
            Corrupt => "corrupt cluster",
            MemberExists => "member ID already exists",
            PeerUrlExists => "a member already has these peer URLs",
            MemberBadUrls => "invalid member peer URLs",
            MemberNotLearner => "only a learner can be promoted",
            LearnerNotReady => {
                "learner not in sync with the leader yet (retry the promotion later)"
            }
            TooManyLearners => "too many learners in the cluster",
            MemberNotEnoughStarted => "too few started members for this reconfiguration",
            BadLeaderTransferee => "bad leader transferee (not a voting member)",
            InvalidDowngradeTarget => "invalid downgrade target version",
            WrongDowngradeVersionFormat => "downgrade target version must look like 3.4 or 3.4.0",
            NoInflightDowngrade => "no downgrade in progress",
            DowngradeInProgress => "a downgrade is already in progress",
        };
        f.write_str(text)
    }
}

/// Why a snapshot stream was refused (see [`Error::Snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotFailure {
    /// The trailing sha256 is not the digest of the bytes before it.
    ChecksumMismatch,
    /// The stream ended before the announced size and the 32-byte checksum arrived.
    Truncated,
    /// The stream broke (member lost, connection closed) before it was complete.
    Interrupted,
}

impl std::fmt::Display for SnapshotFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotFailure::ChecksumMismatch => {
                "the trailing sha256 does not match the data (corrupted in transit; take it again)"
            }
            SnapshotFailure::Truncated => "the stream ended early (take the snapshot again)",
            SnapshotFailure::Interrupted => {
                "the stream broke before the end (member lost? take it again, or from another member)"
            }
        })
    }
}

/// `" (<cause>)"` with the innermost error under a status (the I/O or HTTP/2 failure behind a
/// "transport error"), or nothing when the status has no source.
#[cfg(test)]
mod tests {
    use super::*;

    /// The whole chain, as anyhow's `{:#}` prints it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    #[test]
    fn causes_are_sources_and_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let mut status = tonic::Status::unknown("transport error");
        status.set_source(std::sync::Arc::new(io));
        let last = Error::from_status(status);
        assert_eq!(last.to_string(), "gRPC error Unknown: transport error");
        assert_eq!(
            chain(&last),
            "gRPC error Unknown: transport error: broken pipe"
        );
        let e = Error::Timeout {
            method: "/etcdserverpb.KV/Range",
            after: Duration::from_secs(3),
            last_error: Some(Box::new(last)),
        };
        assert_eq!(
            chain(&e),
            "/etcdserverpb.KV/Range timed out after 3s; the last attempt failed (raise the \
             request timeout or check cluster health): gRPC error Unknown: transport error: \
             broken pipe"
        );
        assert_eq!(chain(&e).matches("broken pipe").count(), 1);
        let bare = Error::Timeout {
            method: "/etcdserverpb.KV/Range",
            after: Duration::from_secs(3),
            last_error: None,
        };
        assert!(!bare.to_string().contains("last attempt"));
        assert!(std::error::Error::source(&bare).is_none());
        // A status whose message is its cause's text shows it once.
        let mut status = tonic::Status::unavailable("connection reset");
        status.set_source(std::sync::Arc::new(std::io::Error::other(
            "connection reset",
        )));
        assert_eq!(
            chain(&Error::from_status(status)),
            "gRPC error Unavailable: connection reset"
        );
        let connect = Error::Connect {
            endpoints: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert!(!connect.to_string().contains("--endpoints"), "{connect}");
    }

    #[test]
    fn maps_etcd_messages_and_keeps_the_code() {
        let e = Error::from_status(tonic::Status::out_of_range(
            "etcdserver: mvcc: required revision has been compacted",
        ));
        assert!(e.is_compacted());
        assert_eq!(e.code(), Some(Code::OutOfRange));
        let e = Error::from_status(tonic::Status::unavailable(
            "etcdserver: request timed out, possibly due to previous leader failure",
        ));
        assert_eq!(e.etcd_kind(), Some(EtcdErrorKind::ServerTimeout));
        assert!(e.is_unavailable());
        let e = Error::from_status(tonic::Status::internal("boom"));
        assert!(matches!(e, Error::Status { .. }));
    }

    #[test]
    fn relayed_go_status_text_maps_to_the_relayed_kind() {
        let e = Error::from_status(tonic::Status::unknown(
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
        ));
        assert!(e.is_permission_denied());
        assert_eq!(e.code(), Some(Code::PermissionDenied));
        let e = Error::from_status(tonic::Status::unknown(
            "rpc error: code = NotFound desc = etcdserver: requested lease not found",
        ));
        assert!(e.is_lease_not_found());
        let e = Error::from_status(tonic::Status::unknown("rpc error: code = Bogus desc = x"));
        assert_eq!(e.code(), Some(Code::Unknown));
    }

    #[test]
    fn codes_match_grpc_numbers_and_the_cause_is_the_source() {
        for n in 0..=16 {
            let code = Code::from_tonic(tonic::Code::from_i32(n));
            assert_eq!(code.as_i32(), n);
            assert_eq!(code.to_tonic() as i32, n);
            assert_eq!(
                format!("{code:?}"),
                format!("{:?}", tonic::Code::from_i32(n))
            );
        }
        let e = Error::from_status(tonic::Status::internal("boom"));
        let Error::Status { status } = &e else {
            panic!("{e:?}");
        };
        assert_eq!((status.code(), status.message()), (Code::Internal, "boom"));
        assert_eq!(e.to_string(), "gRPC error Internal: boom");
        // No cause: no source (the status's own text is already in ours).
        assert!(std::error::Error::source(&e).is_none());
        let mut status = tonic::Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(std::io::Error::other("reset by peer")));
        let e = Error::from_status(status);
        let cause = std::error::Error::source(&e);
        assert!(cause.is_some_and(|c| c.is::<std::io::Error>()), "{cause:?}");
    }

    #[test]
    fn result_stays_small() {
        assert!(std::mem::size_of::<Error>() <= 48);
    }
}
