use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::*;

/// The fds a child listed, minus the listing's own and the inherited ones.
fn child_fds(line: &str) -> Vec<i32> {
    let skip = inheritable_fds();
    let mut v: Vec<i32> = line
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|x| x.parse().unwrap())
        .filter(|fd| !skip.contains(fd))
        .collect();
    v.pop(); // the highest remaining is os.listdir's own descriptor
    v
}

/// Runs `code` with python3 through `spawn_with`, returns its stdout and exit code.
fn run_py(code: &str, env: Vec<(OsString, OsString)>, pass: &Pass<'_>) -> (String, i32) {
    let argv: Vec<OsString> = vec!["python3".into(), "-c".into(), code.into()];
    let mut env = env;
    env.push(("PATH".into(), std::env::var_os("PATH").unwrap_or_default()));
    let req = SpawnRequest {
        argv: &argv,
        cwd: Path::new("/"),
        env,
        streams: Streams::Pipes,
        uid: None,
        gid: None,
        groups: &[],
    };
    let child = spawn_with(&req, pass).unwrap();
    let mut out = String::new();
    std::fs::File::from(child.stdout.unwrap())
        .read_to_string(&mut out)
        .unwrap();
    let mut status = 0;
    unsafe { libc::waitpid(child.pid, &mut status, 0) };
    (out, libc::WEXITSTATUS(status))
}

const REPORT: &str = r#"
import os, socket, stat
print(os.getpid(), os.environ.get('LISTEN_PID'), os.environ.get('LISTEN_FDS'))
for fd in (3, 4):
    try:
        st = os.fstat(fd)
        s = socket.socket(fileno=os.dup(fd))
        acc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        s.close()
        print(fd, st.st_ino, stat.S_ISSOCK(st.st_mode), acc, os.get_inheritable(fd))
    except OSError:
        print(fd, 'closed')
print(sorted(int(x) for x in os.listdir('/proc/self/fd')))
"#;

#[test]
fn fds_land_at_3_and_4_with_listen_pid_of_the_child() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let ino = |f: BorrowedFd<'_>| {
        std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .unwrap()
            .ino()
    };
    // Pass them in the order opposite to their numbers, so that placement must not clobber.
    let fds = [theirs.as_fd(), listener.as_fd()];
    let env = vec![
        ("LISTEN_FDS".into(), "2".into()),
        ("LISTEN_PID".into(), "1".into()),
    ];
    let (out, code) = run_py(
        REPORT,
        env,
        &Pass {
            fds: &fds,
            listen_pid: true,
            watchdog_pid: false,
        },
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(
        first[0], first[1],
        "LISTEN_PID is the child's own pid: {out}"
    );
    assert_eq!(first[2], "2");
    assert_eq!(
        lines[1],
        format!("3 {} True 0 True", ino(theirs.as_fd())),
        "{out}"
    );
    assert_eq!(
        lines[2],
        format!("4 {} True 1 True", ino(listener.as_fd())),
        "{out}"
    );
    // Nothing but 0–4 (and the listing's own fd): no temporaries, no error pipe, no leaks.
    assert_eq!(child_fds(lines[3]), [0, 1, 2, 3, 4], "{out}");
    drop(ours);
}

#[test]
fn a_plain_spawn_sees_none_of_pmis_sockets() {
    let _listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (_a, _b) = UnixStream::pair().unwrap();
    let (out, code) = run_py(REPORT, vec![], &Pass::default());
    assert_eq!(code, 0, "{out}");
    let first: Vec<&str> = out.lines().next().unwrap().split(' ').collect();
    assert_eq!(first[1], "None", "no LISTEN_PID without listen_pid");
    assert_eq!(child_fds(out.lines().last().unwrap()), [0, 1, 2], "{out}");
}

#[test]
fn exec_failures_keep_the_shell_codes_with_fds_passed() {
    let (_a, b) = UnixStream::pair().unwrap();
    let fds = [b.as_fd()];
    let pass = Pass {
        fds: &fds,
        listen_pid: true,
        ..Pass::default()
    };
    let req = |argv: &[OsString]| {
        let r = SpawnRequest {
            argv,
            cwd: Path::new("/"),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            streams: Streams::Pipes,
            uid: None,
            gid: None,
            groups: &[],
        };
        spawn_with(&r, &pass).map(|c| c.pid)
    };
    let e = req(&["pmi-no-such-program".into()]).unwrap_err();
    assert_eq!(e.code, exit::NOT_FOUND, "{e}");
    assert!(e.message.contains("not found"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let e = req(&[plain.into_os_string()]).unwrap_err();
    assert_eq!(e.code, exit::NOT_EXECUTABLE, "{e}");
    // PATH lookup uses the child's PATH, as before.
    let pid = req(&["true".into()]).unwrap();
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(libc::WEXITSTATUS(status), 0);
}
