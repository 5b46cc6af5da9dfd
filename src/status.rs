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
