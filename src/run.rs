//! Dispatch: a parsed command line → the mode that serves it → one exit code.
//!
//! Invariant: this is the only place that turns errors into exit codes; nothing below it calls
//! `process::exit`.

use std::ffi::OsString;
use std::io::Write;

use crate::cli::{self, Cmd};
use crate::exit;

/// Writes to stdout, ignoring a closed pipe: pmi must not die because its reader went away.
pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Writes one line of pmi's own to stderr, ignoring a closed pipe.
pub fn err_line(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{s}");
}

/// The current-thread runtime both supervising modes run on; failure is an internal error.
pub fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            err_line(&format!("pmi: cannot start the runtime: {e}"));
            exit::INTERNAL
        })
}

/// `--kill-signal`, parsed; a bad name is a usage error.
pub fn kill_signal(opts: &cli::SupervisorOpts) -> Result<Option<i32>, i32> {
    match opts.kill_signal.as_deref() {
        None => Ok(None),
        Some(s) => crate::os::signals::parse(s).map(Some).ok_or_else(|| {
            err_line(&format!(
                "pmi: --kill-signal: '{s}' is not a signal name or number (e.g. TERM, SIGINT, 15)"
            ));
            exit::USAGE
        }),
    }
}

/// Entry point of the binary.
pub fn main(argv: Vec<OsString>) -> i32 {
    std::panic::set_hook(Box::new(|info| {
        // A panic is a bug; say where, loudly, whatever the log format.
        err_line(&format!("pmi: internal error (please report): {info}"));
    }));
    let cli = match cli::parse(argv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let socket = cli.socket.clone();
    match cli.cmd {
        Cmd::Run(r) => {
            if !r.command.is_empty() {
                if r.file.is_some() {
                    err_line("pmi: give either an apps file or `-- CMD`, not both");
                    return exit::USAGE;
                }
                return crate::single::run(r.command, &r.opts);
            }
            match r.file {
                Some(file) => crate::supervisor::run(&file, r.opts, socket),
                None => {
                    err_line("pmi: missing apps file. Usage: pmi [OPTIONS] <APPS_FILE> | pmi [OPTIONS] -- <CMD> [ARG]... (see pmi --help)");
                    exit::USAGE
                }
            }
        }
        Cmd::Check(c) => check(c),
        Cmd::Convert(c) => convert(c),
        Cmd::Completions { shell } => crate::complete::print(shell),
        Cmd::Monit {
            target,
            interval,
            count,
        } => crate::monit::run(socket, target, interval, count),
        Cmd::Version => {
            out(&format!("pmi {}\n", env!("CARGO_PKG_VERSION")));
            exit::OK
        }
        verb => crate::control::client::run(verb, socket),
    }
}

fn check(c: cli::CheckArgs) -> i32 {
    let base = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let opts = crate::config::LoadOptions {
        env_name: c.env,
        only: c.only,
        ..crate::config::LoadOptions::new()
    };
    match crate::config::load(&c.file, &base, &opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                err_line(&format!("warning: {w}"));
            }
            if c.strict && !loaded.warnings.is_empty() {
                err_line("pmi: --strict: warnings are errors");
                return exit::USAGE;
            }
            if c.json {
                match serde_json::to_string_pretty(&loaded.spec) {
                    Ok(s) => out(&format!("{s}\n")),
                    Err(e) => {
                        err_line(&format!("pmi: {e}"));
                        return exit::INTERNAL;
                    }
                }
            } else {
                out(&crate::config::summary(&loaded.spec));
            }
            exit::OK
        }
        Err(e) => {
            for d in &e.diagnostics {
                err_line(&format!("error: {d}"));
            }
            exit::USAGE
        }
    }
}

fn convert(c: cli::ConvertArgs) -> i32 {
    let base = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let opts = crate::config::LoadOptions {
        env_name: c.env,
        check_scripts: false,
        ..crate::config::LoadOptions::new()
    };
    match crate::config::convert(&c.file, &base, &opts) {
        Ok(yaml) => {
            out(&yaml);
            exit::OK
        }
        Err(e) => {
            for d in &e.diagnostics {
                err_line(&format!("error: {d}"));
            }
            exit::USAGE
        }
    }
}
