//! A hostile fake etcd for tests: a plaintext gRPC server on a loopback port that answers
//! each method the way the test's [`Script`] says (a status, a message, or a message whose
//! length prefix announces hundreds of MiB and whose bytes are produced lazily), and records
//! every request it got.
//!
//! It is a raw `tower` service under `tonic::transport::Server::serve_with_incoming`, not a
//! generated server: the crate's build script generates clients only, and a hand-written
//! handler is what lets a test send what no well-behaved server would (a length prefix far
//! beyond any limit, padding streamed on demand) while counting the bytes it produced.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body::Frame;
use tonic::codegen::{http, BoxFuture, Bytes, Service};

/// What the fake answers to one call.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A trailers-only error answer: gRPC `code` and `message`.
    Status(tonic::Code, String),
    /// One protobuf message, then status OK.
    Message(Vec<u8>),
    /// `prefix` (the start of a message) followed by `pad` zero bytes, announced in the
    /// length prefix as one message of `prefix.len() + pad` bytes. The zeros are produced
    /// 64 KiB at a time as the client's flow-control window allows, and counted in
    /// [`FakeEtcd::padding_sent`].
    Padded { prefix: Vec<u8>, pad: usize },
    /// Never answers (the call hangs until the client gives up).
    Hang,
}

/// The answers of a fake server: for a method path, the answers for its 1st, 2nd, ... call
/// (the last one repeats).
pub type Script = Vec<(&'static str, Vec<Answer>)>;

/// One request as received: method path and message bytes (without the 5-byte prefix).
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub message: Vec<u8>,
}

struct State {
    script: Script,
    calls: Mutex<Vec<Received>>,
    padding_sent: Arc<AtomicUsize>,
}

/// A running fake server; stops when dropped.
pub struct FakeEtcd {
    pub endpoint: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEtcd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEtcd {
    /// Starts the server on a free loopback port.
    pub async fn start(script: Script) -> FakeEtcd {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("binding a loopback port: {e}"),
        };
        let endpoint = match listener.local_addr() {
            Ok(a) => format!("http://{a}"),
            Err(e) => panic!("{e}"),
        };
        let state = Arc::new(State {
            script,
            calls: Mutex::new(Vec::new()),
            padding_sent: Arc::new(AtomicUsize::new(0)),
        });
        let service = Fake(Arc::clone(&state));
        let incoming = tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(service, incoming)
                .await;
        });
        FakeEtcd {
            endpoint,
            state,
            task,
        }
    }

    /// Every request received so far.
    pub fn calls(&self) -> Vec<Received> {
        self.state
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many calls of `method` were received.
    pub fn count(&self, method: &str) -> usize {
        self.calls().iter().filter(|c| c.method == method).count()
    }

    /// Padding bytes produced so far by [`Answer::Padded`] answers.
    pub fn padding_sent(&self) -> usize {
        self.state.padding_sent.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Fake(Arc<State>);

impl Service<http::Request<tonic::body::Body>> for Fake {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let state = Arc::clone(&self.0);
        Box::pin(async move {
            let method = request.uri().path().to_string();
            let mut body = request.into_body();
            let mut bytes = Vec::new();
            // A unary request: its one message arrives before the client half-closes.
            while let Some(Ok(frame)) = futures_util::future::poll_fn(|cx| {
                http_body::Body::poll_frame(Pin::new(&mut body), cx)
            })
            .await
            {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            let message = bytes.get(5..).unwrap_or_default().to_vec();
            let nth = {
                let mut calls = state.calls.lock().unwrap_or_else(|p| p.into_inner());
                let nth = calls.iter().filter(|c| c.method == method).count();
                calls.push(Received {
                    method: method.clone(),
                    message,
                });
                nth
            };
            let answer = state
                .script
                .iter()
                .find(|(m, _)| *m == method)
                .and_then(|(_, answers)| answers.get(nth).or(answers.last()).cloned())
                .unwrap_or(Answer::Status(
                    tonic::Code::Unimplemented,
                    format!("the fake does not serve {method}"),
                ));
            Ok(reply(answer, Arc::clone(&state.padding_sent)).await)
        })
    }
}

fn grpc_headers(status: http::StatusCode) -> http::response::Builder {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/grpc")
}

fn trailers(code: tonic::Code, message: &str) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    map.insert("grpc-status", http::HeaderValue::from(code as i32));
    if let Ok(v) = http::HeaderValue::from_str(message) {
        map.insert("grpc-message", v);
    }
    map
}

async fn reply(
    answer: Answer,
    padding_sent: Arc<AtomicUsize>,
) -> http::Response<tonic::body::Body> {
    let (frames, pad) = match answer {
        Answer::Hang => std::future::pending().await,
        Answer::Status(code, message) => {
            // Trailers-only: the status in the headers, no body.
            let mut response = http::Response::new(tonic::body::Body::empty());
            *response.headers_mut() = trailers(code, &message);
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/grpc"),
            );
            return response;
        }
        Answer::Message(message) => (framed(&message, message.len()), 0),
        Answer::Padded { prefix, pad } => (framed(&prefix, prefix.len() + pad), pad),
    };
    let body = Reply {
        frames: frames.into_iter().map(Frame::data).collect(),
        pad,
        padding_sent,
        trailers: Some(trailers(tonic::Code::Ok, "")),
    };
    match grpc_headers(http::StatusCode::OK).body(tonic::body::Body::new(body)) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// The 5-byte gRPC prefix announcing `announced` bytes, then `start`.
fn framed(start: &[u8], announced: usize) -> Vec<Bytes> {
    let mut head = vec![0u8];
    head.extend_from_slice(&(announced as u32).to_be_bytes());
    head.extend_from_slice(start);
    vec![Bytes::from(head)]
}

/// A response body: queued frames, then `pad` zeros made on demand, then the trailers.
struct Reply {
    frames: VecDeque<Frame<Bytes>>,
    pad: usize,
    padding_sent: Arc<AtomicUsize>,
    trailers: Option<http::HeaderMap>,
}

const CHUNK: usize = 64 << 10;

impl http_body::Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.pad > 0 {
            let n = self.pad.min(CHUNK);
            self.pad -= n;
            self.padding_sent.fetch_add(n, Ordering::Relaxed);
            static ZEROS: [u8; CHUNK] = [0; CHUNK];
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}
