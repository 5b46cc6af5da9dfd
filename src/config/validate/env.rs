//! `env`, `env_<NAME>`, the deploy env, `filter_env` and variable names.

use std::collections::BTreeMap;

use super::top::RawApp;
use super::Validator;
use crate::config::tree::{Node, Value};
use crate::config::{units, FilterEnv};

impl Validator<'_> {
    /// `deploy.<env>.env`, `env`, then `env_<NAME>` (pm2's order, lowest first). Every block
    /// is checked, selected or not.
    pub(super) fn env(
        &mut self,
        raw: &RawApp,
        deploy_env: Option<&Node>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(n) = deploy_env {
            self.merge_env(&mut env, n, &raw.label, "deploy env");
        }
        if let Some((e, n)) = raw.value("env") {
            self.merge_env(&mut env, n, &raw.label, &e.key);
        }
        for (name, e) in &raw.env_blocks {
            if e.value.value == Value::Null {
                continue;
            }
            let mut block = BTreeMap::new();
            self.merge_env(&mut block, &e.value, &raw.label, &e.key);
            if self.opts.env_name.as_deref() == Some(name.as_str()) {
                env.extend(block);
            }
        }
        env
    }

    pub(super) fn merge_env(
        &mut self,
        env: &mut BTreeMap<String, String>,
        n: &Node,
        app: &str,
        field: &str,
    ) {
        let Some(entries) = n.as_map() else {
            self.d.error(
                n.pos,
                Some(app),
                Some(field),
                format!("must be an object of NAME: value, not {}", n.kind()),
            );
            return;
        };
        for e in entries {
            if e.key.is_empty() || e.key.contains(['=', '\0']) {
                self.d.error(
                    e.key_pos,
                    Some(app),
                    Some(field),
                    format!(
                        "{:?} is not a valid environment variable name (no '=' or NUL, not empty)",
                        e.key
                    ),
                );
                continue;
            }
            let v = e.value.to_env_string();
            if v.contains('\0') {
                self.d.error(
                    e.value.pos,
                    Some(app),
                    Some(field),
                    format!("the value of {} contains a NUL byte", e.key),
                );
                continue;
            }
            env.insert(e.key.clone(), v);
        }
    }
}

pub(super) fn filter_env(n: &Node) -> Result<FilterEnv, String> {
    match &n.value {
        Value::Bool(true) => Ok(FilterEnv::All),
        Value::Bool(false) => Ok(FilterEnv::None),
        // pm2 drops exactly the key named by a string; pmi drops every key containing it, as
        // for a list (a superset, and one rule to remember).
        Value::Str(s) if !s.is_empty() => Ok(FilterEnv::Key(s.clone())),
        Value::Seq(_) => Ok(FilterEnv::Containing(units::words(n)?)),
        _ => Err(format!(
            "{} is not a filter; use true, a variable name, or a list of names",
            n.show()
        )),
    }
}

pub(super) fn env_name(n: &Node) -> Result<String, String> {
    let s = units::string(n)?;
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "{s:?} is not an environment variable name; use letters, digits and _"
        ))
    }
}

/// `port`: pm2 passes it to the app as `PORT`.
pub(super) fn port(n: &Node) -> Result<u16, String> {
    match units::integer(n) {
        Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!(
            "{} is not a port; use a number from 1 to 65535",
            n.show()
        )),
    }
}
