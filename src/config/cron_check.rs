//! Checks each field of a cron expression against its bounds before the `cron` crate sees it, so
//! errors are in pmi's words with the right bounds (the crate says "Hours must be less than 23"
//! for 24 and puts its caret under the 6-field form it was given, not what the user wrote).
//!
//! Invariant: an expression that passes here has, in every field, only `*`, `?`, numbers within
//! the field's bounds, names where the field takes names, ranges that go forward and steps of at
//! least 1; the message shows the user's expression with a caret under the bad field.

/// (name, lowest, highest, names) of the fields of a 6-field expression (seconds first).
const FIELDS: [(&str, u32, u32, &[&str]); 6] = [
    ("second", 0, 59, &[]),
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of the month", 1, 31, &[]),
    ("month", 1, 12, &MONTHS),
    ("weekday", 0, 7, &DAYS),
];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Checks `src` (5 or 6 fields, already counted). `Err` is the full message.
pub fn check(src: &str) -> Result<(), String> {
    let fields = spans(src);
    let skip = if fields.len() == 5 { 1 } else { 0 };
    for (i, &(start, text)) in fields.iter().enumerate() {
        let (name, lo, hi, names) = FIELDS[i + skip];
        if let Err(why) = field(text, lo, hi, names) {
            let hint = if names.is_empty() {
                format!("{name} is {lo}-{hi}")
            } else {
                format!(
                    "{name} is {lo}-{hi} or {}..{}",
                    names[0],
                    names[names.len() - 1]
                )
            };
            return Err(format!(
                "{src:?}: {why} in the {name} field ({hint}){}",
                caret(src, start, text.len())
            ));
        }
    }
    Ok(())
}

/// The message's second and third lines: the expression and a caret under `len` bytes at `start`.
pub fn caret(src: &str, start: usize, len: usize) -> String {
    format!(
        "\n    {src}\n    {}{}",
        " ".repeat(src[..start].chars().count()),
        "^".repeat(src[start..start + len].chars().count().max(1))
    )
}

/// The fields of `src` with their byte offsets.
pub fn spans(src: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in src.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &src[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &src[s..]));
    }
    out
}

fn field(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<(), String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(s) = step {
            match s.parse::<u32>() {
                Ok(n) if n >= 1 && n <= hi.max(1) => {}
                _ => {
                    return Err(format!(
                        "step {s:?} is not a number from 1 to {}",
                        hi.max(1)
                    ))
                }
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (value(a, lo, hi, names)?, Some(value(b, lo, hi, names)?)),
            None => (value(range, lo, hi, names)?, None),
        };
        if let Some(b) = b {
            if b < a {
                return Err(format!("range {range:?} goes backwards"));
            }
        }
    }
    Ok(())
}

fn value(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    if s.is_empty() {
        return Err("an empty value".into());
    }
    if let Ok(n) = s.parse::<u32>() {
        return if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is out of range"))
        };
    }
    match names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        Some(i) => Ok(i as u32 + lo),
        None => Err(format!("{s:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_pmis_words() {
        let e = check("0 24 * * *").unwrap_err();
        assert!(
            e.contains("24 is out of range in the hour field (hour is 0-23)"),
            "{e}"
        );
        assert!(e.ends_with("\n    0 24 * * *\n      ^^"), "{e}");
        for (expr, want) in [
            ("60 * * * *", "minute is 0-59"),
            ("0 0 32 * *", "day of the month is 1-31"),
            ("0 0 0 * *", "day of the month is 1-31"),
            ("0 0 * 13 *", "month is 1-12 or JAN..DEC"),
            ("0 0 * * 8", "weekday is 0-7 or SUN..SAT"),
            ("61 0 0 * * *", "second is 0-59"),
            ("*/0 * * * *", "step \"0\""),
            ("5-1 * * * *", "goes backwards"),
            ("0 0 * * FOO", "\"FOO\" is not a number"),
        ] {
            let e = check(expr).unwrap_err();
            assert!(e.contains(want), "{expr}: {e}");
        }
    }

    #[test]
    fn good_expressions_pass() {
        for e in [
            "0 3 * * *",
            "*/5 * * * *",
            "0 0 1,15 * MON-FRI",
            "0 0 * JAN-MAR 0,7",
            "*/10 * * * * *",
            "0 23 31 12 7",
            "1-5/2 * * * *",
        ] {
            assert_eq!(check(e), Ok(()), "{e}");
        }
    }
}
