//! The scale workloads: the handoff floor (W2F), many names (W6), many waiters in one process
//! (W7) and the long run (W2L). Same rules as `workloads`: setup and teardown untimed, every
//! key under the run's base.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use etcd_lock::client::Client;
use etcd_lock::error::{Error, Result};
use etcd_lock::lock::{self, Locker};
use etcd_lock::session::Session;

use super::measure::{rss_kib, Extra, Meter, Outcome, Sample, Samples};
use super::workloads::{
    connect, contended_cycle, increment, join_all, own_sessions, session, Ctx, Exclusion,
};

/// The watches and per-name state of `clients`, each client's count taken on its own: the
/// largest (prefix watches + other watches, per-name entries) over the clients.
fn open_state(clients: &[Client]) -> (usize, usize) {
    clients.iter().fold((0, 0), |(watches, prefixes), c| {
        let s = lock::stats(c);
        (watches.max(c.open_watches()), prefixes.max(s.prefixes))
    })
}

/// Opens `n` sessions on `client`, at most 64 grants in flight.
async fn sessions_on(client: &Client, ctx: &Ctx<'_>, n: usize) -> Result<Vec<Session>> {
    let mut all = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    for i in 0..n {
        let (client, config) = (client.clone(), ctx.config.clone());
        set.spawn(async move { session(&client, &config).await });
        if set.len() >= 64 || i + 1 == n {
            while let Some(joined) = set.join_next().await {
                all.push(joined.map_err(|e| Error::Protocol(format!("session task: {e}")))??);
            }
        }
    }
    Ok(all)
}

/// Closes `sessions` (revoking their leases), 64 at a time; failures are ignored (teardown).
async fn close_all(sessions: Vec<Session>) {
    let mut set = JoinSet::new();
    for s in sessions {
        set.spawn(async move {
            let _ = s.close().await;
        });
        if set.len() >= 64 {
            let _ = set.join_next().await;
        }
    }
    while set.join_next().await.is_some() {}
}

/// W2F: the critical path of a handoff with no lock, one client, sequential: the releaser's
/// `KV/DeleteRange` of an existing key, then the next holder's `KV/Range` + `KV/Put` of the
/// counter. `ops` keys are written first (untimed), one deleted per op.
pub(super) async fn w2f(ctx: &Ctx<'_>, ops: usize) -> Result<Outcome> {
    let client = connect(ctx.config).await?;
    let counter = format!("{}/w2f/counter", ctx.base).into_bytes();
    let key = |i: usize| format!("{}/w2f/k/{i:08}", ctx.base).into_bytes();
    client.put(counter.clone(), "0").await?;
    for i in 0..ops {
        client.put(key(i), "").await?;
    }
    let meter = Meter::start(std::slice::from_ref(&client));
    let mut samples = Samples::with_capacity(ops);
    for i in 0..ops {
        let started = Instant::now();
        let step = async {
            client.delete(key(i)).await?;
            increment(&client, &counter).await
        }
        .await;
        samples.record(started.elapsed(), step);
    }
    let measured = meter.stop();
    Ok(Outcome::new(ops as u64, samples, measured))
}

/// W6: `names` distinct names `<base>/w6/n<i>`, locked and released by `ctx.config.workers`
/// workers (own client and session each). Every 5th name is locked twice in a row, the second
/// time by another worker at nearly the same moment, so a share of the ops contend. Reports the
/// watches and per-name state left on the clients right after the run and after
/// `ctx.config.idle`, with the process's RSS at both moments.
pub(super) async fn w6<L>(ctx: &Ctx<'_>, locker: L, names: usize) -> Result<Outcome>
where
    L: Locker + Clone + 'static,
{
    let workers = ctx.config.workers.max(1);
    let mut plan = Vec::with_capacity(names + names / 5 + 1);
    for i in 0..names {
        plan.push(i);
        if i % 5 == 0 {
            plan.push(i);
        }
    }
    let plan = Arc::new(plan);
    let holding: Arc<Vec<AtomicBool>> =
        Arc::new((0..names).map(|_| AtomicBool::new(false)).collect());
    let overlap = Arc::new(AtomicBool::new(false));
    let (sessions, clients) = own_sessions(ctx, workers).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(workers));
    let meter = Meter::start(&clients);
    let mut set = JoinSet::new();
    for session in &sessions {
        let (session, locker, base) = (session.clone(), locker.clone(), ctx.base.clone());
        let (plan, holding, overlap, next, barrier) = (
            Arc::clone(&plan),
            Arc::clone(&holding),
            Arc::clone(&overlap),
            Arc::clone(&next),
            Arc::clone(&barrier),
        );
        set.spawn(async move {
            barrier.wait().await;
            let mut samples = Samples::default();
            loop {
                let op = next.fetch_add(1, Ordering::Relaxed);
                let Some(&name_index) = plan.get(op) else {
                    return samples;
                };
                let name = format!("{base}/w6/n{name_index:05}").into_bytes();
                let started = Instant::now();
                let result = async {
                    let guard = locker.lock(&session, &name).await?;
                    if holding[name_index].swap(true, Ordering::SeqCst) {
                        overlap.store(true, Ordering::SeqCst);
                    }
                    holding[name_index].store(false, Ordering::SeqCst);
                    locker.unlock(guard).await
                }
                .await;
                samples.record(started.elapsed(), result);
            }
        });
    }
    let samples = join_all(set).await;
    let measured = meter.stop();
    let rss_end = rss_kib();
    let (watches_end, prefixes_end) = open_state(&clients);
    tokio::time::sleep(ctx.config.idle).await;
    let (watches_idle, prefixes_idle) = open_state(&clients);
    let rss_idle = rss_kib();
    for session in sessions {
        let _ = session.close().await;
    }
    let mut outcome = Outcome::new(plan.len() as u64, samples, measured);
    if overlap.load(Ordering::SeqCst) {
        outcome.check = Err("two holders of one name at once seen by the in-process flags".into());
    }
    outcome.extra = Extra {
        names: Some(names),
        rss_kib: rss_end,
        rss_after_idle_kib: rss_idle,
        watches_open: Some(watches_end),
        prefixes: Some(prefixes_end),
        watches_after_idle: Some(watches_idle),
        prefixes_after_idle: Some(prefixes_idle),
        ..Extra::default()
    };
    Ok(outcome)
}

/// W7: `waiters` sessions on ONE client, a task each; after a barrier each takes and releases
/// `<base>/w7` twice. Latency = the acquire wait. Reports how many waits fell back to the
/// slow path (recipe), unary RPCs per handoff and the process's RSS.
pub(super) async fn w7<L>(ctx: &Ctx<'_>, locker: L, waiters: usize) -> Result<Outcome>
where
    L: Locker + Clone + 'static,
{
    const CYCLES: usize = 2;
    let client = connect(ctx.config).await?;
    let sessions = sessions_on(&client, ctx, waiters).await?;
    let name = format!("{}/w7", ctx.base).into_bytes();
    let exclusion = Arc::new(Exclusion::default());
    let barrier = Arc::new(Barrier::new(sessions.len()));
    let before = lock::stats(&client);
    let meter = Meter::start(std::slice::from_ref(&client));
    let mut set = JoinSet::new();
    for session in &sessions {
        let (session, locker, name) = (session.clone(), locker.clone(), name.clone());
        let (exclusion, barrier) = (Arc::clone(&exclusion), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            let mut samples = Samples::with_capacity(CYCLES);
            for _ in 0..CYCLES {
                // The critical section yields once, so a second holder would be seen.
                contended_cycle(
                    &locker,
                    &session,
                    &name,
                    &exclusion,
                    &mut samples,
                    || async {
                        tokio::task::yield_now().await;
                        Ok(())
                    },
                )
                .await;
            }
            samples
        });
    }
    let samples = join_all(set).await;
    let measured = meter.stop();
    let rss = rss_kib();
    let after = lock::stats(&client);
    let watches = client.open_watches();
    close_all(sessions).await;
    let mut outcome = Outcome::new((waiters * CYCLES) as u64, samples, measured);
    if exclusion.overlapped() {
        outcome.check = Err("two holders at once seen by the in-process flag".into());
    }
    outcome.extra = Extra {
        waiters: Some(waiters),
        rss_kib: rss,
        watches_open: Some(watches),
        slow_waits: Some(after.slow_waits.saturating_sub(before.slow_waits)),
        fast_waits: Some(after.fast_waits.saturating_sub(before.fast_waits)),
        ..Extra::default()
    };
    Ok(outcome)
}

/// W2L: W2 with `contenders` workers for `ctx.config.long_run`, sampling every
/// `ctx.config.sample_every` the handoffs done, the process's RSS, the watches open on all
/// clients together and the largest per-client per-name state.
pub(super) async fn w2l<L>(ctx: &Ctx<'_>, locker: L, contenders: usize) -> Result<Outcome>
where
    L: Locker + Clone + 'static,
{
    let contenders = contenders.max(1);
    // Not under the lock prefix `w2l/`: a key there would be the oldest in the queue.
    let counter = format!("{}/w2l-counter", ctx.base).into_bytes();
    let name = format!("{}/w2l", ctx.base).into_bytes();
    ctx.control.put(counter.clone(), "0").await?;
    let (sessions, clients) = own_sessions(ctx, contenders).await?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let exclusion = Arc::new(Exclusion::default());
    let barrier = Arc::new(Barrier::new(contenders));
    let meter = Meter::start(&clients);
    let mut set = JoinSet::new();
    for session in &sessions {
        let (session, locker, name, counter) = (
            session.clone(),
            locker.clone(),
            name.clone(),
            counter.clone(),
        );
        let (done, stop, exclusion, barrier) = (
            Arc::clone(&done),
            Arc::clone(&stop),
            Arc::clone(&exclusion),
            Arc::clone(&barrier),
        );
        set.spawn(async move {
            barrier.wait().await;
            let mut samples = Samples::bounded(2048);
            while !stop.load(Ordering::SeqCst) {
                let client = session.client();
                let incremented =
                    contended_cycle(&locker, &session, &name, &exclusion, &mut samples, || {
                        increment(client, &counter)
                    })
                    .await;
                if incremented {
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
            samples
        });
    }
    let started = Instant::now();
    let mut series = Vec::new();
    let mut last = 0;
    let every = ctx.config.sample_every.max(Duration::from_millis(100));
    while started.elapsed() < ctx.config.long_run {
        let left = ctx.config.long_run.saturating_sub(started.elapsed());
        tokio::time::sleep(every.min(left)).await;
        let now = done.load(Ordering::SeqCst);
        let watches = clients.iter().map(Client::open_watches).sum();
        let prefixes = clients
            .iter()
            .map(|c| lock::stats(c).prefixes)
            .max()
            .unwrap_or(0);
        series.push(Sample {
            t_s: started.elapsed().as_secs_f64(),
            ops: now - last,
            rss_kib: rss_kib(),
            watches_open: watches,
            prefixes,
        });
        last = now;
    }
    stop.store(true, Ordering::SeqCst);
    let samples = join_all(set).await;
    let measured = meter.stop();
    close_all(sessions).await;
    let total = done.load(Ordering::SeqCst);
    let read = ctx.control.get(counter).await?;
    let value = read
        .first()
        .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<u64>().ok());
    let mut outcome = Outcome::new(total, samples, measured);
    outcome.check = if exclusion.overlapped() {
        Err("two holders at once seen by the in-process flag".to_string())
    } else if value != Some(total) {
        Err(format!("counter is {value:?}, expected {total}"))
    } else {
        Ok(())
    };
    outcome.extra = Extra {
        contenders: Some(contenders),
        rss_kib: rss_kib(),
        series,
        ..Extra::default()
    };
    Ok(outcome)
}
