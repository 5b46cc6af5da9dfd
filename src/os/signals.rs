//! Signal names, parsing, and the decision for each of the 64 signals: handle, or ignore.
//!
//! Invariant: every signal a user or the kernel can send pmi is either registered with a handler
//! before the first spawn (and then forwarded or acted on) or set to SIG_IGN, so that pmi neither
//! drops one silently as PID 1 nor dies of one when it is not PID 1. The fault signals (SEGV, BUS,
//! ILL, FPE, ABRT, TRAP) keep their default: they mean pmi itself is broken.

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

/// Signals pmi registers a handler for (and so receives). Which of them are forwarded and which
/// act on pmi is the caller's choice; `ignored()` covers the rest.
pub fn handled() -> Vec<i32> {
    let mut v = vec![
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
        libc::SIGALRM,
        libc::SIGCONT,
        libc::SIGPWR,
        libc::SIGURG,
        libc::SIGTSTP,
    ];
    v.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    v
}

/// Signals set to SIG_IGN in pmi: their default would kill or stop pmi, and they carry no
/// request. The child gets them back at SIG_DFL (see `spawn`). TTIN/TTOU are ignored rather than
/// caught: a caught TTOU makes a background write to a TOSTOP terminal restart forever.
pub fn ignored() -> [i32; 10] {
    [
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGPIPE,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGSTKFLT,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGSYS,
    ]
}

/// Sets SIG_IGN for `ignored()` and unblocks every signal pmi may have inherited blocked (a
/// launcher's mask would otherwise keep TERM from reaching pmi's handler).
pub fn prepare_process() {
    for s in ignored() {
        // SAFETY: setting SIG_IGN installs no handler code; it cannot race with Rust code.
        unsafe {
            libc::signal(s, libc::SIG_IGN);
        }
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

/// Sends `sig` to the process group `pgid`. A group that is gone is not an error.
pub fn kill_group(pgid: i32, sig: i32) -> bool {
    // -0 is pmi's own group and -1 is every process: never a target here.
    if pgid <= 1 {
        return false;
    }
    // SAFETY: plain syscall wrapper.
    let r = unsafe { libc::kill(-pgid, sig) };
    r == 0
}

/// Sends `sig` to one process. A process that is gone is not an error.
pub fn kill_pid(pid: i32, sig: i32) -> bool {
    // SAFETY: plain syscall wrapper.
    let r = unsafe { libc::kill(pid, sig) };
    r == 0
}

/// Whether the process group `pgid` still has a member.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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

    #[test]
    fn handled_and_ignored_are_disjoint() {
        let h = handled();
        for i in ignored() {
            assert!(!h.contains(&i));
        }
    }
}
