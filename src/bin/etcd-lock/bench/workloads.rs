//! The six lockbench v1 workloads. Each connects its own client(s), sets up untimed, measures
//! between [`Meter::start`] and [`Meter::stop`], then tears down (sessions revoked) untimed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use etcd_lock::client::Client;
use etcd_lock::error::{Error, Result};
use etcd_lock::kv::{DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
use etcd_lock::lock::Locker;
use etcd_lock::session::{Session, SessionOptions};
use etcd_lock::txn::{Compare, CompareOp, Txn, TxnOp};

use super::measure::{Meter, Outcome, Samples};
use super::BenchConfig;

/// Run-wide state: the configuration, a unique key prefix and an untimed control client.
#[derive(Debug)]
pub(super) struct Ctx<'a> {
    pub(super) config: &'a BenchConfig,
    /// `<key_prefix>/<pid>-<nanos>`; every key of the run lives under `base + "/"`.
    pub(super) base: String,
    /// Used for resets, final checks and cleanup; never counted.
    pub(super) control: Client,
    /// How many `kv/` keys W3 left in place (with their values), for W4 to read.
    pub(super) kv_keys: usize,
}

pub(super) async fn connect(config: &BenchConfig) -> Result<Client> {
    Client::connect(&config.endpoints).await
}

pub(super) async fn session(client: &Client, config: &BenchConfig) -> Result<Session> {
    Session::with_options(client, SessionOptions::new().with_ttl(config.session_ttl)).await
}

/// `n` sessions, each on its own client (connection), and those clients: every contender of
/// W2, W6 and W2L is a separate process as far as etcd can tell.
pub(super) async fn own_sessions(ctx: &Ctx<'_>, n: usize) -> Result<(Vec<Session>, Vec<Client>)> {
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        let client = connect(ctx.config).await?;
        sessions.push(session(&client, ctx.config).await?);
    }
    let clients = sessions.iter().map(|s| s.client().clone()).collect();
    Ok((sessions, clients))
}

/// The W3/W4 key of op `i`.
fn kv_key(base: &str, i: usize) -> Vec<u8> {
    format!("{base}/kv/{i:08}").into_bytes()
}

/// The W3 value of op `i`: `size` bytes starting with `i` in hex, so W4 can check what it reads.
fn kv_value(i: usize, size: usize) -> Vec<u8> {
    let mut value = vec![b'v'; size];
    let tag = format!("{i:016x}");
    let n = tag.len().min(size);
    value[..n].copy_from_slice(&tag.as_bytes()[..n]);
    value
}

/// Collects worker samples; a worker that panicked or was cancelled counts as one failure.
pub(super) async fn join_all(mut set: JoinSet<Samples>) -> Samples {
    let mut total = Samples::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(samples) => total.merge(samples),
            Err(e) => total.fail_with(format!("bench worker task failed: {e}")),
        }
    }
    total
}

/// Runs `op(0..ops)` from `tasks` tokio tasks, each taking the next index when its previous
/// op finished (so at most `tasks` ops are in flight).
async fn in_parallel<F, Fut>(tasks: usize, ops: usize, op: F) -> Samples
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let mut set = JoinSet::new();
    for _ in 0..tasks.max(1) {
        let next = Arc::clone(&next);
        let op = Arc::clone(&op);
        set.spawn(async move {
            let mut samples = Samples::with_capacity(ops / tasks.max(1) + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return samples;
                }
                let started = Instant::now();
                let result = op(i).await;
                samples.record(started.elapsed(), result);
            }
        });
    }
    join_all(set).await
}

/// Runs `cycle` `ops` times, one after the other, timing each, between [`Meter::start`] and
/// [`Meter::stop`] on `client`: the shape of every single-worker workload.
async fn sequential<F, Fut>(client: &Client, ops: usize, mut cycle: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let meter = Meter::start(std::slice::from_ref(client));
    let mut samples = Samples::with_capacity(ops);
    for _ in 0..ops {
        let started = Instant::now();
        let result = cycle().await;
        samples.record(started.elapsed(), result);
    }
    let measured = meter.stop();
    Outcome::new(ops as u64, samples, measured)
}

/// W1: one worker, `ops` cycles of lock + unlock on `<base>/w1`. Latency = one whole cycle.
pub(super) async fn w1<L: Locker>(ctx: &Ctx<'_>, locker: L, ops: usize) -> Result<Outcome> {
    let client = connect(ctx.config).await?;
    let session = session(&client, ctx.config).await?;
    let name = format!("{}/w1", ctx.base).into_bytes();
    let (locker, session_ref, name) = (&locker, &session, &name);
    let outcome = sequential(&client, ops, || async move {
        let guard = locker.lock(session_ref, name).await?;
        locker.unlock(guard).await
    })
    .await;
    let _ = session.close().await;
    Ok(outcome)
}

/// W2: `workers` workers, each with its own client and session, `cycles` cycles each of
/// lock `<base>/w2`, get + put counter+1, unlock. Latency = the acquire wait.
pub(super) async fn w2<L>(
    ctx: &Ctx<'_>,
    locker: L,
    workers: usize,
    cycles: usize,
) -> Result<Outcome>
where
    L: Locker + Clone + 'static,
{
    let workers = workers.max(1);
    let counter = format!("{}/counter-{workers}", ctx.base).into_bytes();
    let name = format!("{}/w2-{workers}", ctx.base).into_bytes();
    ctx.control.put(counter.clone(), "0").await?;
    let (sessions, clients) = own_sessions(ctx, workers).await?;
    let exclusion = Arc::new(Exclusion::default());
    let barrier = Arc::new(Barrier::new(workers));

    let meter = Meter::start(&clients);
    let mut set = JoinSet::new();
    for session in &sessions {
        let (session, locker, name, counter) = (
            session.clone(),
            locker.clone(),
            name.clone(),
            counter.clone(),
        );
        let (exclusion, barrier) = (Arc::clone(&exclusion), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            let mut samples = Samples::with_capacity(cycles);
            for _ in 0..cycles {
                let client = session.client();
                contended_cycle(&locker, &session, &name, &exclusion, &mut samples, || {
                    increment(client, &counter)
                })
                .await;
            }
            samples
        });
    }
    let samples = join_all(set).await;
    let measured = meter.stop();
    let rss = super::measure::rss_kib();
    for session in sessions {
        let _ = session.close().await;
    }

    let total = (cycles * workers) as u64;
    let read = ctx.control.get(counter).await?;
    let value = read
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    let check = if exclusion.overlapped() {
        Err("two holders at once seen by the in-process flag".to_string())
    } else if value.as_deref().and_then(|v| v.parse::<u64>().ok()) != Some(total) {
        Err(format!("counter is {value:?}, expected {total}"))
    } else {
        Ok(())
    };
    let mut outcome = Outcome::new(total, samples, measured);
    outcome.check = check;
    outcome.extra.contenders = Some(workers);
    outcome.extra.rss_kib = rss;
    Ok(outcome)
}

/// One holder at a time, as this process sees it: [`Exclusion::enter`] when a lock is taken,
/// [`Exclusion::leave`] before it is released; an `enter` while another holds is an overlap.
#[derive(Debug, Default)]
pub(super) struct Exclusion {
    holding: AtomicBool,
    overlap: AtomicBool,
}

impl Exclusion {
    fn enter(&self) {
        if self.holding.swap(true, Ordering::SeqCst) {
            self.overlap.store(true, Ordering::SeqCst);
        }
    }
    fn leave(&self) {
        self.holding.store(false, Ordering::SeqCst);
    }
    /// Whether two holders were ever seen at once.
    pub(super) fn overlapped(&self) -> bool {
        self.overlap.load(Ordering::SeqCst)
    }
}

/// One cycle of a contended worker: lock `name`, run `critical` inside `exclusion`, unlock.
/// Records the acquire wait (or the failure) in `samples`; returns whether `critical` succeeded.
pub(super) async fn contended_cycle<L, F, Fut>(
    locker: &L,
    session: &Session,
    name: &[u8],
    exclusion: &Exclusion,
    samples: &mut Samples,
    critical: F,
) -> bool
where
    L: Locker,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let started = Instant::now();
    let guard = match locker.lock(session, name).await {
        Ok(guard) => guard,
        Err(e) => {
            samples.fail(&e);
            return false;
        }
    };
    let waited = started.elapsed();
    exclusion.enter();
    let step = critical().await;
    exclusion.leave();
    let done = step.is_ok();
    let unlocked = locker.unlock(guard).await;
    samples.record(waited, step.and(unlocked));
    done
}

/// Reads the counter and writes it back plus one (`KV/Range` + `KV/Put`).
pub(super) async fn increment(client: &Client, key: &[u8]) -> Result<()> {
    let read = client.get(key.to_vec()).await?;
    let current = match read.first() {
        None => 0,
        Some(kv) => std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::Protocol("bench counter holds a non-number".into()))?,
    };
    client.put(key.to_vec(), (current + 1).to_string()).await?;
    Ok(())
}

/// Writes `kv/0..ops` with their values from `tasks` tasks on `client`.
async fn put_keys(client: &Client, base: &str, size: usize, tasks: usize, ops: usize) -> Samples {
    let (client, base) = (client.clone(), base.to_string());
    in_parallel(tasks, ops, move |i| {
        let (client, key, value) = (client.clone(), kv_key(&base, i), kv_value(i, size));
        async move { client.put(key, value).await.map(|_| ()) }
    })
    .await
}

/// W3: one client, `in_flight` concurrent puts, `ops` distinct keys.
pub(super) async fn w3(ctx: &mut Ctx<'_>, ops: usize) -> Result<Outcome> {
    let client = connect(ctx.config).await?;
    let meter = Meter::start(std::slice::from_ref(&client));
    let (size, tasks) = (ctx.config.value_size, ctx.config.in_flight);
    let samples = put_keys(&client, &ctx.base, size, tasks, ops).await;
    let measured = meter.stop();
    ctx.kv_keys = if samples.errors == 0 { ops } else { 0 };
    Ok(Outcome::new(ops as u64, samples, measured))
}

/// W4: one client, `in_flight` concurrent linearizable gets of the W3 keys, each value checked.
/// Writes the keys first (untimed) when W3 did not leave enough of them.
pub(super) async fn w4(ctx: &mut Ctx<'_>, ops: usize) -> Result<Outcome> {
    let client = connect(ctx.config).await?;
    let (size, tasks) = (ctx.config.value_size, ctx.config.in_flight);
    if ctx.kv_keys < ops {
        let written = put_keys(&client, &ctx.base, size, tasks, ops).await;
        ctx.kv_keys = if written.errors == 0 { ops } else { 0 };
    }
    let meter = Meter::start(std::slice::from_ref(&client));
    let (reader, base) = (client.clone(), ctx.base.clone());
    let samples = in_parallel(tasks, ops, move |i| {
        let (client, key) = (reader.clone(), kv_key(&base, i));
        async move {
            let read = client.get(key.clone()).await?;
            match read.first() {
                Some(kv) if kv.value == kv_value(i, size) => Ok(()),
                _ => Err(Error::Protocol(format!(
                    "W4 read of {} differs from what was written",
                    String::from_utf8_lossy(&key)
                ))),
            }
        }
    })
    .await;
    let measured = meter.stop();
    Ok(Outcome::new(ops as u64, samples, measured))
}

/// W5: one worker, `ops` cycles of `Lease/LeaseGrant` (TTL 10 s) + `Lease/LeaseRevoke`.
pub(super) async fn w5(ctx: &Ctx<'_>, ops: usize) -> Result<Outcome> {
    let client = connect(ctx.config).await?;
    let c = &client;
    Ok(sequential(c, ops, || async move {
        let granted = c.lease_grant(10).await?;
        c.lease_revoke(granted.id()).await.map(|_| ())
    })
    .await)
}

/// W1F: one worker, `ops` sequential cycles of put `<base>/w1f` + delete it: the two raft
/// writes any lock cycle costs.
pub(super) async fn w1f(ctx: &Ctx<'_>, ops: usize) -> Result<Outcome> {
    let client = connect(ctx.config).await?;
    let key = format!("{}/w1f", ctx.base).into_bytes();
    let (c, key) = (&client, &key);
    Ok(sequential(c, ops, || async move {
        c.put(key.clone(), "").await?;
        c.delete(key.clone()).await.map(|_| ())
    })
    .await)
}

/// W1T: one worker, `ops` sequential cycles of the two requests an uncontended recipe lock
/// and its unlock send, written out here with the public `Txn` builder, with none of the lock's
/// logic (no name claim, no prefix-watch registry, no owner check, no guard): the join `KV/Txn`
/// (`If create_revision(key) == 0 Then Put(key, lease), Range(prefix, newest 18 first, keys
/// only)`) and the release `KV/Txn If create_revision(key) == token Then DeleteRange(key)`.
/// The key is the recipe's `NAME/<lease in hex>`. W1 over W1T is what the lock logic costs; W1
/// over W1F compares with clients that send a plain Put.
pub(super) async fn w1t(ctx: &Ctx<'_>, ops: usize) -> Result<Outcome> {
    let client = connect(ctx.config).await?;
    let session = session(&client, ctx.config).await?;
    let lease = session.lease();
    let prefix = format!("{}/w1t/", ctx.base).into_bytes();
    let key = [prefix.as_slice(), format!("{lease:x}").as_bytes()].concat();
    let (c, key, prefix) = (&client, &key, &prefix);
    let outcome = sequential(c, ops, || async move {
        let joined = c.txn(w1t_join(key, prefix, lease)).await?;
        if !joined.succeeded() {
            return Err(Error::Protocol(
                "W1T: the key was left from a previous cycle".into(),
            ));
        }
        let release = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                joined.revision(),
            )])
            .and_then([TxnOp::delete(key.clone(), DeleteOptions::new())]);
        if c.txn(release).await?.succeeded() {
            Ok(())
        } else {
            Err(Error::Protocol("W1T: the release deleted nothing".into()))
        }
    })
    .await;
    let _ = session.close().await;
    Ok(outcome)
}

/// The recipe's join request for a waiter alone on its client: the newest 18 keys (the
/// recipe's 16 near keys, plus one, plus its own).
fn w1t_join(key: &[u8], prefix: &[u8], lease: i64) -> Txn {
    let newest = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(18)
        .with_keys_only();
    Txn::new()
        .when([Compare::create_revision(key.to_vec(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.to_vec(),
                Vec::new(),
                PutOptions::new().with_lease(lease),
            ),
            TxnOp::get(prefix.to_vec(), newest),
        ])
        .or_else([
            TxnOp::get(key.to_vec(), GetOptions::new().with_keys_only()),
            TxnOp::get(
                prefix.to_vec(),
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1)
                    .with_keys_only(),
            ),
        ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_index() {
        assert_eq!(kv_value(255, 256).len(), 256);
        assert_eq!(&kv_value(255, 256)[..16], b"00000000000000ff");
        assert_ne!(kv_value(1, 256), kv_value(2, 256));
        assert_eq!(kv_value(3, 4), b"0000");
        assert_eq!(kv_key("lb/x", 7), b"lb/x/kv/00000007");
    }
}
