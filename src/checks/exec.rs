//! Exec checks: spawned as the app (cwd, environment, user) through `os::spawn`, in a process
//! group of their own, output captured through pipes, never waited for here.
//!
//! Invariant: the pid is killed only while the reaper has not delivered its status (so it is
//! still this check's process group, never a reused pid); the status comes from the one reaper.
//! pmi's runtime is current-thread, so `Runner::on_reaped` and the timeout branch never interleave.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::{Outcome, Tail, OUTPUT_MAX, PIPE_GRACE, REAP_GRACE};
use crate::config::AppSpec;
use crate::os::reap::ExitStatus;
use crate::os::spawn::{self, SpawnError, SpawnRequest, Spawned, Streams};

/// Where and as whom an exec check runs: the app's own.
#[derive(Debug, Clone)]
pub struct ExecCtx {
    pub cwd: PathBuf,
    /// The complete environment (build it with `supervisor::env::instance_env`, as for the app).
    pub env: Vec<(OsString, OsString)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
}

impl ExecCtx {
    pub fn for_app(app: &AppSpec, env: Vec<(OsString, OsString)>) -> ExecCtx {
        ExecCtx {
            cwd: app.cwd.clone(),
            env,
            uid: app.uid,
            gid: app.gid,
            groups: app.groups.clone(),
        }
    }
}

pub(super) fn spawn(argv: &[String], ctx: &ExecCtx) -> Result<Spawned, SpawnError> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    spawn::spawn(&SpawnRequest {
        argv: &argv,
        cwd: &ctx.cwd,
        env: ctx.env.clone(),
        streams: Streams::Pipes,
        uid: ctx.uid,
        gid: ctx.gid,
        groups: &ctx.groups,
    })
}

/// SIGKILL to the check's whole process group.
pub(super) fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall; ESRCH (already gone) is fine.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Reads the output, waits for the status from the reaper, kills at the deadline.
pub(super) async fn finish(
    sp: Spawned,
    mut status_rx: oneshot::Receiver<ExitStatus>,
    started: Instant,
    deadline: Instant,
) -> Outcome {
    let pid = sp.pid;
    let mut tail = Tail::new(OUTPUT_MAX);
    let mut timed_out = false;
    let status = {
        let reading = read_both(&mut tail, sp.stdout, sp.stderr);
        tokio::pin!(reading);
        let mut read_done = false;
        let status = loop {
            tokio::select! {
                biased;
                s = &mut status_rx => break s.ok(),
                _ = &mut reading, if !read_done => read_done = true,
                _ = sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    kill_group(pid);
                }
                _ = sleep_until(deadline + REAP_GRACE), if timed_out => break None,
            }
        };
        // The pipes may still be open in a process the check left behind: it was just killed
        // (on_reaped), so EOF comes at once; the grace bounds a pipe passed further on.
        if !read_done {
            let _ = timeout_at(Instant::now() + PIPE_GRACE, &mut reading).await;
        }
        status
    };
    let took = started.elapsed();
    let output = tail.text();
    let ms = (deadline - started).as_millis();
    let (ok, summary) = match (timed_out, status) {
        (true, _) => (false, format!("timed out after {ms} ms (killed)")),
        (false, Some(s)) => (s.is_success(), s.to_string()),
        (false, None) => (false, "the exit status was lost".to_string()),
    };
    Outcome {
        ok,
        summary,
        output,
        took,
    }
}

/// Both pipes into one tail, until both reach EOF (or fail).
async fn read_both(tail: &mut Tail, out: Option<OwnedFd>, err: Option<OwnedFd>) {
    let mut out = out.and_then(receiver);
    let mut err = err.and_then(receiver);
    let mut b1 = [0u8; 1024];
    let mut b2 = [0u8; 1024];
    loop {
        tokio::select! {
            r = async { out.as_mut()?.read(&mut b1).await.ok() }, if out.is_some() => match r {
                Some(n) if n > 0 => tail.push(&b1[..n]),
                _ => out = None,
            },
            r = async { err.as_mut()?.read(&mut b2).await.ok() }, if err.is_some() => match r {
                Some(n) if n > 0 => tail.push(&b2[..n]),
                _ => err = None,
            },
            else => break,
        }
    }
}

fn receiver(fd: OwnedFd) -> Option<pipe::Receiver> {
    let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).ok()?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
    pipe::Receiver::from_owned_fd_unchecked(fd).ok()
}
