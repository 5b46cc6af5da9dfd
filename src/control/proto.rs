//! The control protocol, shared by the server (inside pmi) and the client (the verbs).
//!
//! A connection carries frames: a 4-byte big-endian length, then that many bytes of JSON. The
//! client's first frame is `Request::Hello` with `PROTOCOL_VERSION`; the server answers
//! `Response::Hello` or a `version_mismatch` error and closes. Then any number of requests follow,
//! each answered by one response (`logs --follow` by a stream of `log` frames until either side
//! closes). Documented for other tools in docs/protocol.md.
//!
//! Invariant: no frame longer than `MAX_FRAME` is read or written; a peer that sends one gets an
//! error and is closed. Bump `PROTOCOL_VERSION` on any incompatible change of these types.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::api::{ApplyReport, Brief, ScaleCount};
pub use crate::logs::{LogLine, Stream};
pub use crate::report::{AppDescription, InstanceRow, PmiInfo, StatusReport};

/// The wire version; a client and a server of different versions refuse each other clearly.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest frame body either side reads or writes (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest answer a client puts together from `part` frames (256 MiB: far above the status
/// of the most instances pmi accepts).
pub const MAX_REPLY: usize = 256 << 20;
/// Bytes of an answer's JSON text carried by one `part` frame; escaped in a JSON string it is at
/// most twice as long, well under `MAX_FRAME`.
const PART_BYTES: usize = 256 << 10;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Must be the first frame of a connection.
    Hello {
        version: u32,
    },
    /// `pmi status [TARGET]`: instances with CPU and memory (docs/status-json.md).
    Status {
        target: Option<String>,
    },
    /// `pmi describe TARGET`: the apps' settings (env keys, never values) and instances.
    Describe {
        target: String,
    },
    Start {
        target: String,
    },
    Stop {
        target: String,
    },
    /// Answered once every new process runs.
    Restart {
        target: String,
    },
    /// A restart one instance at a time, each waited for before the next.
    Reload {
        target: String,
    },
    Scale {
        app: String,
        count: ScaleCount,
    },
    /// `signal` is a name (`TERM`, `SIGUSR1`) or a number.
    Signal {
        signal: String,
        target: String,
    },
    Logs {
        target: Option<String>,
        lines: usize,
        follow: bool,
        /// `out` or `err` only; both when absent.
        stream: Option<Stream>,
    },
    /// Exec probe: liveness, or readiness with `ready`.
    Health {
        ready: bool,
    },
    /// `pmi apply [FILE] [--dry-run]`: `file` is absolute (the client's cwd is not pmi's);
    /// none means the apps file pmi runs. Answered with `applied` once the changes took effect.
    Apply {
        file: Option<std::path::PathBuf>,
        dry_run: bool,
    },
}

impl Request {
    /// Whether answering may take long (it waits for processes): clients wait without a limit.
    pub fn waits_for_effect(&self) -> bool {
        matches!(
            self,
            Request::Start { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Reload { .. }
                | Request::Scale { .. }
                | Request::Apply { .. }
        )
    }
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Hello {
        version: u32,
        pmi_version: String,
        pid: u32,
    },
    Status(StatusReport),
    Describe {
        apps: Vec<AppDescription>,
    },
    /// A mutation took effect; the instances it touched, as they are now.
    Done {
        instances: Vec<Brief>,
    },
    /// The kept lines, oldest first; with `follow`, `log` frames come next.
    Logs {
        lines: Vec<LogLine>,
    },
    Log(LogLine),
    /// A piece of an answer too big for one frame: the answer's JSON text, cut in pieces; the
    /// client joins the `data` of consecutive parts up to the one with `more: false` and reads
    /// the result as the answer (docs/protocol.md).
    Part {
        data: String,
        more: bool,
    },
    Health {
        ok: bool,
        /// Why not, in one line.
        reason: Option<String>,
    },
    /// What an apply did, would do (`dry_run`), or why the file is invalid (`errors`).
    Applied(ApplyReport),
    Error(ErrorReply),
}

/// An error answer; the connection may stay open unless the kind says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

impl ErrorReply {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Hello with another version (closes).
    VersionMismatch,
    /// The peer's uid/groups may not use the socket (closes).
    PermissionDenied,
    /// Too many connections (closes).
    Busy,
    /// Not a frame, not JSON, or not a known request (closes).
    BadRequest,
    /// A frame over `MAX_FRAME` (closes).
    FrameTooLarge,
    /// Nothing, or half a frame, within the read timeout (closes).
    Timeout,
    /// No app or instance by that name or id; the message lists the known ones.
    UnknownTarget,
    /// The supervisor could not do it (the message says why).
    Failed,
    /// pmi is stopping everything and takes no more requests.
    ShuttingDown,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("timed out")]
    Timeout,
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> FrameError {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Closed,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => FrameError::Timeout,
            _ => FrameError::Io(e),
        }
    }
}

/// A frame: length prefix and JSON body.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// An answer as frames: one frame, or `part` frames when it is over `MAX_FRAME`.
pub fn encode_reply(msg: &Response) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_string(msg)?;
    if body.len() <= MAX_FRAME {
        return encode(msg);
    }
    if body.len() > MAX_REPLY {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 4);
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(PART_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.extend(encode(&Response::Part {
            data: piece.to_string(),
            more: !tail.is_empty(),
        })?);
        rest = tail;
    }
    Ok(out)
}

/// Blocking read of one answer (the client side): a frame, or the `part` frames of a big one.
pub fn read_reply<R: Read>(r: &mut R) -> Result<Response, FrameError> {
    let mut text = String::new();
    loop {
        match read_frame(r)? {
            Response::Part { data, more } => {
                if text.len() + data.len() > MAX_REPLY {
                    return Err(FrameError::TooLarge(text.len() + data.len()));
                }
                text.push_str(&data);
                if !more {
                    return Ok(serde_json::from_str(&text)?);
                }
            }
            other if text.is_empty() => return Ok(other),
            _ => {
                return Err(FrameError::Io(std::io::Error::other(
                    "an answer's parts were interrupted",
                )))
            }
        }
    }
}

/// The body length a frame header announces, checked against the cap.
pub fn body_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let n = u32::from_be_bytes(header) as usize;
    if n > MAX_FRAME {
        return Err(FrameError::TooLarge(n));
    }
    Ok(n)
}

pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// Blocking write of one frame (the client side).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Blocking read of one frame (the client side); timeouts come from the socket.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    let mut body = vec![0u8; body_len(header)?];
    r.read_exact(&mut body)?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let req = Request::Logs {
            target: Some("api:1".into()),
            lines: 5,
            follow: true,
            stream: Some(Stream::Err),
        };
        let bytes = encode(&req).unwrap();
        assert_eq!(
            u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize,
            bytes.len() - 4
        );
        let json: serde_json::Value = serde_json::from_slice(&bytes[4..]).unwrap();
        assert_eq!(json["type"], "logs");
        assert_eq!(json["stream"], "err");
        let back: Request = read_frame(&mut &bytes[..]).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn scale_and_errors_on_the_wire() {
        let req = Request::Scale {
            app: "api".into(),
            count: ScaleCount::Sub(2),
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"scale","app":"api","count":{"sub":2}})
        );
        let e = Response::Error(ErrorReply::new(ErrorKind::Busy, "busy"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","kind":"busy","message":"busy"})
        );
    }

    #[test]
    fn a_big_answer_goes_in_parts_and_comes_back_whole() {
        // Quotes and multi-byte characters: escaping and cuts at char boundaries.
        let line = LogLine {
            pm_id: 1,
            app: "a".into(),
            instance: 0,
            stream: Stream::Out,
            ts_ms: 5,
            text: "\"é€\"".repeat(100_000),
        };
        let msg = Response::Logs {
            lines: vec![line; 10],
        };
        let bytes = encode_reply(&msg).unwrap();
        let mut r = &bytes[..];
        let mut frames = 0;
        while !r.is_empty() {
            let n = body_len([r[0], r[1], r[2], r[3]]).unwrap();
            r = &r[4 + n..];
            frames += 1;
        }
        assert!(frames > 10, "{frames}");
        assert_eq!(read_reply(&mut &bytes[..]).unwrap(), msg);
        // A small answer is one ordinary frame, as before.
        let small = Response::Health {
            ok: true,
            reason: None,
        };
        assert_eq!(encode_reply(&small).unwrap(), encode(&small).unwrap());
        assert_eq!(
            read_reply(&mut &encode(&small).unwrap()[..]).unwrap(),
            small
        );
    }

    #[test]
    fn oversized_truncated_and_garbage_frames_are_errors() {
        let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame::<_, Request>(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        let mut half = encode(&Request::Health { ready: false }).unwrap();
        half.truncate(7);
        assert!(matches!(
            read_frame::<_, Request>(&mut &half[..]),
            Err(FrameError::Closed)
        ));
        let mut garbage = 3u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"{x]");
        assert!(matches!(
            read_frame::<_, Request>(&mut &garbage[..]),
            Err(FrameError::Json(_))
        ));
        let unknown = encode(&serde_json::json!({"type":"delete_everything"})).unwrap();
        assert!(read_frame::<_, Request>(&mut &unknown[..]).is_err());
    }
}
