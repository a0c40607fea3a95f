//! Wire log hook: every unary RPC can be reported to a [`WireSink`] with its method, endpoint,
//! request, response (or status), payload sizes and latency. Nothing is encoded or formatted
//! when no sink is attached.

use std::fmt::Debug;
use std::time::Duration;

/// A protobuf message as the wire log sees it.
pub trait WireMessage: Debug + Send + Sync {
    /// The message encoded exactly as it is sent.
    fn encode_wire(&self) -> Vec<u8>;
}

impl<T: prost::Message + Debug> WireMessage for T {
    fn encode_wire(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// One RPC, as handed to a [`WireSink`].
#[derive(Debug)]
#[non_exhaustive]
pub struct WireRecord<'a> {
    /// gRPC method path, e.g. `/etcdserverpb.KV/Range`.
    pub method: &'static str,
    /// The endpoint URL the request went to.
    pub endpoint: &'a str,
    /// The request message.
    pub request: &'a dyn WireMessage,
    /// The response message, on success.
    pub response: Option<&'a dyn WireMessage>,
    /// The gRPC status, on failure.
    pub status: Option<&'a tonic::Status>,
    /// Time from sending the request to the answer.
    pub latency: Duration,
}

/// Receives one [`WireRecord`] per RPC.
pub trait WireSink: Debug + Send + Sync {
    /// Called after each RPC completes (successfully or not).
    fn record(&self, record: &WireRecord<'_>);
}
