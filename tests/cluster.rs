#![cfg(feature = "testkit")]
mod common;
use etcd_lock::{Client, ClientOptions};
use std::time::{Duration, Instant};

#[tokio::test]
async fn probe() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = Instant::now();
    let opts = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Some(Duration::from_secs(2)));
    let c = Client::connect_with([format!("127.0.0.1:{port}")], opts.clone()).await;
    eprintln!(
        "silent: {:?} after {:?}",
        c.as_ref().map(|_| ()),
        t.elapsed()
    );
    if let Ok(c) = c {
        let t = Instant::now();
        eprintln!("get: {:?} {:?}", c.get("x").await.map(|_| ()), t.elapsed());
    }
    let t = Instant::now();
    let c = Client::connect_with(["192.0.2.1:2379"], opts.clone()).await;
    eprintln!(
        "blackhole: {:?} after {:?}",
        c.as_ref().map(|_| ()),
        t.elapsed()
    );
    drop(l);
    let t = Instant::now();
    let c = Client::connect_with([format!("127.0.0.1:{port}")], opts).await;
    eprintln!(
        "refused: {:?} after {:?}",
        c.as_ref().map(|_| ()),
        t.elapsed()
    );
}
