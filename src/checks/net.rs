//! `tcp` and `http` probes: one connection each, everything inside the deadline.
//!
//! Invariant: at most `RESPONSE_MAX` bytes are read from a server; no redirect is followed (a 3xx
//! is healthy, as SPEC §10 says); a server that sends its status line and then stalls is judged
//! by that status line at the deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::{Outcome, OUTPUT_MAX};
use crate::config::checks::HttpUrl;

/// Most bytes read from an HTTP response.
const RESPONSE_MAX: usize = OUTPUT_MAX;

fn timed_out(started: Instant, timeout: Duration) -> Outcome {
    Outcome::fail(
        format!("timed out after {} ms", timeout.as_millis()),
        started,
    )
}

/// Connects to `HOST:PORT` within `timeout`.
pub async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let deadline = started + timeout;
    match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => timed_out(started, timeout),
        Ok(Err(e)) => Outcome::fail(format!("{addr}: {}", io_reason(&e)), started),
        Ok(Ok(_)) => Outcome {
            ok: true,
            summary: format!("connected to {addr}"),
            output: String::new(),
            took: started.elapsed(),
        },
    }
}

/// `GET` the URL within `timeout`; 2xx and 3xx are healthy.
pub async fn http(url: &HttpUrl, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut buf = Vec::with_capacity(1024);
    let r = timeout_at(deadline, exchange(url, &mut buf)).await;
    let status = status_line(&buf);
    let outcome = |ok, summary: String| Outcome {
        ok,
        summary,
        output: String::from_utf8_lossy(&buf).into_owned(),
        took: started.elapsed(),
    };
    match (r, status) {
        // The status line is what counts, even if the rest did not come in time.
        (_, Some(Ok((code, line)))) => outcome((200..400).contains(&code), line),
        (_, Some(Err(()))) => outcome(false, "not an HTTP response".into()),
        (Ok(Err(e)), None) => Outcome::fail(format!("{}: {}", url.url, io_reason(&e)), started),
        (Ok(Ok(())), None) => outcome(false, "the connection closed before a response".into()),
        (Err(_), None) => timed_out(started, timeout),
    }
}

async fn exchange(url: &HttpUrl, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut s = TcpStream::connect((url.host.as_str(), url.port)).await?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pmi-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path, url.host_header
    );
    s.write_all(req.as_bytes()).await?;
    let mut chunk = [0u8; 1024];
    while buf.len() < RESPONSE_MAX {
        let room = (RESPONSE_MAX - buf.len()).min(chunk.len());
        let n = s.read(&mut chunk[..room]).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if complete(buf) {
            break;
        }
    }
    Ok(())
}

/// Headers and a `Content-Length` body are in (no need to wait for the close).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    len.is_some_and(|l| buf.len() >= end + 4 + l)
}

/// `Some(Ok((code, "HTTP 200 OK")))` once a status line is in; `Some(Err)` if it is not HTTP.
fn status_line(buf: &[u8]) -> Option<Result<(u16, String), ()>> {
    let end =
        memchr::memmem::find(buf, b"\r\n").or_else(|| (buf.len() >= 64).then_some(buf.len()))?;
    let line = String::from_utf8_lossy(&buf[..end]);
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Some(Err(()));
    };
    let code = code.parse::<u16>().ok().filter(|c| (100..600).contains(c));
    match code {
        Some(c) if version.starts_with("HTTP/") => {
            let reason = parts.next().unwrap_or("").trim();
            Some(Ok((c, format!("HTTP {c} {reason}").trim_end().to_string())))
        }
        _ => Some(Err(())),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(b"HTTP/1.1 200 OK\r\n"),
            Some(Ok((200, "HTTP 200 OK".into())))
        );
        assert_eq!(
            status_line(b"HTTP/1.0 302\r\n"),
            Some(Ok((302, "HTTP 302".into())))
        );
        assert_eq!(status_line(b"HTTP/1.1 20"), None);
        assert_eq!(status_line(b"SSH-2.0-OpenSSH\r\n"), Some(Err(())));
        assert_eq!(status_line(&[b'x'; 80]), Some(Err(())));
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"));
    }
}
