//! Calls aimed at one member: "send this call to that endpoint", never to another.
//!
//! `Status`, `Defragment`, `HashKV`, `Hash` and `Snapshot` describe or act on the member that
//! serves them, so failing over to the next endpoint would answer a different question. These
//! calls go through [`Client::unary_at`]: the client's deadline, token (renewed once when etcd
//! refuses it), counters and wire log, but no failover and no retry.

use super::h2channel::Channel;

use super::rpc::UnaryRequest;
use super::scheme::Origin;
use super::unary::{decode, encode, Target};
use super::Client;
use crate::error::{Error, Result};

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
    /// counters and wire log: the attempt loop of [`Client::unary`] held to one member. A
    /// failure is returned as it is: no other member is tried.
    pub(crate) async fn unary_at<Req: UnaryRequest>(
        &self,
        endpoint: &str,
        method: &'static str,
        request: Req,
    ) -> Result<Req::Response> {
        let (url, channel) = self.channel_to(endpoint)?;
        let timeout = self.inner.options.request_timeout;
        let target = Target::Pinned(url, channel);
        let answer = self.unary_encoded(method, target, timeout, encode(&request));
        decode(answer.await?)
    }
}
