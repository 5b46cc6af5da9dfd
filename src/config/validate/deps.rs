//! Checks across apps: duplicate names, `depends_on` (unknown names, cycles), `--only`.

use std::collections::{BTreeMap, HashMap};

use super::{Place, Validator};
use crate::config::tree::{Node, Pos, Value};
use crate::config::{units, AppSpec};

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
        let names: Vec<&str> = first.keys().copied().collect();
        let mut listed: Vec<&str> = Vec::new();
        for p in places {
            if !listed.contains(&p.name.as_str()) {
                listed.push(&p.name);
            }
        }
        for p in places {
            for (dep, pos) in &p.deps {
                if !names.contains(&dep.as_str()) {
                    self.d.error(
                        *pos,
                        Some(&p.name),
                        Some("depends_on"),
                        format!(
                            "no app named '{dep}'; apps in this file: {}",
                            listed.join(", ")
                        ),
                    );
                } else if dep == &p.name {
                    self.d.error(
                        *pos,
                        Some(&p.name),
                        Some("depends_on"),
                        "an app cannot depend on itself",
                    );
                }
            }
        }
        if let Some(cycle) = find_cycle(places) {
            let pos = places
                .iter()
                .find(|p| p.name == cycle[0])
                .and_then(|p| p.deps.iter().find(|(d, _)| *d == cycle[1]))
                .map(|(_, pos)| *pos)
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

/// A dependency cycle, as the list of names around it (first name repeated at the end), if
/// any. Apps sharing a name are one node, with the union of their dependencies.
fn find_cycle(places: &[Place]) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in places {
        let e = graph.entry(p.name.as_str()).or_default();
        // Self-dependencies are reported on their own.
        e.extend(
            p.deps
                .iter()
                .map(|(d, _)| d.as_str())
                .filter(|d| *d != p.name),
        );
    }
    // 0 = unvisited, 1 = on the current path, 2 = done. Iterative, so a long chain cannot
    // overflow the stack.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for &start in graph.keys() {
        if state.get(start).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        state.insert(start, 1);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let deps = graph.get(node).map(Vec::as_slice).unwrap_or(&[]);
            let Some(&dep) = deps.get(*next) else {
                state.insert(node, 2);
                path.pop();
                continue;
            };
            *next += 1;
            if !graph.contains_key(dep) {
                continue; // unknown name: reported on its own
            }
            match state.get(dep).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                    let mut names: Vec<String> =
                        path[from..].iter().map(|(n, _)| n.to_string()).collect();
                    names.push(dep.to_string());
                    return Some(names);
                }
                0 => {
                    state.insert(dep, 1);
                    path.push((dep, 0));
                }
                _ => {}
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
