//! Following an election: the [`Observer`] stream, and the recipe's way of feeding it.
//!
//! The recipe starts like Go's `Observe`: one linearizable `KV/Range` of the first-created key
//! under `NAME/` gives the leader as of that read's revision R, never an older state, even when
//! the member answering was behind. Then it keeps one watch on `NAME/` (PUTs and DELETEs) from
//! R + 1, so starting costs two RPCs and no change after R is missed. Each event after that revision updates it: a PUT into an empty election is the
//! new leader; a PUT on the leader key is a proclaim; a DELETE of the leader key is answered
//! by one `KV/Range` of the first-created key *at the DELETE's revision*, so the successor is
//! read exactly as it was then and no leader in between is skipped. Other candidates' keys
//! come and go without any RPC.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::watch::{is_delete, WatchOptions, WatchResponse, Watcher};

use super::recipe::first_created;
use super::LeaderInfo;

/// A stream of leader changes of one election, from [`super::Elector::observe`].
///
/// Yields the current leader first (if there is one), then each new leader, and the leader
/// again whenever it proclaims a different value. Each state is yielded once and in order:
/// create revisions never go down. After an error the stream ends (`None`); observe again to
/// continue. Read it with [`Observer::next`] or as a `futures` `Stream`; dropping it stops the
/// watch (recipe) or cancels the `Election/Observe` call (service).
///
/// ```no_run
/// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
/// use etcd_lock::election::{Elector, RecipeElection};
/// let mut observer = RecipeElection::new().observe(&client, b"/svc/primary").await?;
/// while let Some(leader) = observer.next().await {
///     let leader = leader?;
///     println!("leader {} says {}", leader.key_str(), leader.value_str());
/// }
/// # Ok(()) }
/// ```
#[must_use = "an observer does nothing unless read"]
pub struct Observer {
    name: Vec<u8>,
    flavour: &'static str,
    inner: Pin<Box<dyn Stream<Item = Result<LeaderInfo>> + Send>>,
    last: Option<LeaderInfo>,
    done: bool,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("flavour", &self.flavour)
            .field("last", &self.last)
            .field("done", &self.done)
            .finish()
    }
}

impl Observer {
    pub(crate) fn new(
        name: Vec<u8>,
        flavour: &'static str,
        inner: impl Stream<Item = Result<LeaderInfo>> + Send + 'static,
    ) -> Self {
        Observer {
            name,
            flavour,
            inner: Box::pin(inner),
            last: None,
            done: false,
        }
    }

    /// The next leader state; `None` once the observation ended (after an error).
    pub async fn next(&mut self) -> Option<Result<LeaderInfo>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The last leader state yielded, if any.
    pub fn last(&self) -> Option<&LeaderInfo> {
        self.last.as_ref()
    }
}

impl Stream for Observer {
    type Item = Result<LeaderInfo>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(leader))) => {
                    // Both flavours can report a state twice (a proclaim of the same value,
                    // a re-read after a watch restart): yield each state once.
                    if this.last.as_ref().is_some_and(|l| l.same_state(&leader)) {
                        continue;
                    }
                    this.last = Some(leader.clone());
                    return Poll::Ready(Some(Ok(leader)));
                }
            }
        }
    }
}

/// Starts observing `prefix` with the recipe (see the module docs).
pub(crate) async fn recipe(client: Client, prefix: Vec<u8>) -> Result<Observer> {
    let mut state = RecipeObserver {
        client,
        prefix,
        watcher: None,
        current: None,
        known_through: 0,
        last_event: 0,
        queue: VecDeque::new(),
        failures: 0,
        opened_at: Instant::now(),
    };
    state.restart().await?;
    let name = state.prefix[..state.prefix.len().saturating_sub(1)].to_vec();
    let stream = futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next_leader().await {
            Ok(leader) => Some((Ok(leader), Some(state))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Observer::new(name, "recipe", stream))
}

struct RecipeObserver {
    client: Client,
    prefix: Vec<u8>,
    watcher: Option<Watcher>,
    /// The leader as of `known_through`, updated event by event.
    current: Option<LeaderInfo>,
    /// The election is known exactly as of this revision; older events are skipped.
    known_through: i64,
    /// The newest event revision applied (a reopened watch starts after it).
    last_event: i64,
    queue: VecDeque<LeaderInfo>,
    /// Consecutive watch failures without an event in between.
    failures: u32,
    /// When the current watch was (re)opened.
    opened_at: Instant,
}

impl RecipeObserver {
    fn set_leader(&mut self, leader: Option<LeaderInfo>) {
        if let Some(l) = &leader {
            self.queue.push_back(l.clone());
        }
        self.current = leader;
    }

    /// Reads the leader with one linearizable `KV/Range` (first-created key under the prefix),
    /// then opens the watch from that read's revision + 1: two RPCs, as before, in the order of
    /// Go's `Observe`. Also the way back after a compaction: leaders that came and went in the
    /// compacted history are not seen.
    ///
    /// Why this order: a linearizable read answers only once the member serving it has applied
    /// everything committed before the read began, so the leader it returns was current when
    /// `observe()` ran, and its header revision is a point the watch can continue from without
    /// a gap. The old order (watch first, then read at the watch's start revision) took that
    /// revision from the member's local store, which may lag (a member that was paused or cut
    /// off), so the first "current" leader could be one deleted before `observe()` was called.
    async fn restart(&mut self) -> Result<()> {
        self.watcher = None;
        // A compaction between the read and the watch makes the watch start too old: read
        // again, at most twice more.
        let mut attempt = 0;
        loop {
            let response = self
                .client
                .get_with(self.prefix.clone(), first_created())
                .await?;
            let at = response.revision();
            let leader = response.into_inner().kvs.into_iter().next().map(Into::into);
            let opened = self
                .client
                .watch_with(
                    self.prefix.clone(),
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(at + 1),
                )
                .await;
            let watcher = match opened {
                Ok(w) => w,
                Err(Error::WatchCompacted { .. }) if attempt < 2 => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.opened_at = Instant::now();
            self.watcher = Some(watcher);
            self.known_through = at;
            self.last_event = self.last_event.max(at);
            self.set_leader(leader);
            return Ok(());
        }
    }

    /// The leader's key-value as it was at `revision` (one `KV/Range`); `None` when that
    /// revision is compacted (the caller then restarts from the current state).
    async fn leader_at(&self, revision: i64) -> Result<Option<Option<LeaderInfo>>> {
        match self
            .client
            .get_with(self.prefix.clone(), first_created().with_revision(revision))
            .await
        {
            Ok(r) => Ok(Some(r.into_inner().kvs.into_iter().next().map(Into::into))),
            Err(e) if e.is_compacted() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn next_leader(&mut self) -> Result<LeaderInfo> {
        loop {
            if let Some(leader) = self.queue.pop_front() {
                return Ok(leader);
            }
            let batch = match self.watcher.as_mut() {
                Some(w) => w.next().await,
                None => None,
            };
            if batch.as_ref().is_none_or(|b| b.is_err())
                && self.opened_at.elapsed() >= Duration::from_secs(5)
            {
                // The watch that just broke had been working: not a failure streak.
                self.failures = 0;
            }
            match batch {
                Some(Ok(batch)) => {
                    self.failures = 0;
                    self.apply(batch).await?;
                }
                Some(Err(Error::WatchCompacted { .. })) => self.restart().await?,
                Some(Err(e)) if self.failures >= 3 => return Err(e),
                Some(Err(_)) | None => self.reopen().await?,
            }
        }
    }

    /// Reopens the watch right after the last revision applied, so nothing is missed.
    async fn reopen(&mut self) -> Result<()> {
        self.watcher = None;
        self.failures += 1;
        self.opened_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(100 << self.failures.min(4))).await;
        let from = self.known_through.max(self.last_event) + 1;
        let opened = self
            .client
            .watch_with(
                self.prefix.clone(),
                WatchOptions::new().with_prefix().with_start_revision(from),
            )
            .await;
        match opened {
            Ok(w) => {
                self.watcher = Some(w);
                Ok(())
            }
            Err(Error::WatchCompacted { .. }) => self.restart().await,
            Err(e) if self.failures >= 3 => Err(e),
            Err(_) => Ok(()),
        }
    }

    async fn apply(&mut self, batch: WatchResponse) -> Result<()> {
        for event in batch.into_inner().events {
            let deleted = is_delete(&event);
            let Some(kv) = event.kv else { continue };
            let rev = kv.mod_revision;
            if rev <= self.known_through {
                continue;
            }
            self.last_event = self.last_event.max(rev);
            let on_leader = self.current.as_ref().map(|c| c.key == kv.key);
            match (deleted, on_leader) {
                // The leader is gone: its successor is the first-created key at that revision.
                (true, Some(true)) => match self.leader_at(rev).await? {
                    Some(next) => {
                        self.known_through = rev;
                        self.set_leader(next);
                    }
                    None => {
                        self.restart().await?;
                        return Ok(());
                    }
                },
                // A key put into an empty election leads; a put on the leader key proclaims.
                (false, None) | (false, Some(true)) => self.set_leader(Some(kv.into())),
                _ => {}
            }
        }
        Ok(())
    }
}
