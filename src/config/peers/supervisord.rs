//! supervisord.conf → apps: each `[program:x]` section becomes an app.
//!
//! Invariant: every section and every key is either converted or named in a located warning
//! (the INI reader gives no positions, so each is found again in the text by its header and key).
//! `%(ENV_X)s` is never expanded here: the converting machine's environment is not the
//! container's, and may hold secrets.

use configparser::ini::{Ini, IniDefault};

use super::{seconds, AppOut, Diags};
use crate::config::tree::Pos;
use crate::config::units;

/// Budgets: sections and numprocs beyond these are not a real supervisord setup.
const MAX_PROGRAMS: usize = 500;
const MAX_NUMPROCS: u32 = 1024;
/// Where the reader puts keys written before any `[section]` (a name no header can have).
const NO_SECTION: &str = "\u{0}no section";

/// Where sections and keys are in the text (1-based lines), found by searching for them.
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn header(&self, section: &str) -> Pos {
        self.lines
            .iter()
            .position(|l| header_of(l) == Some(section))
            .map_or(Pos::default(), |i| Pos::new(i + 1, 1))
    }

    /// The line of `key` inside `section` (the header's line if the key is not found).
    fn key(&self, section: &str, key: &str) -> Pos {
        let start = self.header(section);
        if start.line == 0 {
            return start;
        }
        for (i, l) in self.lines.iter().enumerate().skip(start.line) {
            if header_of(l).is_some() {
                break;
            }
            let t = l.trim_start();
            if let Some(k) = t.split(['=', ':']).next() {
                if k.trim().eq_ignore_ascii_case(key) {
                    return Pos::new(i + 1, l.len() - t.len() + 1);
                }
            }
        }
        start
    }
}

fn header_of(line: &str) -> Option<&str> {
    let t = line.trim();
    let inner = t.strip_prefix('[')?;
    Some(inner[..inner.rfind(']')?].trim())
}

/// supervisord (Python configparser) comments: `;` or `#` starting a line, or preceded by
/// whitespace inside one. `command=sh -c "a;b"` keeps its `;`.
fn strip_comment(v: &str) -> &str {
    let b = v.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b';' || b[i] == b'#') && b[i - 1].is_ascii_whitespace() {
            return v[..i].trim_end();
        }
    }
    v
}

pub fn convert(text: &str, d: &mut Diags) -> Vec<AppOut> {
    let ini_text = text.replace("\r\n", "\n");
    let mut defaults = IniDefault::default();
    defaults.case_sensitive = true;
    defaults.multiline = true;
    // Python's rule (a comment sign after whitespace) is applied per value by strip_comment.
    defaults.enable_inline_comments = false;
    defaults.default_section = NO_SECTION.into();
    let mut ini = Ini::new_from_defaults(defaults);
    if let Err(e) = ini.read(ini_text.clone()) {
        // The reader says "line N: ..." itself.
        let line = e
            .strip_prefix("line ")
            .and_then(|r| r.split([':', ' ']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        d.error(
            Pos::new(line, 0),
            None,
            None,
            format!("not an INI file: {e}"),
        );
        return Vec::new();
    }
    let at = Lines {
        lines: ini_text.split('\n').collect(),
    };
    let mut apps = Vec::new();
    for (section, keys) in ini.get_map_ref() {
        let pos = at.header(section);
        if let Some(name) = section.strip_prefix("program:") {
            if apps.len() >= MAX_PROGRAMS {
                d.error(
                    pos,
                    None,
                    None,
                    format!("more than {MAX_PROGRAMS} programs; split the file"),
                );
                break;
            }
            let kv: Vec<(String, String)> = keys
                .iter()
                .map(|(k, v)| {
                    let v = v.as_deref().unwrap_or("");
                    (k.to_ascii_lowercase(), strip_comment(v).to_string())
                })
                .collect();
            if let Some(app) = program(name.trim(), section, &kv, &at, d) {
                apps.push(app);
            }
        } else {
            other_section(section, pos, d);
        }
    }
    interpolation_warnings(&at, d);
    apps
}

/// Sections that are not programs: each gets a warning saying what pmi does instead.
fn other_section(section: &str, pos: Pos, d: &mut Diags) {
    let kind = section.split(':').next().unwrap_or(section);
    let msg = match kind {
        NO_SECTION => "settings before the first [section] are ignored".to_string(),
        "supervisord" => "[supervisord] is not converted: pmi is the supervisor (its settings go in the `pmi:` block: log format, kill signal and timeout)".into(),
        "unix_http_server" | "inet_http_server" | "supervisorctl" | "rpcinterface" => format!(
            "[{section}] has no equivalent: `pmi status`, `pmi restart` ... use pmi's own control socket, and `--http ADDR` serves /livez, /readyz, /metrics"
        ),
        "include" => "[include] is not followed: convert each included file too (`pmi convert FILE`) and merge their apps".into(),
        "group" => format!("[{section}] has no equivalent: pmi targets apps by name or `namespace`; set `namespace` on the member apps"),
        "eventlistener" => format!("[{section}] has no equivalent: pmi has no event protocol; use `health` checks and /metrics instead"),
        "fcgi-program" => format!("[{section}] is not converted: pmi does not run FastCGI sockets; a `listen` port may serve instead"),
        _ => format!("[{section}] is not a supervisord section pmi knows; it is ignored"),
    };
    d.warn(pos, None, None, msg);
}

/// `%(ENV_X)s` (and `%(here)s` ...) anywhere: never expanded from this machine.
fn interpolation_warnings(at: &Lines, d: &mut Diags) {
    for (i, l) in at.lines.iter().enumerate() {
        // process_name has its own warning (pmi names instances itself).
        if l.trim_start()
            .to_ascii_lowercase()
            .starts_with("process_name")
        {
            continue;
        }
        let mut rest = *l;
        let mut col = 0;
        while let Some(p) = rest.find("%(") {
            let after = &rest[p + 2..];
            let Some(end) = after.find(')') else { break };
            let var = &after[..end];
            // Python's %-format after the name: flags and width, then the conversion letter.
            let tail = &after[end + 1..];
            let spec = tail
                .find(|c: char| c.is_ascii_alphabetic())
                .map_or(0, |n| n + 1);
            let pos = Pos::new(i + 1, col + p + 1);
            if let Some(env) = var.strip_prefix("ENV_") {
                d.warn(pos, None, None, format!("%({var})s is not expanded: pmi does not copy this machine's environment into the file; set `env: {{{env}: ...}}` in the app, or let the container's environment provide {env}"));
            } else if var == "process_num" {
                d.warn(pos, None, None, "%(process_num) is not expanded: each instance has its number in $NODE_APP_INSTANCE (pmi's instance_var); run the command under `sh -c` to use it");
            } else if var != "program_name" {
                d.warn(
                    pos,
                    None,
                    None,
                    format!("%({var}) is not expanded: write the value itself"),
                );
            }
            let used = end + 1 + spec;
            col += p + 2 + used;
            rest = &after[used..];
        }
    }
}

fn program(
    name: &str,
    section: &str,
    kv: &[(String, String)],
    at: &Lines,
    d: &mut Diags,
) -> Option<AppOut> {
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let pos = |k: &str| at.key(section, k);
    let Some(command) = get("command").filter(|c| !c.trim().is_empty()) else {
        d.error(
            at.header(section),
            Some(name),
            Some("command"),
            "a program needs a `command`",
        );
        return None;
    };
    let mut app = AppOut::new(name);
    if !set_command(&mut app, name, command, pos("command"), d) {
        return None;
    }
    let (autorestart, out_log) = settings(&mut app, name, kv, &pos, d);
    restart_policy(
        &mut app,
        name,
        autorestart.as_deref(),
        get("exitcodes"),
        &pos,
        d,
    );
    let redirect = get("redirect_stderr").and_then(boolean) == Some(true);
    match (out_log, redirect) {
        (Some(f), true) => {
            app.set("out_file", f.as_str());
            app.set("error_file", f);
        }
        (Some(f), false) => app.set("out_file", f),
        (None, true) => d.warn(
            pos("redirect_stderr"),
            Some(name),
            Some("redirect_stderr"),
            "pmi keeps the app's stderr on its own stderr; both reach the container log",
        ),
        (None, false) => {}
    }
    Some(app)
}

/// supervisord splits the command itself, as a shell would but without running one, and execs
/// it: the same words, run directly. False (after an error) when it cannot be split.
fn set_command(app: &mut AppOut, name: &str, command: &str, at: Pos, d: &mut Diags) -> bool {
    let command = command.replace("%(program_name)s", name);
    match units::shell_split(&command) {
        Ok(words) if !words.is_empty() => {
            app.set("script", words[0].as_str());
            app.set("interpreter", "none");
            if words.len() > 1 {
                let rest = words[1..]
                    .iter()
                    .map(|w| serde_yaml::Value::from(w.as_str()));
                app.set("args", serde_yaml::Value::Sequence(rest.collect()));
            }
        }
        _ => {
            d.error(
                at,
                Some(name),
                Some("command"),
                format!("cannot split {command:?} into words (an unclosed quote?)"),
            );
            return false;
        }
    }
    true
}

/// Every key of a program but the command: converted, or a located warning. Returns the
/// settings that are resolved together afterwards (autorestart, stdout_logfile).
fn settings(
    app: &mut AppOut,
    name: &str,
    kv: &[(String, String)],
    pos: &dyn Fn(&str) -> Pos,
    d: &mut Diags,
) -> (Option<String>, Option<String>) {
    let mut autorestart: Option<String> = None;
    let mut out_log: Option<String> = None;
    for (k, v) in kv {
        let p = pos(k);
        let warn = |d: &mut Diags, msg: String| d.warn(p, Some(name), Some(k), msg);
        match k.as_str() {
            "command" => {}
            "directory" => app.set("cwd", v.as_str()),
            "numprocs" => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_NUMPROCS).contains(&n) => app.set("instances", n),
                _ => d.error(p, Some(name), Some(k), format!("'{v}' is not a process count from 1 to {MAX_NUMPROCS}")),
            },
            "process_name" => {
                if v != "%(program_name)s" && v != "%(program_name)s_%(process_num)02d" && v != "%(program_name)s_%(process_num)s" {
                    warn(d, format!("'{v}' is not used: pmi names instances {name}:0, {name}:1, ... and gives each NODE_APP_INSTANCE"));
                }
            }
            "numprocs_start" => warn(d, "no equivalent: pmi numbers instances from 0".into()),
            "autostart" => match boolean(v) {
                Some(b) => app.set("autostart", b),
                None => d.error(p, Some(name), Some(k), format!("'{v}' is not true or false")),
            },
            "autorestart" => autorestart = Some(v.to_ascii_lowercase()),
            "exitcodes" => {}
            "startsecs" => match v.parse::<f64>() {
                Ok(s) if s >= 0.0 => app.set("min_uptime", seconds(s)),
                _ => d.error(p, Some(name), Some(k), format!("'{v}' is not a number of seconds")),
            },
            "startretries" => match v.parse::<u32>() {
                Ok(n) => app.set("max_restarts", n),
                Err(_) => d.error(p, Some(name), Some(k), format!("'{v}' is not a count")),
            },
            "stopsignal" => {
                let s = v.trim().to_ascii_uppercase();
                let s = if s.starts_with("SIG") { s } else { format!("SIG{s}") };
                app.set("kill_signal", s);
            }
            "stopwaitsecs" => match v.parse::<f64>() {
                Ok(s) if s >= 0.0 => app.set("kill_timeout", (s * 1000.0).round() as u64),
                _ => d.error(p, Some(name), Some(k), format!("'{v}' is not a number of seconds")),
            },
            "environment" => match environment(v) {
                Ok(pairs) => {
                    for (ek, ev) in pairs {
                        app.env(&ek, &ev);
                    }
                }
                Err(e) => d.error(p, Some(name), Some(k), format!("{e}; write KEY=\"value\",KEY2=value2")),
            },
            "user" => app.set("uid", v.as_str()),
            "redirect_stderr" => {}
            "stdout_logfile" => out_log = log_target(v),
            "stderr_logfile" => {
                if let Some(f) = log_target(v) {
                    app.set("error_file", f);
                }
            }
            "stopasgroup" | "killasgroup" => {
                if boolean(v) == Some(false) {
                    warn(d, "pmi always signals the app's whole process group".into());
                }
            }
            "priority" => warn(d, "no equivalent: pmi starts apps in parallel; order them with `depends_on`".into()),
            "umask" | "serverurl" => warn(d, "no equivalent in pmi; ignored".into()),
            // No rotation and no events is what pmi does anyway.
            _ if (k.ends_with("_maxbytes") || k.ends_with("_backups")) && v.trim() == "0" => {}
            _ if k.ends_with("_events_enabled") && boolean(v) == Some(false) => {}
            _ if k.starts_with("stdout_") || k.starts_with("stderr_") => {
                warn(d, "no equivalent: pmi writes app output to the container log (or out_file/error_file); rotate files outside pmi".into())
            }
            _ => warn(d, format!("'{k}' is not a supervisord program setting pmi converts; ignored")),
        }
    }
    (autorestart, out_log)
}

/// autorestart (true, false, unexpected) with exitcodes → pmi's autorestart + stop_exit_codes.
fn restart_policy(
    app: &mut AppOut,
    name: &str,
    autorestart: Option<&str>,
    exitcodes: Option<&str>,
    pos: &dyn Fn(&str) -> Pos,
    d: &mut Diags,
) {
    // supervisord's default is `unexpected` with exitcodes=0.
    match autorestart.unwrap_or("unexpected") {
        "unexpected" => {
            let codes: Result<Vec<i64>, _> = exitcodes
                .unwrap_or("0")
                .split(',')
                .map(|c| c.trim().parse::<i64>())
                .collect();
            match codes {
                Ok(c) => app.set(
                    "stop_exit_codes",
                    serde_yaml::Value::Sequence(c.into_iter().map(Into::into).collect()),
                ),
                Err(_) => d.error(
                    pos("exitcodes"),
                    Some(name),
                    Some("exitcodes"),
                    "not a list of exit codes (0,2)",
                ),
            }
        }
        v => match boolean(v) {
            Some(b) => {
                app.set("autorestart", b);
                if exitcodes.is_some() {
                    d.warn(
                        pos("exitcodes"),
                        Some(name),
                        Some("exitcodes"),
                        "only used with autorestart=unexpected; ignored",
                    );
                }
            }
            None => d.error(
                pos("autorestart"),
                Some(name),
                Some("autorestart"),
                format!("'{v}' is not true, false or unexpected"),
            ),
        },
    }
}

/// A log file setting: AUTO (supervisord's own directory) and the container's stdout mean pmi's
/// default (the container log); NONE discards.
fn log_target(v: &str) -> Option<String> {
    match v.trim() {
        "" | "AUTO" | "/dev/stdout" | "/dev/fd/1" | "/dev/stderr" | "/dev/fd/2"
        | "/proc/self/fd/1" | "/proc/self/fd/2" => None,
        "NONE" => Some("/dev/null".into()),
        f => Some(f.to_string()),
    }
}

fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// supervisord's `environment=KEY="value",KEY2=value2` (values may be quoted, commas inside
/// quotes kept; continuation lines are part of the value).
fn environment(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim().to_string();
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(format!("'{key}' is not KEY=value"));
        }
        let mut val = String::new();
        match chars.peek() {
            Some(&q) if q == '"' || q == '\'' => {
                chars.next();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == q {
                        closed = true;
                        break;
                    }
                    val.push(c);
                }
                if !closed {
                    return Err(format!("the value of {key} has no closing {q}"));
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
                val = val.trim().to_string();
            }
        }
        out.push((key, val));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{convert_text, Peer};
    use super::*;
    use std::path::Path;

    #[test]
    fn environment_syntax() {
        assert_eq!(
            environment("A=\"x, y\",B=2, C='q'").unwrap(),
            vec![
                ("A".into(), "x, y".into()),
                ("B".into(), "2".into()),
                ("C".into(), "q".into())
            ]
        );
        assert!(environment("A=\"open").is_err());
    }

    #[test]
    fn programs_convert_and_the_rest_warns_with_lines() {
        let text = "[supervisord]\nnodaemon=true\n\n[include]\nfiles = conf.d/*.conf\n\n\
            [program:web]\ncommand=/usr/bin/gunicorn app:app -w 2 ; inline comment\n\
            directory=/srv\nnumprocs=2\nprocess_name=%(program_name)s_%(process_num)02d\n\
            autorestart=true\nstartsecs=3\nstartretries=5\nstopsignal=QUIT\nstopwaitsecs=10\n\
            environment=A=\"1\",B=%(ENV_SECRET)s\nuser=www\nredirect_stderr=true\n\
            stdout_logfile=/var/log/web.log\nstdout_logfile_maxbytes=10MB\npriority=5\n\n\
            [group:all]\nprograms=web\n[eventlistener:x]\ncommand=x\n";
        let c = convert_text(Path::new("supervisord.conf"), text, Peer::Supervisord).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&c.yaml).unwrap();
        let w = &v["apps"][0];
        assert_eq!(w["name"], "web");
        assert_eq!(w["script"], "/usr/bin/gunicorn");
        assert_eq!(w["interpreter"], "none");
        assert_eq!(
            w["args"],
            serde_yaml::from_str::<serde_yaml::Value>("[app:app, -w, \"2\"]").unwrap()
        );
        assert_eq!(w["cwd"], "/srv");
        assert_eq!(w["instances"], 2);
        assert_eq!(w["autorestart"], true);
        assert_eq!(w["min_uptime"], "3s");
        assert_eq!(w["max_restarts"], 5);
        assert_eq!(w["kill_signal"], "SIGQUIT");
        assert_eq!(w["kill_timeout"], 10000);
        assert_eq!(w["env"]["A"], "1");
        assert_eq!(w["env"]["B"], "%(ENV_SECRET)s");
        assert_eq!(w["uid"], "www");
        assert_eq!(w["out_file"], "/var/log/web.log");
        assert_eq!(w["error_file"], "/var/log/web.log");
        let ws: Vec<String> = c.warnings.iter().map(|d| d.to_string()).collect();
        let all = ws.join("\n");
        for want in [
            "supervisord.conf:1:1: [supervisord] is not converted",
            "supervisord.conf:4:1: [include] is not followed",
            "supervisord.conf:17:", // %(ENV_SECRET)s
            "supervisord.conf:21:1: app 'web' field 'stdout_logfile_maxbytes'",
            "supervisord.conf:22:1: app 'web' field 'priority'",
            "supervisord.conf:24:1: [group:all] has no equivalent",
            "supervisord.conf:26:1: [eventlistener:x] has no equivalent",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert!(all.contains("%(ENV_SECRET)s is not expanded"), "{all}");
    }

    #[test]
    fn default_autorestart_is_unexpected_with_exit_codes() {
        let c = convert_text(
            Path::new("x.conf"),
            "[program:a]\ncommand=sleep 1\nexitcodes=0,2\n",
            Peer::Supervisord,
        )
        .unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&c.yaml).unwrap();
        assert_eq!(
            v["apps"][0]["stop_exit_codes"],
            serde_yaml::from_str::<serde_yaml::Value>("[0, 2]").unwrap()
        );
    }

    #[test]
    fn a_program_without_command_is_a_located_error() {
        let e = convert_text(
            Path::new("x.conf"),
            "\n[program:a]\nautostart=true\n",
            Peer::Supervisord,
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .contains("x.conf:2:1: app 'a' field 'command': a program needs a `command`"),
            "{e}"
        );
    }
}
