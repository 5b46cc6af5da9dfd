//! Apps file → validated `Spec`.
//!
//! Two layers: the file is read into a positioned value tree (every value knows its line and
//! column), then validated into domain types (`spec`), collecting every problem with its location
//! before failing. An app is never dropped silently.

pub mod spec;

use std::fmt;
use std::path::{Path, PathBuf};

pub use spec::*;

/// What the command line adds to loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--env NAME`: apply `env_NAME` blocks.
    pub env_name: Option<String>,
    /// `--only a,b`: keep only these apps (by name or namespace).
    pub only: Option<Vec<String>>,
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
}

/// Reads and validates an apps file. Relative paths in it resolve against `base_dir` (the
/// directory pmi was started in, as pm2).
pub fn load(path: &Path, base_dir: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let _ = (path, base_dir, opts);
    todo!("config loader: being written")
}

/// A short human summary of the resolved apps (`pmi check` without `--json`).
pub fn summary(spec: &Spec) -> String {
    let mut s = String::new();
    for a in &spec.apps {
        s.push_str(&format!(
            "{}: {} x{} ({:?}) in {}\n",
            a.name,
            a.command.join(" "),
            a.instances,
            a.exec_mode,
            a.cwd.display()
        ));
    }
    s
}
