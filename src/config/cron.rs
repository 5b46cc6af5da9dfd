//! `cron_restart` → a `cron::Schedule`.
//!
//! pm2 reads cron with croner: 5 fields (minute first) or 6 (seconds first), days of the week
//! 0–7 with 0 and 7 both Sunday. The `cron` crate wants seconds first and numbers days of the week
//! 1–7 from Sunday, so a number written the Unix way would silently mean the next day. To keep
//! the Unix meaning, the day-of-week field is rewritten into day names (`MON-FRI` stays as
//! written; `1-5` becomes `MON,TUE,WED,THU,FRI`) before the crate sees it.
//!
//! Invariant: `CronSpec::source` is what the user wrote; the schedule means what it means in
//! pm2/Unix cron.

use std::str::FromStr;

use super::cron_check;
use super::spec::CronSpec;

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Parses a cron expression. `Ok(None)` means "disabled" (pm2's `0`).
pub fn parse(src: &str) -> Result<Option<CronSpec>, String> {
    let t = src.trim();
    if t == "0" || t.is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    let mut six: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields.iter().copied())
            .map(String::from)
            .collect(),
        6 => fields.iter().map(|f| f.to_string()).collect(),
        n => {
            return Err(format!(
                "{src:?} has {n} fields; a cron expression has 5 (minute hour day month weekday) or 6 (with seconds first), e.g. \"0 3 * * *\""
            ))
        }
    };
    cron_check::check(t)?;
    six[5] = weekdays(&six[5]).map_err(|e| format!("{src:?}: {e}"))?;
    let expr = six.join(" ");
    // The crate's own text names its rewritten form, not the user's: not passed on.
    let schedule = cron::Schedule::from_str(&expr).map_err(|_| {
        format!("{src:?} is not a valid cron expression; use 5 fields (minute hour day month weekday), e.g. \"*/5 * * * *\"")
    })?;
    // The crate's search stops at year 2100, so this is quick even for `31 2`.
    if schedule.upcoming(chrono::Utc).next().is_none() {
        let (day, month) = (fields[fields.len() - 3], fields[fields.len() - 2]);
        return Err(format!(
            "{src:?} can never fire: day {day} does not occur in month {month}; fix the day or the month"
        ));
    }
    Ok(Some(CronSpec {
        source: src.to_string(),
        schedule,
    }))
}

/// Rewrites a Unix day-of-week field into names the crate reads the same way. Fields with
/// only names, `*` or `?` are left as they are.
fn weekdays(field: &str) -> Result<String, String> {
    if !field.chars().any(|c| c.is_ascii_digit()) {
        return Ok(field.to_string());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step {s:?} in the weekday field"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day(a)?, day(b)?)
        } else {
            let d = day(range)?;
            // `5/2` means "from 5, every 2" as in croner.
            (d, if item.contains('/') { 6 } else { d })
        };
        if lo > hi {
            return Err(format!("weekday range {range:?} goes backwards"));
        }
        let mut d = lo;
        while d <= hi {
            days[d % 7] = true;
            d += step;
        }
    }
    let names: Vec<&str> = (0..7).filter(|&i| days[i]).map(|i| DAY_NAMES[i]).collect();
    Ok(names.join(","))
}

/// A day of the week: 0–7 (0 and 7 Sunday) or a three-letter name; returns 0–7.
fn day(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!(
                "weekday {n} is out of range; use 0-7 (0 and 7 are Sunday)"
            ))
        };
    }
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("{s:?} is not a weekday; use 0-7 or SUN..SAT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Utc};

    fn next(expr: &str) -> chrono::DateTime<Utc> {
        let s = parse(expr).unwrap().unwrap();
        // 2024-01-01 is a Monday.
        let from = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 30).unwrap();
        s.schedule.after(&from).next().unwrap()
    }

    #[test]
    fn five_fields_get_seconds() {
        let n = next("*/2 * * * *");
        assert_eq!((n.minute(), n.second()), (2, 0));
        assert_eq!(next("0 3 * * *").hour(), 3);
    }

    #[test]
    fn six_fields_are_seconds_first() {
        let n = next("*/10 * * * * *");
        assert_eq!(n.second(), 40);
    }

    #[test]
    fn weekdays_keep_unix_numbers() {
        // Sunday = 0 and 7; Monday = 1.
        assert_eq!(next("0 0 * * 0").weekday(), chrono::Weekday::Sun);
        assert_eq!(next("0 0 * * 7").weekday(), chrono::Weekday::Sun);
        assert_eq!(next("0 12 * * 1").weekday(), chrono::Weekday::Mon);
        assert_eq!(next("0 0 * * 2-3").weekday(), chrono::Weekday::Tue);
        assert_eq!(next("0 0 * * 5-7").weekday(), chrono::Weekday::Fri);
        assert_eq!(next("0 0 * * SAT").weekday(), chrono::Weekday::Sat);
        assert_eq!(weekdays("*/2").unwrap(), "SUN,TUE,THU,SAT");
        assert_eq!(weekdays("1-5").unwrap(), "MON,TUE,WED,THU,FRI");
        assert_eq!(weekdays("MON-FRI").unwrap(), "MON-FRI");
    }

    #[test]
    fn zero_disables() {
        assert!(parse("0").unwrap().is_none());
    }

    #[test]
    fn bad_expressions_explain() {
        assert!(parse("* * *").unwrap_err().contains("has 3 fields"));
        assert!(parse("61 * * * *").unwrap_err().contains("minute is 0-59"));
        assert!(parse("0 0 * * 8").unwrap_err().contains("out of range"));
        let e = parse("0 0 31 2 *").unwrap_err();
        assert!(e.contains("can never fire"), "{e}");
        assert!(parse("0 0 30 2,3 *").is_ok());
        assert!(parse("0 0 * * 5-1").unwrap_err().contains("backwards"));
        assert!(parse("every day at noon").is_err());
    }
}
