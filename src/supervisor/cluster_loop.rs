//! The supervisor's side of cluster mode: what a channel event does, and graceful stops that go
//! through an instance's Node IPC channel (drain, then `'shutdown'` or `kill_signal`).
//!
//! Invariant: every effect on a process is checked against the state first: a late event for a
//! pid that is no longer the one stopping (or running) does nothing, so no stale pid is ever
//! signalled.

use super::cluster::{self, Msg};
use super::policy::Action;
use super::state::{InstId, Now, Phase};
use super::Supervisor;
use crate::node::channel::Event;
use crate::os::signals;

impl Supervisor {
    /// One message from an instance's channel task.
    pub(super) fn on_channel(&mut self, id: InstId, pid: i32, m: Msg) -> Vec<Action> {
        let now = Now::read();
        match m {
            Msg::Event(Event::Ready) => self.state.on_ready_message(id, pid, now),
            Msg::Event(Event::Listening { .. }) => self.state.on_listening(id, pid, now),
            Msg::Event(Event::Bind { port }) => {
                if let Some(spec) = self.state.spec_of(id).cloned() {
                    self.cluster.answer_bind(id, pid, &spec.name, port);
                }
                Vec::new()
            }
            Msg::Event(Event::Drained) | Msg::DrainTimeout => {
                if let Some(plan) = self.cluster.take_stop(id, pid) {
                    if self.still_stopping(id, pid) {
                        if plan.message {
                            self.cluster.send_shutdown(id, pid, plan.sig);
                        } else {
                            signals::kill_group(pid, plan.sig);
                        }
                    }
                }
                Vec::new()
            }
            Msg::ShutdownUnsent { sig } => {
                if self.still_stopping(id, pid) {
                    signals::kill_group(pid, sig);
                }
                Vec::new()
            }
            Msg::Event(Event::Closed) => Vec::new(),
        }
    }

    /// The policy's stop signal (`begin_stop`: the app's `kill_signal` to an instance that is
    /// stopping and not yet killed) goes through the channel when the instance has one and the
    /// app wants it: a drain first for a Node instance on pmi's sockets (it stops accepting and
    /// finishes its requests while the queue waits for the others), then pm2's `'shutdown'`
    /// message with `shutdown_with_message`, else the signal. Returns whether it was handled.
    pub(super) fn graceful_stop(&mut self, pgid: i32, sig: i32) -> bool {
        let Some(inst) =
            self.state.instances.iter().find(
                |i| matches!(i.phase, Phase::Stopping { pid, killed: false, .. } if pid == pgid),
            )
        else {
            return false;
        };
        let spec = &self.state.apps[inst.app].spec;
        if sig != spec.kill_signal.0 {
            return false;
        }
        let drain = cluster::gets_preload(spec);
        let plan = cluster::StopPlan {
            sig,
            message: spec.shutdown_with_message,
            drain_for: spec.kill_timeout / 2,
        };
        if !drain && !plan.message {
            return false;
        }
        let id = inst.id;
        self.cluster.stop(id, pgid, plan, drain)
    }

    fn still_stopping(&self, id: InstId, pid: i32) -> bool {
        self.state.get(id).is_some_and(
            |i| matches!(i.phase, Phase::Stopping { pid: p, killed: false, .. } if p == pid),
        )
    }
}
