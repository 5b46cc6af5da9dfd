//! Cluster mode end to end (SPEC §9, issue 9): pmi as PID 1 with real Node and Python apps on
//! its shared sockets, a bounded load client on loopback that counts every failure, reloads,
//! restarts and cron restarts under load, rollback of a broken replacement, pm2's ready and
//! shutdown messages, bind errors, and hostile apps (fd 3 closed, a flooded IPC channel).
//!
//! Ports: the issue's own file listens on 3000 (one test uses it, its cases in turn); every other
//! test has its own port, so tests can run side by side.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::load::{get_pid, Load};
use common::{pmi_bin, secs, Pmi, Sandbox};
use serde_json::Value;

/// The node under test: `PMI_TEST_NODE` (e.g. Debian's Node 18), else the `node` on PATH.
fn node() -> String {
    std::env::var("PMI_TEST_NODE").unwrap_or_else(|_| "node".into())
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The unchanged app of the issue: an HTTP server on a fixed port, nothing else.
fn plain_app(port: u16) -> String {
    format!(
        "const http = require('http');\n\
         http.createServer((req, res) => res.end(`pid ${{process.pid}}\\n`)).listen({port});\n"
    )
}

/// `pmi ARGS` against the sandbox's pmi.
fn ctl(sb: &Sandbox, args: &[&str]) -> Output {
    Command::new(pmi_bin())
        .args(args)
        .env("PMI_SOCKET", sb.path("pmi.sock"))
        .output()
        .expect("run the pmi client")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn status(sb: &Sandbox) -> Option<Value> {
    let o = ctl(sb, &["status", "--json"]);
    serde_json::from_slice(&o.stdout).ok()
}

/// The pids of `app`'s instances once all `n` are online.
fn online_pids(sb: &Sandbox, pmi: &mut Pmi, app: &str, n: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    pmi.wait_for(
        &format!("{n} instances of {app} online"),
        secs(20.0),
        || {
            let Some(v) = status(sb) else { return false };
            let mine: Vec<&Value> = v["instances"]
                .as_array()
                .map(|a| a.iter().filter(|i| i["name"] == app).collect())
                .unwrap_or_default();
            pids = mine
                .iter()
                .filter(|i| i["status"] == "online")
                .filter_map(|i| i["pid"].as_i64())
                .map(|p| p as i32)
                .collect();
            mine.len() == n && pids.len() == n
        },
    );
    pids
}

/// Starts pmi as PID 1 on `file` (in the sandbox).
fn start(sb: &Sandbox, file: &str) -> Pmi {
    sb.pid1([file]).start()
}

/// A load of `clients` sequential clients (at most 200 000 requests, 90 s), once the port
/// answers: a Node cluster app without `listen` has its socket only once it listens.
fn load(port: u16, clients: usize) -> Load {
    common::wait_until(&format!("port {port} to answer"), secs(20.0), || {
        get_pid(addr(port), "/").is_ok()
    });
    Load::start(addr(port), clients, 200_000, secs(90.0))
}

fn assert_clean(tally: &common::load::Tally, pmi: &Pmi, what: &str) -> u64 {
    let (pids, failures) = tally;
    let total: u64 = pids.values().sum();
    assert!(
        failures.is_empty(),
        "{what}: {} of {} requests failed, first: {:?}\n{}",
        failures.len(),
        total + failures.len() as u64,
        &failures[..failures.len().min(5)],
        pmi.stderr()
    );
    eprintln!("{what}: {total} requests, 0 failed, by pid {pids:?}");
    total
}

/// `pmi VERB APP` `rounds` times under a bounded load, each round once every instance of the
/// last one answered; asserts that no request failed. Returns (pids before, pids after, what
/// the verb printed) per round.
fn under_load(
    sb: &Sandbox,
    pmi: &mut Pmi,
    (app, n, port): (&str, usize, u16),
    verb: &str,
    rounds: usize,
) -> Vec<(Vec<i32>, Vec<i32>, String)> {
    let mut pids = online_pids(sb, pmi, app, n);
    let l = load(port, 4);
    l.until_all_answer(100, &pids);
    let mut out = Vec::new();
    for round in 0..rounds {
        let t0 = Instant::now();
        let o = ctl(sb, &[verb, app]);
        assert!(o.status.success(), "{verb} {round}: {}", text(&o));
        let new = online_pids(sb, pmi, app, n);
        eprintln!("{verb} of {n}: {} ms", t0.elapsed().as_millis());
        l.until_all_answer(l.sent() + 100, &new);
        out.push((std::mem::replace(&mut pids, new.clone()), new, text(&o)));
    }
    let tally = l.finish();
    assert_clean(&tally, pmi, &format!("{verb} of {n} instances of {app}"));
    out
}

// ------------------------------------------------------------------ the issue's own file

#[test]
fn the_pm2_file_serves_from_every_instance_with_1_4_and_max() {
    for instances in ["1", "4", "'max'"] {
        let sb = Sandbox::new();
        std::fs::create_dir_all(sb.path("dist")).unwrap();
        sb.write("dist/app.js", &plain_app(3000));
        sb.write(
            "pm2.config.js",
            &format!(
                "module.exports = {{\n  apps: [{{\n    name: 'pm2-app',\n    script: './dist/app.js',\n    watch: false,\n    exec_mode: 'cluster_mode',\n    cron_restart: '*/2 * * * *',\n    instances: {instances},\n    log_date_format: 'YY-MM-DD HH:mm:ss Z',\n    env: {{ NODE_ENV: 'production', NO_PROXY: 'localhost' }},\n  }}],\n}};\n"
            ),
        );
        let mut pmi = start(&sb, "pm2.config.js");
        let n = match instances {
            "'max'" => {
                let mut n = 0;
                pmi.wait_for("the instance count", secs(10.0), || {
                    n = status(&sb)
                        .and_then(|v| v["instances"].as_array().map(|a| a.len()))
                        .unwrap_or(0);
                    n > 0
                });
                n
            }
            n => n.parse().unwrap(),
        };
        let pids = online_pids(&sb, &mut pmi, "pm2-app", n);
        let l = load(3000, 4);
        l.until_all_answer(50 * n as u64, &pids);
        let tally = l.finish();
        assert_clean(&tally, &pmi, &format!("instances {instances}"));
        // Still all there, none crashed with EADDRINUSE; health is fine.
        assert_eq!(online_pids(&sb, &mut pmi, "pm2-app", n), pids);
        let h = ctl(&sb, &["health"]);
        assert!(h.status.success(), "{}", text(&h));
        assert!(!pmi.stderr().contains("EADDRINUSE"), "{}", pmi.stderr());
    }
}

// ------------------------------------------------------------------ reload, restart, cron

fn cluster_yaml(name: &str, script: &str, instances: u32, extra: &str) -> String {
    format!(
        "apps:\n  - name: {name}\n    script: {script}\n    interpreter: {}\n    exec_mode: cluster_mode\n    instances: {instances}\n{extra}",
        node()
    )
}

#[test]
fn reload_under_load_loses_no_request_with_1_and_4_instances() {
    for (n, port) in [(1usize, 3101u16), (4, 3102)] {
        let sb = Sandbox::new();
        sb.write("app.js", &plain_app(port));
        sb.write("apps.yaml", &cluster_yaml("web", "app.js", n as u32, ""));
        let mut pmi = start(&sb, "apps.yaml");
        for (old, new, said) in under_load(&sb, &mut pmi, ("web", n, port), "reload", 2) {
            // Answered once complete: the new pids serve, the old ones are gone.
            assert!(new.iter().all(|p| !old.contains(p)), "{old:?} → {new:?}");
            assert!(
                new.iter().all(|p| said.contains(&format!("pid {p}"))),
                "{said}"
            );
        }
    }
}

#[test]
fn restart_under_load_loses_no_request_as_connections_queue() {
    let port = 3103;
    let sb = Sandbox::new();
    sb.write("app.js", &plain_app(port));
    sb.write("apps.yaml", &cluster_yaml("web", "app.js", 1, ""));
    let mut pmi = start(&sb, "apps.yaml");
    under_load(&sb, &mut pmi, ("web", 1, port), "restart", 2);
}

#[test]
fn cron_restarts_under_load_lose_no_request() {
    let port = 3104;
    let sb = Sandbox::new();
    sb.write("app.js", &plain_app(port));
    sb.write(
        "apps.yaml",
        &cluster_yaml("web", "app.js", 1, "    cron_restart: '*/3 * * * * *'\n"),
    );
    let mut pmi = start(&sb, "apps.yaml");
    let first = online_pids(&sb, &mut pmi, "web", 1);
    let l = load(port, 4);
    l.until_all_answer(50, &first);
    let mut seen: BTreeSet<i32> = first.iter().copied().collect();
    pmi.wait_for("three cron restarts", secs(30.0), || {
        if let Some(v) = status(&sb) {
            for i in v["instances"].as_array().into_iter().flatten() {
                if let Some(p) = i["pid"].as_i64() {
                    seen.insert(p as i32);
                }
            }
        }
        seen.len() >= 4
    });
    let last = online_pids(&sb, &mut pmi, "web", 1);
    l.until_all_answer(l.sent() + 50, &last);
    let tally = l.finish();
    assert_clean(&tally, &pmi, "cron restarts");
    assert!(pmi.stderr().contains("cron restart"), "{}", pmi.stderr());
}

// ------------------------------------------------------------------ rollback

/// An app that exits at once while `broken` exists in its cwd, and that never says ready while
/// `silent` exists.
fn flag_app(port: u16) -> String {
    format!(
        "const fs = require('fs');\n\
         if (fs.existsSync('broken')) {{ console.error('broken on purpose'); process.exit(3); }}\n\
         const http = require('http');\n\
         http.createServer((req, res) => res.end(`pid ${{process.pid}}\\n`)).listen({port}, () => {{\n\
           if (!fs.existsSync('silent')) process.send('ready');\n\
         }});\n"
    )
}

#[test]
fn a_broken_replacement_is_rolled_back_and_reload_says_why() {
    let port = 3105;
    let sb = Sandbox::new();
    sb.write("app.js", &flag_app(port));
    let extra = "    wait_ready: true\n    listen_timeout: 1500\n";
    sb.write("apps.yaml", &cluster_yaml("web", "app.js", 2, extra));
    let mut pmi = start(&sb, "apps.yaml");
    let old = online_pids(&sb, &mut pmi, "web", 2);
    let l = load(port, 2);
    l.until_all_answer(50, &old);

    // A replacement that exits at start.
    sb.write("broken", "");
    let o = ctl(&sb, &["reload", "web"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("web:0") && said.contains("exited"), "{said}");
    assert_eq!(
        online_pids(&sb, &mut pmi, "web", 2),
        old,
        "the old ones keep serving"
    );
    l.until_all_answer(l.sent() + 50, &old);

    // A replacement that never says ready: stopped after listen_timeout.
    std::fs::remove_file(sb.path("broken")).unwrap();
    sb.write("silent", "");
    let t0 = Instant::now();
    let o = ctl(&sb, &["reload", "web"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.contains("web:0") && said.contains("listen_timeout"),
        "{said}"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(online_pids(&sb, &mut pmi, "web", 2), old);

    // Fixed: the reload goes through.
    std::fs::remove_file(sb.path("silent")).unwrap();
    let o = ctl(&sb, &["reload", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    let new = online_pids(&sb, &mut pmi, "web", 2);
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} → {new:?}");
    l.until_all_answer(l.sent() + 50, &new);
    let tally = l.finish();
    assert_clean(&tally, &pmi, "rollbacks");
}

// ------------------------------------------------------------------ pm2's messages

#[test]
fn wait_ready_waits_for_process_send_ready() {
    let port = 3106;
    let sb = Sandbox::new();
    // Ready 800 ms after listening: a reload must not stop the old one before.
    sb.write(
        "app.js",
        &format!(
            "const fs = require('fs');\n\
             fs.writeFileSync(`send-${{process.pid}}`, typeof process.send);\n\
             require('http').createServer((q, r) => r.end(`pid ${{process.pid}}\\n`)).listen({port}, () => {{\n\
               setTimeout(() => {{ fs.writeFileSync(`ready-${{process.pid}}`, String(Date.now())); process.send('ready'); }}, 800);\n\
             }});\n"
        ),
    );
    // Fork mode: the channel is there for every Node app.
    sb.write(
        "fork.js",
        "require('fs').writeFileSync('fork-send', typeof process.send); setInterval(() => {}, 1000);\n",
    );
    let yaml = format!(
        "{}  - name: forked\n    script: fork.js\n    interpreter: {}\n",
        cluster_yaml("web", "app.js", 1, "    wait_ready: true\n"),
        node()
    );
    sb.write("apps.yaml", &yaml);
    let mut pmi = start(&sb, "apps.yaml");
    let old = online_pids(&sb, &mut pmi, "web", 1);
    pmi.wait_for("the fork-mode app", secs(10.0), || sb.exists("fork-send"));
    assert_eq!(sb.read("fork-send"), "function");
    let o = ctl(&sb, &["reload", "web"]);
    let done = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(o.status.success(), "{}", text(&o));
    let new = online_pids(&sb, &mut pmi, "web", 1)[0];
    assert_ne!(new, old[0]);
    assert_eq!(sb.read(&format!("send-{new}")), "function");
    // The reload was answered after the replacement's ready message.
    let ready: u128 = sb.read(&format!("ready-{new}")).trim().parse().unwrap();
    assert!(ready <= done, "ready at {ready}, answered at {done}");
    assert!(!pmi.stderr().contains("process.send is not a function"));
}

#[test]
fn shutdown_with_message_sends_shutdown_instead_of_the_signal() {
    let sb = Sandbox::new();
    // Ignores SIGINT: only the message can stop it in time.
    sb.write(
        "app.js",
        "process.on('SIGINT', () => {});\n\
         process.on('message', (m) => { if (m === 'shutdown') { require('fs').writeFileSync('got', String(m)); process.exit(0); } });\n\
         setInterval(() => {}, 1000);\n",
    );
    let yaml = format!(
        "apps:\n  - name: msg\n    script: app.js\n    interpreter: {}\n    shutdown_with_message: true\n    kill_timeout: 8000\n",
        node()
    );
    sb.write("apps.yaml", &yaml);
    let mut pmi = start(&sb, "apps.yaml");
    online_pids(&sb, &mut pmi, "msg", 1);
    let t0 = Instant::now();
    let o = ctl(&sb, &["stop", "msg"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(t0.elapsed() < secs(5.0), "took {:?}", t0.elapsed());
    assert_eq!(sb.read("got"), "shutdown");
}

// ------------------------------------------------------------------ bind errors

#[test]
fn bind_errors_are_located_config_errors_and_nothing_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let sb = Sandbox::new();
    sb.write("plain-file", "not a socket");
    let cases = [
        (format!("'127.0.0.1:{busy}'"), "in use"),
        ("'example.com:80'".to_string(), "not an ip address"),
        (
            format!("'unix:{}'", sb.p("missing/dir/app.sock")),
            "does not exist",
        ),
        (format!("'unix:{}'", sb.p("plain-file")), "not a socket"),
    ];
    for (value, why) in cases {
        let yaml = format!(
            "apps:\n  - name: web\n    script: started.sh\n    interpreter: sh\n    listen: [3999, {value}]\n"
        );
        sb.write("started.sh", "touch started; sleep 5\n");
        sb.write("apps.yaml", &yaml);
        let ran = sb.run_pmi(["apps.yaml"]);
        assert_eq!(ran.code, 2, "{value}: {ran:?}");
        assert!(
            ran.stderr.contains("apps.yaml:5:"),
            "{value}: {}",
            ran.stderr
        );
        assert!(ran.stderr.contains("'listen'"), "{value}: {}", ran.stderr);
        assert!(
            ran.stderr.to_lowercase().contains(why),
            "{value}: want {why:?} in {}",
            ran.stderr
        );
        assert!(!sb.exists("started"), "{value}: the app was started");
    }
    drop(taken);
}

// ------------------------------------------------------------------ other languages, hostile apps

fn python() -> String {
    std::env::var("PMI_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn a_python_app_reads_listen_fds_and_every_instance_serves() {
    let port = 3107;
    let sb = Sandbox::new();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/listen_fds.py");
    let yaml = format!(
        "apps:\n  - name: py\n    script: {}\n    interpreter: {}\n    instances: 2\n    listen: {port}\n    kill_signal: SIGTERM\n",
        script.display(),
        python()
    );
    sb.write("apps.yaml", &yaml);
    let mut pmi = start(&sb, "apps.yaml");
    under_load(&sb, &mut pmi, ("py", 2, port), "reload", 1);
}

#[test]
fn an_app_that_closes_fd_3_harms_nothing() {
    let port = 3108;
    let sb = Sandbox::new();
    let yaml = format!(
        "apps:\n  - name: closer\n    script: closer.sh\n    interpreter: sh\n    listen: {port}\n    restart_delay: 200\n"
    );
    sb.write(
        "closer.sh",
        "exec 3>&-\necho closed >> closed\nsleep 0.3\nexit 1\n",
    );
    sb.write("apps.yaml", &yaml);
    let mut pmi = start(&sb, "apps.yaml");
    pmi.wait_for("a few runs", secs(15.0), || sb.lines("closed").len() >= 3);
    // pmi still holds the socket: a connection is queued, not refused.
    let c = TcpStream::connect_timeout(&addr(port), secs(2.0));
    assert!(c.is_ok(), "{c:?}");
    assert!(status(&sb).is_some(), "pmi answers");
    pmi.assert_running("after the app closed fd 3");
}

#[test]
fn an_app_flooding_its_ipc_channel_cannot_stall_pmi() {
    let sb = Sandbox::new();
    sb.write(
        "flood.js",
        "const big = 'x'.repeat(100000);\n\
         const junk = '{not json'.repeat(100);\n\
         setInterval(() => { for (let i = 0; i < 200; i++) { process.send(i % 2 ? big : junk); } }, 1);\n",
    );
    let yaml = format!(
        "apps:\n  - name: flood\n    script: flood.js\n    interpreter: {}\n",
        node()
    );
    sb.write("apps.yaml", &yaml);
    let mut pmi = start(&sb, "apps.yaml");
    online_pids(&sb, &mut pmi, "flood", 1);
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    while t0.elapsed() < secs(4.0) {
        let t = Instant::now();
        assert!(status(&sb).is_some(), "status answers during the flood");
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(worst < secs(2.0), "slowest status: {worst:?}");
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", pmi.pid))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kb < 16 * 1024, "pmi's RSS grew to {rss_kb} kB");
    pmi.assert_running("during the flood");
}
