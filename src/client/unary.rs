//! The one path every unary RPC takes: deadline, token, counting, wire log, failover.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::{Client, Retry};
use crate::error::{Error, EtcdErrorKind, Result};
use crate::wire::{WireMessage, WireRecord};

impl Client {
    /// Sends one unary RPC with the client's request timeout, counting it, logging it to the
    /// wire log when one is attached, and failing over to the next endpoint when `retry` allows.
    pub(crate) async fn unary<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        retry: Retry,
        request: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + std::fmt::Debug,
        Resp: prost::Message + std::fmt::Debug,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.unary_timeout(
            method,
            retry,
            self.inner.options.request_timeout,
            request,
            call,
        )
        .await
    }

    /// [`Client::unary`] with an explicit deadline (`None`: wait as long as the server takes).
    pub(crate) async fn unary_timeout<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        retry: Retry,
        timeout: Option<Duration>,
        request: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + std::fmt::Debug,
        Resp: prost::Message + std::fmt::Debug,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let counters = &self.inner.counters;
        let request_len = request.encoded_len();
        let mut backoff = Duration::from_millis(25);
        let mut attempts = 0usize;
        let secret = crate::auth::is_secret(method);
        let mut token_renewed = false;
        // The failure that sent us to the next endpoint: reported if the deadline comes first.
        let mut last_failure: Option<Error> = None;
        loop {
            let (index, channel) = self.current();
            // Authenticate goes without a token: etcd checks a stale one even there.
            let token = (method != crate::auth::AUTHENTICATE)
                .then(|| self.token())
                .flatten();
            let mut req = self.request_with_token(request.clone(), token.as_ref());
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(remaining) = remaining {
                if remaining.is_zero() {
                    return Err(Error::Timeout {
                        method,
                        after: timeout.unwrap_or_default(),
                        last_error: last_failure.take().map(Box::new),
                    });
                }
                req.set_timeout(remaining);
            }
            counters.unary_calls.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes_sent
                .fetch_add(request_len as u64, Ordering::Relaxed);
            attempts += 1;
            let sent_at = Instant::now();
            let outcome = match remaining {
                Some(remaining) => {
                    match tokio::time::timeout(remaining, call(channel, req)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(tonic::Status::deadline_exceeded("client-side deadline")),
                    }
                }
                None => call(channel, req).await,
            };
            let latency = sent_at.elapsed();
            if let Some(sink) = self.wire() {
                sink.record(&WireRecord {
                    method,
                    endpoint: &self.endpoint_url(index),
                    // Passwords and tokens never reach the wire log: an empty message stands in.
                    request: if secret { &() } else { &request },
                    response: outcome.as_ref().ok().map(|r| {
                        if secret {
                            &() as &dyn WireMessage
                        } else {
                            r.get_ref() as &dyn WireMessage
                        }
                    }),
                    status: outcome.as_ref().err(),
                    latency,
                });
            }
            match outcome {
                Ok(response) => {
                    let response = response.into_inner();
                    counters
                        .bytes_received
                        .fetch_add(response.encoded_len() as u64, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(status) => {
                    // tonic enforces `grpc-timeout` itself and reports it as Cancelled.
                    let expired =
                        deadline.is_some_and(|d| Instant::now() + Duration::from_millis(1) >= d);
                    if expired
                        && matches!(
                            status.code(),
                            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                        )
                    {
                        // The member may be stopped or cut off: later requests go elsewhere.
                        self.fail_over(index);
                        return Err(Error::Timeout {
                            method,
                            after: timeout.unwrap_or_default(),
                            last_error: last_failure.take().map(Box::new),
                        });
                    }
                    if status.code() == tonic::Code::DeadlineExceeded {
                        if deadline.is_some_and(|d| Instant::now() + Duration::from_millis(1) >= d)
                        {
                            self.fail_over(index);
                            return Err(Error::Timeout {
                                method,
                                after: timeout.unwrap_or_default(),
                                last_error: last_failure.take().map(Box::new),
                            });
                        }
                        return Err(Error::from_status(status));
                    }
                    let error = Error::from_status(status);
                    // An expired token: authenticate again and repeat the request, once.
                    if !token_renewed && self.token_may_help(&error) {
                        token_renewed = true;
                        self.renew_token(token.as_ref()).await?;
                        continue;
                    }
                    if !should_retry(&error, retry) || attempts >= 16 {
                        // Not repeated (it may have been applied), but the next request should
                        // not go to a member whose connection just broke.
                        if member_failed(&error) {
                            self.fail_over(index);
                        }
                        return Err(error);
                    }
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
    }
}

/// True when the error says the member (or the connection to it) failed, not the request.
fn member_failed(error: &Error) -> bool {
    match error {
        Error::Status { status } => {
            status.code() == tonic::Code::Unavailable || is_transport_failure(status)
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
fn should_retry(error: &Error, retry: Retry) -> bool {
    match error.etcd_kind() {
        // Refused before proposing to raft: nothing was applied.
        Some(EtcdErrorKind::NoLeader | EtcdErrorKind::NotLeader | EtcdErrorKind::Stopped) => {
            return true
        }
        // The request may have been applied: only reads may be repeated.
        Some(EtcdErrorKind::ServerTimeout | EtcdErrorKind::LeaderChanged) => {
            return retry == Retry::Idempotent
        }
        Some(_) => return false,
        None => {}
    }
    match error {
        Error::Status { status } if status.code() == tonic::Code::Unavailable => {
            retry == Retry::Idempotent || never_sent(status)
        }
        // The connection broke (reset, closed) with the request queued or in flight.
        Error::Status { status } if is_transport_failure(status) => {
            retry == Retry::Idempotent || never_sent(status)
        }
        _ => false,
    }
}

/// True when tonic reports a broken connection rather than an answer from etcd.
pub(super) fn is_transport_failure(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some_and(|s| s.is::<tonic::transport::Error>())
        || (status.code() == tonic::Code::Cancelled && status.message() == "operation was canceled")
        || (status.code() == tonic::Code::Unknown && status.message() == "transport error")
}

/// True when a transport failure happened while connecting, so the request never left.
fn never_sent(status: &tonic::Status) -> bool {
    let text = format!(
        "{} {:?}",
        status.message(),
        std::error::Error::source(status)
    );
    text.contains("connect") || text.contains("Connection refused")
}
