//! Cluster mode's I/O for the supervisor (SPEC §9, docs/cluster.md): the sockets pmi binds for
//! each app, what one spawn passes (listen fds, the Node IPC channel, the preload), and the
//! channels' events on their way into the supervisor's inbox.
//!
//! Invariants: an app's `listen` sockets are bound once, before its first spawn, and held until
//! the app is forgotten, so connections queue while instances restart; pmi's copies are
//! close-on-exec and reach a child only through one spawn's `Pass`. The child's end of a channel
//! is closed in pmi right after the spawn (else pmi never sees the instance close it). Each
//! channel has one reader task, which forwards the few events `node::channel` lets through (each
//! bounded), tagged with the instance and its pid so that a late event cannot act on the next
//! process. Nothing here blocks the supervisor: every write to an instance runs in its own task.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use tokio::sync::mpsc;

use super::state::InstId;
use crate::config::{AppSpec, Diagnostic, ExecMode, ListenAddr};
use crate::node::channel::{self, Event, Writer};
use crate::node::shim;
use crate::os::listen::{self, Listener, SharedPorts};
use crate::os::signals;

/// Events in flight from all channels to the supervisor; a full queue pauses the reader tasks
/// (each reader's events are bounded, so this never grows memory).
const EVENTS: usize = 256;

/// One event of one instance's channel: (instance, pid of the process it is about, what).
pub type ChannelEvent = (InstId, i32, Msg);

/// What a channel task tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// The instance said something pmi acts on.
    Event(Event),
    /// `'shutdown'` could not be handed over: signal the group with `sig` instead (the loop
    /// does it, after checking that this pid is still the one stopping).
    ShutdownUnsent { sig: i32 },
    /// The drain before a stop took too long: go on with the stop.
    DrainTimeout,
}

/// How one graceful stop proceeds once the instance has drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPlan {
    pub sig: i32,
    /// `shutdown_with_message`: send `'shutdown'` instead of `sig`.
    pub message: bool,
    /// The longest the drain may take (the rest of kill_timeout is the app's, then SIGKILL).
    pub drain_for: Duration,
}

/// The sockets pmi holds for one app.
#[derive(Debug, Default)]
struct AppSockets {
    /// The `listen` addresses these sockets are for (an apply may change them).
    addrs: Vec<ListenAddr>,
    listeners: Vec<Listener>,
    /// A Node cluster app without `listen`: ports bound when an instance asks.
    shared: Option<SharedPorts>,
}

/// What a spawn needs from cluster mode, prepared before it and finished after it.
pub struct Prepared {
    pub argv: Vec<OsString>,
    /// The fds to pass at 3, 4, … (borrowed from `Cluster` and `theirs`).
    fds: Vec<OwnedFd>,
    pub listen_pid: bool,
    /// pmi's end of the Node IPC channel, opened after the spawn.
    ours: Option<OwnedFd>,
}

impl Prepared {
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.fds.iter().map(|f| f.as_fd()).collect()
    }
}

/// Cluster-mode state of the supervisor: sockets per app, a writer per Node instance.
pub struct Cluster {
    /// The preload, made once (`None`: no memfd, so Node apps run without it; a warning said so).
    preload: Option<OwnedFd>,
    apps: HashMap<String, AppSockets>,
    writers: HashMap<InstId, (i32, Writer)>,
    /// Stops waiting for their drain, by instance (with the pid they are for).
    stops: HashMap<InstId, (i32, StopPlan)>,
    tx: mpsc::Sender<ChannelEvent>,
    pub rx: mpsc::Receiver<ChannelEvent>,
}

/// Node runs this app's command (`[node, interpreter_args…, script, args…]`).
pub fn is_node_app(spec: &AppSpec) -> bool {
    spec.interpreter.as_deref().is_some_and(shim::is_node)
}

/// Node cluster instances are ready when they listen on pmi's socket (unless another readiness
/// source is set).
pub fn gets_preload(spec: &AppSpec) -> bool {
    is_node_app(spec) && (spec.exec_mode == ExecMode::Cluster || !spec.listen.is_empty())
}

/// The app shares a socket between instances (a reload replaces instances one at a time).
pub fn shares_socket(spec: &AppSpec) -> bool {
    !spec.listen.is_empty() || (is_node_app(spec) && spec.exec_mode == ExecMode::Cluster)
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        let (tx, rx) = mpsc::channel(EVENTS);
        Cluster {
            preload: None,
            apps: HashMap::new(),
            writers: HashMap::new(),
            stops: HashMap::new(),
            tx,
            rx,
        }
    }

    /// Binds every app's `listen` (all or nothing) before the first spawn. A failure is a
    /// located configuration error per address; nothing is kept bound then.
    pub fn bind_apps(&mut self, apps: &[std::sync::Arc<AppSpec>]) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for spec in apps {
            if let Err(e) = self.bind_app(spec) {
                errors.push(e);
            }
        }
        if !errors.is_empty() {
            self.apps.clear();
            return Err(errors);
        }
        if apps.iter().any(|a| gets_preload(a)) {
            self.make_preload();
        }
        Ok(())
    }

    /// Binds one app's sockets unless they are bound already (also for apps added later, and
    /// when `pmi apply` changed `listen`: an address already held keeps its socket, so its
    /// queue and the instances still on it are untouched).
    pub fn bind_app(&mut self, spec: &AppSpec) -> Result<(), String> {
        let share = spec.listen.is_empty() && gets_preload(spec);
        let held = self.apps.get(&spec.name);
        if held.is_some_and(|s| s.addrs == spec.listen && s.shared.is_some() == share) {
            return Ok(());
        }
        let mut listeners = Vec::new();
        for addr in &spec.listen {
            let kept = held
                .and_then(|s| s.listeners.iter().find(|l| l.addr == *addr))
                .and_then(|l| l.fd.try_clone().ok());
            let fd = match kept {
                Some(fd) => fd,
                None => listen::bind(addr).map_err(|e| bind_error(spec, &e))?,
            };
            let addr = addr.clone();
            listeners.push(Listener { addr, fd });
        }
        let shared = match self.apps.remove(&spec.name).and_then(|s| s.shared) {
            Some(s) if share => Some(s),
            _ => share.then(SharedPorts::new),
        };
        let addrs = spec.listen.clone();
        let sockets = AppSockets {
            addrs,
            listeners,
            shared,
        };
        self.apps.insert(spec.name.clone(), sockets);
        Ok(())
    }

    /// The preload memfd, made once (an app added by `pmi apply` may be the first to need it).
    fn make_preload(&mut self) {
        if self.preload.is_some() {
            return;
        }
        match shim::memfd() {
            Ok(fd) => self.preload = Some(fd),
            Err(e) => tracing::warn!(
                "cannot create the Node preload ({e}): Node cluster apps bind their own ports"
            ),
        }
    }

    /// The app is gone: its sockets close (SPEC §9: they live as long as the app).
    pub fn forget_app(&mut self, name: &str) {
        self.apps.remove(name);
    }

    /// Fds, variables and argv for one spawn of `spec`. `env` gets the cluster variables (the
    /// last value of a name wins, so they replace inherited ones).
    pub fn prepare(
        &mut self,
        spec: &AppSpec,
        env: &mut Vec<(OsString, OsString)>,
    ) -> std::io::Result<Prepared> {
        if let Err(e) = self.bind_app(spec) {
            return Err(std::io::Error::other(e));
        }
        if gets_preload(spec) {
            self.make_preload();
        }
        let sockets = self.apps.get(&spec.name);
        let listeners: &[Listener] = sockets.map_or(&[], |s| &s.listeners);
        let n = listeners.len() as i32;
        let mut fds = Vec::new();
        for l in listeners {
            fds.push(l.fd.try_clone()?);
        }
        let mut extra = Vec::new();
        if n > 0 {
            let app_sets_port = spec.port.is_some() || spec.env.contains_key("PORT");
            extra.extend(listen::listen_env(listeners, app_sets_port));
        }
        let mut argv: Vec<OsString> = spec.command.iter().map(OsString::from).collect();
        let mut ours = None;
        if is_node_app(spec) {
            let (a, b) = channel::socketpair()?;
            ours = Some(a);
            fds.push(b);
            extra.extend(channel::child_env(3 + n));
            if let (true, Some(pre)) = (gets_preload(spec), &self.preload) {
                fds.push(pre.try_clone()?);
                let map: Vec<(String, i32)> = listeners
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (shim::map_key(&l.addr), 3 + i as i32))
                    .collect();
                let share = spec.listen.is_empty() && spec.exec_mode == ExecMode::Cluster;
                extra.extend(shim::env(&map, share));
                argv = shim::node_command(&spec.command, spec.interpreter_args.len(), 4 + n);
            }
        }
        for (k, v) in extra {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        Ok(Prepared {
            argv,
            fds,
            listen_pid: n > 0,
            ours,
        })
    }

    /// After a successful spawn: close the child's ends in pmi, open pmi's end of the channel and
    /// start its reader task.
    pub fn started(&mut self, id: InstId, pid: i32, p: Prepared) {
        drop(p.fds);
        let Some(ours) = p.ours else { return };
        let (mut reader, writer) = match channel::open(ours) {
            Ok(rw) => rw,
            Err(e) => {
                tracing::warn!("instance {id}: cannot open its Node IPC channel: {e}");
                return;
            }
        };
        self.writers.insert(id, (pid, writer));
        let tx = self.tx.clone();
        drop(tokio::spawn(async move {
            while let Some(ev) = reader.next().await {
                if tx.send((id, pid, Msg::Event(ev))).await.is_err() {
                    break;
                }
            }
        }));
    }

    /// The instance's process is gone: drop its writer (the reader ends with `Closed`).
    pub fn forget(&mut self, id: InstId) {
        self.writers.remove(&id);
        self.stops.remove(&id);
    }

    /// Begins a graceful stop through the channel: a drain first (`drain`), then the plan.
    /// `false`: the instance has no channel, so the caller signals it as usual.
    pub fn stop(&mut self, id: InstId, pid: i32, plan: StopPlan, drain: bool) -> bool {
        let Some(w) = self.writer(id, pid) else {
            return false;
        };
        if !drain {
            self.send_shutdown(id, pid, plan.sig);
            return true;
        }
        self.stops.insert(id, (pid, plan));
        let tx = self.tx.clone();
        drop(tokio::spawn(async move {
            let sent = tokio::time::timeout(plan.drain_for, w.send_drain()).await;
            if matches!(sent, Ok(Ok(()))) {
                tokio::time::sleep(plan.drain_for).await;
            }
            // Whether the drain was refused, is late or already answered: `take_stop` decides.
            let _ = tx.send((id, pid, Msg::DrainTimeout)).await;
        }));
        true
    }

    /// The drain of `id`'s process `pid` is over (answered or timed out): its plan, once.
    pub fn take_stop(&mut self, id: InstId, pid: i32) -> Option<StopPlan> {
        match self.stops.get(&id) {
            Some((p, _)) if *p == pid => self.stops.remove(&id).map(|(_, plan)| plan),
            _ => None,
        }
    }

    /// An instance asks for a shared socket on `port`: answered in a task (never blocks).
    pub fn answer_bind(&mut self, id: InstId, pid: i32, app: &str, port: u16) {
        let Some(w) = self.writer(id, pid) else {
            return;
        };
        let answer = match self.apps.get_mut(app).and_then(|s| s.shared.as_mut()) {
            None => Err((
                "EACCES".to_string(),
                "pmi shares no port for this app".into(),
            )),
            Some(shared) => match shared.get_or_bind(port) {
                Ok(fd) => fd
                    .try_clone_to_owned()
                    .map_err(|e| ("EMFILE".to_string(), e.to_string())),
                Err(e) => {
                    let code = match e.errno {
                        Some(libc::EADDRINUSE) => "EADDRINUSE",
                        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
                        _ => "EACCES",
                    };
                    tracing::warn!("{app}: {e}");
                    Err((code.to_string(), e.to_string()))
                }
            },
        };
        drop(tokio::spawn(async move {
            let r = match &answer {
                Ok(fd) => w.send_socket(port, fd.as_fd()).await,
                Err((code, why)) => w.send_socket_error(port, code, why).await,
            };
            if let Err(e) = r {
                tracing::warn!("instance {id}: cannot answer its bind request: {e}");
            }
        }));
    }

    /// Stops an instance with pm2's `'shutdown'` message; if it cannot be sent (no channel, the
    /// app does not read it within `channel::SEND_TIMEOUT`), with `sig` instead. The caller's
    /// kill_timeout and SIGKILL follow either way.
    pub fn send_shutdown(&mut self, id: InstId, pid: i32, sig: i32) {
        let Some(w) = self.writer(id, pid) else {
            signals::kill_group(pid, sig);
            return;
        };
        let tx = self.tx.clone();
        drop(tokio::spawn(async move {
            let sent = tokio::time::timeout(SHUTDOWN_SEND, w.send_shutdown()).await;
            if !matches!(sent, Ok(Ok(()))) {
                let _ = tx.send((id, pid, Msg::ShutdownUnsent { sig })).await;
            }
        }));
    }

    fn writer(&self, id: InstId, pid: i32) -> Option<Writer> {
        self.writers
            .get(&id)
            .filter(|(p, _)| *p == pid)
            .map(|(_, w)| w.clone())
    }
}

/// The longest pmi waits to hand over `'shutdown'` before it falls back to the signal.
const SHUTDOWN_SEND: Duration = Duration::from_millis(500);

/// A bind failure as a configuration error at the `listen` element that failed.
fn bind_error(spec: &AppSpec, e: &listen::BindError) -> String {
    let at = spec
        .listen
        .iter()
        .position(|a| a.to_string() == e.addr)
        .and_then(|i| spec.listen_at.get(i));
    let msg = format!("{e}");
    match at {
        Some(d) => Diagnostic {
            message: msg,
            ..d.clone()
        }
        .to_string(),
        None => format!("app '{}' field 'listen': {msg}", spec.name),
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
