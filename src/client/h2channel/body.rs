//! The bodies of one call: the request body pumped into the stream within its flow-control
//! window, and the response body read from the stream, handing window back as data goes up.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http_body::{Body, Frame};
use prost::bytes::Bytes;
use tokio::task::AbortHandle;

use super::conn::{Sender, StreamRef};
use super::state::Received;
use crate::http2::Http2Error;

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
    /// Spawns the task that sends the rest of `body` on the stream, then ends the request.
    pub(super) fn spawn(body: tonic::body::Body, sender: Sender) -> Pump {
        let failure = Arc::new(Mutex::new(None));
        let task = crate::support::spawn(pump(body, sender, Arc::clone(&failure))).abort_handle();
        Pump { task, failure }
    }

    /// The request body's own error (e.g. a message over the encode limit), once.
    pub(super) fn failure(&self) -> Option<tonic::Status> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for Pump {
    /// The call is over (or given up): the task stops. The stream itself is reset by the
    /// response body's [`StreamRef`] when it goes.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `body`'s frames as the stream's window allows, one message at a time; ends the
/// request when the body ends; resets the stream (`CANCEL`) when the body fails. Stops when
/// the stream is over (reset, or the call given up).
async fn pump(
    mut body: tonic::body::Body,
    sender: Sender,
    failure: Arc<Mutex<Option<tonic::Status>>>,
) {
    loop {
        if sender.ready().await.is_err() {
            return;
        }
        let frame = tokio::select! {
            frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => frame,
            // The stream ended while the body had nothing to send.
            () = sender.ended() => return,
        };
        let (data, end) = match frame {
            None => (Bytes::new(), true),
            Some(Err(status)) => {
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
                sender.cancel();
                return;
            }
            // A gRPC client sends no trailers; a trailers frame ends the request.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => (data, false),
                Err(_) => (Bytes::new(), true),
            },
        };
        if sender.send(data, end).is_err() || end {
            return;
        }
    }
}

/// A response body over an HTTP/2 stream: DATA frames, then the trailers (grpc-status).
/// Dropping it before the end resets the stream with `CANCEL` and stops the request pump.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    // Dropped first: the pump stops before the stream is released.
    pump: Option<Pump>,
    stream: StreamRef,
    done: bool,
}

impl ResponseBody {
    pub(super) fn new(stream: StreamRef, pump: Option<Pump>) -> Self {
        ResponseBody {
            pump,
            stream,
            done: false,
        }
    }

    fn failed(&mut self, error: Http2Error) -> tonic::Status {
        self.done = true;
        if let Some(status) = self.pump.as_ref().and_then(Pump::failure) {
            return status;
        }
        self.stream.connection.lost(error).into_status()
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
        match std::task::ready!(this.stream.poll_received(cx)) {
            Ok(Received::Data(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Ok(Received::Trailers(trailers)) => {
                this.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Ok(Received::End) => {
                this.done = true;
                Poll::Ready(None)
            }
            Err(e) => Poll::Ready(Some(Err(this.failed(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
