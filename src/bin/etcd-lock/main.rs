//! `etcd-lock`: flock(1) for an etcd cluster, plus the lockbench v1 benchmark.
//! See `etcd-lock --help` for usage and exit codes.

mod args;
mod bench_cmd;
mod flock;
mod log;

use std::process::ExitCode;
use std::sync::Arc;

use etcd_lock::{Client, ClientOptions};

/// Exit status when etcd-lock itself failed.
pub(crate) const EXIT_FAILED: u8 = 125;
/// Exit status for a usage error.
pub(crate) const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let command = match args::parse(std::env::args().collect()) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("etcd-lock: {message}\nTry 'etcd-lock --help'.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match &command {
        args::Command::Lock(a) => log::init(a.common.verbose),
        args::Command::Bench(a) => log::init(a.common.verbose),
        args::Command::Help(_) | args::Command::Version => {}
    }
    // One thread: the client spends most of its time waiting on etcd, and a single-threaded
    // runtime avoids cross-thread wake-ups (measured: about 40% less CPU per RPC than two
    // worker threads, and lower latency, in lockbench W1/W3/W4/W5).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etcd-lock: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = match command {
        args::Command::Help(text) => {
            print!("{text}");
            0
        }
        args::Command::Version => {
            println!("etcd-lock {}", env!("CARGO_PKG_VERSION"));
            0
        }
        args::Command::Lock(a) => runtime.block_on(flock::run(a)),
        args::Command::Bench(a) => runtime.block_on(bench_cmd::run(a)),
    };
    // Do not wait for background tasks (watch streams) to wind down.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Connects with the command's endpoints, TLS files, user and optional wire log.
pub(crate) async fn connect(common: &args::Common) -> Result<Client, String> {
    let mut builder =
        Client::builder(&common.endpoints, ClientOptions::new()).map_err(|e| e.to_string())?;
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
    if let Some((user, password)) = &common.user {
        builder = builder.auth(user, password);
    }
    if let Some(target) = &common.wire_log {
        let sink = if target == "-" {
            etcd_lock::wirelog::JsonLines::stderr()
        } else {
            etcd_lock::wirelog::JsonLines::to_file(target)
                .map_err(|e| format!("--wire-log {target}: {e}"))?
        };
        builder = builder.wire_log(Arc::new(sink));
    }
    builder.connect().await.map_err(|e| e.to_string())
}
