//! `Session::valid_until` and `Session::expiring` against a real member: the instant follows
//! answered keep-alives, stops moving when the member stops answering, and `expiring(margin)`
//! fires `margin` before it; a closed session has none.
#![cfg(feature = "testkit")]

mod common;

use std::time::{Duration, Instant};

use etcd_lock::testkit::EtcdBinary;
use etcd_lock::{Session, SessionOptions};

per_version!(valid_until_follows_keep_alives_and_expiring_fires_before_it);

async fn valid_until_follows_keep_alives_and_expiring_fires_before_it(bin: &EtcdBinary) {
    let cluster = common::single(bin);
    let client = common::connect_quick(&cluster.endpoints()).await;
    let before = Instant::now();
    let session =
        common::ok(Session::with_options(&client, SessionOptions::new().with_ttl(3)).await);
    let first = session
        .valid_until()
        .unwrap_or_else(|| panic!("a new session has a deadline"));
    // Conservative: counted from before the grant was sent, never beyond now + TTL.
    assert!(first <= Instant::now() + Duration::from_secs(3));
    assert!(
        first >= before + Duration::from_secs(2),
        "{:?}",
        first - before
    );
    // A keep-alive goes out every TTL/3: the deadline moves on.
    let moved = async {
        while session.valid_until().is_some_and(|u| u <= first) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    common::ok(tokio::time::timeout(Duration::from_secs(10), moved).await);

    common::ok(cluster.member(0).pause());
    // Let any keep-alive in flight settle, then the deadline must stop moving.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let frozen = session
        .valid_until()
        .unwrap_or_else(|| panic!("not lost yet"));
    let margin = Duration::from_millis(800);
    session.expiring(margin).await;
    let fired = Instant::now();
    assert!(
        fired + margin >= frozen && fired + margin <= frozen + Duration::from_secs(2),
        "fired {:?} before the deadline, margin {margin:?}",
        frozen.saturating_duration_since(fired)
    );
    assert_eq!(
        session.valid_until(),
        Some(frozen),
        "no keep-alive answered while paused"
    );
    common::ok(cluster.member(0).resume());
    let _ = session.close().await;
    assert_eq!(session_after_close(&client).await, None);
}

/// A closed session reports no deadline and `expiring` resolves at once.
async fn session_after_close(client: &etcd_lock::Client) -> Option<Instant> {
    let s = common::ok(Session::new(client).await);
    let clone = s.clone();
    common::ok(s.close().await);
    common::ok(tokio::time::timeout(Duration::from_secs(1), clone.expiring(Duration::ZERO)).await);
    clone.valid_until()
}
