//! Readiness effects for the loop: each instance's notify socket (read by a task of its own),
//! the check runner, and the context exec checks run in.
//!
//! Invariant: nothing here decides anything (`ready_policy` does); every message carries the
//! pid of the process it is about, so the policy can drop one from a process that is gone. A
//! notify task forwards at most one batch (`notify::BATCH` datagrams) at a time over a bounded
//! channel: an app flooding its socket fills its own kernel queue, never pmi's memory, and the
//! loop keeps answering everything else between batches.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::readiness::{CheckKind, Config};
use super::state::InstId;
use crate::checks::{ExecCtx, Runner};
use crate::config::checks::{Probe, ReadySpec};
use crate::config::AppSpec;
use crate::os::notify::{self, Addr, Notice, NotifySocket};

/// 8 hex digits from the clock at start-up: enough to tell pmis apart, not a secret (the
/// sender's process group is what the socket checks).
fn token() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:08x}", (t as u64 ^ (t >> 64) as u64) as u32)
}

/// A check's key: instance, the pid it checks, kind, and the tracker's sequence number.
pub(super) type CheckKey = (InstId, i32, CheckKind, u64);
/// Batches waiting for the loop, over all instances.
const NOTICE_QUEUE: usize = 16;

pub(super) struct ReadyIo {
    pub runner: Runner<CheckKey>,
    notices_tx: mpsc::Sender<(InstId, i32, Notice)>,
    pub notices_rx: mpsc::Receiver<(InstId, i32, Notice)>,
    sockets: HashMap<InstId, AbortHandle>,
    exec: HashMap<InstId, ExecCtx>,
    /// Instances already warned about garbage datagrams (one warning per instance).
    warned: HashSet<InstId>,
    /// Spawns with a socket so far: each gets a fresh name (an aborted task may still hold
    /// the previous one for a moment).
    bound: u64,
    /// Makes the names unique per pmi: the abstract namespace belongs to the network
    /// namespace, which several PID-1 pmis share in a Kubernetes pod (each is pid 1).
    token: String,
}

impl ReadyIo {
    pub fn new() -> ReadyIo {
        let (notices_tx, notices_rx) = mpsc::channel(NOTICE_QUEUE);
        ReadyIo {
            runner: Runner::new(),
            notices_tx,
            notices_rx,
            sockets: HashMap::new(),
            exec: HashMap::new(),
            warned: HashSet::new(),
            bound: 0,
            token: token(),
        }
    }

    /// Before the spawn: binds the instance's notify socket when it needs one (`ready: notify`
    /// or `watchdog`) and sets `NOTIFY_SOCKET`/`WATCHDOG_USEC` in its environment.
    pub fn prepare(
        &mut self,
        id: InstId,
        spec: &AppSpec,
        env: &mut Vec<(OsString, OsString)>,
    ) -> Option<NotifySocket> {
        if spec.ready != ReadySpec::Notify && spec.watchdog.is_none() {
            return None;
        }
        let sock = match self.bind(id) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "{}: cannot make a notify socket ({e}); sd_notify messages will not arrive",
                    spec.name
                );
                return None;
            }
        };
        // WATCHDOG_PID is the child's own pid, not known before the spawn: `os::spawn` writes it
        // in the child (`Pass::watchdog_pid`), as it does LISTEN_PID.
        let vars = notify::instance_vars(sock.addr(), spec.watchdog, None);
        env.retain(|(k, _)| !vars.iter().any(|(v, _)| k == v.as_str()));
        env.extend(
            vars.into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        Some(sock)
    }

    /// `@pmi/<pid>-<token>/<pm_id>.<n>`; a name taken by someone else is skipped.
    fn bind(&mut self, id: InstId) -> std::io::Result<NotifySocket> {
        let mut last = None;
        for _ in 0..4 {
            self.bound += 1;
            let name = format!(
                "pmi/{}-{}/{id}.{}",
                std::process::id(),
                self.token,
                self.bound
            );
            match NotifySocket::bind(Addr::Abstract(name)) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
    }

    /// Right after the spawn, before the loop awaits again: the socket accepts only the
    /// instance's process group, and its task starts; exec checks get the app's context.
    pub fn started(
        &mut self,
        id: InstId,
        pid: i32,
        sock: Option<NotifySocket>,
        spec: &AppSpec,
        env: &[(OsString, OsString)],
    ) {
        self.forget(id);
        if let Some(mut sock) = sock {
            sock.set_expected_pgid(Some(pid));
            let tx = self.notices_tx.clone();
            let task = tokio::spawn(async move {
                while let Ok(n) = sock.recv().await {
                    if tx.send((id, pid, n)).await.is_err() {
                        break;
                    }
                }
            });
            self.sockets.insert(id, task.abort_handle());
        }
        let exec_probe = |p: Option<&Probe>| matches!(p, Some(Probe::Exec(_)));
        if exec_probe(Config::probe(CheckKind::Ready, &spec.ready, None))
            || exec_probe(Config::probe(
                CheckKind::Health,
                &spec.ready,
                spec.health.as_ref(),
            ))
        {
            self.exec.insert(id, ExecCtx::for_app(spec, env.to_vec()));
        }
    }

    /// The instance's process is gone: its socket closes, its exec checks are killed (their
    /// stale results are dropped by the policy).
    pub fn forget(&mut self, id: InstId) {
        if let Some(t) = self.sockets.remove(&id) {
            t.abort();
        }
        self.exec.remove(&id);
        self.runner.cancel(|k| k.0 == id);
    }

    /// Starts the check a tracker asked for.
    pub fn start_check(&mut self, key: CheckKey, spec: &AppSpec, timeout: std::time::Duration) {
        let Some(probe) = Config::probe(key.2, &spec.ready, spec.health.as_ref()) else {
            return;
        };
        let ctx = self.exec.get(&key.0);
        self.runner.start(key, probe, timeout, ctx);
    }

    /// One warning per instance whose socket received datagrams pmi dropped.
    pub fn note_garbage(&mut self, id: InstId, name: &str, n: &Notice) {
        if n.garbage > 0 && self.warned.insert(id) {
            tracing::warn!(
                "{name}: dropped {} notify datagram(s) (too long, empty, or from outside the instance's process group)",
                n.garbage
            );
        }
    }
}
