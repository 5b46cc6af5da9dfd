//! Spawning a child the way a PID 1 must: std's `Command` (never tokio's, whose waiting races the
//! reaper), its own process group, a clean signal mask and default dispositions, stdin from
//! /dev/null (apps) or inherited (single-command mode), only the fds pmi means to pass.
//!
//! Invariant: this module never waits for a child. The pid goes back to the caller, who registers
//! it before the reaper can run again (both run on the one supervisor thread).

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::exit;

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

/// Starts a child. The child leads its own process group.
pub fn spawn(req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    let Some(program) = req.argv.first() else {
        return Err(SpawnError {
            code: exit::NOT_FOUND,
            message: "empty command".into(),
        });
    };
    let program_name = program.to_string_lossy().into_owned();
    let mut cmd = Command::new(program);
    cmd.args(&req.argv[1..]);
    cmd.current_dir(req.cwd);
    cmd.env_clear();
    cmd.envs(req.env.iter().map(|(k, v)| (k, v)));
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
    let pmi_pid = std::process::id() as i32;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (setpgid, tcsetpgrp, sigaction, sigprocmask, setgroups, setgid, setuid, prctl, getppid);
    // it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            child_setup(foreground, uid, gid, &groups, nofile)?;
            // After setuid, which would clear it.
            super::pdeath::arm(pmi_pid)
        });
    }
    let mut child = cmd.spawn().map_err(|e| exec_error(&program_name, &e))?;
    let pid = child.id() as i32;
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
