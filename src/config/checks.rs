//! `ready`, `health`, `watchdog` and `depends_on`: typed specs and their readers.
//!
//! Invariant: every reader takes the field's node and records each problem in `Diags` with its
//! place, app and field, and a hint; it returns `None` only when it recorded an error. The values
//! it returns are bounded (durations ≤ 24 h, intervals ≥ 100 ms, retries ≥ 1, argv non-empty, a
//! URL that the HTTP runner can send), so the run-time code never re-checks them.
//!
//! validate.rs calls, one line each (field entry `e`, app label `app`):
//! `checks::ready(d, app, e, wait_ready)`, `checks::health(d, app, e)`,
//! `checks::watchdog(d, app, e)`, `checks::depends_on(d, app, e)`, and once over all apps
//! `checks::cross_check_deps(d, &apps)` (replaces `cross_checks`' depends_on part and
//! `find_cycle`).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::diag::Diags;
use super::fields;
use super::tree::{Entry, Node, Pos, Value};
use super::units;

/// Longest interval, timeout, start period or watchdog: anything longer is a typo.
pub const MAX_CHECK_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Shortest check interval: a check is a process or a connection; faster is a load, not a check.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MIN_TIMEOUT: Duration = Duration::from_millis(10);
const MAX_RETRIES: u32 = 1000;
/// Ready checks: soon after spawn, and a short leash (listen_timeout bounds the whole wait).
pub const READY_INTERVAL: Duration = Duration::from_millis(500);
pub const READY_TIMEOUT: Duration = Duration::from_millis(1000);
/// Health checks: Docker's defaults, but with a 5 s timeout (SPEC §10).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
pub const HEALTH_RETRIES: u32 = 3;
/// Longest URL, command or address accepted in a check.
const MAX_TARGET_LEN: usize = 4096;

/// When an instance counts as ready (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase", tag = "by")]
pub enum ReadySpec {
    /// Once spawned (pm2's default; a Node cluster instance: once listening).
    #[default]
    Spawned,
    /// pm2's `process.send('ready')` (`wait_ready: true`, or `ready: message`).
    Message,
    /// sd_notify `READY=1` on the instance's own NOTIFY_SOCKET.
    Notify,
    /// A passing check.
    Check(CheckSpec),
}

/// One check: what to probe, how often, how long one attempt may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckSpec {
    pub probe: Probe,
    #[serde(serialize_with = "ser_ms")]
    pub interval: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Http(HttpUrl),
    /// `HOST:PORT` as written (a bare port means 127.0.0.1); resolved at check time.
    Tcp(String),
    /// The argv; a string was turned into `sh -c STRING`.
    Exec(Vec<String>),
}

/// An `http://` URL taken apart for a hand-written GET.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpUrl {
    /// As written, for messages.
    pub url: String,
    /// Host for connecting (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The `Host:` header value (host, brackets and a non-default port).
    pub host_header: String,
}

/// `health` (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthSpec {
    pub check: CheckSpec,
    pub retries: u32,
    #[serde(serialize_with = "ser_ms")]
    pub start_period: Duration,
}

/// What a dependency must reach before its dependent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Started,
    #[default]
    Ready,
    Completed,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub app: String,
    pub condition: Condition,
}

/// The problem was recorded in `Diags` (the caller only learns that there was one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Reports an error at `pos` for the app's field `field`.
fn err(d: &mut Diags, pos: Pos, app: &str, field: &str, msg: impl Into<String>) {
    d.error(pos, Some(app), Some(field), msg);
}

/// `ready`. `wait_ready` is pm2's boolean (already read): it means `ready: message`.
/// `None`: an error was recorded.
pub fn ready(d: &mut Diags, app: &str, e: Option<&Entry>, wait_ready: bool) -> Option<ReadySpec> {
    let Some(e) = e.filter(|e| e.value.value != Value::Null) else {
        return Some(if wait_ready {
            ReadySpec::Message
        } else {
            ReadySpec::Spawned
        });
    };
    let n = &e.value;
    let spec = match &n.value {
        Value::Str(s) => match s.trim() {
            "notify" | "sd_notify" => ReadySpec::Notify,
            "message" | "ipc" | "wait_ready" => ReadySpec::Message,
            "spawned" => ReadySpec::Spawned,
            other => {
                let hint = if other.starts_with("http") {
                    "; for an HTTP check write `ready: {http: \"http://127.0.0.1:3000/\"}`"
                } else {
                    ""
                };
                err(d, n.pos, app, &e.key, format!("{} is not a readiness source; use notify, message, or a check such as {{http: URL}}, {{tcp: ADDR}}, {{exec: CMD}}{hint}", n.show()));
                return None;
            }
        },
        Value::Map(_) => {
            let (probe, interval, timeout) = check_map(
                d,
                app,
                e,
                &["interval", "timeout"],
                READY_INTERVAL,
                READY_TIMEOUT,
            )?;
            ReadySpec::Check(CheckSpec {
                probe,
                interval,
                timeout,
            })
        }
        _ => {
            err(
                d,
                n.pos,
                app,
                &e.key,
                format!(
                    "must be notify, message, or a check object such as {{http: URL}}, not {}",
                    n.kind()
                ),
            );
            return None;
        }
    };
    if wait_ready && spec != ReadySpec::Message {
        err(d, e.key_pos, app, &e.key, "`wait_ready: true` and this `ready` both say when the app is ready; keep one (remove wait_ready, or write `ready: message`)");
        return None;
    }
    Some(spec)
}

/// `health`. `Ok(None)` without the field; `Err` when an error was recorded.
pub fn health(d: &mut Diags, app: &str, e: Option<&Entry>) -> Result<Option<HealthSpec>, Reported> {
    let Some(e) = e.filter(|e| e.value.value != Value::Null) else {
        return Ok(None);
    };
    if e.value.as_map().is_none() {
        err(d, e.value.pos, app, &e.key, format!("must be a check object such as {{http: \"http://127.0.0.1:3000/health\", interval: 10s}}, {{tcp: ADDR}} or {{exec: CMD}}, not {}", e.value.kind()));
        return Err(Reported);
    }
    let keys = ["interval", "timeout", "retries", "start_period"];
    let (probe, interval, timeout) =
        check_map(d, app, e, &keys, HEALTH_INTERVAL, HEALTH_TIMEOUT).ok_or(Reported)?;
    let mut bad = false;
    let retries = match e
        .value
        .get("retries")
        .filter(|x| x.value.value != Value::Null)
    {
        None => HEALTH_RETRIES,
        Some(x) => match units::count(&x.value) {
            Ok(r) if (1..=MAX_RETRIES).contains(&r) => r,
            Ok(_) => {
                err(d, x.value.pos, app, &sub(e, "retries"), format!("must be from 1 to {MAX_RETRIES} (failures in a row before the instance is restarted)"));
                bad = true;
                0
            }
            Err(m) => {
                err(d, x.value.pos, app, &sub(e, "retries"), m);
                bad = true;
                0
            }
        },
    };
    let start_period = match e
        .value
        .get("start_period")
        .filter(|x| x.value.value != Value::Null)
    {
        None => Duration::ZERO,
        Some(x) => match bounded(&x.value, Duration::ZERO) {
            Ok(v) => v,
            Err(m) => {
                err(d, x.value.pos, app, &sub(e, "start_period"), m);
                bad = true;
                Duration::ZERO
            }
        },
    };
    if bad {
        return Err(Reported);
    }
    Ok(Some(HealthSpec {
        check: CheckSpec {
            probe,
            interval,
            timeout,
        },
        retries,
        start_period,
    }))
}

/// `watchdog: DURATION`. `Ok(None)` without the field.
pub fn watchdog(d: &mut Diags, app: &str, e: Option<&Entry>) -> Result<Option<Duration>, Reported> {
    let Some(e) = e.filter(|e| e.value.value != Value::Null) else {
        return Ok(None);
    };
    match bounded(&e.value, MIN_INTERVAL) {
        Ok(v) => Ok(Some(v)),
        Err(m) => {
            err(d, e.value.pos, app, &e.key, m);
            Err(Reported)
        }
    }
}

/// `depends_on`: names or `{app, condition}`, each with where it was written. `None`: an error
/// was recorded.
pub fn depends_on(d: &mut Diags, app: &str, e: Option<&Entry>) -> Option<Vec<(Dependency, Pos)>> {
    let Some(e) = e.filter(|e| e.value.value != Value::Null) else {
        return Some(Vec::new());
    };
    let items: Vec<&Node> = match &e.value.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![&e.value],
    };
    let mut out = Vec::new();
    let mut ok = true;
    for x in items {
        match dependency(x) {
            Ok(dep) => out.push((dep, x.pos)),
            Err((pos, m)) => {
                err(d, pos, app, &e.key, m);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn dependency(x: &Node) -> Result<Dependency, (Pos, String)> {
    if x.as_map().is_none() {
        let app = units::string(x).map_err(|m| {
            (
                x.pos,
                format!("{m}; list app names, or {{app: NAME, condition: ready}}"),
            )
        })?;
        return Ok(Dependency {
            app,
            condition: Condition::Ready,
        });
    }
    let map = x.as_map().unwrap_or(&[]);
    let mut app = None;
    let mut condition = Condition::Ready;
    for k in map {
        match k.key.as_str() {
            "app" | "name" => {
                app =
                    Some(units::string(&k.value).map_err(|m| (k.value.pos, format!("`app` {m}")))?)
            }
            "condition" => {
                condition = match k.value.as_str().map(str::trim) {
                    Some("started" | "service_started" | "process_started") => Condition::Started,
                    Some("ready" | "healthy" | "service_healthy" | "process_healthy") => {
                        Condition::Ready
                    }
                    Some(
                        "completed"
                        | "service_completed_successfully"
                        | "process_completed_successfully",
                    ) => Condition::Completed,
                    _ => {
                        return Err((
                            k.value.pos,
                            format!(
                                "{} is not a condition; use started, ready or completed",
                                k.value.show()
                            ),
                        ))
                    }
                }
            }
            other => {
                let near = fields::nearest(other, ["app", "condition"])
                    .map(|n| format!("; did you mean '{n}'?"))
                    .unwrap_or_default();
                return Err((k.key_pos, format!("unknown key '{other}' in a dependency; use {{app: NAME, condition: started|ready|completed}}{near}")));
            }
        }
    }
    let app = app.ok_or((x.pos, "a dependency object needs `app: NAME`".to_string()))?;
    Ok(Dependency { app, condition })
}

/// One app as the cross-app dependency check sees it.
pub struct DepsOf<'a> {
    pub name: &'a str,
    pub name_pos: Pos,
    pub deps: &'a [(Dependency, Pos)],
    /// The app restarts after a clean exit (warned about for a `completed` dependency).
    pub autorestart: bool,
}

/// Unknown names, self-dependencies and every cycle (one error per strongly connected group,
/// located at the `depends_on` entry that closes it); a warning for a `completed` dependency on an
/// app with `autorestart` on.
pub fn cross_check_deps(d: &mut Diags, apps: &[DepsOf<'_>]) {
    let index: HashMap<&str, usize> = apps.iter().enumerate().map(|(i, a)| (a.name, i)).collect();
    let names: Vec<&str> = apps.iter().map(|a| a.name).collect();
    for a in apps {
        for (dep, pos) in a.deps {
            match index.get(dep.app.as_str()) {
                None => err(d, *pos, a.name, "depends_on", format!("no app named '{}'; apps in this file: {}", dep.app, names.join(", "))),
                Some(_) if dep.app == a.name => err(d, *pos, a.name, "depends_on", "an app cannot depend on itself; remove this entry"),
                Some(&j) if dep.condition == Condition::Completed && apps[j].autorestart => d.warn(*pos, Some(a.name), Some("depends_on"), format!("'{}' must complete, but it has autorestart on, so a clean exit restarts it; set `autorestart: false` (or `stop_exit_codes: [0]`) on '{}'", dep.app, dep.app)),
                Some(_) => {}
            }
        }
    }
    let edges: Vec<Vec<(usize, Pos)>> = apps
        .iter()
        .map(|a| {
            a.deps
                .iter()
                .filter_map(|(dep, pos)| index.get(dep.app.as_str()).map(|&j| (j, *pos)))
                .filter(|&(j, _)| apps[j].name != a.name)
                .collect()
        })
        .collect();
    for cycle in cycles(&edges) {
        let (from, pos) = cycle[cycle.len() - 1];
        let mut path: Vec<&str> = cycle.iter().map(|&(i, _)| apps[i].name).collect();
        path.push(apps[cycle[0].0].name);
        err(
            d,
            pos,
            apps[from].name,
            "depends_on",
            format!(
                "dependency cycle: {}; remove one of these `depends_on`",
                path.join(" → ")
            ),
        );
    }
}

/// One cycle per strongly connected group of more than one app: the apps in order, each with the
/// position of its edge to the next (the last one's edge goes back to the first).
fn cycles(edges: &[Vec<(usize, Pos)>]) -> Vec<Vec<(usize, Pos)>> {
    let n = edges.len();
    let mut comp = vec![usize::MAX; n];
    let mut found = Vec::new();
    for start in 0..n {
        if comp[start] != usize::MAX {
            continue;
        }
        // Iterative DFS for a path back to `start` inside not-yet-assigned apps.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        let mut on_path = vec![false; n];
        let mut seen = vec![false; n];
        on_path[start] = true;
        seen[start] = true;
        let mut cycle = None;
        while let Some(&mut (v, ref mut k)) = stack.last_mut() {
            if *k >= edges[v].len() {
                on_path[v] = false;
                stack.pop();
                continue;
            }
            let (w, _) = edges[v][*k];
            *k += 1;
            if w == start {
                cycle = Some(
                    stack
                        .iter()
                        .map(|&(u, k)| (u, edges[u][k - 1].1))
                        .collect::<Vec<_>>(),
                );
                break;
            }
            if !seen[w] && comp[w] == usize::MAX {
                seen[w] = true;
                on_path[w] = true;
                stack.push((w, 0));
            }
        }
        if let Some(c) = cycle {
            // Everything that reaches `start` and is reached from it is one group: mark it so
            // that the group is reported once.
            let group = reach_both(edges, start);
            for &g in &group {
                comp[g] = start;
            }
            found.push(c);
        }
    }
    found
}

fn reach_both(edges: &[Vec<(usize, Pos)>], s: usize) -> Vec<usize> {
    let n = edges.len();
    let walk = |fwd: bool| {
        let mut seen = vec![false; n];
        let mut todo = vec![s];
        seen[s] = true;
        while let Some(v) = todo.pop() {
            for u in 0..n {
                let edge = if fwd {
                    edges[v].iter().any(|e| e.0 == u)
                } else {
                    edges[u].iter().any(|e| e.0 == v)
                };
                if edge && !seen[u] {
                    seen[u] = true;
                    todo.push(u);
                }
            }
        }
        seen
    };
    let (f, b) = (walk(true), walk(false));
    (0..n).filter(|&i| f[i] && b[i]).collect()
}

fn sub(e: &Entry, k: &str) -> String {
    format!("{}.{k}", e.key)
}

/// A duration in `[min, 24 h]`, with the unit hint that catches Docker-style bare seconds.
fn bounded(n: &Node, min: Duration) -> Result<Duration, String> {
    let v = units::duration(n)?;
    if v > MAX_CHECK_DURATION {
        return Err(format!(
            "{} is longer than 24 h; use a shorter duration",
            n.show()
        ));
    }
    if v < min || (min > Duration::ZERO && v.is_zero()) {
        let bare = if matches!(n.value, Value::Num(_)) {
            " (a bare number is milliseconds: write \"30s\" for seconds)"
        } else {
            ""
        };
        return Err(format!(
            "{} is too short; use at least {} ms{bare}",
            n.show(),
            min.as_millis()
        ));
    }
    Ok(v)
}

/// The probe, interval and timeout of a check object; other keys in `extra` are the caller's.
fn check_map(
    d: &mut Diags,
    app: &str,
    e: &Entry,
    extra: &[&str],
    def_interval: Duration,
    def_timeout: Duration,
) -> Option<(Probe, Duration, Duration)> {
    let map = e.value.as_map().unwrap_or(&[]);
    let mut probe = None;
    let mut ok = true;
    let mut interval = def_interval;
    let mut timeout = def_timeout;
    for k in map {
        let field = sub(e, &k.key);
        let r: Result<(), String> = match k.key.as_str() {
            "http" | "tcp" | "exec" if probe.is_some() => Err("give one of http, tcp or exec per check".into()),
            "http" => http_url(&k.value).map(|u| probe = Some(Probe::Http(u))),
            "tcp" => tcp_addr(&k.value).map(|a| probe = Some(Probe::Tcp(a))),
            "exec" => exec_argv(&k.value).map(|v| probe = Some(Probe::Exec(v))),
            "interval" => bounded(&k.value, MIN_INTERVAL).map(|v| interval = v),
            "timeout" => bounded(&k.value, MIN_TIMEOUT).map(|v| timeout = v),
            x if extra.contains(&x) => Ok(()),
            "https" => Err("https checks are not supported (pmi has no TLS); check the app's plain http port, or use `exec: curl -fsS https://…`".into()),
            other => {
                let known = ["http", "tcp", "exec"].iter().chain(extra).copied();
                let near = fields::nearest(other, known).map(|n| format!("; did you mean '{n}'?")).unwrap_or_default();
                Err(format!("unknown key '{other}' in a check{near}"))
            }
        };
        if let Err(m) = r {
            let pos = if m.starts_with("unknown key") || m.starts_with("give one") {
                k.key_pos
            } else {
                k.value.pos
            };
            err(d, pos, app, &field, m);
            ok = false;
        }
    }
    if probe.is_none() && ok {
        err(
            d,
            e.value.pos,
            app,
            &e.key,
            "a check needs one of `http: URL`, `tcp: HOST:PORT` or `exec: CMD`",
        );
        return None;
    }
    ok.then_some(())?;
    probe.map(|p| (p, interval, timeout))
}

/// `http://HOST[:PORT][/PATH]`: only plain HTTP (no TLS in pmi).
pub fn http_url(n: &Node) -> Result<HttpUrl, String> {
    let url = units::string(n)?.trim().to_string();
    let bad = |why: &str| {
        format!("{url:?} is not a usable URL: {why}; write it as http://127.0.0.1:3000/health")
    };
    if url.len() > MAX_TARGET_LEN {
        return Err(bad("too long"));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(format!("{url:?}: https checks are not supported (pmi has no TLS); check the app's plain http port, or use `exec: curl -fsS {url}`"));
    }
    let Some(rest) = lower.starts_with("http://").then(|| &url[7..]) else {
        return Err(bad("it must start with http://"));
    };
    if rest.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(bad(
            "it contains spaces or control characters (encode them as %20…)",
        ));
    }
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(bad("user:password@ is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
    };
    let shown = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let host_header = if port == 80 {
        shown
    } else {
        format!("{shown}:{port}")
    };
    Ok(HttpUrl {
        url,
        host,
        port,
        path,
        host_header,
    })
}

/// `HOST:PORT`, `[V6]:PORT` or a bare port (127.0.0.1).
pub fn tcp_addr(n: &Node) -> Result<String, String> {
    let s = units::string(n)?.trim().to_string();
    let bad = || format!("{s:?} is not an address; use PORT, HOST:PORT or [::1]:PORT");
    if s.len() > MAX_TARGET_LEN || s.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    if port_ok(&s) {
        return Ok(format!("127.0.0.1:{s}"));
    }
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        v6.split_once("]:").ok_or_else(bad)?
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() || !port_ok(port) || (!s.starts_with('[') && host.contains(':')) {
        return Err(bad());
    }
    Ok(s)
}

/// A string runs under `sh -c`, a list directly.
pub fn exec_argv(n: &Node) -> Result<Vec<String>, String> {
    let argv = match &n.value {
        Value::Str(s) if !s.trim().is_empty() => {
            vec!["sh".to_string(), "-c".to_string(), s.clone()]
        }
        Value::Seq(_) => units::words(n)?,
        _ => {
            return Err(format!(
                "{} is not a command; use a string (run by sh -c) or a list of arguments",
                n.show()
            ))
        }
    };
    if argv.first().is_none_or(|a| a.trim().is_empty()) {
        return Err("the command is empty; give a program to run".into());
    }
    if argv.iter().map(String::len).sum::<usize>() > MAX_TARGET_LEN {
        return Err("the command is too long for a check; put it in a script".into());
    }
    Ok(argv)
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
