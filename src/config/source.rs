//! Reading an apps file from disk into a positioned tree, by format.
//!
//! Invariant: the format is chosen from the file name as pm2 does (`.json`, `.yml`/`.yaml`,
//! `.js`/`.cjs`/`.mjs`); any other name is sniffed (`{` or `[` first means JSON, else YAML).

use std::path::Path;

use super::diag::Diags;
use super::tree::{Parsed, Pos};
use super::{js, json, yaml, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Js,
}

pub fn format_of(path: &Path, text: &str) -> Format {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if name.ends_with(".json") {
        Format::Json
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        Format::Yaml
    } else if [".js", ".cjs", ".mjs"].iter().any(|e| name.ends_with(e)) {
        Format::Js
    } else if matches!(text.trim_start().chars().next(), Some('{' | '[')) {
        Format::Json
    } else {
        Format::Yaml
    }
}

/// Reads and parses `path` (relative paths against `base_dir`).
pub fn read(path: &Path, base_dir: &Path) -> Result<Parsed, ConfigError> {
    read_recording(path, base_dir).map(|(p, _)| p)
}

/// [`read`], and for a JS file the environment variables it read (`None` for YAML and JSON,
/// whose values are as written).
pub fn read_recording(
    path: &Path,
    base_dir: &Path,
) -> Result<(Parsed, Option<js::EnvReads>), ConfigError> {
    let mut d = Diags::new(path);
    let full = base_dir.join(path);
    let text = match std::fs::read(&full) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                d.error(Pos::default(), None, None, "the file is not UTF-8 text");
                return Err(d.into_error());
            }
        },
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!(" (looked in {}); check the path", base_dir.display())
            } else {
                String::new()
            };
            d.error(
                Pos::default(),
                None,
                None,
                format!("cannot read the apps file: {e}{hint}"),
            );
            return Err(d.into_error());
        }
    };
    let result = match format_of(path, &text) {
        Format::Yaml => yaml::parse(&text).map(|p| (p, None)),
        Format::Json => json::parse(&text).map(|p| (p, None)),
        Format::Js => js::parse_recording(&full, &text, base_dir).map(|(p, r)| (p, Some(r))),
    };
    match result {
        Ok(p) => Ok(p),
        Err(issue) => {
            d.error(issue.pos, None, None, issue.message);
            Err(d.into_error())
        }
    }
}
