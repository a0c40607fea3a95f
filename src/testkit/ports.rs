//! Picking free loopback ports.
//!
//! A port is found by binding `127.0.0.1:0` and releasing it, which races with
//! every other process on the host. Within this process the race is removed by
//! never handing out a recently handed-out port again; across processes the
//! cluster start detects "address already in use" and retries with new ports.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use super::TestkitError;

/// How many handed-out ports are remembered (and not handed out again).
const REMEMBER: usize = 4096;

static RECENT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());

#[cfg(test)]
thread_local! {
    /// Unit tests put ports here to be returned by the next `free_ports` call
    /// on the same thread, to provoke port collisions.
    pub(crate) static FORCED: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Returns `n` distinct free ports on 127.0.0.1.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, TestkitError> {
    #[cfg(test)]
    {
        let forced = FORCED.with(|f| std::mem::take(&mut *f.borrow_mut()));
        if forced.len() == n {
            return Ok(forced);
        }
    }
    let mut recent = RECENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Hold every listener until all ports are chosen so the kernel cannot
    // return the same port twice; skip ports handed out earlier.
    let mut held = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut tries = 0;
    while ports.len() < n {
        tries += 1;
        if tries > n * 50 + 100 {
            return Err(TestkitError::InvalidConfig(format!(
                "could not find {n} free loopback ports"
            )));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading a bound port", e))?
            .port();
        if !recent.contains(&port) {
            ports.push(port);
        }
        held.push(listener);
    }
    for &p in &ports {
        if recent.len() >= REMEMBER {
            recent.pop_front();
        }
        recent.push_back(p);
    }
    drop(held);
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_and_not_reused() {
        let a = free_ports(6).unwrap();
        let b = free_ports(6).unwrap();
        let mut all = [a, b].concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 12);
    }
}
