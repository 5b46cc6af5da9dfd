//! Who may hold a control connection: request slots, follower slots, and the idle connections
//! that give theirs up.
//!
//! Invariant: `logs --follow` streams and request connections have separate caps, so followers
//! can never lock out `health` or `status`; and when every request slot is taken, the connection
//! that has waited longest for its next request is closed to make room for the new one (an idle
//! or slow client can hold a slot only while nobody else needs it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Request connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// `logs --follow` streams at once (each also cheap: one task and its socket).
pub const MAX_FOLLOWERS: usize = 128;
/// How long a new connection waits for the slot of an evicted idle one.
const EVICT_WAIT: Duration = Duration::from_millis(500);

/// The caps and the idle registry every connection shares.
pub struct Slots {
    requests: Arc<Semaphore>,
    followers: Arc<Semaphore>,
    next: AtomicU64,
    /// Connections waiting for a request, oldest first.
    idle: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

/// A connection's place in the idle registry while it waits for a request.
pub struct IdleTicket<'a> {
    slots: &'a Slots,
    id: u64,
    pub evicted: Arc<Notify>,
}

impl Drop for IdleTicket<'_> {
    fn drop(&mut self) {
        self.slots.lock_idle().remove(&self.id);
    }
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            requests: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
            next: AtomicU64::new(0),
            idle: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Slots {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request slot: a free one, else the one of the longest-idle connection, closed for it.
    /// `None`: every slot is busy answering (answer `busy`).
    pub async fn request_slot(&self) -> Option<OwnedSemaphorePermit> {
        for _ in 0..2 {
            if let Ok(p) = self.requests.clone().try_acquire_owned() {
                return Some(p);
            }
            let oldest = self.lock_idle().pop_first();
            if let Some((_, notify)) = oldest {
                notify.notify_one();
                let freed = self.requests.clone().acquire_owned();
                return tokio::time::timeout(EVICT_WAIT, freed).await.ok()?.ok();
            }
            // Connections accepted a moment ago register as idle once their task first runs:
            // give them that turn before answering `busy`.
            tokio::task::yield_now().await;
        }
        None
    }

    /// A follower slot, taken over from the connection's request slot.
    pub fn follower_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.followers.clone().try_acquire_owned().ok()
    }

    /// Registers a connection as waiting for its next request until the ticket is dropped.
    pub fn waiting(&self) -> IdleTicket<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        self.lock_idle().insert(id, evicted.clone());
        IdleTicket {
            slots: self,
            id,
            evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_house_of_idle_connections_gives_up_the_oldest_slot() {
        let s = Slots::default();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(s.request_slot().await.unwrap());
        }
        let first = s.waiting();
        let _second = s.waiting();
        // The oldest idle connection is told to go; its slot is the newcomer's once it does.
        let newcomer = async { s.request_slot().await };
        let leaver = async {
            first.evicted.notified().await;
            held.pop();
        };
        let (slot, ()) = tokio::join!(newcomer, leaver);
        assert!(slot.is_some());
        drop(first);
        assert_eq!(s.lock_idle().len(), 1);
        // Nobody idle: busy.
        drop(_second);
        assert!(s.request_slot().await.is_none());
        assert!(s.follower_slot().is_some());
    }
}
