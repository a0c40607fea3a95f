//! A uniquely named temporary folder that is removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::TestkitError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Owns `<base>/etcd-testkit-<pid>-<counter>-<nanos>`; removes it on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the folder under `/dev/shm` (when `in_shm` and it exists) or
    /// [`std::env::temp_dir`].
    pub(crate) fn create(in_shm: bool) -> Result<TempDir, TestkitError> {
        let shm = Path::new("/dev/shm");
        let base = if in_shm && shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "etcd-testkit-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = base.join(name);
        std::fs::create_dir_all(&path)
            .map_err(|e| TestkitError::io(format!("creating {}", path.display()), e))?;
        Ok(TempDir { path })
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file name, unique per process and time: used as the cluster token.
    pub(crate) fn unique_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A just-killed process may still be releasing files: retry once.
        if std::fs::remove_dir_all(&self.path).is_err() {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
