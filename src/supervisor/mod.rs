//! The supervisor: one task that owns all run-time state, and the loop that feeds it events.
//!
//! Every input (a signal, a reaped child, a control request, a deadline, a watch or memory
//! trigger) arrives in one `select!`; the pure `policy` decides; this module carries out the
//! resulting actions through `os` and publishes a `Snapshot` for readers. It sleeps until the next
//! deadline and never polls. Invariant: an app's failure is an event, never an early return;
//! nothing in the loop can end it except `Action::Finish`.

pub mod env;
pub mod ops;
pub mod policy;
pub mod state;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::cli::SupervisorOpts;
use crate::config::{self, LoadOptions, LogFormat, Settings};
use crate::exit;
use crate::logs::{LogHub, LogSource};
use crate::os::reap::reap_all;
use crate::os::spawn::{spawn, SpawnRequest, Streams};
use crate::os::{pid1, signals, strays};
use crate::run::err_line;
use crate::status::{InstanceStatus, Snapshot, SCHEMA_VERSION};
use ops::{ControlMsg, Op, Pending, Wait};
use policy::{Action, Level};
use state::{InstId, Now, State};

/// Reaping also runs on this slow tick, in case a SIGCHLD notification was ever missed.
const SAFETY_REAP: Duration = Duration::from_secs(60);
/// Grace for stray processes at exit when no kill_timeout is configured (pm2's default).
const DEFAULT_STRAY_GRACE: Duration = Duration::from_millis(1600);
/// How long pmi waits for the apps' last output before exiting.
const LOG_DRAIN: Duration = Duration::from_secs(2);
/// Scheduler turns given to connection tasks before exit, so that final replies are written.
const REPLY_FLUSH_YIELDS: usize = 16;
/// Default interval of the `max_memory_restart` check (pm2's worker interval).
const MEMORY_CHECK: Duration = Duration::from_secs(30);

/// A watcher asks for an app's graceful restart.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Index of the app in the apps file.
    pub app: usize,
    pub reason: String,
}

/// What readers (control socket, HTTP) get: the snapshot, the inbox, the logs.
#[derive(Clone)]
pub struct Handle {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub inbox: mpsc::Sender<ControlMsg>,
    pub logs: LogHub,
}

/// Runs the apps of `file` until they are all done or pmi is told to stop. Returns the exit code.
pub fn run(file: &Path, opts: SupervisorOpts, socket: Option<PathBuf>) -> i32 {
    let start_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let kill_signal = match crate::run::kill_signal(&opts) {
        Ok(s) => s.map(config::Signal),
        Err(code) => return code,
    };
    let load_opts = LoadOptions {
        env_name: opts.env.clone(),
        only: opts.only.clone(),
        kill_signal,
        kill_timeout: opts.kill_timeout.map(Duration::from_millis),
        ..LoadOptions::new()
    };
    let loaded = match config::load(file, &start_dir, &load_opts) {
        Ok(l) => l,
        Err(e) => {
            for d in &e.diagnostics {
                err_line(&format!("pmi: error: {d}"));
            }
            err_line("pmi: nothing was started; fix the apps file (`pmi check FILE` validates it)");
            return exit::USAGE;
        }
    };
    for w in &loaded.warnings {
        err_line(&format!("pmi: warning: {w}"));
    }
    let settings = merge_settings(loaded.spec.settings.clone(), &opts, socket);
    // Before any thread exists (the log writers, tracing's): threads inherit the signal mask.
    signals::prepare_process();
    let format = settings.log_format.unwrap_or_default();
    crate::logs::init_tracing(format, opts.verbose);
    let p1 = pid1::setup(true);
    let rt = match crate::run::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let apps: Vec<Arc<config::AppSpec>> = loaded.spec.apps.into_iter().map(Arc::new).collect();
    let file_name = loaded.spec.file.display().to_string();
    let is_pid1 = p1.is_pid1;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async move {
            Supervisor::new(apps, settings, format, p1, file_name)
                .run()
                .await
        })
    }));
    match result {
        Ok(code) => code,
        Err(_) => {
            err_line("pmi: internal error: stopping every process before exiting");
            emergency_stop(is_pid1);
            exit::INTERNAL
        }
    }
}

/// Command-line flags win over the file's `pmi:` block.
fn merge_settings(mut s: Settings, opts: &SupervisorOpts, socket: Option<PathBuf>) -> Settings {
    if socket.is_some() {
        s.socket = socket;
    }
    if opts.http.is_some() {
        s.http = opts.http.clone();
    }
    if opts.log_format.is_some() {
        s.log_format = opts.log_format;
    }
    if opts.no_auto_exit {
        s.auto_exit = Some(false);
    }
    if let Some(sig) = opts.kill_signal.as_deref().and_then(signals::parse) {
        s.kill_signal = Some(config::Signal(sig));
    }
    if let Some(ms) = opts.kill_timeout {
        s.kill_timeout = Some(Duration::from_millis(ms));
    }
    s
}

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

/// Last resort after a bug: TERM everything, give it a moment, KILL, reap.
fn emergency_stop(is_pid1: bool) {
    let send = |sig| {
        if is_pid1 {
            signals::kill_pid(-1, sig);
        } else {
            for c in pid1::children() {
                signals::kill_pid(c, sig);
            }
        }
    };
    send(libc::SIGTERM);
    let until = std::time::Instant::now() + DEFAULT_STRAY_GRACE;
    while std::time::Instant::now() < until {
        if reap_all().no_children {
            return;
        }
        // No runtime is left to wait on: a short poll is the only option here.
        std::thread::sleep(Duration::from_millis(20));
    }
    send(libc::SIGKILL);
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while !reap_all().no_children && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Supervisor {
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
    dirty: bool,
}

impl Supervisor {
    fn new(
        apps: Vec<Arc<config::AppSpec>>,
        settings: Settings,
        format: LogFormat,
        p1: pid1::Pid1,
        file: String,
    ) -> Supervisor {
        let now = Now::read();
        let auto_exit = settings.auto_exit.unwrap_or(true);
        let state = State::new(apps, auto_exit, now);
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
            dirty: true,
        }
    }

    /// A handle for readers; the trigger sender for watchers.
    pub fn handle(&self) -> (Handle, mpsc::UnboundedSender<Trigger>) {
        (
            Handle {
                snapshot: self.snapshot_tx.subscribe(),
                inbox: self.inbox_tx.clone(),
                logs: self.logs.clone(),
            },
            self.trigger_tx.clone(),
        )
    }

    async fn run(mut self) -> i32 {
        // Handlers before the first spawn: as PID 1 an unhandled signal is lost.
        let mut sigs = match signals::Signals::open() {
            Ok(s) => s,
            Err(e) => {
                err_line(&format!("pmi: cannot register signal handlers: {e}"));
                return exit::INTERNAL;
            }
        };
        if !self.p1.reaps_orphans {
            tracing::warn!(
                "not PID 1 and could not become a subreaper: orphans will not be reaped"
            );
        }
        let (handle, triggers) = self.handle();
        if let Some(addr) = &self.settings.http {
            match crate::http::bind(addr).await {
                Ok(l) => drop(tokio::spawn(crate::http::serve(l, handle.clone()))),
                Err(e) => {
                    err_line(&format!("pmi: {e}; nothing was started"));
                    return exit::USAGE;
                }
            }
        }
        let (sock, group) = (
            self.settings.socket.as_deref(),
            self.settings.socket_group.as_deref(),
        );
        match crate::control::server::bind(sock, group) {
            Ok(l) => drop(tokio::spawn(crate::control::server::serve(l, handle))),
            Err(e) => tracing::warn!("control socket: {e}; apps run without it"),
        }
        for (i, a) in self.state.apps.iter().enumerate() {
            if let Some(w) = &a.spec.watch {
                crate::watch::spawn(
                    i,
                    a.spec.name.clone(),
                    a.spec.cwd.clone(),
                    w.clone(),
                    triggers.clone(),
                );
            }
        }
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
                Some(t) = self.trigger_rx.recv() => {
                    tracing::info!("restarting: {}", t.reason);
                    self.state.restart_app(t.app, Now::read())
                }
                _ = sleep_until(deadline) => {
                    let now = Now::read();
                    let mut a = Vec::new();
                    if now.mono >= safety {
                        safety = now.mono + SAFETY_REAP;
                        a.extend(self.reap());
                    }
                    if self.memory_next.is_some_and(|t| t <= now.mono) {
                        self.memory_next = Some(now.mono + self.memory_interval());
                        a.extend(self.check_memory(now));
                    }
                    a.extend(self.state.on_tick(now));
                    a
                }
            };
            self.dirty = true;
            finish = self.execute(actions);
            self.answer_pending();
        }
        self.publish();
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err("pmi is exiting".into()));
        }
        // Let connection tasks write the replies just sent (e.g. to the `pmi stop all` that made
        // pmi exit): each is one non-blocking write once its task runs.
        for _ in 0..REPLY_FLUSH_YIELDS {
            tokio::task::yield_now().await;
        }
        let code = finish.unwrap_or(exit::INTERNAL);
        let grace = self.settings.kill_timeout.unwrap_or(DEFAULT_STRAY_GRACE);
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
            if let Some(id) = self.state.by_pid(pid) {
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
        for (id, rss, limit) in over {
            tracing::warn!(
                "instance {id} uses {rss} bytes, over max_memory_restart {limit}: restarting"
            );
            out.extend(self.state.restart_all(&[id], now));
        }
        out
    }

    /// Carries out actions; spawning can produce more (a failed spawn is an exit). Returns the
    /// exit code once the policy says to finish.
    fn execute(&mut self, actions: Vec<Action>) -> Option<i32> {
        let mut queue = std::collections::VecDeque::from(actions);
        let mut finish = None;
        loop {
            while let Some(a) = queue.pop_front() {
                match a {
                    Action::Spawn(id) => queue.extend(self.spawn(id)),
                    Action::KillGroup { pgid, sig } => {
                        signals::kill_group(pgid, sig);
                    }
                    Action::Note(Level::Info, msg) => tracing::info!("{msg}"),
                    Action::Note(Level::Warn, msg) => tracing::warn!("{msg}"),
                    Action::Finish { code } => finish = Some(code),
                    Action::Removed(id) => self.logs.forget(id),
                }
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
        let argv: Vec<OsString> = spec.command.iter().map(OsString::from).collect();
        let req = SpawnRequest {
            argv: &argv,
            cwd: &spec.cwd,
            env: env::instance_env(&self.base_env, &spec, inj),
            streams: Streams::Pipes,
            uid: spec.uid,
            gid: spec.gid,
            groups: &spec.groups,
        };
        match spawn(&req) {
            Ok(child) => {
                self.state.on_spawned(id, child.pid, now);
                tracing::info!("{}:{} online (pid {})", spec.name, inj.index, child.pid);
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
                Vec::new()
            }
            Err(e) => {
                tracing::error!("{}:{} failed to start: {e}", spec.name, inj.index);
                self.state.on_spawn_failed(id, e.code, now)
            }
        }
    }

    fn control(&mut self, msg: ControlMsg) -> Vec<Action> {
        let now = Now::read();
        let st = &mut self.state;
        let refuse = |reply: tokio::sync::oneshot::Sender<ops::OpReply>, e: String| {
            let _ = reply.send(Err(e));
            Vec::new()
        };
        if st.shutting_down {
            return refuse(msg.reply, "pmi is shutting down".into());
        }
        if let Op::Scale { app, count } = &msg.op {
            let Some(ai) = st.app_index(app) else {
                return refuse(msg.reply, format!("unknown app '{app}'"));
            };
            let current = st.of_app(ai).len() as u32;
            let n = count.apply(current);
            if n > config::MAX_INSTANCES {
                return refuse(
                    msg.reply,
                    format!(
                        "{n} instances is more than pmi allows ({})",
                        config::MAX_INSTANCES
                    ),
                );
            }
            let (actions, touched) = st.scale(ai, n, now);
            let wait = if n >= current {
                Wait::Running(touched.iter().map(|id| (*id, None)).collect())
            } else {
                Wait::Gone(touched)
            };
            let ids = st.of_app(ai);
            self.pending.push(Pending {
                wait,
                ids,
                reply: msg.reply,
            });
            return actions;
        }
        let target = match &msg.op {
            Op::Start(t) | Op::Stop(t) | Op::Restart(t) | Op::Signal { target: t, .. } => t,
            Op::Scale { .. } => return Vec::new(),
        };
        let ids = match st.resolve(target) {
            Ok(ids) => ids,
            Err(e) => return refuse(msg.reply, e),
        };
        let (actions, wait) = match msg.op {
            // Any running process answers a start, whether it was already running or not.
            Op::Start(_) => (
                st.start_ids(&ids, now),
                Wait::Running(ids.iter().map(|id| (*id, None)).collect()),
            ),
            // A restart waits for a pid other than the current one.
            Op::Restart(_) => {
                let old = ids
                    .iter()
                    .map(|id| (*id, st.get(*id).and_then(|i| i.phase.pid())))
                    .collect();
                (st.restart_all(&ids, now), Wait::Running(old))
            }
            Op::Stop(_) => (st.stop_ids(&ids, now), Wait::Down(ids.clone())),
            Op::Signal { sig, .. } => {
                let briefs = ids.iter().filter_map(|id| st.brief(*id)).collect();
                let _ = msg.reply.send(Ok(briefs));
                return st.signal_ids(&ids, sig);
            }
            Op::Scale { .. } => return Vec::new(),
        };
        self.pending.push(Pending {
            wait,
            ids,
            reply: msg.reply,
        });
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

    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let st = &self.state;
        let instances = st
            .instances
            .iter()
            .map(|i| {
                let app = &st.apps[i.app];
                InstanceStatus {
                    id: i.id,
                    name: app.spec.name.clone(),
                    namespace: app.spec.namespace.clone(),
                    instance: i.index,
                    exec_mode: format!("{:?}", app.spec.exec_mode).to_lowercase(),
                    status: ops::status_of(&i.phase),
                    pid: i.phase.pid().filter(|p| *p > 0).map(|p| p as u32),
                    started_at: i.started_wall_ms,
                    restarts: i.restarts,
                    unstable_restarts: i.unstable_restarts,
                    last_exit: i.last_exit.map(|e| crate::status::ExitInfo {
                        code: match e.status {
                            crate::os::reap::ExitStatus::Code(c) => Some(c),
                            _ => None,
                        },
                        signal: match e.status {
                            crate::os::reap::ExitStatus::Signal(s) => Some(signals::name(s)),
                            _ => None,
                        },
                        at: e.wall_ms,
                    }),
                    cron_next: app
                        .cron_next
                        .filter(|_| !app.cron_suspended)
                        .map(|t| t.timestamp_millis().max(0) as u64),
                    env_keys: app.spec.env.keys().cloned().collect(),
                }
            })
            .collect();
        let snap = Snapshot {
            schema: SCHEMA_VERSION,
            pmi_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: self.started_at,
            apps_file: self.file.clone(),
            shutting_down: st.shutting_down,
            reaped_orphans: st.reaped_orphans,
            forwarded_signals: st.forwarded_signals,
            instances,
            apps: st
                .apps
                .iter()
                .map(|a| crate::status::app_info(&a.spec))
                .collect(),
        };
        self.snapshot_tx.send_replace(Arc::new(snap));
    }
}
