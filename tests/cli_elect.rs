//! `etcd-lock elect` against real etcd and against `etcdctl elect`: campaign prints the leader
//! key and value once elected (etcdctl's output), holds until a signal and resigns; `elect -l`
//! prints every leader as etcdctl's observer does, for both election flavours; `-w json`.
#![cfg(all(feature = "testkit", feature = "cli"))]

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use etcd_lock::testkit::{Cluster, EtcdBinary};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-lock");

mod recipe {
    async fn run(bin: &etcd_lock::testkit::EtcdBinary) {
        super::elect_like_etcdctl(bin, "recipe").await
    }
    crate::per_version!(run);
}

mod service {
    async fn run(bin: &etcd_lock::testkit::EtcdBinary) {
        super::elect_like_etcdctl(bin, "service").await
    }
    crate::per_version!(run);
}

/// A child whose stdout lines arrive on a channel.
struct Lines {
    child: Child,
    rx: Receiver<String>,
}

impl Lines {
    fn spawn(mut cmd: Command) -> Lines {
        let mut child = common::ok(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn(),
        );
        let Some(out) = child.stdout.take() else {
            panic!("no stdout")
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { child, rx }
    }
    /// The next `n` lines, within a generous bound.
    fn take(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| match self.rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => l,
                Err(e) => panic!("line {i} of {n}: {e}"),
            })
            .collect()
    }
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok);
    }
    fn wait(mut self) -> Option<i32> {
        common::ok(self.child.wait()).code()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ours(cluster: &Cluster, via: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "elect",
        "--endpoints",
        &cluster.endpoints().join(","),
        "--via",
        via,
    ])
    .args(args);
    cmd
}

async fn elect_like_etcdctl(bin: &EtcdBinary, via: &str) {
    let cluster = common::single(bin);
    let observer = Lines::spawn(ours(&cluster, via, &["-l", "job"]));
    let mut etcdctl = cluster.etcdctl();
    etcdctl.args(["elect", "-l", "job"]).env("ETCDCTL_API", "3");
    let theirs = Lines::spawn(etcdctl);

    let first = Lines::spawn(ours(&cluster, via, &["job", "p1"]));
    let elected = first.take(2);
    assert!(elected[0].starts_with("job/"), "{elected:?}");
    assert_eq!(elected[1], "p1");
    assert_eq!(
        observer.take(2),
        elected,
        "our observer prints what etcdctl prints"
    );
    assert_eq!(
        theirs.take(2),
        elected,
        "etcdctl's observer sees our leader"
    );

    let second = Lines::spawn(ours(&cluster, via, &["job", "p2"]));
    // The second campaigner waits while the first leads.
    assert!(second.rx.recv_timeout(Duration::from_millis(700)).is_err());
    first.signal("-INT");
    assert_eq!(first.wait(), Some(0), "resigned on SIGINT");
    let next = second.take(2);
    assert!(
        next[0].starts_with("job/") && next[0] != elected[0],
        "{next:?}"
    );
    assert_eq!(next[1], "p2");
    assert_eq!(observer.take(2), next);
    assert_eq!(theirs.take(2), next);

    // -w json: one line per leader.
    let json = Lines::spawn(ours(&cluster, via, &["-l", "-w", "json", "job"]));
    let line = json.take(1).remove(0);
    let v: serde_json::Value = common::ok(serde_json::from_str(&line));
    assert_eq!(
        (v["key"].as_str(), v["value"].as_str()),
        (Some(next[0].as_str()), Some("p2"))
    );
    assert_eq!(v["name"], "job");

    second.signal("-TERM");
    assert_eq!(second.wait(), Some(0));
    observer.signal("-INT");
    assert_eq!(observer.wait(), Some(0));
}
