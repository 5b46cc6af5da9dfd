//! The shape of `src/`, checked: no import cycle between files, no file over the size limit.
//!
//! Imports are read from the text: every `use crate::…`/`use super::…` path (braces expanded)
//! and every `crate::…`/`super::…` path in code, resolved to the file that defines the module.
//! A parent's `mod child;` is containment, not an import. Inline `#[cfg(test)] mod tests { … }`
//! blocks at the end of a file are skipped: test code may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a file of `src/` may have.
const MAX_LINES: usize = 700;
/// Files allowed over the limit, each with the reason.
const LONG_FILES: &[(&str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `supervisor/mod.rs` → [supervisor], `os/reap.rs` → [os, reap].
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The text without comments and string literals (so that doc examples do not count).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            out.push('\n');
            continue;
        }
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    // Inline test modules at the end of a file.
    if let Some(i) = out.find("#[cfg(test)]\nmod tests {") {
        out.truncate(i);
    }
    if let Some(i) = out.find("#[cfg(test)]\npub(crate) mod tests {") {
        out.truncate(i);
    }
    out
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str) -> Vec<String> {
    let path: String = path.split_whitespace().collect();
    let Some(open) = path.find('{') else {
        return vec![path];
    };
    let prefix = &path[..open];
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// Every `crate::`/`super::` path of the code, as segments.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let stmt_end = rest[i..].find(';').map_or(rest.len(), |e| i + e);
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            found.extend(expand(&rest[i + 4..stmt_end]));
        }
        rest = &rest[i + 4..];
    }
    for root in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':') {
                found.push(tail[..end].to_string());
            }
            rest = &rest[i + root.len()..];
        }
    }
    found
}

/// The file a path names, seen from module `from` (whose file is a `mod.rs` when `is_dir`).
fn resolve(
    path: &str,
    from: &[String],
    is_dir: bool,
    files: &BTreeMap<Vec<String>, String>,
) -> Option<String> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = Vec::new();
    let mut rest = &segs[..];
    match segs.first() {
        Some(&"crate") => rest = &segs[1..],
        Some(&"super") => {
            base = from.to_vec();
            // `super` of `a/b.rs` is `a`; of `a/mod.rs` (module a) is the root.
            let _ = is_dir;
            while let Some(&"super") = rest.first() {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = None;
    let mut m = base.clone();
    for s in rest {
        m.push(s.to_string());
        if let Some(f) = files.get(&m) {
            best = Some(f.clone());
        }
    }
    best.or_else(|| files.get(&base).cloned())
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut all = Vec::new();
    rs_files(&root, &mut all);
    let mut files = BTreeMap::new();
    for f in &all {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("bin/") || rel == "main.rs" {
            continue;
        }
        files.insert(module_of(&rel), rel);
    }
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, rel) in &files {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let is_dir = rel.ends_with("mod.rs");
        let edges = g.entry(rel.clone()).or_default();
        for p in paths(&code_only(&text)) {
            if let Some(to) = resolve(&p, module, is_dir, &files) {
                // A module's own children and itself are containment, not imports.
                let child = to.starts_with(&rel.replace("mod.rs", "")) && is_dir;
                if to != *rel && !child && to != "lib.rs" {
                    edges.insert(to);
                }
            }
        }
    }
    g
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_cycle_between_files() {
    let g = graph();
    let found = cycles(&g);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|f| {
                    g[f].iter()
                        .filter(|t| c.contains(t))
                        .map(move |t| format!("{f} → {t}"))
                })
                .collect();
            format!("cycle of {}: {}", c.len(), edges.join(", "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles in src/:\n{}",
        shown.join("\n")
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a.rs".to_string(), BTreeSet::from(["b.rs".to_string()]));
    g.insert("b.rs".to_string(), BTreeSet::from(["c.rs".to_string()]));
    g.insert("c.rs".to_string(), BTreeSet::from(["a.rs".to_string()]));
    g.insert("d.rs".to_string(), BTreeSet::from(["a.rs".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a.rs", "b.rs", "c.rs"]]);
}

#[test]
fn import_paths_are_read_and_resolved() {
    let code = "use crate::os::{pid1, signals::{self, Signals}};\nuse super::state::State;\nlet x = crate::exit::OK;\n";
    let p = paths(code);
    assert!(p.contains(&"crate::os::pid1".to_string()), "{p:?}");
    assert!(
        p.contains(&"crate::os::signals::Signals".to_string()),
        "{p:?}"
    );
    assert!(p.contains(&"super::state::State".to_string()), "{p:?}");
    assert!(p.contains(&"crate::exit::OK".to_string()), "{p:?}");
    let mut files = BTreeMap::new();
    files.insert(vec!["os".to_string()], "os/mod.rs".to_string());
    files.insert(
        vec!["os".to_string(), "signals".to_string()],
        "os/signals.rs".to_string(),
    );
    files.insert(
        vec!["supervisor".to_string(), "state".to_string()],
        "supervisor/state.rs".to_string(),
    );
    let from = vec!["supervisor".to_string(), "policy".to_string()];
    let r = |p: &str| resolve(p, &from, false, &files);
    assert_eq!(
        r("crate::os::signals::Signals").as_deref(),
        Some("os/signals.rs")
    );
    assert_eq!(r("crate::os::pid1").as_deref(), Some("os/mod.rs"));
    assert_eq!(
        r("super::state::State").as_deref(),
        Some("supervisor/state.rs")
    );
}

#[test]
fn no_file_over_the_size_limit() {
    let root = src();
    let mut all = Vec::new();
    rs_files(&root, &mut all);
    let mut over = Vec::new();
    for f in all {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let lines = std::fs::read_to_string(&f).unwrap().lines().count();
        let allowed = LONG_FILES.iter().any(|(p, _)| *p == rel);
        if lines > MAX_LINES && !allowed {
            over.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(
        over.is_empty(),
        "files over {MAX_LINES} lines (split them, or allow a table in LONG_FILES with its reason):\n{}",
        over.join("\n")
    );
}
