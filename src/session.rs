//! A session: one lease kept alive by a background task, and a signal that fires when the lease
//! is lost. Locks and elections attach their keys to the session's lease, so a crashed process's
//! keys vanish when its TTL runs out.
//!
//! On the wire: `Lease/LeaseGrant` at creation (unless an existing lease is adopted), then one
//! `LeaseKeepAlive` message every TTL/3 on a long-lived stream, `Lease/LeaseRevoke` on
//! [`Session::close`] (and, in the background, when the last handle is dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::lease::{check_ttl, LeaseKeeper};
use crate::support::BoxFuture;

/// Default session TTL, as in Go's `concurrency.NewSession`: 60 s.
pub const DEFAULT_TTL_SECS: i64 = 60;

/// Options of [`Session::with_options`].
#[derive(Debug, Clone)]
#[must_use]
#[non_exhaustive]
pub struct SessionOptions {
    ttl: i64,
    lease: Option<i64>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ttl: DEFAULT_TTL_SECS,
            lease: None,
        }
    }
}

impl SessionOptions {
    /// TTL 60 s, a new lease.
    pub fn new() -> Self {
        Self::default()
    }
    /// Lease TTL in seconds (1 ..= etcd's maximum). Keep-alives go out every TTL/3.
    pub fn with_ttl(mut self, ttl_secs: i64) -> Self {
        self.ttl = ttl_secs;
        self
    }
    /// Adopt an existing lease instead of granting one (its TTL is taken from etcd).
    pub fn with_lease(mut self, lease: i64) -> Self {
        self.lease = Some(lease);
        self
    }
}

#[derive(Debug)]
struct Shared {
    client: Client,
    lease: i64,
    ttl: i64,
    /// Milliseconds since `epoch` after which the lease must be presumed expired.
    deadline_ms: AtomicU64,
    epoch: Instant,
    lost: AtomicBool,
    lost_tx: watch::Sender<bool>,
    closed: AtomicBool,
    /// etcd itself answered that the lease is gone (nothing left to revoke).
    gone_on_server: AtomicBool,
    /// Lock and election names this session currently holds or waits for; `true` while a
    /// key left behind (cancelled wait, dropped guard, failed unlock) is still being deleted.
    names: Mutex<HashMap<Vec<u8>, bool>>,
    /// Woken whenever a name is released, for claims waiting on a cleanup.
    released: Notify,
    /// Per name, a revision at which this session's key under it (`NAME/<lease hex>`) is known
    /// not to exist: the revision of this session's own delete of it. Taken by the next claim
    /// of the name (see [`NameClaim::absent_before`]); bounded by [`ABSENT_RECORDS`].
    absent: Mutex<HashMap<Vec<u8>, i64>>,
}

/// At most this many names keep an "absent at" record; past it the records are dropped (each
/// one only saves a `KV/Range` on the next lock of its name through etcd's Lock service).
const ABSENT_RECORDS: usize = 1024;

impl Shared {
    fn mark_lost(&self) {
        let was_lost = self.lost.swap(true, Ordering::SeqCst);
        self.lost_tx.send_replace(true);
        if !was_lost && !self.closed.load(Ordering::SeqCst) {
            crate::trace::event!(WARN, "session lost", lease = self.lease);
        }
    }

    /// Moves the local deadline to `sent_at + ttl` after an answered keep-alive, unless the
    /// deadline has already passed: a session the client gave up on stays given up, even when
    /// a keep-alive sent before the deadline is answered after it (a new etcd leader renews
    /// every lease on promotion, so such an answer can arrive). Returns whether it moved.
    fn refreshed(&self, sent_at: Instant, ttl: i64) -> bool {
        let deadline = sent_at.duration_since(self.epoch) + Duration::from_secs(ttl.max(0) as u64);
        let extended = extend_deadline(
            &self.deadline_ms,
            &self.lost,
            || self.now_ms(),
            deadline.as_millis() as u64,
        );
        if !extended {
            self.mark_lost();
        }
        extended
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// True once the local deadline has passed; the verdict is latched (the session is marked
    /// lost), so it never turns back.
    fn expired_locally(&self) -> bool {
        if self.now_ms() >= self.deadline_ms.load(Ordering::SeqCst) {
            self.mark_lost();
            return true;
        }
        false
    }
}

/// Moves `deadline_ms` forward to `deadline` unless it has already passed (by `now`) or the
/// session was declared lost: then nothing moves and the answer is `false`, for good. A
/// verdict someone reached between the check and the swap (`lost` set) stands too.
fn extend_deadline(
    deadline_ms: &AtomicU64,
    lost: &AtomicBool,
    now: impl Fn() -> u64,
    deadline: u64,
) -> bool {
    let mut current = deadline_ms.load(Ordering::SeqCst);
    loop {
        if lost.load(Ordering::SeqCst) || now() >= current {
            return false;
        }
        if deadline <= current {
            return true;
        }
        match deadline_ms.compare_exchange(current, deadline, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break,
            Err(seen) => current = seen,
        }
    }
    !lost.load(Ordering::SeqCst)
}

#[derive(Debug)]
struct Owner {
    shared: Arc<Shared>,
    keeper: JoinHandle<()>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.keeper.abort();
        if self.shared.closed.swap(true, Ordering::SeqCst)
            || self.shared.gone_on_server.load(Ordering::SeqCst)
        {
            return;
        }
        // Safety net: revoke in the background when a runtime is there to run it.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.shared.client.clone();
            let lease = self.shared.lease;
            crate::support::spawn_on(&handle, async move {
                let _ = client.lease_revoke(lease).await;
            });
        }
    }
}

/// A lease with a keep-alive task. Clones share the lease; the lease is revoked by
/// [`Session::close`] or, in the background, when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Session {
    owner: Arc<Owner>,
}

impl Session {
    /// Grants a lease with the default 60 s TTL and starts keeping it alive.
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
    /// let session = etcd_lock::Session::new(&client).await?;
    /// println!("lease {:x}", session.lease());
    /// session.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn new(client: &Client) -> Result<Session> {
        Self::with_options(client, SessionOptions::new()).await
    }

    /// Grants (or adopts) a lease per `options` and starts keeping it alive. Adopting sends
    /// one `LeaseKeepAlive` to learn the lease's TTL; an unknown lease fails with
    /// [`Error::LeaseExpired`].
    pub async fn with_options(client: &Client, options: SessionOptions) -> Result<Session> {
        open(client, options).await
    }

    fn shared(&self) -> &Shared {
        &self.owner.shared
    }

    /// The lease ID.
    pub fn lease(&self) -> i64 {
        self.shared().lease
    }

    /// The lease TTL in seconds, as granted by etcd.
    pub fn ttl(&self) -> i64 {
        self.shared().ttl
    }

    /// The client this session's requests go through.
    pub fn client(&self) -> &Client {
        &self.shared().client
    }

    /// True once the lease is known lost (expired, revoked, keep-alive failing past the TTL) or
    /// the session was closed. Cheap: an atomic load and a clock read, no RPC.
    pub fn is_lost(&self) -> bool {
        let s = self.shared();
        s.lost.load(Ordering::SeqCst) || s.closed.load(Ordering::SeqCst) || s.expired_locally()
    }

    /// Resolves when the session is lost (immediately if it already is).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shared().lost_tx.subscribe();
        let shared = Arc::clone(&self.owner.shared);
        async move {
            loop {
                if *rx.borrow_and_update() || shared.expired_locally() {
                    return;
                }
                let left = shared
                    .deadline_ms
                    .load(Ordering::SeqCst)
                    .saturating_sub(shared.epoch.elapsed().as_millis() as u64);
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_millis(left.max(1))) => {}
                }
            }
        }
    }

    /// Stops the keep-alive and revokes the lease (`Lease/LeaseRevoke`), which deletes every key
    /// of this session, including lock keys. Other clones see the session as lost.
    pub async fn close(self) -> Result<()> {
        close(self).await
    }

    /// Marks `name` as in use by this session. Fails with [`Error::AlreadyHeld`] if a guard or a
    /// waiting `lock()` of this session uses it. While a key this session left behind under the
    /// name is still being deleted in the background, waits for that delete to finish (however
    /// long it takes: it ends at the latest when the session is lost), so the delete can never
    /// hit the key a new attempt creates or adopts.
    pub(crate) async fn claim(&self, name: &[u8]) -> Result<NameClaim> {
        let shared = self.shared();
        loop {
            let released = shared.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait counts.
            released.as_mut().enable();
            {
                let mut names = shared
                    .names
                    .lock()
                    .map_err(|_| Error::Protocol("session state poisoned".into()))?;
                match names.get(name) {
                    None => {
                        names.insert(name.to_vec(), false);
                        // Every claim takes the record, so it only ever speaks of the delete
                        // made under the claim just before this one.
                        let absent_before = shared
                            .absent
                            .lock()
                            .ok()
                            .and_then(|mut absent| absent.remove(name));
                        return Ok(NameClaim {
                            session: self.clone(),
                            name: name.to_vec(),
                            absent_before,
                        });
                    }
                    Some(true) => {}
                    Some(false) => {
                        return Err(Error::AlreadyHeld {
                            name: String::from_utf8_lossy(name).into_owned(),
                        })
                    }
                }
            }
            // `lost()` is ready at once for a session already lost.
            tokio::select! {
                _ = released => {}
                _ = self.lost() => return Err(self.lost_error()),
            }
        }
    }

    /// The error to report when an operation finds this session's lease gone.
    pub(crate) fn lost_error(&self) -> Error {
        self.shared().mark_lost();
        Error::SessionLost {
            lease: self.lease(),
        }
    }
}

/// How long the lease is known to be alive, for callers that must stop work *before* etcd can
/// expire it (and hand a lock on), not after.
///
/// The timeline, for one answered keep-alive:
///
/// ```text
///  sent ──► etcd receives it, lease expires at (receive + TTL) on etcd's clock
///    │
///    └─ valid_until = sent + TTL  (on this process's monotonic clock; the answer's TTL)
///       expiring(m) fires at valid_until - m
/// ```
///
/// etcd starts the new TTL when it *receives* the keep-alive, which is after it was sent, so
/// `valid_until` is never later than etcd's expiry as long as both clocks run at the same rate.
/// What is left to the caller is the margin `m`: clock-rate drift between the two machines
/// (NTP bounds the slew at 500 ppm, i.e. 30 ms over a 60 s TTL) and its own scheduling delay
/// between the future firing and the work being stopped.
impl Session {
    /// The instant until which the lease is certainly alive: the send time of the last
    /// answered keep-alive (or of the grant) plus the TTL etcd answered with. `None` once the
    /// session is lost or closed. Cheap: an atomic load, no RPC.
    ///
    /// ```no_run
    /// # async fn demo(session: etcd_lock::Session) {
    /// if let Some(until) = session.valid_until() {
    ///     println!("lease alive for at least {:?}", until.saturating_duration_since(std::time::Instant::now()));
    /// }
    /// # }
    /// ```
    pub fn valid_until(&self) -> Option<Instant> {
        let s = self.shared();
        if s.lost.load(Ordering::SeqCst) || s.closed.load(Ordering::SeqCst) {
            return None;
        }
        Some(s.epoch + Duration::from_millis(s.deadline_ms.load(Ordering::SeqCst)))
    }

    /// Resolves `margin` before [`Session::valid_until`] (at once if that is already past), or
    /// when the session is lost. Keep-alives answered meanwhile move the instant later; the
    /// future re-reads it before firing. Use it to stop work that must not outlive the lease:
    /// the `etcd-lock` command starts terminating its command with it.
    ///
    /// ```no_run
    /// # async fn demo(session: etcd_lock::Session) {
    /// use std::time::Duration;
    /// session.expiring(Duration::from_secs(2)).await;
    /// eprintln!("lease may expire within 2 s: stop writing");
    /// # }
    /// ```
    pub fn expiring(&self, margin: Duration) -> impl std::future::Future<Output = ()> + Send {
        let mut rx = self.shared().lost_tx.subscribe();
        let shared = Arc::clone(&self.owner.shared);
        let margin_ms = u64::try_from(margin.as_millis()).unwrap_or(u64::MAX);
        async move {
            loop {
                if *rx.borrow_and_update()
                    || shared.lost.load(Ordering::SeqCst)
                    || shared.closed.load(Ordering::SeqCst)
                {
                    return;
                }
                let fire_at = shared
                    .deadline_ms
                    .load(Ordering::SeqCst)
                    .saturating_sub(margin_ms);
                let now = shared.epoch.elapsed().as_millis() as u64;
                if now >= fire_at {
                    return;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_millis(fire_at - now)) => {}
                }
            }
        }
    }
}

/// Releases a name claimed with [`Session::claim`] when dropped.
#[derive(Debug)]
pub(crate) struct NameClaim {
    session: Session,
    name: Vec<u8>,
    /// A revision at which this session's key under the name did not exist, recorded by the
    /// previous claim's own delete of it (see [`NameClaim::absent_at`]).
    absent_before: Option<i64>,
}

impl NameClaim {
    /// Marks the name as "being cleaned up": a new claim waits until this one is dropped.
    pub(crate) fn cleaning(&self) {
        if let Ok(mut names) = self.session.shared().names.lock() {
            if let Some(flag) = names.get_mut(&self.name) {
                *flag = true;
            }
        }
    }

    /// The session that owns the claim.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Records that this session's key under the name was deleted at `revision` (so it did not
    /// exist at that revision), for the next claim of the name.
    pub(crate) fn absent_at(&self, revision: i64) {
        if let Ok(mut absent) = self.session.shared().absent.lock() {
            if absent.len() >= ABSENT_RECORDS && !absent.contains_key(&self.name) {
                absent.clear();
            }
            absent.insert(self.name.clone(), revision);
        }
    }

    /// What [`NameClaim::absent_at`] recorded under the claim of the name just before this
    /// one: a revision at which the session's key under the name did not exist.
    pub(crate) fn absent_before(&self) -> Option<i64> {
        self.absent_before
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        let shared = self.session.shared();
        if let Ok(mut names) = shared.names.lock() {
            names.remove(&self.name);
        }
        shared.released.notify_waiters();
    }
}

/// The keep-alive task: [`refresh_until_lost`], then, when the client gave the lease up on its
/// own (its local deadline passed while etcd still had it), one more step so that the keys
/// go at once rather than whenever etcd expires the lease: `Lease/LeaseRevoke`, retried for
/// up to a TTL. A lease etcd already reported gone, or a closed session, needs nothing.
async fn keep_alive(shared: Arc<Shared>, keeper: Option<LeaseKeeper>) {
    let mut lost = shared.lost_tx.subscribe();
    tokio::select! {
        _ = refresh_until_lost(&shared, keeper) => {}
        // Latched by anyone who saw the deadline pass (`is_lost`, `lost()`), or by a refusal.
        _ = lost.wait_for(|lost| *lost) => {}
    }
    shared.mark_lost();
    if shared.closed.load(Ordering::SeqCst) || shared.gone_on_server.load(Ordering::SeqCst) {
        return;
    }
    let give_up = tokio::time::Instant::now() + Duration::from_secs(shared.ttl.max(1) as u64);
    let mut pause = Duration::from_millis(200);
    while tokio::time::Instant::now() < give_up {
        match shared.client.lease_revoke(shared.lease).await {
            Ok(_) => return,
            Err(e) if e.is_lease_not_found() => return,
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// The refresh loop: one refresh every TTL/3; on failure, reopen the stream (possibly on
/// another endpoint) with backoff until the lease's deadline has passed, then report lost.
/// An answer that arrives after the deadline does not revive the session.
async fn refresh_until_lost(shared: &Shared, mut keeper: Option<LeaseKeeper>) {
    let period = Duration::from_millis((shared.ttl.max(1) as u64 * 1000) / 3)
        .max(Duration::from_millis(300));
    let mut next = tokio::time::Instant::now() + period;
    /// `call`, or a keep-alive timeout after `period`.
    async fn within<T>(
        period: Duration,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(period, call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    method: crate::lease::KEEP_ALIVE,
                    after: period,
                    last_error: None,
                })
            })
    }

    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::time::sleep_until(next).await;
        let sent_at = Instant::now();
        let result = match keeper.as_mut() {
            Some(k) => within(period, k.keep_alive()).await.map(|r| r.ttl()),
            None => {
                // A member cut off from its peers may accept the stream and then hold the
                // first refresh until it notices it has no leader: bound the open by the
                // period too, and move on from that member when it runs out.
                let (endpoint, _) = shared.client.current();
                match within(period, shared.client.lease_keep_alive(shared.lease)).await {
                    Ok((k, first)) => {
                        keeper = Some(k);
                        Ok(first.ttl())
                    }
                    Err(e) => {
                        if e.is_timeout() {
                            shared.client.fail_over(endpoint);
                        }
                        Err(e)
                    }
                }
            }
        };
        match result {
            Ok(ttl) => {
                if !shared.refreshed(sent_at, ttl) {
                    return;
                }
                backoff = Duration::from_millis(100);
                next = tokio::time::Instant::now() + period;
            }
            Err(Error::LeaseExpired { .. }) => {
                shared.gone_on_server.store(true, Ordering::SeqCst);
                shared.mark_lost();
                return;
            }
            Err(e) if e.is_lease_not_found() => {
                shared.gone_on_server.store(true, Ordering::SeqCst);
                shared.mark_lost();
                return;
            }
            Err(_error) => {
                // Most likely the member stopped answering: open the next stream elsewhere.
                if let Some(k) = keeper.take() {
                    crate::trace::event!(WARN, "keep-alive lost", lease = shared.lease, reason = %_error);
                    k.abandon();
                }
                if shared.expired_locally() {
                    return;
                }
                next = tokio::time::Instant::now() + backoff;
                backoff = (backoff * 2).min(period);
            }
        }
    }
}

/// [`Session::with_options`]. Boxed, in a function that is not `async`: its state machine, and
/// the ones it awaits, are compiled once, in this crate, not again in each calling crate.
fn open(client: &Client, options: SessionOptions) -> BoxFuture<'_, Result<Session>> {
    Box::pin(async move {
        let started = Instant::now();
        let (lease, ttl, keeper) = match options.lease {
            None => {
                check_ttl(options.ttl)?;
                let granted = client.lease_grant(options.ttl).await?;
                (granted.id(), granted.ttl(), None)
            }
            Some(lease) => {
                let (keeper, first) = client.lease_keep_alive(lease).await?;
                (lease, first.ttl(), Some(keeper))
            }
        };
        let (lost_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            client: client.clone(),
            lease,
            ttl,
            // The grant (or first keep-alive) was sent after `started`.
            deadline_ms: AtomicU64::new(Duration::from_secs(ttl.max(0) as u64).as_millis() as u64),
            epoch: started,
            lost: AtomicBool::new(false),
            lost_tx,
            closed: AtomicBool::new(false),
            gone_on_server: AtomicBool::new(false),
            names: Mutex::new(HashMap::new()),
            released: Notify::new(),
            absent: Mutex::new(HashMap::new()),
        });
        let keeper = crate::support::spawn(keep_alive(Arc::clone(&shared), keeper));
        Ok(Session {
            owner: Arc::new(Owner { shared, keeper }),
        })
    })
}

/// [`Session::close`], boxed like [`open`].
fn close(session: Session) -> BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        let s = session.shared();
        session.owner.keeper.abort();
        if s.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = s.client.lease_revoke(s.lease).await;
        s.mark_lost();
        match result {
            Ok(_) => Ok(()),
            // Already gone: nothing left to revoke.
            Err(e) if e.is_lease_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_deadline_is_never_extended() {
        let (deadline, lost) = (AtomicU64::new(1000), AtomicBool::new(false));
        // Before the deadline: an answer moves it forward, never back.
        assert!(extend_deadline(&deadline, &lost, || 500, 4000));
        assert_eq!(deadline.load(Ordering::SeqCst), 4000);
        assert!(extend_deadline(&deadline, &lost, || 600, 3000));
        assert_eq!(deadline.load(Ordering::SeqCst), 4000);
        // An answer that arrives once the deadline has passed (a keep-alive sent before it,
        // answered after it) does not revive the session, however far it would reach.
        assert!(!extend_deadline(&deadline, &lost, || 4000, 9000));
        assert_eq!(deadline.load(Ordering::SeqCst), 4000);
        // Nor does anything once the session was declared lost.
        let (deadline, lost) = (AtomicU64::new(1000), AtomicBool::new(true));
        assert!(!extend_deadline(&deadline, &lost, || 0, 9000));
        assert_eq!(deadline.load(Ordering::SeqCst), 1000);
    }
}
