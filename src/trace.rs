//! `tracing` instrumentation (feature `tracing`), behind macros that keep call sites to one
//! line: with the feature they expand to `tracing` calls, without it to nothing at all (their
//! arguments are not even evaluated).
//!
//! What is emitted (targets are the module paths, all under `etcd_lock`):
//!
//! | name | kind, level | fields |
//! |---|---|---|
//! | `rpc` | span, DEBUG, one per unary RPC | `method`, `endpoint`, `attempt` (last), `outcome` |
//! | `retry` | event, INFO | `method`, `attempt`, `endpoint`, `reason` |
//! | `failover` | event, WARN | `from`, `to` (endpoint URLs) |
//! | `token renewed` | event, INFO | `user` |
//! | `watch resume` | event, INFO | `watch`, `start_revision` |
//! | `keep-alive lost` | event, WARN | `lease`, `reason` |
//! | `session lost` | event, WARN | `lease` |
//! | `lock acquired`, `lock released` | event, INFO | `lock`, `key`, `fencing_token`, `outcome` (released) |
//! | `election won` | event, INFO | `election`, `key`, `revision` |
//! | `election resigned` | event, INFO | `key`, `revision`, `outcome` |
//!
//! Never recorded: values of keys, passwords, tokens. Lock and election names and keys are
//! recorded with non-printable bytes escaped.

/// An event named `$name` (also its message) at level `$level` (`TRACE` ... `ERROR`), with
/// `tracing` field syntax after the name; nothing without the feature.
macro_rules! event {
    ($level:ident, $name:literal $(, $($fields:tt)+)?) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::event!(name: $name, ::tracing::Level::$level, $($($fields)+,)? $name);
        }
    };
}
pub(crate) use event;

/// The `rpc` span of one unary call, handed to the code that makes the attempts so that it
/// can record each attempt on it (without the feature: nothing, and no field).
#[derive(Debug, Clone)]
pub(crate) struct RpcSpan(#[cfg(feature = "tracing")] tracing::Span);

impl RpcSpan {
    /// Records attempt number `attempt` and the endpoint it goes to (`endpoint` is only
    /// called when a subscriber wants the span).
    #[inline]
    pub(crate) fn attempt(&self, attempt: usize, endpoint: impl FnOnce() -> String) {
        #[cfg(feature = "tracing")]
        if !self.0.is_disabled() {
            self.0.record("attempt", attempt as u64);
            self.0.record("endpoint", endpoint().as_str());
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (attempt, endpoint);
    }
}

/// Runs one unary call (`call` makes its attempts) inside an `rpc` span, and records its
/// outcome there.
#[cfg(feature = "tracing")]
pub(crate) fn rpc<T, F, Fut>(
    method: &'static str,
    call: F,
) -> impl std::future::Future<Output = crate::Result<T>>
where
    F: FnOnce(RpcSpan) -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    use tracing::field::Empty;
    use tracing::Instrument;
    let span = tracing::debug_span!(
        "rpc",
        method,
        endpoint = Empty,
        attempt = Empty,
        outcome = Empty
    );
    // Not boxed here: the unary path boxes the whole call (`Client::unary_encoded`), so the
    // span wrapper adds no copy of the (large) call future to any caller's.
    let attempts = call(RpcSpan(span.clone()));
    async move {
        let result = attempts.instrument(span.clone()).await;
        if !span.is_disabled() {
            span.record("outcome", outcome(&result).as_str());
        }
        result
    }
}

/// Without the feature: the call itself, untouched.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn rpc<F, Fut>(_method: &'static str, call: F) -> Fut
where
    F: FnOnce(RpcSpan) -> Fut,
{
    call(RpcSpan())
}

/// `ok`, or what kind of failure: etcd's error kind, else the gRPC code, else the error class.
#[cfg(feature = "tracing")]
fn outcome<T>(result: &crate::Result<T>) -> String {
    use crate::Error;
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => match (e.etcd_kind(), e.code()) {
            (Some(kind), _) => format!("{kind:?}"),
            (None, Some(code)) => format!("{code:?}"),
            (None, None) => match e {
                Error::Timeout { .. } => "timeout".to_string(),
                Error::InvalidArgument { .. } => "invalid argument".to_string(),
                _ => "error".to_string(),
            },
        },
    }
}
