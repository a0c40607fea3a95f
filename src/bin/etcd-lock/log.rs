//! `-v` and `RUST_LOG`: the library's (and this tool's) tracing events on stderr, through
//! tracing-subscriber's fmt layer and its `Targets` filter (a `target=level` list, no regex).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// The crate's target prefix: the library's modules and this binary's (`etcd_lock::flock`).
const OWN_TARGET: &str = "etcd_lock";

/// The filter for `verbose` times `-v` and the `RUST_LOG` value `rust_log`: `RUST_LOG` (or
/// warnings only) for every target, then `-v` sets etcd-lock's own level (info, debug, trace).
/// A `RUST_LOG` that does not parse is reported in `Err` with the default filter to use.
pub(crate) fn filter(verbose: u8, rust_log: Option<&str>) -> (Targets, Option<String>) {
    let default = Targets::new().with_default(LevelFilter::WARN);
    let (mut targets, problem) = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (default, None),
        Some(spec) => match spec.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (
                default,
                Some(format!(
                    "ignoring RUST_LOG={spec:?} ({e}); expected target=level pairs such as \
                     warn,etcd_lock=debug"
                )),
            ),
        },
    };
    let own = match verbose {
        0 => None,
        1 => Some(LevelFilter::INFO),
        2 => Some(LevelFilter::DEBUG),
        _ => Some(LevelFilter::TRACE),
    };
    if let Some(level) = own {
        targets = targets.with_target(OWN_TARGET, level);
    }
    (targets, problem)
}

/// Installs the stderr subscriber for `verbose` and the `RUST_LOG` environment variable.
pub(crate) fn init(verbose: u8) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (targets, problem) = filter(verbose, rust_log.as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(targets);
    let subscriber = tracing_subscriber::registry().with(layer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("etcd-lock: a tracing subscriber was already installed");
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(t: &Targets, target: &str, level: Level) -> bool {
        t.would_enable(target, &level)
    }

    #[test]
    fn levels_from_flags_and_rust_log() {
        let (quiet, none) = filter(0, None);
        assert!(none.is_none());
        assert!(enabled(&quiet, "etcd_lock::lock", Level::WARN));
        assert!(!enabled(&quiet, "etcd_lock::lock", Level::INFO));
        assert!(!enabled(&quiet, "h2", Level::INFO));

        let (v, _) = filter(1, None);
        assert!(enabled(&v, "etcd_lock::lock", Level::INFO));
        assert!(!enabled(&v, "etcd_lock::lock", Level::DEBUG));
        assert!(!enabled(&v, "h2", Level::INFO));
        let (vv, _) = filter(2, None);
        assert!(enabled(&vv, "etcd_lock::client", Level::DEBUG));
        let (vvv, _) = filter(3, None);
        assert!(enabled(&vvv, "etcd_lock::client", Level::TRACE));

        let (env, none) = filter(0, Some("h2=debug,etcd_lock::session=trace"));
        assert!(none.is_none());
        assert!(enabled(&env, "h2::proto", Level::DEBUG));
        assert!(enabled(&env, "etcd_lock::session", Level::TRACE));
        assert!(
            !enabled(&env, "etcd_lock::lock", Level::ERROR),
            "no default given"
        );

        let (bad, problem) = filter(1, Some("etcd_lock=loud"));
        assert!(problem.is_some_and(|p| p.contains("RUST_LOG")));
        assert!(enabled(&bad, "tonic", Level::WARN));
        assert!(enabled(&bad, "etcd_lock", Level::INFO));
    }
}
