//! Hostile apps files: every reader has a budget (bytes, values after alias expansion, depth),
//! maps are built in linear time, and a file that is not UTF-8 gets a located error. Each case
//! runs `pmi check` as a child under a deadline and an address-space limit, so a reader that
//! blows up fails the test instead of the machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{pmi_bin, secs};

/// Address space for one `pmi check`: enough for a 16 MiB file read twice over, far below
/// what an unbounded alias expansion or a char-per-4-bytes copy of the file needs.
const AS_LIMIT: u64 = 160 * 1024 * 1024;

/// Writes `name` beside an `x.js` (the script every file here names).
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::write(dir.join("x.js"), "").unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `pmi check FILE` under `AS_LIMIT`, killed at `deadline`. Returns the output (stdout, the
/// resolved apps, is discarded: only the verdict matters) and the time taken.
fn check(file: &Path, deadline: Duration) -> (Output, Duration) {
    check_within(file, deadline, AS_LIMIT)
}

fn check_within(file: &Path, deadline: Duration, as_limit: u64) -> (Output, Duration) {
    let start = Instant::now();
    let child = Command::new("prlimit")
        .arg(format!("--as={as_limit}"))
        .arg(pmi_bin())
        .arg("check")
        .arg(file)
        .current_dir(file.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(deadline) {
        Ok(out) => (out.unwrap(), start.elapsed()),
        Err(_) => {
            // SAFETY: plain kill(2) of the child we spawned (it is not yet reaped: its waiter
            // is still blocked).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("pmi check {} took longer than {deadline:?}", file.display());
        }
    }
}

/// Asserts exit 2 with an error at `name:LINE:COL:` containing `what`.
fn assert_located(out: &Output, name: &str, what: &str) -> (usize, usize) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let line = err
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no error with {what:?} in: {err}"));
    let rest = line
        .split_once(&format!("{name}:"))
        .unwrap_or_else(|| panic!("error not located in {name}: {line}"))
        .1;
    let mut it = rest.split(':');
    let l: usize = it.next().unwrap().parse().expect(line);
    let c: usize = it.next().unwrap().parse().expect(line);
    assert!(l >= 1 && c >= 1, "{line}");
    (l, c)
}

fn billion_laughs() -> String {
    let mut t = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, c) in ('b'..='i').enumerate() {
        let prev = (b'a' + i as u8) as char;
        let refs = vec![format!("*{prev}"); 9].join(",");
        t.push_str(&format!("{c}: &{c} [{refs}]\n"));
    }
    t.push_str("apps: [{name: a, script: x.js}]\n");
    t
}

#[test]
fn billion_laughs_is_a_located_error_in_bounded_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let text = billion_laughs();
    assert!(text.len() < 600, "{}", text.len());
    let f = write(dir.path(), "apps.yaml", text.as_bytes());
    let (out, took) = check(&f, secs(10.0));
    let (line, _) = assert_located(&out, "apps.yaml", "more than 500000 values");
    assert!((5..=9).contains(&line), "line {line}");
    assert!(took < secs(5.0), "took {took:?}");
}

#[test]
fn deep_nesting_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let f = write(dir.path(), "apps.yaml", nest(220).as_bytes());
    let (out, _) = check(&f, secs(10.0));
    assert_located(&out, "apps.yaml", "nested more than 200 deep");
    // Deeper still, yaml-rust2's own limit answers first; located all the same.
    let deep = nest(100_000);
    let f = write(dir.path(), "apps.yaml", deep.as_bytes());
    let (out, _) = check(&f, secs(10.0));
    assert_located(&out, "apps.yaml", "invalid YAML");
    let f = write(dir.path(), "apps.json", deep.as_bytes());
    let (out, _) = check(&f, secs(10.0));
    assert_located(&out, "apps.json", "nested too deeply");
}

fn flow_list(items: usize) -> String {
    let mut t = String::from("apps:\n  - name: a\n    script: x.js\n    args: [");
    t.push_str(&"1,".repeat(items));
    t.push_str("1]\n");
    t
}

#[test]
fn big_flow_lists_load_or_stop_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.yaml", flow_list(100_000).as_bytes());
    let (out, _) = check(&f, secs(20.0));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 7.5 MiB of list: within the byte cap, beyond the value budget.
    let f = write(dir.path(), "big.yaml", flow_list(4_000_000).as_bytes());
    let (out, _) = check(&f, secs(30.0));
    let (line, _) = assert_located(&out, "big.yaml", "more than 500000 values");
    assert_eq!(line, 4);
}

fn env_keys(n: usize) -> String {
    let mut t = String::from("apps:\n  - name: a\n    script: x.js\n    env:\n");
    for i in 0..n {
        t.push_str(&format!("      K{i}: v{i}\n"));
    }
    t.push_str("      K7: again\n");
    t
}

#[test]
fn a_hundred_thousand_env_keys_load_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "apps.yaml", env_keys(100_000).as_bytes());
    // Quadratic duplicate detection took minutes here; linear takes well under a second in a
    // release build (a debug build or a loaded machine gets the generous deadline).
    let (out, took) = check(&f, secs(20.0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("'K7' is given twice"), "{err}");
    let json = format!(
        "{{\"apps\": [{{\"name\": \"a\", \"script\": \"x.js\", \"env\": {{{}}}}}]}}",
        (0..100_000)
            .map(|i| format!("\"K{i}\": {i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let f = write(dir.path(), "apps.json", json.as_bytes());
    let (out, took_json) = check(&f, secs(20.0));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("100 000 env keys: yaml {took:?}, json {took_json:?}");
}

#[test]
fn files_over_the_byte_cap_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = b"{\"apps\": []}".to_vec();
    big.resize(17 * 1024 * 1024, b' ');
    let f = write(dir.path(), "apps.json", &big);
    let (out, _) = check(&f, secs(10.0));
    assert_located(&out, "apps.json", "larger than 16 MiB");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keep data out of it"), "{err}");
}

#[test]
fn json_white_space_costs_no_more_than_the_file() {
    // 15 MiB of white space around a valid file: read in place it peaks near 17 MiB; as one
    // char per 4 bytes (the old reader) it needed 60 MiB more and could not fit in 64 MiB.
    let dir = tempfile::tempdir().unwrap();
    let mut text = vec![b' '; 15 * 1024 * 1024];
    text.extend_from_slice(b"{\"apps\": [{\"name\": \"a\", \"script\": \"x.js\"}]}\n");
    let f = write(dir.path(), "apps.json", &text);
    let (out, _) = check_within(&f, secs(20.0), 64 << 20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_file_that_is_not_utf8_names_the_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = b"apps:\n  - name: caf\xc3\xa9\n    script: x.js\n    args: ab".to_vec();
    text.push(0xff);
    text.extend_from_slice(b"cd\n");
    let f = write(dir.path(), "apps.yaml", &text);
    let (out, _) = check(&f, secs(10.0));
    let (line, col) = assert_located(&out, "apps.yaml", "not UTF-8");
    assert_eq!((line, col), (4, 13));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0xff") && err.contains("save it as UTF-8"),
        "{err}"
    );
}
