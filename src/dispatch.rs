//! Dispatch: a parsed command line → the mode that serves it → one exit code.
//!
//! Invariant: this is the only place that turns a mode's `exit::Failure` into an exit code and
//! prints it; nothing below it calls `process::exit`.

use std::ffi::OsString;

use crate::cli::{self, Cmd};
use crate::exit::{self, Failure};
use crate::term::{err_line, out};

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
    finish(mode(cli))
}

/// The mode a command line asks for, run to its end.
fn mode(cli: cli::Cli) -> Result<i32, Failure> {
    let socket = cli.socket.clone();
    match cli.cmd {
        Cmd::Run(r) => {
            if !r.command.is_empty() {
                if r.file.is_some() {
                    return Err(Failure::Usage(
                        "pmi: give either an apps file or `-- CMD`, not both".into(),
                    ));
                }
                return crate::single::run(r.command, &r.opts);
            }
            match r.file {
                Some(file) => crate::daemon::run(&file, r.opts, socket),
                None => Err(Failure::Usage("pmi: missing apps file. Usage: pmi [OPTIONS] <APPS_FILE> | pmi [OPTIONS] -- <CMD> [ARG]... (see pmi --help)".into())),
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
            Ok(exit::OK)
        }
        verb => crate::control::client::run(verb, socket),
    }
}

/// The one table from failures to exit codes.
fn finish(r: Result<i32, Failure>) -> i32 {
    let (msg, code) = match r {
        Ok(code) => return code,
        Err(Failure::Usage(m)) => (m, exit::USAGE),
        Err(Failure::Failed(m)) => (m, exit::FAILURE),
        Err(Failure::Unreachable(m)) => (m, exit::UNREACHABLE),
        Err(Failure::Internal(m)) => (m, exit::INTERNAL),
    };
    if !msg.is_empty() {
        err_line(&msg);
    }
    code
}

/// The problems of a failed load, one per line: warnings first, then errors (every problem at
/// once).
fn diagnostics(e: &crate::config::ConfigError) -> String {
    let lines: Vec<String> = e
        .warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .chain(e.diagnostics.iter().map(|d| format!("error: {d}")))
        .collect();
    lines.join("\n")
}

fn check(c: cli::CheckArgs) -> Result<i32, Failure> {
    let base = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let opts = crate::config::LoadOptions {
        env_name: c.env,
        only: c.only,
        check_scripts: !c.file_only,
        file_only: c.file_only,
        ..crate::config::LoadOptions::new()
    };
    let loaded =
        crate::config::load(&c.file, &base, &opts).map_err(|e| Failure::Usage(diagnostics(&e)))?;
    for w in &loaded.warnings {
        err_line(&format!("warning: {w}"));
    }
    if c.strict && !loaded.warnings.is_empty() {
        return Err(Failure::Usage("pmi: --strict: warnings are errors".into()));
    }
    if c.json {
        let s = serde_json::to_string_pretty(&loaded.spec)
            .map_err(|e| Failure::Internal(format!("pmi: {e}")))?;
        out(&format!("{s}\n"));
    } else {
        out(&crate::config::summary(&loaded.spec));
    }
    Ok(exit::OK)
}

fn convert(c: cli::ConvertArgs) -> Result<i32, Failure> {
    // `--env`/`--only` never get here: the parser refuses them with a hint.
    let base = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let (yaml, warnings) = crate::config::convert_with_warnings(&c.file, &base)
        .map_err(|e| Failure::Usage(diagnostics(&e)))?;
    for w in &warnings {
        err_line(&format!("warning: {w}"));
    }
    out(&yaml);
    Ok(exit::OK)
}
