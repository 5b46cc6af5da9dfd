//! The supervisor's inbox vocabulary: what readers and watchers may ask, and how it is answered.
//!
//! `Target` names instances with one rule (`Target::matches`, `Target::select`) that both the
//! supervisor and the read-only answers use; `Op` is a mutation, `ControlMsg` an op with its reply
//! channel, `OpError` a typed refusal, `Trigger` a watcher's restart request, `ApplyMsg` a
//! `pmi apply` (answered with an `ApplyReport`), `WatchOrder` what the watchers must follow, and
//! `Handle` what a reader holds (snapshot, inbox, apply, logs). Invariant: readers reach the
//! supervisor only through a `Handle`; nothing here knows who reads (control socket, HTTP,
//! watchers).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::logs::LogHub;
use crate::status::{Snapshot, Status};

/// What a verb acts on: `all`, an app name or namespace, `name:N`, or a pm_id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    All,
    Name(String),
    Instance(String, u32),
    Id(u32),
}

/// How an instance is named, for target matching.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    /// NODE_APP_INSTANCE.
    pub index: u32,
    /// pm_id.
    pub id: u32,
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

    /// Whether this target names the instance.
    pub fn matches(&self, i: &Named<'_>) -> bool {
        match self {
            Target::All => true,
            Target::Name(n) => i.name == n || i.namespace == n,
            Target::Instance(n, k) => i.name == n && i.index == *k,
            Target::Id(id) => i.id == *id,
        }
    }

    /// The items this target names, in order. `all` and a known app name (scaled to zero) may
    /// name nothing; any other target that names nothing is `OpError::UnknownTarget`, listing
    /// `known` app names.
    pub fn select<'a, T>(
        &self,
        items: impl IntoIterator<Item = (T, Named<'a>)>,
        known: &[&str],
    ) -> Result<Vec<T>, OpError> {
        let found: Vec<T> = items
            .into_iter()
            .filter(|(_, n)| self.matches(n))
            .map(|(t, _)| t)
            .collect();
        let known_name = matches!(self, Target::Name(n) if known.contains(&n.as_str()));
        if found.is_empty() && !known_name && *self != Target::All {
            return Err(OpError::UnknownTarget {
                target: self.to_string(),
                known: known.iter().map(|s| s.to_string()).collect(),
            });
        }
        Ok(found)
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

/// `pmi scale`'s count: N, +N or -N.
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

/// A mutation of what runs.
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

/// Why the supervisor refused or could not complete an op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("unknown target '{target}'; known apps: {} (or all, NAME:N, or a numeric id)", known_list(.known))]
    UnknownTarget { target: String, known: Vec<String> },
    #[error("unknown app '{0}'")]
    UnknownApp(String),
    #[error("{n} instances is more than pmi allows ({max})")]
    TooManyInstances { n: u32, max: u32 },
    /// A stop of everything is under way; nothing new is accepted.
    #[error("pmi is shutting down")]
    ShuttingDown,
    /// pmi exits before the op could complete.
    #[error("pmi is exiting")]
    Exiting,
    #[error("instance {0} was removed")]
    Removed(u32),
    /// `why` is the status word and, when known, the last exit.
    #[error("{name}:{index} did not start: {why}")]
    DidNotStart {
        name: String,
        index: u32,
        why: String,
    },
    /// Another apply runs and the queue is full.
    #[error("{0}")]
    Busy(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    }
}

pub type OpReply = Result<Vec<Brief>, OpError>;

/// A request with its reply channel, as it travels to the supervisor. The reply is sent once
/// the change has taken effect, or when it can no longer happen.
#[derive(Debug)]
pub struct ControlMsg {
    pub op: Op,
    pub reply: oneshot::Sender<OpReply>,
}

/// A watcher asks for an app's graceful restart.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The app's key: its index in the apps file pmi started with; apps added by `pmi apply`
    /// get new keys, and a removed app's key is never reused.
    pub app: usize,
    pub reason: String,
}

/// What the supervisor tells the daemon after an apply, so that the watchers follow the apps.
#[derive(Debug, Clone)]
pub enum WatchOrder {
    /// (Re)start the file watcher of the app with this key (`Trigger::app`) for this spec;
    /// `None`, or a spec without `watch`: stop it.
    App {
        key: usize,
        spec: Option<Arc<crate::config::AppSpec>>,
    },
    /// Watch this apps file (`watch_config`), or nothing.
    ConfigFile(Option<std::path::PathBuf>),
}

/// What readers (control socket, HTTP) get: the snapshot, the inbox, the logs.
#[derive(Clone)]
pub struct Handle {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub inbox: mpsc::Sender<ControlMsg>,
    pub logs: LogHub,
    /// `pmi apply` and the apps-file watcher.
    pub apply: mpsc::Sender<ApplyMsg>,
}

/// `pmi apply [FILE] [--dry-run]`, or the apps-file watcher (`watch_config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// A new apps file, absolute (the client resolves it against its own cwd); `None`: the file
    /// pmi runs now.
    pub file: Option<std::path::PathBuf>,
    pub dry_run: bool,
    /// Who asks (the watcher's applies are logged, nobody waits for the report).
    pub from_watcher: bool,
}

/// An apply with its reply channel; answered once every change took effect (or failed).
#[derive(Debug)]
pub struct ApplyMsg {
    pub req: ApplyRequest,
    pub reply: oneshot::Sender<Result<ApplyReport, OpError>>,
}

/// What an apply did (or, with `--dry-run` or an invalid file, would do). Schema: docs/apply.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApplyReport {
    /// The apps file read (absolute).
    pub file: String,
    pub dry_run: bool,
    /// Why the file is invalid, each located; when not empty nothing was changed.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// One entry per app, in the order the changes were made.
    pub changes: Vec<AppChange>,
    /// `pmi:` settings that changed in the file but take effect only when pmi restarts.
    pub needs_restart: Vec<String>,
    /// `pmi:` settings that changed and were applied at once.
    pub settings_applied: Vec<String>,
    /// This apply waited for an earlier one to finish.
    pub queued: bool,
}

impl ApplyReport {
    /// Whether any change failed.
    pub fn failed(&self) -> bool {
        self.changes.iter().any(|c| c.error.is_some())
    }
}

/// What an apply does to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// New in the file: started (when autostart).
    Added,
    /// Gone from the file: stopped gracefully, then forgotten.
    Removed,
    /// What the process sees changed: instances restarted one at a time.
    Reloaded,
    /// Only `instances` changed.
    Scaled,
    /// Only supervision settings changed: applied without touching the processes.
    Updated,
    Unchanged,
}

/// One app's change, as the reply and pmi's log list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppChange {
    pub app: String,
    pub kind: ChangeKind,
    /// The fields that differ (pm2's names), for reloaded and updated apps.
    pub fields: Vec<String>,
    /// `[from, to]` when the instance count changes.
    pub instances: Option<[u32; 2]>,
    /// Why this change failed; the other changes were still made.
    pub error: Option<String>,
}

impl std::fmt::Display for AppChange {
    /// `added web`, `reloaded api (script changed)`, `scaled worker 2 → 4`, `unchanged db`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = match self.kind {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Reloaded => "reloaded",
            ChangeKind::Scaled => "scaled",
            ChangeKind::Updated => "updated",
            ChangeKind::Unchanged => "unchanged",
        };
        write!(f, "{verb} {}", self.app)?;
        if let Some([a, b]) = self.instances {
            write!(f, " {a} → {b}")?;
        }
        match self.kind {
            ChangeKind::Reloaded => write!(f, " ({} changed)", self.fields.join(", "))?,
            ChangeKind::Updated => write!(f, " ({})", self.fields.join(", "))?,
            _ => {}
        }
        if let Some(e) = &self.error {
            write!(f, ": FAILED: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &'static str, index: u32, id: u32) -> (u32, Named<'static>) {
        let n = Named {
            name,
            namespace: "default",
            index,
            id,
        };
        (id, n)
    }

    #[test]
    fn all_is_valid_even_when_nothing_runs() {
        // After every instance was scaled away, `all` names nothing but is no error; the
        // supervisor and the snapshot readers used to disagree here.
        let none: Vec<(u32, Named<'static>)> = Vec::new();
        assert_eq!(Target::All.select(none.clone(), &["api"]), Ok(vec![]));
        assert_eq!(Target::All.select(none, &[]), Ok(vec![]));
    }

    #[test]
    fn select_by_each_form() {
        let items = || vec![named("api", 0, 0), named("api", 1, 1), named("web", 0, 2)];
        let known = ["api", "web"];
        let sel = |t: &str| Target::parse(t).select(items(), &known);
        assert_eq!(sel("api"), Ok(vec![0, 1]));
        assert_eq!(sel("default"), Ok(vec![0, 1, 2]));
        assert_eq!(sel("api:1"), Ok(vec![1]));
        assert_eq!(sel("2"), Ok(vec![2]));
        assert_eq!(sel("all"), Ok(vec![0, 1, 2]));
        // A known app scaled to zero names nothing, without error.
        assert_eq!(
            Target::parse("web").select(vec![named("api", 0, 0)], &known),
            Ok(vec![])
        );
        let e = sel("nope").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown target 'nope'; known apps: api, web (or all, NAME:N, or a numeric id)"
        );
        assert!(sel("9").is_err());
        assert!(sel("api:7").is_err());
    }
}
