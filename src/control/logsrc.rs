//! The control server's view of the log pipeline (`LogHub::tail` / `LogHub::subscribe`): which
//! lines a `pmi logs` request selects, within one frame.
//!
//! Invariant: a follower that falls behind skips lines; it never slows the pipeline.

use tokio::sync::broadcast;

use super::proto::MAX_FRAME;
use crate::api::Handle;
use crate::logs::{LogLine, Stream};

pub fn keep(e: &LogLine, ids: Option<&[u32]>, stream: Option<Stream>) -> bool {
    ids.is_none_or(|ids| ids.contains(&e.pm_id)) && stream.is_none_or(|s| s == e.stream)
}

/// The last `lines` lines of the selected instances, oldest first.
pub fn tail(h: &Handle, ids: Option<&[u32]>, lines: usize, stream: Option<Stream>) -> Vec<LogLine> {
    let all: Vec<LogLine> = lines_of(h, ids, lines, stream);
    let mut skip = all.len().saturating_sub(lines);
    // Keep the newest lines that fit in one frame.
    let mut room = MAX_FRAME - 64;
    for (i, e) in all.iter().enumerate().skip(skip).rev() {
        let len = serde_json::to_vec(e).map_or(usize::MAX, |v| v.len() + 1);
        if len > room {
            skip = i + 1;
            break;
        }
        room -= len;
    }
    all.into_iter().skip(skip).collect()
}

fn lines_of(h: &Handle, ids: Option<&[u32]>, lines: usize, stream: Option<Stream>) -> Vec<LogLine> {
    // The pipeline keeps `lines` per stream: with a stream filter, take all it kept.
    let n = if stream.is_some() { usize::MAX } else { lines };
    h.logs
        .tail_where(|id, _| ids.is_none_or(|ids| ids.contains(&id)), n)
        .into_iter()
        .filter(|e| stream.is_none_or(|s| s == e.stream))
        .collect()
}

pub struct Feed(broadcast::Receiver<LogLine>);

pub fn subscribe(h: &Handle) -> Feed {
    Feed(h.logs.subscribe())
}

impl Feed {
    /// The next line, `None` once the pipeline is gone. A follower that falls behind skips
    /// the lines it missed.
    pub async fn next(&mut self) -> Option<LogLine> {
        loop {
            match self.0.recv().await {
                Ok(l) => return Some(l),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
