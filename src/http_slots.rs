//! Connection slots of the HTTP endpoint, with eviction, so that idle clients cannot starve a probe.
//!
//! Role: `http::serve_snapshots` takes a slot for every accepted connection. When all slots are
//! taken, the oldest connection that is not being answered is closed to make room: one that has
//! sent nothing, a slowloris with half a request head, a keep-alive connection between requests.
//! Silent connections go first, then those with half a request head waiting unread. A
//! connection whose request head has been read (it is being answered), or whose whole head is
//! already waiting in the kernel (accepted in the same burst, not yet polled), is never
//! evicted; only when every slot is such a connection is the newcomer refused.
//!
//! Invariants:
//! - At most `cap` connections are open at once: a slot is given only after one is free.
//! - A slot's entry leaves the table before its socket is closed (eviction removes it first;
//!   a finished connection drops its `Slot` in the same poll that closes the socket, and the
//!   server runs on one thread), so the fd peeked at is always the connection's own.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use tokio::task::AbortHandle;

/// The table of open connections, oldest first (ids grow).
#[derive(Clone)]
pub struct Slots {
    inner: Arc<Mutex<Table>>,
    cap: usize,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Open>,
}

struct Open {
    fd: RawFd,
    answering: Arc<AtomicUsize>,
    /// Set right after the connection's task is spawned.
    abort: Option<AbortHandle>,
}

/// One connection's hold on a slot; dropping it frees the slot.
pub struct Slot {
    inner: Arc<Mutex<Table>>,
    busy: Busy,
}

/// Marks a connection as answering a request (not evictable) while an `Answering` lives.
#[derive(Clone)]
pub struct Busy {
    id: u64,
    answering: Arc<AtomicUsize>,
}

pub struct Answering(Arc<AtomicUsize>);

/// What eviction sees of an idle connection, best victim first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Idle {
    /// The peer has closed or the socket is broken.
    Gone,
    /// Nothing waiting to be read.
    Silent,
    /// Part of a request head waits unread (a slowloris, or the start of a request).
    Partial,
}

impl Slots {
    pub fn new(cap: usize) -> Slots {
        Slots {
            inner: Arc::new(Mutex::new(Table::default())),
            cap: cap.max(1),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a just-accepted connection, evicting an idle one when all are taken; `None`
    /// when every open connection is being answered.
    pub fn take(&self, stream: &impl AsRawFd) -> Option<Slot> {
        let mut t = self.table();
        if t.open.len() >= self.cap {
            let victim = t
                .open
                .iter()
                .filter(|(_, o)| o.answering.load(Ordering::Relaxed) == 0)
                .filter_map(|(id, o)| idle(o.fd).map(|i| (i, *id)))
                .min()?;
            if let Some(o) = t.open.remove(&victim.1) {
                if let Some(a) = o.abort {
                    a.abort();
                }
            }
        }
        let id = t.next;
        t.next += 1;
        let answering = Arc::new(AtomicUsize::new(0));
        t.open.insert(
            id,
            Open {
                fd: stream.as_raw_fd(),
                answering: Arc::clone(&answering),
                abort: None,
            },
        );
        Some(Slot {
            inner: Arc::clone(&self.inner),
            busy: Busy { id, answering },
        })
    }

    /// Records how to close the connection of `busy` (if it is still open).
    pub fn set_abort(&self, handle: AbortHandle, busy: &Busy) {
        if let Some(o) = self.table().open.get_mut(&busy.id) {
            o.abort = Some(handle);
        }
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.table().open.len()
    }
}

impl Slot {
    pub fn busy(&self) -> Busy {
        self.busy.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.open.remove(&self.busy.id);
    }
}

impl Busy {
    pub fn start(&self) -> Answering {
        self.answering.fetch_add(1, Ordering::Relaxed);
        Answering(Arc::clone(&self.answering))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a connection may be evicted: `None` when a whole request head waits in its socket
/// (a request the server has not read yet, e.g. a probe accepted in the same burst as the
/// idle connections after it).
fn idle(fd: RawFd) -> Option<Idle> {
    let mut b = [0u8; 4096];
    match recv(fd, &mut b, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        Ok(0) => Some(Idle::Gone),
        Ok(n) if memchr::memmem::find(&b[..n], b"\r\n\r\n").is_some() => None,
        // A head longer than the peek is a head no probe sends.
        Ok(_) => Some(Idle::Partial),
        Err(Errno::EAGAIN) | Err(Errno::EINTR) => Some(Idle::Silent),
        Err(_) => Some(Idle::Gone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn evicts_the_oldest_silent_never_the_answering_or_pending() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(3);
        let (_c0, s0) = pair(&l);
        let (mut c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let a0 = slots.take(&s0).unwrap();
        let a1 = slots.take(&s1).unwrap();
        let a2 = slots.take(&s2).unwrap();
        let _answering = a0.busy().start();
        c1.write_all(b"GET /livez HTTP/1.1\r\n\r\n").unwrap();
        // Wait for the bytes to land in s1's receive buffer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while idle(s1.as_raw_fd()).is_some() {
            assert!(std::time::Instant::now() < deadline);
        }
        let (_c3, s3) = pair(&l);
        let a3 = slots.take(&s3).expect("the silent one (2) makes room");
        assert_eq!(slots.open(), 3);
        let ids: Vec<u64> = slots.table().open.keys().copied().collect();
        assert_eq!(ids, vec![a0.busy.id, a1.busy.id, a3.busy.id]);
        // Now 0 is answering, 1 has a request waiting, 3 is silent: 3 goes.
        let (_c4, s4) = pair(&l);
        let a4 = slots.take(&s4).unwrap();
        // 0 answering, 1 pending, 4 silent: 4 goes next; with 4 answering too, nobody can.
        let _b4 = a4.busy().start();
        let (_c5, s5) = pair(&l);
        assert!(
            slots.take(&s5).is_none(),
            "every slot busy: the newcomer is refused"
        );
        drop((a1, a2, a3));
        assert_eq!(slots.open(), 2);
    }

    #[test]
    fn silent_connections_go_before_half_sent_heads() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(2);
        let (mut c0, s0) = pair(&l);
        let (_c1, s1) = pair(&l);
        c0.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while idle(s0.as_raw_fd()) != Some(Idle::Partial) {
            assert!(std::time::Instant::now() < deadline);
        }
        let a0 = slots.take(&s0).unwrap();
        let _a1 = slots.take(&s1).unwrap();
        let (_c2, s2) = pair(&l);
        let a2 = slots.take(&s2).expect("the silent one makes room");
        let ids: Vec<u64> = slots.table().open.keys().copied().collect();
        assert_eq!(ids, vec![a0.busy.id, a2.busy.id]);
        let _b2 = a2.busy().start();
        let (_c3, s3) = pair(&l);
        let a3 = slots.take(&s3).expect("then the half-sent head");
        let ids: Vec<u64> = slots.table().open.keys().copied().collect();
        assert_eq!(ids, vec![a2.busy.id, a3.busy.id]);
    }
}
