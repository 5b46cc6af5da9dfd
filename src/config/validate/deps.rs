//! Checks across apps: duplicate names, `depends_on` (`checks::cross_check_deps`: unknown names,
//! self, cycles, a `completed` dependency that restarts), `--only`.

use std::collections::HashMap;

use super::{Place, Validator};
use crate::config::tree::Pos;
use crate::config::{checks, AppSpec};

impl Validator<'_> {
    /// Duplicate names and `depends_on`.
    pub(super) fn cross_checks(&mut self, apps: &[AppSpec], places: &[Place]) {
        let mut first: HashMap<&str, Pos> = HashMap::new();
        for (a, p) in apps.iter().zip(places) {
            if let Some(prev) = first.get(a.name.as_str()) {
                self.d.error(p.name_pos, Some(&a.name), Some("name"), format!("another app (line {}) has the same name; names must be unique (pmi targets apps by name)", prev.line));
            } else {
                first.insert(&a.name, p.name_pos);
            }
        }
        let deps: Vec<checks::DepsOf<'_>> = apps
            .iter()
            .zip(places)
            .map(|(a, p)| checks::DepsOf {
                name: &a.name,
                name_pos: p.name_pos,
                deps: &p.deps,
                // A clean exit that restarts the app never "completes".
                autorestart: a.restart.autorestart && !a.restart.stop_exit_codes.contains(&0),
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
                self.d.error(
                    pos,
                    None,
                    None,
                    format!(
                        "--only: no app or namespace named '{o}'; apps in this file: {}",
                        all.join(", ")
                    ),
                );
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
