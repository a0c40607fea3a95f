//! `Watch/Watch`: many watches multiplexed on one bidirectional gRPC stream per client.
//!
//! A background task (see `hub.rs`) owns the stream: it opens it on the first watch, routes
//! events by watch ID, merges fragmented responses, and when the stream breaks re-creates every
//! watch on the next endpoint from the first revision it has not delivered yet, so a member
//! loss neither drops nor repeats events. It ends when the last [`Client`] clone is dropped.
//!
//! # A member without a leader
//!
//! The shared stream is always opened with etcd's require-leader metadata (`hasleader: true`),
//! as Go's `clientv3.WithRequireLeader` does: a member that has lost
//! its leader for about three election timeouts (cut off from its peers, say) cancels the
//! stream with `etcdserver: no leader`, and the task moves every watch to another member as
//! after any broken stream. Without it, such a member would keep the stream open and send
//! nothing, while the rest of the cluster moves on. It is not a per-watch option because the
//! metadata belongs to the stream, which every watch of the client shares; the lock and
//! election waiters depend on it. The price: while no member of the cluster has a leader, no
//! watch can be opened or resumed (it ends with [`Error::WatchClosed`]).
//!
//! # Bounded buffers
//!
//! Each [`Watcher`] buffers at most [`WatchOptions::with_buffer`] responses (default
//! [`DEFAULT_WATCH_BUFFER`]). When a response arrives for a watcher whose buffer is full, that
//! watch is cancelled and ends, after the responses already buffered, with
//! [`Error::WatchLagged`] naming the first revision it did not get: events are never dropped
//! silently, and the shared stream never waits for one slow reader. The task's command queue
//! is bounded too ([`Client::watch_with`] waits for room).

mod hub;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::client::{Client, WeakClient};
use crate::error::{Error, Result};
use crate::kv::{check_key, GetOptions, KeySpan};
use crate::namespace;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;
use crate::support::response_wrapper;
use hub::{closed, Command};

pub(crate) const WATCH: &str = "/etcdserverpb.Watch/Watch";

/// How many undelivered responses a [`Watcher`] buffers unless
/// [`WatchOptions::with_buffer`] says otherwise.
pub const DEFAULT_WATCH_BUFFER: usize = 1024;
/// Room in the watch task's command queue (creates and cancels).
const COMMAND_QUEUE: usize = 64;

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
    /// Responses buffered for the reader; 0: [`DEFAULT_WATCH_BUFFER`].
    buffer: usize,
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

    /// How many responses (event batches) may wait unread in the [`Watcher`] (at least 1;
    /// default [`DEFAULT_WATCH_BUFFER`]). Local only: nothing about it goes on the wire.
    /// A watcher that falls further behind is cancelled (`WatchCancelRequest`) and ends with
    /// [`Error::WatchLagged`] once its buffered responses have been read.
    pub fn with_buffer(mut self, responses: usize) -> Self {
        self.buffer = responses.max(1);
        self
    }

    fn buffer(&self) -> usize {
        match self.buffer {
            0 => DEFAULT_WATCH_BUFFER,
            n => n,
        }
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
    /// The events, in revision order; [`mvccpb::Event::event_type`] tells a PUT from a DELETE.
    pub fn events(&self) -> &[mvccpb::Event] {
        &self.0.events
    }
    /// The watch this batch belongs to.
    pub fn watch_id(&self) -> i64 {
        self.0.watch_id
    }
    /// True for a progress notification (no events, header revision only): a periodic one
    /// ([`WatchOptions::with_progress_notify`]) or the answer to [`Watcher::request_progress`].
    pub fn is_progress_notify(&self) -> bool {
        self.0.events.is_empty() && !self.0.created && !self.0.canceled
    }
}

/// What happened to a key in a watch event: etcd's `mvccpb.Event.EventType`, read with
/// [`Event::event_type`](crate::proto::mvccpb::Event::event_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The key was created or written (`PUT`, 0).
    Put,
    /// The key was deleted, by a delete or by its lease ending (`DELETE`, 1).
    Delete,
    /// A value this client does not know, as received (a newer etcd may add values).
    Unknown(i32),
}

impl EventType {
    fn from_wire(value: i32) -> EventType {
        match mvccpb::event::EventType::try_from(value) {
            Ok(mvccpb::event::EventType::Put) => EventType::Put,
            Ok(mvccpb::event::EventType::Delete) => EventType::Delete,
            Err(_) => EventType::Unknown(value),
        }
    }
}

impl mvccpb::Event {
    /// The event's type. Unlike the generated `r#type()`, which reads a value it does not
    /// know as `Put`, an unknown value comes back as [`EventType::Unknown`].
    pub fn event_type(&self) -> EventType {
        EventType::from_wire(self.r#type)
    }
}

/// True for a DELETE event (`event.event_type() == EventType::Delete`).
pub fn is_delete(event: &mvccpb::Event) -> bool {
    event.event_type() == EventType::Delete
}

/// The way into the watch task: a bounded command queue, and a list for the cancels of
/// watchers dropped while that queue was full (a `Drop` cannot wait for room). That list holds
/// at most one entry per watcher; the task empties it whenever it takes a command.
#[derive(Debug, Clone)]
struct HubLink {
    commands: mpsc::Sender<Command>,
    deferred_cancels: Arc<Mutex<Vec<u64>>>,
    /// Watchers handed out and not yet dropped (see [`Client::open_watches`]).
    open: Arc<AtomicUsize>,
}

impl HubLink {
    /// Asks the task to cancel watch `handle`, without waiting.
    fn cancel(&self, handle: u64) {
        match self.commands.try_send(Command::Cancel(handle)) {
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Ok(mut deferred) = self.deferred_cancels.lock() {
                    deferred.push(handle);
                }
            }
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Handle to the per-client watch task.
#[derive(Debug)]
struct WatchHub {
    link: HubLink,
    next_handle: AtomicU64,
}

impl WatchHub {
    /// The client's hub, started on first use and kept in the client's extension slot.
    fn of(client: &Client) -> Arc<WatchHub> {
        client.extension(|c| WatchHub::start(c.weak()))
    }

    /// Spawns the hub task. It holds only a weak reference to the client, so it ends when
    /// the last client clone is dropped (its command channel closes).
    fn start(client: WeakClient) -> Self {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let deferred_cancels = Arc::new(Mutex::new(Vec::new()));
        crate::support::spawn(hub::run(client, rx, Arc::clone(&deferred_cancels)));
        WatchHub {
            link: HubLink {
                commands: tx,
                deferred_cancels,
                open: Arc::new(AtomicUsize::new(0)),
            },
            next_handle: AtomicU64::new(1),
        }
    }
}

/// A live watch. Read batches with [`Watcher::next`] (or as a `Stream`); dropping it cancels
/// the watch on the server.
#[derive(Debug)]
pub struct Watcher {
    watch_id: i64,
    handle: u64,
    created_revision: i64,
    events: mpsc::Receiver<Result<WatchResponse>>,
    link: HubLink,
    /// The prefix to strip from events (a namespaced client's watch), see `crate::namespace`.
    namespace: Option<Arc<[u8]>>,
}

impl Watcher {
    /// The ID etcd gave this watch on the shared stream when it was created (a watch resumed
    /// on another member after a failure gets a new ID there).
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }
    /// The store revision when the watch was created (header of the `created` answer); events
    /// after it are delivered.
    pub fn created_revision(&self) -> i64 {
        self.created_revision
    }
    /// The next batch of events; `None` once the watch was cancelled. Errors end the watch:
    /// no endpoint would take the stream back ([`Error::WatchClosed`]), the revision to
    /// resume from was compacted ([`Error::WatchCompacted`]), or this watcher was not read
    /// and its buffer filled up ([`Error::WatchLagged`]: watch again from its revision).
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        let batch = self.events.recv().await;
        self.strip(batch)
    }

    /// Strips a namespaced watch's prefix from a batch's keys (a no-op without a namespace).
    fn strip(&self, batch: Option<Result<WatchResponse>>) -> Option<Result<WatchResponse>> {
        match (&self.namespace, batch) {
            (Some(ns), Some(Ok(w))) => {
                Some(Ok(WatchResponse(namespace::watch_response(Some(ns), w.0))))
            }
            (_, batch) => batch,
        }
    }
    /// Cancels the watch (`WatchCancelRequest`) and drops any queued events.
    pub fn cancel(self) {}

    /// Asks etcd where this watch stands: sends a `WatchRequest{progress_request}` on the
    /// client's shared watch stream. etcd answers with an empty response whose header revision
    /// is its current revision; it arrives in this watcher's stream in order with the events
    /// ([`WatchResponse::is_progress_notify`] is true, [`WatchResponse::watch_id`] is -1: etcd
    /// answers the stream, not one watch). Requests made before an answer arrives share it.
    /// This is the usual way to confirm that a cache fed by the watch is current up to a
    /// revision, e.g. before serving a read from it.
    ///
    /// On etcd 3.5.8+ and 3.4.25+ the server answers only when every watch on the stream has
    /// caught up (is "synced"), so its revision means "every event up to here was delivered";
    /// a request that finds a watch still catching up (a busy or just-resumed watch) is
    /// dropped without an answer, as etcd's docs say the events show the progress then: ask
    /// again after a while if no answer came (bound the wait with a timeout). Older servers
    /// (3.5.1 and 3.4.23 among them) send it at once, possibly before events of lower
    /// revisions that were still queued (etcd issue 15220, fixed by PR 15237): there the
    /// revision says only where the store was. Either way, the client never takes it as the
    /// point to resume from after a broken stream: a watch resumes from its last delivered
    /// event + 1, so no event is skipped. If the stream breaks before etcd answers, the
    /// request is sent again on the next stream.
    ///
    /// Fails with [`Error::WatchClosed`] when the watch task has ended.
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
    /// let mut watcher = client.watch("config").await?;
    /// watcher.request_progress().await?;
    /// while let Some(batch) = watcher.next().await {
    ///     let batch = batch?;
    ///     if batch.is_progress_notify() {
    ///         println!("current up to revision {}", batch.revision());
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn request_progress(&self) -> Result<()> {
        self.link
            .commands
            .send(Command::Progress(self.handle))
            .await
            .map_err(|_| closed("watch task ended"))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.link.open.fetch_sub(1, Ordering::Relaxed);
        self.link.cancel(self.handle);
    }
}

impl Stream for Watcher {
    type Item = Result<WatchResponse>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let batch = std::task::ready!(self.events.poll_recv(cx));
        Poll::Ready(self.strip(batch))
    }
}

impl Client {
    /// How many [`Watcher`]s of this client (and its clones) are open: created and not yet
    /// dropped. Each is one watch on the shared `Watch/Watch` stream. No RPC. Useful to check
    /// that long-running code (and this crate's lock waiters) does not leak watches.
    pub fn open_watches(&self) -> usize {
        self.existing_extension::<WatchHub>()
            .map_or(0, |hub| hub.link.open.load(Ordering::Relaxed))
    }

    /// Watches one key from now on: a `WatchCreateRequest` on the client's shared watch stream.
    pub async fn watch(&self, key: impl Into<Vec<u8>>) -> Result<Watcher> {
        self.watch_with(key, WatchOptions::new()).await
    }

    /// Watches with options (prefix, range, start revision, prev_kv, progress notify, filters,
    /// fragment): one `WatchCreateRequest` on the client's shared watch stream; returns once
    /// etcd confirmed the watch (`created`). The stream carries etcd's require-leader
    /// metadata (`hasleader: true`), see the [module docs](crate::watch).
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
        let buffer = options.buffer();
        match self.create_watch(request.clone(), buffer).await {
            // With auth, the shared stream keeps the token it was opened with; once that token
            // expired, etcd refuses every new watch on it ("permission denied" on 3.5, "invalid
            // auth token" on 3.4). A Range over
            // the same keys tells a real denial (it fails too) from a stale stream (it passes,
            // authenticating again if needed); then the hub re-opens the stream with the new
            // token when the create is sent again.
            Err(e)
                if (e.is_permission_denied() || e.wants_new_token()) && self.has_credentials() =>
            {
                let mut probe = GetOptions::new().with_count_only();
                if !request.range_end.is_empty() {
                    probe = probe.with_range_end(request.range_end.clone());
                }
                self.get_with(request.key.clone(), probe).await?;
                self.create_watch(request, buffer).await
            }
            other => other,
        }
    }

    /// Files one `WatchCreateRequest` with the hub and waits for etcd's answer.
    /// `buffer` responses may wait unread; one more slot is kept for the error that ends it.
    async fn create_watch(
        &self,
        request: pb::WatchCreateRequest,
        buffer: usize,
    ) -> Result<Watcher> {
        let request = namespace::watch_request(self.namespace(), request);
        let hub = WatchHub::of(self);
        let (created_tx, created_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::channel(buffer.saturating_add(1));
        let handle = hub.next_handle.fetch_add(1, Ordering::Relaxed);
        let command = Command::Create {
            handle,
            request,
            created: created_tx,
            events: events_tx,
        };
        let wait = async {
            hub.link
                .commands
                .send(command)
                .await
                .map_err(|_| closed("watch task ended"))?;
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
                    last_error: None,
                })??,
            None => wait.await?,
        };
        hub.link.open.fetch_add(1, Ordering::Relaxed);
        Ok(Watcher {
            watch_id: created.watch_id,
            handle,
            created_revision: created.revision,
            events: events_rx,
            link: hub.link.clone(),
            namespace: self.namespace.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_keep_unknown_values() {
        let event = |t: i32| mvccpb::Event {
            r#type: t,
            ..Default::default()
        };
        assert_eq!(event(0).event_type(), EventType::Put);
        assert_eq!(event(1).event_type(), EventType::Delete);
        assert_eq!(event(7).event_type(), EventType::Unknown(7));
        assert!(is_delete(&event(1)) && !is_delete(&event(0)) && !is_delete(&event(7)));
    }
}
