//! The writer threads of the container log: one for pmi's stdout, one for its stderr.
//!
//! Readers hand formatted buffers over a bounded channel; the thread gathers what is queued into
//! one large (vectored) blocking write. When the destination is slow the channel fills and the
//! readers wait, so the apps are slowed by their pipes while the runtime and the supervisor never
//! block. Invariant: once a write fails (EPIPE, closed fd) the thread keeps receiving and
//! discarding, so readers keep draining the pipes and apps never hang on a dead log.
//!
//! pmi's own messages (tracing) reach the stderr thread through [`OwnQueue`], a byte-bounded
//! queue that never blocks the caller: a stuck stderr drops pmi's messages (and says how many)
//! rather than stalling the supervisor.

use std::io::{self, IoSlice, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use super::pool;
use super::work::Job;
use super::{BATCH_BYTES, CHANNEL_BUFFERS, OWN_QUEUE_BYTES};

pub(crate) enum ConsoleMsg {
    Data(Job<Vec<u8>>),
    /// pmi's own messages are waiting in the [`OwnQueue`].
    Wake,
    /// Answered once everything queued before it, pmi's own messages too, is written.
    Sync(std::sync::mpsc::SyncSender<()>),
}

pub(crate) type ConsoleTx = mpsc::Sender<ConsoleMsg>;

/// A file descriptor as a blocking `Write`, whatever its O_NONBLOCK flag (which pmi shares with
/// whoever else holds the open file): EAGAIN waits for room with poll(2) instead of failing.
pub struct FdSink<F: AsFd>(pub F);

impl<F: AsFd> FdSink<F> {
    fn wait_writable(&self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLOUT)];
        // An error here shows up again on the next write, which reports it.
        let _ = poll(&mut fds, PollTimeout::NONE);
    }

    fn retry(&self, mut op: impl FnMut() -> nix::Result<usize>) -> io::Result<usize> {
        loop {
            match op() {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => self.wait_writable(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<F: AsFd> Write for FdSink<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.retry(|| nix::unistd::write(self.0.as_fd(), buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Past IOV_MAX writev fails with EINVAL; the batch stays far below it, but be safe.
        let bufs = &bufs[..bufs.len().min(512)];
        self.retry(|| nix::sys::uio::writev(self.0.as_fd(), bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts a writer thread for `sink`. `name` is for messages ("stdout", "stderr").
pub(crate) fn spawn_console(
    name: &'static str,
    sink: Box<dyn Write + Send>,
    own: Option<Arc<OwnQueue>>,
) -> ConsoleTx {
    let (tx, rx) = mpsc::channel(CHANNEL_BUFFERS);
    let spawned = std::thread::Builder::new()
        .name(format!("pmi-{name}"))
        .spawn(move || console_thread(name, sink, rx, own));
    if let Err(e) = spawned {
        // The receiver is gone with the closure: sends fail and readers discard, apps still run.
        tracing::error!("cannot start the {name} log writer: {e}; app output is discarded");
    }
    tx
}

fn console_thread(
    name: &'static str,
    mut sink: Box<dyn Write + Send>,
    mut rx: mpsc::Receiver<ConsoleMsg>,
    own: Option<Arc<OwnQueue>>,
) {
    let mut broken = false;
    let mut held: Vec<Job<Vec<u8>>> = Vec::new();
    let mut synced: Vec<std::sync::mpsc::SyncSender<()>> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        // Gather what is already queued, up to the batch size, into one write.
        let mut total = 0;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ConsoleMsg::Data(job) => {
                    total += job.data.len();
                    held.push(job);
                }
                ConsoleMsg::Sync(ack) => synced.push(ack),
                ConsoleMsg::Wake => {}
            }
            if total < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        let (own_bytes, dropped) = own.as_ref().map(|q| q.take()).unwrap_or_default();
        if !broken {
            let mut slices: Vec<IoSlice<'_>> = held.iter().map(|j| IoSlice::new(&j.data)).collect();
            slices.push(IoSlice::new(&own_bytes));
            if let Err(e) = write_all_vectored(&mut *sink, &mut slices) {
                broken = true;
                // On stderr this warning is itself discarded; on stdout it explains the silence.
                tracing::warn!(
                    "cannot write app output to {name} ({e}): discarding it from now on"
                );
            }
        }
        // Ending the jobs tells `drain` their bytes are out (written or discarded).
        for job in held.drain(..) {
            pool::put(job.into_data());
        }
        if dropped > 0 {
            tracing::warn!("{dropped} of pmi's own messages dropped: stderr was too slow");
        }
        for ack in synced.drain(..) {
            let _ = ack.try_send(());
        }
    }
}

/// Waits (at most `timeout`) until both console writers have written what was queued, pmi's own
/// last messages included: called once before pmi exits, which would otherwise lose them.
pub(crate) fn sync_console(timeout: std::time::Duration) {
    let Some((out, err)) = REAL_CONSOLE.get() else {
        return;
    };
    let deadline = std::time::Instant::now() + timeout;
    for tx in [out, err] {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if tx.try_send(ConsoleMsg::Sync(ack)).is_ok() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = done.recv_timeout(left);
        }
    }
}

fn write_all_vectored(sink: &mut dyn Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match sink.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// pmi's own messages on their way to the stderr writer thread.
pub(crate) struct OwnQueue {
    state: Mutex<OwnState>,
    wake: OnceLock<ConsoleTx>,
}

#[derive(Default)]
struct OwnState {
    bytes: Vec<u8>,
    dropped: u64,
}

impl OwnQueue {
    fn new() -> OwnQueue {
        OwnQueue {
            state: Mutex::new(OwnState::default()),
            wake: OnceLock::new(),
        }
    }

    fn push(&self, msg: &[u8]) {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.bytes.len() + msg.len() > OWN_QUEUE_BYTES {
                st.dropped += 1;
                return;
            }
            st.bytes.extend_from_slice(msg);
        }
        // A full channel means the thread is busy and looks at the queue after each batch.
        if let Some(tx) = self.wake.get() {
            let _ = tx.try_send(ConsoleMsg::Wake);
        }
    }

    fn take(&self) -> (Vec<u8>, u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = std::mem::take(&mut st.dropped);
        (std::mem::take(&mut st.bytes), dropped)
    }
}

/// The writer threads of the process's real fd 1 and fd 2, shared by every hub.
pub(crate) fn real_console() -> (ConsoleTx, ConsoleTx) {
    REAL_CONSOLE
        .get_or_init(|| {
            let own = Arc::new(OwnQueue::new());
            let out = spawn_console("stdout", Box::new(FdSink(io::stdout())), None);
            let err = spawn_console("stderr", Box::new(FdSink(io::stderr())), Some(own.clone()));
            let _ = own.wake.set(err.clone());
            let _ = OWN_STDERR.set(own);
            (out, err)
        })
        .clone()
}

static REAL_CONSOLE: OnceLock<(ConsoleTx, ConsoleTx)> = OnceLock::new();

/// Set once the stderr writer thread runs; before that, pmi's messages are written directly.
static OWN_STDERR: OnceLock<Arc<OwnQueue>> = OnceLock::new();

/// Writes one of pmi's own messages to stderr without ever blocking on a slow stderr once the
/// log machinery runs, and without ever failing (a closed stderr just loses it).
pub(crate) fn write_own(msg: &[u8]) {
    match OWN_STDERR.get() {
        Some(q) => q.push(msg),
        None => {
            let _ = FdSink(io::stderr()).write_all(msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_queue_is_bounded_and_counts_drops() {
        let q = OwnQueue::new();
        let msg = vec![b'x'; 1000];
        for _ in 0..(OWN_QUEUE_BYTES / 1000 + 10) {
            q.push(&msg);
        }
        let (bytes, dropped) = q.take();
        assert!(bytes.len() <= OWN_QUEUE_BYTES);
        assert_eq!(dropped, 10);
        assert_eq!(q.take(), (Vec::new(), 0));
    }

    #[test]
    fn fd_sink_reports_epipe() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        drop(r);
        let mut sink = FdSink(w);
        let err = sink.write_all(b"hello").expect_err("EPIPE");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
