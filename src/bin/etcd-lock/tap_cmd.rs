//! `etcd-lock tap`: runs an `etcd_lock::tap::Tap` until SIGINT or SIGTERM.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

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
        Ok((tap, file)) => {
            crate::output::line(&format!("listening {}", tap.local_addr()));
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                say!("cannot install signal handlers");
                return EXIT_FAILED;
            };
            // A file log is written a buffer at a time, and at least every 200 ms.
            let flusher = file.clone().map(|sink| {
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_millis(200));
                    loop {
                        every.tick().await;
                        sink.flush();
                    }
                })
            });
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tap.shutdown().await;
            if let Some(flusher) = flusher {
                flusher.abort();
            }
            if let Some(sink) = file {
                sink.flush();
            }
            0
        }
        Err((code, message)) => {
            say!("tap: {message}");
            code
        }
    }
}

/// The running tap, and its log file's sink when it writes to a file.
type Started = (etcd_lock::tap::TapHandle, Option<Arc<JsonLines>>);

async fn start(args: &TapArgs) -> Result<Started, (u8, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    let failed = |m: String| (EXIT_FAILED, m);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| failed(format!("--listen {}: {e}", args.listen)))?;
    let mut tap = Tap::new(listener, &args.upstream).map_err(|e| usage(e.to_string()))?;
    let mut file = None;
    if let Some(target) = &args.wire_log {
        let sink = if target == "-" {
            Arc::new(JsonLines::stderr())
        } else {
            let sink =
                Arc::new(JsonLines::to_file_buffered(target).map_err(|e| {
                    failed(format!("--wire-log {}: {e}", target.to_string_lossy()))
                })?);
            file = Some(Arc::clone(&sink));
            sink
        };
        tap = tap.wire_log(sink);
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
    let tap = tap.spawn().map_err(|e| usage(e.to_string()))?;
    Ok((tap, file))
}
