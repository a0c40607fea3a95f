//! Command-line parsing (by hand: no parser crate, to keep the binary small).

use std::time::Duration;

pub(crate) const USAGE: &str = "\
etcd-lock: hold a distributed lock in etcd while a command runs (flock(1) for a cluster)

USAGE:
    etcd-lock [OPTIONS] NAME -- CMD [ARGS..]
    etcd-lock bench [OPTIONS]
    etcd-lock --help | --version

OPTIONS:
    --endpoints URL,URL   etcd endpoints [env ETCDCTL_ENDPOINTS, default 127.0.0.1:2379]
    --ttl SECS            session lease TTL in seconds [default 60]
    --via recipe|service  client-side recipe or etcd's Lock service [default recipe]
    --timeout SECS        give up waiting for the lock after SECS (fractions allowed)
    --kill-after SECS     grace between SIGTERM and SIGKILL when the lock is lost [default 5]
    --wire-log FILE|-     write one JSON line per call attempt and per stream message (Watch, LeaseKeepAlive, Observe) to FILE (or stderr with -)
    --cacert FILE         trust the CA certificates in FILE (PEM) for https:// endpoints [env ETCDCTL_CACERT]
    --cert FILE           client certificate (PEM) for mutual TLS [env ETCDCTL_CERT]
    --key FILE            the client certificate's private key (PEM) [env ETCDCTL_KEY]
    --user NAME:PASSWORD  authenticate as NAME (etcd auth) [env ETCDCTL_USER]
    -v, --verbose         log etcd-lock's events to stderr: -v info, -vv debug, -vvv trace
    -h, --help            this text

Logging: warnings only by default, always on stderr. RUST_LOG takes a list of target=level
(e.g. RUST_LOG=etcd_lock=debug,h2=info); -v raises etcd-lock's own level on top of it.

With --cacert, --cert or --key, endpoints without a scheme use TLS (https://), as etcdctl does.

CMD runs with ETCD_LOCK_KEY (the lock key) and ETCD_LOCK_FENCE (the fencing token) set;
stdin, stdout and stderr pass through.

EXIT STATUS:
    CMD's own exit status when it ran to the end (128+N when killed by signal N)
    2    usage error
    122  the lock was lost while CMD ran (lease expired or revoked); CMD was terminated
    124  --timeout expired before the lock was acquired (nothing left in etcd)
    125  etcd-lock itself failed (cannot connect, etcd error)
    126  CMD could not be executed;  127  CMD not found
    130  interrupted while waiting for the lock
";

pub(crate) const BENCH_USAGE: &str = "\
etcd-lock bench: lockbench v1, one JSON line per workload and flavour on stdout, a table on stderr

USAGE:
    etcd-lock bench [--endpoints URL,URL] [--workload W1,W2|all|scale] [--via recipe|service|both] [--scale X]

OPTIONS:
    --endpoints URL,URL   etcd endpoints [env ETCDCTL_ENDPOINTS, default 127.0.0.1:2379]
    --workload LIST       W1 W1F W1T W2 W2F W3 W4 W5 W6 W7 W2L, comma separated; all (W1F W1T W1
                          W2F W2 W3 W4 W5) or scale (W2F W2 W6 W7) [default all]
    --via FLAVOUR         recipe, service or both [default both]
    --scale X             multiply every workload's op count by X (e.g. 0.1 for a quick run) [default 1]
    --contenders LIST     W2 once per count, e.g. 8,64,256 [default 8]
    --names N             W6 distinct names [default 10000]
    --waiters N           W7 tasks (sessions) on one client [default 1000]
    --idle-secs S         W6 idle time before counting watches and RSS again [default 40]
    --duration S          W2L run time, seconds [default 600]
    --sample-secs S       W2L time between samples [default 30]
    --compact             compact the cluster's history after each workload (dedicated clusters only)
    --cacert, --cert, --key FILE, --user NAME:PASSWORD   TLS and auth, as for the lock form
    -v, --verbose         log events to stderr (-vv debug, -vvv trace); RUST_LOG as for the lock form
    -h, --help            this text

WORKLOADS (single member on loopback recommended, data dir on /dev/shm):
    W1   1 worker, 2000 x acquire(lb/w1) + release            W1F  2000 x put + delete (the floor)
    W1T  2000 x the recipe's join txn + conditional-delete txn, no lock logic (W1's own floor)
    W2   8 workers, own connection + session, 250 x (acquire, get counter, put counter+1, release)
    W3   20000 puts of 256 B, 16 in flight                     W4   20000 linearizable gets, 16 in flight
    W5   1000 x lease grant(TTL 10) + revoke
";

/// Which lock implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Recipe,
    Service,
}

impl Via {
    /// The flavour as a run-time locker, so `flock` has one code path for both.
    pub(crate) fn locker(self) -> Box<dyn etcd_lock::lock::DynLocker> {
        match self {
            Via::Recipe => Box::new(etcd_lock::lock::RecipeLock::new()),
            Via::Service => Box::new(etcd_lock::lock::ServiceLock::new()),
        }
    }
}

/// `etcd-lock NAME -- CMD`.
#[derive(Debug)]
pub(crate) struct LockArgs {
    pub(crate) common: Common,
    pub(crate) ttl: i64,
    pub(crate) via: Via,
    pub(crate) timeout: Option<Duration>,
    pub(crate) kill_after: Duration,
    pub(crate) name: String,
    pub(crate) command: Vec<String>,
}

/// `etcd-lock bench`.
#[derive(Debug)]
pub(crate) struct BenchArgs {
    pub(crate) common: Common,
    pub(crate) workloads: String,
    pub(crate) via: String,
    pub(crate) scale: f64,
    pub(crate) compact: bool,
    pub(crate) contenders: Vec<usize>,
    pub(crate) names: Option<usize>,
    pub(crate) waiters: Option<usize>,
    pub(crate) idle_secs: Option<u64>,
    pub(crate) duration_secs: Option<u64>,
    pub(crate) sample_secs: Option<u64>,
}

/// Parses a positive whole number for `flag`.
fn positive(flag: &str, v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{flag}: expected a whole number above 0, got {v:?}"
        )),
    }
}

/// Options every command takes.
#[derive(Debug)]
pub(crate) struct Common {
    pub(crate) endpoints: Vec<String>,
    pub(crate) wire_log: Option<String>,
    /// `--cacert`: CA bundle for https:// endpoints.
    pub(crate) cacert: Option<String>,
    /// `--cert`: client certificate for mutual TLS.
    pub(crate) cert: Option<String>,
    /// `--key`: the client certificate's key.
    pub(crate) key: Option<String>,
    /// `--user NAME:PASSWORD`, split.
    pub(crate) user: Option<(String, String)>,
    /// How many `-v` (`-vv` counts two): 0 warnings only, 1 info, 2 debug, 3+ trace.
    pub(crate) verbose: u8,
}

impl Common {
    /// Defaults from etcdctl's environment variables.
    fn from_env() -> Result<Common, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Common {
            endpoints: default_endpoints(),
            wire_log: None,
            cacert: var("ETCDCTL_CACERT"),
            cert: var("ETCDCTL_CERT"),
            key: var("ETCDCTL_KEY"),
            user: var("ETCDCTL_USER").map(|u| user_pass(&u)).transpose()?,
            verbose: 0,
        })
    }

    /// Takes one of the flags every command shares; `Ok(false)` when `flag` is not one.
    fn take(
        &mut self,
        flag: &str,
        inline: Option<String>,
        rest: &mut impl Iterator<Item = String>,
    ) -> Result<bool, String> {
        match flag {
            "--endpoints" => {
                self.endpoints = split_list(&value_of(flag, inline, rest)?);
                if self.endpoints.is_empty() {
                    return Err("--endpoints: at least one endpoint is required".into());
                }
            }
            "--wire-log" => self.wire_log = Some(value_of(flag, inline, rest)?),
            "--cacert" => self.cacert = Some(value_of(flag, inline, rest)?),
            "--cert" => self.cert = Some(value_of(flag, inline, rest)?),
            "--key" => self.key = Some(value_of(flag, inline, rest)?),
            "--user" => self.user = Some(user_pass(&value_of(flag, inline, rest)?)?),
            "--verbose" => self.verbose = self.verbose.saturating_add(1),
            // `-v`, `-vv`, `-vvv`...
            f if f.len() > 1 && f.starts_with('-') && f[1..].bytes().all(|b| b == b'v') => {
                let count = u8::try_from(f.len() - 1).unwrap_or(u8::MAX);
                self.verbose = self.verbose.saturating_add(count);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Splits `NAME:PASSWORD` (the password may contain `:`).
fn user_pass(raw: &str) -> Result<(String, String), String> {
    match raw.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_string(), password.to_string())),
        _ => Err("--user: expected NAME:PASSWORD".to_string()),
    }
}

#[derive(Debug)]
pub(crate) enum Command {
    Help(&'static str),
    Version,
    Lock(LockArgs),
    Bench(BenchArgs),
}

fn default_endpoints() -> Vec<String> {
    let raw = std::env::var("ETCDCTL_ENDPOINTS").unwrap_or_default();
    let list = split_list(&raw);
    if list.is_empty() {
        vec!["127.0.0.1:2379".to_string()]
    } else {
        list
    }
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(s) if (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{flag}: expected a number of seconds, got {value:?}"
        )),
    }
}

/// Splits `--flag=value` or takes the next argument as the value.
fn value_of(
    flag: &str,
    inline: Option<String>,
    rest: &mut impl Iterator<Item = String>,
) -> Result<String, String> {
    match inline {
        Some(v) => Ok(v),
        None => rest.next().ok_or_else(|| format!("{flag} needs a value")),
    }
}

pub(crate) fn parse(args: Vec<String>) -> Result<Command, String> {
    let mut it = args.into_iter().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("bench") {
        it.next();
        return parse_bench(it);
    }
    let mut common = Common::from_env()?;
    let mut ttl = 60i64;
    let mut via = Via::Recipe;
    let mut timeout = None;
    let mut kill_after = Duration::from_secs(5);
    let mut name = None;
    let mut command = Vec::new();
    while let Some(arg) = it.next() {
        if arg == "--" {
            command.extend(it.by_ref());
            break;
        }
        if name.is_some() {
            // flock-style: anything after NAME is the command, `--` optional.
            command.push(arg);
            command.extend(it.by_ref());
            break;
        }
        let (flag, inline) = split_flag(&arg);
        if common.take(&flag, inline.clone(), &mut it)? {
            continue;
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help(USAGE)),
            "-V" | "--version" => return Ok(Command::Version),
            "--ttl" => {
                let v = value_of(&flag, inline, &mut it)?;
                ttl = v
                    .parse()
                    .map_err(|_| format!("--ttl: expected whole seconds, got {v:?}"))?;
            }
            "--via" => {
                via = match value_of(&flag, inline, &mut it)?.as_str() {
                    "recipe" => Via::Recipe,
                    "service" => Via::Service,
                    other => {
                        return Err(format!("--via: expected recipe or service, got {other:?}"))
                    }
                }
            }
            "--timeout" => timeout = Some(seconds(&flag, &value_of(&flag, inline, &mut it)?)?),
            "--kill-after" => kill_after = seconds(&flag, &value_of(&flag, inline, &mut it)?)?,
            f if f.starts_with('-') && f.len() > 1 => return Err(format!("unknown option {f}")),
            _ => name = Some(arg),
        }
    }
    let Some(name) = name else {
        return Err("missing lock NAME".into());
    };
    if command.is_empty() {
        return Err("missing CMD to run while holding the lock (NAME -- CMD [ARGS..])".into());
    }
    Ok(Command::Lock(LockArgs {
        common,
        ttl,
        via,
        timeout,
        kill_after,
        name,
        command,
    }))
}

/// `--flag=value` -> (`--flag`, `Some(value)`); anything else is the flag alone.
fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

fn parse_bench(mut it: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut common = Common::from_env()?;
    let mut workloads = "all".to_string();
    let mut via = "both".to_string();
    let mut scale = 1.0;
    let mut compact = false;
    let mut contenders = Vec::new();
    let (mut names, mut waiters, mut idle_secs, mut duration_secs, mut sample_secs) =
        (None, None, None, None, None);
    while let Some(arg) = it.next() {
        let (flag, inline) = split_flag(&arg);
        if common.take(&flag, inline.clone(), &mut it)? {
            continue;
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help(BENCH_USAGE)),
            "--workload" => workloads = value_of(&flag, inline, &mut it)?,
            "--compact" => compact = true,
            "--via" => via = value_of(&flag, inline, &mut it)?,
            "--contenders" => {
                let v = value_of(&flag, inline, &mut it)?;
                contenders = v
                    .split(',')
                    .map(|n| positive("--contenders", n))
                    .collect::<Result<_, _>>()?;
            }
            "--names" => names = Some(positive(&flag, &value_of(&flag, inline, &mut it)?)?),
            "--waiters" => waiters = Some(positive(&flag, &value_of(&flag, inline, &mut it)?)?),
            "--idle-secs" => {
                let v = value_of(&flag, inline, &mut it)?;
                idle_secs = Some(v.trim().parse::<u64>().map_err(|_| {
                    format!("--idle-secs: expected a whole number of seconds, got {v:?}")
                })?);
            }
            "--duration" => {
                duration_secs = Some(positive(&flag, &value_of(&flag, inline, &mut it)?)? as u64)
            }
            "--sample-secs" => {
                sample_secs = Some(positive(&flag, &value_of(&flag, inline, &mut it)?)? as u64)
            }
            "--scale" => {
                let v = value_of(&flag, inline, &mut it)?;
                scale = match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 && s <= 100.0 => s,
                    _ => return Err(format!("--scale: expected a number in (0, 100], got {v:?}")),
                };
            }
            other => return Err(format!("bench: unknown argument {other}")),
        }
    }
    if common.endpoints.is_empty() {
        return Err("--endpoints: at least one endpoint is required".into());
    }
    Ok(Command::Bench(BenchArgs {
        common,
        workloads,
        via,
        scale,
        compact,
        contenders,
        names,
        waiters,
        idle_secs,
        duration_secs,
        sample_secs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("etcd-lock")
            .chain(list.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn parses_the_lock_form() {
        let Ok(Command::Lock(a)) = parse(args(&[
            "--endpoints=a:1,b:2",
            "--ttl",
            "5",
            "--via",
            "service",
            "--timeout",
            "1.5",
            "job",
            "--",
            "echo",
            "--flag",
        ])) else {
            panic!("not a lock command")
        };
        assert_eq!(a.common.endpoints, vec!["a:1", "b:2"]);
        assert_eq!((a.ttl, a.via, a.name.as_str()), (5, Via::Service, "job"));
        assert_eq!(a.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(a.command, vec!["echo", "--flag"]);
    }

    #[test]
    fn parses_tls_and_auth_flags_as_etcdctl_names_them() {
        let Ok(Command::Lock(a)) = parse(args(&[
            "--cacert=ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client-key.pem",
            "--user",
            "app:pa:ss",
            "job",
            "true",
        ])) else {
            panic!("not a lock command")
        };
        let c = &a.common;
        assert_eq!(c.cacert.as_deref(), Some("ca.pem"));
        assert_eq!(c.cert.as_deref(), Some("client.pem"));
        assert_eq!(c.key.as_deref(), Some("client-key.pem"));
        assert_eq!(c.user, Some(("app".into(), "pa:ss".into())));
        assert!(parse(args(&["--user", "nopassword", "job", "true"])).is_err());
        let Ok(Command::Bench(b)) = parse(args(&["bench", "--cacert", "ca.pem"])) else {
            panic!("not a bench command")
        };
        assert_eq!(b.common.cacert.as_deref(), Some("ca.pem"));
    }

    #[test]
    fn counts_verbose_flags() {
        let Ok(Command::Lock(a)) = parse(args(&["-v", "--verbose", "-vv", "job", "-v"])) else {
            panic!("not a lock command")
        };
        // The -v after NAME belongs to the command.
        assert_eq!(
            (a.common.verbose, a.command.as_slice()),
            (4, &["-v".to_string()][..])
        );
        let Ok(Command::Bench(b)) = parse(args(&["bench", "-vvv"])) else {
            panic!("not a bench command")
        };
        assert_eq!(b.common.verbose, 3);
        assert!(parse(args(&["-vx", "job", "true"])).is_err());
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            &["job"][..],
            &["--ttl", "x", "job", "--", "true"],
            &["--via", "magic", "job", "--", "true"],
            &["--timeout", "-1", "job", "--", "true"],
            &["--bogus", "job", "--", "true"],
            &["--", "true"],
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
