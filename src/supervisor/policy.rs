//! Every decision of the supervisor, as pure functions of (state, event, now) → actions.
//!
//! Invariant: nothing here touches the OS or reads a clock. Time comes in as `Now`; effects go out
//! as `Action`s that the supervisor loop carries out and feeds back (`on_spawned`,
//! `on_spawn_failed`). That keeps pm2's rules testable in a table, without processes.

use std::time::Duration;

use tokio::time::Instant;

use super::state::{InstId, Instance, LastExit, Now, Phase, State, Then};
use crate::config::RestartPolicy;
use crate::exit::ExitStatus;

/// Exponential backoff grows by this factor…
const BACKOFF_FACTOR: f64 = 1.5;
/// …up to this delay (pm2's cap).
const BACKOFF_CAP: Duration = Duration::from_millis(15_000);
/// A run this long resets the backoff and the unstable-restart count (pm2's reset timer for the
/// backoff; pmi applies it to the unstable count too, so that an app that crashes quickly once a
/// week is not `errored` after sixteen weeks).
pub const STABLE_RUN: Duration = Duration::from_millis(30_000);
/// Past this many consecutive unstable restarts with no delay configured, pmi waits at least
/// `SPIN_GUARD_DELAY` between starts: a crash loop never spins the CPU.
const SPIN_GUARD_AFTER: u32 = 16;
const SPIN_GUARD_DELAY: Duration = Duration::from_millis(1000);

/// An effect for the supervisor loop to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a process for this instance, then report `on_spawned` or `on_spawn_failed`.
    Spawn(InstId),
    /// Send a signal to a process group.
    KillGroup { pgid: i32, sig: i32 },
    /// SIGKILL a process group, first naming what is left of it (pids and commands, read by the
    /// supervisor before the kill) in pmi's log after `why`; nothing is logged at `Info` when
    /// the group is already empty.
    KillLeftovers {
        pgid: i32,
        level: Level,
        why: String,
    },
    /// Nothing runs any more: clean up the strays and exit with this code.
    Finish { code: i32 },
    /// A message for pmi's log.
    Note(Level, String),
    /// An instance is gone for good (scale-down): drop what is kept for it.
    Removed(InstId),
    /// Start a ready or health check of process `pid` and report it with `on_check_done`.
    RunCheck {
        id: InstId,
        pid: i32,
        kind: super::readiness::CheckKind,
        seq: u64,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// Counts an unstable run and picks the delay before the next one; `None` once the app has had
/// `max_restarts` unstable restarts in a row. A run of `STABLE_RUN` resets the count and backoff.
pub(super) fn next_delay(
    inst: &mut Instance,
    policy: &RestartPolicy,
    uptime: Duration,
) -> Option<Duration> {
    if uptime >= STABLE_RUN {
        inst.backoff = None;
        inst.unstable_restarts = 0;
    }
    if uptime < policy.min_uptime {
        inst.unstable_restarts += 1;
        if inst.unstable_restarts >= policy.max_restarts {
            return None;
        }
    }
    let mut delay = match policy.exp_backoff_restart_delay {
        Some(base) => {
            let d = next_backoff(base, inst.backoff);
            inst.backoff = Some(d);
            d
        }
        None => policy.restart_delay,
    };
    if inst.unstable_restarts > SPIN_GUARD_AFTER && delay < SPIN_GUARD_DELAY {
        delay = SPIN_GUARD_DELAY;
    }
    Some(delay)
}

/// The next exponential-backoff delay after `prev` (none yet: the base).
pub fn next_backoff(base: Duration, prev: Option<Duration>) -> Duration {
    match prev {
        None => base,
        Some(p) => {
            let ms = (p.as_millis() as f64 * BACKOFF_FACTOR).floor();
            Duration::from_millis(ms as u64).min(BACKOFF_CAP)
        }
    }
}

fn label(st: &State, inst: &Instance) -> String {
    format!("{}:{}", st.apps[inst.app].spec.name, inst.index)
}

impl State {
    /// Starts every autostart instance.
    pub fn on_start(&mut self, now: Now) -> Vec<Action> {
        let ids: Vec<InstId> = self
            .instances
            .iter()
            .filter(|i| self.apps[i.app].spec.autostart)
            .map(|i| i.id)
            .collect();
        let mut out = Vec::new();
        for id in ids {
            match self.get(id).map(|i| &self.apps[i.app].spec.depends_on) {
                // The start order (`advance_start_order`, in `after_event`) starts it.
                Some(deps) if !deps.is_empty() => {
                    if let Some(i) = self.get_mut(id) {
                        i.phase = Phase::Waiting;
                    }
                }
                _ => self.schedule_spawn(id, now, &mut out),
            }
        }
        self.after_event(now, &mut out);
        out
    }

    /// A spawned process is registered: from now on the reaper can match its exit.
    pub fn on_spawned(&mut self, id: InstId, pid: i32, now: Now) {
        if let Some(inst) = self.get_mut(id) {
            inst.phase = Phase::Running {
                pid,
                since: now.mono,
            };
            inst.started_wall_ms = Some(now.wall_ms());
        }
    }

    /// The process could not be started: an exit with the shell's code (126/127) and no uptime.
    pub fn on_spawn_failed(&mut self, id: InstId, code: i32, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(inst) = self.get_mut(id) {
            inst.phase = Phase::Running {
                pid: 0,
                since: now.mono,
            };
            self.instance_exited(id, ExitStatus::Code(code), now, &mut out);
        }
        self.after_event(now, &mut out);
        out
    }

    /// The reaper collected `pid`.
    pub fn on_exit(&mut self, pid: i32, status: ExitStatus, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        match self.by_pid(pid) {
            Some(id) => self.instance_exited(id, status, now, &mut out),
            None => self.reaped_orphans += 1,
        }
        self.after_event(now, &mut out);
        out
    }

    fn instance_exited(&mut self, id: InstId, status: ExitStatus, now: Now, out: &mut Vec<Action>) {
        let replacement = self.is_reload_replacement(id);
        self.exit_seq += 1;
        let seq = self.exit_seq;
        let shutting_down = self.shutting_down;
        let Some(pos) = self.instances.iter().position(|i| i.id == id) else {
            return;
        };
        let spec = self.apps[self.instances[pos].app].spec.clone();
        let inst = &mut self.instances[pos];
        let name = format!("{}:{}", spec.name, inst.index);
        inst.started_wall_ms = None;
        inst.tracker = None;
        match inst.phase.clone() {
            Phase::Stopping {
                pid,
                then,
                deadline,
                ..
            } => {
                inst.last_exit = Some(LastExit {
                    status,
                    wall_ms: now.wall_ms(),
                    seq,
                    failed: false,
                });
                out.push(Action::Note(
                    Level::Info,
                    format!("{name} stopped ({status})"),
                ));
                // The app's own process is gone: what is left of its group (a shell's background
                // `sleep`, which ignores SIGINT) is killed at once, and the stop was clean if the
                // leader made it within kill_timeout (a SIGKILL at the deadline marks it unclean).
                // The supervisor reports `on_group_empty` once the group is gone.
                out.push(Action::KillLeftovers {
                    pgid: pid,
                    level: Level::Info,
                    why: format!(
                        "{name}: its process exited; SIGKILL to what is left of its group"
                    ),
                });
                inst.phase = Phase::Draining {
                    pgid: pid,
                    deadline,
                    killed: true,
                    then,
                };
            }
            Phase::Running { pid, since } => {
                let uptime = now.mono.saturating_duration_since(since);
                let policy = &spec.restart;
                let stop_code =
                    matches!(status, ExitStatus::Code(c) if policy.stop_exit_codes.contains(&c));
                inst.last_exit = Some(LastExit {
                    status,
                    wall_ms: now.wall_ms(),
                    seq,
                    failed: !status.is_success() && !stop_code,
                });
                if pid > 0 {
                    out.push(Action::Note(
                        Level::Info,
                        format!("{name} exited ({status}) after {} ms", uptime.as_millis()),
                    ));
                }
                // A reload's replacement that exits has failed; the reload removes it.
                if shutting_down || !policy.autorestart || stop_code || replacement {
                    inst.phase = Phase::Stopped;
                    return;
                }
                let Some(delay) = next_delay(inst, policy, uptime) else {
                    inst.phase = Phase::Errored;
                    out.push(Action::Note(
                            Level::Warn,
                            format!(
                                "{name} errored: {} unstable restarts (each run shorter than min_uptime {} ms); not restarting. Fix the app, then `pmi restart {}`",
                                inst.unstable_restarts,
                                policy.min_uptime.as_millis(),
                                spec.name
                            ),
                    ));
                    return;
                };
                inst.restarts += 1;
                inst.phase = Phase::WaitingRestart {
                    until: now.mono + delay,
                };
                if delay.is_zero() {
                    out.push(Action::Spawn(id));
                } else {
                    out.push(Action::Note(
                        Level::Info,
                        format!("{name} restarting in {} ms", delay.as_millis()),
                    ));
                }
            }
            _ => {}
        }
    }

    /// The process group of a draining instance has no member left: the stop is complete.
    pub fn on_group_empty(&mut self, id: InstId, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        let shutting_down = self.shutting_down;
        let Some(pos) = self.instances.iter().position(|i| i.id == id) else {
            return out;
        };
        let inst = &mut self.instances[pos];
        let Phase::Draining { then, .. } = inst.phase else {
            return out;
        };
        let check_restart = inst.check_restart.take();
        match then {
            Then::Restart if !shutting_down && check_restart.is_some() => {
                let uptime = check_restart.map_or(Duration::ZERO, |c| c.1);
                self.restart_after_check(pos, uptime, now, &mut out);
            }
            Then::Restart if !shutting_down => {
                inst.restarts += 1;
                inst.unstable_restarts = 0;
                inst.backoff = None;
                inst.phase = Phase::WaitingRestart { until: now.mono };
                out.push(Action::Spawn(id));
            }
            Then::Stop | Then::Restart => inst.phase = Phase::Stopped,
            Then::Remove => {
                self.instances.remove(pos);
                out.push(Action::Removed(id));
            }
        }
        self.after_event(now, &mut out);
        out
    }

    /// Process groups of instances whose leader exited during a stop.
    pub fn draining(&self) -> Vec<(InstId, i32)> {
        self.instances
            .iter()
            .filter_map(|i| match i.phase {
                Phase::Draining { pgid, .. } => Some((i.id, pgid)),
                _ => None,
            })
            .collect()
    }

    /// A deadline passed: due restarts, stop escalations, cron.
    pub fn on_tick(&mut self, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        let mut due = Vec::new();
        let shutting_down = self.shutting_down;
        for i in 0..self.instances.len() {
            let name = label(self, &self.instances[i]);
            let inst = &mut self.instances[i];
            match &mut inst.phase {
                Phase::WaitingRestart { until } if *until <= now.mono => due.push(inst.id),
                Phase::Stopping {
                    pid: group,
                    deadline,
                    killed,
                    ..
                }
                | Phase::Draining {
                    pgid: group,
                    deadline,
                    killed,
                    ..
                } if !*killed && *deadline <= now.mono => {
                    *killed = true;
                    out.push(Action::KillLeftovers {
                        pgid: *group,
                        level: Level::Warn,
                        why: format!("{name} did not stop within its kill_timeout: SIGKILL"),
                    });
                    if shutting_down {
                        self.killed_in_shutdown = true;
                    }
                }
                _ => {}
            }
        }
        for id in due {
            out.push(Action::Spawn(id));
        }
        self.readiness_tick(now, &mut out);
        if !self.shutting_down {
            for a in 0..self.apps.len() {
                let app = &self.apps[a];
                let fire = !app.cron_suspended && app.cron_next.is_some_and(|t| t <= now.wall);
                if fire {
                    out.push(Action::Note(
                        Level::Info,
                        format!("{}: cron restart", app.spec.name),
                    ));
                    let ids = self.of_app(a);
                    self.restart_or_reload(a, &ids, now, &mut out);
                }
                if let Some(c) = &self.apps[a].spec.cron_restart {
                    if self.apps[a].cron_next.is_some_and(|t| t <= now.wall) {
                        self.apps[a].cron_next = c.next_after(now.wall);
                    }
                }
            }
        }
        self.after_event(now, &mut out);
        out
    }

    /// The earliest deadline the policy is waiting for.
    pub fn next_deadline(&self, now: Now) -> Option<Instant> {
        let inst = self.instances.iter().filter_map(|i| match i.phase {
            Phase::WaitingRestart { until } => Some(until),
            Phase::Stopping {
                deadline,
                killed: false,
                ..
            }
            | Phase::Draining {
                deadline,
                killed: false,
                ..
            } => Some(deadline),
            _ => None,
        });
        let cron = self
            .apps
            .iter()
            .filter(|a| !a.cron_suspended && !self.shutting_down)
            .filter_map(|a| a.cron_next.map(|t| now.mono_at(t)));
        inst.chain(cron)
            .chain(self.readiness_deadline())
            .chain(self.reload_deadline())
            .min()
    }

    /// A signal for pmi (SIGCHLD is the reaper's, not the policy's).
    pub fn on_signal(&mut self, sig: i32, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        match sig {
            libc::SIGTERM | libc::SIGINT => {
                if !self.shutting_down {
                    out.push(Action::Note(
                        Level::Info,
                        format!("{} received: stopping every app", crate::signame::name(sig)),
                    ));
                    self.shutting_down = true;
                    for inst in &mut self.instances {
                        if matches!(inst.phase, Phase::WaitingRestart { .. } | Phase::Waiting) {
                            inst.phase = Phase::Stopped;
                        }
                    }
                }
            }
            // pmi must never be stopped by job control.
            libc::SIGTSTP => {}
            _ => {
                for inst in &self.instances {
                    if let Some(pid) = inst.phase.pid() {
                        out.push(Action::KillGroup { pgid: pid, sig });
                    }
                }
                self.forwarded_signals += 1;
            }
        }
        self.after_event(now, &mut out);
        out
    }

    pub(super) fn schedule_spawn(&mut self, id: InstId, now: Now, out: &mut Vec<Action>) {
        if let Some(inst) = self.get_mut(id) {
            inst.phase = Phase::WaitingRestart { until: now.mono };
            out.push(Action::Spawn(id));
        }
    }

    pub(super) fn begin_stop(&mut self, id: InstId, then: Then, now: Now, out: &mut Vec<Action>) {
        let Some(inst) = self.get(id) else { return };
        let spec = self.apps[inst.app].spec.clone();
        let Some(inst) = self.get_mut(id) else { return };
        // Already stopping (or its leader gone and the group draining): only what follows
        // changes. A removal (scale-down, an app dropped by `pmi apply`) is final: a restart
        // asked for meanwhile (cron, memory, `pmi restart`) does not bring it back.
        if let Phase::Stopping { then: t, .. } | Phase::Draining { then: t, .. } = &mut inst.phase {
            if *t != Then::Remove {
                *t = then;
            }
            return;
        }
        if let Phase::Running { pid, .. } = inst.phase {
            inst.phase = Phase::Stopping {
                pid,
                deadline: now.mono + spec.kill_timeout,
                killed: false,
                then,
            };
            out.push(Action::KillGroup {
                pgid: pid,
                sig: spec.kill_signal.0,
            });
            // A frozen (SIGSTOPped) process handles its stop signal only once it runs again, as
            // systemd and s6 do; for a running one SIGCONT is a no-op.
            if spec.kill_signal.0 != libc::SIGCONT {
                out.push(Action::KillGroup {
                    pgid: pid,
                    sig: libc::SIGCONT,
                });
            }
        }
    }

    /// `pmi start`: stopped or errored instances start; the app's cron resumes.
    pub fn start_ids(&mut self, ids: &[InstId], now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        for &id in ids {
            let Some(inst) = self.get_mut(id) else {
                continue;
            };
            let app = inst.app;
            match inst.phase {
                // `pmi start` of a waiting app starts it now: the user overrides the order.
                Phase::Stopped | Phase::Errored | Phase::WaitingRestart { .. } | Phase::Waiting => {
                    inst.unstable_restarts = 0;
                    inst.backoff = None;
                    self.schedule_spawn(id, now, &mut out);
                }
                Phase::Stopping { .. } | Phase::Draining { .. } => {
                    self.begin_stop(id, Then::Restart, now, &mut out)
                }
                Phase::Running { .. } => {}
            }
            self.apps[app].cron_suspended = false;
        }
        self.after_event(now, &mut out);
        out
    }

    /// `pmi stop`: graceful stop; the app's cron is suspended until `pmi start`.
    pub fn stop_ids(&mut self, ids: &[InstId], now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        for &id in ids {
            let Some(inst) = self.get_mut(id) else {
                continue;
            };
            let app = inst.app;
            match inst.phase {
                Phase::WaitingRestart { .. } | Phase::Errored | Phase::Waiting => {
                    inst.phase = Phase::Stopped
                }
                _ => self.begin_stop(id, Then::Stop, now, &mut out),
            }
            self.apps[app].cron_suspended = true;
        }
        self.after_event(now, &mut out);
        out
    }

    /// `pmi restart` (and cron, watch, memory limit): graceful stop, then start; counters reset.
    pub fn restart_all(&mut self, ids: &[InstId], now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        self.restart_ids(ids, now, &mut out);
        self.after_event(now, &mut out);
        out
    }

    pub(super) fn restart_ids(&mut self, ids: &[InstId], now: Now, out: &mut Vec<Action>) {
        for &id in ids {
            let Some(inst) = self.get_mut(id) else {
                continue;
            };
            let app = inst.app;
            match inst.phase {
                Phase::Running { .. } | Phase::Stopping { .. } | Phase::Draining { .. } => {
                    self.begin_stop(id, Then::Restart, now, out)
                }
                // Still waiting for its dependencies: it starts when they are met.
                Phase::Waiting => {}
                Phase::Stopped | Phase::Errored | Phase::WaitingRestart { .. } => {
                    inst.restarts += 1;
                    inst.unstable_restarts = 0;
                    inst.backoff = None;
                    self.schedule_spawn(id, now, out);
                }
            }
            self.apps[app].cron_suspended = false;
        }
    }

    /// `pmi scale APP N`: new instances take the lowest free index; the highest go first.
    /// Returns the actions and the ids created (to wait for) or removed.
    pub fn scale(&mut self, app: usize, n: u32, now: Now) -> (Vec<Action>, Vec<InstId>) {
        let mut out = Vec::new();
        let mut touched = Vec::new();
        let current = self.of_app(app);
        if (n as usize) > current.len() {
            let mut used: Vec<u32> = current
                .iter()
                .filter_map(|id| self.get(*id).map(|i| i.index))
                .collect();
            for _ in current.len()..n as usize {
                let index = (0..).find(|x| !used.contains(x)).unwrap_or(0);
                used.push(index);
                let id = self.add_instance(app, index);
                if self.apps[app].gate == super::start_order::Gate::Go {
                    self.schedule_spawn(id, now, &mut out);
                } else if let Some(i) = self.get_mut(id) {
                    i.phase = Phase::Waiting;
                }
                touched.push(id);
            }
        } else {
            for &id in current.iter().skip(n as usize).rev() {
                touched.push(id);
                match self.get(id).map(|i| i.phase.clone()) {
                    Some(
                        Phase::Running { .. } | Phase::Stopping { .. } | Phase::Draining { .. },
                    ) => self.begin_stop(id, Then::Remove, now, &mut out),
                    _ => {
                        self.instances.retain(|i| i.id != id);
                        out.push(Action::Removed(id));
                    }
                }
            }
        }
        self.after_event(now, &mut out);
        (out, touched)
    }

    /// `pmi signal SIG TARGET`: to each running instance's group.
    pub fn signal_ids(&mut self, ids: &[InstId], sig: i32) -> Vec<Action> {
        ids.iter()
            .filter_map(|id| self.get(*id)?.phase.pid())
            .map(|pid| Action::KillGroup { pgid: pid, sig })
            .collect()
    }

    /// After every event: progress the shutdown, or exit when nothing can run any more.
    pub(super) fn after_event(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.finished {
            return;
        }
        self.advance_reloads(now, out);
        if self.shutting_down {
            self.advance_shutdown(now, out);
            if !self.instances.iter().any(|i| i.phase.is_active()) {
                self.finished = true;
                out.push(Action::Finish {
                    code: if self.killed_in_shutdown { 1 } else { 0 },
                });
            }
            return;
        }
        self.advance_start_order(now, out);
        let active = self.instances.iter().any(|i| i.phase.is_active());
        let cron_armed = self
            .apps
            .iter()
            .any(|a| !a.cron_suspended && a.cron_next.is_some());
        if self.auto_exit && !active && !cron_armed {
            self.finished = true;
            let code = self.exit_code();
            out.push(Action::Note(
                Level::Info,
                format!("no app is running and none can start: exiting with code {code}"),
            ));
            out.push(Action::Finish { code });
        }
    }

    /// Stops apps in reverse `depends_on` order: an app is signalled once every app that depends
    /// on it has stopped. Apps with no dependents all go at once.
    fn advance_shutdown(&mut self, now: Now, out: &mut Vec<Action>) {
        loop {
            let mut progressed = false;
            for a in 0..self.apps.len() {
                if self.apps[a].shutdown_signalled {
                    continue;
                }
                let name = self.apps[a].spec.name.clone();
                let blocked = self.apps.iter().enumerate().any(|(b, other)| {
                    other.spec.depends_on.iter().any(|d| d.app == name)
                        && self
                            .instances
                            .iter()
                            .any(|i| i.app == b && i.phase.is_active())
                });
                if blocked {
                    continue;
                }
                self.apps[a].shutdown_signalled = true;
                progressed = true;
                for id in self.of_app(a) {
                    self.begin_stop(id, Then::Stop, now, out);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// 0 when every instance's last exit was a success; else the code of the one that failed
    /// last (128+N for a signal).
    /// An app blocked by its start order counts as a failure (1) when no exit says more.
    pub fn exit_code(&self) -> i32 {
        self.instances
            .iter()
            .filter_map(|i| i.last_exit)
            .filter(|e| e.failed)
            .max_by_key(|e| e.seq)
            .map(|e| e.status.shell_code() & 0xff)
            .unwrap_or_else(|| i32::from(self.any_blocked()))
    }
}

#[cfg(test)]
pub(crate) mod tests;
