//! The downstream user's test matrix: the crate's job runner against etcd 3.4.23, 3.5.1 and
//! the newest 3.5, with plain `#[tokio::test]` (current-thread) unless a test says otherwise.
//!
//! Where etcd comes from: `ETCD_BIN_3_5_1` (one variable per version), `ETCD_BIN`, `$PATH`, or
//! a cache folder (`$ETCD_LOCK_CACHE`, else `.cache/etcd` up to the workspace root, else
//! `~/.cache/etcd-lock/etcd`) holding `v<version>/etcd`. The container tests need local images
//! `etcd-lock/etcd:<version>`; without a Docker daemon they print `SKIPPED` and pass, unless
//! `CI` is set.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_lock::testkit::{AsyncCluster, AsyncContainerCluster, EtcdBinary, VERSIONS_ENV};
use etcd_lock::Client;
use etcd_lock_downstream::run_exclusive;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(15);

/// One `#[tokio::test]` per version for each scenario: `<scenario>_v3_5_1` and so on.
macro_rules! matrix {
    ($flavor:tt $scenario:ident: $($test:ident => $version:literal),+ $(,)?) => {
        $(
            #[tokio::test $flavor]
            async fn $test() -> TestResult {
                match binary($version)? {
                    Some(bin) => $scenario(bin).await,
                    None => Ok(()),
                }
            }
        )+
    };
}

/// The binary for `version`, or `None` (printed) when `ETCD_LOCK_VERSIONS` leaves it out.
fn binary(version: &str) -> Result<Option<EtcdBinary>, Box<dyn std::error::Error>> {
    if let Ok(only) = std::env::var(VERSIONS_ENV) {
        if !only.split(',').any(|v| v.trim() == version) {
            eprintln!("SKIPPED etcd {version}: not in {VERSIONS_ENV}={only}");
            return Ok(None);
        }
    }
    Ok(Some(EtcdBinary::find(version)?))
}

async fn key(client: &Client, key: &str) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let resp = client.get(key).await?;
    Ok(match resp.first() {
        Some(kv) => Some(kv.value_str()?.to_string()),
        None => None,
    })
}

// --- the job runner through a leader failover (current-thread runtime) ---

matrix!(() job_runs_across_a_leader_kill:
    job_runs_across_a_leader_kill_v3_4_23 => "3.4.23",
    job_runs_across_a_leader_kill_v3_5_1 => "3.5.1",
    job_runs_across_a_leader_kill_v3_5_latest => "3.5-latest",
);

async fn job_runs_across_a_leader_kill(bin: EtcdBinary) -> TestResult {
    let cluster = AsyncCluster::three(&bin).await?;
    let client = Client::connect(cluster.endpoints()).await?;
    let leader = cluster.wait_leader(WAIT).await?;
    // The leader dies while the job runs; the lock key is replicated, so the fenced result
    // write lands once a new leader is elected.
    let mut new_leader = None;
    run_exclusive(&client, "nightly", || async {
        let failover = async {
            cluster.kill(leader).await?;
            cluster.wait_leader(WAIT).await
        };
        match failover.await {
            Ok(i) => {
                new_leader = Some(i);
                "done".to_string()
            }
            Err(e) => e.to_string(),
        }
    })
    .await?;
    assert!(
        new_leader.is_some_and(|i| i != leader),
        "no new leader: {new_leader:?}"
    );
    assert_eq!(
        key(&client, "results/nightly").await?.as_deref(),
        Some("done")
    );
    cluster.restart(leader).await?;
    cluster.wait_healthy(WAIT).await?;
    Ok(())
}

// --- a frozen and a stopped follower (multi-thread runtime: the kit works on both) ---

matrix!((flavor = "multi_thread", worker_threads = 2) jobs_run_with_a_paused_then_stopped_follower:
    jobs_run_with_a_paused_then_stopped_follower_v3_4_23 => "3.4.23",
    jobs_run_with_a_paused_then_stopped_follower_v3_5_1 => "3.5.1",
    jobs_run_with_a_paused_then_stopped_follower_v3_5_latest => "3.5-latest",
);

async fn jobs_run_with_a_paused_then_stopped_follower(bin: EtcdBinary) -> TestResult {
    let cluster = AsyncCluster::three(&bin).await?;
    let leader = cluster.wait_leader(WAIT).await?;
    let follower = (leader + 1) % 3;
    // The client talks to the two members that stay up.
    let endpoints: Vec<String> = cluster
        .endpoints()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != follower)
        .map(|(_, e)| e)
        .collect();
    let client = Client::connect(endpoints).await?;

    cluster.pause(follower).await?; // SIGSTOP: quorum is the other two
    run_exclusive(&client, "paused", || async { "ok".to_string() }).await?;
    cluster.resume(follower).await?;

    cluster.terminate(follower).await?; // SIGTERM, waited for
    assert_eq!(cluster.pid(follower).await?, None);
    run_exclusive(&client, "stopped", || async { "ok".to_string() }).await?;
    assert_eq!(key(&client, "results/paused").await?.as_deref(), Some("ok"));
    assert_eq!(
        key(&client, "results/stopped").await?.as_deref(),
        Some("ok")
    );
    Ok(())
}

// --- containers: a member cut off from its peers ---

/// Held by every container test of this binary, one at a time: the first container start of
/// a process removes dead runs' containers, which must not happen while the leftover test
/// checks that its killed helper's container is still there. (It also spares a small
/// machine three container clusters at once.)
static DOCKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The image for `version`, or `None` (printed) when no Docker daemon answers outside CI.
async fn image(version: &str) -> Result<Option<String>, Box<dyn std::error::Error>> {
    if !AsyncContainerCluster::docker_available().await {
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            return Err("CI is set but no Docker daemon answers".into());
        }
        eprintln!("SKIPPED etcd {version} in containers: no docker");
        return Ok(None);
    }
    Ok(Some(AsyncContainerCluster::image_for(version).await?))
}

matrix!(() isolated_member_serves_stale_reads_only:
    isolated_member_serves_stale_reads_only_v3_4_23 => "3.4.23",
    isolated_member_serves_stale_reads_only_v3_5_1 => "3.5.1",
    isolated_member_serves_stale_reads_only_v3_5_latest => "3.5-latest",
);

async fn isolated_member_serves_stale_reads_only(bin: EtcdBinary) -> TestResult {
    let _one_at_a_time = DOCKER.lock().await;
    let Some(image) = image(bin.version()).await? else {
        return Ok(());
    };
    let cluster = AsyncContainerCluster::start(&image, 3).await?;
    let leader = cluster.wait_leader(WAIT).await?;
    let cut = (leader + 1) % 3;
    let majority = Client::connect([cluster.sync().endpoint(leader)]).await?;
    let minority = Client::connect([cluster.sync().endpoint(cut)]).await?;
    cluster.isolate_peers(cut).await?;
    // The majority still runs jobs.
    run_exclusive(&majority, "while-cut", || async { "ok".to_string() }).await?;
    // The cut-off member answers, but cannot serve a linearizable read.
    let read =
        tokio::time::timeout(Duration::from_secs(3), minority.get("results/while-cut")).await;
    assert!(
        !matches!(read, Ok(Ok(ref r)) if r.first().is_some()),
        "a member cut off from its peers served a linearizable read: {read:?}"
    );
    cluster.heal_peers(cut).await?;
    cluster.wait_healthy(WAIT).await?;
    let caught_up = async {
        loop {
            if let Ok(Some(v)) = key(&minority, "results/while-cut").await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(tokio::time::timeout(WAIT, caught_up).await?, "ok");
    Ok(())
}

// --- nothing outlives a killed test process ---

/// Set in a copy of this test binary that a test starts and SIGKILLs.
const HELPER_ENV: &str = "DOWNSTREAM_HELPER";

/// The body of that copy: starts what `DOWNSTREAM_HELPER` asks for, prints its id, then
/// waits to be killed. Passes at once in a normal run.
#[tokio::test]
async fn helper_process() -> TestResult {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return Ok(());
    };
    match mode.split_once(':') {
        Some(("member", version)) => {
            let cluster = AsyncCluster::single(&EtcdBinary::find(version)?).await?;
            println!(
                "READY {}",
                cluster.pid(0).await?.ok_or("member not running")?
            );
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        Some(("container", image)) => {
            let cluster = AsyncContainerCluster::start(image, 1).await?;
            println!("READY {}", cluster.sync().container_name(0));
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        Some(("start", image)) => {
            let _cluster = AsyncContainerCluster::start(image, 1).await?;
            println!("READY started");
        }
        _ => return Err(format!("unknown {HELPER_ENV}={mode}").into()),
    }
    Ok(())
}

/// Runs this test binary's `helper_process` with `mode`; returns it and the word after
/// `READY` it printed.
fn start_helper(mode: &str) -> Result<(Child, String), Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "helper_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next() {
        // libtest prints `test helper_process ... ` on the same line first.
        let line = line?;
        if let Some((_, word)) = line.split_once("READY ") {
            // Keep reading, so the helper's last words do not hit a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((child, word.trim().to_string()));
        }
    }
    let status = child.wait()?;
    Err(format!("helper `{mode}` ended without READY ({status})").into())
}

/// True while `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

matrix!(() member_dies_with_its_sigkilled_test_process:
    member_dies_with_its_sigkilled_test_process_v3_4_23 => "3.4.23",
    member_dies_with_its_sigkilled_test_process_v3_5_1 => "3.5.1",
    member_dies_with_its_sigkilled_test_process_v3_5_latest => "3.5-latest",
);

async fn member_dies_with_its_sigkilled_test_process(bin: EtcdBinary) -> TestResult {
    let (mut helper, pid) = start_helper(&format!("member:{}", bin.version()))?;
    let pid: u32 = pid.parse()?;
    assert!(
        alive(pid),
        "member {pid} not running while its test process lives"
    );
    helper.kill()?; // SIGKILL: no destructor runs in the helper
    helper.wait()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !alive(pid),
        "etcd {pid} outlived its SIGKILLed test process"
    );
    Ok(())
}

matrix!(() leftover_container_of_a_killed_run_is_removed_by_the_next:
    leftover_container_of_a_killed_run_is_removed_by_the_next_v3_4_23 => "3.4.23",
    leftover_container_of_a_killed_run_is_removed_by_the_next_v3_5_1 => "3.5.1",
    leftover_container_of_a_killed_run_is_removed_by_the_next_v3_5_latest => "3.5-latest",
);

async fn leftover_container_of_a_killed_run_is_removed_by_the_next(bin: EtcdBinary) -> TestResult {
    let _one_at_a_time = DOCKER.lock().await;
    let Some(image) = image(bin.version()).await? else {
        return Ok(());
    };
    let exists = |name: &str| -> Result<bool, Box<dyn std::error::Error>> {
        let out = Command::new("docker")
            .args([
                "ps",
                "--all",
                "--quiet",
                "--filter",
                &format!("name=^/{name}$"),
            ])
            .output()?;
        Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
    };
    let (mut killed, name) = start_helper(&format!("container:{image}"))?;
    killed.kill()?;
    killed.wait()?;
    assert!(
        exists(&name)?,
        "container {name} vanished before any next run"
    );

    // The next run: another test process starts a cluster, and with it removes the leftover.
    let (mut next, _) = start_helper(&format!("start:{image}"))?;
    assert!(next.wait()?.success(), "the next run failed");
    assert!(
        !exists(&name)?,
        "container {name} of the killed run is still there"
    );
    Ok(())
}
