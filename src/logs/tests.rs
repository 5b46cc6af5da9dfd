//! The pipeline end to end: real OS pipes, a current_thread runtime, injected sinks.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("pipe")
}

fn source(app: &str, pm_id: u32, instance: u32, instances: u32) -> LogSource {
    LogSource {
        app: app.into(),
        pm_id,
        instance,
        instances,
        files: LogFiles::default(),
    }
}

/// An in-memory sink whose contents the test can read at any time.
#[derive(Clone, Default)]
struct Mem(Arc<Mutex<Vec<u8>>>);

impl Mem {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that fails every write as a closed pipe does.
struct Broken(Arc<AtomicUsize>);

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `chunks` to the pipe from another thread (the "app"), then closes it.
fn app_writes(w: OwnedFd, chunks: Vec<Vec<u8>>, pause: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = File::from(w);
        for c in chunks {
            f.write_all(&c).expect("app write");
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    })
}

/// Runs one source with the given app output on stdout and stderr; returns (stdout, stderr).
fn run_one(
    format: LogFormat,
    src: LogSource,
    out: Vec<Vec<u8>>,
    err: Vec<Vec<u8>>,
    pause: Duration,
) -> (String, String) {
    let (o, e) = (Mem::default(), Mem::default());
    let hub = LogHub::with_sinks(format, Box::new(o.clone()), Box::new(e.clone()));
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    let apps = [app_writes(ow, out, pause), app_writes(ew, err, pause)];
    runtime().block_on(async {
        hub.attach(src, or, er);
        hub.drain(Duration::from_secs(20)).await;
    });
    for a in apps {
        a.join().expect("app thread");
    }
    (o.text(), e.text())
}

fn chunks(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64, newline_every: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if newline_every > 0 && x % newline_every == 0 {
                b'\n'
            } else {
                x as u8
            }
        })
        .collect()
}

fn temp_sink() -> (File, File) {
    let f = tempfile::tempfile().expect("tempfile");
    let reader = f.try_clone().expect("clone");
    (f, reader)
}

fn read_all(mut f: File) -> Vec<u8> {
    let mut v = Vec::new();
    f.rewind().expect("rewind");
    f.read_to_end(&mut v).expect("read");
    v
}

/// Pushes `data` through a raw hub in uneven writes and returns what reached the sink.
fn raw_roundtrip(data: &[u8]) -> Vec<u8> {
    let (sink, result) = temp_sink();
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(sink), Box::new(io::sink()));
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    drop(ew);
    let mut parts = Vec::new();
    let mut pos = 0;
    let mut step = 1usize;
    while pos < data.len() {
        step = (step * 7919 + 13) % 300_000 + 1;
        let end = (pos + step).min(data.len());
        parts.push(data[pos..end].to_vec());
        pos = end;
    }
    let app = app_writes(ow, parts, Duration::ZERO);
    runtime().block_on(async {
        hub.attach(source("raw", 0, 0, 1), or, er);
        hub.drain(Duration::from_secs(120)).await;
    });
    app.join().expect("app thread");
    read_all(result)
}

#[test]
fn raw_is_byte_exact_for_random_data_and_a_long_unterminated_line() {
    let mut data = noise(3 << 20, 42, 97);
    // 1 MiB without a newline in the middle, and an unterminated tail.
    data.extend(std::iter::repeat_n(b'x', 1 << 20));
    data.extend(noise(100_000, 7, 0));
    data.extend(b"\nend without newline");
    assert_eq!(raw_roundtrip(&data), data);
}

#[test]
fn raw_is_byte_exact_for_50_mb_of_lines() {
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmno\n";
    let mut data = Vec::with_capacity(50 << 20);
    let mut i = 0u64;
    while data.len() < 50 << 20 {
        data.extend_from_slice(i.to_string().as_bytes());
        data.extend_from_slice(line);
        i += 1;
    }
    let back = raw_roundtrip(&data);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "content differs");
}

#[test]
fn streams_stay_apart_and_partial_lines_flush_at_eof() {
    let (out, err) = run_one(
        LogFormat::Raw,
        source("api", 0, 0, 1),
        chunks(&["one\ntw", "o\nthree"]),
        chunks(&["oops\n"]),
        Duration::ZERO,
    );
    assert_eq!(out, "one\ntwo\nthree");
    assert_eq!(err, "oops\n");
}

#[test]
fn prefixed_format() {
    let (out, err) = run_one(
        LogFormat::Prefixed,
        source("web", 4, 1, 2),
        chunks(&["a\nb", "c\n", "tail"]),
        chunks(&["bad\n"]),
        Duration::ZERO,
    );
    assert_eq!(out, "web:1 | a\nweb:1 | bc\nweb:1 | tail\n");
    assert_eq!(err, "web:1 | bad\n");
    let (out, _) = run_one(
        LogFormat::Prefixed,
        source("solo", 0, 0, 1),
        chunks(&["x\n"]),
        vec![],
        Duration::ZERO,
    );
    assert_eq!(out, "solo | x\n");
}

#[test]
fn json_format() {
    let (out, err) = run_one(
        LogFormat::Json,
        source("api", 2, 1, 3),
        chunks(&["hello \"you\"\n", "no end"]),
        chunks(&["e\n"]),
        Duration::ZERO,
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["msg"], "hello \"you\"");
    assert_eq!(lines[0]["app"], "api");
    assert_eq!(lines[0]["instance"], 1);
    assert_eq!(lines[0]["stream"], "out");
    assert!(lines[0].get("partial").is_none());
    assert_eq!(lines[1]["msg"], "no end");
    assert_eq!(lines[1]["partial"], true);
    let ts = lines[0]["ts"].as_str().expect("ts");
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.len() == 24,
        "{ts}"
    );
    let e: serde_json::Value = serde_json::from_str(err.trim_end()).expect("json");
    assert_eq!(e["stream"], "err");
}

#[test]
fn idle_partial_line_is_flushed_without_waiting_for_eof() {
    let o = Mem::default();
    let hub = LogHub::with_sinks(
        LogFormat::Prefixed,
        Box::new(o.clone()),
        Box::new(io::sink()),
    );
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    drop(ew);
    let mut w = File::from(ow);
    runtime().block_on(async {
        hub.attach(source("p", 0, 0, 1), or, er);
        let written = std::time::Instant::now();
        w.write_all(b"prompt> ").expect("write");
        tokio::time::sleep(IDLE_FLUSH / 2).await;
        // Only meaningful while the delay has not passed: a loaded machine may oversleep.
        if written.elapsed() < IDLE_FLUSH {
            assert_eq!(o.text(), "", "flushed before the idle delay");
        }
        tokio::time::sleep(IDLE_FLUSH * 3).await;
        assert_eq!(o.text(), "p | prompt> \n");
        w.write_all(b"yes\n").expect("write");
        drop(w);
        hub.drain(Duration::from_secs(5)).await;
    });
    assert_eq!(o.text(), "p | prompt> \np | yes\n");
}

#[test]
fn raw_idle_flush_adds_nothing_and_dates_only_line_starts() {
    let mut src = source("d", 0, 0, 1);
    src.files.date_format = Some("[T]X".into());
    let (out, _) = run_one(
        LogFormat::Raw,
        src,
        chunks(&["par", "tial\nnext\n"]),
        vec![],
        IDLE_FLUSH * 3,
    );
    // "par" is flushed alone after the idle delay; "tial" continues it without a new date.
    let re_line = |l: &str, want: &str| {
        let (date, text) = l.split_once(": ").expect("dated");
        assert!(
            date.starts_with('T') && date[1..].parse::<u64>().is_ok(),
            "{l}"
        );
        assert_eq!(text, want);
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    re_line(lines[0], "partial");
    re_line(lines[1], "next");
}

#[test]
fn long_lines_are_split() {
    let long = "y".repeat(SPLIT_BYTES + 10);
    let (out, _) = run_one(
        LogFormat::Prefixed,
        source("s", 0, 0, 1),
        vec![format!("{long}\n").into_bytes()],
        vec![],
        Duration::ZERO,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].len(), "s | ".len() + SPLIT_BYTES);
    assert_eq!(lines[1], "s | yyyyyyyyyy");
}

/// A sink that blocks every write until opened.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<(Mutex<bool>, Condvar)>,
    written: Arc<AtomicUsize>,
}

impl Gate {
    fn open(&self) {
        *self.open.0.lock().expect("lock") = true;
        self.open.1.notify_all();
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut open = self.open.0.lock().expect("lock");
        while !*open {
            open = self.open.1.wait(open).expect("wait");
        }
        self.written.fetch_add(buf.len(), Ordering::SeqCst);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn slow_output_stops_the_reader_and_bounds_memory() {
    const TOTAL: usize = 64 << 20;
    let gate = Gate::default();
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(gate.clone()), Box::new(io::sink()));
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    drop(ew);
    let accepted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let app = {
        let (accepted, done) = (accepted.clone(), done.clone());
        std::thread::spawn(move || {
            let mut f = File::from(ow);
            let line = [b'z'; 1023];
            let mut buf = Vec::new();
            while buf.len() < 64 << 10 {
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            }
            let mut sent = 0;
            while sent < TOTAL {
                f.write_all(&buf).expect("app write");
                sent += buf.len();
                accepted.store(sent, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let rt = runtime();
    rt.block_on(async {
        hub.attach(source("bp", 0, 0, 1), or, er);
        // Let the pipeline fill up: the app must get stuck far below TOTAL.
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = accepted.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        let stuck_at = accepted.load(Ordering::SeqCst);
        assert!(!done.load(Ordering::SeqCst));
        // Channel (16 × ≤128 KiB + the writer's batch) + the pipe + a chunk in hand.
        assert!(
            stuck_at < 8 << 20,
            "app could write {stuck_at} bytes into a stuck log"
        );
        gate.open();
        hub.drain(Duration::from_secs(60)).await;
    });
    app.join().expect("app thread");
    assert_eq!(gate.written.load(Ordering::SeqCst), TOTAL);
}

#[test]
fn broken_output_never_panics_and_pipes_keep_draining() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, w) = pipe();
    drop(r);
    // stdout: a failing Write; stderr: a real pipe whose reader is gone (EPIPE).
    let hub = LogHub::with_sinks(
        LogFormat::Json,
        Box::new(Broken(calls.clone())),
        Box::new(FdSink(w)),
    );
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    let data = vec![b"some line of output\n".repeat(50_000)];
    let apps = [
        app_writes(ow, data.clone(), Duration::ZERO),
        app_writes(ew, data, Duration::ZERO),
    ];
    let started = Instant::now();
    runtime().block_on(async {
        hub.attach(source("dead", 0, 0, 1), or, er);
        hub.drain(Duration::from_secs(30)).await;
    });
    for a in apps {
        a.join()
            .expect("the app finished writing: its pipe was drained");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    // One failed write, then everything is discarded without trying again.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn drain_times_out_on_an_open_pipe() {
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(io::sink()), Box::new(io::sink()));
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    let started = Instant::now();
    runtime().block_on(async {
        hub.attach(source("open", 0, 0, 1), or, er);
        hub.drain(Duration::from_millis(200)).await;
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop((ow, ew));
}

#[test]
fn tail_and_subscribe() {
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(io::sink()), Box::new(io::sink()));
    runtime().block_on(async {
        let mut sub = hub.subscribe();
        for (pm_id, name) in [(0, "a"), (1, "b")] {
            let ((or, ow), (er, ew)) = (pipe(), pipe());
            hub.attach(source(name, pm_id, 0, 1), or, er);
            let mut w = File::from(ow);
            for i in 0..1500 {
                writeln!(w, "{name} out {i}").expect("write");
            }
            File::from(ew).write_all(b"err line\n").expect("write");
            drop(w);
            hub.drain(Duration::from_secs(10)).await;
        }
        // 3002 lines for a subscriber that never read: it lost the oldest, nothing blocked.
        let lagged = sub.try_recv();
        assert!(
            matches!(lagged, Err(broadcast::error::TryRecvError::Lagged(n)) if n > 0),
            "{lagged:?}"
        );
        let mut last = None;
        while let Ok(line) = sub.try_recv() {
            last = Some(line);
        }
        let last = last.expect("recent lines were kept");
        assert_eq!(
            (last.pm_id, last.app.as_str(), last.stream),
            (1, "b", Stream::Err)
        );
        assert_eq!(last.text, "err line");
    });
    let a = hub.tail(Some(0), 3);
    let texts: Vec<&str> = a.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.len(), 3);
    assert!(
        texts.contains(&"err line") && texts.contains(&"a out 1499"),
        "{texts:?}"
    );
    let all = hub.tail(None, 5000);
    // Both instances: the last RING_LINES of each stdout, and each stderr line.
    assert_eq!(all.len(), 2 * RING_LINES + 2);
    assert_eq!(all.last().map(|l| l.app.as_str()), Some("b"));
    let b = hub.tail_where(|_, app| app == "b", 1);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].pm_id, 1);
    hub.forget(1);
    assert!(hub.tail(Some(1), 10).is_empty());
    let json = serde_json::to_string(&a[0]).expect("serialize");
    let back: LogLine = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, a[0]);
}

#[test]
fn log_files_with_suffix_merge_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| -> PathBuf { dir.path().join(name) };
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(io::sink()), Box::new(io::sink()));
    runtime().block_on(async {
        // Two instances, no merge: -<pm_id> files; both streams also in the combined log.
        for pm_id in [3, 4] {
            let mut src = source("api", pm_id, pm_id - 3, 2);
            src.files.out_file = Some(p("new/dir/out.log"));
            src.files.error_file = Some(p("err.log"));
            src.files.log_file = Some(p("all.log"));
            let ((or, ow), (er, ew)) = (pipe(), pipe());
            hub.attach(src, or, er);
            writeln!(File::from(ow), "out of {pm_id}").expect("write");
            writeln!(File::from(ew), "err of {pm_id}").expect("write");
            hub.drain(Duration::from_secs(10)).await;
        }
        // merge_logs with pm2's json lines.
        let mut src = source("m", 9, 0, 1);
        src.files.out_file = Some(p("merged.log"));
        src.files.merge_logs = true;
        src.files.json = true;
        let ((or, ow), (er, ew)) = (pipe(), pipe());
        drop(ew);
        hub.attach(src, or, er);
        File::from(ow).write_all(b"j1\nj2").expect("write");
        hub.drain(Duration::from_secs(10)).await;
    });
    let read =
        |name: &str| std::fs::read_to_string(p(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(read("new/dir/out-3.log"), "out of 3\n");
    assert_eq!(read("new/dir/out-4.log"), "out of 4\n");
    assert_eq!(read("err-3.log"), "err of 3\n");
    let all3 = read("all-3.log");
    assert!(all3.contains("out of 3\n") && all3.contains("err of 3\n") && all3.len() == 18);
    assert!(!p("new/dir/out.log").exists());
    let merged: Vec<serde_json::Value> = read("merged.log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0]["message"], "j1\n");
    assert_eq!(merged[1]["message"], "j2");
    assert_eq!(merged[0]["app_name"], "m");
    assert_eq!(merged[0]["process_id"], 9);
    assert_eq!(merged[0]["type"], "out");
}

#[test]
fn unwritable_log_file_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Mem::default();
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(o.clone()), Box::new(io::sink()));
    let mut src = source("f", 0, 0, 1);
    // The "file" is a directory: it cannot be opened.
    src.files.out_file = Some(dir.path().to_path_buf());
    src.files.merge_logs = true;
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    drop(ew);
    runtime().block_on(async {
        hub.attach(src, or, er);
        File::from(ow).write_all(b"still logged\n").expect("write");
        hub.drain(Duration::from_secs(10)).await;
    });
    assert_eq!(o.text(), "still logged\n");
}

#[test]
fn attach_outside_a_runtime_does_not_panic() {
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(io::sink()), Box::new(io::sink()));
    let ((or, _ow), (er, _ew)) = (pipe(), pipe());
    hub.attach(source("x", 0, 0, 1), or, er);
}

#[test]
fn verbatim_file_and_formatted_console_agree_across_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.log");
    let mut src = source("x", 0, 0, 1);
    src.files.out_file = Some(path.clone());
    src.files.merge_logs = true;
    let (out, _) = run_one(
        LogFormat::Prefixed,
        src,
        chunks(&["ab", "c\nd", "e\nf\n", "g"]),
        vec![],
        Duration::from_millis(20),
    );
    assert_eq!(out, "x | abc\nx | de\nx | f\nx | g\n");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "abc\nde\nf\ng"
    );
}

#[test]
fn app_pipes_are_enlarged() {
    let hub = LogHub::with_sinks(LogFormat::Raw, Box::new(io::sink()), Box::new(io::sink()));
    let ((or, ow), (er, ew)) = (pipe(), pipe());
    runtime().block_on(async {
        hub.attach(source("big", 0, 0, 1), or, er);
        tokio::task::yield_now().await;
    });
    let size = nix::fcntl::fcntl(&ow, nix::fcntl::FcntlArg::F_GETPIPE_SZ).expect("size");
    // Unprivileged users may be over their pipe-size limit; root never is.
    if nix::unistd::geteuid().is_root() {
        assert!(size >= PIPE_BYTES as i32, "{size}");
    }
    drop((ow, ew));
}
