//! Readiness, health, watchdog and start order as decisions on `State`: pure, time passed in.
//!
//! Invariant: nothing here touches the OS. The loop feeds in what happened to an instance's
//! current process (spawned, a notify batch, a check result, pm2's ready message, listening on
//! the shared socket, a tick) and carries out the `Action`s (`RunCheck` starts a probe). Each
//! input names the pid it is about; one for a process that is gone is ignored, so a late result
//! can never act on the next process. Start order runs after every event (`advance_start_order`,
//! from `after_event`): its facts are latched in `AppState::facts`.

use tokio::time::Instant;

use super::ops::status_of;
use super::policy::{Action, Level};
use super::readiness::{CheckKind, CheckResult, Config, Decision, LastCheck, ReadyBy, Tracker};
use super::start_order::{self, AppFacts, Gate, OrderInput};
use super::state::{InstId, Instance, Now, Phase, State};
use crate::config::checks::ReadySpec;
use crate::os::notify::Notice;
use crate::status::Status;

impl State {
    /// The process of `id` was just spawned (after `on_spawned`): its tracker starts now.
    pub fn track_spawn(&mut self, id: InstId, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(spec) = self.spec_of(id).cloned() else {
            return out;
        };
        let Some(inst) = self.get_mut(id) else {
            return out;
        };
        // A Node instance on pmi's sockets is ready, by default, once it listens there.
        let node_cluster = super::cluster::gets_preload(&spec);
        let cfg = Config::from_spec(
            &spec.ready,
            spec.health.as_ref(),
            spec.watchdog,
            spec.listen_timeout,
            node_cluster,
            inst.replacement,
        );
        let (tracker, d) = Tracker::new(cfg, now.mono);
        inst.tracker = Some(tracker);
        inst.replacement = false;
        inst.replacement_failed = None;
        self.apply(id, d, now, &mut out);
        self.after_event(now, &mut out);
        out
    }

    /// A batch from the instance's notify socket (sent by process `pid`'s group).
    pub fn on_notice(&mut self, id: InstId, pid: i32, n: &Notice, now: Now) -> Vec<Action> {
        self.feed(id, pid, now, |t| t.on_notify(n, now.mono))
    }

    /// A check of process `pid` finished.
    pub fn on_check_done(
        &mut self,
        id: InstId,
        pid: i32,
        r: &CheckResult,
        now: Now,
    ) -> Vec<Action> {
        if let Some(i) = self.get_mut(id).filter(|i| i.phase.pid() == Some(pid)) {
            let s = &mut i.checks;
            let secs = r.took.as_secs_f64();
            s.runs += 1;
            s.failures += u64::from(!r.ok);
            s.seconds_total += secs;
            s.last_seconds = secs;
            let last = LastCheck::of(r);
            match r.kind {
                CheckKind::Ready => s.last_ready = Some(last),
                CheckKind::Health => s.last_health = Some(last),
            }
        }
        self.feed(id, pid, now, |t| t.on_check_result(r, now.mono))
    }

    /// pm2's `process.send('ready')`, from the instance's Node IPC channel (cluster wiring).
    pub fn on_ready_message(&mut self, id: InstId, pid: i32, now: Now) -> Vec<Action> {
        self.feed(id, pid, now, Tracker::on_ready_message)
    }

    /// A Node cluster instance began listening on the shared socket (cluster wiring).
    pub fn on_listening(&mut self, id: InstId, pid: i32, now: Now) -> Vec<Action> {
        self.feed(id, pid, now, Tracker::on_listening)
    }

    fn feed(
        &mut self,
        id: InstId,
        pid: i32,
        now: Now,
        f: impl FnOnce(&mut Tracker) -> Vec<Decision>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(t) = self
            .get_mut(id)
            .filter(|i| matches!(i.phase, Phase::Running { pid: p, .. } if p == pid))
            .and_then(|i| i.tracker.as_mut())
        else {
            return out;
        };
        let d = f(t);
        self.apply(id, d, now, &mut out);
        self.after_event(now, &mut out);
        out
    }

    /// The earliest tracker deadline of a running process.
    pub(super) fn readiness_deadline(&self) -> Option<Instant> {
        self.instances
            .iter()
            .filter(|i| matches!(i.phase, Phase::Running { .. }))
            .filter_map(|i| i.tracker.as_ref()?.next_deadline())
            .min()
    }

    /// Runs the trackers that are due (from `on_tick`).
    pub(super) fn readiness_tick(&mut self, now: Now, out: &mut Vec<Action>) {
        let due: Vec<InstId> = self
            .instances
            .iter()
            .filter(|i| matches!(i.phase, Phase::Running { .. }))
            .filter(|i| {
                i.tracker
                    .as_ref()
                    .and_then(Tracker::next_deadline)
                    .is_some_and(|d| d <= now.mono)
            })
            .map(|i| i.id)
            .collect();
        for id in due {
            let Some(t) = self.get_mut(id).and_then(|i| i.tracker.as_mut()) else {
                continue;
            };
            let d = t.on_tick(now.mono);
            self.apply(id, d, now, out);
        }
    }

    /// Carries out a tracker's decisions for a running instance.
    fn apply(&mut self, id: InstId, ds: Vec<Decision>, now: Now, out: &mut Vec<Action>) {
        for d in ds {
            let Some(inst) = self.get(id) else { return };
            let Phase::Running { pid, since } = inst.phase else {
                return;
            };
            let name = format!("{}:{}", self.apps[inst.app].spec.name, inst.index);
            match d {
                Decision::Online {
                    by: ReadyBy::Spawned,
                } => {}
                Decision::Online {
                    by: ReadyBy::Timeout,
                } => {}
                Decision::Online { by } => out.push(Action::Note(
                    Level::Info,
                    format!("{name} ready ({})", ready_word(by)),
                )),
                Decision::RunCheck { kind, seq, timeout } => out.push(Action::RunCheck {
                    id,
                    pid,
                    kind,
                    seq,
                    timeout,
                }),
                Decision::Restart(why) => {
                    out.push(Action::Note(
                        Level::Warn,
                        format!("{name} {why}: restarting"),
                    ));
                    let uptime = now.mono.saturating_duration_since(since);
                    if let Some(i) = self.get_mut(id) {
                        i.check_restart = Some((why.to_string(), uptime));
                    }
                    // Graceful, and counted under the unstable-restart rules once the stop is
                    // done (`on_group_empty`). An app with a shared socket gets a reload here
                    // once the cluster wiring provides one (it replaces this call).
                    self.restart_ids(&[id], now, out);
                }
                Decision::ReplacementFailed => {
                    // The simple path (no shared socket): the old process is gone already, so
                    // the replacement keeps running, online, and the reload that waits for it
                    // fails with this reason (`ops::Wait::Ready`). The cluster engineer's
                    // rolling reload stops the replacement here and keeps the old one serving.
                    let ms = self.spec_of(id).map_or(0, |s| s.listen_timeout.as_millis());
                    let why = format!("not ready within listen_timeout ({ms} ms)");
                    out.push(Action::Note(
                        Level::Warn,
                        format!("{name}: reload replacement {why}"),
                    ));
                    if let Some(i) = self.get_mut(id) {
                        i.replacement_failed = Some(why);
                    }
                }
                Decision::Warn(m) => out.push(Action::Note(Level::Warn, format!("{name}: {m}"))),
            }
        }
    }

    /// The status readers see: the phase, refined by readiness and start order.
    pub fn status(&self, i: &Instance) -> Status {
        match &i.phase {
            Phase::Waiting => match self.apps[i.app].gate {
                Gate::Blocked(_) => Status::Blocked,
                _ => Status::Waiting,
            },
            Phase::Running { .. } if i.tracker.as_ref().is_some_and(|t| !t.is_online()) => {
                Status::Launching
            }
            Phase::Stopping { .. } | Phase::Draining { .. } if i.check_restart.is_some() => {
                Status::Unhealthy
            }
            p => status_of(p),
        }
    }

    /// Start order facts of every app as they are now (not latched), in one pass over the
    /// instances (this runs after every event). `container`: for the container's readiness,
    /// where an app waiting for pm2's ready message (`wait_ready`) counts once it is online
    /// after `listen_timeout`, as pm2 treats it; dependents still wait for the message.
    pub fn current_facts(&self, container: bool) -> Vec<AppFacts> {
        #[derive(Clone, Copy)]
        struct Acc {
            any: bool,
            started: bool,
            ready: bool,
            done: bool,
            ok: bool,
            errored: bool,
        }
        let mut acc = vec![
            Acc {
                any: false,
                started: false,
                ready: true,
                done: true,
                ok: true,
                errored: false,
            };
            self.apps.len()
        ];
        for i in &self.instances {
            let Some(a) = acc.get_mut(i.app) else {
                continue;
            };
            let running = matches!(
                i.phase,
                Phase::Running { .. } | Phase::Stopping { .. } | Phase::Draining { .. }
            );
            a.any = true;
            a.started |= running || i.last_exit.is_some();
            let pm2_online = container && self.apps[i.app].spec.ready == ReadySpec::Message;
            a.ready &= matches!(i.phase, Phase::Running { .. })
                && i.tracker
                    .as_ref()
                    .is_some_and(|t| t.is_ready() || (pm2_online && t.is_online()));
            a.done &= i.phase == Phase::Stopped && i.last_exit.is_some();
            a.ok &= i.last_exit.is_some_and(|e| !e.failed);
            a.errored |= i.phase == Phase::Errored;
        }
        acc.into_iter()
            .map(|a| AppFacts {
                started: a.started,
                ready: a.any && a.ready,
                completed: (a.any && a.done).then_some(a.ok),
                errored: a.errored,
            })
            .collect()
    }

    /// Every autostart app is ready (a completed job counts); `Err`: the one-line reason of the
    /// first app that holds it back. For `/readyz`, `pmi health --ready` and pmi's READY=1.
    pub fn container_ready(&self) -> Result<(), String> {
        if self.shutting_down {
            return Err("pmi is shutting down".into());
        }
        let facts = self.current_facts(true);
        start_order::container_ready(self.apps.iter().zip(&facts).map(|(a, f)| {
            let f = AppFacts {
                // A blocked app holds readiness back as an errored one does.
                errored: f.errored || matches!(a.gate, Gate::Blocked(_)),
                ..*f
            };
            (a.spec.name.as_str(), a.spec.autostart, f, &a.gate)
        }))
    }

    /// Latches the facts, recomputes every gate, starts the waiting apps whose gate opened.
    pub(super) fn advance_start_order(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.apps.iter().all(|a| a.spec.depends_on.is_empty()) {
            return;
        }
        for (a, cur) in self.current_facts(false).into_iter().enumerate() {
            let f = &mut self.apps[a].facts;
            f.started |= cur.started;
            f.ready |= cur.ready;
            f.completed = cur.completed;
            f.errored = cur.errored;
        }
        let gates = {
            let inputs: Vec<OrderInput<'_>> = self
                .apps
                .iter()
                .map(|a| OrderInput {
                    name: &a.spec.name,
                    deps: &a.spec.depends_on,
                    facts: a.facts,
                })
                .collect();
            start_order::gates(&inputs)
        };
        for (a, gate) in gates.into_iter().enumerate() {
            let waiting: Vec<InstId> = self
                .of_app(a)
                .into_iter()
                .filter(|id| self.get(*id).is_some_and(|i| i.phase == Phase::Waiting))
                .collect();
            let name = self.apps[a].spec.name.clone();
            if gate != self.apps[a].gate && !waiting.is_empty() {
                let msg = match gate.describe() {
                    Some(d) => format!("{name}: {d}"),
                    None => format!("{name}: dependencies met, starting"),
                };
                let level = match gate {
                    Gate::Blocked(_) => Level::Warn,
                    _ => Level::Info,
                };
                out.push(Action::Note(level, msg));
            }
            if gate == Gate::Go {
                for id in waiting {
                    self.schedule_spawn(id, now, out);
                }
            }
            self.apps[a].gate = gate;
        }
    }

    /// A health or watchdog restart of `self.instances[pos]`, once the old process is gone: it
    /// counts like a crash, under the unstable-restart rules (`min_uptime`, `max_restarts`,
    /// delays, backoff).
    pub(super) fn restart_after_check(
        &mut self,
        pos: usize,
        uptime: std::time::Duration,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        let spec = self.apps[self.instances[pos].app].spec.clone();
        let inst = &mut self.instances[pos];
        match super::policy::next_delay(inst, &spec.restart, uptime) {
            Some(delay) => {
                inst.restarts += 1;
                inst.phase = Phase::WaitingRestart {
                    until: now.mono + delay,
                };
                if delay.is_zero() {
                    out.push(Action::Spawn(inst.id));
                }
            }
            None => {
                inst.phase = Phase::Errored;
                out.push(Action::Note(
                    Level::Warn,
                    format!(
                        "{}:{} errored: {} unstable restarts; not restarting. Fix the app, then `pmi restart {}`",
                        spec.name, inst.index, inst.unstable_restarts, spec.name
                    ),
                ));
            }
        }
    }

    /// New instances of an app with `depends_on` (`pmi apply`): they wait for the start order.
    pub fn wait_for_order(&mut self, ids: &[InstId], now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        for &id in ids {
            if let Some(i) = self.get_mut(id).filter(|i| i.phase == Phase::Stopped) {
                i.phase = Phase::Waiting;
            }
        }
        self.after_event(now, &mut out);
        out
    }

    /// An app is blocked by its start order (counts as errored for `pmi health`, auto-exit).
    pub fn any_blocked(&self) -> bool {
        self.instances
            .iter()
            .any(|i| self.status(i) == Status::Blocked)
    }
}

/// A short word for the log line "web:0 ready (http check)".
fn ready_word(by: ReadyBy) -> &'static str {
    match by {
        ReadyBy::Spawned => "spawned",
        ReadyBy::Message => "ready message",
        ReadyBy::Notify => "READY=1",
        ReadyBy::Listening => "listening",
        ReadyBy::Check => "ready check passed",
        ReadyBy::Timeout => "listen_timeout",
    }
}
