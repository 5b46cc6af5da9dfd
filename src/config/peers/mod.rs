//! Apps files of peer supervisors → pmi's canonical YAML: a Procfile (foreman, overmind, Heroku),
//! a supervisord.conf, a process-compose.yaml.
//!
//! Invariant: never a silent drop. Every setting of the source either becomes a pmi field or a
//! located warning (file, line, program, key) that says what pmi does instead; what cannot be
//! converted at all (a Procfile line that is not `name: command`, an empty command, a repeated
//! name) is a located error. Nothing is taken from the converting machine: no environment value is
//! expanded (`%(ENV_X)s` stays a warning), no path is resolved.

mod process_compose;
mod procfile;
mod supervisord;

use std::path::Path;

use serde_yaml::{Mapping, Value as Y};

use super::diag::Diags;
use super::tree::Pos;
use super::{ConfigError, Diagnostic};

/// A peer's file format, known from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Procfile,
    Supervisord,
    ProcessCompose,
}

/// The peer format of `path`, by name: `Procfile*` (but not `Procfile*.yaml` and other pm2
/// extensions, which are what `convert` writes), `*.conf` (supervisord.conf, conf.d/*.conf),
/// `process-compose*.yml|yaml`. None for pm2 and pmi files.
pub fn detect(path: &Path) -> Option<Peer> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    let pm2_ext = [".yaml", ".yml", ".json", ".js", ".cjs", ".mjs"]
        .iter()
        .any(|e| lower.ends_with(e));
    if (name.starts_with("Procfile") || lower == "procfile") && !pm2_ext {
        Some(Peer::Procfile)
    } else if lower.ends_with(".conf") {
        Some(Peer::Supervisord)
    } else if lower.starts_with("process-compose")
        && (lower.ends_with(".yaml") || lower.ends_with(".yml"))
    {
        Some(Peer::ProcessCompose)
    } else {
        None
    }
}

/// A converted file: pmi's YAML (warnings repeated in its header as comments) and the warnings.
pub struct Converted {
    pub yaml: String,
    pub warnings: Vec<Diagnostic>,
}

/// Reads `path` (relative to `base_dir`) as `peer` and converts it.
pub fn convert(path: &Path, base_dir: &Path, peer: Peer) -> Result<Converted, ConfigError> {
    let mut d = Diags::new(path);
    let text = match read_bounded(&base_dir.join(path)) {
        Ok(b) if b.len() as u64 > MAX_FILE_BYTES => {
            d.error(
                Pos::default(),
                None,
                None,
                format!("the file is larger than {MAX_FILE_BYTES} bytes; a peer's config is a few KiB: is this the right file?"),
            );
            return Err(d.into_error());
        }
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                d.error(Pos::default(), None, None, "the file is not UTF-8 text");
                return Err(d.into_error());
            }
        },
        Err(e) => {
            d.error(
                Pos::default(),
                None,
                None,
                format!("cannot read the file: {e}; check the path"),
            );
            return Err(d.into_error());
        }
    };
    convert_text(path, &text, peer)
}

/// A budget for hostile input: hand-written peer configs are a few KiB.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Reads at most one byte past the budget, so a huge file (or /dev/zero) costs nothing.
fn read_bounded(p: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(p)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Converts the text of a peer file (`path` names it in diagnostics and the header).
pub fn convert_text(path: &Path, text: &str, peer: Peer) -> Result<Converted, ConfigError> {
    let mut d = Diags::new(path);
    // A byte-order mark is invisible in editors; no peer gives it a meaning.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let apps = match peer {
        Peer::Procfile => procfile::convert(text, &mut d),
        Peer::Supervisord => supervisord::convert(text, &mut d),
        Peer::ProcessCompose => process_compose::convert(text, &mut d),
    };
    if !d.errors.is_empty() {
        return Err(d.into_error());
    }
    if apps.is_empty() {
        d.error(
            Pos::default(),
            None,
            None,
            format!("no process found: a {} needs at least one", kind(peer)),
        );
        return Err(d.into_error());
    }
    let mut top = Mapping::new();
    top.insert(
        Y::String("apps".into()),
        Y::Sequence(apps.into_iter().map(|a| Y::Mapping(a.0)).collect()),
    );
    let body = match serde_yaml::to_string(&Y::Mapping(top)) {
        Ok(b) => b,
        Err(e) => {
            d.error(
                Pos::default(),
                None,
                None,
                format!("cannot write YAML: {e}"),
            );
            return Err(d.into_error());
        }
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    d.warnings
        .sort_by_key(|w| (w.line.unwrap_or(0), w.column.unwrap_or(0)));
    let mut yaml = format!(
        "# pmi apps file, converted by `pmi convert` from {name} ({})\n",
        kind(peer)
    );
    for w in &d.warnings {
        yaml.push_str(&format!("# warning: {}\n", one_line(&w.to_string())));
    }
    yaml.push_str(&body);
    Ok(Converted {
        yaml,
        warnings: d.warnings,
    })
}

fn kind(peer: Peer) -> &'static str {
    match peer {
        Peer::Procfile => "Procfile",
        Peer::Supervisord => "supervisord config",
        Peer::ProcessCompose => "process-compose file",
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// One app being built, keys in the order they are set (name first).
pub(crate) struct AppOut(Mapping);

impl AppOut {
    pub fn new(name: &str) -> AppOut {
        let mut m = Mapping::new();
        m.insert(Y::String("name".into()), Y::String(name.into()));
        AppOut(m)
    }

    pub fn set(&mut self, key: &str, v: impl Into<Y>) {
        self.0.insert(Y::String(key.into()), v.into());
    }

    #[cfg(test)]
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `script` (and `args`/`interpreter`) so that a shell command line runs as its peer
    /// ran it. A simple command (words only) becomes pm2's `script: "cmd args"`, which pmi runs
    /// as `sh -c "exec cmd args"` (signals reach the app itself); anything a shell must
    /// interpret (`&&`, `;`, pipes, `$VAR`, `cd`, `VAR=x cmd`) runs as `sh -c '<line>'` unchanged.
    pub fn shell_command(&mut self, line: &str) {
        let line = line.trim();
        if is_simple(line) {
            self.set("script", line);
            if !line.contains(char::is_whitespace) {
                // One word: a program, not a script whose interpreter is guessed by extension.
                self.set("interpreter", "none");
            }
        } else {
            self.set("script", "sh");
            self.set("interpreter", "none");
            self.set(
                "args",
                Y::Sequence(vec![Y::String("-c".into()), Y::String(line.into())]),
            );
        }
    }

    /// Sets one `env` entry (the block is created on first use, in file order).
    pub fn env(&mut self, key: &str, value: &str) {
        let k = Y::String("env".into());
        if !self.0.contains_key(&k) {
            self.0.insert(k.clone(), Y::Mapping(Mapping::new()));
        }
        if let Some(Y::Mapping(m)) = self.0.get_mut(&k) {
            m.insert(Y::String(key.into()), Y::String(value.into()));
        }
    }
}

/// Words, quotes and plain path characters only, and a first word that is a program (not a shell
/// builtin or an assignment).
fn is_simple(line: &str) -> bool {
    const META: &[char] = &[
        ';', '&', '|', '<', '>', '(', ')', '$', '`', '\\', '*', '?', '[', '~', '{', '}', '#', '\n',
        '\'', '"',
    ];
    const BUILTINS: &[&str] = &[
        "cd", "export", "source", ".", "exec", "set", "ulimit", "umask", "trap", "eval", "if",
        "for", "while", "case", "test", "[",
    ];
    if line.is_empty() || line.contains(META) {
        return false;
    }
    let first = line.split_whitespace().next().unwrap_or("");
    !first.contains('=') && !BUILTINS.contains(&first)
}

/// Seconds as pmi's duration string ("5s"; fractions kept).
pub(crate) fn seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}s", s as i64)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_name() {
        for (n, want) in [
            ("Procfile", Some(Peer::Procfile)),
            ("Procfile.dev", Some(Peer::Procfile)),
            ("deploy/supervisord.conf", Some(Peer::Supervisord)),
            ("conf.d/web.conf", Some(Peer::Supervisord)),
            ("process-compose.yaml", Some(Peer::ProcessCompose)),
            ("process-compose.override.yml", Some(Peer::ProcessCompose)),
            ("apps.yaml", None),
            ("Procfile.converted.yaml", None),
            ("ecosystem.config.js", None),
        ] {
            assert_eq!(detect(Path::new(n)), want, "{n}");
        }
    }

    #[test]
    fn simple_commands_are_execd_and_shell_lines_run_under_sh() {
        let mut a = AppOut::new("x");
        a.shell_command("bundle exec puma -C config/puma.rb");
        assert_eq!(
            a.0.get("script"),
            Some(&Y::from("bundle exec puma -C config/puma.rb"))
        );
        assert!(!a.has("args"));
        for line in [
            "cd web && npm start",
            "FOO=1 node a.js",
            "node $ENTRY",
            "a | b",
        ] {
            let mut a = AppOut::new("x");
            a.shell_command(line);
            assert_eq!(a.0.get("script"), Some(&Y::from("sh")), "{line}");
            assert!(a.has("args"), "{line}");
        }
        let mut a = AppOut::new("x");
        a.shell_command("./bin/worker");
        assert_eq!(a.0.get("interpreter"), Some(&Y::from("none")));
    }
}
