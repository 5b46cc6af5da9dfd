//! Readiness, health checks and the watchdog, black-box: pmi as PID 1, real Python apps (an
//! sd_notify sender using only the socket module, HTTP apps that turn unhealthy on a flag file),
//! real checks over loopback, and pmi's own READY=1/STOPPING=1 on a socket the test binds.
//! Start order, blocking, config errors and the example stack are in tests/start_order.rs.

mod common;
mod support_ready;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;
use support_ready::*;

#[test]
fn notify_ready_makes_an_instance_online_with_its_status_line() {
    let sb = Sandbox::new();
    sb.write("notify.py", NOTIFY_LIB);
    let app = "import time, notify\ntime.sleep(1.0)\nnotify.send('READY=1\\nSTATUS=warmed up')\ntime.sleep(600)\n";
    sb.write("app.py", app);
    let y = py_app(
        "svc",
        "app.py",
        "    ready: notify\n    listen_timeout: 30s\n",
    );
    let mut pmi = start(&sb, &format!("apps:\n{y}"));
    let c = Ctl::new(&sb);
    pmi.wait_for("svc launching", wait_time(), || {
        c.status_of("svc") == "launching"
    });
    pmi.wait_for("svc online", wait_time(), || c.status_of("svc") == "online");
    let i = c.inst("svc");
    assert_eq!(i["ready"], true, "{i}");
    assert_eq!(i["ready_by"], "notify", "{i}");
    assert_eq!(i["notify_status"], "warmed up", "{i}");
    assert_eq!(c.code(&["health", "--ready"]), 0);
    // Every field `status --json` shows is documented.
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-json.md"),
    )
    .unwrap();
    let st = c.status();
    let pmi_keys = st["pmi"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| format!("pmi.{k}"));
    for k in i.as_object().unwrap().keys().cloned().chain(pmi_keys) {
        assert!(
            doc.contains(&format!("`{k}`")),
            "{k} is not in docs/status-json.md"
        );
    }
}

#[test]
fn http_tcp_and_exec_ready_checks_make_instances_online() {
    let sb = Sandbox::new();
    sb.write("web.py", WEB);
    let (p1, p2) = (free_port(), free_port());
    let flag = sb.p("exec-ready");
    let apps = [
        py_app(
            "h",
            "web.py",
            &format!("    args: [{p1}, {}, '1.0']\n    ready: {{http: 'http://127.0.0.1:{p1}/', interval: 200ms, timeout: 1s}}\n    listen_timeout: 30s\n", q(&sb.p("none"))),
        ),
        py_app(
            "t",
            "web.py",
            &format!("    args: [{p2}, {}, '1.0']\n    ready: {{tcp: {p2}, interval: 200ms}}\n    listen_timeout: 30s\n", q(&sb.p("none"))),
        ),
        format!(
            "  - name: e\n    script: {}\n    interpreter: none\n    args: [sleep, '600']\n    ready: {{exec: 'test -f {flag}', interval: 200ms}}\n    listen_timeout: 60s\n",
            q(&testkit())
        ),
    ];
    let mut pmi = start(&sb, &format!("apps:\n{}", apps.concat()));
    let c = Ctl::new(&sb);
    pmi.wait_for("h and t online", wait_time(), || {
        c.status_of("h") == "online" && c.status_of("t") == "online"
    });
    for n in ["h", "t"] {
        assert_eq!(c.inst(n)["ready_by"], "check", "{}", c.inst(n));
    }
    assert_eq!(c.status_of("e"), "launching");
    let why = c.out(&["health", "--ready"]);
    assert!(why.contains("e: not ready yet"), "{why}");
    std::fs::write(&flag, "").unwrap();
    pmi.wait_for("e online", wait_time(), || c.status_of("e") == "online");
    assert_eq!(c.code(&["health", "--ready"]), 0);
}

#[test]
fn failing_http_health_checks_restart_the_instance_and_show_in_describe_and_metrics() {
    let sb = Sandbox::new();
    sb.write("web.py", WEB);
    let port = free_port();
    let http = free_port();
    let flag = sb.p("sick");
    let y = py_app(
        "web",
        "web.py",
        &format!("    args: [{port}, {}, '0']\n    health: {{http: 'http://127.0.0.1:{port}/', interval: 200ms, timeout: 1s, retries: 2, start_period: 20s}}\n", q(&flag)),
    );
    let mut pmi = start_with(
        &sb,
        &format!("apps:\n{y}"),
        &["--http", &format!("127.0.0.1:{http}")],
    );
    let c = Ctl::new(&sb);
    pmi.wait_for("web healthy", wait_time(), || {
        c.inst("web")["health"] == "healthy"
    });
    let pid = c.inst("web")["pid"].as_u64().unwrap();
    std::fs::write(&flag, "").unwrap();
    pmi.wait_for("a health restart", wait_time(), || {
        c.inst("web")["restarts"] == 1
    });
    std::fs::remove_file(&flag).unwrap();
    pmi.wait_for("web healthy again", wait_time(), || {
        let i = c.inst("web");
        i["health"] == "healthy" && i["pid"].as_u64() != Some(pid)
    });
    assert!(
        pmi.stderr()
            .contains("unhealthy: 2 health checks failed in a row (last: HTTP 500"),
        "{}",
        pmi.stderr()
    );
    let d = c.out(&["describe", "web"]);
    assert!(d.contains("last health check    passed: HTTP 200"), "{d}");
    assert!(d.contains("health               healthy"), "{d}");
    let m = http_get(http, "/metrics");
    let labels = "{app=\"web\",pm_id=\"0\"}";
    let value = |name: &str| -> f64 {
        let key = format!("{name}{labels} ");
        let line = m.lines().find(|l| l.starts_with(&key));
        line.and_then(|l| l[key.len()..].parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in\n{m}"))
    };
    assert_eq!(value("pmi_instance_ready"), 1.0);
    assert_eq!(value("pmi_instance_healthy"), 1.0);
    assert_eq!(value("pmi_instance_restarts_total"), 1.0);
    assert!(value("pmi_instance_check_failures_total") >= 2.0);
    assert!(value("pmi_instance_checks_total") >= 4.0);
    assert!(value("pmi_instance_check_seconds_total") > 0.0);
}

#[test]
fn a_missed_watchdog_keepalive_restarts_the_instance() {
    let sb = Sandbox::new();
    sb.write("notify.py", NOTIFY_LIB);
    // Ready, three keepalives, then silence (a hung main loop).
    // Each run records WATCHDOG_USEC and whether WATCHDOG_PID names the app's own pid.
    let app = "import os, time, notify\nopen(os.environ['OUT'], 'a').write(os.environ.get('WATCHDOG_USEC', '-') + (' own' if os.environ.get('WATCHDOG_PID') == str(os.getpid()) else ' other') + '\\n')\nnotify.send('READY=1')\nfor _ in range(3):\n    time.sleep(0.1)\n    notify.send('WATCHDOG=1')\ntime.sleep(600)\n";
    sb.write("app.py", app);
    let y = py_app(
        "dog",
        "app.py",
        &format!(
            "    ready: notify\n    watchdog: 700ms\n    env: {{OUT: {}}}\n",
            q(&sb.p("runs"))
        ),
    );
    let mut pmi = start(&sb, &format!("apps:\n{y}"));
    let c = Ctl::new(&sb);
    pmi.wait_for("a watchdog restart", wait_time(), || {
        c.inst("dog")["restarts"].as_u64() >= Some(1)
    });
    assert!(
        pmi.stderr().contains("watchdog: no WATCHDOG=1 for 700 ms"),
        "{}",
        pmi.stderr()
    );
    pmi.wait_for("the second run", wait_time(), || {
        sb.lines("runs").len() >= 2
    });
    let runs = sb.lines("runs");
    assert!(runs.len() >= 2 && runs[0] == "700000 own", "{runs:?}");
}

#[test]
fn checks_against_closed_ports_and_hanging_commands_are_bounded_and_leave_nothing() {
    let sb = Sandbox::new();
    let closed = free_port();
    let apps = format!(
        "apps:\n  - name: hang\n    script: {tk}\n    interpreter: none\n    args: [sleep, '600']\n    health: {{exec: 'sleep 30', interval: 150ms, timeout: 200ms, retries: 1000}}\n  - name: closed\n    script: {tk}\n    interpreter: none\n    args: [sleep, '600']\n    health: {{http: 'http://127.0.0.1:{closed}/', interval: 150ms, timeout: 300ms, retries: 1000}}\n",
        tk = q(&testkit())
    );
    let mut pmi = start(&sb, &apps);
    let c = Ctl::new(&sb);
    pmi.wait_for("five timed-out exec checks", wait_time(), || {
        c.inst("hang")["check_failures"].as_u64() >= Some(5)
    });
    let h = c.inst("hang");
    let last = &h["checks"][0];
    assert!(
        last["summary"].as_str().unwrap().contains("timed out"),
        "{h}"
    );
    assert!(last["took_ms"].as_u64().unwrap() < 2_000, "{h}");
    let cl = c.inst("closed");
    assert!(cl["check_failures"].as_u64() >= Some(1), "{cl}");
    assert_eq!(cl["status"], "online", "{cl}");
    // Every timed-out check was killed and reaped: at most the one in flight is left.
    let sleeps = pmi
        .descendants()
        .iter()
        .filter(|p| p.comm == "sleep")
        .count();
    assert!(sleeps <= 1, "{:?}", pmi.descendants());
    assert_eq!(pmi.zombies(), 0);
}

#[test]
fn a_flood_of_notify_datagrams_does_not_block_the_supervisor() {
    let sb = Sandbox::new();
    sb.write("notify.py", NOTIFY_LIB);
    // Garbage, oversized and valid datagrams as fast as the socket takes them, for ever.
    let app = "import notify, os\ns = notify.sock()\nbig = b'x' * 70000\nn = 0\nwhile True:\n    n += 1\n    for m in (b'\\xff\\x00garbage', b'STATUS=%d' % n, b'WATCHDOG=1', b''):\n        try:\n            s.sendto(m, notify.addr())\n        except OSError:\n            pass\n    if n == 50:\n        s.sendto(b'READY=1', notify.addr())\n    try:\n        s.sendto(big, notify.addr())\n    except OSError:\n        pass\n";
    sb.write("app.py", app);
    let y = py_app(
        "flood",
        "app.py",
        "    ready: notify\n    listen_timeout: 30s\n",
    );
    let mut pmi = start(&sb, &format!("apps:\n{y}"));
    let c = Ctl::new(&sb);
    pmi.wait_for("flood online", wait_time(), || {
        c.status_of("flood") == "online"
    });
    let (mut answered, mut slow) = (0, 0);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let t = Instant::now();
        assert_eq!(
            c.code(&["health"]),
            0,
            "pmi health must answer during the flood"
        );
        answered += 1;
        if t.elapsed() > secs(2.0) {
            slow += 1;
        }
    }
    assert!(
        answered >= 3 && slow == 0,
        "{answered} answered, {slow} slow"
    );
    assert!(pmi.stderr().contains("flood: dropped"), "{}", pmi.stderr());
    pmi.assert_running("after the flood");
}

#[test]
fn pmi_sends_ready_once_every_app_is_ready_and_stopping_at_shutdown() {
    let sb = Sandbox::new();
    sb.write("notify.py", NOTIFY_LIB);
    sb.write(
        "app.py",
        "import time, notify\ntime.sleep(1.0)\nnotify.send('READY=1')\ntime.sleep(600)\n",
    );
    let upward = sb.path("upward.sock");
    let rx = UnixDatagram::bind(&upward).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let y = py_app(
        "svc",
        "app.py",
        "    ready: notify\n    listen_timeout: 30s\n",
    );
    sb.write("apps.yaml", &format!("apps:\n{y}"));
    let mut pmi = sb
        .pid1([sb.path("apps.yaml")])
        .env("NOTIFY_SOCKET", upward.to_str().unwrap())
        .start();
    let c = Ctl::new(&sb);
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    pmi.wait_for("READY=1 upward", wait_time(), || {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.iter().any(|m| m.contains("READY=1"))
    });
    let ready_at = got.iter().position(|m| m.contains("READY=1")).unwrap();
    assert!(got[ready_at].contains("STATUS=1 apps ready"), "{got:?}");
    assert!(
        got[..ready_at]
            .iter()
            .all(|m| m.starts_with("STATUS=not ready")),
        "{got:?}"
    );
    assert_eq!(
        c.status_of("svc"),
        "online",
        "READY=1 only once the app is ready"
    );
    // The app's environment does not carry pmi's own NOTIFY_SOCKET.
    let env = c.nsenter_env(&pmi, "svc");
    assert!(
        env.iter().any(|v| v.starts_with("NOTIFY_SOCKET=@pmi/")),
        "{env:?}"
    );
    pmi.send(libc::SIGTERM);
    pmi.wait_for("STOPPING=1 upward", wait_time(), || {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.iter().any(|m| m.contains("STOPPING=1"))
    });
    assert_eq!(
        got.iter().filter(|m| m.contains("READY=1")).count(),
        1,
        "{got:?}"
    );
    pmi.wait_exit(wait_time());
}

#[test]
fn reload_answers_once_the_replacement_is_ready_or_says_why_not() {
    let sb = Sandbox::new();
    sb.write("notify.py", NOTIFY_LIB);
    // Ready after 0.8 s, unless the flag file exists (then never).
    let app = "import os, sys, time, notify\ntime.sleep(0.8)\nif not os.path.exists(sys.argv[1]):\n    notify.send('READY=1')\ntime.sleep(600)\n";
    sb.write("app.py", app);
    let flag = sb.p("never");
    let y = py_app(
        "svc",
        "app.py",
        &format!(
            "    args: [{}]\n    ready: notify\n    listen_timeout: 1500ms\n",
            q(&flag)
        ),
    );
    let mut pmi = start(&sb, &format!("apps:\n{y}"));
    let c = Ctl::new(&sb);
    pmi.wait_for("svc online", wait_time(), || c.status_of("svc") == "online");
    let before = c.inst("svc")["pid"].as_u64();
    assert_eq!(c.code(&["reload", "svc"]), 0);
    let i = c.inst("svc");
    assert_eq!(
        (i["status"].as_str(), i["ready"].as_bool()),
        (Some("online"), Some(true)),
        "reload answered before ready: {i}"
    );
    assert_ne!(i["pid"].as_u64(), before);
    std::fs::write(&flag, "").unwrap();
    let o = c.run(&["reload", "svc"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("svc:0") && err.contains("not ready within listen_timeout (1500 ms)"),
        "{err}"
    );
    pmi.assert_running("after a failed reload");
}
