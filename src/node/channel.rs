//! A Node IPC channel to one instance: `process.send` / `process.on('message')` as under pm2.
//!
//! Wire (Node's `json` serialization): one `JSON.stringify(message)` and `\n` per message over an
//! AF_UNIX SOCK_STREAM socketpair whose child end is `NODE_CHANNEL_FD`. Node deletes the variable
//! at boot and does not pass the fd to the app's own children. `advanced` serialization (length
//! prefix + V8) is never offered: `child_env` always sets `json`.
//!
//! Invariants: pmi's end is close-on-exec and non-blocking, and is only ever read from the tokio
//! runtime. Memory is bounded (one read buffer, one line of at most `MAX_LINE`; longer lines are
//! discarded up to their newline and counted); so is time: at most `budget` bytes per second are
//! read (the rest waits in the kernel, so a flooding app fills its own buffers, never pmi's), and
//! only events that matter come out, each at most once (`Ready` once, `Listening` once per
//! address), so a flood never wakes the supervisor. Everything else is counted in `Stats`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::time::Instant;

/// Longest message line pmi reads (pm2's messages are a few hundred bytes).
pub const MAX_LINE: usize = 64 * 1024;
/// Default read budget per instance.
pub const DEFAULT_BUDGET: usize = 4 * 1024 * 1024;
/// Most distinct `bind` requests one instance may make (the rest are counted and dropped).
pub const MAX_BIND_REQUESTS: usize = 64;
const CHUNK: usize = 16 * 1024;

/// What an instance said that pmi acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// pm2's ready message: `process.send('ready')`.
    Ready,
    /// The preload reports a server listening on pmi's socket for `port` (or a `unix:` path).
    Listening { port: Option<u16> },
    /// The preload asks for a shared socket on `port` (a cluster app without `listen`): answer
    /// with `Writer::send_socket` or `Writer::send_socket_error`.
    Bind { port: u16 },
    /// The instance closed its end (exit, or `process.disconnect()`).
    Closed,
}

/// What was read and not acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines read in all.
    pub lines: u64,
    /// Valid messages pmi has no use for (custom messages, repeated `ready`…).
    pub other: u64,
    /// Node's own `{"cmd":"NODE_…"}` messages (handle acks…).
    pub internal: u64,
    /// Lines that are not JSON.
    pub garbage: u64,
    /// Lines longer than `MAX_LINE`, discarded.
    pub oversized: u64,
    /// Times the read budget was used up and reading paused.
    pub throttled: u64,
}

/// Creates the socketpair: (pmi's end, the child's end). Both are close-on-exec in pmi; the
/// child's end reaches the child only through `os::spawn::Pass::fds`.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    Ok((a.into(), b.into()))
}

/// The child's variables for a channel at fd `fd`.
pub fn child_env(fd: i32) -> Vec<(OsString, OsString)> {
    vec![
        ("NODE_CHANNEL_FD".into(), fd.to_string().into()),
        ("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into()),
    ]
}

/// pmi's end, split into a reader (one task) and a writer (any task, cloneable).
pub fn open(parent: OwnedFd) -> io::Result<(Reader, Writer)> {
    let std = std::os::unix::net::UnixStream::from(parent);
    std.set_nonblocking(true)?;
    let s = Arc::new(UnixStream::from_std(std)?);
    let reader = Reader::new(s.clone(), DEFAULT_BUDGET);
    let writer = Writer {
        s,
        lock: Arc::new(tokio::sync::Mutex::new(())),
    };
    Ok((reader, writer))
}

/// Reads and classifies one instance's messages.
pub struct Reader {
    s: Arc<UnixStream>,
    chunk: Box<[u8]>,
    line: Vec<u8>,
    skipping: bool,
    closed: bool,
    events: VecDeque<Event>,
    seen_ready: bool,
    seen_listening: Vec<Option<u16>>,
    binds: Vec<u16>,
    budget: usize,
    used: usize,
    window: Instant,
    stats: Stats,
}

impl Reader {
    fn new(s: Arc<UnixStream>, budget: usize) -> Reader {
        Reader {
            s,
            chunk: vec![0; CHUNK].into_boxed_slice(),
            line: Vec::new(),
            skipping: false,
            closed: false,
            events: VecDeque::new(),
            seen_ready: false,
            seen_listening: Vec::new(),
            binds: Vec::new(),
            budget: budget.max(CHUNK),
            used: 0,
            window: Instant::now(),
            stats: Stats::default(),
        }
    }

    /// Bytes per second this reader may read (at least one chunk).
    pub fn set_budget(&mut self, bytes_per_sec: usize) {
        self.budget = bytes_per_sec.max(CHUNK);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The next event; `Closed` once at the end, then `None` forever. Cancel-safe: dropping
    /// the future loses no event (events are queued before they are returned).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            self.throttle().await;
            match self.read_chunk().await {
                Ok(0) => {
                    self.closed = true;
                    self.events.push_back(Event::Closed);
                }
                Ok(n) => {
                    self.used += n;
                    self.feed(n);
                }
                Err(e) => {
                    tracing::debug!("node channel read: {e}");
                    self.closed = true;
                    self.events.push_back(Event::Closed);
                }
            }
        }
    }

    async fn read_chunk(&mut self) -> io::Result<usize> {
        loop {
            self.s.readable().await?;
            match self.s.try_read(&mut self.chunk) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(0),
                r => return r,
            }
        }
    }

    async fn throttle(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        if self.used >= self.budget {
            self.stats.throttled += 1;
            if self.stats.throttled == 1 {
                tracing::warn!(
                    "a Node app sends more than {} bytes per second on its IPC channel; pmi reads it more slowly",
                    self.budget
                );
            }
            tokio::time::sleep_until(self.window + Duration::from_secs(1)).await;
            self.window = Instant::now();
            self.used = 0;
        }
    }

    fn feed(&mut self, n: usize) {
        let chunk = std::mem::take(&mut self.chunk);
        self.feed_bytes(&chunk[..n]);
        self.chunk = chunk;
    }

    fn feed_bytes(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (seg, done) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], Some(i + 1)),
                None => (rest, None),
            };
            if !self.skipping {
                if self.line.len() + seg.len() > MAX_LINE {
                    self.skipping = true;
                    self.line = Vec::new();
                    self.stats.oversized += 1;
                    if self.stats.oversized == 1 {
                        tracing::warn!("a Node app sent a message over {MAX_LINE} bytes on its IPC channel; it is discarded (and any later ones)");
                    }
                } else {
                    self.line.extend_from_slice(seg);
                }
            }
            match done {
                Some(i) => {
                    if !self.skipping {
                        let line = std::mem::take(&mut self.line);
                        self.classify(&line);
                        // Keep a normal-sized buffer; drop one a big message grew.
                        self.line = line;
                        self.line.clear();
                        if self.line.capacity() > 4096 {
                            self.line = Vec::new();
                        }
                    }
                    self.skipping = false;
                    rest = &rest[i..];
                }
                None => break,
            }
        }
    }

    fn classify(&mut self, line: &[u8]) {
        self.stats.lines += 1;
        let trimmed = line.trim_ascii();
        if trimmed == b"\"ready\"" {
            if self.seen_ready {
                self.stats.other += 1;
            } else {
                self.seen_ready = true;
                self.events.push_back(Event::Ready);
            }
            return;
        }
        if trimmed.first() != Some(&b'{') {
            match serde_json::from_slice::<serde::de::IgnoredAny>(trimmed) {
                Ok(_) => self.stats.other += 1,
                Err(_) => self.stats.garbage += 1,
            }
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(trimmed) else {
            self.stats.garbage += 1;
            return;
        };
        let port = v
            .get("port")
            .and_then(|p| p.as_u64())
            .and_then(|p| u16::try_from(p).ok());
        match v.get("pmi").and_then(|k| k.as_str()) {
            Some("listening") => {
                if self.seen_listening.contains(&port) || self.seen_listening.len() >= 64 {
                    self.stats.other += 1;
                } else {
                    self.seen_listening.push(port);
                    self.events.push_back(Event::Listening { port });
                }
            }
            Some("bind") => match port {
                Some(p)
                    if p > 0
                        && !self.binds.contains(&p)
                        && self.binds.len() < MAX_BIND_REQUESTS =>
                {
                    self.binds.push(p);
                    self.events.push_back(Event::Bind { port: p });
                }
                _ => self.stats.other += 1,
            },
            _ => {
                let internal = v
                    .get("cmd")
                    .and_then(|c| c.as_str())
                    .is_some_and(|c| c.starts_with("NODE_"));
                if internal {
                    self.stats.internal += 1;
                } else {
                    self.stats.other += 1;
                }
            }
        }
    }
}

/// Sends pmi's messages to an instance. Clone it freely; lines never interleave.
#[derive(Clone)]
pub struct Writer {
    s: Arc<UnixStream>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// How long one message may wait for room in the channel before it is given up.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

impl Writer {
    /// pm2's `'shutdown'` message (`shutdown_with_message`).
    pub async fn send_shutdown(&self) -> io::Result<()> {
        self.send_line(b"\"shutdown\"\n", None).await
    }

    /// Any message, as JSON.
    pub async fn send_json(&self, v: &serde_json::Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(v).map_err(io::Error::other)?;
        line.push(b'\n');
        self.send_line(&line, None).await
    }

    /// The answer to `Event::Bind`: the shared socket, as Node's `NODE_HANDLE` message (the fd
    /// travels in SCM_RIGHTS with the line's first bytes, as Node expects).
    pub async fn send_socket(&self, port: u16, fd: BorrowedFd<'_>) -> io::Result<()> {
        let v = serde_json::json!({
            "cmd": "NODE_HANDLE",
            "type": "net.Native",
            "msg": {"cmd": "NODE_PMI_SOCKET", "port": port},
        });
        let mut line = serde_json::to_vec(&v).map_err(io::Error::other)?;
        line.push(b'\n');
        self.send_line(&line, Some(fd)).await
    }

    /// The answer to `Event::Bind` when pmi could not bind: the app's server emits 'error'
    /// with `code` (EADDRINUSE, EACCES…) and `reason`.
    pub async fn send_socket_error(&self, port: u16, code: &str, reason: &str) -> io::Result<()> {
        let v = serde_json::json!({
            "cmd": "NODE_PMI_SOCKET", "port": port, "code": code, "error": reason,
        });
        self.send_json(&v).await
    }

    async fn send_line(&self, line: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let _g = self.lock.lock().await;
        let fut = async {
            let mut off = 0;
            let mut fd = fd.map(|f| f.as_raw_fd());
            while off < line.len() {
                self.s.writable().await?;
                let r = self
                    .s
                    .try_io(Interest::WRITABLE, || send(&self.s, &line[off..], fd));
                match r {
                    Ok(n) => {
                        off += n;
                        fd = None; // attached to the first bytes only
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(SEND_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the Node app does not read its IPC channel",
            )),
        }
    }
}

fn send(s: &UnixStream, buf: &[u8], fd: Option<i32>) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(buf)];
    let fds = [fd.unwrap_or(-1)];
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage<'_>] = if fd.is_some() { &rights } else { &[] };
    sendmsg::<()>(s.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
