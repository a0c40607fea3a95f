//! Where the password comes from: `ETCDCTL_PASSWORD`, `--password-file`, a prompt on the
//! terminal, or (with a warning: `ps` shows it to every local user) the command line.

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;

use crate::args::{Common, PasswordSource, Secret};

/// Completes `common`'s credentials: reads `--password-file`, warns about a password on the
/// command line, and prompts on the terminal for a user without a password.
pub(crate) fn resolve(common: &mut Common) -> Result<(), (u8, String)> {
    if let Some(path) = &common.password_file {
        let shown = path.to_string_lossy().into_owned();
        if common.password.as_ref().map(|(_, s)| *s) != Some(PasswordSource::CommandLine) {
            let file = std::fs::File::open(path)
                .map_err(|e| (crate::EXIT_USAGE, format!("--password-file {shown}: {e}")))?;
            let mut line = String::new();
            std::io::BufReader::new(file)
                .read_line(&mut line)
                .map_err(|e| (crate::EXIT_USAGE, format!("--password-file {shown}: {e}")))?;
            let password = line.trim_end_matches(['\n', '\r']).to_string();
            common.password = Some((Secret::new(password), PasswordSource::File));
        }
    }
    let Some(user) = &common.user else {
        if common.password.is_some() {
            return Err((
                crate::EXIT_USAGE,
                "a password was given without a user: add --user NAME (or ETCDCTL_USER)".into(),
            ));
        }
        return Ok(());
    };
    match &common.password {
        Some((_, PasswordSource::CommandLine)) => say!(
            "warning: a password on the command line is visible to other local users (ps); \
             prefer ETCDCTL_PASSWORD, --password-file or the terminal prompt"
        ),
        Some(_) => {}
        None => {
            let password = prompt(user).map_err(|e| {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    return (crate::signals::exit_code(libc::SIGINT), e.to_string());
                }
                let message = format!(
                    "no password for user {user}: set ETCDCTL_PASSWORD, use --password-file, \
                     or run in a terminal to be asked ({e})"
                );
                (crate::EXIT_USAGE, message)
            })?;
            common.password = Some((Secret::new(password), PasswordSource::Terminal));
        }
    }
    Ok(())
}

/// Asks for the password on the controlling terminal, without echo.
fn prompt(user: &str) -> std::io::Result<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd we hold open.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut quiet = saved;
    // No echo; no ISIG either, so Ctrl-C arrives as a character (and the settings are
    // restored below) instead of killing etcd-lock with echo left off.
    quiet.c_lflag &= !(libc::ECHO | libc::ISIG);
    quiet.c_lflag |= libc::ECHONL;
    // Ctrl-C (the interrupt character) ends the line at once, like Enter.
    quiet.c_cc[libc::VEOL] = saved.c_cc[libc::VINTR];
    write!(tty, "Password for {user}: ")?;
    tty.flush()?;
    // SAFETY: the same fd, a termios derived from its own.
    unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) };
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &saved) };
    read?;
    if line.contains(['\u{3}', '\u{4}']) || line.is_empty() {
        let _ = writeln!(tty);
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "interrupted at the prompt",
        ));
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
