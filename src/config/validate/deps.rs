//! Checks across apps: duplicate names, `depends_on` (`checks::cross_check_deps`: unknown names,
//! self, cycles, a `completed` dependency that restarts), `--only`.

use std::collections::HashMap;

use super::{Place, Validator};
use crate::config::tree::Pos;
use crate::config::{checks, AppSpec};

impl Validator<'_> {
    /// Duplicate names and `depends_on` (unknown names, cycles), over every app of the file,
    /// valid or not, so that a problem here is never hidden by (or blamed on) another app's
    /// error elsewhere.
    pub(super) fn cross_checks(&mut self, places: &[Place]) {
        let mut first: HashMap<&str, Pos> = HashMap::new();
        for p in places {
            if let Some(prev) = first.get(p.name.as_str()) {
                // pm2 starts both; so does pmi. The name targets all of them; ids tell them apart.
                self.d.warn(p.name_pos, Some(&p.name), Some("name"), format!("another app (line {}) has the same name; both run, `{}` targets all of them and the numeric id (`pmi status`) one instance", prev.line, p.name));
            } else {
                first.insert(&p.name, p.name_pos);
            }
        }
        // Apps sharing a name are one node of the graph, with the union of their dependencies
        // (a cycle through either is a cycle), as the start order treats them.
        type Deps = Vec<(checks::Dependency, Pos)>;
        let mut merged: Vec<(&Place, Deps, bool)> = Vec::new();
        for p in places {
            match merged.iter_mut().find(|(m, _, _)| m.name == p.name) {
                Some((_, deps, restarts)) => {
                    deps.extend(p.deps.iter().cloned());
                    *restarts |= p.autorestart;
                }
                None => merged.push((p, p.deps.clone(), p.autorestart)),
            }
        }
        let deps: Vec<checks::DepsOf<'_>> = merged
            .iter()
            .map(|(p, deps, autorestart)| checks::DepsOf {
                name: &p.name,
                name_pos: p.name_pos,
                deps,
                autorestart: *autorestart,
            })
            .collect();
        checks::cross_check_deps(&mut self.d, &deps);
    }

    /// `--only`: keep the apps named, or in the namespaces named. Dependencies on apps left out
    /// are dropped (the app starts without waiting for them).
    pub(super) fn only(&mut self, apps: Vec<AppSpec>, pos: Pos) -> Vec<AppSpec> {
        let Some(only) = &self.opts.only else {
            return apps;
        };
        let wanted = |a: &AppSpec| only.iter().any(|o| o == &a.name || o == &a.namespace);
        let all: Vec<String> = apps.iter().map(|a| a.name.clone()).collect();
        for o in only {
            if !apps.iter().any(|a| &a.name == o || &a.namespace == o) {
                let msg = format!(
                    "--only: no app or namespace named '{o}'; apps in this file: {}",
                    all.join(", ")
                );
                if self.opts.only_missing_warns {
                    self.d.warn(pos, None, None, msg);
                } else {
                    self.d.error(pos, None, None, msg);
                }
            }
        }
        let mut kept: Vec<AppSpec> = apps.into_iter().filter(wanted).collect();
        let names: Vec<String> = kept.iter().map(|a| a.name.clone()).collect();
        for a in &mut kept {
            a.depends_on.retain(|d| names.contains(&d.app));
        }
        if kept.is_empty() && self.d.errors.is_empty() {
            self.d.error(
                pos,
                None,
                None,
                format!("--only left no apps; apps in this file: {}", all.join(", ")),
            );
        }
        kept
    }
}
