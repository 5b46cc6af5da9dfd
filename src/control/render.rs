//! Text the client prints: pm2's list columns, describe blocks, action summaries, log lines.
//!
//! Pure functions of the answers (no I/O), so they are unit-tested. Invariant: widths are
//! counted in characters, colour codes appear only when the caller says the output is a
//! terminal, and nothing here can print an environment value (answers carry none).

use super::proto::{AppDescription, InstanceRow, LogLine, Stream};
use crate::api::{ApplyReport, Brief};
use crate::status::{ExitInfo, Status};

const HEADERS: [&str; 9] = [
    "id", "name", "mode", "pid", "uptime", "↺", "status", "cpu", "mem",
];

/// pm2's uptime units: 5s, 3m, 2h, 4D.
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}D", s / 86400),
    }
}

/// Memory as pm2 prints it: 512b, 4.0kb, 12.3mb, 1.1gb.
pub fn bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b}b")
    } else if f < K * K {
        format!("{:.1}kb", f / K)
    } else if f < K * K * K {
        format!("{:.1}mb", f / (K * K))
    } else {
        format!("{:.1}gb", f / (K * K * K))
    }
}

pub fn cpu(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn status_color(s: Status) -> &'static str {
    match s {
        Status::Online => "32",
        Status::Errored | Status::Blocked | Status::Unhealthy => "31",
        Status::Stopped => "90",
        _ => "33",
    }
}

/// The instance table, with box-drawing borders.
pub fn table(rows: &[InstanceRow], color: bool) -> String {
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let running = r.pid.is_some();
            [
                r.id.to_string(),
                r.name.clone(),
                r.exec_mode.clone(),
                r.pid.unwrap_or(0).to_string(),
                if running {
                    uptime(r.uptime_ms)
                } else {
                    "0".into()
                },
                r.restarts.to_string(),
                if r.paused {
                    // A SIGSTOPped process: pmi still supervises it, but it runs no code.
                    format!("{} (paused)", r.status.as_str())
                } else {
                    r.status.as_str().to_string()
                },
                cpu(r.cpu_percent),
                bytes(r.memory_bytes),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let rule = |l: &str, m: &str, r: &str| {
        let parts: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{l}{}{r}\n", parts.join(m))
    };
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(widths)
            .map(|(v, w)| {
                let pad = w.saturating_sub(visible_len(v));
                format!(" {v}{} ", " ".repeat(pad))
            })
            .collect();
        format!("│{}│\n", parts.join("│"))
    };
    let mut out = rule("┌", "┬", "┐");
    out.push_str(&line(
        HEADERS.iter().map(|h| paint(h, "1", color)).collect(),
    ));
    out.push_str(&rule("├", "┼", "┤"));
    for (row, r) in cells.into_iter().zip(rows) {
        let mut vals = row.to_vec();
        vals[1] = paint(&vals[1], "36", color);
        vals[6] = paint(&vals[6], status_color(r.status), color);
        out.push_str(&line(vals));
    }
    out.push_str(&rule("└", "┴", "┘"));
    for r in rows {
        if let Some(n) = order_note(r) {
            out.push_str(&format!("{}:{} {n}\n", r.name, r.instance));
        }
    }
    out
}

/// "waiting on migrate (completed)" / "blocked by migrate (completed): completed with a
/// failure", for the lines under the table and `describe`.
pub fn order_note(r: &InstanceRow) -> Option<String> {
    let rd = &r.readiness;
    if !rd.blocked_by.is_empty() {
        let b: Vec<String> = rd
            .blocked_by
            .iter()
            .map(|b| format!("{} ({}): {}", b.app, b.condition, b.reason))
            .collect();
        return Some(format!("blocked by {}", b.join("; ")));
    }
    if !rd.waiting_on.is_empty() {
        let w: Vec<String> = rd
            .waiting_on
            .iter()
            .map(|w| format!("{} ({})", w.app, w.condition))
            .collect();
        return Some(format!("waiting on {}", w.join(", ")));
    }
    None
}

/// An instance's readiness, health and last checks, for `describe`.
fn readiness_lines(i: &InstanceRow, out: &mut String) {
    let rd = &i.readiness;
    let l = |out: &mut String, k: &str, v: String| out.push_str(&format!("    {k:<20} {v}\n"));
    if let Some(n) = order_note(i) {
        l(out, "start order", n);
    }
    if i.pid.is_some() {
        l(
            out,
            "ready",
            match (&rd.ready_by, rd.ready) {
                (Some(by), true) => format!("yes ({by})"),
                (Some(by), false) => format!("no (online: {by})"),
                _ => "no".into(),
            },
        );
    }
    if let Some(h) = &rd.health {
        l(
            out,
            "health",
            format!("{h} ({} failures in a row)", rd.health_failures),
        );
    }
    if let Some(s) = &rd.notify_status {
        l(out, "notify status", s.clone());
    }
    for c in &rd.checks {
        let verdict = if c.ok { "passed" } else { "failed" };
        l(
            out,
            &format!("last {} check", c.kind),
            format!("{verdict}: {} ({} ms)", c.summary, c.took_ms),
        );
        if !c.output.is_empty() {
            for line in c.output.lines() {
                out.push_str(&format!("      | {line}\n"));
            }
        }
    }
    if rd.check_runs > 0 {
        out.push_str(&format!(
            "    {:<20} {} run, {} failed\n",
            "checks", rd.check_runs, rd.check_failures
        ));
    }
}

/// Length without ANSI colour codes.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_esc = false;
    for c in s.chars() {
        match (in_esc, c) {
            (false, '\x1b') => in_esc = true,
            (true, 'm') => in_esc = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

pub fn exit_info(e: &ExitInfo) -> String {
    let how = match (&e.code, &e.signal) {
        (Some(c), _) => format!("code {c}"),
        (None, Some(s)) => s.clone(),
        _ => "unknown".into(),
    };
    format!("{how} at {}", time(e.at))
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(" ")
    }
}

/// `pmi describe`: one block per app, then its instances.
pub fn describe(apps: &[AppDescription]) -> String {
    let mut out = String::new();
    for d in apps {
        out.push_str(&format!("app {}\n", d.name));
        let mut kv = |k: &str, v: String| out.push_str(&format!("  {k:<22} {v}\n"));
        if let Some(a) = &d.app {
            kv("namespace", a.namespace.clone());
            kv("script", a.script.clone());
            kv("command", list(&a.command));
            kv("args", list(&a.args));
            kv("interpreter", opt(&a.interpreter));
            kv("interpreter args", list(&a.interpreter_args));
            kv("cwd", a.cwd.clone());
            kv("exec mode", a.exec_mode.clone());
            kv("instances (file)", a.instances.to_string());
            kv("autostart", a.autostart.to_string());
            kv("autorestart", a.autorestart.to_string());
            kv("max restarts", a.max_restarts.to_string());
            kv("min uptime", format!("{} ms", a.min_uptime_ms));
            kv("restart delay", format!("{} ms", a.restart_delay_ms));
            kv(
                "exp backoff delay",
                a.exp_backoff_restart_delay_ms
                    .map_or("-".into(), |m| format!("{m} ms")),
            );
            let codes: Vec<String> = a.stop_exit_codes.iter().map(|c| c.to_string()).collect();
            kv("stop exit codes", list(&codes));
            kv("kill signal", a.kill_signal.clone());
            kv("kill timeout", format!("{} ms", a.kill_timeout_ms));
            let next = d.instances.iter().find_map(|i| i.cron_next).map(time);
            kv(
                "cron restart",
                match (&a.cron_restart, next) {
                    (Some(c), Some(n)) => format!("{c} (next {n})"),
                    (Some(c), None) => format!("{c} (suspended)"),
                    _ => "-".into(),
                },
            );
            kv("watch", a.watch.as_deref().map_or("-".into(), list));
            kv("watch ignore", list(&a.watch_ignore));
            kv(
                "max memory restart",
                a.max_memory_restart.map_or("-".into(), bytes),
            );
            kv("out file", opt(&a.out_file));
            kv("error file", opt(&a.error_file));
            kv("log file", opt(&a.log_file));
            kv("merge logs", a.merge_logs.to_string());
            kv("uid/gid", format!("{}/{}", opt(&a.uid), opt(&a.gid)));
            kv("pid file", opt(&a.pid_file));
            kv("env keys", list(&a.env_keys));
            kv(
                "ready",
                if a.ready.is_empty() {
                    "-".into()
                } else {
                    a.ready.clone()
                },
            );
            kv("health", opt(&a.health));
            kv(
                "watchdog",
                a.watchdog_ms.map_or("-".into(), |m| format!("{m} ms")),
            );
            kv("depends on", list(&a.depends_on));
        }
        if d.instances.is_empty() {
            out.push_str("  (no instances)\n");
        }
        for i in &d.instances {
            out.push_str(&format!(
                "  instance {}:{} (id {}): {}, pid {}, uptime {}, restarts {} ({} unstable), cpu {}, mem {}, last exit {}\n",
                i.name,
                i.instance,
                i.id,
                i.status.as_str(),
                opt(&i.pid),
                if i.pid.is_some() { uptime(i.uptime_ms) } else { "-".into() },
                i.restarts,
                i.unstable_restarts,
                cpu(i.cpu_percent),
                bytes(i.memory_bytes),
                i.last_exit.as_ref().map_or("-".into(), exit_info),
            ));
            readiness_lines(i, &mut out);
        }
    }
    out
}

/// What a mutation did, one line per instance.
pub fn done(verb: &str, instances: &[Brief]) -> String {
    if instances.is_empty() {
        return format!("{verb}: no instances\n");
    }
    instances
        .iter()
        .map(|b| {
            format!(
                "{verb} {}:{} (id {}): {}{}\n",
                b.name,
                b.instance,
                b.id,
                b.status.as_str(),
                b.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
            )
        })
        .collect()
}

/// `pmi apply`'s report: (stdout, stderr). One line per app change, then the settings.
pub fn applied(r: &ApplyReport) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    for w in &r.warnings {
        err.push_str(&format!("pmi: warning: {w}\n"));
    }
    if !r.errors.is_empty() {
        for e in &r.errors {
            err.push_str(&format!("pmi: error: {e}\n"));
        }
        err.push_str(&format!(
            "pmi: {} is invalid; nothing was changed (`pmi check FILE` validates it)\n",
            r.file
        ));
        return (out, err);
    }
    if r.queued {
        out.push_str("(waited for an earlier apply to finish)\n");
    }
    if r.dry_run {
        out.push_str(&format!("dry run of {}: nothing was changed\n", r.file));
    }
    for c in &r.changes {
        out.push_str(&format!("{c}\n"));
    }
    for s in &r.settings_applied {
        out.push_str(&format!("updated {s}\n"));
    }
    for s in &r.needs_restart {
        out.push_str(&format!("needs a restart: {s}\n"));
    }
    let failed: Vec<&str> = r
        .changes
        .iter()
        .filter(|c| c.error.is_some())
        .map(|c| c.app.as_str())
        .collect();
    if !failed.is_empty() {
        err.push_str(&format!(
            "pmi: apply: the change of {} failed; the other changes were made\n",
            failed.join(", ")
        ));
    }
    (out, err)
}

/// One line of `pmi logs`: `TIME app:N | text` (`TIME app:N err | text` for stderr), TIME
/// being when pmi read the line (UTC, milliseconds), or JSON.
pub fn log_line(l: &LogLine, json: bool) -> String {
    if json {
        return serde_json::to_string(l).map_or_else(|_| String::new(), |s| s + "\n");
    }
    let tag = match l.stream {
        Stream::Out => "",
        Stream::Err => " err",
    };
    let ts = chrono::DateTime::from_timestamp_millis(l.ts_ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    format!("{ts} {}:{}{tag} | {}\n", l.app, l.instance, l.text)
}

/// `pmi scale APP N`: what changed, from the app's instances before and after.
pub fn scaled(app: &str, before: &[InstanceRow], after: &[Brief]) -> String {
    let label = |name: &str, i: u32| format!("{name}:{i}");
    let removed: Vec<String> = before
        .iter()
        .filter(|r| !after.iter().any(|b| b.id == r.id))
        .map(|r| label(&r.name, r.instance))
        .collect();
    let added: Vec<String> = after
        .iter()
        .filter(|b| !before.iter().any(|r| r.id == b.id))
        .map(|b| match b.pid {
            Some(p) => format!("{} pid {p}", label(&b.name, b.instance)),
            None => label(&b.name, b.instance),
        })
        .collect();
    let mut what = Vec::new();
    if !added.is_empty() {
        what.push(format!("added {}", added.join(", ")));
    }
    if !removed.is_empty() {
        what.push(format!("removed {}", removed.join(", ")));
    }
    if what.is_empty() {
        what.push("no change".into());
    }
    format!(
        "{app}: scaled {} → {} ({})\n",
        before.len(),
        after.len(),
        what.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u32, name: &str, status: Status, pid: Option<u32>) -> InstanceRow {
        InstanceRow {
            id,
            name: name.into(),
            namespace: "default".into(),
            instance: 0,
            pid,
            status,
            restarts: 2,
            unstable_restarts: 0,
            uptime_ms: 125_000,
            started_at: Some(1),
            cpu_percent: 12.5,
            memory_bytes: 12_900_000,
            last_exit: None,
            exec_mode: "fork".into(),
            cron_next: None,
            readiness: Default::default(),
            paused: false,
        }
    }

    #[test]
    fn units() {
        assert_eq!(uptime(5_000), "5s");
        assert_eq!(uptime(3 * 60_000 + 5), "3m");
        assert_eq!(uptime(2 * 3_600_000), "2h");
        assert_eq!(uptime(4 * 86_400_000 + 10), "4D");
        assert_eq!(bytes(512), "512b");
        assert_eq!(bytes(12_900_000), "12.3mb");
        assert_eq!(bytes(4096), "4.0kb");
        assert_eq!(bytes(3 << 30), "3.0gb");
        assert_eq!(cpu(0.0), "0%");
        assert_eq!(cpu(12.5), "12.5%");
    }

    #[test]
    fn table_is_aligned_and_plain_without_colour() {
        let t = table(
            &[
                row(0, "api", Status::Online, Some(42)),
                row(11, "wörker", Status::Stopped, None),
            ],
            false,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{t}");
        assert!(lines[1].contains("↺") && lines[1].contains("mem"));
        assert!(
            lines[3].contains("2m") && lines[3].contains("12.3mb") && lines[3].contains("online")
        );
        assert!(lines[4].contains("stopped") && lines[4].contains(" 0 "));
        assert!(!t.contains('\x1b'));
        let c = table(&[row(0, "api", Status::Errored, Some(1))], true);
        assert!(c.contains("\x1b[31merrored\x1b[0m"));
        let lens: Vec<usize> = c.lines().map(visible_len).collect();
        assert!(lens.windows(2).all(|w| w[0] == w[1]), "{c}");
    }

    #[test]
    fn describe_done_and_logs() {
        let d = describe(&[AppDescription {
            app: Some(crate::status::AppInfo {
                name: "api".into(),
                env_keys: vec!["TOKEN".into()],
                cron_restart: Some("0 * * * *".into()),
                ..Default::default()
            }),
            name: "api".into(),
            instances: vec![row(0, "api", Status::Online, Some(7))],
        }]);
        assert!(d.contains("env keys") && d.contains("TOKEN"));
        assert!(d.contains("0 * * * * (suspended)"));
        assert!(d.contains("instance api:0 (id 0): online, pid 7"));
        let b = Brief {
            id: 3,
            name: "api".into(),
            instance: 1,
            pid: Some(9),
            status: Status::Online,
        };
        assert_eq!(
            done("restarted", &[b]),
            "restarted api:1 (id 3): online, pid 9\n"
        );
        let l = LogLine {
            pm_id: 0,
            app: "api".into(),
            instance: 0,
            stream: Stream::Err,
            ts_ms: 1,
            text: "boom".into(),
        };
        assert_eq!(
            log_line(&l, false),
            "1970-01-01T00:00:00.001Z api:0 err | boom\n"
        );
        let before: Vec<InstanceRow> = (0..4)
            .map(|i| InstanceRow {
                id: i,
                instance: i,
                ..row(i, "web", Status::Online, Some(10 + i))
            })
            .collect();
        let kept = Brief {
            id: 0,
            name: "web".into(),
            instance: 0,
            pid: Some(10),
            status: Status::Online,
        };
        assert_eq!(
            scaled("web", &before, std::slice::from_ref(&kept)),
            "web: scaled 4 → 1 (removed web:1, web:2, web:3)\n"
        );
        let new = Brief {
            id: 7,
            instance: 1,
            pid: Some(70),
            ..kept.clone()
        };
        assert_eq!(
            scaled("web", &before[..1], &[kept, new]),
            "web: scaled 1 → 2 (added web:1 pid 70)\n"
        );
        assert!(log_line(&l, true).starts_with("{\"pm_id\":0"));
    }
}
