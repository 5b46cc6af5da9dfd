//! Black-box harness: starts the real `pmi` binary, plainly or as PID 1 of a new PID namespace, with real
//! children from `pmi-testkit`, and cleans everything up whatever happens.
//!
//! - `Sandbox`: a per-test temp dir (kept and printed when the test fails) where apps files, readiness
//!   files and pmi's captured stdout/stderr live.
//! - `Launch` → `Pmi`: one pmi process. As PID 1 it runs under
//!   `unshare --pid --fork --mount-proc --kill-child`; its host pid is found from unshare's children.
//!   Every `Pmi` has a watchdog that kills everything it started when the test overruns.
//! - No fixed sleeps: `wait_until` / `Pmi::wait_for` poll a condition against a generous deadline.
//!
//! Environment: `PMI_BIN` (default: the crate's `pmi`), `PMI_TESTKIT` (default: the crate's
//! `pmi-testkit`), `PMI_TEST_TIMEOUT_SCALE` (multiplies every deadline; default 1).
#![allow(dead_code)]

pub mod load;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Binaries and time
// ---------------------------------------------------------------------------------------------

/// The pmi binary under test.
pub fn pmi_bin() -> PathBuf {
    let p = std::env::var_os("PMI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pmi")));
    fs::canonicalize(&p).unwrap_or(p)
}

/// The test workload binary.
pub fn testkit() -> String {
    let p = std::env::var_os("PMI_TESTKIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pmi-testkit")));
    fs::canonicalize(&p)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn scale() -> f64 {
    std::env::var("PMI_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// A deadline of `s` seconds, scaled by `PMI_TEST_TIMEOUT_SCALE`. Use for upper bounds only.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s * scale())
}

/// The default deadline for one awaited condition.
pub fn wait_time() -> Duration {
    secs(20.0)
}

/// Polls `cond` until it holds; panics with `what` when `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// /proc helpers
// ---------------------------------------------------------------------------------------------

/// State, comm and ppid of a process (host view).
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub state: char,
    pub comm: String,
    pub ppid: i32,
}

pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let mut rest = s[close + 2..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        state,
        comm,
        ppid,
    })
}

/// Direct children of `pid` (zombies included).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every descendant of `pid`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = children_of(pid);
    while let Some(p) = todo.pop() {
        out.push(p);
        todo.extend(children_of(p));
    }
    out
}

/// Zombies among the descendants of `pid`.
pub fn zombies_under(pid: i32) -> usize {
    descendants(pid)
        .into_iter()
        .filter_map(proc_info)
        .filter(|p| p.state == 'Z')
        .count()
}

fn exe_of(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Signals one process. Never a group or "every process" (pid <= 0 is refused).
fn kill(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Signals the process group led by `pgid` (a process the harness started with its own group).
fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Kills a plain (not PID 1) pmi and all its descendants: stop pmi so it spawns nothing more, kill
/// the tree until it is empty, then pmi.
fn kill_plain_tree(pmi: i32) {
    kill(pmi, libc::SIGSTOP);
    for _ in 0..50 {
        let d = descendants(pmi);
        if d.is_empty() {
            break;
        }
        for p in d {
            kill(p, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(pmi, libc::SIGKILL);
}

/// Kills a PID-1 pmi (the kernel then kills its whole namespace) and the unshare process group.
fn kill_pid1_tree(unshare: i32, pmi: i32) {
    kill(pmi, libc::SIGKILL);
    kill_group(unshare, libc::SIGKILL);
}

// ---------------------------------------------------------------------------------------------
// Sandbox: the per-test directory
// ---------------------------------------------------------------------------------------------

pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pmi-test-")
            .tempdir()
            .expect("temp dir");
        let path = fs::canonicalize(dir.path()).expect("canonical temp dir");
        Sandbox {
            dir: Some(dir),
            path,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// `dir/name` as a path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `dir/name` as a string, for testkit arguments.
    pub fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, content).expect("write sandbox file");
        p
    }

    /// Writes `apps.yaml` for these apps and returns its path.
    pub fn apps(&self, apps: &[App]) -> PathBuf {
        self.write("apps.yaml", &apps_yaml(apps))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// The file's text, empty when it does not exist.
    pub fn read(&self, name: &str) -> String {
        fs::read(self.path(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The file's lines, empty when it does not exist.
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.read(name).lines().map(str::to_string).collect()
    }

    /// `KEY=VALUE` lines of a file written by `pmi-testkit env`, empty when it does not exist.
    pub fn env_map(&self, name: &str) -> BTreeMap<String, String> {
        self.lines(name)
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Creates `dir/name` and its parents; returns its path.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir_all(&p).expect("create sandbox dir");
        p
    }

    /// Parses a `record-start` file into milliseconds since the epoch.
    pub fn start_times(&self, name: &str) -> Vec<u64> {
        self.lines(name)
            .iter()
            .map(|l| {
                l.split_whitespace()
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("bad record-start line {l:?}"))
            })
            .collect()
    }

    /// Starts configuring a pmi run as PID 1 of a new PID namespace.
    pub fn pid1<I, S>(&self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Launch::new(self, true, args)
    }

    /// Starts configuring a plain pmi run (not PID 1: pmi must be a subreaper).
    pub fn plain<I, S>(&self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Launch::new(self, false, args)
    }

    /// Writes `apps.yaml` and configures `pmi [FLAGS] apps.yaml`, as PID 1 or plainly.
    pub fn apps_launch(&self, pid1: bool, apps: &[App], flags: &[&str]) -> Launch {
        let file = self.apps(apps);
        let mut args: Vec<OsString> = flags.iter().map(OsString::from).collect();
        args.push(file.into_os_string());
        Launch::new(self, pid1, args)
    }

    /// Starts `pmi [FLAGS] apps.yaml` as PID 1.
    pub fn start_apps(&self, apps: &[App], flags: &[&str]) -> Pmi {
        self.apps_launch(true, apps, flags).start()
    }

    /// Waits until every one of these sandbox files exists (readiness files written by apps).
    pub fn wait_files(&self, pmi: &mut Pmi, names: &[&str]) {
        for n in names {
            pmi.wait_for(&format!("file {n}"), wait_time(), || self.exists(n));
        }
    }

    /// Runs pmi plainly to completion (`check`, usage errors, a short apps run) and returns its
    /// exit code and output.
    pub fn run_pmi<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.plain(args).run()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("[harness] test failed; sandbox kept at {}", kept.display());
            }
        }
    }
}

/// A finished pmi run.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

// ---------------------------------------------------------------------------------------------
// Apps files
// ---------------------------------------------------------------------------------------------

/// One app of an apps file; the script is the testkit, run directly (`interpreter: none`).
#[derive(Clone, Debug)]
pub struct App {
    name: String,
    args: Vec<String>,
    fields: Vec<(String, String)>,
}

impl App {
    pub fn new(name: &str, args: &[&str]) -> App {
        App {
            name: name.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            fields: Vec::new(),
        }
    }

    /// Adds `key: value` (value written as YAML as given).
    pub fn set(mut self, key: &str, yaml_value: &str) -> App {
        self.fields.push((key.to_string(), yaml_value.to_string()));
        self
    }
}

/// A YAML double-quoted string.
pub fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn apps_yaml(apps: &[App]) -> String {
    let tk = testkit();
    let mut y = String::from("apps:\n");
    for a in apps {
        let args: Vec<String> = a.args.iter().map(|s| q(s)).collect();
        y.push_str(&format!("  - name: {}\n", q(&a.name)));
        y.push_str(&format!("    script: {}\n", q(&tk)));
        y.push_str("    interpreter: none\n");
        y.push_str(&format!("    args: [{}]\n", args.join(", ")));
        for (k, v) in &a.fields {
            y.push_str(&format!("    {k}: {v}\n"));
        }
    }
    y
}

// ---------------------------------------------------------------------------------------------
// Launch and Pmi
// ---------------------------------------------------------------------------------------------

/// How to start pmi.
pub struct Launch {
    program: PathBuf,
    dir: PathBuf,
    pid1: bool,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    block: Vec<i32>,
    ignore: Vec<i32>,
    pass_fd: Option<i32>,
    stdout_closed: bool,
    cpus: Option<Vec<usize>>,
    watchdog: Duration,
}

impl Launch {
    fn new<I, S>(sb: &Sandbox, pid1: bool, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Launch {
            program: pmi_bin(),
            dir: sb.path.clone(),
            pid1,
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            block: Vec::new(),
            ignore: Vec::new(),
            pass_fd: None,
            stdout_closed: false,
            cpus: None,
            watchdog: secs(60.0),
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Launch {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Signals blocked in the launcher before pmi is exec'd (they survive exec).
    pub fn block(mut self, sigs: &[i32]) -> Launch {
        self.block.extend_from_slice(sigs);
        self
    }

    /// Signals set to SIG_IGN in the launcher before pmi is exec'd (they survive exec). Any number
    /// 1-64 but KILL/STOP, the libc-reserved 32-34 included.
    pub fn ignore(mut self, sigs: &[i32]) -> Launch {
        self.ignore.extend_from_slice(sigs);
        self
    }

    /// Gives pmi an extra open fd with this number (a file in the sandbox).
    pub fn pass_fd(mut self, fd: i32) -> Launch {
        self.pass_fd = Some(fd);
        self
    }

    /// pmi's stdout is a pipe whose read end is closed before pmi starts.
    pub fn stdout_closed(mut self) -> Launch {
        self.stdout_closed = true;
        self
    }

    /// Runs this program instead of pmi (control experiments: what the launcher gives a program).
    pub fn program(mut self, p: &str) -> Launch {
        self.program = fs::canonicalize(p).unwrap_or_else(|_| p.into());
        self
    }

    /// Restricts pmi (and so its apps) to these CPUs, as `taskset -c` does.
    pub fn cpus(mut self, cpus: &[usize]) -> Launch {
        self.cpus = Some(cpus.to_vec());
        self
    }

    /// Runs pmi to completion and returns its exit code and output.
    pub fn run(self) -> Ran {
        let mut pmi = self.start();
        let code = pmi.wait_exit(wait_time());
        Ran {
            code,
            stdout: pmi.stdout(),
            stderr: pmi.stderr(),
        }
    }

    /// Overrides the per-run watchdog (scaled).
    pub fn watchdog(mut self, s: f64) -> Launch {
        self.watchdog = secs(s);
        self
    }

    pub fn start(self) -> Pmi {
        let pmi = self.program.clone();
        let tag = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let out = self.dir.join(format!("pmi-{tag}.stdout"));
        let err = self.dir.join(format!("pmi-{tag}.stderr"));
        let mut cmd = if self.pid1 {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                .arg(&pmi);
            c
        } else {
            Command::new(&pmi)
        };
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .env("PMI_SOCKET", self.dir.join("pmi.sock"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stderr(File::create(&err).expect("stderr file"))
            .process_group(0);
        let mut closed_pipe_writer = None;
        if self.stdout_closed {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
            drop(r);
            cmd.stdout(File::from(w.try_clone().expect("dup pipe")));
            closed_pipe_writer = Some(w);
        } else {
            cmd.stdout(File::create(&out).expect("stdout file"));
        }
        let extra = self.pass_fd.map(|fd| {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(self.dir.join(format!("passed-fd-{fd}")))
                .expect("passed fd file");
            (f, fd)
        });
        let extra_raw = extra.as_ref().map(|(f, n)| (f.as_raw_fd(), *n));
        let block = self.block.clone();
        let ignore = self.ignore.clone();
        let affinity = self.cpus.as_ref().map(|cpus| {
            // SAFETY: cpu_set_t is plain data, filled by the CPU_* helpers.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for c in cpus {
                    libc::CPU_SET(*c, &mut set);
                }
                set
            }
        });
        // SAFETY: only async-signal-safe calls (sigprocmask, signal, dup2, close_range,
        // sched_setaffinity) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(set) = &affinity {
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Whatever the test process inherited (e.g. a jobserver) must not leak into pmi.
                match extra_raw {
                    Some((src, n)) => {
                        // dup2 onto itself keeps O_CLOEXEC: clear the flag instead.
                        let ok = if src == n {
                            libc::fcntl(n, libc::F_SETFD, 0) >= 0
                        } else {
                            libc::dup2(src, n) >= 0
                        };
                        if !ok {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::syscall(libc::SYS_close_range, 3u32, (n - 1) as u32, 0u32);
                        libc::syscall(libc::SYS_close_range, (n + 1) as u32, u32::MAX, 0u32);
                    }
                    None => {
                        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                    }
                }
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for s in &block {
                    libc::sigaddset(&mut set, *s);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                // The raw system call, so that libc-reserved signals (32-34) can be set too.
                let act: [u64; 4] = [libc::SIG_IGN as u64, 0, 0, 0];
                for s in &ignore {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        *s,
                        act.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8usize,
                    );
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn pmi");
        drop(closed_pipe_writer);
        drop(extra);
        let root = child.id() as i32;
        // pmi's host pid: unshare's child once it has exec'd pmi. A very short run may be over
        // before it is seen; then the status is all there is.
        let mut early_status = None;
        let pid = if self.pid1 {
            let deadline = wait_time();
            let begin = Instant::now();
            loop {
                if let Some(p) = children_of(root)
                    .into_iter()
                    .find(|c| exe_of(*c).as_deref() == Some(pmi.as_path()))
                {
                    break p;
                }
                if let Ok(Some(st)) = child.try_wait() {
                    early_status = Some(st);
                    break -1;
                }
                if begin.elapsed() > deadline {
                    kill_group(root, libc::SIGKILL);
                    let _ = child.wait();
                    panic!("pmi did not appear under unshare within {deadline:?}");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            root
        };
        let fired = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let (pid1, limit, f2) = (self.pid1, self.watchdog, fired.clone());
        let armed = early_status.is_none();
        std::thread::spawn(move || {
            if !armed {
                return;
            }
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                f2.store(true, Ordering::SeqCst);
                eprintln!("[harness] watchdog: pmi run exceeded {limit:?}; killing everything");
                if pid1 {
                    kill_pid1_tree(root, pid);
                } else {
                    kill_plain_tree(pid);
                }
            }
        });
        Pmi {
            child,
            pid,
            pid1: self.pid1,
            out,
            err,
            status: early_status,
            started,
            watchdog_stop: Some(tx),
            watchdog_fired: fired,
        }
    }
}

/// A running (or finished) pmi.
pub struct Pmi {
    child: Child,
    /// pmi's pid as seen from the test (host namespace).
    pub pid: i32,
    pub pid1: bool,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
    pub started: Instant,
    watchdog_stop: Option<mpsc::Sender<()>>,
    watchdog_fired: Arc<AtomicBool>,
}

impl Pmi {
    /// Sends a signal to pmi (from outside, as `docker kill -s` does).
    pub fn send(&self, sig: i32) {
        assert!(
            self.status.is_none() && self.pid > 0,
            "pmi already exited{}",
            self.context()
        );
        kill(self.pid, sig);
    }

    pub fn stdout_path(&self) -> &Path {
        &self.out
    }

    /// pmi's stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    /// pmi's stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.err).unwrap_or_default()).into_owned()
    }

    fn tail(&self, s: &str) -> String {
        let n = s.len();
        let mut from = n.saturating_sub(3000);
        while !s.is_char_boundary(from) {
            from += 1;
        }
        s[from..].to_string()
    }

    fn context(&self) -> String {
        format!(
            "\n--- pmi stderr (tail) ---\n{}\n--- pmi stdout (tail) ---\n{}\n---",
            self.tail(&self.stderr()),
            self.tail(&self.stdout())
        )
    }

    /// Has pmi exited? Reaps it when so.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                if let Some(tx) = self.watchdog_stop.take() {
                    let _ = tx.send(());
                }
            }
        }
        self.status
    }

    /// Waits for pmi to exit and returns its exit code. A death by signal fails the test.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(st) = self.exited() {
                if self.watchdog_fired.load(Ordering::SeqCst) {
                    panic!("pmi was killed by the test watchdog{}", self.context());
                }
                return match (st.code(), st.signal()) {
                    (Some(c), _) => c,
                    (None, Some(s)) => {
                        panic!("pmi was killed by signal {s}{}", self.context())
                    }
                    _ => panic!("pmi ended with {st}{}", self.context()),
                };
            }
            if start.elapsed() > timeout {
                panic!(
                    "pmi did not exit within {timeout:?} (state {:?}){}",
                    proc_info(self.pid).map(|p| p.state),
                    self.context()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls `cond` until it holds; fails at once, with pmi's output, if pmi exits meanwhile.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if cond() {
                return;
            }
            if let Some(st) = self.exited() {
                if cond() {
                    return;
                }
                panic!(
                    "pmi exited ({st}) while waiting for: {what}{}",
                    self.context()
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}{}",
                    self.context()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls `cond` for `dur` and fails, with pmi's output, as soon as it does not hold (the
    /// negative checks: "no restart happens"). pmi must keep running meanwhile.
    pub fn assert_holds(&mut self, what: &str, dur: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if !cond() {
                panic!(
                    "no longer holds after {:?}: {what}{}",
                    start.elapsed(),
                    self.context()
                );
            }
            if start.elapsed() > dur {
                return;
            }
            self.assert_running(&format!("while checking: {what}"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fails if pmi has exited.
    pub fn assert_running(&mut self, when: &str) {
        if let Some(st) = self.exited() {
            panic!("pmi exited ({st}) {when}{}", self.context());
        }
    }

    /// Every process under pmi (apps, their children, re-parented orphans), host pids.
    pub fn descendants(&self) -> Vec<ProcInfo> {
        descendants(self.pid)
            .into_iter()
            .filter_map(proc_info)
            .collect()
    }

    /// pmi's direct children.
    pub fn children(&self) -> Vec<ProcInfo> {
        children_of(self.pid)
            .into_iter()
            .filter_map(proc_info)
            .collect()
    }

    /// Zombies among pmi's descendants (for PID 1: every zombie of the namespace but pmi).
    pub fn zombies(&self) -> usize {
        zombies_under(self.pid)
    }

    /// Runs a command inside pmi's PID and mount namespaces, as `docker exec` does.
    pub fn nsenter<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        assert!(self.pid1, "nsenter needs a PID-1 pmi");
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-p", "-m", "--"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// State letter of pmi itself (`S`, `R`, `T`, ...).
    pub fn state(&self) -> char {
        proc_info(self.pid).map(|p| p.state).unwrap_or('?')
    }

    pub fn cwd(&self) -> PathBuf {
        fs::read_link(format!("/proc/{}/cwd", self.pid)).expect("read pmi cwd")
    }
}

impl Drop for Pmi {
    fn drop(&mut self) {
        if let Some(tx) = self.watchdog_stop.take() {
            let _ = tx.send(());
        }
        if self.exited().is_none() {
            if self.pid1 {
                kill_pid1_tree(self.child.id() as i32, self.pid);
            } else {
                kill_plain_tree(self.pid);
            }
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("[harness] pmi pid {}{}", self.pid, self.context());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signals and output checks
// ---------------------------------------------------------------------------------------------

/// The label `pmi-testkit sigecho` writes for a signal: `HUP`, `TERM`, ..., `SIG37`.
pub fn sig_label(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => format!("SIG{sig}"),
    }
}

/// SIGRTMIN+3 as glibc numbers it (34 + 3), the real-time signal the tests forward.
pub const SIGRT37: i32 = 37;

/// Sends each signal to pmi in turn and waits until every file records it before the next one;
/// returns the labels sent, in order.
pub fn send_each_and_wait(
    pmi: &mut Pmi,
    sb: &Sandbox,
    sigs: &[i32],
    files: &[&str],
) -> Vec<String> {
    let mut want = Vec::new();
    for &sig in sigs {
        pmi.send(sig);
        want.push(sig_label(sig));
        let n = want.len();
        pmi.wait_for(
            &format!("{} recorded in {files:?}", sig_label(sig)),
            wait_time(),
            || files.iter().all(|f| recorded(sb, f).len() >= n),
        );
    }
    want
}

/// The signals recorded by sigecho in `file`, without its `ready`/`bye` lines.
pub fn recorded(sb: &Sandbox, file: &str) -> Vec<String> {
    sb.lines(file)
        .into_iter()
        .filter(|l| l != "ready" && l != "bye")
        .collect()
}

/// Asserts that two byte streams are identical, reading both incrementally; reports the first
/// difference.
pub fn assert_same_stream(mut got: impl Read, mut want: impl Read, what: &str) {
    let mut a = vec![0u8; 1 << 16];
    let mut b = vec![0u8; 1 << 16];
    let (mut ga, mut gb) = (0usize, 0usize); // valid bytes in a / b
    let mut offset = 0u64;
    let (mut eof_a, mut eof_b) = (false, false);
    loop {
        if ga == 0 && !eof_a {
            ga = got.read(&mut a).expect("read got");
            eof_a = ga == 0;
        }
        if gb == 0 && !eof_b {
            gb = want.read(&mut b).expect("read want");
            eof_b = gb == 0;
        }
        if ga == 0 || gb == 0 {
            assert!(
                ga == 0 && gb == 0,
                "{what}: lengths differ: the {} stream ends at byte {offset} while the other goes on \
                 (next bytes {:?})",
                if ga == 0 { "actual" } else { "expected" },
                String::from_utf8_lossy(if ga == 0 { &b[..gb.min(60)] } else { &a[..ga.min(60)] })
            );
            return;
        }
        let n = ga.min(gb);
        if a[..n] != b[..n] {
            let i = (0..n).find(|i| a[*i] != b[*i]).expect("a difference");
            panic!(
                "{what}: first difference at byte {}: got {:?}, want {:?}",
                offset + i as u64,
                String::from_utf8_lossy(&a[i..(i + 60).min(n)]),
                String::from_utf8_lossy(&b[i..(i + 60).min(n)])
            );
        }
        offset += n as u64;
        a.copy_within(n..ga, 0);
        b.copy_within(n..gb, 0);
        ga -= n;
        gb -= n;
    }
}

/// The output of `pmi-testkit <args>` run directly, as a stream (the expected bytes of a workload).
pub fn testkit_stream(args: &[&str]) -> impl Read {
    let child = Command::new(testkit())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn testkit");
    ReapOnDrop(child)
}

struct ReapOnDrop(Child);

impl Read for ReapOnDrop {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.stdout.as_mut().expect("piped").read(buf)
    }
}

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a file, read lazily.
pub fn file_lines(path: &Path) -> impl Iterator<Item = String> {
    BufReader::new(File::open(path).expect("open"))
        .lines()
        .map(|l| l.expect("utf-8 line"))
}

/// `file:LINE:COL` locations after `file_name` in `text`, with the whole line they appear on.
pub fn locations(text: &str, file_name: &str) -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    let pat = format!("{file_name}:");
    for line in text.lines() {
        let mut rest = line;
        while let Some(i) = rest.find(&pat) {
            rest = &rest[i + pat.len()..];
            let digits = |s: &str| -> Option<(u32, usize)> {
                let n = s.chars().take_while(|c| c.is_ascii_digit()).count();
                s[..n].parse().ok().map(|v| (v, n))
            };
            if let Some((l, n)) = digits(rest) {
                if let Some(after) = rest[n..].strip_prefix(':') {
                    if let Some((c, _)) = digits(after) {
                        out.push((l, c, line.to_string()));
                    }
                }
            }
        }
    }
    out
}
