//! The snapshot of supervisor state that every reader sees (control socket, HTTP, metrics).
//!
//! Invariant: a snapshot never holds environment values (secrets); it carries instants as Unix
//! milliseconds so that readers compute uptimes at read time and the supervisor need not
//! republish while idle.

use serde::{Deserialize, Serialize};

/// Version of the snapshot schema (`pmi status --json`); bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub schema: u32,
    pub pmi_version: String,
    pub pid: u32,
    /// When the supervisor started (Unix ms).
    pub started_at: u64,
    pub apps_file: String,
    pub shutting_down: bool,
    pub reaped_orphans: u64,
    pub forwarded_signals: u64,
    pub instances: Vec<InstanceStatus>,
    /// Each app's non-secret settings, in file order (`pmi describe`, readiness). Filled with
    /// `app_info` by the supervisor; absent in snapshots of older pmi versions.
    #[serde(default)]
    pub apps: Vec<AppInfo>,
    /// Why the container is not ready (`/readyz`, `pmi health --ready`); `None`: every
    /// autostart app is ready (a completed job counts).
    #[serde(default)]
    pub not_ready: Option<String>,
}

/// An instance's readiness, health and start order, as `status --json` shows them (flattened
/// into the instance).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Readiness {
    /// Ready for dependents and `/readyz` (not merely online after `listen_timeout`).
    pub ready: bool,
    /// What made it online: spawned, message, notify, listening, check, timeout.
    pub ready_by: Option<String>,
    /// starting, healthy, failing, unhealthy; `None` without a health check.
    pub health: Option<String>,
    /// Health checks failed in a row.
    pub health_failures: u32,
    /// While `waiting`: the dependencies not met yet.
    pub waiting_on: Vec<DepWait>,
    /// While `blocked`: the dependencies that can no longer meet their condition.
    pub blocked_by: Vec<DepBlock>,
    /// The app's last sd_notify `STATUS=`.
    pub notify_status: Option<String>,
    /// The last ready and health check results (with their bounded output).
    pub checks: Vec<CheckInfo>,
    /// Counters over all of the instance's processes.
    pub check_runs: u64,
    pub check_failures: u64,
    pub check_seconds_total: f64,
    pub check_last_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DepWait {
    pub app: String,
    pub condition: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DepBlock {
    pub app: String,
    pub condition: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct CheckInfo {
    /// ready or health.
    pub kind: String,
    pub ok: bool,
    /// One line: "HTTP 200 OK", "connection refused", "exit code 1".
    pub summary: String,
    /// At most 4 KiB: the command's last output, or the start of the HTTP answer.
    pub output: String,
    pub took_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// pm2's pm_id: unique across all instances, stable for the life of the instance.
    pub id: u32,
    pub name: String,
    pub namespace: String,
    /// The instance index (NODE_APP_INSTANCE).
    pub instance: u32,
    pub exec_mode: String,
    pub status: Status,
    pub pid: Option<u32>,
    /// When the current process started (Unix ms), while one runs.
    pub started_at: Option<u64>,
    /// pm2's restart_time.
    pub restarts: u32,
    pub unstable_restarts: u32,
    pub last_exit: Option<ExitInfo>,
    /// Next cron restart (Unix ms), when a cron is armed.
    pub cron_next: Option<u64>,
    /// Keys of the app's own env (never values).
    pub env_keys: Vec<String>,
    #[serde(flatten)]
    pub readiness: Readiness,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Status {
    /// Not started: waits for its `depends_on` (`waiting_on` says on what).
    #[serde(rename = "waiting")]
    Waiting,
    /// Not started: a dependency can no longer meet its condition (`blocked_by`).
    #[serde(rename = "blocked")]
    Blocked,
    /// Running, not ready yet (SPEC §9).
    #[serde(rename = "launching")]
    Launching,
    #[serde(rename = "online")]
    Online,
    /// Failed its health check (or watchdog) and is being restarted.
    #[serde(rename = "unhealthy")]
    Unhealthy,
    #[serde(rename = "stopping")]
    Stopping,
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "waiting restart")]
    WaitingRestart,
    #[serde(rename = "errored")]
    Errored,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Blocked => "blocked",
            Status::Unhealthy => "unhealthy",
            Status::Launching => "launching",
            Status::Online => "online",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::WaitingRestart => "waiting restart",
            Status::Errored => "errored",
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal name, when a signal killed it.
    pub signal: Option<String>,
    /// Unix ms.
    pub at: u64,
}

/// An app's settings as readers may see them: everything but environment values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct AppInfo {
    pub name: String,
    pub namespace: String,
    pub script: String,
    /// What is executed (argv).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub interpreter: Option<String>,
    pub interpreter_args: Vec<String>,
    pub cwd: String,
    /// Instances in the file (`pmi scale` changes the running count only).
    pub instances: u32,
    pub exec_mode: String,
    pub autostart: bool,
    pub autorestart: bool,
    pub max_restarts: u32,
    pub min_uptime_ms: u64,
    pub restart_delay_ms: u64,
    pub exp_backoff_restart_delay_ms: Option<u64>,
    pub stop_exit_codes: Vec<i32>,
    pub kill_signal: String,
    pub kill_timeout_ms: u64,
    /// The cron expression as written.
    pub cron_restart: Option<String>,
    pub watch: Option<Vec<String>>,
    pub watch_ignore: Vec<String>,
    pub max_memory_restart: Option<u64>,
    pub out_file: Option<String>,
    pub error_file: Option<String>,
    pub log_file: Option<String>,
    pub merge_logs: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid_file: Option<String>,
    /// Keys of the app's own env (never values).
    pub env_keys: Vec<String>,
    /// spawned, message, notify, or the check ("http http://…", "tcp 5432", "exec …").
    #[serde(default)]
    pub ready: String,
    /// The health check ("http http://… every 30000 ms"), if any.
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub watchdog_ms: Option<u64>,
    /// "migrate (completed)".
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// The readers' view of an app's spec: drops env values, keeps everything else users look at.
pub fn app_info(spec: &crate::config::AppSpec) -> AppInfo {
    let path = |p: &std::path::Path| p.display().to_string();
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let r = &spec.restart;
    AppInfo {
        name: spec.name.clone(),
        namespace: spec.namespace.clone(),
        script: spec.script.clone(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        interpreter: spec.interpreter.clone(),
        interpreter_args: spec.interpreter_args.clone(),
        cwd: path(&spec.cwd),
        instances: spec.instances,
        exec_mode: spec.exec_mode.as_str().to_string(),
        autostart: spec.autostart,
        autorestart: r.autorestart,
        max_restarts: r.max_restarts,
        min_uptime_ms: ms(r.min_uptime),
        restart_delay_ms: ms(r.restart_delay),
        exp_backoff_restart_delay_ms: r.exp_backoff_restart_delay.map(ms),
        stop_exit_codes: r.stop_exit_codes.clone(),
        kill_signal: crate::os::signals::name(spec.kill_signal.0),
        kill_timeout_ms: ms(spec.kill_timeout),
        cron_restart: spec.cron_restart.as_ref().map(|c| c.source.clone()),
        watch: spec
            .watch
            .as_ref()
            .map(|w| w.paths.iter().map(|p| path(p)).collect()),
        watch_ignore: spec
            .watch
            .as_ref()
            .map(|w| w.ignore.clone())
            .unwrap_or_default(),
        max_memory_restart: spec.max_memory_restart,
        out_file: spec.logs.out_file.as_deref().map(path),
        error_file: spec.logs.error_file.as_deref().map(path),
        log_file: spec.logs.log_file.as_deref().map(path),
        merge_logs: spec.logs.merge_logs,
        uid: spec.uid,
        gid: spec.gid,
        pid_file: spec.pid_file.as_deref().map(path),
        env_keys: spec.env.keys().cloned().collect(),
        ready: ready_text(&spec.ready),
        health: spec.health.as_ref().map(|h| {
            format!(
                "{} every {} ms, timeout {} ms, retries {}, start_period {} ms",
                probe_text(&h.check.probe),
                ms(h.check.interval),
                ms(h.check.timeout),
                h.retries,
                ms(h.start_period)
            )
        }),
        watchdog_ms: spec.watchdog.map(ms),
        depends_on: spec
            .depends_on
            .iter()
            .map(|d| format!("{} ({})", d.app, d.condition.name()))
            .collect(),
    }
}

fn ready_text(r: &crate::config::checks::ReadySpec) -> String {
    use crate::config::checks::ReadySpec;
    match r {
        ReadySpec::Spawned => "spawned".into(),
        ReadySpec::Message => "message".into(),
        ReadySpec::Notify => "notify".into(),
        ReadySpec::Check(c) => format!(
            "{} every {} ms, timeout {} ms",
            probe_text(&c.probe),
            c.interval.as_millis(),
            c.timeout.as_millis()
        ),
    }
}

/// A probe in one line; an exec check shows its command (what the apps file says, no env).
fn probe_text(p: &crate::config::checks::Probe) -> String {
    use crate::config::checks::Probe;
    match p {
        Probe::Http(u) => format!("http {}", u.url),
        Probe::Tcp(a) => format!("tcp {a}"),
        Probe::Exec(argv) => format!("exec {}", argv.join(" ")),
    }
}
