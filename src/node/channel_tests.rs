use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream as StdStream;
use std::time::Duration;

use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// pmi's reader/writer and the child's end as a plain std socket.
fn pair() -> (Reader, Writer, StdStream) {
    let (ours, theirs) = socketpair().unwrap();
    let (r, w) = open(ours).unwrap();
    (r, w, StdStream::from(theirs))
}

async fn next(r: &mut Reader) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(10), r.next())
        .await
        .expect("an event within 10 s")
}

#[test]
fn messages_are_classified_and_counted() {
    rt().block_on(async {
        let (mut r, _w, mut child) = pair();
        child
            .write_all(
                b"{\"cmd\":\"NODE_HANDLE_ACK\"}\nnot json\n{\"type\":\"metric\",\"v\":1}\n\
                  \"ready\"\n\"ready\"\n{\"pmi\":\"listening\",\"port\":3000}\n\
                  {\"pmi\":\"listening\",\"port\":3000}\n{\"pmi\":\"bind\",\"port\":8080}\n\
                  {\"pmi\":\"bind\",\"port\":99999}\n{broken\n42\n",
            )
            .unwrap();
        drop(child);
        let mut got = Vec::new();
        while let Some(e) = next(&mut r).await {
            got.push(e);
        }
        assert_eq!(
            got,
            [
                Event::Ready,
                Event::Listening { port: Some(3000) },
                Event::Bind { port: 8080 },
                Event::Closed
            ]
        );
        let s = r.stats();
        assert_eq!(s.lines, 11);
        assert_eq!(s.internal, 1);
        assert_eq!(s.garbage, 2, "{s:?}");
        // the metric, the second ready, the repeated listening, the bad port, 42
        assert_eq!(s.other, 5, "{s:?}");
    });
}

#[test]
fn a_10_mb_line_is_discarded_and_the_next_message_arrives() {
    rt().block_on(async {
        let (mut r, _w, mut child) = pair();
        r.set_budget(256 * 1024 * 1024);
        let t = std::thread::spawn(move || {
            let big = vec![b'x'; 10 * 1024 * 1024];
            child.write_all(b"{\"a\":\"").unwrap();
            child.write_all(&big).unwrap();
            child.write_all(b"\"}\n\"ready\"\n").unwrap();
            child
        });
        let start = std::time::Instant::now();
        assert_eq!(next(&mut r).await, Some(Event::Ready));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(r.stats().oversized, 1);
        assert!(r.line.capacity() <= MAX_LINE, "memory stays bounded");
        drop(t.join().unwrap());
        assert_eq!(next(&mut r).await, Some(Event::Closed));
    });
}

#[test]
fn an_endless_flood_neither_blocks_nor_bloats_pmi() {
    rt().block_on(async {
        let (mut r, _w, mut child) = pair();
        r.set_budget(1024 * 1024);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            let junk = "{\"type\":\"metric\",\"v\":1}\n\"ready\"\nno\n".repeat(1000);
            let mut sent = 0usize;
            // Non-stop writes; the socket fills and the writer blocks, like a busy app.
            child
                .set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = child.write(junk.as_bytes()) {
                    sent += n;
                }
            }
            (child, sent)
        });
        // The supervisor's other work (here: a 10 ms ticker) keeps running during the flood.
        let reader = async {
            let mut events = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
            while let Ok(Some(e)) = tokio::time::timeout_at(deadline, r.next()).await {
                events.push(e);
            }
            events
        };
        let ticker = async {
            let mut worst = Duration::ZERO;
            let mut last = tokio::time::Instant::now();
            let mut ticks = 0;
            let mut iv = tokio::time::interval(Duration::from_millis(10));
            while ticks < 200 {
                iv.tick().await;
                let now = tokio::time::Instant::now();
                worst = worst.max(now - last);
                last = now;
                ticks += 1;
            }
            worst
        };
        let (events, worst) = tokio::join!(reader, ticker);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (_child, sent) = t.join().unwrap();
        assert_eq!(events, [Event::Ready], "one Ready, however many are sent");
        let s = r.stats().clone();
        assert!(s.throttled >= 1, "{s:?}");
        assert!(s.lines > 1000 && s.other > 0 && s.garbage > 0, "{s:?}");
        // ~1 MiB/s for ~2.5 s: well under what the app tried to send.
        let read_bytes = s.lines * 25;
        assert!(read_bytes < 8 * 1024 * 1024, "{s:?}, sent {sent}");
        assert!(
            worst < Duration::from_millis(500),
            "ticker starved: {worst:?}"
        );
        assert!(r.line.capacity() <= MAX_LINE);
    });
}

#[test]
fn shutdown_and_sockets_reach_the_child() {
    rt().block_on(async {
        let (_r, w, mut child) = pair();
        w.send_shutdown().await.unwrap();
        let mut buf = [0u8; 11];
        child.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"\"shutdown\"\n");

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        w.send_socket(3000, l.as_fd()).await.unwrap();
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut data = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut data)];
        let msg = nix::sys::socket::recvmsg::<()>(
            child.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut got_fd = None;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                got_fd = fds.first().copied();
            }
        }
        let n = msg.bytes;
        let text = String::from_utf8_lossy(&data[..n]).into_owned();
        assert_eq!(
            text,
            "{\"cmd\":\"NODE_HANDLE\",\"msg\":{\"cmd\":\"NODE_PMI_SOCKET\",\"port\":3000},\"type\":\"net.Native\"}\n"
        );
        let got = unsafe { OwnedFd::from_raw_fd(got_fd.expect("an fd in SCM_RIGHTS")) };
        let ino = |f: &dyn AsRawFd| {
            std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd()))
                .unwrap()
                .ino()
        };
        assert_eq!(ino(&got), ino(&l), "the same socket");

        w.send_socket_error(80, "EACCES", "permission denied").await.unwrap();
        let mut line = String::new();
        let mut b = [0u8; 1];
        while b[0] != b'\n' {
            child.read_exact(&mut b).unwrap();
            line.push(b[0] as char);
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["cmd"], "NODE_PMI_SOCKET");
        assert_eq!(v["code"], "EACCES");
    });
}

#[test]
fn a_child_that_never_reads_times_the_writer_out() {
    rt().block_on(async {
        let (_r, w, _child) = pair();
        let start = std::time::Instant::now();
        let big = serde_json::Value::String("x".repeat(MAX_LINE));
        let mut err = None;
        for _ in 0..200 {
            if let Err(e) = w.send_json(&big).await {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("the kernel buffer fills");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() < SEND_TIMEOUT * 3);
    });
}

#[test]
fn child_env_forces_json() {
    let env = child_env(4);
    assert!(env.contains(&("NODE_CHANNEL_FD".into(), "4".into())));
    assert!(env.contains(&("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into())));
}
