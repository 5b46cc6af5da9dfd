//! pm2's `log_date_format`: the dayjs format tokens, compiled once per app, applied per chunk.
//!
//! Tokens: YYYY YY M MM MMM MMMM D DD d dd ddd dddd H HH h hh m mm s ss SSS Z ZZ A a X x, and
//! `[text]` for literal text. Anything else is copied as is. The longest token wins
//! (`MMMM` before `MMM` before `MM` before `M`), as in dayjs.

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Year4,
    Year2,
    Month,
    Month2,
    MonthShort,
    MonthLong,
    Day,
    Day2,
    Weekday,
    WeekdayMin,
    WeekdayShort,
    WeekdayLong,
    Hour,
    Hour2,
    Hour12,
    Hour12Pad,
    Minute,
    Minute2,
    Second,
    Second2,
    Millis,
    Offset,
    OffsetCompact,
    AmPmUpper,
    AmPmLower,
    UnixSeconds,
    UnixMillis,
}

/// Longest first, so that a prefix never shadows a longer token.
const TOKENS: &[(&str, Tok)] = &[
    ("YYYY", Tok::Year4),
    ("MMMM", Tok::MonthLong),
    ("dddd", Tok::WeekdayLong),
    ("MMM", Tok::MonthShort),
    ("ddd", Tok::WeekdayShort),
    ("SSS", Tok::Millis),
    ("YY", Tok::Year2),
    ("MM", Tok::Month2),
    ("DD", Tok::Day2),
    ("dd", Tok::WeekdayMin),
    ("HH", Tok::Hour2),
    ("hh", Tok::Hour12Pad),
    ("mm", Tok::Minute2),
    ("ss", Tok::Second2),
    ("ZZ", Tok::OffsetCompact),
    ("M", Tok::Month),
    ("D", Tok::Day),
    ("d", Tok::Weekday),
    ("H", Tok::Hour),
    ("h", Tok::Hour12),
    ("m", Tok::Minute),
    ("s", Tok::Second),
    ("Z", Tok::Offset),
    ("A", Tok::AmPmUpper),
    ("a", Tok::AmPmLower),
    ("X", Tok::UnixSeconds),
    ("x", Tok::UnixMillis),
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Lit(String),
    Tok(Tok),
}

/// A compiled `log_date_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    items: Vec<Item>,
}

impl DateFormat {
    pub fn parse(fmt: &str) -> DateFormat {
        let mut items = Vec::new();
        let mut lit = String::new();
        let mut rest = fmt;
        while let Some(c) = rest.chars().next() {
            if c == '[' {
                if let Some(end) = rest.find(']') {
                    lit.push_str(&rest[1..end]);
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            if let Some((name, tok)) = TOKENS.iter().find(|(name, _)| rest.starts_with(name)) {
                if !lit.is_empty() {
                    items.push(Item::Lit(std::mem::take(&mut lit)));
                }
                items.push(Item::Tok(*tok));
                rest = &rest[name.len()..];
            } else {
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !lit.is_empty() {
            items.push(Item::Lit(lit));
        }
        DateFormat { items }
    }

    /// Formats `t` in its own time zone.
    pub fn format<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> String {
        let mut out = String::with_capacity(32);
        for item in &self.items {
            match item {
                Item::Lit(s) => out.push_str(s),
                Item::Tok(tok) => push_tok(&mut out, *tok, t),
            }
        }
        out
    }
}

fn push_tok<Tz: TimeZone>(out: &mut String, tok: Tok, t: &DateTime<Tz>) {
    let month0 = t.month0() as usize;
    let weekday = t.weekday().num_days_from_sunday() as usize;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    match tok {
        Tok::Year4 => push_num(out, i64::from(t.year()), 4),
        Tok::Year2 => push_num(out, i64::from(t.year()).rem_euclid(100), 2),
        Tok::Month => push_num(out, i64::from(t.month()), 1),
        Tok::Month2 => push_num(out, i64::from(t.month()), 2),
        Tok::MonthShort => out.push_str(&MONTHS[month0][..3]),
        Tok::MonthLong => out.push_str(MONTHS[month0]),
        Tok::Day => push_num(out, i64::from(t.day()), 1),
        Tok::Day2 => push_num(out, i64::from(t.day()), 2),
        Tok::Weekday => push_num(out, weekday as i64, 1),
        Tok::WeekdayMin => out.push_str(&WEEKDAYS[weekday][..2]),
        Tok::WeekdayShort => out.push_str(&WEEKDAYS[weekday][..3]),
        Tok::WeekdayLong => out.push_str(WEEKDAYS[weekday]),
        Tok::Hour => push_num(out, i64::from(t.hour()), 1),
        Tok::Hour2 => push_num(out, i64::from(t.hour()), 2),
        Tok::Hour12 => push_num(out, i64::from(hour12), 1),
        Tok::Hour12Pad => push_num(out, i64::from(hour12), 2),
        Tok::Minute => push_num(out, i64::from(t.minute()), 1),
        Tok::Minute2 => push_num(out, i64::from(t.minute()), 2),
        Tok::Second => push_num(out, i64::from(t.second()), 1),
        Tok::Second2 => push_num(out, i64::from(t.second()), 2),
        // A leap second shows as 999 ms rather than 1000+.
        Tok::Millis => push_num(out, i64::from(t.timestamp_subsec_millis().min(999)), 3),
        Tok::Offset | Tok::OffsetCompact => {
            let secs = t.offset().fix().local_minus_utc();
            out.push(if secs < 0 { '-' } else { '+' });
            let mins = i64::from(secs.unsigned_abs() / 60);
            push_num(out, mins / 60, 2);
            if tok == Tok::Offset {
                out.push(':');
            }
            push_num(out, mins % 60, 2);
        }
        Tok::AmPmUpper => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
        Tok::AmPmLower => out.push_str(if t.hour() < 12 { "am" } else { "pm" }),
        Tok::UnixSeconds => push_num(out, t.timestamp(), 1),
        Tok::UnixMillis => push_num(out, t.timestamp_millis(), 1),
    }
}

/// Decimal, zero-padded to `width` digits (sign not counted).
fn push_num(out: &mut String, n: i64, width: usize) {
    if n < 0 {
        out.push('-');
    }
    let digits = n.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    /// 2024-03-05 (a Tuesday) 07:08:09.045 at +05:30.
    fn morning() -> DateTime<FixedOffset> {
        let tz = FixedOffset::east_opt(5 * 3600 + 30 * 60).expect("valid offset");
        tz.with_ymd_and_hms(2024, 3, 5, 7, 8, 9)
            .single()
            .expect("valid date")
            + chrono::Duration::milliseconds(45)
    }

    /// 2009-12-27 (a Sunday) 23:59:58.000 at -08:00.
    fn evening() -> DateTime<FixedOffset> {
        let tz = FixedOffset::west_opt(8 * 3600).expect("valid offset");
        tz.with_ymd_and_hms(2009, 12, 27, 23, 59, 58)
            .single()
            .expect("valid date")
    }

    fn f(fmt: &str, t: &DateTime<FixedOffset>) -> String {
        DateFormat::parse(fmt).format(t)
    }

    #[test]
    fn every_token() {
        let (m, e) = (morning(), evening());
        let cases: &[(&str, &str, &str)] = &[
            ("YYYY", "2024", "2009"),
            ("YY", "24", "09"),
            ("M", "3", "12"),
            ("MM", "03", "12"),
            ("MMM", "Mar", "Dec"),
            ("MMMM", "March", "December"),
            ("D", "5", "27"),
            ("DD", "05", "27"),
            ("d", "2", "0"),
            ("dd", "Tu", "Su"),
            ("ddd", "Tue", "Sun"),
            ("dddd", "Tuesday", "Sunday"),
            ("H", "7", "23"),
            ("HH", "07", "23"),
            ("h", "7", "11"),
            ("hh", "07", "11"),
            ("m", "8", "59"),
            ("mm", "08", "59"),
            ("s", "9", "58"),
            ("ss", "09", "58"),
            ("SSS", "045", "000"),
            ("Z", "+05:30", "-08:00"),
            ("ZZ", "+0530", "-0800"),
            ("A", "AM", "PM"),
            ("a", "am", "pm"),
            ("X", "1709602689", "1261987198"),
            ("x", "1709602689045", "1261987198000"),
        ];
        for (fmt, want_m, want_e) in cases {
            assert_eq!(f(fmt, &m), *want_m, "{fmt} morning");
            assert_eq!(f(fmt, &e), *want_e, "{fmt} evening");
        }
    }

    #[test]
    fn noon_midnight_and_utc() {
        let utc = FixedOffset::east_opt(0).expect("valid offset");
        let midnight = utc
            .with_ymd_and_hms(2024, 1, 1, 0, 5, 0)
            .single()
            .expect("valid date");
        let noon = utc
            .with_ymd_and_hms(2024, 1, 1, 12, 5, 0)
            .single()
            .expect("valid date");
        assert_eq!(f("h A Z", &midnight), "12 AM +00:00");
        assert_eq!(f("hh a ZZ", &noon), "12 pm +0000");
    }

    #[test]
    fn pm2_examples_and_escapes() {
        let m = morning();
        assert_eq!(f("YYYY-MM-DD HH:mm Z", &m), "2024-03-05 07:08 +05:30");
        assert_eq!(f("YYYY-MM-DDTHH:mm:ss", &m), "2024-03-05T07:08:09");
        assert_eq!(f("[Today is] dddd", &m), "Today is Tuesday");
        assert_eq!(f("[YYYY]YYYY", &m), "YYYY2024");
        // No closing bracket: the bracket is text; the tokens after it still count.
        assert_eq!(f("[YYYY", &m), "[2024");
        // Characters that are no token are copied; multi-byte text survives.
        assert_eq!(f("Q é — YYYY", &m), "Q é — 2024");
        assert_eq!(f("", &m), "");
    }
}
