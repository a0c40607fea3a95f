//! Maintenance against real servers, once per etcd version. On one 3-member cluster: Status,
//! Hash and HashKV sent to each member (hash_kv equal everywhere at one revision), defragment
//! on each member (the file shrinks after a compaction), move_leader moves the leader, and a
//! snapshot (checked sha256, progress, temp file renamed) restores with the version's own
//! tool into a member serving the same keys; a member stopped mid-snapshot gives a typed
//! error and leaves no file. On one small-quota member: NOSPACE, alarm_list, alarm_disarm
//! after compact + defragment, and downgrade (validate on 3.5, Unsupported on 3.4).
#![cfg(feature = "testkit")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ok, unique};
use etcd_lock::error::SnapshotFailure;
use etcd_lock::kv::GetOptions;
use etcd_lock::maintenance::{AlarmType, DowngradeAction, SnapshotOptions, SnapshotProgress};
use etcd_lock::testkit::{Cluster, EtcdBinary};
use etcd_lock::{Client, ClientOptions, Error, EtcdErrorKind};

per_version!(
    one_cluster_status_hash_defrag_move_leader_snapshot,
    small_quota_raises_nospace_until_compact_defrag_disarm,
);

/// `hash_kv(endpoint, revision)`, repeated while the member has not applied `revision` yet.
async fn hash_kv_at(client: &Client, endpoint: &str, revision: i64) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.hash_kv(endpoint, revision).await {
            Ok(resp) => return resp.hash(),
            Err(e)
                if e.etcd_kind() == Some(EtcdErrorKind::FutureRevision)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("hash_kv({endpoint}, {revision}): {e}"),
        }
    }
}

/// Files in `dir`, by name.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = ok(std::fs::read_dir(dir))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn one_cluster_status_hash_defrag_move_leader_snapshot(bin: &EtcdBinary) {
    let started = Instant::now();
    let cluster = common::three(bin);
    let client = common::client(&cluster).await;
    let endpoints = cluster.endpoints();

    // Status from each member, addressed by URL or by bare host:port.
    let ids: Vec<u64> = ok(client.member_list().await)
        .members()
        .iter()
        .map(|m| m.id)
        .collect();
    let mut seen = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let status = ok(client.status_of(endpoint).await);
        let bare = format!("127.0.0.1:{}", cluster.member(i).client_port());
        assert_eq!(
            ok(client.status_of(&bare).await).member_id(),
            status.member_id()
        );
        assert!(ids.contains(&status.member_id()));
        assert_eq!(status.version(), bin.version().trim_start_matches('v'));
        assert!(!status.is_learner());
        seen.push(status.member_id());
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 3, "each endpoint answered for itself");
    let bad = client.status_of("").await.err();
    assert!(
        matches!(
            bad,
            Some(Error::InvalidArgument {
                argument: "endpoint",
                ..
            })
        ),
        "{bad:?}"
    );

    // HashKV: equal on every member at one revision; a later write changes the current hash
    // but not the hash at that revision.
    let prefix = unique("maint");
    for i in 0..50 {
        ok(client
            .put(format!("{prefix}k{i:02}"), format!("v{i}"))
            .await);
    }
    let rev = ok(client.put(format!("{prefix}last"), "x").await).revision();
    let mut hashes = Vec::new();
    for endpoint in &endpoints {
        hashes.push(hash_kv_at(&client, endpoint, rev).await);
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    let later = ok(client.put(format!("{prefix}later"), "y").await).revision();
    assert_ne!(hash_kv_at(&client, &endpoints[0], later).await, hashes[0]);
    assert_eq!(hash_kv_at(&client, &endpoints[1], rev).await, hashes[0]);
    let current = ok(client.hash_kv(&endpoints[2], 0).await);
    assert!(current.revision() >= later);
    assert_eq!(
        ok(client.hash(&endpoints[0]).await).header().member_id,
        ok(client.status_of(&endpoints[0]).await).member_id()
    );
    assert!(matches!(
        client.hash_kv(&endpoints[0], -1).await,
        Err(Error::InvalidArgument {
            argument: "revision",
            ..
        })
    ));

    // Defragment each member: after deleting 4 MB and compacting, every file shrinks.
    let big = vec![b'z'; 256 * 1024];
    for i in 0..16 {
        ok(client.put(format!("{prefix}big{i}"), big.clone()).await);
    }
    let del = ok(client
        .delete_with(
            format!("{prefix}big"),
            etcd_lock::kv::DeleteOptions::new().with_prefix(),
        )
        .await);
    ok(client.compact(del.revision(), true).await);
    for endpoint in &endpoints {
        let before = ok(client.status_of(endpoint).await).db_size();
        ok(client.defragment(endpoint).await);
        let after = ok(client.status_of(endpoint).await).db_size();
        assert!(after < before, "{endpoint}: {before} -> {after}");
    }

    // MoveLeader: sent to the leader whichever member the client talks to.
    // The call comes from a client that knows only a follower, which etcd would refuse.
    let leader = ok(client.status().await).leader();
    let target = *ids.iter().find(|&&id| id != leader).expect("a follower");
    let mut follower = None;
    for endpoint in &endpoints {
        let status = ok(client.status_of(endpoint).await);
        if status.member_id() != leader {
            follower = Some(endpoint.clone());
        }
    }
    let follower = common::connect_quick(&[follower.expect("a follower endpoint")]).await;
    assert!(!ok(follower.status().await).is_leader());
    ok(follower.move_leader(target).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    'moved: loop {
        let mut all = true;
        for endpoint in &endpoints {
            all &= matches!(client.status_of(endpoint).await, Ok(s) if s.leader() == target);
        }
        if all {
            break 'moved;
        }
        assert!(
            Instant::now() < deadline,
            "leader did not move to {target:x}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        client.move_leader(0).await,
        Err(Error::InvalidArgument { .. })
    ));
    let unknown = client.move_leader(0x0bad_cafe).await.err();
    assert_eq!(
        unknown.as_ref().and_then(Error::etcd_kind),
        Some(EtcdErrorKind::BadLeaderTransferee),
        "{unknown:?}"
    );

    // Snapshot to a file: progress up to the announced total, sha256 checked, no temp file.
    let dir = cluster.dir().join("snapshots");
    ok(std::fs::create_dir_all(&dir));
    let path = dir.join("snap.db");
    let progress: Arc<Mutex<Vec<SnapshotProgress>>> = Arc::default();
    let sink = Arc::clone(&progress);
    let options = SnapshotOptions::new()
        .with_endpoint(endpoints[1].clone())
        .with_progress(move |p| sink.lock().expect("progress").push(p));
    let info = ok(client.snapshot_to_file_with(&path, options).await);
    assert_eq!(files_in(&dir), ["snap.db"]);
    let bytes = ok(std::fs::read(&path));
    assert_eq!(bytes.len() as u64, info.bytes);
    assert_eq!(bytes[bytes.len() - 32..], info.sha256);
    let seen = progress.lock().expect("progress").clone();
    let last = seen.last().copied().expect("progress was reported");
    assert_eq!(last.bytes, info.bytes);
    assert_eq!(last.total, Some(info.bytes));
    assert!(seen.windows(2).all(|w| w[0].bytes < w[1].bytes));
    // Into any AsyncWrite, from the current member.
    let mut buf = Vec::new();
    let again = ok(client.snapshot(&mut buf).await);
    assert_eq!(buf.len() as u64, again.bytes);

    // The version's own tool restores the file into a member that serves the same keys.
    let restored = match Cluster::builder(bin).from_snapshot(&path).start() {
        Ok(c) => c,
        Err(e) => panic!("restoring {}: {e}", path.display()),
    };
    let fresh = common::client(&restored).await;
    let want = ok(client
        .get_with(prefix.clone(), GetOptions::new().with_prefix())
        .await);
    let got = ok(fresh
        .get_with(prefix.clone(), GetOptions::new().with_prefix())
        .await);
    assert_eq!(got.kvs().len(), 52);
    let pairs = |r: &etcd_lock::kv::GetResponse| {
        r.kvs()
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(pairs(&got), pairs(&want));
    drop(restored);

    // A member stopped mid-stream: a typed error once the keep-alive gives up, and no file.
    // 24 MB of data so the stream cannot fit in the socket and HTTP/2 windows at once.
    let mb = vec![b'q'; 1024 * 1024];
    for i in 0..24 {
        ok(client.put(format!("{prefix}mb{i}"), mb.clone()).await);
    }
    let quick = ok(Client::connect_with(
        [endpoints[2].clone()],
        ClientOptions::new().with_keep_alive(Duration::from_millis(500), Duration::from_secs(1)),
    )
    .await);
    let pid = cluster.member(2).pid().expect("m2 runs");
    let stopped = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (flag, count) = (Arc::clone(&stopped), Arc::clone(&received));
    let options = SnapshotOptions::new().with_progress(move |p| {
        count.store(p.bytes, Ordering::SeqCst);
        if !flag.swap(true, Ordering::SeqCst) {
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status();
        }
    });
    let lost = dir.join("lost.db");
    let result = quick.snapshot_to_file_with(&lost, options).await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
    match result {
        Err(Error::Snapshot {
            failure: SnapshotFailure::Interrupted,
            received: at,
            cause,
        }) => {
            assert!(cause.is_some());
            assert!(at > 0 && at < 24 * 1024 * 1024, "{at}");
        }
        other => panic!("expected an interrupted snapshot, got {other:?}"),
    }
    assert!(stopped.load(Ordering::SeqCst));
    assert_eq!(files_in(&dir), ["snap.db"], "no partial file left behind");
    eprintln!(
        "maintenance (3 members) on etcd {}: {:?}",
        bin.version(),
        started.elapsed()
    );
}

async fn small_quota_raises_nospace_until_compact_defrag_disarm(bin: &EtcdBinary) {
    let started = Instant::now();
    let cluster = match Cluster::builder(bin)
        .quota_backend_bytes(2 * 1024 * 1024)
        .start()
    {
        Ok(c) => c,
        Err(e) => panic!("starting etcd {}: {e}", bin.version()),
    };
    let client = common::client(&cluster).await;
    let endpoint = cluster.endpoints()[0].clone();
    let me = ok(client.status().await).member_id();
    assert!(ok(client.alarm_list().await).alarms().is_empty());

    // Rewrite one key until the quota is hit: a typed NoSpace error.
    let value = vec![b'n'; 128 * 1024];
    let mut puts = 0;
    let nospace = loop {
        match client.put("fill", value.clone()).await {
            Ok(_) => puts += 1,
            Err(e) => break e,
        }
        assert!(puts < 200, "no NOSPACE after {puts} puts of 128 KiB");
    };
    assert_eq!(
        nospace.etcd_kind(),
        Some(EtcdErrorKind::NoSpace),
        "{nospace}"
    );
    let alarms = ok(client.alarm_list().await);
    assert!(alarms.has(AlarmType::Nospace), "{alarms:?}");
    assert_eq!(alarms.alarms()[0].member_id, me);
    assert!(ok(client.status_of(&endpoint).await)
        .errors()
        .iter()
        .any(|e| e.contains("NOSPACE")));
    assert!(matches!(
        client.alarm_disarm(0, AlarmType::Nospace).await,
        Err(Error::InvalidArgument { .. })
    ));

    // Free the space, then disarm: writes work again.
    let rev = ok(client.get("fill").await).revision();
    ok(client.compact(rev, true).await);
    ok(client.defragment(&endpoint).await);
    let cleared = ok(client.alarm_disarm(me, AlarmType::Nospace).await);
    assert!(cleared.has(AlarmType::Nospace), "{cleared:?}");
    assert!(ok(client.alarm_list().await).alarms().is_empty());
    ok(client.put("after", "works").await);
    // Nothing left to clear.
    assert!(ok(client.alarm_disarm(me, AlarmType::Nospace).await)
        .alarms()
        .is_empty());
    assert!(ok(client.alarm_disarm_all().await).is_empty());

    // Again, cleared with alarm_disarm_all this time.
    let mut more = 0;
    let again = loop {
        match client.put("fill", value.clone()).await {
            Ok(_) => more += 1,
            Err(e) => break e,
        }
        assert!(more < 200, "no second NOSPACE after {more} puts");
    };
    assert_eq!(again.etcd_kind(), Some(EtcdErrorKind::NoSpace), "{again}");
    let rev = ok(client.get("fill").await).revision();
    ok(client.compact(rev, true).await);
    ok(client.defragment(&endpoint).await);
    let cleared = ok(client.alarm_disarm_all().await);
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(
        (cleared[0].member_id, cleared[0].alarm()),
        (me, AlarmType::Nospace)
    );
    ok(client.put("after", "works again").await);

    // Downgrade: 3.5 validates one minor version down; 3.4 does not have the RPC.
    let validate = client.downgrade(DowngradeAction::Validate, "3.4").await;
    if bin.version().starts_with("3.4") {
        assert!(
            matches!(validate, Err(Error::Unsupported { method, .. }) if method.ends_with("/Downgrade")),
            "{validate:?}"
        );
    } else {
        let resp = ok(validate);
        assert!(resp.version().starts_with("3.5"), "{}", resp.version());
        let kind = |r: Result<_, Error>| r.err().and_then(|e| e.etcd_kind());
        assert_eq!(
            kind(client.downgrade(DowngradeAction::Validate, "3.3").await),
            Some(EtcdErrorKind::InvalidDowngradeTarget)
        );
        assert_eq!(
            kind(client.downgrade(DowngradeAction::Validate, "three").await),
            Some(EtcdErrorKind::WrongDowngradeVersionFormat)
        );
        assert_eq!(
            kind(client.downgrade(DowngradeAction::Cancel, "").await),
            Some(EtcdErrorKind::NoInflightDowngrade)
        );
    }
    assert!(matches!(
        client.downgrade(DowngradeAction::Enable, " ").await,
        Err(Error::InvalidArgument {
            argument: "version",
            ..
        })
    ));
    eprintln!(
        "maintenance (quota) on etcd {} after {puts} puts: {:?}",
        bin.version(),
        started.elapsed()
    );
}
