//! pmi as the entrypoint of real Docker containers: images built `FROM scratch` with
//! docker/Dockerfile.scratch and docker/scratch-context.sh (static pmi, busybox-static, the
//! test's apps file, the static pmi-testkit when built), then `docker run/exec/stop/kill`.
//!
//! Needs: a working `docker info` (else every test prints SKIPPED and passes), the release musl
//! binary (`cargo build --release --target x86_64-unknown-linux-musl`, done by .ci/run; `PMI_BIN`
//! overrides), /bin/busybox (busybox-static), python3 with prometheus_client.
//! Every container and image is named after the test and this process's pid and removed on drop,
//! even when the test fails. No fixed sleeps: conditions are polled against deadlines.

mod common;
mod support_http;

use common::wait_until;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support_http::{get, huge_body, prometheus_parse, slowloris, value};

const HTTP_PORT: u16 = 9090;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command, returning its output; never panics on a non-zero exit.
fn cmd(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn docker(args: &[&str]) -> Output {
    cmd("docker", args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// False (after saying so) when Docker is not usable here.
fn docker_available(test: &str) -> bool {
    match Command::new("docker").args(["info"]).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("SKIPPED {test}: `docker info` failed: {}", text(&o).trim());
            false
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot run docker: {e}");
            false
        }
    }
}

fn release_binary(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        repo()
            .join("target/x86_64-unknown-linux-musl/release")
            .join(name)
    })
}

/// A test image; removed on drop.
struct Image {
    name: String,
    _ctx: tempfile::TempDir,
}

impl Image {
    /// Builds `FROM scratch` with docker/Dockerfile.scratch around `apps_yaml`.
    fn build(test: &str, apps_yaml: &str) -> Image {
        Image::build_with(test, "apps.yaml", apps_yaml, |_| {})
    }

    /// `build`, with the apps file named `apps_name` and `add` putting more files into the
    /// image's root (the build context's `rootfs`) before the build.
    fn build_with(
        test: &str,
        apps_name: &str,
        apps_yaml: &str,
        add: impl FnOnce(&std::path::Path),
    ) -> Image {
        let pmi = release_binary("PMI_BIN", "pmi");
        assert!(
            pmi.is_file(),
            "no static pmi at {}: build it first with `cargo build --release --target x86_64-unknown-linux-musl` (.ci/run does)",
            pmi.display()
        );
        let ctx = tempfile::tempdir().unwrap();
        let apps = ctx.path().join(apps_name);
        std::fs::write(&apps, apps_yaml).unwrap();
        let dir = ctx.path().join("ctx");
        let mut c = Command::new(repo().join("docker/scratch-context.sh"));
        c.arg(&dir).arg(&apps).env("PMI_BIN", &pmi);
        let testkit = release_binary("PMI_TESTKIT", "pmi-testkit");
        if testkit.is_file() {
            c.arg(&testkit);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "scratch-context.sh: {}", text(&out));
        add(&dir.join("rootfs"));
        let name = format!("pmi-test-{test}:{}", std::process::id()).replace('_', "-");
        let out = docker(&["build", "-q", "-t", &name, &dir.to_string_lossy()]);
        assert!(out.status.success(), "docker build: {}", text(&out));
        Image { name, _ctx: ctx }
    }

    fn run(&self, test: &str, args: &[&str]) -> Ctr {
        self.run_cmd(test, args, &[])
    }

    /// `run`, with `cmd` instead of the image's CMD.
    fn run_cmd(&self, test: &str, args: &[&str], cmd: &[&str]) -> Ctr {
        let name = format!("pmi-test-{test}-{}", std::process::id()).replace('_', "-");
        let _ = docker(&["rm", "-f", &name]);
        let ctr = Ctr { name };
        let mut all = vec!["run", "-d", "--name", &ctr.name];
        all.extend_from_slice(args);
        all.push(&self.name);
        all.extend_from_slice(cmd);
        let out = docker(&all);
        assert!(out.status.success(), "docker run: {}", text(&out));
        ctr
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.name]);
    }
}

/// A running test container; removed (with its volumes) on drop.
struct Ctr {
    name: String,
}

impl Ctr {
    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    fn logs(&self) -> String {
        text(&docker(&["logs", &self.name]))
    }

    fn inspect(&self, format: &str) -> String {
        let o = docker(&["inspect", "-f", format, &self.name]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn http(&self) -> SocketAddr {
        let ip = self.inspect("{{.NetworkSettings.IPAddress}}");
        format!("{ip}:{HTTP_PORT}")
            .parse()
            .unwrap_or_else(|_| panic!("no IP for {}: {ip:?}", self.name))
    }

    /// The snapshot JSON from /status, once pmi answers.
    fn status(&self) -> Option<serde_json::Value> {
        assert_eq!(
            self.inspect("{{.State.Running}}"),
            "true",
            "{} is not running; logs:\n{}",
            self.name,
            self.logs()
        );
        let addr = self.http();
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        let r = get(addr, "/status");
        (r.status == 200).then(|| serde_json::from_str(&r.body).ok())?
    }

    /// Waits until `n` instances are online (read from /status).
    fn wait_online(&self, n: usize) {
        wait_until(
            &format!("{n} instances online in {}", self.name),
            Duration::from_secs(30),
            || {
                self.status().is_some_and(|s| {
                    s["instances"]
                        .as_array()
                        .is_some_and(|v| v.iter().filter(|i| i["status"] == "online").count() == n)
                })
            },
        );
    }

    fn wait_log(&self, needle: &str) {
        wait_until(
            &format!("{needle:?} in the logs of {}", self.name),
            Duration::from_secs(30),
            || self.logs().contains(needle),
        );
    }

    /// Waits for the container to exit; returns its exit code.
    fn wait_exit(&self, timeout: Duration) -> i64 {
        wait_until(
            &format!("{} to exit; logs:\n{}", self.name, self.logs()),
            timeout,
            || self.inspect("{{.State.Running}}") == "false",
        );
        self.inspect("{{.State.ExitCode}}").parse().unwrap_or(-1)
    }

    /// `docker stop -t GRACE`; returns how long it took and the exit code.
    fn stop(&self, grace_secs: u32) -> (Duration, i64) {
        let start = Instant::now();
        let out = docker(&["stop", "-t", &grace_secs.to_string(), &self.name]);
        assert!(out.status.success(), "docker stop: {}", text(&out));
        let took = start.elapsed();
        (took, self.wait_exit(Duration::from_secs(10)))
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// An apps file with pmi's HTTP endpoint on and `apps` (YAML list items) below.
fn apps_file(apps: &str) -> String {
    format!("pmi:\n  http: \":{HTTP_PORT}\"\napps:\n{apps}")
}

/// A YAML list item for app `name` running the busybox shell `script`, plus `extra` fields.
fn sh_app(name: &str, script: &str, extra: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    let quoted = serde_json::to_string(script).unwrap();
    format!("  - name: {name}\n    script: sh\n    args: [\"-c\", {quoted}]\n{extra}")
}

/// A shell app that reports each of `sigs` (space-separated) on stdout as
/// `<name>:<pm_id> got <SIG>`, and exits 0 after reporting `exit_on`.
fn trap_app(name: &str, extra: &str, sigs: &str, exit_on: &str) -> String {
    let report = |s: &str| format!("echo \"$name:$pm_id got {s}\"");
    let mut script: String = sigs
        .split_whitespace()
        .map(|s| format!("trap '{}' {s}; ", report(s)))
        .collect();
    script += &format!(
        "trap '{}; exit 0' {exit_on}; while true; do sleep 1 & wait $!; done",
        report(exit_on)
    );
    sh_app(name, &script, extra)
}

fn sleeper(name: &str, extra: &str) -> String {
    format!("  - name: {name}\n    script: sleep\n    args: [\"100000\"]\n{extra}")
}

#[test]
fn apps_come_up_and_pmi_status_lists_them() {
    let t = "status";
    if !docker_available(t) {
        return;
    }
    let img = Image::build(
        t,
        &apps_file(&(sleeper("api", "    instances: 2\n") + &sleeper("jobs", ""))),
    );
    let ctr = img.run(t, &[]);
    ctr.wait_online(3);
    let s = ctr.status().unwrap();
    assert_eq!(s["pmi"]["pid"], 1, "pmi is PID 1");
    let o = ctr.exec(&["pmi", "status"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("api") && out.contains("jobs"), "{out}");
    assert_eq!(out.matches("online").count(), 3, "{out}");
    let o = ctr.exec(&["pmi", "status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn docker_exec_orphans_leave_no_zombie() {
    let t = "orphans";
    if !docker_available(t) {
        return;
    }
    let img = Image::build(t, &apps_file(&sleeper("app", "")));
    let ctr = img.run(t, &[]);
    ctr.wait_online(1);
    for _ in 0..3 {
        let o = ctr.sh("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.2 & done; exit 0");
        assert!(o.status.success(), "{}", text(&o));
    }
    // The 30 sleepers were re-parented to pmi; once they end none may stay a zombie.
    wait_until("the orphans to be reaped", Duration::from_secs(20), || {
        let stats = text(&ctr.sh("cat /proc/[0-9]*/stat 2>/dev/null"));
        let procs: Vec<(&str, &str)> = stats
            .lines()
            .filter_map(|l| {
                let (head, rest) = l.rsplit_once(") ")?;
                Some((head.split_once(" (")?.1, rest.split_whitespace().next()?))
            })
            .collect();
        let zombies = procs.iter().filter(|(_, st)| *st == "Z").count();
        // The app itself is the one `sleep` left.
        let sleeps = procs.iter().filter(|(comm, _)| *comm == "sleep").count();
        let reaped = value(
            &prometheus_parse(&get(ctr.http(), "/metrics").body),
            "pmi_reaped_orphans_total",
            None,
        );
        zombies == 0 && sleeps == 1 && reaped.is_some_and(|n| n >= 30.0)
    });
}

#[test]
fn docker_stop_gives_every_app_its_kill_signal_and_exits_0() {
    let t = "stop";
    if !docker_available(t) {
        return;
    }
    let apps = trap_app("a", "    kill_signal: SIGTERM\n", "", "TERM")
        + &trap_app("b", "    instances: 2\n", "", "INT")
        + &trap_app("c", "    kill_signal: SIGUSR2\n", "", "USR2");
    let img = Image::build(t, &apps_file(&apps));
    let ctr = img.run(t, &[]);
    ctr.wait_online(4);
    let (took, code) = ctr.stop(30);
    let logs = ctr.logs();
    for line in ["a:0 got TERM", "b:1 got INT", "b:2 got INT", "c:3 got USR2"] {
        assert!(logs.contains(line), "{line:?} missing:\n{logs}");
    }
    assert_eq!(code, 0, "{logs}");
    assert!(took < Duration::from_secs(10), "docker stop took {took:?}");
}

#[test]
fn an_app_ignoring_its_signal_is_killed_after_kill_timeout() {
    let t = "stubborn";
    if !docker_available(t) {
        return;
    }
    let apps = sh_app(
        "stubborn",
        "trap '' TERM INT; while true; do sleep 1; done",
        "    kill_signal: SIGTERM\n    kill_timeout: 1500\n",
    ) + &sleeper("fine", "");
    let img = Image::build(t, &apps_file(&apps));
    let ctr = img.run(t, &[]);
    ctr.wait_online(2);
    let (took, code) = ctr.stop(30);
    // pmi, not docker (which would give 137 after 30 s), killed it: exit 1, soon after 1.5 s.
    assert_eq!(code, 1, "{}", ctr.logs());
    assert!(
        took >= Duration::from_millis(1400),
        "stopped too soon: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "docker stop took {took:?}");
}

#[test]
fn docker_kill_hup_and_usr1_reach_every_app() {
    let t = "forward";
    if !docker_available(t) {
        return;
    }
    let apps = trap_app("a", "    instances: 2\n", "HUP USR1", "INT")
        + &trap_app("b", "", "HUP USR1", "INT");
    let img = Image::build(t, &apps_file(&apps));
    let ctr = img.run(t, &[]);
    ctr.wait_online(3);
    for sig in ["HUP", "USR1"] {
        let o = docker(&["kill", "-s", sig, &ctr.name]);
        assert!(o.status.success(), "{}", text(&o));
        for inst in ["a:0", "a:1", "b:2"] {
            ctr.wait_log(&format!("{inst} got {sig}"));
        }
    }
    let m = prometheus_parse(&get(ctr.http(), "/metrics").body);
    assert!(value(&m, "pmi_forwarded_signals_total", None).is_some_and(|n| n >= 2.0));
    assert_eq!(
        ctr.inspect("{{.State.Running}}"),
        "true",
        "HUP must not stop pmi"
    );
}

#[test]
fn the_failing_app_sets_the_container_exit_code() {
    let t = "exitcode";
    if !docker_available(t) {
        return;
    }
    // An app errored after max_restarts unstable runs.
    let crash = sh_app(
        "crash",
        "exit 5",
        "    max_restarts: 2\n    min_uptime: 10000\n",
    );
    let img = Image::build(t, &apps_file(&crash));
    let ctr = img.run(t, &[]);
    assert_eq!(ctr.wait_exit(Duration::from_secs(30)), 5, "{}", ctr.logs());
    drop(ctr);
    // A single app exiting 3 with autorestart false.
    let once = sh_app("once", "exit 3", "    autorestart: false\n");
    let img2 = Image::build("exitcode-once", &apps_file(&once));
    let ctr = img2.run(t, &[]);
    assert_eq!(ctr.wait_exit(Duration::from_secs(30)), 3, "{}", ctr.logs());
}

#[test]
fn healthcheck_turns_unhealthy_when_an_app_is_errored() {
    let t = "health";
    if !docker_available(t) {
        return;
    }
    let flaky = sh_app(
        "flaky",
        "while [ ! -e /tmp/crash ]; do sleep 0.1; done; exit 1",
        "    max_restarts: 2\n    min_uptime: 600000\n",
    );
    let img = Image::build(t, &apps_file(&(sleeper("steady", "") + &flaky)));
    // The image's HEALTHCHECK is `pmi health`; only its timing is shortened here.
    let ctr = img.run(
        t,
        &[
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--health-timeout",
            "5s",
        ],
    );
    ctr.wait_online(2);
    let health = || ctr.inspect("{{.State.Health.Status}}");
    wait_until("healthy", Duration::from_secs(30), || health() == "healthy");
    assert!(ctr.sh("touch /tmp/crash").status.success());
    wait_until(
        "unhealthy once flaky is errored",
        Duration::from_secs(30),
        || health() == "unhealthy",
    );
    let log = ctr.inspect("{{json .State.Health.Log}}");
    assert!(log.contains("flaky"), "the reason names the app: {log}");
}

/// Runs `args` with a sleeper app and checks that pmi works and writes only under `allowed`.
fn runs_restricted(t: &str, args: &[&str], socket: &str, allowed: &[&str]) {
    if !docker_available(t) {
        return;
    }
    let img = Image::build(t, &apps_file(&sleeper("app", "    instances: 2\n")));
    let ctr = img.run(t, args);
    ctr.wait_online(2);
    let o = ctr.exec(&["pmi", "status"]);
    assert!(o.status.success(), "pmi status: {}", text(&o));
    let o = ctr.exec(&["test", "-S", socket]);
    assert!(o.status.success(), "no socket at {socket}");
    let diff = text(&docker(&["diff", &ctr.name]));
    for line in diff.lines() {
        let path = line.split_whitespace().nth(1).unwrap_or("");
        assert!(
            allowed
                .iter()
                .any(|a| path == *a || path.starts_with(&format!("{a}/"))),
            "pmi wrote outside {allowed:?}: {line}"
        );
    }
    let (_, code) = ctr.stop(20);
    assert_eq!(code, 0, "{}", ctr.logs());
}

#[test]
fn read_only_root_with_tmpfs_run_works() {
    runs_restricted(
        "readonly",
        &["--read-only", "--tmpfs", "/run"],
        "/run/pmi/pmi.sock",
        &[],
    );
}

#[test]
fn a_non_root_user_works() {
    runs_restricted(
        "user",
        &["--user", "1000:1000"],
        "/tmp/pmi-1000/pmi.sock",
        &["/tmp"],
    );
}

/// The usual hardened combination: the root-owned tmpfs /run refuses /run/pmi, /tmp is read-only;
/// Docker's writable /dev/shm keeps a socket, and `docker exec` finds it.
#[test]
fn read_only_with_tmpfs_run_as_a_user_keeps_a_socket_in_dev_shm() {
    let t = "shm";
    if !docker_available(t) {
        return;
    }
    let args = ["--read-only", "--tmpfs", "/run", "--user", "1000:1000"];
    runs_restricted(t, &args, "/dev/shm/pmi-1000/pmi.sock", &[]);
    let img = Image::build(t, &apps_file(&sleeper("app", "")));
    let ctr = img.run(t, &args);
    ctr.wait_online(1);
    let o = ctr.exec(&["pmi", "health"]);
    assert!(o.status.success(), "pmi health: {}", text(&o));
    assert!(
        ctr.logs()
            .contains("control socket: /dev/shm/pmi-1000/pmi.sock"),
        "pmi says where its socket is: {}",
        ctr.logs()
    );
}

#[test]
fn http_probes_metrics_and_status_in_a_container() {
    let t = "http";
    if !docker_available(t) {
        return;
    }
    let oneshot = sh_app(
        "oneshot",
        "while [ ! -e /tmp/go ]; do sleep 0.1; done",
        "    autorestart: false\n",
    );
    let apps = sleeper("web", "    instances: 2\n") + &sleeper("worker", "") + &oneshot;
    let img = Image::build(t, &apps_file(&apps));
    let ctr = img.run(t, &[]);
    ctr.wait_online(4);
    let addr = ctr.http();
    assert_eq!(get(addr, "/livez").status, 200);
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/readyz").status, 200);

    let m = prometheus_parse(&get(addr, "/metrics").body);
    for id in ["0", "1", "2", "3"] {
        assert_eq!(
            value(&m, "pmi_instance_up", Some(id)),
            Some(1.0),
            "pm_id {id}"
        );
        assert!(value(&m, "pmi_instance_memory_bytes", Some(id)).is_some_and(|b| b > 0.0));
        assert!(value(&m, "pmi_instance_cpu_seconds_total", Some(id)).is_some());
        assert!(value(&m, "pmi_instance_uptime_seconds", Some(id)).is_some());
    }
    assert!(value(&m, "pmi_start_time_seconds", None).is_some_and(|t| t > 1.6e9));
    let s = ctr.status().unwrap();
    assert_eq!(s["instances"].as_array().unwrap().len(), 4);

    // A one-shot job that completed (exit 0, autorestart false) counts as ready (SPEC §10), and
    // pmi stays live.
    assert!(ctr.sh("touch /tmp/go").status.success());
    wait_until("oneshot completed", Duration::from_secs(20), || {
        ctr.status().is_some_and(|s| {
            s["instances"].as_array().is_some_and(|v| {
                v.iter()
                    .any(|i| i["name"] == "oneshot" && i["status"] == "stopped")
            })
        })
    });
    assert_eq!(get(addr, "/readyz").status, 200);
    assert_eq!(get(addr, "/livez").status, 200);
    let o = ctr.exec(&["pmi", "stop", "worker"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = get(addr, "/readyz");
    assert_eq!(r.status, 503, "readiness after pmi stop worker");
    assert!(r.body.contains("worker"), "{}", r.body);
}

#[test]
fn hostile_http_clients_do_not_stall_pmi() {
    let t = "slowloris";
    if !docker_available(t) {
        return;
    }
    let img = Image::build(t, &apps_file(&sleeper("app", "")));
    let ctr = img.run(t, &[]);
    ctr.wait_online(1);
    let addr = ctr.http();
    // More slowloris clients than connection slots, and a 10 MB request.
    let hogs: Vec<_> = (0..40).map(|_| slowloris(addr)).collect();
    let (r, refused) = huge_body(addr, "POST", "/status");
    assert!(matches!(r.status, 405 | 503), "{r:?}");
    assert!(refused, "the 10 MB body was read");
    // The supervisor still answers at once, and HTTP answers (503 busy while full, never hangs).
    let start = Instant::now();
    let r = get(addr, "/livez");
    assert!(matches!(r.status, 200 | 503), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "HTTP hung: {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let o = ctr.exec(&["pmi", "status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "status took {:?}",
        start.elapsed()
    );
    // Once the header timeout has cut the hogs, probes are served again.
    wait_until(
        "/livez 200 after the hogs are cut",
        Duration::from_secs(20),
        || get(addr, "/livez").status == 200,
    );
    drop(hogs);
}

/// Copies the host's `node` and the shared libraries it links (as `ldd` lists them) into an
/// image root: a FROM-scratch image can run Node without a base image.
fn add_node(root: &std::path::Path) -> Result<(), String> {
    let node = cmd("sh", &["-c", "command -v node"]);
    let node = String::from_utf8_lossy(&node.stdout).trim().to_string();
    if node.is_empty() {
        return Err("no node on PATH".into());
    }
    let copy = |from: &str, to: &std::path::Path| -> Result<(), String> {
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(from, to).map_err(|e| format!("{from}: {e}"))?;
        Ok(())
    };
    copy(&node, &root.join("usr/local/bin/node"))?;
    let ldd = cmd("ldd", &[&node]);
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_string);
        if let Some(p) = path {
            let real = std::fs::canonicalize(&p).map_err(|e| format!("{p}: {e}"))?;
            copy(
                &real.to_string_lossy(),
                &root.join(p.trim_start_matches('/')),
            )?;
        }
    }
    Ok(())
}

/// The pm2 file, unchanged, with an unchanged Node app on 3000, in a real container
/// limited to 2 CPUs: every instance serves (`instances: 'max'` counts 2).
#[test]
fn the_pm2_cluster_file_serves_from_every_instance_in_a_container() {
    let t = "cluster";
    if !docker_available(t) {
        return;
    }
    for (instances, n) in [("4", 4usize), ("'max'", 2)] {
        let file = format!("module.exports = {{\n  apps: [{{\n    name: 'pm2-app',\n    script: './dist/app.js',\n    watch: false,\n    exec_mode: 'cluster_mode',\n    cron_restart: '*/2 * * * *',\n    instances: {instances},\n    log_date_format: 'YY-MM-DD HH:mm:ss Z',\n    env: {{ NODE_ENV: 'production', NO_PROXY: 'localhost' }},\n  }}],\n}};\n");
        let mut added = Ok(());
        let img = Image::build_with(t, "pm2.config.js", &file, |root| {
            added = add_node(root);
            let app = "const http = require('http');\nhttp.createServer((req, res) => res.end(`pid ${process.pid}\\n`)).listen(3000);\n";
            let dist = root.join("app/dist");
            std::fs::create_dir_all(&dist).unwrap();
            std::fs::write(dist.join("app.js"), app).unwrap();
        });
        if let Err(e) = added {
            eprintln!("SKIPPED {t}: cannot put node into the image: {e}");
            return;
        }
        let ctr = img.run_cmd(t, &["--cpus", "2"], &["pm2.config.js"]);
        let mut pids: Vec<i64> = Vec::new();
        wait_until(
            &format!("{n} instances online; logs:\n{}", ctr.logs()),
            Duration::from_secs(30),
            || {
                let o = ctr.exec(&["pmi", "status", "--json"]);
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                let all = v["instances"].as_array().cloned().unwrap_or_default();
                pids = all
                    .iter()
                    .filter(|i| i["status"] == "online")
                    .filter_map(|i| i["pid"].as_i64())
                    .collect();
                all.len() == n && pids.len() == n
            },
        );
        let ip = ctr.inspect("{{.NetworkSettings.IPAddress}}");
        let addr: SocketAddr = format!("{ip}:3000").parse().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut failed = Vec::new();
        let start = Instant::now();
        // Bounded: at most 2000 requests or 30 s; every failure counted.
        for _ in 0..2000 {
            if pids.iter().all(|p| seen.contains(p)) || start.elapsed() > Duration::from_secs(30) {
                break;
            }
            let r = get(addr, "/");
            match r
                .body
                .trim()
                .strip_prefix("pid ")
                .and_then(|p| p.parse::<i64>().ok())
            {
                Some(p) if r.status == 200 => {
                    seen.insert(p);
                }
                _ => failed.push(format!("{r:?}")),
            }
        }
        assert!(
            failed.is_empty(),
            "{} failed: {:?}\n{}",
            failed.len(),
            &failed[..failed.len().min(3)],
            ctr.logs()
        );
        assert!(
            pids.iter().all(|p| seen.contains(p)),
            "answers from {seen:?}, instances {pids:?}\n{}",
            ctr.logs()
        );
        eprintln!("container, instances {instances}: every one of {pids:?} served");
    }
}
