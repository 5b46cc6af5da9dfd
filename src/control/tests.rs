//! In-process tests of server and client against a fake supervisor on a temp socket.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::client::{request, ClientError, Connection};
use super::proto::{self, ErrorKind, Request, Response, MAX_FRAME, PROTOCOL_VERSION};
use super::server::{bind, serve, MAX_CONNECTIONS};
use crate::api::Handle;
use crate::api::{Brief, ControlMsg, Op, OpError, Target};
use crate::report::view::tests::{inst, snap};
use crate::status::{Snapshot, Status};

/// A server on a temp socket, backed by a fake supervisor that records ops and answers them.
struct Fake {
    path: PathBuf,
    ops: Arc<Mutex<Vec<Op>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fake_snapshot() -> Snapshot {
    snap(
        vec![
            inst(0, "api", 0, Status::Online),
            inst(1, "api", 1, Status::Online),
            inst(2, "worker", 0, Status::Stopped),
        ],
        &[("api", true), ("worker", true)],
    )
}

fn reply_to(op: &Op, next_pid: &mut u32) -> Result<Vec<Brief>, OpError> {
    let brief = |id: u32, pid: Option<u32>, status| Brief {
        id,
        name: "api".into(),
        instance: id,
        pid,
        status,
    };
    *next_pid += 1;
    match op {
        Op::Restart(Target::Id(id)) | Op::Reload(Target::Id(id)) | Op::Start(Target::Id(id)) => {
            Ok(vec![brief(*id, Some(*next_pid), Status::Online)])
        }
        Op::Restart(_) | Op::Start(_) => Ok(vec![brief(0, Some(*next_pid), Status::Online)]),
        Op::Reload(_) => Ok(vec![
            brief(3, Some(*next_pid), Status::Online),
            brief(4, Some(*next_pid + 1), Status::Online),
        ]),
        Op::Stop(_) => Ok(vec![brief(0, None, Status::Stopped)]),
        Op::Scale { app, .. } if app != "api" => Err(OpError::UnknownApp(app.clone())),
        Op::Scale { .. } | Op::Signal { .. } => Ok(Vec::new()),
    }
}

fn start() -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("pmi.sock");
    let ops = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (p, o) = (path.clone(), ops.clone());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = bind(Some(&p), None).unwrap();
            let (_snap_tx, snap_rx) = watch::channel(Arc::new(fake_snapshot()));
            let (inbox, mut rx) = mpsc::channel::<ControlMsg>(64);
            let handle = Handle {
                snapshot: snap_rx,
                inbox,
                logs: crate::logs::LogHub::new(crate::config::LogFormat::Raw),
                apply: mpsc::channel(1).0,
            };
            tokio::spawn(async move {
                let mut pid = 5000;
                while let Some(msg) = rx.recv().await {
                    let r = reply_to(&msg.op, &mut pid);
                    o.lock().unwrap().push(msg.op);
                    let _ = msg.reply.send(r);
                }
            });
            ready_tx.send(()).unwrap();
            tokio::select! {
                _ = serve(listener, handle) => {}
                _ = stop_rx => {}
            }
        });
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Fake {
        path,
        ops,
        stop: Some(stop_tx),
        thread: Some(thread),
        _dir: dir,
    }
}

fn raw(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hello(s: &mut UnixStream) {
    proto::write_frame(
        s,
        &Request::Hello {
            version: PROTOCOL_VERSION,
        },
    )
    .unwrap();
    assert!(matches!(
        proto::read_frame::<_, Response>(s).unwrap(),
        Response::Hello { .. }
    ));
}

fn error_kind(s: &mut UnixStream) -> ErrorKind {
    match proto::read_frame::<_, Response>(s).unwrap() {
        Response::Error(e) => e.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// After an error reply the server closes: the next read sees end of file.
fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn status_ok(path: &Path) -> bool {
    matches!(
        request(path, &Request::Status { target: None }),
        Ok(Response::Status(_))
    )
}

#[test]
fn modes_reads_and_several_requests_per_connection() {
    let f = start();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.path), 0o600);
    assert_eq!(mode(f.path.parent().unwrap()), 0o700);

    let Response::Status(r) = request(&f.path, &Request::Status { target: None }).unwrap() else {
        panic!()
    };
    assert_eq!(r.instances.len(), 3);
    assert_eq!(r.pmi.version, "0.1.0");

    let req = Request::Health { ready: true };
    let mut c = Connection::open(&f.path, &req).unwrap();
    assert_eq!(
        c.answer(&req).unwrap(),
        Response::Health {
            ok: false,
            reason: Some("worker:0 (id 2) is stopped, not online".into())
        }
    );
    let Response::Describe { apps } = c
        .call(&Request::Describe {
            target: "api".into(),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(apps[0].instances.len(), 2);
    let json = serde_json::to_string(&apps).unwrap();
    assert!(json.contains("SECRET_KEY") || json.contains("env_keys"));
    match c.call(&Request::Status {
        target: Some("nope".into()),
    }) {
        Err(ClientError::Reply(e)) => {
            assert_eq!(e.kind, ErrorKind::UnknownTarget);
            assert!(e.message.contains("api, worker"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    // The connection survives a failed request.
    assert!(matches!(
        c.call(&Request::Health { ready: false }).unwrap(),
        Response::Health { ok: true, .. }
    ));
}

#[test]
fn mutations_go_to_the_supervisor_and_reload_is_one_op() {
    let f = start();
    let r = request(
        &f.path,
        &Request::Restart {
            target: "api:1".into(),
        },
    )
    .unwrap();
    assert!(matches!(r, Response::Done { ref instances } if instances[0].pid.is_some()));
    let r = request(
        &f.path,
        &Request::Reload {
            target: "api".into(),
        },
    )
    .unwrap();
    let Response::Done { instances } = r else {
        panic!()
    };
    assert_eq!(instances.len(), 2);
    // An unknown target never reaches the supervisor; a supervisor error comes back typed.
    let e = request(
        &f.path,
        &Request::Stop {
            target: "ghost".into(),
        },
    )
    .unwrap_err();
    assert!(matches!(e, ClientError::Reply(ref r) if r.kind == ErrorKind::UnknownTarget));
    let e = request(
        &f.path,
        &Request::Scale {
            app: "ghost".into(),
            count: crate::api::ScaleCount::Add(1),
        },
    )
    .unwrap_err();
    assert!(matches!(e, ClientError::Reply(ref r) if r.kind == ErrorKind::UnknownTarget));
    let e = request(
        &f.path,
        &Request::Signal {
            signal: "NOPE".into(),
            target: "api".into(),
        },
    )
    .unwrap_err();
    assert!(matches!(e, ClientError::Reply(ref r) if r.kind == ErrorKind::BadRequest));
    let ops = f.ops.lock().unwrap().clone();
    assert_eq!(
        ops,
        vec![
            Op::Restart(Target::Instance("api".into(), 1)),
            Op::Reload(Target::Name("api".into())),
            Op::Scale {
                app: "ghost".into(),
                count: crate::api::ScaleCount::Add(1)
            },
        ]
    );
}

#[test]
fn version_mismatch_and_missing_hello_are_refused() {
    let f = start();
    let mut s = raw(&f.path);
    proto::write_frame(&mut s, &Request::Hello { version: 99 }).unwrap();
    match proto::read_frame::<_, Response>(&mut s).unwrap() {
        Response::Error(e) => {
            assert_eq!(e.kind, ErrorKind::VersionMismatch);
            assert!(e.message.contains("version 1") && e.message.contains("version 99"));
        }
        other => panic!("{other:?}"),
    }
    assert!(closed(&mut s));
    let mut s = raw(&f.path);
    proto::write_frame(&mut s, &Request::Health { ready: false }).unwrap();
    assert_eq!(error_kind(&mut s), ErrorKind::BadRequest);
    assert!(closed(&mut s));
}

#[test]
fn hostile_input_gets_an_error_or_a_close_and_the_server_keeps_serving() {
    let f = start();
    let started = Instant::now();
    // Silent clients, before and after the hello, and a half-sent frame: dropped after 5 s.
    let mut silent = raw(&f.path);
    let mut idle = raw(&f.path);
    hello(&mut idle);
    let mut half = raw(&f.path);
    half.write_all(&100u32.to_be_bytes()).unwrap();
    half.write_all(b"{\"type\":").unwrap();

    // An HTTP request: "GET " read as a length is far over the cap.
    let mut s = raw(&f.path);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(error_kind(&mut s), ErrorKind::FrameTooLarge);
    assert!(closed(&mut s));
    // Oversized after the hello.
    let mut s = raw(&f.path);
    hello(&mut s);
    s.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
        .unwrap();
    assert_eq!(error_kind(&mut s), ErrorKind::FrameTooLarge);
    // Garbage JSON, and JSON that is no request.
    for body in [&b"\x00\xff garbage"[..], br#"{"type":"rm","path":"/"}"#] {
        let mut s = raw(&f.path);
        hello(&mut s);
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(body).unwrap();
        assert_eq!(error_kind(&mut s), ErrorKind::BadRequest);
        assert!(closed(&mut s));
    }
    // Disconnect in the middle of a request.
    for _ in 0..20 {
        let mut s = raw(&f.path);
        hello(&mut s);
        s.write_all(&50u32.to_be_bytes()).unwrap();
        s.write_all(b"{\"ty").unwrap();
        drop(s);
    }
    assert!(status_ok(&f.path));

    assert_eq!(error_kind(&mut silent), ErrorKind::Timeout);
    assert_eq!(error_kind(&mut idle), ErrorKind::Timeout);
    assert_eq!(error_kind(&mut half), ErrorKind::Timeout);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(9),
        "{waited:?}"
    );
    assert!(status_ok(&f.path));
    assert!(
        f.ops.lock().unwrap().is_empty(),
        "hostile input reached the supervisor"
    );
}

#[test]
fn connections_are_capped_and_200_concurrent_clients_are_answered_or_told_busy() {
    let f = start();
    // Fill every slot with an idle (but polite) client: a new request takes the slot of the one
    // idle longest, which is told so and closed.
    let mut held: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut s = raw(&f.path);
            hello(&mut s);
            s
        })
        .collect();
    match request(&f.path, &Request::Health { ready: false }) {
        Ok(Response::Health { ok: true, .. }) => {}
        other => panic!("expected an answer, got {other:?}"),
    }
    assert_eq!(error_kind(&mut held[0]), ErrorKind::Busy);
    held.clear();
    // Slots come back once their connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !status_ok(&f.path) {
        assert!(Instant::now() < deadline, "slots were not released");
        std::thread::sleep(Duration::from_millis(10));
    }
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let p = f.path.clone();
            std::thread::spawn(move || request(&p, &Request::Status { target: None }))
        })
        .collect();
    let (mut ok, mut busy, mut late) = (0, 0, 0);
    for t in threads {
        match t.join().unwrap() {
            Ok(Response::Status(_)) => ok += 1,
            Err(ClientError::Reply(e)) if e.kind == ErrorKind::Busy => busy += 1,
            // On a loaded machine a client may give up after its 1 s reach time-out: that is
            // the client's verdict, not a failure of the server.
            Err(ClientError::Unreachable(_)) => late += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok + busy + late, 200);
    assert!(ok > 0, "ok {ok} busy {busy} late {late}");
    assert!(status_ok(&f.path), "pmi keeps serving after the burst");
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
    let f = start();
    let e = bind(Some(&f.path), None).unwrap_err();
    assert!(e.contains("another pmi is running"), "{e}");
    assert!(status_ok(&f.path));

    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("pmi.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let l = bind(Some(&stale), None).unwrap();
    assert_eq!(l.path(), stale);
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "x").unwrap();
    assert!(bind(Some(&file), None)
        .unwrap_err()
        .contains("not a socket"));
    assert!(bind(Some(&stale), Some("no-such-group-xyz")).is_err());
}
