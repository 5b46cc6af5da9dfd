//! Single-command mode (`pmi -- CMD ARGS`): tini's contract.
//!
//! The command inherits pmi's stdio and every fd pmi was given, leads its own process group (the
//! terminal's foreground group when there is a terminal), and receives every forwardable signal
//! as pmi receives it. pmi exits with the command's code (128+N for a signal) once the command's
//! leftovers have been signalled and reaped. Invariant: pmi never escalates against the command
//! itself unless `--kill-timeout` is given; a bug (a panic) still stops every process pmi started
//! before it exits 70.

use std::ffi::OsString;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::cli::SupervisorOpts;
use crate::config::DEFAULT_KILL_TIMEOUT;
use crate::exit::Failure;
use crate::os::reap::{reap_all, ExitStatus};
use crate::os::signals;
use crate::os::spawn::{spawn, SpawnRequest, Streams};
use crate::os::{pid1, strays};
use crate::term::err_line;

pub fn run(command: Vec<OsString>, opts: &SupervisorOpts) -> Result<i32, Failure> {
    let stray_signal = opts.kill_signal.unwrap_or(libc::SIGTERM);
    let kill_timeout = opts.kill_timeout.map(Duration::from_millis);
    // Before any thread exists: the mask is inherited by every thread the runtime starts.
    signals::prepare_process();
    let p1 = pid1::setup(false);
    let rt = crate::os::runtime()
        .map_err(|e| Failure::Internal(format!("pmi: cannot start the runtime: {e}")))?;
    let is_pid1 = p1.is_pid1;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(supervise(command, p1, stray_signal, kill_timeout))
    }));
    match result {
        Ok(r) => r,
        Err(_) => {
            err_line("pmi: internal error: stopping every process before exiting");
            strays::emergency_stop(is_pid1, kill_timeout.unwrap_or(DEFAULT_KILL_TIMEOUT));
            Err(Failure::Internal(String::new()))
        }
    }
}

async fn supervise(
    command: Vec<OsString>,
    p1: pid1::Pid1,
    stray_signal: i32,
    kill_timeout: Option<Duration>,
) -> Result<i32, Failure> {
    // Handlers first: a signal that arrives before them is lost as PID 1, fatal otherwise.
    let mut sigs = signals::Signals::open()
        .map_err(|e| Failure::Internal(format!("pmi: cannot register signal handlers: {e}")))?;
    if !p1.reaps_orphans {
        err_line(
            "pmi: warning: not PID 1 and could not become a subreaper: orphans will not be reaped",
        );
    }
    let req = SpawnRequest {
        argv: &command,
        cwd: &p1.start_dir,
        env: std::env::vars_os().collect(),
        streams: Streams::Inherit,
        uid: None,
        gid: None,
        groups: &[],
    };
    let child = match spawn(&req) {
        Ok(c) => c.pid,
        Err(e) => {
            // The command's own exit code (126/127), as a shell would give it.
            err_line(&format!("pmi: {e}"));
            return Ok(e.code);
        }
    };
    let mut status: Option<ExitStatus> = None;
    let mut kill_at: Option<Instant> = None;
    while status.is_none() {
        tokio::select! {
            s = sigs.next() => {
                let Some(sig) = s else { break };
                match sig {
                    libc::SIGCHLD => {
                        status = reap_all().exits.into_iter().find(|(p, _)| *p == child).map(|(_, s)| s);
                    }
                    _ => {
                        signals::kill_pid(child, sig);
                        let stopping = sig == libc::SIGTERM || sig == libc::SIGINT;
                        if let (true, Some(t), None) = (stopping, kill_timeout, kill_at) {
                            kill_at = Some(Instant::now() + t);
                        }
                    }
                }
            }
            _ = async { if let Some(t) = kill_at { sleep_until(t).await } }, if kill_at.is_some() => {
                err_line("pmi: the command did not exit within --kill-timeout after the stop signal: sending SIGKILL");
                signals::kill_pid(child, libc::SIGKILL);
                kill_at = None;
            }
        }
    }
    let grace = kill_timeout.unwrap_or(DEFAULT_KILL_TIMEOUT);
    strays::terminate(
        &mut sigs,
        stray_signal,
        grace,
        p1.is_pid1,
        &[child],
        |_, _| {},
    )
    .await;
    match status {
        Some(s) => Ok(s.shell_code() & 0xff),
        None => Err(Failure::Internal(String::new())),
    }
}
