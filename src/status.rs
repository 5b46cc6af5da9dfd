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
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Status {
    /// Reserved: pmi produces it only once readiness (`wait_ready`, cluster mode) is supported;
    /// kept in the schema (and in `/metrics`' state set) so that clients need no change then.
    #[serde(rename = "launching")]
    Launching,
    #[serde(rename = "online")]
    Online,
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
    }
}
