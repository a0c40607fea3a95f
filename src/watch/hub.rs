//! The per-client watch task: one bidirectional `Watch/Watch` stream shared by every watch.
//!
//! Each watch is a subscription with a local handle. The task files each `created` answer
//! against the oldest pending create (etcd answers creates in order), routes events by etcd's
//! watch ID, merges fragments, and remembers for every subscription the next revision it has
//! not seen. When the stream breaks (member down, connection reset), the task fails over to the
//! next endpoint and re-creates every subscription from its next unseen revision: no event is
//! missed and none repeated. If that revision was compacted meanwhile, that watch ends with
//! [`Error::WatchCompacted`]. The task ends when the last client clone is dropped.
//!
//! The stream is opened with require-leader metadata, so a member that lost its leader ends it
//! (`Unavailable: etcdserver: no leader`) and that counts as a broken stream. Each watcher's
//! channel is bounded: a response for a full one ends that watch with [`Error::WatchLagged`]
//! (the last slot of every channel is kept for that terminal error), never the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tonic::metadata::AsciiMetadataValue;

use super::{WatchResponse, WATCH};
use crate::client::{Client, Grpc, WeakClient};
use crate::error::{Error, MessageKind, Result};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::support::{header_of, require_leader};

pub(super) type EventSender = mpsc::Sender<Result<WatchResponse>>;

/// What became of a response offered to a watcher.
enum Delivery {
    Sent,
    /// Only the slot kept for the terminal error is left: the reader fell behind.
    Lagged,
    /// The watcher was dropped.
    Gone,
}

/// Queues a response for a watcher unless that would take the slot kept for its final error.
fn deliver(events: &EventSender, resp: WatchResponse) -> Delivery {
    if events.is_closed() {
        return Delivery::Gone;
    }
    // Only this task sends, so the room can only grow between the check and the send.
    if events.capacity() <= 1 {
        return Delivery::Lagged;
    }
    match events.try_send(Ok(resp)) {
        Ok(()) => Delivery::Sent,
        Err(mpsc::error::TrySendError::Full(_)) => Delivery::Lagged,
        Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
    }
}

/// Queues the error that ends a watch; the kept slot guarantees room for it.
fn end(events: &EventSender, error: Error) {
    let _ = events.try_send(Err(error));
}

/// What the hub reports for a confirmed watch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Created {
    pub(super) watch_id: i64,
    pub(super) revision: i64,
}

pub(super) enum Command {
    Create {
        handle: u64,
        request: pb::WatchCreateRequest,
        created: oneshot::Sender<Result<Created>>,
        events: EventSender,
    },
    /// `WatchProgressRequest` on the shared stream; the answer goes to watch `handle`.
    Progress(u64),
    Cancel(u64),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Create {
                handle, request, ..
            } => f
                .debug_tuple("Create")
                .field(handle)
                .field(request)
                .finish(),
            Command::Cancel(handle) => f.debug_tuple("Cancel").field(handle).finish(),
            Command::Progress(handle) => f.debug_tuple("Progress").field(handle).finish(),
        }
    }
}

/// The error for a create that etcd refused. With auth, the reason is a gRPC error as Go
/// prints it (`rpc error: code = PermissionDenied desc = etcdserver: permission denied`, or
/// `Unauthenticated ... invalid auth token` from 3.4): those become the typed etcd errors.
fn refusal(reason: &str) -> Error {
    if let Some((code, message)) = crate::error::parse_relayed(reason) {
        if let error @ Error::Etcd { .. } = Error::from_status(tonic::Status::new(code, message)) {
            return error;
        }
    }
    closed(&format!("etcd refused the watch: {reason}"))
}

pub(super) fn closed(reason: &str) -> Error {
    Error::WatchClosed {
        reason: reason.to_string(),
    }
}

/// One watch as the hub keeps it across streams.
struct Subscription {
    request: pb::WatchCreateRequest,
    events: EventSender,
    /// The caller still waits for the first `created` answer.
    created: Option<oneshot::Sender<Result<Created>>>,
    /// The first revision not yet delivered (0: not known yet, use the request's own).
    next_revision: i64,
}

/// The open stream.
struct Stream {
    requests: mpsc::UnboundedSender<pb::WatchRequest>,
    /// The auth token the stream was opened with: etcd checks it at every create.
    token: Option<AsciiMetadataValue>,
    /// The answers (`None` only in unit tests, which feed [`Hub::dispatch`] directly; the task
    /// treats a stream without answers as ended).
    responses: Option<crate::wire::Inbound<pb::WatchResponse>>,
    endpoint: usize,
    /// Handles whose create was sent and not yet answered, in order.
    pending: VecDeque<u64>,
    /// etcd watch ID -> handle, and back.
    by_id: HashMap<i64, u64>,
    ids: HashMap<u64, i64>,
    /// Fragments merged so far per watch ID, with their encoded size.
    fragments: HashMap<i64, (pb::WatchResponse, usize)>,
}

#[derive(Default)]
struct Hub {
    subs: HashMap<u64, Subscription>,
    stream: Option<Stream>,
    /// Watches that asked for progress and have not been answered yet. etcd answers a
    /// `WatchProgressRequest` for the whole stream (watch ID -1), and since 3.5.8/3.4.25 not
    /// at all while a watch of the stream is still catching up, so one answer serves every
    /// handle here. Kept across streams: a request lost with a broken stream is sent again on
    /// the next.
    progress_wanted: Vec<u64>,
}

/// etcd's watch ID on answers that belong to no single watch (`clientv3.InvalidWatchID`).
const STREAM_WIDE: i64 = -1;

fn progress_message() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
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

impl Subscription {
    /// The create request that resumes this watch where it left off.
    fn resume_request(&self) -> pb::WatchCreateRequest {
        let mut request = self.request.clone();
        if self.next_revision > 0 {
            request.start_revision = self.next_revision;
        }
        request
    }
}

pub(super) async fn run(
    client: WeakClient,
    mut commands: mpsc::Receiver<Command>,
    deferred_cancels: Arc<Mutex<Vec<u64>>>,
) {
    let mut hub = Hub::default();
    loop {
        // Cancels of watchers dropped while the command queue was full.
        let deferred = match deferred_cancels.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(_) => Vec::new(),
        };
        if !deferred.is_empty() {
            let Some(client) = client.upgrade() else {
                return;
            };
            for handle in deferred {
                hub.apply(Command::Cancel(handle), &client);
            }
        }
        let Some(stream) = hub.stream.as_mut() else {
            // No stream: wait for work (None: every client clone is gone).
            let Some(command) = commands.recv().await else {
                return;
            };
            let Some(client) = client.upgrade() else {
                return;
            };
            hub.apply(command, &client);
            if !hub.subs.is_empty() {
                hub.reopen(&client).await;
            }
            continue;
        };
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                let Some(client) = client.upgrade() else { return };
                hub.apply(command, &client);
                if hub.stream.is_none() && !hub.subs.is_empty() {
                    // Dropped for a stale auth token: resume every watch on a fresh stream.
                    hub.reopen(&client).await;
                }
            }
            message = async {
                match stream.responses.as_mut() {
                    Some(responses) => responses.message().await,
                    None => Ok(None),
                }
            } => {
                let Some(client) = client.upgrade() else { return };
                match message {
                    Ok(Some(resp)) => {
                        client.counters().stream_received(prost::Message::encoded_len(&resp));
                        hub.dispatch(resp, &client);
                    }
                    other => {
                        let endpoint = stream.endpoint;
                        hub.stream = None;
                        client.fail_over(endpoint);
                        if let Err(status) = other {
                            // Not a broken connection but a refusal (e.g. auth): give up.
                            if status.code() != tonic::Code::Unavailable
                                && status.code() != tonic::Code::Unknown
                                && status.code() != tonic::Code::Cancelled
                            {
                                let limit = client.options().max_response_bytes;
                                if crate::client::too_large(WATCH, &status, limit).is_some() {
                                    // A message over the decode limit (refused from its
                                    // length prefix, never buffered): every watch says so.
                                    hub.fail_all_with(|| {
                                        crate::client::too_large(WATCH, &status, limit)
                                            .unwrap_or_else(|| closed(status.message()))
                                    });
                                    continue;
                                }
                                hub.fail_all(&format!("watch stream failed: {}", status.message()));
                                continue;
                            }
                        }
                        hub.reopen(&client).await;
                    }
                }
            }
        }
    }
}

impl Hub {
    fn apply(&mut self, command: Command, client: &Client) {
        match command {
            Command::Create {
                handle,
                request,
                created,
                events,
            } => {
                let sub = Subscription {
                    request,
                    events,
                    created: Some(created),
                    next_revision: 0,
                };
                // The client authenticated again since this stream opened: etcd would refuse
                // creates on it ("permission denied"), so drop it; the caller re-opens it.
                if self
                    .stream
                    .as_ref()
                    .is_some_and(|s| s.token != client.token())
                {
                    self.stream = None;
                }
                if let Some(stream) = self.stream.as_mut() {
                    let msg = create_message(sub.resume_request());
                    client
                        .counters()
                        .stream_sent(prost::Message::encoded_len(&msg));
                    if stream.requests.send(msg).is_ok() {
                        stream.pending.push_back(handle);
                    }
                }
                self.subs.insert(handle, sub);
            }
            Command::Progress(handle) => {
                if !self.subs.contains_key(&handle) {
                    return;
                }
                if !self.progress_wanted.contains(&handle) {
                    self.progress_wanted.push(handle);
                }
                // Sent every time: etcd 3.5.8+ drops a request that finds a watch of the stream
                // still catching up, so an earlier request may never be answered.
                if let Some(stream) = self.stream.as_mut() {
                    let msg = progress_message();
                    client
                        .counters()
                        .stream_sent(prost::Message::encoded_len(&msg));
                    let _ = stream.requests.send(msg);
                }
            }
            Command::Cancel(handle) => {
                self.subs.remove(&handle);
                self.progress_wanted.retain(|h| *h != handle);
                if let Some(stream) = self.stream.as_mut() {
                    if let Some(id) = stream.ids.remove(&handle) {
                        stream.by_id.remove(&id);
                        let msg = cancel_message(id);
                        client
                            .counters()
                            .stream_sent(prost::Message::encoded_len(&msg));
                        let _ = stream.requests.send(msg);
                    }
                }
            }
        }
    }

    /// Opens a stream (failing over between endpoints with backoff, for up to the request
    /// timeout or 10 s) and (re-)creates every subscription on it.
    async fn reopen(&mut self, client: &Client) {
        let budget = client
            .options()
            .request_timeout
            .unwrap_or(Duration::from_secs(10))
            .max(Duration::from_secs(2));
        let give_up = Instant::now() + budget;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.open(client).await {
                Ok(()) => return,
                Err(e) => {
                    if Instant::now() + backoff >= give_up {
                        self.fail_all(&format!("no endpoint accepted the watch stream: {e}"));
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn open(&mut self, client: &Client) -> Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut handles: Vec<u64> = self.subs.keys().copied().collect();
        handles.sort_unstable();
        // Queue the creates before opening: etcd sends headers with its first answer.
        for handle in &handles {
            if let Some(sub) = self.subs.get(handle) {
                if sub.next_revision > 0 {
                    crate::trace::event!(
                        INFO,
                        "watch resume",
                        watch = *handle,
                        start_revision = sub.next_revision
                    );
                }
                let msg = create_message(sub.resume_request());
                client
                    .counters()
                    .stream_sent(prost::Message::encoded_len(&msg));
                let _ = tx.send(msg);
            }
        }
        if !self.progress_wanted.is_empty() {
            // Asked on a stream that broke before etcd answered: ask this one, after the creates.
            let msg = progress_message();
            client
                .counters()
                .stream_sent(prost::Message::encoded_len(&msg));
            let _ = tx.send(msg);
        }
        let requests =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let tap = crate::wire::StreamTap::new(client.wire(), WATCH);
        let requests = tap.outbound(requests);
        let (endpoint, channel) = client.current();
        let mut grpc = WatchClient::stream(channel, client.options());
        let token = client.token();
        let mut request = client.request_with_token(requests, token.as_ref());
        require_leader(&mut request);
        tap.open(|| client.endpoint_url(endpoint), &request);
        let open = tap.opened(grpc.watch(request));
        let timeout = client
            .options()
            .request_timeout
            .unwrap_or(Duration::from_secs(10));
        let opened = match tokio::time::timeout(timeout, open).await {
            Ok(r) => r.map_err(Error::from_status),
            Err(_) => Err(Error::Timeout {
                method: WATCH,
                after: timeout,
                last_error: None,
            }),
        };
        let responses = match opened {
            Ok(r) => r.into_inner(),
            Err(e) => {
                client.fail_over(endpoint);
                return Err(e);
            }
        };
        self.stream = Some(Stream {
            requests: tx,
            token,
            responses: Some(responses),
            endpoint,
            pending: handles.into(),
            by_id: HashMap::new(),
            ids: HashMap::new(),
            fragments: HashMap::new(),
        });
        Ok(())
    }

    fn fail_all(&mut self, reason: &str) {
        self.fail_all_with(|| closed(reason));
    }

    /// Ends every watch with the error `error` makes (one per watch).
    fn fail_all_with(&mut self, error: impl Fn() -> Error) {
        self.stream = None;
        self.progress_wanted.clear();
        for (_, sub) in self.subs.drain() {
            match sub.created {
                Some(created) => {
                    let _ = created.send(Err(error()));
                }
                None => end(&sub.events, error()),
            }
        }
    }

    fn dispatch(&mut self, resp: pb::WatchResponse, client: &Client) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if resp.created {
            let Some(handle) = stream.pending.pop_front() else {
                return;
            };
            let Some(sub) = self.subs.get_mut(&handle) else {
                // Cancelled while the create was in flight: cancel what etcd just created.
                if !resp.canceled {
                    let _ = stream.requests.send(cancel_message(resp.watch_id));
                }
                return;
            };
            if resp.canceled || resp.watch_id < 0 {
                let err = if resp.compact_revision > 0 {
                    Error::WatchCompacted {
                        compact_revision: resp.compact_revision,
                    }
                } else {
                    refusal(&resp.cancel_reason)
                };
                if let Some(sub) = self.subs.remove(&handle) {
                    match sub.created {
                        Some(created) => drop(created.send(Err(err))),
                        None => end(&sub.events, err),
                    }
                }
                return;
            }
            let revision = header_of(&resp.header).revision;
            if sub.next_revision == 0 {
                sub.next_revision = match sub.request.start_revision {
                    0 => revision + 1,
                    start => start,
                };
            }
            stream.by_id.insert(resp.watch_id, handle);
            stream.ids.insert(handle, resp.watch_id);
            if let Some(created) = sub.created.take() {
                let confirmed = Created {
                    watch_id: resp.watch_id,
                    revision,
                };
                if created.send(Ok(confirmed)).is_err() {
                    // The caller gave up waiting.
                    self.apply(Command::Cancel(handle), client);
                }
            }
            return;
        }
        let id = resp.watch_id;
        if id == STREAM_WIDE && !resp.canceled && resp.events.is_empty() {
            self.progress_answered(resp, client);
            return;
        }
        let Some(&handle) = stream.by_id.get(&id) else {
            return;
        };
        if resp.canceled {
            stream.by_id.remove(&id);
            stream.ids.remove(&handle);
            if let Some(sub) = self.subs.remove(&handle) {
                let err = if resp.compact_revision > 0 {
                    Error::WatchCompacted {
                        compact_revision: resp.compact_revision,
                    }
                } else {
                    closed(&format!("cancelled by etcd: {}", resp.cancel_reason))
                };
                end(&sub.events, err);
            }
            return;
        }
        // Merge fragments: etcd marks every part but the last with `fragment`. The merged
        // response is held to the same limit as one message (`max_response_bytes`): a server
        // that never ends a fragmented response cannot grow it without bound.
        let size = prost::Message::encoded_len(&resp);
        let (resp, merged) = match stream.fragments.remove(&id) {
            Some((mut acc, so_far)) => {
                acc.events.extend(resp.events);
                acc.fragment = resp.fragment;
                acc.header = resp.header.or(acc.header);
                (acc, so_far.saturating_add(size))
            }
            None => (resp, size),
        };
        let limit = client.options().max_response_bytes;
        if merged > limit {
            if let Some(sub) = self.subs.get(&handle) {
                let too_large = Error::MessageTooLarge {
                    method: WATCH,
                    what: MessageKind::Response,
                    bytes: merged,
                    limit,
                };
                end(&sub.events, too_large);
            }
            self.apply(Command::Cancel(handle), client);
            return;
        }
        if resp.fragment {
            stream.fragments.insert(id, (resp, merged));
            return;
        }
        let Some(sub) = self.subs.get_mut(&handle) else {
            return;
        };
        let delivered_up_to = match resp.events.last().and_then(|e| e.kv.as_ref()) {
            Some(kv) => kv.mod_revision,
            // A progress notification: everything up to its revision was delivered.
            None => header_of(&resp.header).revision,
        };
        match deliver(&sub.events, WatchResponse(resp)) {
            Delivery::Sent => sub.next_revision = sub.next_revision.max(delivered_up_to + 1),
            undelivered => self.drop_undelivered(handle, undelivered, client),
        }
    }

    /// A watch whose receiver lagged (ended with [`Error::WatchLagged`]) or went away is
    /// cancelled.
    fn drop_undelivered(&mut self, handle: u64, delivery: Delivery, client: &Client) {
        if let (Delivery::Lagged, Some(sub)) = (&delivery, self.subs.get(&handle)) {
            let lagged = Error::WatchLagged {
                next_revision: sub.next_revision,
            };
            end(&sub.events, lagged);
        }
        if !matches!(delivery, Delivery::Sent) {
            self.apply(Command::Cancel(handle), client);
        }
    }

    /// Hands etcd's answer to `WatchProgressRequest` to every watch that asked for it.
    ///
    /// Its header revision does not move any watch's resume revision: before etcd 3.5.8 and
    /// 3.4.25 the server sent this answer on the stream's control path, ahead of events of
    /// lower revisions still queued for the watches (etcd issue 15220, fixed by PR 15237,
    /// backported in PRs 15695 and 15697), so on 3.5.1 or 3.4.23 a resume from it would skip
    /// those events. A watch resumes from its last delivered event + 1 instead.
    fn progress_answered(&mut self, resp: pb::WatchResponse, client: &Client) {
        for handle in std::mem::take(&mut self.progress_wanted) {
            let Some(sub) = self.subs.get_mut(&handle) else {
                continue;
            };
            let delivery = deliver(&sub.events, WatchResponse(resp.clone()));
            self.drop_undelivered(handle, delivery, client);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The hub's state machine fed directly: commands in, `WatchResponse`s as etcd sends them
    //! (creates answered in order, fragments, cancels, progress answers), no server.
    use super::*;
    use crate::proto::mvccpb;

    struct Rig {
        hub: Hub,
        client: Client,
        /// What the hub sent on the stream.
        sent: mpsc::UnboundedReceiver<pb::WatchRequest>,
    }

    fn rig() -> Option<Rig> {
        let client = Client::builder(["127.0.0.1:1"], crate::ClientOptions::new())
            .ok()?
            .unconnected();
        let (requests, sent) = mpsc::unbounded_channel();
        let hub = Hub {
            stream: Some(Stream {
                requests,
                token: None,
                responses: None,
                endpoint: 0,
                pending: VecDeque::new(),
                by_id: HashMap::new(),
                ids: HashMap::new(),
                fragments: HashMap::new(),
            }),
            ..Hub::default()
        };
        Some(Rig { hub, client, sent })
    }

    type Watch = (
        oneshot::Receiver<Result<Created>>,
        mpsc::Receiver<Result<WatchResponse>>,
    );

    impl Rig {
        fn create(&mut self, handle: u64, start_revision: i64, capacity: usize) -> Watch {
            let (created, created_rx) = oneshot::channel();
            let (events, events_rx) = mpsc::channel(capacity);
            let request = pb::WatchCreateRequest {
                key: b"p/".to_vec(),
                range_end: b"p0".to_vec(),
                start_revision,
                ..Default::default()
            };
            let command = Command::Create {
                handle,
                request,
                created,
                events,
            };
            self.hub.apply(command, &self.client);
            (created_rx, events_rx)
        }

        fn feed(&mut self, resp: pb::WatchResponse) {
            self.hub.dispatch(resp, &self.client);
        }

        /// The requests sent so far: creates as `+start`, cancels as `-id`, progress as 0.
        fn sent(&mut self) -> Vec<i64> {
            let mut out = Vec::new();
            while let Ok(m) = self.sent.try_recv() {
                use pb::watch_request::RequestUnion as U;
                out.push(match m.request_union {
                    Some(U::CreateRequest(c)) => c.start_revision,
                    Some(U::CancelRequest(c)) => -c.watch_id,
                    _ => 0,
                });
            }
            out
        }

        fn next_revision(&self, handle: u64) -> Option<i64> {
            self.hub.subs.get(&handle).map(|s| s.next_revision)
        }
    }

    fn header(revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            revision,
            ..Default::default()
        })
    }

    fn created(watch_id: i64, revision: i64) -> pb::WatchResponse {
        pb::WatchResponse {
            header: header(revision),
            watch_id,
            created: true,
            ..Default::default()
        }
    }

    fn deletes(watch_id: i64, revisions: &[i64]) -> pb::WatchResponse {
        let events = revisions
            .iter()
            .map(|&rev| mvccpb::Event {
                r#type: mvccpb::event::EventType::Delete as i32,
                kv: Some(mvccpb::KeyValue {
                    key: format!("p/{rev}").into_bytes(),
                    mod_revision: rev,
                    ..Default::default()
                }),
                prev_kv: None,
            })
            .collect();
        pb::WatchResponse {
            header: header(revisions.last().copied().unwrap_or(0)),
            watch_id,
            events,
            ..Default::default()
        }
    }

    fn revisions(batch: &Result<WatchResponse>) -> Vec<i64> {
        batch.as_ref().map_or_else(
            |_| Vec::new(),
            |b| {
                b.events()
                    .iter()
                    .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
                    .collect()
            },
        )
    }

    #[tokio::test]
    async fn creates_are_answered_in_order_and_events_routed_by_id() {
        let Some(mut r) = rig() else {
            panic!("test client");
        };
        let (mut c1, mut e1) = r.create(1, 0, 8);
        let (mut c2, mut e2) = r.create(2, 50, 8);
        assert_eq!(r.sent(), vec![0, 50]);
        // etcd answers creates in the order sent; the IDs are its own.
        r.feed(created(7, 40));
        r.feed(created(3, 40));
        assert!(matches!(c1.try_recv(), Ok(Ok(Created { watch_id: 7, .. }))));
        assert!(matches!(c2.try_recv(), Ok(Ok(Created { watch_id: 3, .. }))));
        // From now: the next unseen revision; from 50: 50 itself.
        assert_eq!(r.next_revision(1), Some(41));
        assert_eq!(r.next_revision(2), Some(50));
        // Events for the two watches interleave on the stream.
        r.feed(deletes(3, &[51]));
        r.feed(deletes(7, &[41, 42]));
        r.feed(deletes(3, &[52]));
        assert_eq!(e1.try_recv().map(|b| revisions(&b)), Ok(vec![41, 42]));
        assert_eq!(e2.try_recv().map(|b| revisions(&b)), Ok(vec![51]));
        assert_eq!(e2.try_recv().map(|b| revisions(&b)), Ok(vec![52]));
        // A resume after a broken stream starts after the last delivered event.
        assert_eq!(r.next_revision(1), Some(43));
        assert_eq!(r.next_revision(2), Some(53));
        // Unknown watch IDs (a cancelled watch's late events) go nowhere.
        r.feed(deletes(99, &[60]));
        assert!(e1.try_recv().is_err() && e2.try_recv().is_err());
    }

    #[tokio::test]
    async fn fragments_are_delivered_once_merged() {
        let Some(mut r) = rig() else {
            panic!("test client");
        };
        let (_c, mut e) = r.create(1, 0, 8);
        r.feed(created(4, 10));
        let mut part = deletes(4, &[11, 12]);
        part.fragment = true;
        r.feed(part);
        assert!(e.try_recv().is_err(), "nothing before the last fragment");
        r.feed(deletes(4, &[13]));
        assert_eq!(e.try_recv().map(|b| revisions(&b)), Ok(vec![11, 12, 13]));
        assert_eq!(r.next_revision(1), Some(14));
    }

    #[tokio::test]
    async fn a_watch_dropped_while_its_create_is_in_flight_is_cancelled_at_etcd() {
        let Some(mut r) = rig() else {
            panic!("test client");
        };
        let (c1, _e1) = r.create(1, 0, 8);
        let (mut c2, _e2) = r.create(2, 0, 8);
        drop(c1);
        r.sent();
        // The caller of watch 1 gave up: the hub cancels what etcd created for it.
        r.feed(created(5, 10));
        assert_eq!(r.sent(), vec![-5]);
        // The next answer still belongs to the next create.
        r.feed(created(6, 10));
        assert!(matches!(c2.try_recv(), Ok(Ok(Created { watch_id: 6, .. }))));
        // A watch cancelled by its handle before etcd answered: etcd's watch is cancelled too.
        let (_c3, _e3) = r.create(3, 0, 8);
        r.hub.apply(Command::Cancel(3), &r.client);
        r.sent();
        r.feed(created(8, 10));
        assert_eq!(r.sent(), vec![-8]);
    }

    #[tokio::test]
    async fn a_compacted_start_and_a_server_cancel_end_only_their_watch() {
        let Some(mut r) = rig() else {
            panic!("test client");
        };
        let (mut c1, _e1) = r.create(1, 5, 8);
        let (mut c2, mut e2) = r.create(2, 0, 8);
        let mut refused = created(-1, 30);
        refused.canceled = true;
        refused.compact_revision = 20;
        r.feed(refused);
        assert!(matches!(
            c1.try_recv(),
            Ok(Err(Error::WatchCompacted {
                compact_revision: 20
            }))
        ));
        r.feed(created(9, 30));
        assert!(matches!(c2.try_recv(), Ok(Ok(_))));
        // Later, etcd cancels watch 9 (compacted while catching up).
        let mut cancel = deletes(9, &[]);
        cancel.canceled = true;
        cancel.compact_revision = 25;
        r.feed(cancel);
        assert!(matches!(
            e2.try_recv(),
            Ok(Err(Error::WatchCompacted {
                compact_revision: 25
            }))
        ));
        assert!(r.hub.subs.is_empty());
    }

    #[tokio::test]
    async fn a_progress_answer_reaches_those_who_asked_and_moves_no_resume_revision() {
        let Some(mut r) = rig() else {
            panic!("test client");
        };
        let (_c1, mut e1) = r.create(1, 0, 8);
        let (_c2, mut e2) = r.create(2, 0, 8);
        r.feed(created(1, 10));
        r.feed(created(2, 10));
        r.hub.apply(Command::Progress(1), &r.client);
        assert_eq!(
            r.sent(),
            vec![0, 0, 0],
            "two creates and a progress request"
        );
        // etcd 3.5.1 may answer progress (stream-wide, ID -1) ahead of queued events.
        r.feed(deletes(STREAM_WIDE, &[]));
        let answer = e1.try_recv();
        assert!(answer.is_ok_and(|b| b.is_ok_and(|b| b.is_progress_notify())));
        assert!(e2.try_recv().is_err(), "watch 2 did not ask");
        assert_eq!(r.next_revision(1), Some(11));
        // Answered once: a second answer goes to no one.
        r.feed(deletes(STREAM_WIDE, &[]));
        assert!(e1.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_ends_with_lagged_and_is_cancelled() {
        let Some(mut r) = rig() else {
            panic!("test client");
        };
        let (_c, mut e) = r.create(1, 0, 2);
        r.feed(created(3, 10));
        r.sent();
        r.feed(deletes(3, &[11]));
        // The last slot is kept for the terminal error: this one does not fit.
        r.feed(deletes(3, &[12]));
        assert_eq!(e.try_recv().map(|b| revisions(&b)), Ok(vec![11]));
        assert!(matches!(
            e.try_recv(),
            Ok(Err(Error::WatchLagged { next_revision: 12 }))
        ));
        assert_eq!(r.sent(), vec![-3]);
        assert!(r.hub.subs.is_empty());
    }
}
