//! A helper process whose exit only its caller collects: `node` evaluating a `.js` apps file
//! while the supervisor runs (`pmi apply`) and reaps with `waitpid(-1)`.
//!
//! The child is made with `clone` and no exit signal, a "clone child" in wait(2)'s words:
//! `waitpid(-1, …)` without `__WCLONE` never returns it and no SIGCHLD is sent, so the one reaper
//! cannot take its status and the supervisor is not woken by it. An exec would make it an
//! ordinary child again (the kernel resets the exit signal), so this child never execs: it
//! forks the helper, waits for it, and exits with its status (128+N for a signal). Invariant:
//! the caller always collects the child with `__WCLONE`, also after a time-out (SIGKILL to the
//! group first); a killed helper is re-parented to pmi and reaped like any orphan.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::exit::ExitStatus;

/// What a helper printed, and how it ended.
#[derive(Debug)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

/// Why a helper gave no result.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot run {0}: {1}")]
    Spawn(String, io::Error),
    #[error("it did not finish within {} s", .0.as_secs())]
    Timeout(Duration),
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A started clone child and the read ends of its stdout and stderr.
struct Started {
    pid: i32,
    out: OwnedFd,
    err: OwnedFd,
}

/// Starts `program args…` in `cwd` with pmi's environment, stdin from /dev/null.
fn start(program: &Path, args: &[OsString], cwd: &Path) -> io::Result<Started> {
    // Everything the child needs is made before the clone: it may not allocate.
    let prog = cstr(program.as_os_str())?;
    let mut argv_c = vec![prog.clone()];
    for a in args {
        argv_c.push(cstr(a)?);
    }
    let env_c: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(&kv).ok()
        })
        .collect();
    let dir = cstr(cwd.as_os_str())?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (out_r, out_w) = nix::unistd::pipe2(flags)?;
    let (err_r, err_w) = nix::unistd::pipe2(flags)?;
    let null = std::fs::File::open("/dev/null")?;
    let fds = [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    // SAFETY: a fork-like clone (no CLONE_VM) with no exit signal. The child calls only
    // async-signal-safe functions on memory prepared above, then execs or _exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            0 as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    } as i32;
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; nothing here returns to Rust code of the parent's image.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // Its own group, so that a time-out kills whatever it started too.
            libc::setpgid(0, 0);
            let helper = libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            );
            if helper == 0 {
                for (i, fd) in fds.iter().enumerate() {
                    if libc::dup2(*fd, i as libc::c_int) < 0 {
                        libc::_exit(127);
                    }
                }
                if libc::chdir(dir.as_ptr()) != 0 {
                    libc::_exit(127);
                }
                libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
            if helper < 0 {
                libc::_exit(127);
            }
            let mut st: libc::c_int = 0;
            while libc::waitpid(helper as libc::pid_t, &mut st, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(127);
                }
            }
            if libc::WIFSIGNALED(st) {
                libc::_exit(128 + libc::WTERMSIG(st));
            }
            libc::_exit(libc::WEXITSTATUS(st));
        }
    }
    Ok(Started {
        pid,
        out: out_r,
        err: err_r,
    })
}

/// `waitpid` for this clone child only; `None` while it runs.
fn try_collect(pid: i32, block: bool) -> io::Result<Option<ExitStatus>> {
    let flags = libc::__WCLONE | if block { 0 } else { libc::WNOHANG };
    loop {
        let mut st: libc::c_int = 0;
        // SAFETY: plain syscall wrapper with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, flags) };
        if r == pid {
            if libc::WIFSIGNALED(st) {
                return Ok(Some(ExitStatus::Signal(libc::WTERMSIG(st))));
            }
            return Ok(Some(ExitStatus::Code(libc::WEXITSTATUS(st))));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes (the rest is read and dropped, so the
/// helper never blocks on a full pipe).
fn drain(fd: OwnedFd, cap: u64) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut f = std::fs::File::from(fd);
        let _ = f.by_ref().take(cap).read_to_end(&mut buf);
        let _ = io::copy(&mut f, &mut io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs a helper to its end, or kills it after `limit`, keeping at most `cap` bytes of each
/// output stream. Blocking: call it off the supervisor loop (the blocking pool).
pub fn run_captured(
    program: &Path,
    args: &[OsString],
    cwd: &Path,
    limit: Duration,
    cap: u64,
) -> Result<Captured, HelperError> {
    let shown = program.display().to_string();
    let s = start(program, args, cwd).map_err(|e| HelperError::Spawn(shown.clone(), e))?;
    // Threads drain both pipes, so that a chatty helper cannot block on a full pipe.
    let (out_t, err_t) = (drain(s.out, cap), drain(s.err, cap));
    let deadline = Instant::now() + limit;
    let status = loop {
        match try_collect(s.pid, false) {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => {
                // SAFETY: plain kill(2) of our own child's group (not yet collected, so
                // the pid cannot have been reused).
                unsafe { libc::kill(-s.pid, libc::SIGKILL) };
                let _ = try_collect(s.pid, true);
                // The drain threads end when the last holder of the pipes is gone; nobody
                // waits for them.
                drop((out_t, err_t));
                return Err(match other {
                    Err(e) => HelperError::Spawn(shown, e),
                    _ => HelperError::Timeout(limit),
                });
            }
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if status == ExitStatus::Code(127) && stdout.is_empty() && stderr.is_empty() {
        return Err(HelperError::Spawn(
            shown,
            io::Error::from(io::ErrorKind::NotFound),
        ));
    }
    Ok(Captured {
        stdout,
        stderr,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    #[test]
    fn output_and_status_are_captured() {
        let c = run_captured(
            Path::new("/bin/sh"),
            &sh("echo out; echo err >&2; pwd; exit 3"),
            Path::new("/tmp"),
            Duration::from_secs(10),
            1 << 20,
        )
        .unwrap();
        assert_eq!(c.status, ExitStatus::Code(3));
        assert_eq!(c.stdout, "out\n/tmp\n");
        assert_eq!(c.stderr, "err\n");
    }

    #[test]
    fn the_global_reaper_cannot_see_it() {
        let s = start(Path::new("/bin/sh"), &sh("sleep 0.2"), Path::new("/")).unwrap();
        // What the reaper does (waitpid without __WCLONE), aimed at this very pid: not a
        // child it may wait for.
        let mut st = 0;
        // SAFETY: plain syscall wrapper with a valid out-pointer.
        let r = unsafe { libc::waitpid(s.pid, &mut st, libc::WNOHANG) };
        assert_eq!(r, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ECHILD)
        );
        assert_eq!(try_collect(s.pid, true).unwrap(), Some(ExitStatus::Code(0)));
    }

    #[test]
    fn a_helper_that_never_ends_is_killed_and_collected() {
        let t = Instant::now();
        let e = run_captured(
            Path::new("/bin/sh"),
            &sh("sleep 30"),
            Path::new("/"),
            Duration::from_millis(200),
            1 << 20,
        )
        .unwrap_err();
        assert!(matches!(e, HelperError::Timeout(_)), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
