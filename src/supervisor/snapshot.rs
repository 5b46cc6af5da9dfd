//! The supervisor's state as readers see it: one `Snapshot`, rebuilt after every event.
//!
//! Invariant: only names, phases, counters and wall-clock instants leave the supervisor here;
//! environment values never do (`env_keys` lists keys only).

use super::ops::status_of;
use super::state::State;
use crate::os::reap::ExitStatus;
use crate::os::signals;
use crate::status::{self, ExitInfo, InstanceStatus, Snapshot, SCHEMA_VERSION};

/// What the snapshot says about pmi itself, besides the state.
pub struct Header<'a> {
    /// When the supervisor started (Unix ms).
    pub started_at: u64,
    pub apps_file: &'a str,
}

pub fn build(st: &State, h: &Header<'_>) -> Snapshot {
    let instances = st
        .instances
        .iter()
        .map(|i| {
            let app = &st.apps[i.app];
            InstanceStatus {
                id: i.id,
                name: app.spec.name.clone(),
                namespace: app.spec.namespace.clone(),
                instance: i.index,
                exec_mode: app.spec.exec_mode.as_str().to_string(),
                status: status_of(&i.phase),
                pid: i.phase.pid().filter(|p| *p > 0).map(|p| p as u32),
                started_at: i.started_wall_ms,
                restarts: i.restarts,
                unstable_restarts: i.unstable_restarts,
                last_exit: i.last_exit.map(|e| ExitInfo {
                    code: match e.status {
                        ExitStatus::Code(c) => Some(c),
                        _ => None,
                    },
                    signal: match e.status {
                        ExitStatus::Signal(s) => Some(signals::name(s)),
                        _ => None,
                    },
                    at: e.wall_ms,
                }),
                cron_next: app
                    .cron_next
                    .filter(|_| !app.cron_suspended)
                    .map(|t| t.timestamp_millis().max(0) as u64),
                env_keys: app.spec.env.keys().cloned().collect(),
            }
        })
        .collect();
    Snapshot {
        schema: SCHEMA_VERSION,
        pmi_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_at: h.started_at,
        apps_file: h.apps_file.to_string(),
        shutting_down: st.shutting_down,
        reaped_orphans: st.reaped_orphans,
        forwarded_signals: st.forwarded_signals,
        instances,
        apps: st.apps.iter().map(|a| status::app_info(&a.spec)).collect(),
    }
}
