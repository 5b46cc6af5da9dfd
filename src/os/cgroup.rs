//! How many CPUs this process may really use: the number behind `instances: max`.
//!
//! Invariant: the answer is the smallest of the cgroup CPU quota (v2 `cpu.max`, or v1
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us`; rounded up; for the process's own cgroup and every
//! ancestor up to the mount point), the scheduler affinity mask and the online CPUs, and never
//! less than 1; it comes with the reason, for `pmi check`. pm2 counts `os.cpus()` only, which
//! over-subscribes a container limited to 2 CPUs on a 64-core host; this module is the fix.
//!
//! The file-reading part (`count_from`) takes its root directory as a parameter so tests can
//! point it at a temporary tree of fake cgroup files.

use std::path::{Path, PathBuf};

/// Where cgroups are mounted in a container (and on every systemd host).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A CPU count and how it was found ("cgroup quota 1.5 CPUs (cpu.max), rounded up").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuCount {
    pub cpus: u32,
    pub why: String,
}

/// The CPUs this process may use, at least 1.
pub fn available_cpus() -> u32 {
    cpu_count().cpus
}

/// [`available_cpus`] with its reason.
pub fn cpu_count() -> CpuCount {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    count_from(Path::new(CGROUP_ROOT), &own, affinity_cpus(), online_cpus())
}

/// The count alone of [`count_from`].
pub fn cpus_from(cgroup_root: &Path, proc_self_cgroup: &str, affinity: u32, online: u32) -> u32 {
    count_from(cgroup_root, proc_self_cgroup, affinity, online).cpus
}

/// The pure part of [`cpu_count`]: `proc_self_cgroup` is the text of `/proc/self/cgroup`,
/// `affinity` and `online` the counts found elsewhere (0 = unknown).
pub fn count_from(
    cgroup_root: &Path,
    proc_self_cgroup: &str,
    affinity: u32,
    online: u32,
) -> CpuCount {
    let mut best: Option<CpuCount> = None;
    let mut consider = |c: CpuCount| {
        if best.as_ref().is_none_or(|b| c.cpus < b.cpus) {
            best = Some(c);
        }
    };
    // First, so that a tie names the quota (the limit the user set).
    if let Some(q) = quota(cgroup_root, proc_self_cgroup) {
        consider(q);
    }
    if affinity > 0 {
        consider(CpuCount {
            cpus: affinity,
            why: format!("CPU affinity mask allows {affinity}"),
        });
    }
    if online > 0 {
        consider(CpuCount {
            cpus: online,
            why: format!("{online} CPUs online"),
        });
    }
    match best {
        Some(mut c) if c.cpus == 0 => {
            c.cpus = 1;
            c
        }
        Some(c) => c,
        None => CpuCount {
            cpus: 1,
            why: "no CPU count found; using 1".into(),
        },
    }
}

/// The smallest quota on the path from this process's cgroup up to the root, v2 and v1, in
/// whole CPUs rounded up (a quota of 1.5 CPUs lets 2 workers make progress). `None`: no limit.
fn quota(cgroup_root: &Path, proc_self_cgroup: &str) -> Option<CpuCount> {
    let mut best: Option<CpuCount> = None;
    let v2 = ancestors(cgroup_root, v2_path(proc_self_cgroup))
        .into_iter()
        .filter_map(|d| parse_cpu_max(&std::fs::read_to_string(d.join("cpu.max")).ok()?))
        .map(|(q, p)| (q, p, "cpu.max"));
    let v1 = v1_dirs(cgroup_root, proc_self_cgroup)
        .into_iter()
        .filter_map(|d| {
            let q = std::fs::read_to_string(d.join("cpu.cfs_quota_us")).ok()?;
            let p = std::fs::read_to_string(d.join("cpu.cfs_period_us")).ok()?;
            parse_cfs(&q, &p)
        })
        .map(|(q, p)| (q, p, "cpu.cfs_quota_us"));
    for (q, p, file) in v2.chain(v1) {
        let cpus = u32::try_from(q.div_ceil(p).max(1)).unwrap_or(u32::MAX);
        if best.as_ref().is_none_or(|b| cpus < b.cpus) {
            let exact = q % p == 0;
            let amount = format!("{:.2}", q as f64 / p as f64);
            let amount = amount.trim_end_matches('0').trim_end_matches('.');
            let unit = if amount == "1" { "CPU" } else { "CPUs" };
            let why = if exact {
                format!("cgroup quota {amount} {unit} ({file})")
            } else {
                format!("cgroup quota {amount} {unit} ({file}), rounded up")
            };
            best = Some(CpuCount { cpus, why });
        }
    }
    best
}

/// The v2 line of `/proc/self/cgroup` is `0::/path`; with a private cgroup namespace (Docker's
/// default on v2) it is `0::/`.
fn v2_path(proc_self_cgroup: &str) -> &str {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .trim()
}

/// The v1 `cpu` controller's directories, leaf first. Its line is `N:cpu,cpuacct:/path`; the
/// mount is `cpu,cpuacct` (or `cpu`, a symlink on most hosts). Docker on v1 mounts the
/// container's own cgroup at the mount point while the line still names `/docker/<id>`, so the
/// mount point itself is always looked at too.
fn v1_dirs(cgroup_root: &Path, proc_self_cgroup: &str) -> Vec<PathBuf> {
    let Some((controllers, path)) = proc_self_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, c, p) = (it.next()?, it.next()?, it.next()?);
        c.split(',').any(|x| x == "cpu").then_some((c, p.trim()))
    }) else {
        return Vec::new();
    };
    let mount = [controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu"]
        .iter()
        .map(|m| cgroup_root.join(m))
        .find(|d| d.is_dir());
    match mount {
        Some(m) => ancestors(&m, path),
        None => Vec::new(),
    }
}

/// `root` and the directories of `rel` below it, leaf first.
fn ancestors(root: &Path, rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = root.to_path_buf();
    out.push(cur.clone());
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != "..") {
        cur.push(part);
        out.push(cur.clone());
    }
    out.reverse();
    out
}

/// `cpu.max` is `"<quota> <period>"` or `"max <period>"` (no limit): (quota, period) in µs.
fn parse_cpu_max(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    if quota == "max" {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    let period: u64 = it.next().unwrap_or("100000").parse().ok()?;
    (period > 0 && quota > 0).then_some((quota, period))
}

/// v1: `cpu.cfs_quota_us` is `-1` (no limit) or µs per period.
fn parse_cfs(quota: &str, period: &str) -> Option<(u64, u64)> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok()?;
    let quota = u64::try_from(quota).ok()?;
    (period > 0 && quota > 0).then_some((quota, period))
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
    fn v1_quota_at_the_mount_point() {
        // Docker on cgroup v1, `--cpus 1`: the line names the host path, the mount is the
        // container's own cgroup.
        let own = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n";
        let d = tree(&[
            ("cpu,cpuacct/cpu.cfs_quota_us", "100000\n"),
            ("cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        let c = count_from(d.path(), own, 8, 8);
        assert_eq!(c.cpus, 1);
        assert_eq!(c.why, "cgroup quota 1 CPU (cpu.cfs_quota_us)");
    }

    #[test]
    fn v1_fraction_rounds_up_and_nested_path() {
        let own = "3:cpu:/kubepods/pod1\n";
        let d = tree(&[
            ("cpu/kubepods/cpu.cfs_quota_us", "-1"),
            ("cpu/kubepods/cpu.cfs_period_us", "100000"),
            ("cpu/kubepods/pod1/cpu.cfs_quota_us", "150000"),
            ("cpu/kubepods/pod1/cpu.cfs_period_us", "100000"),
        ]);
        let c = count_from(d.path(), own, 8, 8);
        assert_eq!(c.cpus, 2);
        assert_eq!(
            c.why,
            "cgroup quota 1.5 CPUs (cpu.cfs_quota_us), rounded up"
        );
    }

    #[test]
    fn v1_unlimited_falls_back_to_affinity() {
        let own = "2:cpuacct,cpu:/\n";
        let d = tree(&[
            ("cpuacct,cpu/cpu.cfs_quota_us", "-1"),
            ("cpuacct,cpu/cpu.cfs_period_us", "100000"),
        ]);
        let c = count_from(d.path(), own, 3, 8);
        assert_eq!((c.cpus, c.why.as_str()), (3, "CPU affinity mask allows 3"));
    }

    #[test]
    fn v2_reason_is_given() {
        let d = tree(&[("cpu.max", "150000 100000\n")]);
        let c = count_from(d.path(), "0::/\n", 8, 8);
        assert_eq!(c.why, "cgroup quota 1.5 CPUs (cpu.max), rounded up");
    }

    #[test]
    fn real_machine_has_a_cpu() {
        assert!(available_cpus() >= 1);
    }
}
