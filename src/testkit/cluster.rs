//! Starting and observing a set of members (see [`Cluster`] and [`ClusterBuilder`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::member::{MemberConfig, ERROR_TAIL_LINES};
use super::poll::poll_until;
use super::tempdir::TempDir;
use super::{ports, EtcdBinary, Member, TestkitError, TlsFiles};

/// How often a start is retried with fresh ports after a port collision.
const START_ATTEMPTS: usize = 5;

/// Configures and starts a [`Cluster`]; created by [`Cluster::builder`].
#[derive(Debug, Clone)]
#[must_use = "a ClusterBuilder does nothing until .start() is called"]
pub struct ClusterBuilder {
    binary: EtcdBinary,
    members: usize,
    data_in_shm: bool,
    args: Vec<String>,
    start_timeout: Duration,
    tls: Option<TlsFiles>,
    snapshot: Option<PathBuf>,
}

impl ClusterBuilder {
    /// Sets every member's backend quota (`--quota-backend-bytes`): writes that would grow the
    /// database past it raise the NOSPACE alarm and fail with `mvcc: database space exceeded`.
    pub fn quota_backend_bytes(self, bytes: u64) -> Self {
        self.arg(format!("--quota-backend-bytes={bytes}"))
    }

    /// Starts the members from a snapshot file (as written by `etcdctl snapshot save` or
    /// `Client::snapshot_to_file`): before each member starts, the version's own restore
    /// tool (`etcdutl snapshot restore` where the package ships `etcdutl`, else `etcdctl
    /// snapshot restore`) fills its data folder, checking the snapshot's sha256 on the way.
    pub fn from_snapshot(mut self, path: impl Into<PathBuf>) -> Self {
        self.snapshot = Some(path.into());
        self
    }

    /// Number of members (default 1).
    pub fn members(mut self, n: usize) -> Self {
        self.members = n;
        self
    }

    /// Puts the data folders on `/dev/shm` when it exists (default `false`):
    /// much faster fsync, useful for benchmarks.
    pub fn data_in_shm(mut self, yes: bool) -> Self {
        self.data_in_shm = yes;
        self
    }

    /// Adds one extra etcd flag for every member, e.g. `"--auth-token-ttl=2"`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several extra etcd flags for every member.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Serves clients over TLS with these certificate files: client URLs become
    /// `https://127.0.0.1:<port>`, and `/health` moves to a plain-HTTP metrics port
    /// ([`Member::health_port`]). See [`TlsFiles`].
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// How long [`ClusterBuilder::start`] and [`Member::restart`] wait for health
    /// (default 20 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the members and waits until every one is healthy.
    ///
    /// If a port turns out to be taken ("address already in use"), the whole
    /// cluster is restarted on fresh ports, up to 5 times. Any other early exit,
    /// or not becoming healthy within the start timeout, is an error carrying
    /// the tail of the members' logs.
    pub fn start(self) -> Result<Cluster, TestkitError> {
        super::runtime::refuse_current_thread("ClusterBuilder::start")?;
        if self.members == 0 {
            return Err(TestkitError::InvalidConfig(
                "a cluster needs at least one member".into(),
            ));
        }
        let dir = TempDir::create(self.data_in_shm)?;
        let mut last_conflict = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match self.try_start(&dir, attempt)? {
                Attempt::Started(members) => {
                    let token = format!("{}-{attempt}", dir.unique_name());
                    return Ok(Cluster {
                        binary: self.binary,
                        members,
                        tls: self.tls,
                        args: self.args,
                        start_timeout: self.start_timeout,
                        token,
                        dir,
                    });
                }
                Attempt::PortTaken(log_tail) => last_conflict = log_tail,
            }
        }
        Err(TestkitError::StartFailed {
            what: format!("ports were taken on each of {START_ATTEMPTS} start attempts"),
            log_tail: last_conflict,
        })
    }

    /// One attempt on fresh ports.
    fn try_start(&self, dir: &TempDir, attempt: usize) -> Result<Attempt, TestkitError> {
        // Client, peer, and with TLS a plain-HTTP metrics port, per member.
        let per = if self.tls.is_some() { 3 } else { 2 };
        let ports = ports::free_ports(self.members * per)?;
        let name = |i: usize| format!("m{i}");
        let initial_cluster = (0..self.members)
            .map(|i| format!("{}=http://127.0.0.1:{}", name(i), ports[per * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(self.members);
        for i in 0..self.members {
            let member_dir = dir.path().join(name(i));
            if member_dir.exists() {
                std::fs::remove_dir_all(&member_dir).map_err(|e| {
                    TestkitError::io(format!("cleaning {}", member_dir.display()), e)
                })?;
            }
            if let Some(snapshot) = &self.snapshot {
                self.restore(
                    snapshot,
                    &member_dir,
                    &name(i),
                    ports[per * i + 1],
                    &initial_cluster,
                    &format!("{}-{attempt}", dir.unique_name()),
                )?;
            }
            members.push(Member::spawn(MemberConfig {
                name: name(i),
                client_port: ports[per * i],
                peer_port: ports[per * i + 1],
                dir: member_dir,
                etcd: self.binary.etcd_path().to_path_buf(),
                initial_cluster: initial_cluster.clone(),
                token: format!("{}-{attempt}", dir.unique_name()),
                extra_args: self.args.clone(),
                start_timeout: self.start_timeout,
                tls: self.tls.clone().map(|files| (files, ports[per * i + 2])),
                initial_state: "new",
            })?);
        }
        let settled = poll_until(self.start_timeout, || {
            for m in members.iter_mut() {
                if let Some(status) = m.poll_exit() {
                    if m.port_conflict() {
                        return Some(Ok(Some(m.log_tail(ERROR_TAIL_LINES))));
                    }
                    return Some(Err(TestkitError::StartFailed {
                        what: format!(
                            "etcd {} member {} exited during start ({status})",
                            self.binary.version(),
                            m.name()
                        ),
                        log_tail: m.log_tail(ERROR_TAIL_LINES),
                    }));
                }
            }
            members.iter().all(Member::is_ready).then_some(Ok(None))
        });
        // `Ok(None)`: all ready; `Ok(Some(log tail))`: a member exited on a taken port.
        match settled {
            Some(Ok(None)) => Ok(Attempt::Started(members)),
            Some(Ok(Some(log_tail))) => Ok(Attempt::PortTaken(log_tail)),
            Some(Err(e)) => Err(e),
            None => match members.iter().find(|m| m.port_conflict()) {
                Some(m) => Ok(Attempt::PortTaken(m.log_tail(ERROR_TAIL_LINES))),
                None => Err(TestkitError::Timeout {
                    what: format!(
                        "etcd {} cluster of {} not healthy after {:?}",
                        self.binary.version(),
                        self.members,
                        self.start_timeout
                    ),
                    log_tail: tails(&members),
                }),
            },
        }
    }
}

impl ClusterBuilder {
    /// Fills `member_dir/data` from `snapshot` with the version's own restore tool.
    fn restore(
        &self,
        snapshot: &Path,
        member_dir: &Path,
        name: &str,
        peer_port: u16,
        initial_cluster: &str,
        token: &str,
    ) -> Result<(), TestkitError> {
        std::fs::create_dir_all(member_dir)
            .map_err(|e| TestkitError::io(format!("creating {}", member_dir.display()), e))?;
        let etcdutl = self.binary.etcdctl_path().with_file_name("etcdutl");
        let mut cmd = if etcdutl.exists() {
            Command::new(&etcdutl)
        } else {
            let mut cmd = Command::new(self.binary.etcdctl_path());
            cmd.env("ETCDCTL_API", "3");
            cmd
        };
        cmd.arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", member_dir.join("data").display()))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-token={token}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ));
        let what = format!(
            "{:?} snapshot restore {}",
            cmd.get_program(),
            snapshot.display()
        );
        let out = cmd
            .output()
            .map_err(|e| TestkitError::io(what.clone(), e))?;
        if !out.status.success() {
            return Err(TestkitError::StartFailed {
                what: format!("{what} failed ({})", out.status),
                log_tail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(())
    }
}

/// A member picked by [`Cluster::plan_member`]: name and free ports, not started yet. Announce
/// its [`PlannedMember::peer_url`] with `MemberAdd`, then start it with [`Cluster::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: Option<u16>,
}

impl PlannedMember {
    /// Its name (`m3` for the fourth member).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The peer URL to announce: `http://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
    /// The client port it will listen on.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }
}

/// Outcome of one start attempt that did not hit a hard error.
enum Attempt {
    /// Every member is healthy.
    Started(Vec<Member>),
    /// A port was taken by someone else; carries the log tail.
    PortTaken(String),
}

/// The log tails of `members`, each under a `[name]` header.
fn tails<'a>(members: impl IntoIterator<Item = &'a Member>) -> String {
    members
        .into_iter()
        .map(|m| format!("[{}]\n{}", m.name(), m.log_tail(ERROR_TAIL_LINES)))
        .collect()
}

/// A running etcd cluster of one or more [`Member`]s on 127.0.0.1.
///
/// Dropping it kills every member and removes the temporary data folder.
#[derive(Debug)]
#[must_use = "dropping a Cluster kills its members"]
pub struct Cluster {
    binary: EtcdBinary,
    members: Vec<Member>,
    tls: Option<TlsFiles>,
    /// The builder's extra flags and start timeout, for members that join later.
    args: Vec<String>,
    start_timeout: Duration,
    token: String,
    dir: TempDir,
}

impl Cluster {
    /// Starts configuring a cluster running `binary`.
    pub fn builder(binary: &EtcdBinary) -> ClusterBuilder {
        ClusterBuilder {
            binary: binary.clone(),
            members: 1,
            data_in_shm: false,
            args: Vec::new(),
            start_timeout: Duration::from_secs(20),
            tls: None,
            snapshot: None,
        }
    }

    /// Starts a single-member cluster with default settings.
    pub fn single(binary: &EtcdBinary) -> Result<Cluster, TestkitError> {
        Cluster::builder(binary).start()
    }

    /// Starts a three-member cluster with default settings.
    pub fn three(binary: &EtcdBinary) -> Result<Cluster, TestkitError> {
        Cluster::builder(binary).members(3).start()
    }

    /// The client URL of every member (`http://127.0.0.1:PORT`, `https://` with TLS), in
    /// member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// All members, in order `m0`, `m1`, ...
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member `i`.
    ///
    /// # Panics
    /// If `i` is not smaller than the number of members.
    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// Member `i`, mutably (to kill or restart it).
    ///
    /// # Panics
    /// If `i` is not smaller than the number of members.
    pub fn member_mut(&mut self, i: usize) -> &mut Member {
        &mut self.members[i]
    }

    /// The index of the leader, read from each running, unpaused member's
    /// `/metrics` (`etcd_server_is_leader 1`).
    ///
    /// `None` when no member, or more than one (a stale leader during an
    /// election), claims leadership.
    pub fn leader(&self) -> Option<usize> {
        let mut leaders = (0..self.members.len()).filter(|&i| self.members[i].is_leader());
        let first = leaders.next()?;
        leaders.next().is_none().then_some(first)
    }

    /// Polls [`Cluster::leader`] until it returns a member or `timeout` passes.
    pub fn wait_leader(&self, timeout: Duration) -> Result<usize, TestkitError> {
        super::runtime::refuse_current_thread("Cluster::wait_leader")?;
        poll_until(timeout, || self.leader()).ok_or_else(|| TestkitError::Timeout {
            what: format!("no single leader after {timeout:?}"),
            log_tail: tails(self.members.iter().filter(|m| m.pid().is_some())),
        })
    }

    /// Polls until every running, unpaused member is healthy or `timeout` passes.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("Cluster::wait_healthy")?;
        let live = || {
            self.members
                .iter()
                .filter(|m| m.pid().is_some() && !m.is_paused())
        };
        poll_until(timeout, || live().all(Member::is_healthy).then_some(())).ok_or_else(|| {
            TestkitError::Timeout {
                what: format!("cluster not healthy after {timeout:?}"),
                log_tail: tails(live()),
            }
        })
    }

    /// An `etcdctl` command with `ETCDCTL_API=3` and `--endpoints` set to all members (and
    /// with TLS, `--cacert` plus the identity given to [`TlsFiles::with_etcdctl_identity`]).
    pub fn etcdctl(&self) -> Command {
        let mut cmd = Command::new(self.binary.etcdctl_path());
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")));
        if let Some(files) = &self.tls {
            cmd.args(files.etcdctl_args());
        }
        cmd
    }

    /// Picks a name (`m<N>`, N = the number of members so far, counting removed ones) and
    /// free ports for a member that will join this running cluster.
    pub fn plan_member(&self) -> Result<PlannedMember, TestkitError> {
        let per = if self.tls.is_some() { 3 } else { 2 };
        let ports = ports::free_ports(per)?;
        let taken = |n: &str| self.members.iter().any(|m| m.name() == n);
        let mut i = self.members.len();
        while taken(&format!("m{i}")) || self.dir.path().join(format!("m{i}")).exists() {
            i += 1;
        }
        Ok(PlannedMember {
            name: format!("m{i}"),
            client_port: ports[0],
            peer_port: ports[1],
            metrics_port: ports.get(2).copied(),
        })
    }

    /// Starts a planned member with `--initial-cluster-state existing` and `initial_cluster`
    /// (the `name=peerURL,...` list after its `MemberAdd`, e.g. from etcd-lock's
    /// `MemberAddResponse::initial_cluster`), with the cluster's extra flags and TLS settings.
    /// Waits until it is ready (a learner too) and returns its index in [`Cluster::members`].
    pub fn join(
        &mut self,
        planned: PlannedMember,
        initial_cluster: &str,
    ) -> Result<usize, TestkitError> {
        super::runtime::refuse_current_thread("Cluster::join")?;
        let member_dir = self.dir.path().join(&planned.name);
        let mut member = Member::spawn(MemberConfig {
            name: planned.name.clone(),
            client_port: planned.client_port,
            peer_port: planned.peer_port,
            dir: member_dir,
            etcd: self.binary.etcd_path().to_path_buf(),
            initial_cluster: initial_cluster.to_string(),
            token: self.token.clone(),
            extra_args: self.args.clone(),
            start_timeout: self.start_timeout,
            tls: self.tls.clone().zip(planned.metrics_port),
            initial_state: "existing",
        })?;
        let ready = poll_until(self.start_timeout, || {
            if let Some(status) = member.poll_exit() {
                return Some(Err(TestkitError::StartFailed {
                    what: format!("member {} exited while joining ({status})", planned.name),
                    log_tail: member.log_tail(ERROR_TAIL_LINES),
                }));
            }
            member.is_ready().then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => {
                return Err(TestkitError::Timeout {
                    what: format!(
                        "member {} not ready {:?} after joining",
                        planned.name, self.start_timeout
                    ),
                    log_tail: member.log_tail(ERROR_TAIL_LINES),
                })
            }
        }
        self.members.push(member);
        Ok(self.members.len() - 1)
    }

    /// Takes member `i` out of the list and stops it (after `MemberRemove` etcd stops it by
    /// itself; this reaps or kills the process). Later members move down one index; the
    /// member's folder stays until the cluster is dropped.
    ///
    /// # Panics
    /// If `i` is not smaller than the number of members.
    pub fn remove_member(&mut self, i: usize) -> Result<(), TestkitError> {
        let mut member = self.members.remove(i);
        member.kill()
    }

    /// The etcd binary the cluster runs.
    pub fn binary(&self) -> &EtcdBinary {
        &self.binary
    }

    /// The temporary folder holding every member's data folder and log;
    /// removed when the cluster is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill every member before `dir` (declared last) removes their folders.
        self.members.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn retries_on_fresh_ports_when_a_port_is_taken() {
        let Some(bin) = EtcdBinary::installed().into_iter().next() else {
            eprintln!("no etcd installed (scripts/install-etcd): skipped");
            return;
        };
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let peer = ports::free_ports(1).unwrap()[0];
        ports::FORCED.with(|f| *f.borrow_mut() = vec![port, peer]);
        let cluster = Cluster::single(&bin).unwrap();
        let m = cluster.member(0);
        assert_ne!(m.client_port(), port);
        assert!(m.is_healthy());
        assert!(
            !m.log().contains("address already in use"),
            "log of attempt 1 kept"
        );
    }
}
