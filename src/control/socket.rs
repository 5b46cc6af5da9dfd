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

/// The socket to use: `--socket`/`PMI_SOCKET`, else the first default that exists: /run/pmi,
/// then /tmp/pmi-<uid> of this user, then of PID 1's user (pmi in a container, `docker exec` as
/// another user). When none exists, the first, for the message.
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let mut candidates = vec![
        PathBuf::from(DEFAULT_SOCKET),
        fallback_socket(nix::unistd::geteuid().as_raw()),
    ];
    if let Ok(m) = std::fs::metadata("/proc/1") {
        candidates.push(fallback_socket(m.uid()));
    }
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
