//! Cutting one output stream into records: complete lines, and pieces of lines that are too long
//! or that the app left unfinished.
//!
//! Invariant: the records' bytes, each followed by `\n` when `newline` is set, concatenate to
//! exactly the bytes fed, in order; no record holds more than the limit (`SPLIT_BYTES`), and the
//! splitter never holds more than the limit either (bounded memory per pipe).

/// One record cut from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// The bytes, without the newline.
    pub bytes: &'a [u8],
    /// The app ended this record with a newline. `false`: a piece cut at the split size, flushed
    /// after the idle delay, or left at end of file.
    pub newline: bool,
    /// The record starts in the middle of a line whose beginning was an earlier piece; formats
    /// that stamp line starts (date prefix) must not stamp it again.
    pub continued: bool,
}

impl Record<'_> {
    /// A record that does not end its line (json `partial`).
    pub fn partial(&self) -> bool {
        !self.newline
    }
}

/// Holds the unfinished line of one stream between reads.
#[derive(Debug)]
pub(crate) struct Splitter {
    pending: Vec<u8>,
    /// The next record continues a piece already emitted.
    continued: bool,
    limit: usize,
}

/// Above this, an emptied pending buffer is freed rather than kept: an app that once wrote a long
/// partial line should not pin 64 KiB per pipe forever.
const KEEP_PENDING_CAPACITY: usize = 4096;

impl Splitter {
    /// `limit` is the split size (≥ 1).
    pub fn new(limit: usize) -> Splitter {
        Splitter {
            pending: Vec::new(),
            continued: false,
            limit: limit.max(1),
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Cuts `data` into records, passing each complete one to `emit`; an unfinished tail is kept.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(Record<'_>)) {
        while !data.is_empty() {
            // `pending` never exceeds the limit, so `room` is how much more fits in this record;
            // looking one byte further finds a newline that ends a record of exactly `limit`.
            let room = self.limit - self.pending.len();
            let window = &data[..data.len().min(room + 1)];
            let (take, newline) = match memchr::memchr(b'\n', window) {
                Some(i) => (i, true),
                None if data.len() > room => (room, false),
                None => {
                    self.pending.extend_from_slice(data);
                    return;
                }
            };
            let continued = self.continued;
            if self.pending.is_empty() {
                // The common case: the record lies inside `data`, no copy.
                emit(Record {
                    bytes: &data[..take],
                    newline,
                    continued,
                });
            } else {
                self.pending.extend_from_slice(&data[..take]);
                emit(Record {
                    bytes: &self.pending,
                    newline,
                    continued,
                });
                self.pending.clear();
            }
            self.continued = !newline;
            data = &data[take + usize::from(newline)..];
        }
    }

    /// Emits the unfinished line as a piece (idle delay); what follows continues it.
    pub fn flush(&mut self, mut emit: impl FnMut(Record<'_>)) {
        if self.pending.is_empty() {
            return;
        }
        emit(Record {
            bytes: &self.pending,
            newline: false,
            continued: self.continued,
        });
        self.continued = true;
        if self.pending.capacity() > KEEP_PENDING_CAPACITY {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
    }

    /// End of file: emits the unfinished line, if any.
    pub fn finish(&mut self, emit: impl FnMut(Record<'_>)) {
        self.flush(emit);
        self.continued = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rec = (Vec<u8>, bool, bool);

    fn run(limit: usize, chunks: &[&[u8]], finish: bool) -> Vec<Rec> {
        let mut s = Splitter::new(limit);
        let mut out = Vec::new();
        let mut push = |r: Record<'_>| out.push((r.bytes.to_vec(), r.newline, r.continued));
        for c in chunks {
            s.feed(c, &mut push);
        }
        if finish {
            s.finish(&mut push);
        }
        out
    }

    fn rec(b: &str, newline: bool, continued: bool) -> Rec {
        (b.as_bytes().to_vec(), newline, continued)
    }

    #[test]
    fn whole_lines_and_eof_tail() {
        let r = run(100, &[b"a\nbb\n", b"c"], true);
        assert_eq!(
            r,
            vec![
                rec("a", true, false),
                rec("bb", true, false),
                rec("c", false, false)
            ]
        );
    }

    #[test]
    fn line_across_reads_is_joined() {
        let r = run(100, &[b"he", b"ll", b"o\nx"], false);
        assert_eq!(r, vec![rec("hello", true, false)]);
    }

    #[test]
    fn split_at_limit() {
        // Exactly `limit` bytes then newline: one line. One more byte: a piece, then the rest.
        assert_eq!(run(4, &[b"abcd\n"], false), vec![rec("abcd", true, false)]);
        assert_eq!(
            run(4, &[b"ab", b"cd", b"\n"], false),
            vec![rec("abcd", true, false)]
        );
        assert_eq!(
            run(4, &[b"abcdefghij\n"], false),
            vec![
                rec("abcd", false, false),
                rec("efgh", false, true),
                rec("ij", true, true)
            ]
        );
        assert_eq!(
            run(4, &[b"abc", b"de", b"f"], true),
            vec![rec("abcd", false, false), rec("ef", false, true)]
        );
    }

    #[test]
    fn idle_flush_marks_continuation() {
        let mut s = Splitter::new(10);
        let mut out = Vec::new();
        s.feed(b"prompt> ", |r| {
            out.push((r.bytes.to_vec(), r.newline, r.continued))
        });
        assert!(out.is_empty() && s.has_pending());
        s.flush(|r| out.push((r.bytes.to_vec(), r.newline, r.continued)));
        s.feed(b"yes\nnext\n", |r| {
            out.push((r.bytes.to_vec(), r.newline, r.continued))
        });
        assert_eq!(
            out,
            vec![
                rec("prompt> ", false, false),
                rec("yes", true, true),
                rec("next", true, false)
            ]
        );
    }

    #[test]
    fn reassembles_exactly() {
        // Pseudo-random data and chunking: the records always give the input back.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                let v = next();
                if v % 23 == 0 {
                    b'\n'
                } else {
                    v as u8
                }
            })
            .collect();
        for limit in [1, 7, 64, 4096] {
            let mut s = Splitter::new(limit);
            let mut back = Vec::new();
            let mut pos = 0;
            while pos < data.len() {
                let n = ((next() % 5000) as usize + 1).min(data.len() - pos);
                s.feed(&data[pos..pos + n], |r| {
                    assert!(r.bytes.len() <= limit);
                    back.extend_from_slice(r.bytes);
                    if r.newline {
                        back.push(b'\n');
                    }
                });
                if next() % 7 == 0 {
                    s.flush(|r| back.extend_from_slice(r.bytes));
                }
                pos += n;
            }
            s.finish(|r| back.extend_from_slice(r.bytes));
            assert_eq!(back, data, "limit {limit}");
        }
    }
}
