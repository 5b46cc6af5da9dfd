//! `logs --follow` on the client side: notice that nobody reads our output any more.
//!
//! Invariant: a follower whose stdout has lost its reader (a closed pipe: POLLERR/POLLHUP, or a
//! write that fails) exits, closing its connection, so that pmi's follower task ends too.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// What `wait` saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The socket has something to read (or was closed).
    Readable,
    /// Nothing within the limit.
    Nothing,
    /// Stdout has no reader any more.
    HungUp,
}

/// Waits up to `limit` for `sock` to be readable or stdout to be hung up.
pub fn wait(sock: &UnixStream, limit: Duration) -> Seen {
    let mut fds = [
        libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        // No events asked: POLLERR/POLLHUP are reported anyway (a pipe without a reader).
        libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: 0,
            revents: 0,
        },
    ];
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if n > 0 && fds[1].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
        Seen::HungUp
    } else if n > 0 && fds[0].revents != 0 {
        Seen::Readable
    } else {
        Seen::Nothing
    }
}

/// Writes to stdout; `false` when it failed (the reader is gone).
pub fn write_out(s: &str) -> bool {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes()).and_then(|()| o.flush()).is_ok()
}
