//! Real checks: a loopback HTTP server this test runs, a closed port, real exec children reaped
//! by pid (standing in for the supervisor's reaper, which would take them with waitpid(-1)).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream as StdStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::checks::{HttpUrl, Probe};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A loopback HTTP server: one thread per connection, answers by path. Connections to `/hang`
/// are held open (kept in `held`) and never answered.
struct Server {
    port: u16,
    held: Arc<Mutex<Vec<StdStream>>>,
}

fn server() -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let h = h.clone();
            std::thread::spawn(move || {
                let mut req = [0u8; 2048];
                let n = c.read(&mut req).unwrap_or(0);
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                let path = req.split(' ').nth(1).unwrap_or("").to_string();
                let reply: Vec<u8> = match path.as_str() {
                    "/ok" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                    "/fail" => {
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nbad!"
                            .to_vec()
                    }
                    "/redir" => {
                        b"HTTP/1.1 302 Found\r\nLocation: /fail\r\nContent-Length: 0\r\n\r\n"
                            .to_vec()
                    }
                    "/big" => {
                        let mut v = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                        v.extend(std::iter::repeat_n(b'x', 1 << 20));
                        v
                    }
                    "/stall" => {
                        let _ = c.write_all(b"HTTP/1.1 503 Service Unavailable\r\n");
                        h.lock().unwrap().push(c);
                        return;
                    }
                    "/echo-host" => format!("HTTP/1.1 200 OK\r\n\r\n{req}").into_bytes(),
                    _ => {
                        h.lock().unwrap().push(c); // /hang
                        return;
                    }
                };
                let _ = c.write_all(&reply);
            });
        }
    });
    Server { port, held }
}

fn url(port: u16, path: &str) -> HttpUrl {
    HttpUrl {
        url: format!("http://127.0.0.1:{port}{path}"),
        host: "127.0.0.1".into(),
        port,
        path: path.into(),
        host_header: format!("127.0.0.1:{port}"),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

#[test]
fn http_statuses_redirects_hangs_and_bounds() {
    let s = server();
    rt().block_on(async {
        let o = http(&url(s.port, "/ok"), ms(5000)).await;
        assert!(o.ok, "{o:?}");
        assert_eq!(o.summary, "HTTP 200 OK");
        assert!(o.output.ends_with("\r\n\r\nok"), "{o:?}");
        let o = http(&url(s.port, "/fail"), ms(5000)).await;
        assert!(
            !o.ok && o.summary == "HTTP 500 Internal Server Error",
            "{o:?}"
        );
        let o = http(&url(s.port, "/redir"), ms(5000)).await;
        assert!(
            o.ok && o.summary == "HTTP 302 Found",
            "a redirect is healthy, not followed: {o:?}"
        );
        let o = http(&url(s.port, "/big"), ms(5000)).await;
        assert!(o.ok && o.output.len() <= OUTPUT_MAX, "{}", o.output.len());
        let t = Instant::now();
        let o = http(&url(s.port, "/hang"), ms(300)).await;
        assert!(!o.ok && o.summary == "timed out after 300 ms", "{o:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "bounded by its timeout"
        );
        let o = http(&url(s.port, "/stall"), ms(300)).await;
        assert!(
            !o.ok && o.summary == "HTTP 503 Service Unavailable",
            "judged by its status line: {o:?}"
        );
        let o = http(&url(s.port, "/echo-host"), ms(5000)).await;
        assert!(
            o.output
                .contains(&format!("Host: 127.0.0.1:{}\r\n", s.port)),
            "{o:?}"
        );
        assert!(o.output.contains("GET /echo-host HTTP/1.1\r\n"), "{o:?}");
    });
    assert!(s.held.lock().unwrap().len() >= 2);
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn tcp_and_http_against_a_closed_port() {
    let s = server();
    let closed = closed_port();
    rt().block_on(async {
        let o = tcp(&format!("127.0.0.1:{}", s.port), ms(5000)).await;
        assert!(o.ok, "{o:?}");
        let o = tcp(&format!("127.0.0.1:{closed}"), ms(5000)).await;
        assert_eq!(o.summary, format!("127.0.0.1:{closed}: connection refused"));
        let o = http(&url(closed, "/"), ms(5000)).await;
        assert!(!o.ok && o.summary.ends_with("connection refused"), "{o:?}");
    });
}

fn ctx() -> ExecCtx {
    ExecCtx {
        cwd: std::env::temp_dir(),
        env: vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("CHECK_VAR".into(), "from-the-app".into()),
        ],
        uid: None,
        gid: None,
        groups: Vec::new(),
    }
}

/// Runs one exec check to its result, reaping its pid as the supervisor's reaper would.
async fn exec_check(argv: &[&str], ctx: &ExecCtx, timeout_ms: u64) -> (Outcome, i32) {
    let mut r: Runner<u32> = Runner::new();
    let probe = Probe::Exec(argv.iter().map(|s| s.to_string()).collect());
    r.start(7, &probe, Duration::from_millis(timeout_ms), Some(ctx));
    // 0: the spawn failed and the result is already queued.
    let pid = r.exec_pids().next().unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let deadline = soon(timeout_ms + 20_000);
    loop {
        tokio::select! {
            d = r.next() => {
                assert_eq!(d.key, 7);
                return (d.outcome, pid);
            }
            _ = tick.tick() => {
                let pids: Vec<i32> = r.exec_pids().collect();
                for p in pids {
                    let mut st = 0;
                    // SAFETY: waits for this test's own child only.
                    if unsafe { libc::waitpid(p, &mut st, libc::WNOHANG) } == p {
                        let s = if libc::WIFEXITED(st) { ExitStatus::Code(libc::WEXITSTATUS(st)) } else { ExitStatus::Signal(libc::WTERMSIG(st)) };
                        assert!(r.on_reaped(p, s));
                    }
                }
                assert!(Instant::now() < deadline, "no result");
            }
        }
    }
}

/// Live (not zombie) processes in process group `pgid`.
fn live_in_group(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() > 2 && f[2].parse() == Ok(pgid) && f[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

#[test]
fn exec_exit_codes_output_and_environment() {
    rt().block_on(async {
        let c = ctx();
        let (o, _) = exec_check(&["sh", "-c", "echo ok $CHECK_VAR; pwd"], &c, 5000).await;
        assert!(o.ok && o.summary == "exit code 0", "{o:?}");
        let dir = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(o.output, format!("ok from-the-app\n{}\n", dir.display()));
        let (o, _) = exec_check(&["sh", "-c", "echo broken >&2; exit 1"], &c, 5000).await;
        assert!(
            !o.ok && o.summary == "exit code 1" && o.output == "broken\n",
            "{o:?}"
        );
        let (o, pid) = exec_check(&["/nonexistent/check"], &c, 5000).await;
        assert_eq!(pid, 0, "nothing was spawned");
        assert!(!o.ok && o.summary.contains("not found"), "{o:?}");
        // Output is bounded: the last bytes are kept.
        let (o, _) = exec_check(
            &[
                "sh",
                "-c",
                "head -c 100000 /dev/zero | tr '\\0' a; echo END",
            ],
            &c,
            10_000,
        )
        .await;
        assert!(
            o.ok && o.output.ends_with("aEND\n") && o.output.len() <= OUTPUT_MAX + 3,
            "{}",
            o.output.len()
        );
    });
}

#[test]
fn exec_runs_as_the_apps_user() {
    let mut c = ctx();
    c.uid = Some(65534);
    c.gid = Some(65534);
    rt().block_on(async {
        let (o, _) = exec_check(&["sh", "-c", "id -u; id -g"], &c, 5000).await;
        assert_eq!(o.output, "65534\n65534\n", "{o:?}");
    });
}

#[test]
fn a_hanging_exec_is_killed_at_its_timeout_with_everything_it_started() {
    rt().block_on(async {
        let t = Instant::now();
        let (o, pid) = exec_check(
            &["sh", "-c", "sleep 60 & echo started; sleep 60"],
            &ctx(),
            300,
        )
        .await;
        assert!(
            !o.ok && o.summary == "timed out after 300 ms (killed)",
            "{o:?}"
        );
        assert_eq!(o.output, "started\n");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let deadline = soon(10_000);
        while !live_in_group(pid).is_empty() {
            assert!(
                Instant::now() < deadline,
                "left behind: {:?}",
                live_in_group(pid)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn checks_through_the_runner_report_with_their_key() {
    let s = server();
    rt().block_on(async {
        let mut r: Runner<(u32, u64)> = Runner::new();
        r.start(
            (1, 1),
            &Probe::Http(url(s.port, "/ok")),
            Duration::from_secs(5),
            None,
        );
        r.start(
            (2, 9),
            &Probe::Tcp(format!("127.0.0.1:{}", closed_port())),
            Duration::from_secs(5),
            None,
        );
        r.start(
            (3, 4),
            &Probe::Exec(vec!["true".into()]),
            Duration::from_secs(5),
            None,
        );
        let mut got = Vec::new();
        for _ in 0..3 {
            let d = tokio::time::timeout(Duration::from_secs(20), r.next())
                .await
                .unwrap();
            got.push((d.key, d.outcome.ok));
        }
        got.sort();
        assert_eq!(got, [((1, 1), true), ((2, 9), false), ((3, 4), false)]);
        assert!(
            !r.on_reaped(12345678, ExitStatus::Code(0)),
            "not a check's pid"
        );
    });
}

fn cpu(who: i32) -> Duration {
    // SAFETY: plain syscall with a valid out-pointer.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// CPU of the checking side per 1000 checks, run one after another (as a timer would):
/// `cargo test --release --lib -- --ignored --nocapture cpu_per_1000_checks`.
#[test]
#[ignore]
fn cpu_per_1000_checks() {
    let port = closed_port();
    let mut srv = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    rt().block_on(async {
        let u = url(port, "/");
        let deadline = soon(20_000);
        while !http(&u, ms(1000)).await.ok {
            assert!(
                Instant::now() < deadline,
                "python http.server did not start"
            );
            tokio::time::sleep(ms(50)).await;
        }
        let (c0, t0) = (cpu(libc::RUSAGE_SELF), Instant::now());
        for _ in 0..1000 {
            assert!(http(&u, ms(5000)).await.ok);
        }
        let (c1, t1) = (cpu(libc::RUSAGE_SELF), Instant::now());
        println!(
            "http: {:?} CPU in pmi per 1000 checks ({:?} wall)",
            c1 - c0,
            t1 - t0
        );
        let (s0, k0) = (cpu(libc::RUSAGE_SELF), cpu(libc::RUSAGE_CHILDREN));
        let t0 = Instant::now();
        for _ in 0..1000 {
            let (o, _) = exec_check(&["true"], &ctx(), 5000).await;
            assert!(o.ok);
        }
        let (s1, k1) = (cpu(libc::RUSAGE_SELF), cpu(libc::RUSAGE_CHILDREN));
        println!(
            "exec true: {:?} CPU in pmi + {:?} in the checks per 1000 ({:?} wall)",
            s1 - s0,
            k1 - k0,
            t0.elapsed()
        );
    });
    srv.kill().unwrap();
    srv.wait().unwrap();
}
