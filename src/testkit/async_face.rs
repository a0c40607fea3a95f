//! The testkit's async face: [`AsyncCluster`] and [`AsyncContainerCluster`].
//!
//! One implementation serves both faces. The synchronous [`Cluster`] and [`ContainerCluster`]
//! do the work; every async method runs the same synchronous call on tokio's blocking pool
//! (`spawn_blocking`) and awaits it, so the runtime thread (the only one in a plain
//! `#[tokio::test]`) stays free to drive the client's connections, keep-alives and watches
//! meanwhile. That was chosen over an async core with a `block_on` sync face because the
//! work is blocking by nature (child processes, `docker`, `/proc`, short HTTP probes); an
//! async core would need tokio's `process` and `net` features in the library build and a
//! private runtime for sync callers, for no gain in a test. Members started from blocking
//! pool threads still die with the test process, not with the thread: see the spawner.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use super::{Cluster, ClusterBuilder, ContainerCluster, EtcdBinary, TestkitError};

/// Runs `f` on tokio's blocking pool and waits for it; a panic in `f` is resumed here.
async fn blocking<T, F>(f: F) -> Result<T, TestkitError>
where
    F: FnOnce() -> Result<T, TestkitError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(TestkitError::io(
                "a testkit call on tokio's blocking pool",
                std::io::Error::other(e.to_string()),
            )),
        },
    }
}

impl ClusterBuilder {
    /// [`start`](Self::start) for async tests: starts the members on tokio's blocking pool
    /// and waits for health without blocking the runtime thread.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn start_async(self) -> Result<AsyncCluster, TestkitError> {
        let cluster = blocking(move || self.start()).await?;
        Ok(AsyncCluster::from_sync(cluster))
    }
}

/// A [`Cluster`] of etcd processes for async tests, including a plain `#[tokio::test]`
/// (current-thread runtime).
///
/// Every method that waits (start, kill, restart, the `wait_*` calls, ...) runs the
/// synchronous [`Cluster`] call on tokio's blocking pool, so the runtime keeps driving the
/// client meanwhile. Calls are serialized: one runs at a time. [`with`](Self::with) runs any
/// other [`Cluster`] or [`Member`](super::Member) method the same way.
///
/// Dropping it kills every member (SIGKILL, then reaped: milliseconds) and removes the data
/// folder. Members also die when the test process dies, even by SIGKILL.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use etcd_lock::testkit::{AsyncCluster, EtcdBinary};
///
/// #[tokio::test]
/// async fn failover() -> Result<(), Box<dyn std::error::Error>> {
///     let bin = EtcdBinary::find("3.5.1")?;
///     let cluster = AsyncCluster::three(&bin).await?;
///     let client = etcd_lock::Client::connect(cluster.endpoints()).await?;
///     let old = cluster.wait_leader(Duration::from_secs(10)).await?;
///     cluster.kill(old).await?;
///     let new = cluster.wait_leader(Duration::from_secs(10)).await?;
///     assert_ne!(old, new);
///     client.put("k", "v").await?;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
#[must_use = "dropping an AsyncCluster kills its members"]
pub struct AsyncCluster {
    inner: Arc<tokio::sync::Mutex<Cluster>>,
    /// The members' endpoints after the last call (they change only with join/remove).
    endpoints: StdMutex<Vec<String>>,
}

impl AsyncCluster {
    fn from_sync(cluster: Cluster) -> AsyncCluster {
        AsyncCluster {
            endpoints: StdMutex::new(cluster.endpoints()),
            inner: Arc::new(tokio::sync::Mutex::new(cluster)),
        }
    }

    /// Starts a single-member cluster with default settings.
    pub async fn single(binary: &EtcdBinary) -> Result<AsyncCluster, TestkitError> {
        Cluster::builder(binary).start_async().await
    }

    /// Starts a three-member cluster with default settings.
    pub async fn three(binary: &EtcdBinary) -> Result<AsyncCluster, TestkitError> {
        Cluster::builder(binary).members(3).start_async().await
    }

    /// Runs `f` on the synchronous [`Cluster`] on tokio's blocking pool, after any call
    /// still running; the escape hatch to every method of [`Cluster`] and
    /// [`Member`](super::Member) (e.g. `cluster.with(|c| c.member_mut(0).restart_no_wait())`).
    pub async fn with<T, F>(&self, f: F) -> Result<T, TestkitError>
    where
        F: FnOnce(&mut Cluster) -> Result<T, TestkitError> + Send + 'static,
        T: Send + 'static,
    {
        let mut guard = self.inner.clone().lock_owned().await;
        let (result, endpoints) = blocking(move || {
            let result = f(&mut guard);
            Ok((result, guard.endpoints()))
        })
        .await?;
        if let Ok(mut cached) = self.endpoints.lock() {
            *cached = endpoints;
        }
        result
    }

    /// The client URL of every member, in member order (see [`Cluster::endpoints`]).
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The index of the leader, if exactly one member claims it (see [`Cluster::leader`]).
    pub async fn leader(&self) -> Result<Option<usize>, TestkitError> {
        self.with(|c| Ok(c.leader())).await
    }

    /// Waits until a single leader exists; see [`Cluster::wait_leader`].
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize, TestkitError> {
        self.with(move |c| c.wait_leader(timeout)).await
    }

    /// Waits until every running, unpaused member is healthy; see [`Cluster::wait_healthy`].
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), TestkitError> {
        self.with(move |c| c.wait_healthy(timeout)).await
    }

    /// The process id of member `i`, `None` when it is not running. Panics if `i` is out of
    /// range, like [`Cluster::member`].
    pub async fn pid(&self, i: usize) -> Result<Option<u32>, TestkitError> {
        self.with(move |c| Ok(c.member(i).pid())).await
    }

    /// SIGKILLs member `i` and reaps it; see [`Member::kill`](super::Member::kill).
    pub async fn kill(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.member_mut(i).kill()).await
    }

    /// Stops member `i` with SIGTERM; see [`Member::terminate`](super::Member::terminate).
    pub async fn terminate(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.member_mut(i).terminate()).await
    }

    /// Freezes member `i` with SIGSTOP; see [`Member::pause`](super::Member::pause).
    pub async fn pause(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.member(i).pause()).await
    }

    /// Continues member `i` with SIGCONT; see [`Member::resume`](super::Member::resume).
    pub async fn resume(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.member(i).resume()).await
    }

    /// Restarts member `i` on its ports and data and waits until it is healthy; see
    /// [`Member::restart`](super::Member::restart).
    pub async fn restart(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.member_mut(i).restart()).await
    }
}

/// A [`ContainerCluster`] for async tests, including a plain `#[tokio::test]`.
///
/// Every method that runs `docker` or waits runs the synchronous [`ContainerCluster`] call
/// on tokio's blocking pool. Calls may overlap, as on the synchronous face.
///
/// Dropping it removes the containers and the network (`docker rm -f`, `docker network
/// rm`): that blocks the dropping thread for about a second. Containers left by a test
/// process that was killed are removed by the next process's first start.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use etcd_lock::testkit::AsyncContainerCluster;
///
/// #[tokio::test]
/// async fn minority_member_cut_off() -> Result<(), Box<dyn std::error::Error>> {
///     let image = AsyncContainerCluster::image_for("3.5.1").await?;
///     let cluster = AsyncContainerCluster::start(&image, 3).await?;
///     let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
///     let other = (leader + 1) % 3;
///     cluster.isolate_peers(other).await?;
///     // ... the client still reaches `other`, which no longer hears its leader
///     cluster.heal_peers(other).await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
#[must_use = "dropping an AsyncContainerCluster removes its containers"]
pub struct AsyncContainerCluster {
    inner: Arc<ContainerCluster>,
}

impl AsyncContainerCluster {
    /// Starts `members` containers from a local `image`; see [`ContainerCluster::start`].
    pub async fn start(image: &str, members: usize) -> Result<AsyncContainerCluster, TestkitError> {
        let image = image.to_string();
        let cluster = blocking(move || ContainerCluster::start(&image, members)).await?;
        Ok(AsyncContainerCluster {
            inner: Arc::new(cluster),
        })
    }

    /// The local image for an etcd version; see [`ContainerCluster::image_for`].
    pub async fn image_for(version: &str) -> Result<String, TestkitError> {
        let version = version.to_string();
        blocking(move || ContainerCluster::image_for(&version)).await
    }

    /// True when a Docker daemon answers; see [`ContainerCluster::docker_available`].
    pub async fn docker_available() -> bool {
        blocking(|| Ok(ContainerCluster::docker_available()))
            .await
            .unwrap_or(false)
    }

    /// Removes containers and networks of dead test runs; see
    /// [`ContainerCluster::remove_leftovers`].
    pub async fn remove_leftovers() -> Result<usize, TestkitError> {
        blocking(ContainerCluster::remove_leftovers).await
    }

    /// Runs `f` on the synchronous [`ContainerCluster`] on tokio's blocking pool: the
    /// escape hatch to every method of it.
    pub async fn with<T, F>(&self, f: F) -> Result<T, TestkitError>
    where
        F: FnOnce(&ContainerCluster) -> Result<T, TestkitError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner)).await
    }

    /// The synchronous cluster, for the methods that do not wait (names, ports, endpoints).
    pub fn sync(&self) -> &ContainerCluster {
        &self.inner
    }

    /// `http://127.0.0.1:<host port>` of every member; see [`ContainerCluster::endpoints`].
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.endpoints()
    }

    /// Waits until a single leader exists; see [`ContainerCluster::wait_leader`].
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize, TestkitError> {
        self.with(move |c| c.wait_leader(timeout)).await
    }

    /// Waits until every reachable member is healthy; see [`ContainerCluster::wait_healthy`].
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), TestkitError> {
        self.with(move |c| c.wait_healthy(timeout)).await
    }

    /// `docker kill` member `i`; see [`ContainerCluster::kill`].
    pub async fn kill(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.kill(i)).await
    }

    /// `docker pause` member `i`; see [`ContainerCluster::pause`].
    pub async fn pause(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.pause(i)).await
    }

    /// `docker unpause` member `i`; see [`ContainerCluster::resume`].
    pub async fn resume(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.resume(i)).await
    }

    /// Starts member `i` again and waits for health; see [`ContainerCluster::restart`].
    pub async fn restart(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.restart(i)).await
    }

    /// Cuts member `i` off from peers and clients; see [`ContainerCluster::disconnect`].
    pub async fn disconnect(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.disconnect(i)).await
    }

    /// Undoes [`disconnect`](Self::disconnect); see [`ContainerCluster::reconnect`].
    pub async fn reconnect(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.reconnect(i)).await
    }

    /// Cuts member `i` off from its peers only; see [`ContainerCluster::isolate_peers`].
    pub async fn isolate_peers(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.isolate_peers(i)).await
    }

    /// Undoes [`isolate_peers`](Self::isolate_peers); see [`ContainerCluster::heal_peers`].
    pub async fn heal_peers(&self, i: usize) -> Result<(), TestkitError> {
        self.with(move |c| c.heal_peers(i)).await
    }
}
