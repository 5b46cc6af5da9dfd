//! Binding the sockets pmi shares with an app's instances (SPEC §9).
//!
//! pmi binds each `listen` address once, before the app's first spawn, and keeps the listening
//! socket for as long as the app exists: while every instance restarts, connections wait in the
//! kernel's queue (backlog 511, as Node) instead of being refused. Each instance gets the same
//! sockets at fds 3, 4, … (`os::spawn::spawn_with`) and the variables of `listen_env`.
//!
//! Invariants: pmi's own copies are close-on-exec (they reach a child only through the explicit
//! fd list of one spawn) and blocking (O_NONBLOCK belongs to the open file description shared with
//! every instance; pmi never accepts, and each app sets the mode it wants). A failure names the
//! address and the kernel's reason.
//!
//! Shared on demand (`SharedPorts`): a Node cluster app without `listen` binds whatever TCP port
//! its code asks for. The pmi preload (`node::shim`) sends `{"pmi":"bind","port":P}` on the
//! instance's Node IPC channel; pmi answers with `SharedPorts::get_or_bind(P)` (bound once per app,
//! every interface, then the same socket for every instance and every later request), sent back
//! as a Node `NODE_HANDLE` message carrying the fd in SCM_RIGHTS (`node::channel::send_socket`),
//! or an error message. Node turns that into a listening handle; the preload hands it to the
//! app's own `server.listen`. The number of ports per app is capped (`MAX_SHARED_PORTS`).
//! These sockets, unlike `listen` ones, are made non-blocking: only Node receives them, and
//! the libuv of Node 18 (1.44) leaves a received handle as it comes, so a blocking one stalls
//! the event loop in `accept()` (measured with Debian's Node 18.20.4; Node 20 is unaffected).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::config::ListenAddr;

/// Node's default backlog (and the reference measurements').
pub const BACKLOG: i32 = 511;

/// Most ports one app may have pmi bind on demand: a hostile app cannot make pmi hold them all.
pub const MAX_SHARED_PORTS: usize = 16;

/// A listening socket pmi holds for an app.
#[derive(Debug)]
pub struct Listener {
    pub addr: ListenAddr,
    pub fd: OwnedFd,
}

impl Listener {
    /// The address the kernel bound (the real port when the address asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_addr(self.fd.as_fd())
    }
}

/// Why an address could not be bound: the address as written and the reason, ready to print.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {reason}")]
pub struct BindError {
    pub addr: String,
    pub reason: String,
    /// The errno, when the kernel said no (EADDRINUSE, EACCES…).
    pub errno: Option<i32>,
}

impl BindError {
    fn os(addr: &ListenAddr, e: &io::Error) -> BindError {
        let errno = e.raw_os_error();
        let hint = match errno {
            Some(libc::EADDRINUSE) => "the address is in use (EADDRINUSE): another process listens there; stop it or choose another port",
            Some(libc::EACCES) | Some(libc::EPERM) => "permission denied (EACCES): ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port ≥ 1024",
            Some(libc::EADDRNOTAVAIL) => "the address is not on this machine (EADDRNOTAVAIL); use an address of one of its interfaces, or a bare port",
            _ => "",
        };
        BindError {
            addr: addr.to_string(),
            reason: if hint.is_empty() {
                e.to_string()
            } else {
                hint.to_string()
            },
            errno,
        }
    }

    fn msg(addr: &ListenAddr, reason: String) -> BindError {
        BindError {
            addr: addr.to_string(),
            reason,
            errno: None,
        }
    }
}

/// Binds every address of an app, all or nothing (a failure closes what was bound).
pub fn bind_all(addrs: &[ListenAddr]) -> Result<Vec<Listener>, BindError> {
    addrs
        .iter()
        .map(|a| {
            bind(a).map(|fd| Listener {
                addr: a.clone(),
                fd,
            })
        })
        .collect()
}

/// Binds and listens on one address. A bare port is dual-stack `[::]` (IPV6_V6ONLY off) where
/// IPv6 exists, else `0.0.0.0`.
pub fn bind(addr: &ListenAddr) -> Result<OwnedFd, BindError> {
    match addr {
        ListenAddr::Any { port } => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), *port);
            match bind_tcp(v6, true) {
                Err(e) if no_ipv6(&e) => bind_tcp(SocketAddr::from(([0, 0, 0, 0], *port)), false),
                r => r,
            }
            .map_err(|e| BindError::os(addr, &e))
        }
        ListenAddr::Tcp { addr: sa } => bind_tcp(*sa, false).map_err(|e| BindError::os(addr, &e)),
        ListenAddr::Unix { path } => bind_unix(addr, path),
    }
}

fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

fn socket(family: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before it is owned.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int(fd: RawFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: `v` outlives the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn check(r: i32) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind_tcp(sa: SocketAddr, dual: bool) -> io::Result<OwnedFd> {
    let (family, storage, len) = sockaddr(sa);
    let fd = socket(family)?;
    let raw = fd.as_raw_fd();
    // SO_REUSEADDR: a restarted pmi can bind while old connections sit in TIME_WAIT.
    set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if family == libc::AF_INET6 {
        set_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, i32::from(!dual))?;
    }
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    check(unsafe { libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    // SAFETY: plain syscall on an owned fd.
    check(unsafe { libc::listen(raw, BACKLOG) })?;
    Ok(fd)
}

fn sockaddr(sa: SocketAddr) -> (i32, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match sa {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin) };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            (libc::AF_INET, st, len)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin6) };
            let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            (libc::AF_INET6, st, len)
        }
    }
}

/// The TCP address a socket is bound to.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage; the kernel fills at most `len` bytes.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    check(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    match i32::from(st.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((&st as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&st as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a TCP socket",
        )),
    }
}

fn bind_unix(addr: &ListenAddr, path: &Path) -> Result<OwnedFd, BindError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(BindError::msg(
            addr,
            format!(
                "the directory {} does not exist; create it first (or mount a volume there)",
                dir.display()
            ),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A socket file: stale if nobody answers on it, then it is replaced.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(BindError::msg(
                    addr,
                    "another process listens on this socket; stop it or choose another path".into(),
                ));
            }
            std::fs::remove_file(path).map_err(|e| BindError::os(addr, &e))?;
        }
        Ok(_) => {
            return Err(BindError::msg(
                addr,
                format!(
                    "{} exists and is not a socket; remove it or choose another path",
                    path.display()
                ),
            ))
        }
        Err(_) => {}
    }
    let fd = socket(libc::AF_UNIX).map_err(|e| BindError::os(addr, &e))?;
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sun.sun_path.len() {
        return Err(BindError::msg(addr, "the path is too long".into()));
    }
    for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: `sun` is a valid sockaddr_un of `len` bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len,
        )
    })
    .and_then(|()| check(unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) }))
    .map_err(|e| BindError::os(addr, &e))?;
    Ok(fd)
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    check(fl)?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) })
}

/// The socket-activation variables for an instance that gets `listeners` at fds 3, 4, …:
/// `LISTEN_FDS`, `LISTEN_FDNAMES` and, unless the app sets `PORT` itself (`port`/`env`), `PORT`
/// (the first TCP port). `LISTEN_PID` is the child's own pid, so `os::spawn` sets it in the child.
pub fn listen_env(listeners: &[Listener], app_sets_port: bool) -> Vec<(OsString, OsString)> {
    let mut env = vec![
        ("LISTEN_FDS".into(), listeners.len().to_string().into()),
        (
            "LISTEN_FDNAMES".into(),
            listeners
                .iter()
                .map(|l| l.addr.fd_name())
                .collect::<Vec<_>>()
                .join(":")
                .into(),
        ),
    ];
    let port = listeners.iter().find_map(|l| match l.addr {
        ListenAddr::Any { .. } | ListenAddr::Tcp { .. } => {
            l.local_addr().ok().map(|a| a.port()).or(l.addr.port())
        }
        ListenAddr::Unix { .. } => None,
    });
    if let (Some(p), false) = (port, app_sets_port) {
        env.push(("PORT".into(), p.to_string().into()));
    }
    env
}

/// The sockets pmi bound on demand for one Node cluster app without `listen`: one per port,
/// shared by every instance, kept until the app is removed.
#[derive(Debug, Default)]
pub struct SharedPorts {
    ports: BTreeMap<u16, OwnedFd>,
}

impl SharedPorts {
    pub fn new() -> SharedPorts {
        SharedPorts::default()
    }

    /// The socket for `port`: the one already bound, or a new one on every interface.
    pub fn get_or_bind(&mut self, port: u16) -> Result<BorrowedFd<'_>, BindError> {
        let addr = ListenAddr::Any { port };
        if port == 0 {
            return Err(BindError::msg(
                &addr,
                "port 0 is not shared (each instance would get its own random port)".into(),
            ));
        }
        if !self.ports.contains_key(&port) {
            if self.ports.len() >= MAX_SHARED_PORTS {
                return Err(BindError::msg(
                    &addr,
                    format!(
                        "the app already has {MAX_SHARED_PORTS} shared ports; no more are bound"
                    ),
                ));
            }
            let fd = bind(&addr)?;
            set_nonblocking(fd.as_fd()).map_err(|e| BindError::os(&addr, &e))?;
            self.ports.insert(port, fd);
        }
        match self.ports.get(&port) {
            Some(fd) => Ok(fd.as_fd()),
            None => Err(BindError::msg(&addr, "internal: socket vanished".into())),
        }
    }

    /// The ports bound so far.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.keys().copied()
    }
}

#[cfg(test)]
#[path = "listen_tests.rs"]
mod tests;
