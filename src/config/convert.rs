//! `pmi convert`: any accepted apps file → pmi's canonical YAML.
//!
//! Invariant: the output holds the same apps with the same values as written, only re-spelt:
//! aliases and camelCase become pm2's canonical field names (`exec` → `script`,
//! `maxMemoryRestart` → `max_memory_restart`), the layout becomes `apps:` + `pmi:` + `deploy:`.
//! Nothing is resolved against this machine (no paths made absolute, no CPU count, no env merge),
//! so loading the output gives the same result as loading the input. What a JS file took from
//! the converting machine is warned about (`convert_machine`).

use std::path::Path;

use serde_yaml::{Mapping, Value as Y};

use super::convert_machine::Machine;
use super::diag::Diags;
use super::tree::Node;
use super::validate::{collect, split_top};
use super::{ConfigError, Diagnostic};

/// The YAML and the warnings about values that belong to the converting machine (`machine`:
/// given for a JS file).
pub fn to_yaml(
    path: &Path,
    root: &Node,
    machine: Option<&Machine>,
) -> Result<(String, Vec<Diagnostic>), ConfigError> {
    let mut d = Diags::new(path);
    let mut found = Vec::new();
    let Some(top) = split_top(root, &mut d) else {
        return Err(d.into_error());
    };
    let mut ignored = Vec::new();
    let mut apps = Vec::new();
    for (i, node) in top.apps.iter().enumerate() {
        let Some(raw) = collect(node, i, &mut d, &mut ignored) else {
            continue;
        };
        let Some(entries) = raw.node.as_map() else {
            continue;
        };
        let mut m = Mapping::new();
        // File order; each kept key under its canonical name, dropped duplicates left out.
        for e in entries {
            let canonical = raw
                .fields
                .iter()
                .find(|(_, kept)| std::ptr::eq(*kept, e))
                .map(|(c, _)| c.to_string());
            let is_other = raw.others.iter().any(|o| std::ptr::eq(*o, e))
                || raw.env_blocks.iter().any(|(_, b)| std::ptr::eq(*b, e));
            let key = match canonical {
                Some(c) => c,
                None if is_other => e.key.clone(),
                None => continue,
            };
            if let Some(mc) = machine {
                mc.check(&raw.label, &key, &e.value, &mut d, &mut found);
            }
            m.insert(Y::String(key), e.value.to_yaml());
        }
        apps.push(Y::Mapping(m));
    }
    if let Some(mc) = machine {
        mc.unseen(&found, &mut d);
    }
    if !d.errors.is_empty() {
        return Err(d.into_error());
    }
    let mut out = Mapping::new();
    out.insert(Y::String("apps".into()), Y::Sequence(apps));
    for e in [top.settings, top.deploy].into_iter().flatten() {
        out.insert(Y::String(e.key.clone()), e.value.to_yaml());
    }
    let body = match serde_yaml::to_string(&Y::Mapping(out)) {
        Ok(b) => b,
        Err(e) => {
            d.error(
                Default::default(),
                None,
                None,
                format!("cannot write YAML: {e}"),
            );
            return Err(d.into_error());
        }
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("the apps file");
    let text = format!("# pmi apps file, converted by `pmi convert` from {name}\n{body}");
    Ok((text, d.warnings))
}
