//! The top level of a file and one app's keys: layouts, aliases, unknown keys, names, paths.

use std::path::{Component, Path, PathBuf};

use crate::config::diag::Diags;
use crate::config::fields::{self, Key};
use crate::config::tree::{Entry, Node, Pos, Value};

/// The top level of a file, split into its parts.
pub struct TopLevel<'a> {
    pub apps: Vec<&'a Node>,
    pub settings: Option<&'a Entry>,
    pub deploy: Option<&'a Entry>,
}

/// Finds the apps, the `pmi:` block and `deploy:` in any of the accepted layouts. `None` when
/// there is nothing to run (the error is recorded).
pub fn split_top<'a>(root: &'a Node, d: &mut Diags) -> Option<TopLevel<'a>> {
    let mut top = TopLevel {
        apps: Vec::new(),
        settings: None,
        deploy: None,
    };
    let apps_node = match &root.value {
        Value::Null => {
            d.error(
                root.pos,
                None,
                None,
                "the file is empty; add an `apps:` list with at least one app (`- script: ./server.js`)",
            );
            return None;
        }
        Value::Seq(_) => root,
        Value::Map(entries) => {
            let apps = root.get("apps");
            let legacy = root.get("pm2");
            if let (Some(_), Some(p)) = (apps, legacy) {
                d.warn(
                    p.key_pos,
                    None,
                    Some("pm2"),
                    "both `apps` and the legacy `pm2` are given; `pm2` is ignored",
                );
            }
            match apps.or(legacy) {
                Some(e) => {
                    top_keys(entries, &mut top, d);
                    &e.value
                }
                None if entries.iter().any(|e| {
                    matches!(fields::classify(&e.key), Key::Field(_) | Key::EnvBlock(_))
                }) =>
                {
                    // pm2: a bare object is one app.
                    top.apps.push(root);
                    return Some(top);
                }
                None => {
                    let hint = entries
                        .iter()
                        .find_map(|e| fields::nearest(&e.key, ["apps"]).map(|_| e))
                        .map(|e| {
                            format!(
                                "; found `{}` at line {}: did you mean `apps`?",
                                e.key, e.key_pos.line
                            )
                        })
                        .unwrap_or_default();
                    d.error(root.pos, None, None, format!("no apps found: expected a top-level `apps:` list, a list of apps, or one app object{hint}"));
                    return None;
                }
            }
        }
        _ => {
            d.error(
                root.pos,
                None,
                None,
                format!(
                    "expected an `apps:` list or an app object, found {}",
                    root.kind()
                ),
            );
            return None;
        }
    };
    match &apps_node.value {
        Value::Seq(items) => top.apps.extend(items.iter()),
        Value::Map(_) => top.apps.push(apps_node),
        Value::Null => {}
        _ => {
            d.error(
                apps_node.pos,
                None,
                Some("apps"),
                format!("must be a list of apps, not {}", apps_node.kind()),
            );
            return None;
        }
    }
    if top.apps.is_empty() {
        d.error(
            apps_node.pos,
            None,
            Some("apps"),
            "the list of apps is empty; add at least one app (`- script: ./server.js`)",
        );
        return None;
    }
    Some(top)
}

/// The keys beside `apps:`: `pmi:`, `deploy:`, and warnings for the rest.
fn top_keys<'a>(entries: &'a [Entry], top: &mut TopLevel<'a>, d: &mut Diags) {
    for x in entries {
        match x.key.as_str() {
            "apps" | "pm2" => {}
            "pmi" => top.settings = Some(x),
            "deploy" => top.deploy = Some(x),
            "static" => d.warn(
                x.key_pos,
                None,
                Some("static"),
                "pm2's `static` (pm2 serve) is not supported by pmi and is ignored; run a static file server as an app",
            ),
            k => d.warn(x.key_pos, None, Some(k), unknown_msg(k, fields::TOP_LEVEL.iter().copied(), "top-level key")),
        }
    }
}

pub(super) fn unknown_msg<'a>(
    key: &str,
    known: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> String {
    match fields::nearest(key, known) {
        Some(n) => format!("unknown {what} '{key}' is ignored; did you mean '{n}'?"),
        None => format!("unknown {what} '{key}' is ignored"),
    }
}

/// One app's keys after alias resolution.
pub struct RawApp<'a> {
    pub node: &'a Node,
    /// The app's name for messages: `name`, else derived from `script`, else `#N`.
    pub label: String,
    /// (canonical name, entry) in file order; one entry per canonical name.
    pub fields: Vec<(&'static str, &'a Entry)>,
    pub env_blocks: Vec<(String, &'a Entry)>,
    /// Keys kept as written by `convert` (ignored and unknown keys).
    pub others: Vec<&'a Entry>,
}

impl<'a> RawApp<'a> {
    pub fn get(&self, canon: &str) -> Option<&'a Entry> {
        self.fields
            .iter()
            .find(|(c, _)| *c == canon)
            .map(|(_, e)| *e)
    }

    /// The value of a field, unless absent or written as null (`key:` with nothing after it).
    pub(super) fn value(&self, canon: &str) -> Option<(&'a Entry, &'a Node)> {
        self.get(canon)
            .filter(|e| e.value.value != Value::Null)
            .map(|e| (e, &e.value))
    }
}

/// Resolves the keys of one app. `ignored` collects pm2 keys pmi ignores (reported once per
/// file by the caller).
pub fn collect<'a>(
    node: &'a Node,
    index: usize,
    d: &mut Diags,
    ignored: &mut Vec<(String, Pos)>,
) -> Option<RawApp<'a>> {
    let Some(entries) = node.as_map() else {
        d.error(
            node.pos,
            Some(&format!("#{}", index + 1)),
            None,
            format!(
                "an app must be an object with at least `script`, not {}",
                node.kind()
            ),
        );
        return None;
    };
    let mut raw = RawApp {
        node,
        label: label(node, index),
        fields: Vec::new(),
        env_blocks: Vec::new(),
        others: Vec::new(),
    };
    for e in entries {
        match fields::classify(&e.key) {
            Key::Field(canon) => match raw.fields.iter().position(|(c, _)| *c == canon) {
                None => raw.fields.push((canon, e)),
                Some(i) => {
                    let earlier = raw.fields[i].1;
                    // The canonical spelling wins over an alias; otherwise the first one.
                    let keep_new =
                        is_canonical(&e.key, canon) && !is_canonical(&earlier.key, canon);
                    let (kept, dropped) = if keep_new { (e, earlier) } else { (earlier, e) };
                    d.warn(
                        dropped.key_pos,
                        Some(&raw.label),
                        Some(&dropped.key),
                        format!(
                            "'{}' and '{}' are the same field; '{}' (line {}) is used",
                            dropped.key, kept.key, kept.key, kept.key_pos.line
                        ),
                    );
                    if keep_new {
                        raw.fields[i] = (canon, e);
                    }
                }
            },
            Key::EnvBlock(name) => raw.env_blocks.push((name, e)),
            Key::Ignored => {
                ignored.push((e.key.clone(), e.key_pos));
                raw.others.push(e);
            }
            Key::Unknown => {
                d.warn(
                    e.key_pos,
                    Some(&raw.label),
                    Some(&e.key),
                    unknown_msg(&e.key, fields::app_names(), "key"),
                );
                raw.others.push(e);
            }
        }
    }
    Some(raw)
}

fn is_canonical(key: &str, canon: &str) -> bool {
    key == canon || key == fields::camel(canon)
}

/// The name to use in messages about an app, before its fields are validated.
fn label(node: &Node, index: usize) -> String {
    let find = |canon: &str| {
        node.as_map()?
            .iter()
            .find(|e| matches!(fields::classify(&e.key), Key::Field(c) if c == canon))
            .and_then(|e| match &e.value.value {
                // Escaped: a control character in a name is an error, and its message must not
                // carry it raw.
                Value::Str(s) if !s.trim().is_empty() => Some(s.escape_debug().to_string()),
                Value::Num(_) => Some(e.value.to_env_string()),
                _ => None,
            })
    };
    find("name")
        .or_else(|| find("script").map(|s| default_name(&s)))
        .unwrap_or_else(|| format!("#{}", index + 1))
}

/// pm2: the script's file name without its extension; a command line is its own name.
pub(super) fn default_name(script: &str) -> String {
    if script.trim().contains(char::is_whitespace) {
        // A multi-line script names its app on one line, without control characters.
        let words: Vec<&str> = script.split_whitespace().collect();
        return words.join(" ").replace(|c: char| c.is_control(), "");
    }
    let p = Path::new(script);
    p.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(script)
        .to_string()
}

/// Lexical clean-up of a path: `.` dropped, `..` applied (no symlinks are followed).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_scripts() {
        assert_eq!(default_name("./dist/app.js"), "app");
        assert_eq!(default_name("server"), "server");
        assert_eq!(default_name("npm start"), "npm start");
        assert_eq!(default_name("a.b.py"), "a.b");
        assert_eq!(default_name("a &&\n  b\x1b"), "a && b");
    }

    #[test]
    fn normalizing() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/a/b/")), PathBuf::from("/a/b"));
    }
}
