//! Locating installed etcd binaries (see [`EtcdBinary`]).

use std::path::{Path, PathBuf};

use super::TestkitError;

/// Environment variable naming the binary cache folder: `<cache>/v<version>/{etcd,etcdctl}`.
pub const CACHE_ENV: &str = "ETCD_LOCK_CACHE";
/// Environment variable naming one `etcd` binary of any version; it is used for the version
/// it reports (`etcd --version`).
pub const BIN_ENV: &str = "ETCD_BIN";
/// Environment variable restricting [`EtcdBinary::installed`], e.g. `3.5.1,3.4.23,3.5-latest`.
pub const VERSIONS_ENV: &str = "ETCD_LOCK_VERSIONS";
/// Prefix of the per-version override variables, e.g. `ETCD_BIN_3_5_1=/path/to/etcd`.
pub const BIN_ENV_PREFIX: &str = "ETCD_BIN_";

/// One installed etcd version: the `etcd` server binary and the `etcdctl` next to it.
///
/// Binaries are looked up, in this order:
/// 1. `ETCD_BIN_<version with dots as underscores>` (e.g. `ETCD_BIN_3_5_1=/opt/etcd/etcd`);
///    `etcdctl` is expected in the same folder. Set for an alias (`ETCD_BIN_3_5_LATEST`), the
///    binary is taken as is and [`version`](Self::version) reports the alias;
/// 2. `ETCD_BIN=/path/to/etcd`, when `etcd --version` reports the requested version;
/// 3. the first `etcd` on `$PATH` that reports the requested version;
/// 4. `<cache>/v<version>/etcd` and `<cache>/v<version>/etcdctl`, where `<cache>` is
///    [`EtcdBinary::cache_dir`]: unpack an etcd release archive
///    (<https://github.com/etcd-io/etcd/releases>) into `<cache>/v3.5.1/`, for example;
/// 5. an alias such as `3.5-latest`: `<cache>/3.5-latest` is a symlink to a `v<version>`
///    folder (or a file holding the version). The alias resolves to that version, which
///    [`version`](Self::version) then reports (e.g. `3.5.30`), and the rules above apply to
///    it.
///
/// Only the existence of `etcd` is checked; `etcdctl` is needed only by
/// [`Cluster::etcdctl`](super::Cluster::etcdctl).
///
/// A binary found by rules 1-3 is refused with [`TestkitError::UnsafePath`] when it, the
/// folder it is in, or the cache folder can be written by anyone but the current user and
/// root: group- or world-writable (a folder with the sticky bit, like `/tmp`, is fine), or
/// owned by another user. Symlinks are resolved first, so the checks apply to what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdBinary {
    version: String,
    etcd: PathBuf,
    etcdctl: PathBuf,
}

impl EtcdBinary {
    /// Finds an installed etcd version such as `"3.5.1"` (a leading `v` is accepted), or an
    /// alias such as `"3.5-latest"`, resolved to the version it points at.
    ///
    /// Fails with [`TestkitError::NotInstalled`], whose message lists what was searched and
    /// how to provide the binary, when the version is not found.
    pub fn find(version: &str) -> Result<EtcdBinary, TestkitError> {
        Lookup::from_env().find_safe(version)
    }

    /// All installed versions, newest first.
    ///
    /// When `ETCD_LOCK_VERSIONS` is set (comma separated, e.g. `3.5.1,3.4.23,3.5-latest`;
    /// aliases are resolved), only those versions are returned; listed versions that are not installed
    /// are silently skipped (use [`EtcdBinary::matrix`] to make that an error).
    pub fn installed() -> Vec<EtcdBinary> {
        Lookup::from_env().installed()
    }

    /// The versions a test matrix should run against, newest first.
    ///
    /// With `ETCD_LOCK_VERSIONS` set, every listed version (or alias) must be installed, and
    /// a version listed twice (e.g. `3.5-latest` and the version it points at) runs once;
    /// without it, all installed versions are used and at least one must exist.
    /// Unlike [`EtcdBinary::installed`], this never silently yields fewer versions
    /// than asked for, so a misconfigured CI job fails instead of testing nothing.
    pub fn matrix() -> Result<Vec<EtcdBinary>, TestkitError> {
        Lookup::from_env().matrix()
    }

    /// Uses explicitly given binaries, bypassing all lookup rules.
    pub fn from_paths(
        version: impl Into<String>,
        etcd: impl Into<PathBuf>,
        etcdctl: impl Into<PathBuf>,
    ) -> EtcdBinary {
        EtcdBinary {
            version: normalize(&version.into()),
            etcd: etcd.into(),
            etcdctl: etcdctl.into(),
        }
    }

    /// The cache folder: `$ETCD_LOCK_CACHE`; else the first `.cache/etcd` found walking up
    /// from the current directory, no higher than the workspace root (the nearest folder
    /// holding `.git`, else the outermost holding a `Cargo.toml`; just the current directory
    /// when there is neither); else the user cache folder `$XDG_CACHE_HOME/etcd-lock/etcd`
    /// or `$HOME/.cache/etcd-lock/etcd`.
    pub fn cache_dir() -> PathBuf {
        Lookup::from_env().cache
    }

    /// The version, without a leading `v` (e.g. `3.5.1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Path of the `etcd` server executable.
    pub fn etcd_path(&self) -> &Path {
        &self.etcd
    }

    /// Path of the `etcdctl` executable.
    pub fn etcdctl_path(&self) -> &Path {
        &self.etcdctl
    }
}

/// The version an alias such as `3.5-latest` points at in the binary cache (e.g. `3.5.30`),
/// or `None` when `name` is no alias there.
pub(crate) fn resolve_alias(name: &str) -> Option<String> {
    Lookup::from_env().alias_target(&normalize(name))
}

/// `ETCD_BIN_3_5_1` for `3.5.1`, `ETCD_BIN_3_5_LATEST` for `3.5-latest` (upper case).
pub(crate) fn override_var(version: &str) -> String {
    let v: String = normalize(version)
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() => c.to_ascii_uppercase(),
            _ => '_',
        })
        .collect();
    format!("{BIN_ENV_PREFIX}{v}")
}

fn normalize(version: &str) -> String {
    let v = version.trim();
    v.strip_prefix('v').unwrap_or(v).to_string()
}

/// Sort key: numeric components, then releases above pre-releases, then the raw string.
fn version_key(version: &str) -> (Vec<u64>, bool, String) {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let nums = core.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    (nums, !version.contains('-'), version.to_string())
}

/// The inputs of binary lookup, separated from the process environment for testing.
#[derive(Debug, Clone)]
struct Lookup {
    cache: PathBuf,
    /// `(version, etcd path)` from `ETCD_BIN_*` variables.
    overrides: Vec<(String, PathBuf)>,
    /// Parsed `ETCD_LOCK_VERSIONS`, if set and non-empty.
    only: Option<Vec<String>>,
    /// `$ETCD_BIN`, then every `etcd` on `$PATH`, in order: used for the version they report.
    extra: Vec<PathBuf>,
}

impl Lookup {
    fn from_env() -> Lookup {
        let cache = match std::env::var_os(CACHE_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => walk_up_for_cache().unwrap_or_else(user_cache_dir),
        };
        let mut extra: Vec<PathBuf> = std::env::var_os(BIN_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .into_iter()
            .collect();
        if let Some(path) = std::env::var_os("PATH") {
            extra.extend(
                std::env::split_paths(&path)
                    .filter(|d| d.is_absolute())
                    .map(|d| d.join("etcd"))
                    .filter(|p| p.is_file()),
            );
        }
        let overrides = std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                let ver = k.strip_prefix(BIN_ENV_PREFIX)?.replace('_', ".");
                (!v.is_empty()).then(|| (ver, PathBuf::from(v)))
            })
            .collect();
        let only = std::env::var(VERSIONS_ENV)
            .ok()
            .and_then(|s| parse_versions(&s));
        Lookup {
            cache,
            overrides,
            only,
            extra,
        }
    }

    fn find(&self, version: &str) -> Result<EtcdBinary, TestkitError> {
        let version = normalize(version);
        let mut searched = Vec::new();
        if let Some(bin) = self.find_literal(&version, &mut searched) {
            return Ok(bin);
        }
        match self.alias_target(&version) {
            Some(real) => {
                if let Some(bin) = self.find_literal(&real, &mut searched) {
                    return Ok(bin);
                }
            }
            None if version.chars().any(|c| c.is_ascii_alphabetic()) => {
                searched.push(self.cache.join(&version));
            }
            None => {}
        }
        Err(TestkitError::NotInstalled { version, searched })
    }

    /// Rules 1 and 2 of [`EtcdBinary`] for `version` as written; records what it looked for.
    fn find_literal(&self, version: &str, searched: &mut Vec<PathBuf>) -> Option<EtcdBinary> {
        let var = override_var(version);
        if let Some((_, etcd)) = self.overrides.iter().find(|(v, _)| override_var(v) == var) {
            if etcd.is_file() {
                let etcdctl = etcd.with_file_name("etcdctl");
                return Some(EtcdBinary::from_paths(version, etcd.clone(), etcdctl));
            }
            searched.push(etcd.clone());
        }
        for etcd in &self.extra {
            match probe_version(etcd) {
                Some(found) if found == version => {
                    let etcdctl = etcd.with_file_name("etcdctl");
                    return Some(EtcdBinary::from_paths(version, etcd.clone(), etcdctl));
                }
                Some(found) => searched.push(PathBuf::from(format!(
                    "{} (reports {found})",
                    etcd.display()
                ))),
                None => searched.push(PathBuf::from(format!(
                    "{} (`--version` unreadable)",
                    etcd.display()
                ))),
            }
        }
        let dir = self.cache.join(format!("v{version}"));
        let etcd = dir.join("etcd");
        if etcd.is_file() {
            return Some(EtcdBinary::from_paths(version, etcd, dir.join("etcdctl")));
        }
        searched.push(etcd);
        None
    }

    /// [`Lookup::find`], then the ownership and permission checks of [`EtcdBinary`] on the
    /// binary, its folder, and (when it came from there) the cache folder.
    fn find_safe(&self, version: &str) -> Result<EtcdBinary, TestkitError> {
        let bin = self.find(version)?;
        check_safe(&bin.etcd)?;
        if let Some(dir) = bin.etcd.parent() {
            check_safe(dir)?;
        }
        if bin.etcd.starts_with(&self.cache) {
            check_safe(&self.cache)?;
        }
        Ok(bin)
    }

    /// The version `<cache>/<name>` points at: the folder name of a symlink's target
    /// (`3.5-latest -> v3.5.30`), or the contents of a small file (`3.5.30`).
    fn alias_target(&self, name: &str) -> Option<String> {
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
            return None;
        }
        let path = self.cache.join(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        let target = if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&path).ok()?;
            link.file_name()?.to_str()?.to_string()
        } else if meta.is_file() {
            std::fs::read_to_string(&path).ok()?
        } else {
            return None;
        };
        let real = normalize(&target);
        (!real.is_empty() && real != name).then_some(real)
    }

    fn installed(&self) -> Vec<EtcdBinary> {
        let mut versions: Vec<String> = self.overrides.iter().map(|(v, _)| v.clone()).collect();
        versions.extend(self.extra.iter().filter_map(|p| probe_version(p)));
        if let Ok(entries) = std::fs::read_dir(&self.cache) {
            for entry in entries.flatten() {
                if let Some(v) = entry.file_name().to_str().and_then(|n| n.strip_prefix('v')) {
                    versions.push(v.to_string());
                }
            }
        }
        if let Some(only) = &self.only {
            let wanted: Vec<String> = only
                .iter()
                .map(|v| self.alias_target(v).unwrap_or_else(|| v.clone()))
                .collect();
            versions.retain(|v| wanted.contains(v) || only.contains(v));
        }
        let mut found: Vec<EtcdBinary> = versions
            .iter()
            .filter_map(|v| self.find_safe(v).ok())
            .collect();
        sort_newest_first(&mut found);
        found.dedup_by(|a, b| a.version == b.version);
        found
    }

    fn matrix(&self) -> Result<Vec<EtcdBinary>, TestkitError> {
        match &self.only {
            Some(only) => {
                let mut found = only
                    .iter()
                    .map(|v| self.find_safe(v))
                    .collect::<Result<Vec<_>, _>>()?;
                sort_newest_first(&mut found);
                found.dedup_by(|a, b| a.version == b.version);
                Ok(found)
            }
            None => {
                let found = self.installed();
                if found.is_empty() {
                    return Err(TestkitError::NotInstalled {
                        version: "(any)".to_string(),
                        searched: vec![self.cache.join("v*/etcd")],
                    });
                }
                Ok(found)
            }
        }
    }
}

fn sort_newest_first(bins: &mut [EtcdBinary]) {
    bins.sort_by_key(|b| std::cmp::Reverse(version_key(&b.version)));
}

fn parse_versions(s: &str) -> Option<Vec<String>> {
    let list: Vec<String> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(normalize)
        .collect();
    (!list.is_empty()).then_some(list)
}

/// `$XDG_CACHE_HOME/etcd-lock/etcd`, else `$HOME/.cache/etcd-lock/etcd` (relative values are
/// ignored, as the XDG rules say); `.cache/etcd-lock/etcd` under the current directory only
/// when neither is usable.
fn user_cache_dir() -> PathBuf {
    let abs = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    abs("XDG_CACHE_HOME")
        .or_else(|| abs("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("etcd-lock")
        .join("etcd")
}

/// The version `etcd --version` reports (`etcd Version: 3.5.1`), remembered per path.
fn probe_version(etcd: &Path) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashMap<PathBuf, Option<String>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.lock().ok().and_then(|m| m.get(etcd).cloned()) {
        return v;
    }
    let version = std::process::Command::new(etcd)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.trim().strip_prefix("etcd Version:").map(normalize))
        });
    if let Ok(mut m) = seen.lock() {
        m.insert(etcd.to_path_buf(), version.clone());
    }
    version
}

fn walk_up_for_cache() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cache_within_workspace(&cwd)
}

/// The first `.cache/etcd` folder in `start` or above it, up to the workspace root: the
/// nearest folder with a `.git`, else the outermost with a `Cargo.toml`, else `start` alone.
/// Never beyond, so a `.cache/etcd` in a shared parent (`/home`, `/tmp`, `/`) is not run.
fn cache_within_workspace(start: &Path) -> Option<PathBuf> {
    let ancestors: Vec<&Path> = start.ancestors().collect();
    let root = ancestors
        .iter()
        .position(|d| d.join(".git").exists())
        .or_else(|| {
            ancestors
                .iter()
                .rposition(|d| d.join("Cargo.toml").is_file())
        })
        .unwrap_or(0);
    ancestors[..=root]
        .iter()
        .map(|d| d.join(".cache").join("etcd"))
        .find(|d| d.is_dir())
}

/// Refuses `path` (symlinks resolved) when someone else than the current user or root could
/// change it: group- or world-writable (a folder with the sticky bit excepted), or owned by
/// another user.
fn check_safe(path: &Path) -> Result<(), TestkitError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| TestkitError::io(format!("checking {}", path.display()), e))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let unsafe_path = |reason: String| TestkitError::UnsafePath {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            reason,
        };
        if meta.uid() != me && meta.uid() != 0 {
            return Err(unsafe_path(format!(
                "owned by uid {}, not by you (uid {me}) or root",
                meta.uid()
            )));
        }
        let mode = meta.mode();
        let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky_dir {
            return Err(unsafe_path(format!(
                "mode {:o} lets others write to it",
                mode & 0o7777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_install(root: &Path, version: &str) -> PathBuf {
        let dir = root.join(format!("v{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("etcd"), b"").unwrap();
        std::fs::write(dir.join("etcdctl"), b"").unwrap();
        dir.join("etcd")
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("testkit-bin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lookup_rules() {
        let root = scratch("rules");
        let cache = root.join("cache");
        fake_install(&cache, "3.4.23");
        fake_install(&cache, "3.10.0");
        let custom = fake_install(&root.join("custom"), "3.5.1");
        let mut l = Lookup {
            cache: cache.clone(),
            overrides: vec![("3.5.1".into(), custom.clone())],
            only: None,
            extra: Vec::new(),
        };
        let names: Vec<String> = l.installed().iter().map(|b| b.version.clone()).collect();
        assert_eq!(names, ["3.10.0", "3.5.1", "3.4.23"]);
        assert_eq!(l.find("v3.5.1").unwrap().etcd_path(), custom);
        assert_eq!(
            l.find("3.5.1").unwrap().etcdctl_path(),
            custom.with_file_name("etcdctl")
        );

        l.only = parse_versions(" v3.4.23, 9.9.9 ");
        let names: Vec<String> = l.installed().iter().map(|b| b.version.clone()).collect();
        assert_eq!(names, ["3.4.23"]);
        let err = l.matrix().unwrap_err().to_string();
        assert!(err.contains("9.9.9") && err.contains("releases"), "{err}");
        assert!(err.contains("ETCD_BIN_9_9_9"), "{err}");

        l.only = None;
        l.cache = root.join("nowhere");
        l.overrides.clear();
        assert!(l.installed().is_empty());
        assert!(l.matrix().is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn aliases_resolve_to_the_version_they_point_at() {
        let root = scratch("alias");
        let cache = root.join("cache");
        fake_install(&cache, "3.4.23");
        let real = fake_install(&cache, "3.5.30");
        std::os::unix::fs::symlink("v3.5.30", cache.join("3.5-latest")).unwrap();
        std::fs::write(cache.join("3.5-pinned"), "3.5.30\n").unwrap();
        let mut l = Lookup {
            cache: cache.clone(),
            overrides: Vec::new(),
            only: None,
            extra: Vec::new(),
        };
        let bin = l.find("3.5-latest").unwrap();
        assert_eq!(bin.version(), "3.5.30");
        assert_eq!(bin.etcd_path(), real);
        assert_eq!(l.find("v3.5-pinned").unwrap().version(), "3.5.30");
        // The alias is no version of its own: installed() lists each folder once.
        let names: Vec<String> = l.installed().iter().map(|b| b.version.clone()).collect();
        assert_eq!(names, ["3.5.30", "3.4.23"]);

        l.only = parse_versions("3.4.23,3.5-latest");
        let names: Vec<String> = l.installed().iter().map(|b| b.version.clone()).collect();
        assert_eq!(names, ["3.5.30", "3.4.23"]);
        l.only = parse_versions("3.5-latest,3.5.30,3.4.23");
        let names: Vec<String> = l
            .matrix()
            .unwrap()
            .iter()
            .map(|b| b.version.clone())
            .collect();
        assert_eq!(names, ["3.5.30", "3.4.23"]);

        // An override of the real version applies through the alias.
        let custom = fake_install(&root.join("custom"), "3.5.30");
        l.overrides = vec![("3.5.30".into(), custom.clone())];
        assert_eq!(l.find("3.5-latest").unwrap().etcd_path(), custom);
        l.overrides.clear();

        // A dangling alias and a missing one name what was looked for.
        std::fs::remove_dir_all(cache.join("v3.5.30")).unwrap();
        let err = l.find("3.5-latest").unwrap_err().to_string();
        assert!(
            err.contains("3.5-latest") && err.contains("v3.5.30"),
            "{err}"
        );
        l.only = parse_versions("3.5-latest");
        assert!(l.matrix().is_err());
        let err = l.find("3.6-latest").unwrap_err().to_string();
        assert!(err.contains("3.6-latest"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_walk_up_stops_at_the_workspace_root() {
        let root = scratch("walk");
        // root/.cache/etcd sits above the workspace and must not be found.
        std::fs::create_dir_all(root.join(".cache/etcd")).unwrap();
        let ws = root.join("ws");
        let deep = ws.join("crates/a/src");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(ws.join("Cargo.toml"), "[workspace]\n").unwrap();
        std::fs::write(ws.join("crates/a/Cargo.toml"), "[package]\n").unwrap();
        assert_eq!(cache_within_workspace(&deep), None);
        // The outermost Cargo.toml is the root: its cache is found from below.
        std::fs::create_dir_all(ws.join(".cache/etcd")).unwrap();
        assert_eq!(cache_within_workspace(&deep), Some(ws.join(".cache/etcd")));
        // A `.git` marks the root even below an outer Cargo.toml.
        std::fs::remove_dir_all(ws.join(".cache")).unwrap();
        std::fs::create_dir_all(ws.join("crates/a/.git")).unwrap();
        assert_eq!(cache_within_workspace(&deep), None);
        std::fs::create_dir_all(ws.join("crates/a/.cache/etcd")).unwrap();
        assert_eq!(
            cache_within_workspace(&deep),
            Some(ws.join("crates/a/.cache/etcd"))
        );
        // Neither marker: only the start folder itself.
        let bare = root.join("bare/x");
        std::fs::create_dir_all(&bare).unwrap();
        assert_eq!(cache_within_workspace(&bare), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn binaries_others_can_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let root = scratch("unsafe");
        let cache = root.join("cache");
        let etcd = fake_install(&cache, "3.5.1");
        chmod(&cache, 0o755);
        chmod(etcd.parent().unwrap(), 0o755);
        chmod(&etcd, 0o755);
        let l = Lookup {
            cache: cache.clone(),
            overrides: Vec::new(),
            only: None,
            extra: Vec::new(),
        };
        assert!(l.find_safe("3.5.1").is_ok());
        let refused = |l: &Lookup, what: &str| {
            let err = l.find_safe("3.5.1").unwrap_err();
            assert!(
                matches!(err, TestkitError::UnsafePath { .. }),
                "{what}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("refusing to run etcd"), "{what}: {text}");
            assert_eq!(l.installed(), Vec::new(), "{what}");
        };
        for (path, mode, what) in [
            (etcd.clone(), 0o775, "group-writable binary"),
            (etcd.clone(), 0o757, "world-writable binary"),
            (
                etcd.parent().unwrap().to_path_buf(),
                0o777,
                "world-writable version folder",
            ),
            (cache.clone(), 0o770, "group-writable cache"),
        ] {
            chmod(&path, mode);
            refused(&l, what);
            chmod(&path, 0o755);
        }
        // The sticky bit makes a shared folder safe (as /tmp is).
        chmod(&cache, 0o1777);
        assert!(l.find_safe("3.5.1").is_ok());
        chmod(&cache, 0o755);
        // Another owner (only root can hand a file over; skipped otherwise).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&etcd, Some(65534), None).unwrap();
            refused(&l, "binary owned by nobody");
            std::os::unix::fs::chown(&etcd, Some(0), None).unwrap();
            assert!(l.find_safe("3.5.1").is_ok());
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn override_names() {
        assert_eq!(override_var("v3.5.1"), "ETCD_BIN_3_5_1");
        assert_eq!(override_var("3.5-latest"), "ETCD_BIN_3_5_LATEST");
        assert!(parse_versions(" , ").is_none());
        assert!(version_key("3.6.0") > version_key("3.6.0-rc.1"));
        assert!(version_key("3.10.0") > version_key("3.9.9"));
    }
}
