//! Robustness of the supervisor, the control socket and the OS side (issues 13 and 14): clean
//! stops of shell apps, probes no follower can lock out, a second supervisor, socket fallbacks,
//! big status answers, frozen apps, and what a killed pmi leaves behind. pmi runs as PID 1 of a
//! new PID namespace (or plainly where the test says so); every wait has a deadline.

mod common;

use std::time::Instant;

use common::*;

/// A shell app whose background `sleep` ignores SIGINT (POSIX, for a non-interactive shell's
/// background jobs), so only its leader stops on pm2's default kill signal.
fn shell_worker(kill_timeout: &str) -> String {
    format!(
        "apps:\n  - name: worker\n    script: sh\n    args: [\"-c\", \"sleep 30 & wait\"]\n    kill_timeout: {kill_timeout}\n"
    )
}

/// How many `sleep` processes run under pmi (`pmi_pid`, host view).
fn sleeps(pmi_pid: i32) -> usize {
    descendants(pmi_pid)
        .into_iter()
        .filter_map(proc_info)
        .filter(|p| p.comm == "sleep")
        .count()
}

/// Runs `file` as PID 1 until a `sleep` runs under it, then sends SIGTERM: (exit code, stop
/// time, pmi's stderr).
fn stop_once_sleeping(sb: &Sandbox, file: &std::path::Path) -> (i32, std::time::Duration, String) {
    let mut pmi = sb.pid1([file]).start();
    let pid = pmi.pid;
    pmi.wait_for("the background sleep", wait_time(), || sleeps(pid) > 0);
    let t = Instant::now();
    pmi.send(libc::SIGTERM);
    let code = pmi.wait_exit(wait_time());
    (code, t.elapsed(), pmi.stderr())
}

#[test]
fn a_shell_whose_background_job_ignores_sigint_stops_cleanly_at_once() {
    let sb = Sandbox::new();
    let file = sb.write("apps.yaml", &shell_worker("5s"));
    for run in 0..5 {
        let (code, took, err) = stop_once_sleeping(&sb, &file);
        assert_eq!(code, 0, "run {run}: a clean stop exits 0\n{err}");
        // The leftover sleep is killed once the shell is gone, not after the 5 s kill_timeout.
        assert!(took < secs(3.0), "run {run}: stop took {took:?}");
        assert!(!err.contains("did not stop"), "run {run}: {err}");
        assert!(
            err.contains("what is left of its group") && err.contains("(sleep 30)"),
            "run {run}: the leftover is named with its pid and command: {err}"
        );
    }
}

#[test]
fn a_leader_that_outlives_its_kill_timeout_is_a_kill_that_names_the_group() {
    let sb = Sandbox::new();
    let yaml = "apps:\n  - name: stubborn\n    script: sh\n    args: [\"-c\", \"trap '' INT TERM; sleep 30 & wait; wait\"]\n    kill_timeout: 300ms\n";
    let file = sb.write("apps.yaml", yaml);
    let (code, _, err) = stop_once_sleeping(&sb, &file);
    assert_eq!(code, 1, "{err}");
    let warn = err
        .lines()
        .find(|l| l.contains("did not stop within its kill_timeout"))
        .unwrap_or_else(|| panic!("no kill warning: {err}"));
    assert!(
        warn.contains("(sleep 30)") && warn.contains("(sh -c"),
        "the warning names every member: {warn}"
    );
}

/// The must-show: the project's own example stops with exit 0, 20 runs in a row.
#[test]
fn the_examples_stop_with_exit_0_twenty_times_in_a_row() {
    let sb = Sandbox::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    sb.mkdir("examples");
    for f in ["apps.yaml", "worker.sh"] {
        let text = std::fs::read_to_string(root.join("examples").join(f)).unwrap();
        sb.write(&format!("examples/{f}"), &text);
    }
    let started = Instant::now();
    for run in 0..20 {
        let mut pmi = sb.pid1(["examples/apps.yaml"]).start();
        let (pid, out) = (pmi.pid, pmi.stdout_path().to_path_buf());
        pmi.wait_for("ticker and both workers", wait_time(), || {
            let out = std::fs::read_to_string(&out).unwrap_or_default();
            out.contains("tick ")
                && out.contains("worker 0: job 1 done")
                && out.contains("worker 1: job 1 done")
                && sleeps(pid) >= 3
        });
        pmi.send(libc::SIGTERM);
        let code = pmi.wait_exit(wait_time());
        assert_eq!(code, 0, "run {run} of 20\n{}", pmi.stderr());
    }
    eprintln!("20 runs in {:?}", started.elapsed());
}

/// A client verb run from the host against the sandbox's socket (`PMI_SOCKET`, as the harness
/// starts pmi with it).
fn cli(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    std::process::Command::new(pmi_bin())
        .args(args)
        .env("PMI_SOCKET", sb.path("pmi.sock"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the pmi client")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The host pid of the first process under pmi whose comm is `comm`.
fn find(pmi_pid: i32, comm: &str) -> Option<i32> {
    descendants(pmi_pid)
        .into_iter()
        .filter_map(proc_info)
        .find(|p| p.comm == comm)
        .map(|p| p.pid)
}

#[test]
fn a_frozen_app_shows_as_paused_and_still_stops_gracefully() {
    let sb = Sandbox::new();
    let app = App::new("frozen", &["sigecho", &sb.p("sig.txt"), "--exit-on", "INT"])
        .set("kill_timeout", "5s");
    let mut pmi = sb.start_apps(&[app], &[]);
    pmi.wait_for("sigecho ready", wait_time(), || {
        sb.exists("sig.txt") && sb.read("sig.txt").contains("ready")
    });
    let pid = pmi.pid;
    let mut app_pid = None;
    pmi.wait_for("the app's process", wait_time(), || {
        app_pid = find(pid, "pmi-testkit");
        app_pid.is_some()
    });
    let app_pid = app_pid.unwrap();
    // SAFETY: plain kill(2) of the test's own grandchild.
    unsafe { libc::kill(app_pid, libc::SIGSTOP) };
    pmi.wait_for("the app to be stopped", wait_time(), || {
        proc_info(app_pid).is_some_and(|p| p.state == 'T')
    });
    let table = text(&cli(&sb, &["status"]));
    assert!(table.contains("online (paused)"), "{table}");
    let json: serde_json::Value =
        serde_json::from_slice(&cli(&sb, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["instances"][0]["paused"], true, "{json}");
    assert_eq!(json["instances"][0]["status"], "online", "{json}");
    let t = Instant::now();
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0, "{}", pmi.stderr());
    assert!(t.elapsed() < secs(4.0), "stopped in {:?}", t.elapsed());
    let rec = sb.read("sig.txt");
    assert!(rec.contains("INT") && rec.contains("bye"), "{rec}");
}

#[test]
fn a_sigkilled_pmi_that_is_not_pid_1_takes_its_apps_with_it() {
    let sb = Sandbox::new();
    let apps: Vec<App> = (0..3)
        .map(|i| App::new(&format!("a{i}"), &["sleep"]))
        .collect();
    let mut pmi = sb.apps_launch(false, &apps, &[]).start();
    let pid = pmi.pid;
    let mut kids = Vec::new();
    pmi.wait_for("three apps", wait_time(), || {
        kids = children_of(pid)
            .into_iter()
            .filter(|p| proc_info(*p).is_some_and(|i| i.comm == "pmi-testkit"))
            .collect();
        kids.len() == 3
    });
    pmi.send(libc::SIGKILL);
    wait_until("pmi to die", wait_time(), || pmi.exited().is_some());
    wait_until("every app to be gone", wait_time(), || {
        kids.iter()
            .all(|p| proc_info(*p).is_none_or(|i| i.state == 'Z'))
    });
}

#[test]
fn a_second_supervisor_on_the_same_socket_refuses_and_starts_nothing() {
    let sb = Sandbox::new();
    let first = App::new("first", &["sleep"]);
    let mut pmi = sb.start_apps(&[first], &[]);
    pmi.wait_for("the first pmi's socket", wait_time(), || {
        cli(&sb, &["health"]).status.success()
    });
    let second = App::new("second", &["record-start", &sb.p("second-started")]);
    let file = sb.write("second.yaml", &apps_yaml(&[second]));
    for pid1 in [true, false] {
        let launch = if pid1 {
            sb.pid1([&file])
        } else {
            sb.plain([&file])
        };
        let ran = launch.run();
        assert_eq!(ran.code, 2, "{}", ran.stderr);
        let want = format!(
            "pmi is already running (pid 1, socket {}); use `pmi status`, `pmi apply`",
            sb.p("pmi.sock")
        );
        assert!(ran.stderr.contains(&want), "{}", ran.stderr);
        assert!(
            !sb.exists("second-started"),
            "the second pmi started an app"
        );
    }
    let table = text(&cli(&sb, &["status"]));
    assert!(
        table.contains("first") && !table.contains("second"),
        "{table}"
    );
    pmi.assert_running("after the second pmi");
}

/// Kills a process group when dropped.
struct GroupGuard(i32);
impl Drop for GroupGuard {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the group this test started.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

/// /run and /tmp unusable (a read-only tmpfs on /run, /tmp remounted read-only) in pmi's own
/// mount namespace: the socket goes to /dev/shm/pmi-<uid> (a fresh tmpfs there), pmi says so,
/// and a client with no PMI_SOCKET finds it.
#[test]
fn with_run_and_tmp_read_only_the_socket_falls_back_to_dev_shm() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let file = sb.write("apps.yaml", &apps_yaml(&[App::new("app", &["sleep"])]));
    let script = format!(
        "set -e; mount -t tmpfs -o ro tmpfs /run; mount --bind /tmp /tmp; mount -o remount,bind,ro /tmp; mount -t tmpfs tmpfs /dev/shm; exec {} {}",
        pmi_bin().display(),
        file.display()
    );
    let err = sb.path("ns.stderr");
    let mut child = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
        ])
        .arg(&script)
        .env_remove("PMI_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(child.id() as i32);
    let mut pid = 0;
    wait_until("pmi in its namespace", wait_time(), || {
        pid = descendants(child.id() as i32)
            .into_iter()
            .find(|p| proc_info(*p).is_some_and(|i| i.comm == "pmi"))
            .unwrap_or(0);
        pid > 0
    });
    let health = || {
        std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-p", "-m", "--"])
            .arg(pmi_bin())
            .arg("health")
            .env_remove("PMI_SOCKET")
            .output()
            .unwrap()
    };
    wait_until("pmi health inside the namespace", wait_time(), || {
        health().status.success()
    });
    let said = std::fs::read_to_string(&err).unwrap();
    assert!(
        said.contains("control socket: /dev/shm/pmi-0/pmi.sock"),
        "{said}"
    );
    // SAFETY: plain kill(2) of the pmi this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// 70 `pmi logs -f` whose readers die (a `docker exec` without -t whose client went away) and 70
/// idle connections: `health` and `status` are still answered at once, and the followers end.
#[test]
fn dead_followers_and_idle_connections_never_lock_out_probes() {
    use std::process::{Command, Stdio};
    let sb = Sandbox::new();
    let mut pmi = sb.start_apps(&[App::new("quiet", &["sleep"])], &[]);
    pmi.wait_for("the socket", wait_time(), || {
        cli(&sb, &["health"]).status.success()
    });
    let pid = pmi.pid;
    let baseline = fd_count(pid);
    let mut followers: Vec<std::process::Child> = (0..70)
        .map(|_| {
            Command::new(pmi_bin())
                .args(["logs", "-f"])
                .env("PMI_SOCKET", sb.path("pmi.sock"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // (One fd of the baseline may be the closing `health` connection above.)
    pmi.wait_for("70 followers connected", wait_time(), || {
        fd_count(pid) + 1 >= baseline + 70
    });
    // Their readers go away; nothing is ever written to them (the app is quiet).
    for f in &mut followers {
        drop(f.stdout.take());
    }
    wait_until("every follower client to exit", wait_time(), || {
        followers
            .iter_mut()
            .all(|f| f.try_wait().unwrap().is_some())
    });
    pmi.wait_for("pmi's followers to end", wait_time(), || {
        fd_count(pid) <= baseline
    });
    let idle: Vec<std::os::unix::net::UnixStream> = (0..70)
        .map(|_| std::os::unix::net::UnixStream::connect(sb.path("pmi.sock")).unwrap())
        .collect();
    for verb in [&["health"][..], &["status"][..], &["health", "--ready"][..]] {
        let t = Instant::now();
        let o = cli(&sb, verb);
        assert!(o.status.success(), "pmi {verb:?}: {}", text(&o));
        assert!(
            t.elapsed() < secs(2.0),
            "pmi {verb:?} took {:?}",
            t.elapsed()
        );
    }
    drop(idle);
}

/// `status`, `status --json` and `describe all` at sizes pmi accepts: an app at the instance
/// maximum and 1500 more apps (not started: a row costs the same), several MiB of answer.
#[test]
fn status_and_describe_work_at_every_size_pmi_accepts() {
    let sb = Sandbox::new();
    let mut apps = vec![
        App::new("running", &["sleep"]),
        App::new("big", &["sleep"])
            .set("instances", "4096")
            .set("autostart", "false"),
    ];
    apps.extend(
        (0..1500).map(|i| App::new(&format!("app{i}"), &["sleep"]).set("autostart", "false")),
    );
    let rows = 1 + 4096 + 1500;
    let mut pmi = sb.start_apps(&apps, &[]);
    pmi.wait_for("the socket", wait_time(), || {
        cli(&sb, &["health"]).status.success()
    });
    let t = Instant::now();
    let o = cli(&sb, &["status", "--json"]);
    assert!(o.status.success(), "status --json: {}", text(&o));
    assert!(o.stdout.len() > 2 << 20, "{} bytes", o.stdout.len());
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["instances"].as_array().map(Vec::len), Some(rows));
    let o = cli(&sb, &["status"]);
    assert!(o.status.success(), "status: {}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.lines().filter(|l| l.contains("stopped")).count() >= rows - 1);
    let o = cli(&sb, &["describe", "all"]);
    assert!(o.status.success(), "describe all: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("app1499"));
    assert!(t.elapsed() < secs(20.0), "took {:?}", t.elapsed());
    // Small answers are unchanged on the same connection type.
    assert!(cli(&sb, &["status", "running"]).status.success());
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

/// The words a user reads: `scale` says what changed, a memory restart names `app:N` and MiB,
/// `pmi logs` puts the time before each line.
#[test]
fn scale_memory_restarts_and_logs_say_what_happened() {
    let sb = Sandbox::new();
    let apps = [
        App::new("web", &["echo", "hello from web", "sleep"]).set("instances", "4"),
        App::new(
            "big",
            &["record-start", &sb.p("big-starts"), "grow-mem", "48", "5"],
        )
        .set("max_memory_restart", "20M"),
    ];
    let file = sb.write(
        "apps.yaml",
        &format!("{}pmi:\n  memory_check_interval: 200ms\n", apps_yaml(&apps)),
    );
    let mut pmi = sb.pid1([&file]).start();
    pmi.wait_for("the socket", wait_time(), || {
        cli(&sb, &["health", "--ready"]).status.success()
    });
    let o = cli(&sb, &["scale", "web", "-3"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "web: scaled 4 → 1 (removed web:1, web:2, web:3)\n"
    );
    let o = cli(&sb, &["scale", "web", "2"]);
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        said.starts_with("web: scaled 1 → 2 (added web:1 pid "),
        "{said}"
    );

    pmi.wait_for("a memory restart", wait_time(), || {
        pmi_said(&sb, "over its max_memory_restart")
    });
    let err = pmi.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("max_memory_restart"))
        .unwrap();
    assert!(
        line.contains("big:0 uses ")
            && line.contains(" MiB, over its max_memory_restart of 20.0 MiB"),
        "{line}"
    );

    let logs = String::from_utf8_lossy(&cli(&sb, &["logs", "web"]).stdout).into_owned();
    let first = logs
        .lines()
        .find(|l| l.contains("hello from web"))
        .unwrap_or_else(|| panic!("{logs}"));
    // `2026-12-02T06:13:52.123Z web:0 | hello from web`
    let (ts, rest) = first.split_once(' ').unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && chrono_like(ts),
        "a time before each line: {first}"
    );
    assert!(rest.starts_with("web:"), "{first}");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn chrono_like(ts: &str) -> bool {
    let b = ts.as_bytes();
    [4, 7].iter().all(|i| b[*i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|i| b[*i] == b':')
        && b[19] == b'.'
}

/// Whether pmi's stderr (the harness writes it to `pmi-*.stderr` in the sandbox) has `needle`.
fn pmi_said(sb: &Sandbox, needle: &str) -> bool {
    std::fs::read_dir(sb.dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".stderr"))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(needle)))
}
