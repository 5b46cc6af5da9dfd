//! Collecting diagnostics while walking a file.
//!
//! Invariant: loading never stops at the first problem. Every reader and validator pushes here
//! and carries on; only the caller decides, at the end, that errors mean failure.

use std::path::{Path, PathBuf};

use super::tree::Pos;
use super::{ConfigError, Diagnostic};

pub struct Diags {
    file: PathBuf,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Diags {
    pub fn new(file: &Path) -> Diags {
        Diags {
            file: file.to_path_buf(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn make(
        &self,
        pos: Pos,
        app: Option<&str>,
        field: Option<&str>,
        msg: String,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: (pos.line > 0).then_some(pos.line),
            column: (pos.line > 0 && pos.col > 0).then_some(pos.col),
            app: app.map(String::from),
            field: field.map(String::from),
            message: msg,
        }
    }

    pub fn error(
        &mut self,
        pos: Pos,
        app: Option<&str>,
        field: Option<&str>,
        msg: impl Into<String>,
    ) {
        let d = self.make(pos, app, field, msg.into());
        self.errors.push(d);
    }

    pub fn warn(
        &mut self,
        pos: Pos,
        app: Option<&str>,
        field: Option<&str>,
        msg: impl Into<String>,
    ) {
        let d = self.make(pos, app, field, msg.into());
        self.warnings.push(d);
    }

    /// The collected errors as the load's failure (errors first, sorted by place).
    pub fn into_error(mut self) -> ConfigError {
        self.errors
            .sort_by_key(|d| (d.line.unwrap_or(0), d.column.unwrap_or(0)));
        ConfigError {
            diagnostics: self.errors,
            warnings: self.warnings,
        }
    }
}
