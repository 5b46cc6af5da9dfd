//! The data of a rolling reload (`reload.rs` has the decisions): what is replaced, the step in
//! progress, and how it ended. Kept apart so that `state.rs` can hold reloads without importing
//! the policy (ids are pm_ids, `state::InstId`).

use std::collections::VecDeque;

use tokio::time::Instant;

/// Finished reloads kept for their answer (a waiter looks its reload up by id).
pub(super) const KEEP_FINISHED: usize = 32;

/// Why a reload stopped before its end: which instance and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailure {
    pub name: String,
    pub index: u32,
    pub why: String,
    /// The replacements that took over before it (their new pm_ids).
    pub done: Vec<u32>,
    /// A rolling step: the old instance still serves. (An in-place reload had stopped it.)
    pub old_serves: bool,
}

/// How a reload ended: the instances now serving (replacements and restarted ones), or the
/// failure.
pub type Outcome = Result<Vec<u32>, ReloadFailure>;

/// One replacement in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub old: u32,
    pub new: u32,
    /// Not ready by then: the replacement failed.
    pub deadline: Instant,
    /// The replacement was ready and the old instance is being stopped.
    pub retiring: bool,
    /// An app without a shared socket and with one instance is reloaded in place (SPEC §9:
    /// stop, start, wait until ready); this was the old process's pid.
    pub in_place: Option<Option<i32>>,
}

/// A reload under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    pub id: u64,
    pub(super) queue: VecDeque<u32>,
    pub(super) step: Option<Step>,
    pub(super) done: Vec<u32>,
}

impl Reload {
    pub(super) fn involves(&self, id: u32) -> bool {
        self.queue.contains(&id)
            || self
                .step
                .as_ref()
                .is_some_and(|s| s.old == id || s.new == id)
    }
}
