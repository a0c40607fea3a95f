//! The one path every unary RPC takes: deadline, token, counting, wire log, failover.
//!
//! The typed shell ([`Client::unary`], [`Client::unary_timeout`], [`Client::unary_at`])
//! encodes the request once and decodes the answer; everything between (the attempts, the
//! deadline, token renewal, the wire tap, failover) runs over the encoded bytes in code that
//! is not generic, so it exists once in a binary, however many request types a program sends.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use super::h2channel::{Channel, TransportError};
use crate::http2::Http2Error;
use prost::bytes::Bytes;

use super::rpc::{RawCodec, UnaryRequest};
use super::{Client, Retry};
use crate::error::{Code, Error, EtcdErrorKind, Result};
use crate::trace::RpcSpan;
use crate::wire::CallTap;

/// Where the attempts of one call go.
#[derive(Debug)]
pub(super) enum Target {
    /// The current endpoint, moving on to the next one as the [`Retry`] rule allows.
    Failover(Retry),
    /// This endpoint only (its URL and channel): no failover, no retry, no require-leader
    /// metadata (the calls aimed at one member ask about that member; see `endpoint.rs`).
    Pinned(String, Channel),
}

impl Client {
    /// Sends one unary RPC with the client's request timeout, counting it, logging it to the
    /// wire log when one is attached, and failing over to the next endpoint when `retry` allows.
    pub(crate) async fn unary<Req: UnaryRequest>(
        &self,
        method: &'static str,
        retry: Retry,
        request: Req,
    ) -> Result<Req::Response> {
        let timeout = self.inner.options.request_timeout;
        let answer = self.unary_encoded(method, Target::Failover(retry), timeout, encode(&request));
        decode(answer.await?)
    }

    /// [`Client::unary`] with an explicit deadline (`None`: wait as long as the server takes).
    pub(crate) async fn unary_timeout<Req: UnaryRequest>(
        &self,
        method: &'static str,
        retry: Retry,
        timeout: Option<Duration>,
        request: Req,
    ) -> Result<Req::Response> {
        let answer = self.unary_encoded(method, Target::Failover(retry), timeout, encode(&request));
        decode(answer.await?)
    }

    /// One unary call of encoded `request`, giving the answer's bytes. With the `tracing`
    /// feature it runs in an `rpc` span (see `crate::trace`).
    ///
    /// Boxed, and built here: the attempts' state machine is then compiled once, in this crate.
    /// Returned unboxed, it was compiled again into every crate that awaits a call from generic
    /// code (a user's program calling `Client::put` with its own key type), with the state
    /// machines it awaits (`examples/size` held two copies of the attempt loop and of `send`).
    /// The box also keeps the large attempts future out of every caller's future.
    pub(super) fn unary_encoded(
        &self,
        method: &'static str,
        target: Target,
        timeout: Option<Duration>,
        request: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes>> + Send + '_>> {
        Box::pin(crate::trace::rpc(method, move |span| {
            self.unary_attempts(method, target, timeout, request, span)
        }))
    }

    /// The attempts of one unary call, failing over between endpoints as `target` allows.
    async fn unary_attempts(
        &self,
        method: &'static str,
        target: Target,
        timeout: Option<Duration>,
        request: Bytes,
        span: RpcSpan,
    ) -> Result<Bytes> {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let counters = &self.inner.counters;
        let options = &self.inner.options;
        options.check_request_size(method, request.len())?;
        let mut backoff = Duration::from_millis(25);
        let mut attempts = 0usize;
        let secret = super::token::is_secret(method);
        let mut token_renewed = false;
        // The failure that sent us to the next endpoint: reported if the deadline comes first.
        let mut last_failure: Option<Error> = None;
        let mut tap = CallTap::new(self.wire(), method, secret);
        let timed_out = |last_failure: &mut Option<Error>| Error::Timeout {
            method,
            after: timeout.unwrap_or_default(),
            last_error: last_failure.take().map(Box::new),
        };
        loop {
            // `index`: the position in the endpoint list, for failover (`None` when pinned).
            let (index, channel) = match &target {
                Target::Pinned(_, channel) => (None, channel.clone()),
                // A password never goes over a plaintext endpoint of a client with TLS settings.
                Target::Failover(_) if secret => {
                    let (index, channel) = self.current_for_secret(method)?;
                    (Some(index), channel)
                }
                Target::Failover(_) => {
                    let (index, channel) = self.current();
                    (Some(index), channel)
                }
            };
            let url = || match (&target, index) {
                (Target::Pinned(url, _), _) => url.clone(),
                (_, index) => self.endpoint_url(index.unwrap_or_default()),
            };
            // Authenticate goes without a token: etcd checks a stale one even there.
            let token = (method != super::token::AUTHENTICATE)
                .then(|| self.token())
                .flatten();
            let mut req = self.request_with_token(request.clone(), token.as_ref());
            if options.require_leader && index.is_some() {
                crate::support::require_leader(&mut req);
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(remaining) = remaining {
                if remaining.is_zero() {
                    return Err(timed_out(&mut last_failure));
                }
                req.set_timeout(remaining);
            }
            tap.attempt(url, &req);
            counters.unary_sent(request.len());
            attempts += 1;
            span.attempt(attempts, url);
            let call = send(channel, options.max_response_bytes, method, req);
            let outcome = match remaining {
                Some(remaining) => match tokio::time::timeout(remaining, call).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(tonic::Status::deadline_exceeded("client-side deadline")),
                },
                None => call.await,
            };
            tap.outcome(&outcome);
            let status = match outcome {
                Ok(response) => {
                    counters.unary_received(response.len());
                    return Ok(response);
                }
                Err(status) => status,
            };
            if let Some(too_large) =
                super::grpc::too_large(method, &status, options.max_response_bytes)
            {
                return Err(too_large);
            }
            // tonic enforces `grpc-timeout` itself and reports it as Cancelled.
            let expired = deadline.is_some_and(|d| Instant::now() + Duration::from_millis(1) >= d);
            if expired
                && matches!(
                    status.code(),
                    tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                )
            {
                // The member may be stopped or cut off: later requests go elsewhere.
                if let Some(index) = index {
                    self.fail_over(index);
                }
                return Err(timed_out(&mut last_failure));
            }
            if status.code() == tonic::Code::DeadlineExceeded {
                return Err(Error::from_status(status));
            }
            let error = Error::from_status(status);
            // An expired token: authenticate again and repeat the request, once.
            // Never for Authenticate itself (it sends no token: renewing would call
            // it again from inside the renewal), and never past our deadline.
            if !token_renewed && method != super::token::AUTHENTICATE && self.token_may_help(&error)
            {
                token_renewed = true;
                tap.retry(&"the token was refused: authenticate again, then resend");
                self.renew_token(token.as_ref(), deadline).await?;
                continue;
            }
            let (Target::Failover(retry), Some(index)) = (&target, index) else {
                // Pinned: the answer is about that member, whatever it is.
                return Err(error);
            };
            // Asked to require a leader: once every endpoint said it has none, say so
            // now rather than waiting for one until the deadline.
            let leaderless = options.require_leader
                && error.etcd_kind() == Some(EtcdErrorKind::NoLeader)
                && attempts >= self.members().len().max(1);
            if !should_retry(&error, *retry) || attempts >= 16 || leaderless {
                // Not repeated (it may have been applied), but the next request should
                // not go to a member whose connection just broke.
                if member_failed(&error) {
                    self.fail_over(index);
                }
                return Err(error);
            }
            tap.retry(&format_args!("{error}; resent to the next endpoint"));
            crate::trace::event!(INFO, "retry", method, attempt = attempts, endpoint = %self.endpoint_url(index), reason = %error);
            self.fail_over(index);
            last_failure = Some(error);
            // Go through every endpoint once quickly; back off when all were tried.
            if attempts.is_multiple_of(self.members().len().max(1)) {
                let pause = match deadline {
                    Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                    None => backoff,
                };
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// The request's bytes, encoded once for every attempt and the wire log.
pub(super) fn encode(request: &impl prost::Message) -> Bytes {
    Bytes::from(request.encode_to_vec())
}

/// The answer decoded from `bytes`; a message that does not decode is an `Internal` status,
/// as tonic's own prost codec reports it.
pub(super) fn decode<T: prost::Message + Default>(bytes: Bytes) -> Result<T> {
    T::decode(bytes).map_err(|e| Error::from_status(tonic::Status::internal(e.to_string())))
}

/// One attempt on `channel`: the HTTP/2 request for `method` with `request`'s bytes, decoding
/// answers up to `max_response_bytes` (tonic refuses a bigger one from its length prefix,
/// before buffering it; see `grpc.rs`).
pub(super) async fn send(
    channel: Channel,
    max_response_bytes: usize,
    method: &'static str,
    request: tonic::Request<Bytes>,
) -> std::result::Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_response_bytes);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    let response = grpc.unary(request, path, RawCodec).await?;
    Ok(response.into_inner())
}
/// True when the error says the member (or the connection to it) failed, not the request.
fn member_failed(error: &Error) -> bool {
    match error {
        Error::Status { status } => {
            status.code() == Code::Unavailable || is_transport_failure(status.as_tonic())
        }
        Error::Etcd { kind, .. } => matches!(
            kind,
            EtcdErrorKind::NoLeader
                | EtcdErrorKind::NotLeader
                | EtcdErrorKind::Stopped
                | EtcdErrorKind::ServerTimeout
                | EtcdErrorKind::Unhealthy
        ),
        _ => false,
    }
}

/// Decides whether a failed request may go to another endpoint.
///
/// A read goes again after any answer that says the member, not the request, failed. A write
/// goes again only when the failure proves the request never reached etcd (see [`never_sent`]):
/// etcd's own answers (`server stopped`, `no leader`, `leader changed`, `request timed out`)
/// can all come after the proposal was made, and a broken connection may have carried it.
fn should_retry(error: &Error, retry: Retry) -> bool {
    match retry {
        Retry::Idempotent => match error.etcd_kind() {
            Some(kind) => matches!(
                kind,
                EtcdErrorKind::NoLeader
                    | EtcdErrorKind::NotLeader
                    | EtcdErrorKind::Stopped
                    | EtcdErrorKind::ServerTimeout
                    | EtcdErrorKind::LeaderChanged
            ),
            None => match error {
                Error::Status { status } => {
                    status.code() == Code::Unavailable || is_transport_failure(status.as_tonic())
                }
                _ => false,
            },
        },
        Retry::NotSent => match error {
            Error::Status { status } if error.etcd_kind().is_none() => {
                never_sent(status.as_tonic())
            }
            _ => false,
        },
    }
}

/// The channel's own error in `status`'s source chain: the connection failed, not the
/// request.
fn transport_error(status: &tonic::Status) -> Option<&TransportError> {
    let mut next = std::error::Error::source(status);
    while let Some(error) = next {
        if let Some(transport) = error.downcast_ref::<TransportError>() {
            return Some(transport);
        }
        next = error.source();
    }
    None
}

/// True when the channel reports a broken connection rather than an answer from etcd.
pub(super) fn is_transport_failure(status: &tonic::Status) -> bool {
    transport_error(status).is_some()
}

/// True when the failure's source chain proves the request never reached etcd.
///
/// Decided from error types only, never from message text (a proxy in between may say
/// "connect" after it forwarded the request). Proof is one of:
/// - the channel's [`TransportError`] saying the request never left: the connection (TCP,
///   TLS, HTTP/2 handshake) could not be opened, or was found closed before the request was
///   handed to HTTP/2; an I/O error of kind `ConnectionRefused` says the same;
/// - an HTTP/2 `RST_STREAM` with `REFUSED_STREAM`: the server states it did not process the
///   stream (RFC 9113, section 8.7);
/// - an HTTP/2 GOAWAY whose last-stream-id is below the stream's id (RFC 9113, section 6.8);
///   streams the server accepted end with a reset or an I/O error instead, even after a
///   GOAWAY.
fn never_sent(status: &tonic::Status) -> bool {
    let mut next = std::error::Error::source(status);
    while let Some(error) = next {
        if error
            .downcast_ref::<TransportError>()
            .is_some_and(TransportError::never_sent)
        {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        if error
            .downcast_ref::<Http2Error>()
            .is_some_and(Http2Error::not_processed)
        {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::h2channel::Stage;
    use crate::http2::Reason;
    use tonic::{Code, Status};

    /// Whether a write, then a read, failing with `status` would be sent again.
    fn retried(status: Status) -> (bool, bool) {
        let error = Error::from_status(status);
        (
            should_retry(&error, Retry::NotSent),
            should_retry(&error, Retry::Idempotent),
        )
    }

    /// A status whose source chain holds `cause`, as the channel reports a failure after the
    /// request may have left.
    fn caused_by(cause: impl std::error::Error + Send + Sync + 'static) -> Status {
        sent(Some(std::sync::Arc::new(cause)))
    }

    /// The channel's failure at `stage`, as a status.
    fn at(
        stage: Stage,
        cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    ) -> Status {
        TransportError::new(stage, "transport failure", cause).into_status()
    }

    fn sent(cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>) -> Status {
        at(Stage::Sent, cause)
    }

    #[test]
    fn etcd_answers_after_a_proposal_repeat_reads_only() {
        for message in [
            "etcdserver: server stopped",
            "etcdserver: no leader",
            "etcdserver: leader changed",
            "etcdserver: request timed out",
            "etcdserver: request timed out, possibly due to previous leader failure",
        ] {
            assert_eq!(
                retried(Status::unavailable(message)),
                (false, true),
                "{message}"
            );
        }
        let not_leader = Status::failed_precondition("etcdserver: not leader");
        assert_eq!(retried(not_leader), (false, true));
    }

    #[test]
    fn words_in_a_message_prove_nothing() {
        // An Envoy-style proxy says this after it forwarded the request.
        let proxy = "upstream connect error or disconnect/reset before headers. \
                     reset reason: connection failure";
        assert_eq!(retried(Status::unavailable(proxy)), (false, true));
        let h2 = "h2 protocol error: connection error received: not a result of an error";
        assert_eq!(retried(Status::unavailable(h2)), (false, true));
        assert_eq!(
            retried(Status::unknown("tcp connect error: Connection refused")),
            (false, false)
        );
    }

    #[test]
    fn a_failed_connect_repeats_writes() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let connect = at(Stage::Connect, Some(std::sync::Arc::new(reset)));
        assert_eq!(connect.code(), Code::Unavailable);
        assert_eq!(retried(connect), (true, true));
        // No cause at all (the connect timed out): the stage alone is the proof.
        assert_eq!(retried(at(Stage::Connect, None)), (true, true));
        // A connection found closed before the request was handed to HTTP/2.
        let not_sent = at(Stage::NotSent, None);
        assert_eq!(retried(not_sent), (true, true));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(retried(caused_by(refused)).0);
    }

    #[test]
    fn a_connection_lost_after_sending_repeats_reads_only() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(retried(caused_by(reset)), (false, true));
        assert_eq!(retried(sent(None)), (false, true));
        // The same cause without the channel's error: an answer, not a transport failure.
        let plain = Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(!is_transport_failure(&plain));
    }

    #[test]
    fn only_a_refused_stream_among_http2_errors_repeats_writes() {
        let refused = caused_by(Http2Error::Reset(Reason::REFUSED_STREAM));
        assert_eq!(refused.code(), Code::Unavailable);
        assert_eq!(retried(refused), (true, true));
        // A GOAWAY that left the stream out, by its last-stream-id.
        let left_out = caused_by(Http2Error::Refused(Reason::from(0)));
        assert_eq!(retried(left_out), (true, true));
        // A reset, a GOAWAY after the stream was accepted, or a broken connection: the server
        // may have run the request.
        let internal = caused_by(Http2Error::Reset(Reason::from(2)));
        assert!(!retried(internal).0);
        let after_goaway = caused_by(Http2Error::GoAway(Reason::from(0)));
        assert!(!retried(after_goaway).0);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!retried(caused_by(reset)).0);
    }
}
