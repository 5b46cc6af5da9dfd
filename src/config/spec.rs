//! Validated domain types: what the rest of pmi runs on.
//!
//! Invariant: a `Spec` is complete and consistent. Every default is applied, every alias resolved,
//! every duration in `Duration`, every size in bytes, `instances` counted for this machine. Nothing
//! downstream re-reads the raw file or re-validates a value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Most instances one app may have, from the file or from `pmi scale`: a typo must not make PID 1
/// fork until the machine runs out of processes.
pub const MAX_INSTANCES: u32 = 4096;

/// The whole apps file, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// The apps file, absolute.
    pub file: PathBuf,
    /// The `--env NAME` in force, if any.
    pub env_name: Option<String>,
    /// How `instances: max` (0, -N) was counted, when an app used it: "max = 2: cgroup quota
    /// 1.5 CPUs (cpu.max), rounded up".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    pub settings: Settings,
    pub apps: Vec<AppSpec>,
}

/// Supervisor settings: the top-level `pmi:` block, overridden by command-line flags.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Settings {
    pub socket: Option<PathBuf>,
    pub http: Option<String>,
    pub log_format: Option<LogFormat>,
    /// `None` means the default (on).
    pub auto_exit: Option<bool>,
    pub kill_signal: Option<Signal>,
    #[serde(serialize_with = "ser_opt_ms")]
    pub kill_timeout: Option<Duration>,
    /// How often `max_memory_restart` is checked (default 30 s, as pm2's worker interval).
    #[serde(serialize_with = "ser_opt_ms")]
    pub memory_check_interval: Option<Duration>,
    /// A group that may use the control socket besides root and pmi's own uid.
    pub socket_group: Option<String>,
    /// Apply the apps file by itself when it changes (`pmi apply`, debounced).
    pub watch_config: Option<bool>,
}

impl Settings {
    /// These settings with every value `flags` sets put over them (a command-line flag wins
    /// over the file's `pmi:` block).
    pub fn with_flags(mut self, flags: &Settings) -> Settings {
        fn over<T: Clone>(v: &mut Option<T>, f: &Option<T>) {
            if f.is_some() {
                v.clone_from(f);
            }
        }
        over(&mut self.socket, &flags.socket);
        over(&mut self.http, &flags.http);
        over(&mut self.log_format, &flags.log_format);
        over(&mut self.auto_exit, &flags.auto_exit);
        over(&mut self.kill_signal, &flags.kill_signal);
        over(&mut self.kill_timeout, &flags.kill_timeout);
        over(
            &mut self.memory_check_interval,
            &flags.memory_check_interval,
        );
        over(&mut self.socket_group, &flags.socket_group);
        over(&mut self.watch_config, &flags.watch_config);
        self
    }
}

/// How app output is written to the container log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Raw,
    Prefixed,
    Json,
}

/// A signal, kept by number with its canonical name for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub i32);

impl Serialize for Signal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::os::signals::name(self.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    Fork,
    Cluster,
}

impl ExecMode {
    /// The one text of a mode, as `pmi status`, `check` and the snapshot show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Fork => "fork",
            ExecMode::Cluster => "cluster",
        }
    }
}

/// Time from the stop signal to SIGKILL when nothing sets `kill_timeout` (pm2's default); also
/// the grace of leftover processes at exit.
pub const DEFAULT_KILL_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1600);

/// One app of the file, after defaults and validation.
#[derive(Debug, Clone, Serialize)]
pub struct AppSpec {
    pub name: String,
    pub namespace: String,
    /// The `script` as written (after alias resolution).
    pub script: String,
    /// What is executed: argv[0] is a path or a name to look up on PATH; the rest are arguments.
    /// Built from interpreter, interpreter_args, script and args (or `sh -c "exec …"`).
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `None` means the script runs itself (`interpreter: none`, or a binary).
    pub interpreter: Option<String>,
    pub interpreter_args: Vec<String>,
    pub cwd: PathBuf,
    pub instances: u32,
    pub exec_mode: ExecMode,
    pub autostart: bool,
    pub restart: RestartPolicy,
    pub kill_signal: Signal,
    #[serde(serialize_with = "ser_ms")]
    pub kill_timeout: Duration,
    pub cron_restart: Option<CronSpec>,
    /// `env`, then `env_<NAME>` with `--env NAME`, merged; values stringified as pm2 does.
    pub env: BTreeMap<String, String>,
    pub filter_env: FilterEnv,
    pub instance_var: String,
    pub increment_var: Option<String>,
    pub port: Option<u16>,
    pub max_memory_restart: Option<u64>,
    pub watch: Option<WatchSpec>,
    pub logs: LogFiles,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Supplementary groups of `uid`'s user (every `/etc/group` entry that lists it), for
    /// setgroups() at spawn. Empty without `uid` or when the uid has no passwd entry.
    pub groups: Vec<u32>,
    pub pid_file: Option<PathBuf>,
    /// Fields kept for the readiness work; parsed, not yet active.
    pub wait_ready: bool,
    #[serde(serialize_with = "ser_ms")]
    pub listen_timeout: Duration,
    pub shutdown_with_message: bool,
    pub depends_on: Vec<String>,
}

/// pm2's restart rules for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartPolicy {
    pub autorestart: bool,
    pub max_restarts: u32,
    #[serde(serialize_with = "ser_ms")]
    pub min_uptime: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub restart_delay: Duration,
    #[serde(serialize_with = "ser_opt_ms")]
    pub exp_backoff_restart_delay: Option<Duration>,
    pub stop_exit_codes: Vec<i32>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            autorestart: true,
            max_restarts: 16,
            min_uptime: Duration::from_millis(1000),
            restart_delay: Duration::ZERO,
            exp_backoff_restart_delay: None,
            stop_exit_codes: Vec::new(),
        }
    }
}

/// A parsed cron expression. `expr` is the 6- or 7-field form the `cron` crate reads (seconds
/// first); `source` is what the user wrote.
#[derive(Debug, Clone, Serialize)]
pub struct CronSpec {
    pub source: String,
    #[serde(skip)]
    pub schedule: cron::Schedule,
}

impl CronSpec {
    /// The next time this cron fires after `now`, in the local time zone (TZ, else UTC).
    pub fn next_after(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let local = now.with_timezone(&chrono::Local);
        self.schedule
            .after(&local)
            .next()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// pm2's `filter_env`: which inherited variables to drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FilterEnv {
    #[default]
    None,
    /// Drop the whole inherited environment.
    All,
    /// Drop every inherited key that contains any of these strings.
    Containing(Vec<String>),
    /// Drop exactly this key (pm2's string form).
    Key(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchSpec {
    /// Absolute paths to watch.
    pub paths: Vec<PathBuf>,
    /// Patterns (glob-like, as written) whose matches are ignored.
    pub ignore: Vec<String>,
    #[serde(serialize_with = "ser_ms")]
    pub delay: Duration,
}

/// Log files of an app. All absolute; `None` means not written. `/dev/null` is turned into `None`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LogFiles {
    pub out_file: Option<PathBuf>,
    pub error_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    /// Without merge_logs, instance files get a `-<pm_id>` suffix.
    pub merge_logs: bool,
    /// dayjs format string for the line timestamp, if any (`time: true` sets one).
    pub date_format: Option<String>,
    /// pm2's `log_type: json` for the files.
    pub json: bool,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}
