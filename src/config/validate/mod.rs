//! Positioned tree → validated `Spec`.
//!
//! Invariant: every problem is collected with its place (file, line, column, app, field) and a
//! hint; an app with any error is reported, never dropped silently, and the load fails as a
//! whole. Warnings (unknown keys, ignored pm2 keys, missing `env_<NAME>`) never change what runs.
//!
//! One file per field group; each adds methods to `Validator`. Decisions a pm2 user may notice
//! are marked "pm2:" in comments.

mod deps;
mod env;
mod ids;
mod logs;
mod process;
mod restart;
mod settings;
mod top;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use top::{collect, split_top};
use top::{normalize, RawApp};

use super::diag::Diags;
use super::fields;
use super::tree::{Node, Parsed, Pos};
use super::ConfigError;
use super::{interp, units, users};
use super::{AppSpec, LoadOptions, Loaded, Settings, Spec};

const DEFAULT_LISTEN_TIMEOUT: Duration = Duration::from_millis(3000);

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
        let (app, place) = v.app(&raw, deploy_env, &settings);
        apps.extend(app);
        places.push(place);
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
    v.cross_checks(&places);
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
            cpus: v
                .cpus
                .as_ref()
                .map(|c| format!("max = {}: {}", c.cpus, c.why)),
            settings,
            apps,
        },
        warnings: v.d.warnings,
    })
}

/// An app's name and dependencies and where they were written, for the checks across apps;
/// kept for every app, valid or not.
struct Place {
    name: String,
    name_pos: Pos,
    deps: Vec<(String, Pos)>,
}

struct Validator<'o> {
    d: Diags,
    base_dir: PathBuf,
    /// The apps file's directory: where a relative script is looked for when it is not found
    /// from the start directory and the app sets no `cwd`.
    file_dir: PathBuf,
    opts: &'o LoadOptions,
    cpus: Option<crate::os::cgroup::CpuCount>,
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

    /// The CPU count behind `instances: max`, 0 and -N; read once, on first use.
    fn cpus(&mut self) -> u32 {
        self.cpus
            .get_or_insert_with(crate::os::cgroup::cpu_count)
            .cpus
    }

    fn users(&mut self) -> &users::Db {
        self.users
            .get_or_insert_with(|| users::Db::read(Path::new("/etc")))
    }

    /// One app, `None` if it had errors (already recorded), and its place for the cross checks.
    /// One app, `None` if it had errors (already recorded), and its place for the cross checks.
    fn app(
        &mut self,
        raw: &RawApp,
        deploy_env: Option<&Node>,
        settings: &Settings,
    ) -> (Option<AppSpec>, Place) {
        let errors_before = self.d.errors.len();
        let mut env = self.env(raw, deploy_env);
        let child_path = env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| self.pmi_path.clone());
        let p = self.process(raw, &child_path);

        let restart = self.restart(raw);
        let (kill_signal, kill_timeout) = self.stopping(raw, settings);
        let cron_restart = self.cron(raw);
        let max_memory_restart = self.field(raw, "max_memory_restart", |_, n| units::size(n));
        let watch = self.watch(raw, &p.cwd);
        let filter_env = self
            .field(raw, "filter_env", |_, n| env::filter_env(n))
            .unwrap_or_default();
        let instance_var = self
            .field(raw, "instance_var", |_, n| env::env_name(n))
            .unwrap_or_else(|| "NODE_APP_INSTANCE".to_string());
        let increment_var = self.field(raw, "increment_var", |_, n| env::env_name(n));
        let port = self.field(raw, "port", |_, n| env::port(n));
        let (uid, gid, groups, home) = self.ids(raw);
        if let Some(h) = home {
            env.entry("HOME".to_string()).or_insert(h);
        }
        let logs = self.logs(raw, &p.cwd, p.exec_mode, p.instances_set);
        let pid_file = self
            .field(raw, "pid_file", |_, n| {
                logs::log_path(n, &p.cwd, "pid_file")
            })
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
            .field(raw, "depends_on", |_, n| deps::depends_on(n))
            .unwrap_or_default();
        self.notes(raw);

        let place = Place {
            name: p.name.clone(),
            name_pos: raw.get("name").map_or(raw.node.pos, |e| e.value.pos),
            deps: deps.clone(),
        };
        if self.d.errors.len() > errors_before {
            return (None, place);
        }
        let app = AppSpec {
            name: p.name,
            namespace,
            script: p.script.unwrap_or_default(),
            command: p.command,
            args: p.args,
            interpreter: p.interpreter,
            interpreter_args: p.interpreter_args,
            cwd: p.cwd,
            instances: p.instances,
            exec_mode: p.exec_mode,
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
        };
        (Some(app), place)
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
}
