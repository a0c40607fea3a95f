//! The cluster: list its members (`Cluster/MemberList`), then ask each one for its own status
//! (`Maintenance/Status` sent to that member, not to the current connection): version, raft
//! term and index, database size, and who it thinks the leader is. Changes nothing.
//!
//! ```text
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example cluster
//! ```
//! Member changes (`member_add`, `member_add_as_learner`, `member_promote`, `member_remove`)
//! need a new etcd process to join; see `tests/membership.rs` for that lifecycle.

use etcd_lock::Client;

mod common;
use common::{endpoints, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let client = Client::connect(endpoints()).await?;

    let list = client.member_list().await?;
    let members = list.members();
    println!(
        "cluster {:x}: {} members",
        list.header().cluster_id,
        members.len()
    );

    let mut leaders = Vec::new();
    for member in members {
        let role = if member.is_learner {
            "learner"
        } else {
            "voter"
        };
        println!("member {:x} {:?} ({role})", member.id, member.name);
        println!("  peer URLs   {:?}", member.peer_ur_ls);
        println!("  client URLs {:?}", member.client_ur_ls);
        // A member that has not started yet has no client URL to ask.
        let Some(url) = member.client_ur_ls.first() else {
            println!("  not started yet: no status");
            continue;
        };
        let status = client.status_of(url).await?;
        println!(
            "  etcd {}, raft term {} index {} (applied {}), db {} bytes ({} in use), leader {:x}{}",
            status.version(),
            status.raft_term(),
            status.raft_index(),
            status.raft_applied_index(),
            status.db_size(),
            status.db_size_in_use(),
            status.leader(),
            if status.is_leader() {
                " (this member)"
            } else {
                ""
            },
        );
        if status.member_id() != member.id {
            return Err(format!("{url} answered as member {:x}", status.member_id()).into());
        }
        leaders.push(status.leader());
    }

    // Every member that answered should name the same leader.
    leaders.dedup();
    match leaders.as_slice() {
        [leader] => println!("all members agree: leader is {leader:x}"),
        other => return Err(format!("members disagree about the leader: {other:x?}").into()),
    }
    Ok(())
}
