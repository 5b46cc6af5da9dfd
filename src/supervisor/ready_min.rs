//! The smallest readiness wiring cluster mode needs, in the `readiness::Tracker`'s terms:
//! a tracker per spawned process, fed with pm2's ready message and the preload's "listening".
//! (The full wiring, with notify, checks, health and status, is the readiness work's; its
//! `track_spawn`, `on_ready_message` and `on_listening` replace these when it lands.)
//!
//! Invariant: pure; an input names the pid it is about, and one for a process that is gone is
//! ignored, so a late message can never make the next process ready.

use super::cluster;
use super::policy::Action;
use super::readiness::{Config, Tracker};
use super::state::{InstId, Now, Phase, State};
use crate::config::checks::ReadySpec;

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
        let ready = if spec.wait_ready {
            ReadySpec::Message
        } else {
            ReadySpec::Spawned
        };
        let cfg = Config::from_spec(
            &ready,
            None,
            None,
            spec.listen_timeout,
            cluster::gets_preload(&spec),
            inst.replacement,
        );
        let (tracker, _) = Tracker::new(cfg, now.mono);
        inst.tracker = Some(tracker);
        self.after_event(now, &mut out);
        out
    }

    /// pm2's `process.send('ready')`, from the instance's Node IPC channel.
    pub fn on_ready_message(&mut self, id: InstId, pid: i32, now: Now) -> Vec<Action> {
        self.feed(id, pid, now, |t| drop(t.on_ready_message()))
    }

    /// A Node instance began listening on pmi's socket.
    pub fn on_listening(&mut self, id: InstId, pid: i32, now: Now) -> Vec<Action> {
        self.feed(id, pid, now, |t| drop(t.on_listening()))
    }

    fn feed(
        &mut self,
        id: InstId,
        pid: i32,
        now: Now,
        f: impl FnOnce(&mut Tracker),
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(t) = self
            .get_mut(id)
            .filter(|i| matches!(i.phase, Phase::Running { pid: p, .. } if p == pid))
            .and_then(|i| i.tracker.as_mut())
        else {
            return out;
        };
        f(t);
        self.after_event(now, &mut out);
        out
    }
}
