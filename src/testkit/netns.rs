//! Packet filters inside one container's network namespace, for peer-only partitions.
//!
//! Rules are added with the host's own `iptables` (or `nft` when `iptables` is missing) run
//! through `nsenter --net`, so they live in the container's namespace only: the host's
//! filters, Docker's port mappings and every other container stay as they are.

use std::io;
use std::process::{Command, Stdio};

use super::TestkitError;

/// The nft table that holds the rules (removed as a whole on heal).
const NFT_TABLE: &str = "etcd_lock_peers";
const PURPOSE: &str = "a peer-only partition (ContainerCluster::isolate_peers)";

/// The filter tool in use for one isolated member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Filter {
    Iptables,
    Nft,
}

/// True when `tool` can be started on this host.
fn installed(tool: &str) -> bool {
    !matches!(
        Command::new(tool)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        Err(e) if e.kind() == io::ErrorKind::NotFound
    )
}

/// The tool to use, or the typed error naming what is missing.
pub(super) fn pick() -> Result<Filter, TestkitError> {
    if !installed("nsenter") {
        return Err(TestkitError::MissingTool {
            tool: "nsenter",
            needed_for: PURPOSE,
        });
    }
    if installed("iptables") {
        Ok(Filter::Iptables)
    } else if installed("nft") {
        Ok(Filter::Nft)
    } else {
        Err(TestkitError::MissingTool {
            tool: "iptables or nft",
            needed_for: PURPOSE,
        })
    }
}

/// Runs `nsenter --target pid --net <args>`; an error with its stderr when it fails.
fn in_netns(pid: u32, args: &[&str]) -> Result<(), TestkitError> {
    let target = pid.to_string();
    let mut full = vec!["--target", target.as_str(), "--net"];
    full.extend_from_slice(args);
    let out = Command::new("nsenter")
        .args(&full)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::io(format!("running `nsenter {}`", full.join(" ")), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TestkitError::io(
            format!("`nsenter {}` failed ({})", full.join(" "), out.status),
            io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ))
    }
}

/// The four iptables rule specs: both directions of both ends of every peer connection.
/// A member both dials its peers' port and is dialled on its own, and data flows both ways
/// on either kind of connection, so source and destination port are both filtered.
fn iptables_rules(port: &str) -> [[&str; 7]; 4] {
    [
        ["INPUT", "-p", "tcp", "--dport", port, "-j", "DROP"],
        ["INPUT", "-p", "tcp", "--sport", port, "-j", "DROP"],
        ["OUTPUT", "-p", "tcp", "--dport", port, "-j", "DROP"],
        ["OUTPUT", "-p", "tcp", "--sport", port, "-j", "DROP"],
    ]
}

/// Drops every TCP packet to or from `port` in the network namespace of process `pid`.
pub(super) fn drop_port(pid: u32, port: u16, filter: Filter) -> Result<(), TestkitError> {
    let port = port.to_string();
    match filter {
        Filter::Iptables => {
            for rule in iptables_rules(&port) {
                let mut args = vec!["iptables", "-w", "-I"];
                args.extend_from_slice(&rule);
                in_netns(pid, &args)?;
            }
            Ok(())
        }
        Filter::Nft => {
            let script = format!(
                "add table inet {NFT_TABLE}; \
                 add chain inet {NFT_TABLE} input {{ type filter hook input priority -10 ; }}; \
                 add chain inet {NFT_TABLE} output {{ type filter hook output priority -10 ; }}; \
                 add rule inet {NFT_TABLE} input tcp dport {port} drop; \
                 add rule inet {NFT_TABLE} input tcp sport {port} drop; \
                 add rule inet {NFT_TABLE} output tcp dport {port} drop; \
                 add rule inet {NFT_TABLE} output tcp sport {port} drop"
            );
            in_netns(pid, &["nft", &script])
        }
    }
}

/// Removes what [`drop_port`] added.
pub(super) fn allow_port(pid: u32, port: u16, filter: Filter) -> Result<(), TestkitError> {
    let port = port.to_string();
    match filter {
        Filter::Iptables => {
            for rule in iptables_rules(&port) {
                let mut args = vec!["iptables", "-w", "-D"];
                args.extend_from_slice(&rule);
                in_netns(pid, &args)?;
            }
            Ok(())
        }
        Filter::Nft => in_netns(pid, &["nft", "delete", "table", "inet", NFT_TABLE]),
    }
}
