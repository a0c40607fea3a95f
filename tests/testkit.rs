//! Integration tests of the testkit against the installed etcd binaries.
#![cfg(feature = "testkit")]

use std::path::Path;
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_lock::testkit::{Cluster, EtcdBinary, TestkitError};

const WAIT: Duration = Duration::from_secs(15);

/// The versions under test (all installed ones, or `ETCD_LOCK_VERSIONS`).
fn bins() -> Vec<EtcdBinary> {
    match EtcdBinary::matrix() {
        Ok(bins) => bins,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `f` for every version under test, concurrently (a panic fails the test).
fn per_version(f: impl Fn(&EtcdBinary) + Sync) {
    let bins = bins();
    std::thread::scope(|s| {
        for bin in &bins {
            let f = &f;
            s.spawn(move || f(bin));
        }
    });
}

fn ok<T>(r: Result<T, TestkitError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn etcdctl(cluster: &Cluster, args: &[&str]) -> Output {
    cluster
        .etcdctl()
        .args(["--dial-timeout=2s", "--command-timeout=2s"])
        .args(args)
        .output()
        .expect("run etcdctl")
}

fn etcdctl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = etcdctl(cluster, args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn proc_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn proc_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    after.split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn missing_version_says_how_to_provide_etcd() {
    let err = EtcdBinary::find("9.9.9").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TestkitError::NotInstalled { .. }), "{err:?}");
    // Written for a downstream user: no script of this repository, but where to get etcd
    // and every way to hand it over.
    assert!(!msg.contains("scripts/"), "{msg}");
    assert!(msg.contains("github.com/etcd-io/etcd/releases"), "{msg}");
    assert!(
        msg.contains("$PATH") && msg.contains("ETCD_LOCK_CACHE"),
        "{msg}"
    );
    assert!(
        msg.contains("9.9.9") && msg.contains("ETCD_BIN_9_9_9"),
        "{msg}"
    );
}

#[test]
fn installed_versions_sorted_newest_first() {
    let bins = EtcdBinary::installed();
    assert!(
        !bins.is_empty(),
        "no etcd installed; run scripts/install-etcd"
    );
    for b in &bins {
        assert!(b.etcd_path().is_file(), "{b:?}");
        let again = ok(EtcdBinary::find(&format!("v{}", b.version())));
        assert_eq!(&again, b);
    }
    let key = |b: &EtcdBinary| -> Vec<u64> {
        b.version()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    assert!(bins.windows(2).all(|w| key(&w[0]) > key(&w[1])), "{bins:?}");
}

#[test]
fn single_member_per_version() {
    per_version(|bin| {
        let t = Instant::now();
        let cluster = ok(Cluster::single(bin));
        eprintln!(
            "etcd {}: single member healthy in {:?}",
            bin.version(),
            t.elapsed()
        );
        let m = cluster.member(0);
        assert_eq!(m.name(), "m0");
        assert_eq!(
            cluster.endpoints(),
            [format!("http://127.0.0.1:{}", m.client_port())]
        );
        assert!(m.is_healthy());
        assert_eq!(cluster.leader(), Some(0));
        assert!(m.pid().is_some_and(proc_alive));
        assert!(m.log().contains(bin.version()), "log lacks version");
        etcdctl_ok(&cluster, &["put", "k", "v"]);
        assert_eq!(
            etcdctl_ok(&cluster, &["get", "k", "--print-value-only"]).trim(),
            "v"
        );
        assert!(cluster.member(0).data_dir().starts_with(cluster.dir()));
    });
}

#[test]
fn three_members_leader_failover_and_restart() {
    per_version(|bin| {
        let t = Instant::now();
        let mut cluster = ok(Cluster::three(bin));
        eprintln!(
            "etcd {}: 3 members healthy in {:?}",
            bin.version(),
            t.elapsed()
        );
        let ports: Vec<u16> = cluster.members().iter().map(|m| m.client_port()).collect();
        let old = ok(cluster.wait_leader(WAIT));
        etcdctl_ok(&cluster, &["put", "before", "1"]);

        let t = Instant::now();
        ok(cluster.member_mut(old).kill());
        assert!(!cluster.member_mut(old).is_running());
        assert_eq!(cluster.member(old).pid(), None);
        let new = ok(cluster.wait_leader(WAIT));
        eprintln!("etcd {}: new leader after {:?}", bin.version(), t.elapsed());
        assert_ne!(new, old);
        ok(cluster.wait_healthy(WAIT)); // the two live members
        etcdctl_ok(&cluster, &["put", "during", "2"]);

        let t = Instant::now();
        ok(cluster.member_mut(old).restart());
        eprintln!(
            "etcd {}: restart healthy in {:?}",
            bin.version(),
            t.elapsed()
        );
        let m = cluster.member(old);
        assert_eq!(m.client_port(), ports[old]);
        assert!(m.is_healthy());
        assert!(m.log().contains("testkit: restarting"));
        ok(cluster.wait_healthy(WAIT));
        // The restarted member caught up with the write made while it was down.
        let out = cluster
            .etcdctl()
            .arg(format!("--endpoints={}", m.endpoint()))
            .args(["get", "during", "--print-value-only", "--consistency=s"])
            .output()
            .expect("etcdctl");
        let deadline = Instant::now() + WAIT;
        let mut value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        while value != "2" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let out = cluster
                .etcdctl()
                .arg(format!("--endpoints={}", m.endpoint()))
                .args(["get", "during", "--print-value-only", "--consistency=s"])
                .output()
                .expect("etcdctl");
            value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        assert_eq!(value, "2");
    });
}

#[test]
fn pause_and_resume() {
    let bin = &bins()[0];
    let cluster = ok(Cluster::three(bin));
    let follower = (ok(cluster.wait_leader(WAIT)) + 1) % 3;
    let m = cluster.member(follower);
    let pid = m.pid().expect("running");

    ok(m.pause());
    assert!(m.is_paused());
    assert_eq!(proc_state(pid), "T");
    assert!(!m.is_healthy());
    // The member really does not answer: a request with a short timeout fails.
    let out = cluster
        .etcdctl()
        .arg(format!("--endpoints={}", m.endpoint()))
        .args(["--command-timeout=300ms", "endpoint", "health"])
        .output()
        .expect("etcdctl");
    assert!(!out.status.success());
    // The other two keep quorum; wait_healthy skips the paused member.
    ok(cluster.wait_healthy(WAIT));
    etcdctl_ok(&cluster, &["put", "k", "v"]);

    ok(m.resume());
    assert!(!m.is_paused());
    assert_ne!(proc_state(pid), "T");
    ok(m.wait_healthy(WAIT));
    ok(cluster.wait_healthy(WAIT));
}

#[test]
fn parallel_clusters_get_distinct_ports() {
    let bin = bins()[0].clone();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let bin = bin.clone();
            std::thread::spawn(move || {
                let cluster = ok(Cluster::builder(&bin).members(2).start());
                let ports: Vec<u16> = cluster
                    .members()
                    .iter()
                    .flat_map(|m| [m.client_port(), m.peer_port()])
                    .collect();
                assert!(cluster.members().iter().all(|m| m.is_healthy()));
                (ports, cluster.dir().to_path_buf(), cluster)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let mut ports: Vec<u16> = results.iter().flat_map(|r| r.0.clone()).collect();
    let n = ports.len();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), n, "ports reused across clusters");
    assert_ne!(results[0].1, results[1].1);
    // Every cluster talks to its own members only.
    for (_, _, cluster) in &results {
        let out = etcdctl_ok(cluster, &["member", "list"]);
        assert_eq!(out.lines().count(), 2, "{out}");
    }
}

#[test]
fn drop_kills_everything_and_removes_data() {
    let bin = &bins()[0];
    let cluster = ok(Cluster::builder(bin).members(3).data_in_shm(true).start());
    let pids: Vec<u32> = cluster.members().iter().filter_map(|m| m.pid()).collect();
    let dir = cluster.dir().to_path_buf();
    assert_eq!(pids.len(), 3);
    assert!(dir.is_dir());
    if Path::new("/dev/shm").is_dir() {
        assert!(dir.starts_with("/dev/shm"), "{dir:?}");
    }
    ok(cluster.member(1).pause()); // dropping must also handle a stopped process
    drop(cluster);
    for pid in pids {
        assert!(!proc_alive(pid), "etcd pid {pid} survived drop");
    }
    assert!(!dir.exists(), "{dir:?} survived drop");
}

#[test]
fn panicking_test_leaves_nothing_behind() {
    let bin = bins()[0].clone();
    let seen: Mutex<Option<(Vec<u32>, std::path::PathBuf)>> = Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster = ok(Cluster::single(&bin));
        let pids = cluster.members().iter().filter_map(|m| m.pid()).collect();
        *seen.lock().unwrap() = Some((pids, cluster.dir().to_path_buf()));
        panic!("test failure while the cluster runs");
    }));
    assert!(result.is_err());
    let (pids, dir) = seen.lock().unwrap().take().expect("cluster started");
    for pid in pids {
        assert!(!proc_alive(pid), "etcd pid {pid} survived panic");
    }
    assert!(!dir.exists());
}

#[test]
fn bad_flag_fails_fast_with_log_tail() {
    let bin = &bins()[0];
    let t = Instant::now();
    let err = Cluster::builder(bin)
        .arg("--no-such-flag=1")
        .start()
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let msg = err.to_string();
    assert!(matches!(err, TestkitError::StartFailed { .. }), "{err:?}");
    assert!(msg.contains("no-such-flag"), "{msg}");

    let err = Cluster::builder(bin).members(0).start().unwrap_err();
    assert!(matches!(err, TestkitError::InvalidConfig(_)), "{err:?}");
}

#[test]
fn extra_args_and_single_member_restart_keeps_data() {
    let bin = &bins()[0];
    let mut cluster = ok(Cluster::builder(bin).arg("--auth-token-ttl=2").start());
    let pid = cluster.member(0).pid().expect("running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(cmdline
        .split(|&b| b == 0)
        .any(|a| a == b"--auth-token-ttl=2"));
    etcdctl_ok(&cluster, &["put", "persist", "yes"]);
    let pid = cluster.member(0).pid();
    ok(cluster.member_mut(0).restart());
    assert_ne!(cluster.member(0).pid(), pid);
    assert!(cluster.member_mut(0).is_running());
    let v = etcdctl_ok(&cluster, &["get", "persist", "--print-value-only"]);
    assert_eq!(v.trim(), "yes");

    // A port taken while the member is down makes restart fail with the log.
    ok(cluster.member_mut(0).kill());
    let port = cluster.member(0).client_port();
    let intruder = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let err = cluster.member_mut(0).restart().unwrap_err();
    assert!(matches!(err, TestkitError::StartFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("address already in use"), "{err}");
    drop(intruder);
    ok(cluster.member_mut(0).restart());
    assert!(cluster.member(0).is_healthy());
    ok(cluster.member_mut(0).kill());
    let err = cluster.member(0).pause().unwrap_err();
    assert!(matches!(err, TestkitError::NotRunning { .. }), "{err:?}");
    assert!(!cluster.member(0).is_healthy());
}

/// The body of a plain `#[tokio::test]` (a current-thread runtime) is refused: blocking there
/// would stall the client's connection tasks. `spawn_blocking` and multi-thread runtimes pass.
#[test]
fn waiting_calls_refuse_the_body_of_a_current_thread_runtime() {
    let bin = &bins()[0];
    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = ok(Cluster::single(bin)); // plain thread: allowed
    current_thread.block_on(async {
        match Cluster::single(bin) {
            Err(TestkitError::CurrentThreadRuntime { call }) => {
                assert_eq!(call, "ClusterBuilder::start")
            }
            other => panic!("expected CurrentThreadRuntime, got {:?}", other.map(|_| ())),
        }
        let err = cluster.wait_leader(WAIT).unwrap_err();
        assert!(
            matches!(
                err,
                TestkitError::CurrentThreadRuntime {
                    call: "Cluster::wait_leader"
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("flavor = \"multi_thread\""),
            "{err}"
        );
        // The same calls inside spawn_blocking run on another thread and are fine.
        let bin2 = bin.clone();
        let started = tokio::task::spawn_blocking(move || {
            Cluster::single(&bin2).and_then(|c| c.wait_leader(WAIT).map(|_| c))
        })
        .await
        .expect("join");
        assert!(started.is_ok(), "{:?}", started.err());
    });
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    multi_thread.block_on(async {
        assert_eq!(ok(cluster.wait_leader(WAIT)), 0);
    });
}

/// `3.5-latest` (Debian sid's etcd 3.5, `scripts/install-etcd 3.5-latest`) resolves to the
/// exact version, as a binary and as the image `scripts/build-images 3.5-latest` builds, and
/// that image (dynamically linked: libc and the loader copied in) runs a 3-member cluster
/// whose members all report that version.
#[tokio::test(flavor = "multi_thread")]
async fn latest_35_alias_resolves_and_its_image_runs_three_members() {
    use etcd_lock::testkit::ContainerCluster;
    use etcd_lock::Client;

    let bin = ok(EtcdBinary::find("3.5-latest"));
    let version = bin.version().to_string();
    assert!(
        version.starts_with("3.5.") && version != "3.5-latest",
        "3.5-latest resolved to {version}"
    );
    assert!(
        bin.etcd_path().ends_with(format!("v{version}/etcd")),
        "{bin:?}"
    );
    if !ContainerCluster::docker_available() {
        assert!(
            std::env::var("CI").is_err(),
            "CI is set but Docker is not available"
        );
        eprintln!("note: Docker is not available; the 3.5-latest image was not started");
        return;
    }
    let image = ok(ContainerCluster::image_for("3.5-latest"));
    assert_eq!(image, format!("etcd-lock/etcd:{version}"));
    let cluster = ok(
        tokio::task::spawn_blocking(move || ContainerCluster::start(&image, 3))
            .await
            .expect("join"),
    );
    for endpoint in cluster.endpoints() {
        let client = Client::connect([endpoint.clone()]).await.expect("connect");
        let status = client.status().await.expect("status");
        assert_eq!(status.version(), version, "{endpoint}");
        let members = client.member_list().await.expect("member list");
        assert_eq!(members.members().len(), 3, "{endpoint}");
    }
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("join");
}
