//! YAML → positioned tree.
//!
//! Why yaml-rust2 here and not serde_yaml: serde_yaml (libyaml) reports positions only for syntax
//! errors, never for the values it hands back, and every pmi diagnostic must name the line and
//! column of the offending value. yaml-rust2's event parser reports a marker for every event, so
//! the tree is built from those events. serde_yaml stays the product's YAML *writer*
//! (`pmi convert`). Both follow the YAML 1.2 core schema, like pm2's js-yaml: `yes`/`on` are
//! strings, not booleans.
//!
//! Supported beyond plain YAML: anchors and aliases, merge keys (`<<: *defaults`, explicit keys
//! win), `!!str` and friends. Only the first document of a stream is read.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::tree::{
    repeated_key, too_many_nodes, Entry, MapBuilder, Node, Parsed, Pos, ReadIssue, Value, MAX_NODES,
};

/// Reads YAML text into a tree. An empty document gives a `Null` root.
pub fn parse(text: &str) -> Result<Parsed, ReadIssue> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // Events are pulled one by one (not `Parser::load`) so that reading stops at the first
    // fatal problem: a budget exceeded at line 3 must not scan the rest of a 16 MiB file.
    while !b.done && b.fatal.is_none() {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => b.on_event(ev, mark),
            Err(e) => {
                return Err(ReadIssue {
                    pos: pos(e.marker()),
                    message: format!("invalid YAML: {}", e.info()),
                })
            }
        }
    }
    if let Some(issue) = b.fatal {
        return Err(issue);
    }
    Ok(Parsed {
        root: b.root.unwrap_or(Node::new(Pos::new(1, 1), Value::Null)),
        warnings: b.warnings,
    })
}

/// Nesting deeper than this is refused: the tree is walked recursively later.
const MAX_DEPTH: usize = 200;

fn pos(m: &Marker) -> Pos {
    // yaml-rust2 markers: line 1-based, column 0-based.
    Pos::new(m.line(), m.col() + 1)
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        map: MapBuilder,
        key: Option<(String, Pos)>,
        merges: Vec<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Each anchored value, with its size in nodes (what one alias to it costs).
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes built so far, aliases counted in full, against `MAX_NODES`.
    nodes: usize,
    warnings: Vec<ReadIssue>,
    /// The first problem that makes the tree meaningless (a complex key, an unknown alias).
    fatal: Option<ReadIssue>,
    done: bool,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done || self.fatal.is_some() {
            return;
        }
        let p = pos(&mark);
        let cost = match &ev {
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) => 1,
            Event::Alias(id) => self.anchors.get(id).map_or(0, |a| a.1),
            _ => 0,
        };
        self.nodes = self.nodes.saturating_add(cost);
        if self.nodes > MAX_NODES {
            self.fatal = Some(ReadIssue {
                pos: p,
                message: too_many_nodes(),
            });
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node::new(p, scalar(text, style, tag.as_ref()));
                self.complete(node, anchor);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.fatal = Some(ReadIssue {
                    pos: p,
                    message: format!(
                        "values nested more than {MAX_DEPTH} deep; an apps file never needs that"
                    ),
                })
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                pos: p,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                pos: p,
                anchor,
                map: MapBuilder::default(),
                key: None,
                merges: Vec::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((n, _)) => {
                    let mut n = n.clone();
                    n.pos = p;
                    self.complete(n, 0);
                }
                None => {
                    self.fatal = Some(ReadIssue {
                        pos: p,
                        message: "invalid YAML: alias to an unknown anchor".into(),
                    })
                }
            },
            Event::DocumentEnd if self.root.is_some() => self.done = true,
            _ => {}
        }
    }
}

impl Builder {
    fn close(&mut self) {
        let node = match self.stack.pop() {
            Some(Frame::Seq { pos, anchor, items }) => (Node::new(pos, Value::Seq(items)), anchor),
            Some(Frame::Map {
                pos,
                anchor,
                mut map,
                merges,
                ..
            }) => {
                for m in merges {
                    merge_into(&mut map, m);
                }
                let entries = map.finish();
                // yaml-rust2 marks a block mapping after its first key; point at that key.
                let pos = entries.first().map_or(pos, |e| e.key_pos.min_by_line(pos));
                (Node::new(pos, Value::Map(entries)), anchor)
            }
            None => return,
        };
        self.complete(node.0, node.1);
    }

    /// A value is complete: record its anchor and hand it to its parent.
    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size(&node)));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                map, key, merges, ..
            }) => match key.take() {
                None => match key_text(&node) {
                    Some(k) => *key = Some((k, node.pos)),
                    None => {
                        self.fatal = Some(ReadIssue {
                            pos: node.pos,
                            message: format!(
                                "a key must be a name, not {}; quote it or restructure",
                                node.kind()
                            ),
                        })
                    }
                },
                Some((k, _)) if k == "<<" && is_mergeable(&node) => merges.push(node),
                Some((k, kp)) => {
                    if let Some(first) = map.insert(Entry {
                        key: k.clone(),
                        key_pos: kp,
                        value: node,
                    }) {
                        self.warnings.push(repeated_key(&k, first, kp));
                    }
                }
            },
        }
    }
}

/// The nodes in a tree (itself included). Recursion is bounded by `MAX_DEPTH`.
fn size(n: &Node) -> usize {
    match &n.value {
        Value::Seq(v) => 1 + v.iter().map(size).sum::<usize>(),
        Value::Map(m) => 1 + m.iter().map(|e| size(&e.value)).sum::<usize>(),
        _ => 1,
    }
}

fn is_mergeable(n: &Node) -> bool {
    match &n.value {
        Value::Map(_) => true,
        Value::Seq(v) => v.iter().all(|x| matches!(x.value, Value::Map(_))),
        _ => false,
    }
}

/// `<<: *a` or `<<: [*a, *b]`: the earlier source wins among merged maps, as YAML says.
fn merge_into(map: &mut MapBuilder, src: Node) {
    match src.value {
        Value::Map(entries) => {
            for e in entries {
                map.insert_if_absent(e);
            }
        }
        Value::Seq(items) => {
            for i in items {
                merge_into(map, i);
            }
        }
        _ => {}
    }
}

/// Keys are names; numbers and booleans used as keys are taken as their text.
fn key_text(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Num(_) | Value::Bool(_) => Some(n.to_env_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// The core-schema meaning of a scalar: only plain (unquoted) scalars can be anything else than
/// a string.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(t) = tag {
        match t.suffix.as_str() {
            "str" => return Value::Str(text),
            "null" => return Value::Null,
            _ => {}
        }
    }
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Num(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Num(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Num(f64::NAN),
        _ => {}
    }
    match number(&text) {
        Some(n) => Value::Num(n),
        None => Value::Str(text),
    }
}

/// Core-schema numbers: decimal integers, `0x`/`0o` integers, and decimal floats.
fn number(t: &str) -> Option<f64> {
    if let Some(h) = t.strip_prefix("0x") {
        return i64::from_str_radix(h, 16).ok().map(|i| i as f64);
    }
    if let Some(o) = t.strip_prefix("0o") {
        return i64::from_str_radix(o, 8).ok().map(|i| i as f64);
    }
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let ok = !body.is_empty()
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && body.chars().any(|c| c.is_ascii_digit());
    if !ok {
        return None;
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(t: &str) -> Node {
        parse(t).unwrap().root
    }

    #[test]
    fn positions_are_one_based() {
        let r = root("apps:\n  - name: api\n    instances: lots\n");
        let apps = &r.get("apps").unwrap().value;
        let Value::Seq(list) = &apps.value else {
            panic!()
        };
        let inst = list[0].get("instances").unwrap();
        assert_eq!(inst.key_pos, Pos::new(3, 5));
        assert_eq!(inst.value.pos, Pos::new(3, 16));
        assert_eq!(inst.value.value, Value::Str("lots".into()));
    }

    #[test]
    fn core_schema_scalars() {
        let r =
            root("a: 1\nb: '1'\nc: yes\nd: true\ne: ~\nf: 1.5\ng: 0x10\nh: max\ni: -1\nj: 1e3\n");
        let v = |k: &str| r.get(k).unwrap().value.value.clone();
        assert_eq!(v("a"), Value::Num(1.0));
        assert_eq!(v("b"), Value::Str("1".into()));
        assert_eq!(v("c"), Value::Str("yes".into()));
        assert_eq!(v("d"), Value::Bool(true));
        assert_eq!(v("e"), Value::Null);
        assert_eq!(v("f"), Value::Num(1.5));
        assert_eq!(v("g"), Value::Num(16.0));
        assert_eq!(v("h"), Value::Str("max".into()));
        assert_eq!(v("i"), Value::Num(-1.0));
        assert_eq!(v("j"), Value::Num(1000.0));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let r = root(
            "base: &b\n  watch: false\n  instances: 2\napp:\n  <<: *b\n  instances: 4\nother: *b\n",
        );
        let app = &r.get("app").unwrap().value;
        assert_eq!(app.get("instances").unwrap().value.value, Value::Num(4.0));
        assert_eq!(app.get("watch").unwrap().value.value, Value::Bool(false));
        assert!(r.get("other").unwrap().value.get("watch").is_some());
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("apps:\n  - name: a\n   script: x\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
        assert!(e.message.starts_with("invalid YAML"));
    }

    #[test]
    fn repeated_keys_warn() {
        let p = parse("a: 1\na: 2\n").unwrap();
        assert_eq!(p.root.get("a").unwrap().value.value, Value::Num(2.0));
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].pos.line, 2);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let e = parse(&format!("{}{}", "[".repeat(210), "]".repeat(210))).unwrap_err();
        assert!(e.message.contains("nested"), "{e:?}");
        // yaml-rust2 has its own limit further down.
        assert!(parse(&"[".repeat(5000)).is_err());
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut t = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, c) in ('b'..='i').enumerate() {
            let prev = (b'a' + i as u8) as char;
            let refs = vec![format!("*{prev}"); 10].join(", ");
            t.push_str(&format!("{c}: &{c} [{refs}]\n"));
        }
        let start = std::time::Instant::now();
        let e = parse(&t).unwrap_err();
        assert!(e.message.contains("more than"), "{e:?}");
        assert!(e.pos.line >= 5, "{e:?}");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn aliases_within_budget_expand() {
        let r = root("a: &a {x: 1}\nb: [*a, *a]\n");
        let Value::Seq(l) = &r.get("b").unwrap().value.value else {
            panic!()
        };
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn empty_is_null() {
        assert_eq!(root("").value, Value::Null);
        assert_eq!(root("# only a comment\n").value, Value::Null);
    }
}
