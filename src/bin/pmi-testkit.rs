//! pmi-testkit: small, fast workloads for pmi's black-box tests (std + libc + nix only, so that it can be
//! copied into a test container as it is).
//!
//! Usage: `pmi-testkit <SUBCOMMAND> [ARGS]...`. Many subcommands take a trailing *chain*: the remaining
//! arguments are another subcommand run in the same process afterwards, e.g.
//! `pmi-testkit record-start starts.txt env env.txt exit 3`.
//!
//! File arguments expand `%{VAR}` to the value of environment variable VAR (`unset` when absent) and
//! `%p` to the pid, so that instances of one app write distinct files.
//!
//! The binary has no Rust runtime start-up (`no_main`): std would otherwise set SIGPIPE to SIG_IGN before
//! `main`, and `sigconf` must report exactly the signal dispositions the process was started with.
//!
//! | subcommand | what it does |
//! |---|---|
//! | `exit CODE` | exits with CODE |
//! | `exit-after MS CODE` | sleeps MS milliseconds, exits with CODE |
//! | `sleep [SECS]` | sleeps SECS (fractional), or forever |
//! | `kill-self SIG` | dies by SIG (default disposition, unblocked, no core dump) |
//! | `sigecho FILE [--exit-on SIG]... [--exit-delay MS] [--group-child FILE2 [--child-exit-delay MS]]` | blocks every signal, writes `ready`, then one line per received signal (name without `SIG`, or `SIG<n>` for real-time signals; SIGCHLD is not recorded); on an `--exit-on` signal waits MS, writes `bye` and exits 0. `--group-child` first forks a child in the same process group doing the same into FILE2 (with its own exit delay if given) |
//! | `sigconf [CHAIN]` | prints SigBlk/SigIgn/SigCgt of /proc/self/status, `fds: 0 1 2 ...`, `cwd: PATH`, `ids: pid=P pgid=G sid=S`; chain default `exit 0` |
//! | `orphans N [CHAIN]` | an intermediate process forks N children that exit at once, waits until all are zombies, exits; they are re-parented to the reaper. Chain default `exit 0` |
//! | `spawn-orphan SECS FILE [CHAIN]` | double-forks a sleeper (comm `tk-orphan`) that writes `ppid=N` to FILE once re-parented, sleeps SECS and exits. Chain default `exit 0` |
//! | `write BYTES LINE_LEN [--no-newline-end] [--stderr] [CHAIN]` | writes the deterministic pattern (see `pattern`) to stdout (stderr); chain default `exit 0` |
//! | `env FILE [CHAIN]` | writes the environment as sorted `KEY=VALUE` lines to FILE (`-` for stdout); chain default `exit 0` |
//! | `ignore-term [CHAIN]` | sets TERM and INT to SIG_IGN; chain default `sleep` |
//! | `touch-ready FILE [CHAIN]` | appends `ready` to FILE; chain default `sleep` |
//! | `wait-file FILE [CHAIN]` | waits until FILE exists; chain default `exit 0` |
//! | `record-start FILE [CHAIN]` | appends `<unix-ms> <pid>` to FILE; chain default `sleep` |
//! | `echo TEXT [CHAIN]`, `echo-err TEXT [CHAIN]` | prints TEXT and a newline on stdout (stderr); chain default `exit 0` |
//! | `ids FILE [CHAIN]` | writes the `Uid:`, `Gid:` and `Groups:` lines of /proc/self/status to FILE (`-` for stdout); chain default `exit 0` |
//! | `grow-mem MB [STEP_MS] [CHAIN]` | allocates and touches MB MiB, 1 MiB every STEP_MS (default 10) milliseconds, keeps it; chain default `sleep` |
//! | `bg CHAIN1... :: CHAIN2...` | blocks every signal, forks a background child (same process group) that runs CHAIN1 with all signals still blocked; the parent restores its mask and runs CHAIN2 |
// `cargo test` builds this binary with the test harness too: keep the harness's `main` then.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::raw::c_int;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

/// C entry point: no Rust runtime initialisation, so inherited signal dispositions stay untouched.
///
/// # Safety
/// Called by the C runtime with a valid argv of argc entries.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const std::os::raw::c_char) -> c_int {
    let args: Vec<String> = (1..argc.max(1) as usize)
        .map(|i| {
            // SAFETY: the C runtime passes argc valid NUL-terminated strings.
            unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let code = run(&args);
    flush_and_exit(code)
}

fn flush_and_exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: plain process exit.
    unsafe { libc::_exit(code) }
}

fn die(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "pmi-testkit: {msg}");
    flush_and_exit(100)
}

fn arg<'a>(a: &'a [String], i: usize, what: &str) -> &'a str {
    a.get(i)
        .map(String::as_str)
        .unwrap_or_else(|| die(&format!("missing {what}")))
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| die(&format!("bad {what}: {s:?}")))
}

/// Runs `chain` if not empty, else the default.
fn chain(rest: &[String], default: &[&str]) -> i32 {
    if rest.is_empty() {
        let d: Vec<String> = default.iter().map(|s| s.to_string()).collect();
        run(&d)
    } else {
        run(rest)
    }
}

fn run(a: &[String]) -> i32 {
    let Some(cmd) = a.first() else {
        die("usage: pmi-testkit <subcommand> [args] (see the source header)")
    };
    let r = &a[1..];
    match cmd.as_str() {
        "exit" => num(arg(r, 0, "code"), "code"),
        "exit-after" => {
            sleep_ms(num(arg(r, 0, "ms"), "ms"));
            num(arg(r, 1, "code"), "code")
        }
        "sleep" => match r.first() {
            Some(s) => {
                std::thread::sleep(Duration::from_secs_f64(num(s, "seconds")));
                0
            }
            None => sleep_forever(),
        },
        "kill-self" => kill_self(parse_signal(arg(r, 0, "signal"))),
        "sigecho" => sigecho(r),
        "sigconf" => {
            sigconf();
            chain(r, &["exit", "0"])
        }
        "orphans" => {
            orphans(num(arg(r, 0, "count"), "count"));
            chain(&r[1..], &["exit", "0"])
        }
        "spawn-orphan" => {
            spawn_orphan(num(arg(r, 0, "seconds"), "seconds"), arg(r, 1, "file"));
            chain(&r[2..], &["exit", "0"])
        }
        "write" => write_cmd(r),
        "env" => {
            write_env(arg(r, 0, "file"));
            chain(&r[1..], &["exit", "0"])
        }
        "ignore-term" => {
            // SAFETY: setting dispositions to SIG_IGN.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
                libc::signal(libc::SIGINT, libc::SIG_IGN);
            }
            chain(r, &["sleep"])
        }
        "touch-ready" => {
            append(arg(r, 0, "file"), "ready");
            chain(&r[1..], &["sleep"])
        }
        "wait-file" => {
            let f = expand(arg(r, 0, "file"));
            while !std::path::Path::new(&f).exists() {
                sleep_ms(2);
            }
            chain(&r[1..], &["exit", "0"])
        }
        "record-start" => {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            append(arg(r, 0, "file"), &format!("{ms} {}", std::process::id()));
            chain(&r[1..], &["sleep"])
        }
        "echo" => {
            write_fd(1, format!("{}\n", arg(r, 0, "text")).as_bytes());
            chain(&r[1..], &["exit", "0"])
        }
        "echo-err" => {
            write_fd(2, format!("{}\n", arg(r, 0, "text")).as_bytes());
            chain(&r[1..], &["exit", "0"])
        }
        "ids" => {
            write_ids(arg(r, 0, "file"));
            chain(&r[1..], &["exit", "0"])
        }
        "grow-mem" => {
            let mb: usize = num(arg(r, 0, "megabytes"), "megabytes");
            let (step, rest) = match r.get(1).and_then(|s| s.parse::<u64>().ok()) {
                Some(ms) => (ms, &r[2..]),
                None => (10, &r[1..]),
            };
            grow_mem(mb, step);
            chain(rest, &["sleep"])
        }
        "bg" => bg(r),
        other => die(&format!("unknown subcommand {other:?}")),
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Expands `%{VAR}` and `%p` in a path.
fn expand(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('p') {
            out.push_str(&std::process::id().to_string());
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .unwrap_or_else(|| die(&format!("unclosed %{{ in {s:?}")));
            let v = std::env::var(&body[..end]).unwrap_or_else(|_| "unset".into());
            out.push_str(&v);
            rest = &body[end + 1..];
        } else {
            out.push('%');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Appends one line to a file (path expanded), creating it.
fn append(path: &str, line: &str) {
    let p = expand(path);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap_or_else(|e| die(&format!("open {p}: {e}")));
    f.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| die(&format!("write {p}: {e}")));
}

/// Writes all of `buf` to a raw fd (no buffering).
fn write_fd(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            flush_and_exit(101);
        }
        buf = &buf[n as usize..];
    }
}

fn parse_signal(s: &str) -> c_int {
    if let Ok(n) = s.parse::<c_int>() {
        return n;
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    if let Some(off) = full.strip_prefix("SIGRTMIN+") {
        return libc::SIGRTMIN() + num::<c_int>(off, "rt offset");
    }
    full.parse::<Signal>()
        .map(|s| s as c_int)
        .unwrap_or_else(|_| die(&format!("unknown signal {s:?}")))
}

/// `HUP`, `TERM`, ... for classic signals, `SIG<n>` for the real-time range.
fn signal_label(n: c_int) -> String {
    match Signal::try_from(n) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => format!("SIG{n}"),
    }
}

fn full_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigfillset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

fn set_mask(how: c_int, set: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: valid sigset pointers.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(how, set, &mut old);
        old
    }
}

fn kill_self(sig: c_int) -> i32 {
    // SAFETY: resets one disposition, unblocks it, disables core dumps, raises it.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &lim);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    die(&format!("still alive after raising signal {sig}"))
}

fn fork() -> libc::pid_t {
    // SAFETY: this program is single-threaded; the child only does simple work and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die(&format!("fork: {}", std::io::Error::last_os_error()));
    }
    pid
}

fn waitpid(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

struct SigEcho {
    file: String,
    exit_on: Vec<c_int>,
    exit_delay_ms: u64,
}

fn sigecho(r: &[String]) -> i32 {
    let mut cfg = SigEcho {
        file: arg(r, 0, "file").to_string(),
        exit_on: Vec::new(),
        exit_delay_ms: 0,
    };
    let mut group_child = None;
    let mut child_delay = None;
    let mut i = 1;
    while i < r.len() {
        match r[i].as_str() {
            "--exit-on" => cfg.exit_on.push(parse_signal(arg(r, i + 1, "signal"))),
            "--exit-delay" => cfg.exit_delay_ms = num(arg(r, i + 1, "ms"), "ms"),
            "--group-child" => group_child = Some(arg(r, i + 1, "file").to_string()),
            "--child-exit-delay" => child_delay = Some(num(arg(r, i + 1, "ms"), "ms")),
            other => die(&format!("sigecho: unknown option {other:?}")),
        }
        i += 2;
    }
    let all = full_set();
    set_mask(libc::SIG_SETMASK, &all);
    if let Some(f) = group_child {
        if fork() == 0 {
            cfg.file = f;
            cfg.exit_delay_ms = child_delay.unwrap_or(cfg.exit_delay_ms);
            sigecho_loop(&cfg, &all);
        }
    }
    sigecho_loop(&cfg, &all)
}

fn sigecho_loop(cfg: &SigEcho, all: &libc::sigset_t) -> ! {
    append(&cfg.file, "ready");
    loop {
        // SAFETY: waiting on a valid set; the info struct is plain data.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(all, &mut info)
        };
        if sig < 0 || sig == libc::SIGCHLD {
            continue;
        }
        append(&cfg.file, &signal_label(sig));
        if cfg.exit_on.contains(&sig) {
            sleep_ms(cfg.exit_delay_ms);
            append(&cfg.file, "bye");
            flush_and_exit(0);
        }
    }
}

fn sigconf() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut out = String::new();
    for l in status.lines() {
        if l.starts_with("SigBlk:") || l.starts_with("SigIgn:") || l.starts_with("SigCgt:") {
            out.push_str(l);
            out.push('\n');
        }
    }
    let mut fds: Vec<i32> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        for e in rd.flatten() {
            let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            // Leave out the directory handle read_dir itself holds.
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            let t = target.to_string_lossy();
            if t.starts_with("/proc/") && t.ends_with("/fd") {
                continue;
            }
            fds.push(n);
        }
    }
    fds.sort_unstable();
    let fds: Vec<String> = fds.iter().map(|n| n.to_string()).collect();
    out.push_str(&format!("fds: {}\n", fds.join(" ")));
    let cwd = std::env::current_dir().unwrap_or_default();
    out.push_str(&format!("cwd: {}\n", cwd.display()));
    // SAFETY: plain getters.
    let (pid, pgid, sid) = unsafe { (libc::getpid(), libc::getpgid(0), libc::getsid(0)) };
    out.push_str(&format!("ids: pid={pid} pgid={pgid} sid={sid}\n"));
    write_fd(1, out.as_bytes());
}

fn proc_state(pid: libc::pid_t) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.chars().next()
}

fn orphans(n: usize) {
    let mid = fork();
    if mid == 0 {
        // SAFETY: default SIGCHLD disposition so that children stay zombies until re-parented.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
        let mut kids = Vec::with_capacity(n);
        for _ in 0..n {
            let pid = fork();
            if pid == 0 {
                // SAFETY: immediate exit of the forked child.
                unsafe { libc::_exit(0) };
            }
            kids.push(pid);
        }
        for pid in kids {
            let start = Instant::now();
            while matches!(proc_state(pid), Some(s) if s != 'Z') {
                if start.elapsed() > Duration::from_secs(30) {
                    die("orphans: a child never became a zombie");
                }
                sleep_ms(1);
            }
        }
        // SAFETY: exit without reaping: the zombies go to the reaper.
        unsafe { libc::_exit(0) };
    }
    waitpid(mid);
}

fn spawn_orphan(secs: f64, file: &str) {
    let mid = fork();
    if mid == 0 {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        if fork() == 0 {
            // SAFETY: renaming this thread; the name is a valid C string.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"tk-orphan".as_ptr()) };
            let start = Instant::now();
            // SAFETY: getppid has no preconditions.
            while unsafe { libc::getppid() } == me && start.elapsed() < Duration::from_secs(30) {
                sleep_ms(1);
            }
            // SAFETY: as above.
            let ppid = unsafe { libc::getppid() };
            append(file, &format!("ppid={ppid}"));
            std::thread::sleep(Duration::from_secs_f64(secs));
            flush_and_exit(0);
        }
        // SAFETY: the intermediate process leaves at once.
        unsafe { libc::_exit(0) };
    }
    waitpid(mid);
}

/// The byte at position `p` of the `write` pattern: lines of `line_len` bytes, the last one `\n`; line
/// `k` starts with `k` as ten digits and a space, then letters `a + (k + column) % 26`.
fn pattern_line(k: usize, line_len: usize, buf: &mut Vec<u8>) {
    buf.clear();
    let head = format!("{k:010} ");
    for col in 0..line_len.saturating_sub(1) {
        let b = head
            .as_bytes()
            .get(col)
            .copied()
            .unwrap_or(b'a' + ((k + col) % 26) as u8);
        buf.push(b);
    }
    buf.push(b'\n');
}

fn write_cmd(r: &[String]) -> i32 {
    let total: usize = num(arg(r, 0, "bytes"), "bytes");
    let line_len: usize = num(arg(r, 1, "line length"), "line length");
    if line_len == 0 {
        die("line length must be at least 1");
    }
    let mut no_newline_end = false;
    let mut fd = 1;
    let mut i = 2;
    while let Some(o) = r.get(i) {
        match o.as_str() {
            "--no-newline-end" => no_newline_end = true,
            "--stderr" => fd = 2,
            _ => break,
        }
        i += 1;
    }
    let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut line = Vec::with_capacity(line_len);
    let mut written = 0usize;
    let mut k = 0usize;
    while written < total {
        pattern_line(k, line_len, &mut line);
        let take = line.len().min(total - written);
        out.extend_from_slice(&line[..take]);
        written += take;
        k += 1;
        if written == total && no_newline_end && out.last() == Some(&b'\n') {
            *out.last_mut().expect("non-empty") = b'z';
        }
        if out.len() >= 1 << 16 {
            write_fd(fd, &out);
            out.clear();
        }
    }
    write_fd(fd, &out);
    chain(&r[i..], &["exit", "0"])
}

fn write_env(file: &str) {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    let mut text = String::new();
    for (k, v) in vars {
        text.push_str(&format!("{k}={v}\n"));
    }
    write_to(file, &text);
}

/// Writes text to FILE (path expanded), or to stdout for `-`.
fn write_to(file: &str, text: &str) {
    if file == "-" {
        write_fd(1, text.as_bytes());
    } else {
        let p = expand(file);
        std::fs::write(&p, text).unwrap_or_else(|e| die(&format!("write {p}: {e}")));
    }
}

fn write_ids(file: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut out = String::new();
    for l in status.lines() {
        if l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:") {
            out.push_str(l);
            out.push('\n');
        }
    }
    write_to(file, &out);
}

/// Allocates `mb` MiB one at a time, writing every page so that it is resident, and keeps it.
fn grow_mem(mb: usize, step_ms: u64) {
    const MIB: usize = 1 << 20;
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(mb);
    for i in 0..mb {
        let mut chunk = vec![0u8; MIB];
        for b in chunk.iter_mut().step_by(4096) {
            *b = (i % 251) as u8 + 1;
        }
        kept.push(std::hint::black_box(chunk));
        sleep_ms(step_ms);
    }
    std::mem::forget(kept);
}

fn bg(r: &[String]) -> i32 {
    let sep = r
        .iter()
        .position(|s| s == "::")
        .unwrap_or_else(|| die("bg: missing `::` between the background and foreground chains"));
    let old = set_mask(libc::SIG_SETMASK, &full_set());
    if fork() == 0 {
        flush_and_exit(run(&r[..sep]));
    }
    set_mask(libc::SIG_SETMASK, &old);
    run(&r[sep + 1..])
}
