//! Cluster and Maintenance wrappers: `Maintenance/Status` and `Cluster/MemberList`.

use crate::client::{Client, Retry};
use crate::error::Result;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::support::{header_of, response_wrapper};

pub(crate) const STATUS: &str = "/etcdserverpb.Maintenance/Status";
pub(crate) const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";

response_wrapper!(
    /// Answer to `Maintenance/Status` from the member that served it.
    StatusResponse,
    pb::StatusResponse
);
response_wrapper!(
    /// Answer to `Cluster/MemberList`.
    MemberListResponse,
    pb::MemberListResponse
);

impl StatusResponse {
    /// The etcd server version, e.g. `3.5.1`.
    pub fn version(&self) -> &str {
        &self.0.version
    }
    /// The member ID of the current leader.
    pub fn leader(&self) -> u64 {
        self.0.leader
    }
    /// The member ID of the member that answered.
    pub fn member_id(&self) -> u64 {
        header_of(&self.0.header).member_id
    }
    /// True when the answering member is the leader.
    pub fn is_leader(&self) -> bool {
        self.0.leader != 0 && self.0.leader == self.member_id()
    }
    /// The member's raft index.
    pub fn raft_index(&self) -> u64 {
        self.0.raft_index
    }
    /// The member's raft term.
    pub fn raft_term(&self) -> u64 {
        self.0.raft_term
    }
    /// Size of the backend database file in bytes.
    pub fn db_size(&self) -> i64 {
        self.0.db_size
    }
}

impl MemberListResponse {
    /// The members.
    pub fn members(&self) -> &[pb::Member] {
        &self.0.members
    }
}

impl Client {
    /// Status of the member this client currently talks to: `Maintenance/Status`
    /// (version, leader, raft index and term, db size).
    pub async fn status(&self) -> Result<StatusResponse> {
        self.unary(
            STATUS,
            Retry::Idempotent,
            pb::StatusRequest {},
            |ch, r| async move {
                MaintenanceClient::new(ch)
                    .max_decoding_message_size(usize::MAX)
                    .status(r)
                    .await
            },
        )
        .await
        .map(StatusResponse)
    }

    /// The cluster's members: `Cluster/MemberList` (linearizable on 3.5; 3.4 ignores the flag).
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        let req = pb::MemberListRequest { linearizable: true };
        self.unary(MEMBER_LIST, Retry::Idempotent, req, |ch, r| async move {
            ClusterClient::new(ch)
                .max_decoding_message_size(usize::MAX)
                .member_list(r)
                .await
        })
        .await
        .map(MemberListResponse)
    }
}
