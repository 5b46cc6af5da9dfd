//! The control server: a Unix socket inside pmi that answers the verbs.
//!
//! `bind` (in `bind.rs`) makes the socket (default `/run/pmi/pmi.sock`, else
//! `/tmp/pmi-<uid>/pmi.sock`, else `/dev/shm/pmi-<uid>/pmi.sock`), probing a
//! stale one first; `serve` accepts connections, checks each peer's credentials, and answers
//! requests: reads from the snapshot, mutations through the supervisor's inbox (answered with the
//! supervisor's reply, i.e. after the effect). Invariant: no client can block, crash or slow the
//! supervisor: every read and write has a time limit, frames are capped, connections are
//! limited, and errors end only the connection they happened on.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::timeout;

use super::logsrc;
use super::proto::{
    self, ErrorKind, ErrorReply, FrameError, LogLine, Request, Response, Stream, PROTOCOL_VERSION,
};

pub use super::bind::{bind, Listener};
use crate::api::{ApplyMsg, ApplyRequest, Brief, ControlMsg, Handle, Op, OpError, Target};
use crate::report::sample::{Sampler, Usage};
use crate::report::view;
use crate::status::{InstanceStatus, Snapshot};

/// A client that sends nothing (or half a frame) for this long is dropped.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read its answer for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
use super::slots::Slots;
pub use super::slots::{MAX_CONNECTIONS, MAX_FOLLOWERS};

/// Removes the socket file when the server ends, unless another process replaced it.
struct Cleanup {
    path: PathBuf,
    ino: Option<u64>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let same = std::fs::symlink_metadata(&self.path).ok().map(|m| m.ino()) == self.ino;
        if self.ino.is_some() && same {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What every connection shares.
struct Ctx {
    handle: Handle,
    sampler: Arc<Mutex<Sampler>>,
    group: Option<u32>,
    me: u32,
    slots: Slots,
}

/// Serves the socket until the task is dropped (the socket file goes with it). Never returns an
/// error: a failed accept is logged and retried; a bad connection ends alone.
pub async fn serve(listener: Listener, handle: Handle) {
    let _cleanup = Cleanup {
        ino: std::fs::symlink_metadata(&listener.path)
            .ok()
            .map(|m| m.ino()),
        path: listener.path.clone(),
    };
    let sock = match tokio::net::UnixListener::from_std(listener.inner) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "control socket {}: {e}; not serving",
                listener.path.display()
            );
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        handle,
        sampler: Arc::new(Mutex::new(Sampler::default())),
        group: listener.group,
        me: nix::unistd::geteuid().as_raw(),
        slots: Slots::default(),
    });
    loop {
        let stream = match sock.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: wait a little instead of spinning.
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = ctx.slots.request_slot().await else {
            let busy = ErrorReply::new(
                ErrorKind::Busy,
                format!("pmi is busy: {MAX_CONNECTIONS} control connections are being answered; try again"),
            );
            if let Ok(b) = proto::encode(&Response::Error(busy)) {
                let _ = stream.try_write(&b);
            }
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            connection(stream, &ctx, permit).await;
        });
    }
}

/// Whether the peer may use the socket: root, pmi's uid, or a member of the socket group.
fn allowed(stream: &UnixStream, ctx: &Ctx) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    if cred.uid() == 0 || cred.uid() == ctx.me {
        return true;
    }
    let Some(g) = ctx.group else { return false };
    cred.gid() == g
        || cred
            .pid()
            .is_some_and(|pid| supplementary_groups(pid).contains(&g))
}

/// The supplementary groups of a process, from /proc/PID/status.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Reads the next request, unless the connection is evicted meanwhile (every request slot taken
/// and this one the longest idle): then it is told so and `None` ends it.
async fn next_request<R, W>(
    ctx: &Ctx,
    rd: &mut R,
    wr: &mut W,
) -> Option<Result<Request, FrameError>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ticket = ctx.slots.waiting();
    tokio::select! {
        r = read_request(rd) => Some(r),
        _ = ticket.evicted.notified() => {
            let msg = format!(
                "closed: this connection was idle while all {MAX_CONNECTIONS} control connections were taken"
            );
            let _ = send(wr, &error(ErrorKind::Busy, msg)).await;
            None
        }
    }
}

/// Serves one connection; `slot` is its request slot, exchanged for a follower slot by
/// `logs --follow`.
async fn connection(stream: UnixStream, ctx: &Ctx, slot: OwnedSemaphorePermit) {
    if !allowed(&stream, ctx) {
        let msg = "permission denied: the control socket is for root, pmi's own user and its socket_group";
        let (_, mut wr) = stream.into_split();
        let _ = send(&mut wr, &error(ErrorKind::PermissionDenied, msg)).await;
        return;
    }
    let (mut rd, mut wr) = stream.into_split();
    let Some(first) = next_request(ctx, &mut rd, &mut wr).await else {
        return;
    };
    match first {
        Ok(Request::Hello { version }) if version == PROTOCOL_VERSION => {
            let hello = hello();
            if send(&mut wr, &hello).await.is_err() {
                return;
            }
        }
        Ok(Request::Hello { version }) => {
            let msg = format!(
                "protocol version mismatch: this pmi speaks version {PROTOCOL_VERSION}, the client version {version}; use the pmi binary of the running container"
            );
            let _ = send(&mut wr, &error(ErrorKind::VersionMismatch, msg)).await;
            return;
        }
        Ok(_) => {
            let msg = "the first frame must be a hello with the protocol version";
            let _ = send(&mut wr, &error(ErrorKind::BadRequest, msg)).await;
            return;
        }
        Err(e) => {
            if let Some(reply) = frame_error(e) {
                let _ = send(&mut wr, &reply).await;
            }
            return;
        }
    }
    loop {
        let Some(next) = next_request(ctx, &mut rd, &mut wr).await else {
            return;
        };
        let req = match next {
            Ok(r) => r,
            Err(e) => {
                if let Some(reply) = frame_error(e) {
                    let _ = send(&mut wr, &reply).await;
                }
                return;
            }
        };
        if let Request::Logs {
            target,
            lines,
            follow: true,
            stream,
        } = req
        {
            // Followers have their own cap: they never take a slot `health` or `status` needs.
            let Some(_follower) = ctx.slots.follower_slot() else {
                let msg = format!(
                    "pmi is busy: {MAX_FOLLOWERS} `logs --follow` streams are open; try again"
                );
                let _ = send(&mut wr, &error(ErrorKind::Busy, msg)).await;
                return;
            };
            drop(slot);
            follow_logs(ctx, &mut rd, &mut wr, target, lines, stream).await;
            return;
        }
        let reply = answer(ctx, req).await;
        if send(&mut wr, &reply).await.is_err() {
            return;
        }
    }
}

fn hello() -> Response {
    Response::Hello {
        version: PROTOCOL_VERSION,
        pmi_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
    }
}

fn error(kind: ErrorKind, msg: impl Into<String>) -> Response {
    Response::Error(ErrorReply::new(kind, msg))
}

/// The reply to a frame that could not be read; `None` when the peer is gone.
fn frame_error(e: FrameError) -> Option<Response> {
    match e {
        FrameError::Closed | FrameError::Io(_) => None,
        FrameError::Timeout => Some(error(
            ErrorKind::Timeout,
            format!("no complete request within {} s", READ_TIMEOUT.as_secs()),
        )),
        FrameError::TooLarge(n) => Some(error(
            ErrorKind::FrameTooLarge,
            format!(
                "frame of {n} bytes is over the {} byte limit",
                proto::MAX_FRAME
            ),
        )),
        FrameError::Json(j) => Some(error(ErrorKind::BadRequest, format!("not a request: {j}"))),
    }
}

/// One frame within `READ_TIMEOUT` (the whole frame, not each byte).
async fn read_request<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Request, FrameError> {
    let read = async {
        let mut header = [0u8; 4];
        rd.read_exact(&mut header).await?;
        let mut body = vec![0u8; proto::body_len(header)?];
        rd.read_exact(&mut body).await?;
        proto::decode(&body)
    };
    timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or(Err(FrameError::Timeout))
}

/// Writes one answer within `WRITE_TIMEOUT`: a frame, or `part` frames for a big one; one over
/// even `MAX_REPLY` becomes an error reply.
async fn send<W: AsyncWrite + Unpin>(wr: &mut W, msg: &Response) -> Result<(), FrameError> {
    let bytes = match proto::encode_reply(msg) {
        Ok(b) => b,
        Err(FrameError::TooLarge(n)) => proto::encode(&error(
            ErrorKind::FrameTooLarge,
            format!("the answer ({n} bytes) is over the answer limit; ask for less"),
        ))?,
        Err(e) => return Err(e),
    };
    match timeout(WRITE_TIMEOUT, wr.write_all(&bytes)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(FrameError::Timeout),
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

fn snapshot(ctx: &Ctx) -> Arc<Snapshot> {
    ctx.handle.snapshot.borrow().clone()
}

/// Samples /proc on the blocking pool, so that the supervisor's thread never waits for it.
async fn usage(ctx: &Ctx, instances: &[&InstanceStatus], now: u64) -> HashMap<i32, Usage> {
    let groups = view::groups(instances);
    if groups.is_empty() {
        return HashMap::new();
    }
    let sampler = ctx.sampler.clone();
    let read = move || {
        let mut s = sampler.lock().unwrap_or_else(|e| e.into_inner());
        s.sample(&groups, now)
    };
    tokio::task::spawn_blocking(read).await.unwrap_or_default()
}

/// The answer to one request (not `logs --follow`).
async fn answer(ctx: &Ctx, req: Request) -> Response {
    match req {
        Request::Hello { .. } => hello(),
        Request::Status { target } => {
            let snap = snapshot(ctx);
            let t = Target::parse(target.as_deref().unwrap_or("all"));
            let sel = match view::resolve(&snap, &t) {
                Ok(s) => s,
                Err(e) => return Response::Error(op_error(&e)),
            };
            let now = now_ms();
            let u = usage(ctx, &sel, now).await;
            Response::Status(view::status_report(&snap, &sel, &u, now))
        }
        Request::Describe { target } => {
            let snap = snapshot(ctx);
            let t = Target::parse(&target);
            let now = now_ms();
            let sel = match view::resolve(&snap, &t) {
                Ok(s) => s,
                Err(e) => return Response::Error(op_error(&e)),
            };
            let u = usage(ctx, &sel, now).await;
            match view::describe(&snap, &t, &u, now) {
                Ok(apps) => Response::Describe { apps },
                Err(e) => Response::Error(op_error(&e)),
            }
        }
        Request::Start { target } => targeted(ctx, &target, Op::Start).await,
        Request::Stop { target } => targeted(ctx, &target, Op::Stop).await,
        Request::Restart { target } => targeted(ctx, &target, Op::Restart).await,
        Request::Reload { target } => targeted(ctx, &target, Op::Reload).await,
        Request::Scale { app, count } => op(ctx, Op::Scale { app, count }).await,
        Request::Signal { signal, target } => match crate::os::signals::parse(&signal) {
            Some(sig) => targeted(ctx, &target, |t| Op::Signal { sig, target: t }).await,
            None => error(
                ErrorKind::BadRequest,
                format!("'{signal}' is not a signal name or number (e.g. TERM, SIGUSR1, 15)"),
            ),
        },
        Request::Logs {
            target,
            lines,
            stream,
            ..
        } => match log_ids(ctx, target.as_deref()) {
            Ok(ids) => Response::Logs {
                lines: logsrc::tail(&ctx.handle, ids.as_deref(), lines, stream),
            },
            Err(e) => Response::Error(op_error(&e)),
        },
        Request::Apply { file, dry_run } => apply(ctx, file, dry_run).await,
        Request::Health { ready } => {
            let snap = snapshot(ctx);
            match view::health(&snap, ready) {
                Ok(()) => Response::Health {
                    ok: true,
                    reason: None,
                },
                Err(r) => Response::Health {
                    ok: false,
                    reason: Some(r),
                },
            }
        }
    }
}

/// An op on a target: an unknown target is answered from the snapshot (with the known names);
/// the supervisor still resolves it, and is the authority.
async fn targeted(ctx: &Ctx, target: &str, make: impl FnOnce(Target) -> Op) -> Response {
    let t = Target::parse(target);
    if let Err(e) = view::resolve(&snapshot(ctx), &t) {
        return Response::Error(op_error(&e));
    }
    op(ctx, make(t)).await
}

/// Sends an op to the supervisor and waits for its reply (sent after the effect).
async fn op(ctx: &Ctx, op: Op) -> Response {
    match call(ctx, op).await {
        Ok(instances) => Response::Done { instances },
        Err(e) => Response::Error(e),
    }
}

async fn call(ctx: &Ctx, op: Op) -> Result<Vec<Brief>, ErrorReply> {
    let gone = || op_error(&OpError::Exiting);
    let (tx, rx) = oneshot::channel();
    ctx.handle
        .inbox
        .send(ControlMsg { op, reply: tx })
        .await
        .map_err(|_| gone())?;
    match rx.await {
        Err(_) => Err(gone()),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(op_error(&e)),
    }
}

/// `pmi apply`: the supervisor loads, diffs and applies; the answer comes after the effect.
async fn apply(ctx: &Ctx, file: Option<PathBuf>, dry_run: bool) -> Response {
    if let Some(f) = file.as_ref().filter(|f| !f.is_absolute()) {
        let msg = format!("apply: {} is not an absolute path", f.display());
        return error(ErrorKind::BadRequest, msg);
    }
    let (tx, rx) = oneshot::channel();
    let req = ApplyRequest {
        file,
        dry_run,
        from_watcher: false,
    };
    let sent = ctx.handle.apply.send(ApplyMsg { req, reply: tx }).await;
    let reply = match sent {
        Ok(()) => rx.await.unwrap_or(Err(OpError::Exiting)),
        Err(_) => Err(OpError::Exiting),
    };
    match reply {
        Ok(report) => Response::Applied(report),
        Err(e) => Response::Error(op_error(&e)),
    }
}

/// The wire form of a refusal: its kind, from the type, and its text.
fn op_error(e: &OpError) -> ErrorReply {
    let kind = match e {
        OpError::UnknownTarget { .. } | OpError::UnknownApp(_) => ErrorKind::UnknownTarget,
        OpError::ShuttingDown | OpError::Exiting => ErrorKind::ShuttingDown,
        OpError::TooManyInstances { .. }
        | OpError::Removed(_)
        | OpError::DidNotStart { .. }
        | OpError::Busy(_)
        | OpError::ReloadFailed { .. } => ErrorKind::Failed,
    };
    ErrorReply::new(kind, e.to_string())
}

/// The pm_ids a logs target selects (`None`: everything, including instances yet to come).
fn log_ids(ctx: &Ctx, target: Option<&str>) -> Result<Option<Vec<u32>>, OpError> {
    match target.map(Target::parse) {
        None | Some(Target::All) => Ok(None),
        Some(t) => {
            let snap = snapshot(ctx);
            Ok(Some(
                view::resolve(&snap, &t)?.iter().map(|i| i.id).collect(),
            ))
        }
    }
}

/// `logs --follow`: the kept lines, then every new one, until the client closes or pmi ends.
async fn follow_logs<R, W>(
    ctx: &Ctx,
    rd: &mut R,
    wr: &mut W,
    target: Option<String>,
    lines: usize,
    stream: Option<Stream>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ids = match log_ids(ctx, target.as_deref()) {
        Ok(ids) => ids,
        Err(e) => {
            let _ = send(wr, &Response::Error(op_error(&e))).await;
            return;
        }
    };
    // Subscribe before reading the history, so that no line falls between the two.
    let mut feed = logsrc::subscribe(&ctx.handle);
    let history = logsrc::tail(&ctx.handle, ids.as_deref(), lines, stream);
    // Lines both in the history and in the feed are sent once: the feed skips what is older
    // than the last kept line, and the kept lines of that same millisecond.
    let last_ts = history.last().map(|l| l.ts_ms);
    let same_ms: Vec<LogLine> = history
        .iter()
        .filter(|l| Some(l.ts_ms) == last_ts)
        .cloned()
        .collect();
    if send(wr, &Response::Logs { lines: history }).await.is_err() {
        return;
    }
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            entry = feed.next() => {
                let Some(e) = entry else { return };
                let seen = last_ts.is_some_and(|t| e.ts_ms < t) || same_ms.contains(&e);
                if seen || !logsrc::keep(&e, ids.as_deref(), stream) {
                    continue;
                }
                if send(wr, &Response::Log(e)).await.is_err() {
                    return;
                }
            }
            // The client says nothing while following: any read result ends the stream.
            _ = rd.read(&mut probe) => return,
        }
    }
}
