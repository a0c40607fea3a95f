//! A TCP proxy that holds the bytes it forwards for a while: a slow network path to one member.
//!
//! A request that a client gave up on (its deadline passed, its future was dropped) may still be
//! on its way to a member and be applied there much later; etcd counts `grpc-timeout` from the
//! request's arrival. Put a [`DelayProxy`] in front of one member, hand the client the proxy's
//! endpoint in place of the member's, and [`DelayProxy::set_delay`] makes every byte sent
//! toward the member arrive that much later, in order and complete — nothing is dropped, not
//! even when the client closes the connection meanwhile. Answers come back undelayed unless
//! [`DelayProxy::set_reply_delay`] says otherwise.
//!
//! Plain `std` threads (two per direction and connection), so it works from sync tests and from
//! any tokio runtime alike. Dropping the proxy stops accepting and closes every connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::error::TestkitError;

/// A delaying TCP proxy on a free 127.0.0.1 port (see the module docs).
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    /// Delay toward the upstream, in microseconds.
    request_delay_us: AtomicU64,
    /// Delay toward the client, in microseconds.
    reply_delay_us: AtomicU64,
    stopped: AtomicBool,
    /// Every socket opened, to be shut down when the proxy is dropped.
    sockets: Mutex<Vec<TcpStream>>,
}

impl DelayProxy {
    /// Starts a proxy to `upstream` (e.g. a member's `127.0.0.1:PORT`) with no delay.
    pub fn start(upstream: SocketAddr) -> Result<DelayProxy, TestkitError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| TestkitError::io("bind the delay proxy", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("read the delay proxy's address", e))?;
        let shared = Arc::new(Shared {
            upstream,
            request_delay_us: AtomicU64::new(0),
            reply_delay_us: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name("delay-proxy-accept".into())
            .spawn(move || accept_loop(listener, accepting))
            .map_err(|e| TestkitError::io("start the delay proxy", e))?;
        Ok(DelayProxy { addr, shared })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint to give a client instead of the member's: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds every byte sent toward the member for `delay` from now on (bytes already held
    /// keep the delay they were given).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .request_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Holds every byte sent back toward the client for `delay` from now on.
    pub fn set_reply_delay(&self, delay: Duration) {
        self.shared
            .reply_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stopped`.
        let _ = TcpStream::connect(self.addr);
        if let Ok(sockets) = self.shared.sockets.lock() {
            for s in sockets.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(upstream) = TcpStream::connect(shared.upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        if let Ok(mut sockets) = shared.sockets.lock() {
            sockets.extend(client.try_clone());
            sockets.extend(upstream.try_clone());
        }
        pipe(client, upstream, Arc::clone(&shared), Direction::Request);
        pipe(u2, c2, Arc::clone(&shared), Direction::Reply);
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Request,
    Reply,
}

impl Direction {
    fn delay(self, shared: &Shared) -> Duration {
        let us = match self {
            Direction::Request => shared.request_delay_us.load(Ordering::SeqCst),
            Direction::Reply => shared.reply_delay_us.load(Ordering::SeqCst),
        };
        Duration::from_micros(us)
    }
}

/// Reads `from` and writes `to`, each chunk no earlier than its arrival plus the delay at that
/// time. End of input (or an error) is passed on once every held chunk was delivered.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>, direction: Direction) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader_shared = Arc::clone(&shared);
    let _ = thread::Builder::new()
        .name("delay-proxy-read".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let due = Instant::now() + direction.delay(&reader_shared);
                        if tx.send((due, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    let _ = thread::Builder::new()
        .name("delay-proxy-write".into())
        .spawn(move || {
            for (due, chunk) in rx {
                let wait = due.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    thread::sleep(wait);
                }
                if shared.stopped.load(Ordering::SeqCst) || to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
}
