//! Requests that change what runs (from the control socket), and how they are answered.
//!
//! Invariant: a reply is sent only once the change has taken effect (a restart is answered when
//! the new process runs, a stop when the process is gone), or when it can no longer happen.

use tokio::sync::oneshot;

use super::policy::Action;
use super::state::Now;
use super::state::{InstId, Phase, State};
use crate::api::{Brief, ControlMsg, Named, Op, OpError, OpReply, ScaleCount, Target};
use crate::config::MAX_INSTANCES;
use crate::status::Status;

/// What an accepted request waits for before it is answered.
#[derive(Debug)]
pub(crate) enum Wait {
    /// Each instance runs, with a new pid where `need_new` says so.
    Running(Vec<(InstId, Option<i32>)>),
    /// None of these instances runs or is about to.
    Down(Vec<InstId>),
    /// These instances are gone (scale down).
    Gone(Vec<InstId>),
    /// This reload is over (`State::reload`).
    Reload(u64),
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub wait: Wait,
    pub ids: Vec<InstId>,
    pub reply: oneshot::Sender<OpReply>,
}

impl State {
    /// The instances a target names, by the one rule of `Target::select`.
    pub fn resolve(&self, t: &Target) -> Result<Vec<InstId>, OpError> {
        let items = self.instances.iter().map(|i| {
            let spec = &self.apps[i.app].spec;
            let n = Named {
                name: &spec.name,
                namespace: &spec.namespace,
                index: i.index,
                id: i.id,
            };
            (i.id, n)
        });
        let known: Vec<&str> = self.apps.iter().map(|a| a.spec.name.as_str()).collect();
        t.select(items, &known)
    }

    pub fn brief(&self, id: InstId) -> Option<Brief> {
        let i = self.get(id)?;
        Some(Brief {
            id,
            name: self.apps[i.app].spec.name.clone(),
            instance: i.index,
            pid: i.phase.pid().filter(|p| *p > 0).map(|p| p as u32),
            status: self.status(i),
        })
    }

    /// `Some(reply)` once the wait is over.
    pub(crate) fn check(&self, p: &Pending) -> Option<OpReply> {
        let briefs = || Ok(p.ids.iter().filter_map(|id| self.brief(*id)).collect());
        match &p.wait {
            Wait::Running(list) => {
                for (id, old) in list {
                    let Some(i) = self.get(*id) else {
                        return Some(Err(OpError::Removed(*id)));
                    };
                    match &i.phase {
                        // Waiting for its dependencies: the start order starts it.
                        Phase::Running { pid, .. } if Some(*pid) != *old => {}
                        Phase::Waiting => {}
                        Phase::Errored | Phase::Stopped => {
                            let why = i
                                .last_exit
                                .map(|e| format!(" (last exit: {})", e.status))
                                .unwrap_or_default();
                            return Some(Err(OpError::DidNotStart {
                                name: self.apps[i.app].spec.name.clone(),
                                index: i.index,
                                why: format!("{}{why}", status_of(&i.phase).as_str()),
                            }));
                        }
                        _ => return None,
                    }
                }
                Some(briefs())
            }
            Wait::Down(ids) => ids
                .iter()
                .all(|id| self.get(*id).is_none_or(|i| !i.phase.is_active()))
                .then(briefs),
            Wait::Gone(ids) => ids.iter().all(|id| self.get(*id).is_none()).then(briefs),
            Wait::Reload(r) => self.reload_outcome(*r).map(|o| self.reload_reply(o)),
        }
    }
}

impl State {
    /// A finished reload as the answer to `pmi reload`: the instances now serving, with their
    /// new pids, or which instance failed and why.
    fn reload_reply(&self, o: &super::rolling::Outcome) -> OpReply {
        match o {
            Ok(ids) => Ok(ids.iter().filter_map(|id| self.brief(*id)).collect()),
            Err(f) if f.name.is_empty() => Err(OpError::ShuttingDown),
            // In place: the old process was stopped first, so this is a start that failed.
            Err(f) if !f.old_serves => Err(OpError::DidNotStart {
                name: f.name.clone(),
                index: f.index,
                why: f.why.clone(),
            }),
            Err(f) => Err(OpError::ReloadFailed {
                name: f.name.clone(),
                index: f.index,
                why: f.why.clone(),
                done: f
                    .done
                    .iter()
                    .filter_map(|id| self.brief(*id))
                    .map(|b| format!("{}:{}", b.name, b.instance))
                    .collect(),
            }),
        }
    }
}

/// pm2's status word for a phase.
pub fn status_of(p: &Phase) -> Status {
    match p {
        Phase::Stopped => Status::Stopped,
        Phase::Running { .. } => Status::Online,
        Phase::Stopping { .. } | Phase::Draining { .. } => Status::Stopping,
        Phase::WaitingRestart { .. } => Status::WaitingRestart,
        Phase::Errored => Status::Errored,
        Phase::Waiting => Status::Waiting,
    }
}

/// What a targeted op does to the instances it names.
enum Verb {
    Start,
    Stop,
    Restart,
    Reload,
    Signal(i32),
}

/// Accepts one control request: the actions it needs, and the wait after which it is answered
/// (`None`: answered or refused already).
pub(crate) fn accept(st: &mut State, msg: ControlMsg, now: Now) -> (Vec<Action>, Option<Pending>) {
    let reply = msg.reply;
    if st.shutting_down {
        return refuse(reply, OpError::ShuttingDown);
    }
    let (target, verb) = match msg.op {
        Op::Scale { app, count } => return scale(st, &app, count, reply, now),
        Op::Start(t) => (t, Verb::Start),
        Op::Stop(t) => (t, Verb::Stop),
        Op::Restart(t) => (t, Verb::Restart),
        Op::Reload(t) => (t, Verb::Reload),
        Op::Signal { sig, target } => (target, Verb::Signal(sig)),
    };
    let ids = match st.resolve(&target) {
        Ok(ids) => ids,
        Err(e) => return refuse(reply, e),
    };
    let (actions, wait) = match verb {
        // Any running process answers a start, whether it was already running or not.
        Verb::Start => (
            st.start_ids(&ids, now),
            Wait::Running(ids.iter().map(|id| (*id, None)).collect()),
        ),
        // A restart waits for a pid other than the current one.
        Verb::Restart => {
            let old = ids
                .iter()
                .map(|id| (*id, st.get(*id).and_then(|i| i.phase.pid())))
                .collect();
            (st.restart_all(&ids, now), Wait::Running(old))
        }
        Verb::Stop => (st.stop_ids(&ids, now), Wait::Down(ids.clone())),
        Verb::Reload => {
            let mut out = Vec::new();
            let r = st.reload(&ids, now, &mut out);
            st.after_event(now, &mut out);
            (out, Wait::Reload(r))
        }
        Verb::Signal(sig) => {
            let briefs = ids.iter().filter_map(|id| st.brief(*id)).collect();
            let _ = reply.send(Ok(briefs));
            return (st.signal_ids(&ids, sig), None);
        }
    };
    (actions, Some(Pending { wait, ids, reply }))
}

fn refuse(reply: oneshot::Sender<OpReply>, e: OpError) -> (Vec<Action>, Option<Pending>) {
    let _ = reply.send(Err(e));
    (Vec::new(), None)
}

/// `pmi scale`: answered once the new instances run, or the removed ones are gone.
fn scale(
    st: &mut State,
    app: &str,
    count: ScaleCount,
    reply: oneshot::Sender<OpReply>,
    now: Now,
) -> (Vec<Action>, Option<Pending>) {
    let Some(ai) = st.app_index(app) else {
        return refuse(reply, OpError::UnknownApp(app.to_string()));
    };
    let current = st.of_app(ai).len() as u32;
    let n = count.apply(current);
    if n > MAX_INSTANCES {
        let max = MAX_INSTANCES;
        return refuse(reply, OpError::TooManyInstances { n, max });
    }
    let (actions, touched) = st.scale(ai, n, now);
    let wait = if n >= current {
        Wait::Running(touched.iter().map(|id| (*id, None)).collect())
    } else {
        Wait::Gone(touched)
    };
    let ids = st.of_app(ai);
    (actions, Some(Pending { wait, ids, reply }))
}
