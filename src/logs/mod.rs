//! App output → the container log (and, when asked, log files and the `pmi logs` buffers).
//!
//! Each instance's stdout and stderr pipe is read by its own task on the runtime thread
//! (`reader`); bytes are cut into lines (`split`), formatted once per read chunk (`format`), and
//! handed over bounded channels to writer threads: one per output stream (`sink`) and one for log
//! files (`files`). The last lines are kept per instance (`ring`) and broadcast to `pmi logs
//! --follow` subscribers. Buffers are recycled (`pool`); `work` counts what `drain` waits for;
//! `own` formats pmi's own messages.
//!
//! Invariants:
//! - no byte is lost or reordered within a stream; an app's stdout goes to pmi's stdout and its
//!   stderr to pmi's stderr, in every format;
//! - memory is bounded: a full channel stops the reader, so the app blocks on its pipe
//!   (back-pressure); nothing on the runtime thread ever blocks on a write;
//! - a dead destination (EPIPE, unwritable file) never stops pmi: its data is discarded and the
//!   pipes keep being drained, so apps never hang on their output.
//!
//! Line rules: a record ends at a newline; an unfinished line is written when the app closes the
//! stream, when it reaches [`SPLIT_BYTES`], or after [`IDLE_FLUSH`] without more output. Formats:
//! - `raw`: exactly the app's bytes (a split or flushed piece gets no newline added); with the
//!   app's `log_date_format`, each line start gets `<date>: ` (never a continuation piece);
//! - `prefixed`: `name | line`, or `name:N | line` when the app has more than one instance (or
//!   the instance index is above 0, after scaling); each piece is its own line; the date prefix,
//!   if any, follows the name;
//! - `json`: `{"ts","app","instance","stream","msg"}` per record, `ts` in UTC with milliseconds,
//!   `"partial":true` on a record that did not end with a newline (split, idle or end of file).

mod datefmt;
mod files;
mod format;
mod own;
mod pool;
mod reader;
mod ring;
mod sink;
mod split;
mod work;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::config::{LogFiles, LogFormat};

pub use datefmt::DateFormat;
pub use own::init_tracing;
pub use sink::FdSink;

/// Writes out what the console writers still hold before pmi exits (at most `timeout`).
pub fn sync_console(timeout: std::time::Duration) {
    sink::sync_console(timeout);
}

/// A longer line is written in pieces of this size (each piece a record of its own).
pub const SPLIT_BYTES: usize = 64 * 1024;
/// An unfinished line is written after the app has been silent this long.
pub const IDLE_FLUSH: Duration = Duration::from_millis(100);
/// At most this much is read from a pipe at once (one buffer shared by all pipes).
pub const READ_BYTES: usize = 256 * 1024;
/// App pipes are enlarged to this size (from Linux's 64 KiB), so a busy app and pmi wake each
/// other a quarter as often. Kept moderate: pipe sizes count against a per-user limit
/// (`/proc/sys/fs/pipe-user-pages-soft`) that the apps' own pipes share.
pub const PIPE_BYTES: usize = 256 * 1024;
/// A log file is renamed to `.1` when it grows past this size…
pub const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// …and this many old files (`.1` … `.3`) are kept.
pub const ROTATE_KEEP: usize = 3;
/// Lines kept per instance and stream for `pmi logs`…
pub const RING_LINES: usize = 1000;
/// …within this many bytes of text.
pub const RING_BYTES: usize = 128 * 1024;
/// Buffers queued per writer thread before readers wait (back-pressure). With messages of
/// about [`OUT_BUFFER_BYTES`], a writer's queue holds a few MiB at worst.
const CHANNEL_BUFFERS: usize = 8;
/// A chunk's formatted output is cut into channel messages of about this size.
const OUT_BUFFER_BYTES: usize = 256 * 1024;
/// A writer thread gathers queued buffers into one write up to this size.
const BATCH_BYTES: usize = 512 * 1024;
/// pmi's own messages queued for a slow stderr before they are dropped (and counted).
const OWN_QUEUE_BYTES: usize = 256 * 1024;
/// Lines a `pmi logs --follow` subscriber may lag behind before it loses some.
const BROADCAST_LINES: usize = 1024;

/// Identity and log settings of one instance.
#[derive(Debug, Clone)]
pub struct LogSource {
    pub app: Arc<str>,
    pub pm_id: u32,
    pub instance: u32,
    /// How many instances the app is configured with; the `prefixed` format shows the instance
    /// index only when this is above 1 (or the index is above 0). File names do not depend on it
    /// (`files.merge_logs` is already resolved).
    pub instances: u32,
    pub files: LogFiles,
}

/// Which output stream of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// One line for `pmi logs` (a piece of a split or unfinished line is a line of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub pm_id: u32,
    pub app: String,
    pub instance: u32,
    pub stream: Stream,
    /// When pmi read it, in ms since the Unix epoch.
    pub ts_ms: u64,
    /// Without the newline; invalid UTF-8 replaced.
    pub text: String,
}

/// Shared handle to the log machinery. Cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    format: LogFormat,
    out: sink::ConsoleTx,
    err: sink::ConsoleTx,
    /// Started with the first source that has a log file.
    files: OnceLock<files::FileTx>,
    /// `out` and `err` are the process's own fd 1 and fd 2 (not test sinks): a log file that is
    /// one of them is written through them (`files::console_alias`).
    real_console: bool,
    rings: Mutex<HashMap<u32, Arc<Mutex<ring::InstanceRing>>>>,
    lines: broadcast::Sender<LogLine>,
    /// Orders chunks across pipes for `tail`.
    seq: AtomicU64,
    work: Arc<work::Work>,
}

impl LogHub {
    /// Writes to the process's stdout and stderr.
    pub fn new(format: LogFormat) -> LogHub {
        let (out, err) = sink::real_console();
        LogHub::with_console(format, out, err, true)
    }

    /// Writes to the given destinations instead (tests): each gets its own writer thread, which
    /// ends once the hub and its readers are gone.
    #[cfg(test)]
    pub(crate) fn with_sinks(
        format: LogFormat,
        out: Box<dyn std::io::Write + Send>,
        err: Box<dyn std::io::Write + Send>,
    ) -> LogHub {
        let out = sink::spawn_console("stdout", out, None);
        let err = sink::spawn_console("stderr", err, None);
        LogHub::with_console(format, out, err, false)
    }

    fn with_console(
        format: LogFormat,
        out: sink::ConsoleTx,
        err: sink::ConsoleTx,
        real_console: bool,
    ) -> LogHub {
        LogHub {
            shared: Arc::new(Shared {
                format,
                out,
                err,
                files: OnceLock::new(),
                real_console,
                rings: Mutex::new(HashMap::new()),
                lines: broadcast::channel(BROADCAST_LINES).0,
                seq: AtomicU64::new(0),
                work: Arc::default(),
            }),
        }
    }

    /// Starts reading one instance's pipes. Must be called inside the tokio runtime.
    pub fn attach(&self, src: LogSource, stdout: OwnedFd, stderr: OwnedFd) {
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle,
            Err(e) => {
                // Dropping the pipes makes the app's writes fail (EPIPE) instead of hanging.
                tracing::error!(app = %src.app, "log pipes attached outside the runtime: {e}");
                return;
            }
        };
        let sh = &self.shared;
        let ring = {
            let mut rings = sh.rings.lock().unwrap_or_else(|e| e.into_inner());
            let ring = rings.entry(src.pm_id).or_insert_with(|| {
                Arc::new(Mutex::new(ring::InstanceRing::new(
                    src.app.clone(),
                    src.instance,
                )))
            });
            ring.clone()
        };
        let fmt = Arc::new(format::SourceFmt::new(&src));
        for (stream, fd, console, own_file) in [
            (Stream::Out, stdout, &sh.out, &src.files.out_file),
            (Stream::Err, stderr, &sh.err, &src.files.error_file),
        ] {
            let (files, mirror) = self.file_targets(&src, own_file.as_deref(), stream);
            let pipe = reader::Pipe {
                stream,
                hub: sh.clone(),
                src: fmt.clone(),
                console: console.clone(),
                files,
                mirror,
                ring: ring.clone(),
            };
            // Taken before the task starts, so `drain` called right after sees this pipe.
            let token = sh.work.token();
            handle.spawn(pipe.run(fd, token));
        }
    }

    /// The files a stream goes to (its own file and the combined `log_file`), with pm2's
    /// `-<pm_id>` suffix unless `merge_logs`, and the file writer to reach them; and pmi's other
    /// console stream when one of those files is it. A file that is this stream's own console
    /// is dropped: the console writer already writes every line to it, once.
    fn file_targets(
        &self,
        src: &LogSource,
        own: Option<&Path>,
        stream: Stream,
    ) -> (Option<reader::FileTargets>, Option<sink::ConsoleTx>) {
        let sh = &self.shared;
        let mut paths: Vec<Arc<Path>> = Vec::new();
        let mut mirror = None;
        for path in [own, src.files.log_file.as_deref()].into_iter().flatten() {
            let alias = sh
                .real_console
                .then(|| files::console_alias(path, stream))
                .flatten();
            match alias {
                Some(s) if s == stream => continue,
                Some(Stream::Out) => {
                    mirror = Some(sh.out.clone());
                    continue;
                }
                Some(Stream::Err) => {
                    mirror = Some(sh.err.clone());
                    continue;
                }
                None => {}
            }
            let path: Arc<Path> =
                files::instance_path(path, src.pm_id, src.files.merge_logs).into();
            // out_file = log_file must not write each line twice.
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return (None, mirror);
        }
        let tx = sh.files.get_or_init(files::spawn_file_writer);
        (Some((tx.clone(), paths.into())), mirror)
    }

    /// Waits until every attached pipe has reached end of file and everything read is written,
    /// or `timeout` passes.
    pub async fn drain(&self, timeout: Duration) {
        self.shared.work.wait_idle(timeout).await;
    }

    /// The last `lines` lines of one instance (`Some(pm_id)`) or of all, oldest first.
    pub fn tail(&self, pm_id: Option<u32>, lines: usize) -> Vec<LogLine> {
        self.tail_where(|id, _app| pm_id.is_none_or(|want| want == id), lines)
    }

    /// The last `lines` lines of the instances `keep(pm_id, app)` selects, oldest first.
    pub fn tail_where(&self, keep: impl Fn(u32, &str) -> bool, lines: usize) -> Vec<LogLine> {
        let selected: Vec<(u32, Arc<Mutex<ring::InstanceRing>>)> = {
            let rings = self.shared.rings.lock().unwrap_or_else(|e| e.into_inner());
            rings.iter().map(|(id, r)| (*id, r.clone())).collect()
        };
        let guards: Vec<_> = selected
            .iter()
            .map(|(id, r)| (*id, r.lock().unwrap_or_else(|e| e.into_inner())))
            .filter(|(id, r)| keep(*id, &r.app))
            .collect();
        ring::tail(guards.iter().map(|(id, g)| (*id, &**g)), lines)
    }

    /// New lines from now on. A subscriber that falls behind loses lines (`Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.shared.lines.subscribe()
    }

    /// Drops the kept lines of an instance that is gone for good (deleted, scaled down).
    pub fn forget(&self, pm_id: u32) {
        let mut rings = self.shared.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.remove(&pm_id);
    }

    /// Closes the log files, to be opened again on the next write (pm2's `reloadLogs`, SIGUSR2).
    pub fn reopen_files(&self) {
        let Some(tx) = self.shared.files.get() else {
            return;
        };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(msg)) =
            tx.try_send(files::FileMsg::Reopen)
        {
            // The writer is busy: queue the request behind the data rather than block the caller.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let tx = tx.clone();
                handle.spawn(async move {
                    let _ = tx.send(msg).await;
                });
            }
        }
    }
}
