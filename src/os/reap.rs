//! The one reaper. `reap_all` collects every exited child, known or not, until none is left.
//!
//! Invariant: nothing else in pmi waits for a child (no `Child::wait`, `status()`, `output()`,
//! no tokio::process), so no exit status is ever stolen. SIGCHLD coalesces: one notification can
//! stand for many exits, so the loop runs to exhaustion and never trusts `si_pid`.

pub use crate::exit::ExitStatus;

/// What `reap_all` found.
#[derive(Debug, Default)]
pub struct Reaped {
    pub exits: Vec<(i32, ExitStatus)>,
    /// No child is left at all (ECHILD).
    pub no_children: bool,
}

/// Reaps every child that has exited, without blocking.
pub fn reap_all() -> Reaped {
    let mut out = Reaped::default();
    loop {
        let mut status: libc::c_int = 0;
        // libc directly: nix cannot represent a death by a real-time signal and would lose the
        // status of a child that has already been reaped.
        // SAFETY: plain syscall wrapper with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            if libc::WIFEXITED(status) {
                out.exits
                    .push((pid, ExitStatus::Code(libc::WEXITSTATUS(status))));
            } else if libc::WIFSIGNALED(status) {
                out.exits
                    .push((pid, ExitStatus::Signal(libc::WTERMSIG(status))));
            }
            // Stops and continues are not exits (pmi does not ask for them).
            continue;
        }
        if pid == 0 {
            break;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => {
                out.no_children = true;
                break;
            }
            _ => break,
        }
    }
    out
}
