//! PID-1 set-up: subreaper when not PID 1, cwd `/`, inherited fds closed on exec.
//!
//! Invariant: runs once, before the runtime starts and before the first spawn.

use std::path::PathBuf;

/// What `setup` found and did.
#[derive(Debug, Clone)]
pub struct Pid1 {
    pub is_pid1: bool,
    /// Whether orphans reach pmi (PID 1, or a subreaper).
    pub reaps_orphans: bool,
    /// The directory pmi was started in (apps resolve relative paths against it).
    pub start_dir: PathBuf,
}

/// Makes pmi a subreaper when it is not PID 1 and moves its own cwd to `/` (so it pins no mount);
/// signal state is `signals::prepare_process`, which must come first. `close_inherited` marks
/// every fd above 2 close-on-exec (apps-file
/// mode: apps get only 0–2); single-command mode passes inherited fds through, as tini does.
pub fn setup(close_inherited: bool) -> Pid1 {
    let start_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let is_pid1 = std::process::id() == 1;
    let mut reaps_orphans = is_pid1;
    if !is_pid1 {
        // SAFETY: plain prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        reaps_orphans = r == 0;
    }
    if close_inherited {
        mark_inherited_cloexec();
    }
    raise_nofile();
    let _ = std::env::set_current_dir("/");
    Pid1 {
        is_pid1,
        reaps_orphans,
        start_dir,
    }
}

/// The soft RLIMIT_NOFILE pmi started with; children get it back (see `spawn`), so that a
/// program using select() is not handed a limit above FD_SETSIZE.
static ORIGINAL_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// pmi holds two pipes per instance: raise its soft fd limit to the hard one.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            ORIGINAL_NOFILE.store(lim.rlim_cur, std::sync::atomic::Ordering::Relaxed);
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
    }
}

/// The soft fd limit to give children, when pmi raised its own.
pub fn original_nofile() -> Option<u64> {
    match ORIGINAL_NOFILE.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

fn mark_inherited_cloexec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on an fd number; a stale number (the read_dir fd) just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// The direct children of this process, from /proc (used to signal strays when pmi is a
/// subreaper and `kill(-1)` would reach the whole host).
pub fn children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}
