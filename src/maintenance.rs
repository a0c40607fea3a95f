//! Maintenance wrappers: `Status`, `Defragment`, `Hash`, `HashKV`, `Alarm`, `MoveLeader`,
//! `Downgrade`, `Snapshot` ([`Client::snapshot`], checked against etcd's trailing sha256), and
//! `Cluster/MemberList` (the other Cluster calls are in [`crate::cluster`]).
//!
//! Calls that describe or act on one member (`status_of`, `defragment`, `hash`, `hash_kv`, a
//! snapshot with an endpoint) go to that member and only to it, never failing over: an answer
//! from another member would answer another question.

use crate::client::{Client, Retry};
use crate::error::{Error, EtcdErrorKind, Result};
use crate::proto::etcdserverpb as pb;
use crate::support::{header_of, response_wrapper};

mod snapshot;

pub use snapshot::{ProgressFn, SnapshotInfo, SnapshotOptions, SnapshotProgress};

pub(crate) const STATUS: &str = "/etcdserverpb.Maintenance/Status";
pub(crate) const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";
pub(crate) const DEFRAGMENT: &str = "/etcdserverpb.Maintenance/Defragment";
pub(crate) const HASH: &str = "/etcdserverpb.Maintenance/Hash";
pub(crate) const HASH_KV: &str = "/etcdserverpb.Maintenance/HashKV";
pub(crate) const ALARM: &str = "/etcdserverpb.Maintenance/Alarm";
pub(crate) const MOVE_LEADER: &str = "/etcdserverpb.Maintenance/MoveLeader";
pub(crate) const DOWNGRADE: &str = "/etcdserverpb.Maintenance/Downgrade";

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
    /// Bytes of the database file in use (3.4+); the rest is what `Defragment` gives back.
    pub fn db_size_in_use(&self) -> i64 {
        self.0.db_size_in_use
    }
    /// The member's raft applied index (3.4+).
    pub fn raft_applied_index(&self) -> u64 {
        self.0.raft_applied_index
    }
    /// Whether the answering member is a learner (3.4+).
    pub fn is_learner(&self) -> bool {
        self.0.is_learner
    }
    /// Alarms and health problems the member reports, as text (3.4+), e.g.
    /// `memberID:... alarm:NOSPACE`.
    pub fn errors(&self) -> &[String] {
        &self.0.errors
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
        self.unary(STATUS, Retry::Idempotent, pb::StatusRequest {})
            .await
            .map(StatusResponse)
    }

    /// The cluster's members: `Cluster/MemberList` (linearizable on 3.5; 3.4 ignores the flag).
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        let req = pb::MemberListRequest { linearizable: true };
        self.unary(MEMBER_LIST, Retry::Idempotent, req)
            .await
            .map(MemberListResponse)
    }
}

response_wrapper!(
    /// Answer to `Maintenance/HashKV` from the member that served it.
    HashKvResponse,
    pb::HashKvResponse
);
response_wrapper!(
    /// Answer to `Maintenance/Hash` from the member that served it.
    HashResponse,
    pb::HashResponse
);
response_wrapper!(
    /// Answer to `Maintenance/Alarm`: the active alarms (for a GET) or the alarm just cleared
    /// (for a DEACTIVATE; empty when there was no such alarm).
    AlarmResponse,
    pb::AlarmResponse
);
response_wrapper!(
    /// Answer to `Maintenance/Downgrade` (3.5+).
    DowngradeResponse,
    pb::DowngradeResponse
);

impl HashKvResponse {
    /// Hash of the keys and values up to the revision hashed ([`HashKvResponse::revision`]:
    /// the store's current one when `0` was asked for) (crc32), equal on every
    /// member that has applied it.
    pub fn hash(&self) -> u32 {
        self.0.hash
    }
    /// The compaction revision in effect when hashing started.
    pub fn compact_revision(&self) -> i64 {
        self.0.compact_revision
    }
    /// The member that answered.
    pub fn member_id(&self) -> u64 {
        header_of(&self.0.header).member_id
    }
}

impl HashResponse {
    /// Hash of the member's whole backend (crc32); differs between members whose databases
    /// differ in layout even with equal keys, so compare [`Client::hash_kv`] across members.
    pub fn hash(&self) -> u32 {
        self.0.hash
    }
}

/// Which alarm (`etcdserverpb.AlarmType`).
pub use pb::AlarmType;

impl AlarmResponse {
    /// The active alarms: member ID and alarm type each.
    pub fn alarms(&self) -> &[pb::AlarmMember] {
        &self.0.alarms
    }
    /// Whether an alarm of this type is active on any member.
    pub fn has(&self, alarm: AlarmType) -> bool {
        self.0.alarms.iter().any(|a| a.alarm == alarm as i32)
    }
}

impl DowngradeResponse {
    /// The cluster version, e.g. `3.5.0`.
    pub fn version(&self) -> &str {
        &self.0.version
    }
}

/// What a [`Client::downgrade`] call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DowngradeAction {
    /// Checks that the cluster could be downgraded to the version, changing nothing.
    Validate,
    /// Starts the downgrade: the cluster version drops once every member runs the target.
    Enable,
    /// Cancels a downgrade in progress.
    Cancel,
}

impl Client {
    /// Status of the member at `endpoint` (`host:port` or URL): `Maintenance/Status` sent to
    /// that member only.
    pub async fn status_of(&self, endpoint: &str) -> Result<StatusResponse> {
        self.unary_at(endpoint, STATUS, pb::StatusRequest {})
            .await
            .map(StatusResponse)
    }

    /// Gives the free pages of the member's database file back to the file system:
    /// `Maintenance/Defragment` sent to the member at `endpoint` only. The member does not
    /// serve requests meanwhile; with a large database raise the request timeout.
    pub async fn defragment(&self, endpoint: &str) -> Result<()> {
        self.unary_at(endpoint, DEFRAGMENT, pb::DefragmentRequest {})
            .await
            .map(|_| ())
    }

    /// The hash of the member's keys and values at `revision` (`0`: the current one):
    /// `Maintenance/HashKV` sent to the member at `endpoint` only. Members that applied the
    /// same history give the same hash for the same revision.
    pub async fn hash_kv(&self, endpoint: &str, revision: i64) -> Result<HashKvResponse> {
        if revision < 0 {
            return Err(Error::invalid(
                "revision",
                "must be 0 (current) or positive",
            ));
        }
        let req = pb::HashKvRequest { revision };
        self.unary_at(endpoint, HASH_KV, req)
            .await
            .map(HashKvResponse)
    }

    /// The hash of the member's whole backend: `Maintenance/Hash` sent to the member at
    /// `endpoint` only (meant for tests; compare [`Client::hash_kv`] across members).
    pub async fn hash(&self, endpoint: &str) -> Result<HashResponse> {
        self.unary_at(endpoint, HASH, pb::HashRequest {})
            .await
            .map(HashResponse)
    }

    /// The active alarms of every member: `Maintenance/Alarm` with action GET.
    pub async fn alarm_list(&self) -> Result<AlarmResponse> {
        let req = pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        };
        self.unary(ALARM, Retry::Idempotent, req)
            .await
            .map(AlarmResponse)
    }

    /// Clears one alarm of one member: `Maintenance/Alarm` with action DEACTIVATE. The answer
    /// lists the alarm cleared (empty if it was not active). Clear a NOSPACE alarm only after
    /// freeing space (compact, then defragment every member), or the next write raises it
    /// again.
    pub async fn alarm_disarm(&self, member_id: u64, alarm: AlarmType) -> Result<AlarmResponse> {
        if member_id == 0 || alarm == AlarmType::None {
            return Err(Error::invalid(
                "alarm",
                "name one member and one alarm type (alarm_disarm_all clears every alarm)",
            ));
        }
        let req = pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Deactivate as i32,
            member_id,
            alarm: alarm as i32,
        };
        self.unary(ALARM, Retry::NotSent, req)
            .await
            .map(AlarmResponse)
    }

    /// Clears every active alarm: [`Client::alarm_list`], then one [`Client::alarm_disarm`]
    /// per alarm (as Go's `AlarmDisarm` does for an empty alarm). Returns the alarms cleared.
    pub async fn alarm_disarm_all(&self) -> Result<Vec<pb::AlarmMember>> {
        let active = self.alarm_list().await?;
        let mut cleared = Vec::new();
        for alarm in active.alarms() {
            let resp = self.alarm_disarm(alarm.member_id, alarm.alarm()).await?;
            cleared.extend_from_slice(resp.alarms());
        }
        Ok(cleared)
    }

    /// Hands leadership to the member `target_id`: `Maintenance/MoveLeader`, sent to the
    /// current leader (found with `Maintenance/Status` and `Cluster/MemberList`), since etcd
    /// accepts it only there. A leader that changes in between answers `not leader`; the
    /// call then finds the new leader and asks again (up to three times). A learner or an
    /// unknown ID is [`EtcdErrorKind::BadLeaderTransferee`].
    pub async fn move_leader(&self, target_id: u64) -> Result<()> {
        if target_id == 0 {
            return Err(Error::invalid("target_id", "must be a member ID"));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The leader's advertised URL, under the client's scheme rules (TLS settings
            // make it https:// whatever it says).
            let leader_url = self.advertised_url(&self.leader_endpoint().await?)?;
            let req = pb::MoveLeaderRequest { target_id };
            let result = self.unary_at(&leader_url, MOVE_LEADER, req).await;
            match result {
                Err(e) if attempt < 3 && e.etcd_kind() == Some(EtcdErrorKind::NotLeader) => {
                    continue
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// A client URL of the current leader.
    async fn leader_endpoint(&self) -> Result<String> {
        let leader = self.status().await?.leader();
        let members = self.member_list().await?;
        let url = members
            .members()
            .iter()
            .find(|m| m.id == leader && leader != 0)
            .and_then(|m| m.client_ur_ls.first().cloned());
        url.ok_or_else(|| Error::from_status(tonic::Status::unavailable("etcdserver: no leader")))
    }

    /// Validates, starts or cancels a cluster downgrade to `version` (`"3.4"` or `"3.4.0"`;
    /// ignored by [`DowngradeAction::Cancel`]): `Maintenance/Downgrade`, etcd 3.5+. etcd 3.4
    /// has no such RPC: [`Error::Unsupported`].
    pub async fn downgrade(
        &self,
        action: DowngradeAction,
        version: &str,
    ) -> Result<DowngradeResponse> {
        use pb::downgrade_request::DowngradeAction as Wire;
        let action = match action {
            DowngradeAction::Validate => Wire::Validate,
            DowngradeAction::Enable => Wire::Enable,
            DowngradeAction::Cancel => Wire::Cancel,
        };
        if action != Wire::Cancel && version.trim().is_empty() {
            return Err(Error::invalid(
                "version",
                "a target version such as 3.4 is required",
            ));
        }
        let req = pb::DowngradeRequest {
            action: action as i32,
            version: version.trim().to_string(),
        };
        let retry = if action == Wire::Validate {
            Retry::Idempotent
        } else {
            Retry::NotSent
        };
        let result = self.unary(DOWNGRADE, retry, req).await;
        match result {
            Ok(resp) => Ok(DowngradeResponse(resp)),
            Err(e) if e.code() == Some(crate::error::Code::Unimplemented) => {
                Err(Error::Unsupported {
                    method: DOWNGRADE,
                    reason: "etcd added cluster downgrades in 3.5".into(),
                })
            }
            Err(e) => Err(e),
        }
    }
}
