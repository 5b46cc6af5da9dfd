//! Check runners: `http`, `tcp` and `exec` probes that never block the supervisor.
//!
//! Invariant: every check is a task with a deadline; its one result arrives on the `Runner`'s
//! channel (the supervisor selects on `Runner::next`). An exec check never waits for its child:
//! `Runner` keeps the pid, the supervisor's one reaper hands the exit status over with
//! `Runner::on_reaped`, and the check's task finishes with it. At its timeout (and after its exit)
//! the check's whole process group gets SIGKILL, so nothing it started is left behind. Output is
//! bounded: `OUTPUT_MAX` bytes (exec: the last ones; http: the first ones).

mod exec;
mod net;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::checks::Probe;
use crate::os::reap::ExitStatus;

pub use exec::ExecCtx;
pub use net::{http, tcp};

/// Output kept from one check.
pub const OUTPUT_MAX: usize = 4096;
/// After the exit status of an exec check, how long its pipes may take to reach EOF.
const PIPE_GRACE: Duration = Duration::from_millis(100);
/// After SIGKILL, how long the reaper may take to hand over the status before the check gives up.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// One line: "HTTP 200 OK", "connection refused", "exit code 1", "timed out after 500 ms".
    pub summary: String,
    /// Bounded output (see `OUTPUT_MAX`).
    pub output: String,
    pub took: Duration,
}

impl Outcome {
    fn fail(summary: impl Into<String>, started: Instant) -> Outcome {
        Outcome {
            ok: false,
            summary: summary.into(),
            output: String::new(),
            took: started.elapsed(),
        }
    }
}

/// A finished check and the key it was started with.
#[derive(Debug)]
pub struct Done<K> {
    pub key: K,
    pub outcome: Outcome,
}

struct Running<K> {
    key: K,
    status: oneshot::Sender<ExitStatus>,
}

/// Starts checks and collects their results. `K` is the caller's key (the supervisor's
/// `(InstId, CheckKind, seq)`).
pub struct Runner<K> {
    tx: mpsc::UnboundedSender<Done<K>>,
    rx: mpsc::UnboundedReceiver<Done<K>>,
    /// Exec checks whose exit status the reaper has not delivered yet, by pid (= pgid).
    exec: HashMap<i32, Running<K>>,
}

impl<K: Clone + Send + 'static> Default for Runner<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Send + 'static> Runner<K> {
    /// The channel is unbounded but holds at most one result per check in flight, and the
    /// readiness tracker keeps at most one check of each kind in flight per instance.
    pub fn new() -> Runner<K> {
        let (tx, rx) = mpsc::unbounded_channel();
        Runner {
            tx,
            rx,
            exec: HashMap::new(),
        }
    }

    /// Starts one check (needs a tokio runtime). `exec` is required for an exec probe: the app's
    /// cwd, environment and user. A check that cannot start reports a failure like any other.
    pub fn start(&mut self, key: K, probe: &Probe, timeout: Duration, exec: Option<&ExecCtx>) {
        let tx = self.tx.clone();
        let started = Instant::now();
        let deadline = started + timeout;
        match probe {
            Probe::Http(url) => {
                let url = url.clone();
                tokio::spawn(async move {
                    let outcome = http(&url, timeout).await;
                    let _ = tx.send(Done { key, outcome });
                });
            }
            Probe::Tcp(addr) => {
                let addr = addr.clone();
                tokio::spawn(async move {
                    let outcome = tcp(&addr, timeout).await;
                    let _ = tx.send(Done { key, outcome });
                });
            }
            Probe::Exec(argv) => {
                let Some(ctx) = exec else {
                    let outcome = Outcome::fail("no environment for an exec check", started);
                    let _ = tx.send(Done { key, outcome });
                    return;
                };
                match exec::spawn(argv, ctx) {
                    Err(e) => {
                        let outcome = Outcome::fail(e.message, started);
                        let _ = tx.send(Done { key, outcome });
                    }
                    Ok(sp) => {
                        let (status_tx, status_rx) = oneshot::channel();
                        self.exec.insert(
                            sp.pid,
                            Running {
                                key: key.clone(),
                                status: status_tx,
                            },
                        );
                        tokio::spawn(async move {
                            let outcome = exec::finish(sp, status_rx, started, deadline).await;
                            let _ = tx.send(Done { key, outcome });
                        });
                    }
                }
            }
        }
    }

    /// The next finished check. Cancel-safe (for `select!`).
    pub async fn next(&mut self) -> Done<K> {
        match self.rx.recv().await {
            Some(d) => d,
            // Unreachable while `self` holds a sender; never resolve rather than spin.
            None => std::future::pending().await,
        }
    }

    /// The reaper found `pid`: if it is an exec check, its task gets the status and `true` is
    /// returned (the supervisor must not treat it as an app or an orphan).
    pub fn on_reaped(&mut self, pid: i32, status: ExitStatus) -> bool {
        match self.exec.remove(&pid) {
            Some(r) => {
                // What the check left running dies with it (its pipes then close at once).
                exec::kill_group(pid);
                let _ = r.status.send(status);
                true
            }
            None => false,
        }
    }

    /// Kills the exec checks whose key matches (their instance exited or is being stopped).
    /// Their results still arrive, and are stale for the caller.
    pub fn cancel(&mut self, matches: impl Fn(&K) -> bool) {
        for (pid, r) in &self.exec {
            if matches(&r.key) {
                exec::kill_group(*pid);
            }
        }
    }

    /// Pids of exec checks not reaped yet.
    pub fn exec_pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.exec.keys().copied()
    }
}

/// The last `max` bytes written to it.
#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    max: usize,
    dropped: bool,
}

impl Tail {
    fn new(max: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            max,
            dropped: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.max {
            let cut = self.buf.len() - self.max;
            self.buf.drain(..cut);
            self.dropped = true;
        }
    }

    fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.buf);
        if self.dropped {
            format!("…{s}")
        } else {
            s.into_owned()
        }
    }
}

#[cfg(test)]
mod tests;
