//! One task per app pipe: read a chunk, cut it into records, format them once for every
//! destination, hand the buffers to the writer threads.
//!
//! Invariant: bytes of one pipe leave in the order they were read (one task, sequential sends on
//! FIFO channels), and the task does not read again before its last chunk was accepted by the
//! channels: a full channel stops the reading, and the app blocks on its own pipe.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::net::unix::pipe;

use super::files::{FileJob, FileMsg, FileTx};
use super::format::{SourceFmt, Stamp};
use super::pool;
use super::ring::{InstanceRing, RingDraft, Span};
use super::sink::{ConsoleMsg, ConsoleTx};
use super::split::{Record, Splitter};
use super::work::{Job, WorkToken};
use super::{
    LogLine, Shared, Stream, IDLE_FLUSH, OUT_BUFFER_BYTES, PIPE_BYTES, READ_BYTES, SPLIT_BYTES,
};

thread_local! {
    /// One read buffer for all pipes of the runtime thread: it is only borrowed between a read and
    /// the end of that chunk's formatting (no await in between), so tasks never share it at once,
    /// and a hundred pipes cost one buffer instead of a hundred.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BYTES]);
}

/// The file writer and the files a stream goes to.
pub(crate) type FileTargets = (FileTx, Arc<[Arc<Path>]>);

/// Where one pipe's records go.
pub(crate) struct Pipe {
    pub stream: Stream,
    pub hub: Arc<Shared>,
    pub src: Arc<SourceFmt>,
    pub console: ConsoleTx,
    /// The file writer and this stream's files, when it has any.
    pub files: Option<FileTargets>,
    /// pmi's other console stream, when one of this stream's log files *is* it (`error_file:
    /// /dev/stdout`): those lines go through that stream's writer, never a second open of it.
    pub mirror: Option<ConsoleTx>,
    pub ring: Arc<Mutex<InstanceRing>>,
}

/// The formatted output of one chunk.
struct Output {
    console: Vec<Vec<u8>>,
    file: Option<Vec<u8>>,
}

enum Step {
    Again,
    Data(Output),
    Eof,
    Failed(io::Error),
}

impl Pipe {
    /// Reads `fd` to its end. `token` keeps `drain` waiting until the last bytes are handed over.
    pub async fn run(self, fd: OwnedFd, token: WorkToken) {
        enlarge_pipe(&fd);
        // `unchecked` so that a socketpair or a pty works as well as a pipe; the one thing it
        // needs, O_NONBLOCK, is set here.
        let rx = match set_nonblocking(&fd)
            .map_err(io::Error::from)
            .and_then(|()| pipe::Receiver::from_owned_fd_unchecked(fd))
        {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(
                    app = %self.src.app, instance = self.src.instance,
                    "cannot read the {} of the app: {e}", self.stream.name()
                );
                return;
            }
        };
        let mut splitter = Splitter::new(SPLIT_BYTES);
        // Scratch for the ring's line positions, kept between chunks.
        let mut spans: Vec<Span> = Vec::new();
        loop {
            let ready = if splitter.has_pending() {
                // An unfinished line waits at most the idle delay for its end.
                match tokio::time::timeout(IDLE_FLUSH, rx.readable()).await {
                    Ok(ready) => ready,
                    Err(_) => {
                        let mut em = self.emitter(&[], &mut spans);
                        splitter.flush(|r| em.record(&r));
                        self.send(em.finish()).await;
                        continue;
                    }
                }
            } else {
                rx.readable().await
            };
            if let Err(e) = ready {
                tracing::debug!(app = %self.src.app, "pipe poll failed: {e}");
                break;
            }
            let step = READ_BUF.with_borrow_mut(|buf| {
                // try_read clears the readiness on WouldBlock, so the next wait really waits.
                match rx.try_read(buf) {
                    Ok(0) => Step::Eof,
                    Ok(n) => {
                        let data = &buf[..n];
                        let mut em = self.emitter(data, &mut spans);
                        splitter.feed(data, |r| em.record(&r));
                        Step::Data(em.finish())
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        Step::Again
                    }
                    Err(e) => Step::Failed(e),
                }
            });
            match step {
                Step::Again => {}
                Step::Data(out) => self.send(out).await,
                Step::Eof => break,
                Step::Failed(e) => {
                    // EIO on a pty whose other side closed, say: the stream is over.
                    tracing::debug!(app = %self.src.app, "pipe read failed: {e}");
                    break;
                }
            }
        }
        let mut em = self.emitter(&[], &mut spans);
        splitter.finish(|r| em.record(&r));
        self.send(em.finish()).await;
        drop(token);
    }

    /// Formats the records cut from `data` (empty for a flush).
    fn emitter<'a>(&'a self, data: &'a [u8], spans: &'a mut Vec<Span>) -> Emitter<'a> {
        let size_hint = data.len();
        Emitter {
            data,
            run: (0, 0),
            console_verbatim: self.src.console_verbatim(self.hub.format),
            file_verbatim: self.has_files() && self.src.file_verbatim(),
            ring: RingDraft::new(data, spans),
            stamp: Stamp::now(),
            console: Vec::new(),
            cur: pool::get(size_hint + size_hint / 4),
            file: self.has_files().then(|| pool::get(size_hint)),
            subscribed: self.hub.lines.receiver_count() > 0,
            pipe: self,
        }
    }

    /// Hands the chunk's buffers to the writer threads, waiting while their channels are full.
    async fn send(&self, out: Output) {
        for buf in out.console {
            let job = Job::new(buf, self.hub.work.token());
            // A closed channel (writer thread gone) discards: the pipe is still drained.
            let _ = self.console.send(ConsoleMsg::Data(job)).await;
        }
        let Some(data) = out.file else {
            return;
        };
        if data.is_empty() {
            pool::put(data);
            return;
        }
        let Some((tx, paths)) = &self.files else {
            if let Some(mirror) = &self.mirror {
                let _ = mirror
                    .send(ConsoleMsg::Data(Job::new(data, self.hub.work.token())))
                    .await;
            }
            return;
        };
        if let Some(mirror) = &self.mirror {
            let mut copy = pool::get(data.len());
            copy.extend_from_slice(&data);
            let _ = mirror
                .send(ConsoleMsg::Data(Job::new(copy, self.hub.work.token())))
                .await;
        }
        let job = Job::new(
            FileJob {
                paths: paths.clone(),
                data,
            },
            self.hub.work.token(),
        );
        let _ = tx.send(FileMsg::Write(job)).await;
    }

    /// Whether the chunk needs its log-file form (for a file, or for the mirrored console).
    fn has_files(&self) -> bool {
        self.files.is_some() || self.mirror.is_some()
    }
}

/// Formats the records of one chunk for every destination.
struct Emitter<'a> {
    pipe: &'a Pipe,
    /// The read chunk the records mostly lie in.
    data: &'a [u8],
    /// Records whose verbatim output is one contiguous range of `data`, not yet copied.
    run: (usize, usize),
    console_verbatim: bool,
    file_verbatim: bool,
    stamp: Stamp,
    console: Vec<Vec<u8>>,
    cur: Vec<u8>,
    file: Option<Vec<u8>>,
    ring: RingDraft<'a>,
    subscribed: bool,
}

impl Emitter<'_> {
    #[inline]
    fn record(&mut self, r: &Record<'_>) {
        let p = self.pipe;
        // Formats that expand (json of many tiny lines) are cut into several channel messages,
        // so a message stays near OUT_BUFFER_BYTES whatever the input. Records not yet copied
        // from the run come after `cur`, so cutting here keeps the order.
        if self.cur.len() >= OUT_BUFFER_BYTES {
            let full = std::mem::replace(&mut self.cur, pool::get(OUT_BUFFER_BYTES));
            self.console.push(full);
        }
        let in_data = self.ring.push(r.bytes);
        // Verbatim outputs (raw without date) copy runs of consecutive records in one go instead
        // of line by line: the raw pass-through then costs one copy per chunk.
        let covered = match in_data {
            Some((start, end)) if self.console_verbatim || self.file_verbatim => {
                if self.run.1 != start {
                    self.flush_run();
                    self.run = (start, start);
                }
                self.run.1 = end + usize::from(r.newline);
                true
            }
            _ => {
                self.flush_run();
                false
            }
        };
        if !(covered && self.console_verbatim) {
            p.src
                .console(p.hub.format, p.stream, r, &mut self.stamp, &mut self.cur);
        }
        if let Some(file) = &mut self.file {
            if !(covered && self.file_verbatim) {
                p.src.file(p.stream, r, &mut self.stamp, file);
            }
        }
        if self.subscribed {
            // No subscriber: no allocation. A lagging one loses lines, never blocks this.
            let _ = p.hub.lines.send(LogLine {
                pm_id: p.src.pm_id,
                app: p.src.app.to_string(),
                instance: p.src.instance,
                stream: p.stream,
                ts_ms: self.stamp.ms(),
                text: String::from_utf8_lossy(r.bytes).into_owned(),
            });
        }
    }

    /// Copies the pending run into the verbatim outputs.
    fn flush_run(&mut self) {
        let (start, end) = self.run;
        if start == end {
            return;
        }
        let bytes = &self.data[start..end];
        if self.console_verbatim {
            self.cur.extend_from_slice(bytes);
        }
        if let (true, Some(file)) = (self.file_verbatim, &mut self.file) {
            file.extend_from_slice(bytes);
        }
        self.run = (end, end);
    }

    fn finish(mut self) -> Output {
        self.flush_run();
        let seq = self.pipe.hub.seq.fetch_add(1, Ordering::Relaxed);
        if let Some(chunk) = self.ring.finish(seq, self.stamp.ms()) {
            let mut ring = self.pipe.ring.lock().unwrap_or_else(|e| e.into_inner());
            ring.stream_mut(self.pipe.stream).push(chunk);
        }
        if self.cur.is_empty() {
            pool::put(self.cur);
        } else {
            self.console.push(self.cur);
        }
        Output {
            console: self.console,
            file: self.file,
        }
    }
}

/// Best effort: not a pipe, or over the user's pipe limit, just keeps the size it has.
fn enlarge_pipe(fd: &OwnedFd) {
    let want = i32::try_from(PIPE_BYTES).unwrap_or(i32::MAX);
    if fcntl(fd, FcntlArg::F_GETPIPE_SZ).is_ok_and(|size| size < want) {
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(want));
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
