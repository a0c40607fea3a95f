//! Command-line parsing, by hand over `OsString`s: names and CMD arguments are bytes (etcd keys
//! are bytes), so a non-UTF-8 argument goes through unchanged; flags and numbers must be UTF-8
//! and get a usage error otherwise. No parser crate: the grammar has flock's
//! `NAME CMD..` without `--`, `-vvv`, and `-w` meaning `--wait SECS` or `--write-out json`
//! depending on its value, which a generic parser would not save us writing.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

pub(crate) const USAGE: &str = "\
etcd-lock: hold a distributed lock in etcd while a command runs (flock(1) for a cluster)

USAGE:
    etcd-lock [OPTIONS] NAME [--] CMD [ARGS..]   run CMD while holding lock NAME
    etcd-lock [OPTIONS] NAME                     hold NAME, print its key, release on a signal
    etcd-lock elect [OPTIONS] NAME PROPOSAL      campaign, print key and value while leader
    etcd-lock elect -l [OPTIONS] NAME            print every leader change (observe)
    etcd-lock bench [OPTIONS]                    lockbench v1 (etcd-lock bench --help)
    etcd-lock tap --listen ADDR --upstream URL   log any client's calls (etcd-lock tap --help)
    etcd-lock --help | --version

LOCK OPTIONS:
    --ttl SECS            session lease TTL in seconds [default 60]
    --via recipe|service  client-side recipe or etcd's Lock service [default recipe]
    -w, --wait, --timeout SECS
                          give up waiting for the lock after SECS (fractions allowed); 0 = one try
    -n, --nonblock        one try: exit 1 (or -E) at once when the lock is held by another
    -E, --conflict-exit-code N
                          exit status when -n or --wait/--timeout finds the lock busy
    --kill-after SECS     grace between SIGTERM and SIGKILL when the lease is about to be lost;
                          must fit in the TTL (see below) [default 5, at most TTL/2 - margin]
    -w, --write-out simple|json
                          hold/elect output: the key (simple, as etcdctl) or one JSON line

CONNECTION OPTIONS (elect and bench take them too):
    --endpoints URL,URL   etcd endpoints [env ETCDCTL_ENDPOINTS, default 127.0.0.1:2379]
    --dial-timeout SECS   connect timeout per endpoint [env ETCDCTL_DIAL_TIMEOUT, default 5]
    --command-timeout SECS  per-request timeout [env ETCDCTL_COMMAND_TIMEOUT, default 10]
    --cacert FILE         trust the CA certificates in FILE (PEM) for https:// endpoints [env ETCDCTL_CACERT]
    --cert FILE           client certificate (PEM) for mutual TLS [env ETCDCTL_CERT]
    --key FILE            the client certificate's private key (PEM) [env ETCDCTL_KEY]
    --user NAME[:PASSWORD]  authenticate as NAME (etcd auth) [env ETCDCTL_USER]
    --password-file FILE  read the password from FILE's first line
    --password PASSWORD   the password (visible in ps: prefer ETCDCTL_PASSWORD, --password-file
                          or the prompt) [env ETCDCTL_PASSWORD]
    --wire-log FILE|-     one JSON line per call attempt and stream message, to FILE (- = stderr)
    -v, --verbose         log etcd-lock's events to stderr: -v info, -vv debug, -vvv trace
    -h, --help            this text

Without a password from the sources above, etcd-lock asks for it on the terminal (when one is
attached). A password given on the command line is accepted with a warning.

Logging: warnings only by default, always on stderr. RUST_LOG takes a list of target=level
(e.g. RUST_LOG=etcd_lock=debug,tokio=info); -v raises etcd-lock's own level on top of it.

With --cacert, --cert or --key, endpoints without a scheme use TLS (https://), as etcdctl does.

CMD runs with ETCD_LOCK_KEY (the lock key), ETCD_LOCK_REV and ETCD_LOCK_FENCE (the key's create
revision: the fencing token) set, and without ETCDCTL_USER and ETCDCTL_PASSWORD; stdin, stdout
and stderr pass through. CMD never outlives etcd-lock: it is killed if etcd-lock dies (even by
SIGKILL). HUP INT TERM QUIT USR1 USR2 WINCH are forwarded to CMD, except a terminal's own
(Ctrl-C, Ctrl-\\, resize, hang-up), which CMD already received. CMD gets SIGTERM, then SIGKILL
after --kill-after, early enough that it is gone before etcd could expire the lease (when
keep-alives fail), and as soon as the lock key is deleted by someone else.

EXIT STATUS:
    CMD's own exit status when it ran to the end (128+N when killed by signal N)
    0    hold/elect form: released after a signal
    1    -n: the lock is held by another (or the -E code)
    2    usage error
    122  the lock was lost while CMD ran (lease expiring or revoked, key deleted); CMD was stopped
    124  --wait/--timeout expired before the lock was acquired (or the -E code); nothing left in etcd
    125  etcd-lock itself failed (cannot connect, etcd error)
    126  CMD could not be executed;  127  CMD not found
    128+N  signal N (HUP 129, INT 130, QUIT 131, TERM 143, ...) while waiting for the lock
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
    -q, --quiet           no progress lines on stderr (they are off anyway when stderr is not a terminal)
    -v, --verbose         log events to stderr (-vv debug, -vvv trace); RUST_LOG as for the lock form
    -h, --help            this text

bench connects in plaintext without authentication: it refuses --cacert, --cert, --key, --user,
--password, --password-file, --wire-log (and their ETCDCTL_* variables) rather than ignore them.
Run it against a dedicated test member.

WORKLOADS (single member on loopback recommended, data dir on /dev/shm):
    W1   1 worker, 2000 x acquire(lb/w1) + release            W1F  2000 x put + delete (the floor)
    W1T  2000 x the recipe's join txn + conditional-delete txn, no lock logic (W1's own floor)
    W2   8 workers, own connection + session, 250 x (acquire, get counter, put counter+1, release)
    W3   20000 puts of 256 B, 16 in flight                     W4   20000 linearizable gets, 16 in flight
    W5   1000 x lease grant(TTL 10) + revoke
";

pub(crate) const TAP_USAGE: &str = "\
etcd-lock tap: a transparent gRPC proxy in front of one etcd member that logs every call and
stream of any client (Go clientv3, etcdctl, this crate) in the --wire-log format

USAGE:
    etcd-lock tap --listen ADDR --upstream URL [--wire-log FILE|-] [TLS OPTIONS]

OPTIONS:
    --listen ADDR         address to accept clients on, e.g. 127.0.0.1:23790 (port 0: any free
                          port); the address taken is printed on stdout as `listening ADDR`
    --upstream URL        the member: http://host:port, https://host:port or host:port
    --wire-log FILE|-     one JSON line per call, stream message and connection, to FILE (a new
                          file, created 0600) or - (stderr); without it, nothing is decoded
    -h, --help            this text

TLS OPTIONS:
    --cert FILE, --key FILE
                          terminate the clients' TLS with this certificate chain and key (PEM)
    --client-ca FILE      require client certificates signed by these CAs (mutual TLS)
    --upstream-cacert FILE
                          CA certificates (PEM) for an https:// upstream (required for https)
    --upstream-cert FILE, --upstream-key FILE
                          the tap's client certificate and key for the member (mutual TLS)

Every log line carries `conn` (connection id) and `client` (the client's address); a `connect`
line per connection says which side used TLS and the peer certificate subjects. The tap runs
until SIGINT or SIGTERM.
";

/// `etcd-lock tap`.
#[derive(Debug, Default)]
pub(crate) struct TapArgs {
    pub(crate) listen: String,
    pub(crate) upstream: String,
    pub(crate) wire_log: Option<OsString>,
    pub(crate) cert: Option<OsString>,
    pub(crate) key: Option<OsString>,
    pub(crate) client_ca: Option<OsString>,
    pub(crate) upstream_cacert: Option<OsString>,
    pub(crate) upstream_cert: Option<OsString>,
    pub(crate) upstream_key: Option<OsString>,
}

/// Which lock or election implementation to use.
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

    /// The flavour as a run-time elector.
    pub(crate) fn elector(self) -> Box<dyn etcd_lock::election::DynElector> {
        match self {
            Via::Recipe => Box::new(etcd_lock::election::RecipeElection::new()),
            Via::Service => Box::new(etcd_lock::election::ServiceElection::new()),
        }
    }
}

/// Hold/elect output format (etcdctl's `-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOut {
    Simple,
    Json,
}

/// A password: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(password: String) -> Secret {
        Secret(password)
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `etcd-lock NAME [CMD..]`.
#[derive(Debug)]
pub(crate) struct LockArgs {
    pub(crate) common: Common,
    pub(crate) ttl: i64,
    pub(crate) via: Via,
    /// `--timeout`/`--wait`; `Some(0)` is one try.
    pub(crate) timeout: Option<Duration>,
    /// `-n`: one try.
    pub(crate) nonblock: bool,
    /// `-E`: the status for a busy lock (one try or timeout).
    pub(crate) conflict_exit: Option<u8>,
    /// `--kill-after`; `None`: 5 s, lowered to fit the TTL.
    pub(crate) kill_after: Option<Duration>,
    pub(crate) name: OsString,
    /// Empty: hold the lock and print its key until a signal.
    pub(crate) command: Vec<OsString>,
}

impl LockArgs {
    /// One try only: `-n`, or a zero `--wait`/`--timeout`.
    pub(crate) fn one_try(&self) -> bool {
        self.nonblock || self.timeout == Some(Duration::ZERO)
    }
}

/// `etcd-lock elect NAME [PROPOSAL]` / `elect -l NAME`.
#[derive(Debug)]
pub(crate) struct ElectArgs {
    pub(crate) common: Common,
    pub(crate) ttl: i64,
    pub(crate) via: Via,
    pub(crate) name: OsString,
    pub(crate) proposal: Option<OsString>,
    pub(crate) listen: bool,
}

/// `etcd-lock bench`.
#[derive(Debug)]
pub(crate) struct BenchArgs {
    pub(crate) common: Common,
    pub(crate) workloads: String,
    pub(crate) via: String,
    pub(crate) scale: f64,
    pub(crate) compact: bool,
    pub(crate) quiet: bool,
    pub(crate) contenders: Vec<usize>,
    pub(crate) names: Option<usize>,
    pub(crate) waiters: Option<usize>,
    pub(crate) idle_secs: Option<u64>,
    pub(crate) duration_secs: Option<u64>,
    pub(crate) sample_secs: Option<u64>,
}

/// Where the password came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordSource {
    CommandLine,
    Environment,
    File,
    Terminal,
}

/// Options every command takes.
#[derive(Debug)]
pub(crate) struct Common {
    pub(crate) endpoints: Vec<String>,
    pub(crate) wire_log: Option<OsString>,
    /// `--cacert`: CA bundle for https:// endpoints.
    pub(crate) cacert: Option<OsString>,
    /// `--cert`: client certificate for mutual TLS.
    pub(crate) cert: Option<OsString>,
    /// `--key`: the client certificate's key.
    pub(crate) key: Option<OsString>,
    /// `--user NAME` (the part before `:`).
    pub(crate) user: Option<String>,
    /// The password and where it came from; `None` with a user means: ask on the terminal.
    pub(crate) password: Option<(Secret, PasswordSource)>,
    pub(crate) password_file: Option<OsString>,
    pub(crate) dial_timeout: Option<Duration>,
    pub(crate) command_timeout: Option<Duration>,
    /// How many `-v` (`-vv` counts two): 0 warnings only, 1 info, 2 debug, 3+ trace.
    pub(crate) verbose: u8,
    pub(crate) write_out: WriteOut,
    /// Flags and variables given (for bench's refusal), e.g. `--cacert`, `ETCDCTL_USER`.
    pub(crate) security_sources: Vec<String>,
}

impl Common {
    /// Defaults from etcdctl's environment variables.
    fn from_env() -> Result<Common, String> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let text = |name: &str| -> Result<Option<String>, String> {
            var(name)
                .map(|v| v.into_string().map_err(|_| format!("{name}: not UTF-8")))
                .transpose()
        };
        let mut common = Common {
            endpoints: default_endpoints()?,
            wire_log: None,
            cacert: var("ETCDCTL_CACERT"),
            cert: var("ETCDCTL_CERT"),
            key: var("ETCDCTL_KEY"),
            user: None,
            password: None,
            password_file: None,
            dial_timeout: text("ETCDCTL_DIAL_TIMEOUT")?
                .map(|v| etcd_duration("ETCDCTL_DIAL_TIMEOUT", &v))
                .transpose()?,
            command_timeout: text("ETCDCTL_COMMAND_TIMEOUT")?
                .map(|v| etcd_duration("ETCDCTL_COMMAND_TIMEOUT", &v))
                .transpose()?,
            verbose: 0,
            write_out: WriteOut::Simple,
            security_sources: Vec::new(),
        };
        for name in [
            "ETCDCTL_CACERT",
            "ETCDCTL_CERT",
            "ETCDCTL_KEY",
            "ETCDCTL_USER",
            "ETCDCTL_PASSWORD",
        ] {
            if var(name).is_some() {
                common.security_sources.push(name.to_string());
            }
        }
        if let Some(user) = text("ETCDCTL_USER")? {
            common.set_user(&user, PasswordSource::Environment)?;
        }
        if let Some(password) = text("ETCDCTL_PASSWORD")? {
            common.password = Some((Secret(password), PasswordSource::Environment));
        }
        Ok(common)
    }

    /// `NAME` or `NAME:PASSWORD` (the password may contain `:`).
    fn set_user(&mut self, raw: &str, source: PasswordSource) -> Result<(), String> {
        let (name, password) = match raw.split_once(':') {
            Some((name, password)) => (name, Some(password)),
            None => (raw, None),
        };
        if name.is_empty() {
            return Err("--user: expected NAME or NAME:PASSWORD".into());
        }
        self.user = Some(name.to_string());
        if let Some(password) = password {
            self.password = Some((Secret(password.to_string()), source));
        }
        Ok(())
    }

    /// Takes one of the flags every command shares; `Ok(false)` when `flag` is not one.
    fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, String> {
        match flag {
            "--endpoints" => {
                self.endpoints = split_list(&args.text(flag)?);
                if self.endpoints.is_empty() {
                    return Err("--endpoints: at least one endpoint is required".into());
                }
            }
            "--wire-log" => self.wire_log = Some(args.value(flag)?),
            "--cacert" => self.cacert = Some(args.value(flag)?),
            "--cert" => self.cert = Some(args.value(flag)?),
            "--key" => self.key = Some(args.value(flag)?),
            "--user" => {
                let raw = args.text(flag)?;
                self.set_user(&raw, PasswordSource::CommandLine)?;
            }
            "--password" => {
                self.password = Some((Secret(args.text(flag)?), PasswordSource::CommandLine));
            }
            "--password-file" => self.password_file = Some(args.value(flag)?),
            "--dial-timeout" => self.dial_timeout = Some(seconds(flag, &args.text(flag)?)?),
            "--command-timeout" => self.command_timeout = Some(seconds(flag, &args.text(flag)?)?),
            "--write-out" => self.write_out = write_out(&args.text(flag)?)?,
            "--verbose" => self.verbose = self.verbose.saturating_add(1),
            // `-v`, `-vv`, `-vvv`...
            f if f.len() > 1 && f.starts_with('-') && f[1..].bytes().all(|b| b == b'v') => {
                let count = u8::try_from(f.len() - 1).unwrap_or(u8::MAX);
                self.verbose = self.verbose.saturating_add(count);
            }
            _ => return Ok(false),
        }
        if matches!(
            flag,
            "--wire-log"
                | "--cacert"
                | "--cert"
                | "--key"
                | "--user"
                | "--password"
                | "--password-file"
        ) {
            self.security_sources.push(flag.to_string());
        }
        Ok(true)
    }
}

fn write_out(v: &str) -> Result<WriteOut, String> {
    match v {
        "simple" => Ok(WriteOut::Simple),
        "json" => Ok(WriteOut::Json),
        other => Err(format!(
            "--write-out: expected simple or json, got {other:?}"
        )),
    }
}

/// A top-level command.
#[derive(Debug)]
pub(crate) enum Command {
    Help(&'static str),
    Version,
    Lock(LockArgs),
    Elect(ElectArgs),
    Bench(BenchArgs),
    Tap(TapArgs),
}

fn default_endpoints() -> Result<Vec<String>, String> {
    let raw = match std::env::var_os("ETCDCTL_ENDPOINTS") {
        Some(v) => v
            .into_string()
            .map_err(|_| "ETCDCTL_ENDPOINTS: not UTF-8".to_string())?,
        None => String::new(),
    };
    let list = split_list(&raw);
    Ok(if list.is_empty() {
        vec!["127.0.0.1:2379".to_string()]
    } else {
        list
    })
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    match value.trim().parse::<f64>() {
        Ok(s) if (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{flag}: expected a number of seconds, got {value:?}"
        )),
    }
}

/// etcdctl's duration variables: `5s`, `500ms`, `2m`, or plain seconds.
fn etcd_duration(name: &str, value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        (v, 1.0)
    };
    match number.parse::<f64>() {
        Ok(s) if (0.0..1e9).contains(&(s * scale)) => Ok(Duration::from_secs_f64(s * scale)),
        _ => Err(format!(
            "{name}: expected a duration such as 5s or 500ms, got {value:?}"
        )),
    }
}

/// The argument list with `--flag=value` splitting and UTF-8 checks.
struct Args {
    it: std::iter::Peekable<std::vec::IntoIter<OsString>>,
    /// The value of the current `--flag=value`.
    inline: Option<OsString>,
}

impl Args {
    fn new(args: Vec<OsString>) -> Args {
        Args {
            it: args.into_iter().peekable(),
            inline: None,
        }
    }

    /// The next argument: `(flag text, raw)` where the flag text is set for anything that
    /// starts with `-` (a `--flag=value` is split, the value kept for [`Args::value`]).
    fn next(&mut self) -> Option<Result<(Option<String>, OsString), String>> {
        self.inline = None;
        let raw = self.it.next()?;
        let bytes = raw.as_bytes();
        if bytes.len() < 2 || bytes[0] != b'-' {
            return Some(Ok((None, raw)));
        }
        let (flag, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(eq) if bytes.starts_with(b"--") => (
                &bytes[..eq],
                Some(OsStr::from_bytes(&bytes[eq + 1..]).to_os_string()),
            ),
            _ => (bytes, None),
        };
        match std::str::from_utf8(flag) {
            Ok(f) => {
                let f = f.to_string();
                self.inline = inline;
                Some(Ok((Some(f), raw)))
            }
            Err(_) => Some(Err(format!(
                "unknown option {} (not UTF-8)",
                raw.to_string_lossy()
            ))),
        }
    }

    fn peek_is(&mut self, word: &str) -> bool {
        self.it
            .peek()
            .is_some_and(|a| a.as_bytes() == word.as_bytes())
    }

    /// The flag's value: inline after `=`, or the next argument.
    fn value(&mut self, flag: &str) -> Result<OsString, String> {
        match self.inline.take() {
            Some(v) => Ok(v),
            None => self
                .it
                .next()
                .ok_or_else(|| format!("{flag} needs a value")),
        }
    }

    /// The flag's value as UTF-8 text.
    fn text(&mut self, flag: &str) -> Result<String, String> {
        self.value(flag)?
            .into_string()
            .map_err(|v| format!("{flag}: {:?} is not UTF-8", v.to_string_lossy()))
    }

    fn rest(&mut self) -> Vec<OsString> {
        self.it.by_ref().collect()
    }
}

/// Parses `argv` (program name first).
pub(crate) fn parse(argv: Vec<OsString>) -> Result<Command, String> {
    let mut args = Args::new(argv.into_iter().skip(1).collect());
    if args.peek_is("bench") {
        args.it.next();
        return parse_bench(args);
    }
    if args.peek_is("elect") {
        args.it.next();
        return parse_elect(args);
    }
    if args.peek_is("tap") {
        args.it.next();
        return parse_tap(args);
    }
    let mut common = Common::from_env()?;
    let mut ttl = 60i64;
    let mut via = Via::Recipe;
    let mut timeout = None;
    let mut nonblock = false;
    let mut conflict_exit = None;
    let mut kill_after = None;
    let mut name = None;
    let mut command = Vec::new();
    while let Some(next) = args.next() {
        let (flag, raw) = next?;
        if name.is_some() {
            // flock-style: anything after NAME is the command, `--` optional.
            if raw.as_bytes() != b"--" {
                command.push(raw);
            }
            command.extend(args.rest());
            break;
        }
        let Some(flag) = flag else {
            name = Some(raw);
            continue;
        };
        if flag == "--" {
            return Err("missing lock NAME before --".into());
        }
        if common.take(&flag, &mut args)? {
            continue;
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help(USAGE)),
            "-V" | "--version" => return Ok(Command::Version),
            "--ttl" => ttl = whole_seconds(&flag, &args.text(&flag)?)?,
            "--via" => via = parse_via(&args.text(&flag)?)?,
            "--timeout" | "--wait" => timeout = Some(seconds(&flag, &args.text(&flag)?)?),
            // flock's -w SECS, or etcdctl's -w simple|json.
            "-w" => {
                let v = args.text(&flag)?;
                match v.as_str() {
                    "simple" | "json" => common.write_out = write_out(&v)?,
                    _ => timeout = Some(seconds("-w/--wait", &v)?),
                }
            }
            "-n" | "--nonblock" | "--no-wait" => nonblock = true,
            "-E" | "--conflict-exit-code" => {
                let v = args.text(&flag)?;
                conflict_exit =
                    Some(v.trim().parse::<u8>().map_err(|_| {
                        format!("{flag}: expected an exit status 0..=255, got {v:?}")
                    })?);
            }
            "--kill-after" => kill_after = Some(seconds(&flag, &args.text(&flag)?)?),
            f => return Err(format!("unknown option {f}")),
        }
    }
    let Some(name) = name else {
        return Err("missing lock NAME".into());
    };
    Ok(Command::Lock(LockArgs {
        common,
        ttl,
        via,
        timeout,
        nonblock,
        conflict_exit,
        kill_after,
        name,
        command,
    }))
}

fn whole_seconds(flag: &str, v: &str) -> Result<i64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: expected whole seconds, got {v:?}"))
}

fn parse_via(v: &str) -> Result<Via, String> {
    match v {
        "recipe" => Ok(Via::Recipe),
        "service" => Ok(Via::Service),
        other => Err(format!("--via: expected recipe or service, got {other:?}")),
    }
}

fn parse_elect(mut args: Args) -> Result<Command, String> {
    let mut common = Common::from_env()?;
    let mut ttl = 60i64;
    let mut via = Via::Recipe;
    let mut listen = false;
    let mut positional = Vec::new();
    while let Some(next) = args.next() {
        let (flag, raw) = next?;
        let Some(flag) = flag else {
            positional.push(raw);
            continue;
        };
        if flag == "--" {
            positional.extend(args.rest());
            break;
        }
        if common.take(&flag, &mut args)? {
            continue;
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help(USAGE)),
            "-l" | "--listen" => listen = true,
            "--ttl" => ttl = whole_seconds(&flag, &args.text(&flag)?)?,
            "--via" => via = parse_via(&args.text(&flag)?)?,
            "-w" => common.write_out = write_out(&args.text(&flag)?)?,
            f => return Err(format!("elect: unknown option {f}")),
        }
    }
    let mut positional = positional.into_iter();
    let Some(name) = positional.next() else {
        return Err("elect: missing election NAME".into());
    };
    let proposal = positional.next();
    if positional.next().is_some() {
        return Err("elect: expected NAME [PROPOSAL]".into());
    }
    match (listen, &proposal) {
        (true, Some(_)) => return Err("elect -l takes no PROPOSAL".into()),
        (false, None) => return Err("elect: missing PROPOSAL (or -l to observe)".into()),
        _ => {}
    }
    Ok(Command::Elect(ElectArgs {
        common,
        ttl,
        via,
        name,
        proposal,
        listen,
    }))
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

fn parse_bench(mut args: Args) -> Result<Command, String> {
    let mut common = Common::from_env()?;
    let mut workloads = "all".to_string();
    let mut via = "both".to_string();
    let mut scale = 1.0;
    let mut compact = false;
    let mut quiet = false;
    let mut contenders = Vec::new();
    let (mut names, mut waiters, mut idle_secs, mut duration_secs, mut sample_secs) =
        (None, None, None, None, None);
    while let Some(next) = args.next() {
        let (flag, raw) = next?;
        let Some(flag) = flag else {
            return Err(format!("bench: unknown argument {}", raw.to_string_lossy()));
        };
        if common.take(&flag, &mut args)? {
            continue;
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help(BENCH_USAGE)),
            "--workload" => workloads = args.text(&flag)?,
            "--compact" => compact = true,
            "-q" | "--quiet" => quiet = true,
            "--via" => via = args.text(&flag)?,
            "--contenders" => {
                contenders = args
                    .text(&flag)?
                    .split(',')
                    .map(|n| positive("--contenders", n))
                    .collect::<Result<_, _>>()?;
            }
            "--names" => names = Some(positive(&flag, &args.text(&flag)?)?),
            "--waiters" => waiters = Some(positive(&flag, &args.text(&flag)?)?),
            "--idle-secs" => {
                let v = args.text(&flag)?;
                idle_secs = Some(v.trim().parse::<u64>().map_err(|_| {
                    format!("--idle-secs: expected a whole number of seconds, got {v:?}")
                })?);
            }
            "--duration" => duration_secs = Some(positive(&flag, &args.text(&flag)?)? as u64),
            "--sample-secs" => sample_secs = Some(positive(&flag, &args.text(&flag)?)? as u64),
            "--scale" => {
                let v = args.text(&flag)?;
                scale = match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 && s <= 100.0 => s,
                    _ => return Err(format!("--scale: expected a number in (0, 100], got {v:?}")),
                };
            }
            other => return Err(format!("bench: unknown argument {other}")),
        }
    }
    if !common.security_sources.is_empty() {
        return Err(format!(
            "bench connects in plaintext without authentication and does not support {}; \
             run it against a dedicated test member without TLS or auth (unset the variables)",
            common.security_sources.join(", ")
        ));
    }
    Ok(Command::Bench(BenchArgs {
        common,
        workloads,
        via,
        scale,
        compact,
        quiet,
        contenders,
        names,
        waiters,
        idle_secs,
        duration_secs,
        sample_secs,
    }))
}

fn parse_tap(mut args: Args) -> Result<Command, String> {
    let mut tap = TapArgs::default();
    while let Some(next) = args.next() {
        let (flag, raw) = next?;
        let Some(flag) = flag else {
            return Err(format!("tap: unknown argument {}", raw.to_string_lossy()));
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help(TAP_USAGE)),
            "--listen" => tap.listen = args.text(&flag)?,
            "--upstream" => tap.upstream = args.text(&flag)?,
            "--wire-log" => tap.wire_log = Some(args.value(&flag)?),
            "--cert" => tap.cert = Some(args.value(&flag)?),
            "--key" => tap.key = Some(args.value(&flag)?),
            "--client-ca" => tap.client_ca = Some(args.value(&flag)?),
            "--upstream-cacert" => tap.upstream_cacert = Some(args.value(&flag)?),
            "--upstream-cert" => tap.upstream_cert = Some(args.value(&flag)?),
            "--upstream-key" => tap.upstream_key = Some(args.value(&flag)?),
            other => return Err(format!("tap: unknown argument {other}")),
        }
    }
    if tap.listen.is_empty() || tap.upstream.is_empty() {
        return Err("tap needs --listen ADDR and --upstream URL".into());
    }
    if tap.cert.is_some() != tap.key.is_some() {
        return Err("tap: --cert and --key go together".into());
    }
    if tap.upstream_cert.is_some() != tap.upstream_key.is_some() {
        return Err("tap: --upstream-cert and --upstream-key go together".into());
    }
    if tap.client_ca.is_some() && tap.cert.is_none() {
        return Err("tap: --client-ca needs --cert and --key (client TLS)".into());
    }
    Ok(Command::Tap(tap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tap() {
        let Ok(Command::Tap(t)) = parse(args(&[
            "tap",
            "--listen",
            "127.0.0.1:0",
            "--upstream=http://127.0.0.1:2379",
            "--wire-log",
            "-",
        ])) else {
            panic!("not tap");
        };
        assert_eq!(t.listen, "127.0.0.1:0");
        assert_eq!(t.upstream, "http://127.0.0.1:2379");
        assert_eq!(t.wire_log.as_deref(), Some(OsStr::new("-")));
        assert!(matches!(
            parse(args(&["tap", "--help"])),
            Ok(Command::Help(_))
        ));
        for bad in [
            &["tap", "--listen", "a:1"][..],
            &["tap", "--listen", "a:1", "--upstream", "b:2", "--cert", "c"],
            &[
                "tap",
                "--listen",
                "a:1",
                "--upstream",
                "b:2",
                "--client-ca",
                "c",
            ],
            &["tap", "--listen", "a:1", "--upstream", "b:2", "extra"],
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?}");
        }
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("etcd-lock")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn lock(list: &[&str]) -> LockArgs {
        match parse(args(list)) {
            Ok(Command::Lock(a)) => a,
            other => panic!("not a lock command: {other:?}"),
        }
    }

    #[test]
    fn parses_the_lock_form() {
        let a = lock(&[
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
        ]);
        assert_eq!(a.common.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(
            (a.ttl, a.via, a.name.as_os_str()),
            (5, Via::Service, OsStr::new("job"))
        );
        assert_eq!(a.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(
            a.command,
            vec![OsString::from("echo"), OsString::from("--flag")]
        );
        assert!(!a.one_try());
        // Without CMD: the hold form.
        assert!(lock(&["job"]).command.is_empty());
    }

    #[test]
    fn flock_and_etcdctl_short_options() {
        let a = lock(&["-n", "-E", "3", "job", "true"]);
        assert!(a.nonblock && a.one_try());
        assert_eq!(a.conflict_exit, Some(3));
        let a = lock(&["-w", "0", "job", "true"]);
        assert!(a.one_try() && !a.nonblock);
        let a = lock(&["-w", "2.5", "-w", "json", "job"]);
        assert_eq!(a.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(a.common.write_out, WriteOut::Json);
        let a = lock(&[
            "--wait=1",
            "--write-out=simple",
            "--dial-timeout",
            "2",
            "job",
        ]);
        assert_eq!(a.timeout, Some(Duration::from_secs(1)));
        assert_eq!(a.common.dial_timeout, Some(Duration::from_secs(2)));
        assert!(parse(args(&["-E", "300", "job"])).is_err());
        assert!(parse(args(&["-w", "soon", "job"])).is_err());
    }

    #[test]
    fn non_utf8_names_and_commands_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let name = OsString::from_vec(vec![b'j', 0xff, b'b']);
        let arg = OsString::from_vec(vec![0xfe, b'x']);
        let argv = vec![
            OsString::from("etcd-lock"),
            name.clone(),
            OsString::from("echo"),
            arg.clone(),
        ];
        let Ok(Command::Lock(a)) = parse(argv) else {
            panic!("not a lock command")
        };
        assert_eq!(
            (a.name, a.command),
            (name, vec![OsString::from("echo"), arg])
        );
        // A non-UTF-8 option or number is a usage error, not a panic.
        let bad_flag = vec![
            OsString::from("x"),
            OsString::from_vec(vec![b'-', 0xff]),
            OsString::from("job"),
        ];
        assert!(parse(bad_flag).is_err());
        let bad_ttl = vec![
            OsString::from("x"),
            OsString::from("--ttl"),
            OsString::from_vec(vec![0xff]),
            OsString::from("job"),
        ];
        assert!(parse(bad_ttl).is_err());
    }

    #[test]
    fn parses_tls_and_auth_flags_as_etcdctl_names_them() {
        let a = lock(&[
            "--cacert=ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client-key.pem",
            "--user",
            "app:pa:ss",
            "job",
            "true",
        ]);
        let c = &a.common;
        assert_eq!(c.cacert.as_deref(), Some(OsStr::new("ca.pem")));
        assert_eq!(c.cert.as_deref(), Some(OsStr::new("client.pem")));
        assert_eq!(c.key.as_deref(), Some(OsStr::new("client-key.pem")));
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(
            c.password.as_ref().map(|(p, s)| (p.expose(), *s)),
            Some(("pa:ss", PasswordSource::CommandLine))
        );
        // The password never shows in Debug output.
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("pa:ss") && debug.contains("redacted"),
            "{debug}"
        );
        let a = lock(&["--user", "app", "--password-file", "/p", "job"]);
        assert_eq!(a.common.user.as_deref(), Some("app"));
        assert!(a.common.password.is_none());
        assert!(parse(args(&["--user", ":x", "job", "true"])).is_err());
        // bench refuses what it would ignore.
        let refused = parse(args(&["bench", "--cacert", "ca.pem"]));
        assert!(refused.is_err_and(|e| e.contains("--cacert")));
    }

    #[test]
    fn parses_elect() {
        let Ok(Command::Elect(e)) = parse(args(&["elect", "--via", "service", "e", "p1"])) else {
            panic!("not elect")
        };
        assert_eq!((e.via, e.listen), (Via::Service, false));
        assert_eq!(e.proposal, Some(OsString::from("p1")));
        let Ok(Command::Elect(e)) = parse(args(&["elect", "-l", "e"])) else {
            panic!("not elect -l")
        };
        assert!(e.listen && e.proposal.is_none());
        assert!(parse(args(&["elect", "e"])).is_err());
        assert!(parse(args(&["elect", "-l", "e", "p"])).is_err());
    }

    #[test]
    fn counts_verbose_flags() {
        let a = lock(&["-v", "--verbose", "-vv", "job", "-v"]);
        // The -v after NAME belongs to the command.
        assert_eq!(
            (a.common.verbose, a.command.as_slice()),
            (4, &[OsString::from("-v")][..])
        );
        let Ok(Command::Bench(b)) = parse(args(&["bench", "-vvv", "-q"])) else {
            panic!("not a bench command")
        };
        assert_eq!((b.common.verbose, b.quiet), (3, true));
        assert!(parse(args(&["-vx", "job", "true"])).is_err());
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            &[][..],
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
