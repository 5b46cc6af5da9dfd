//! Command-line types: argv → a supervisor run, single-command mode, or a client verb.
//!
//! Invariant: every outcome leaves through one exit code from `crate::exit`; usage errors are 2.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::LogFormat;
use crate::exit;

mod pm2;

#[derive(Debug, Parser)]
#[command(
    name = "pmi",
    version,
    about = "A PID 1 for containers that runs the apps of a pm2 apps file",
    after_help = "Forms:\n  pmi [OPTIONS] <APPS_FILE>        supervise the apps of a file\n  pmi [OPTIONS] -- <CMD> [ARG]...  run one command, as tini does\n  pmi <VERB> ...                   see the commands above"
)]
pub struct Cli {
    /// Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock).
    #[arg(long, global = true, env = "PMI_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Supervise the apps of a file (the default form), or run one command after `--`.
    Run(RunArgs),
    /// Validate an apps file and print the resolved apps; starts nothing.
    Check(CheckArgs),
    /// Print an apps file as pmi's canonical YAML.
    Convert(ConvertArgs),
    /// List the instances (pm2's columns).
    #[command(visible_aliases = ["ls", "list"])]
    Status {
        /// Print JSON instead of the table (schema in docs/status-json.md).
        #[arg(long)]
        json: bool,
        /// all, an app name or namespace, name:N, or an id (default: all).
        target: Option<String>,
    },
    /// Everything about one app, except environment values.
    Describe {
        /// all, an app name or namespace, name:N, or an id.
        target: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Start stopped instances.
    Start {
        /// all, an app name or namespace, name:N, or an id.
        target: String,
    },
    /// Stop instances gracefully.
    Stop {
        /// all, an app name or namespace, name:N, or an id.
        target: String,
    },
    /// Restart instances; returns once the new processes run.
    Restart {
        /// all, an app name or namespace, name:N, or an id.
        target: String,
    },
    /// Restart instances one at a time, so that some always serve (`reload FILE`: apply).
    Reload {
        /// all, an app name or namespace, name:N, or an id; or an apps file (then: apply).
        target: String,
    },
    /// Make the running apps match the (changed) apps file, or FILE.
    Apply {
        /// A new apps file (relative to this directory); default: the one pmi runs.
        file: Option<PathBuf>,
        /// List the changes, make none.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON (schema in docs/apply.md).
        #[arg(long)]
        json: bool,
    },
    /// pm2's habit: `startOrReload apps.yaml` is `apply apps.yaml`; an app name is a reload.
    #[command(name = "startOrReload", alias = "startorreload", hide = true)]
    StartOrReload {
        /// An apps file, or a reload target.
        target: String,
    },
    /// Set an app's instance count: N, +N or -N.
    Scale {
        /// The app's name.
        app: String,
        /// N (exactly), +N (more) or -N (fewer).
        #[arg(allow_hyphen_values = true)]
        count: String,
    },
    /// Send a signal to instances' process groups.
    Signal {
        /// A name (SIGUSR2, USR2) or a number.
        signal: String,
        /// all, an app name or namespace, name:N, or an id.
        target: String,
    },
    /// Show recent output, then optionally follow it.
    Logs(LogsArgs),
    /// Exec probe: exit 0 when healthy.
    Health {
        /// Readiness: every autostart app online.
        #[arg(long)]
        ready: bool,
    },
    /// Print the version.
    Version,
    /// A live status table, refreshed in place (`docker exec -it ctr pmi monit`).
    Monit {
        /// all (the default), an app name or namespace, name:N, or an id.
        target: Option<String>,
        /// Refresh interval in milliseconds (at least 250).
        #[arg(long, default_value_t = 2000, value_name = "MS")]
        interval: u64,
        /// Stop after this many frames (default: until Ctrl-C).
        #[arg(long, value_name = "N")]
        count: Option<u32>,
    },
    /// Print a shell completion script: `pmi completions bash > /etc/bash_completion.d/pmi`.
    Completions {
        /// The shell to write completions for.
        shell: Shell,
    },
}

/// The shells `pmi completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Options of the supervisor (each also settable in the file's `pmi:` block; the flag wins).
#[derive(Debug, Args, Clone, Default)]
pub struct SupervisorOpts {
    /// HTTP address for /livez /readyz /metrics /status (off unless set).
    #[arg(long, env = "PMI_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Use the env_NAME blocks of the apps.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Start only these apps (comma-separated names or namespaces).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub only: Option<Vec<String>>,
    /// How app output is written: raw, prefixed or json.
    #[arg(long, value_parser = parse_log_format, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Keep running when no app runs any more.
    #[arg(long)]
    pub no_auto_exit: bool,
    /// Default stop signal (apps may set kill_signal).
    #[arg(long, value_parser = parse_signal, value_name = "SIG")]
    pub kill_signal: Option<i32>,
    /// Default time from the stop signal to SIGKILL, in ms.
    #[arg(long, value_name = "MS")]
    pub kill_timeout: Option<u64>,
    /// More of pmi's own messages (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: SupervisorOpts,
    /// The apps file (.yaml .yml .json .js .cjs).
    pub file: Option<PathBuf>,
    /// Single-command mode: the command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Print the resolved apps as JSON (schema in docs/check-json.md).
    #[arg(long)]
    pub json: bool,
    /// Judge the file alone: scripts, cwd, interpreters and users are not looked up (CI lint
    /// before the build).
    #[arg(long)]
    pub file_only: bool,
    /// Use the env_NAME blocks of the apps, as the supervisor's --env.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Check only these apps (comma-separated names or namespaces).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub only: Option<Vec<String>>,
    /// The apps file (.yaml .yml .json .js .cjs).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Refused with a hint: convert keeps every env_NAME block.
    #[arg(long, value_name = "NAME", hide = true, value_parser = convert_refuses)]
    pub env: Option<String>,
    /// Refused with a hint: convert keeps every app.
    #[arg(long, value_name = "A,B", hide = true, value_parser = convert_refuses)]
    pub only: Option<String>,
    /// The apps file to convert (.js .cjs .json .yaml).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// all, an app name or namespace, name:N, or an id (default: all).
    pub target: Option<String>,
    /// How many recent lines to show.
    #[arg(long, default_value_t = 15)]
    pub lines: usize,
    /// Keep printing new lines as they come.
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Only stderr lines.
    #[arg(long, conflicts_with = "out")]
    pub err: bool,
    /// Only stdout lines.
    #[arg(long)]
    pub out: bool,
}

/// `pmi convert --env/--only`: a usage error that says where the choice belongs.
fn convert_refuses(_: &str) -> Result<String, String> {
    Err("convert keeps every app and every env_NAME block; choose at run time: `pmi --env NAME --only a,b apps.yaml`".into())
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "raw" => Ok(LogFormat::Raw),
        "prefixed" => Ok(LogFormat::Prefixed),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!(
            "'{s}' is not a log format: use raw, prefixed or json"
        )),
    }
}

/// `--kill-signal`: a name or number, parsed once here.
fn parse_signal(s: &str) -> Result<i32, String> {
    crate::os::signals::parse(s)
        .ok_or_else(|| format!("'{s}' is not a signal name or number (e.g. TERM, SIGINT, 15)"))
}

const VERBS: &[&str] = &[
    "run", "check", "convert", "status", "ls", "list", "describe", "start", "stop", "restart",
    "reload", "scale", "signal", "logs", "health", "version", "help",
];
/// Verbs of src/complete.rs and src/monit.rs (kept apart so VERBS stays short-element formatted).
const MORE_VERBS: &[&str] = &[
    "completions",
    "monit",
    "apply",
    "startOrReload",
    "startorreload",
];

/// Puts the implicit `run` verb in front of `pmi FILE` and `pmi -- CMD`.
pub fn normalize(mut argv: Vec<OsString>) -> Vec<OsString> {
    let first = argv.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_verb = VERBS.contains(&first) || MORE_VERBS.contains(&first);
    let top_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    if argv.len() > 1 && !is_verb && !top_flag {
        argv.insert(1, OsString::from("run"));
    }
    argv
}

/// The top-level help's list of the supervisor options, made from `run`'s own arguments so that
/// it cannot drift from them.
fn supervisor_help() -> String {
    let mut s =
        String::from("Supervisor options (pmi [OPTIONS] <APPS_FILE>, pmi [OPTIONS] -- <CMD>):\n");
    let cmd = Cli::command();
    let Some(run) = cmd.find_subcommand("run") else {
        return String::new();
    };
    for a in run.get_arguments().filter(|a| a.get_long().is_some()) {
        let mut flag = match a.get_short() {
            Some(c) => format!("-{c}, --{}", a.get_long().unwrap_or_default()),
            None => format!("    --{}", a.get_long().unwrap_or_default()),
        };
        if let Some(v) = a.get_value_names().and_then(|v| v.first()) {
            if a.get_action().takes_values() {
                flag.push_str(&format!(" <{v}>"));
            }
        }
        let mut help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(e) = a.get_env() {
            help.push_str(&format!(" [env: {}]", e.to_string_lossy()));
        }
        s.push_str(&format!("  {flag:<26} {help}\n"));
    }
    s
}

/// Parses argv; on a usage error prints it and returns the exit code.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, i32> {
    if let Some(msg) = pm2::hint(&argv) {
        eprintln!("{msg}");
        return Err(exit::USAGE);
    }
    let base = Cli::command();
    let after = format!(
        "{}\n\n{}",
        base.get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default(),
        supervisor_help()
    );
    let parsed = base
        .after_help(after)
        .try_get_matches_from(normalize(argv))
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => {
            let _ = e.print();
            Err(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn implicit_run_for_files_and_commands() {
        let cli = parse(argv(&["pmi", "apps.yaml"])).unwrap();
        assert!(matches!(cli.cmd, Cmd::Run(RunArgs { file: Some(_), .. })));
        let cli = parse(argv(&["pmi", "--kill-timeout", "50", "--", "sleep", "1"])).unwrap();
        match cli.cmd {
            Cmd::Run(r) => {
                assert_eq!(r.command, argv(&["sleep", "1"]));
                assert_eq!(r.opts.kill_timeout, Some(50));
                assert!(r.file.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_flag_and_argument_has_help() {
        let cmd = Cli::command();
        let mut missing = Vec::new();
        for sub in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for a in sub.get_arguments() {
                if a.get_help().is_none() && !a.is_hide_set() {
                    missing.push(format!("{} {}", sub.get_name(), a.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn verbs_and_usage_errors() {
        assert!(matches!(
            parse(argv(&["pmi", "ls"])).unwrap().cmd,
            Cmd::Status { .. }
        ));
        assert!(matches!(
            parse(argv(&["pmi", "scale", "api", "-1"])).unwrap().cmd,
            Cmd::Scale { .. }
        ));
        assert_eq!(
            parse(argv(&["pmi", "run", "--bogus", "x.yaml"])).unwrap_err(),
            2
        );
    }

    #[test]
    fn kill_signal_is_parsed_once_and_bad_names_are_usage_errors() {
        let cli = parse(argv(&["pmi", "--kill-signal", "SIGINT", "apps.yaml"])).unwrap();
        match cli.cmd {
            Cmd::Run(r) => assert_eq!(r.opts.kill_signal, Some(libc::SIGINT)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(argv(&["pmi", "--kill-signal", "NOPE", "apps.yaml"])).unwrap_err(),
            2
        );
        // `convert` keeps every env block: an `--env` there would be ignored, so it is refused.
        assert_eq!(
            parse(argv(&["pmi", "convert", "--env", "prod", "apps.yaml"])).unwrap_err(),
            2
        );
        assert_eq!(
            parse(argv(&["pmi", "convert", "--only", "a", "apps.yaml"])).unwrap_err(),
            2
        );
    }
}
