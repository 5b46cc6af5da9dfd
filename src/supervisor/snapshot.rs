//! The supervisor's state as readers see it: one `Snapshot`, rebuilt after every event.
//!
//! Invariant: only names, phases, counters and wall-clock instants leave the supervisor here;
//! environment values never do (`env_keys` lists keys only).

use super::readiness::{CheckKind, Tracker};
use super::start_order::Gate;
use super::state::{Instance, State};
use crate::os::reap::ExitStatus;
use crate::os::signals;
use crate::status::{self, CheckInfo, DepBlock, DepWait, ExitInfo, InstanceStatus, Readiness};
use crate::status::{Snapshot, SCHEMA_VERSION};

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
                status: st.status(i),
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
                readiness: readiness(st, i),
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
        not_ready: st.container_ready().err(),
    }
}

/// Serde's word for a value (`ReadyBy::Check` → "check").
fn word<T: serde::Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v).ok()?.as_str().map(str::to_string)
}

fn readiness(st: &State, i: &Instance) -> Readiness {
    let t: Option<&Tracker> = i.tracker.as_ref();
    let gate = &st.apps[i.app].gate;
    let waiting = i.phase == super::state::Phase::Waiting;
    let kept = [
        (CheckKind::Ready, &i.checks.last_ready),
        (CheckKind::Health, &i.checks.last_health),
    ];
    let checks = kept
        .into_iter()
        .filter_map(|(k, c)| {
            // The tracker's own record also has "no result within the timeout".
            let c = t.and_then(|t| t.last_check(k)).or(c.as_ref())?;
            Some(CheckInfo {
                kind: word(&k).unwrap_or_default(),
                ok: c.ok,
                summary: c.summary.clone(),
                output: c.output.clone(),
                took_ms: c.took_ms,
            })
        })
        .collect();
    Readiness {
        ready: t.is_some_and(Tracker::is_ready),
        ready_by: t.and_then(Tracker::ready_by).and_then(|b| word(&b)),
        health: t.and_then(Tracker::health).and_then(|h| word(&h)),
        health_failures: t.map_or(0, Tracker::health_failures),
        waiting_on: match gate {
            Gate::Waiting(w) if waiting => w
                .iter()
                .map(|w| DepWait {
                    app: w.app.clone(),
                    condition: w.condition.name().to_string(),
                })
                .collect(),
            _ => Vec::new(),
        },
        blocked_by: match gate {
            Gate::Blocked(b) if waiting => b
                .iter()
                .map(|b| DepBlock {
                    app: b.app.clone(),
                    condition: b.condition.name().to_string(),
                    reason: b.reason.clone(),
                })
                .collect(),
            _ => Vec::new(),
        },
        notify_status: t.and_then(|t| t.status_text().map(str::to_string)),
        checks,
        check_runs: i.checks.runs,
        check_failures: i.checks.failures,
        check_seconds_total: i.checks.seconds_total,
        check_last_seconds: i.checks.last_seconds,
    }
}
