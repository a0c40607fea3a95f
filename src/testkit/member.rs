//! One etcd server process (see [`Member`]).

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::poll::poll_until;
use super::{http, signal, TestkitError};

/// Read timeout of a `/health` request.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of log included in error messages.
pub(crate) const ERROR_TAIL_LINES: usize = 30;
/// Lines returned by [`Member::log`].
const LOG_LINES: usize = 200;
/// Written to the log before each restart.
const RESTART_MARKER: &str = "--- testkit: restarting member";
/// Log messages (zap and capnslog, 3.4 and 3.5) printed only after etcd bound
/// all its ports. Without one, a healthy answer may come from another process
/// that grabbed the port first.
const LISTENING_MARKERS: [&str; 4] = [
    "now serving peer/client/metrics",
    "ready to serve client requests",
    "serving client traffic",
    "serving insecure client requests",
];

/// Everything needed to run one member; built by the cluster.
#[derive(Debug)]
pub(crate) struct MemberConfig {
    pub(crate) name: String,
    pub(crate) client_port: u16,
    pub(crate) peer_port: u16,
    /// Folder holding `data/` and `etcd.log`; created if missing.
    pub(crate) dir: PathBuf,
    pub(crate) etcd: PathBuf,
    /// `m0=http://127.0.0.1:P0,m1=...`
    pub(crate) initial_cluster: String,
    pub(crate) token: String,
    pub(crate) extra_args: Vec<String>,
    pub(crate) start_timeout: Duration,
    /// TLS for client connections, and the plain-HTTP port for `/health` and `/metrics`.
    pub(crate) tls: Option<(super::TlsFiles, u16)>,
    /// `--initial-cluster-state` of the first start: `new`, or `existing` for a member that
    /// joins a running cluster after `MemberAdd`.
    pub(crate) initial_state: &'static str,
}

/// One etcd server process of a [`Cluster`](super::Cluster).
///
/// The process listens on `127.0.0.1` only; its stdout and stderr go to
/// [`Member::log_path`]. Dropping a `Member` kills the process (also when
/// the test panics), so no etcd process outlives its `Member`.
#[derive(Debug)]
pub struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Where `/health` and `/metrics` answer: the client port, or the metrics port with TLS.
    health_port: u16,
    client_scheme: &'static str,
    dir: PathBuf,
    etcd: PathBuf,
    /// All flags except `--initial-cluster-state`.
    args: Vec<String>,
    start_timeout: Duration,
    child: Option<Child>,
    paused: AtomicBool,
}

impl Member {
    /// Creates the member folder and starts etcd with `--initial-cluster-state` as configured
    /// (`new` for a cluster's founding members). Does not wait for it to become healthy.
    pub(crate) fn spawn(cfg: MemberConfig) -> Result<Member, TestkitError> {
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let client_scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let client_url = format!("{client_scheme}://127.0.0.1:{}", cfg.client_port);
        let data = cfg.dir.join("data");
        let mut args = vec![
            format!("--name={}", cfg.name),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={}", url(cfg.peer_port)),
            format!("--initial-advertise-peer-urls={}", url(cfg.peer_port)),
            format!("--initial-cluster={}", cfg.initial_cluster),
            format!("--initial-cluster-token={}", cfg.token),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
        ];
        let initial_state = cfg.initial_state;
        let mut health_port = cfg.client_port;
        if let Some((files, metrics_port)) = &cfg.tls {
            args.extend(files.server_args());
            args.push(format!("--listen-metrics-urls={}", url(*metrics_port)));
            health_port = *metrics_port;
        }
        args.extend(cfg.extra_args);
        std::fs::create_dir_all(&cfg.dir)
            .map_err(|e| TestkitError::io(format!("creating {}", cfg.dir.display()), e))?;
        let mut member = Member {
            name: cfg.name,
            client_port: cfg.client_port,
            peer_port: cfg.peer_port,
            health_port,
            client_scheme,
            dir: cfg.dir,
            etcd: cfg.etcd,
            args,
            start_timeout: cfg.start_timeout,
            child: None,
            paused: AtomicBool::new(false),
        };
        member.start_process(initial_state)?;
        Ok(member)
    }

    fn start_process(&mut self, state: &str) -> Result<(), TestkitError> {
        let log_path = self.log_path();
        let open_err = |e| TestkitError::io(format!("opening {}", log_path.display()), e);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(open_err)?;
        let log2 = log.try_clone().map_err(open_err)?;
        let mut cmd = Command::new(&self.etcd);
        cmd.args(&self.args)
            .arg(format!("--initial-cluster-state={state}"))
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log);
        // etcd reads ETCD_* variables as flags and warns about unknown ones; hide
        // the testkit's own variables (but keep e.g. ETCD_UNSUPPORTED_ARCH).
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("ETCD_LOCK_")
                || k.starts_with(super::binary::BIN_ENV_PREFIX)
                || k == super::binary::BIN_ENV
            {
                cmd.env_remove(&key);
            }
        }
        let child = super::spawner::spawn(cmd).map_err(|e| {
            TestkitError::io(
                format!("starting {} for member {}", self.etcd.display(), self.name),
                e,
            )
        })?;
        self.child = Some(child);
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// The member name (`m0`, `m1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, `http://127.0.0.1:<client_port>` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.client_scheme, self.client_port)
    }

    /// The port answering `/health` and `/metrics` over plain HTTP: the client port, or with
    /// TLS the separate `--listen-metrics-urls` port.
    pub fn health_port(&self) -> u16 {
        self.health_port
    }

    /// The client port on 127.0.0.1 (gRPC; without TLS also `/health`, `/metrics`).
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer (raft) port on 127.0.0.1.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The process id, or `None` when the member was killed or has exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The etcd `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The file receiving the process' stdout and stderr (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// The last 200 lines of the member's log.
    pub fn log(&self) -> String {
        self.log_tail(LOG_LINES)
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        match std::fs::read(self.log_path()) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                let mut tail = all[all.len().saturating_sub(lines)..].join("\n");
                tail.push('\n');
                tail
            }
            Err(e) => format!("<log {} unreadable: {e}>\n", self.log_path().display()),
        }
    }

    /// The log written since the last (re)start.
    fn current_log(&self) -> String {
        let bytes = std::fs::read(self.log_path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let start = text.rfind(RESTART_MARKER).unwrap_or(0);
        text[start..].to_string()
    }

    /// True when the log reports that a port was taken by someone else.
    pub(crate) fn port_conflict(&self) -> bool {
        self.current_log().contains("address already in use")
    }

    /// Healthy, and the process itself (not an intruder on its port) listens.
    pub(crate) fn is_ready(&self) -> bool {
        let log = self.current_log();
        LISTENING_MARKERS.iter().any(|m| log.contains(m)) && self.is_healthy()
    }

    /// Reaps the process if it exited; returns its exit status then.
    pub(crate) fn poll_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.paused.store(false, Ordering::SeqCst);
        Some(status)
    }

    /// Whether the process is alive (a paused process counts as running).
    pub fn is_running(&mut self) -> bool {
        self.poll_exit();
        self.child.is_some()
    }

    /// Whether [`Member::pause`] was called without a later [`Member::resume`].
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Whether `GET /health` answers `{"health":"true"}`.
    ///
    /// Returns `false` right away for a killed or paused member.
    pub fn is_healthy(&self) -> bool {
        self.child.is_some()
            && !self.is_paused()
            && http::is_healthy(self.health_port, HEALTH_TIMEOUT)
    }

    /// Whether `/metrics` reports `etcd_server_is_leader 1`; `false` when killed,
    /// paused or unreachable.
    pub fn is_leader(&self) -> bool {
        self.child.is_some()
            && !self.is_paused()
            && http::is_leader(self.health_port, HEALTH_TIMEOUT) == Some(true)
    }

    /// The Prometheus text of `GET /metrics` (plain HTTP on [`Member::health_port`]), e.g. to
    /// see which member serves a client's requests (`grpc_server_started_total`).
    pub fn metrics(&self) -> Result<String, TestkitError> {
        self.running_pid()?;
        let what = || format!("GET /metrics of member {}", self.name);
        let response = http::get(self.health_port, "/metrics", HEALTH_TIMEOUT)
            .map_err(|e| TestkitError::io(what(), e))?;
        if response.status != 200 {
            return Err(TestkitError::io(
                what(),
                std::io::Error::other(format!("HTTP status {}", response.status)),
            ));
        }
        Ok(response.body)
    }

    /// Polls [`Member::is_healthy`] until it holds or `timeout` passes.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("Member::wait_healthy")?;
        poll_until(timeout, || self.is_healthy().then_some(())).ok_or_else(|| {
            TestkitError::Timeout {
                what: format!("member {} not healthy after {timeout:?}", self.name),
                log_tail: self.log_tail(ERROR_TAIL_LINES),
            }
        })
    }

    /// Sends SIGKILL and reaps the process. Does nothing if it is not running.
    /// The data folder is kept, so [`Member::restart`] can bring it back.
    pub fn kill(&mut self) -> Result<(), TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.paused.store(false, Ordering::SeqCst);
        let killed = child.kill();
        let waited = child.wait();
        let what = format!("killing member {} (pid {})", self.name, child.id());
        killed.map_err(|e| TestkitError::io(what.clone(), e))?;
        waited.map_err(|e| TestkitError::io(what, e))?;
        Ok(())
    }

    /// Stops the member gracefully: sends SIGTERM (after SIGCONT when it is paused) and waits
    /// until the process has exited and is reaped. etcd then shuts down the way an operator's
    /// stop does: a leader hands leadership over first, and requests still in flight are
    /// answered with `etcdserver: server stopped`. Does nothing if the member is not running.
    /// The data folder is kept, so [`Member::restart`] can bring it back.
    ///
    /// If the process is still running after the cluster's start timeout (default 20 s), it
    /// is killed with SIGKILL and a [`TestkitError::Timeout`] carrying the log tail is
    /// returned; either way no process is left behind.
    pub fn terminate(&mut self) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("Member::terminate")?;
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        if self.is_paused() {
            signal::send(pid, "CONT")?;
            self.paused.store(false, Ordering::SeqCst);
        }
        if let Err(e) = signal::send(pid, "TERM") {
            // It may have exited on its own meanwhile: only an error while it still runs counts.
            return match self.poll_exit() {
                Some(_) => Ok(()),
                None => Err(e),
            };
        }
        if poll_until(self.start_timeout, || self.poll_exit()).is_some() {
            return Ok(());
        }
        let log_tail = self.log_tail(ERROR_TAIL_LINES);
        self.kill()?;
        Err(TestkitError::Timeout {
            what: format!(
                "member {} still running {:?} after SIGTERM (killed)",
                self.name, self.start_timeout
            ),
            log_tail,
        })
    }

    /// Freezes the process with SIGSTOP (it keeps its sockets but stops answering).
    ///
    /// Returns once the kernel reports the process stopped (checked via `/proc`).
    pub fn pause(&self) -> Result<(), TestkitError> {
        let pid = self.running_pid()?;
        signal::send(pid, "STOP")?;
        self.paused.store(true, Ordering::SeqCst);
        signal::wait_stopped(pid, true);
        Ok(())
    }

    /// Continues a paused process with SIGCONT.
    pub fn resume(&self) -> Result<(), TestkitError> {
        let pid = self.running_pid()?;
        signal::send(pid, "CONT")?;
        self.paused.store(false, Ordering::SeqCst);
        signal::wait_stopped(pid, false);
        Ok(())
    }

    /// Kills the member if it runs, starts it again on the same ports and data
    /// folder, and waits (up to the cluster's start timeout) until it is healthy.
    ///
    /// A member only becomes healthy when its cluster has quorum: to bring back
    /// several members of a cluster that lost quorum, use
    /// [`Member::restart_no_wait`] on each, then [`Cluster::wait_healthy`](super::Cluster::wait_healthy).
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        super::runtime::refuse_current_thread("Member::restart")?;
        self.restart_no_wait()?;
        let started = poll_until(self.start_timeout, || {
            if let Some(status) = self.poll_exit() {
                return Some(Err(TestkitError::StartFailed {
                    what: format!("member {} exited during restart ({status})", self.name),
                    log_tail: self.log_tail(ERROR_TAIL_LINES),
                }));
            }
            self.is_ready().then_some(Ok(()))
        });
        started.unwrap_or_else(|| {
            Err(TestkitError::Timeout {
                what: format!(
                    "member {} not healthy {:?} after restart",
                    self.name, self.start_timeout
                ),
                log_tail: self.log_tail(ERROR_TAIL_LINES),
            })
        })
    }

    /// Like [`Member::restart`] but returns right after starting the process.
    pub fn restart_no_wait(&mut self) -> Result<(), TestkitError> {
        self.kill()?;
        let marker = format!("{RESTART_MARKER} {} ---\n", self.name);
        let _ = OpenOptions::new()
            .append(true)
            .open(self.log_path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, marker.as_bytes()));
        self.start_process("existing")
    }

    fn running_pid(&self) -> Result<u32, TestkitError> {
        self.pid().ok_or_else(|| TestkitError::NotRunning {
            member: self.name.clone(),
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused.load(Ordering::SeqCst) {
                let _ = signal::send(child.id(), "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
