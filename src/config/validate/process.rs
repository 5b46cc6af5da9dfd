//! `script`, `args`, `interpreter`, `cwd`, `instances`, `exec_mode`: what runs and how many.

use std::path::{Path, PathBuf};

use super::top::{default_name, normalize, RawApp};
use super::Validator;
use crate::config::spec::MAX_INSTANCES;
use crate::config::tree::{Node, Value};
use crate::config::{interp, shell, units, ExecMode};

/// What an app runs, where, and how many times.
pub(super) struct Process {
    pub cwd: PathBuf,
    pub script: Option<String>,
    pub name: String,
    pub args: Vec<String>,
    pub interpreter_args: Vec<String>,
    pub command: Vec<String>,
    pub interpreter: Option<String>,
    pub instances: u32,
    pub instances_set: bool,
    pub exec_mode: ExecMode,
}

impl Validator<'_> {
    /// `cwd`, `script`, `args`, `interpreter`, `name`, `instances`, `exec_mode`. `child_path` is
    /// the PATH the app will see (its `env` may set one).
    pub(super) fn process(&mut self, raw: &RawApp, child_path: &str) -> Process {
        let label = raw.label.clone();
        let lbl = Some(label.as_str());
        // A missing cwd is reported, but still used to look for the script, so that the
        // script's message names the path the app would really use.
        let cwd = self
            .field(raw, "cwd", |v, n| {
                Ok(normalize(&v.base_dir.join(units::string(n)?)))
            })
            .unwrap_or_else(|| self.base_dir.clone());
        if let (true, Some((_, n))) = (self.opts.check_scripts && !cwd.is_dir(), raw.value("cwd")) {
            let msg = format!("directory {} does not exist; create it or fix `cwd` (relative paths start from {})", cwd.display(), self.base_dir.display());
            self.d
                .error(n.pos, lbl, raw.get("cwd").map(|e| e.key.as_str()), msg);
        }

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
            .field(raw, "name", |_, n| app_name(n))
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
                    child_path,
                )
                .unwrap_or_default(),
            None => Default::default(),
        };

        let instances_set = raw.value("instances").is_some();
        let instances = self
            .field(raw, "instances", |v, n| v.instances(n))
            .unwrap_or(1);
        let exec_mode = self.mode(raw, interpreter.as_deref(), instances_set);
        Process {
            cwd,
            script,
            name,
            args,
            interpreter_args,
            command,
            interpreter,
            instances,
            instances_set,
            exec_mode,
        }
    }

    fn mode(&mut self, raw: &RawApp, interpreter: Option<&str>, instances_set: bool) -> ExecMode {
        let forced_fork =
            self.field(raw, "execute_command", |_, n| units::boolean(n)) == Some(true);
        self.field(raw, "exec_mode", |_, n| exec_mode(n))
            .unwrap_or_else(|| {
                // pm2: with `instances` set and no exec_mode, a node app runs in cluster mode
                // (even `instances: 1`).
                let is_node = interpreter
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
            })
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
            return Some(self.shell(raw, trimmed, explicit_interp.as_deref(), args));
        }

        let none = explicit_interp.as_deref() == Some("none");
        let interpreter = self.interpreter(raw, explicit_interp, trimmed, path_var, cwd);
        let (in_cwd, found) = self.locate(trimmed, cwd, path_var);
        // pm2 runs a script without a known extension with node. pmi runs it by itself, unless
        // it cannot be (not executable) and is a Node script: a node shebang (Express's
        // `./bin/www`) or node arguments given.
        let interpreter = match (&interpreter, &found) {
            (None, Some(f))
                if !none && !is_executable(f) && (node_shebang(f) || !iargs.is_empty()) =>
            {
                Some("node".to_string())
            }
            _ => interpreter,
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
                    self.d.error(spos, lbl, skey, format!("{} is not executable and has no node shebang; `chmod +x` it (e.g. `RUN chmod +x` in the Dockerfile) or set `interpreter` (node, sh, python3 …)", in_cwd.display()));
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

    /// pm2: a command line runs through a shell; `exec` so signals reach the app itself.
    fn shell(
        &mut self,
        raw: &RawApp,
        trimmed: &str,
        explicit_interp: Option<&str>,
        args: &[String],
    ) -> (Vec<String>, Option<String>) {
        let spos = raw.get("script").map_or(raw.node.pos, |e| e.value.pos);
        if let Some(i) = explicit_interp.filter(|i| *i != "none") {
            self.d.warn(spos, Some(&raw.label), Some("interpreter"), format!("interpreter '{i}' is not used: a script with spaces runs as a shell command (`sh -c`)"));
        }
        // SPEC §3: only one simple command gets `exec`; a compound one (`a && b`) runs whole,
        // else everything after the first command would never run.
        let mut line = if shell::is_simple_command(trimmed) {
            format!("exec {trimmed}")
        } else {
            trimmed.to_string()
        };
        for a in args {
            line.push(' ');
            line.push_str(&units::shell_quote(a));
        }
        (vec!["sh".into(), "-c".into(), line], None)
    }

    /// The interpreter: as given (`none`: the script itself), else by the script's extension.
    fn interpreter(
        &mut self,
        raw: &RawApp,
        explicit: Option<String>,
        trimmed: &str,
        path_var: &str,
        cwd: &Path,
    ) -> Option<String> {
        let spos = raw.get("script").map_or(raw.node.pos, |e| e.value.pos);
        match explicit {
            Some(i) if i == "none" => None,
            Some(i) => {
                Some(match i.strip_prefix("node@") {
                    Some(_) => {
                        self.d.warn(spos, Some(&raw.label), Some("interpreter"), format!("'{i}': pmi does not install node versions; the `node` on PATH is used"));
                        "node".to_string()
                    }
                    None => i,
                })
            }
            None => interp::by_extension(trimmed, path_var, cwd),
        }
    }

    /// The script relative to the cwd (or beside the apps file, when the app sets no cwd and
    /// it is only there), and where it was found: that file, else on PATH for a bare name.
    fn locate(&self, trimmed: &str, cwd: &Path, path_var: &str) -> (PathBuf, Option<PathBuf>) {
        let c = cwd.join(trimmed);
        let beside_file = self.file_dir.join(trimmed);
        let in_cwd = if !c.is_file() && cwd == self.base_dir && beside_file.is_file() {
            beside_file
        } else {
            c
        };
        let found = if in_cwd.is_file() {
            Some(normalize(&in_cwd))
        } else {
            interp::which(trimmed, path_var, cwd).filter(|_| !trimmed.contains('/'))
        };
        (in_cwd, found)
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
        let count = match want {
            0 => i64::from(self.cpus()),
            w if w < 0 => i64::from(self.cpus()) + w,
            w => w,
        };
        Ok(count.max(1) as u32)
    }
}

/// `name`: a string without control characters (a newline or ESC in a name would go raw into
/// pmi's log, the status table and `name:N` targets).
fn app_name(n: &Node) -> Result<String, String> {
    let s = units::string(n)?;
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{s:?} contains the control character {:?}; use letters, digits, '-', '_' or '.'",
            c
        )),
        None => Ok(s),
    }
}

/// The file starts with `#!` naming node (`#!/usr/bin/env node`, `#!/usr/local/bin/node`,
/// `#!/usr/bin/env -S node --flag`).
fn node_shebang(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let line = head[..n].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let Some(rest) = line.strip_prefix(b"#!") else {
        return false;
    };
    String::from_utf8_lossy(rest)
        .split_whitespace()
        .filter(|w| !w.starts_with('-'))
        .take(2)
        .any(|w| Path::new(w).file_name().and_then(|f| f.to_str()) == Some("node"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
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
