//! The decision for each of the 64 signals: receive, or ignore (names and parsing: `signame`).
//!
//! Invariant: every signal a user or the kernel can send pmi is either blocked in every thread and
//! read from a signalfd (then forwarded or acted on), or set to SIG_IGN, before the first thread
//! and the first spawn; so pmi neither drops one silently as PID 1 (the kernel queues a blocked
//! signal even for PID 1) nor dies of one when it is not PID 1. The fault signals (SEGV, BUS, ILL,
//! FPE, ABRT, TRAP) keep their default: they mean pmi itself is broken. Children get an empty mask
//! and default dispositions back (see `spawn`).
//!
//! Why signalfd and not handlers (signal-hook): no code runs in signal context, one read drains a
//! burst (2000 coalesced SIGCHLDs cost one wake-up, not 2000 handler writes), and start-up does
//! not pay for registering 45 handlers one by one (measured: ~150 mmap/munmap calls).

pub use crate::signame::{name, parse};

/// Signals pmi receives (through the signalfd). Which are forwarded and which act on pmi is the
/// caller's choice; `ignored()` covers the rest.
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

/// Sets SIG_IGN for `ignored()` and makes the mask exactly `handled()`: a launcher's blocked
/// signals are unblocked, pmi's own are blocked for the signalfd. Must run before pmi starts any
/// thread (threads inherit the mask) and before the first spawn.
pub fn prepare_process() {
    for s in ignored() {
        // SAFETY: setting SIG_IGN installs no handler code; it cannot race with Rust code.
        unsafe {
            libc::signal(s, libc::SIG_IGN);
        }
    }
    // SAFETY: sigset functions on a local set; sigprocmask on the calling (only) thread.
    unsafe {
        let set = handled_set();
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in handled() {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// The stream of signals pmi receives, read from a signalfd on the runtime's reactor.
pub struct Signals {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Signals {
    /// Opens the signalfd for `handled()`. `prepare_process` must have blocked them.
    pub fn open() -> std::io::Result<Signals> {
        use std::os::fd::FromRawFd;
        let set = handled_set();
        // SAFETY: a new fd from a valid set; ownership moves into OwnedFd at once.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd stays open, and the same fd, for as long as the AsyncFd owns it.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Signals { fd })
    }

    /// The next signal; `None` only if the signalfd itself fails.
    pub async fn next(&mut self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        loop {
            let mut guard = self.fd.readable().await.ok()?;
            // SAFETY: an all-zero signalfd_siginfo is a valid value (plain integers).
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads at most `size` bytes into a plain struct the kernel fills.
            let n = unsafe {
                libc::read(
                    guard.get_inner().as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if n == size as isize {
                return Some(info.ssi_signo as i32);
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => guard.clear_ready(),
                Some(libc::EINTR) => {}
                _ => return None,
            }
        }
    }
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
    fn handled_and_ignored_are_disjoint() {
        let h = handled();
        for i in ignored() {
            assert!(!h.contains(&i));
        }
    }
}
