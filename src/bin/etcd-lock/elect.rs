//! `etcd-lock elect NAME PROPOSAL` and `elect -l NAME`, as `etcdctl elect` does them: campaign
//! and print the leader key and value once elected, hold leadership until a signal, resign;
//! or print every leader (key and value lines) as it changes. Both election flavours
//! (`--via recipe|service`), `-w json` for one JSON line per leader.

use std::os::unix::ffi::OsStrExt;

use etcd_lock::election::DynElector;
use etcd_lock::{Elector, Error, Session, SessionOptions};

use crate::args::ElectArgs;
use crate::flock::EXIT_LOST;
use crate::signals::{self, Signals};
use crate::{output, EXIT_FAILED, EXIT_USAGE};

fn fail(message: impl std::fmt::Display) -> u8 {
    say!("{message}");
    EXIT_FAILED
}

pub(crate) async fn run(a: ElectArgs) -> u8 {
    let mut signals = match signals::install() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot install signal handlers: {e}")),
    };
    let elector: Box<dyn DynElector> = a.via.elector();
    let name = a.name.as_bytes().to_vec();
    let client = tokio::select! {
        c = crate::connect(&a.common) => match c {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        code = until_signal(&mut signals) => return code,
    };
    if a.listen {
        let mut observer = tokio::select! {
            o = elector.observe(&client, &name) => match o {
                Ok(o) => o,
                Err(e) => return fail(crate::explain(&e)),
            },
            _ = until_signal(&mut signals) => return 0,
        };
        loop {
            tokio::select! {
                next = observer.next() => match next {
                    Some(Ok(leader)) => output::leader(
                        a.common.write_out,
                        &name,
                        &leader.key,
                        &leader.value,
                        leader.lease,
                        leader.create_revision,
                    ),
                    Some(Err(e)) => return fail(crate::explain(&e)),
                    None => return fail("the election stream ended"),
                },
                _ = until_signal(&mut signals) => return 0,
            }
        }
    }
    let proposal = a
        .proposal
        .as_ref()
        .map(|p| p.as_bytes().to_vec())
        .unwrap_or_default();
    let session = tokio::select! {
        s = Session::with_options(&client, SessionOptions::new().with_ttl(a.ttl)) => match s {
            Ok(s) => s,
            Err(e @ Error::InvalidArgument { .. }) => {
                say!("{e}");
                return EXIT_USAGE;
            }
            Err(e) => return fail(crate::explain(&e)),
        },
        code = until_signal(&mut signals) => return code,
    };
    let leadership = tokio::select! {
        l = elector.campaign(&session, &name, &proposal) => match l {
            Ok(l) => l,
            Err(e) => {
                let _ = session.close().await;
                return fail(crate::explain(&e));
            }
        },
        code = until_signal(&mut signals) => {
            let _ = session.close().await;
            return code;
        }
    };
    output::leader(
        a.common.write_out,
        &name,
        leadership.key(),
        leadership.value(),
        leadership.lease(),
        leadership.revision(),
    );
    let lost = leadership.lost();
    tokio::select! {
        _ = lost => {
            say!("leadership of {} lost (lease {:x})", a.name.to_string_lossy(), session.lease());
            let _ = session.close().await;
            EXIT_LOST
        }
        _ = until_signal(&mut signals) => {
            if let Err(e) = elector.resign(leadership).await {
                say!("resigning: {}", crate::explain(&e));
            }
            let _ = session.close().await;
            0
        }
    }
}

/// Resolves with 128+N at the first signal that ends a wait.
async fn until_signal(signals: &mut Signals) -> u8 {
    loop {
        match signals.recv().await {
            Some(c) if c.ends_wait() => return signals::exit_code(c.signo),
            Some(_) => {}
            None => return EXIT_FAILED,
        }
    }
}
