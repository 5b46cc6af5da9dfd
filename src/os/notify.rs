//! sd_notify, both ways: a datagram socket per instance that pmi reads (`ready: notify`,
//! `watchdog`), and pmi's own messages to the `NOTIFY_SOCKET` it was given (systemd, podman).
//!
//! Invariant: reading never blocks and never grows: one datagram is at most `MAX_DATAGRAM` bytes
//! (longer ones are truncated by the kernel and counted as garbage), one wake-up reads at most
//! `BATCH` datagrams and folds them into one `Notice`, whose text fields are capped. A flood costs
//! a bounded amount of work per wake-up; what the kernel queue cannot hold is the sender's problem.
//! With an expected process group set, datagrams from other processes are counted and dropped.

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram as StdDatagram};
use std::path::PathBuf;

use tokio::net::UnixDatagram;

/// Longest datagram read; sd_notify messages are a few short lines.
pub const MAX_DATAGRAM: usize = 4096;
/// Datagrams folded into one `Notice` per wake-up.
pub const BATCH: usize = 64;
/// Longest `STATUS=` text kept.
pub const MAX_STATUS: usize = 256;

/// What one or more datagrams said, folded (later values win; flags accumulate).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notice {
    pub ready: bool,
    pub reloading: bool,
    pub stopping: bool,
    /// `WATCHDOG=1`: a keepalive.
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: the app asks to be restarted.
    pub watchdog_trigger: bool,
    /// `WATCHDOG_USEC=`: the app changes its watchdog timeout.
    pub watchdog_usec: Option<u64>,
    pub status: Option<String>,
    pub mainpid: Option<i32>,
    /// Datagrams that said something pmi understood.
    pub accepted: u32,
    /// Datagrams that were empty, too long, not text, or from a foreign process.
    pub garbage: u32,
}

impl Notice {
    /// Nothing in it.
    pub fn is_empty(&self) -> bool {
        self.accepted == 0 && self.garbage == 0
    }

    /// Folds one datagram in. `X_*` and unknown `KEY=value` lines are accepted and ignored
    /// (sd_notify's rule: unknown assignments are ignored).
    pub fn add_datagram(&mut self, data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            self.garbage += 1;
            return;
        };
        let mut understood = false;
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once('=') else {
                self.garbage += 1;
                return;
            };
            understood = true;
            match (k, v) {
                ("READY", "1") => self.ready = true,
                ("RELOADING", "1") => self.reloading = true,
                ("STOPPING", "1") => self.stopping = true,
                ("WATCHDOG", "1") => self.watchdog = true,
                ("WATCHDOG", "trigger") => self.watchdog_trigger = true,
                ("WATCHDOG_USEC", n) => self.watchdog_usec = n.parse().ok().or(self.watchdog_usec),
                ("MAINPID", n) => self.mainpid = n.parse().ok().filter(|&p| p > 0).or(self.mainpid),
                ("STATUS", s) => self.status = Some(truncate(s, MAX_STATUS)),
                _ => {}
            }
        }
        if understood {
            self.accepted += 1;
        } else {
            self.garbage += 1;
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Where a notify socket lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// Linux abstract namespace (no file; `NOTIFY_SOCKET=@name`).
    Abstract(String),
    /// A file path, for clients that cannot use `@` (removed on drop).
    Path(PathBuf),
}

impl Addr {
    /// pmi's name for an instance's socket: unique per pmi process and pm_id.
    pub fn for_instance(pm_id: u32) -> Addr {
        Addr::Abstract(format!("pmi/{}/{pm_id}", std::process::id()))
    }

    /// The value for the app's `NOTIFY_SOCKET`.
    pub fn env_value(&self) -> String {
        match self {
            Addr::Abstract(n) => format!("@{n}"),
            Addr::Path(p) => p.display().to_string(),
        }
    }

    fn to_std(&self) -> io::Result<SocketAddr> {
        match self {
            Addr::Abstract(n) => SocketAddr::from_abstract_name(n.as_bytes()),
            Addr::Path(p) => SocketAddr::from_pathname(p),
        }
    }

    /// `NOTIFY_SOCKET`'s text as an address (`@x` abstract, else a path).
    pub fn parse(s: &str) -> Option<Addr> {
        match s.strip_prefix('@') {
            Some(n) if !n.is_empty() => Some(Addr::Abstract(n.to_string())),
            None if s.starts_with('/') => Some(Addr::Path(PathBuf::from(s))),
            _ => None,
        }
    }
}

/// One instance's receiving socket. Create it before the spawn (so the app can send at once),
/// set the process group right after the spawn, before the loop awaits again.
#[derive(Debug)]
pub struct NotifySocket {
    sock: UnixDatagram,
    addr: Addr,
    expect_pgid: Option<i32>,
    buf: Box<[u8; MAX_DATAGRAM + 1]>,
}

impl NotifySocket {
    /// Binds the socket (SO_PASSCRED on, non-blocking). Needs a tokio runtime.
    pub fn bind(addr: Addr) -> io::Result<NotifySocket> {
        if let Addr::Path(p) = &addr {
            // A stale file from an earlier pmi would make bind fail with EADDRINUSE.
            let _ = std::fs::remove_file(p);
        }
        let std_sock = StdDatagram::bind_addr(&addr.to_std()?)?;
        std_sock.set_nonblocking(true)?;
        nix::sys::socket::setsockopt(&std_sock, nix::sys::socket::sockopt::PassCred, &true)
            .map_err(io::Error::from)?;
        if let Addr::Path(p) = &addr {
            // Apps may run as another uid; the pgid check below is the access control.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666));
        }
        Ok(NotifySocket {
            sock: UnixDatagram::from_std(std_sock)?,
            addr,
            expect_pgid: None,
            buf: Box::new([0; MAX_DATAGRAM + 1]),
        })
    }

    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// Accept datagrams only from processes in this process group (the instance's pid: it leads
    /// its own group). `None` accepts any sender.
    pub fn set_expected_pgid(&mut self, pgid: Option<i32>) {
        self.expect_pgid = pgid;
    }

    /// Waits until datagrams are queued, then folds up to `BATCH` of them into one `Notice`.
    /// Cancel-safe: nothing is read before the socket is readable.
    pub async fn recv(&mut self) -> io::Result<Notice> {
        loop {
            self.sock.readable().await?;
            let n = self.drain();
            if !n.is_empty() {
                return Ok(n);
            }
        }
    }

    /// Reads what is queued now, at most `BATCH` datagrams, without waiting.
    pub fn drain(&mut self) -> Notice {
        let mut notice = Notice::default();
        for _ in 0..BATCH {
            let fd = self.sock.as_raw_fd();
            let buf = &mut self.buf[..];
            let expect = self.expect_pgid;
            match self
                .sock
                .try_io(tokio::io::Interest::READABLE, || recv_one(fd, buf))
            {
                Ok((len, truncated, sender)) => {
                    let foreign = match (expect, sender) {
                        (None, _) => false,
                        (Some(g), Some(pid)) => {
                            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                                .map_or(true, |p| p.as_raw() != g)
                        }
                        (Some(_), None) => true,
                    };
                    if truncated || foreign || len == 0 {
                        notice.garbage += 1;
                    } else {
                        notice.add_datagram(&self.buf[..len]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    notice.garbage += 1;
                    break;
                }
            }
        }
        notice
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Addr::Path(p) = &self.addr {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// One datagram: (length, truncated, sender pid from SCM_CREDENTIALS).
fn recv_one(fd: i32, buf: &mut [u8]) -> io::Result<(usize, bool, Option<i32>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let msg = recvmsg::<UnixAddr>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(io::Error::from)?;
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.bytes > MAX_DATAGRAM;
    let mut pid = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmCredentials(cr) => pid = Some(cr.pid()),
                // A sender may pass fds along; they must not pile up in pmi.
                ControlMessageOwned::ScmRights(fds) => {
                    for f in fds {
                        // SAFETY: the fd was just received and is owned by nobody else.
                        unsafe { libc::close(f) };
                    }
                }
                _ => {}
            }
        }
    }
    Ok((msg.bytes.min(MAX_DATAGRAM), truncated, pid))
}

/// pmi's own messages upward, to the `NOTIFY_SOCKET` pmi was started with.
#[derive(Debug)]
pub struct Upward {
    sock: StdDatagram,
    addr: SocketAddr,
}

impl Upward {
    /// From pmi's environment; `None` when there is no (usable) `NOTIFY_SOCKET`.
    pub fn from_env() -> Option<Upward> {
        Self::to(&Addr::parse(&std::env::var("NOTIFY_SOCKET").ok()?)?)
    }

    pub fn to(addr: &Addr) -> Option<Upward> {
        let sock = StdDatagram::unbound().ok()?;
        sock.set_nonblocking(true).ok()?;
        Some(Upward {
            sock,
            addr: addr.to_std().ok()?,
        })
    }

    /// Sends one message; never blocks (a full or absent receiver loses it, as libsystemd).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.sock
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// Every autostart app is ready.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!(
            "READY=1\nSTATUS={}\nMAINPID={}",
            one_line(status),
            std::process::id()
        ))
    }

    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1\nSTATUS=stopping")
    }
}

fn one_line(s: &str) -> String {
    truncate(&s.replace('\n', " "), MAX_STATUS)
}

/// The variables pmi must not pass on from its own environment (they describe pmi's socket and
/// pmi's watchdog, not the app's).
pub const OWN_VARS: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The instance's variables for `ready: notify` / `watchdog` (pid: the instance's own).
pub fn instance_vars(
    addr: &Addr,
    watchdog: Option<std::time::Duration>,
    pid: Option<i32>,
) -> Vec<(String, String)> {
    let mut v = vec![("NOTIFY_SOCKET".to_string(), addr.env_value())];
    if let Some(w) = watchdog {
        v.push(("WATCHDOG_USEC".to_string(), w.as_micros().to_string()));
        if let Some(p) = pid {
            v.push(("WATCHDOG_PID".to_string(), p.to_string()));
        }
    }
    v
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
