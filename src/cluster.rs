//! Cluster membership: `Cluster/MemberAdd`, `MemberRemove`, `MemberUpdate`, `MemberPromote`
//! (`MemberList` is [`Client::member_list`]).
//!
//! Growing a cluster takes two steps, as with `etcdctl member add`: announce the new member's
//! peer URLs ([`Client::member_add_as_learner`] is the safe way: a learner does not vote, so
//! it cannot cost the cluster its quorum while it catches up), then start etcd on the new
//! machine with `--initial-cluster-state existing` and the `--initial-cluster` that
//! [`MemberAddResponse::initial_cluster`] gives. Once the learner has caught up,
//! [`Client::member_promote`] makes it a voter; before that etcd refuses with
//! [`EtcdErrorKind::LearnerNotReady`](crate::EtcdErrorKind::LearnerNotReady).
//!
//! ```no_run
//! # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
//! let added = client.member_add_as_learner(["http://10.0.0.4:2380"]).await?;
//! println!("ETCD_INITIAL_CLUSTER={}", added.initial_cluster("m4"));
//! // ... start etcd m4 with --initial-cluster-state existing, wait until it caught up ...
//! client.member_promote(added.member_id()).await?;
//! # Ok(()) }
//! ```

use crate::client::{Client, Retry};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb as pb;
use crate::support::response_wrapper;

pub(crate) const MEMBER_ADD: &str = "/etcdserverpb.Cluster/MemberAdd";
pub(crate) const MEMBER_REMOVE: &str = "/etcdserverpb.Cluster/MemberRemove";
pub(crate) const MEMBER_UPDATE: &str = "/etcdserverpb.Cluster/MemberUpdate";
pub(crate) const MEMBER_PROMOTE: &str = "/etcdserverpb.Cluster/MemberPromote";

response_wrapper!(
    /// Answer to `Cluster/MemberAdd`: the new member and the membership after the change.
    MemberAddResponse,
    pb::MemberAddResponse
);
response_wrapper!(
    /// Answer to `Cluster/MemberRemove`, `MemberUpdate` or `MemberPromote`: the membership
    /// after the change.
    MembershipResponse,
    pb::MemberListResponse
);

impl MemberAddResponse {
    /// The new member's ID (its name and client URLs stay empty until it starts).
    pub fn member_id(&self) -> u64 {
        self.0.member.as_ref().map_or(0, |m| m.id)
    }
    /// The new member as etcd recorded it.
    pub fn member(&self) -> Option<&pb::Member> {
        self.0.member.as_ref()
    }
    /// Every member after the change, the new one included.
    pub fn members(&self) -> &[pb::Member] {
        &self.0.members
    }
    /// The `--initial-cluster` value for starting the new member as `name`
    /// (`name=peerURL,...` for every member and peer URL), as `etcdctl member add` prints it.
    pub fn initial_cluster(&self, name: &str) -> String {
        let new_id = self.member_id();
        let mut parts = Vec::new();
        for m in &self.0.members {
            let member_name = if m.id == new_id { name } else { &m.name };
            for url in &m.peer_ur_ls {
                parts.push(format!("{member_name}={url}"));
            }
        }
        parts.join(",")
    }
}

impl MembershipResponse {
    /// Every member after the change.
    pub fn members(&self) -> &[pb::Member] {
        &self.0.members
    }
}

/// Refuses an empty URL list or an empty URL before anything is sent.
fn check_peer_urls<I, S>(urls: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
    if urls.is_empty() {
        return Err(Error::invalid(
            "peer_urls",
            "at least one peer URL (http://host:port) is required",
        ));
    }
    if let Some(bad) = urls
        .iter()
        .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(Error::invalid(
            "peer_urls",
            format!("{bad:?} is not a peer URL: expected http://host:port or https://host:port"),
        ));
    }
    Ok(urls)
}

fn check_id(id: u64) -> Result<()> {
    if id == 0 {
        return Err(Error::invalid("id", "0 is not a member ID"));
    }
    Ok(())
}

impl Client {
    /// Adds a voting member with these peer URLs: `Cluster/MemberAdd`. The cluster's quorum
    /// grows at once, so start the new member right away (or use
    /// [`Client::member_add_as_learner`]).
    ///
    /// etcd refuses membership changes with
    /// [`EtcdErrorKind::Unhealthy`](crate::EtcdErrorKind::Unhealthy) until the member serving
    /// the call has been connected to a quorum for 5 s (just after a cluster starts, or after
    /// a partition), and with `PeerUrlExists`, `MemberBadUrls` or `MemberNotEnoughStarted`
    /// when the URLs or the cluster do not allow it. Empty or scheme-less URLs are refused
    /// before anything is sent.
    pub async fn member_add<I, S>(&self, peer_urls: I) -> Result<MemberAddResponse>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add_member(peer_urls, false).await
    }

    /// Adds a non-voting learner with these peer URLs: `Cluster/MemberAdd` with `isLearner`
    /// (etcd 3.4+). Promote it with [`Client::member_promote`] once it caught up.
    pub async fn member_add_as_learner<I, S>(&self, peer_urls: I) -> Result<MemberAddResponse>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add_member(peer_urls, true).await
    }

    async fn add_member<I, S>(&self, peer_urls: I, is_learner: bool) -> Result<MemberAddResponse>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let req = pb::MemberAddRequest {
            peer_ur_ls: check_peer_urls(peer_urls)?,
            is_learner,
        };
        self.unary(MEMBER_ADD, Retry::NotSent, req)
            .await
            .map(MemberAddResponse)
    }

    /// Removes member `id` from the cluster: `Cluster/MemberRemove`. The removed member's
    /// process stops by itself. An unknown ID is
    /// [`EtcdErrorKind::MemberNotFound`](crate::EtcdErrorKind::MemberNotFound).
    pub async fn member_remove(&self, id: u64) -> Result<MembershipResponse> {
        check_id(id)?;
        let req = pb::MemberRemoveRequest { id };
        self.unary(MEMBER_REMOVE, Retry::NotSent, req)
            .await
            .map(|r| {
                MembershipResponse(pb::MemberListResponse {
                    header: r.header,
                    members: r.members,
                })
            })
    }

    /// Replaces member `id`'s peer URLs: `Cluster/MemberUpdate`.
    pub async fn member_update<I, S>(&self, id: u64, peer_urls: I) -> Result<MembershipResponse>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        check_id(id)?;
        let req = pb::MemberUpdateRequest {
            id,
            peer_ur_ls: check_peer_urls(peer_urls)?,
        };
        self.unary(MEMBER_UPDATE, Retry::NotSent, req)
            .await
            .map(|r| {
                MembershipResponse(pb::MemberListResponse {
                    header: r.header,
                    members: r.members,
                })
            })
    }

    /// Makes learner `id` a voting member: `Cluster/MemberPromote` (etcd 3.4+). A learner
    /// that has not caught up with the leader yet is refused with
    /// [`EtcdErrorKind::LearnerNotReady`](crate::EtcdErrorKind::LearnerNotReady) (try again
    /// later); a voter with [`EtcdErrorKind::MemberNotLearner`](crate::EtcdErrorKind::MemberNotLearner).
    pub async fn member_promote(&self, id: u64) -> Result<MembershipResponse> {
        check_id(id)?;
        let req = pb::MemberPromoteRequest { id };
        self.unary(MEMBER_PROMOTE, Retry::NotSent, req)
            .await
            .map(|r| {
                MembershipResponse(pb::MemberListResponse {
                    header: r.header,
                    members: r.members,
                })
            })
    }
}
