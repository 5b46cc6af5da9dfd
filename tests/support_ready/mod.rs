//! Shared by tests/readiness.rs and tests/start_order.rs: Python apps (sd_notify with the socket
//! module only; an HTTP app that fails while a flag file exists), an apps-file writer for them,
//! and a control client that talks to the PID-1 pmi over its socket in the sandbox.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::common::*;

/// `import notify`: sd_notify over the socket module ('@' is the abstract namespace).
pub const NOTIFY_LIB: &str = r#"
import os, socket
def addr():
    a = os.environ["NOTIFY_SOCKET"]
    return "\0" + a[1:] if a.startswith("@") else a
def sock():
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def send(msg):
    with sock() as s:
        s.sendto(msg.encode(), addr())
"#;

/// `web.py PORT FLAG DELAY [RECORD]`: listens on 127.0.0.1:PORT after DELAY seconds; answers
/// 500 while FLAG exists, else 200. With RECORD, appends "web START LISTEN" (Unix seconds).
pub const WEB: &str = r#"
import http.server, os, sys, time
port, flag, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
start = time.time()
time.sleep(delay)
srv = http.server.HTTPServer
if len(sys.argv) > 4:
    open(sys.argv[4], "a").write("web %f %f\n" % (start, time.time()))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists(flag) else 200
        body = b"sick\n" if code == 500 else b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv(("127.0.0.1", port), H).serve_forever()
"#;

/// One apps-file item running `python3 FILE` from the sandbox, plus `extra` (indented lines).
pub fn py_app(name: &str, file: &str, extra: &str) -> String {
    format!("  - name: {name}\n    script: {file}\n    interpreter: python3\n    kill_timeout: 500ms\n{extra}")
}

pub fn start(sb: &Sandbox, yaml: &str) -> Pmi {
    start_with(sb, yaml, &[])
}

/// `pmi FLAGS apps.yaml` as PID 1, with `yaml` as the apps file.
pub fn start_with(sb: &Sandbox, yaml: &str, flags: &[&str]) -> Pmi {
    let file = sb.write("apps.yaml", yaml);
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.push(file.to_string_lossy().into_owned());
    sb.pid1(args).start()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET path` on 127.0.0.1:port ("" when nothing answers).
pub fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The pmi client against the sandbox's control socket.
pub struct Ctl {
    sock: std::path::PathBuf,
}

impl Ctl {
    pub fn new(sb: &Sandbox) -> Ctl {
        Ctl {
            sock: sb.path("pmi.sock"),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(pmi_bin())
            .args(args)
            .env("PMI_SOCKET", &self.sock)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn code(&self, args: &[&str]) -> i32 {
        self.run(args).status.code().unwrap_or(-1)
    }

    /// stdout and stderr together.
    pub fn out(&self, args: &[&str]) -> String {
        let o = self.run(args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    /// `status --json`, or `Null` while pmi does not answer yet. Paced, for polling loops.
    pub fn status(&self) -> Value {
        std::thread::sleep(Duration::from_millis(50));
        let o = self.run(&["status", "--json"]);
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    /// The first instance of app `name` in `status --json` (`Null` if none).
    pub fn inst(&self, name: &str) -> Value {
        self.status()["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn status_of(&self, name: &str) -> String {
        self.inst(name)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The environment of app `name`'s process, read inside pmi's namespace.
    pub fn nsenter_env(&self, pmi: &Pmi, name: &str) -> Vec<String> {
        let pid = self.inst(name)["pid"].as_u64().unwrap_or(0);
        let o = pmi.nsenter(["cat", &format!("/proc/{pid}/environ")]);
        String::from_utf8_lossy(&o.stdout)
            .split('\0')
            .map(str::to_string)
            .collect()
    }
}

/// `rec.py NAME FILE [SECONDS [CODE]]`: appends "NAME START" to FILE, runs SECONDS (default: for
/// ever), appends "NAME-done END" and exits with CODE (default 0).
pub const REC: &str = r#"
import sys, time
name, out = sys.argv[1], sys.argv[2]
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 1e9
code = int(sys.argv[4]) if len(sys.argv) > 4 else 0
open(out, "a").write("%s %f\n" % (name, time.time()))
time.sleep(secs)
open(out, "a").write("%s-done %f\n" % (name, time.time()))
sys.exit(code)
"#;

/// The times recorded by `rec.py` and `web.py`: name → (first) value.
pub fn times(sb: &Sandbox, file: &str) -> std::collections::HashMap<String, Vec<f64>> {
    let mut m = std::collections::HashMap::new();
    for l in sb.lines(file) {
        let mut it = l.split_whitespace();
        let Some(name) = it.next() else { continue };
        let v: Vec<f64> = it.filter_map(|x| x.parse().ok()).collect();
        m.entry(name.to_string()).or_insert(v);
    }
    m
}
