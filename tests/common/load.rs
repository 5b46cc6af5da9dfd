//! A bounded HTTP load client on loopback that counts every failure (for the cluster tests):
//! `clients` threads, each sequential, `Connection: close`, each request with a deadline.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::secs;

/// Per-pid answer counts and the failures, as one load thread returns them.
pub type Tally = (BTreeMap<i32, u64>, Vec<String>);

/// One GET; `Some(pid)` of the instance that answered, `None` for any failure.
pub fn get_pid(addr: SocketAddr, path: &str) -> Result<i32, String> {
    let body = get(addr, path)?;
    body.trim()
        .strip_prefix("pid ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("unexpected body {body:?}"))
}

pub fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no reply: {text:?}"))?;
    if !(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")) {
        return Err(format!("status: {head}"));
    }
    Ok(body.to_string())
}

/// A bounded load client: `clients` threads, each sequential, until `stop` or `max` requests
/// in all or `limit` time. Every failure is counted and kept.
pub struct Load {
    failed: Arc<AtomicU64>,
    seen: Arc<Mutex<std::collections::BTreeSet<i32>>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Tally>>,
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize, max: u64, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let threads = (0..clients)
            .map(|_| {
                let (stop, done, seen) = (stop.clone(), done.clone(), seen.clone());
                let failed = failed.clone();
                std::thread::spawn(move || {
                    let mut pids = BTreeMap::new();
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && done.fetch_add(1, Ordering::Relaxed) < max
                        && t0.elapsed() < limit
                    {
                        match get_pid(addr, "/") {
                            Ok(p) => {
                                *pids.entry(p).or_insert(0) += 1;
                                seen.lock().unwrap().insert(p);
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                failures.push(e);
                            }
                        }
                    }
                    (pids, failures)
                })
            })
            .collect();
        Load {
            failed,
            seen,
            stop,
            done,
            threads,
        }
    }

    /// Waits until at least `n` requests were sent and every pid of `pids` has answered.
    pub fn until_all_answer(&self, n: u64, pids: &[i32]) {
        let deadline = Instant::now() + secs(10.0);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if self.sent() >= n && pids.iter().all(|p| seen.contains(p)) {
                return;
            }
            let failed = self.failed.load(Ordering::Relaxed);
            assert!(
                Instant::now() < deadline,
                "no {n} requests with answers from each of {pids:?} in time: {} sent, \
                 {failed} failed, answers from {seen:?}",
                self.sent()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn sent(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut pids = BTreeMap::new();
        let mut failures = Vec::new();
        for t in self.threads {
            let (p, f) = t.join().unwrap();
            for (k, v) in p {
                *pids.entry(k).or_insert(0) += v;
            }
            failures.extend(f);
        }
        (pids, failures)
    }
}
