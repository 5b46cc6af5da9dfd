//! `watch`, `ignore_watch`, `watch_delay`.

use std::path::Path;
use std::time::Duration;

use super::top::{normalize, RawApp};
use super::Validator;
use crate::config::tree::Value;
use crate::config::{units, WatchSpec};

impl Validator<'_> {
    pub(super) fn watch(&mut self, raw: &RawApp, cwd: &Path) -> Option<WatchSpec> {
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
}
