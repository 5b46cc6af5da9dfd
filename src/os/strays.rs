//! The last step before pmi exits: every process still alive gets a signal, then SIGKILL after a
//! grace period, and everything is reaped, because the kernel SIGKILLs the whole namespace the
//! moment PID 1 exits and nobody would get a graceful stop.
//!
//! Invariant: returns only once pmi has no child left, or after the SIGKILL phase has had a
//! bounded time to finish (a process stuck in the kernel must not hang pmi forever).

use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use super::pid1;
use super::reap::{reap_all, ExitStatus};
use super::signals::{kill_group, kill_pid, Signals};

/// How long pmi waits for SIGKILLed processes to be reaped before it exits anyway.
const AFTER_KILL: Duration = Duration::from_secs(5);
/// The same after a bug: shorter, since nothing can be trusted any more.
const EMERGENCY_AFTER_KILL: Duration = Duration::from_secs(2);

/// Signals every remaining process (`sig`, then SIGKILL after `grace`) and reaps it. As PID 1
/// that is `kill(-1)`, the whole namespace; as a subreaper only pmi's children and `groups`
/// (so a developer's machine is never hit). `on_exit` sees every status reaped here.
pub async fn terminate(
    signals: &mut Signals,
    sig: i32,
    grace: Duration,
    is_pid1: bool,
    groups: &[i32],
    mut on_exit: impl FnMut(i32, ExitStatus),
) {
    let reap = |on_exit: &mut dyn FnMut(i32, ExitStatus)| {
        let r = reap_all();
        for (pid, st) in r.exits {
            on_exit(pid, st);
        }
        r.no_children
    };
    if reap(&mut on_exit) {
        return;
    }
    send_all(sig, is_pid1, groups);
    for (phase_deadline, next_sig) in [
        (Instant::now() + grace, Some(libc::SIGKILL)),
        (Instant::now() + grace + AFTER_KILL, None),
    ] {
        loop {
            tokio::select! {
                s = signals.next() => {
                    if s.is_none() {
                        break;
                    }
                    // Only SIGCHLD matters now; other signals are dropped during the last step.
                    if reap(&mut on_exit) {
                        return;
                    }
                }
                _ = sleep_until(phase_deadline) => break,
            }
        }
        if reap(&mut on_exit) {
            return;
        }
        match next_sig {
            Some(k) => send_all(k, is_pid1, groups),
            None => break,
        }
    }
}

/// Last resort after a bug, with no runtime left: TERM everything, wait up to `grace`, KILL,
/// reap (bounded by `EMERGENCY_AFTER_KILL`).
pub fn emergency_stop(is_pid1: bool, grace: Duration) {
    let reaped_all = || reap_all().no_children;
    send_all(libc::SIGTERM, is_pid1, &[]);
    let until = std::time::Instant::now() + grace;
    while std::time::Instant::now() < until {
        if reaped_all() {
            return;
        }
        // No runtime is left to wait on: a short poll is the only option here.
        std::thread::sleep(Duration::from_millis(20));
    }
    send_all(libc::SIGKILL, is_pid1, &[]);
    let until = std::time::Instant::now() + EMERGENCY_AFTER_KILL;
    while !reaped_all() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_all(sig: i32, is_pid1: bool, groups: &[i32]) {
    if is_pid1 {
        // Every process of the namespace but pmi itself.
        kill_pid(-1, sig);
        return;
    }
    for g in groups {
        kill_group(*g, sig);
    }
    for c in pid1::children() {
        kill_pid(c, sig);
    }
}
