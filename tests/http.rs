//! In-process tests of the HTTP endpoint: a real server on 127.0.0.1:0 fed a hand-made snapshot,
//! driven by a raw TCP client (so that hostile clients can be played exactly).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmi::http::{self, Limits};
use pmi::status::{ExitInfo, InstanceStatus, Snapshot, Status, SCHEMA_VERSION};
use tokio::sync::watch;

/// A server on its own thread with a current_thread runtime, as in pmi.
struct Server {
    addr: SocketAddr,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Server {
    fn start(limits: Limits, snap: Snapshot) -> Server {
        let (tx, rx) = watch::channel(Arc::new(snap));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = http::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                http::serve_snapshots(l, rx, limits).await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server { addr, tx }
    }

    fn with(snap: Snapshot) -> Server {
        Server::start(Limits::default(), snap)
    }

    fn set(&self, snap: Snapshot) {
        self.tx.send_replace(Arc::new(snap));
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `raw` and reads the answer until the server closes.
    fn raw(&self, raw: &str) -> Reply {
        let mut s = self.connect();
        s.write_all(raw.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Reply::parse(&buf)
    }

    fn request(&self, method: &str, path: &str) -> Reply {
        self.raw(&format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ))
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path)
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn parse(buf: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }
}

fn inst(id: u32, name: &str, index: u32, status: Status) -> InstanceStatus {
    let running = matches!(status, Status::Online | Status::Stopping);
    InstanceStatus {
        id,
        name: name.to_string(),
        namespace: "default".to_string(),
        instance: index,
        exec_mode: "fork".to_string(),
        status,
        pid: running.then_some(std::process::id()),
        started_at: running.then_some(1_700_000_000_000),
        restarts: id,
        unstable_restarts: 0,
        last_exit: (!running).then_some(ExitInfo {
            code: Some(1),
            signal: None,
            at: 1_700_000_000_000,
        }),
        cron_next: None,
        env_keys: vec!["SECRET_KEY".to_string()],
    }
}

fn snapshot(instances: Vec<InstanceStatus>) -> Snapshot {
    Snapshot {
        schema: SCHEMA_VERSION,
        pmi_version: "9.9.9".to_string(),
        pid: 1,
        started_at: 1_700_000_000_500,
        apps_file: "/app/apps.yaml".to_string(),
        shutting_down: false,
        reaped_orphans: 7,
        forwarded_signals: 3,
        instances,
    }
}

fn healthy() -> Snapshot {
    snapshot(vec![
        inst(0, "api", 0, Status::Online),
        inst(1, "api", 1, Status::Online),
        inst(2, "worker", 0, Status::Online),
    ])
}

#[test]
fn livez_and_healthz_follow_errored_instances() {
    let srv = Server::with(healthy());
    for path in ["/livez", "/healthz", "/livez?verbose"] {
        let r = srv.get(path);
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{path}");
        assert!(r.head.contains("content-type: text/plain"));
    }
    let mut s = healthy();
    s.instances[2].status = Status::Errored;
    srv.set(s);
    let r = srv.get("/livez");
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "errored: worker:0 (errored)\n");
    assert_eq!(srv.get("/healthz").status, 503);
}

#[test]
fn readyz_names_what_is_not_online_and_fails_on_shutdown() {
    let srv = Server::with(healthy());
    assert_eq!(srv.get("/readyz").status, 200);

    let mut s = healthy();
    s.instances[1].status = Status::Stopped;
    s.instances[1].pid = None;
    srv.set(s.clone());
    let r = srv.get("/readyz");
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "not online: api:1 (stopped)\n");
    // Liveness does not care about a stopped instance.
    assert_eq!(srv.get("/livez").status, 200);

    let mut s = healthy();
    s.shutting_down = true;
    srv.set(s);
    let r = srv.get("/readyz");
    assert_eq!((r.status, r.body.as_str()), (503, "pmi is shutting down\n"));
    assert_eq!(
        srv.get("/livez").status,
        200,
        "liveness stays green while draining"
    );

    srv.set(Snapshot::default());
    assert_eq!(srv.get("/readyz").status, 503, "nothing published yet");
}

#[test]
fn readyz_ignores_apps_that_never_started() {
    let mut s = healthy();
    let mut idle = inst(3, "manual", 0, Status::Stopped);
    idle.last_exit = None;
    idle.restarts = 0;
    s.instances.push(idle);
    let srv = Server::with(s);
    assert_eq!(srv.get("/readyz").status, 200);
}

#[test]
fn readyz_and_livez_fail_once_the_supervisor_is_gone() {
    let srv = Server::with(healthy());
    let Server { addr, tx } = srv;
    drop(tx);
    let srv = Server {
        addr,
        tx: watch::channel(Arc::new(Snapshot::default())).0,
    };
    let r = srv.get("/livez");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "the supervisor has stopped\n")
    );
    assert_eq!(srv.get("/readyz").status, 503);
}

#[test]
fn only_get_and_head_and_known_paths() {
    let srv = Server::with(healthy());
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = srv.request(m, "/livez");
        assert_eq!(r.status, 405, "{m}");
        assert!(r.head.contains("allow: get, head"), "{}", r.head);
    }
    let r = srv.request("HEAD", "/livez");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let r = srv.get("/nope");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("/readyz"));
}

#[test]
fn status_is_the_snapshot_json_without_secrets() {
    let srv = Server::with(healthy());
    let r = srv.get("/status");
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["schema"], SCHEMA_VERSION);
    assert_eq!(v["instances"].as_array().unwrap().len(), 3);
    assert_eq!(v["instances"][0]["status"], "online");
    assert_eq!(v["instances"][0]["env_keys"][0], "SECRET_KEY");
}

/// Parses an exposition with the Prometheus Python client's parser (the reference parser
/// port), returning one JSON line per sample: [name, labels, value]. Panics with a clear
/// message when python3 or prometheus_client is missing (.ci/run installs it).
pub fn prometheus_parse(text: &str) -> Vec<(String, serde_json::Value, f64)> {
    const SCRIPT: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        print(json.dumps([s.name, s.labels, s.value, fam.type, fam.documentation]))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse /metrics (apt-get install python3)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the exposition (or is missing: pip install prometheus-client):\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v[0].as_str().unwrap().to_string(),
                v[1].clone(),
                v[2].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn metrics_parse_with_a_real_prometheus_parser() {
    let mut s = healthy();
    s.instances
        .push(inst(3, "we\"ird\\na\nme", 0, Status::Errored));
    let srv = Server::with(s);
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.head.contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.head
    );
    assert!(r.body.ends_with('\n'));
    let samples = prometheus_parse(&r.body);
    let find = |name: &str, pm_id: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l["pm_id"] == pm_id)
            .map(|s| s.2)
    };
    assert_eq!(find("pmi_instance_up", "0"), Some(1.0));
    assert_eq!(find("pmi_instance_up", "3"), Some(0.0));
    assert_eq!(find("pmi_instance_restarts_total", "2"), Some(2.0));
    assert!(find("pmi_instance_uptime_seconds", "0").unwrap() > 1000.0);
    // Instances here all carry this test's pid, which leads no group of its own unless it
    // is a group leader: memory and cpu are present only for live groups.
    assert!(find("pmi_instance_memory_bytes", "3").is_none());
    assert!(find("pmi_instance_cpu_seconds_total", "3").is_none());
    let weird = samples
        .iter()
        .find(|(n, l, _)| n == "pmi_instance_up" && l["pm_id"] == "3")
        .unwrap();
    assert_eq!(
        weird.1["app"], "we\"ird\\na\nme",
        "label escaping round-trips"
    );
    let states: Vec<_> = samples
        .iter()
        .filter(|(n, l, _)| n == "pmi_instance_status" && l["pm_id"] == "3")
        .collect();
    assert_eq!(states.len(), 6);
    assert!(states
        .iter()
        .all(|(_, l, v)| (*v == 1.0) == (l["status"] == "errored")));
    let one = |name: &str| {
        samples
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    assert_eq!(one("pmi_reaped_orphans_total").2, 7.0);
    assert_eq!(one("pmi_forwarded_signals_total").2, 3.0);
    assert_eq!(one("pmi_info").1["version"], "9.9.9");
    assert_eq!(one("pmi_start_time_seconds").2, 1_700_000_000.5);
    assert!(
        samples.iter().all(|(_, l, _)| l.get("instance").is_none()),
        "never an `instance` label"
    );
    for line in r.body.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(name.starts_with("pmi_"), "{line}");
        assert_eq!(
            r.body.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name}"
        );
    }
}

#[test]
fn metrics_report_memory_and_cpu_of_live_process_groups() {
    // A child that leads its own group and burns a little CPU.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
        ])
        .process_group(0)
        .spawn()
        .unwrap();
    let mut s = healthy();
    s.instances[0].pid = Some(child.id());
    let srv = Server::with(s);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mem, cpu) = loop {
        let samples = prometheus_parse(&srv.get("/metrics").body);
        let get = |name: &str| {
            samples
                .iter()
                .find(|(n, l, _)| n == name && l["pm_id"] == "0")
                .map(|s| s.2)
        };
        let (mem, cpu) = (
            get("pmi_instance_memory_bytes"),
            get("pmi_instance_cpu_seconds_total"),
        );
        if cpu.is_some_and(|c| c > 0.0) || Instant::now() > deadline {
            break (mem, cpu);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(mem.unwrap() > 0.0);
    assert!(cpu.unwrap() > 0.0);
}

use std::os::unix::process::CommandExt;

fn short_limits(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        header_timeout: Duration::from_millis(500),
        connection_deadline: Duration::from_secs(3),
    }
}

/// Waits until the server has closed `s` (read returns 0 or an error), up to `limit`.
fn closed_within(mut s: TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => continue,
        }
    }
}

#[test]
fn slowloris_is_cut_after_the_header_timeout() {
    let srv = Server::start(short_limits(32), healthy());
    let mut s = srv.connect();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n").unwrap();
    let took = closed_within(s, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "held for {took:?}");
    // An idle connection that never sends anything is cut too.
    let took = closed_within(srv.connect(), Duration::from_secs(10));
    assert!(took < Duration::from_secs(2), "idle held for {took:?}");
    // So is a keep-alive connection that goes quiet after one request.
    let mut s = srv.connect();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(s.read(&mut buf).unwrap() > 0);
    let took = closed_within(s, Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(2),
        "keep-alive held for {took:?}"
    );
}

#[test]
fn the_connection_cap_refuses_extra_clients_and_recovers() {
    let srv = Server::start(short_limits(4), healthy());
    let hogs: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = srv.connect();
            s.write_all(b"GET /livez HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // The hogs hold every slot: the next client is refused at once, not queued.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = srv.get("/livez");
        if r.status == 503 {
            assert!(r.body.contains("too many connections"));
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {r:?}");
    }
    // Once the header timeout frees them, clients are served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.get("/livez").status != 200 {
        assert!(Instant::now() < deadline, "slots never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(hogs);
}

#[test]
fn oversized_headers_get_431() {
    let srv = Server::with(healthy());
    let big = "a".repeat(40 * 1024);
    let r = srv.raw(&format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(r.status, 431, "{r:?}");
}

#[test]
fn a_large_body_is_never_read() {
    let srv = Server::with(healthy());
    for method in ["POST", "GET"] {
        let mut s = srv.connect();
        // Announce 10 MB, send none of it: the answer must come anyway.
        s.write_all(
            format!("{method} /status HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap();
        let r = Reply::parse(&buf[..n]);
        let want = if method == "GET" { 200 } else { 405 };
        assert_eq!(r.status, want, "{method}");
        assert!(r.head.contains("connection: close"), "{}", r.head);
        // The server closes instead of reading 10 MB: writing the body fails or is discarded.
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        while sent < 10 << 20 {
            match s.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        assert!(sent < 10 << 20, "{method}: the server read the whole body");
    }
    // And the server still answers.
    assert_eq!(srv.get("/livez").status, 200);
}

#[test]
fn addresses() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for a in ["127.0.0.1:0", "localhost:0", ":0", "0"] {
            let l = http::bind(a).await.unwrap_or_else(|e| panic!("{a}: {e}"));
            assert!(l.local_addr().unwrap().port() > 0);
        }
        for a in ["", "nonsense", "1.2.3.4:99999", "host:", ":x"] {
            let e = http::bind(a).await.unwrap_err();
            assert!(e.contains("http address"), "{a}: {e}");
        }
        let taken = http::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = http::bind(&format!("127.0.0.1:{port}")).await.unwrap_err();
        assert!(e.contains("cannot listen"), "{e}");
    });
}
