//! Log files and formats: `out_file`, `error_file`, `log_file`, `merge_logs`, `time`, `log_type`.

use std::path::{Path, PathBuf};

use super::top::{normalize, RawApp};
use super::Validator;
use crate::config::tree::{Node, Value};
use crate::config::{units, ExecMode, LogFiles};

/// `time: true` in pm2.
const TIME_FORMAT: &str = "YYYY-MM-DDTHH:mm:ss";

impl Validator<'_> {
    pub(super) fn logs(
        &mut self,
        raw: &RawApp,
        cwd: &Path,
        mode: ExecMode,
        instances_set: bool,
    ) -> LogFiles {
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
}

/// A log or pid file path: relative to the app's cwd; `/dev/null` and `NULL` mean none.
pub(super) fn log_path(n: &Node, cwd: &Path, field: &str) -> Result<Option<PathBuf>, String> {
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
