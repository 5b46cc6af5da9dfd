//! `pmi monit` (alias `status --watch` style): a live, refreshing status table for
//! `docker exec -it ctr pmi monit`, built from the same `Status` request and table renderer as
//! `pmi status`, so it adds no protocol and costs the binary almost nothing.
//!
//! Invariant: read-only and bounded. One request per interval (at least 250 ms), one connection at
//! a time; on a terminal the screen is redrawn in place, elsewhere each frame is printed after
//! the last (logs, tests). Ends on Ctrl-C, after `--count` frames, or when pmi is gone (exit 3).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::control::client::request;
use crate::control::proto::{InstanceRow, Request, Response};
use crate::control::render;
use crate::control::socket::socket_path;
use crate::exit::{self, Failure};

/// Fastest refresh: each frame reads /proc for every instance inside pmi.
const MIN_INTERVAL: Duration = Duration::from_millis(250);

pub fn run(
    socket: Option<PathBuf>,
    target: Option<String>,
    interval_ms: u64,
    count: Option<u32>,
) -> Result<i32, Failure> {
    let path = socket_path(socket.as_deref());
    let interval = Duration::from_millis(interval_ms).max(MIN_INTERVAL);
    let tty = std::io::stdout().is_terminal();
    let req = Request::Status { target };
    let mut frame = 0u32;
    loop {
        let rows = match request(&path, &req)? {
            Response::Status(r) => r.instances,
            other => {
                return Err(Failure::Failed(format!(
                    "pmi: unexpected answer: {other:?}"
                )))
            }
        };
        let mut text = String::new();
        if tty {
            // Home and clear: redraw in place instead of scrolling.
            text.push_str("\x1b[H\x1b[2J");
        }
        text.push_str(&header(&rows, interval));
        text.push_str(&render::table(
            &rows,
            tty && std::env::var_os("NO_COLOR").is_none(),
        ));
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(exit::FAILURE);
        }
        drop(out);
        frame += 1;
        if count.is_some_and(|c| frame >= c) {
            return Ok(exit::OK);
        }
        std::thread::sleep(interval);
    }
}

/// "pmi monit · every 2s · 3 instances: 2 online, 1 launching · 5 restarts · Ctrl-C to quit"
fn header(rows: &[InstanceRow], interval: Duration) -> String {
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows {
        let s = serde_json::to_value(r.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "?".into());
        *by_status.entry(s).or_default() += 1;
    }
    let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let restarts: u64 = rows.iter().map(|r| u64::from(r.restarts)).sum();
    format!(
        "pmi monit · every {:.1}s · {} instances: {} · {restarts} restarts · Ctrl-C to quit\n",
        interval.as_secs_f64(),
        rows.len(),
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        }
    )
}
