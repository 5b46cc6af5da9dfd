//! Rolling reload with rollback (SPEC §9), as pure decisions on `State`: time comes in as `Now`,
//! effects go out as `Action`s.
//!
//! One instance at a time: a replacement (a new instance: new pm_id, same `NODE_APP_INSTANCE`
//! index) is started beside the old one; once it is ready, the old one is stopped gracefully and
//! removed; then the next. A replacement that exits, or is not ready by `listen_timeout` after
//! its start, is stopped and removed, the old instance keeps serving, and the reload ends there
//! with the instance and the reason. Instances that are not running are simply (re)started.
//!
//! Invariants: `State::reload` is the one entry point (`pmi reload`, cron, watch, memory limit,
//! `pmi apply`); an instance is in at most one active reload; a reload is advanced after every
//! policy event (`advance_reloads`, from `after_event`), so it needs no polling, and its only
//! timer is the step's deadline (`reload_deadline`).

use tokio::time::Instant;

use super::policy::{Action, Level};
use super::rolling::{Outcome, Reload, ReloadFailure, Step, KEEP_FINISHED};
use super::state::{InstId, Now, Phase, State, Then};

/// What advancing one reload led to.
enum Progress {
    Waiting,
    Finished(Outcome),
}

impl State {
    /// Starts a rolling reload of `ids` (in this order); returns its id, to look the outcome up
    /// with `reload_outcome`. Instances already in a reload are left to that one.
    pub fn reload(&mut self, ids: &[InstId], now: Now, out: &mut Vec<Action>) -> u64 {
        self.reload_seq += 1;
        let id = self.reload_seq;
        let queue = ids
            .iter()
            .copied()
            .filter(|i| !self.reloads.iter().any(|r| r.involves(*i)))
            .collect();
        self.reloads.push(Reload {
            id,
            queue,
            step: None,
            done: Vec::new(),
        });
        self.advance_reloads(now, out);
        id
    }

    /// The outcome of a finished reload; `None` while it runs.
    pub fn reload_outcome(&self, id: u64) -> Option<&Outcome> {
        self.reloads_done
            .iter()
            .find(|(r, _)| *r == id)
            .map(|(_, o)| o)
    }

    /// Cron, watch and memory-limit restarts: a reload when the app shares a socket or has
    /// several instances (SPEC §9), else stop-then-start.
    pub(super) fn restart_or_reload(
        &mut self,
        app: usize,
        ids: &[InstId],
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if self.rolls(app) {
            let running: Vec<InstId> = ids
                .iter()
                .copied()
                .filter(|i| self.get(*i).is_some_and(|x| x.phase.pid().is_some()))
                .collect();
            let rest: Vec<InstId> = ids
                .iter()
                .copied()
                .filter(|i| !running.contains(i))
                .collect();
            self.restart_ids(&rest, now, out);
            self.reload(&running, now, out);
        } else {
            self.restart_ids(ids, now, out);
        }
    }

    /// A watched file changed: restart (or reload, `restart_or_reload`) the app's instances that
    /// are not stopped (an errored app gets its chance with the fixed file; one the user stopped
    /// stays stopped).
    pub fn restart_app(&mut self, app: usize, now: Now) -> Vec<Action> {
        let ids: Vec<InstId> = self
            .of_app(app)
            .into_iter()
            .filter(|id| self.get(*id).is_some_and(|i| i.phase != Phase::Stopped))
            .collect();
        let mut out = Vec::new();
        self.restart_or_reload(app, &ids, now, &mut out);
        self.after_event(now, &mut out);
        out
    }

    /// A graceful restart of single instances (the memory limit): by `restart_or_reload`.
    pub fn restart_instances(&mut self, ids: &[InstId], now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        for &id in ids {
            if let Some(app) = self.get(id).map(|i| i.app) {
                self.restart_or_reload(app, &[id], now, &mut out);
            }
        }
        self.after_event(now, &mut out);
        out
    }

    /// An app whose instances are replaced beside the old ones: it shares a socket, or has
    /// more than one instance.
    fn rolls(&self, app: usize) -> bool {
        super::cluster::shares_socket(&self.apps[app].spec) || self.of_app(app).len() > 1
    }

    /// `id` is a reload's replacement that has not taken over yet: when it exits, it has failed
    /// (the reload removes it), so it is not restarted.
    pub(super) fn is_reload_replacement(&self, id: InstId) -> bool {
        self.reloads.iter().any(|r| {
            r.step
                .as_ref()
                .is_some_and(|s| s.new == id && !s.retiring && s.in_place.is_none())
        })
    }

    /// The earliest deadline of a replacement.
    pub fn reload_deadline(&self) -> Option<Instant> {
        self.reloads
            .iter()
            .filter_map(|r| {
                let s = r.step.as_ref()?;
                (!s.retiring && s.in_place.is_none()).then_some(s.deadline)
            })
            .min()
    }

    /// Moves every reload as far as it can go now (called after every policy event).
    pub(super) fn advance_reloads(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.shutting_down {
            self.abandon_reloads();
            return;
        }
        let mut i = 0;
        while i < self.reloads.len() {
            let mut r = self.reloads[i].clone();
            let p = self.advance(&mut r, now, out);
            match p {
                Progress::Waiting => {
                    self.reloads[i] = r;
                    i += 1;
                }
                Progress::Finished(o) => {
                    self.reloads.remove(i);
                    if let Err(f) = &o {
                        let old = if f.old_serves {
                            "; the old instance keeps serving"
                        } else {
                            ""
                        };
                        let msg =
                            format!("reload stopped at {}:{}: {}{old}", f.name, f.index, f.why);
                        out.push(Action::Note(Level::Warn, msg));
                    }
                    self.reloads_done.push((r.id, o));
                    if self.reloads_done.len() > KEEP_FINISHED {
                        let _ = self.reloads_done.remove(0);
                    }
                }
            }
        }
    }

    fn advance(&mut self, r: &mut Reload, now: Now, out: &mut Vec<Action>) -> Progress {
        loop {
            let Some(step) = r.step.clone() else {
                let Some(old) = r.queue.pop_front() else {
                    return Progress::Finished(Ok(std::mem::take(&mut r.done)));
                };
                match self.get(old).map(|i| (i.app, i.phase.clone())) {
                    None => {}
                    Some((app, Phase::Running { pid, .. })) if !self.rolls(app) => {
                        if let Some(i) = self.get_mut(old) {
                            i.replacement = true;
                        }
                        self.restart_ids(&[old], now, out);
                        r.step = Some(Step {
                            old,
                            new: old,
                            deadline: now.mono,
                            retiring: false,
                            in_place: Some(Some(pid)),
                        });
                    }
                    Some((_, Phase::Running { .. })) => {
                        r.step = Some(self.start_replacement(old, now, out));
                    }
                    Some(_) => {
                        self.restart_ids(&[old], now, out);
                        r.done.push(old);
                    }
                }
                continue;
            };
            if let Some(old_pid) = step.in_place {
                match self.in_place_state(step.old, old_pid) {
                    None => return Progress::Waiting,
                    Some(Ok(())) => {
                        r.done.push(step.old);
                        r.step = None;
                        continue;
                    }
                    Some(Err(why)) => return self.failed(r, step.old, why, false),
                }
            }
            if step.retiring {
                if self.get(step.old).is_some() {
                    return Progress::Waiting;
                }
                r.done.push(step.new);
                r.step = None;
                continue;
            }
            match self.replacement_state(step.new, step.deadline, now) {
                None => return Progress::Waiting,
                Some(Ok(())) => {
                    self.retire(step.old, now, out);
                    r.step = Some(Step {
                        retiring: true,
                        ..step
                    });
                }
                Some(Err(why)) => {
                    // Named before it is removed.
                    let end = self.failed(r, step.new, why, true);
                    self.retire(step.new, now, out);
                    return end;
                }
            }
        }
    }

    /// The reload ends at instance `at` with `why`; the rest of its queue is dropped.
    fn failed(&self, r: &mut Reload, at: InstId, why: String, old_serves: bool) -> Progress {
        let (name, index) = self.label_of(at);
        r.step = None;
        r.queue.clear();
        Progress::Finished(Err(ReloadFailure {
            name,
            index,
            why,
            done: std::mem::take(&mut r.done),
            old_serves,
        }))
    }

    fn start_replacement(&mut self, old: InstId, now: Now, out: &mut Vec<Action>) -> Step {
        let (app, index, restarts) = match self.get(old) {
            Some(i) => (i.app, i.index, i.restarts),
            None => (0, 0, 0),
        };
        let timeout = self.apps[app].spec.listen_timeout;
        let new = self.add_instance(app, index);
        if let Some(n) = self.get_mut(new) {
            n.replacement = true;
            n.restarts = restarts + 1;
            n.phase = Phase::WaitingRestart { until: now.mono };
        }
        out.push(Action::Spawn(new));
        Step {
            old,
            new,
            deadline: now.mono + timeout,
            retiring: false,
            in_place: None,
        }
    }

    /// An in-place reload: `None` while the new process is not there or not online yet.
    fn in_place_state(&self, id: InstId, old_pid: Option<i32>) -> Option<Result<(), String>> {
        let Some(i) = self.get(id) else {
            return Some(Err("the instance was removed".into()));
        };
        match i.phase {
            Phase::Running { pid, .. } if Some(pid) != old_pid => {
                if let Some(why) = &i.replacement_failed {
                    return Some(Err(why.clone()));
                }
                i.tracker
                    .as_ref()
                    .is_some_and(|t| t.is_online())
                    .then_some(Ok(()))
            }
            Phase::Errored | Phase::Stopped => {
                let last = i.last_exit.map(|e| format!(" ({})", e.status));
                Some(Err(format!("it exited{}", last.unwrap_or_default())))
            }
            _ => None,
        }
    }

    /// `None`: still starting; `Some(Ok)`: ready; `Some(Err(why))`: it failed.
    fn replacement_state(
        &self,
        id: InstId,
        deadline: Instant,
        now: Now,
    ) -> Option<Result<(), String>> {
        let Some(i) = self.get(id) else {
            return Some(Err("the replacement was removed".into()));
        };
        if let Some(e) = i.last_exit {
            return Some(Err(format!(
                "the replacement exited ({}) before it was ready",
                e.status
            )));
        }
        if let Some(why) = &i.replacement_failed {
            return Some(Err(why.clone()));
        }
        let ready = matches!(i.phase, Phase::Running { .. })
            && i.tracker.as_ref().is_some_and(|t| t.is_ready());
        if ready {
            return Some(Ok(()));
        }
        if now.mono >= deadline {
            let ms = self.apps[i.app].spec.listen_timeout.as_millis();
            return Some(Err(format!(
                "the replacement was not ready within listen_timeout ({ms} ms)"
            )));
        }
        None
    }

    /// Stops an instance for good (it disappears once its group is gone).
    fn retire(&mut self, id: InstId, now: Now, out: &mut Vec<Action>) {
        match self.get(id).map(|i| i.phase.clone()) {
            Some(Phase::Running { .. } | Phase::Stopping { .. } | Phase::Draining { .. }) => {
                self.begin_stop(id, Then::Remove, now, out)
            }
            Some(_) => {
                self.instances.retain(|i| i.id != id);
                out.push(Action::Removed(id));
            }
            None => {}
        }
    }

    fn label_of(&self, id: InstId) -> (String, u32) {
        match self.get(id) {
            Some(i) => (self.apps[i.app].spec.name.clone(), i.index),
            None => (String::new(), 0),
        }
    }

    /// Every reload ends (shutdown); the instances are stopped by the shutdown itself.
    fn abandon_reloads(&mut self) {
        for r in std::mem::take(&mut self.reloads) {
            let f = ReloadFailure {
                name: String::new(),
                index: 0,
                why: "pmi is shutting down".into(),
                done: r.done,
                old_serves: false,
            };
            self.reloads_done.push((r.id, Err(f)));
        }
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
