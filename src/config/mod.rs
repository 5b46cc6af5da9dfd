//! Apps file → validated `Spec`.
//!
//! Two layers: the file is read into a positioned value tree (every value knows its line and
//! column), then validated into domain types (`spec`), collecting every problem with its location
//! before failing. An app is never dropped silently.

pub mod checks;
mod convert;
mod convert_machine;
mod cron;
mod cron_check;
mod diag;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod interp;
mod js;
mod json;
mod listen;
mod peers;
mod shell;
mod source;
pub mod spec;
mod tree;
mod units;
mod users;
mod validate;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use listen::{fd_name, parse_text as parse_listen_addr, ListenAddr, MAX_LISTEN};
pub use spec::*;

/// What the command line adds to loading.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--env NAME`: apply `env_NAME` blocks (and `deploy.NAME.env`).
    pub env_name: Option<String>,
    /// `--only a,b`: keep only these apps (by name or namespace).
    pub only: Option<Vec<String>>,
    /// Check that each app's script, interpreter and cwd exist on this machine. On by default;
    /// off for tools that look at files from elsewhere (the pm2 corpus test, `convert`).
    pub check_scripts: bool,
    /// `pmi check --file-only`: also leave `uid`/`gid` names unresolved when this machine's /etc
    /// lacks them (the image the file is for may have them). Implies no `check_scripts`.
    pub file_only: bool,
    /// `--kill-signal`: the default for apps without `kill_signal` (beats the `pmi:` block).
    pub kill_signal: Option<Signal>,
    /// `--kill-timeout`: the default for apps without `kill_timeout` (beats the `pmi:` block).
    pub kill_timeout: Option<Duration>,
    /// An `--only` name the file no longer has is a warning, not an error (`pmi apply`: the
    /// names were chosen when pmi started, against an older file).
    pub only_missing_warns: bool,
}

impl LoadOptions {
    /// The defaults: no `--env`, no `--only`, scripts checked.
    pub fn new() -> Self {
        LoadOptions {
            env_name: None,
            only: None,
            check_scripts: true,
            file_only: false,
            kill_signal: None,
            kill_timeout: None,
            only_missing_warns: false,
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// One problem found in an apps file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub app: Option<String>,
    pub field: Option<String>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ":")?;
        if let Some(a) = &self.app {
            write!(f, " app '{a}'")?;
        }
        if let Some(k) = &self.field {
            write!(f, " field '{k}'")?;
        }
        if self.app.is_some() || self.field.is_some() {
            write!(f, ":")?;
        }
        write!(f, " {}", self.message)
    }
}

/// A file that loaded: the spec and the warnings to print.
#[derive(Debug)]
pub struct Loaded {
    pub spec: Spec,
    pub warnings: Vec<Diagnostic>,
}

/// A file that did not load: every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
    /// The warnings found on the way, shown with the errors (`pmi check` lists every problem).
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates an apps file. Relative paths in it resolve against `base_dir` (the
/// directory pmi was started in, as pm2).
pub fn load(path: &Path, base_dir: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    if peers::detect(path) == Some(peers::Peer::Procfile) {
        return load_procfile(path, base_dir, opts);
    }
    let parsed = source::read(path, base_dir)?;
    validate::validate(path, &parsed, base_dir, opts)
}

/// `pmi Procfile`: the Procfile's own problems are located in it; the converted apps are then
/// validated as usual, their diagnostics naming the app (lines of the generated YAML would
/// point nowhere in the Procfile, so they are left out).
fn load_procfile(path: &Path, base_dir: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let conv = peers::convert(path, base_dir, peers::Peer::Procfile)?;
    let unlocate = |mut d: Diagnostic| {
        d.line = None;
        d.column = None;
        d
    };
    let parsed = yaml::parse(&conv.yaml).map_err(|i| ConfigError {
        diagnostics: vec![unlocate(Diagnostic {
            file: path.to_path_buf(),
            line: None,
            column: None,
            app: None,
            field: None,
            message: i.message,
        })],
        warnings: conv.warnings.clone(),
    })?;
    match validate::validate(path, &parsed, base_dir, opts) {
        Ok(mut l) => {
            l.warnings = conv
                .warnings
                .into_iter()
                .chain(l.warnings.into_iter().map(unlocate))
                .collect();
            Ok(l)
        }
        Err(e) => Err(ConfigError {
            diagnostics: e.diagnostics.into_iter().map(unlocate).collect(),
            warnings: conv
                .warnings
                .into_iter()
                .chain(e.warnings.into_iter().map(unlocate))
                .collect(),
        }),
    }
}

/// Reads an apps file and returns it as pmi's canonical YAML: the same apps with pm2's field
/// names (aliases and camelCase resolved), values as written, `env` blocks kept, and warnings for
/// values a JS file took from this machine (its environment, its absolute paths). Nothing is
/// resolved against this machine, so a file can be converted where its scripts do not exist.
/// Every `env_<NAME>` block and every app is kept (`--env`/`--only` are run-time choices).
pub fn convert_with_warnings(
    path: &Path,
    base_dir: &Path,
) -> Result<(String, Vec<Diagnostic>), ConfigError> {
    // Procfile, supervisord.conf, process-compose.yaml: their warnings also head the YAML.
    if let Some(peer) = peers::detect(path) {
        let c = peers::convert(path, base_dir, peer)?;
        return Ok((c.yaml, c.warnings));
    }
    let (parsed, reads) = source::read_recording(path, base_dir)?;
    let full = base_dir.join(path);
    let dir = std::fs::canonicalize(&full)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| base_dir.to_path_buf());
    let machine = reads.map(|r| convert_machine::Machine::new(&r, &dir));
    convert::to_yaml(path, &parsed.root, machine.as_ref())
}

/// [`convert_with_warnings`], the YAML alone. `opts` does not change the output.
pub fn convert(path: &Path, base_dir: &Path, opts: &LoadOptions) -> Result<String, ConfigError> {
    let _ = opts;
    convert_with_warnings(path, base_dir).map(|(y, _)| y)
}

/// A short human summary of the resolved apps (`pmi check` without `--json`): one line per app
/// with its mode, instance count, the command as a shell would read it, and its directory.
pub fn summary(spec: &Spec) -> String {
    let mut s = String::new();
    for a in &spec.apps {
        let mode = a.exec_mode.as_str();
        let cmd: Vec<String> = a.command.iter().map(|w| units::shell_quote(w)).collect();
        s.push_str(&format!(
            "{} [{mode} x{}] {} (in {})\n",
            a.name,
            a.instances,
            cmd.join(" "),
            a.cwd.display()
        ));
    }
    if let Some(c) = &spec.cpus {
        s.push_str(&format!("instances: {c}\n"));
    }
    s
}
