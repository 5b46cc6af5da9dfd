//! In-process tests of the HTTP endpoint: a real server on 127.0.0.1:0 fed a hand-made snapshot,
//! driven by a raw TCP client (so that hostile clients can be played exactly).

mod common;
mod support_http;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support_http::{closed_within, huge_body, prometheus_parse, slowloris, value, Reply};

use pmi::http::{self, Limits};
use pmi::status::{AppInfo, ExitInfo, InstanceStatus, Snapshot, Status, SCHEMA_VERSION};
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
        support_http::connect(self.addr)
    }

    fn raw(&self, raw: &str) -> Reply {
        support_http::raw(self.addr, raw)
    }

    fn request(&self, method: &str, path: &str) -> Reply {
        support_http::request(self.addr, method, path)
    }

    fn get(&self, path: &str) -> Reply {
        support_http::get(self.addr, path)
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
        readiness: Default::default(),
    }
}

fn app(name: &str, autostart: bool) -> AppInfo {
    AppInfo {
        name: name.to_string(),
        autostart,
        ..AppInfo::default()
    }
}

fn snapshot(instances: Vec<InstanceStatus>) -> Snapshot {
    let mut apps: Vec<AppInfo> = Vec::new();
    for i in &instances {
        if !apps.iter().any(|a| a.name == i.name) {
            apps.push(app(&i.name, true));
        }
    }
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
        apps,
        not_ready: None,
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
    assert!(
        r.body.starts_with("worker:0 (id 2) is errored"),
        "{}",
        r.body
    );
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
    assert_eq!(r.body, "api:1 (id 1) is stopped, not online\n");
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
fn readyz_ignores_apps_without_autostart() {
    let mut s = healthy();
    s.instances.push(inst(3, "manual", 0, Status::Stopped));
    s.apps.push(app("manual", false));
    let srv = Server::with(s.clone());
    assert_eq!(srv.get("/readyz").status, 200);
    s.apps[2].autostart = true;
    srv.set(s);
    assert_eq!(srv.get("/readyz").status, 503);
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
fn status_is_the_status_json_report() {
    let srv = Server::with(healthy());
    let r = srv.get("/status");
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    // The schema of `pmi status --json` (docs/status-json.md).
    let report: pmi::control::proto::StatusReport = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(report.schema, SCHEMA_VERSION);
    assert_eq!(report.pmi.version, "9.9.9");
    assert_eq!(report.instances.len(), 3);
    assert_eq!(v["instances"][0]["status"], "online");
    assert!(!r.body.contains("SECRET_KEY"));
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
    let find = |name: &str, pm_id: &str| value(&samples, name, Some(pm_id));
    assert_eq!(find("pmi_instance_up", "0"), Some(1.0));
    assert_eq!(find("pmi_instance_up", "3"), Some(0.0));
    assert_eq!(find("pmi_instance_restarts_total", "2"), Some(2.0));
    assert!(find("pmi_instance_uptime_seconds", "0").unwrap() > 1000.0);
    // No process, no memory or cpu sample.
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
    assert_eq!(
        states.len(),
        9,
        "one sample per status, waiting and blocked included"
    );
    assert!(states
        .iter()
        .all(|(_, l, v)| (*v == 1.0) == (l["status"] == "errored")));
    let one = |name: &str| value(&samples, name, None);
    assert_eq!(one("pmi_reaped_orphans_total"), Some(7.0));
    assert_eq!(one("pmi_forwarded_signals_total"), Some(3.0));
    assert_eq!(one("pmi_info"), Some(1.0));
    assert!(samples
        .iter()
        .any(|(n, l, _)| n == "pmi_info" && l["version"] == "9.9.9"));
    assert_eq!(one("pmi_start_time_seconds"), Some(1_700_000_000.5));
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
        let get = |name: &str| value(&samples, name, Some("0"));
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

fn short_limits(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        header_timeout: Duration::from_millis(500),
        connection_deadline: Duration::from_secs(3),
    }
}

#[test]
fn slowloris_is_cut_after_the_header_timeout() {
    let srv = Server::start(short_limits(32), healthy());
    let took = closed_within(slowloris(srv.addr), Duration::from_secs(10));
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
fn at_the_cap_the_oldest_idle_connection_makes_room() {
    // A header timeout longer than the test: only eviction can free a slot here.
    let limits = Limits {
        header_timeout: Duration::from_secs(60),
        connection_deadline: Duration::from_secs(60),
        ..short_limits(4)
    };
    let srv = Server::start(limits, healthy());
    let mut hogs: Vec<TcpStream> = (0..4).map(|_| slowloris(srv.addr)).collect();
    for round in 0..3 {
        let r = srv.get("/livez");
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "round {round}");
        // The oldest hog was closed for it; the others still hold their slots.
        let oldest = hogs.remove(0);
        let took = closed_within(oldest, Duration::from_secs(10));
        assert!(
            took < Duration::from_secs(5),
            "oldest hog kept for {took:?}"
        );
        hogs.push(slowloris(srv.addr));
    }
}

/// One kubelet-style probe (new connection, `Connection: close`, a 1 s budget as kubelet's
/// default `timeoutSeconds`, scaled for a loaded machine): the status, or why there was none.
fn kube_probe(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let budget = common::secs(2.0);
    let mut s = TcpStream::connect_timeout(&addr, budget).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(budget))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let r = Reply::parse(&buf);
    if r.status == 0 {
        return Err(format!("no answer ({} bytes)", buf.len()));
    }
    Ok(r.status)
}

#[test]
fn idle_connections_cannot_starve_the_probes() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    // Live but not ready (one instance stopped): each probe must get its own true answer.
    let mut snap = healthy();
    snap.instances[1].status = Status::Stopped;
    snap.instances[1].pid = None;
    let srv = Server::with(snap);
    let addr = srv.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    // 40 connections, one in six a slowloris (40 > 32 slots), each re-opened as soon as pmi
    // closes it, for as long as the probes run.
    let attacker = {
        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                held.retain(|s| {
                    let mut b = [0u8; 256];
                    match (&*s).read(&mut b) {
                        Ok(0) => false,
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    }
                });
                while held.len() < 40 {
                    let n = opened.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    else {
                        continue;
                    };
                    if n % 6 == 0 {
                        let _ = s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n");
                    }
                    let _ = s.set_nonblocking(true);
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    common::wait_until("the attacker got going", common::secs(20.0), || {
        opened.load(Ordering::Relaxed) >= 40
    });
    let mut failures = Vec::new();
    let rounds = 40;
    for round in 0..rounds {
        for (path, want) in [("/livez", 200), ("/readyz", 503)] {
            match kube_probe(addr, path) {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!("round {round} {path}: {got}, want {want}")),
                Err(e) => failures.push(format!("round {round} {path}: {e}")),
            }
        }
        // Paced like a (much hastier) kubelet, so the attacker refills between probes.
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = attacker.join();
    let reopened = opened.load(Ordering::Relaxed);
    eprintln!("attacker connections opened: {reopened}");
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        rounds * 2,
        failures.join("\n")
    );
    // Each probe evicted an idle connection, which the attacker opened again.
    assert!(
        reopened >= 40 + rounds,
        "only {reopened} attacker connections"
    );
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
    for (method, want) in [("POST", 405), ("GET", 200)] {
        // Announce 10 MB, send none of it: the answer must come anyway, then a close.
        let (r, refused) = huge_body(srv.addr, method, "/status");
        assert_eq!(r.status, want, "{method}");
        assert!(r.head.contains("connection: close"), "{}", r.head);
        assert!(refused, "{method}: the server read the whole body");
    }
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
