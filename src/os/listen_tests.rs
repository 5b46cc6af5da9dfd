use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use super::*;
use crate::config::ListenAddr;

fn tcp(t: &str) -> ListenAddr {
    ListenAddr::Tcp {
        addr: t.parse().unwrap(),
    }
}

/// Accepts one connection on pmi's socket through a std listener made from a dup of it.
fn serve_once(fd: BorrowedFd<'_>) -> std::thread::JoinHandle<()> {
    let l = TcpListener::from(fd.try_clone_to_owned().unwrap());
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.write_all(b"hi").unwrap();
    })
}

#[test]
fn tcp_bind_is_cloexec_blocking_and_serves() {
    let fd = bind(&tcp("127.0.0.1:0")).unwrap();
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert_ne!(flags & libc::FD_CLOEXEC, 0);
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(fl & libc::O_NONBLOCK, 0);
    let addr = local_addr(fd.as_fd()).unwrap();
    assert_ne!(addr.port(), 0);
    let t = serve_once(fd.as_fd());
    let mut s = String::new();
    TcpStream::connect(addr)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    t.join().unwrap();
    assert_eq!(s, "hi");
}

#[test]
fn bare_port_is_dual_stack() {
    // Find a free port, then bind it as a bare port: both 127.0.0.1 and ::1 reach it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fd = bind(&ListenAddr::Any { port }).unwrap();
    let local = local_addr(fd.as_fd()).unwrap();
    assert_eq!(local.port(), port);
    for target in ["127.0.0.1", "[::1]"] {
        if target == "[::1]" && !local.is_ipv6() {
            continue; // no IPv6 here: 0.0.0.0 was the fallback
        }
        let t = serve_once(fd.as_fd());
        let mut s = String::new();
        TcpStream::connect(format!("{target}:{port}"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        t.join().unwrap();
        assert_eq!(s, "hi", "{target}");
    }
}

#[test]
fn in_use_and_forbidden_ports_name_the_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = tcp(&taken.local_addr().unwrap().to_string());
    let e = bind(&a).unwrap_err();
    assert_eq!(e.errno, Some(libc::EADDRINUSE));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("cannot listen on {a}: ")),
        "{text}"
    );
    assert!(text.contains("EADDRINUSE"), "{text}");
    // bind_all is all or nothing: the first address is closed again when the second fails.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let free_addr = free.local_addr().unwrap();
    drop(free);
    assert!(bind_all(&[tcp(&free_addr.to_string()), a]).is_err());
    assert!(bind(&tcp(&free_addr.to_string())).is_ok());
    // An address that is not on this machine.
    let e = bind(&tcp("192.0.2.1:8080")).unwrap_err();
    assert_eq!(e.errno, Some(libc::EADDRNOTAVAIL), "{e}");
}

#[test]
fn privileged_port_as_non_root_is_eacces() {
    // Only meaningful as a user without CAP_NET_BIND_SERVICE: run the bind in a child that
    // drops to nobody (the test runs as root).
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::setgid(65534);
            libc::setuid(65534);
        }
        let code = match bind(&tcp("127.0.0.1:81")) {
            Err(e) if e.errno == Some(libc::EACCES) && e.reason.contains("1024") => 0,
            _ => 1,
        };
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

#[test]
fn unix_paths_missing_dir_non_socket_stale_and_live() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ListenAddr::Unix {
        path: dir.path().join("nope/app.sock"),
    };
    let e = bind(&missing).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");

    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let e = bind(&ListenAddr::Unix { path: file.clone() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a socket"), "{e}");
    assert!(file.exists(), "a non-socket file is never removed");

    // A stale socket file (nobody listening) is replaced; a live one is refused.
    let path = dir.path().join("app.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let fd = bind(&ListenAddr::Unix { path: path.clone() }).unwrap();
    let l = std::os::unix::net::UnixListener::from(fd);
    let t = std::thread::spawn(move || {
        l.accept().unwrap().0.write_all(b"ok").unwrap();
        l
    });
    let mut s = String::new();
    UnixStream::connect(&path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    let l = t.join().unwrap();
    assert_eq!(s, "ok");
    let e = bind(&ListenAddr::Unix { path: path.clone() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("another process listens"), "{e}");
    drop(l);
}

#[test]
fn listen_env_names_every_fd_and_the_first_port() {
    let ls = bind_all(&[tcp("127.0.0.1:0"), tcp("[::1]:0")]);
    let Ok(ls) = ls else { return }; // no IPv6 loopback here
    let port = ls[0].local_addr().unwrap().port();
    let env = listen_env(&ls, false);
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    };
    assert_eq!(get("LISTEN_FDS").as_deref(), Some("2"));
    assert_eq!(
        get("LISTEN_FDNAMES").as_deref(),
        Some("127.0.0.1_0:[__1]_0")
    );
    assert_eq!(get("PORT"), Some(port.to_string()));
    assert_eq!(get("LISTEN_PID"), None, "set in the child, not here");
    assert!(listen_env(&ls, true).iter().all(|(k, _)| k != "PORT"));
}

#[test]
fn shared_ports_bind_once_and_are_capped() {
    let mut sp = SharedPorts::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = sp.get_or_bind(port).unwrap().as_raw_fd();
    let again = sp.get_or_bind(port).unwrap().as_raw_fd();
    assert_eq!(first, again, "the same socket for every request");
    let fl = unsafe { libc::fcntl(first, libc::F_GETFL) };
    assert_ne!(fl & libc::O_NONBLOCK, 0, "Node 18 needs it non-blocking");
    assert!(sp.get_or_bind(0).is_err());
    // Fill up to the cap with free ports; the next new port is refused.
    let mut held = Vec::new();
    while sp.ports().count() < MAX_SHARED_PORTS {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        if sp.get_or_bind(p).is_ok() {
            held.push(p);
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    drop(l);
    let e = sp.get_or_bind(p).unwrap_err().to_string();
    assert!(e.contains("16 shared ports"), "{e}");
    assert!(
        sp.get_or_bind(port).is_ok(),
        "an existing port still answers"
    );
}
