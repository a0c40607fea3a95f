//! The channel's own error: how far a failed call got (never connected, connection found closed
//! before the request went out, or failed after it may have left), carried as the source of the
//! `tonic::Status` the call fails with, so the retry rule can tell a write that never left.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::http2::{Http2Error, Reason};

/// How far a failed call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// No connection could be opened (TCP, TLS or the HTTP/2 handshake failed, or timed out).
    Connect,
    /// The connection was found closed before the request was handed to HTTP/2.
    NotSent,
    /// The server said it did not process the request: REFUSED_STREAM, or a GOAWAY whose
    /// last-stream-id is below the stream's.
    Refused,
    /// The connection or the stream failed after the request may have left.
    Sent,
}

/// A transport failure of one call or stream.
#[derive(Debug, Clone)]
pub(crate) struct TransportError {
    stage: Stage,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl TransportError {
    /// A failure at `stage` described by `message`, caused by `source`.
    pub(crate) fn new(
        stage: Stage,
        message: impl Into<String>,
        source: Option<Arc<dyn StdError + Send + Sync>>,
    ) -> Self {
        TransportError {
            stage,
            message: message.into(),
            source,
        }
    }

    /// How far the call got.
    #[cfg(test)]
    pub(crate) fn stage(&self) -> Stage {
        self.stage
    }

    /// True when the request provably never left this client.
    pub(crate) fn never_sent(&self) -> bool {
        matches!(self.stage, Stage::Connect | Stage::NotSent | Stage::Refused)
    }

    /// The gRPC status a call fails with: `Unavailable` for a broken or missing connection
    /// (as gRPC specifies for a connection lost or a PING left unanswered), the code gRPC maps
    /// an HTTP/2 reset reason to when the stream was reset. The status's source is this error.
    pub(crate) fn into_status(self) -> tonic::Status {
        let code = self
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<Http2Error>())
            .and_then(Http2Error::reset_reason)
            .map_or(tonic::Code::Unavailable, code_of_reset);
        let mut status = tonic::Status::new(code, self.to_string());
        status.set_source(Arc::new(self));
        status
    }
}

/// gRPC's code for a stream reset with `reason` (gRPC's HTTP/2 protocol mapping).
fn code_of_reset(reason: Reason) -> tonic::Code {
    match reason {
        Reason::REFUSED_STREAM => tonic::Code::Unavailable,
        Reason::CANCEL => tonic::Code::Cancelled,
        Reason::ENHANCE_YOUR_CALM => tonic::Code::ResourceExhausted,
        Reason::INADEQUATE_SECURITY => tonic::Code::PermissionDenied,
        _ => tonic::Code::Internal,
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// The innermost cause of `error`, which is the readable one ("Connection refused").
pub(crate) fn innermost(error: &(dyn StdError + 'static)) -> String {
    let mut source = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_codes_and_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = TransportError::new(Stage::Connect, "connect failed", Some(Arc::new(refused)));
        assert!(e.never_sent());
        let status = e.into_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let source = StdError::source(&status).and_then(|s| s.downcast_ref::<TransportError>());
        assert_eq!(source.map(TransportError::stage), Some(Stage::Connect));

        let reset = Http2Error::Reset(Reason::CANCEL);
        let e = TransportError::new(Stage::Sent, "stream reset", Some(Arc::new(reset)));
        assert!(!e.never_sent());
        assert_eq!(e.into_status().code(), tonic::Code::Cancelled);
        let refused = Http2Error::Reset(Reason::REFUSED_STREAM);
        let e = TransportError::new(Stage::Refused, "stream reset", Some(Arc::new(refused)));
        assert!(e.never_sent());
        assert_eq!(e.into_status().code(), tonic::Code::Unavailable);
        let internal = Http2Error::Reset(Reason::from(2));
        let e = TransportError::new(Stage::Sent, "stream reset", Some(Arc::new(internal)));
        assert_eq!(e.into_status().code(), tonic::Code::Internal);
        let goaway = Http2Error::GoAway(Reason::ENHANCE_YOUR_CALM);
        let e = TransportError::new(Stage::Sent, "closed", Some(Arc::new(goaway)));
        assert_eq!(e.into_status().code(), tonic::Code::Unavailable);
    }
}
