//! The client verbs (`pmi status`, `restart`, `logs`, `health` …): one connection, the hello and
//! the request written together, the answer rendered, one exit code.
//!
//! Invariant: the client never starts a supervisor. Whether pmi is reachable is decided within
//! `REACH_TIMEOUT` (no socket, nobody listening, or no hello in time: exit 3); after that, reads
//! wait `READ_TIMEOUT`, or without limit for requests that wait for processes.

use std::io::{self, IsTerminal};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::proto::{self, FrameError, Request, Response, Stream, PROTOCOL_VERSION};
use super::render;
use super::socket::{connect_once, socket_path};
use crate::api::ScaleCount;
use crate::cli::{Cmd, LogsArgs};
use crate::exit::{self, Failure};
use crate::term::{err_line, out};

/// Time to connect and get pmi's hello.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(1);
/// Time for the answer to a read-only request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `logs --follow` checks, while no line comes, that its output still has a reader.
const HANGUP_CHECK: Duration = Duration::from_millis(500);

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No pmi reachable (exit 3).
    #[error("no pmi reachable: {0}")]
    Unreachable(String),
    /// The socket exists but this user may not reach it (exit 1).
    #[error("permission denied: {0}")]
    Denied(String),
    /// pmi answered with an error (exit 1).
    #[error("{}", .0.message)]
    Reply(proto::ErrorReply),
    /// The connection broke or pmi sent something unreadable (exit 1).
    #[error("{0}")]
    Protocol(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let msg = format!("pmi: {e}");
        match e {
            ClientError::Unreachable(_) => Failure::Unreachable(msg),
            _ => Failure::Failed(msg),
        }
    }
}

/// Connects within `REACH_TIMEOUT`, mapping failures to exit-code classes.
pub fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    let shown = path.display();
    let deadline = Instant::now() + REACH_TIMEOUT;
    loop {
        match connect_once(path) {
            Ok(s) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => ClientError::Unreachable(format!(
                        "no control socket at {shown} (is pmi running here? set --socket or PMI_SOCKET)"
                    )),
                    Some(libc::ECONNREFUSED) => ClientError::Unreachable(format!(
                        "nobody listens on {shown} (pmi has exited)"
                    )),
                    Some(libc::EAGAIN) => ClientError::Unreachable(format!(
                        "pmi did not accept a connection on {shown} within {} s",
                        REACH_TIMEOUT.as_secs()
                    )),
                    Some(libc::EACCES) | Some(libc::EPERM) => ClientError::Denied(format!(
                        "cannot reach {shown}: the control socket is for root, pmi's own user and its socket_group"
                    )),
                    _ => ClientError::Unreachable(format!("cannot connect to {shown}: {e}")),
                });
            }
        }
    }
}

/// An open connection that has said hello.
pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    /// Connects, says hello and sends `first` in the same write (one round trip), and waits for
    /// pmi's hello.
    pub fn open(path: &Path, first: &Request) -> Result<Connection, ClientError> {
        let mut stream = connect(path)?;
        let mut bytes = proto::encode(&Request::Hello {
            version: PROTOCOL_VERSION,
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        bytes.extend(proto::encode(first).map_err(|e| ClientError::Protocol(e.to_string()))?);
        let unreachable =
            |e: io::Error| ClientError::Unreachable(format!("{}: {e}", path.display()));
        stream
            .set_write_timeout(Some(REACH_TIMEOUT))
            .map_err(unreachable)?;
        if let Err(e) = io::Write::write_all(&mut stream, &bytes) {
            // A refused peer is closed at once; its error reply is still there to be read.
            if !matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)) {
                return Err(unreachable(e));
            }
        }
        let mut c = Connection { stream };
        match c.read_raw(Some(REACH_TIMEOUT)) {
            Ok(Response::Hello { .. }) => Ok(c),
            Ok(Response::Error(e)) => Err(ClientError::Reply(e)),
            Ok(other) => Err(ClientError::Protocol(format!(
                "pmi answered the hello with {other:?}"
            ))),
            Err(FrameError::Timeout) => Err(ClientError::Unreachable(format!(
                "pmi did not answer on {} within {} s",
                path.display(),
                REACH_TIMEOUT.as_secs()
            ))),
            Err(e) => Err(read_error(e)),
        }
    }

    fn read_raw(&mut self, limit: Option<Duration>) -> Result<Response, FrameError> {
        self.stream.set_read_timeout(limit)?;
        proto::read_reply(&mut self.stream)
    }

    /// Reads one response; `None` waits without limit.
    pub fn read(&mut self, limit: Option<Duration>) -> Result<Response, ClientError> {
        self.read_raw(limit).map_err(read_error)
    }

    /// Sends another request on the same connection and reads its answer.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        proto::write_frame(&mut self.stream, req)
            .map_err(|e| ClientError::Protocol(format!("sending to pmi: {e}")))?;
        self.answer(req)
    }

    /// Reads the answer to the request sent with `open`; errors become `ClientError::Reply`.
    pub fn answer(&mut self, req: &Request) -> Result<Response, ClientError> {
        let limit = (!req.waits_for_effect()).then_some(READ_TIMEOUT);
        match self.read(limit)? {
            Response::Error(e) => Err(ClientError::Reply(e)),
            r => Ok(r),
        }
    }
}

fn read_error(e: FrameError) -> ClientError {
    match e {
        FrameError::Closed => {
            ClientError::Protocol("pmi closed the connection without an answer".into())
        }
        e => ClientError::Protocol(format!("reading pmi's answer: {e}")),
    }
}

/// One request, one answer.
pub fn request(path: &Path, req: &Request) -> Result<Response, ClientError> {
    Connection::open(path, req)?.answer(req)
}

/// Runs a client verb; returns the exit code of an answer, or why there was none.
pub fn run(cmd: Cmd, socket: Option<PathBuf>) -> Result<i32, Failure> {
    let (req, json) = to_request(cmd).map_err(|msg| Failure::Usage(format!("pmi: {msg}")))?;
    let path = socket_path(socket.as_deref());
    let code = match &req {
        Request::Logs { follow: true, .. } => follow(&path, &req, json)?,
        Request::Scale { app, .. } => scale(&path, app, &req)?,
        _ => show(&req, request(&path, &req)?, json),
    };
    Ok(code)
}

/// The request a verb sends, and whether its output is JSON. Usage errors are `Err`.
fn to_request(cmd: Cmd) -> Result<(Request, bool), String> {
    Ok(match cmd {
        Cmd::Status { json, target } => (Request::Status { target }, json),
        Cmd::Describe { target, json } => (Request::Describe { target }, json),
        Cmd::Start { target } => (Request::Start { target }, false),
        Cmd::Stop { target } => (Request::Stop { target }, false),
        Cmd::Restart { target } => (Request::Restart { target }, false),
        Cmd::Reload { target } | Cmd::StartOrReload { target } => match apps_file_arg(&target)? {
            Some(file) => (
                Request::Apply {
                    file: Some(file),
                    dry_run: false,
                },
                false,
            ),
            None => (Request::Reload { target }, false),
        },
        Cmd::Apply {
            file,
            dry_run,
            json,
        } => {
            let file = file.map(|f| absolute(&f)).transpose()?;
            (Request::Apply { file, dry_run }, json)
        }
        Cmd::Scale { app, count } => {
            let count = ScaleCount::parse(&count)
                .ok_or_else(|| format!("scale: '{count}' is not N, +N or -N"))?;
            (Request::Scale { app, count }, false)
        }
        Cmd::Signal { signal, target } => {
            crate::os::signals::parse(&signal).ok_or_else(|| {
                format!(
                    "signal: '{signal}' is not a signal name or number (e.g. TERM, SIGUSR1, 15)"
                )
            })?;
            (Request::Signal { signal, target }, false)
        }
        Cmd::Logs(LogsArgs {
            target,
            lines,
            follow,
            json,
            err,
            out,
        }) => {
            let stream = match (err, out) {
                (true, _) => Some(Stream::Err),
                (_, true) => Some(Stream::Out),
                _ => None,
            };
            let req = Request::Logs {
                target,
                lines,
                follow,
                stream,
            };
            (req, json)
        }
        Cmd::Health { ready } => (Request::Health { ready }, false),
        Cmd::Run(_)
        | Cmd::Check(_)
        | Cmd::Convert(_)
        | Cmd::Version
        | Cmd::Completions { .. }
        | Cmd::Monit { .. } => return Err("not a client verb".into()),
    })
}

/// Extensions of an apps file (`pmi reload apps.yaml` means apply).
const APPS_FILE_EXTENSIONS: &[&str] = &["yaml", "yml", "json", "js", "cjs", "mjs"];

/// pm2's `reload FILE` / `startOrReload FILE`: an existing file with an apps-file extension is
/// an apply of that file; anything else is a reload target.
fn apps_file_arg(target: &str) -> Result<Option<PathBuf>, String> {
    let p = Path::new(target);
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    let looks = APPS_FILE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str());
    if looks && p.is_file() {
        return absolute(p).map(Some);
    }
    Ok(None)
}

/// FILE as pmi must see it: pmi's cwd is `/`, so a relative path is resolved here.
fn absolute(p: &Path) -> Result<PathBuf, String> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| format!("apply: cannot resolve {}: {e}", p.display()))?;
    Ok(cwd.join(p))
}

fn color() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints an answer; returns the exit code.
fn show(req: &Request, resp: Response, json: bool) -> i32 {
    match resp {
        Response::Status(r) if json => print_json(&r),
        Response::Status(r) => {
            out(&render::table(&r.instances, color()));
            exit::OK
        }
        Response::Describe { apps } if json => print_json(&apps),
        Response::Describe { apps } => {
            out(&render::describe(&apps));
            exit::OK
        }
        Response::Done { instances } => {
            out(&render::done(verb(req), &instances));
            exit::OK
        }
        Response::Logs { lines } => {
            for l in &lines {
                out(&render::log_line(l, json));
            }
            exit::OK
        }
        Response::Applied(r) => {
            let code = if !r.errors.is_empty() {
                exit::USAGE
            } else if r.failed() {
                exit::FAILURE
            } else {
                exit::OK
            };
            if json {
                return match print_json(&r) {
                    exit::OK => code,
                    other => other,
                };
            }
            let (o, e) = render::applied(&r);
            if !e.is_empty() {
                err_line(e.trim_end());
            }
            out(&o);
            code
        }
        Response::Health { ok: true, .. } => exit::OK,
        Response::Health { ok: false, reason } => {
            err_line(&format!(
                "pmi: {}",
                reason.as_deref().unwrap_or("unhealthy")
            ));
            exit::FAILURE
        }
        other => {
            err_line(&format!("pmi: unexpected answer: {other:?}"));
            exit::FAILURE
        }
    }
}

fn verb(req: &Request) -> &'static str {
    match req {
        Request::Start { .. } => "started",
        Request::Stop { .. } => "stopped",
        Request::Restart { .. } => "restarted",
        Request::Reload { .. } => "reloaded",
        Request::Scale { .. } => "scaled",
        Request::Signal { .. } => "signalled",
        _ => "done",
    }
}

/// `pmi scale`: the app's instances before (same connection), the scale, and what changed.
fn scale(path: &Path, app: &str, req: &Request) -> Result<i32, ClientError> {
    let status = Request::Status {
        target: Some(app.to_string()),
    };
    let mut c = Connection::open(path, &status)?;
    let before = match c.answer(&status) {
        Ok(Response::Status(r)) => r.instances,
        // No instance left (scaled to 0 before): the scale itself says whether the app exists.
        _ => Vec::new(),
    };
    match c.call(req)? {
        Response::Done { instances } => {
            out(&render::scaled(app, &before, &instances));
            Ok(exit::OK)
        }
        other => Ok(show(req, other, false)),
    }
}

/// `logs --follow`: the history, then lines as they come, until pmi closes the connection.
fn follow(path: &Path, req: &Request, json: bool) -> Result<i32, ClientError> {
    let mut c = Connection::open(path, req)?;
    match c.answer(req)? {
        Response::Logs { lines } => lines.iter().for_each(|l| out(&render::log_line(l, json))),
        other => {
            return Err(ClientError::Protocol(format!(
                "unexpected answer: {other:?}"
            )))
        }
    }
    loop {
        // Whoever reads our output may be gone (a `docker exec` client without -t that died):
        // then stop following, so that pmi's follower ends too.
        match super::hangup::wait(&c.stream, HANGUP_CHECK) {
            super::hangup::Seen::Nothing => continue,
            super::hangup::Seen::HungUp => return Ok(exit::OK),
            super::hangup::Seen::Readable => {}
        }
        match c.read(None) {
            Ok(Response::Log(l)) => {
                if !super::hangup::write_out(&render::log_line(&l, json)) {
                    return Ok(exit::OK);
                }
            }
            Ok(Response::Error(e)) => return Err(ClientError::Reply(e)),
            Ok(_) => {}
            // pmi exited: the stream is over.
            Err(_) => return Ok(exit::OK),
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> i32 {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            out(&format!("{s}\n"));
            exit::OK
        }
        Err(e) => {
            err_line(&format!("pmi: {e}"));
            exit::INTERNAL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_become_requests_and_bad_arguments_are_usage_errors() {
        let (r, json) = to_request(Cmd::Status {
            json: true,
            target: None,
        })
        .unwrap();
        assert_eq!(r, Request::Status { target: None });
        assert!(json);
        assert!(to_request(Cmd::Scale {
            app: "a".into(),
            count: "x".into()
        })
        .is_err());
        assert!(to_request(Cmd::Signal {
            signal: "NOPE".into(),
            target: "a".into()
        })
        .is_err());
        assert!(to_request(Cmd::Version).is_err());
    }

    #[test]
    fn missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let e = request(
            &dir.path().join("none.sock"),
            &Request::Health { ready: false },
        )
        .unwrap_err();
        assert!(matches!(Failure::from(e), Failure::Unreachable(_)));
        // A socket file nobody listens on.
        let p = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        let e = request(&p, &Request::Health { ready: false }).unwrap_err();
        assert!(matches!(Failure::from(e), Failure::Unreachable(_)));
    }
}
