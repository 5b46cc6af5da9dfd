//! `/metrics`: the Prometheus text exposition of a snapshot and a /proc sample.
//!
//! One family per block below, in output order; add a metric by adding a block (name, type,
//! help, then its samples). Invariant: a pure function of (snapshot, usage, now); labels are
//! names and ids only, never environment values.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::os::proc::GroupUsage;
use crate::status::{InstanceStatus, Snapshot, Status};

const STATUSES: [Status; 6] = [
    Status::Launching,
    Status::Online,
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
    let labels = |i: &InstanceStatus| vec![("app", i.name.clone()), ("pm_id", i.id.to_string())];
    let usage = |i: &InstanceStatus| i.pid.and_then(|p| groups.get(&(p as i32))).copied();

    m.family(
        "pmi_instance_up",
        "gauge",
        "1 when the instance's process is running (online or stopping), else 0.",
    );
    for i in &snap.instances {
        let up = matches!(i.status, Status::Online | Status::Stopping) && i.pid.is_some();
        m.sample("pmi_instance_up", &labels(i), f64::from(u8::from(up)));
    }
    m.family(
        "pmi_instance_status",
        "gauge",
        "The instance's status, as a state set: 1 for the current status, 0 for the others.",
    );
    for i in &snap.instances {
        for s in STATUSES {
            let mut l = labels(i);
            l.push(("status", s.as_str().to_string()));
            m.sample(
                "pmi_instance_status",
                &l,
                f64::from(u8::from(i.status == s)),
            );
        }
    }
    m.family(
        "pmi_instance_restarts_total",
        "counter",
        "Restarts of the instance (pm2's restart_time).",
    );
    for i in &snap.instances {
        m.sample(
            "pmi_instance_restarts_total",
            &labels(i),
            f64::from(i.restarts),
        );
    }
    m.family(
        "pmi_instance_uptime_seconds",
        "gauge",
        "Seconds since the instance's current process started.",
    );
    for i in &snap.instances {
        if let (Some(_), Some(t)) = (i.pid, i.started_at) {
            let up = now_ms.saturating_sub(t) as f64 / 1000.0;
            m.sample("pmi_instance_uptime_seconds", &labels(i), up);
        }
    }
    m.family(
        "pmi_instance_memory_bytes",
        "gauge",
        "Resident memory of the instance's process group, in bytes.",
    );
    for i in &snap.instances {
        if let Some(u) = usage(i) {
            m.sample("pmi_instance_memory_bytes", &labels(i), u.rss_bytes as f64);
        }
    }
    m.family(
        "pmi_instance_cpu_seconds_total",
        "counter",
        "User and system CPU time of the instance's process group, in seconds.",
    );
    for i in &snap.instances {
        if let Some(u) = usage(i) {
            let secs = u.cpu_ticks as f64 / ticks.max(1) as f64;
            m.sample("pmi_instance_cpu_seconds_total", &labels(i), secs);
        }
    }
    pmi_families(&mut m, snap);
    m.out
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
