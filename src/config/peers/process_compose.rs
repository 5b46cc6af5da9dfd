//! process-compose.yaml → apps: each entry of `processes:` becomes an app.
//!
//! Invariant: every key of a process is converted or named in a located warning. Probes become
//! pmi's `ready` (readiness_probe) and `health` (liveness_probe) checks as SPEC §9/§10 spell
//! them; `depends_on` conditions map to `started`, `ready` and `completed`.

use serde_yaml::{Mapping, Value as Y};

use super::{seconds, AppOut, Diags};
use crate::config::tree::{Entry, Node, Value};
use crate::config::yaml;

const MAX_PROCESSES: usize = 500;
const MAX_REPLICAS: f64 = 1024.0;

pub fn convert(text: &str, d: &mut Diags) -> Vec<AppOut> {
    let parsed = match yaml::parse(text) {
        Ok(p) => p,
        Err(issue) => {
            d.error(issue.pos, None, None, issue.message);
            return Vec::new();
        }
    };
    for w in parsed.warnings {
        d.warn(w.pos, None, None, w.message);
    }
    let root = &parsed.root;
    let Some(top) = root.as_map() else {
        d.error(
            root.pos,
            None,
            None,
            format!(
                "the file is {}, not a process-compose object with `processes:`",
                root.kind()
            ),
        );
        return Vec::new();
    };
    let mut global_env: Vec<(String, String)> = Vec::new();
    let mut processes = None;
    for e in top {
        match e.key.as_str() {
            "processes" => processes = Some(e),
            "environment" => global_env = env_list(&e.value, None, d),
            "version" | "is_strict" => {}
            "log_location" | "log_level" | "log_length" | "log_configuration" => d.warn(e.key_pos, None, Some(&e.key), "no equivalent: pmi writes every app's output to the container log; see `pmi: {log_format: ...}`"),
            "shell" => d.warn(e.key_pos, None, Some(&e.key), "pmi runs command lines with `sh -c`; ignored"),
            _ => d.warn(e.key_pos, None, Some(&e.key), "not converted: pmi has no equivalent of this top-level setting"),
        }
    }
    let Some(procs) = processes else {
        d.error(root.pos, None, None, "no `processes:` found");
        return Vec::new();
    };
    let Some(entries) = procs.value.as_map() else {
        d.error(
            procs.value.pos,
            None,
            Some("processes"),
            format!(
                "is {}; write a map of process name → settings",
                procs.value.kind()
            ),
        );
        return Vec::new();
    };
    let names: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let mut apps = Vec::new();
    for p in entries.iter().take(MAX_PROCESSES) {
        if let Some(app) = process(p, &global_env, &names, d) {
            apps.push(app);
        }
    }
    if entries.len() > MAX_PROCESSES {
        d.error(
            procs.key_pos,
            None,
            None,
            format!("more than {MAX_PROCESSES} processes; split the file"),
        );
    }
    apps
}

/// `- KEY=value` entries (process-compose's list form).
fn env_list(n: &Node, app: Option<&str>, d: &mut Diags) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Value::Seq(items) = &n.value else {
        d.error(
            n.pos,
            app,
            Some("environment"),
            format!("is {}; write a list of KEY=value", n.kind()),
        );
        return out;
    };
    for it in items {
        match it.as_str().and_then(|s| s.split_once('=')) {
            Some((k, v)) if !k.trim().is_empty() => {
                not_expanded(v, it.pos, app, "environment", d);
                out.push((k.trim().to_string(), v.to_string()))
            }
            _ => d.error(
                it.pos,
                app,
                Some("environment"),
                format!("{} is not KEY=value", it.show()),
            ),
        }
    }
    out
}

fn text_of(e: &Entry, app: &str, d: &mut Diags) -> Option<String> {
    match &e.value.value {
        Value::Str(s) => Some(s.clone()),
        Value::Num(_) | Value::Bool(_) => Some(e.value.to_env_string()),
        _ => {
            d.error(
                e.value.pos,
                Some(app),
                Some(&e.key),
                format!("is {}; expected a string", e.value.kind()),
            );
            None
        }
    }
}

fn number(e: &Entry, app: &str, d: &mut Diags) -> Option<f64> {
    match e.value.value {
        Value::Num(n) if n >= 0.0 => Some(n),
        _ => {
            d.error(
                e.value.pos,
                Some(app),
                Some(&e.key),
                format!("{} is not a non-negative number", e.value.show()),
            );
            None
        }
    }
}

fn process(
    p: &Entry,
    global_env: &[(String, String)],
    names: &[&str],
    d: &mut Diags,
) -> Option<AppOut> {
    let name = p.key.as_str();
    let Some(fields) = p.value.as_map() else {
        d.error(
            p.value.pos,
            Some(name),
            None,
            format!(
                "is {}; write the process's settings as a map",
                p.value.kind()
            ),
        );
        return None;
    };
    let Some(cmd) = fields
        .iter()
        .find(|e| e.key == "command")
        .and_then(|e| text_of(e, name, d))
    else {
        d.error(
            p.key_pos,
            Some(name),
            Some("command"),
            "a process needs a `command`",
        );
        return None;
    };
    if cmd.trim().is_empty() {
        d.error(
            p.key_pos,
            Some(name),
            Some("command"),
            "the command is empty",
        );
        return None;
    }
    if cmd.contains("{{") {
        let pos = fields
            .iter()
            .find(|e| e.key == "command")
            .map_or(p.key_pos, |e| e.value.pos);
        d.warn(pos, Some(name), Some("command"), "process-compose templates ({{.PC_REPLICA_NUM}} ...) are not expanded by pmi; use $NODE_APP_INSTANCE (the instance number) in the command");
    }
    let mut app = AppOut::new(name);
    app.shell_command(&cmd);
    for (k, v) in global_env {
        app.env(k, v);
    }
    for e in fields {
        field(&mut app, e, name, names, d);
    }
    Some(app)
}

/// One key of a process: converted, or a located warning.
fn field(app: &mut AppOut, e: &Entry, name: &str, names: &[&str], d: &mut Diags) {
    let warn =
        |d: &mut Diags, msg: &str| d.warn(e.key_pos, Some(name), Some(&e.key), msg.to_string());
    match e.key.as_str() {
        "command" => {}
        "working_dir" => {
            if let Some(s) = text_of(e, name, d) {
                not_expanded(&s, e.value.pos, Some(name), "working_dir", d);
                app.set("cwd", s);
            }
        }
        "environment" => {
            for (k, v) in env_list(&e.value, Some(name), d) {
                app.env(&k, &v);
            }
        }
        "replicas" => match e.value.value {
            Value::Num(n) if (1.0..=MAX_REPLICAS).contains(&n) && n.fract() == 0.0 => app.set("instances", n as u64),
            _ => d.error(e.value.pos, Some(name), Some("replicas"), format!("{} is not a count from 1 to {MAX_REPLICAS}", e.value.show())),
        },
        "disabled" => {
            if e.value.value == Value::Bool(true) {
                app.set("autostart", false);
            }
        }
        "namespace" => {
            if let Some(s) = text_of(e, name, d) {
                app.set("namespace", s);
            }
        }
        "depends_on" => depends_on(app, e, name, names, d),
        "availability" => availability(app, e, name, d),
        "readiness_probe" => {
            if let Some(m) = probe(e, name, false, d) {
                app.set("ready", Y::Mapping(m));
            }
        }
        "liveness_probe" => {
            if let Some(m) = probe(e, name, true, d) {
                app.set("health", Y::Mapping(m));
            }
        }
        "shutdown" => shutdown(app, e, name, d),
        "log_location" => {
            if let Some(s) = text_of(e, name, d) {
                app.set("out_file", s.as_str());
                app.set("error_file", s);
            }
        }
        "description" => {}
        "is_tty" => warn(d, "pmi runs apps without a terminal; their output goes to the container log"),
        "disable_ansi_colors" => warn(d, "pmi passes output through as written; ignored"),
        "is_daemon" => warn(d, "no equivalent: pmi supervises foreground processes; run the program without daemonizing"),
        "ready_log_line" => warn(d, "no equivalent: make the app ready by a `ready` check (http, tcp or exec)"),
        _ => warn(d, "not a process-compose setting pmi converts; ignored"),
    }
}

fn depends_on(app: &mut AppOut, e: &Entry, name: &str, names: &[&str], d: &mut Diags) {
    let Some(deps) = e.value.as_map() else {
        d.error(
            e.value.pos,
            Some(name),
            Some("depends_on"),
            format!(
                "is {}; write a map of process → {{condition: ...}}",
                e.value.kind()
            ),
        );
        return;
    };
    let mut out = Vec::new();
    for dep in deps {
        if !names.contains(&dep.key.as_str()) {
            // pmi would refuse the whole file for an unknown name; process-compose runs the rest.
            d.warn(dep.key_pos, Some(name), Some("depends_on"), format!("'{}' is not a process of this file: left out of depends_on; add it, or remove the dependency", dep.key));
            continue;
        }
        let cond = dep
            .value
            .get("condition")
            .and_then(|c| c.value.as_str().map(|s| (s, c.value.pos)));
        let pmi = match cond {
            None | Some(("process_started", _)) => "started",
            Some(("process_healthy", _)) => "ready",
            Some(("process_completed_successfully", _)) => "completed",
            Some(("process_completed", p)) => {
                d.warn(p, Some(name), Some("depends_on"), format!("'{}': process_completed (any exit code) has no equivalent; converted to `completed`, which needs a success code", dep.key));
                "completed"
            }
            Some(("process_log_ready", p)) => {
                d.warn(p, Some(name), Some("depends_on"), format!("'{}': process_log_ready has no equivalent; converted to `ready`: give '{}' a `ready` check", dep.key, dep.key));
                "ready"
            }
            Some((other, p)) => {
                d.error(
                    p,
                    Some(name),
                    Some("depends_on"),
                    format!("'{other}' is not a process-compose condition"),
                );
                continue;
            }
        };
        if pmi == "ready" {
            // The default condition: a plain name says it.
            out.push(dep.key.clone().into());
            continue;
        }
        let mut m = Mapping::new();
        m.insert("app".into(), dep.key.clone().into());
        m.insert("condition".into(), pmi.into());
        out.push(Y::Mapping(m));
    }
    app.set("depends_on", Y::Sequence(out));
}

fn availability(app: &mut AppOut, e: &Entry, name: &str, d: &mut Diags) {
    let Some(fields) = e.value.as_map() else {
        d.error(
            e.value.pos,
            Some(name),
            Some("availability"),
            format!("is {}; expected a map", e.value.kind()),
        );
        return;
    };
    for f in fields {
        match f.key.as_str() {
            "restart" => match f.value.as_str() {
                Some("always") => app.set("autorestart", true),
                Some("no") => app.set("autorestart", false),
                Some("on_failure") => {
                    app.set("autorestart", true);
                    app.set("stop_exit_codes", Y::Sequence(vec![0.into()]));
                }
                Some("exit_on_failure") => {
                    app.set("autorestart", false);
                    d.warn(f.value.pos, Some(name), Some("availability.restart"), "exit_on_failure: pmi does not restart it, and exits with its code once no app runs; there is no immediate whole-project exit");
                }
                _ => d.error(
                    f.value.pos,
                    Some(name),
                    Some("availability.restart"),
                    format!(
                        "{} is not always, on_failure, exit_on_failure or no",
                        f.value.show()
                    ),
                ),
            },
            "backoff_seconds" => {
                if let Some(s) = number(f, name, d) {
                    app.set("restart_delay", (s * 1000.0).round() as u64);
                }
            }
            "max_restarts" => {
                if let Some(n) = number(f, name, d) {
                    app.set("max_restarts", n as u64);
                }
            }
            _ => d.warn(
                f.key_pos,
                Some(name),
                Some(&format!("availability.{}", f.key)),
                "no equivalent in pmi; ignored",
            ),
        }
    }
}

fn shutdown(app: &mut AppOut, e: &Entry, name: &str, d: &mut Diags) {
    let Some(fields) = e.value.as_map() else {
        return;
    };
    for f in fields {
        match f.key.as_str() {
            "signal" => match f.value.value {
                Value::Num(n) => app.set("kill_signal", n as i64),
                _ => {
                    if let Some(s) = text_of(f, name, d) {
                        app.set("kill_signal", s);
                    }
                }
            },
            "timeout_seconds" => {
                if let Some(s) = number(f, name, d) {
                    app.set("kill_timeout", (s * 1000.0).round() as u64);
                }
            }
            _ => d.warn(f.key_pos, Some(name), Some(&format!("shutdown.{}", f.key)), "no equivalent in pmi (it stops an app with kill_signal, then SIGKILL after kill_timeout); ignored"),
        }
    }
}

/// A probe → `{exec: CMD | http: URL, interval, timeout[, retries, start_period]}`.
fn probe(e: &Entry, name: &str, liveness: bool, d: &mut Diags) -> Option<Mapping> {
    let field = e.key.as_str();
    let Some(fields) = e.value.as_map() else {
        d.error(
            e.value.pos,
            Some(name),
            Some(field),
            format!("is {}; expected a map", e.value.kind()),
        );
        return None;
    };
    let mut m = Mapping::new();
    let mut check = false;
    for f in fields {
        let put = |m: &mut Mapping, k: &str, v: Y| {
            m.insert(k.into(), v);
        };
        match f.key.as_str() {
            "exec" => {
                if let Some(c) = f.value.get("command").and_then(|c| text_of(c, name, d)) {
                    put(&mut m, "exec", c.into());
                    check = true;
                }
            }
            "http_get" => match http_url(&f.value) {
                Some(url) if url.contains("{{") || url.contains('$') => d.warn(
                    f.key_pos,
                    Some(name),
                    Some(&format!("{field}.http_get")),
                    format!(
                        "{url} uses a process-compose template or variable, which pmi does not expand: not converted; write the URL out"
                    ),
                ),
                Some(url) => {
                    put(&mut m, "http", url.into());
                    check = true;
                }
                None => d.warn(
                    f.key_pos,
                    Some(name),
                    Some(&format!("{field}.http_get")),
                    "has no `port`: not converted; add the port",
                ),
            },
            "period_seconds" => {
                if let Some(s) = number(f, name, d) {
                    put(&mut m, "interval", seconds(s).into());
                }
            }
            "timeout_seconds" => {
                if let Some(s) = number(f, name, d) {
                    put(&mut m, "timeout", seconds(s).into());
                }
            }
            "failure_threshold" if liveness => {
                if let Some(n) = number(f, name, d) {
                    put(&mut m, "retries", (n as u64).into());
                }
            }
            "initial_delay_seconds" if liveness => {
                if let Some(s) = number(f, name, d) {
                    put(&mut m, "start_period", seconds(s).into());
                }
            }
            _ => d.warn(
                f.key_pos,
                Some(name),
                Some(&format!("{field}.{}", f.key)),
                if liveness {
                    "no equivalent in pmi's `health`; ignored"
                } else {
                    "no equivalent in pmi's `ready` check (it is ready at the first pass); ignored"
                },
            ),
        }
    }
    if !check {
        d.warn(
            e.key_pos,
            Some(name),
            Some(field),
            "neither exec nor http_get: not converted",
        );
        return None;
    }
    Some(m)
}

/// process-compose expands `$VAR`/`${VAR}` in the whole file from the environment it runs in.
/// pmi does not (and `convert` must not copy this machine's values): say so where it matters.
/// Commands are left alone: they run under `sh -c`, which expands them from the app's env.
fn not_expanded(
    v: &str,
    pos: crate::config::tree::Pos,
    app: Option<&str>,
    field: &str,
    d: &mut Diags,
) {
    let b = v.as_bytes();
    let var = (0..b.len()).any(|i| {
        b[i] == b'$'
            && b.get(i + 1)
                .is_some_and(|c| *c == b'{' || c.is_ascii_alphabetic() || *c == b'_')
    });
    if var {
        d.warn(pos, app, Some(field), format!("{v:?}: $VARIABLES are not expanded by pmi here; write the value, or set it in the container's environment"));
    }
}

/// `{host, port, path, scheme}` → a URL (host defaults to 127.0.0.1, as process-compose).
fn http_url(n: &Node) -> Option<String> {
    let s = |k: &str| n.get(k).map(|e| e.value.to_env_string());
    let port = s("port")?;
    let host = s("host").unwrap_or_else(|| "127.0.0.1".into());
    let scheme = s("scheme")
        .unwrap_or_else(|| "http".into())
        .to_ascii_lowercase();
    let path = s("path").unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    Some(format!("{scheme}://{host}:{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::super::{convert_text, Peer};
    use std::path::Path;

    #[test]
    fn processes_probes_and_dependencies() {
        let text = r#"version: "0.5"
environment:
  - "GLOBAL=1"
processes:
  db:
    command: "postgres -D /data"
    availability:
      restart: always
    readiness_probe:
      exec:
        command: "pg_isready"
      period_seconds: 2
      timeout_seconds: 1
  migrate:
    command: "./migrate && echo done"
    depends_on:
      db:
        condition: process_healthy
    availability:
      restart: "no"
  web:
    command: "node server.js"
    working_dir: "./web"
    environment:
      - "PORT=8080"
    replicas: 3
    depends_on:
      migrate:
        condition: process_completed_successfully
    liveness_probe:
      http_get:
        host: 127.0.0.1
        port: 8080
        path: "/health"
      initial_delay_seconds: 5
      period_seconds: 10
      failure_threshold: 3
      success_threshold: 1
    availability:
      restart: on_failure
      backoff_seconds: 2
      max_restarts: 5
    is_daemon: false
"#;
        let c = convert_text(
            Path::new("process-compose.yaml"),
            text,
            Peer::ProcessCompose,
        )
        .unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&c.yaml).unwrap();
        let a = &v["apps"];
        assert_eq!(a[0]["ready"]["exec"], "pg_isready");
        assert_eq!(a[0]["ready"]["interval"], "2s");
        assert_eq!(a[1]["script"], "sh");
        assert_eq!(a[1]["depends_on"][0], "db");
        assert_eq!(a[1]["autorestart"], false);
        assert_eq!(a[2]["cwd"], "./web");
        assert_eq!(a[2]["env"]["GLOBAL"], "1");
        assert_eq!(a[2]["env"]["PORT"], "8080");
        assert_eq!(a[2]["instances"], 3);
        assert_eq!(a[2]["depends_on"][0]["condition"], "completed");
        assert_eq!(a[2]["health"]["http"], "http://127.0.0.1:8080/health");
        assert_eq!(a[2]["health"]["start_period"], "5s");
        assert_eq!(a[2]["health"]["retries"], 3);
        assert_eq!(a[2]["stop_exit_codes"][0], 0);
        assert_eq!(a[2]["restart_delay"], 2000);
        let all: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
        let all = all.join("\n");
        assert!(
            all.contains(
                "process-compose.yaml:38:7: app 'web' field 'liveness_probe.success_threshold'"
            ),
            "{all}"
        );
        assert!(
            all.contains("process-compose.yaml:43:5: app 'web' field 'is_daemon'"),
            "{all}"
        );
    }

    #[test]
    fn bad_input_is_located() {
        let e = convert_text(Path::new("process-compose.yaml"), "processes:\n  a:\n    working_dir: /x\n  b:\n    command: x\n    depends_on:\n      a:\n        condition: sometimes\n", Peer::ProcessCompose)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(
                "process-compose.yaml:2:3: app 'a' field 'command': a process needs a `command`"
            ),
            "{e}"
        );
        assert!(e.contains("process-compose.yaml:8:20: app 'b' field 'depends_on': 'sometimes' is not a process-compose condition"), "{e}");
    }
}
