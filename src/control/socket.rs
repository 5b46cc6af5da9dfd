//! Where the control socket lives and how to reach it: the one module both the server (bind,
//! stale probe) and the client (find, connect) use.
//!
//! Invariant: the default paths and the connect attempt are defined here only, so a server and
//! a client of the same binary always agree on them.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The socket when neither `--socket` nor `PMI_SOCKET` names one and /run is writable.
pub const DEFAULT_SOCKET: &str = "/run/pmi/pmi.sock";

/// The fallback socket of user `uid` when /run is not writable.
pub fn fallback_socket(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/pmi-{uid}/pmi.sock"))
}

/// The last fallback, when /tmp is not writable either: Docker mounts a writable /dev/shm even
/// with `--read-only`, so `--read-only --tmpfs /run --user 1000` still gets a socket.
pub fn shm_socket(uid: u32) -> PathBuf {
    PathBuf::from(format!("/dev/shm/pmi-{uid}/pmi.sock"))
}

/// Where a supervisor of user `uid` may put its socket, in the order it tries them.
pub fn server_candidates(explicit: Option<&Path>, uid: u32) -> Vec<PathBuf> {
    match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from(DEFAULT_SOCKET),
            fallback_socket(uid),
            shm_socket(uid),
        ],
    }
}

/// The pid of a pmi that answers a hello on `path` within `limit` (`Some(None)`: something
/// answers as pmi, but with another protocol version); `None` when nobody answers.
pub fn answering_pmi(path: &Path, limit: std::time::Duration) -> Option<Option<u32>> {
    use super::proto::{self, Request, Response, PROTOCOL_VERSION};
    let mut s = match connect_once(path) {
        Ok(s) => s,
        // A full backlog: someone listens there.
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Some(None),
        Err(_) => return None,
    };
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    let hello = Request::Hello {
        version: PROTOCOL_VERSION,
    };
    proto::write_frame(&mut s, &hello).ok()?;
    match proto::read_frame::<_, Response>(&mut s) {
        Ok(Response::Hello { pid, .. }) => Some(Some(pid)),
        Ok(Response::Error(_)) => Some(None),
        // A listener that accepts and never answers is no pmi this one can defer to.
        _ => None,
    }
}

/// The socket to use: `--socket`/`PMI_SOCKET`, else the first default that exists: /run/pmi,
/// then /tmp/pmi-<uid> of this user, then of PID 1's user (pmi in a container, `docker exec` as
/// another user), then the same two under /dev/shm. When none exists, the first, for the
/// message.
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let me = nix::unistd::geteuid().as_raw();
    let mut candidates = vec![PathBuf::from(DEFAULT_SOCKET), fallback_socket(me)];
    let pid1 = std::fs::metadata("/proc/1").ok().map(|m| m.uid());
    candidates.extend(pid1.map(fallback_socket));
    candidates.push(shm_socket(me));
    candidates.extend(pid1.map(shm_socket));
    candidates
        .iter()
        .find(|p| {
            // Present, or present behind a directory this user may not enter.
            !matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound)
        })
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// One non-blocking connect attempt; `EAGAIN` means a full backlog (someone listens).
pub fn connect_once(path: &Path) -> io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(fd.as_raw_fd(), &addr)?;
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}
