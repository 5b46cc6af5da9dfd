//! Counting unfinished log work, for `LogHub::drain`.
//!
//! A unit is an open pipe (until its reader saw end of file and handed over its last bytes) or a
//! buffer on its way to a writer thread (until written or discarded). Each unit is a
//! [`WorkToken`] that gives itself back when dropped, wherever that happens (after a write, in a
//! channel dropped with its thread, in a task cancelled at shutdown), so the count cannot leak.
//! Invariant: a reader takes the token of a buffer before it gives back its own, so the count
//! never touches zero while bytes are still on their way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Work {
    units: AtomicUsize,
    idle: Notify,
}

impl Work {
    pub fn token(self: &Arc<Self>) -> WorkToken {
        self.units.fetch_add(1, Ordering::SeqCst);
        WorkToken(self.clone())
    }

    pub fn is_idle(&self) -> bool {
        self.units.load(Ordering::SeqCst) == 0
    }

    /// Waits until no unit is left, or `timeout`. Returns whether it is idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register before checking, so a wake-up between the check and the wait is not lost.
            let notified = self.idle.notified();
            if self.is_idle() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_idle();
            }
        }
    }
}

/// One unit of unfinished work; dropping it finishes it.
#[derive(Debug)]
pub(crate) struct WorkToken(Arc<Work>);

impl Drop for WorkToken {
    fn drop(&mut self) {
        if self.0.units.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Writer threads drop tokens too: Notify may be used from any thread.
            self.0.idle.notify_waiters();
        }
    }
}

/// A value carried together with its work unit.
#[derive(Debug)]
pub(crate) struct Job<T> {
    pub data: T,
    _token: WorkToken,
}

impl<T> Job<T> {
    pub fn new(data: T, token: WorkToken) -> Job<T> {
        Job {
            data,
            _token: token,
        }
    }

    /// The value; the work unit ends here.
    pub fn into_data(self) -> T {
        self.data
    }
}
