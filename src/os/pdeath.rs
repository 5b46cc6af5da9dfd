//! What happens to the apps when a pmi that is not PID 1 dies without stopping them (SIGKILL,
//! an OOM kill): each app's own process gets SIGKILL from the kernel, as pm2's daemon takes its
//! children with it, instead of running on unsupervised.
//!
//! Invariant: armed in the child between fork and exec, after any change of credentials (a
//! uid/gid change clears the setting), and only when pmi is not PID 1 (PID 1's death ends the
//! namespace anyway). The kernel sends the signal when the *thread* that forked exits: pmi spawns
//! only from the thread that runs its current-thread runtime (`os::runtime`), which lives as long
//! as the process.

use std::io;

/// Arms the parent-death signal in a freshly forked child of `pmi_pid`. Async-signal-safe.
/// An error (pmi died before the signal was armed) makes the spawn fail: the app never runs
/// without a supervisor.
pub fn arm(pmi_pid: i32) -> io::Result<()> {
    if pmi_pid == 1 {
        return Ok(());
    }
    // SAFETY: prctl and getppid are async-signal-safe and take plain values.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // pmi may have died between fork and prctl: then the child was already re-parented
        // and no signal will ever come.
        if libc::getppid() != pmi_pid {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}
