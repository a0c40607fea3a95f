//! A uniquely named temporary folder that is removed on drop: `tempfile::TempDir` (random name,
//! created with mode 0700), under `/dev/shm` when asked, plus one retry of the removal.

use std::path::Path;

use super::TestkitError;

/// Owns `<base>/etcd-testkit-<random>`; removes it on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    dir: Option<tempfile::TempDir>,
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
        let dir = tempfile::Builder::new()
            .prefix("etcd-testkit-")
            .tempdir_in(&base)
            .map_err(|e| TestkitError::io(format!("creating a folder in {}", base.display()), e))?;
        Ok(TempDir { dir: Some(dir) })
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// The folder's (random, unique) file name: used as the cluster token.
    pub(crate) fn unique_name(&self) -> String {
        self.path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        let path = dir.path().to_path_buf();
        // A just-killed process may still be releasing files: retry once.
        if dir.close().is_err() {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_unique_and_removed_on_drop() {
        let (a, b) = match (TempDir::create(true), TempDir::create(false)) {
            (Ok(a), Ok(b)) => (a, b),
            other => panic!("{other:?}"),
        };
        assert!(a.path().is_dir() && b.path().is_dir());
        assert_ne!(a.unique_name(), b.unique_name());
        assert!(a.unique_name().starts_with("etcd-testkit-"));
        let path = a.path().to_path_buf();
        let _ = std::fs::write(path.join("member.log"), "x");
        drop(a);
        assert!(!path.exists());
    }
}
