//! `etcd-lock tap`: runs an `etcd_lock::tap::Tap` until SIGINT or SIGTERM.

use std::ffi::OsString;
use std::sync::Arc;

use etcd_lock::tap::{tls, Tap};
use etcd_lock::wirelog::JsonLines;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::TapArgs;
use crate::{EXIT_FAILED, EXIT_USAGE};

fn read(flag: &str, path: &OsString) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.to_string_lossy()))
}

/// Runs the tap; the exit status.
pub(crate) async fn run(args: TapArgs) -> u8 {
    match start(&args).await {
        Ok(tap) => {
            crate::output::line(&format!("listening {}", tap.local_addr()));
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                say!("cannot install signal handlers");
                return EXIT_FAILED;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tap.shutdown().await;
            0
        }
        Err((code, message)) => {
            say!("tap: {message}");
            code
        }
    }
}

async fn start(args: &TapArgs) -> Result<etcd_lock::tap::TapHandle, (u8, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    let failed = |m: String| (EXIT_FAILED, m);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| failed(format!("--listen {}: {e}", args.listen)))?;
    let mut tap = Tap::new(listener, &args.upstream).map_err(|e| usage(e.to_string()))?;
    if let Some(target) = &args.wire_log {
        let sink = if target == "-" {
            JsonLines::stderr()
        } else {
            JsonLines::to_file(target)
                .map_err(|e| failed(format!("--wire-log {}: {e}", target.to_string_lossy())))?
        };
        tap = tap.wire_log(Arc::new(sink));
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        let ca = args
            .client_ca
            .as_ref()
            .map(|ca| read("--client-ca", ca))
            .transpose()
            .map_err(usage)?;
        let config = tls::server_config(
            &read("--cert", cert).map_err(usage)?,
            &read("--key", key).map_err(usage)?,
            ca.as_deref(),
        )
        .map_err(|e| usage(format!("client TLS: {e}")))?;
        tap = tap.client_tls(config);
    }
    if let Some(ca) = &args.upstream_cacert {
        let identity = match (&args.upstream_cert, &args.upstream_key) {
            (Some(cert), Some(key)) => Some((
                read("--upstream-cert", cert).map_err(usage)?,
                read("--upstream-key", key).map_err(usage)?,
            )),
            _ => None,
        };
        let config = tls::client_config(
            &read("--upstream-cacert", ca).map_err(usage)?,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        )
        .map_err(|e| usage(format!("upstream TLS: {e}")))?;
        tap = tap.upstream_tls(config);
    }
    tap.spawn().map_err(|e| usage(e.to_string()))
}
