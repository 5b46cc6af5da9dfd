//! Positioned tree → validated `Spec`.
//!
//! Invariant: every problem is collected with its place (file, line, column, app, field) and a
//! hint; an app with any error is reported, never dropped silently, and the load fails as a
//! whole. Warnings (unknown keys, ignored pm2 keys, missing `env_<NAME>`) never change what runs.
//!
//! Decisions a pm2 user may notice are marked "pm2:" in comments.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::diag::Diags;
use super::fields::{self, Key};
use super::spec::MAX_INSTANCES;
use super::tree::{Entry, Node, Parsed, Pos, Value};
use super::ConfigError;
use super::{cron, interp, units, users};
use super::{
    AppSpec, ExecMode, FilterEnv, LoadOptions, Loaded, LogFiles, LogFormat, RestartPolicy,
    Settings, Signal, Spec, WatchSpec,
};

const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_millis(1600);
const DEFAULT_LISTEN_TIMEOUT: Duration = Duration::from_millis(3000);
const MIN_UPTIME_FLOOR: Duration = Duration::from_millis(100);
/// `time: true` in pm2.
const TIME_FORMAT: &str = "YYYY-MM-DDTHH:mm:ss";

/// The top level of a file, split into its parts.
pub struct TopLevel<'a> {
    pub apps: Vec<&'a Node>,
    pub settings: Option<&'a Entry>,
    pub deploy: Option<&'a Entry>,
}

/// Finds the apps, the `pmi:` block and `deploy:` in any of the accepted layouts. `None` when
/// there is nothing to run (the error is recorded).
pub fn split_top<'a>(root: &'a Node, d: &mut Diags) -> Option<TopLevel<'a>> {
    let mut top = TopLevel {
        apps: Vec::new(),
        settings: None,
        deploy: None,
    };
    let apps_node = match &root.value {
        Value::Null => {
            d.error(
                root.pos,
                None,
                None,
                "the file is empty; add an `apps:` list with at least one app (`- script: ./server.js`)",
            );
            return None;
        }
        Value::Seq(_) => root,
        Value::Map(entries) => {
            let apps = root.get("apps");
            let legacy = root.get("pm2");
            if let (Some(_), Some(p)) = (apps, legacy) {
                d.warn(
                    p.key_pos,
                    None,
                    Some("pm2"),
                    "both `apps` and the legacy `pm2` are given; `pm2` is ignored",
                );
            }
            match apps.or(legacy) {
                Some(e) => {
                    for x in entries {
                        match x.key.as_str() {
                            "apps" | "pm2" => {}
                            "pmi" => top.settings = Some(x),
                            "deploy" => top.deploy = Some(x),
                            "static" => d.warn(
                                x.key_pos,
                                None,
                                Some("static"),
                                "pm2's `static` (pm2 serve) is not supported by pmi and is ignored; run a static file server as an app",
                            ),
                            k => d.warn(x.key_pos, None, Some(k), unknown_msg(k, fields::TOP_LEVEL.iter().copied(), "top-level key")),
                        }
                    }
                    &e.value
                }
                None if entries.iter().any(|e| {
                    matches!(fields::classify(&e.key), Key::Field(_) | Key::EnvBlock(_))
                }) =>
                {
                    // pm2: a bare object is one app.
                    top.apps.push(root);
                    return Some(top);
                }
                None => {
                    let hint = entries
                        .iter()
                        .find_map(|e| fields::nearest(&e.key, ["apps"]).map(|_| e))
                        .map(|e| {
                            format!(
                                "; found `{}` at line {}: did you mean `apps`?",
                                e.key, e.key_pos.line
                            )
                        })
                        .unwrap_or_default();
                    d.error(root.pos, None, None, format!("no apps found: expected a top-level `apps:` list, a list of apps, or one app object{hint}"));
                    return None;
                }
            }
        }
        _ => {
            d.error(
                root.pos,
                None,
                None,
                format!(
                    "expected an `apps:` list or an app object, found {}",
                    root.kind()
                ),
            );
            return None;
        }
    };
    match &apps_node.value {
        Value::Seq(items) => top.apps.extend(items.iter()),
        Value::Map(_) => top.apps.push(apps_node),
        Value::Null => {}
        _ => {
            d.error(
                apps_node.pos,
                None,
                Some("apps"),
                format!("must be a list of apps, not {}", apps_node.kind()),
            );
            return None;
        }
    }
    if top.apps.is_empty() {
        d.error(
            apps_node.pos,
            None,
            Some("apps"),
            "the list of apps is empty; add at least one app (`- script: ./server.js`)",
        );
        return None;
    }
    Some(top)
}

fn unknown_msg<'a>(key: &str, known: impl IntoIterator<Item = &'a str>, what: &str) -> String {
    match fields::nearest(key, known) {
        Some(n) => format!("unknown {what} '{key}' is ignored; did you mean '{n}'?"),
        None => format!("unknown {what} '{key}' is ignored"),
    }
}

/// One app's keys after alias resolution.
pub struct RawApp<'a> {
    pub node: &'a Node,
    /// The app's name for messages: `name`, else derived from `script`, else `#N`.
    pub label: String,
    /// (canonical name, entry) in file order; one entry per canonical name.
    pub fields: Vec<(&'static str, &'a Entry)>,
    pub env_blocks: Vec<(String, &'a Entry)>,
    /// Keys kept as written by `convert` (ignored and unknown keys).
    pub others: Vec<&'a Entry>,
}

impl<'a> RawApp<'a> {
    pub fn get(&self, canon: &str) -> Option<&'a Entry> {
        self.fields
            .iter()
            .find(|(c, _)| *c == canon)
            .map(|(_, e)| *e)
    }

    /// The value of a field, unless absent or written as null (`key:` with nothing after it).
    fn value(&self, canon: &str) -> Option<(&'a Entry, &'a Node)> {
        self.get(canon)
            .filter(|e| e.value.value != Value::Null)
            .map(|e| (e, &e.value))
    }
}

/// Resolves the keys of one app. `ignored` collects pm2 keys pmi ignores (reported once per
/// file by the caller).
pub fn collect<'a>(
    node: &'a Node,
    index: usize,
    d: &mut Diags,
    ignored: &mut Vec<(String, Pos)>,
) -> Option<RawApp<'a>> {
    let Some(entries) = node.as_map() else {
        d.error(
            node.pos,
            Some(&format!("#{}", index + 1)),
            None,
            format!(
                "an app must be an object with at least `script`, not {}",
                node.kind()
            ),
        );
        return None;
    };
    let mut raw = RawApp {
        node,
        label: label(node, index),
        fields: Vec::new(),
        env_blocks: Vec::new(),
        others: Vec::new(),
    };
    for e in entries {
        match fields::classify(&e.key) {
            Key::Field(canon) => match raw.fields.iter().position(|(c, _)| *c == canon) {
                None => raw.fields.push((canon, e)),
                Some(i) => {
                    let earlier = raw.fields[i].1;
                    // The canonical spelling wins over an alias; otherwise the first one.
                    let keep_new =
                        is_canonical(&e.key, canon) && !is_canonical(&earlier.key, canon);
                    let (kept, dropped) = if keep_new { (e, earlier) } else { (earlier, e) };
                    d.warn(
                        dropped.key_pos,
                        Some(&raw.label),
                        Some(&dropped.key),
                        format!(
                            "'{}' and '{}' are the same field; '{}' (line {}) is used",
                            dropped.key, kept.key, kept.key, kept.key_pos.line
                        ),
                    );
                    if keep_new {
                        raw.fields[i] = (canon, e);
                    }
                }
            },
            Key::EnvBlock(name) => raw.env_blocks.push((name, e)),
            Key::Ignored => {
                ignored.push((e.key.clone(), e.key_pos));
                raw.others.push(e);
            }
            Key::Unknown => {
                d.warn(
                    e.key_pos,
                    Some(&raw.label),
                    Some(&e.key),
                    unknown_msg(&e.key, fields::app_names(), "key"),
                );
                raw.others.push(e);
            }
        }
    }
    Some(raw)
}

fn is_canonical(key: &str, canon: &str) -> bool {
    key == canon || key == fields::camel(canon)
}

/// The name to use in messages about an app, before its fields are validated.
fn label(node: &Node, index: usize) -> String {
    let find = |canon: &str| {
        node.as_map()?
            .iter()
            .find(|e| matches!(fields::classify(&e.key), Key::Field(c) if c == canon))
            .and_then(|e| match &e.value.value {
                Value::Str(s) if !s.trim().is_empty() => Some(s.clone()),
                Value::Num(_) => Some(e.value.to_env_string()),
                _ => None,
            })
    };
    find("name")
        .or_else(|| find("script").map(|s| default_name(&s)))
        .unwrap_or_else(|| format!("#{}", index + 1))
}

/// pm2: the script's file name without its extension; a command line is its own name.
fn default_name(script: &str) -> String {
    if script.trim().contains(char::is_whitespace) {
        return script.trim().to_string();
    }
    let p = Path::new(script);
    p.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(script)
        .to_string()
}

/// Lexical clean-up of a path: `.` dropped, `..` applied (no symlinks are followed).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Validates a whole file.
pub fn validate(
    path: &Path,
    parsed: &Parsed,
    base_dir: &Path,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigError> {
    let mut v = Validator {
        d: Diags::new(path),
        base_dir: normalize(base_dir),
        file_dir: normalize(&base_dir.join(path))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| normalize(base_dir)),
        opts,
        cpus: None,
        users: None,
        pmi_path: std::env::var("PATH").unwrap_or_else(|_| interp::DEFAULT_PATH.to_string()),
        ignored: Vec::new(),
    };
    for w in &parsed.warnings {
        v.d.warn(w.pos, None, None, w.message.clone());
    }
    let Some(top) = split_top(&parsed.root, &mut v.d) else {
        return Err(v.d.into_error());
    };
    let settings = v.settings(top.settings);
    let deploy_env = v.deploy_env(top.deploy);

    let mut apps = Vec::new();
    let mut places = Vec::new();
    let mut missing_env_block = Vec::new();
    for (i, node) in top.apps.iter().enumerate() {
        let Some(raw) = collect(node, i, &mut v.d, &mut v.ignored) else {
            continue;
        };
        if let Some(name) = &opts.env_name {
            if !raw.env_blocks.iter().any(|(n, _)| n == name) {
                missing_env_block.push(raw.label.clone());
            }
        }
        if let Some((app, place)) = v.app(&raw, deploy_env, &settings) {
            apps.push(app);
            places.push(place);
        }
    }
    v.report_ignored();
    if let (Some(name), false) = (&opts.env_name, missing_env_block.is_empty()) {
        if deploy_env.is_none() {
            v.d.warn(
                parsed.root.pos,
                None,
                None,
                format!(
                    "--env {name}: no `env_{name}` block in app(s) {}; they run with `env` only",
                    missing_env_block.join(", ")
                ),
            );
        }
    }
    v.cross_checks(&apps, &places);
    if !v.d.errors.is_empty() {
        return Err(v.d.into_error());
    }
    let apps = v.only(apps, parsed.root.pos);
    if !v.d.errors.is_empty() {
        return Err(v.d.into_error());
    }
    let file = normalize(&v.base_dir.join(path));
    Ok(Loaded {
        spec: Spec {
            file,
            env_name: opts.env_name.clone(),
            settings,
            apps,
        },
        warnings: v.d.warnings,
    })
}

/// Where an app's name and dependencies were written, for the checks across apps.
struct Place {
    name_pos: Pos,
    deps: Vec<Pos>,
}

struct Validator<'o> {
    d: Diags,
    base_dir: PathBuf,
    /// The apps file's directory: where a relative script is looked for when it is not found
    /// from the start directory and the app sets no `cwd`.
    file_dir: PathBuf,
    opts: &'o LoadOptions,
    cpus: Option<u32>,
    users: Option<users::Db>,
    pmi_path: String,
    ignored: Vec<(String, Pos)>,
}

impl Validator<'_> {
    /// Reads one field with `parse`; a failure is recorded against the field and gives `None`.
    fn field<T>(
        &mut self,
        raw: &RawApp,
        canon: &str,
        parse: impl FnOnce(&mut Self, &Node) -> Result<T, String>,
    ) -> Option<T> {
        let (e, n) = raw.value(canon)?;
        match parse(self, n) {
            Ok(v) => Some(v),
            Err(m) => {
                self.d.error(n.pos, Some(&raw.label), Some(&e.key), m);
                None
            }
        }
    }

    fn cpus(&mut self) -> u32 {
        *self
            .cpus
            .get_or_insert_with(crate::os::cgroup::available_cpus)
    }

    fn users(&mut self) -> &users::Db {
        self.users
            .get_or_insert_with(|| users::Db::read(Path::new("/etc")))
    }

    /// One app. `None` if it had errors (already recorded).
    fn app(
        &mut self,
        raw: &RawApp,
        deploy_env: Option<&Node>,
        settings: &Settings,
    ) -> Option<(AppSpec, Place)> {
        let errors_before = self.d.errors.len();
        let label = raw.label.clone();
        let lbl = Some(label.as_str());

        let mut env = self.env(raw, deploy_env);
        let child_path = env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| self.pmi_path.clone());

        let cwd = self
            .field(raw, "cwd", |v, n| {
                let s = units::string(n)?;
                let p = normalize(&v.base_dir.join(s));
                if v.opts.check_scripts && !p.is_dir() {
                    return Err(format!("directory {} does not exist; create it or fix `cwd` (relative paths start from {})", p.display(), v.base_dir.display()));
                }
                Ok(p)
            })
            .unwrap_or_else(|| self.base_dir.clone());

        let script = match raw.value("script") {
            Some(_) => self.field(raw, "script", |_, n| units::string(n)),
            None => {
                self.d.error(raw.node.pos, lbl, Some("script"), "the app has no `script`; add `script: ./server.js` (the program to run; `exec`, `cmd` and `command` also work)");
                None
            }
        };
        let args = self
            .field(raw, "args", |_, n| units::words(n))
            .unwrap_or_default();
        let interpreter_args = self
            .field(raw, "interpreter_args", |_, n| units::words(n))
            .unwrap_or_default();
        let explicit_interp = self.field(raw, "interpreter", |_, n| units::string(n));

        let mut name = self
            .field(raw, "name", |_, n| units::string(n))
            .or_else(|| script.as_deref().map(default_name))
            .unwrap_or_else(|| label.clone());
        if self.field(raw, "append_env_to_name", |_, n| units::boolean(n)) == Some(true) {
            if let Some(env_name) = &self.opts.env_name {
                name = format!("{name}-{env_name}");
            }
        }

        let (command, interpreter) = match &script {
            Some(s) => self
                .command(
                    raw,
                    s,
                    explicit_interp,
                    &interpreter_args,
                    &args,
                    &cwd,
                    &child_path,
                )
                .unwrap_or_default(),
            None => Default::default(),
        };

        let instances_set = raw.value("instances").is_some();
        let instances = self
            .field(raw, "instances", |v, n| v.instances(n))
            .unwrap_or(1);
        let forced_fork =
            self.field(raw, "execute_command", |_, n| units::boolean(n)) == Some(true);
        let exec_mode = self
            .field(raw, "exec_mode", |_, n| exec_mode(n))
            .unwrap_or_else(|| {
                // pm2: with `instances` set and no exec_mode, a node app runs in cluster mode
                // (even `instances: 1`).
                let is_node = interpreter
                    .as_deref()
                    .and_then(|i| {
                        Path::new(i)
                            .file_name()?
                            .to_str()
                            .map(|f| f.starts_with("node"))
                    })
                    .unwrap_or(false);
                if instances_set && is_node && !forced_fork {
                    ExecMode::Cluster
                } else {
                    ExecMode::Fork
                }
            });

        let restart = self.restart(raw);
        let kill_signal = self
            .field(raw, "kill_signal", |_, n| signal(n))
            .or(self.opts.kill_signal)
            .or(settings.kill_signal)
            .unwrap_or(Signal(libc::SIGINT));
        let kill_timeout = self
            .field(raw, "kill_timeout", |_, n| units::duration(n))
            .or(self.opts.kill_timeout)
            .or(settings.kill_timeout)
            .unwrap_or(DEFAULT_KILL_TIMEOUT);
        let cron_restart = self
            .field(raw, "cron_restart", |_, n| match &n.value {
                Value::Num(x) if *x == 0.0 => Ok(None),
                Value::Str(s) => cron::parse(s),
                _ => Err(format!("{} is not a cron expression; write it as a string, e.g. \"0 3 * * *\" (0 disables)", n.show())),
            })
            .flatten();
        let max_memory_restart = self.field(raw, "max_memory_restart", |_, n| units::size(n));
        let watch = self.watch(raw, &cwd);
        let filter_env = self
            .field(raw, "filter_env", |_, n| filter_env(n))
            .unwrap_or_default();
        let instance_var = self
            .field(raw, "instance_var", |_, n| env_name(n))
            .unwrap_or_else(|| "NODE_APP_INSTANCE".to_string());
        let increment_var = self.field(raw, "increment_var", |_, n| env_name(n));
        let port = self.field(raw, "port", |_, n| match units::integer(n) {
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(format!(
                "{} is not a port; use a number from 1 to 65535",
                n.show()
            )),
        });
        let (uid, gid, groups, home) = self.ids(raw);
        if let Some(h) = home {
            env.entry("HOME".to_string()).or_insert(h);
        }
        let logs = self.logs(raw, &cwd, exec_mode, instances_set);
        let pid_file = self
            .field(raw, "pid_file", |_, n| log_path(n, &cwd, "pid_file"))
            .flatten();
        let namespace = self
            .field(raw, "namespace", |_, n| units::string(n))
            .unwrap_or_else(|| "default".to_string());
        let wait_ready = self
            .field(raw, "wait_ready", |_, n| units::boolean(n))
            .unwrap_or(false);
        let listen_timeout = self
            .field(raw, "listen_timeout", |_, n| units::duration(n))
            .unwrap_or(DEFAULT_LISTEN_TIMEOUT);
        let shutdown_with_message = self
            .field(raw, "shutdown_with_message", |_, n| units::boolean(n))
            .unwrap_or(false);
        let autostart = self
            .field(raw, "autostart", |_, n| units::boolean(n))
            .unwrap_or(true);
        let deps = self
            .field(raw, "depends_on", |_, n| depends_on(n))
            .unwrap_or_default();
        self.notes(raw);

        if self.d.errors.len() > errors_before {
            return None;
        }
        let place = Place {
            name_pos: raw.get("name").map_or(raw.node.pos, |e| e.value.pos),
            deps: deps.iter().map(|(_, p)| *p).collect(),
        };
        Some((
            AppSpec {
                name,
                namespace,
                script: script.unwrap_or_default(),
                command,
                args,
                interpreter,
                interpreter_args,
                cwd,
                instances,
                exec_mode,
                autostart,
                restart,
                kill_signal,
                kill_timeout,
                cron_restart,
                env,
                filter_env,
                instance_var,
                increment_var,
                port,
                max_memory_restart,
                watch,
                logs,
                uid,
                gid,
                groups,
                pid_file,
                wait_ready,
                listen_timeout,
                shutdown_with_message,
                depends_on: deps.into_iter().map(|(n, _)| n).collect(),
            },
            place,
        ))
    }

    /// `deploy.<env>.env`, `env`, then `env_<NAME>` (pm2's order, lowest first). Every block
    /// is checked, selected or not.
    fn env(&mut self, raw: &RawApp, deploy_env: Option<&Node>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(n) = deploy_env {
            self.merge_env(&mut env, n, &raw.label, "deploy env");
        }
        if let Some((e, n)) = raw.value("env") {
            self.merge_env(&mut env, n, &raw.label, &e.key);
        }
        for (name, e) in &raw.env_blocks {
            if e.value.value == Value::Null {
                continue;
            }
            let mut block = BTreeMap::new();
            self.merge_env(&mut block, &e.value, &raw.label, &e.key);
            if self.opts.env_name.as_deref() == Some(name.as_str()) {
                env.extend(block);
            }
        }
        env
    }

    fn merge_env(&mut self, env: &mut BTreeMap<String, String>, n: &Node, app: &str, field: &str) {
        let Some(entries) = n.as_map() else {
            self.d.error(
                n.pos,
                Some(app),
                Some(field),
                format!("must be an object of NAME: value, not {}", n.kind()),
            );
            return;
        };
        for e in entries {
            if e.key.is_empty() || e.key.contains(['=', '\0']) {
                self.d.error(
                    e.key_pos,
                    Some(app),
                    Some(field),
                    format!(
                        "{:?} is not a valid environment variable name (no '=' or NUL, not empty)",
                        e.key
                    ),
                );
                continue;
            }
            let v = e.value.to_env_string();
            if v.contains('\0') {
                self.d.error(
                    e.value.pos,
                    Some(app),
                    Some(field),
                    format!("the value of {} contains a NUL byte", e.key),
                );
                continue;
            }
            env.insert(e.key.clone(), v);
        }
    }

    /// Builds the argv. See `AppSpec::command`.
    #[allow(clippy::too_many_arguments)]
    fn command(
        &mut self,
        raw: &RawApp,
        script: &str,
        explicit_interp: Option<String>,
        iargs: &[String],
        args: &[String],
        cwd: &Path,
        path_var: &str,
    ) -> Option<(Vec<String>, Option<String>)> {
        let lbl = Some(raw.label.as_str());
        let script_entry = raw.get("script");
        let spos = script_entry.map_or(raw.node.pos, |e| e.value.pos);
        let skey = script_entry.map(|e| e.key.as_str());
        let trimmed = script.trim();

        if trimmed.contains(char::is_whitespace) {
            // pm2: a command line runs through a shell; `exec` so signals reach the app.
            if let Some(i) = explicit_interp.as_deref().filter(|i| *i != "none") {
                self.d.warn(spos, lbl, Some("interpreter"), format!("interpreter '{i}' is not used: a script with spaces runs as a shell command (`sh -c`)"));
            }
            let mut line = format!("exec {trimmed}");
            for a in args {
                line.push(' ');
                line.push_str(&units::shell_quote(a));
            }
            return Some((vec!["sh".into(), "-c".into(), line], None));
        }

        let interpreter = match explicit_interp {
            Some(i) if i == "none" => None,
            Some(i) => {
                Some(match i.strip_prefix("node@") {
                    Some(_) => {
                        self.d.warn(spos, lbl, Some("interpreter"), format!("'{i}': pmi does not install node versions; the `node` on PATH is used"));
                        "node".to_string()
                    }
                    None => i,
                })
            }
            None => interp::by_extension(trimmed, path_var, cwd),
        };

        let in_cwd = {
            let c = cwd.join(trimmed);
            let beside_file = self.file_dir.join(trimmed);
            if !c.is_file() && cwd == self.base_dir && beside_file.is_file() {
                beside_file
            } else {
                c
            }
        };
        let found = if in_cwd.is_file() {
            Some(normalize(&in_cwd))
        } else {
            interp::which(trimmed, path_var, cwd).filter(|_| !trimmed.contains('/'))
        };
        let check = self.opts.check_scripts;
        if check && found.is_none() {
            let msg = if trimmed.contains('/') {
                format!(
                    "script not found: {} does not exist; fix `script` or `cwd`",
                    normalize(&in_cwd).display()
                )
            } else {
                format!("script not found: '{trimmed}' is neither in {} nor on PATH; fix `script` or `cwd`", cwd.display())
            };
            self.d.error(spos, lbl, skey, msg);
            return None;
        }
        if let (true, Some(i)) = (check, &interpreter) {
            if interp::which(i, path_var, cwd).is_none() {
                let pos = raw.get("interpreter").map_or(spos, |e| e.value.pos);
                self.d.error(
                    pos,
                    lbl,
                    Some("interpreter"),
                    format!(
                        "interpreter '{i}' is not on PATH; {}",
                        interp::install_hint(i)
                    ),
                );
                return None;
            }
        }
        let mut argv = Vec::new();
        match &interpreter {
            Some(i) => {
                argv.push(i.clone());
                argv.extend(iargs.iter().cloned());
                // An interpreter does not search PATH for its script: give it a path.
                let p = found.unwrap_or_else(|| normalize(&in_cwd));
                argv.push(p.display().to_string());
            }
            None => {
                if !iargs.is_empty() {
                    let pos = raw.get("interpreter_args").map_or(spos, |e| e.key_pos);
                    self.d.warn(pos, lbl, Some("interpreter_args"), "ignored: the script has no known extension, so it runs by itself (pm2 would run it with node); set `interpreter: node` to pass these arguments to node");
                }
                let in_cwd_found = found
                    .as_ref()
                    .is_some_and(|p| p.starts_with(cwd) && p == &normalize(&in_cwd));
                if check && in_cwd_found && !is_executable(&in_cwd) {
                    self.d.error(spos, lbl, skey, format!("{} is not executable; `chmod +x` it or set `interpreter` (e.g. sh, node)", in_cwd.display()));
                    return None;
                }
                let argv0 = if in_cwd_found || (!check && trimmed.contains('/')) {
                    normalize(&in_cwd).display().to_string()
                } else {
                    // Found on PATH: keep the name; the spawn looks it up with the same PATH.
                    trimmed.to_string()
                };
                argv.push(argv0);
            }
        }
        argv.extend(args.iter().cloned());
        Some((argv, interpreter))
    }

    /// pm2: N, "max", 0 (= max), -N (= cpus - N); a result below 1 is 1.
    fn instances(&mut self, n: &Node) -> Result<u32, String> {
        let bad = || {
            format!(
                "{} is not a count; use a number, \"max\", 0 or a negative number",
                n.show()
            )
        };
        let want = match &n.value {
            Value::Str(s) if s.trim().eq_ignore_ascii_case("max") => 0,
            _ => units::integer(n).ok_or_else(bad)?,
        };
        if want > i64::from(MAX_INSTANCES) {
            return Err(format!("{want} instances is more than pmi allows ({MAX_INSTANCES}); use \"max\" to follow the CPUs"));
        }
        let cpus = i64::from(self.cpus());
        let count = match want {
            0 => cpus,
            w if w < 0 => cpus + w,
            w => w,
        };
        Ok(count.max(1) as u32)
    }

    fn restart(&mut self, raw: &RawApp) -> RestartPolicy {
        let dflt = RestartPolicy::default();
        RestartPolicy {
            autorestart: self
                .field(raw, "autorestart", |_, n| units::boolean(n))
                .unwrap_or(dflt.autorestart),
            max_restarts: self
                .field(raw, "max_restarts", |_, n| units::count(n))
                .unwrap_or(dflt.max_restarts),
            min_uptime: self
                .field(raw, "min_uptime", |_, n| {
                    let d = units::duration(n)?;
                    if d < MIN_UPTIME_FLOOR {
                        return Err(format!(
                            "{} is below the minimum of 100 ms (as pm2); use 100 or more",
                            n.show()
                        ));
                    }
                    Ok(d)
                })
                .unwrap_or(dflt.min_uptime),
            restart_delay: self
                .field(raw, "restart_delay", |_, n| units::duration(n))
                .unwrap_or(dflt.restart_delay),
            exp_backoff_restart_delay: self
                .field(raw, "exp_backoff_restart_delay", |_, n| units::duration(n))
                .filter(|d| !d.is_zero()),
            stop_exit_codes: self
                .field(raw, "stop_exit_codes", |_, n| exit_codes(n))
                .unwrap_or_default(),
        }
    }

    fn watch(&mut self, raw: &RawApp, cwd: &Path) -> Option<WatchSpec> {
        let paths = self.field(raw, "watch", |_, n| {
            let from_str = |s: &str| normalize(&cwd.join(s));
            match &n.value {
                Value::Bool(false) => Ok(None),
                Value::Bool(true) => Ok(Some(vec![cwd.to_path_buf()])),
                Value::Str(s) if s.trim() == "false" => Ok(None),
                Value::Str(s) if s.trim() == "true" => Ok(Some(vec![cwd.to_path_buf()])),
                Value::Str(s) if !s.trim().is_empty() => Ok(Some(vec![from_str(s.trim())])),
                Value::Seq(items) => {
                    let mut v = Vec::new();
                    for i in items {
                        match i.as_str() {
                            Some(s) if !s.trim().is_empty() => v.push(from_str(s.trim())),
                            _ => {
                                return Err(format!(
                                    "watch paths must be strings; item at line {} is {}",
                                    i.pos.line,
                                    i.kind()
                                ))
                            }
                        }
                    }
                    // pm2: `watch: []` watches the cwd.
                    if v.is_empty() {
                        v.push(cwd.to_path_buf());
                    }
                    Ok(Some(v))
                }
                _ => Err(format!(
                    "{} is not a watch setting; use true, false, a path or a list of paths",
                    n.show()
                )),
            }
        })??;
        let ignore = self
            .field(raw, "ignore_watch", |_, n| units::words(n))
            .unwrap_or_else(|| vec!["node_modules".to_string(), ".*".to_string()]);
        let delay = self
            .field(raw, "watch_delay", |_, n| units::duration(n))
            .unwrap_or(Duration::ZERO);
        Some(WatchSpec {
            paths,
            ignore,
            delay,
        })
    }

    /// uid (by name or number), gid (given, else the user's primary group), and the user's
    /// supplementary groups.
    /// uid/gid/supplementary groups, and the user's home (pm2 sets HOME for a `uid` user).
    fn ids(&mut self, raw: &RawApp) -> (Option<u32>, Option<u32>, Vec<u32>, Option<String>) {
        let user = self.field(raw, "uid", |v, n| {
            let s = units::string(n)?;
            let (uid, u) = v.users().user(&s)?;
            Ok((uid, u.cloned()))
        });
        let gid = self.field(raw, "gid", |v, n| {
            let s = units::string(n)?;
            v.users().group(&s)
        });
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let switches = user.as_ref().is_some_and(|(u, _)| *u != euid) || gid.is_some();
        if self.opts.check_scripts && euid != 0 && switches {
            let key = if user.is_some() { "uid" } else { "gid" };
            let pos = raw.get(key).map_or(raw.node.pos, |e| e.value.pos);
            self.d.error(
                pos,
                Some(raw.label.as_str()),
                Some(key),
                format!("switching user or group needs pmi to run as root (it runs as uid {euid}); run pmi as root, or drop `uid`/`gid` and set the container's user instead"),
            );
        }
        match user {
            Some((uid, Some(u))) => {
                let groups = self.users().supplementary(&u.name);
                let home = Some(u.home.clone()).filter(|h| !h.is_empty());
                (Some(uid), gid.or(Some(u.gid)), groups, home)
            }
            Some((uid, None)) => (Some(uid), gid, Vec::new(), None),
            None => (None, gid, Vec::new(), None),
        }
    }

    fn logs(&mut self, raw: &RawApp, cwd: &Path, mode: ExecMode, instances_set: bool) -> LogFiles {
        let time = self
            .field(raw, "time", |_, n| units::boolean(n))
            .unwrap_or(false);
        let date_format = self
            .field(raw, "log_date_format", |_, n| units::string(n))
            .or_else(|| time.then(|| TIME_FORMAT.to_string()));
        let json = self
            .field(raw, "log_type", |_, n| match n.as_str().map(str::trim) {
                Some("json") => Ok(true),
                Some("raw") | Some("") => Ok(false),
                _ => Err(format!(
                    "{} is not a log type; use \"json\" (or leave it out)",
                    n.show()
                )),
            })
            .unwrap_or(false);
        LogFiles {
            out_file: self
                .field(raw, "out_file", |_, n| log_path(n, cwd, "out_file"))
                .flatten(),
            error_file: self
                .field(raw, "error_file", |_, n| log_path(n, cwd, "error_file"))
                .flatten(),
            log_file: self
                .field(raw, "log_file", |_, n| log_path(n, cwd, "log_file"))
                .flatten(),
            // pm2: merged by default when a fork app has no `instances`.
            merge_logs: self
                .field(raw, "merge_logs", |_, n| units::boolean(n))
                .unwrap_or(mode == ExecMode::Fork && !instances_set),
            date_format,
            json,
        }
    }

    /// Warnings for keys that are accepted but do nothing in pmi.
    fn notes(&mut self, raw: &RawApp) {
        if let Some(e) = raw.get("watch_options") {
            self.d.warn(e.key_pos, Some(&raw.label), Some(&e.key), "ignored: pmi watches with inotify; chokidar options do not apply (use watch, ignore_watch and watch_delay)");
        }
        if let Some(e) = raw.get("env_file") {
            self.d.warn(e.key_pos, Some(&raw.label), Some(&e.key), "ignored: pmi does not read dotenv files; put the variables under `env` (or run `pmi convert` on a machine where the JS file loads them)");
        }
        for k in fields::NOT_YET {
            if let Some(e) = raw.get(k) {
                self.d.warn(
                    e.key_pos,
                    Some(&raw.label),
                    Some(&e.key),
                    format!("`{k}` is not supported by this version of pmi and is ignored"),
                );
            }
        }
    }

    fn report_ignored(&mut self) {
        let Some((_, first)) = self.ignored.first().cloned() else {
            return;
        };
        let mut names: Vec<&str> = self.ignored.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let msg = format!(
            "pm2 keys with no effect in pmi (PM2.io, Node or pm2-CLI internals) are ignored: {}",
            names.join(", ")
        );
        self.d.warn(first, None, None, msg);
    }

    /// The top-level `pmi:` block; the command line's kill options win.
    fn settings(&mut self, block: Option<&Entry>) -> Settings {
        let mut s = Settings::default();
        if let Some(e) = block.filter(|e| e.value.value != Value::Null) {
            let Some(entries) = e.value.as_map() else {
                self.d.error(
                    e.value.pos,
                    None,
                    Some("pmi"),
                    format!("must be an object of settings, not {}", e.value.kind()),
                );
                return s;
            };
            for x in entries {
                let n = &x.value;
                let r: Result<(), String> = (|| {
                    match x.key.as_str() {
                        "socket" => {
                            s.socket = Some(normalize(&self.base_dir.join(units::string(n)?)))
                        }
                        "http" => s.http = Some(units::string(n)?),
                        "log_format" => {
                            s.log_format = Some(match n.as_str().map(str::trim) {
                                Some("raw") => LogFormat::Raw,
                                Some("prefixed") => LogFormat::Prefixed,
                                Some("json") => LogFormat::Json,
                                _ => {
                                    return Err(format!(
                                        "{} is not a log format; use raw, prefixed or json",
                                        n.show()
                                    ))
                                }
                            })
                        }
                        "auto_exit" => s.auto_exit = Some(units::boolean(n)?),
                        "kill_signal" => s.kill_signal = Some(signal(n)?),
                        "kill_timeout" => s.kill_timeout = Some(units::duration(n)?),
                        "memory_check_interval" => {
                            let d = units::duration(n)?;
                            if d < Duration::from_millis(100) {
                                return Err("must be at least 100 ms".into());
                            }
                            s.memory_check_interval = Some(d);
                        }
                        "socket_group" => s.socket_group = Some(units::string(n)?),
                        "watch_config" => s.watch_config = Some(units::boolean(n)?),
                        k => self.d.warn(
                            x.key_pos,
                            None,
                            Some(&format!("pmi.{k}")),
                            unknown_msg(k, fields::SETTINGS_FIELDS.iter().copied(), "setting"),
                        ),
                    }
                    Ok(())
                })();
                if let Err(m) = r {
                    self.d
                        .error(n.pos, None, Some(&format!("pmi.{}", x.key)), m);
                }
            }
        }
        s.kill_signal = self.opts.kill_signal.or(s.kill_signal);
        s.kill_timeout = self.opts.kill_timeout.or(s.kill_timeout);
        s
    }

    /// `deploy.<NAME>.env` for `--env NAME`, when present.
    fn deploy_env<'t>(&mut self, deploy: Option<&'t Entry>) -> Option<&'t Node> {
        let name = self.opts.env_name.as_deref()?;
        let target = deploy?.value.get(name)?;
        let env = target.value.get("env")?;
        (env.value.value != Value::Null).then_some(&env.value)
    }

    /// Duplicate names and `depends_on` (unknown names, cycles).
    fn cross_checks(&mut self, apps: &[AppSpec], places: &[Place]) {
        let mut first: HashMap<&str, Pos> = HashMap::new();
        for (a, p) in apps.iter().zip(places) {
            if let Some(prev) = first.get(a.name.as_str()) {
                self.d.error(p.name_pos, Some(&a.name), Some("name"), format!("another app (line {}) has the same name; names must be unique (pmi targets apps by name)", prev.line));
            } else {
                first.insert(&a.name, p.name_pos);
            }
        }
        let index: HashMap<&str, usize> = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        for (a, p) in apps.iter().zip(places) {
            for (dep, pos) in a.depends_on.iter().zip(&p.deps) {
                if !index.contains_key(dep.as_str()) {
                    let names: Vec<&str> = apps.iter().map(|x| x.name.as_str()).collect();
                    self.d.error(
                        *pos,
                        Some(&a.name),
                        Some("depends_on"),
                        format!(
                            "no app named '{dep}'; apps in this file: {}",
                            names.join(", ")
                        ),
                    );
                } else if dep == &a.name {
                    self.d.error(
                        *pos,
                        Some(&a.name),
                        Some("depends_on"),
                        "an app cannot depend on itself",
                    );
                }
            }
        }
        if let Some(cycle) = find_cycle(apps, &index) {
            let i = index.get(cycle[0].as_str()).copied().unwrap_or(0);
            let pos = places
                .get(i)
                .and_then(|p| p.deps.first().copied())
                .unwrap_or_default();
            self.d.error(
                pos,
                Some(&cycle[0]),
                Some("depends_on"),
                format!(
                    "dependency cycle: {}; remove one of these `depends_on`",
                    cycle.join(" → ")
                ),
            );
        }
    }

    /// `--only`: keep the apps named, or in the namespaces named. Dependencies on apps left out
    /// are dropped (the app starts without waiting for them).
    fn only(&mut self, apps: Vec<AppSpec>, pos: Pos) -> Vec<AppSpec> {
        let Some(only) = &self.opts.only else {
            return apps;
        };
        let wanted = |a: &AppSpec| only.iter().any(|o| o == &a.name || o == &a.namespace);
        let all: Vec<String> = apps.iter().map(|a| a.name.clone()).collect();
        for o in only {
            if !apps.iter().any(|a| &a.name == o || &a.namespace == o) {
                let msg = format!(
                    "--only: no app or namespace named '{o}'; apps in this file: {}",
                    all.join(", ")
                );
                if self.opts.only_missing_warns {
                    self.d.warn(pos, None, None, msg);
                } else {
                    self.d.error(pos, None, None, msg);
                }
            }
        }
        let mut kept: Vec<AppSpec> = apps.into_iter().filter(wanted).collect();
        let names: Vec<String> = kept.iter().map(|a| a.name.clone()).collect();
        for a in &mut kept {
            a.depends_on.retain(|d| names.contains(d));
        }
        if kept.is_empty() && self.d.errors.is_empty() {
            self.d.error(
                pos,
                None,
                None,
                format!("--only left no apps; apps in this file: {}", all.join(", ")),
            );
        }
        kept
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// A dependency cycle, as the list of names around it, if any.
fn find_cycle(apps: &[AppSpec], index: &HashMap<&str, usize>) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit(
        i: usize,
        apps: &[AppSpec],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[i] = 1;
        path.push(i);
        for d in &apps[i].depends_on {
            let Some(&j) = index.get(d.as_str()) else {
                continue;
            };
            if j == i {
                continue; // reported on its own
            }
            if state[j] == 1 {
                let from = path.iter().position(|&k| k == j).unwrap_or(0);
                let mut names: Vec<String> =
                    path[from..].iter().map(|&k| apps[k].name.clone()).collect();
                names.push(apps[j].name.clone());
                return Some(names);
            }
            if state[j] == 0 {
                if let Some(c) = visit(j, apps, index, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; apps.len()];
    for i in 0..apps.len() {
        if state[i] == 0 {
            if let Some(c) = visit(i, apps, index, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn exec_mode(n: &Node) -> Result<ExecMode, String> {
    match n.as_str().map(str::trim) {
        Some("fork" | "fork_mode") => Ok(ExecMode::Fork),
        Some("cluster" | "cluster_mode") => Ok(ExecMode::Cluster),
        _ => Err(format!(
            "{} is not an exec mode; use fork or cluster",
            n.show()
        )),
    }
}

fn signal(n: &Node) -> Result<Signal, String> {
    let text = match &n.value {
        Value::Str(s) => s.clone(),
        Value::Num(_) => n.to_env_string(),
        _ => String::new(),
    };
    crate::os::signals::parse(&text).map(Signal).ok_or_else(|| {
        format!(
            "{} is not a signal; use a name such as SIGTERM, SIGINT, SIGQUIT, or a number",
            n.show()
        )
    })
}

fn exit_codes(n: &Node) -> Result<Vec<i32>, String> {
    let one = |x: &Node| match units::integer(x) {
        Some(c) if (0..=255).contains(&c) => Ok(c as i32),
        _ => Err(format!(
            "{} is not an exit code; use numbers from 0 to 255",
            x.show()
        )),
    };
    match &n.value {
        Value::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(n)?]),
    }
}

fn filter_env(n: &Node) -> Result<FilterEnv, String> {
    match &n.value {
        Value::Bool(true) => Ok(FilterEnv::All),
        Value::Bool(false) => Ok(FilterEnv::None),
        // pm2 drops exactly the key named by a string; pmi drops every key containing it, as
        // for a list (a superset, and one rule to remember).
        Value::Str(s) if !s.is_empty() => Ok(FilterEnv::Key(s.clone())),
        Value::Seq(_) => Ok(FilterEnv::Containing(units::words(n)?)),
        _ => Err(format!(
            "{} is not a filter; use true, a variable name, or a list of names",
            n.show()
        )),
    }
}

fn env_name(n: &Node) -> Result<String, String> {
    let s = units::string(n)?;
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "{s:?} is not an environment variable name; use letters, digits and _"
        ))
    }
}

/// A log or pid file path: relative to the app's cwd; `/dev/null` and `NULL` mean none.
fn log_path(n: &Node, cwd: &Path, field: &str) -> Result<Option<PathBuf>, String> {
    match &n.value {
        Value::Bool(false) => Ok(None),
        Value::Bool(true) => Err(format!(
            "`{field}: true` asks for pm2's default file under ~/.pm2/logs, which pmi does not write (output goes to the container log); give a path such as ./logs/app.log, or remove the key"
        )),
        Value::Str(s) if s.trim() == "/dev/null" || s.trim() == "NULL" => Ok(None),
        Value::Str(s) if !s.trim().is_empty() => Ok(Some(normalize(&cwd.join(s.trim())))),
        _ => Err(format!("{} is not a file path", n.show())),
    }
}

fn depends_on(n: &Node) -> Result<Vec<(String, Pos)>, String> {
    let one = |x: &Node| units::string(x).map(|s| (s, x.pos));
    match &n.value {
        Value::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(n)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_scripts() {
        assert_eq!(default_name("./dist/app.js"), "app");
        assert_eq!(default_name("server"), "server");
        assert_eq!(default_name("npm start"), "npm start");
        assert_eq!(default_name("a.b.py"), "a.b");
    }

    #[test]
    fn normalizing() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/a/b/")), PathBuf::from("/a/b"));
    }
}
