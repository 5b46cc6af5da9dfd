//! Start order (`depends_on` with started / ready / completed), blocked dependents, located
//! configuration errors, and the example stack (examples/stack) run for real, black-box with
//! pmi as PID 1 and real Python apps.

mod common;
mod support_ready;

use common::*;
use support_ready::*;

fn rec_app(name: &str, secs: Option<&str>, code: Option<&str>, extra: &str) -> String {
    let mut args = vec![name.to_string(), "order".to_string()];
    args.extend(secs.map(str::to_string));
    args.extend(code.map(str::to_string));
    let args: Vec<String> = args.iter().map(|a| q(a)).collect();
    py_app(
        name,
        "rec.py",
        &format!("    args: [{}]\n{extra}", args.join(", ")),
    )
}

#[test]
fn dependents_wait_for_started_ready_and_completed() {
    let sb = Sandbox::new();
    sb.write("rec.py", REC);
    sb.write("web.py", WEB);
    let port = free_port();
    let apps = [
        rec_app("migrate", Some("1.5"), None, "    autorestart: false\n"),
        rec_app("side", None, None, "    depends_on: [{app: migrate, condition: started}]\n"),
        py_app(
            "web",
            "web.py",
            &format!("    args: [{port}, none, '0.8', order]\n    depends_on:\n      - {{app: migrate, condition: completed}}\n    ready: {{http: 'http://127.0.0.1:{port}/', interval: 100ms}}\n    listen_timeout: 30s\n"),
        ),
        rec_app("worker", None, None, "    depends_on: [web]\n"),
    ];
    let mut pmi = start(&sb, &format!("apps:\n{}", apps.concat()));
    let c = Ctl::new(&sb);
    pmi.wait_for("web waiting on migrate", wait_time(), || {
        let w = c.inst("web");
        w["status"] == "waiting" && w["waiting_on"][0]["app"] == "migrate"
    });
    let w = c.inst("web");
    assert_eq!(w["waiting_on"][0]["condition"], "completed", "{w}");
    assert_eq!(c.inst("worker")["waiting_on"][0]["app"], "web");
    let table = c.out(&["status"]);
    assert!(
        table.contains("web:0 waiting on migrate (completed)"),
        "{table}"
    );
    let why = c.out(&["health", "--ready"]);
    assert!(why.contains("waiting on migrate (completed)"), "{why}");
    pmi.wait_for("worker online", wait_time(), || {
        c.status_of("worker") == "online"
    });
    pmi.wait_for("worker recorded", wait_time(), || {
        times(&sb, "order").contains_key("worker")
    });
    let t = times(&sb, "order");
    let (migrate, done) = (t["migrate"][0], t["migrate-done"][0]);
    let (web_start, web_listen) = (t["web"][0], t["web"][1]);
    assert!(
        t["side"][0] < done,
        "started: side runs beside migrate {t:?}"
    );
    // (`started` means migrate was spawned; which python writes its line first is a race.)
    assert!(migrate < done, "{t:?}");
    assert!(
        web_start >= done,
        "completed: web after migrate exited {t:?}"
    );
    assert!(
        t["worker"][0] >= web_listen,
        "ready: worker after web answered {t:?}"
    );
    assert_eq!(c.status_of("migrate"), "stopped");
    assert_eq!(
        c.code(&["health", "--ready"]),
        0,
        "a completed job counts as ready"
    );
    // A dependency restarting later does not restart its dependents.
    let worker_pid = c.inst("worker")["pid"].clone();
    assert_eq!(c.code(&["restart", "web"]), 0);
    pmi.wait_for("web online again", wait_time(), || {
        c.status_of("web") == "online"
    });
    assert_eq!(c.inst("worker")["pid"], worker_pid);
}

#[test]
fn a_failed_migration_blocks_its_dependents_and_health_says_why() {
    let sb = Sandbox::new();
    sb.write("rec.py", REC);
    let apps = [
        rec_app(
            "migrate",
            Some("0.2"),
            Some("3"),
            "    autorestart: false\n",
        ),
        rec_app(
            "web",
            None,
            None,
            "    depends_on: [{app: migrate, condition: completed}]\n",
        ),
        rec_app("worker", None, None, "    depends_on: [web]\n"),
        rec_app("other", None, None, ""),
    ];
    let mut pmi = start_with(
        &sb,
        &format!("apps:\n{}", apps.concat()),
        &["--no-auto-exit"],
    );
    let c = Ctl::new(&sb);
    pmi.wait_for("web blocked", wait_time(), || {
        c.status_of("web") == "blocked"
    });
    let w = c.inst("web");
    assert_eq!(w["blocked_by"][0]["app"], "migrate", "{w}");
    assert_eq!(
        w["blocked_by"][0]["reason"], "completed with a failure",
        "{w}"
    );
    let k = c.inst("worker");
    assert_eq!(k["status"], "blocked", "{k}");
    assert!(
        k["blocked_by"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("migrate"),
        "{k}"
    );
    let o = c.run(&["health"]);
    assert_eq!(o.status.code(), Some(1), "blocked counts as errored: {o:?}");
    let why = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(why.contains("web:0 (id 1) is blocked (by migrate (completed): completed with a failure); 0 errored, 2 blocked"), "{why}");
    assert_eq!(c.code(&["health", "--ready"]), 1);
    let d = c.out(&["describe", "web"]);
    assert!(
        d.contains("start order          blocked by migrate (completed): completed with a failure"),
        "{d}"
    );
    assert!(
        !times(&sb, "order").contains_key("web"),
        "a blocked app is never started"
    );
}

#[test]
fn blocked_dependents_let_pmi_exit_with_the_failure() {
    let sb = Sandbox::new();
    sb.write("rec.py", REC);
    let apps = [
        rec_app(
            "db",
            Some("0"),
            Some("4"),
            "    min_uptime: 5s\n    max_restarts: 2\n    ready: notify\n",
        ),
        rec_app("api", None, None, "    depends_on: [db]\n"),
    ];
    let mut pmi = start(&sb, &format!("apps:\n{}", apps.concat()));
    assert_eq!(pmi.wait_exit(wait_time()), 4);
    let err = pmi.stderr();
    assert!(err.contains("api: blocked: db (ready) errored"), "{err}");
    assert!(!times(&sb, "order").contains_key("api"));
}

fn check(sb: &Sandbox, yaml: &str) -> (i32, String) {
    let f = sb.write("apps.yaml", yaml);
    let r = sb.run_pmi([std::path::Path::new("check"), &f]);
    (r.code, format!("{}{}", r.stdout, r.stderr))
}

#[test]
fn start_order_and_check_errors_are_located() {
    let sb = Sandbox::new();
    let tk = q(&testkit());
    let app = |name: &str, extra: &str| {
        format!("  - name: {name}\n    script: {tk}\n    interpreter: none\n{extra}")
    };
    let cases = [
        (
            [
                app("a", "    depends_on: [b]\n"),
                app("b", "    depends_on: [a]\n"),
            ]
            .concat(),
            "apps.yaml:9:18: app 'b' field 'depends_on': dependency cycle: a → b → a",
        ),
        (
            app("a", "    depends_on: [nope]\n"),
            "apps.yaml:5:18: app 'a' field 'depends_on': no app named 'nope'",
        ),
        (
            app("a", "    depends_on: a\n"),
            "an app cannot depend on itself",
        ),
        (
            app("a", "    health: {exec: 'true', interval: 0}\n"),
            "apps.yaml:5:38: app 'a' field 'health.interval': 0 is too short",
        ),
        (app("a", "    ready: {http: 'https://x/'}\n"), "https"),
        (app("a", "    watchdog: -1s\n"), "watchdog"),
    ];
    for (yaml, want) in cases {
        let (code, out) = check(&sb, &format!("apps:\n{yaml}"));
        assert_eq!(code, 2, "{yaml}\n{out}");
        assert!(out.contains(want), "want {want:?} for\n{yaml}\n{out}");
    }
    let warned = [
        (
            [
                app("m", ""),
                app("w", "    depends_on: [{app: m, condition: completed}]\n"),
            ]
            .concat(),
            "'m' must complete, but it has autorestart on",
        ),
        (
            app("p", "    wait_ready: true\n"),
            "does not run under node",
        ),
    ];
    for (yaml, want) in warned {
        let (code, out) = check(&sb, &format!("apps:\n{yaml}"));
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(want), "want {want:?} in\n{out}");
    }
}

#[test]
fn the_example_stack_starts_in_order_and_heals_its_worker() {
    let sb = Sandbox::new();
    let port = free_port().to_string();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stack");
    for f in ["apps.yaml", "migrate.py", "web.py", "worker.py"] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        sb.write(
            f,
            &text
                .replace("/tmp/pmi-stack", &sb.p("state"))
                .replace("8080", &port),
        );
    }
    let mut pmi = sb.pid1([sb.path("apps.yaml")]).start();
    let c = Ctl::new(&sb);
    pmi.wait_for("web waits for the migration", wait_time(), || {
        c.status_of("web") == "waiting"
    });
    pmi.wait_for("the stack is ready", secs(40.0), || {
        c.code(&["health", "--ready"]) == 0
    });
    assert_eq!(c.status_of("migrate"), "stopped");
    assert_eq!(c.inst("migrate")["last_exit"]["code"], 0);
    assert_eq!(c.inst("web")["ready_by"], "check");
    assert_eq!(c.inst("worker")["ready_by"], "notify");
    assert!(http_get(port.parse().unwrap(), "/").starts_with("visits: "));
    // Wedge the worker: its exec health check fails twice, pmi restarts it, it heals.
    pmi.wait_for("worker healthy", secs(40.0), || {
        c.inst("worker")["health"] == "healthy"
    });
    sb.write("state/worker.wedge", "");
    pmi.wait_for("the worker restarted", secs(40.0), || {
        c.inst("worker")["restarts"] == 1
    });
    pmi.wait_for("the worker healthy again", secs(40.0), || {
        let w = c.inst("worker");
        w["health"] == "healthy" && w["ready"] == true
    });
    assert!(
        !sb.exists("state/worker.wedge"),
        "the new process cleared the wedge"
    );
    assert!(
        pmi.stderr()
            .contains("worker:0 unhealthy: 2 health checks failed in a row"),
        "{}",
        pmi.stderr()
    );
    assert_eq!(c.code(&["health", "--ready"]), 0);
}
