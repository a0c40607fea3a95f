//! `Maintenance/Snapshot`: the member's backend database streamed into any `AsyncWrite`, checked
//! against the sha256 etcd sends after it.
//!
//! On the wire (etcd 3.4 and 3.5, `v3rpc/maintenance.go`): messages whose `blob` holds the next
//! piece of the database file and whose `remaining_bytes` counts the database bytes still to
//! come, then one last message whose `blob` is the 32-byte sha256 of all the database bytes.
//! What we write is exactly that byte stream, database then digest, which is the file
//! `etcdctl snapshot save` writes and `snapshot restore` checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::sha256::Sha256;
use crate::client::Client;
use crate::error::{Error, Result, SnapshotFailure};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;

/// Length of the digest that ends the stream.
const DIGEST_LEN: usize = 32;

/// How far a snapshot has come, handed to the progress callback after every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotProgress {
    /// Bytes received and written so far (database bytes, plus the digest at the end).
    pub bytes: u64,
    /// Bytes the whole stream will have (database plus the 32-byte digest), known from the
    /// first message's `remaining_bytes`.
    pub total: Option<u64>,
}

/// Called with each [`SnapshotProgress`].
pub type ProgressFn = Arc<dyn Fn(SnapshotProgress) + Send + Sync>;

/// Options of [`Client::snapshot_with`] and [`Client::snapshot_to_file_with`].
#[derive(Clone, Default)]
#[must_use]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// The member to take it from; `None`: the member the client currently talks to.
    pub endpoint: Option<String>,
    /// Called after every received message.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for SnapshotOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotOptions")
            .field("endpoint", &self.endpoint)
            .field("progress", &self.progress.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

impl SnapshotOptions {
    /// The defaults: the current member, no progress callback.
    pub fn new() -> Self {
        Self::default()
    }
    /// Takes the snapshot from this member (`host:port` or a URL, as for `connect`).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
    /// Calls `progress` after every received message.
    pub fn with_progress(
        mut self,
        progress: impl Fn(SnapshotProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

/// A snapshot that arrived whole and checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Bytes written: the database plus the 32-byte digest.
    pub bytes: u64,
    /// The database's sha256, as etcd sent it and as we computed it.
    pub sha256: [u8; 32],
}

/// Checks a snapshot byte stream as it passes: hashes everything but the last 32 bytes seen so
/// far, and at the end compares those 32 bytes with the digest.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    hasher: Sha256,
    /// The last (up to) 32 bytes received: not hashed yet, they may be the digest.
    held: Vec<u8>,
    received: u64,
    /// Database size announced by the first message (bytes before it + its `remaining_bytes`).
    db_size: Option<u64>,
    /// `remaining_bytes` of the latest message.
    remaining: u64,
}

impl Verifier {
    /// Takes in one message; returns the progress after it.
    pub(crate) fn push(&mut self, message: &pb::SnapshotResponse) -> SnapshotProgress {
        let blob = &message.blob;
        if self.db_size.is_none() {
            self.db_size = Some(self.received + blob.len() as u64 + message.remaining_bytes);
        }
        self.remaining = message.remaining_bytes;
        self.received += blob.len() as u64;
        if blob.len() >= DIGEST_LEN {
            self.hasher.update(&self.held);
            self.held.clear();
            let (data, last) = blob.split_at(blob.len() - DIGEST_LEN);
            self.hasher.update(data);
            self.held.extend_from_slice(last);
        } else {
            self.held.extend_from_slice(blob);
            let over = self.held.len().saturating_sub(DIGEST_LEN);
            self.hasher.update(&self.held[..over]);
            self.held.drain(..over);
        }
        SnapshotProgress {
            bytes: self.received,
            total: self.db_size.map(|db| db + DIGEST_LEN as u64),
        }
    }

    /// Bytes taken in so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// The stream ended cleanly: checks its length and digest.
    pub(crate) fn finish(self) -> std::result::Result<SnapshotInfo, SnapshotFailure> {
        let expected = self.db_size.map(|db| db + DIGEST_LEN as u64);
        if self.remaining > 0
            || self.held.len() < DIGEST_LEN
            || expected.is_some_and(|e| self.received < e)
        {
            return Err(SnapshotFailure::Truncated);
        }
        let digest = self.hasher.finish();
        if self.held != digest || expected.is_some_and(|e| self.received != e) {
            return Err(SnapshotFailure::ChecksumMismatch);
        }
        Ok(SnapshotInfo {
            bytes: self.received,
            sha256: digest,
        })
    }
}

fn refused(failure: SnapshotFailure, received: u64, cause: Option<Error>) -> Error {
    Error::Snapshot {
        failure,
        received,
        cause: cause.map(Box::new),
    }
}

impl Client {
    /// Streams the member's database into `out` and checks it: `Maintenance/Snapshot`.
    ///
    /// Writes exactly what `etcdctl snapshot save` writes (the database, then its 32-byte
    /// sha256), flushing at the end. A digest that does not match, a stream that ends early,
    /// or a member lost mid-stream gives [`Error::Snapshot`]; what was written until then is
    /// left in `out` (use [`Client::snapshot_to_file`] for a file that appears only when
    /// whole). Memory stays bounded: each message is written before the next is read. The
    /// request timeout does not apply; a member that stops answering is noticed by the
    /// HTTP/2 keep-alive (see [`ClientOptions::with_keep_alive`](crate::ClientOptions::with_keep_alive)).
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_lock::Client) -> Result<(), etcd_lock::Error> {
    /// let mut buf = Vec::new();
    /// let info = client.snapshot(&mut buf).await?;
    /// assert_eq!(info.bytes, buf.len() as u64);
    /// # Ok(()) }
    /// ```
    pub async fn snapshot<W>(&self, out: &mut W) -> Result<SnapshotInfo>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.snapshot_with(out, SnapshotOptions::new()).await
    }

    /// [`Client::snapshot`] from a chosen member and/or with a progress callback.
    pub async fn snapshot_with<W>(
        &self,
        out: &mut W,
        options: SnapshotOptions,
    ) -> Result<SnapshotInfo>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let channel = match &options.endpoint {
            Some(endpoint) => self.channel_to(endpoint)?.1,
            None => self.current().1,
        };
        let open = |token: Option<tonic::metadata::AsciiMetadataValue>| {
            let channel = channel.clone();
            async move {
                let req = self.request_with_token(pb::SnapshotRequest {}, token.as_ref());
                MaintenanceClient::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .snapshot(req)
                    .await
                    .map_err(Error::from_status)
            }
        };
        self.counters().stream_sent(0);
        let mut stream = self.with_token_retry(open).await?.into_inner();
        let mut verifier = Verifier::default();
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    let received = verifier.received();
                    return Err(refused(
                        SnapshotFailure::Interrupted,
                        received,
                        Some(Error::from_status(status)),
                    ));
                }
            };
            // wire-log: stream hook (each SnapshotResponse arrives here; the wire log's stream
            // API is not merged yet)
            self.counters()
                .stream_received(prost::Message::encoded_len(&message));
            let progress = verifier.push(&message);
            if let Err(e) = out.write_all(&message.blob).await {
                return Err(write_failed(e, verifier.received()));
            }
            if let Some(callback) = &options.progress {
                callback(progress);
            }
        }
        let received = verifier.received();
        let info = verifier
            .finish()
            .map_err(|failure| refused(failure, received, None))?;
        out.flush().await.map_err(|e| write_failed(e, received))?;
        Ok(info)
    }

    /// Saves a snapshot to `path`: `Maintenance/Snapshot` into a temporary file in the same
    /// folder, synced and renamed to `path` only once the digest checked out. On any failure
    /// (or when the future is dropped) the temporary file is removed, so `path` is either
    /// the whole snapshot or untouched.
    pub async fn snapshot_to_file(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        self.snapshot_to_file_with(path, SnapshotOptions::new())
            .await
    }

    /// [`Client::snapshot_to_file`] from a chosen member and/or with a progress callback.
    pub async fn snapshot_to_file_with(
        &self,
        path: impl AsRef<Path>,
        options: SnapshotOptions,
    ) -> Result<SnapshotInfo> {
        let path = path.as_ref();
        let Some(name) = path.file_name() else {
            return Err(Error::invalid(
                "path",
                format!("{} names no file", path.display()),
            ));
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        static N: AtomicU64 = AtomicU64::new(0);
        let temp = dir.join(format!(
            ".{}.part-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |what: &str, e: std::io::Error| {
            Error::invalid("path", format!("{what} {}: {e}", temp.display()))
        };
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| io("cannot create", e))?;
        let cleanup = RemoveOnDrop(Some(temp.clone()));
        let info = self.snapshot_with(&mut file, options).await?;
        file.sync_all().await.map_err(|e| io("cannot sync", e))?;
        drop(file);
        tokio::fs::rename(&temp, path)
            .await
            .map_err(|e| io("cannot rename", e))?;
        cleanup.disarm();
        Ok(info)
    }
}

fn write_failed(e: std::io::Error, received: u64) -> Error {
    Error::invalid(
        "out",
        format!("writing the snapshot failed after {received} bytes: {e}"),
    )
}

/// Removes a file when dropped, unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // One unlink of a file we created: quick, and a drop cannot await.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages etcd would send for `db`, in chunks of `chunk` bytes, then the digest.
    fn stream(db: &[u8], chunk: usize) -> Vec<pb::SnapshotResponse> {
        let mut out = Vec::new();
        let mut sent = 0;
        for piece in db.chunks(chunk) {
            sent += piece.len();
            out.push(pb::SnapshotResponse {
                header: None,
                remaining_bytes: (db.len() - sent) as u64,
                blob: piece.to_vec(),
            });
        }
        let mut h = Sha256::default();
        h.update(db);
        out.push(pb::SnapshotResponse {
            header: None,
            remaining_bytes: 0,
            blob: h.finish().to_vec(),
        });
        out
    }

    fn check(
        messages: &[pb::SnapshotResponse],
    ) -> std::result::Result<SnapshotInfo, SnapshotFailure> {
        let mut v = Verifier::default();
        for m in messages {
            v.push(m);
        }
        v.finish()
    }

    fn db() -> Vec<u8> {
        (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_whole_stream_checks_out_with_progress() {
        for chunk in [1, 31, 32, 33, 4096, 20_000] {
            let messages = stream(&db(), chunk);
            let mut v = Verifier::default();
            let first = v.push(&messages[0]);
            assert_eq!(first.total, Some(10_032), "chunk {chunk}");
            for m in &messages[1..] {
                v.push(m);
            }
            let info = v.finish().expect("valid stream");
            assert_eq!(info.bytes, 10_032);
            assert_eq!(
                info.sha256.to_vec(),
                messages.last().map(|m| m.blob.clone()).unwrap_or_default()
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_a_checksum_mismatch() {
        let mut messages = stream(&db(), 4096);
        messages[1].blob[7] ^= 1;
        assert_eq!(check(&messages), Err(SnapshotFailure::ChecksumMismatch));
        let mut messages = stream(&db(), 4096);
        let last = messages.len() - 1;
        messages[last].blob[31] ^= 0x80;
        assert_eq!(check(&messages), Err(SnapshotFailure::ChecksumMismatch));
    }

    #[test]
    fn a_short_stream_is_truncated() {
        let messages = stream(&db(), 4096);
        // Digest missing.
        assert_eq!(
            check(&messages[..messages.len() - 1]),
            Err(SnapshotFailure::Truncated)
        );
        // A data message missing.
        assert_eq!(check(&messages[..1]), Err(SnapshotFailure::Truncated));
        // Digest cut short.
        let mut cut = messages.clone();
        let last = cut.len() - 1;
        cut[last].blob.truncate(20);
        assert_eq!(check(&cut), Err(SnapshotFailure::Truncated));
        // Nothing at all.
        assert_eq!(check(&[]), Err(SnapshotFailure::Truncated));
    }

    #[test]
    fn extra_bytes_after_the_digest_are_refused() {
        let mut messages = stream(&db(), 4096);
        messages.push(pb::SnapshotResponse {
            header: None,
            remaining_bytes: 0,
            blob: vec![0; 32],
        });
        assert!(check(&messages).is_err());
    }
}
