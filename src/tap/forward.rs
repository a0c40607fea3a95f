//! One tapped HTTP/2 stream: the client's request is sent on the upstream connection as it came
//! (method, path, every header), then DATA and trailers are copied both ways as they arrive,
//! and a reset on either side is passed to the other with its reason.
//!
//! Flow control: a DATA chunk is only acknowledged to its sender (its window released) once
//! the other side's window took it, so the tap never holds more than one window per stream
//! and direction, and a slow reader slows its writer exactly as without the tap.
//!
//! The two directions run as two futures joined in one task. Each owns the receiving half on
//! one side and the sending half on the other. When a direction ends normally it leaves its
//! sending half in a slot, so that a reset seen later by the other direction can still be
//! passed on.

use std::future::{poll_fn, Future as _};
use std::sync::{Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use super::record::{status_of, Outcome, StreamRecord};

/// The stream's log, shared by both directions; `None` without a sink.
type Log = Option<Mutex<StreamRecord>>;

fn with_log(log: &Log, f: impl FnOnce(&mut StreamRecord)) {
    if let Some(log) = log {
        f(&mut log.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Which way a direction copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to member: requests.
    Up,
    /// Member to client: responses.
    Down,
}

/// The sending halves left behind by directions that ended normally.
#[derive(Default)]
struct Slots {
    /// The upstream stream's sending half (left by `Up`).
    upstream: Mutex<Option<SendStream<Bytes>>>,
    /// The client stream's sending half (left by `Down`).
    client: Mutex<Option<SendStream<Bytes>>>,
}

impl Slots {
    fn put(&self, way: Way, send: SendStream<Bytes>) {
        let slot = match way {
            Way::Up => &self.upstream,
            Way::Down => &self.client,
        };
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(send);
    }

    /// Resets the stream on the side `way` receives from, if the other direction already left
    /// its sending half (otherwise that direction sees the reset itself and passes it on).
    fn reset_source(&self, way: Way, reason: Reason) {
        let slot = match way {
            Way::Up => &self.client,
            Way::Down => &self.upstream,
        };
        if let Some(mut send) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
            send.send_reset(reason);
        }
    }
}

/// Forwards one stream the client opened; returns when both directions are over, after the
/// stream's log line(s) were written.
pub(super) async fn forward(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    upstream: SendRequest<Bytes>,
    log: Log,
) {
    let (parts, client_body) = request.into_parts();
    let client_done = client_body.is_end_stream();
    let request = http::Request::from_parts(parts, ());
    let mut upstream = match upstream.ready().await {
        Ok(upstream) => upstream,
        Err(error) => {
            refuse(&mut respond, &error, &log);
            finish(log);
            return;
        }
    };
    let (response, upstream_send) = match upstream.send_request(request, client_done) {
        Ok(sent) => sent,
        Err(error) => {
            refuse(&mut respond, &error, &log);
            finish(log);
            return;
        }
    };
    drop(upstream);
    let slots = Slots::default();
    let up = async {
        if client_done {
            slots.put(Way::Up, upstream_send);
        } else {
            copy(Way::Up, client_body, upstream_send, &slots, &log).await;
        }
    };
    let down = respond_with(response, respond, &slots, &log);
    futures_util::future::join(up, down).await;
    finish(log);
}

fn finish(log: Log) {
    if let Some(log) = log {
        log.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .finish();
    }
}

/// The upstream connection could not take the stream: the client gets `REFUSED_STREAM` (the
/// member never saw the request, so the client may send it again).
fn refuse(respond: &mut SendResponse<Bytes>, error: &h2::Error, log: &Log) {
    respond.send_reset(Reason::REFUSED_STREAM);
    with_log(log, |r| {
        r.outcome(Outcome::ConnectionLost(format!(
            "upstream connection refused the stream: {error}"
        )))
    });
}

/// Waits for the member's response headers (or a reset from either side), sends them to the
/// client, then copies the response body and trailers.
async fn respond_with(
    mut response: ResponseFuture,
    mut respond: SendResponse<Bytes>,
    slots: &Slots,
    log: &Log,
) {
    enum First {
        Response(Result<http::Response<RecvStream>, h2::Error>),
        ClientReset(Result<Reason, h2::Error>),
    }
    let first = poll_fn(|cx| {
        if let Poll::Ready(reset) = respond.poll_reset(cx) {
            return Poll::Ready(First::ClientReset(reset));
        }
        std::pin::Pin::new(&mut response)
            .poll(cx)
            .map(First::Response)
    })
    .await;
    let response = match first {
        First::ClientReset(reset) => {
            let reason = client_gone(reset, log);
            slots.reset_source(Way::Down, reason);
            // The upstream request half may still be copying: it sees the reset itself.
            return;
        }
        First::Response(Err(error)) => {
            let reason = upstream_failed(&error, log);
            respond.send_reset(reason);
            return;
        }
        First::Response(Ok(response)) => response,
    };
    let (parts, body) = response.into_parts();
    let done = body.is_end_stream();
    if done {
        // Trailers-only: the status is in the headers.
        with_log(log, |r| {
            r.outcome(Outcome::Status(status_of(&parts.headers).unwrap_or_else(
                || {
                    Some(crate::wire::Failure {
                        code: crate::error::Code::Unknown,
                        message: "no grpc-status in the response".into(),
                        cause: None,
                    })
                },
            )))
        });
    }
    let headers = http::Response::from_parts(parts, ());
    match respond.send_response(headers, done) {
        Ok(send) if done => slots.put(Way::Down, send),
        Ok(send) => copy(Way::Down, body, send, slots, log).await,
        Err(error) => {
            with_log(log, |r| {
                r.outcome(Outcome::ConnectionLost(format!("client: {error}")))
            });
            slots.reset_source(Way::Down, Reason::CANCEL);
        }
    }
}

/// The client reset the stream (or its connection failed) before the response: what to tell
/// the member.
fn client_gone(reset: Result<Reason, h2::Error>, log: &Log) -> Reason {
    match reset {
        Ok(reason) => {
            with_log(log, |r| r.outcome(Outcome::ClientReset(reason)));
            reason
        }
        Err(error) => {
            with_log(log, |r| {
                r.outcome(Outcome::ConnectionLost(format!("client: {error}")))
            });
            Reason::CANCEL
        }
    }
}

/// The member's side of the stream failed: what to tell the client.
fn upstream_failed(error: &h2::Error, log: &Log) -> Reason {
    match error.reason() {
        Some(reason) if error.is_reset() && error.is_remote() => {
            with_log(log, |r| r.outcome(Outcome::UpstreamReset(reason)));
            reason
        }
        _ => {
            with_log(log, |r| {
                r.outcome(Outcome::ConnectionLost(format!("upstream: {error}")))
            });
            Reason::CANCEL
        }
    }
}

/// What the side `way` receives from did: the outcome to log and the reason to pass on.
fn source_failed(way: Way, error: &h2::Error, log: &Log) -> Option<Reason> {
    if error.is_reset() && !error.is_remote() {
        // We reset it ourselves, after the other direction saw why.
        return None;
    }
    Some(match way {
        Way::Down => upstream_failed(error, log),
        Way::Up => match error.reason() {
            Some(reason) if error.is_reset() && error.is_remote() => {
                with_log(log, |r| r.outcome(Outcome::ClientReset(reason)));
                reason
            }
            _ => {
                with_log(log, |r| {
                    r.outcome(Outcome::ConnectionLost(format!("client: {error}")))
                });
                Reason::CANCEL
            }
        },
    })
}

/// Why the side a direction sends to stopped taking data.
enum Stop {
    /// Its peer reset the stream.
    Reset(Reason),
    /// The stream or its connection failed.
    Failed(String),
}

impl From<Result<Reason, h2::Error>> for Stop {
    fn from(reset: Result<Reason, h2::Error>) -> Self {
        match reset {
            Ok(reason) => Stop::Reset(reason),
            Err(error) => Stop::from(error),
        }
    }
}

impl From<h2::Error> for Stop {
    fn from(error: h2::Error) -> Self {
        match error.reason() {
            Some(reason) if error.is_reset() && error.is_remote() => Stop::Reset(reason),
            _ => Stop::Failed(error.to_string()),
        }
    }
}

/// The side `way` sends to reset the stream (or failed): log it and pass it back.
fn sink_reset(way: Way, stop: impl Into<Stop>, slots: &Slots, log: &Log) {
    let reason = match (way, stop.into()) {
        (Way::Up, Stop::Reset(reason)) => {
            with_log(log, |r| r.outcome(Outcome::UpstreamReset(reason)));
            reason
        }
        (Way::Down, Stop::Reset(reason)) => {
            with_log(log, |r| r.outcome(Outcome::ClientReset(reason)));
            reason
        }
        (_, Stop::Failed(error)) => {
            let side = if way == Way::Up { "upstream" } else { "client" };
            with_log(log, |r| {
                r.outcome(Outcome::ConnectionLost(format!("{side}: {error}")))
            });
            Reason::CANCEL
        }
    };
    slots.reset_source(way, reason);
}

/// Copies DATA and trailers from `from` to `to` until the end of the stream or a reset.
async fn copy(way: Way, mut from: RecvStream, mut to: SendStream<Bytes>, slots: &Slots, log: &Log) {
    enum Next {
        Data(Option<Result<Bytes, h2::Error>>),
        Reset(Result<Reason, h2::Error>),
    }
    let mut last_sent = None;
    loop {
        let next = poll_fn(|cx| {
            if let Poll::Ready(reset) = to.poll_reset(cx) {
                return Poll::Ready(Next::Reset(reset));
            }
            from.poll_data(cx).map(Next::Data)
        })
        .await;
        match next {
            Next::Reset(reset) => return sink_reset(way, reset, slots, log),
            Next::Data(Some(Err(error))) => {
                if let Some(reason) = source_failed(way, &error, log) {
                    pass_reset(&mut to, reason, last_sent).await;
                }
                return;
            }
            Next::Data(Some(Ok(chunk))) => {
                with_log(log, |r| match way {
                    Way::Up => r.client_data(&chunk),
                    Way::Down => r.upstream_data(&chunk),
                });
                let last = from.is_end_stream();
                if let Err(reset) = send_all(&mut to, &mut from, chunk, last).await {
                    return sink_reset(way, reset, slots, log);
                }
                last_sent = Some(Instant::now());
                if last {
                    return slots.put(way, to);
                }
            }
            Next::Data(None) => break,
        }
    }
    match from.trailers().await {
        Ok(Some(trailers)) => {
            if way == Way::Down {
                with_log(log, |r| {
                    r.outcome(Outcome::Status(status_of(&trailers).unwrap_or_else(|| {
                        Some(crate::wire::Failure {
                            code: crate::error::Code::Unknown,
                            message: "no grpc-status in the trailers".into(),
                            cause: None,
                        })
                    })))
                });
            }
            if let Err(error) = to.send_trailers(trailers) {
                return sink_reset(way, error, slots, log);
            }
        }
        Ok(None) => {
            if way == Way::Down {
                with_log(log, |r| {
                    r.outcome(Outcome::Status(Some(crate::wire::Failure {
                        code: crate::error::Code::Unknown,
                        message: "the response ended without trailers".into(),
                        cause: None,
                    })))
                });
            }
            if let Err(error) = to.send_data(Bytes::new(), true) {
                return sink_reset(way, error, slots, log);
            }
        }
        Err(error) => {
            if let Some(reason) = source_failed(way, &error, log) {
                pass_reset(&mut to, reason, last_sent).await;
            }
            return;
        }
    }
    slots.put(way, to);
}

/// Resets the stream on the other side. h2 drops DATA still queued on a stream it resets, and
/// does not say when queued DATA was written; so when DATA was handed over moments ago, the
/// connection task gets [`FLUSH_GRACE`] to write it first (a client that sends a last message
/// and resets at once, as etcdctl 3.4's watch cancel does, is then seen the same by the member).
async fn pass_reset(to: &mut SendStream<Bytes>, reason: Reason, last_sent: Option<Instant>) {
    if let Some(at) = last_sent {
        if let Some(left) = FLUSH_GRACE.checked_sub(at.elapsed()) {
            tokio::time::sleep(left).await;
        }
    }
    to.send_reset(reason);
}

/// How long after handing DATA to h2 a reset waits (see [`pass_reset`]).
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// Sends `chunk` as the receiving side's window allows, releasing the same number of bytes of
/// `from`'s window as each part is taken; `last` ends the stream with the final part.
async fn send_all(
    to: &mut SendStream<Bytes>,
    from: &mut RecvStream,
    mut chunk: Bytes,
    last: bool,
) -> Result<(), Stop> {
    if chunk.is_empty() {
        return to.send_data(chunk, last).map_err(Stop::from);
    }
    while !chunk.is_empty() {
        to.reserve_capacity(chunk.len());
        let granted = loop {
            if to.capacity() > 0 {
                break to.capacity();
            }
            enum Cap {
                Granted(Option<Result<usize, h2::Error>>),
                Reset(Result<Reason, h2::Error>),
            }
            let cap = poll_fn(|cx| {
                if let Poll::Ready(reset) = to.poll_reset(cx) {
                    return Poll::Ready(Cap::Reset(reset));
                }
                to.poll_capacity(cx).map(Cap::Granted)
            })
            .await;
            match cap {
                Cap::Reset(reset) => return Err(Stop::from(reset)),
                Cap::Granted(Some(Ok(_))) => {}
                Cap::Granted(Some(Err(error))) => return Err(Stop::from(error)),
                Cap::Granted(None) => {
                    // The stream can no longer send: it was reset or closed.
                    return Err(Stop::Failed(
                        "the stream closed while data was waiting".into(),
                    ));
                }
            }
        };
        let part = chunk.split_to(granted.min(chunk.len()));
        let n = part.len();
        to.send_data(part, last && chunk.is_empty())
            .map_err(Stop::from)?;
        // The other side took `n` bytes: let the sender send that many more. A failure here
        // means the source stream is gone, which its own direction reports.
        let _ = from.flow_control().release_capacity(n);
    }
    Ok(())
}
