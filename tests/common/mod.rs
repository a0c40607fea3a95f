//! Shared helpers for integration tests: every test runs once per etcd version, each run on
//! its own freshly started server(s) from the testkit.
#![allow(dead_code, unreachable_pub)]

pub mod child;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use etcd_lock::kv::GetOptions;
use etcd_lock::testkit::{Cluster, ContainerCluster, EtcdBinary};
use etcd_lock::{Client, ClientOptions, Session, SessionOptions};

/// The etcd versions every integration test runs against (CI installs all three;
/// `3.5-latest` is the newest 3.5 release Debian sid carries, resolved by the testkit).
pub const VERSIONS: [&str; 3] = ["3.5-latest", "3.5.1", "3.4.23"];

/// Declares one `#[tokio::test]` per etcd version for an `async fn(&EtcdBinary)`:
/// `per_version!(my_case);` -> `my_case::v3_5_1`, `my_case::v3_4_23`, `my_case::v3_5_latest`.
#[macro_export]
macro_rules! per_version {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_5_1() {
                let bin = $crate::common::binary("3.5.1");
                $crate::common::watchdog(super::$case(&bin)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_4_23() {
                let bin = $crate::common::binary("3.4.23");
                $crate::common::watchdog(super::$case(&bin)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_5_latest() {
                let bin = $crate::common::binary("3.5-latest");
                $crate::common::watchdog(super::$case(&bin)).await;
            }
        }
    )+};
}

/// Declares one test per lock flavour and etcd version for an
/// `async fn(&EtcdBinary, L: Locker)`: `case::recipe::v3_5_1`, `case::service::v3_4_23`, ...
/// Each flavour is passed as the run-time form `Box<dyn DynLocker>` from `lock::lockers()`.
#[macro_export]
macro_rules! lock_flavours {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            async fn recipe(bin: &::etcd_lock::testkit::EtcdBinary) {
                super::$case(bin, $crate::common::boxed_locker("recipe")).await
            }
            async fn service(bin: &::etcd_lock::testkit::EtcdBinary) {
                super::$case(bin, $crate::common::boxed_locker("service")).await
            }
            $crate::per_version!(recipe, service);
        }
    )+};
}

/// Declares one test per election flavour and etcd version for an
/// `async fn(&EtcdBinary, E: Elector)`: `case::recipe::v3_5_1`, `case::service::v3_4_23`, ...
/// Each flavour is passed as the run-time form `Box<dyn DynElector>` from `election::electors()`.
#[macro_export]
macro_rules! election_flavours {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            async fn recipe(bin: &::etcd_lock::testkit::EtcdBinary) {
                super::$case(bin, $crate::common::boxed_elector("recipe")).await
            }
            async fn service(bin: &::etcd_lock::testkit::EtcdBinary) {
                super::$case(bin, $crate::common::boxed_elector("service")).await
            }
            $crate::per_version!(recipe, service);
        }
    )+};
}

/// Declares one `#[tokio::test]` per image version for an `async fn(&str)` taking the local
/// image name; skipped (see [`skip_without_docker`]) when Docker is missing outside CI.
#[macro_export]
macro_rules! per_image {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_5_1() {
                if let Some(image) = $crate::common::image("3.5.1") {
                    $crate::common::watchdog(super::$case(&image)).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_4_23() {
                if let Some(image) = $crate::common::image("3.4.23") {
                    $crate::common::watchdog(super::$case(&image)).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_5_latest() {
                if let Some(image) = $crate::common::image("3.5-latest") {
                    $crate::common::watchdog(super::$case(&image)).await;
                }
            }
        }
    )+};
}

/// The lock flavour `flavour`, taken from the `Vec<Box<dyn DynLocker>>` of both flavours that
/// `lock::lockers()` returns: the generic suites run on the run-time form.
pub fn boxed_locker(flavour: &str) -> Box<dyn etcd_lock::lock::DynLocker> {
    let found = etcd_lock::lock::lockers()
        .into_iter()
        .find(|l| l.flavour_name() == flavour);
    found.unwrap_or_else(|| panic!("no lock flavour {flavour}"))
}

/// The election flavour `flavour`, from `election::electors()` (see [`boxed_locker`]).
pub fn boxed_elector(flavour: &str) -> Box<dyn etcd_lock::election::DynElector> {
    let found = etcd_lock::election::electors()
        .into_iter()
        .find(|e| e.flavour_name() == flavour);
    found.unwrap_or_else(|| panic!("no election flavour {flavour}"))
}

/// The local image of `version` (`etcd-lock/etcd:<version>`, aliases resolved); `None` when
/// Docker is missing outside CI (see [`skip_without_docker`]); panics when it is not built.
pub fn image(version: &str) -> Option<String> {
    if skip_without_docker() {
        return None;
    }
    match ContainerCluster::image_for(version) {
        Ok(image) => Some(image),
        Err(e) => panic!("{e}"),
    }
}

/// The longest any one test case may run: a case stuck on an `.await` fails with this
/// message instead of holding the whole suite until CI's own limit.
pub const CASE_LIMIT: Duration = Duration::from_secs(300);

/// Runs one test case, failing it when it is still running after [`CASE_LIMIT`].
pub async fn watchdog(case: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(CASE_LIMIT, case).await.is_err() {
        panic!(
            "the case was still running after {} s: an .await that never completes",
            CASE_LIMIT.as_secs()
        );
    }
}

/// The installed binary of `version`; panics with the install hint when it is missing.
pub fn binary(version: &str) -> EtcdBinary {
    match EtcdBinary::find(version) {
        Ok(bin) => bin,
        Err(e) => panic!("{e}"),
    }
}

/// A single member on free loopback ports.
pub fn single(bin: &EtcdBinary) -> Cluster {
    match Cluster::single(bin) {
        Ok(c) => c,
        Err(e) => panic!("starting etcd {}: {e}", bin.version()),
    }
}

/// A 3-member cluster on free loopback ports.
pub fn three(bin: &EtcdBinary) -> Cluster {
    match Cluster::three(bin) {
        Ok(c) => c,
        Err(e) => panic!("starting 3-member etcd {}: {e}", bin.version()),
    }
}

/// A client for `endpoints` with a 2 s connect and 3 s request timeout, for tests that fail
/// members over (panics with the error text when none answers).
pub async fn connect_quick(endpoints: &[String]) -> Client {
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Some(Duration::from_secs(3)));
    match Client::connect_with(endpoints, options).await {
        Ok(c) => c,
        Err(e) => panic!("connecting to {endpoints:?}: {e}"),
    }
}

/// A client for every endpoint of `cluster`.
pub async fn client(cluster: &Cluster) -> Client {
    client_with(cluster, ClientOptions::new()).await
}

/// A client with options.
pub async fn client_with(cluster: &Cluster, options: ClientOptions) -> Client {
    match Client::connect_with(cluster.endpoints(), options).await {
        Ok(c) => c,
        Err(e) => panic!("connecting to {:?}: {e}", cluster.endpoints()),
    }
}

/// A key prefix unique within this test process.
pub fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t/{name}/{}/", N.fetch_add(1, Ordering::Relaxed))
}

/// Unwraps a result or panics with the error's Display text (clearer than `{:?}`).
pub fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// A session with the given TTL (panics with the error text on failure).
pub async fn session(client: &Client, ttl: i64) -> Session {
    ok(Session::with_options(client, SessionOptions::new().with_ttl(ttl)).await)
}

/// The keys under `name/` (lock or election keys), as text.
pub async fn keys_under(client: &Client, name: &str) -> Vec<String> {
    let resp = ok(client
        .get_with(
            format!("{name}/"),
            GetOptions::new().with_prefix().with_keys_only(),
        )
        .await);
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// Polls until `name/` holds exactly `want` keys (bounded by `within`).
pub async fn wait_key_count(client: &Client, name: &str, want: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let keys = keys_under(client, name).await;
        if keys.len() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {want} keys under {name}/, found {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `CI` is set to any non-empty value (`true`, `1`, `yes`, ...).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// The fault and skip summary: `target/fault-summary.txt`, or `FAULT_SUMMARY_FILE` when set.
pub fn summary_path() -> PathBuf {
    match std::env::var_os("FAULT_SUMMARY_FILE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fault-summary.txt"),
    }
}

/// Tests skipped by this test binary so far.
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// For a test that needs Docker: `true` when it must be skipped because the daemon does not
/// answer. Then it prints `SKIPPED <test>: no docker` straight to stderr (not captured by
/// libtest, so a plain `cargo test` shows it) and appends the line, with the number skipped
/// so far by this test binary, to [`summary_path`]. With `CI` set to any non-empty
/// value it panics instead: CI must not pass without running these tests.
pub fn skip_without_docker() -> bool {
    if ContainerCluster::docker_available() {
        return false;
    }
    let name = test_name();
    if in_ci() {
        panic!("CI is set but Docker is not available: {name} needs a Docker daemon");
    }
    let count = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
    let line = format!("SKIPPED {name}: no docker");
    let _ = writeln!(std::io::stderr(), "{line}");
    let path = summary_path();
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = writeln!(file, "{line} ({count} skipped so far by this test binary)");
    }
    true
}
