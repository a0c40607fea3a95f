//! FIFO order on the fast path: waiters (and election candidates) that share ONE client, so
//! the recipe flavour serves them all from that client's one prefix watch, queue in a known
//! order and must be served in exactly that order, one at a time, on every etcd version and
//! in both flavours. (`tests/lock.rs` and `tests/election.rs` check the order with one client
//! per waiter, the slow path.)
//!
//! Each waiter is started only once the previous one's key exists under the name, so the
//! queue order is known; each holds for a moment and records whether anyone else was inside.
#![cfg(feature = "testkit")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ok, session, wait_key_count};
use etcd_lock::election::{Elector, RecipeElection, ServiceElection};
use etcd_lock::lock::{Locker, RecipeLock, ServiceLock};
use etcd_lock::testkit::EtcdBinary;
use tokio::task::JoinHandle;

/// Waiters (or candidates) queued behind the first holder.
const WAITERS: usize = 5;
/// How long each one holds before releasing.
const HOLD: Duration = Duration::from_millis(50);
/// Bound on each wait of the test.
const WAIT: Duration = Duration::from_secs(10);

/// Runs a case once per lock flavour and etcd version.
macro_rules! per_flavour {
    ($($case:ident: $a:ident, $b:ident);+ $(;)?) => {$(
        mod $case {
            use super::*;
            async fn recipe(bin: &EtcdBinary) { super::$case(bin, $a::new()).await }
            async fn service(bin: &EtcdBinary) { super::$case(bin, $b::new()).await }
            per_version!(recipe, service);
        }
    )+};
}

per_flavour!(
    shared_client_waiters_acquire_in_queue_order: RecipeLock, ServiceLock;
    shared_client_candidates_lead_in_queue_order: RecipeElection, ServiceElection;
);

/// Who was served, in order, and whether two were ever inside at once.
#[derive(Default)]
struct Served {
    order: Mutex<Vec<usize>>,
    inside: AtomicUsize,
    overlaps: AtomicUsize,
}

impl Served {
    /// `i` got in: note it, hold for [`HOLD`], leave.
    async fn hold(&self, i: usize) {
        if self.inside.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut order) = self.order.lock() {
            order.push(i);
        }
        tokio::time::sleep(HOLD).await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    /// Awaits the tasks (bounded) and checks the order and the exclusion.
    async fn verify(&self, tasks: Vec<JoinHandle<()>>, what: &str) {
        for (i, task) in tasks.into_iter().enumerate() {
            match tokio::time::timeout(WAIT, task).await {
                Ok(joined) => ok(joined),
                Err(_) => panic!("{what} {i} not served within {WAIT:?}"),
            }
        }
        let order = self.order.lock().map(|o| o.clone()).unwrap_or_default();
        let queued: Vec<usize> = (0..=WAITERS).collect();
        assert_eq!(order, queued, "{what}s served out of queue order");
        assert_eq!(
            self.overlaps.load(Ordering::SeqCst),
            0,
            "two {what}s inside"
        );
    }
}

/// Locks: a holder and [`WAITERS`] waiters, every session on one client.
async fn shared_client_waiters_acquire_in_queue_order<L: Locker + Clone + 'static>(
    bin: &EtcdBinary,
    locker: L,
) {
    let cluster = common::single(bin);
    let name = common::unique("fifo-lock");
    let client = common::client(&cluster).await;
    let served = Arc::new(Served::default());
    let first = session(&client, 10).await;
    let holder = ok(locker.lock(&first, name.as_bytes()).await);
    served.hold(0).await;
    // Keep "inside" set for the holder until it unlocks.
    served.inside.fetch_add(1, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 1..=WAITERS {
        let (own_client, locker, served, own_name) =
            (client.clone(), locker.clone(), served.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let (client, name) = (own_client, own_name);
            let s = session(&client, 10).await;
            let guard = ok(locker.lock(&s, name.as_bytes()).await);
            served.hold(i).await;
            ok(guard.unlock().await);
            ok(s.close().await);
        }));
        // Queue them one by one: the next starts only once this one's key exists.
        wait_key_count(&client, &name, i + 1, WAIT).await;
    }
    served.inside.fetch_sub(1, Ordering::SeqCst);
    ok(holder.unlock().await);
    served.verify(tasks, "waiter").await;
    wait_key_count(&client, &name, 0, WAIT).await;
    ok(first.close().await);
}

/// Elections: a leader and [`WAITERS`] candidates, every session on one client.
async fn shared_client_candidates_lead_in_queue_order<E: Elector + Clone + 'static>(
    bin: &EtcdBinary,
    elector: E,
) {
    let cluster = common::single(bin);
    let name = common::unique("fifo-election")
        .trim_end_matches('/')
        .to_string();
    let client = common::client(&cluster).await;
    let served = Arc::new(Served::default());
    let first = session(&client, 10).await;
    let leader = ok(elector.campaign(&first, name.as_bytes(), b"v0").await);
    served.hold(0).await;
    served.inside.fetch_add(1, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 1..=WAITERS {
        let (own_client, elector, served, own_name) = (
            client.clone(),
            elector.clone(),
            served.clone(),
            name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (client, name) = (own_client, own_name);
            let s = session(&client, 10).await;
            let value = format!("v{i}");
            let leading = ok(elector
                .campaign(&s, name.as_bytes(), value.as_bytes())
                .await);
            // The leader everyone sees is this candidate, with its value.
            let seen = ok(elector.leader(&client, name.as_bytes()).await);
            assert_eq!(
                seen.map(|l| (l.key_str(), l.value_str())),
                Some((leading.key_str(), value))
            );
            served.hold(i).await;
            ok(leading.resign().await);
            ok(s.close().await);
        }));
        wait_key_count(&client, &name, i + 1, WAIT).await;
    }
    served.inside.fetch_sub(1, Ordering::SeqCst);
    ok(leader.resign().await);
    served.verify(tasks, "candidate").await;
    wait_key_count(&client, &name, 0, WAIT).await;
    ok(first.close().await);
}
