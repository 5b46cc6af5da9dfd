//! Cluster mode's parts, end to end without the supervisor: pmi's listen sockets, `spawn_with`,
//! the Node IPC channel and the preload, with real `node` and `python3` processes, real sockets
//! and a bounded load client on loopback that counts every failure.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::load::{get, get_pid, Load};
use common::{secs, wait_until};
use pmi::config::ListenAddr;
use pmi::node::channel::{self, Event, Reader, Writer};
use pmi::node::shim;
use pmi::os::listen::{self, Listener, SharedPorts};
use pmi::os::spawn::{spawn_with, Pass, SpawnRequest, Streams};

fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name)
}

/// The node under test: `PMI_TEST_NODE` (e.g. Debian's Node 18), else the `node` on PATH.
fn node_bin() -> OsString {
    std::env::var_os("PMI_TEST_NODE").unwrap_or_else(|| "node".into())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One running instance, as the supervisor will hold it.
struct Inst {
    pid: i32,
    reader: Option<Reader>,
    writer: Option<Writer>,
    output: Arc<Mutex<String>>,
    reaped: Option<i32>,
}

impl Inst {
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The next event within `limit` (the channel is read on `rt`).
    fn event(&mut self, rt: &tokio::runtime::Runtime, limit: Duration) -> Event {
        let r = self.reader.as_mut().expect("a Node instance");
        let e = rt.block_on(async { tokio::time::timeout(limit, r.next()).await });
        match e {
            Ok(Some(e)) => e,
            other => panic!(
                "no event from pid {}: {other:?}\n{}",
                self.pid,
                self.output()
            ),
        }
    }

    fn wait_exit(&mut self, limit: Duration) -> i32 {
        let pid = self.pid;
        let mut status = 0;
        wait_until(&format!("pid {pid} exits"), limit, || {
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
        });
        self.reaped = Some(status);
        status
    }

    fn term(&mut self) -> i32 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        self.wait_exit(secs(10.0))
    }
}

impl Drop for Inst {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            // SAFETY: our own child, its own process group.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Drains a child's output into a buffer (so it never blocks on a full pipe).
fn drain(fd: Option<OwnedFd>, into: Arc<Mutex<String>>) {
    if let Some(fd) = fd {
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(fd);
            let mut buf = [0u8; 4096];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
}

/// A Node instance's extras: the preload memfd, its address → fd map, and on-demand sharing.
type NodeParts<'a> = (&'a OwnedFd, Vec<(String, i32)>, bool);

/// What one spawn gets.
struct Launch<'a> {
    argv: Vec<OsString>,
    listeners: &'a [Listener],
    /// The preload's map (address key → fd), for Node.
    node: Option<NodeParts<'a>>,
    env: Vec<(OsString, OsString)>,
    uid: Option<u32>,
    /// Words run before the command (which must `exec` it, keeping the pid).
    wrap: Vec<OsString>,
}

/// Spawns one instance the way the supervisor will: listen fds at 3.., then (Node) the IPC
/// channel and the preload memfd; `LISTEN_*`, `PORT`, `NODE_CHANNEL_*`, `PMI_*` variables.
fn start(rt: &tokio::runtime::Runtime, l: Launch<'_>) -> Inst {
    let n = l.listeners.len() as i32;
    let mut fds: Vec<BorrowedFd<'_>> = l.listeners.iter().map(|x| x.fd.as_fd()).collect();
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
        ("HOME".into(), "/".into()),
    ];
    env.extend(l.env);
    if n > 0 {
        env.extend(listen::listen_env(l.listeners, false));
    }
    let mut argv = l.argv;
    let mut ours = None;
    let theirs;
    if let Some((memfd, map, share)) = &l.node {
        let (a, b) = channel::socketpair().unwrap();
        ours = Some(a);
        theirs = b;
        fds.push(theirs.as_fd());
        fds.push(memfd.as_fd());
        env.extend(channel::child_env(3 + n));
        env.extend(shim::env(map, *share));
        let cmd: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        argv = shim::node_command(&cmd, 0, 4 + n);
    }
    let argv: Vec<OsString> = l.wrap.into_iter().chain(argv).collect();
    let req = SpawnRequest {
        argv: &argv,
        cwd: Path::new("/"),
        env,
        streams: Streams::Pipes,
        uid: l.uid,
        gid: l.uid,
        groups: &[],
    };
    let child = spawn_with(
        &req,
        &Pass {
            fds: &fds,
            listen_pid: n > 0,
            ..Pass::default()
        },
    )
    .unwrap();
    drop(fds);
    // The child's end of the channel is closed in pmi right after the spawn (else pmi never
    // sees the instance close it).
    let output = Arc::new(Mutex::new(String::new()));
    drain(child.stdout, output.clone());
    drain(child.stderr, output.clone());
    let (reader, writer) = match ours {
        Some(a) => {
            let _g = rt.enter();
            let (r, w) = channel::open(a).unwrap();
            (Some(r), Some(w))
        }
        None => (None, None),
    };
    Inst {
        pid: child.pid,
        reader,
        writer,
        output,
        reaped: None,
    }
}

fn node_launch<'a>(
    memfd: &'a OwnedFd,
    script: &str,
    map: Vec<(String, i32)>,
    share: bool,
    listeners: &'a [Listener],
) -> Launch<'a> {
    Launch {
        argv: vec![node_bin(), app(script).into()],
        listeners,
        node: Some((memfd, map, share)),
        env: vec![],
        uid: None,
        wrap: vec![],
    }
}

/// Loads `addr` until `n` requests were sent and every instance answered; no failure allowed.
fn serve_from_all(addr: SocketAddr, insts: &[Inst], n: u64) -> BTreeMap<i32, u64> {
    let load = Load::start(addr, 4, 20_000, secs(12.0));
    let want: Vec<i32> = insts.iter().map(|i| i.pid).collect();
    load.until_all_answer(n, &want);
    let (pids, failures) = load.finish();
    assert_no_failures(&failures, insts);
    pids
}

fn assert_no_failures(failures: &[String], insts: &[Inst]) {
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        insts.first().map(Inst::output).unwrap_or_default()
    );
}

fn loopback_listener() -> (Vec<Listener>, SocketAddr) {
    let ls = listen::bind_all(&[ListenAddr::Tcp {
        addr: "127.0.0.1:0".parse().unwrap(),
    }])
    .unwrap();
    let addr = ls[0].local_addr().unwrap();
    (ls, addr)
}

/// The app calls listen(3000); pmi's socket is fd 3.
fn map3000() -> Vec<(String, i32)> {
    vec![("3000".to_string(), 3)]
}

/// `count` instances of the http app on `ls`, each past its 'ready' and 'listening' messages.
fn http_instances(
    rt: &tokio::runtime::Runtime,
    memfd: &OwnedFd,
    ls: &[Listener],
    count: usize,
) -> Vec<Inst> {
    let mut insts: Vec<Inst> = (0..count)
        .map(|_| {
            let mut l = node_launch(memfd, "http_app.js", map3000(), false, ls);
            l.env
                .push(("NODE_OPTIONS".into(), app_node_options().into()));
            start(rt, l)
        })
        .collect();
    for i in &mut insts {
        let mut got = vec![i.event(rt, secs(20.0)), i.event(rt, secs(20.0))];
        got.sort_by_key(|e| format!("{e:?}"));
        let want = [Event::Listening { port: Some(3000) }, Event::Ready];
        assert_eq!(got, want, "{}", i.output());
    }
    insts
}

/// The app's own NODE_OPTIONS (a preload of its own).
fn app_node_options() -> String {
    format!("--require {}", app("mark_preload.js").display())
}

/// What the app sees of itself and what its own children inherit.
fn check_app_view(addr: SocketAddr) {
    // Its own main module, pmi's address, a command line without the preload.
    let info: serde_json::Value = serde_json::from_str(&get(addr, "/info").unwrap()).unwrap();
    assert_eq!(info["main"], true, "{info}");
    assert_eq!(
        info["argv"],
        serde_json::json!([app("http_app.js")]),
        "{info}"
    );
    assert_eq!(info["execArgv"], serde_json::json!([]), "{info}");
    assert_eq!(info["address"]["port"], addr.port(), "{info}");
    // Its own NODE_OPTIONS still apply, untouched.
    assert_eq!(info["preload"], true, "{info}");
    assert_eq!(info["nodeOptions"], app_node_options(), "{info}");
    // None of pmi's fds or variables reach the app's children (`ls -l /proc/self/fd` there).
    let child = get(addr, "/child").unwrap();
    let mut lines = child.lines();
    // (fds the test process itself inherited reach every child, pmi or not)
    let inherited = pmi::os::spawn::inheritable_fds();
    let leaked: Vec<&str> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .filter(|kv| !kv.contains("->/proc/")) // ls's own directory
        .filter_map(|kv| kv.split("->").next())
        .filter(|f| !["0", "1", "2"].contains(f))
        .filter(|f| !inherited.contains(&f.parse::<i32>().unwrap_or(-1)))
        .collect();
    assert!(
        leaked.is_empty(),
        "the app's child holds {leaked:?}: {child}"
    );
    // LISTEN_PID stays (it names the app, not the child); the channel and the map are gone.
    let env = lines.next().unwrap();
    assert!(env.contains(" NC= PM="), "{child}");
}

#[test]
fn node_instances_share_one_socket_and_get_pm2_messages() {
    let rt = rt();
    let memfd = shim::memfd().unwrap();
    let (ls, addr) = loopback_listener();
    let mut insts = http_instances(&rt, &memfd, &ls, 3);
    let pids = serve_from_all(addr, &insts, 400);
    let version = std::process::Command::new(node_bin())
        .arg("--version")
        .output()
        .unwrap();
    eprintln!(
        "node {}: 3 instances, one socket: {pids:?}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    check_app_view(addr);

    // pm2's 'shutdown' message reaches process.on('message'); the channel then closes.
    let w = insts[0].writer.clone().unwrap();
    rt.block_on(w.send_shutdown()).unwrap();
    assert_eq!(insts[0].event(&rt, secs(10.0)), Event::Closed);
    let status = insts[0].wait_exit(secs(10.0));
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    wait_until("the app says why it stops", secs(10.0), || {
        insts[0].output().contains("stopping: shutdown message")
    });
    // The others still serve on the same socket.
    serve_from_all(addr, &insts[1..], 100);
}

#[test]
fn a_rolling_replacement_under_load_loses_no_request() {
    let rt = rt();
    let memfd = shim::memfd().unwrap();
    let (ls, addr) = loopback_listener();
    let mut insts = http_instances(&rt, &memfd, &ls, 2);
    // Start new, wait for its Listening, SIGTERM the old one, for each instance, twice.
    let load = Load::start(addr, 4, 100_000, secs(60.0));
    let mut new_pids = Vec::new();
    for round in 0..2 {
        for slot in insts.iter_mut() {
            load.until_all_answer(50 * (round + 1), &[slot.pid]);
            let mut fresh = start(
                &rt,
                node_launch(&memfd, "http_app.js", map3000(), false, &ls),
            );
            while fresh.event(&rt, secs(20.0)) != (Event::Listening { port: Some(3000) }) {}
            new_pids.push(fresh.pid);
            let mut old = std::mem::replace(slot, fresh);
            let status = old.term();
            let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            assert!(clean, "{}", old.output());
        }
    }
    let last: Vec<i32> = insts.iter().map(|i| i.pid).collect();
    let before = load.sent();
    load.until_all_answer(before + 100, &last);
    let (pids, failures) = load.finish();
    assert_no_failures(&failures, &insts);
    let total: u64 = pids.values().sum();
    eprintln!("rolling replacement: {total} requests, 0 failed, by pid {pids:?}");
    assert!(new_pids.iter().all(|p| pids.contains_key(p)), "{pids:?}");
}

#[test]
fn an_esm_net_app_as_nobody_on_a_read_only_root_gets_the_socket() {
    let rt = rt();
    let memfd = shim::memfd().unwrap();
    let (ls, addr) = loopback_listener();
    // A copy of the app that nobody may read (the test's temp dirs are private).
    let dir = tempfile::tempdir().unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(dir.path(), mode).unwrap();
    let script = dir.path().join("net_app.mjs");
    std::fs::copy(app("net_app.mjs"), &script).unwrap();
    let mut l = node_launch(&memfd, "net_app.mjs", vec![("4000".into(), 3)], false, &ls);
    l.argv[1] = script.into();
    l.env.push(("APP_PORT".into(), "4000".into()));
    // In a mount namespace of its own, `/` read-only, then uid/gid 65534; each step execs, so
    // the pid (and LISTEN_PID) is the one pmi spawned.
    let ro = "mount --make-rprivate / && mount -o remount,bind,ro / && \
              exec setpriv --reuid 65534 --regid 65534 --clear-groups \"$@\"";
    l.wrap = ["unshare", "--mount", "sh", "-c", ro, "sh"]
        .map(OsString::from)
        .to_vec();
    let mut inst = start(&rt, l);
    let listening = inst.event(&rt, secs(20.0));
    assert_eq!(
        listening,
        Event::Listening { port: Some(4000) },
        "{}",
        inst.output()
    );
    assert_eq!(get_pid(addr, "/").unwrap(), inst.pid);
    let status = std::fs::read_to_string(format!("/proc/{}/status", inst.pid)).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains("65534"), "{uid}");
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", inst.pid)).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap();
    assert!(
        root.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{root}"
    );
    inst.term();
}

#[test]
fn without_listen_the_port_is_bound_on_demand_and_shared() {
    let rt = rt();
    let memfd = shim::memfd().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut shared = SharedPorts::new();
    let mut insts = Vec::new();
    for _ in 0..2 {
        let mut l = node_launch(&memfd, "net_app.mjs", vec![], true, &[]);
        l.env.push(("APP_PORT".into(), port.to_string().into()));
        let mut inst = start(&rt, l);
        // The preload asks; pmi binds once and answers with the socket.
        assert_eq!(
            inst.event(&rt, secs(20.0)),
            Event::Bind { port },
            "{}",
            inst.output()
        );
        let fd = shared.get_or_bind(port).unwrap();
        rt.block_on(inst.writer.as_ref().unwrap().send_socket(port, fd))
            .unwrap();
        assert_eq!(
            inst.event(&rt, secs(20.0)),
            Event::Listening { port: Some(port) },
            "{}",
            inst.output()
        );
        insts.push(inst);
    }
    assert_eq!(shared.ports().collect::<Vec<_>>(), [port]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    serve_from_all(addr, &insts, 200);
    // A refused bind becomes the server's 'error' (the app crashes as it would on EADDRINUSE).
    let mut l = node_launch(&memfd, "net_app.mjs", vec![], true, &[]);
    l.env.push(("APP_PORT".into(), "81".into()));
    let mut inst = start(&rt, l);
    assert_eq!(inst.event(&rt, secs(20.0)), Event::Bind { port: 81 });
    rt.block_on(
        inst.writer
            .as_ref()
            .unwrap()
            .send_socket_error(81, "EACCES", "permission denied"),
    )
    .unwrap();
    let status = inst.wait_exit(secs(10.0));
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0);
    // (Its output drains on another thread.)
    wait_until("the app reports EACCES", secs(10.0), || {
        inst.output().contains("listen EACCES")
    });
    for mut i in insts {
        i.term();
    }
}

#[test]
fn https_and_unix_path_servers_are_mapped_too() {
    let rt = rt();
    let memfd = shim::memfd().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let ls = listen::bind_all(&[
        ListenAddr::Tcp {
            addr: "127.0.0.1:0".parse().unwrap(),
        },
        ListenAddr::Unix { path: sock.clone() },
    ])
    .unwrap();
    let map = vec![("3000".to_string(), 3), (shim::map_key(&ls[1].addr), 4)];
    let mut l = node_launch(&memfd, "https_unix_app.js", map, false, &ls);
    l.env.push(("APP_SOCK".into(), sock.clone().into()));
    let mut inst = start(&rt, l);
    let mut got = vec![inst.event(&rt, secs(20.0)), inst.event(&rt, secs(20.0))];
    got.sort_by_key(|e| format!("{e:?}"));
    let want = [
        Event::Listening { port: None },
        Event::Listening { port: Some(3000) },
    ];
    assert_eq!(got, want, "{}", inst.output());
    // The Unix server answers on pmi's socket file; the https server accepts on pmi's port.
    let mut reply = String::new();
    std::os::unix::net::UnixStream::connect(&sock)
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    assert_eq!(reply, format!("pid {}\n", inst.pid));
    let addr = ls[0].local_addr().unwrap();
    let mut tls = TcpStream::connect(addr).unwrap();
    // A TLS ClientHello start: the server answers (an alert: it has no certificate) or closes.
    tls.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])
        .unwrap();
    tls.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tls.read(&mut buf).is_ok(),
        "the https server handled the connection"
    );
    inst.term();
}

#[test]
fn a_python_app_serves_from_listen_fds() {
    let rt = rt();
    let (ls, addr) = loopback_listener();
    let mut insts: Vec<Inst> = (0..2)
        .map(|_| {
            start(
                &rt,
                Launch {
                    argv: vec!["python3".into(), app("listen_fds.py").into()],
                    listeners: &ls,
                    node: None,
                    env: vec![],
                    uid: None,
                    wrap: vec![],
                },
            )
        })
        .collect();
    let pids = serve_from_all(addr, &insts, 400);
    eprintln!("python, LISTEN_FDS: {pids:?}");
    for i in &mut insts {
        i.term();
    }
}
