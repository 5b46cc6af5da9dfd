//! Making the control socket: the default places in order, the directory and socket modes,
//! the group, and the stale-socket probe (`serve` in `server.rs` answers on what this binds).
//!
//! Invariant: a socket file is replaced only when nobody answers on it, and a file that is not
//! a socket is never touched; every failure says which path and why.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::socket::{connect_once, server_candidates};

/// A bound control socket, ready for `serve`.
#[derive(Debug)]
pub struct Listener {
    pub(super) inner: std::os::unix::net::UnixListener,
    pub(super) path: PathBuf,
    pub(super) group: Option<u32>,
}

impl Listener {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a socket could not be made where it was tried.
enum BindError {
    /// The place is not writable (read-only /run, not ours): the next default may be tried.
    Unusable(String),
    /// Do not try elsewhere (another pmi answers, a non-socket file is in the way).
    Fatal(String),
}

impl BindError {
    fn message(self) -> String {
        match self {
            BindError::Unusable(m) | BindError::Fatal(m) => m,
        }
    }
}

/// Makes the control socket at `path`, or at the defaults. `socket_group` (a name or gid) lets a
/// group use it besides root and pmi's own uid. The error says why no socket was made; pmi then
/// runs its apps without one.
pub fn bind(path: Option<&Path>, socket_group: Option<&str>) -> Result<Listener, String> {
    let group = socket_group.map(group_id).transpose()?;
    if let Some(p) = path {
        return bind_at(p, group, false).map_err(BindError::message);
    }
    let mut why = Vec::new();
    for p in server_candidates(None, nix::unistd::geteuid().as_raw()) {
        match bind_at(&p, group, true) {
            Ok(l) => return Ok(l),
            Err(BindError::Fatal(m)) => return Err(m),
            Err(BindError::Unusable(m)) => why.push(m),
        }
    }
    Err(why.join("; and "))
}

fn group_id(g: &str) -> Result<u32, String> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(gr)) => Ok(gr.gid.as_raw()),
        _ => Err(format!(
            "socket_group '{g}' is neither a gid nor a group in /etc/group"
        )),
    }
}

/// `own_dir`: the directory is pmi's (a default path): create it or take it over with pmi's mode.
/// Otherwise only a directory pmi creates gets that mode.
fn bind_at(path: &Path, group: Option<u32>, own_dir: bool) -> Result<Listener, BindError> {
    let (dir_mode, sock_mode) = if group.is_some() {
        (0o750, 0o660)
    } else {
        (0o700, 0o600)
    };
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let unusable = |what: &str, e: io::Error| {
        BindError::Unusable(format!("cannot {what} for the control socket {shown}: {e}"))
    };
    let created = match std::fs::DirBuilder::new().mode(dir_mode).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) if !own_dir && e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)
                .map_err(|e| unusable(&format!("create {}", dir.display()), e))?;
            true
        }
        Err(e) => return Err(unusable(&format!("create {}", dir.display()), e)),
    };
    if created || own_dir {
        let meta =
            std::fs::symlink_metadata(dir).map_err(|e| unusable("inspect its directory", e))?;
        let me = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || meta.uid() != me {
            return Err(BindError::Unusable(format!(
                "{} is not a directory owned by uid {me}; not using it for the control socket",
                dir.display()
            )));
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))
            .map_err(|e| unusable("set the mode of its directory", e))?;
        chown_group(dir, group).map_err(|e| unusable("give its directory to the group", e))?;
    }
    remove_stale(path)?;
    let inner = std::os::unix::net::UnixListener::bind(path).map_err(|e| unusable("bind", e))?;
    let finish = || -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(sock_mode))?;
        chown_group(path, group)?;
        inner.set_nonblocking(true)
    };
    if let Err(e) = finish() {
        let _ = std::fs::remove_file(path);
        return Err(BindError::Fatal(format!(
            "cannot set up the control socket {shown}: {e}"
        )));
    }
    Ok(Listener {
        inner,
        path: path.to_path_buf(),
        group,
    })
}

fn chown_group(path: &Path, group: Option<u32>) -> io::Result<()> {
    match group {
        Some(g) => std::os::unix::fs::chown(path, None, Some(g)),
        None => Ok(()),
    }
}

/// A socket file that nobody answers on is replaced; one that answers means another pmi.
fn remove_stale(path: &Path) -> Result<(), BindError> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BindError::Unusable(format!("cannot inspect {shown}: {e}"))),
    };
    if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        return Err(BindError::Fatal(format!(
            "{shown} exists and is not a socket; not replacing it (choose another path with --socket)"
        )));
    }
    match connect_once(path) {
        Ok(_) => Err(BindError::Fatal(format!(
            "another pmi is running: it answers on {shown}; this one runs its apps without a control socket (give it another with --socket)"
        ))),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Err(BindError::Fatal(format!(
            "another pmi is running on {shown} (its backlog is full); this one runs without a control socket"
        ))),
        Err(_) => std::fs::remove_file(path)
            .map_err(|e| BindError::Unusable(format!("cannot remove the stale socket {shown}: {e}"))),
    }
}
