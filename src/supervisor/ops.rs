//! Requests that change what runs (from the control socket), and how they are answered.
//!
//! Invariant: a reply is sent only once the change has taken effect (a restart is answered when
//! the new process runs, a stop when the process is gone), or when it can no longer happen.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::state::{InstId, Phase, State};
use crate::status::Status;

/// What a verb acts on: `all`, an app name or namespace, `name:N`, or a pm_id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    All,
    Name(String),
    Instance(String, u32),
    Id(u32),
}

impl Target {
    pub fn parse(s: &str) -> Target {
        if s == "all" {
            return Target::All;
        }
        if let Ok(id) = s.parse::<u32>() {
            return Target::Id(id);
        }
        if let Some((name, n)) = s.rsplit_once(':') {
            if let Ok(n) = n.parse::<u32>() {
                return Target::Instance(name.to_string(), n);
            }
        }
        Target::Name(s.to_string())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::All => write!(f, "all"),
            Target::Name(n) => write!(f, "{n}"),
            Target::Instance(n, i) => write!(f, "{n}:{i}"),
            Target::Id(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleCount {
    Set(u32),
    Add(u32),
    Sub(u32),
}

impl ScaleCount {
    pub fn parse(s: &str) -> Option<ScaleCount> {
        if let Some(n) = s.strip_prefix('+') {
            return n.parse().ok().map(ScaleCount::Add);
        }
        if let Some(n) = s.strip_prefix('-') {
            return n.parse().ok().map(ScaleCount::Sub);
        }
        s.parse().ok().map(ScaleCount::Set)
    }

    pub fn apply(self, current: u32) -> u32 {
        match self {
            ScaleCount::Set(n) => n,
            ScaleCount::Add(n) => current.saturating_add(n),
            ScaleCount::Sub(n) => current.saturating_sub(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Start(Target),
    Stop(Target),
    Restart(Target),
    Scale { app: String, count: ScaleCount },
    Signal { sig: i32, target: Target },
}

/// One instance as a reply reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brief {
    pub id: u32,
    pub name: String,
    pub instance: u32,
    pub pid: Option<u32>,
    pub status: Status,
}

pub type OpReply = Result<Vec<Brief>, String>;

/// A request with its reply channel, as it travels to the supervisor.
#[derive(Debug)]
pub struct ControlMsg {
    pub op: Op,
    pub reply: oneshot::Sender<OpReply>,
}

/// What an accepted request waits for before it is answered.
#[derive(Debug)]
pub(crate) enum Wait {
    /// Each instance runs, with a new pid where `need_new` says so.
    Running(Vec<(InstId, Option<i32>)>),
    /// None of these instances runs or is about to.
    Down(Vec<InstId>),
    /// These instances are gone (scale down).
    Gone(Vec<InstId>),
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub wait: Wait,
    pub ids: Vec<InstId>,
    pub reply: oneshot::Sender<OpReply>,
}

impl State {
    /// The instances a target names; an unknown target lists what is known.
    pub fn resolve(&self, t: &Target) -> Result<Vec<InstId>, String> {
        let ids: Vec<InstId> = self
            .instances
            .iter()
            .filter(|i| {
                let spec = &self.apps[i.app].spec;
                match t {
                    Target::All => true,
                    Target::Name(n) => &spec.name == n || &spec.namespace == n,
                    Target::Instance(n, k) => &spec.name == n && i.index == *k,
                    Target::Id(id) => i.id == *id,
                }
            })
            .map(|i| i.id)
            .collect();
        if ids.is_empty() {
            // An app scaled to zero is still a known name.
            if let Target::Name(n) = t {
                if self.app_index(n).is_some() {
                    return Ok(ids);
                }
            }
            let names: Vec<&str> = self.apps.iter().map(|a| a.spec.name.as_str()).collect();
            return Err(format!(
                "unknown target '{t}'; known apps: {} (or all, NAME:N, or a numeric id)",
                names.join(", ")
            ));
        }
        Ok(ids)
    }

    pub fn brief(&self, id: InstId) -> Option<Brief> {
        let i = self.get(id)?;
        Some(Brief {
            id,
            name: self.apps[i.app].spec.name.clone(),
            instance: i.index,
            pid: i.phase.pid().filter(|p| *p > 0).map(|p| p as u32),
            status: status_of(&i.phase),
        })
    }

    /// `Some(reply)` once the wait is over.
    pub(crate) fn check(&self, p: &Pending) -> Option<OpReply> {
        let briefs = || Ok(p.ids.iter().filter_map(|id| self.brief(*id)).collect());
        match &p.wait {
            Wait::Running(list) => {
                for (id, old) in list {
                    let Some(i) = self.get(*id) else {
                        return Some(Err(format!("instance {id} was removed")));
                    };
                    match &i.phase {
                        Phase::Running { pid, .. } if Some(*pid) != *old => {}
                        Phase::Errored | Phase::Stopped => {
                            let why = i
                                .last_exit
                                .map(|e| format!(" (last exit: {})", e.status))
                                .unwrap_or_default();
                            return Some(Err(format!(
                                "{}:{} did not start: {}{why}",
                                self.apps[i.app].spec.name,
                                i.index,
                                status_of(&i.phase).as_str()
                            )));
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
            Wait::Gone(ids) => ids
                .iter()
                .all(|id| self.get(*id).is_none())
                .then(|| Ok(Vec::new())),
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
    }
}
