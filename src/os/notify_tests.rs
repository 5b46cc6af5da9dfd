//! Real sockets: a python3 sd_notify sender (socket module only), floods, garbage, the path
//! form, and pmi's own upward messages.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique() -> Addr {
    Addr::Abstract(format!(
        "pmi-test/{}/{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What python's sdnotify and libsystemd do: `@` means the abstract namespace.
const PY_SENDER: &str = r#"
import os, socket, sys
a = os.environ["NOTIFY_SOCKET"]
if a.startswith("@"):
    a = "\0" + a[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(a)
for m in sys.argv[1:]:
    s.send(m.encode())
"#;

fn python(addr: &Addr, msgs: &[&str]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(PY_SENDER)
        .args(msgs)
        .env("NOTIFY_SOCKET", addr.env_value())
        .process_group(0)
        .spawn()
        .expect("python3 is installed")
}

async fn recv_until(s: &mut NotifySocket, want: impl Fn(&Notice) -> bool) -> Notice {
    let mut all = Notice::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !want(&all) {
        let n = tokio::time::timeout_at(deadline, s.recv())
            .await
            .expect("datagrams within 20 s")
            .unwrap();
        all.ready |= n.ready;
        all.watchdog |= n.watchdog;
        all.stopping |= n.stopping;
        all.status = n.status.or(all.status);
        all.mainpid = n.mainpid.or(all.mainpid);
        all.accepted += n.accepted;
        all.garbage += n.garbage;
    }
    all
}

#[test]
fn datagrams_are_parsed() {
    let mut n = Notice::default();
    n.add_datagram(b"READY=1\nSTATUS=listening on 8080\nMAINPID=42\nX_CUSTOM=1");
    n.add_datagram(b"WATCHDOG=1");
    n.add_datagram(b"WATCHDOG_USEC=2000000\n");
    assert!(n.ready && n.watchdog && !n.stopping && !n.watchdog_trigger);
    assert_eq!(n.status.as_deref(), Some("listening on 8080"));
    assert_eq!((n.mainpid, n.watchdog_usec), (Some(42), Some(2_000_000)));
    assert_eq!((n.accepted, n.garbage), (3, 0));
    for bad in [
        &b"hello"[..],
        b"\xff\xfe",
        b"",
        b"\n\n",
        b"READY=1\nnonsense",
    ] {
        let mut g = Notice::default();
        g.add_datagram(bad);
        assert_eq!(g.garbage, 1, "{bad:?}");
    }
    let mut s = Notice::default();
    s.add_datagram(format!("STATUS={}", "é".repeat(500)).as_bytes());
    assert!(s.status.unwrap().len() <= MAX_STATUS);
    let mut t = Notice::default();
    t.add_datagram(b"STOPPING=1\nWATCHDOG=trigger\nMAINPID=-3");
    assert!(t.stopping && t.watchdog_trigger && t.mainpid.is_none());
}

#[test]
fn python_sender_on_the_abstract_socket() {
    rt().block_on(async {
        let mut s = NotifySocket::bind(unique()).unwrap();
        let mut child = python(s.addr(), &["STATUS=migrating", "READY=1\nSTATUS=up"]);
        s.set_expected_pgid(Some(child.id() as i32));
        let n = recv_until(&mut s, |n| n.ready && n.accepted >= 2).await;
        assert_eq!(n.status.as_deref(), Some("up"));
        assert_eq!(n.garbage, 0);
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn a_foreign_sender_is_counted_and_ignored() {
    rt().block_on(async {
        let mut s = NotifySocket::bind(unique()).unwrap();
        // Expect a group this test process is not in.
        let mut child = python(s.addr(), &["READY=1"]);
        s.set_expected_pgid(Some(child.id() as i32));
        let me = StdDatagram::unbound().unwrap();
        me.send_to_addr(b"READY=1", &s.addr().to_std().unwrap())
            .unwrap();
        let n = recv_until(&mut s, |n| n.accepted + n.garbage >= 2).await;
        assert_eq!((n.accepted, n.garbage), (1, 1), "{n:?}");
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn a_flood_is_drained_in_bounded_batches() {
    rt().block_on(async {
        let mut s = NotifySocket::bind(unique()).unwrap();
        let to = s.addr().to_std().unwrap();
        const SENT: u32 = 5000;
        let sender = std::thread::spawn(move || {
            let me = StdDatagram::unbound().unwrap();
            me.set_nonblocking(true).unwrap();
            let big = vec![b'x'; MAX_DATAGRAM * 2];
            let mut refused = 0u32;
            for i in 0..SENT {
                let msg = match i % 3 {
                    0 => format!("STATUS=n{i}").into_bytes(),
                    1 => b"\xff garbage".to_vec(),
                    _ => big.clone(),
                };
                // A full queue refuses: the sender loses it, pmi is never blocked by it.
                if me.send_to_addr(&msg, &to).is_err() {
                    refused += 1;
                }
            }
            me.send_to_addr(b"STATUS=last", &to).unwrap_or_else(|_| {
                std::thread::sleep(Duration::from_millis(50));
                me.set_nonblocking(false).unwrap();
                me.send_to_addr(b"STATUS=last", &to).unwrap()
            });
            refused
        });
        let mut seen = 0u32;
        let mut accepted = 0u32;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let n = tokio::time::timeout_at(deadline, s.recv())
                .await
                .expect("drained within 30 s")
                .unwrap();
            assert!(n.accepted + n.garbage <= BATCH as u32, "{n:?}");
            seen += n.accepted + n.garbage;
            accepted += n.accepted;
            if n.status.as_deref() == Some("last") {
                break;
            }
        }
        let refused = sender.join().unwrap();
        assert_eq!(seen + refused, SENT + 1, "every datagram counted once");
        // Two thirds were garbage (bad UTF-8, oversized): only STATUS lines were accepted.
        assert!(accepted <= SENT / 3 + 2, "{accepted}");
    });
}

#[test]
fn path_form_socket_is_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.sock");
    rt().block_on(async {
        let mut s = NotifySocket::bind(Addr::Path(path.clone())).unwrap();
        assert_eq!(s.addr().env_value(), path.display().to_string());
        let mut child = python(s.addr(), &["READY=1"]);
        s.set_expected_pgid(Some(child.id() as i32));
        let n = recv_until(&mut s, |n| n.ready).await;
        assert_eq!(n.accepted, 1);
        assert!(child.wait().unwrap().success());
    });
    assert!(!path.exists());
}

#[test]
fn upward_messages_reach_a_socket_the_test_binds() {
    let addr = unique();
    let rx = StdDatagram::bind_addr(&addr.to_std().unwrap()).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let env = addr.env_value();
    let up = Upward::to(&Addr::parse(&env).unwrap()).unwrap();
    up.ready("3 apps\nready").unwrap();
    up.stopping().unwrap();
    let mut buf = [0u8; 512];
    let n = rx.recv(&mut buf).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert_eq!(
        text,
        format!(
            "READY=1\nSTATUS=3 apps ready\nMAINPID={}",
            std::process::id()
        )
    );
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=stopping");
    assert_eq!(Addr::parse("relative"), None);
    assert_eq!(Addr::parse("@"), None);
}

#[test]
fn instance_variables() {
    let a = Addr::Abstract("pmi/1/2".into());
    assert_eq!(
        instance_vars(&a, Some(Duration::from_secs(5)), Some(77)),
        [
            ("NOTIFY_SOCKET".to_string(), "@pmi/1/2".to_string()),
            ("WATCHDOG_USEC".to_string(), "5000000".to_string()),
            ("WATCHDOG_PID".to_string(), "77".to_string()),
        ]
    );
    assert_eq!(instance_vars(&a, None, None).len(), 1);
}
