//! Tolerant JSON → positioned tree.
//!
//! pm2 evaluates a `.json` apps file as a JavaScript expression, so real files contain what
//! strict JSON forbids: `//` and `/* */` comments, trailing commas, single-quoted strings,
//! unquoted keys, `undefined`, hex numbers. This reader accepts that JSON5-like superset (and
//! nothing that needs a JavaScript engine) and records the line and column of every value.
//! The same reader parses what `node` prints for `.js` files.

use super::tree::{
    repeated_key, too_many_nodes, Entry, MapBuilder, Node, Parsed, Pos, ReadIssue, Value, MAX_NODES,
};

/// Reads tolerant JSON. Empty text (or only comments) gives a `Null` root.
pub fn parse(text: &str) -> Result<Parsed, ReadIssue> {
    let mut p = Reader {
        text,
        i: 0,
        nodes: 0,
        line: 1,
        col: 1,
        warnings: Vec::new(),
    };
    p.skip_ws()?;
    if p.peek().is_none() {
        return Ok(Parsed {
            root: Node::new(Pos::new(1, 1), Value::Null),
            warnings: p.warnings,
        });
    }
    let root = p.value(0)?;
    p.skip_ws()?;
    if p.peek().is_some() {
        return Err(p.issue("unexpected text after the end of the value"));
    }
    Ok(Parsed {
        root,
        warnings: p.warnings,
    })
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;

/// Reads the text in place (a byte offset into it): a `Vec<char>` copy cost four bytes per
/// byte of input, 400 MB for a file of white space.
struct Reader<'a> {
    text: &'a str,
    i: usize,
    /// Values read so far, against `MAX_NODES`.
    nodes: usize,
    line: usize,
    col: usize,
    warnings: Vec<ReadIssue>,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.i..)?.chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.text.get(self.i..)?.chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos::new(self.line, self.col)
    }

    fn issue(&self, what: &str) -> ReadIssue {
        let found = match self.peek() {
            Some(c) => format!(" (found {c:?})"),
            None => " (found the end of the file)".to_string(),
        };
        ReadIssue {
            pos: self.pos(),
            message: format!("invalid JSON: {what}{found}"),
        }
    }

    /// Skips white space and comments.
    fn skip_ws(&mut self) -> Result<(), ReadIssue> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                            None => {
                                return Err(ReadIssue {
                                    pos: start,
                                    message: "invalid JSON: comment not closed with */".into(),
                                })
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, ReadIssue> {
        if depth > MAX_DEPTH {
            return Err(self.issue("values nested too deeply"));
        }
        let pos = self.pos();
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ReadIssue {
                pos,
                message: too_many_nodes(),
            });
        }
        let v = match self.peek() {
            Some('{') => self.object(depth)?,
            Some('[') => self.array(depth)?,
            Some(q @ ('"' | '\'')) => Value::Str(self.string(q)?),
            Some('(') => {
                // `({...})`: pm2 wraps the text in parentheses itself, some files do too.
                self.bump();
                self.skip_ws()?;
                let inner = self.value(depth + 1)?;
                self.skip_ws()?;
                if self.bump() != Some(')') {
                    return Err(self.issue("expected )"));
                }
                return Ok(Node::new(pos, inner.value));
            }
            Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => {
                Value::Num(self.number()?)
            }
            Some(c) if is_ident_start(c) => {
                let word = self.ident();
                match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" | "undefined" => Value::Null,
                    "Infinity" => Value::Num(f64::INFINITY),
                    "NaN" => Value::Num(f64::NAN),
                    _ => {
                        return Err(ReadIssue {
                            pos,
                            message: format!(
                                "invalid JSON: `{word}` is not a value; quote strings (\"{word}\")"
                            ),
                        })
                    }
                }
            }
            _ => return Err(self.issue("expected a value")),
        };
        Ok(Node::new(pos, v))
    }

    fn object(&mut self, depth: usize) -> Result<Value, ReadIssue> {
        self.bump();
        let mut map = MapBuilder::default();
        loop {
            self.skip_ws()?;
            if self.peek() == Some('}') {
                self.bump();
                return Ok(Value::Map(map.finish()));
            }
            let key_pos = self.pos();
            let key = match self.peek() {
                Some(q @ ('"' | '\'')) => self.string(q)?,
                Some(c) if is_ident_start(c) || c.is_ascii_digit() => self.ident(),
                _ => return Err(self.issue("expected a key or }")),
            };
            self.skip_ws()?;
            if self.bump() != Some(':') {
                return Err(ReadIssue {
                    pos: self.pos(),
                    message: format!("invalid JSON: expected : after key '{key}'"),
                });
            }
            self.skip_ws()?;
            let value = self.value(depth + 1)?;
            if let Some(first) = map.insert(Entry {
                key: key.clone(),
                key_pos,
                value,
            }) {
                self.warnings.push(repeated_key(&key, first, key_pos));
            }
            self.skip_ws()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                _ => return Err(self.issue("expected , or } (a comma may be missing)")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ReadIssue> {
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_ws()?;
            if self.peek() == Some(']') {
                self.bump();
                return Ok(Value::Seq(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                _ => return Err(self.issue("expected , or ] (a comma may be missing)")),
            }
        }
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if is_ident_start(c) || c.is_ascii_digit() {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    fn number(&mut self) -> Result<f64, ReadIssue> {
        let start = self.pos();
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_') {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let bad = || ReadIssue {
            pos: start,
            message: format!("invalid JSON: {s:?} is not a number"),
        };
        let (neg, body) = match s.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, s.strip_prefix('+').unwrap_or(&s)),
        };
        let v = if let Some(h) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
            i64::from_str_radix(h, 16).map_err(|_| bad())? as f64
        } else if body == "Infinity" {
            f64::INFINITY
        } else if body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
            && body.chars().any(|c| c.is_ascii_digit())
        {
            body.parse::<f64>().map_err(|_| bad())?
        } else {
            return Err(bad());
        };
        Ok(if neg { -v } else { v })
    }

    fn string(&mut self, quote: char) -> Result<String, ReadIssue> {
        let start = self.pos();
        self.bump();
        let mut s = String::new();
        loop {
            let c = match self.bump() {
                Some(c) => c,
                None => {
                    return Err(ReadIssue {
                        pos: start,
                        message: "invalid JSON: string not closed".into(),
                    })
                }
            };
            if c == quote {
                return Ok(s);
            }
            if c == '\n' {
                return Err(ReadIssue {
                    pos: start,
                    message: "invalid JSON: string not closed on its line".into(),
                });
            }
            if c != '\\' {
                s.push(c);
                continue;
            }
            let esc_pos = self.pos();
            match self.bump() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('r') => s.push('\r'),
                Some('b') => s.push('\u{8}'),
                Some('f') => s.push('\u{c}'),
                Some('v') => s.push('\u{b}'),
                Some('0') => s.push('\0'),
                Some('\n') => {} // line continuation
                Some('u') => s.push(self.unicode_escape(esc_pos)?),
                Some(other) => s.push(other),
                None => {}
            }
        }
    }

    /// `\uXXXX`, with surrogate pairs joined.
    fn unicode_escape(&mut self, at: Pos) -> Result<char, ReadIssue> {
        let bad = || ReadIssue {
            pos: at,
            message: "invalid JSON: bad \\u escape".into(),
        };
        let hi = self.hex4().ok_or_else(bad)?;
        if (0xD800..0xDC00).contains(&hi) && self.peek() == Some('\\') && self.peek2() == Some('u')
        {
            self.bump();
            self.bump();
            let lo = self.hex4().ok_or_else(bad)?;
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
            return char::from_u32(c).ok_or_else(bad);
        }
        Ok(char::from_u32(hi).unwrap_or('\u{fffd}'))
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut v = 0;
        for _ in 0..4 {
            v = v * 16 + self.bump()?.to_digit(16)?;
        }
        Some(v)
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn javascript_flavoured_json() {
        let t = "{\n  // a comment\n  apps: [{\n    'name': 'a', /* b */ \"x\": 0x10,\n    y: [1, 2,],\n  },],\n}\n";
        let r = parse(t).unwrap().root;
        let apps = &r.get("apps").unwrap().value;
        let Value::Seq(l) = &apps.value else { panic!() };
        assert_eq!(
            l[0].get("name").unwrap().value.value,
            Value::Str("a".into())
        );
        assert_eq!(l[0].get("x").unwrap().value.value, Value::Num(16.0));
        assert_eq!(l[0].get("x").unwrap().key_pos, Pos::new(4, 26));
        assert_eq!(l[0].get("y").unwrap().value.pos, Pos::new(5, 8));
    }

    #[test]
    fn strings_and_escapes() {
        let r = parse(r#"{"a": "x\"y\u00e9\n", b: 'it\'s', c: -1.5e1, d: undefined}"#)
            .unwrap()
            .root;
        assert_eq!(
            r.get("a").unwrap().value.value,
            Value::Str("x\"yé\n".into())
        );
        assert_eq!(r.get("b").unwrap().value.value, Value::Str("it's".into()));
        assert_eq!(r.get("c").unwrap().value.value, Value::Num(-15.0));
        assert_eq!(r.get("d").unwrap().value.value, Value::Null);
    }

    #[test]
    fn errors_are_located() {
        let e = parse("{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        assert_eq!(e.pos, Pos::new(3, 3));
        assert!(e.message.contains("comma"), "{}", e.message);
        let e = parse("{\"a\": nope}").unwrap_err();
        assert_eq!(e.pos, Pos::new(1, 7));
        let e = parse("{\"a\": \"x").unwrap_err();
        assert!(e.message.contains("not closed"));
        let e = parse("{} {}").unwrap_err();
        assert!(e.message.contains("after the end"));
    }

    #[test]
    fn repeated_keys_keep_last_and_warn() {
        let p = parse("{\"a\": 1, \"a\": 2}").unwrap();
        assert_eq!(p.root.get("a").unwrap().value.value, Value::Num(2.0));
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let t = "[".repeat(1000);
        assert!(parse(&t).is_err());
    }
}
