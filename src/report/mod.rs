//! Read-only answers, computed from the supervisor's `Snapshot`, shared by the control socket
//! and HTTP so that `pmi status --json` and `/status` agree.
//!
//! `view` selects and shapes (targets, status rows, describe, health); `metrics` writes the
//! Prometheus exposition; `sample` reads CPU and memory of process groups when asked; the types below are the `status --json` and `describe`
//! schema (docs/status-json.md). Invariant: nothing here mutates anything or reads an
//! environment value; readers reach the supervisor only through its snapshot.

pub mod metrics;
pub mod sample;
pub mod view;

use serde::{Deserialize, Serialize};

use crate::status::{AppInfo, ExitInfo, Readiness, Status};

/// `pmi status --json` (schema in docs/status-json.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `crate::status::SCHEMA_VERSION`.
    pub schema: u32,
    pub pmi: PmiInfo,
    pub instances: Vec<InstanceRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PmiInfo {
    pub version: String,
    pub pid: u32,
    pub started_at: u64,
    pub uptime_ms: u64,
    pub apps_file: String,
    pub shutting_down: bool,
    pub reaped_orphans: u64,
    pub forwarded_signals: u64,
    /// Every autostart app is ready (`/readyz`); else `not_ready` says why.
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub not_ready: Option<String>,
}

/// One instance as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    pub id: u32,
    pub name: String,
    pub namespace: String,
    pub instance: u32,
    pub pid: Option<u32>,
    pub status: Status,
    pub restarts: u32,
    pub unstable_restarts: u32,
    /// Time since the current process started; 0 when none runs.
    pub uptime_ms: u64,
    pub started_at: Option<u64>,
    /// CPU of the whole process group; see docs/status-json.md for the window.
    pub cpu_percent: f64,
    /// Sum of the RSS of the process group.
    pub memory_bytes: u64,
    pub last_exit: Option<ExitInfo>,
    pub exec_mode: String,
    pub cron_next: Option<u64>,
    /// Readiness, health, start order (docs/status-json.md).
    #[serde(flatten)]
    pub readiness: Readiness,
    /// The process is stopped by a signal (SIGSTOP): online for pmi, but frozen.
    #[serde(default)]
    pub paused: bool,
}

/// `pmi describe`: one app and the instances the target selected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppDescription {
    /// `None` when the supervisor does not publish app settings.
    pub app: Option<AppInfo>,
    pub name: String,
    pub instances: Vec<InstanceRow>,
}
