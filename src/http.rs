//! The optional HTTP endpoint: `/livez` (`/healthz`), `/readyz`, `/metrics`, `/status`.
//!
//! Role: a read-only window on the supervisor for Kubernetes `httpGet` probes, Prometheus and
//! humans. It is off unless `--http ADDR` (`PMI_HTTP`, `pmi: {http: …}`) is set.
//!
//! Invariants:
//! - Every answer is computed from the latest `Snapshot` on the watch channel (plus a /proc scan
//!   for `/metrics` and `/status`, done on the blocking pool). Nothing here sends to the
//!   supervisor's inbox or waits on it, so no client can slow the supervisor or change it.
//! - The probes and `/status` share their rules and schema with the control socket
//!   (`report::view::health`, `report::view::status_report`): `/livez` = `pmi health`,
//!   `/readyz` = `pmi health --ready`, `/status` = `pmi status --json`.
//! - Every connection is bounded: at most `MAX_CONNECTIONS` at once, headers must arrive within
//!   `HEADER_TIMEOUT` and fit in `MAX_HEADER_BYTES`, a
//!   whole connection lives at most `CONNECTION_DEADLINE`, and request bodies are never read (a
//!   request with a body has its connection closed after the answer), so memory stays bounded.
//! - Idle clients cannot starve a probe (`slots`): at the cap, a new connection evicts the oldest
//!   one that is not being answered (idle, slowloris, keep-alive between requests). Only when
//!   every slot is answering a request does a new client get 503 "too many connections".
//! - The server runs on the supervisor's own single-threaded runtime: if the supervisor loop ever
//!   stalled, the probes would stall with it and fail. That is what "the supervisor answers"
//!   means for `/livez`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::api::Handle;
use crate::os::proc;
use crate::report::metrics::metrics;
use crate::report::sample::Sampler;
use crate::report::view;
use crate::status::{InstanceStatus, Snapshot};
use slots::{Busy, Slots};

// Its own file (not `http/slots.rs`) so this module stays one file beside it.
#[path = "http_slots.rs"]
mod slots;

/// Connections open at once; past it the oldest idle one is evicted (`slots`).
pub const MAX_CONNECTIONS: usize = 32;
/// A client must send its whole request head within this time (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection may stay open, keep-alive included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Largest request head (request line and headers) accepted; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";

/// A bound, not yet serving, HTTP listener.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr().ok()
    }
}

/// Binds the HTTP address. Accepts `HOST:PORT`, `[V6]:PORT`, `:PORT` (every IPv4 interface)
/// and a bare `PORT`. The error names the address and says why.
pub async fn bind(addr: &str) -> Result<Listener, String> {
    let spec = normalize_addr(addr)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(spec.as_str())
        .await
        .map_err(|e| format!("http address '{addr}': {e}"))?
        .collect();
    let mut last = format!("http address '{addr}' resolves to nothing");
    for a in addrs {
        match TcpListener::bind(a).await {
            Ok(inner) => return Ok(Listener { inner }),
            Err(e) => last = format!("cannot listen on {a} (http '{addr}'): {e}"),
        }
    }
    Err(last)
}

fn normalize_addr(addr: &str) -> Result<String, String> {
    let a = addr.trim();
    let bad =
        || format!("http address '{addr}' is not HOST:PORT, :PORT or PORT (e.g. 0.0.0.0:9090)");
    if a.is_empty() {
        return Err(bad());
    }
    if a.bytes().all(|b| b.is_ascii_digit()) {
        a.parse::<u16>().map_err(|_| bad())?;
        return Ok(format!("0.0.0.0:{a}"));
    }
    if let Some(port) = a.strip_prefix(':') {
        port.parse::<u16>().map_err(|_| bad())?;
        return Ok(format!("0.0.0.0:{port}"));
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(a.to_string()),
        _ => Err(bad()),
    }
}

/// How much one client may take; `Limits::default()` is what pmi uses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connection_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
            connection_deadline: CONNECTION_DEADLINE,
        }
    }
}

/// Serves until the runtime stops (spawn it with `tokio::spawn`). Never fails: a failed accept
/// is logged and retried.
pub fn serve(listener: Listener, handle: Handle) -> impl std::future::Future<Output = ()> + Send {
    serve_snapshots(listener, handle.snapshot, Limits::default())
}

/// `serve`, on nothing but the snapshot channel (all the endpoints read).
pub async fn serve_snapshots(
    listener: Listener,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    limits: Limits,
) {
    let slots = Slots::new(limits.max_connections);
    let sampler = Arc::new(Mutex::new(Sampler::default()));
    loop {
        let (stream, _) = match listener.inner.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of fds or similar: back off a little instead of spinning on the error.
                tracing::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = take_slot(&slots, &stream).await else {
            // Every slot is answering a request: one short answer into the empty send buffer,
            // never waiting, then close.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let reader = Reader {
            snapshot: snapshot.clone(),
            sampler: Arc::clone(&sampler),
        };
        let busy = slot.busy();
        let mine = busy.clone();
        let task = tokio::spawn(async move {
            let _slot = slot;
            let conn = connection(stream, reader, busy, limits.header_timeout);
            let _ = tokio::time::timeout(limits.connection_deadline, conn).await;
        });
        slots.set_abort(task.abort_handle(), &mine);
    }
}

/// A slot for `stream`. When every slot is busy, the connection tasks get a few turns (and up
/// to about 100 ms) to read the request heads waiting in their sockets or to finish an answer,
/// after which they are evictable again: a probe accepted in a burst still gets a true answer.
async fn take_slot(slots: &Slots, stream: &TcpStream) -> Option<slots::Slot> {
    for turn in 0..24 {
        if let Some(s) = slots.take(stream) {
            return Some(s);
        }
        if turn < 4 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    None
}

/// What the endpoints read: the snapshot, and the CPU sampler `/status` shares across requests.
#[derive(Clone)]
struct Reader {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    sampler: Arc<Mutex<Sampler>>,
}

async fn connection(stream: TcpStream, reader: Reader, busy: Busy, header_timeout: Duration) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let reader = reader.clone();
        // A whole request head has arrived: this connection is no longer evictable until its
        // answer is computed.
        let answering = busy.start();
        async move {
            let _answering = answering;
            Ok::<_, Infallible>(respond(&req, &reader).await)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(64);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type Body = Full<Bytes>;

async fn respond(req: &Request<Incoming>, reader: &Reader) -> Response<Body> {
    let mut resp = route(req, reader).await;
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if has_body(req) {
        // The body is never read: close rather than let hyper skip over it.
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn has_body(req: &Request<Incoming>) -> bool {
    use hyper::body::Body as _;
    !req.body().is_end_stream()
}

async fn route(req: &Request<Incoming>, reader: &Reader) -> Response<Body> {
    let path = req.uri().path();
    let known = matches!(
        path,
        "/livez" | "/healthz" | "/readyz" | "/metrics" | "/status"
    );
    if !known {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!(
                "no such endpoint: {path}\nendpoints: /livez /healthz /readyz /metrics /status\n"
            ),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD are allowed\n".to_string(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // The supervisor drops its sender when it is done: from then on nothing is live.
    let alive = reader.snapshot.has_changed().is_ok();
    let snap = Arc::clone(&reader.snapshot.borrow());
    let now = now_ms();
    match path {
        "/livez" | "/healthz" => probe(alive, view::health(&snap, false)),
        "/readyz" => probe(alive, view::health(&snap, true)),
        "/status" => {
            // The same report as `pmi status --json`.
            let all: Vec<&InstanceStatus> = snap.instances.iter().collect();
            let groups = view::groups(&all);
            let sampler = Arc::clone(&reader.sampler);
            let sample = move || {
                let mut s = sampler.lock().unwrap_or_else(|e| e.into_inner());
                s.sample(&groups, now)
            };
            let usage = tokio::task::spawn_blocking(sample)
                .await
                .unwrap_or_default();
            match serde_json::to_string_pretty(&view::status_report(&snap, &all, &usage, now)) {
                Ok(mut s) => {
                    s.push('\n');
                    reply(StatusCode::OK, JSON, s)
                }
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            }
        }
        _ => {
            let pgids: Vec<i32> = snap
                .instances
                .iter()
                .filter_map(|i| i32::try_from(i.pid?).ok())
                .collect();
            let groups = tokio::task::spawn_blocking(move || proc::group_usage(&pgids))
                .await
                .unwrap_or_default();
            let body = metrics(&snap, &groups, now, proc::clock_ticks());
            reply(StatusCode::OK, PROMETHEUS, body)
        }
    }
}

/// A probe's answer: `pmi health`'s rules (`view::health`), plus "the supervisor is gone".
fn probe(alive: bool, verdict: Result<(), String>) -> Response<Body> {
    let verdict = if alive {
        verdict
    } else {
        Err("the supervisor has stopped".to_string())
    };
    match verdict {
        Ok(()) => reply(StatusCode::OK, TEXT, "ok\n".to_string()),
        Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
