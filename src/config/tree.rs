//! The positioned value tree every file format is read into.
//!
//! Invariant: every node and every map key carries the line and column (1-based) where it was
//! written, so that validation can name the exact place of a problem whatever the format. Maps
//! keep the file's key order (for `pmi convert`) and hold each key once (a repeated key keeps
//! the last value, as JavaScript and most YAML readers do; the reader reports the repeat).

use std::collections::HashMap;
use std::fmt;

/// Where a value was written. `line == 0` means unknown (never shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub fn new(line: usize, col: usize) -> Pos {
        Pos { line, col }
    }

    /// The earlier of two positions (by line, then column).
    pub fn min_by_line(self, other: Pos) -> Pos {
        if (self.line, self.col) <= (other.line, other.col) {
            self
        } else {
            other
        }
    }
}

/// A value as written in the file, before any meaning is given to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// Numbers are JavaScript numbers (pm2 reads every format into JavaScript values).
    Num(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// One `key: value` of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    pub fn new(pos: Pos, value: Value) -> Node {
        Node { pos, value }
    }

    /// "a string", "a list"…: for messages that say what was found instead.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "empty (null)",
            Value::Bool(_) => "a boolean",
            Value::Num(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "an object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The entry for `key` in a map node.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The value as JavaScript's `String(v)` would give it for scalars, and JSON for lists and
    /// objects (pm2 JSON-encodes object values of `env`). Null becomes the empty string: in YAML
    /// `KEY:` with nothing after it means "empty", not the word "null".
    pub fn to_env_string(&self) -> String {
        match &self.value {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Num(n) => js_number(*n),
            Value::Str(s) => s.clone(),
            Value::Seq(_) | Value::Map(_) => self.to_json().to_string(),
        }
    }

    /// A short rendering of the value for messages: strings quoted, containers abbreviated.
    pub fn show(&self) -> String {
        match &self.value {
            Value::Str(s) => format!("{s:?}"),
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "an object".to_string(),
            _ => self.to_env_string(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Num(n) => match as_i64(*n) {
                Some(i) => J::from(i),
                None => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
            },
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(v) => J::Array(v.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn to_yaml(&self) -> serde_yaml::Value {
        use serde_yaml::Value as Y;
        match &self.value {
            Value::Null => Y::Null,
            Value::Bool(b) => Y::Bool(*b),
            Value::Num(n) => match as_i64(*n) {
                Some(i) => Y::Number(i.into()),
                None => Y::Number((*n).into()),
            },
            Value::Str(s) => Y::String(s.clone()),
            Value::Seq(v) => Y::Sequence(v.iter().map(Node::to_yaml).collect()),
            Value::Map(m) => Y::Mapping(
                m.iter()
                    .map(|e| (Y::String(e.key.clone()), e.value.to_yaml()))
                    .collect(),
            ),
        }
    }
}

/// The integer an f64 holds exactly, if any (and small enough to be exact in JavaScript too).
pub fn as_i64(n: f64) -> Option<i64> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    (n.fract() == 0.0 && n.abs() <= MAX_SAFE).then_some(n as i64)
}

/// JavaScript's rendering of a number for the common cases: integers without ".0".
pub fn js_number(n: f64) -> String {
    match as_i64(n) {
        Some(i) => i.to_string(),
        None if n.is_nan() => "NaN".to_string(),
        None if n.is_infinite() => if n > 0.0 { "Infinity" } else { "-Infinity" }.to_string(),
        None => n.to_string(),
    }
}

/// Builds a map while keeping each key once (the last value wins, at the place of its last
/// occurrence) and noting repeats. Linear: an index finds a repeat in O(1), and a replaced
/// entry is left as a hole until `finish` (a scan per key made 100 000 keys quadratic).
#[derive(Default)]
pub struct MapBuilder {
    entries: Vec<Option<Entry>>,
    index: HashMap<String, usize>,
}

impl MapBuilder {
    /// Adds an entry; returns the position of an earlier entry with the same key, if any.
    pub fn insert(&mut self, e: Entry) -> Option<Pos> {
        let slot = self.entries.len();
        let old = match self.index.insert(e.key.clone(), slot) {
            Some(i) => self.entries.get_mut(i).and_then(Option::take),
            None => None,
        };
        self.entries.push(Some(e));
        old.map(|o| o.key_pos)
    }

    /// Adds an entry only if the key is absent (YAML merge keys: explicit keys win).
    pub fn insert_if_absent(&mut self, e: Entry) {
        if !self.index.contains_key(&e.key) {
            self.insert(e);
        }
    }

    pub fn finish(self) -> Vec<Entry> {
        self.entries.into_iter().flatten().collect()
    }
}

/// The largest apps file read. Real files are kilobytes; the cap keeps PID 1's memory bounded
/// whatever file it is pointed at (the readers hold the text and a tree of it at once).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The most values (scalars, lists and maps, counted after YAML aliases are expanded) one apps
/// file may hold. A real file has hundreds; the budget keeps a hostile one ("billion laughs":
/// a few aliases that repeat each other) to tens of megabytes instead of gigabytes.
pub const MAX_NODES: usize = 500_000;

/// The message for a file over `MAX_NODES`.
pub fn too_many_nodes() -> String {
    format!(
        "the file holds more than {MAX_NODES} values (YAML aliases counted as often as they are used); \
         an apps file never needs that: look for aliases that repeat other aliases, or split the file"
    )
}

/// A problem found while reading a file (before validation): where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadIssue {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ReadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.message)
    }
}

/// A file read into a tree, with the warnings found on the way (repeated keys…).
#[derive(Debug)]
pub struct Parsed {
    pub root: Node,
    pub warnings: Vec<ReadIssue>,
}

/// The warning for a key given twice in one map.
pub fn repeated_key(key: &str, first: Pos, pos: Pos) -> ReadIssue {
    ReadIssue {
        pos,
        message: format!(
            "key '{key}' is given twice (first at line {}); the last one is used",
            first.line
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: Value) -> Node {
        Node::new(Pos::new(1, 1), v)
    }

    #[test]
    fn env_strings_follow_javascript() {
        assert_eq!(n(Value::Num(3000.0)).to_env_string(), "3000");
        assert_eq!(n(Value::Num(1.5)).to_env_string(), "1.5");
        assert_eq!(n(Value::Bool(true)).to_env_string(), "true");
        assert_eq!(n(Value::Null).to_env_string(), "");
        let obj = n(Value::Map(vec![Entry {
            key: "a".into(),
            key_pos: Pos::new(1, 1),
            value: n(Value::Seq(vec![
                n(Value::Num(1.0)),
                n(Value::Str("x".into())),
            ])),
        }]));
        assert_eq!(obj.to_env_string(), r#"{"a":[1,"x"]}"#);
    }

    #[test]
    fn repeated_keys_keep_the_last() {
        let mut b = MapBuilder::default();
        let e = |v: f64, line| Entry {
            key: "k".into(),
            key_pos: Pos::new(line, 1),
            value: n(Value::Num(v)),
        };
        assert_eq!(b.insert(e(1.0, 1)), None);
        assert_eq!(b.insert(e(2.0, 2)), Some(Pos::new(1, 1)));
        let m = b.finish();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].value.value, Value::Num(2.0));
    }
}
