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

use crate::client::{Client, Grpc};
use crate::error::{Error, Result, SnapshotFailure};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::support::sha256::Sha256;
use crate::wire::StreamTap;

/// The method path, as the wire log names it.
pub(crate) const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";

/// Length of the digest that ends the stream.
const DIGEST_LEN: usize = 32;

/// How far a snapshot has come, handed to the progress callback after every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotProgress {
    /// Bytes received so far (database bytes, plus the digest at the end); `snapshot_with`
    /// has written them to its writer by then, `snapshot_to_file` writes them on its hashing
    /// thread just after.
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

/// How many received pieces may wait for the hashing thread. etcd sends the database in
/// 32 KiB pieces (`snapshotSendBufferSize` in `v3rpc/maintenance.go`), so the queue holds at
/// most about 2 MiB; when it is full the receiving task waits, which bounds memory.
const HASH_QUEUE: usize = 64;

/// Database bytes ready to be hashed: `buf[..len]`. Holding the received `Vec` itself lets a
/// message's blob move to the hashing thread without a copy.
#[derive(Debug)]
pub(crate) struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Keeps the books of a snapshot byte stream as it passes: which bytes are database (to be
/// hashed, handed out as [`Chunk`]s in order) and which last 32 bytes may be the digest; at the
/// end compares those 32 bytes with the digest of all the chunks.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    /// The last (up to) 32 bytes received: not hashed yet, they may be the digest.
    held: Vec<u8>,
    received: u64,
    /// Database size announced by the first message (bytes before it + its `remaining_bytes`).
    db_size: Option<u64>,
    /// `remaining_bytes` of the latest message.
    remaining: u64,
}

impl Verifier {
    /// Takes in one message's `remaining_bytes` and `blob`; returns the progress after it and
    /// the (up to two) pieces that are now known to be database bytes, in stream order.
    pub(crate) fn push(
        &mut self,
        remaining_bytes: u64,
        blob: Vec<u8>,
    ) -> (SnapshotProgress, [Option<Chunk>; 2]) {
        if self.db_size.is_none() {
            self.db_size = Some(self.received + blob.len() as u64 + remaining_bytes);
        }
        self.remaining = remaining_bytes;
        self.received += blob.len() as u64;
        let chunks = if blob.len() >= DIGEST_LEN {
            // All held bytes are database; this blob's last 32 bytes are held in their place
            // (a 32-byte copy), and the blob itself moves on whole.
            let held = std::mem::take(&mut self.held);
            let first = (!held.is_empty()).then_some(Chunk {
                len: held.len(),
                buf: held,
            });
            let len = blob.len() - DIGEST_LEN;
            self.held.extend_from_slice(&blob[len..]);
            [first, (len > 0).then_some(Chunk { buf: blob, len })]
        } else {
            self.held.extend_from_slice(&blob);
            let over = self.held.len().saturating_sub(DIGEST_LEN);
            let first = (over > 0).then(|| Chunk {
                buf: self.held.drain(..over).collect(),
                len: over,
            });
            [first, None]
        };
        let progress = SnapshotProgress {
            bytes: self.received,
            total: self.db_size.map(|db| db + DIGEST_LEN as u64),
        };
        (progress, chunks)
    }

    /// Bytes taken in so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// The stream ended cleanly: checks its length, and `digest` (the sha256 of every chunk
    /// [`Verifier::push`] handed out) against the digest the stream ended with.
    pub(crate) fn finish(
        self,
        digest: [u8; 32],
    ) -> std::result::Result<SnapshotInfo, SnapshotFailure> {
        let expected = self.db_size.map(|db| db + DIGEST_LEN as u64);
        if self.remaining > 0
            || self.held.len() < DIGEST_LEN
            || expected.is_some_and(|e| self.received < e)
        {
            return Err(SnapshotFailure::Truncated);
        }
        if self.held != digest || expected.is_some_and(|e| self.received != e) {
            return Err(SnapshotFailure::ChecksumMismatch);
        }
        Ok(SnapshotInfo {
            bytes: self.received,
            sha256: digest,
        })
    }
}

/// The sha256 of a snapshot, computed on a blocking-pool thread fed through a bounded queue,
/// so hashing overlaps receiving and writing instead of running on the receiving task. Given a
/// file, the same thread also writes each database chunk to it before hashing it: the bytes
/// are written where they already are, with no copy into a write buffer and no hand-off per
/// write.
struct Hasher {
    queue: tokio::sync::mpsc::Sender<Chunk>,
    done: tokio::task::JoinHandle<Hashed>,
}

/// What the hashing thread ends with: the digest of every chunk it took, and the file it wrote
/// them to (or the error that stopped the writing).
struct Hashed {
    digest: [u8; 32],
    file: Option<std::io::Result<std::fs::File>>,
}

impl Hasher {
    /// Starts the hashing thread; it ends when the queue's sender is dropped (also when the
    /// snapshot future is dropped midway), or when writing to `file` fails.
    fn start(mut file: Option<std::fs::File>) -> Self {
        use std::io::Write;
        let (queue, mut chunks) = tokio::sync::mpsc::channel::<Chunk>(HASH_QUEUE);
        let done = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::default();
            while let Some(chunk) = chunks.blocking_recv() {
                if let Some(out) = file.as_mut() {
                    if let Err(e) = out.write_all(chunk.bytes()) {
                        return Hashed {
                            digest: hasher.finish(),
                            file: Some(Err(e)),
                        };
                    }
                }
                hasher.update(chunk.bytes());
            }
            Hashed {
                digest: hasher.finish(),
                file: file.map(Ok),
            }
        });
        Hasher { queue, done }
    }

    /// Queues `chunks` for hashing, waiting while the queue is full. `false` when the thread
    /// has stopped ([`Hasher::finish`] says why).
    async fn feed(&self, chunks: [Option<Chunk>; 2]) -> bool {
        for chunk in chunks.into_iter().flatten() {
            if self.queue.send(chunk).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Waits for the digest of everything fed (and the file, when one was given).
    async fn finish(self) -> Result<Hashed> {
        drop(self.queue);
        self.done.await.map_err(|_| hasher_failed())
    }
}

fn hasher_failed() -> Error {
    Error::Protocol("the snapshot's sha256 thread stopped unexpectedly".into())
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
    /// whole). Memory stays bounded: each message is written before the next is read, and
    /// the sha256 runs on a blocking-pool thread fed through a bounded queue (about 2 MiB of
    /// pieces), so hashing overlaps receiving and writing. The
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
        let (info, _) = self.stream_snapshot(Some(out), None, options).await?;
        Ok(info)
    }

    /// One `Maintenance/Snapshot` stream, checked. Each message's bytes go to `out` when given;
    /// with `file` instead, the hashing thread writes the database bytes to it, and the digest
    /// is written after it checked out. Returns the file, all written but not synced.
    async fn stream_snapshot<W>(
        &self,
        mut out: Option<&mut W>,
        file: Option<std::fs::File>,
        options: SnapshotOptions,
    ) -> Result<(SnapshotInfo, Option<std::fs::File>)>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let (url, channel) = match &options.endpoint {
            Some(endpoint) => self.channel_to(endpoint)?,
            None => {
                let (index, channel) = self.current();
                (self.endpoint_url(index), channel)
            }
        };
        let open = |token: Option<tonic::metadata::AsciiMetadataValue>| {
            let channel = channel.clone();
            let request = self.request_with_token(pb::SnapshotRequest {}, token.as_ref());
            let tap = StreamTap::new(self.wire(), SNAPSHOT);
            tap.open(|| url.clone(), &request);
            tap.sent(request.get_ref());
            async move {
                let mut grpc = MaintenanceClient::stream(channel, self.options());
                tap.opened(grpc.snapshot(request))
                    .await
                    .map_err(Error::from_status)
            }
        };
        self.counters().stream_sent(0);
        let mut stream = self.with_token_retry(open).await?.into_inner();
        let mut verifier = Verifier::default();
        let hasher = Hasher::start(file);
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    let received = verifier.received();
                    // A chunk over the decode limit is refused from its length prefix.
                    let limit = self.options().max_response_bytes;
                    let cause = crate::client::too_large(SNAPSHOT, &status, limit)
                        .unwrap_or_else(|| Error::from_status(status));
                    return Err(refused(SnapshotFailure::Interrupted, received, Some(cause)));
                }
            };
            self.counters()
                .stream_received(prost::Message::encoded_len(&message));
            if let Some(out) = out.as_mut() {
                if let Err(e) = out.write_all(&message.blob).await {
                    return Err(write_failed(e, verifier.received()));
                }
            }
            // Written first (or written by the hashing thread), then moved, not copied.
            let (progress, chunks) = verifier.push(message.remaining_bytes, message.blob);
            if !hasher.feed(chunks).await {
                // The thread stopped: a failed file write says why.
                let received = verifier.received();
                return Err(match hasher.finish().await?.file {
                    Some(Err(e)) => write_failed(e, received),
                    _ => hasher_failed(),
                });
            }
            if let Some(callback) = &options.progress {
                callback(progress);
            }
        }
        let hashed = hasher.finish().await?;
        let received = verifier.received();
        let info = verifier
            .finish(hashed.digest)
            .map_err(|failure| refused(failure, received, None))?;
        if let Some(out) = out.as_mut() {
            out.flush().await.map_err(|e| write_failed(e, received))?;
        }
        let file = match hashed.file {
            None => None,
            Some(Err(e)) => return Err(write_failed(e, received)),
            // The stream's last 32 bytes: the digest, which just matched.
            Some(Ok(mut file)) => Some(
                tokio::task::spawn_blocking(move || {
                    std::io::Write::write_all(&mut file, &info.sha256).map(|()| file)
                })
                .await
                .map_err(|_| hasher_failed())?
                .map_err(|e| write_failed(e, received))?,
            ),
        };
        Ok((info, file))
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
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| io("cannot create", e))?
            .into_std()
            .await;
        let cleanup = RemoveOnDrop(Some(temp.clone()));
        // The hashing thread writes each chunk where it already is (no write buffer, no
        // hand-off per write), then the digest follows.
        let (info, file) = self
            .stream_snapshot(None::<&mut tokio::io::Sink>, Some(file), options)
            .await?;
        if let Some(file) = file {
            tokio::task::spawn_blocking(move || file.sync_all())
                .await
                .map_err(|_| hasher_failed())?
                .map_err(|e| io("cannot sync", e))?;
        }
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

    /// Feeds `m` to `v`, hashing its chunks inline into `h`.
    fn push(v: &mut Verifier, h: &mut Sha256, m: &pb::SnapshotResponse) -> SnapshotProgress {
        let (progress, chunks) = v.push(m.remaining_bytes, m.blob.clone());
        for chunk in chunks.into_iter().flatten() {
            h.update(chunk.bytes());
        }
        progress
    }

    fn check(
        messages: &[pb::SnapshotResponse],
    ) -> std::result::Result<SnapshotInfo, SnapshotFailure> {
        let (mut v, mut h) = (Verifier::default(), Sha256::default());
        for m in messages {
            push(&mut v, &mut h, m);
        }
        v.finish(h.finish())
    }

    fn db() -> Vec<u8> {
        (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_whole_stream_checks_out_with_progress() {
        for chunk in [1, 31, 32, 33, 4096, 20_000] {
            let messages = stream(&db(), chunk);
            let (mut v, mut h) = (Verifier::default(), Sha256::default());
            let first = push(&mut v, &mut h, &messages[0]);
            assert_eq!(first.total, Some(10_032), "chunk {chunk}");
            for m in &messages[1..] {
                push(&mut v, &mut h, m);
            }
            let info = v.finish(h.finish()).expect("valid stream");
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

    /// The pipelined path: chunks go through the bounded queue to the blocking-pool thread,
    /// which gives the same verdicts as hashing inline, for every piece size, including pieces
    /// shorter than the digest and a queue that fills up (more pieces than its capacity).
    #[tokio::test]
    async fn the_hashing_thread_gives_the_same_verdicts() {
        async fn piped(
            messages: &[pb::SnapshotResponse],
        ) -> std::result::Result<SnapshotInfo, SnapshotFailure> {
            let (mut v, hasher) = (Verifier::default(), Hasher::start(None));
            for m in messages {
                let (_, chunks) = v.push(m.remaining_bytes, m.blob.clone());
                assert!(hasher.feed(chunks).await, "hasher alive");
            }
            let digest = hasher.finish().await.expect("hasher alive").digest;
            v.finish(digest)
        }
        for chunk in [1, 31, 32, 33, 100, 4096, 20_000] {
            let messages = stream(&db(), chunk);
            assert!(chunk > 100 || messages.len() > HASH_QUEUE);
            let info = piped(&messages).await.expect("valid stream");
            assert_eq!(Ok(info), check(&messages), "chunk {chunk}");
            assert_eq!(info.bytes, 10_032);
            let mut flipped = messages.clone();
            flipped[0].blob[0] ^= 1;
            assert_eq!(
                piped(&flipped).await,
                Err(SnapshotFailure::ChecksumMismatch),
                "chunk {chunk}"
            );
            assert_eq!(
                piped(&messages[..messages.len() - 1]).await,
                Err(SnapshotFailure::Truncated),
                "chunk {chunk}"
            );
        }
    }

    /// Given a file, the hashing thread writes every database chunk to it, in order, and
    /// hashes the same bytes: the file then holds the database and the digest checks out.
    #[tokio::test]
    async fn the_hashing_thread_writes_the_database_to_its_file() {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "etcd-lock-snapshot-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _cleanup = RemoveOnDrop(Some(path.clone()));
        let file = std::fs::File::create(&path).expect("temp file");
        let messages = stream(&db(), 100);
        let (mut v, hasher) = (Verifier::default(), Hasher::start(Some(file)));
        for m in &messages {
            let (_, chunks) = v.push(m.remaining_bytes, m.blob.clone());
            assert!(hasher.feed(chunks).await, "hasher alive");
        }
        let hashed = hasher.finish().await.expect("hasher alive");
        assert!(matches!(hashed.file, Some(Ok(_))));
        drop(hashed.file);
        let info = v.finish(hashed.digest).expect("valid stream");
        assert_eq!(info.bytes, 10_032);
        assert_eq!(std::fs::read(&path).expect("read back"), db());
    }
}
