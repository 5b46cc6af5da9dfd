//! Checks across apps: duplicate names, `depends_on` (unknown names, cycles), `--only`.

use std::collections::HashMap;

use super::{Place, Validator};
use crate::config::tree::{Node, Pos, Value};
use crate::config::{units, AppSpec};

impl Validator<'_> {
    /// Duplicate names and `depends_on` (unknown names, cycles).
    pub(super) fn cross_checks(&mut self, apps: &[AppSpec], places: &[Place]) {
        let mut first: HashMap<&str, Pos> = HashMap::new();
        for (a, p) in apps.iter().zip(places) {
            if let Some(prev) = first.get(a.name.as_str()) {
                self.d.error(p.name_pos, Some(&a.name), Some("name"), format!("another app (line {}) has the same name; names must be unique (pmi targets apps by name)", prev.line));
            } else {
                first.insert(&a.name, p.name_pos);
            }
        }
        let index: HashMap<&str, usize> = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        for (a, p) in apps.iter().zip(places) {
            for (dep, pos) in a.depends_on.iter().zip(&p.deps) {
                if !index.contains_key(dep.as_str()) {
                    let names: Vec<&str> = apps.iter().map(|x| x.name.as_str()).collect();
                    self.d.error(
                        *pos,
                        Some(&a.name),
                        Some("depends_on"),
                        format!(
                            "no app named '{dep}'; apps in this file: {}",
                            names.join(", ")
                        ),
                    );
                } else if dep == &a.name {
                    self.d.error(
                        *pos,
                        Some(&a.name),
                        Some("depends_on"),
                        "an app cannot depend on itself",
                    );
                }
            }
        }
        if let Some(cycle) = find_cycle(apps, &index) {
            let i = index.get(cycle[0].as_str()).copied().unwrap_or(0);
            let pos = places
                .get(i)
                .and_then(|p| p.deps.first().copied())
                .unwrap_or_default();
            self.d.error(
                pos,
                Some(&cycle[0]),
                Some("depends_on"),
                format!(
                    "dependency cycle: {}; remove one of these `depends_on`",
                    cycle.join(" → ")
                ),
            );
        }
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
            a.depends_on.retain(|d| names.contains(d));
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

/// A dependency cycle, as the list of names around it, if any.
pub(super) fn find_cycle(apps: &[AppSpec], index: &HashMap<&str, usize>) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    pub(super) fn visit(
        i: usize,
        apps: &[AppSpec],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[i] = 1;
        path.push(i);
        for d in &apps[i].depends_on {
            let Some(&j) = index.get(d.as_str()) else {
                continue;
            };
            if j == i {
                continue; // reported on its own
            }
            if state[j] == 1 {
                let from = path.iter().position(|&k| k == j).unwrap_or(0);
                let mut names: Vec<String> =
                    path[from..].iter().map(|&k| apps[k].name.clone()).collect();
                names.push(apps[j].name.clone());
                return Some(names);
            }
            if state[j] == 0 {
                if let Some(c) = visit(j, apps, index, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; apps.len()];
    for i in 0..apps.len() {
        if state[i] == 0 {
            if let Some(c) = visit(i, apps, index, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

pub(super) fn depends_on(n: &Node) -> Result<Vec<(String, Pos)>, String> {
    let one = |x: &Node| units::string(x).map(|s| (s, x.pos));
    match &n.value {
        Value::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(n)?]),
    }
}
