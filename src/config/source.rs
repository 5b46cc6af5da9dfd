//! Reading an apps file from disk into a positioned tree, by format.
//!
//! Invariant: the format is chosen from the file name as pm2 does (`.json`, `.yml`/`.yaml`,
//! `.js`/`.cjs`/`.mjs`); any other name is sniffed (`{` or `[` first means JSON, else YAML).

use std::path::Path;

use super::diag::Diags;
use super::tree::{Parsed, Pos, MAX_FILE_BYTES};
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
    let text = match read_text(&full) {
        Ok(t) => t,
        Err(Unreadable::Io(e)) => {
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
        Err(Unreadable::TooBig) => {
            d.error(
                Pos::new(1, 1),
                None,
                None,
                format!(
                    "the file is larger than {} MiB, the most pmi reads; an apps file is a few \
                     kilobytes: check that this is the apps file, and keep data out of it",
                    MAX_FILE_BYTES >> 20
                ),
            );
            return Err(d.into_error());
        }
        Err(Unreadable::NotUtf8 { pos, byte }) => {
            d.error(
                pos,
                None,
                None,
                format!("the file is not UTF-8 text (byte 0x{byte:02x} here); save it as UTF-8"),
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

/// Why a file's text could not be had.
#[derive(Debug)]
pub enum Unreadable {
    Io(std::io::Error),
    TooBig,
    /// The first byte that is not UTF-8, and where it is.
    NotUtf8 {
        pos: Pos,
        byte: u8,
    },
}

/// The file's text: at most `MAX_FILE_BYTES`, and UTF-8.
pub fn read_text(path: &Path) -> Result<String, Unreadable> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(Unreadable::Io)?;
    let mut bytes = Vec::new();
    // One byte more than the cap tells "too big" from "exactly the cap".
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Unreadable::TooBig);
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        Unreadable::NotUtf8 {
            pos: position_of(bytes, good),
            byte: bytes.get(good).copied().unwrap_or(0),
        }
    })
}

/// The line and column (in characters, 1-based) of byte `at`, all of `bytes[..at]` being UTF-8.
fn position_of(bytes: &[u8], at: usize) -> Pos {
    let before = &bytes[..at.min(bytes.len())];
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    let line = 1 + memchr::memchr_iter(b'\n', before).count();
    let col = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    Pos::new(line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bytes_are_located() {
        let b = "apps:\n  - name: é\n    script: x".as_bytes();
        let mut v = b.to_vec();
        v.insert(b.len() - 1, 0xff);
        let e = String::from_utf8(v.clone()).unwrap_err();
        let p = position_of(&v, e.utf8_error().valid_up_to());
        assert_eq!(p, Pos::new(3, 13));
        assert_eq!(position_of(b"\xff", 0), Pos::new(1, 1));
        assert_eq!(position_of(b"\xc3\xa9\xff", 2), Pos::new(1, 2));
    }
}
