//! The bodies of one call: the request body pumped into HTTP/2 within the stream's flow-control
//! window, and the response body read from HTTP/2, handing capacity back as data goes up.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http_body::{Body, Frame};
use prost::bytes::Bytes;
use tokio::task::AbortHandle;

use super::conn::ConnState;

/// What a request body had ready at once: its data frames, and whether it ended.
#[derive(Debug, Default)]
pub(super) struct Ready {
    pub(super) data: Vec<Bytes>,
    pub(super) ended: bool,
}

/// Takes the frames `body` has ready now, without waiting (a unary request's single message:
/// then the request goes out as HEADERS plus one DATA frame that ends the stream).
pub(super) fn ready_now(body: &mut tonic::body::Body) -> Result<Ready, tonic::Status> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut ready = Ready::default();
    loop {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // A gRPC client sends no trailers; a trailers frame ends the request.
                let Ok(data) = frame.into_data() else {
                    ready.ended = true;
                    return Ok(ready);
                };
                ready.data.push(data);
            }
            Poll::Ready(Some(Err(status))) => return Err(status),
            Poll::Ready(None) => {
                ready.ended = true;
                return Ok(ready);
            }
            Poll::Pending => return Ok(ready),
        }
        if body.is_end_stream() {
            ready.ended = true;
            return Ok(ready);
        }
    }
}

/// A streaming request's pump task: the way to stop it, and the body's own failure.
#[derive(Debug)]
pub(super) struct Pump {
    task: AbortHandle,
    failure: Arc<Mutex<Option<tonic::Status>>>,
}

impl Pump {
    /// Spawns the task that sends the rest of `body` on `stream`, then ends the stream.
    pub(super) fn spawn(body: tonic::body::Body, stream: h2::SendStream<Bytes>) -> Pump {
        let failure = Arc::new(Mutex::new(None));
        let task = crate::support::spawn(pump(body, stream, Arc::clone(&failure))).abort_handle();
        Pump { task, failure }
    }

    /// The request body's own error (e.g. a message over the encode limit), once.
    fn failure(&self) -> Option<tonic::Status> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for Pump {
    /// The call is over (or given up): the task stops, its `SendStream` goes, and h2 resets a
    /// stream still open with `CANCEL`.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `body`'s frames on `stream` as the peer's window allows; ends the stream when the
/// body ends; resets it (`CANCEL`) when the body fails. Stops when the peer resets the stream.
async fn pump(
    mut body: tonic::body::Body,
    mut stream: h2::SendStream<Bytes>,
    failure: Arc<Mutex<Option<tonic::Status>>>,
) {
    loop {
        let frame = tokio::select! {
            frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => frame,
            _ = poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        let data = match frame {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(status)) => {
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => {
                    let _ = stream.send_data(Bytes::new(), true);
                    return;
                }
            },
        };
        if send_within_window(&mut stream, data).await.is_err() {
            return;
        }
    }
}

/// Sends `data` in pieces no larger than the capacity h2 assigns (the peer's window).
async fn send_within_window(
    stream: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
) -> Result<(), h2::Error> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(0)) => {}
            Some(Ok(n)) => {
                let piece = data.split_to(n.min(data.len()));
                stream.send_data(piece, false)?;
            }
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(h2::Reason::STREAM_CLOSED)),
        }
    }
    Ok(())
}

/// A response body over an HTTP/2 stream: DATA frames, then the trailers (grpc-status).
/// Dropping it before the end resets the stream with `CANCEL` and stops the request pump.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    recv: h2::RecvStream,
    state: Arc<ConnState>,
    data_done: bool,
    done: bool,
    pump: Option<Pump>,
}

impl ResponseBody {
    pub(super) fn new(recv: h2::RecvStream, state: Arc<ConnState>, pump: Option<Pump>) -> Self {
        ResponseBody {
            recv,
            state,
            data_done: false,
            done: false,
            pump,
        }
    }

    fn failed(&mut self, error: h2::Error) -> tonic::Status {
        self.done = true;
        if let Some(status) = self.pump.as_ref().and_then(Pump::failure) {
            return status;
        }
        self.state.lost(error).into_status()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match std::task::ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Handed up: the peer may send that much more (h2 batches WINDOW_UPDATEs).
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(this.failed(e)))),
                None => this.data_done = true,
            }
        }
        match std::task::ready!(this.recv.poll_trailers(cx)) {
            Ok(trailers) => {
                this.done = true;
                Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
            }
            Err(e) => Poll::Ready(Some(Err(this.failed(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
