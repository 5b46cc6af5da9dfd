//! Scalar readers shared by every field: durations, sizes, counts, booleans, and shell words.
//!
//! Invariant: each reader takes a positioned node and returns the value or a message that says
//! what was found and what to write instead; the caller adds the location. Numeric strings are
//! accepted wherever a number is (pm2's schema coerces them).

use std::time::Duration;

use super::tree::{Node, Value};

/// The number a node holds, as a number or a numeric string.
fn numeric(n: &Node) -> Option<f64> {
    match &n.value {
        Value::Num(v) => Some(*v),
        Value::Str(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.parse::<f64>().ok()).flatten()
        }
        _ => None,
    }
}

/// A whole number ≥ 0 (counts such as `max_restarts`).
pub fn count(n: &Node) -> Result<u32, String> {
    match numeric(n) {
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) => Ok(v as u32),
        _ => Err(format!(
            "{} is not a count; use a whole number ≥ 0",
            n.show()
        )),
    }
}

/// A whole number (possibly negative), for `instances` and exit codes.
pub fn integer(n: &Node) -> Option<i64> {
    numeric(n)
        .filter(|v| v.fract() == 0.0 && v.abs() < 1e15)
        .map(|v| v as i64)
}

/// `true`/`false`, also written as the strings "true"/"false" (pm2 files do).
pub fn boolean(n: &Node) -> Result<bool, String> {
    match &n.value {
        Value::Bool(b) => Ok(*b),
        Value::Str(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::Str(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("{} is not a boolean; use true or false", n.show())),
    }
}

/// A non-empty string (numbers are taken as their text: `name: 42`).
pub fn string(n: &Node) -> Result<String, String> {
    match &n.value {
        Value::Str(s) if !s.trim().is_empty() => Ok(s.clone()),
        Value::Num(_) => Ok(n.to_env_string()),
        Value::Str(_) => Err("is empty; give a value or remove the key".to_string()),
        _ => Err(format!("must be a string, not {}", n.kind())),
    }
}

/// The longest duration accepted: 2^31 - 1 ms, beyond which Node (so pm2) silently fires a
/// timer after 1 ms. Anything longer is a mistake in the file, not a wish.
pub const MAX_DURATION_MS: f64 = 2_147_483_647.0;

/// A duration: milliseconds as a number or numeric string, or a number with a unit
/// (`ms`, `s`, `m`, `h`; fractions allowed: `"1.5s"`).
pub fn duration(n: &Node) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{} is not a duration; use milliseconds (1500) or a number with a unit: \"500ms\", \"2s\", \"1m\", \"1h\"",
            n.show()
        )
    };
    let ms = match &n.value {
        Value::Num(v) => *v,
        Value::Str(s) => {
            let (num, unit) = split_unit(s.trim());
            let v: f64 = num.parse().map_err(|_| bad())?;
            let scale = match unit.to_ascii_lowercase().as_str() {
                "" | "ms" => 1.0,
                "s" | "sec" => 1000.0,
                "m" | "min" => 60_000.0,
                "h" => 3_600_000.0,
                _ => return Err(bad()),
            };
            v * scale
        }
        _ => return Err(bad()),
    };
    if !ms.is_finite() || ms < 0.0 {
        return Err(bad());
    }
    if ms > MAX_DURATION_MS {
        return Err(format!(
            "{} is too long for a duration; the most is {MAX_DURATION_MS} ms (24.8 days, the longest delay a Node timer under pm2 takes)",
            n.show()
        ));
    }
    Ok(Duration::from_millis(ms.round() as u64))
}

/// A size in bytes: a number of bytes, or a number with K, M or G (powers of 1024, optional B,
/// any case, fractions allowed: `"1.5G"`, `"300mb"`).
pub fn size(n: &Node) -> Result<u64, String> {
    let bad = || {
        format!(
            "{} is not a size; use bytes (1048576) or a number with K, M or G: \"512K\", \"300M\", \"1.5G\"",
            n.show()
        )
    };
    let bytes = match &n.value {
        Value::Num(v) => *v,
        Value::Str(s) => {
            let (num, unit) = split_unit(s.trim());
            let v: f64 = num.parse().map_err(|_| bad())?;
            let unit = unit.to_ascii_uppercase();
            let scale = match unit.strip_suffix('B').unwrap_or(&unit) {
                "" => 1.0,
                "K" => 1024.0,
                "M" => 1024.0 * 1024.0,
                "G" => 1024.0 * 1024.0 * 1024.0,
                "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                _ => return Err(bad()),
            };
            v * scale
        }
        _ => return Err(bad()),
    };
    if !bytes.is_finite() || bytes <= 0.0 || bytes > 9e18 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// `"1.5 G"` → `("1.5", "G")`.
fn split_unit(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (s[..end].trim(), s[end..].trim())
}

/// A list of words from a string (split as a POSIX shell would: quotes and backslashes
/// honoured, nothing expanded) or from a list of scalars.
pub fn words(n: &Node) -> Result<Vec<String>, String> {
    match &n.value {
        Value::Str(s) => shell_split(s),
        Value::Null => Ok(Vec::new()),
        Value::Num(_) | Value::Bool(_) => Ok(vec![n.to_env_string()]),
        Value::Seq(items) => items
            .iter()
            .map(|i| match &i.value {
                Value::Str(s) => Ok(s.clone()),
                Value::Num(_) | Value::Bool(_) => Ok(i.to_env_string()),
                _ => Err(format!(
                    "list items must be strings; item at line {} is {}",
                    i.pos.line,
                    i.kind()
                )),
            })
            .collect(),
        Value::Map(_) => Err("must be a string or a list of strings, not an object".into()),
    }
}

/// Splits like `sh` does, without expansions: `a "b c" 'd\'` → `a`, `b c`, `d\`.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(unclosed('\'', s)),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some('\n') => {}
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err(unclosed('"', s)),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(unclosed('"', s)),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = it.next() {
                    if x != '\n' {
                        cur.push(x);
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn unclosed(q: char, s: &str) -> String {
    format!("{s:?} has an unclosed {q} quote; close it or use a list of arguments")
}

/// Quotes a word for `sh` so that it stays one word with no expansion.
pub fn shell_quote(w: &str) -> String {
    let safe = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::Pos;
    use super::*;

    fn s(t: &str) -> Node {
        Node::new(Pos::new(1, 1), Value::Str(t.into()))
    }
    fn num(v: f64) -> Node {
        Node::new(Pos::new(1, 1), Value::Num(v))
    }
    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn durations() {
        assert_eq!(duration(&num(1500.0)), Ok(ms(1500)));
        assert_eq!(duration(&s("1500")), Ok(ms(1500)));
        assert_eq!(duration(&s("2s")), Ok(ms(2000)));
        assert_eq!(duration(&s("1.5s")), Ok(ms(1500)));
        assert_eq!(duration(&s("1m")), Ok(ms(60_000)));
        assert_eq!(duration(&s("1h")), Ok(ms(3_600_000)));
        assert_eq!(duration(&s("250ms")), Ok(ms(250)));
        assert_eq!(duration(&s(" 10 s ")), Ok(ms(10_000)));
        for bad in ["soon", "1 fortnight", "-5", "", "1.2.3s"] {
            let e = duration(&s(bad)).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
        assert!(duration(&num(-1.0)).is_err());
        assert!(duration(&Node::new(Pos::new(1, 1), Value::Bool(true))).is_err());
    }

    #[test]
    fn durations_refuse_nan_infinity_and_absurd_values() {
        let nums = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5, 3e9, 1e300];
        for v in nums {
            assert!(duration(&num(v)).is_err(), "{v}");
        }
        for bad in [
            "NaN",
            "nan",
            "Infinity",
            "-Infinity",
            "inf",
            "infs",
            "NaNms",
            "1e400",
        ] {
            assert!(duration(&s(bad)).is_err(), "{bad}");
        }
        let e = duration(&s("30d")).unwrap_err();
        assert!(e.contains("is not a duration"), "{e}");
        let e = duration(&s("1000h")).unwrap_err();
        assert!(e.contains("too long") && e.contains("the most is"), "{e}");
        assert_eq!(duration(&num(MAX_DURATION_MS)), Ok(ms(2_147_483_647)));
    }

    #[test]
    fn sizes_refuse_nan_infinity_and_absurd_values() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e19, 0.0] {
            assert!(size(&num(v)).is_err(), "{v}");
        }
        for bad in ["NaN", "InfinityG", "infM", "1e30G", "99999999999T"] {
            assert!(size(&s(bad)).is_err(), "{bad}");
        }
        assert!(count(&num(f64::NAN)).is_err());
        assert!(count(&num(f64::INFINITY)).is_err());
        assert_eq!(integer(&num(f64::NAN)), None);
        assert_eq!(integer(&num(f64::NEG_INFINITY)), None);
    }

    #[test]
    fn sizes() {
        let k = 1024u64;
        assert_eq!(size(&num(1_048_576.0)), Ok(1_048_576));
        assert_eq!(size(&s("512K")), Ok(512 * k));
        assert_eq!(size(&s("300M")), Ok(300 * k * k));
        assert_eq!(size(&s("300MB")), Ok(300 * k * k));
        assert_eq!(size(&s("300m")), Ok(300 * k * k));
        assert_eq!(size(&s("1G")), Ok(k * k * k));
        assert_eq!(size(&s("1.5G")), Ok(3 * k * k * k / 2));
        assert_eq!(size(&s("2048")), Ok(2048));
        for bad in ["lots", "1X", "0", "-1M", "M"] {
            assert!(
                size(&s(bad)).unwrap_err().contains("is not a size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn counts_and_booleans() {
        assert_eq!(count(&num(3.0)), Ok(3));
        assert_eq!(count(&s("10")), Ok(10));
        assert!(count(&num(-1.0)).is_err());
        assert!(count(&num(1.5)).is_err());
        assert!(count(&s("ten")).unwrap_err().contains("not a count"));
        assert_eq!(boolean(&s("true")), Ok(true));
        assert_eq!(
            boolean(&Node::new(Pos::new(1, 1), Value::Bool(false))),
            Ok(false)
        );
        assert!(boolean(&s("yes")).unwrap_err().contains("true or false"));
        assert_eq!(integer(&s("-2")), Some(-2));
        assert_eq!(integer(&s("max")), None);
    }

    #[test]
    fn shell_splitting() {
        let v = |t: &str| shell_split(t).unwrap();
        assert_eq!(v(r#"a "b c" d"#), ["a", "b c", "d"]);
        assert_eq!(v("  --port   3000 "), ["--port", "3000"]);
        assert_eq!(
            v(r#"'it''s' x\ y "q\"q" "a\nb""#),
            ["its", "x y", "q\"q", "a\\nb"]
        );
        assert_eq!(v(r#""" ''"#), ["", ""]);
        assert!(v("").is_empty());
        assert!(shell_split("a 'b").unwrap_err().contains("unclosed"));
        assert!(shell_split("a \"b").is_err());
    }

    #[test]
    fn shell_quoting_round_trips() {
        for w in ["plain", "with space", "it's", "", "$HOME", "a\"b", "--x=1"] {
            let q = shell_quote(w);
            assert_eq!(shell_split(&q).unwrap(), [w], "{q}");
        }
        assert_eq!(shell_quote("--port=3000"), "--port=3000");
    }

    #[test]
    fn words_from_lists_and_strings() {
        let list = Node::new(Pos::new(1, 1), Value::Seq(vec![s("a b"), num(3.0)]));
        assert_eq!(words(&list), Ok(vec!["a b".to_string(), "3".to_string()]));
        assert_eq!(
            words(&s("-r ts-node/register")).unwrap(),
            ["-r", "ts-node/register"]
        );
    }
}
