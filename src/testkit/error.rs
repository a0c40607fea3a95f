//! The single error type of the testkit.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while finding etcd binaries or running members.
///
/// Messages are meant to be read by a human in a failing test: start and
/// readiness failures carry the tail of the member's log.
#[derive(Debug)]
#[non_exhaustive]
pub enum TestkitError {
    /// The requested etcd version is not installed where the testkit looks.
    NotInstalled {
        /// The requested version, without a leading `v` (e.g. `3.5.1`).
        version: String,
        /// The executables that were looked for and not found.
        searched: Vec<PathBuf>,
    },
    /// An I/O operation failed (creating a directory, spawning a process, ...).
    Io {
        /// What the testkit was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A member exited, or could not be started, while it was being started.
    StartFailed {
        /// What failed, naming the member.
        what: String,
        /// The last lines of the relevant member log(s).
        log_tail: String,
    },
    /// Something did not become true before its deadline.
    Timeout {
        /// What was being waited for.
        what: String,
        /// The last lines of the relevant member log(s).
        log_tail: String,
    },
    /// Sending a signal with the `kill` command failed.
    Signal {
        /// The signal name, e.g. `STOP`.
        signal: &'static str,
        /// The target process id.
        pid: u32,
        /// Why it failed.
        detail: String,
    },
    /// The operation needs a running member, but the member is not running.
    NotRunning {
        /// The member's name.
        member: String,
    },
    /// The requested configuration is invalid (e.g. zero members).
    InvalidConfig(String),
    /// A host tool the operation needs is not installed (e.g. `nsenter`, or both `iptables`
    /// and `nft` for a peer-only partition). Nothing was changed.
    MissingTool {
        /// The tool(s) looked for.
        tool: &'static str,
        /// What it was needed for.
        needed_for: &'static str,
    },
    /// An etcd binary, or a folder it was found in, can be changed by someone else than the
    /// current user and root (group- or world-writable without the sticky bit, or owned by
    /// another user), so the testkit refuses to run it. Nothing was started.
    UnsafePath {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A call that blocks its thread while it waits was made from the body of a
    /// current-thread tokio runtime (a plain `#[tokio::test]`), where it would freeze the
    /// client's connection, keep-alive and watch tasks. Nothing was started or changed.
    /// The async face ([`AsyncCluster`](super::AsyncCluster),
    /// [`AsyncContainerCluster`](super::AsyncContainerCluster)) never returns it.
    CurrentThreadRuntime {
        /// The refused call, e.g. `Cluster::wait_leader`.
        call: &'static str,
    },
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TestkitError::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestkitError::NotInstalled { version, searched } => {
                let version = if version == "(any)" {
                    "<version>"
                } else {
                    version.as_str()
                };
                write!(f, "etcd {version} is not installed (looked for")?;
                for (i, p) in searched.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{}", p.display())?;
                }
                write!(
                    f,
                    "). Download etcd v{version} from \
                     https://github.com/etcd-io/etcd/releases and set {} (or {}) to its \
                     `etcd`, put it on $PATH, or unpack the archive into \
                     <cache>/v{version}/ (cache: ${}, else the first .cache/etcd up to the \
                     workspace root, else ~/.cache/etcd-lock/etcd)",
                    super::binary::override_var(version),
                    super::binary::BIN_ENV,
                    super::binary::CACHE_ENV,
                )
            }
            TestkitError::Io { context, source } => write!(f, "{context}: {source}"),
            TestkitError::StartFailed { what, log_tail } => {
                write!(f, "{what}")?;
                write_tail(f, log_tail)
            }
            TestkitError::Timeout { what, log_tail } => {
                write!(f, "timed out: {what}")?;
                write_tail(f, log_tail)
            }
            TestkitError::Signal {
                signal,
                pid,
                detail,
            } => write!(f, "kill -{signal} {pid} failed: {detail}"),
            TestkitError::NotRunning { member } => write!(f, "member {member} is not running"),
            TestkitError::InvalidConfig(msg) => write!(f, "invalid testkit configuration: {msg}"),
            TestkitError::MissingTool { tool, needed_for } => write!(
                f,
                "{tool} not found on this host (needed for {needed_for}); install it \
                 (Debian: `apt-get install util-linux iptables`)"
            ),
            TestkitError::UnsafePath { path, reason } => write!(
                f,
                "refusing to run etcd from {}: {reason}; others could replace the binary. Fix \
                 the permissions (chmod go-w, chown to yourself), or point {} or \
                 ETCD_BIN_<version> at a copy only you can write",
                path.display(),
                super::binary::CACHE_ENV
            ),
            TestkitError::CurrentThreadRuntime { call } => write!(
                f,
                "{call} blocks its thread while it waits, and this thread drives a \
                 current-thread tokio runtime (a plain #[tokio::test]): the client's \
                 connection, keep-alive and watch tasks would stall meanwhile and miss, for \
                 example, a killed member's closed connection. Use the async face \
                 (AsyncCluster, AsyncContainerCluster), which works there, or \
                 #[tokio::test(flavor = \"multi_thread\")], or call it inside \
                 tokio::task::spawn_blocking"
            ),
        }
    }
}

fn write_tail(f: &mut fmt::Formatter<'_>, tail: &str) -> fmt::Result {
    if tail.trim().is_empty() {
        Ok(())
    } else {
        write!(f, "\n--- log tail ---\n{}", tail.trim_end())
    }
}

impl std::error::Error for TestkitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestkitError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
