//! What the unary path needs to know of a request type, and the codec it sends with.
//!
//! Every unary RPC goes out as bytes: the typed shell in `unary.rs` encodes the request once,
//! the attempt loop sends those bytes with [`RawCodec`] through one `tonic::client::Grpc`, and
//! the shell decodes the answer. So tonic's call machinery, the attempt loop and the wire tap
//! exist once in a binary, not once per request type, and the bytes the wire log shows are the
//! bytes that crossed the wire, with no second encoding.

use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::proto::etcdserverpb as pb;
use crate::proto::v3electionpb as election;
use crate::proto::v3lockpb as lock;

/// A request message of a unary RPC, and the message the server answers it with.
pub(crate) trait UnaryRequest: prost::Message {
    /// The answer's message type.
    type Response: prost::Message + Default;
}

macro_rules! unary_requests {
    ($($request:ty => $response:ty,)*) => {$(
        impl UnaryRequest for $request {
            type Response = $response;
        }
    )*};
}

// Every unary RPC of etcd's protos (`proto/`), request => response.
unary_requests! {
    lock::LockRequest => lock::LockResponse,
    lock::UnlockRequest => lock::UnlockResponse,
    election::CampaignRequest => election::CampaignResponse,
    election::ProclaimRequest => election::ProclaimResponse,
    election::LeaderRequest => election::LeaderResponse,
    election::ResignRequest => election::ResignResponse,
    pb::RangeRequest => pb::RangeResponse,
    pb::PutRequest => pb::PutResponse,
    pb::DeleteRangeRequest => pb::DeleteRangeResponse,
    pb::TxnRequest => pb::TxnResponse,
    pb::CompactionRequest => pb::CompactionResponse,
    pb::LeaseGrantRequest => pb::LeaseGrantResponse,
    pb::LeaseRevokeRequest => pb::LeaseRevokeResponse,
    pb::LeaseTimeToLiveRequest => pb::LeaseTimeToLiveResponse,
    pb::LeaseLeasesRequest => pb::LeaseLeasesResponse,
    pb::MemberAddRequest => pb::MemberAddResponse,
    pb::MemberRemoveRequest => pb::MemberRemoveResponse,
    pb::MemberUpdateRequest => pb::MemberUpdateResponse,
    pb::MemberListRequest => pb::MemberListResponse,
    pb::MemberPromoteRequest => pb::MemberPromoteResponse,
    pb::AlarmRequest => pb::AlarmResponse,
    pb::StatusRequest => pb::StatusResponse,
    pb::DefragmentRequest => pb::DefragmentResponse,
    pb::HashRequest => pb::HashResponse,
    pb::HashKvRequest => pb::HashKvResponse,
    pb::MoveLeaderRequest => pb::MoveLeaderResponse,
    pb::DowngradeRequest => pb::DowngradeResponse,
    pb::AuthEnableRequest => pb::AuthEnableResponse,
    pb::AuthDisableRequest => pb::AuthDisableResponse,
    pb::AuthStatusRequest => pb::AuthStatusResponse,
    pb::AuthenticateRequest => pb::AuthenticateResponse,
    pb::AuthUserAddRequest => pb::AuthUserAddResponse,
    pb::AuthUserGetRequest => pb::AuthUserGetResponse,
    pb::AuthUserListRequest => pb::AuthUserListResponse,
    pb::AuthUserDeleteRequest => pb::AuthUserDeleteResponse,
    pb::AuthUserChangePasswordRequest => pb::AuthUserChangePasswordResponse,
    pb::AuthUserGrantRoleRequest => pb::AuthUserGrantRoleResponse,
    pb::AuthUserRevokeRoleRequest => pb::AuthUserRevokeRoleResponse,
    pb::AuthRoleAddRequest => pb::AuthRoleAddResponse,
    pb::AuthRoleGetRequest => pb::AuthRoleGetResponse,
    pb::AuthRoleListRequest => pb::AuthRoleListResponse,
    pb::AuthRoleDeleteRequest => pb::AuthRoleDeleteResponse,
    pb::AuthRoleGrantPermissionRequest => pb::AuthRoleGrantPermissionResponse,
    pb::AuthRoleRevokePermissionRequest => pb::AuthRoleRevokePermissionResponse,
}

/// A gRPC codec over encoded messages: sends the request bytes as they are and hands back the
/// answer's bytes undecoded (a view of tonic's receive buffer, not a copy). Its buffers start
/// as small as the streams' (`wire::codec::buffers`): a thousand waiters each in a `Lock/Lock`
/// call hold a thousand of them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put(item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        crate::wire::codec::buffers()
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = buf.remaining();
        Ok(Some(buf.copy_to_bytes(len)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        crate::wire::codec::buffers()
    }
}
