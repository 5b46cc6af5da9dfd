//! The supervisor: one task that owns all run-time state, and the loop that feeds it events.
//!
//! Every input (a signal, a reaped child, a control request, a deadline, a watch or memory
//! trigger) arrives in one `select!`; the pure `policy` decides; this module carries out the
//! resulting actions through `os` and publishes a `Snapshot` for readers. It sleeps until the next
//! deadline and never polls. Invariant: an app's failure is an event, never an early return;
//! nothing in the loop can end it except `Action::Finish`. The supervisor knows none of its
//! readers: they hold a `Handle` (`crate::api`) and are wired up by `crate::daemon`. `apply`
//! re-reads the apps file off the loop and carries out `diff`'s plan as ordinary ops.

pub mod apply;
pub mod cluster;
mod cluster_loop;
pub mod diff;
pub mod env;
pub mod ops;
pub mod policy;
pub mod readiness;
mod ready_io;
mod ready_policy;
pub mod reload;
mod rolling;
mod snapshot;
pub mod start_order;
pub mod state;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::api::{ApplyMsg, ControlMsg, Handle, OpError, Trigger};
use crate::config::{self, LogFormat, Settings, DEFAULT_KILL_TIMEOUT};
use crate::exit;
use crate::logs::{LogHub, LogSource};
use crate::os::notify::{Notice, Upward};
use crate::os::reap::reap_all;
use crate::os::spawn::{spawn_with, Pass, SpawnRequest, Streams};
use crate::os::{pid1, signals, strays};
use crate::status::Snapshot;
use ops::Pending;
use policy::{Action, Level};
use readiness::CheckResult;
use ready_io::ReadyIo;
use state::{InstId, Now, State};

/// Reaping also runs on this slow tick, in case a SIGCHLD notification was ever missed.
const SAFETY_REAP: Duration = Duration::from_secs(60);
/// How long pmi waits for the apps' last output before exiting.
const LOG_DRAIN: Duration = Duration::from_secs(2);
/// Scheduler turns given to connection tasks before exit, so that final replies are written.
const REPLY_FLUSH_YIELDS: usize = 16;
/// Default interval of the `max_memory_restart` check (pm2's worker interval).
const MEMORY_CHECK: Duration = Duration::from_secs(30);

/// An instance's pid file: as written for a single-instance app, with pm2's `-<pm_id>` before the
/// extension when the app has several instances (they would overwrite one file otherwise).
fn pid_file(spec: &config::AppSpec, id: InstId) -> Option<PathBuf> {
    let pf = spec.pid_file.as_ref()?;
    if spec.instances <= 1 {
        return Some(pf.clone());
    }
    let stem = pf.file_stem()?.to_string_lossy();
    let name = match pf.extension() {
        Some(ext) => format!("{stem}-{id}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{id}"),
    };
    Some(pf.with_file_name(name))
}

/// SIGKILLs groups after naming their members (read before the kill, while they exist). One
/// pass over /proc for the whole batch, and none when every group is already empty (the usual
/// single-process app), so a shutdown of thousands of instances stays linear.
fn kill_leftovers(batch: Vec<(i32, Level, String)>) {
    let alive: Vec<i32> = batch
        .iter()
        .map(|b| b.0)
        .filter(|g| signals::group_alive(*g))
        .collect();
    let members = crate::os::proc::group_members(&alive);
    for (pgid, level, why) in batch {
        let list: Vec<String> = members
            .get(&pgid)
            .into_iter()
            .flatten()
            .map(|(pid, cmd)| format!("{pid} ({cmd})"))
            .collect();
        match level {
            Level::Info if list.is_empty() => {}
            Level::Info => tracing::info!("{why}: {}", list.join(", ")),
            Level::Warn if list.is_empty() => tracing::warn!("{why}"),
            Level::Warn => tracing::warn!("{why}: {}", list.join(", ")),
        }
        signals::kill_group(pgid, libc::SIGKILL);
    }
}

/// The one owner of all run-time state; `run` consumes it.
pub struct Supervisor {
    state: State,
    settings: Settings,
    p1: pid1::Pid1,
    base_env: Vec<(OsString, OsString)>,
    logs: LogHub,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    inbox_tx: mpsc::Sender<ControlMsg>,
    inbox_rx: mpsc::Receiver<ControlMsg>,
    trigger_tx: mpsc::UnboundedSender<Trigger>,
    trigger_rx: mpsc::UnboundedReceiver<Trigger>,
    pending: Vec<Pending>,
    started_at: u64,
    file: String,
    memory_next: Option<Instant>,
    cluster: cluster::Cluster,
    apply_tx: mpsc::Sender<ApplyMsg>,
    apply_rx: mpsc::Receiver<ApplyMsg>,
    applier: apply::Applier,
    io: ReadyIo,
    upward: UpwardState,
}

/// pmi's own sd_notify messages (SPEC §10): READY=1 once, STATUS= when the reason changes,
/// STOPPING=1 once.
#[derive(Default)]
struct UpwardState {
    to: Option<Upward>,
    ready_sent: bool,
    stopping_sent: bool,
    last_status: String,
}

impl Supervisor {
    pub fn new(
        apps: Vec<Arc<config::AppSpec>>,
        settings: Settings,
        format: LogFormat,
        p1: pid1::Pid1,
        file: String,
    ) -> Supervisor {
        let now = Now::read();
        let auto_exit = settings.auto_exit.unwrap_or(true);
        let applier = apply::Applier::new(apps.len());
        let state = State::new(apps, auto_exit, now);
        let (apply_tx, apply_rx) = mpsc::channel(8);
        let (snapshot_tx, _) = watch::channel(Arc::new(Snapshot::default()));
        let (inbox_tx, inbox_rx) = mpsc::channel(64);
        let (trigger_tx, trigger_rx) = mpsc::unbounded_channel();
        Supervisor {
            state,
            settings,
            p1,
            base_env: std::env::vars_os().collect(),
            logs: LogHub::new(format),
            snapshot_tx,
            inbox_tx,
            inbox_rx,
            trigger_tx,
            trigger_rx,
            pending: Vec::new(),
            started_at: now.wall_ms(),
            file,
            memory_next: None,
            cluster: cluster::Cluster::new(),
            io: ReadyIo::new(),
            upward: UpwardState {
                to: Upward::from_env(),
                ..UpwardState::default()
            },
            apply_tx,
            apply_rx,
            applier,
        }
    }

    /// Binds every app's `listen` sockets; call before `run` (nothing is started yet). An error
    /// is one located line per address that could not be bound.
    pub fn bind_sockets(&mut self) -> Result<(), Vec<String>> {
        let specs: Vec<Arc<config::AppSpec>> =
            self.state.apps.iter().map(|a| a.spec.clone()).collect();
        self.cluster.bind_apps(&specs)
    }

    /// A handle for readers.
    pub fn handle(&self) -> Handle {
        Handle {
            snapshot: self.snapshot_tx.subscribe(),
            inbox: self.inbox_tx.clone(),
            logs: self.logs.clone(),
            apply: self.apply_tx.clone(),
        }
    }

    /// The sender watchers use to ask for an app's restart.
    pub fn triggers(&self) -> mpsc::UnboundedSender<Trigger> {
        self.trigger_tx.clone()
    }

    /// Runs the apps until they are all done or pmi is told to stop; returns pmi's exit code.
    /// `sigs` must be open before this is called: it is the first spawn.
    pub async fn run(mut self, mut sigs: signals::Signals) -> i32 {
        let has_memory_limit = self
            .state
            .apps
            .iter()
            .any(|a| a.spec.max_memory_restart.is_some());
        if has_memory_limit {
            self.memory_next = Some(Instant::now() + self.memory_interval());
        }
        let now = Now::read();
        let actions = self.state.on_start(now);
        let mut finish = self.execute(actions);
        let mut safety = Instant::now() + SAFETY_REAP;
        while finish.is_none() {
            self.publish();
            let now = Now::read();
            let deadline = [
                self.state.next_deadline(now),
                self.memory_next,
                self.apply_deadline(),
                Some(safety),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(safety);
            let actions = tokio::select! {
                s = sigs.next() => match s {
                    Some(libc::SIGCHLD) => self.reap(),
                    Some(sig) => {
                        if sig == libc::SIGUSR2 {
                            // As pm2's daemon: reopen log files (after an external rotation).
                            self.logs.reopen_files();
                        }
                        self.state.on_signal(sig, Now::read())
                    }
                    None => Vec::new(),
                },
                Some(msg) = self.inbox_rx.recv() => self.control(msg),
                Some((id, pid, m)) = self.cluster.rx.recv() => self.on_channel(id, pid, m),
                Some(t) = self.trigger_rx.recv() => match self.state.app_by_key(t.app) {
                    Some(app) => {
                        tracing::info!("restarting: {}", t.reason);
                        self.state.restart_app(app, Now::read())
                    }
                    // The app was removed by `pmi apply`.
                    None => Vec::new(),
                },
                Some(msg) = self.apply_rx.recv() => {
                    self.on_apply(msg);
                    Vec::new()
                }
                d = self.io.runner.next() => {
                    let (id, pid, kind, seq) = d.key;
                    let o = d.outcome;
                    let r = CheckResult { kind, seq, ok: o.ok, summary: o.summary, output: o.output, took: o.took };
                    self.state.on_check_done(id, pid, &r, Now::read())
                }
                Some((id, pid, n)) = self.io.notices_rx.recv() => self.on_notice(id, pid, n),
                Some(done) = self.applier.loaded_rx.recv() => self.on_loaded(done),
                _ = sleep_until(deadline) => self.on_deadline(&mut safety),
            };
            finish = self.execute(actions);
            self.answer_pending();
            if finish.is_none() {
                finish = self.settle_apply();
            }
        }
        self.publish();
        self.tell_upward(true);
        self.shut_down(sigs, finish).await
    }

    fn on_notice(&mut self, id: InstId, pid: i32, n: Notice) -> Vec<Action> {
        if let Some(spec) = self.state.spec_of(id) {
            let name = spec.name.clone();
            self.io.note_garbage(id, &name, &n);
        }
        self.state.on_notice(id, pid, &n, Now::read())
    }

    /// pmi's own readiness upward, after each event (`Upward` never blocks).
    fn tell_upward(&mut self, finishing: bool) {
        if self.upward.to.is_none() {
            return;
        }
        let ready = self.state.container_ready();
        let u = &mut self.upward;
        let Some(to) = &u.to else { return };
        if finishing || self.state.shutting_down {
            if !u.stopping_sent {
                u.stopping_sent = true;
                let _ = to.stopping();
            }
            return;
        }
        let status = match &ready {
            Ok(()) => format!("{} apps ready", self.state.apps.len()),
            Err(why) => format!("not ready: {why}"),
        };
        if status == u.last_status {
            return;
        }
        if !u.ready_sent && ready.is_ok() {
            u.ready_sent = true;
            let _ = to.ready(&status);
        } else {
            let _ = to.status(&status);
        }
        u.last_status = status;
    }

    /// A deadline passed: the safety reap, the memory check, and the policy's timers.
    fn on_deadline(&mut self, safety: &mut Instant) -> Vec<Action> {
        let now = Now::read();
        let mut a = Vec::new();
        if now.mono >= *safety {
            *safety = now.mono + SAFETY_REAP;
            a.extend(self.reap());
        }
        if self.memory_next.is_some_and(|t| t <= now.mono) {
            self.memory_next = Some(now.mono + self.memory_interval());
            a.extend(self.check_memory(now));
        }
        a.extend(self.state.on_tick(now));
        a
    }

    /// After `Action::Finish`: last snapshot, pending replies, strays, logs; then the code.
    async fn shut_down(mut self, mut sigs: signals::Signals, finish: Option<i32>) -> i32 {
        self.publish();
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err(OpError::Exiting));
        }
        // Let connection tasks write the replies just sent (e.g. to the `pmi stop all` that made
        // pmi exit): each is one non-blocking write once its task runs.
        for _ in 0..REPLY_FLUSH_YIELDS {
            tokio::task::yield_now().await;
        }
        let code = finish.unwrap_or(exit::INTERNAL);
        let grace = self.settings.kill_timeout.unwrap_or(DEFAULT_KILL_TIMEOUT);
        let state = &mut self.state;
        strays::terminate(
            &mut sigs,
            libc::SIGTERM,
            grace,
            self.p1.is_pid1,
            &[],
            |_, _| state.reaped_orphans += 1,
        )
        .await;
        self.logs.drain(LOG_DRAIN).await;
        code
    }

    fn memory_interval(&self) -> Duration {
        self.settings.memory_check_interval.unwrap_or(MEMORY_CHECK)
    }

    fn reap(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for (pid, status) in reap_all().exits {
            // An exec check's status goes to its check, never to an app or the orphan count.
            if self.io.runner.on_reaped(pid, status) {
                continue;
            }
            if let Some(id) = self.state.by_pid(pid) {
                self.cluster.forget(id);
                self.io.forget(id);
                // pm2 removes the pid file when the process exits.
                if let Some(pf) = self.state.spec_of(id).and_then(|s| pid_file(s, id)) {
                    let _ = std::fs::remove_file(pf);
                }
            }
            out.extend(self.state.on_exit(pid, status, Now::read()));
        }
        out
    }

    fn check_memory(&mut self, now: Now) -> Vec<Action> {
        let limited: Vec<(InstId, i32, u64)> = self
            .state
            .instances
            .iter()
            .filter_map(|i| {
                let limit = self.state.apps[i.app].spec.max_memory_restart?;
                match i.phase {
                    state::Phase::Running { pid, .. } => Some((i.id, pid, limit)),
                    _ => None,
                }
            })
            .collect();
        // One pass over /proc for every group, however many instances have a limit.
        let pgids: Vec<i32> = limited.iter().map(|(_, pgid, _)| *pgid).collect();
        let usage = crate::os::proc::group_usage(&pgids);
        let over: Vec<(InstId, u64, u64)> = limited
            .into_iter()
            .filter_map(|(id, pgid, limit)| {
                let rss = usage.get(&pgid)?.rss_bytes;
                (rss > limit).then_some((id, rss, limit))
            })
            .collect();
        let mut out = Vec::new();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        for (id, rss, limit) in over {
            let name = self
                .state
                .get(id)
                .map(|i| format!("{}:{}", self.state.apps[i.app].spec.name, i.index))
                .unwrap_or_else(|| format!("id {id}"));
            tracing::warn!(
                "{name} uses {:.1} MiB, over its max_memory_restart of {:.1} MiB: restarting",
                mib(rss),
                mib(limit)
            );
            out.extend(self.state.restart_instances(&[id], now));
        }
        out
    }

    /// Carries out actions; spawning can produce more (a failed spawn is an exit). Returns the
    /// exit code once the policy says to finish.
    fn execute(&mut self, actions: Vec<Action>) -> Option<i32> {
        let mut queue = std::collections::VecDeque::from(actions);
        let mut finish = None;
        loop {
            let mut leftovers = Vec::new();
            while let Some(a) = queue.pop_front() {
                match a {
                    Action::Spawn(id) => queue.extend(self.spawn(id)),
                    Action::KillGroup { pgid, sig } => {
                        if !self.graceful_stop(pgid, sig) {
                            signals::kill_group(pgid, sig);
                        }
                    }
                    Action::KillLeftovers { pgid, level, why } => {
                        leftovers.push((pgid, level, why))
                    }
                    Action::Note(Level::Info, msg) => tracing::info!("{msg}"),
                    Action::Note(Level::Warn, msg) => tracing::warn!("{msg}"),
                    Action::Finish { code } => finish = Some(code),
                    Action::Removed(id) => {
                        self.logs.forget(id);
                        self.cluster.forget(id);
                        self.io.forget(id);
                    }
                    Action::RunCheck {
                        id,
                        pid,
                        kind,
                        seq,
                        timeout,
                    } => {
                        if let Some(spec) = self.state.spec_of(id).cloned() {
                            self.io.start_check((id, pid, kind, seq), &spec, timeout);
                        }
                    }
                }
            }
            if !leftovers.is_empty() {
                kill_leftovers(leftovers);
            }
            // A stop completes when the stopped leader's whole group is gone. Its members are
            // pmi's children by then (PID 1 or subreaper), so every change comes with a SIGCHLD
            // and this check after each event needs no polling.
            let now = Now::read();
            for (id, pgid) in self.state.draining() {
                if !signals::group_alive(pgid) {
                    queue.extend(self.state.on_group_empty(id, now));
                }
            }
            if queue.is_empty() {
                return finish;
            }
        }
    }

    fn spawn(&mut self, id: InstId) -> Vec<Action> {
        let now = Now::read();
        let (Some(inst), Some(spec)) = (self.state.get(id), self.state.spec_of(id)) else {
            return Vec::new();
        };
        let spec = spec.clone();
        let inj = env::Injected {
            pm_id: id,
            index: inst.index,
            restarts: inst.restarts,
        };
        let mut env = env::instance_env(&self.base_env, &spec, inj);
        let sock = self.io.prepare(id, &spec, &mut env);
        // Cluster mode: listen sockets, the Node IPC channel and the preload (SPEC §9).
        let prepared = match self.cluster.prepare(&spec, &mut env) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("{}:{} failed to start: {e}", spec.name, inj.index);
                return self
                    .state
                    .on_spawn_failed(id, crate::exit::NOT_EXECUTABLE, now);
            }
        };
        let req = SpawnRequest {
            argv: &prepared.argv,
            cwd: &spec.cwd,
            env: env.clone(),
            streams: Streams::Pipes,
            uid: spec.uid,
            gid: spec.gid,
            groups: &spec.groups,
        };
        let fds = prepared.fds();
        let pass = Pass {
            fds: &fds,
            listen_pid: prepared.listen_pid,
            watchdog_pid: spec.watchdog.is_some(),
        };
        let spawned = spawn_with(&req, &pass);
        drop(fds);
        match spawned {
            Ok(child) => {
                self.state.on_spawned(id, child.pid, now);
                self.cluster.started(id, child.pid, prepared);
                self.io.started(id, child.pid, sock, &spec, &env);
                tracing::info!("{}:{} started (pid {})", spec.name, inj.index, child.pid);
                if let (Some(out), Some(err)) = (child.stdout, child.stderr) {
                    let src = LogSource {
                        app: Arc::from(spec.name.as_str()),
                        pm_id: id,
                        instance: inj.index,
                        instances: spec.instances,
                        files: spec.logs.clone(),
                    };
                    self.logs.attach(src, out, err);
                }
                if let Some(pf) = pid_file(&spec, id) {
                    if let Err(e) = std::fs::write(&pf, format!("{}\n", child.pid)) {
                        tracing::warn!(
                            "{}: cannot write pid_file {}: {e}",
                            spec.name,
                            pf.display()
                        );
                    }
                }
                self.state.track_spawn(id, now)
            }
            Err(e) => {
                tracing::error!("{}:{} failed to start: {e}", spec.name, inj.index);
                self.state.on_spawn_failed(id, e.code, now)
            }
        }
    }

    fn control(&mut self, msg: ControlMsg) -> Vec<Action> {
        let (actions, pending) = ops::accept(&mut self.state, msg, Now::read());
        self.pending.extend(pending);
        actions
    }

    fn answer_pending(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            match self.state.check(&self.pending[i]) {
                Some(reply) => {
                    let p = self.pending.swap_remove(i);
                    let _ = p.reply.send(reply);
                }
                None => i += 1,
            }
        }
    }

    /// Publishes the state after every event (an idle pmi has no events, so publishes nothing).
    fn publish(&mut self) {
        let header = snapshot::Header {
            started_at: self.started_at,
            apps_file: &self.file,
        };
        let snap = snapshot::build(&self.state, &header);
        self.snapshot_tx.send_replace(Arc::new(snap));
        self.tell_upward(false);
    }
}
