//! Spawning a child the way a PID 1 must: std's `Command` (never tokio's, whose waiting races the
//! reaper), its own process group, a clean signal mask and default dispositions, stdin from
//! /dev/null (apps) or inherited (single-command mode), only the fds pmi means to pass.
//!
//! Invariant: this module never waits for a child. The pid goes back to the caller, who registers
//! it before the reaper can run again (both run on the one supervisor thread).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::exit;

#[path = "spawn_exec.rs"]
mod exec;

/// Where the child's standard streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    /// stdin from /dev/null, stdout and stderr to new pipes read by pmi (apps-file mode).
    Pipes,
    /// Inherit pmi's stdin/stdout/stderr, and make the child the terminal's foreground group when
    /// there is a terminal (single-command mode).
    Inherit,
}

/// Everything needed to start one process.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    pub argv: &'a [OsString],
    pub cwd: &'a Path,
    /// The complete environment of the child (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    pub streams: Streams,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: &'a [u32],
}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Why a child could not be started, as the shell's exit code (126/127) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpawnError {
    pub code: i32,
    pub message: String,
}

/// What a child gets beyond its standard streams: extra fds and socket activation.
#[derive(Debug, Default)]
pub struct Pass<'a> {
    /// Placed at exactly 3, 4, … in this order (the `listen` sockets first, then a Node app's
    /// IPC channel and preload), without close-on-exec. pmi's own copies stay close-on-exec, so
    /// no other child ever sees them.
    pub fds: &'a [BorrowedFd<'a>],
    /// Set `LISTEN_PID` to the child's own pid (systemd's rule: the variable names the process
    /// the sockets are for, so a grandchild that inherits the environment leaves them alone).
    pub listen_pid: bool,
    /// Set `WATCHDOG_PID` to the child's own pid, the same way (sd_notify's watchdog).
    pub watchdog_pid: bool,
}

/// Most fds one spawn may pass (64 `listen` sockets, the IPC channel, the preload, and spare).
pub const MAX_PASS: usize = 72;

/// Starts a child. The child leads its own process group.
pub fn spawn(req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    spawn_with(req, &Pass::default())
}

/// `spawn`, with extra fds at 3, 4, … and `LISTEN_PID` set in the child.
///
/// How: std's `Command` forks, sets up the standard streams, the directory and the process
/// group; then our `pre_exec` hook does the rest and calls `execvp` itself, so that nothing of
/// std runs after the fds are moved. That matters twice. (1) `LISTEN_PID` must be the child's pid,
/// known only after fork: the whole environment is built here, before fork, into buffers this
/// call owns, with a fixed-size hole for the digits; the child writes `getpid()` into the hole
/// and points `environ` at the array (plain stores: async-signal-safe, no allocation), and
/// `execvp` runs with it (PATH is looked up in the child's environment, as std does). (2) Moving
/// fds onto 3, 4, … may overwrite the pipe std uses to report exec errors (its number is not
/// ours to know), so exec failures come back through our own close-on-exec pipe, first moved
/// above the targets.
pub fn spawn_with(req: &SpawnRequest<'_>, pass: &Pass<'_>) -> Result<Spawned, SpawnError> {
    let Some(program) = req.argv.first() else {
        return Err(SpawnError {
            code: exit::NOT_FOUND,
            message: "empty command".into(),
        });
    };
    let program_name = program.to_string_lossy().into_owned();
    if pass.fds.len() > MAX_PASS {
        return Err(SpawnError {
            code: exit::NOT_EXECUTABLE,
            message: format!("{program_name}: more than {MAX_PASS} fds to pass"),
        });
    }
    let pid_vars: Vec<&str> = [
        (pass.listen_pid, "LISTEN_PID"),
        (pass.watchdog_pid, "WATCHDOG_PID"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let image = exec::Image::new(req.argv, &req.env, &pid_vars).map_err(|e| SpawnError {
        code: exit::NOT_EXECUTABLE,
        message: format!("{program_name}: {e}"),
    })?;
    let (err_read, err_write) = exec::cloexec_pipe().map_err(|e| exec_error(&program_name, &e))?;
    let mut cmd = Command::new(program);
    cmd.current_dir(req.cwd);
    match req.streams {
        Streams::Pipes => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        Streams::Inherit => {
            cmd.stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
        }
    }
    let foreground = req.streams == Streams::Inherit;
    let uid = req.uid;
    let gid = req.gid;
    // Copied into the closure: the child may not allocate.
    let groups: Vec<libc::gid_t> = req.groups.to_vec();
    let nofile = super::pid1::original_nofile();
    let mut fds = [-1; MAX_PASS];
    for (d, s) in fds.iter_mut().zip(pass.fds) {
        *d = s.as_raw_fd();
    }
    let nfds = pass.fds.len();
    let err_fd = err_write.as_raw_fd();
    let mut image = image;
    let pmi_pid = std::process::id() as i32;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (setpgid, tcsetpgrp, sigaction, sigprocmask, setgroups, setgid, setuid, prctl, getppid,
    // fcntl, dup2, getpid, write, execvp, _exit); it allocates nothing: `image` was built before
    // fork.
    unsafe {
        cmd.pre_exec(move || {
            child_setup(foreground, uid, gid, &groups, nofile)?;
            // After setuid, which would clear it.
            super::pdeath::arm(pmi_pid)?;
            exec::place_and_exec(&mut image, &fds[..nfds], err_fd)
        });
    }
    let spawned = cmd.spawn();
    drop(err_write);
    let mut child = spawned.map_err(|e| exec_error(&program_name, &e))?;
    let pid = child.id() as i32;
    if let Some(errno) = exec::read_errno(err_read) {
        // The child wrote why execvp failed and _exited: collect it here, it was never ours to
        // register.
        // SAFETY: waiting for our own child by pid.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Err(exec_error(
            &program_name,
            &io::Error::from_raw_os_error(errno),
        ));
    }
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // Dropping `Child` neither waits nor kills: the reaper owns the exit status.
    drop(child);
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// The fds above 2 this process holds without close-on-exec. Every child inherits them (std
/// closes nothing), so apps-file mode can close-on-exec them at start to keep SPEC §3's "only
/// fds 0–2 plus `listen` sockets"; tests use it to tell pmi's leaks from their launcher's.
pub fn inheritable_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &i32| {
            // SAFETY: F_GETFD only reads the flags of a descriptor number.
            fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// Maps an exec failure to the shell's codes: 127 not found, 126 found but not executable.
fn exec_error(program: &str, e: &io::Error) -> SpawnError {
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => exit::NOT_FOUND,
        _ => exit::NOT_EXECUTABLE,
    };
    let what = if code == exit::NOT_FOUND {
        "not found (check the path, or that it is on PATH)"
    } else {
        "cannot be executed (check its permissions and interpreter)"
    };
    SpawnError {
        code,
        message: format!("{program}: {what}: {e}"),
    }
}

/// The kernel's `struct sigaction` on x86_64 (not libc's, which differs in layout).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Runs in the child between fork and exec. Async-signal-safe calls only.
fn child_setup(
    foreground: bool,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: &[libc::gid_t],
    nofile: Option<u64>,
) -> io::Result<()> {
    // SAFETY: every call below is an async-signal-safe libc function on plain values.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if foreground && libc::isatty(0) == 1 {
            // TTOU is blocked here, so a background group may take the terminal. ENOTTY and
            // friends are fine: there is simply no terminal to hand over.
            libc::tcsetpgrp(0, libc::getpid());
        }
        // Handlers are reset by exec, but SIG_IGN is inherited: put every signal back to default.
        // The raw syscall, because libc's wrapper refuses the signals it reserves (32–34 in
        // musl), and a launcher's SIG_IGN on those would otherwise reach the app.
        let dfl = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8 as libc::c_long,
            );
        }
        if let Some(g) = gid {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setgid(g) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(u) = uid {
            if gid.is_none() && libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(u) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(n) = nofile {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = n;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    Ok(())
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
