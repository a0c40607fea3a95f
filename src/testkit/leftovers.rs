//! Run ids on containers, and removal of what dead runs left behind.
//!
//! Every container and network a [`ContainerCluster`](super::ContainerCluster) creates carries
//! [`RUN_LABEL`] with this process's run id: `<boot id>.<pid>.<start time>` (the kernel's boot
//! id, so a run is never mistaken for one of another boot or host; the start time in clock
//! ticks from `/proc/<pid>/stat`, so a reused pid is not mistaken for the run that had it).
//! A run is dead when no process with that pid and start time exists on this boot. Objects
//! of other hosts sharing the Docker daemon (another boot id) are never touched.

use std::sync::OnceLock;

use super::container::{docker, docker_output};
use super::TestkitError;

/// Label (key) on every container and network of the testkit whose value is the run id of
/// the test process that created it; see [`ContainerCluster::remove_leftovers`](super::ContainerCluster::remove_leftovers).
pub const RUN_LABEL: &str = "io.etcd-lock.testkit.run";

/// This process's run id, `<boot id>.<pid>.<start time>`.
pub(crate) fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or_default();
        format!("{}.{pid}.{start}", boot_id())
    })
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-boot".into())
}

/// Field 22 of `/proc/<pid>/stat` (start time after boot, in clock ticks); `None` when the
/// process does not exist or is a zombie.
pub(crate) fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 22 is fields[19].
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

/// True when `id` names a run of this boot whose process is gone.
fn is_dead(id: &str, boot: &str) -> bool {
    let mut parts = id.rsplitn(3, '.');
    let (Some(start), Some(pid), Some(run_boot)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if run_boot != boot {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) => start_time(pid).as_deref() != Some(start),
        Err(_) => false,
    }
}

/// Removes the containers, then the networks, whose run is dead; returns how many objects
/// were removed.
pub(crate) fn remove_dead_runs() -> Result<usize, TestkitError> {
    let boot = boot_id();
    let filter = format!("label={RUN_LABEL}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{RUN_LABEL}\"}}}}");
    let dead = |listing: String| -> Vec<String> {
        listing
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, run)| is_dead(run.trim(), &boot))
            .map(|(id, _)| id.to_string())
            .collect()
    };
    let containers = dead(docker(&[
        "ps", "--all", "--filter", &filter, "--format", &format,
    ])?);
    let networks = dead(docker(&[
        "network", "ls", "--filter", &filter, "--format", &format,
    ])?);
    if !containers.is_empty() {
        let mut args = vec!["rm", "--force", "--volumes"];
        args.extend(containers.iter().map(String::as_str));
        docker(&args)?;
    }
    for net in &networks {
        // A network still in use by a live run's container stays; nothing else to do.
        let _ = docker_output(&["network", "rm", net]);
    }
    Ok(containers.len() + networks.len())
}

/// [`remove_dead_runs`] once per process (the first container start); errors are ignored
/// there, since leftovers only cost disk and ports, never correctness.
pub(crate) fn remove_dead_runs_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let _ = remove_dead_runs();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_run_is_alive_and_a_gone_pid_is_dead() {
        let boot = boot_id();
        let me = run_id();
        assert!(me.starts_with(&boot), "{me}");
        assert!(!is_dead(me, &boot), "this process counted as dead: {me}");
        // Same pid, another start time: a reused pid, so the old run is dead.
        let pid = std::process::id();
        assert!(is_dead(&format!("{boot}.{pid}.1"), &boot));
        // Another boot (or host): never touched.
        assert!(!is_dead(&format!("other-boot.{pid}.1"), &boot));
        assert!(!is_dead("garbage", &boot));
    }
}
