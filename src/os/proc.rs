//! Reading /proc: the memory and CPU time of an instance's whole process group.
//!
//! Invariant: read-only and best effort; a process that vanishes mid-read is simply skipped.

/// Fields of /proc/PID/stat that pmi uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// The state letter: `R`, `S`, `D`, `T` (stopped by a signal), `Z` ...
    pub state: char,
    pub pgrp: i32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// The processes of each of `pgids` and their command lines (`cmdline`, else `[comm]` for a
/// process without one), in pid order, from one pass over /proc (none for no groups): what a
/// stop names before a SIGKILL.
pub fn group_members(pgids: &[i32]) -> std::collections::HashMap<i32, Vec<(i32, String)>> {
    let mut out: std::collections::HashMap<i32, Vec<(i32, String)>> = Default::default();
    if pgids.is_empty() {
        return out;
    }
    for s in all_stats().iter().filter(|s| pgids.contains(&s.pgrp)) {
        out.entry(s.pgrp)
            .or_default()
            .push((s.pid, command_of(s.pid)));
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// A short, printable command line of `pid` (at most `CMD_SHOWN` characters).
pub fn command_of(pid: i32) -> String {
    const CMD_SHOWN: usize = 80;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut cmd: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if cmd.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        cmd = format!("[{}]", comm.trim_end());
    }
    let mut shown: String = cmd
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(CMD_SHOWN)
        .collect();
    if cmd.chars().count() > CMD_SHOWN {
        shown.push('…');
    }
    shown
}

/// Parses one /proc/PID/stat line (the command name may hold spaces and parentheses).
pub fn parse_stat(line: &str) -> Option<Stat> {
    let pid = line.split(' ').next()?.parse().ok()?;
    let rest = line.get(line.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) ... rss(21).
    Some(Stat {
        pid,
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        rss_pages: f.get(21)?.parse().ok()?,
    })
}

/// Every process's stat, for callers that aggregate by group.
pub fn all_stats() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s))
        .collect()
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Clock ticks per second (the unit of `Stat::cpu_ticks`).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU ticks and resident bytes of one process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupUsage {
    pub cpu_ticks: u64,
    pub rss_bytes: u64,
    /// The group's leader (the instance's own process) is stopped by a signal (SIGSTOP, SIGTSTP).
    pub leader_stopped: bool,
}

/// Usage of each of `pgids`, from one pass over /proc (groups with no process are absent).
pub fn group_usage(pgids: &[i32]) -> std::collections::HashMap<i32, GroupUsage> {
    let mut out = std::collections::HashMap::new();
    if pgids.is_empty() {
        return out;
    }
    let page = page_size();
    for s in all_stats().iter().filter(|s| pgids.contains(&s.pgrp)) {
        let u: &mut GroupUsage = out.entry(s.pgrp).or_default();
        u.cpu_ticks += s.cpu_ticks;
        u.rss_bytes += s.rss_pages * page;
        if s.pid == s.pgrp && s.state == 'T' {
            u.leader_stopped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "42 (my (odd) app) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000000 250 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.pid, s.state), (42, 'S'));
        assert_eq!(s.pgrp, 42);
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.rss_pages, 250);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x)").is_none());
    }

    #[test]
    fn own_group_lists_this_process_with_its_command() {
        // SAFETY: getpgrp has no preconditions.
        let g = unsafe { libc::getpgrp() };
        let me = std::process::id() as i32;
        let members = group_members(&[g, i32::MAX]);
        let mine = members[&g].iter().find(|(p, _)| *p == me).expect("listed");
        assert!(!mine.1.is_empty() && !mine.1.contains('\0'));
        assert!(!members.contains_key(&i32::MAX));
        assert!(group_members(&[]).is_empty());
    }

    #[test]
    fn own_group_has_memory() {
        // SAFETY: getpgrp has no preconditions.
        let g = unsafe { libc::getpgrp() };
        assert!(group_usage(&[g]).get(&g).is_some_and(|u| u.rss_bytes > 0));
        let u = group_usage(&[g]);
        assert!(u.get(&g).is_some_and(|u| u.rss_bytes > 0));
        assert!(group_usage(&[]).is_empty());
    }
}
