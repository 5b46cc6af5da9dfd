//! `pmi convert` of a JS apps file: warnings for every value that belongs to the converting
//! machine rather than to the file, because `convert` bakes it into the YAML: a value read from
//! `process.env` (a secret, a local setting) and an absolute path of this machine (`__dirname`,
//! the home directory).
//!
//! Invariant: only warnings; the output stays what the file evaluated to. Each warning names
//! the app and field where the value is, and which variable or directory it came from; no
//! environment value is ever printed.

use std::path::Path;

use super::diag::Diags;
use super::js::EnvReads;
use super::tree::{Node, Value};

/// Environment values shorter than this are only matched whole (a `1` or `true` from the
/// environment inside a longer string is coincidence, not provenance).
const MIN_SUBSTRING: usize = 6;

/// What this machine contributes, to look for in the values.
pub struct Machine {
    /// (name, value) of the variables the file read that are set here.
    env: Vec<(String, String)>,
    /// (directory, what it is): the apps file's directory, $HOME.
    dirs: Vec<(String, &'static str)>,
    /// The file enumerated the whole environment.
    all: bool,
}

impl Machine {
    pub fn new(reads: &EnvReads, file_dir: &Path) -> Machine {
        let env: Vec<(String, String)> = if reads.all {
            std::env::vars().collect()
        } else {
            reads
                .keys
                .iter()
                .filter_map(|k| Some((k.clone(), std::env::var(k).ok()?)))
                .collect()
        };
        let mut dirs = vec![(file_dir.display().to_string(), "the apps file's directory")];
        if let Ok(h) = std::env::var("HOME") {
            if h.len() > 1 && !file_dir.starts_with(&h) {
                dirs.push((h, "the home directory ($HOME)"));
            }
        }
        dirs.retain(|(d, _)| d.len() > 1);
        Machine {
            env,
            dirs,
            all: reads.all,
        }
    }

    /// Warns for each value of `node` (the value of `field` of app `app`) that came from here.
    /// The variables whose values were found go to `found`.
    pub fn check(
        &self,
        app: &str,
        field: &str,
        node: &Node,
        d: &mut Diags,
        found: &mut Vec<String>,
    ) {
        match &node.value {
            Value::Str(s) => self.check_str(app, field, node, s, d, found),
            Value::Seq(items) => {
                for i in items {
                    self.check(app, field, i, d, found);
                }
            }
            Value::Map(entries) => {
                for e in entries {
                    self.check(app, &format!("{field}.{}", e.key), &e.value, d, found);
                }
            }
            _ => {}
        }
    }

    fn check_str(
        &self,
        app: &str,
        field: &str,
        node: &Node,
        s: &str,
        d: &mut Diags,
        found: &mut Vec<String>,
    ) {
        let vars: Vec<&str> = self
            .env
            .iter()
            .filter(|(_, v)| {
                !v.is_empty() && (v == s || (v.len() >= MIN_SUBSTRING && s.contains(v.as_str())))
            })
            .map(|(k, _)| k.as_str())
            .collect();
        if !vars.is_empty() {
            let names: Vec<String> = vars.iter().map(|k| format!("${k}")).collect();
            found.extend(vars.iter().map(|k| k.to_string()));
            d.warn(node.pos, Some(app), Some(field), format!(
                "this value comes from the converting machine's environment ({}) and is now written into the YAML; if it is a secret or differs per machine, remove it and set it in the container's environment",
                names.join(", ")
            ));
            return;
        }
        if let Some((dir, what)) = self.dirs.iter().find(|(dir, _)| {
            s == dir
                || s.strip_prefix(dir.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }) {
            d.warn(node.pos, Some(app), Some(field), format!(
                "{s} is an absolute path of the converting machine (under {what}, {dir}); in the container it will differ: write it relative to where pmi starts (e.g. `.` or ./dist/app.js) or as the container's path"
            ));
        }
    }

    /// One warning, at the top of the file, for variables the file read whose values appear
    /// nowhere as written (used in a computation, a condition).
    pub fn unseen(&self, found: &[String], d: &mut Diags) {
        if self.all {
            d.warn(Default::default(), None, None, "the file copies the converting machine's whole environment (`{...process.env}`, `Object.keys(process.env)`); whatever it computed from it is now fixed in the YAML");
            return;
        }
        let rest: Vec<String> = self
            .env
            .iter()
            .filter(|(k, _)| !found.contains(k))
            .map(|(k, _)| format!("${k}"))
            .collect();
        if rest.is_empty() {
            return;
        }
        d.warn(
            Default::default(),
            None,
            None,
            format!(
                "the file read {} from the converting machine's environment; whatever it computed from them is now fixed in the YAML",
                rest.join(", ")
            ),
        );
    }
}
