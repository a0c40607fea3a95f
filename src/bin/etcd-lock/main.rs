//! `etcd-lock`: flock(1) for an etcd cluster, `etcdctl lock`/`elect` parity, plus the lockbench
//! v1 benchmark. See `etcd-lock --help` for usage and exit codes.

/// `eprintln!` that never panics: a closed terminal (hang-up) makes stderr fail with EIO, and a
/// panic there would end etcd-lock without releasing the lock.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "etcd-lock: {}", format_args!($($arg)*));
    }};
}

mod args;
mod bench;
mod bench_cmd;
mod child;
mod credentials;
mod elect;
mod flock;
mod log;
mod output;
mod signals;
mod tap_cmd;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use etcd_lock::{Client, ClientOptions};

/// Exit status when etcd-lock itself failed.
pub(crate) const EXIT_FAILED: u8 = 125;
/// Exit status for a usage error.
pub(crate) const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let mut command = match args::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(message) => {
            say!("{message}\nTry 'etcd-lock --help'.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let common = match &mut command {
        args::Command::Lock(a) => Some(&mut a.common),
        args::Command::Elect(a) => Some(&mut a.common),
        args::Command::Bench(a) => Some(&mut a.common),
        args::Command::Help(_) | args::Command::Version | args::Command::Tap(_) => None,
    };
    if let Some(common) = common {
        log::init(common.verbose);
        if let Err((code, message)) = credentials::resolve(common) {
            say!("{message}");
            return ExitCode::from(code);
        }
    }
    // One thread: the client spends most of its time waiting on etcd, and a single-threaded
    // runtime avoids cross-thread wake-ups (measured: about 40% less CPU per RPC than two
    // worker threads, and lower latency, in lockbench W1/W3/W4/W5). It also means CMD is
    // forked by the main thread, which lives as long as the process: PR_SET_PDEATHSIG fires
    // when the *thread* that forked exits (see child.rs).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = match command {
        args::Command::Help(text) => {
            output::line(text.trim_end());
            0
        }
        args::Command::Version => {
            output::line(&format!("etcd-lock {}", env!("CARGO_PKG_VERSION")));
            0
        }
        args::Command::Lock(a) => runtime.block_on(flock::run(a)),
        args::Command::Elect(a) => runtime.block_on(elect::run(a)),
        args::Command::Bench(a) => runtime.block_on(bench_cmd::run(a)),
        args::Command::Tap(a) => {
            log::init(0);
            runtime.block_on(tap_cmd::run(a))
        }
    };
    // Do not wait for background tasks (watch streams) to wind down.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Connects with the command's endpoints, timeouts, TLS files, credentials and wire log.
/// A library error as the CLI prints it: its text, then each cause in its `source()` chain
/// (the library's texts leave their causes out), and for a connection failure the flag to
/// check.
pub(crate) fn explain(error: &etcd_lock::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if matches!(error, etcd_lock::Error::Connect { .. }) {
        text.push_str("; check --endpoints");
    }
    text
}

pub(crate) async fn connect(common: &args::Common) -> Result<Client, String> {
    let mut options = ClientOptions::new();
    if let Some(t) = common.dial_timeout {
        options = options.with_connect_timeout(t.max(Duration::from_millis(1)));
    }
    if let Some(t) = common.command_timeout {
        options = options.with_request_timeout(Some(t.max(Duration::from_millis(1))));
    }
    let mut builder = Client::builder(&common.endpoints, options).map_err(|e| explain(&e))?;
    if common.cacert.is_some() || common.cert.is_some() || common.key.is_some() {
        let mut tls = etcd_lock::TlsOptions::new();
        if let Some(ca) = &common.cacert {
            tls = tls.with_ca_pem_file(ca);
        }
        match (&common.cert, &common.key) {
            (Some(cert), Some(key)) => tls = tls.with_identity_files(cert, key),
            (None, None) => {}
            _ => return Err("--cert and --key go together".into()),
        }
        builder = builder.tls(tls);
    }
    if let (Some(user), Some((password, _))) = (&common.user, &common.password) {
        builder = builder.auth(user, password.expose());
    }
    if let Some(target) = &common.wire_log {
        let sink = if target == "-" {
            etcd_lock::wirelog::JsonLines::stderr()
        } else {
            etcd_lock::wirelog::JsonLines::to_file(target)
                .map_err(|e| format!("--wire-log {}: {e}", target.to_string_lossy()))?
        };
        builder = builder.wire_log(Arc::new(sink));
    }
    builder.connect().await.map_err(|e| explain(&e))
}
