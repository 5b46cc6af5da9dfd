//! How many CPUs this process may really use: the number behind `instances: max`.
//!
//! Invariant: the answer is the smallest of the cgroup v2 `cpu.max` quota (rounded up, for the
//! process's own cgroup and every ancestor up to the mount point), the scheduler affinity mask and
//! the online CPUs, and never less than 1. pm2 counts `os.cpus()` only, which over-subscribes a
//! container limited to 2 CPUs on a 64-core host; this module is the fix.
//!
//! The file-reading part (`cpus_from`) takes its root directory as a parameter so tests can point
//! it at a temporary tree of fake cgroup files.

use std::path::{Path, PathBuf};

/// Where cgroup v2 is mounted in a container (and on every systemd host).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The CPUs this process may use, at least 1.
pub fn available_cpus() -> u32 {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cpus_from(Path::new(CGROUP_ROOT), &own, affinity_cpus(), online_cpus())
}

/// The pure part of [`available_cpus`]: `proc_self_cgroup` is the text of `/proc/self/cgroup`,
/// `affinity` and `online` the counts found elsewhere (0 = unknown).
pub fn cpus_from(cgroup_root: &Path, proc_self_cgroup: &str, affinity: u32, online: u32) -> u32 {
    let mut n = u32::MAX;
    for c in [affinity, online] {
        if c > 0 {
            n = n.min(c);
        }
    }
    if let Some(q) = quota_cpus(cgroup_root, proc_self_cgroup) {
        n = n.min(q);
    }
    if n == u32::MAX {
        1
    } else {
        n.max(1)
    }
}

/// The smallest `cpu.max` quota on the path from this process's cgroup up to the root, in whole
/// CPUs rounded up (a quota of 1.5 CPUs lets 2 workers make progress). `None` when no limit.
fn quota_cpus(cgroup_root: &Path, proc_self_cgroup: &str) -> Option<u32> {
    let mut best: Option<u32> = None;
    for dir in ancestors(cgroup_root, proc_self_cgroup) {
        let text = match std::fs::read_to_string(dir.join("cpu.max")) {
            Ok(t) => t,
            Err(_) => continue,
        };
        if let Some(q) = parse_cpu_max(&text) {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    }
    best
}

/// The cgroup directories to look at, leaf first. The v2 line of `/proc/self/cgroup` is
/// `0::/path`; with a private cgroup namespace (Docker's default) it is `0::/` and the leaf is the
/// mount point itself.
fn ancestors(cgroup_root: &Path, proc_self_cgroup: &str) -> Vec<PathBuf> {
    let rel = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .trim();
    let mut out = Vec::new();
    let mut cur = cgroup_root.to_path_buf();
    out.push(cur.clone());
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != "..") {
        cur.push(part);
        out.push(cur.clone());
    }
    out.reverse();
    out
}

/// `cpu.max` is `"<quota> <period>"` or `"max <period>"` (no limit).
fn parse_cpu_max(text: &str) -> Option<u32> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    if quota == "max" {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    let period: u64 = it.next().unwrap_or("100000").parse().ok()?;
    if period == 0 {
        return None;
    }
    let cpus = quota.div_ceil(period).max(1);
    Some(u32::try_from(cpus).unwrap_or(u32::MAX))
}

/// CPUs in this thread's affinity mask (0 if it cannot be read).
fn affinity_cpus() -> u32 {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count() as u32,
        Err(_) => 0,
    }
}

/// Online CPUs (0 if unknown).
fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        d
    }

    #[test]
    fn quota_rounds_up_and_caps() {
        let d = tree(&[("cpu.max", "150000 100000\n")]);
        assert_eq!(cpus_from(d.path(), "0::/\n", 8, 8), 2);
    }

    #[test]
    fn no_limit_uses_affinity_and_online() {
        let d = tree(&[("cpu.max", "max 100000\n")]);
        assert_eq!(cpus_from(d.path(), "0::/\n", 3, 8), 3);
        assert_eq!(cpus_from(d.path(), "0::/\n", 0, 6), 6);
    }

    #[test]
    fn nested_cgroup_and_parent_limit() {
        let d = tree(&[
            ("kubepods/cpu.max", "50000 100000"),
            ("kubepods/pod1/ctr/cpu.max", "max 100000"),
        ]);
        assert_eq!(cpus_from(d.path(), "0::/kubepods/pod1/ctr\n", 16, 16), 1);
        let d = tree(&[
            ("a/cpu.max", "400000 100000"),
            ("a/b/cpu.max", "300000 100000"),
        ]);
        assert_eq!(cpus_from(d.path(), "0::/a/b", 16, 16), 3);
    }

    #[test]
    fn never_below_one() {
        let d = tree(&[]);
        assert_eq!(cpus_from(d.path(), "", 0, 0), 1);
        let d = tree(&[("cpu.max", "1000 100000")]);
        assert_eq!(cpus_from(d.path(), "0::/", 4, 4), 1);
    }

    #[test]
    fn real_machine_has_a_cpu() {
        assert!(available_cpus() >= 1);
    }
}
