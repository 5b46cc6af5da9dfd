//! Black-box tests of the control socket: the real `pmi` as PID 1 of a new PID namespace
//! (`unshare --pid --fork --mount-proc`), the verbs run inside it with `nsenter -t PID -p -m`, as
//! `docker exec` does. Each test has a watchdog, polls with deadlines, and kills what it started.
//! Needs root and util-linux; skipped (with a message) otherwise.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const SECRET: &str = "s3cr3t-value-7f1c";
const DEADLINE: Duration = Duration::from_secs(20);

fn pmi_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pmi")
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["unshare", "nsenter", "setpriv"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !(root && tools) {
        eprintln!("skipped: needs root and unshare/nsenter/setpriv");
    }
    root && tools
}

fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    common::wait_until(what, DEADLINE, cond);
}

/// Kills a process when dropped, or when the test overruns.
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    fn new(pid: i32, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: test overran {limit:?}; killing pmi {pid}");
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                std::process::exit(101);
            }
        });
        Watchdog { done: Some(tx) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(d) = self.done.take() {
            let _ = d.send(());
        }
    }
}

/// One pmi, PID 1 of its own namespace, with its socket in a temp dir.
struct Pmi {
    unshare: Child,
    /// pmi's pid as the host sees it.
    pid: i32,
    sock: PathBuf,
    dir: tempfile::TempDir,
    _wd: Watchdog,
}

impl Pmi {
    fn start(apps_yaml: &str) -> Pmi {
        Pmi::start_with(apps_yaml, &[])
    }

    fn start_with(apps_yaml: &str, flags: &[&str]) -> Pmi {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.path().join("ctl").join("pmi.sock");
        Pmi::start_at(apps_yaml, dir, sock, flags)
    }

    fn start_at(apps_yaml: &str, dir: tempfile::TempDir, sock: PathBuf, flags: &[&str]) -> Pmi {
        let apps = dir.path().join("apps.yaml");
        std::fs::write(&apps, apps_yaml).unwrap();
        let log = std::fs::File::create(dir.path().join(format!(
            "pmi-{}.log",
            std::fs::read_dir(dir.path()).unwrap().count()
        )))
        .unwrap();
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(pmi_bin())
            .args(flags)
            .arg("--socket")
            .arg(&sock)
            .arg(&apps)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let up = unshare.id() as i32;
        let wd = Watchdog::new(up, Duration::from_secs(120));
        let mut pid = 0;
        wait_until("pmi to start", || {
            pid = children(up).first().copied().unwrap_or(0);
            pid > 0 && comm(pid) == "pmi"
        });
        let pmi = Pmi {
            unshare,
            pid,
            sock,
            dir,
            _wd: wd,
        };
        wait_until("the control socket", || {
            pmi.cli(&["health"]).status.code() != Some(3)
        });
        pmi
    }

    /// `pmi ARGS` inside the namespace, as `docker exec` runs it.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_cmd(args).output().unwrap()
    }

    fn cli_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid.to_string(), "-p", "-m", pmi_bin()])
            .args(args)
            .env("PMI_SOCKET", &self.sock)
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(o.status.success(), "pmi {args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// `name:index` → (pid, status).
    fn instances(&self) -> Vec<(String, u64, Option<u64>, String)> {
        self.status()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["instance"].as_u64().unwrap(),
                    i["pid"].as_u64(),
                    i["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn all_online(&self, app: &str, n: usize) -> bool {
        let v: Vec<_> = self
            .instances()
            .into_iter()
            .filter(|i| i.0 == app)
            .collect();
        v.len() == n && v.iter().all(|i| i.3 == "online")
    }

    /// Whether `pid` (as pmi's namespace numbers it) exists there.
    fn exists_in_ns(&self, pid: u64) -> bool {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-p", "-m", "test", "-d"])
            .arg(format!("/proc/{pid}"))
            .status()
            .unwrap()
            .success()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .count()
    }

    fn output(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("pmi-") {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }
}

impl Drop for Pmi {
    fn drop(&mut self) {
        // PID 1 dying takes its whole namespace with it.
        // SAFETY: plain kill(2).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An app that says which instance it is on stdout and stderr, then sleeps.
fn sleeper(name: &str, instances: u32, extra: &str) -> String {
    format!(
        "  - name: {name}\n    script: /bin/sh\n    interpreter: none\n    instances: {instances}\n    args: [\"-c\", \"echo {name} $NODE_APP_INSTANCE up; echo {name} $NODE_APP_INSTANCE oops >&2; exec sleep 1000\"]\n{extra}"
    )
}

fn apps(list: &[String]) -> String {
    format!("apps:\n{}", list.concat())
}

#[test]
fn every_verb_end_to_end() {
    if !can_run() {
        return;
    }
    let secret_env = format!("    env:\n      SECRET_TOKEN: {SECRET}\n");
    // Without auto-exit, `stop all` leaves pmi running (with it, pmi would exit, as pm2-runtime).
    let pmi = Pmi::start_with(
        &apps(&[
            sleeper("api", 2, ""),
            sleeper("worker", 1, &secret_env),
            sleeper("job", 1, "    autostart: false\n"),
        ]),
        &["--no-auto-exit"],
    );
    let mut seen = String::new();
    wait_until("api and worker online", || {
        pmi.all_online("api", 2) && pmi.all_online("worker", 1)
    });

    // status, ls, list, targets.
    let table = pmi.ok(&["status"]);
    seen += &table;
    for col in [
        "id", "name", "mode", "pid", "uptime", "↺", "status", "cpu", "mem",
    ] {
        assert!(table.contains(col), "{table}");
    }
    assert!(!table.contains('\x1b'), "colours on a pipe: {table}");
    assert_eq!(pmi.ok(&["ls", "api"]).matches("api").count(), 2);
    assert!(pmi.ok(&["list", "2"]).contains("worker"));
    let st = pmi.status();
    seen += &st.to_string();
    assert_eq!(st["schema"], 1);
    let job = &st["instances"][3];
    assert_eq!(
        (job["name"].as_str(), job["status"].as_str()),
        (Some("job"), Some("stopped"))
    );
    let api0 = &st["instances"][0];
    assert!(api0["memory_bytes"].as_u64().unwrap() > 0);
    assert!(api0["cpu_percent"].is_number() && api0["uptime_ms"].is_number());
    let o = pmi.cli(&["status", "nope"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o).contains("api, worker, job"), "{o:?}");

    // describe: env keys, never values.
    let d = pmi.ok(&["describe", "worker"]);
    assert!(d.contains("SECRET_TOKEN") && d.contains("/bin/sh"), "{d}");
    seen += &d;
    seen += &pmi.ok(&["describe", "all", "--json"]);

    // restart answers after the effect: the new pid exists.
    let out = pmi.ok(&["restart", "api:0"]);
    let pid: u64 = out
        .rsplit("pid ")
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out}"));
    assert!(
        pmi.exists_in_ns(pid),
        "restart returned pid {pid}, which does not exist"
    );
    assert_eq!(pmi.instances()[0].2, Some(pid));

    // stop / start / readiness.
    pmi.ok(&["stop", "worker"]);
    assert_eq!(pmi.instances()[2].3, "stopped");
    let o = pmi.cli(&["health", "--ready"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o).contains("worker:0"), "{o:?}");
    assert!(pmi.cli(&["health"]).status.success());
    pmi.ok(&["start", "worker"]);
    assert!(pmi.cli(&["health", "--ready"]).status.success());

    // reload: one at a time, every instance gets a new pid.
    let before: Vec<_> = pmi.instances().iter().map(|i| i.2).collect();
    let out = pmi.ok(&["reload", "api"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let after: Vec<_> = pmi.instances().iter().map(|i| i.2).collect();
    assert!(before[0] != after[0] && before[1] != after[1]);

    // scale up, down, up again: the freed index is reused.
    pmi.ok(&["scale", "api", "4"]);
    assert!(pmi.all_online("api", 4));
    pmi.ok(&["scale", "api", "-2"]);
    let idx = |p: &Pmi| -> Vec<u64> {
        p.instances()
            .iter()
            .filter(|i| i.0 == "api")
            .map(|i| i.1)
            .collect()
    };
    assert_eq!(idx(&pmi), [0, 1]);
    pmi.ok(&["scale", "api", "+1"]);
    assert_eq!(idx(&pmi), [0, 1, 2]);
    assert_eq!(pmi.cli(&["scale", "api", "x"]).status.code(), Some(2));

    // signal: TERM kills worker's sleep; autorestart brings it back.
    pmi.ok(&["signal", "TERM", "worker"]);
    wait_until("worker restarted after TERM", || {
        let s = pmi.status();
        let w = s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "worker")
            .cloned()
            .unwrap();
        w["restarts"].as_u64() >= Some(1) && w["status"] == "online"
    });
    assert_eq!(
        pmi.cli(&["signal", "BOGUS", "worker"]).status.code(),
        Some(2)
    );

    // logs: history, filters, JSON, follow.
    wait_until("api output in the log buffer", || {
        pmi.ok(&["logs", "api"]).contains("api 2 up")
    });
    let l = pmi.ok(&["logs", "--lines", "3"]);
    assert_eq!(l.lines().count(), 3, "{l}");
    let errs = pmi.ok(&["logs", "api", "--err"]);
    assert!(errs.lines().all(|l| l.contains("oops")), "{errs}");
    let j = pmi.ok(&["logs", "worker", "--json"]);
    for line in j.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["app"], "worker");
    }
    seen += &l;
    seen += &j;
    let mut follow = pmi
        .cli_cmd(&["logs", "worker", "--follow", "--lines", "0", "--out"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let fout = follow.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(fout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Restart until the follower (which may connect late) sees a new line.
    let start = Instant::now();
    let got = loop {
        pmi.ok(&["restart", "worker"]);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        assert!(start.elapsed() < DEADLINE, "logs --follow showed nothing");
    };
    assert!(got.contains("worker 0 up"), "{got}");
    let _ = follow.kill();
    let _ = follow.wait();

    // stop all / start all.
    pmi.ok(&["stop", "all"]);
    assert!(pmi.instances().iter().all(|i| i.3 == "stopped"));
    pmi.ok(&["start", "all"]);
    assert!(pmi.instances().iter().all(|i| i.3 == "online"));
    assert!(pmi.cli(&["health", "--ready"]).status.success());

    seen += &pmi.output();
    assert!(!seen.contains(SECRET), "the secret leaked");
}

#[test]
fn health_fails_once_an_app_is_errored() {
    if !can_run() {
        return;
    }
    let pmi = Pmi::start(&apps(&[
        sleeper("ok", 1, ""),
        "  - name: crash\n    script: /bin/false\n    interpreter: none\n    max_restarts: 2\n    min_uptime: 5000\n".to_string(),
    ]));
    wait_until("crash errored", || {
        pmi.instances()
            .iter()
            .any(|i| i.0 == "crash" && i.3 == "errored")
    });
    let o = pmi.cli(&["health"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let t = text(&o);
    assert_eq!(t.lines().count(), 1, "{t}");
    assert!(t.contains("crash:0") && t.contains("errored"), "{t}");
}

/// Writes `bytes`, returns everything the server sends until it closes.
fn raw_exchange(sock: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn hostile_clients_get_errors_and_the_apps_are_untouched() {
    if !can_run() {
        return;
    }
    let pmi = Pmi::start(&apps(&[sleeper("api", 2, "")]));
    wait_until("api online", || pmi.all_online("api", 2));
    let pids: Vec<_> = pmi.instances().iter().map(|i| i.2).collect();

    let silent = UnixStream::connect(&pmi.sock).unwrap();
    let garbage = raw_exchange(&pmi.sock, b"\x13\x37garbage\xff\xfe{{{{");
    assert!(String::from_utf8_lossy(&garbage).contains("frame_too_large"));
    let huge = raw_exchange(&pmi.sock, &u32::MAX.to_be_bytes());
    assert!(String::from_utf8_lossy(&huge).contains("frame_too_large"));
    for _ in 0..20 {
        let mut s = UnixStream::connect(&pmi.sock).unwrap();
        let _ = s.write_all(&[0, 0, 1, 0, b'{']);
    }
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let sock = pmi.sock.clone();
            std::thread::spawn(move || {
                let hello = br#"{"type":"hello","version":1}"#;
                let status = br#"{"type":"status","target":null}"#;
                let mut b = Vec::new();
                for m in [&hello[..], &status[..]] {
                    b.extend((m.len() as u32).to_be_bytes());
                    b.extend(m);
                }
                let mut s = UnixStream::connect(&sock).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                // A busy server may close before reading: its answer is still there.
                let _ = s.write_all(&b);
                let mut header = [0u8; 4];
                s.read_exact(&mut header).unwrap();
                let mut body = vec![0; u32::from_be_bytes(header) as usize];
                s.read_exact(&mut body).unwrap();
                String::from_utf8(body).unwrap()
            })
        })
        .collect();
    for t in threads {
        let first = t.join().unwrap();
        assert!(
            first.contains("\"hello\"") || first.contains("busy"),
            "{first}"
        );
    }
    // The silent client is dropped after the read timeout, or sooner, when the burst needed
    // its slot (the longest-idle connection makes room for a newcomer).
    let mut silent = silent;
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("timeout") || rest.contains("was idle"),
        "{rest}"
    );

    assert!(pmi.cli(&["health", "--ready"]).status.success());
    let after: Vec<_> = pmi.instances().iter().map(|i| i.2).collect();
    assert_eq!(pids, after, "hostile clients changed the apps");
}

#[test]
fn non_root_peers_are_refused() {
    if !can_run() {
        return;
    }
    let pmi = Pmi::start(&apps(&[sleeper("api", 1, "")]));
    let nobody = |p: &Pmi| {
        let mut c = Command::new("nsenter");
        c.args(["-t", &p.pid.to_string(), "-p", "-m"])
            .args([
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
            ])
            .arg(pmi_bin())
            .arg("status")
            .env("PMI_SOCKET", &p.sock);
        c.output().unwrap()
    };
    // The 0700 directory stops it before the socket: exit 1, permission denied.
    let dir = pmi.sock.parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let o = nobody(&pmi);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o).contains("permission denied"), "{o:?}");
    // Opened up on disk, the server still refuses the peer (SO_PEERCRED).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&pmi.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = nobody(&pmi);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o).contains("permission denied"), "{o:?}");
    assert!(!text(&o).contains("api"));
}

#[test]
fn many_health_calls_leave_no_zombie_and_no_fd() {
    if !can_run() {
        return;
    }
    let pmi = Pmi::start(&apps(&[sleeper("api", 1, "")]));
    wait_until("api online", || pmi.all_online("api", 1));
    let fds = pmi.fds();
    for _ in 0..1000 {
        let o = pmi.cli(&["health"]);
        assert!(o.status.success(), "{o:?}");
    }
    wait_until("pmi's fds back to their count", || pmi.fds() <= fds);
    let stats = Command::new("nsenter")
        .args(["-t", &pmi.pid.to_string(), "-p", "-m", "sh", "-c"])
        .arg("cat /proc/[0-9]*/stat")
        .output()
        .unwrap();
    let zombies = String::from_utf8_lossy(&stats.stdout)
        .lines()
        .filter(|l| l.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .count();
    assert_eq!(zombies, 0);
}

#[test]
fn unreachable_is_exit_3_within_a_second_and_a_live_socket_is_kept() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let timed = |sock: &Path| {
        let t = Instant::now();
        let o = Command::new(pmi_bin())
            .arg("status")
            .env("PMI_SOCKET", sock)
            .output()
            .unwrap();
        (o, t.elapsed())
    };
    let (o, t) = timed(&dir.path().join("none.sock"));
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(t < Duration::from_millis(1500));
    // A listener that never answers.
    let mute = dir.path().join("mute.sock");
    let _l = std::os::unix::net::UnixListener::bind(&mute).unwrap();
    let (o, t) = timed(&mute);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(t < Duration::from_millis(2500), "{t:?}");

    // A second pmi on the same socket leaves the first one's socket alone and starts nothing.
    let shared = tempfile::tempdir().unwrap();
    let sock = shared.path().join("pmi.sock");
    let first = Pmi::start_at(
        &apps(&[sleeper("first", 1, "")]),
        tempfile::tempdir().unwrap(),
        sock.clone(),
        &[],
    );
    let dir2 = tempfile::tempdir().unwrap();
    let apps2 = dir2.path().join("apps.yaml");
    std::fs::write(&apps2, apps(&[sleeper("second", 1, "")])).unwrap();
    let mut second = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(pmi_bin())
        .arg("--socket")
        .arg(&sock)
        .arg(&apps2)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _wd = Watchdog::new(second.id() as i32, Duration::from_secs(60));
    let mut warning = Vec::new();
    let _ = second.stderr.take().unwrap().read_to_end(&mut warning);
    let code = second.wait().unwrap().code();
    let warning = String::from_utf8_lossy(&warning);
    assert_eq!(code, Some(2), "{warning}");
    assert!(warning.contains("pmi is already running"), "{warning}");
    assert!(first.ok(&["status"]).contains("first"));

    // A stale socket (its pmi was killed) is replaced by the next pmi.
    drop(first);
    assert!(sock.exists(), "a SIGKILLed pmi cannot remove its socket");
    let next = Pmi::start_at(
        &apps(&[sleeper("next", 1, "")]),
        tempfile::tempdir().unwrap(),
        sock,
        &[],
    );
    assert!(next.ok(&["status"]).contains("next"));
}
