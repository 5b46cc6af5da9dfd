//! `pmi apply` inside the supervisor: re-read the apps file off the loop, diff it with what runs,
//! make the changes, and answer once they took effect.
//!
//! Loading (which may run node for up to 5 s) happens on the blocking pool; the validated result
//! comes back through `loaded`. The changes are carried out as ordinary ops (`ops::accept`, the
//! same `Pending`/`Wait` a `pmi scale` or `pmi restart` gets), so each is answered after its
//! effect. Invariant: one apply at a time (others queue, a few at most); an invalid file changes
//! nothing; a failed change does not stop the others.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::diff::{self, Delta, Plan};
use super::ops::{self, Pending, Wait};
use super::policy::Action;
use super::state::{AppState, InstId, Now, Phase};
use super::Supervisor;
use crate::api::{
    AppChange, ApplyMsg, ApplyReport, ChangeKind, ControlMsg, Op, OpError, OpReply, ScaleCount,
    Target, WatchOrder,
};
use crate::config::{self, AppSpec, ConfigError, LoadOptions, Loaded, Settings};

/// Applies waiting behind the running one; more are refused.
const MAX_QUEUED: usize = 4;
/// Rounds of "an answered step starts the next" per event; each round makes progress, so this
/// only bounds a bug.
const MAX_ROUNDS: usize = 256;
/// An apply still waiting this long is answered anyway, its unfinished changes reported as
/// failed (an instance that never comes up must not hold every later apply back).
const APPLY_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// How pmi re-reads its apps file: what it was started with.
#[derive(Debug, Clone)]
pub struct ApplyConfig {
    /// The apps file, absolute. An applied FILE replaces it.
    pub file: PathBuf,
    /// The directory pmi was started in (relative paths of the file resolve against it).
    pub base_dir: PathBuf,
    /// `--env`, `--only`, `--kill-signal`, `--kill-timeout`, as at start.
    pub load: LoadOptions,
    /// The `pmi:` block as the file said at the last load.
    pub file_settings: Settings,
    /// The settings given as flags (they win over any file).
    pub flags: Settings,
}

/// A finished load, back on the supervisor's thread.
pub(crate) struct LoadDone {
    msg: ApplyMsg,
    queued: bool,
    file: PathBuf,
    result: Result<Loaded, ConfigError>,
}

/// The apply machinery the supervisor owns.
pub(crate) struct Applier {
    cfg: Option<ApplyConfig>,
    queue: VecDeque<ApplyMsg>,
    /// A load or a job is under way.
    busy: bool,
    loaded_tx: mpsc::UnboundedSender<LoadDone>,
    pub(crate) loaded_rx: mpsc::UnboundedReceiver<LoadDone>,
    job: Option<Job>,
    orders: Option<mpsc::UnboundedSender<WatchOrder>>,
    next_key: usize,
}

impl Applier {
    pub(crate) fn new(apps: usize) -> Applier {
        let (loaded_tx, loaded_rx) = mpsc::unbounded_channel();
        Applier {
            cfg: None,
            queue: VecDeque::new(),
            busy: false,
            loaded_tx,
            loaded_rx,
            job: None,
            orders: None,
            next_key: apps,
        }
    }

    fn order(&self, o: WatchOrder) {
        if let Some(tx) = &self.orders {
            let _ = tx.send(o);
        }
    }
}

/// A running apply: one step per changed app, and the reply for when every step is done.
struct Job {
    report: ApplyReport,
    from_watcher: bool,
    deadline: tokio::time::Instant,
    steps: Vec<Step>,
    reply: oneshot::Sender<Result<ApplyReport, OpError>>,
}

/// One app's change: the op it waits for, then what comes next.
struct Step {
    /// Index into `report.changes`.
    change: usize,
    wait: Option<oneshot::Receiver<OpReply>>,
    next: VecDeque<Next>,
}

enum Next {
    /// A control op, answered after its effect (a restart of one instance during a reload).
    Op(Op),
    /// Drop a removed app's state once its instances are gone.
    Forget(String),
}

/// The ops that reload these instances: one at a time, each waited for (pmi's `reload`).
/// Cluster mode's rolling reload with readiness replaces this one function.
fn reload_ops(ids: &[InstId]) -> VecDeque<Next> {
    ids.iter()
        .map(|id| Next::Op(Op::Restart(Target::Id(*id))))
        .collect()
}

impl Supervisor {
    /// Turns `pmi apply` on: how to re-read the file, and where watcher changes go.
    pub fn enable_apply(&mut self, cfg: ApplyConfig, orders: mpsc::UnboundedSender<WatchOrder>) {
        self.applier.cfg = Some(cfg);
        self.applier.orders = Some(orders);
    }

    /// An apply request: loaded now, or queued behind the one under way.
    pub(crate) fn on_apply(&mut self, msg: ApplyMsg) {
        if self.state.shutting_down {
            let _ = msg.reply.send(Err(OpError::ShuttingDown));
            return;
        }
        if self.applier.busy {
            if self.applier.queue.len() >= MAX_QUEUED {
                let _ = msg.reply.send(Err(OpError::Busy(format!(
                    "another apply is running and {MAX_QUEUED} more are waiting; try again when they are done"
                ))));
            } else {
                tracing::info!("apply: waiting for the apply under way to finish");
                self.applier.queue.push_back(msg);
            }
            return;
        }
        self.load(msg, false);
    }

    /// Reads the file on the blocking pool; the result comes back as a `LoadDone`.
    fn load(&mut self, msg: ApplyMsg, queued: bool) {
        let Some(cfg) = &self.applier.cfg else {
            let _ = msg.reply.send(Err(OpError::Busy(
                "this pmi cannot apply a file (it was not started with one)".into(),
            )));
            return;
        };
        self.applier.busy = true;
        let file = msg.req.file.clone().unwrap_or_else(|| cfg.file.clone());
        let (base, mut opts) = (cfg.base_dir.clone(), cfg.load.clone());
        opts.only_missing_warns = true;
        let tx = self.applier.loaded_tx.clone();
        let path = file.clone();
        drop(tokio::task::spawn_blocking(move || {
            // A bug in the loader must not leave the apply machinery busy for ever.
            let load = std::panic::AssertUnwindSafe(|| config::load(&path, &base, &opts));
            let result = std::panic::catch_unwind(load).unwrap_or_else(|_| {
                Err(ConfigError {
                    diagnostics: vec![config::Diagnostic {
                        file: path.clone(),
                        line: None,
                        column: None,
                        app: None,
                        field: None,
                        message: "internal error while reading the file (please report); nothing was changed".into(),
                    }],
                    warnings: Vec::new(),
                })
            });
            let _ = tx.send(LoadDone {
                msg,
                queued,
                file: path,
                result,
            });
        }));
    }

    /// A load finished: report an invalid file, or plan and start the changes.
    pub(crate) fn on_loaded(&mut self, done: LoadDone) -> Vec<Action> {
        let LoadDone {
            msg,
            queued,
            file,
            result,
        } = done;
        let mut report = ApplyReport {
            file: file.display().to_string(),
            dry_run: msg.req.dry_run,
            queued,
            ..ApplyReport::default()
        };
        if self.state.shutting_down {
            let _ = msg.reply.send(Err(OpError::ShuttingDown));
            self.next_apply();
            return Vec::new();
        }
        let loaded = match result {
            Ok(l) => l,
            Err(e) => {
                report.errors = e.diagnostics.iter().map(|d| d.to_string()).collect();
                report.warnings = e.warnings.iter().map(|d| d.to_string()).collect();
                for d in &report.errors {
                    tracing::error!("apply: {d}");
                }
                tracing::error!("apply: {} is invalid; nothing was changed", report.file);
                let _ = msg.reply.send(Ok(report));
                self.next_apply();
                return Vec::new();
            }
        };
        report.warnings = loaded.warnings.iter().map(|d| d.to_string()).collect();
        let old: Vec<&AppSpec> = self.state.apps.iter().map(|a| a.spec.as_ref()).collect();
        let plan = diff::diff(&old, &loaded.spec.apps);
        self.plan_settings(&loaded.spec.settings, &mut report);
        if msg.req.dry_run {
            report.changes = plan.iter().map(|p| change_of(&p.name, &p.plan)).collect();
            let _ = msg.reply.send(Ok(report));
            self.next_apply();
            return Vec::new();
        }
        for w in &report.warnings {
            tracing::warn!("apply: {w}");
        }
        for s in &report.needs_restart {
            tracing::warn!("apply: {s}");
        }
        let from_watcher = msg.req.from_watcher;
        self.begin(plan, loaded, file, report, (msg.reply, from_watcher))
    }

    /// What the `pmi:` block changes: settings that apply at once, and those that need a restart.
    fn plan_settings(&self, new: &Settings, report: &mut ApplyReport) {
        let Some(cfg) = &self.applier.cfg else { return };
        let old = cfg.file_settings.clone().with_flags(&cfg.flags);
        let eff = new.clone().with_flags(&cfg.flags);
        let (live, restart) = diff::settings(&old, &eff);
        report.settings_applied = live.iter().map(|s| format!("pmi.{s}")).collect();
        report.needs_restart = restart
            .iter()
            .map(|s| format!("pmi.{s} changed: it takes effect when pmi restarts"))
            .collect();
    }

    /// Starts every change at once (reloads then go one instance at a time).
    fn begin(
        &mut self,
        plan: Vec<diff::AppPlan>,
        loaded: Loaded,
        file: PathBuf,
        mut report: ApplyReport,
        (reply, from_watcher): (oneshot::Sender<Result<ApplyReport, OpError>>, bool),
    ) -> Vec<Action> {
        let now = Now::read();
        let mut actions = Vec::new();
        let mut steps = Vec::new();
        self.apply_settings(&loaded.spec.settings, &file);
        let mut new_apps: Vec<Option<AppSpec>> = loaded.spec.apps.into_iter().map(Some).collect();
        for p in plan {
            let change = change_of(&p.name, &p.plan);
            tracing::info!("apply: {change}");
            report.changes.push(change);
            let idx = report.changes.len() - 1;
            let step = match p.plan {
                Plan::Unchanged(_) => None,
                Plan::Remove => Some(self.remove(&p.name, &mut actions, now)),
                Plan::Add(i) => new_apps[i]
                    .take()
                    .map(|spec| self.add(spec, &mut actions, now)),
                Plan::Change(i, d) => new_apps[i]
                    .take()
                    .map(|spec| self.change(spec, &d, &mut actions, now)),
            };
            if let Some(mut s) = step {
                s.change = idx;
                steps.push(s);
            }
        }
        self.arm_memory_check(now);
        self.applier.job = Some(Job {
            report,
            from_watcher,
            deadline: now.mono + APPLY_LIMIT,
            steps,
            reply,
        });
        actions
    }

    /// The `pmi:` settings that change live, and the new apps file.
    fn apply_settings(&mut self, new: &Settings, file: &std::path::Path) {
        let Some(cfg) = self.applier.cfg.as_mut() else {
            return;
        };
        cfg.file = file.to_path_buf();
        cfg.file_settings = new.clone();
        let eff = new.clone().with_flags(&cfg.flags);
        self.file = file.display().to_string();
        self.state.auto_exit = eff.auto_exit.unwrap_or(true);
        let watch_was = self.settings.watch_config.unwrap_or(false);
        self.settings.auto_exit = eff.auto_exit;
        self.settings.kill_signal = eff.kill_signal;
        self.settings.kill_timeout = eff.kill_timeout;
        self.settings.watch_config = eff.watch_config;
        if self.settings.memory_check_interval != eff.memory_check_interval {
            self.settings.memory_check_interval = eff.memory_check_interval;
            self.memory_next = None;
        }
        let watch_now = eff.watch_config.unwrap_or(false);
        if watch_now || watch_was {
            let target = watch_now.then(|| file.to_path_buf());
            self.applier.order(WatchOrder::ConfigFile(target));
        }
    }

    /// Arms the memory check when an app has a limit and the check is not armed.
    fn arm_memory_check(&mut self, now: Now) {
        let limited = self
            .state
            .apps
            .iter()
            .any(|a| a.spec.max_memory_restart.is_some());
        if !limited {
            self.memory_next = None;
        } else if self.memory_next.is_none() {
            self.memory_next = Some(now.mono + self.memory_interval());
        }
    }

    /// A removed app: graceful stop of every instance (a scale to 0), then forgotten.
    fn remove(&mut self, name: &str, actions: &mut Vec<Action>, now: Now) -> Step {
        if let Some(ai) = self.state.app_index(name) {
            // Nothing may bring it back while it stops: no cron, no file watcher.
            self.state.apps[ai].cron_next = None;
            self.state.apps[ai].cron_suspended = true;
            let key = self.state.apps[ai].key;
            self.applier.order(WatchOrder::App { key, spec: None });
        }
        let op = Op::Scale {
            app: name.to_string(),
            count: ScaleCount::Set(0),
        };
        let wait = Some(self.sub_op(op, actions, now));
        Step {
            change: 0,
            wait,
            next: VecDeque::from([Next::Forget(name.to_string())]),
        }
    }

    /// A new app: its instances, started when `autostart`.
    fn add(&mut self, spec: AppSpec, actions: &mut Vec<Action>, now: Now) -> Step {
        let key = self.applier.next_key;
        self.applier.next_key += 1;
        let spec = Arc::new(spec);
        let ai = self.state.apps.len();
        self.state.apps.push(AppState {
            key,
            cron_next: spec
                .cron_restart
                .as_ref()
                .and_then(|c| c.next_after(now.wall)),
            spec: spec.clone(),
            cron_suspended: false,
            shutdown_signalled: false,
        });
        let ids: Vec<InstId> = (0..spec.instances)
            .map(|i| self.state.add_instance(ai, i))
            .collect();
        if spec.watch.is_some() {
            self.applier.order(WatchOrder::App {
                key,
                spec: Some(spec.clone()),
            });
        }
        let mut step = Step {
            change: 0,
            wait: None,
            next: VecDeque::new(),
        };
        if spec.autostart {
            actions.extend(self.state.start_ids(&ids, now));
            let wait = Wait::Running(ids.iter().map(|id| (*id, None)).collect());
            step.wait = Some(self.sub_pending(wait, ids));
        }
        step
    }

    /// A changed app: the new spec in place (supervision takes effect at once), then a scale
    /// and/or a reload of the instances that run.
    fn change(&mut self, spec: AppSpec, d: &Delta, actions: &mut Vec<Action>, now: Now) -> Step {
        let mut step = Step {
            change: 0,
            wait: None,
            next: VecDeque::new(),
        };
        let Some(ai) = self.state.app_index(&spec.name) else {
            return step;
        };
        let name = spec.name.clone();
        let spec = Arc::new(spec);
        let app = &mut self.state.apps[ai];
        app.spec = spec.clone();
        if d.supervision.contains(&"cron_restart") {
            app.cron_next = spec
                .cron_restart
                .as_ref()
                .and_then(|c| c.next_after(now.wall));
        }
        if d.supervision.contains(&"watch") {
            let key = app.key;
            self.applier.order(WatchOrder::App {
                key,
                spec: Some(spec.clone()),
            });
        }
        if !d.process.is_empty() {
            // The instances that keep running (a scale-down removes the highest indexes) and
            // are not stopped: a stopped instance gets the new spec when it is started.
            let keep = d.instances.map_or(usize::MAX, |[_, to]| to as usize);
            let ids: Vec<InstId> = self
                .state
                .of_app(ai)
                .into_iter()
                .take(keep)
                .filter(|id| {
                    self.state
                        .get(*id)
                        .is_some_and(|i| i.phase != Phase::Stopped)
                })
                .collect();
            step.next = reload_ops(&ids);
        }
        if let Some([_, to]) = d.instances {
            let op = Op::Scale {
                app: name,
                count: ScaleCount::Set(to),
            };
            step.wait = Some(self.sub_op(op, actions, now));
        }
        step
    }

    /// Runs an op as a control request would, with its reply coming back to the apply.
    fn sub_op(
        &mut self,
        op: Op,
        actions: &mut Vec<Action>,
        now: Now,
    ) -> oneshot::Receiver<OpReply> {
        let (tx, rx) = oneshot::channel();
        let (a, pending) = ops::accept(&mut self.state, ControlMsg { op, reply: tx }, now);
        actions.extend(a);
        self.pending.extend(pending);
        rx
    }

    /// Waits as a control request would, for a change already made.
    fn sub_pending(&mut self, wait: Wait, ids: Vec<InstId>) -> oneshot::Receiver<OpReply> {
        let (tx, rx) = oneshot::channel();
        self.pending.push(Pending {
            wait,
            ids,
            reply: tx,
        });
        rx
    }

    /// When the apply under way gives up waiting, for the loop's next wake-up.
    pub(crate) fn apply_deadline(&self) -> Option<tokio::time::Instant> {
        self.applier.job.as_ref().map(|j| j.deadline)
    }

    /// After every event: answered steps start their next op; a finished apply is answered.
    /// Returns pmi's exit code if carrying out the new actions ends pmi.
    pub(crate) fn settle_apply(&mut self) -> Option<i32> {
        for _ in 0..MAX_ROUNDS {
            let (actions, progressed) = self.advance_apply();
            if !actions.is_empty() {
                let finish = self.execute(actions);
                self.answer_pending();
                if finish.is_some() {
                    return finish;
                }
            }
            if !progressed {
                break;
            }
        }
        None
    }

    fn advance_apply(&mut self) -> (Vec<Action>, bool) {
        let Some(mut job) = self.applier.job.take() else {
            return (Vec::new(), false);
        };
        let now = Now::read();
        let mut actions = Vec::new();
        let mut progressed = false;
        let overdue = now.mono >= job.deadline;
        for step in &mut job.steps {
            if let Some(rx) = &mut step.wait {
                let outcome = match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) if overdue => {
                        Err(OpError::Busy(format!(
                            "not done after {} s; pmi stopped waiting (see `pmi status`)",
                            APPLY_LIMIT.as_secs()
                        )))
                    }
                    Err(oneshot::error::TryRecvError::Empty) => continue,
                    Err(oneshot::error::TryRecvError::Closed) => Err(OpError::Exiting),
                    Ok(r) => r,
                };
                step.wait = None;
                progressed = true;
                if let Err(e) = outcome {
                    // The change stops here (a reload does not go on to the next instance).
                    job.report.changes[step.change].error = Some(e.to_string());
                    step.next.clear();
                }
            }
            while step.wait.is_none() {
                let Some(next) = step.next.pop_front() else {
                    break;
                };
                progressed = true;
                match next {
                    Next::Op(op) => step.wait = Some(self.sub_op(op, &mut actions, now)),
                    Next::Forget(name) => {
                        if let Some(ai) = self.state.app_index(&name) {
                            self.state.forget_app(ai);
                        }
                    }
                }
            }
        }
        let done = job
            .steps
            .iter()
            .all(|s| s.wait.is_none() && s.next.is_empty());
        if done {
            self.finish_apply(job);
            progressed = true;
        } else {
            self.applier.job = Some(job);
        }
        (actions, progressed)
    }

    fn finish_apply(&mut self, job: Job) {
        let r = &job.report;
        for c in r.changes.iter().filter(|c| c.error.is_some()) {
            tracing::warn!("apply: {c}");
        }
        let failed = r.changes.iter().filter(|c| c.error.is_some()).count();
        let by = if job.from_watcher {
            " (watch_config)"
        } else {
            ""
        };
        if failed > 0 {
            tracing::warn!("apply: {} applied{by}; {failed} change(s) failed", r.file);
        } else {
            tracing::info!("apply: {} applied{by}", r.file);
        }
        let _ = job.reply.send(Ok(job.report));
        self.next_apply();
    }

    /// The apply under way is over: the next queued one starts.
    fn next_apply(&mut self) {
        self.applier.busy = false;
        if let Some(msg) = self.applier.queue.pop_front() {
            self.load(msg, true);
        }
    }
}

/// The report line of one app's plan.
fn change_of(name: &str, plan: &Plan) -> AppChange {
    let (kind, fields, instances) = match plan {
        Plan::Add(_) => (ChangeKind::Added, Vec::new(), None),
        Plan::Remove => (ChangeKind::Removed, Vec::new(), None),
        Plan::Unchanged(_) => (ChangeKind::Unchanged, Vec::new(), None),
        Plan::Change(_, d) => {
            let kind = if !d.process.is_empty() {
                ChangeKind::Reloaded
            } else if d.instances.is_some() {
                ChangeKind::Scaled
            } else {
                ChangeKind::Updated
            };
            let fields = d.process.iter().chain(&d.supervision);
            (kind, fields.map(|f| f.to_string()).collect(), d.instances)
        }
    };
    AppChange {
        app: name.to_string(),
        kind,
        fields,
        instances,
        error: None,
    }
}
