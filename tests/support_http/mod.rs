//! A raw HTTP/1.1 client and the Prometheus reference parser, shared by the HTTP tests (in-process
//! and in Docker). Raw TCP so that hostile clients (slowloris, huge bodies) can be played exactly.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An answer: status code, lower-cased head, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn parse(buf: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `raw` and reads the answer until the server closes.
pub fn raw(addr: SocketAddr, raw: &str) -> Reply {
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Reply::parse(&buf)
}

pub fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    raw(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path)
}

/// A slowloris client: an unfinished request head, kept open.
pub fn slowloris(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n").unwrap();
    s
}

/// Waits until the server has closed `s` (read returns 0 or an error), up to `limit`.
pub fn closed_within(mut s: TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => continue,
        }
    }
}

/// Announces a 10 MB body, sends none, and returns the answer's status and whether the
/// server then refused the 10 MB (closed instead of reading it).
pub fn huge_body(addr: SocketAddr, method: &str, path: &str) -> (Reply, bool) {
    let mut s = connect(addr);
    let total = 10usize << 20;
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    let reply = Reply::parse(&buf[..n]);
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    while sent < total {
        match s.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    (reply, sent < total)
}

/// One parsed sample: name, labels (a JSON object), value.
pub type Sample = (String, serde_json::Value, f64);

/// Parses an exposition with the Prometheus Python client's parser (a port of the reference
/// parser; it rejects malformed lines). Panics with a clear message when python3 or
/// prometheus_client is missing (.ci/run installs it: pip install prometheus-client).
pub fn prometheus_parse(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps([s.name, s.labels, s.value]))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse /metrics");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the exposition (or is missing: pip install prometheus-client):\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v[0].as_str().unwrap().to_string(),
                v[1].clone(),
                v[2].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The value of `name` for the instance `pm_id` (or the only sample of `name` when `None`).
pub fn value(samples: &[Sample], name: &str, pm_id: Option<&str>) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && pm_id.is_none_or(|p| l["pm_id"] == p))
        .map(|s| s.2)
}
