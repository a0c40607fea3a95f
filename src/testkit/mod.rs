//! Test harness that runs **real** etcd servers as child processes.
//!
//! Enabled by the `testkit` cargo feature. Two faces, one implementation:
//!
//! * **async** — [`AsyncCluster`] and [`AsyncContainerCluster`], for `#[tokio::test]` of
//!   either flavour (a plain current-thread `#[tokio::test]` included). Each waiting call runs
//!   the synchronous call below on tokio's blocking pool, so the runtime keeps driving the
//!   client's connections meanwhile.
//! * **sync** — [`Cluster`] and [`ContainerCluster`], for plain `#[test]`s and
//!   `spawn_blocking`. Called from the body of a current-thread runtime, their waiting calls
//!   return [`TestkitError::CurrentThreadRuntime`] instead of freezing the runtime (use the
//!   async face there).
//!
//! * [`EtcdBinary`] finds etcd versions: `ETCD_BIN_<version>`, `ETCD_BIN`, `$PATH`, then a
//!   cache folder (see its docs).
//! * [`Cluster`] starts one or more [`Member`]s on free 127.0.0.1 ports, each
//!   with its own temporary data folder and log file, and waits until they
//!   are healthy.
//! * [`Member`] can be killed, paused (SIGSTOP), resumed and restarted to
//!   test failover.
//! * [`ContainerCluster`] runs the members in Docker containers instead (any
//!   local etcd image, e.g. `etcd-lock/etcd:3.5.1`; images are never pulled), with client
//!   ports published on 127.0.0.1, and
//!   adds network faults: [`ContainerCluster::disconnect`] cuts a member off
//!   from its peers and its clients until [`ContainerCluster::reconnect`].
//!   Needs a Docker daemon ([`ContainerCluster::docker_available`]).
//!
//! * [`DelayProxy`] is a slow network path to one member: a TCP proxy that holds every byte
//!   sent through it for a delay set at run time, so requests arrive (and are applied) long
//!   after the client gave up on them.
//!
//! Every process is killed and every folder removed on drop, also when the
//! test panics. Members also die with the test process when it is killed (SIGKILL, abort):
//! the kernel sends them SIGKILL (`PR_SET_PDEATHSIG`, Linux). Containers carry the test
//! process's run id ([`RUN_LABEL`]); the next test process that starts a container cluster
//! removes those of dead runs. (Only `etcd-testkit-*` temp folders of a killed process stay.)
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use etcd_lock::testkit::{Cluster, EtcdBinary, TestkitError};
//!
//! fn leader_failover() -> Result<(), TestkitError> {
//!     // Every installed version (narrow it down with ETCD_LOCK_VERSIONS=3.5.1).
//!     for bin in EtcdBinary::matrix()? {
//!         let mut cluster = Cluster::builder(&bin).members(3).start()?;
//!         println!("etcd {} at {:?}", bin.version(), cluster.endpoints());
//!
//!         let old = cluster.wait_leader(Duration::from_secs(10))?;
//!         cluster.member_mut(old).kill()?;
//!         let new = cluster.wait_leader(Duration::from_secs(10))?;
//!         assert_ne!(old, new);
//!
//!         cluster.member_mut(old).restart()?;
//!         cluster.wait_healthy(Duration::from_secs(10))?;
//!     } // members killed, data removed
//!     Ok(())
//! }
//! ```
//!
//! # Environment
//!
//! | variable | effect |
//! |---|---|
//! | `ETCD_BIN_3_5_1` | use this `etcd` (and the `etcdctl` next to it) for 3.5.1 |
//! | `ETCD_BIN` | an `etcd` used for the version it reports (then `etcd` on `$PATH`) |
//! | `ETCD_LOCK_CACHE` | cache folder with `v<version>/{etcd,etcdctl}` (default: `.cache/etcd` up to the workspace root, else `~/.cache/etcd-lock/etcd`) |
//! | `ETCD_LOCK_VERSIONS` | comma separated versions for [`EtcdBinary::installed`] / [`EtcdBinary::matrix`] |
//!
//! Member flags are etcd's defaults plus `--logger=zap --log-outputs=stderr`
//! (accepted by 3.4 and 3.5); add more with [`ClusterBuilder::arg`]. With
//! [`ClusterBuilder::tls`] members serve clients over `https://` (certificates
//! from [`TlsFiles`]) and answer `/health` on a separate plain-HTTP metrics port.

mod async_face;
mod binary;
mod cluster;
mod container;
mod error;
mod http;
mod leftovers;
mod member;
mod netns;
mod poll;
mod ports;
mod proxy;
mod runtime;
mod signal;
mod spawner;
mod tempdir;
mod tls;

pub use async_face::{AsyncCluster, AsyncContainerCluster};
pub use binary::{EtcdBinary, BIN_ENV, BIN_ENV_PREFIX, CACHE_ENV, VERSIONS_ENV};
pub use cluster::{Cluster, ClusterBuilder, PlannedMember};
pub use container::{ContainerCluster, CONTAINER_LABEL, IMAGE_REPO};
pub use error::TestkitError;
pub use leftovers::RUN_LABEL;
pub use member::Member;
pub use proxy::DelayProxy;
pub use tls::TlsFiles;
