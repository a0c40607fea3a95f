//! Why an HTTP/2 stream of the client's channel failed, as a type the retry rule and the wire
//! log read (never their messages).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::Reason;

/// The failure of one stream, or of the connection under it.
#[derive(Debug, Clone)]
pub(crate) enum Http2Error {
    /// The server reset the stream (RST_STREAM) with this code.
    Reset(Reason),
    /// This client reset the stream with this code (the server broke the protocol on it).
    LocalReset(Reason),
    /// The server sent GOAWAY with a last-stream-id below the stream's: it did not process it
    /// (RFC 9113, section 6.8). The GOAWAY's code.
    Refused(Reason),
    /// The connection ended after the server's GOAWAY (with this code) while the stream, which
    /// the server may have processed, was still open.
    GoAway(Reason),
    /// Reading or writing the connection failed, or the server closed it.
    Io(Arc<io::Error>),
    /// The server broke the protocol; this client closed the connection.
    Protocol(&'static str),
    /// A keep-alive PING went unanswered this long; this client closed the connection.
    KeepAlive(Duration),
    /// The connection was shut down by this client (its runtime or its channel went away).
    Closed,
}

impl Http2Error {
    /// The server said it did not process the stream: REFUSED_STREAM, or a GOAWAY that left
    /// the stream out. Such a request may be sent again, even a write.
    pub(crate) fn not_processed(&self) -> bool {
        matches!(
            self,
            Http2Error::Refused(_) | Http2Error::Reset(Reason::REFUSED_STREAM)
        )
    }

    /// The code of a stream reset, received or sent.
    pub(crate) fn reset_reason(&self) -> Option<Reason> {
        match self {
            Http2Error::Reset(reason) | Http2Error::LocalReset(reason) => Some(*reason),
            _ => None,
        }
    }
}

impl fmt::Display for Http2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Http2Error::Reset(reason) => write!(f, "stream reset by the server ({reason})"),
            Http2Error::LocalReset(reason) => write!(f, "stream reset by the client ({reason})"),
            Http2Error::Refused(reason) => {
                write!(f, "stream not processed: the server sent GOAWAY ({reason})")
            }
            Http2Error::GoAway(reason) => {
                write!(f, "connection closed after the server's GOAWAY ({reason})")
            }
            Http2Error::Io(error) => write!(f, "connection failed: {error}"),
            Http2Error::Protocol(what) => write!(f, "HTTP/2 protocol error: {what}"),
            Http2Error::KeepAlive(timeout) => write!(f, "no answer to a PING within {timeout:?}"),
            Http2Error::Closed => f.write_str("connection closed by the client"),
        }
    }
}

impl std::error::Error for Http2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Http2Error::Io(error) => Some(&**error),
            _ => None,
        }
    }
}
