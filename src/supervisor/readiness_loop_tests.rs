//! The pieces together, as the supervisor loop will use them: a real python app spawned through
//! `os::spawn`, its own notify socket, a real HTTP health check through `checks::Runner`, and a
//! loop that sleeps until `Tracker::next_deadline`. Also counts wake-ups: every timer wake-up
//! must start a check (no polling). The start period covers a slow python start on a loaded
//! machine; the first pass ends it.

use std::ffi::OsString;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use super::*;
use crate::checks::Runner;
use crate::config::checks::{HttpUrl, Probe};
use crate::os::notify::{Addr, NotifySocket};
use crate::os::spawn::{spawn, SpawnRequest, Streams};

/// Ready by sd_notify after a short start; `/health` fails while the flag file exists.
const APP: &str = r#"
import http.server, os, socket, sys, time
flag, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists(flag) else 200
        self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
time.sleep(0.2)
a = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=serving", "\0" + a[1:])
srv.serve_forever()
"#;

#[test]
fn notify_ready_then_http_health_restarts_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("sick");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sock = NotifySocket::bind(Addr::Abstract(format!("pmi-test-loop/{}", std::process::id()))).unwrap();
        let argv: Vec<OsString> = ["python3", "-c", APP, flag.to_str().unwrap(), &port.to_string()].iter().map(OsString::from).collect();
        let env = vec![
            (OsString::from("PATH"), OsString::from("/usr/local/bin:/usr/bin:/bin")),
            (OsString::from("NOTIFY_SOCKET"), OsString::from(sock.addr().env_value())),
        ];
        let sp = spawn(&SpawnRequest { argv: &argv, cwd: dir.path(), env, streams: Streams::Pipes, uid: None, gid: None, groups: &[] }).unwrap();
        sock.set_expected_pgid(Some(sp.pid));

        let probe = Probe::Http(HttpUrl {
            url: format!("http://127.0.0.1:{port}/health"),
            host: "127.0.0.1".into(),
            port,
            path: "/health".into(),
            host_header: format!("127.0.0.1:{port}"),
        });
        let cfg = Config {
            source: Source::Notify,
            listen_timeout: Duration::from_secs(20),
            replacement: false,
            health: Some(HealthTiming { interval: Duration::from_millis(150), timeout: Duration::from_secs(2), retries: 2, start_period: Duration::from_secs(20) }),
            watchdog: None,
        };
        let (mut t, first) = Tracker::new(cfg, Instant::now());
        assert!(first.is_empty());
        let mut runner: Runner<(CheckKind, u64)> = Runner::new();
        let (mut timer_wakeups, mut checks_started, mut passes) = (0u32, 0u32, 0u32);
        let give_up = Instant::now() + Duration::from_secs(30);
        let why = 'run: loop {
            let deadline = t.next_deadline().unwrap_or(give_up).min(give_up);
            let decisions = tokio::select! {
                n = sock.recv() => t.on_notify(&n.unwrap(), Instant::now()),
                d = runner.next() => {
                    let o = &d.outcome;
                    passes += u32::from(o.ok);
                    if passes == 2 && !flag.exists() {
                        std::fs::write(&flag, b"").unwrap(); // healthy twice, now it turns sick
                    }
                    let r = CheckResult { kind: d.key.0, seq: d.key.1, ok: o.ok, summary: o.summary.clone(), output: o.output.clone(), took: o.took };
                    t.on_check_result(&r, Instant::now())
                }
                _ = sleep_until(deadline) => {
                    assert!(Instant::now() < give_up, "no restart within 30 s");
                    timer_wakeups += 1;
                    t.on_tick(Instant::now())
                }
            };
            for d in decisions {
                match d {
                    Decision::RunCheck { kind, seq, timeout } => {
                        checks_started += 1;
                        runner.start((kind, seq), &probe, timeout, None);
                    }
                    Decision::Restart(why) => break 'run why,
                    Decision::Online { by } => assert_eq!(by, ReadyBy::Notify),
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        assert_eq!(why, RestartWhy::Unhealthy { failures: 2, last: "HTTP 500 Internal Server Error".into() });
        assert!(t.is_ready() && t.status_text() == Some("serving"));
        assert_eq!(passes, 2);
        // Two passes, two failures, and any failures before the server listened (not counted:
        // start_period, which the first pass ended).
        assert!(checks_started >= 4, "{checks_started}");
        // Every timer wake-up started a check: the loop never woke for nothing.
        assert_eq!(timer_wakeups, checks_started);
        assert_eq!(t.next_deadline(), None);
        // SAFETY: the app's own group; then its exit is collected by pid.
        unsafe { libc::kill(-sp.pid, libc::SIGKILL) };
        let mut st = 0;
        assert_eq!(unsafe { libc::waitpid(sp.pid, &mut st, 0) }, sp.pid);
    });
}
