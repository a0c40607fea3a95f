//! Signals as messages: HUP INT TERM QUIT USR1 USR2 WINCH are caught (their default action,
//! ending etcd-lock while CMD runs on, is exactly what must not happen) and handed to the async
//! code with one fact the handler alone can read: whether the kernel sent the signal to a whole
//! process group (a terminal's Ctrl-C, Ctrl-\, resize or hang-up: `si_code == SI_KERNEL`) or a
//! process sent it to etcd-lock (`kill`, `si_code <= 0`). A terminal's signal already reached
//! CMD when CMD is in etcd-lock's process group, so forwarding it would deliver it twice.
//!
//! The handler only writes two bytes to a pipe (async-signal-safe); a plain thread turns them
//! into channel messages. Every other signal keeps its default action: if one ends etcd-lock,
//! CMD dies with it (`PR_SET_PDEATHSIG`, see `child.rs`).

use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::mpsc;

/// The signals etcd-lock catches and forwards, as flock users expect.
pub(crate) const CAUGHT: [libc::c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// One caught signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caught {
    /// The signal number.
    pub(crate) signo: libc::c_int,
    /// Sent by the kernel to the process group (terminal), not by a process to us alone.
    pub(crate) from_terminal: bool,
}

impl Caught {
    /// WINCH only tells about a terminal resize: it never ends a wait or a hold.
    pub(crate) fn ends_wait(&self) -> bool {
        self.signo != libc::SIGWINCH
    }
}

/// Receives caught signals.
#[derive(Debug)]
pub(crate) struct Signals {
    rx: mpsc::UnboundedReceiver<Caught>,
}

impl Signals {
    /// The next caught signal (never `None` while the process runs).
    pub(crate) async fn recv(&mut self) -> Option<Caught> {
        self.rx.recv().await
    }
}

/// The write end of the pipe, for the handler.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// etcd-lock's pid: a child between fork and exec still runs this handler (and holds the
/// pipe), and must not report its signals as etcd-lock's.
static OWN_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signo: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: only async-signal-safe calls (errno access, write(2)); `info` is the kernel's.
    unsafe {
        let errno = *libc::__errno_location();
        let kernel = !info.is_null() && (*info).si_code == libc::SI_KERNEL;
        let message = [signo as u8, u8::from(kernel)];
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 && libc::getpid() == OWN_PID.load(Ordering::Relaxed) {
            libc::write(fd, message.as_ptr().cast(), message.len());
        }
        *libc::__errno_location() = errno;
    }
}

/// Installs the handlers for [`CAUGHT`] and starts the reader thread. Call once, before CMD is
/// started (exec resets caught signals to their default action in CMD).
pub(crate) fn install() -> std::io::Result<Signals> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills `fds` on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // SAFETY: getpid has no preconditions.
    OWN_PID.store(unsafe { libc::getpid() }, Ordering::SeqCst);
    PIPE_WRITE.store(write_fd, Ordering::SeqCst);
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("etcd-lock-signals".into())
        .spawn(move || loop {
            let mut message = [0u8; 2];
            // SAFETY: reading into a local buffer from the pipe we own.
            let n = unsafe { libc::read(read_fd, message.as_mut_ptr().cast(), message.len()) };
            if n == 2 {
                let caught = Caught {
                    signo: libc::c_int::from(message[0]),
                    from_terminal: message[1] == 1,
                };
                if tx.send(caught).is_err() {
                    return;
                }
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                return;
            }
        })?;
    for signo in CAUGHT {
        // SAFETY: a zeroed sigaction with our handler, SA_SIGINFO so it receives siginfo;
        // SA_RESTART keeps other threads' syscalls from failing with EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signo, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(Signals { rx })
}

/// The conventional exit status for death by `signo`.
pub(crate) fn exit_code(signo: libc::c_int) -> u8 {
    u8::try_from(128 + signo).unwrap_or(255)
}
