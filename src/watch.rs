//! `Watch/Watch`: many watches multiplexed on one bidirectional gRPC stream per client.
//!
//! A background task (the hub) owns the stream. It opens it on the first watch, files each
//! `created` answer against the oldest pending create (etcd answers creates in order), routes
//! events by watch ID, merges fragmented responses, and ends when the last [`Client`] clone is
//! dropped. When the stream breaks, every open watch receives an error and the next watch opens
//! a fresh stream (on the next endpoint if the current one failed).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::client::{Client, Inner};
use crate::error::{Error, Result};
use crate::kv::{check_key, header_of, response_wrapper, KeySpan};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::mvccpb;

pub(crate) const WATCH: &str = "/etcdserverpb.Watch/Watch";

/// Options of a watch (see [`Client::watch_with`]).
#[derive(Debug, Clone, Default)]
#[must_use]
#[non_exhaustive]
pub struct WatchOptions {
    span: KeySpan,
    start_revision: i64,
    prev_kv: bool,
    progress_notify: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
}

impl WatchOptions {
    /// Watch one key from the next revision on.
    pub fn new() -> Self {
        Self::default()
    }
    /// Watch every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        self.span = KeySpan::Prefix;
        self
    }
    /// Watch every key `>=` the key.
    pub fn with_from_key(mut self) -> Self {
        self.span = KeySpan::FromKey;
        self
    }
    /// Watch keys in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.span = KeySpan::Until(end.into());
        self
    }
    /// Replay history from this revision (inclusive). A compacted one fails with
    /// [`Error::WatchCompacted`].
    pub fn with_start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }
    /// Include the previous key-value pair in each event.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Ask etcd for periodic empty responses carrying the current revision.
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
    /// Drop PUT events server-side.
    pub fn with_no_put(mut self) -> Self {
        self.no_put = true;
        self
    }
    /// Drop DELETE events server-side.
    pub fn with_no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }
    /// Let etcd split very large event batches; the client merges the fragments.
    pub fn with_fragment(mut self) -> Self {
        self.fragment = true;
        self
    }

    fn to_request(&self, key: Vec<u8>) -> Result<pb::WatchCreateRequest> {
        check_key(&key)?;
        if self.start_revision < 0 {
            return Err(Error::invalid("start_revision", "must not be negative"));
        }
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(pb::watch_create_request::FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(pb::watch_create_request::FilterType::Nodelete as i32);
        }
        Ok(pb::WatchCreateRequest {
            range_end: self.span.range_end(&key),
            key,
            start_revision: self.start_revision,
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            watch_id: 0,
            fragment: self.fragment,
        })
    }
}

response_wrapper!(
    /// One batch of watch events (a `WatchResponse`, fragments already merged).
    WatchResponse,
    pb::WatchResponse
);

impl WatchResponse {
    /// The events, in revision order.
    pub fn events(&self) -> &[mvccpb::Event] {
        &self.0.events
    }
    /// The watch this batch belongs to.
    pub fn watch_id(&self) -> i64 {
        self.0.watch_id
    }
    /// True for a progress notification (no events, header revision only).
    pub fn is_progress_notify(&self) -> bool {
        self.0.events.is_empty() && !self.0.created && !self.0.canceled
    }
}

/// True for a DELETE event.
pub fn is_delete(event: &mvccpb::Event) -> bool {
    event.r#type == mvccpb::event::EventType::Delete as i32
}

type EventSender = mpsc::UnboundedSender<Result<WatchResponse>>;

enum Command {
    Create {
        request: pb::WatchCreateRequest,
        created: oneshot::Sender<Result<Created>>,
        events: EventSender,
    },
    /// Cancel watch `.1` if it still lives on stream generation `.0`.
    Cancel(u64, i64),
}

/// What the hub reports for a confirmed watch.
#[derive(Debug, Clone, Copy)]
struct Created {
    watch_id: i64,
    revision: i64,
    generation: u64,
}

/// Handle to the per-client watch task.
#[derive(Debug)]
pub(crate) struct WatchHub {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Create { request, .. } => f.debug_tuple("Create").field(request).finish(),
            Command::Cancel(g, id) => f.debug_tuple("Cancel").field(g).field(id).finish(),
        }
    }
}

impl WatchHub {
    /// Spawns the hub task. It holds only a weak reference to the client, so it ends when
    /// the last client clone is dropped (its command channel closes).
    pub(crate) fn start(client: Weak<Inner>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_hub(client, rx));
        WatchHub { commands: tx }
    }
}

/// A live watch. Read batches with [`Watcher::next`] (or as a `Stream`); dropping it cancels
/// the watch on the server.
#[derive(Debug)]
pub struct Watcher {
    watch_id: i64,
    generation: u64,
    created_revision: i64,
    events: mpsc::UnboundedReceiver<Result<WatchResponse>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Watcher {
    /// The ID etcd gave this watch on the shared stream.
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }
    /// The store revision when the watch was created (header of the `created` answer); events
    /// after it are delivered.
    pub fn created_revision(&self) -> i64 {
        self.created_revision
    }
    /// The next batch of events; `None` once the watch was cancelled. Errors: the stream broke
    /// ([`Error::WatchClosed`]) or history was compacted ([`Error::WatchCompacted`]).
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        self.events.recv().await
    }
    /// Cancels the watch (`WatchCancelRequest`) and drops any queued events.
    pub fn cancel(self) {}
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self
            .commands
            .send(Command::Cancel(self.generation, self.watch_id));
    }
}

impl Stream for Watcher {
    type Item = Result<WatchResponse>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Client {
    /// Watches one key from now on: a `WatchCreateRequest` on the client's shared watch stream.
    pub async fn watch(&self, key: impl Into<Vec<u8>>) -> Result<Watcher> {
        self.watch_with(key, WatchOptions::new()).await
    }

    /// Watches with options (prefix, range, start revision, prev_kv, progress notify, filters,
    /// fragment): one `WatchCreateRequest` on the client's shared watch stream; returns once
    /// etcd confirmed the watch (`created`).
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
    /// use etcd_lock::watch::WatchOptions;
    /// let mut watcher = client.watch_with("jobs/", WatchOptions::new().with_prefix()).await?;
    /// while let Some(batch) = watcher.next().await {
    ///     for event in batch?.events() {
    ///         println!("{:?}", event.kv.as_ref().map(|kv| &kv.key));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch_with(
        &self,
        key: impl Into<Vec<u8>>,
        options: WatchOptions,
    ) -> Result<Watcher> {
        let request = options.to_request(key.into())?;
        let hub = self.watch_hub();
        let (created_tx, created_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        hub.commands
            .send(Command::Create {
                request,
                created: created_tx,
                events: events_tx,
            })
            .map_err(|_| closed("watch task ended"))?;
        let wait = async {
            created_rx
                .await
                .map_err(|_| closed("watch task ended before etcd confirmed the watch"))?
        };
        let created = match self.options().request_timeout {
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| Error::Timeout {
                    method: WATCH,
                    after: t,
                })??,
            None => wait.await?,
        };
        Ok(Watcher {
            watch_id: created.watch_id,
            generation: created.generation,
            created_revision: created.revision,
            events: events_rx,
            commands: hub.commands.clone(),
        })
    }
}

fn closed(reason: &str) -> Error {
    Error::WatchClosed {
        reason: reason.to_string(),
    }
}

struct Pending {
    created: oneshot::Sender<Result<Created>>,
    events: EventSender,
}

/// The open stream and what is filed on it.
struct Open {
    requests: mpsc::UnboundedSender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
    endpoint: usize,
    generation: u64,
    pending: VecDeque<Pending>,
    watchers: HashMap<i64, EventSender>,
    fragments: HashMap<i64, pb::WatchResponse>,
}

async fn run_hub(client: Weak<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut open: Option<Open> = None;
    let mut generation = 0u64;
    loop {
        let Some(stream) = open.as_mut() else {
            // Idle: wait for the next command (None: every client clone is gone).
            let Some(command) = commands.recv().await else {
                return;
            };
            let Some(inner) = client.upgrade() else {
                return;
            };
            let client = Client { inner };
            match command {
                Command::Cancel(..) => {}
                Command::Create {
                    request,
                    created,
                    events,
                } => match open_stream(&client, request, generation + 1).await {
                    Ok(mut s) => {
                        generation = s.generation;
                        s.pending.push_back(Pending { created, events });
                        open = Some(s);
                    }
                    Err(e) => {
                        let _ = created.send(Err(e));
                    }
                },
            }
            continue;
        };
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                let Some(inner) = client.upgrade() else { return };
                let counters = &inner.counters;
                match command {
                    Command::Create { request, created, events } => {
                        let msg = create_message(request);
                        counters.stream_sent(prost::Message::encoded_len(&msg));
                        if stream.requests.send(msg).is_ok() {
                            stream.pending.push_back(Pending { created, events });
                        } else {
                            let _ = created.send(Err(closed("watch stream closed")));
                        }
                    }
                    Command::Cancel(g, id) => {
                        if g == stream.generation && stream.watchers.remove(&id).is_some() {
                            let msg = cancel_message(id);
                            counters.stream_sent(prost::Message::encoded_len(&msg));
                            let _ = stream.requests.send(msg);
                        }
                    }
                }
            }
            message = stream.responses.message() => {
                match message {
                    Ok(Some(resp)) => {
                        if let Some(inner) = client.upgrade() {
                            inner.counters.stream_received(prost::Message::encoded_len(&resp));
                        }
                        dispatch(stream, resp);
                    }
                    other => {
                        let reason = match other {
                            Err(status) => format!("watch stream failed: {}", status.message()),
                            _ => "watch stream ended by the server".to_string(),
                        };
                        if let (Some(inner), Some(s)) = (client.upgrade(), open.take()) {
                            Client { inner }.fail_over(s.endpoint);
                            shut_down(s, &reason);
                        }
                    }
                }
            }
        }
    }
}

fn create_message(request: pb::WatchCreateRequest) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(request)),
    }
}

fn cancel_message(watch_id: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id },
        )),
    }
}

async fn open_stream(
    client: &Client,
    first: pb::WatchCreateRequest,
    generation: u64,
) -> Result<Open> {
    let (tx, rx) = mpsc::unbounded_channel();
    let msg = create_message(first);
    client
        .counters()
        .stream_sent(prost::Message::encoded_len(&msg));
    // Queue the first create before opening: etcd sends headers with its first answer.
    let _ = tx.send(msg);
    let requests =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let (endpoint, channel) = client.current();
    let mut grpc = WatchClient::new(channel).max_decoding_message_size(usize::MAX);
    let open = grpc.watch(requests);
    let opened = match client.options().request_timeout {
        Some(t) => match tokio::time::timeout(t, open).await {
            Ok(r) => r,
            Err(_) => {
                client.fail_over(endpoint);
                return Err(Error::Timeout {
                    method: WATCH,
                    after: t,
                });
            }
        },
        None => open.await,
    };
    let responses = match opened {
        Ok(r) => r.into_inner(),
        Err(status) => {
            client.fail_over(endpoint);
            return Err(Error::from_status(status));
        }
    };
    Ok(Open {
        requests: tx,
        responses,
        endpoint,
        generation,
        pending: VecDeque::new(),
        watchers: HashMap::new(),
        fragments: HashMap::new(),
    })
}

fn dispatch(stream: &mut Open, resp: pb::WatchResponse) {
    if resp.created {
        let Some(p) = stream.pending.pop_front() else {
            return;
        };
        if resp.canceled || resp.watch_id < 0 {
            let err = if resp.compact_revision > 0 {
                Error::WatchCompacted {
                    compact_revision: resp.compact_revision,
                }
            } else {
                closed(&format!("etcd refused the watch: {}", resp.cancel_reason))
            };
            let _ = p.created.send(Err(err));
            return;
        }
        let revision = header_of(&resp.header).revision;
        let created = Created {
            watch_id: resp.watch_id,
            revision,
            generation: stream.generation,
        };
        if p.created.send(Ok(created)).is_ok() {
            stream.watchers.insert(resp.watch_id, p.events);
        } else {
            // The caller gave up waiting; cancel what etcd just created.
            let _ = stream.requests.send(cancel_message(resp.watch_id));
        }
        return;
    }
    let id = resp.watch_id;
    if resp.canceled {
        if let Some(events) = stream.watchers.remove(&id) {
            let err = if resp.compact_revision > 0 {
                Error::WatchCompacted {
                    compact_revision: resp.compact_revision,
                }
            } else {
                closed(&format!("cancelled by etcd: {}", resp.cancel_reason))
            };
            let _ = events.send(Err(err));
        }
        return;
    }
    // Merge fragments: etcd marks every part but the last with `fragment`.
    let resp = match stream.fragments.remove(&id) {
        Some(mut acc) => {
            acc.events.extend(resp.events);
            acc.fragment = resp.fragment;
            acc.header = resp.header.or(acc.header);
            acc
        }
        None => resp,
    };
    if resp.fragment {
        stream.fragments.insert(id, resp);
        return;
    }
    let gone = match stream.watchers.get(&id) {
        Some(events) => events.send(Ok(WatchResponse(resp))).is_err(),
        None => false,
    };
    if gone {
        stream.watchers.remove(&id);
        let _ = stream.requests.send(cancel_message(id));
    }
}

fn shut_down(stream: Open, reason: &str) {
    for p in stream.pending {
        let _ = p.created.send(Err(closed(reason)));
    }
    for (_, events) in stream.watchers {
        let _ = events.send(Err(closed(reason)));
    }
}
