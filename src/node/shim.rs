//! The Node preload (`shim.js`, embedded) and how a Node command line runs it.
//!
//! Why a memfd and the main-module slot: the preload must work on a read-only root file system
//! as any user, and must not touch the app's `NODE_OPTIONS` (which the app's children inherit).
//! So pmi never writes it to disk: it lives in one sealed memfd, passed to each Node instance as
//! an fd, and node runs `--preserve-symlinks-main /proc/self/fd/N SCRIPT ARGS`. `--require
//! /proc/self/fd/N` does not work: Node's `require` takes the real path of every file, and
//! `/proc/self/fd/N` of a memfd resolves to `/memfd:… (deleted)`, which does not exist
//! (measured with Node 20). `--preserve-symlinks-main` skips that for the main module only; the
//! preload then removes itself and the flag from `process.argv` / `process.execArgv` and runs
//! SCRIPT (real path resolved, as Node would) with `Module.runMain`, so `require.main ===
//! module`, `__filename`, ESM and `child_process.fork` behave as without pmi. Node 18 and later.
//!
//! Invariant: the memfd is sealed (no write, grow, shrink) before any child sees it, so one
//! instance cannot change the code the next one runs.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// The preload's source.
pub const SHIM_JS: &str = include_str!("shim.js");

/// The flag that lets Node run the preload from a memfd (see the module doc).
pub const MAIN_FLAG: &str = "--preserve-symlinks-main";

/// The sealed memfd holding `SHIM_JS` (close-on-exec in pmi; make it once, pass it to every
/// Node instance).
pub fn memfd() -> io::Result<OwnedFd> {
    let name = c"pmi-node-preload";
    // SAFETY: a plain syscall with a valid C string.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(owned);
    f.write_all(SHIM_JS.as_bytes())?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on our own fd.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(f))
}

/// Whether an interpreter is Node (`node`, `nodejs`, a path to one of them).
pub fn is_node(interpreter: &str) -> bool {
    let base = Path::new(interpreter)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    matches!(base, "node" | "nodejs")
}

/// The command line that runs `command` (`[node, interpreter_args…, script, args…]`) through
/// the preload at fd `shim_fd`: the flag and `/proc/self/fd/N` go right before the script.
/// `interpreter_args` is how many node options follow `node`.
pub fn node_command(command: &[String], interpreter_args: usize, shim_fd: i32) -> Vec<OsString> {
    let at = (1 + interpreter_args).min(command.len());
    let mut v: Vec<OsString> = command[..at].iter().map(OsString::from).collect();
    v.push(MAIN_FLAG.into());
    v.push(format!("/proc/self/fd/{shim_fd}").into());
    v.extend(command[at..].iter().map(OsString::from));
    v
}

/// The variables the preload reads: the address → fd map of pmi's sockets (keys are a port's
/// number or `unix:PATH`), and whether to ask pmi for other TCP ports (a cluster app without
/// `listen`).
pub fn env(map: &[(String, i32)], share: bool) -> Vec<(OsString, OsString)> {
    let obj: serde_json::Map<String, serde_json::Value> = map
        .iter()
        .map(|(k, fd)| (k.clone(), serde_json::Value::from(*fd)))
        .collect();
    let mut v = vec![(
        OsString::from("PMI_LISTEN_MAP"),
        OsString::from(serde_json::Value::Object(obj).to_string()),
    )];
    if share {
        v.push(("PMI_SHARE".into(), "1".into()));
    }
    v
}

/// The map key for a `listen` address, as the preload looks it up: the port for TCP
/// (a listen(port) matches whatever host was asked), `unix:PATH` for a Unix socket.
pub fn map_key(addr: &crate::config::ListenAddr) -> String {
    match addr.port() {
        Some(p) => p.to_string(),
        None => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memfd_is_sealed_and_holds_the_shim() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let fd = memfd().unwrap();
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        let mut s = String::new();
        std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, SHIM_JS);
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        assert!(w.is_err() || w.unwrap().write_all(b"x").is_err(), "sealed");
    }

    #[test]
    fn command_lines() {
        let c: Vec<String> = ["node", "--max-old-space-size=64", "app.js", "--port", "1"]
            .map(String::from)
            .to_vec();
        let v = node_command(&c, 1, 6);
        let v: Vec<&str> = v.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            v,
            [
                "node",
                "--max-old-space-size=64",
                MAIN_FLAG,
                "/proc/self/fd/6",
                "app.js",
                "--port",
                "1"
            ]
        );
        assert!(is_node("/usr/bin/node") && is_node("nodejs") && !is_node("python3"));
        let e = env(&[("3000".into(), 3), ("unix:/run/a.sock".into(), 4)], true);
        assert_eq!(e[0].1, r#"{"3000":3,"unix:/run/a.sock":4}"#);
        assert_eq!(e[1], ("PMI_SHARE".into(), "1".into()));
    }
}
