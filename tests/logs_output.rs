//! App output (SPEC §6): no byte lost, streams kept apart, the three formats.

mod common;

use std::fs::File;

use common::*;

/// Runs one app `write ARGS` to completion (auto-exit 0) with these flags; returns the finished pmi.
fn run_writer(sb: &Sandbox, write_args: &[&str], flags: &[&str], watchdog: f64) -> Pmi {
    let mut args = vec!["write"];
    args.extend_from_slice(write_args);
    let apps = [App::new("writer", &args).set("autorestart", "false")];
    let mut pmi = sb
        .apps_launch(true, &apps, flags)
        .watchdog(watchdog)
        .start();
    assert_eq!(pmi.wait_exit(secs(watchdog)), 0);
    pmi
}

/// pmi's stdout must be byte for byte what `pmi-testkit write ARGS` prints.
fn assert_raw_stdout_is(pmi: &Pmi, write_args: &[&str], what: &str) {
    let mut args = vec!["write"];
    args.extend_from_slice(write_args);
    assert_same_stream(
        File::open(pmi.stdout_path()).expect("pmi stdout"),
        testkit_stream(&args),
        what,
    );
}

#[test]
fn raw_50_mb_of_lines_arrive_byte_for_byte() {
    let sb = Sandbox::new();
    let args = ["52428800", "100"];
    let pmi = run_writer(&sb, &args, &[], 180.0);
    assert_raw_stdout_is(&pmi, &args, "50 MB through pmi (raw)");
}

#[test]
fn raw_1_mb_line_arrives_whole() {
    let sb = Sandbox::new();
    // One line: 1 MiB of text and its newline.
    let args = ["1048577", "1048577"];
    let pmi = run_writer(&sb, &args, &["--log-format", "raw"], 60.0);
    assert_raw_stdout_is(&pmi, &args, "a 1 MiB line through pmi (raw)");
}

#[test]
fn raw_partial_last_line_is_flushed_at_exit() {
    let sb = Sandbox::new();
    // 1050 bytes: 10 lines of 100 and 50 bytes without a newline.
    let pmi = run_writer(&sb, &["1050", "100", "--no-newline-end"], &[], 60.0);
    let out = std::fs::read(pmi.stdout_path()).unwrap();
    let mut want = Vec::new();
    std::io::Read::read_to_end(
        &mut testkit_stream(&["write", "1050", "100", "--no-newline-end"]),
        &mut want,
    )
    .unwrap();
    // pmi may end the partial line with a newline of its own; nothing else may change.
    assert!(
        out == want || out == [want.as_slice(), b"\n"].concat(),
        "got {} bytes, want {} (+ optional newline); tail {:?}",
        out.len(),
        want.len(),
        String::from_utf8_lossy(&out[out.len().saturating_sub(80)..])
    );
}

/// App writes OUT-MARK to stdout and ERR-MARK to stderr; checks where they land.
fn streams_stay_apart(format: &str) {
    let sb = Sandbox::new();
    let apps = [
        App::new("streams", &["echo", "OUT-MARK", "echo-err", "ERR-MARK"])
            .set("autorestart", "false"),
    ];
    let mut pmi = sb.start_apps(&apps, &["--log-format", format]);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    let (out, err) = (pmi.stdout(), pmi.stderr());
    assert!(out.contains("OUT-MARK"), "{format}: stdout: {out:?}");
    assert!(!out.contains("ERR-MARK"), "{format}: stdout: {out:?}");
    assert!(err.contains("ERR-MARK"), "{format}: stderr: {err:?}");
    assert!(!err.contains("OUT-MARK"), "{format}: stderr: {err:?}");
}

#[test]
fn stdout_goes_to_stdout_and_stderr_to_stderr_in_every_format() {
    for f in ["raw", "prefixed", "json"] {
        streams_stay_apart(f);
    }
}

#[test]
fn prefixed_lines_of_two_apps_are_whole_and_in_order() {
    let sb = Sandbox::new();
    let write = ["write", "2000000", "100"];
    let apps = [
        App::new("alpha", &write).set("autorestart", "false"),
        App::new("beta", &write).set("autorestart", "false"),
    ];
    let mut pmi = sb
        .apps_launch(true, &apps, &["--log-format", "prefixed"])
        .watchdog(120.0)
        .start();
    assert_eq!(pmi.wait_exit(secs(120.0)), 0);
    // Each app's lines, prefix stripped, must be exactly the pattern, in order.
    let mut expected: Vec<(String, std::io::Lines<std::io::BufReader<_>>)> = ["alpha", "beta"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                std::io::BufRead::lines(std::io::BufReader::new(testkit_stream(&write))),
            )
        })
        .collect();
    let mut counts = [0usize; 2];
    for line in file_lines(pmi.stdout_path()) {
        let (prefix, msg) = line
            .split_once(" | ")
            .unwrap_or_else(|| panic!("not `name | line`: {line:?}"));
        let i = expected
            .iter()
            .position(|(n, _)| prefix.trim() == n || prefix.trim().starts_with(&format!("{n}:")))
            .unwrap_or_else(|| panic!("unknown prefix {prefix:?} in {line:?}"));
        let want = expected[i]
            .1
            .next()
            .expect("more lines than written")
            .unwrap();
        assert_eq!(msg, want, "line {} of {}", counts[i], expected[i].0);
        counts[i] += 1;
    }
    for (i, (name, rest)) in expected.iter_mut().enumerate() {
        assert!(
            rest.next().is_none(),
            "{name}: only {} lines arrived",
            counts[i]
        );
    }
}

fn is_rfc3339_millis(ts: &str) -> bool {
    // 2025-01-02T03:04:05.678Z or ...678+01:00
    let b = ts.as_bytes();
    b.len() >= 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[20..23].iter().all(u8::is_ascii_digit)
        && (b[23] == b'Z' || b[23] == b'+' || b[23] == b'-')
}

#[test]
fn json_lines_have_ts_app_instance_stream_msg() {
    let sb = Sandbox::new();
    let apps = [App::new(
        "jsonapp",
        &["echo", "hello out", "echo-err", "hello \"err\""],
    )
    .set("autorestart", "false")];
    let mut pmi = sb.start_apps(&apps, &["--log-format", "json"]);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    let parse = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    };
    // Every line on both streams is JSON, pmi's own messages included.
    let out = parse(&pmi.stdout());
    let err = parse(&pmi.stderr());
    let find = |lines: &[serde_json::Value], msg: &str| -> serde_json::Value {
        lines
            .iter()
            .find(|v| v["msg"] == msg)
            .cloned()
            .unwrap_or_else(|| panic!("no line with msg {msg:?} in {lines:?}"))
    };
    for (v, stream) in [
        (find(&out, "hello out"), "out"),
        (find(&err, "hello \"err\""), "err"),
    ] {
        assert_eq!(v["app"], "jsonapp", "{v}");
        assert_eq!(v["stream"], stream, "{v}");
        assert!(v.get("instance").is_some(), "instance key: {v}");
        let ts = v["ts"].as_str().unwrap_or_else(|| panic!("ts string: {v}"));
        assert!(is_rfc3339_millis(ts), "ts RFC 3339 with ms: {ts}");
    }
}

/// pmi's stdout for the console-alias tests: what `docker logs` drivers hand a container.
enum Stdout {
    /// A pipe, read to the end by the test.
    Pipe,
    /// A regular file opened with O_APPEND (`>>`).
    AppendFile,
}

/// Runs `write 12 MiB` with these log fields, pmi's stdout being `kind`, and returns what
/// reached pmi's stdout. Launched by hand (not `Launch`) to choose the stdout; pmi leads its
/// own process group, killed whole if the deadline passes.
fn through_console_alias(sb: &Sandbox, kind: Stdout, fields: &[(&str, String)]) -> Vec<u8> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut app = App::new("writer", &["write", "12582912", "100"]).set("autorestart", "false");
    for (k, v) in fields {
        app = app.set(k, v);
    }
    let apps = sb.apps(&[app]);
    let out_path = sb.path("pmi.stdout");
    let mut cmd = Command::new(pmi_bin());
    cmd.arg(&apps)
        .current_dir(sb.dir())
        .env("PMI_SOCKET", sb.path("pmi.sock"))
        .stdin(Stdio::null())
        .stderr(File::create(sb.path("pmi.stderr")).unwrap())
        .process_group(0);
    match kind {
        Stdout::Pipe => cmd.stdout(Stdio::piped()),
        Stdout::AppendFile => cmd.stdout(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out_path)
                .unwrap(),
        ),
    };
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let reader = child.stdout.take().map(|mut r| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    });
    let deadline = std::time::Instant::now() + secs(120.0);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: kill(2) of the process group this test started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            panic!("pmi did not finish within the deadline");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "pmi: {status}: {}", sb.read("pmi.stderr"));
    match reader {
        Some(t) => t.join().unwrap(),
        None => std::fs::read(&out_path).unwrap(),
    }
}

/// Each line exactly once and intact: the stream is the app's, byte for byte.
fn assert_written_once(got: Vec<u8>, what: &str) {
    assert_same_stream(
        std::io::Cursor::new(got),
        testkit_stream(&["write", "12582912", "100"]),
        what,
    );
}

/// `out_file: /dev/stdout` (a pm2-in-Docker habit) names pmi's own stdout: opening it again
/// gave a second file description, so every line was written twice and chunks tore.
#[test]
fn out_file_dev_stdout_writes_each_line_once() {
    let sb = Sandbox::new();
    let fields = [
        ("out_file", "/dev/stdout".to_string()),
        ("error_file", "/dev/stderr".to_string()),
    ];
    let got = through_console_alias(&sb, Stdout::Pipe, &fields);
    assert_written_once(got, "12 MB, out_file: /dev/stdout, stdout a pipe");
}

#[test]
fn log_files_that_are_pmis_stdout_by_inode_write_each_line_once() {
    // Other names of the same open file, found by device and inode, not by the name.
    let sb = Sandbox::new();
    let fields = [
        ("out_file", "/proc/self/fd/1".to_string()),
        ("log_file", q(&sb.p("pmi.stdout"))),
    ];
    let got = through_console_alias(&sb, Stdout::AppendFile, &fields);
    assert_written_once(
        got,
        "12 MB, out_file: /proc/self/fd/1 and log_file: the stdout file",
    );
}
