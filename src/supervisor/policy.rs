//! Every decision of the supervisor, as pure functions of (state, event, now) → actions.
//!
//! Invariant: nothing here touches the OS or reads a clock. Time comes in as `Now`; effects go out
//! as `Action`s that the supervisor loop carries out and feeds back (`on_spawned`,
//! `on_spawn_failed`). That keeps pm2's rules testable in a table, without processes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::state::{InstId, Instance, LastExit, Now, Phase, State, Then};
use crate::config::CronSpec;
use crate::os::reap::ExitStatus;

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
    /// Nothing runs any more: clean up the strays and exit with this code.
    Finish { code: i32 },
    /// A message for pmi's log.
    Note(Level, String),
    /// An instance is gone for good (scale-down): drop what is kept for it.
    Removed(InstId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// The next time a cron fires after `now`, in the local time zone (TZ, else UTC).
pub fn next_cron(c: &CronSpec, now: Now) -> Option<DateTime<Utc>> {
    let local = now.wall.with_timezone(&chrono::Local);
    c.schedule
        .after(&local)
        .next()
        .map(|t| t.with_timezone(&Utc))
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
            self.schedule_spawn(id, now, &mut out);
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
        match inst.phase.clone() {
            Phase::Stopping {
                pid,
                then,
                deadline,
                killed,
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
                // The rest of the group had the same stop signal and keeps its kill_timeout;
                // the supervisor reports `on_group_empty` once it is gone.
                inst.phase = Phase::Draining {
                    pgid: pid,
                    deadline,
                    killed,
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
                if shutting_down || !policy.autorestart || stop_code {
                    inst.phase = Phase::Stopped;
                    return;
                }
                if uptime >= STABLE_RUN {
                    inst.backoff = None;
                    inst.unstable_restarts = 0;
                }
                if uptime < policy.min_uptime {
                    inst.unstable_restarts += 1;
                    if inst.unstable_restarts >= policy.max_restarts {
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
        match then {
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
                    out.push(Action::KillGroup {
                        pgid: *group,
                        sig: libc::SIGKILL,
                    });
                    out.push(Action::Note(
                        Level::Warn,
                        format!("{name} did not stop within its kill_timeout: sending SIGKILL"),
                    ));
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
                    self.restart_ids(&ids, now, &mut out);
                }
                if let Some(c) = &self.apps[a].spec.cron_restart {
                    if self.apps[a].cron_next.is_some_and(|t| t <= now.wall) {
                        self.apps[a].cron_next = next_cron(c, now);
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
        inst.chain(cron).min()
    }

    /// A signal for pmi (SIGCHLD is the reaper's, not the policy's).
    pub fn on_signal(&mut self, sig: i32, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        match sig {
            libc::SIGTERM | libc::SIGINT => {
                if !self.shutting_down {
                    out.push(Action::Note(
                        Level::Info,
                        format!(
                            "{} received: stopping every app",
                            crate::os::signals::name(sig)
                        ),
                    ));
                    self.shutting_down = true;
                    for inst in &mut self.instances {
                        if matches!(inst.phase, Phase::WaitingRestart { .. }) {
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

    fn schedule_spawn(&mut self, id: InstId, now: Now, out: &mut Vec<Action>) {
        if let Some(inst) = self.get_mut(id) {
            inst.phase = Phase::WaitingRestart { until: now.mono };
            out.push(Action::Spawn(id));
        }
    }

    fn begin_stop(&mut self, id: InstId, then: Then, now: Now, out: &mut Vec<Action>) {
        let Some(inst) = self.get(id) else { return };
        let spec = self.apps[inst.app].spec.clone();
        let Some(inst) = self.get_mut(id) else { return };
        match inst.phase.clone() {
            Phase::Running { pid, .. } => {
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
            }
            Phase::Stopping {
                pid,
                deadline,
                killed,
                ..
            } => {
                inst.phase = Phase::Stopping {
                    pid,
                    deadline,
                    killed,
                    then,
                };
            }
            _ => {}
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
                Phase::Stopped | Phase::Errored | Phase::WaitingRestart { .. } => {
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
                Phase::WaitingRestart { .. } | Phase::Errored => inst.phase = Phase::Stopped,
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

    /// A watched file changed: restart the app's instances that are not stopped (an errored app
    /// gets its chance with the fixed file; one the user stopped stays stopped).
    pub fn restart_app(&mut self, app: usize, now: Now) -> Vec<Action> {
        let ids: Vec<InstId> = self
            .of_app(app)
            .into_iter()
            .filter(|id| self.get(*id).is_some_and(|i| i.phase != Phase::Stopped))
            .collect();
        self.restart_all(&ids, now)
    }

    fn restart_ids(&mut self, ids: &[InstId], now: Now, out: &mut Vec<Action>) {
        for &id in ids {
            let Some(inst) = self.get_mut(id) else {
                continue;
            };
            let app = inst.app;
            match inst.phase {
                Phase::Running { .. } | Phase::Stopping { .. } | Phase::Draining { .. } => {
                    self.begin_stop(id, Then::Restart, now, out)
                }
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
                self.schedule_spawn(id, now, &mut out);
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
    fn after_event(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.finished {
            return;
        }
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
                    other.spec.depends_on.contains(&name)
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
    pub fn exit_code(&self) -> i32 {
        self.instances
            .iter()
            .filter_map(|i| i.last_exit)
            .filter(|e| e.failed)
            .max_by_key(|e| e.seq)
            .map(|e| e.status.shell_code() & 0xff)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::{AppSpec, ExecMode, FilterEnv, LogFiles, RestartPolicy, Signal};

    pub(crate) fn app(name: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            namespace: "default".into(),
            script: "app".into(),
            command: vec!["app".into()],
            args: vec![],
            interpreter: None,
            interpreter_args: vec![],
            cwd: "/".into(),
            instances: 1,
            exec_mode: ExecMode::Fork,
            autostart: true,
            restart: RestartPolicy::default(),
            kill_signal: Signal(libc::SIGINT),
            kill_timeout: Duration::from_millis(1600),
            cron_restart: None,
            env: BTreeMap::new(),
            filter_env: FilterEnv::None,
            instance_var: "NODE_APP_INSTANCE".into(),
            increment_var: None,
            port: None,
            max_memory_restart: None,
            watch: None,
            logs: LogFiles::default(),
            uid: None,
            gid: None,
            groups: vec![],
            pid_file: None,
            wait_ready: false,
            listen_timeout: Duration::from_millis(3000),
            shutdown_with_message: false,
            depends_on: vec![],
        }
    }

    fn every_second() -> Option<CronSpec> {
        Some(CronSpec {
            source: "* * * * * *".into(),
            schedule: "* * * * * *".parse().unwrap(),
        })
    }

    /// A clock the test moves by hand.
    struct Clock(Now);
    impl Clock {
        fn new() -> Clock {
            Clock(Now::read())
        }
        fn advance(&mut self, ms: u64) -> Now {
            let d = Duration::from_millis(ms);
            self.0 = Now {
                mono: self.0.mono + d,
                wall: self.0.wall + chrono::Duration::milliseconds(ms as i64),
            };
            self.0
        }
    }

    fn state(apps: Vec<AppSpec>, now: Now) -> State {
        State::new(apps.into_iter().map(Arc::new).collect(), true, now)
    }

    /// A state whose autostart instances run, and the last pid handed out.
    fn started(apps: Vec<AppSpec>, now: Now) -> (State, i32) {
        let mut st = state(apps, now);
        let mut pid = 100;
        let acts = st.on_start(now);
        run(&mut st, acts, now, &mut pid);
        (st, pid)
    }

    /// Carries out spawns with made-up pids, as the supervisor loop would.
    fn run(st: &mut State, actions: Vec<Action>, now: Now, next_pid: &mut i32) -> Vec<Action> {
        let mut rest = Vec::new();
        for a in actions {
            match a {
                Action::Spawn(id) => {
                    *next_pid += 1;
                    st.on_spawned(id, *next_pid, now);
                }
                Action::Note(..) => {}
                other => rest.push(other),
            }
        }
        rest
    }

    /// An exit as the supervisor loop sees it: a stopped leader's group is empty at once here.
    fn exit(pid: i32, status: ExitStatus, now: Now, st: &mut State) -> Vec<Action> {
        let mut acts = st.on_exit(pid, status, now);
        for (id, _) in st.draining() {
            acts.extend(st.on_group_empty(id, now));
        }
        acts
    }

    fn pid_of(st: &State, id: InstId) -> i32 {
        st.get(id).and_then(|i| i.phase.pid()).expect("running")
    }

    #[test]
    fn backoff_sequence_matches_pm2() {
        let base = Duration::from_millis(100);
        let mut prev = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let d = next_backoff(base, prev);
            seen.push(d.as_millis() as u64);
            prev = Some(d);
        }
        assert_eq!(seen, [100, 150, 225, 337, 505, 757, 1135, 1702, 2553, 3829]);
        let mut d = Duration::from_millis(100);
        for _ in 0..30 {
            d = next_backoff(base, Some(d));
        }
        assert_eq!(d, BACKOFF_CAP);
    }

    #[test]
    fn crash_loop_runs_max_restarts_times_then_errors_and_exits_with_its_code() {
        let mut c = Clock::new();
        let mut a = app("api");
        a.restart.max_restarts = 3;
        let (mut st, mut pid) = started(vec![a], c.0);
        let mut runs = 1;
        loop {
            let now = c.advance(10);
            let p = pid_of(&st, 0);
            let acts = exit(p, ExitStatus::Code(3), now, &mut st);
            if let Some(Action::Finish { code }) =
                acts.iter().find(|a| matches!(a, Action::Finish { .. }))
            {
                assert_eq!(*code, 3);
                break;
            }
            assert!(acts.contains(&Action::Spawn(0)), "{acts:?}");
            run(&mut st, acts, now, &mut pid);
            runs += 1;
            assert!(runs < 10);
        }
        assert_eq!(runs, 3);
        assert_eq!(st.get(0).unwrap().phase, Phase::Errored);
        assert_eq!(st.get(0).unwrap().restarts, 2);
    }

    #[test]
    fn stable_runs_are_not_counted_as_unstable() {
        let mut c = Clock::new();
        let mut a = app("api");
        a.restart.max_restarts = 2;
        let (mut st, mut pid) = started(vec![a], c.0);
        for _ in 0..5 {
            let now = c.advance(1500);
            let acts = exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
            assert!(acts.contains(&Action::Spawn(0)));
            run(&mut st, acts, now, &mut pid);
        }
        assert_eq!(st.get(0).unwrap().unstable_restarts, 0);
        assert_eq!(st.get(0).unwrap().restarts, 5);
    }

    #[test]
    fn stop_exit_codes_apply_to_codes_not_signals() {
        let mut c = Clock::new();
        let mut a = app("job");
        a.restart.stop_exit_codes = vec![0];
        let mut b = app("other");
        b.restart.stop_exit_codes = vec![0];
        let (mut st, _) = started(vec![a, b], c.0);
        let now = c.advance(2000);
        let acts = exit(pid_of(&st, 0), ExitStatus::Code(0), now, &mut st);
        assert!(!acts.contains(&Action::Spawn(0)));
        assert_eq!(st.get(0).unwrap().phase, Phase::Stopped);
        let acts = exit(
            pid_of(&st, 1),
            ExitStatus::Signal(libc::SIGKILL),
            now,
            &mut st,
        );
        assert!(
            acts.contains(&Action::Spawn(1)),
            "a signal death is never code 0"
        );
    }

    #[test]
    fn restart_delay_waits_until_the_deadline() {
        let mut c = Clock::new();
        let mut a = app("api");
        a.restart.restart_delay = Duration::from_millis(500);
        let (mut st, _) = started(vec![a], c.0);
        let now = c.advance(2000);
        let acts = exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
        assert!(!acts.contains(&Action::Spawn(0)));
        assert_eq!(
            st.next_deadline(now),
            Some(now.mono + Duration::from_millis(500))
        );
        let early = c.advance(499);
        assert!(!st.on_tick(early).contains(&Action::Spawn(0)));
        let due = c.advance(1);
        assert!(st.on_tick(due).contains(&Action::Spawn(0)));
    }

    #[test]
    fn exp_backoff_grows_then_resets_after_a_stable_run() {
        let mut c = Clock::new();
        let mut a = app("api");
        a.restart.exp_backoff_restart_delay = Some(Duration::from_millis(100));
        a.restart.max_restarts = 100;
        let (mut st, mut pid) = started(vec![a], c.0);
        let mut delays = Vec::new();
        for _ in 0..4 {
            let now = c.advance(10);
            exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
            let until = match st.get(0).unwrap().phase {
                Phase::WaitingRestart { until } => until,
                ref p => panic!("{p:?}"),
            };
            delays.push((until - now.mono).as_millis());
            let due = c.advance((until - now.mono).as_millis() as u64);
            let acts = st.on_tick(due);
            run(&mut st, acts, due, &mut pid);
        }
        assert_eq!(delays, [100, 150, 225, 337]);
        let now = c.advance(STABLE_RUN.as_millis() as u64);
        exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
        assert_eq!(st.get(0).unwrap().backoff, Some(Duration::from_millis(100)));
    }

    #[test]
    fn shutdown_sends_kill_signal_then_escalates_and_exits_1() {
        let mut c = Clock::new();
        let mut a = app("api");
        a.kill_signal = Signal(libc::SIGTERM);
        a.kill_timeout = Duration::from_millis(1000);
        let b = app("web");
        let (mut st, _) = started(vec![a, b], c.0);
        let (p0, p1) = (pid_of(&st, 0), pid_of(&st, 1));
        let acts = st.on_signal(libc::SIGTERM, c.0);
        assert!(acts.contains(&Action::KillGroup {
            pgid: p0,
            sig: libc::SIGTERM
        }));
        assert!(acts.contains(&Action::KillGroup {
            pgid: p1,
            sig: libc::SIGINT
        }));
        let now = c.advance(100);
        assert!(!st
            .on_exit(p1, ExitStatus::Code(0), now)
            .iter()
            .any(|a| matches!(a, Action::Finish { .. })));
        let now = c.advance(900);
        let acts = st.on_tick(now);
        assert!(acts.contains(&Action::KillGroup {
            pgid: p0,
            sig: libc::SIGKILL
        }));
        let acts = exit(p0, ExitStatus::Signal(libc::SIGKILL), c.advance(1), &mut st);
        assert!(acts.contains(&Action::Finish { code: 1 }), "{acts:?}");
    }

    #[test]
    fn cooperative_shutdown_exits_0_and_never_restarts() {
        let mut c = Clock::new();
        let (mut st, _) = started(vec![app("a")], c.0);
        st.on_signal(libc::SIGINT, c.0);
        let acts = exit(pid_of(&st, 0), ExitStatus::Code(130), c.advance(5), &mut st);
        assert!(!acts.contains(&Action::Spawn(0)));
        assert!(acts.contains(&Action::Finish { code: 0 }));
    }

    #[test]
    fn auto_exit_uses_the_code_of_the_app_that_failed_last() {
        let mut c = Clock::new();
        let mut a = app("a");
        a.restart.autorestart = false;
        let mut b = app("b");
        b.restart.autorestart = false;
        let mut ok = app("ok");
        ok.restart.autorestart = false;
        let (mut st, _) = started(vec![a, b, ok], c.0);
        let (pa, pb, pok) = (pid_of(&st, 0), pid_of(&st, 1), pid_of(&st, 2));
        assert!(st
            .on_exit(pa, ExitStatus::Code(3), c.advance(1))
            .iter()
            .all(|a| !matches!(a, Action::Finish { .. })));
        exit(pb, ExitStatus::Signal(libc::SIGKILL), c.advance(1), &mut st);
        let acts = exit(pok, ExitStatus::Code(0), c.advance(1), &mut st);
        assert!(acts.contains(&Action::Finish { code: 137 }), "{acts:?}");
    }

    #[test]
    fn auto_exit_waits_for_a_restart_delay_and_a_cron() {
        let mut c = Clock::new();
        let mut a = app("a");
        a.restart.restart_delay = Duration::from_secs(10);
        let (mut st, _) = started(vec![a], c.0);
        let acts = exit(
            pid_of(&st, 0),
            ExitStatus::Code(1),
            c.advance(5000),
            &mut st,
        );
        assert!(
            !acts.iter().any(|a| matches!(a, Action::Finish { .. })),
            "pm2 exits here; pmi waits"
        );
        let mut cronjob = app("cron");
        cronjob.restart.autorestart = false;
        cronjob.cron_restart = every_second();
        let (mut st, mut pid) = started(vec![cronjob], c.0);
        let acts = st.on_start(c.0);
        run(&mut st, acts, c.0, &mut pid);
        let acts = exit(pid_of(&st, 0), ExitStatus::Code(0), c.advance(1), &mut st);
        assert!(!acts.iter().any(|a| matches!(a, Action::Finish { .. })));
        let acts = st.on_tick(c.advance(1000));
        assert!(
            acts.contains(&Action::Spawn(0)),
            "cron starts an exited app: {acts:?}"
        );
    }

    #[test]
    fn cron_restarts_a_running_app_gracefully() {
        let mut c = Clock::new();
        let mut a = app("a");
        a.cron_restart = every_second();
        let (mut st, _) = started(vec![a], c.0);
        let p = pid_of(&st, 0);
        let acts = st.on_tick(c.advance(1000));
        assert!(acts.contains(&Action::KillGroup {
            pgid: p,
            sig: libc::SIGINT
        }));
        let acts = exit(p, ExitStatus::Code(0), c.advance(5), &mut st);
        assert!(acts.contains(&Action::Spawn(0)));
        assert_eq!(st.get(0).unwrap().restarts, 1);
        st.stop_ids(&[0], c.0);
        assert!(st.apps[0].cron_suspended);
    }

    #[test]
    fn other_signals_are_forwarded_to_every_running_group() {
        let c = Clock::new();
        let mut a = app("a");
        a.instances = 2;
        let (mut st, _) = started(vec![a], c.0);
        let acts = st.on_signal(libc::SIGHUP, c.0);
        assert_eq!(acts.len(), 2);
        assert!(st.on_signal(libc::SIGTSTP, c.0).is_empty());
        assert_eq!(st.forwarded_signals, 1);
    }

    #[test]
    fn shutdown_follows_reverse_depends_on_order() {
        let mut c = Clock::new();
        let db = app("db");
        let mut api = app("api");
        api.depends_on = vec!["db".into()];
        let (mut st, _) = started(vec![db, api], c.0);
        let (pdb, papi) = (pid_of(&st, 0), pid_of(&st, 1));
        let acts = st.on_signal(libc::SIGTERM, c.0);
        assert!(acts.contains(&Action::KillGroup {
            pgid: papi,
            sig: libc::SIGINT
        }));
        assert!(!acts
            .iter()
            .any(|a| matches!(a, Action::KillGroup { pgid, .. } if *pgid == pdb)));
        let acts = exit(papi, ExitStatus::Code(0), c.advance(5), &mut st);
        assert!(
            acts.contains(&Action::KillGroup {
                pgid: pdb,
                sig: libc::SIGINT
            }),
            "{acts:?}"
        );
    }

    #[test]
    fn scale_takes_lowest_free_index_and_removes_highest() {
        let c = Clock::new();
        let mut a = app("w");
        a.instances = 3;
        let (mut st, mut pid) = started(vec![a], c.0);
        let (acts, gone) = st.scale(0, 1, c.0);
        assert_eq!(gone.len(), 2);
        assert_eq!(
            acts.iter()
                .filter(|a| matches!(a, Action::KillGroup { .. }))
                .count(),
            2
        );
        for id in gone {
            let p = pid_of(&st, id);
            exit(p, ExitStatus::Code(0), c.0, &mut st);
        }
        assert_eq!(st.of_app(0).len(), 1);
        let (acts, new) = st.scale(0, 3, c.0);
        run(&mut st, acts, c.0, &mut pid);
        let idx: Vec<u32> = new.iter().map(|id| st.get(*id).unwrap().index).collect();
        assert_eq!(idx, [1, 2]);
    }

    #[test]
    fn spawn_failure_is_an_exit_with_127() {
        let c = Clock::new();
        let mut a = app("missing");
        a.restart.max_restarts = 1;
        let (mut st, _) = started(vec![a], c.0);
        st.on_start(c.0);
        let acts = st.on_spawn_failed(0, 127, c.0);
        assert!(acts.contains(&Action::Finish { code: 127 }), "{acts:?}");
        assert_eq!(st.get(0).unwrap().phase, Phase::Errored);
    }

    #[test]
    fn a_stopped_leaders_group_keeps_its_kill_timeout() {
        let mut c = Clock::new();
        let (mut st, _) = started(vec![app("a")], c.0);
        let p = pid_of(&st, 0);
        st.on_signal(libc::SIGTERM, c.0);
        let acts = st.on_exit(p, ExitStatus::Code(0), c.advance(100));
        assert!(!acts
            .iter()
            .any(|a| matches!(a, Action::Finish { .. } | Action::KillGroup { .. })));
        assert_eq!(st.draining(), vec![(0, p)]);
        assert!(st
            .on_tick(c.advance(1000))
            .iter()
            .all(|a| !matches!(a, Action::KillGroup { .. })));
        let acts = st.on_tick(c.advance(500));
        assert!(acts.contains(&Action::KillGroup {
            pgid: p,
            sig: libc::SIGKILL
        }));
        let acts = st.on_group_empty(0, c.advance(1));
        assert!(acts.contains(&Action::Finish { code: 1 }), "{acts:?}");
    }
}
