//! The child's side of `spawn_with`: an exec image built before fork, and the fd placement and
//! `execvp` that run after it.
//!
//! Invariant: everything the child touches after fork was allocated by the parent; the child only
//! stores into those buffers and makes async-signal-safe calls.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

extern "C" {
    static mut environ: *const *const libc::c_char;
}

/// Room for the digits of any pid (pid_max is at most 2^22; 10 digits covers 2^32).
const PID_DIGITS: usize = 10;

/// argv and envp as C arrays, plus the holes where the child writes its pid.
pub struct Image {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    /// One `NAME=` followed by PID_DIGITS + 1 NULs per pid variable: the child fills in its
    /// digits. The heap buffers never move, so `holes` may point into them.
    _pid_entries: Vec<Vec<u8>>,
    /// Where each entry's digits go.
    holes: Vec<*mut u8>,
    env_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into buffers owned by the same `Image`, which is moved (not
// shared) into the pre_exec closure; the heap buffers do not move with it.
unsafe impl Send for Image {}
unsafe impl Sync for Image {}

fn cstr(s: &std::ffi::OsStr, what: &str) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

impl Image {
    /// The environment is `env` with each name once (the last value wins, as std's `envs`), plus
    /// a hole for the child's own pid for each name of `pid_vars` (`LISTEN_PID`, `WATCHDOG_PID`),
    /// replacing any value `env` gives them.
    pub fn new(
        argv: &[OsString],
        env: &[(OsString, OsString)],
        pid_vars: &[&str],
    ) -> io::Result<Image> {
        let args: Vec<CString> = argv
            .iter()
            .map(|a| cstr(a, "an argument"))
            .collect::<io::Result<_>>()?;
        let program = args
            .first()
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut map: BTreeMap<&std::ffi::OsStr, &std::ffi::OsStr> = BTreeMap::new();
        for (k, v) in env {
            map.insert(k, v);
        }
        for v in pid_vars {
            map.remove(std::ffi::OsStr::new(v));
        }
        let mut envs = Vec::with_capacity(map.len());
        for (k, v) in map {
            let mut kv = k.as_bytes().to_vec();
            if kv.is_empty() || kv.contains(&b'=') {
                continue; // not a variable a child could read back
            }
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envs.push(CString::new(kv).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an environment value contains a NUL byte",
                )
            })?);
        }
        let mut pid_entries: Vec<Vec<u8>> = pid_vars
            .iter()
            .map(|v| {
                let mut e = format!("{v}=").into_bytes();
                e.resize(v.len() + 1 + PID_DIGITS + 1, 0);
                e
            })
            .collect();
        let holes: Vec<*mut u8> = pid_entries
            .iter_mut()
            .zip(pid_vars)
            // SAFETY: `v.len() + 1` is within the entry (it has PID_DIGITS + 1 more bytes).
            .map(|(e, v)| unsafe { e.as_mut_ptr().add(v.len() + 1) })
            .collect();
        let mut argv_ptrs: Vec<_> = args.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<_> = envs.iter().map(|e| e.as_ptr()).collect();
        env_ptrs.extend(
            pid_entries
                .iter()
                .map(|e| e.as_ptr().cast::<libc::c_char>()),
        );
        env_ptrs.push(std::ptr::null());
        Ok(Image {
            program,
            _argv: args,
            argv_ptrs,
            _env: envs,
            _pid_entries: pid_entries,
            holes,
            env_ptrs,
        })
    }

    /// In the child: writes the pid's digits into every hole (no allocation).
    fn fill_pid(&mut self, pid: i32) {
        let mut digits = [0u8; PID_DIGITS];
        let mut n = pid.unsigned_abs();
        let mut i = PID_DIGITS;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        let len = PID_DIGITS - i;
        for &hole in &self.holes {
            // SAFETY: each hole has PID_DIGITS + 1 bytes we own, and `len <= PID_DIGITS`; only
            // raw pointers ever access them after construction.
            unsafe {
                std::ptr::copy_nonoverlapping(digits[i..].as_ptr(), hole, len);
                *hole.add(len) = 0;
            }
        }
    }
}

/// A pipe whose two ends are close-on-exec: (read, write).
pub fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In the parent: the errno the child reported, or `None` when exec succeeded (the pipe closed).
pub fn read_errno(r: OwnedFd) -> Option<i32> {
    use std::io::Read;
    let mut f = std::fs::File::from(r);
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    (got == 4).then(|| i32::from_ne_bytes(buf))
}

/// In the child: puts `fds` at 3, 4, …, sets `LISTEN_PID`, and execs. Returns only by `_exit`.
///
/// Every source is first duplicated above the targets (so that a source sitting on another's
/// target is not overwritten before it is moved); `dup2` onto the target then clears
/// close-on-exec there, while the temporaries keep it and vanish at exec.
pub fn place_and_exec(image: &mut Image, fds: &[RawFd], err_fd: RawFd) -> io::Result<()> {
    let n = fds.len() as RawFd;
    let high = 3 + n;
    // SAFETY: async-signal-safe calls on descriptors this process holds.
    unsafe {
        let mut err_fd = err_fd;
        if err_fd < high {
            err_fd = libc::fcntl(err_fd, libc::F_DUPFD_CLOEXEC, high);
        }
        let mut tmp = [-1 as RawFd; super::MAX_PASS];
        for (t, &src) in tmp.iter_mut().zip(fds) {
            *t = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, high);
            if *t < 0 {
                fail(err_fd);
            }
        }
        for (i, &t) in tmp.iter().take(fds.len()).enumerate() {
            if libc::dup2(t, 3 + i as RawFd) < 0 {
                fail(err_fd);
            }
        }
        image.fill_pid(libc::getpid());
        std::ptr::addr_of_mut!(environ).write(image.env_ptrs.as_ptr());
        libc::execvp(image.program.as_ptr(), image.argv_ptrs.as_ptr());
        fail(err_fd)
    }
}

/// Reports errno on `err_fd` and leaves the child.
fn fail(err_fd: RawFd) -> ! {
    // SAFETY: async-signal-safe: errno read, write, _exit.
    unsafe {
        let e = *libc::__errno_location();
        let b = e.to_ne_bytes();
        libc::write(err_fd, b.as_ptr().cast(), b.len());
        libc::_exit(crate::exit::NOT_FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_deduplicated_and_the_pid_hole_is_filled() {
        let env: Vec<(OsString, OsString)> = vec![
            ("A".into(), "1".into()),
            ("A".into(), "2".into()),
            ("LISTEN_PID".into(), "999".into()),
            ("B=C".into(), "x".into()),
        ];
        let mut img = Image::new(&["prog".into()], &env, &["LISTEN_PID", "WATCHDOG_PID"]).unwrap();
        img.fill_pid(4242);
        let entries: Vec<String> = img
            .env_ptrs
            .iter()
            .take_while(|p| !p.is_null())
            .map(|p| {
                unsafe { std::ffi::CStr::from_ptr(*p) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(entries, ["A=2", "LISTEN_PID=4242", "WATCHDOG_PID=4242"]);
        img.fill_pid(7);
        let last = unsafe { std::ffi::CStr::from_ptr(img.env_ptrs[2]) };
        assert_eq!(last.to_str().unwrap(), "WATCHDOG_PID=7");
        assert!(Image::new(&["p".into()], &[("K".into(), "a\0b".into())], &[]).is_err());
    }
}
