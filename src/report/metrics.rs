//! `/metrics`: the Prometheus text exposition of a snapshot and a /proc sample.
//!
//! One family per block below, in output order; add a metric by adding a block (name, type,
//! help, then its samples). Invariant: a pure function of (snapshot, usage, now); labels are
//! names and ids only, never environment values.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::os::proc::GroupUsage;
use crate::status::{InstanceStatus, Snapshot, Status};

const STATUSES: [Status; 9] = [
    Status::Waiting,
    Status::Blocked,
    Status::Launching,
    Status::Online,
    Status::Unhealthy,
    Status::Stopping,
    Status::Stopped,
    Status::WaitingRestart,
    Status::Errored,
];

/// The Prometheus text exposition (format 0.0.4) of a snapshot. `groups` maps a process group
/// (an instance's pid: each instance leads its group) to its usage; `ticks` is USER_HZ.
///
/// Per instance (labels `app`, `pm_id`): `pmi_instance_up`, `pmi_instance_status` (one sample
/// per possible status, 1 for the current one: a state set), `pmi_instance_restarts_total`;
/// only while a process runs: `pmi_instance_uptime_seconds`, `pmi_instance_memory_bytes`,
/// `pmi_instance_cpu_seconds_total` (of the whole process group; resets when it restarts).
pub fn metrics(
    snap: &Snapshot,
    groups: &HashMap<i32, GroupUsage>,
    now_ms: u64,
    ticks: u64,
) -> String {
    let mut m = Exposition::default();
    let usage = |i: &InstanceStatus| i.pid.and_then(|p| groups.get(&(p as i32))).copied();

    m.per_instance(
        snap,
        "pmi_instance_up",
        "gauge",
        "1 when the instance's process is running (online or stopping), else 0.",
        |i| {
            let up = matches!(
                i.status,
                Status::Launching | Status::Online | Status::Unhealthy | Status::Stopping
            ) && i.pid.is_some();
            Some(f64::from(u8::from(up)))
        },
    );
    m.family(
        "pmi_instance_status",
        "gauge",
        "The instance's status, as a state set: 1 for the current status, 0 for the others.",
    );
    for i in &snap.instances {
        for s in STATUSES {
            let mut l = instance_labels(i);
            l.push(("status", s.as_str().to_string()));
            m.sample(
                "pmi_instance_status",
                &l,
                f64::from(u8::from(i.status == s)),
            );
        }
    }
    m.per_instance(
        snap,
        "pmi_instance_restarts_total",
        "counter",
        "Restarts of the instance (pm2's restart_time).",
        |i| Some(f64::from(i.restarts)),
    );
    m.per_instance(
        snap,
        "pmi_instance_uptime_seconds",
        "gauge",
        "Seconds since the instance's current process started.",
        |i| {
            i.pid?;
            Some(now_ms.saturating_sub(i.started_at?) as f64 / 1000.0)
        },
    );
    m.per_instance(
        snap,
        "pmi_instance_memory_bytes",
        "gauge",
        "Resident memory of the instance's process group, in bytes.",
        |i| usage(i).map(|u| u.rss_bytes as f64),
    );
    m.per_instance(
        snap,
        "pmi_instance_cpu_seconds_total",
        "counter",
        "User and system CPU time of the instance's process group, in seconds.",
        |i| usage(i).map(|u| u.cpu_ticks as f64 / ticks.max(1) as f64),
    );
    readiness_families(&mut m, snap);
    pmi_families(&mut m, snap);
    m.out
}

/// An instance's labels: `app` and `pm_id` (never `instance`, which Prometheus keeps for the
/// scrape target).
fn instance_labels(i: &InstanceStatus) -> Vec<(&'static str, String)> {
    vec![("app", i.name.clone()), ("pm_id", i.id.to_string())]
}

/// Readiness and checks: `pmi_instance_ready`, `pmi_instance_healthy` (instances with a health
/// check), and the checks' counters and last duration.
fn readiness_families(m: &mut Exposition, snap: &Snapshot) {
    m.per_instance(
        snap,
        "pmi_instance_ready",
        "gauge",
        "1 when the instance is ready (its ready signal or check came), else 0.",
        |i| Some(f64::from(u8::from(i.readiness.ready))),
    );
    m.per_instance(
        snap,
        "pmi_instance_healthy",
        "gauge",
        "1 when the instance's last health check passed, else 0 (instances with a health check).",
        |i| {
            let h = i.readiness.health.as_ref()?;
            Some(f64::from(u8::from(h == "healthy")))
        },
    );
    type Get = fn(&crate::status::Readiness) -> f64;
    let counters: [(&str, &str, &str, Get); 4] = [
        (
            "pmi_instance_checks_total",
            "counter",
            "Ready and health checks run for the instance.",
            |r| r.check_runs as f64,
        ),
        (
            "pmi_instance_check_failures_total",
            "counter",
            "Ready and health checks that failed.",
            |r| r.check_failures as f64,
        ),
        (
            "pmi_instance_check_seconds_total",
            "counter",
            "Time the instance's checks took, in seconds.",
            |r| r.check_seconds_total,
        ),
        (
            "pmi_instance_check_last_seconds",
            "gauge",
            "How long the instance's last check took, in seconds.",
            |r| r.check_last_seconds,
        ),
    ];
    for (name, kind, help, get) in counters {
        m.per_instance(snap, name, kind, help, |i| {
            (i.readiness.check_runs > 0).then(|| get(&i.readiness))
        });
    }
}

/// pmi's own families: counters, version, start time.
fn pmi_families(m: &mut Exposition, snap: &Snapshot) {
    let pmi = |m: &mut Exposition,
               name: &str,
               kind: &str,
               help: &str,
               labels: &[(&str, String)],
               v: f64| {
        m.family(name, kind, help);
        m.sample(name, labels, v);
    };
    pmi(
        m,
        "pmi_reaped_orphans_total",
        "counter",
        "Orphaned processes pmi has reaped.",
        &[],
        snap.reaped_orphans as f64,
    );
    pmi(
        m,
        "pmi_forwarded_signals_total",
        "counter",
        "Signals pmi has forwarded to its apps.",
        &[],
        snap.forwarded_signals as f64,
    );
    pmi(
        m,
        "pmi_info",
        "gauge",
        "pmi's version; always 1.",
        &[("version", snap.pmi_version.clone())],
        1.0,
    );
    pmi(
        m,
        "pmi_start_time_seconds",
        "gauge",
        "When pmi started, in seconds since the Unix epoch.",
        &[],
        snap.started_at as f64 / 1000.0,
    );
}

/// A text exposition being written: families in order, each HELP and TYPE once, then samples.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    /// One family with a sample per instance for which `value` has one.
    fn per_instance(
        &mut self,
        snap: &Snapshot,
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&InstanceStatus) -> Option<f64>,
    ) {
        self.family(name, kind, help);
        for i in &snap.instances {
            if let Some(v) = value(i) {
                self.sample(name, &instance_labels(i), v);
            }
        }
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample<S: AsRef<str>>(&mut self, name: &str, labels: &[(&str, S)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (n, (k, v)) in labels.iter().enumerate() {
                if n > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v.as_ref()));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Go float syntax: `NaN`, `+Inf`, `-Inf`, otherwise Rust's shortest round-trip form.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}
