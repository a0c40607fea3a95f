//! Calls aimed at one member: "send this call to that endpoint", never to another.
//!
//! `Status`, `Defragment`, `HashKV`, `Hash` and `Snapshot` describe or act on the member that
//! serves them, so failing over to the next endpoint would answer a different question. These
//! calls go through [`Client::unary_at`]: the client's deadline, token (renewed once when etcd
//! refuses it), counters and wire log, but no failover and no retry.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::scheme::Origin;
use super::{Client, GrpcChannel};
use crate::error::{Error, Result};
use crate::wire::CallTap;

impl Client {
    /// The scheme rules of this client (see `scheme.rs`).
    pub(crate) fn scheme_rules(&self) -> super::scheme::Rules {
        #[cfg(feature = "tls")]
        let tls = self.inner.options.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls = false;
        super::scheme::Rules {
            tls,
            allow_plaintext: super::connect::allow_plaintext(&self.inner.options),
        }
    }

    /// The URL `endpoint` stands for, as [`Client::connect`] reads endpoints: a bare
    /// `host:port` is `https://` when the client has TLS settings, and an explicit `http://`
    /// one is refused then unless plaintext was allowed.
    pub(crate) fn endpoint_url_of(&self, endpoint: &str) -> Result<String> {
        let url = super::scheme::dial_url(endpoint, Origin::Configured, self.scheme_rules());
        url.map_err(|e| match e {
            Error::InvalidArgument { reason, .. } => Error::invalid("endpoint", reason),
            other => other,
        })
    }

    /// The URL to dial for a client URL the cluster advertised (a member list entry): under
    /// TLS settings always `https://`, whatever the member says.
    pub(crate) fn advertised_url(&self, url: &str) -> Result<String> {
        super::scheme::dial_url(url, Origin::Advertised, self.scheme_rules())
    }

    /// The endpoint a request carrying a password (`method`) goes to: the current one, unless
    /// the client has TLS settings and it is plaintext; then the first TLS endpoint. With no
    /// TLS endpoint at all, the request is refused before anything is sent.
    pub(crate) fn current_for_secret(&self, method: &'static str) -> Result<(usize, Channel)> {
        let (index, channel) = self.current();
        if !self.scheme_rules().tls || !super::scheme::is_plaintext(&self.endpoint_url(index)) {
            return Ok((index, channel));
        }
        let members = self.members();
        match members
            .iter()
            .position(|m| !super::scheme::is_plaintext(&m.url))
        {
            Some(i) => Ok((i, members[i].channel.clone())),
            None => Err(Error::invalid(
                "endpoints",
                format!(
                    "{method} carries a password and TLS is configured, but every endpoint is \
                     plaintext http://; add an https:// endpoint"
                ),
            )),
        }
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
        F: Fn(GrpcChannel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let options = &self.inner.options;
        let request_len = request.encoded_len();
        options.check_request_size(method, request_len)?;
        let (url, channel) = self.channel_to(endpoint)?;
        let channel = GrpcChannel {
            channel,
            max_response_bytes: options.max_response_bytes,
        };
        let timeout = options.request_timeout;
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
            c.unary_sent(request_len);
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
            if let Some(too_large) =
                super::grpc::too_large(method, &status, options.max_response_bytes)
            {
                return Err(too_large);
            }
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
            if !renewed && method != super::token::AUTHENTICATE && self.token_may_help(&error) {
                renewed = true;
                tap.retry(&"the token was refused: authenticate again, then resend");
                self.renew_token(token.as_ref(), deadline).await?;
                continue;
            }
            return Err(error);
        }
    }
}
