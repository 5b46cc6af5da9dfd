//! The last lines of each instance, kept for `pmi logs`.
//!
//! Lines are stored per read chunk (one text buffer and one offsets array per chunk), not one
//! allocation per line. While a chunk is cut, a [`RingDraft`] only notes where its lines are; at
//! the end it copies the ones worth keeping (the last `RING_LINES` within `RING_BYTES`), so a
//! fast app costs one small copy per chunk rather than a copy of everything it writes.
//! Invariant: a stream's ring offers exactly the last `RING_LINES` lines (fewer when they do not
//! fit in `RING_BYTES`), and never holds more than `RING_BYTES` plus its newest chunk.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{pool, LogLine, Stream, RING_BYTES, RING_LINES};

/// Where a line of the chunk being cut lies: in the read buffer, or copied into the draft (a line
/// joined with bytes of an earlier read).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Span {
    Data(u32, u32),
    Extra(u32, u32),
}

/// The lines of a chunk being cut, noted by position.
pub(crate) struct RingDraft<'a> {
    data: &'a [u8],
    spans: &'a mut Vec<Span>,
    extra: Vec<u8>,
}

impl<'a> RingDraft<'a> {
    /// `data` is the read buffer the chunk's lines mostly borrow from; `spans` a scratch vector.
    pub fn new(data: &'a [u8], spans: &'a mut Vec<Span>) -> RingDraft<'a> {
        spans.clear();
        RingDraft {
            data,
            spans,
            extra: Vec::new(),
        }
    }

    /// Notes a line; returns its range in the read buffer when it lies there.
    #[inline]
    pub fn push(&mut self, line: &[u8]) -> Option<(usize, usize)> {
        let base = self.data.as_ptr() as usize;
        let at = line.as_ptr() as usize;
        // Offsets fit u32: a read is far below 4 GiB.
        if at >= base && at + line.len() <= base + self.data.len() {
            let (start, end) = (at - base, at - base + line.len());
            self.spans.push(Span::Data(start as u32, end as u32));
            Some((start, end))
        } else {
            let start = self.extra.len() as u32;
            self.extra.extend_from_slice(line);
            self.spans.push(Span::Extra(start, self.extra.len() as u32));
            None
        }
    }

    fn line(&self, span: Span) -> &[u8] {
        match span {
            Span::Data(a, b) => &self.data[a as usize..b as usize],
            Span::Extra(a, b) => &self.extra[a as usize..b as usize],
        }
    }

    /// The last lines worth keeping, copied into a chunk; `None` when there were no lines.
    pub fn finish(self, seq: u64, ts_ms: u64) -> Option<RingChunk> {
        let (mut first, mut bytes) = (self.spans.len(), 0);
        while first > 0 {
            let len = self.line(self.spans[first - 1]).len();
            let lines = self.spans.len() - first;
            if lines == RING_LINES || (lines > 0 && bytes + len > RING_BYTES) {
                break;
            }
            bytes += len;
            first -= 1;
        }
        if first == self.spans.len() {
            return None;
        }
        let mut chunk = RingChunk::new(seq, ts_ms, bytes);
        for &span in &self.spans[first..] {
            chunk.push(self.line(span));
        }
        Some(chunk)
    }
}

/// The lines of one read chunk, in order.
#[derive(Debug, Default)]
pub(crate) struct RingChunk {
    /// Global arrival order of chunks, to merge streams and instances in `tail`.
    seq: u64,
    ts_ms: u64,
    text: Vec<u8>,
    /// End offset in `text` of each line.
    ends: Vec<u32>,
    /// Lines before this one are no longer offered (their memory goes with the whole chunk).
    first: usize,
}

impl RingChunk {
    pub fn new(seq: u64, ts_ms: u64, capacity: usize) -> RingChunk {
        RingChunk {
            seq,
            ts_ms,
            text: pool::get(capacity),
            ends: Vec::new(),
            first: 0,
        }
    }

    pub fn push(&mut self, line: &[u8]) {
        self.text.extend_from_slice(line);
        // A chunk holds at most a read plus a pending line, far below 4 GiB.
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    fn live(&self) -> usize {
        self.ends.len() - self.first
    }

    fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
}

#[derive(Debug, Default)]
pub(crate) struct StreamRing {
    chunks: VecDeque<RingChunk>,
    lines: usize,
    bytes: usize,
}

impl StreamRing {
    pub fn push(&mut self, chunk: RingChunk) {
        self.push_bounded(chunk, RING_LINES, RING_BYTES);
    }

    fn push_bounded(&mut self, chunk: RingChunk, max_lines: usize, max_bytes: usize) {
        self.lines += chunk.live();
        self.bytes += chunk.text.len();
        self.chunks.push_back(chunk);
        // Drop the oldest chunk while the rest still holds enough lines, or while over the byte
        // bound (but always keep the newest chunk).
        while let Some(front) = self.chunks.front() {
            let enough_without = self.lines - front.live() >= max_lines;
            if self.chunks.len() == 1 || !(enough_without || self.bytes > max_bytes) {
                break;
            }
            self.lines -= front.live();
            self.bytes -= front.text.len();
            if let Some(old) = self.chunks.pop_front() {
                pool::put(old.text);
            }
        }
        // Then hide the surplus at the front of the oldest chunk, for an exact line count.
        if let Some(front) = self.chunks.front_mut() {
            let surplus = self.lines.saturating_sub(max_lines).min(front.live());
            front.first += surplus;
            self.lines -= surplus;
        }
    }

    /// The last `n` lines as (seq, index in chunk, ts_ms, bytes), oldest first.
    fn last(&self, n: usize) -> Vec<(u64, usize, u64, &[u8])> {
        let mut out = Vec::new();
        'chunks: for c in self.chunks.iter().rev() {
            for i in (c.first..c.ends.len()).rev() {
                if out.len() == n {
                    break 'chunks;
                }
                out.push((c.seq, i, c.ts_ms, c.line(i)));
            }
        }
        out.reverse();
        out
    }
}

/// Both streams of one instance.
#[derive(Debug)]
pub(crate) struct InstanceRing {
    pub app: Arc<str>,
    pub instance: u32,
    pub out: StreamRing,
    pub err: StreamRing,
}

impl InstanceRing {
    pub fn new(app: Arc<str>, instance: u32) -> InstanceRing {
        InstanceRing {
            app,
            instance,
            out: StreamRing::default(),
            err: StreamRing::default(),
        }
    }

    pub fn stream_mut(&mut self, stream: Stream) -> &mut StreamRing {
        match stream {
            Stream::Out => &mut self.out,
            Stream::Err => &mut self.err,
        }
    }
}

/// The last `n` lines of the given instances, both streams merged in arrival order.
pub(crate) fn tail<'a>(
    rings: impl IntoIterator<Item = (u32, &'a InstanceRing)>,
    n: usize,
) -> Vec<LogLine> {
    let mut all = Vec::new();
    for (pm_id, ring) in rings {
        for (stream, sr) in [(Stream::Out, &ring.out), (Stream::Err, &ring.err)] {
            for (seq, idx, ts_ms, text) in sr.last(n) {
                all.push(((seq, idx), pm_id, ring, stream, ts_ms, text));
            }
        }
    }
    all.sort_by_key(|e| e.0);
    let skip = all.len().saturating_sub(n);
    all.into_iter()
        .skip(skip)
        .map(|(_, pm_id, ring, stream, ts_ms, text)| LogLine {
            pm_id,
            app: ring.app.to_string(),
            instance: ring.instance,
            stream,
            ts_ms,
            text: String::from_utf8_lossy(text).into_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, lines: &[&str]) -> RingChunk {
        let mut c = RingChunk::new(seq, seq * 10, 64);
        for l in lines {
            c.push(l.as_bytes());
        }
        c
    }

    #[test]
    fn keeps_the_last_lines_within_bounds() {
        let mut r = StreamRing::default();
        for seq in 0..100 {
            r.push_bounded(chunk(seq, &["aaaa", "bbbb", "cccc"]), 10, 1000);
            assert_eq!(r.lines, 10.min(3 * (seq as usize + 1)));
            assert!(r.chunks.len() <= 5);
        }
        let last = r.last(4);
        let texts: Vec<&[u8]> = last.iter().map(|l| l.3).collect();
        assert_eq!(texts, vec![&b"cccc"[..], b"aaaa", b"bbbb", b"cccc"]);
        assert_eq!(last[0].0, 98);
        assert_eq!(r.last(1000).len(), r.lines);
    }

    #[test]
    fn byte_bound_wins_over_line_count() {
        let mut r = StreamRing::default();
        let big = "x".repeat(300);
        for seq in 0..50 {
            r.push_bounded(chunk(seq, &[&big]), 1000, 1000);
            assert!(r.bytes <= 1000 + 300, "{} bytes", r.bytes);
        }
        assert!(r.lines <= 4);
    }

    #[test]
    fn default_bounds_hold() {
        let mut r = StreamRing::default();
        for seq in 0..5000 {
            r.push(chunk(seq, &["0123456789"; 7]));
        }
        assert_eq!(r.lines, RING_LINES);
        // One big chunk: exact count, all memory in one chunk.
        let mut big = RingChunk::new(0, 0, 0);
        for _ in 0..3000 {
            big.push(b"l");
        }
        r.push(big);
        assert_eq!(r.lines, RING_LINES);
        assert_eq!(r.last(5000).len(), RING_LINES);
        assert!(r.bytes <= RING_BYTES + 70);
    }

    #[test]
    fn draft_keeps_only_the_tail_and_joined_lines() {
        let data = b"aa\nbb\ncc\n".to_vec();
        let mut spans = Vec::new();
        let mut d = RingDraft::new(&data, &mut spans);
        d.push(b"joined");
        d.push(&data[0..2]);
        d.push(&data[3..5]);
        d.push(&data[6..8]);
        let c = d.finish(5, 50).expect("lines");
        assert_eq!((c.seq, c.ts_ms, c.ends.len()), (5, 50, 4));
        assert_eq!(c.line(0), b"joined");
        assert_eq!(c.line(3), b"cc");
        assert!(RingDraft::new(&data, &mut spans).finish(0, 0).is_none());
        // Many lines: only the last RING_LINES are copied.
        let many = b"x\n".repeat(RING_LINES + 500);
        let mut d = RingDraft::new(&many, &mut spans);
        for i in 0..RING_LINES + 500 {
            d.push(&many[2 * i..2 * i + 1]);
        }
        let c = d.finish(0, 0).expect("lines");
        assert_eq!((c.ends.len(), c.text.len()), (RING_LINES, RING_LINES));
        // Long lines: only what fits in RING_BYTES (at least one line).
        let long = vec![b'y'; RING_BYTES / 3 + 1];
        let mut d = RingDraft::new(&[], &mut spans);
        for _ in 0..5 {
            d.push(&long);
        }
        assert_eq!(d.finish(0, 0).expect("lines").ends.len(), 2);
    }

    #[test]
    fn tail_merges_streams_and_instances_in_order() {
        let mut a = InstanceRing::new("a".into(), 0);
        let mut b = InstanceRing::new("b".into(), 1);
        a.out.push(chunk(1, &["a1", "a2"]));
        b.err.push(chunk(2, &["b3"]));
        a.err.push(chunk(3, &["a4"]));
        a.out.push(chunk(4, &["a5"]));
        let lines = tail([(0, &a), (1, &b)], 4);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["a2", "b3", "a4", "a5"]);
        assert_eq!(lines[1].stream, Stream::Err);
        assert_eq!(
            (lines[1].pm_id, lines[1].instance, lines[1].ts_ms),
            (1, 1, 20)
        );
        assert_eq!(lines[1].app, "b");
        assert_eq!(tail([(0, &a)], 100).len(), 4);
    }
}
