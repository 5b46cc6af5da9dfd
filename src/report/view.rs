//! Read-only answers computed from a `Snapshot`: target resolution, status rows, describe, health.
//!
//! Pure functions of (snapshot, usage, now), shared by the control server and usable by the HTTP
//! endpoints, so that `pmi status --json` and `/status` agree. Invariant: nothing here reads an
//! environment value; targets resolve by the supervisor's rules (`State::resolve`).

use std::collections::HashMap;

use super::sample::Usage;
use super::{AppDescription, InstanceRow, PmiInfo, StatusReport};
use crate::api::{Named, OpError, Target};
use crate::status::{InstanceStatus, Snapshot, Status};

/// The instances a target names, in snapshot order, by the supervisor's rule
/// (`Target::select`): `all` and an app scaled to zero may name nothing; an unknown target is
/// an error that lists the known apps.
pub fn resolve<'a>(
    snap: &'a Snapshot,
    target: &Target,
) -> Result<Vec<&'a InstanceStatus>, OpError> {
    let items = snap.instances.iter().map(|i| {
        let n = Named {
            name: &i.name,
            namespace: &i.namespace,
            index: i.instance,
            id: i.id,
        };
        (i, n)
    });
    target.select(items, &known_apps(snap))
}

/// App names, in file order, without repeats.
pub fn known_apps(snap: &Snapshot) -> Vec<&str> {
    let mut names: Vec<&str> = snap.apps.iter().map(|a| a.name.as_str()).collect();
    for i in &snap.instances {
        if !names.contains(&i.name.as_str()) {
            names.push(&i.name);
        }
    }
    names
}

/// The process groups to sample: `(pgid, started_at)` of each running instance.
pub fn groups(instances: &[&InstanceStatus]) -> Vec<(i32, Option<u64>)> {
    instances
        .iter()
        .filter_map(|i| Some((i32::try_from(i.pid?).ok()?, i.started_at)))
        .collect()
}

pub fn row(i: &InstanceStatus, usage: &HashMap<i32, Usage>, now_ms: u64) -> InstanceRow {
    let u = i
        .pid
        .and_then(|p| usage.get(&(p as i32)))
        .copied()
        .unwrap_or_default();
    let uptime_ms = match (i.pid, i.started_at) {
        (Some(_), Some(s)) => now_ms.saturating_sub(s),
        _ => 0,
    };
    InstanceRow {
        id: i.id,
        name: i.name.clone(),
        namespace: i.namespace.clone(),
        instance: i.instance,
        pid: i.pid,
        status: i.status,
        restarts: i.restarts,
        unstable_restarts: i.unstable_restarts,
        uptime_ms,
        started_at: i.started_at.filter(|_| i.pid.is_some()),
        cpu_percent: u.cpu_percent,
        memory_bytes: u.memory_bytes,
        last_exit: i.last_exit.clone(),
        exec_mode: i.exec_mode.clone(),
        cron_next: i.cron_next,
        readiness: i.readiness.clone(),
        paused: u.paused,
    }
}

pub fn status_report(
    snap: &Snapshot,
    instances: &[&InstanceStatus],
    usage: &HashMap<i32, Usage>,
    now_ms: u64,
) -> StatusReport {
    StatusReport {
        schema: crate::status::SCHEMA_VERSION,
        pmi: PmiInfo {
            version: snap.pmi_version.clone(),
            pid: snap.pid,
            started_at: snap.started_at,
            uptime_ms: now_ms.saturating_sub(snap.started_at),
            apps_file: snap.apps_file.clone(),
            shutting_down: snap.shutting_down,
            reaped_orphans: snap.reaped_orphans,
            forwarded_signals: snap.forwarded_signals,
            ready: snap.not_ready.is_none() && !snap.shutting_down,
            not_ready: snap.not_ready.clone(),
        },
        instances: instances.iter().map(|i| row(i, usage, now_ms)).collect(),
    }
}

/// One description per app the target touches (in file order), with the selected instances.
pub fn describe(
    snap: &Snapshot,
    target: &Target,
    usage: &HashMap<i32, Usage>,
    now_ms: u64,
) -> Result<Vec<AppDescription>, OpError> {
    let selected = resolve(snap, target)?;
    let mut names: Vec<&str> = Vec::new();
    for n in known_apps(snap) {
        let touched = selected.iter().any(|i| i.name == n)
            || matches!(target, Target::Name(t) if t == n)
            || *target == Target::All;
        if touched {
            names.push(n);
        }
    }
    Ok(names
        .into_iter()
        .map(|n| AppDescription {
            app: snap.apps.iter().find(|a| a.name == n).cloned(),
            name: n.to_string(),
            instances: selected
                .iter()
                .filter(|i| i.name == n)
                .map(|i| row(i, usage, now_ms))
                .collect(),
        })
        .collect())
}

/// Liveness: no instance is errored or blocked (an unhealthy one is being restarted by pmi,
/// so it does not fail liveness). Readiness (`ready`): also every autostart app is ready (the
/// supervisor's verdict, `Snapshot::not_ready`: a completed job counts, a waiting or failed app
/// holds it back), and pmi is not shutting down. `Err` carries a one-line reason.
pub fn health(snap: &Snapshot, ready: bool) -> Result<(), String> {
    let bad = |s: Status| matches!(s, Status::Errored | Status::Blocked);
    if let Some(i) = snap.instances.iter().find(|i| bad(i.status)) {
        let count = |s: Status| snap.instances.iter().filter(|i| i.status == s).count();
        let (errored, blocked) = (count(Status::Errored), count(Status::Blocked));
        let why = match i.status {
            Status::Blocked => format!(" ({})", blocked_note(i)),
            _ => exit_note(i),
        };
        return Err(format!(
            "{}:{} (id {}) is {}{why}; {errored} errored, {blocked} blocked",
            i.name,
            i.instance,
            i.id,
            i.status.as_str(),
        ));
    }
    if !ready {
        return Ok(());
    }
    if snap.shutting_down {
        return Err("pmi is shutting down".into());
    }
    if snap.pid == 0 {
        return Err("pmi is starting".into());
    }
    if let Some(why) = &snap.not_ready {
        return Err(format!("not ready: {why}"));
    }
    // Also from the instances themselves: an instance of an autostart app that is neither
    // online nor completed (a clean exit: 0 or a stop_exit_codes code) holds readiness back, so
    // an app the user stopped makes the container not ready.
    let app = |name: &str| snap.apps.iter().find(|a| a.name == name);
    let completed = |i: &InstanceStatus| {
        i.status == Status::Stopped
            && i.last_exit.as_ref().is_some_and(|e| {
                e.code.is_some_and(|c| {
                    c == 0 || app(&i.name).is_some_and(|a| a.stop_exit_codes.contains(&c))
                })
            })
    };
    match snap.instances.iter().find(|i| {
        app(&i.name).is_none_or(|a| a.autostart) && i.status != Status::Online && !completed(i)
    }) {
        Some(i) => Err(format!(
            "{}:{} (id {}) is {}, not online",
            i.name,
            i.instance,
            i.id,
            i.status.as_str()
        )),
        None => Ok(()),
    }
}

fn blocked_note(i: &InstanceStatus) -> String {
    i.readiness
        .blocked_by
        .iter()
        .map(|b| format!("by {} ({}): {}", b.app, b.condition, b.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn exit_note(i: &InstanceStatus) -> String {
    match &i.last_exit {
        Some(e) => match (&e.code, &e.signal) {
            (Some(c), _) => format!(" (last exit: code {c})"),
            (None, Some(s)) => format!(" (last exit: {s})"),
            _ => String::new(),
        },
        None => String::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::status::{AppInfo, ExitInfo};

    pub fn inst(id: u32, name: &str, index: u32, status: Status) -> InstanceStatus {
        InstanceStatus {
            id,
            name: name.into(),
            namespace: "default".into(),
            instance: index,
            exec_mode: "fork".into(),
            status,
            pid: (status == Status::Online).then_some(1000 + id),
            started_at: Some(1_000),
            restarts: 0,
            unstable_restarts: 0,
            last_exit: None,
            cron_next: None,
            env_keys: vec!["SECRET_KEY".into()],
            readiness: Default::default(),
        }
    }

    pub fn snap(instances: Vec<InstanceStatus>, apps: &[(&str, bool)]) -> Snapshot {
        Snapshot {
            schema: 1,
            pmi_version: "0.1.0".into(),
            pid: 1,
            started_at: 500,
            apps_file: "/apps.yaml".into(),
            instances,
            apps: apps
                .iter()
                .map(|(n, auto)| AppInfo {
                    name: n.to_string(),
                    autostart: *auto,
                    ..AppInfo::default()
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn resolves_like_the_supervisor() {
        let s = snap(
            vec![
                inst(0, "api", 0, Status::Online),
                inst(1, "api", 1, Status::Online),
                inst(2, "worker", 0, Status::Stopped),
            ],
            &[("api", true), ("worker", true), ("idle", true)],
        );
        let ids = |t: &str| -> Vec<u32> {
            resolve(&s, &Target::parse(t))
                .unwrap()
                .iter()
                .map(|i| i.id)
                .collect()
        };
        assert_eq!(ids("all"), [0, 1, 2]);
        assert_eq!(ids("api"), [0, 1]);
        assert_eq!(ids("api:1"), [1]);
        assert_eq!(ids("2"), [2]);
        assert_eq!(ids("default"), [0, 1, 2]);
        assert!(ids("idle").is_empty());
        let e = resolve(&s, &Target::parse("nope")).unwrap_err().to_string();
        assert!(
            e.contains("'nope'") && e.contains("api, worker, idle"),
            "{e}"
        );
        assert!(resolve(&s, &Target::parse("9")).is_err());
    }

    #[test]
    fn health_and_readiness() {
        let mut s = snap(
            vec![
                inst(0, "api", 0, Status::Online),
                inst(1, "job", 0, Status::Stopped),
            ],
            &[("api", true), ("job", false)],
        );
        assert_eq!(health(&s, false), Ok(()));
        assert_eq!(health(&s, true), Ok(()));
        s.apps[1].autostart = true;
        assert!(health(&s, true)
            .unwrap_err()
            .contains("job:0 (id 1) is stopped"));
        s.instances[0].status = Status::Errored;
        s.instances[0].last_exit = Some(ExitInfo {
            code: Some(3),
            signal: None,
            at: 0,
        });
        assert_eq!(
            health(&s, false).unwrap_err(),
            "api:0 (id 0) is errored (last exit: code 3); 1 errored, 0 blocked"
        );
    }

    #[test]
    fn rows_and_describe() {
        let s = snap(
            vec![
                inst(0, "api", 0, Status::Online),
                inst(1, "api", 1, Status::Stopped),
            ],
            &[("api", true), ("idle", true)],
        );
        let mut usage = HashMap::new();
        usage.insert(
            1000,
            Usage {
                cpu_percent: 1.5,
                memory_bytes: 4096,
                ..Usage::default()
            },
        );
        let r = status_report(&s, &s.instances.iter().collect::<Vec<_>>(), &usage, 3_000);
        assert_eq!(r.instances[0].uptime_ms, 2_000);
        assert_eq!(r.instances[0].memory_bytes, 4096);
        assert_eq!(r.instances[1].uptime_ms, 0);
        assert_eq!(r.instances[1].started_at, None);
        assert_eq!(r.pmi.uptime_ms, 2_500);
        let d = describe(&s, &Target::parse("api:1"), &usage, 3_000).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].instances.len(), 1);
        let d = describe(&s, &Target::parse("idle"), &usage, 3_000).unwrap();
        assert_eq!(d[0].name, "idle");
        assert!(d[0].instances.is_empty());
    }
}
