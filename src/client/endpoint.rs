//! Calls aimed at one member: "send this call to that endpoint", never to another.
//!
//! `Status`, `Defragment`, `HashKV`, `Hash` and `Snapshot` describe or act on the member that
//! serves them, so failing over to the next endpoint would answer a different question. These
//! calls go through [`Client::unary_at`]: the client's deadline, token (renewed once when etcd
//! refuses it), counters and wire log, but no failover and no retry.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::Client;
use crate::error::{Error, Result};
use crate::wire::CallTap;

impl Client {
    /// The URL `endpoint` stands for: as given when it has a scheme, else `http://` (or
    /// `https://` when the client has TLS settings), as [`Client::connect`] reads endpoints.
    pub(crate) fn endpoint_url_of(&self, endpoint: &str) -> Result<String> {
        let raw = endpoint.trim().trim_end_matches('/');
        if raw.is_empty() {
            return Err(Error::invalid("endpoint", "must not be empty"));
        }
        if raw.contains("://") {
            return Ok(raw.to_string());
        }
        #[cfg(feature = "tls")]
        let tls = self.inner.options.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls = false;
        Ok(format!("{}://{raw}", if tls { "https" } else { "http" }))
    }

    /// A channel to `endpoint`: the client's own connection when the endpoint is one of
    /// [`Client::endpoints`], else a new lazily connecting channel with the client's settings
    /// (TLS, connect timeout, keep-alive), dropped with the call.
    pub(crate) fn channel_to(&self, endpoint: &str) -> Result<(String, Channel)> {
        let url = self.endpoint_url_of(endpoint)?;
        if let Some(member) = self.members().iter().find(|m| m.url == url) {
            return Ok((url, member.channel.clone()));
        }
        let channel = (self.inner.make_channel)(&url).map_err(|e| match e {
            // The factory names the client's endpoint list; this is one call's argument.
            Error::InvalidArgument { reason, .. } => Error::invalid("endpoint", reason),
            other => other,
        })?;
        Ok((url, channel))
    }

    /// Sends one unary RPC to `endpoint` only, with the client's request timeout, token,
    /// counters and wire log. A failure is returned as it is: no other member is tried.
    pub(crate) async fn unary_at<Req, Resp, F, Fut>(
        &self,
        endpoint: &str,
        method: &'static str,
        request: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + std::fmt::Debug,
        Resp: prost::Message + std::fmt::Debug,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let (url, channel) = self.channel_to(endpoint)?;
        let timeout = self.inner.options.request_timeout;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut renewed = false;
        let mut tap = CallTap::new(self.wire(), method, super::token::is_secret(method));
        loop {
            let token = self.token();
            let mut req = self.request_with_token(request.clone(), token.as_ref());
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(remaining) = remaining {
                req.set_timeout(remaining);
            }
            let c = &self.inner.counters;
            c.unary_sent(request.encoded_len());
            tap.attempt(|| url.clone(), &req);
            let outcome = match remaining {
                Some(left) => {
                    match tokio::time::timeout(left, tap.capture(call(channel.clone(), req))).await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => Err(tonic::Status::deadline_exceeded("client-side deadline")),
                    }
                }
                None => tap.capture(call(channel.clone(), req)).await,
            };
            tap.outcome(&outcome);
            let status = match outcome {
                Ok(response) => {
                    let response = response.into_inner();
                    c.unary_received(response.encoded_len());
                    return Ok(response);
                }
                Err(status) => status,
            };
            let expired = deadline.is_some_and(|d| Instant::now() + Duration::from_millis(1) >= d);
            if expired
                && matches!(
                    status.code(),
                    tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                )
            {
                return Err(Error::Timeout {
                    method,
                    after: timeout.unwrap_or_default(),
                    last_error: None,
                });
            }
            let error = Error::from_status(status);
            if !renewed && self.token_may_help(&error) {
                renewed = true;
                tap.retry(&"the token was refused: authenticate again, then resend");
                self.renew_token(token.as_ref()).await?;
                continue;
            }
            return Err(error);
        }
    }
}
