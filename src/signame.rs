//! Signal names and their parsing (`TERM`, `SIGRTMIN+3`, `15`): pure text, no system calls.
//!
//! Invariant: `parse(&name(n)) == Some(n)` for every signal 1..=64. Sits below `config`, the
//! policy and `os`, which all name signals.

use nix::sys::signal::Signal as NixSignal;

/// glibc's SIGRTMIN, which `kill -l` and shells use to name real-time signals. musl reserves
/// 32–34 for itself, so pmi can only handle from `libc::SIGRTMIN()` on (35 under musl).
const NAMING_RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// The canonical name of a signal number: `SIGTERM`, `SIGRTMIN+3`.
pub fn name(sig: i32) -> String {
    if let Ok(s) = NixSignal::try_from(sig) {
        return s.as_str().to_string();
    }
    if (NAMING_RTMIN..=RTMAX).contains(&sig) {
        let off = sig - NAMING_RTMIN;
        return if off == 0 {
            "SIGRTMIN".to_string()
        } else if sig == RTMAX {
            "SIGRTMAX".to_string()
        } else {
            format!("SIGRTMIN+{off}")
        };
    }
    format!("SIG{sig}")
}

/// Parses `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+3`, `SIGRTMAX-1`.
pub fn parse(s: &str) -> Option<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    let up = t.to_ascii_uppercase();
    let bare = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        let off = parse_offset(rest)?;
        let n = NAMING_RTMIN + off;
        return (NAMING_RTMIN..=RTMAX).contains(&n).then_some(n);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        let off = parse_offset(rest)?;
        let n = RTMAX + off;
        return (NAMING_RTMIN..=RTMAX).contains(&n).then_some(n);
    }
    let full = format!("SIG{bare}");
    full.parse::<NixSignal>().ok().map(|s| s as i32)
}

fn parse_offset(rest: &str) -> Option<i32> {
    if rest.is_empty() {
        Some(0)
    } else {
        rest.parse::<i32>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parsing_round_trip() {
        for (s, n) in [
            ("TERM", 15),
            ("SIGINT", 2),
            ("sigusr2", 12),
            ("9", 9),
            ("RTMIN+3", 37),
            ("SIGRTMAX-1", 63),
            ("RTMIN", 34),
        ] {
            assert_eq!(parse(s), Some(n), "{s}");
        }
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(37), "SIGRTMIN+3");
        assert_eq!(parse(&name(37)), Some(37));
        for bad in ["", "NOPE", "0", "65", "RTMIN+40", "SIGRTMIN+x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
