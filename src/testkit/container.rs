//! etcd clusters in Docker containers (see [`ContainerCluster`]).

use std::io;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::leftovers::{self, RUN_LABEL};
use super::member::{ERROR_TAIL_LINES, HEALTH_TIMEOUT};
use super::netns::{self, Filter};
use super::poll::poll_until;
use super::{http, ports, TestkitError};

/// Repository of the images built by `scripts/build-images`: `etcd-lock/etcd:<version>`.
pub const IMAGE_REPO: &str = "etcd-lock/etcd";

/// Label (key) put on every container and network a [`ContainerCluster`] creates; its value
/// is the cluster's unique name. Each also carries [`RUN_LABEL`] with the creating test
/// process's run id; the first [`ContainerCluster::start`] of a process removes what dead
/// runs left behind ([`ContainerCluster::remove_leftovers`]).
pub const CONTAINER_LABEL: &str = "io.etcd-lock.testkit";

/// The `docker` executable.
const DOCKER: &str = "docker";
/// etcd's client and peer ports inside every container.
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// How long [`ContainerCluster::start`] and [`ContainerCluster::restart`] wait for health.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a start is retried with fresh host ports after a port collision.
const START_ATTEMPTS: usize = 5;
/// How often container states are checked while waiting for health.
const INSPECT_EVERY: Duration = Duration::from_millis(500);
/// Read timeout of a `/metrics` request in [`ContainerCluster::leader`].
const LEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Grace period of `docker restart` (SIGTERM, then SIGKILL).
const RESTART_GRACE_SECS: &str = "5";

/// One member: a container with a fixed host port.
#[derive(Debug)]
struct Node {
    /// Container name (unique on the host).
    name: String,
    /// etcd member name, hostname and network alias (`m0`, `m1`, ...).
    alias: String,
    /// Host port published on 127.0.0.1 for the client port.
    port: u16,
    /// Killed with [`ContainerCluster::kill`] and not restarted since.
    stopped: AtomicBool,
    /// Paused with [`ContainerCluster::pause`] and not resumed since.
    paused: AtomicBool,
    /// Disconnected with [`ContainerCluster::disconnect`] and not reconnected since.
    disconnected: AtomicBool,
    /// The packet filter holding the peer port shut ([`ContainerCluster::isolate_peers`]).
    peer_filter: Mutex<Option<Filter>>,
}

impl Node {
    /// Not killed, paused or disconnected: its published port should answer.
    fn reachable(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst)
            && !self.paused.load(Ordering::SeqCst)
            && !self.disconnected.load(Ordering::SeqCst)
    }
}

/// An etcd cluster of Docker containers, one member per container, on its own Docker
/// network; each member's client port is published on `127.0.0.1` for the test process.
///
/// Unlike [`Cluster`](super::Cluster), which runs etcd processes on the host, this tests
/// against any etcd *image* (a user's version matrix) and adds network faults:
/// [`disconnect`](Self::disconnect) cuts a member off from its peers **and** from clients.
/// Everything is synchronous and shells out to the `docker` CLI (`docker` must be on `PATH`
/// and talk to a daemon; see [`docker_available`](Self::docker_available)).
///
/// Images: any local etcd 3.4+ image with the server at `/usr/local/bin/etcd` (it is run
/// with `--entrypoint /usr/local/bin/etcd`), e.g. an already pulled upstream
/// `quay.io/coreos/etcd:v3.5.1`, or the `etcd-lock/etcd:<version>` images that
/// `scripts/build-images` builds without a registry ([`image_for`](Self::image_for)).
/// Images are never pulled.
///
/// # Layout
///
/// * network `etcd-lock-<pid>-<counter>-<nanos>`; containers `<network>-m0`, `-m1`, ...,
///   each with hostname and network alias `m0`, `m1`, ... (also the etcd member names);
///   peers talk over `http://mI:2380` inside the network;
/// * each client port 2379 is published on a fixed, free host port
///   (`-p 127.0.0.1:<port>:2379`) chosen before `docker run`, because Docker hands out a
///   *new* random port on every `docker start`, `docker restart` and `docker network
///   connect` when the host port is left open (`-p 127.0.0.1::2379`); members advertise
///   `http://127.0.0.1:<port>`, so the member list is usable from the host;
/// * data lives in the container's file system (`/var/lib/etcd/data`), so it survives
///   [`kill`](Self::kill) + [`restart`](Self::restart);
/// * every container and the network carry the label [`CONTAINER_LABEL`].
///
/// # Faults and what the client sees
///
/// | method | Docker | on the published port |
/// |---|---|---|
/// | [`kill`](Self::kill) | `docker kill` (SIGKILL) | connection refused (the port is unbound) |
/// | [`pause`](Self::pause) | `docker pause` (cgroup freezer) | TCP connects (docker-proxy accepts), requests hang |
/// | [`disconnect`](Self::disconnect) | `docker network disconnect` | connection refused: the container has no network left, Docker removes the port mapping (the host port is released) |
/// | [`isolate_peers`](Self::isolate_peers) | packet filter on port 2380 inside the container's network namespace | nothing changes: the member answers, but it loses its leader and stops seeing new revisions |
/// | [`heal_peers`](Self::heal_peers) | removes that filter | the member catches up |
/// | [`reconnect`](Self::reconnect) | `docker network connect --alias mI` | mapping restored on the **same** port (it is fixed) |
/// | [`restart`](Self::restart) | `docker start` / `docker restart` | same port, same data |
///
/// A disconnected member keeps running and sees its peers vanish (it loses leadership if
/// it had it); after reconnecting it may get a different IP address, but peers dial it by
/// its alias and catch it up. While a member is disconnected its host port is free, so in
/// theory another process could take it and make [`reconnect`](Self::reconnect) fail.
///
/// # Cleanup
///
/// Dropping the cluster runs `docker rm -f` on every container and `docker network rm` on
/// the network, also when a test panics. A test process that is killed (SIGKILL, abort)
/// leaves them behind; they carry its run id ([`RUN_LABEL`]), and the next test process that
/// starts a container cluster on this host removes them
/// ([`remove_leftovers`](Self::remove_leftovers)).
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use etcd_lock::testkit::{ContainerCluster, TestkitError};
///
/// fn leader_failover_in_docker() -> Result<(), TestkitError> {
///     let image = ContainerCluster::image_for("3.5.1")?; // etcd-lock/etcd:3.5.1
///     let cluster = ContainerCluster::start(&image, 3)?;
///     println!("{:?}", cluster.endpoints()); // ["http://127.0.0.1:41235", ...]
///     let old = cluster.wait_leader(Duration::from_secs(10))?;
///     cluster.kill(old)?;
///     let new = cluster.wait_leader(Duration::from_secs(10))?;
///     assert_ne!(old, new);
///     cluster.restart(old)?; // same data, same port; waits until it is healthy
///     Ok(())
/// } // containers and network removed
/// ```
#[derive(Debug)]
#[must_use = "dropping a ContainerCluster removes its containers"]
pub struct ContainerCluster {
    image: String,
    network: String,
    /// True once `docker network create` succeeded (so drop removes it).
    network_created: bool,
    nodes: Vec<Node>,
}

impl ContainerCluster {
    /// Starts `members` etcd containers from `image` on a new Docker network and waits until
    /// every member answers `GET /health` with `true` through its published port (up to 30 s).
    ///
    /// The image must exist locally: it is never pulled (`docker run --pull=never`).
    ///
    /// Container and network names are unique per call (process id, counter and clock). If
    /// a chosen host port is taken meanwhile, all containers are recreated on fresh ports, up
    /// to 5 times. On any error everything created so far is removed again.
    pub fn start(image: &str, members: usize) -> Result<ContainerCluster, TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::start")?;
        if members == 0 {
            return Err(TestkitError::InvalidConfig(
                "a container cluster needs at least one member".into(),
            ));
        }
        if image.trim().is_empty() {
            return Err(TestkitError::InvalidConfig("empty image name".into()));
        }
        require_docker()?;
        leftovers::remove_dead_runs_once();
        if !image_exists(image)? {
            return Err(TestkitError::InvalidConfig(format!(
                "Docker image {image} not found locally (the testkit never pulls): \
                 `docker pull` it first (any etcd 3.4+ image with the server at \
                 /usr/local/bin/etcd, e.g. quay.io/coreos/etcd:v3.5.1), or build one and \
                 tag it"
            )));
        }
        let base = unique_name();
        let mut cluster = ContainerCluster {
            image: image.to_string(),
            network: base.clone(),
            network_created: false,
            nodes: Vec::with_capacity(members),
        };
        docker(&[
            "network",
            "create",
            "--label",
            &format!("{CONTAINER_LABEL}={base}"),
            "--label",
            &format!("{RUN_LABEL}={}", leftovers::run_id()),
            &base,
        ])?;
        cluster.network_created = true;

        let mut last_conflict = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let host_ports = ports::free_ports(members)?;
            cluster.nodes = host_ports
                .into_iter()
                .enumerate()
                .map(|(i, port)| Node {
                    name: format!("{base}-m{i}"),
                    alias: format!("m{i}"),
                    port,
                    stopped: AtomicBool::new(false),
                    paused: AtomicBool::new(false),
                    disconnected: AtomicBool::new(false),
                    peer_filter: Mutex::new(None),
                })
                .collect();
            match cluster.run_all(&format!("{base}-{attempt}")) {
                Ok(()) => {
                    cluster.wait_started(START_TIMEOUT)?;
                    return Ok(cluster);
                }
                Err(e) if is_port_conflict(&e) => {
                    last_conflict = e.to_string();
                    cluster.remove_containers();
                }
                Err(e) => return Err(e),
            }
        }
        Err(TestkitError::StartFailed {
            what: format!("host ports were taken on each of {START_ATTEMPTS} start attempts"),
            log_tail: last_conflict,
        })
    }

    /// `etcd-lock/etcd:<version>` (a leading `v` is ignored) when that image exists locally.
    ///
    /// An alias such as `3.5-latest` names the image of the version it points at in the
    /// binary cache (see [`EtcdBinary`](super::EtcdBinary)), e.g. `etcd-lock/etcd:3.5.30`;
    /// without that link or image, the `etcd-lock/etcd:3.5-latest` tag that
    /// `scripts/build-images` also sets is used. Only `docker image inspect` runs; nothing
    /// is pulled.
    ///
    /// Fails when Docker is unavailable, or with an error saying how to tag or build the
    /// image when it does not exist locally.
    pub fn image_for(version: &str) -> Result<String, TestkitError> {
        let version = version.trim().trim_start_matches('v');
        require_docker()?;
        let mut tags = Vec::new();
        if let Some(real) = super::binary::resolve_alias(version) {
            tags.push(format!("{IMAGE_REPO}:{real}"));
        }
        tags.push(format!("{IMAGE_REPO}:{version}"));
        for image in &tags {
            if image_exists(image)? {
                return Ok(image.clone());
            }
        }
        Err(TestkitError::InvalidConfig(format!(
            "Docker image {} not found locally (the testkit never pulls). Tag an etcd \
             image with the server at /usr/local/bin/etcd under that name, e.g. \
             `docker pull quay.io/coreos/etcd:v{version} && docker tag \
             quay.io/coreos/etcd:v{version} {IMAGE_REPO}:{version}`, or build one from a \
             release binary (FROM scratch, COPY etcd /usr/local/bin/etcd)",
            tags.join(" or ")
        )))
    }

    /// Removes the containers and networks of dead test runs on this host: those whose
    /// [`RUN_LABEL`] names a process (pid and start time, this boot) that no longer exists.
    /// Returns how many containers and networks were removed. The first
    /// [`start`](Self::start) of each process does this on its own (ignoring errors).
    pub fn remove_leftovers() -> Result<usize, TestkitError> {
        require_docker()?;
        leftovers::remove_dead_runs()
    }

    /// The run id this process puts on its containers and networks ([`RUN_LABEL`]):
    /// `<boot id>.<pid>.<process start time>`.
    pub fn run_id() -> &'static str {
        leftovers::run_id()
    }

    /// True when the `docker` CLI runs and its daemon answers (`docker version`).
    pub fn docker_available() -> bool {
        docker_output(&["version", "--format", "{{.Server.Version}}"])
            .map(|out| out.status.success())
            .unwrap_or(false)
    }

    /// The client URL of every member, `http://127.0.0.1:<published port>`, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.nodes.len()
    }

    /// The client URL of member `i` (`http://127.0.0.1:<published port>`); it stays the same
    /// across [`restart`](Self::restart) and [`reconnect`](Self::reconnect).
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].port)
    }

    /// The host port (on 127.0.0.1) published for member `i`'s client port.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn host_port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// The Docker container name of member `i`, for your own `docker` commands.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn container_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The etcd member name of member `i` (`m0`, `m1`, ...), also its hostname and alias.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn member_name(&self, i: usize) -> &str {
        &self.nodes[i].alias
    }

    /// The name of the cluster's Docker network.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The image the members run.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The index of the leader, read from the `/metrics` (`etcd_server_is_leader 1`) of every
    /// member that is not killed, paused or disconnected.
    ///
    /// `None` when no such member, or more than one (a stale leader during an election),
    /// claims leadership.
    pub fn leader(&self) -> Option<usize> {
        let mut leaders = (0..self.nodes.len()).filter(|&i| {
            let node = &self.nodes[i];
            node.reachable() && http::is_leader(node.port, LEADER_TIMEOUT) == Some(true)
        });
        let first = leaders.next()?;
        leaders.next().is_none().then_some(first)
    }

    /// Polls [`leader`](Self::leader) until it returns a member or `timeout` passes.
    pub fn wait_leader(&self, timeout: Duration) -> Result<usize, TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::wait_leader")?;
        poll_until(timeout, || self.leader()).ok_or_else(|| TestkitError::Timeout {
            what: format!("no single leader among the containers after {timeout:?}"),
            log_tail: self.tails(|n| n.reachable()),
        })
    }

    /// Polls until every member that is not killed, paused or disconnected answers
    /// `GET /health` with `true` through its published port, or `timeout` passes.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::wait_healthy")?;
        let unhealthy = |n: &Node| n.reachable() && !http::is_healthy(n.port, HEALTH_TIMEOUT);
        poll_until(timeout, || {
            (!self.nodes.iter().any(unhealthy)).then_some(())
        })
        .ok_or_else(|| TestkitError::Timeout {
            what: format!("container cluster not healthy after {timeout:?}"),
            log_tail: self.tails(unhealthy),
        })
    }

    /// Kills member `i` with `docker kill` (SIGKILL; a paused member is resumed first). The
    /// container and its data stay; [`restart`](Self::restart) starts it again.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn kill(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::kill")?;
        let node = &self.nodes[i];
        if node.paused.load(Ordering::SeqCst) {
            self.resume(i)?;
        }
        docker(&["kill", &node.name])?;
        node.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Freezes member `i` with `docker pause`: its connections stay open but nothing is
    /// answered, like a stalled machine.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn pause(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::pause")?;
        let node = &self.nodes[i];
        docker(&["pause", &node.name])?;
        node.paused.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Thaws member `i` with `docker unpause`.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn resume(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::resume")?;
        let node = &self.nodes[i];
        docker(&["unpause", &node.name])?;
        node.paused.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Starts member `i` again (`docker start` after [`kill`](Self::kill), `docker restart`
    /// with a 5 s grace period otherwise) and waits up to 30 s until it is healthy.
    ///
    /// The member keeps its data (the container's file system) and its published port. A
    /// paused member is resumed and a disconnected one reconnected first (without a network
    /// the container has no published port, so its health could not be checked).
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn restart(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::restart")?;
        let node = &self.nodes[i];
        if node.paused.load(Ordering::SeqCst) {
            self.resume(i)?;
        }
        if node.disconnected.load(Ordering::SeqCst) {
            self.reconnect(i)?;
        }
        if node.stopped.load(Ordering::SeqCst) || !self.is_running(i) {
            docker(&["start", &node.name])?;
        } else {
            docker(&["restart", "--time", RESTART_GRACE_SECS, &node.name])?;
        }
        node.stopped.store(false, Ordering::SeqCst);
        // A new process has a new network namespace: no peer filter any more.
        if let Ok(mut filter) = node.peer_filter.lock() {
            *filter = None;
        }
        let mut next_inspect = Instant::now() + INSPECT_EVERY;
        let started = poll_until(START_TIMEOUT, || {
            if http::is_healthy(node.port, HEALTH_TIMEOUT) {
                return Some(Ok(()));
            }
            if Instant::now() >= next_inspect {
                next_inspect = Instant::now() + INSPECT_EVERY;
                if !self.is_running(i) {
                    node.stopped.store(true, Ordering::SeqCst);
                    return Some(Err(TestkitError::StartFailed {
                        what: format!("container {} exited during restart", node.name),
                        log_tail: self.log_tail(i),
                    }));
                }
            }
            None
        });
        started.unwrap_or_else(|| {
            Err(TestkitError::Timeout {
                what: format!(
                    "container {} not healthy {START_TIMEOUT:?} after restart",
                    node.name
                ),
                log_tail: self.log_tail(i),
            })
        })
    }

    /// Disconnects member `i` from the cluster network (`docker network disconnect`).
    ///
    /// The container keeps running but has no network left: its peers cannot reach it, and
    /// neither can clients, since Docker drops the port mapping (connections to
    /// [`endpoint(i)`](Self::endpoint) are refused) until [`reconnect`](Self::reconnect).
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn disconnect(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::disconnect")?;
        let node = &self.nodes[i];
        docker(&["network", "disconnect", &self.network, &node.name])?;
        node.disconnected.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Connects member `i` to the cluster network again, with its alias `mI` so peers find
    /// it (`docker network connect --alias mI`). The published port comes back unchanged.
    /// Does not wait: follow with [`wait_healthy`](Self::wait_healthy).
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn reconnect(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::reconnect")?;
        let node = &self.nodes[i];
        docker(&[
            "network",
            "connect",
            "--alias",
            &node.alias,
            &self.network,
            &node.name,
        ])?;
        node.disconnected.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Cuts member `i` off from its peers only: every TCP packet to or from port 2380 (etcd's
    /// peer port) is dropped inside the container's own network namespace, in both
    /// directions, while its client port stays reachable through the published host port.
    ///
    /// The member keeps running and answering clients; after an election timeout it has no
    /// leader (a leader steps down), so linearizable requests there fail or time out, while
    /// serializable reads and open streams see a store that no longer moves. The other
    /// members carry on as a majority. Until [`heal_peers`](Self::heal_peers).
    ///
    /// Runs the host's `iptables -I` (or, without `iptables`, `nft`) through
    /// `nsenter --target <container pid> --net` (the pid from `docker inspect`), so nothing
    /// changes in the host's own namespace. Needs root (or `CAP_NET_ADMIN` and
    /// `CAP_SYS_ADMIN`); fails with [`TestkitError::MissingTool`] when `nsenter`, or both
    /// filter tools, are not installed. A no-op when the member is already isolated. The
    /// rules live in the container's namespace, so a restart of the container drops them.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn isolate_peers(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::isolate_peers")?;
        let node = &self.nodes[i];
        let mut current = node
            .peer_filter
            .lock()
            .map_err(|_| TestkitError::InvalidConfig("peer filter state poisoned".into()))?;
        if current.is_some() {
            return Ok(());
        }
        let filter = netns::pick()?;
        let pid = self.container_pid(i)?;
        if let Err(e) = netns::drop_port(pid, PEER_PORT, filter) {
            // Take back whatever part of the rules went in.
            let _ = netns::allow_port(pid, PEER_PORT, filter);
            return Err(e);
        }
        *current = Some(filter);
        Ok(())
    }

    /// Ends [`isolate_peers`](Self::isolate_peers) for member `i`: removes its packet filter
    /// (`iptables -D`, or `nft delete table`, through `nsenter` into the container's network
    /// namespace). The member then catches up with the leader. Does not wait: follow with
    /// [`wait_healthy`](Self::wait_healthy). A no-op when the member is not isolated (or was
    /// restarted since, which dropped the filter).
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn heal_peers(&self, i: usize) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("ContainerCluster::heal_peers")?;
        let node = &self.nodes[i];
        let mut current = node
            .peer_filter
            .lock()
            .map_err(|_| TestkitError::InvalidConfig("peer filter state poisoned".into()))?;
        let Some(filter) = *current else {
            return Ok(());
        };
        if self.is_running(i) {
            netns::allow_port(self.container_pid(i)?, PEER_PORT, filter)?;
        }
        *current = None;
        Ok(())
    }

    /// The host pid of member `i`'s etcd process (`docker inspect`), for `nsenter`.
    fn container_pid(&self, i: usize) -> Result<u32, TestkitError> {
        let name = &self.nodes[i].name;
        let out = docker(&["inspect", "--format", "{{.State.Pid}}", name])?;
        match out.trim().parse::<u32>() {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(TestkitError::NotRunning {
                member: format!("{name} (docker inspect gave pid {:?})", out.trim()),
            }),
        }
    }

    /// The whole log of member `i` (`docker logs`; etcd logs JSON lines to stderr), or a
    /// line describing why it could not be read.
    ///
    /// # Panics
    /// If `i` is not smaller than [`members`](Self::members).
    pub fn logs(&self, i: usize) -> String {
        match docker_output(&["logs", &self.nodes[i].name]) {
            Ok(out) if out.status.success() => {
                let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
                log.push_str(&String::from_utf8_lossy(&out.stderr));
                log
            }
            Ok(out) => format!(
                "(docker logs {} failed: {})",
                self.nodes[i].name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => format!("({e})"),
        }
    }

    // -----------------------------------------------------------------------------------------

    /// `docker run -d` for every node; `token` is the unique initial cluster token.
    fn run_all(&self, token: &str) -> Result<(), TestkitError> {
        let initial_cluster = self
            .nodes
            .iter()
            .map(|n| format!("{}=http://{}:{PEER_PORT}", n.alias, n.alias))
            .collect::<Vec<_>>()
            .join(",");
        for node in &self.nodes {
            let label = format!("{CONTAINER_LABEL}={}", self.network);
            let run_label = format!("{RUN_LABEL}={}", leftovers::run_id());
            let publish = format!("127.0.0.1:{}:{CLIENT_PORT}", node.port);
            let args: Vec<String> = vec![
                format!("--name={}", node.alias),
                "--data-dir=/var/lib/etcd/data".into(),
                format!("--listen-client-urls=http://0.0.0.0:{CLIENT_PORT}"),
                format!("--advertise-client-urls=http://127.0.0.1:{}", node.port),
                format!("--listen-peer-urls=http://0.0.0.0:{PEER_PORT}"),
                format!(
                    "--initial-advertise-peer-urls=http://{}:{PEER_PORT}",
                    node.alias
                ),
                format!("--initial-cluster={initial_cluster}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".into(),
                "--logger=zap".into(),
                "--log-outputs=stderr".into(),
            ];
            let mut cmd: Vec<&str> = vec![
                "run",
                "--detach",
                "--pull=never",
                "--name",
                &node.name,
                "--hostname",
                &node.alias,
                "--network",
                &self.network,
                "--network-alias",
                &node.alias,
                "--label",
                &label,
                "--label",
                &run_label,
                "--publish",
                &publish,
                "--entrypoint",
                "/usr/local/bin/etcd",
                &self.image,
            ];
            cmd.extend(args.iter().map(String::as_str));
            docker(&cmd)?;
        }
        Ok(())
    }

    /// Waits until every node is healthy; fails early when a container exits.
    fn wait_started(&self, timeout: Duration) -> Result<(), TestkitError> {
        let mut next_inspect = Instant::now() + INSPECT_EVERY;
        let started = poll_until(timeout, || {
            if self
                .nodes
                .iter()
                .all(|n| http::is_healthy(n.port, HEALTH_TIMEOUT))
            {
                return Some(Ok(()));
            }
            if Instant::now() >= next_inspect {
                next_inspect = Instant::now() + INSPECT_EVERY;
                if let Some(i) = (0..self.nodes.len()).find(|&i| !self.is_running(i)) {
                    return Some(Err(TestkitError::StartFailed {
                        what: format!(
                            "container {} ({}) exited during start",
                            self.nodes[i].name, self.image
                        ),
                        log_tail: self.log_tail(i),
                    }));
                }
            }
            None
        });
        started.unwrap_or_else(|| {
            Err(TestkitError::Timeout {
                what: format!(
                    "{} containers of {} not healthy after {timeout:?}",
                    self.nodes.len(),
                    self.image
                ),
                log_tail: self.tails(|_| true),
            })
        })
    }

    /// True when container `i` is running (paused counts as running).
    fn is_running(&self, i: usize) -> bool {
        docker(&[
            "inspect",
            "--format",
            "{{.State.Running}}",
            &self.nodes[i].name,
        ])
        .map(|s| s.trim() == "true")
        .unwrap_or(false)
    }

    /// The last lines of member `i`'s log.
    fn log_tail(&self, i: usize) -> String {
        let log = self.logs(i);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n")
    }

    /// The log tails of the members matching `select`, each under a `[container]` header.
    fn tails(&self, select: impl Fn(&Node) -> bool) -> String {
        (0..self.nodes.len())
            .filter(|&i| select(&self.nodes[i]))
            .map(|i| format!("[{}]\n{}\n", self.nodes[i].name, self.log_tail(i)))
            .collect()
    }

    /// `docker rm -f` every container (also ones that were never created: ignored).
    fn remove_containers(&self) {
        if self.nodes.is_empty() {
            return;
        }
        let mut args = vec!["rm", "--force", "--volumes"];
        args.extend(self.nodes.iter().map(|n| n.name.as_str()));
        let _ = docker_output(&args);
    }
}

impl Drop for ContainerCluster {
    fn drop(&mut self) {
        self.remove_containers();
        if self.network_created {
            // Endpoints of just-removed containers can linger for a moment.
            for _ in 0..20 {
                match docker_output(&["network", "rm", &self.network]) {
                    Ok(out) if out.status.success() => break,
                    Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No such network") => {
                        break
                    }
                    Ok(_) => std::thread::sleep(Duration::from_millis(100)),
                    Err(_) => break,
                }
            }
        }
    }
}

/// `etcd-lock-<pid>-<counter>-<nanos>`: unique on this host across processes and calls.
fn unique_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "etcd-lock-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `docker args`, capturing stdout and stderr.
pub(super) fn docker_output(args: &[&str]) -> Result<Output, TestkitError> {
    Command::new(DOCKER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::io(format!("running `{DOCKER} {}`", args.join(" ")), e))
}

/// Runs `docker args`; its stdout on success, an error carrying stderr otherwise.
pub(super) fn docker(args: &[&str]) -> Result<String, TestkitError> {
    let out = docker_output(args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(TestkitError::io(
            format!("`{DOCKER} {}` failed ({})", args.join(" "), out.status),
            io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ))
    }
}

/// An error unless the Docker daemon answers.
fn require_docker() -> Result<(), TestkitError> {
    let out = docker_output(&["version", "--format", "{{.Server.Version}}"])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TestkitError::io(
            format!("the Docker daemon does not answer (`{DOCKER} version`)"),
            io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ))
    }
}

/// True when `image` exists locally (`docker image inspect`).
fn image_exists(image: &str) -> Result<bool, TestkitError> {
    let out = docker_output(&["image", "inspect", "--format", "{{.Id}}", image])?;
    Ok(out.status.success())
}

/// True for `docker run` failing because the host port is taken.
fn is_port_conflict(e: &TestkitError) -> bool {
    let msg = e.to_string();
    msg.contains("port is already allocated") || msg.contains("address already in use")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("etcd-lock-{}-", std::process::id())));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
    }

    #[test]
    fn zero_members_is_invalid() {
        match ContainerCluster::start("etcd-lock/etcd:3.5.1", 0) {
            Err(TestkitError::InvalidConfig(_)) => {}
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
}
