//! Turning records into output bytes: the container-log formats (raw, prefixed, json) and the
//! log-file formats (raw, pm2's json).
//!
//! Everything an app contributes per record is precomputed in [`SourceFmt`] (prefix, escaped
//! name, compiled date format) and every clock-derived string is computed at most once per read
//! chunk in [`Stamp`]: the per-line work is copying bytes.

use std::sync::Arc;

use chrono::{DateTime, Local, SecondsFormat, Utc};

use super::datefmt::DateFormat;
use super::split::Record;
use super::{LogSource, Stream};
use crate::config::LogFormat;

/// Prefixes up to this long are copied as a fixed-size block.
const PREFIX_BLOCK: usize = 32;

/// The time of one read chunk, with its formatted forms computed on first use.
pub(crate) struct Stamp {
    utc: DateTime<Utc>,
    rfc3339: Option<String>,
    date: Option<String>,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp::at(Utc::now())
    }

    pub fn at(utc: DateTime<Utc>) -> Stamp {
        Stamp {
            utc,
            rfc3339: None,
            date: None,
        }
    }

    pub fn ms(&self) -> u64 {
        u64::try_from(self.utc.timestamp_millis()).unwrap_or(0)
    }

    /// RFC 3339, UTC, milliseconds (`2024-03-05T01:38:09.045Z`).
    fn rfc3339(&mut self) -> &str {
        let utc = self.utc;
        self.rfc3339
            .get_or_insert_with(|| utc.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    /// The app's `log_date_format`, in local time (TZ, else UTC).
    fn date(&mut self, fmt: &DateFormat) -> &str {
        let utc = self.utc;
        self.date
            .get_or_insert_with(|| fmt.format(&utc.with_timezone(&Local)))
    }
}

/// What one source needs to format its records, computed once at attach.
pub(crate) struct SourceFmt {
    pub app: Arc<str>,
    pub pm_id: u32,
    pub instance: u32,
    /// `name | ` or `name:N | ` (prefixed format).
    prefix: Vec<u8>,
    /// The prefix in a fixed-size block, when it fits: appending a constant-size array compiles
    /// to two vector moves, where a slice costs a memcpy call per line (slow to start on musl).
    prefix_block: Option<[u8; PREFIX_BLOCK]>,
    /// The app name as a JSON string, quotes included.
    app_json: Vec<u8>,
    date: Option<DateFormat>,
    file_json: bool,
}

impl SourceFmt {
    pub fn new(src: &LogSource) -> SourceFmt {
        let mut prefix = src.app.as_bytes().to_vec();
        // The index only tells instances apart; a one-instance app reads better without it.
        // Instances added later by scaling have an index > 0 and so show it.
        if src.instances > 1 || src.instance > 0 {
            prefix.extend_from_slice(format!(":{}", src.instance).as_bytes());
        }
        prefix.extend_from_slice(b" | ");
        let mut app_json = Vec::new();
        push_json_str(&mut app_json, &src.app);
        let prefix_block = (prefix.len() <= PREFIX_BLOCK).then(|| {
            let mut block = [0; PREFIX_BLOCK];
            block[..prefix.len()].copy_from_slice(&prefix);
            block
        });
        SourceFmt {
            prefix_block,
            app: src.app.clone(),
            pm_id: src.pm_id,
            instance: src.instance,
            prefix,
            app_json,
            date: src.files.date_format.as_deref().map(DateFormat::parse),
            file_json: src.files.json,
        }
    }

    /// The container-log output of a record is exactly its bytes (and newline): whole runs of
    /// records can be copied at once.
    pub fn console_verbatim(&self, format: LogFormat) -> bool {
        format == LogFormat::Raw && self.date.is_none()
    }

    /// The same for the log files.
    pub fn file_verbatim(&self) -> bool {
        !self.file_json && self.date.is_none()
    }

    /// Appends one record in the container-log format.
    #[inline]
    pub fn console(
        &self,
        format: LogFormat,
        stream: Stream,
        rec: &Record<'_>,
        st: &mut Stamp,
        out: &mut Vec<u8>,
    ) {
        match format {
            LogFormat::Raw => self.raw(rec, st, out),
            LogFormat::Prefixed => {
                match &self.prefix_block {
                    Some(block) => {
                        let len = out.len() + self.prefix.len();
                        out.extend_from_slice(block);
                        out.truncate(len);
                    }
                    None => out.extend_from_slice(&self.prefix),
                }
                self.date_prefix(rec, st, out);
                push_blocks(out, rec.bytes);
                out.push(b'\n');
            }
            LogFormat::Json => {
                out.extend_from_slice(b"{\"ts\":\"");
                out.extend_from_slice(st.rfc3339().as_bytes());
                out.extend_from_slice(b"\",\"app\":");
                out.extend_from_slice(&self.app_json);
                out.extend_from_slice(b",\"instance\":");
                out.extend_from_slice(self.instance.to_string().as_bytes());
                out.extend_from_slice(b",\"stream\":\"");
                out.extend_from_slice(stream.name().as_bytes());
                out.extend_from_slice(b"\",\"msg\":");
                push_json_str(out, &String::from_utf8_lossy(rec.bytes));
                if rec.partial() {
                    out.extend_from_slice(b",\"partial\":true");
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }

    /// Appends one record in the log-file format (raw as the console, or pm2's `log_type: json`).
    #[inline]
    pub fn file(&self, stream: Stream, rec: &Record<'_>, st: &mut Stamp, out: &mut Vec<u8>) {
        if !self.file_json {
            self.raw(rec, st, out);
            return;
        }
        // pm2's json lines. `message` keeps the app's newline, so the messages concatenate to the
        // app's exact output, pieces included.
        out.extend_from_slice(b"{\"message\":");
        let mut msg = String::from_utf8_lossy(rec.bytes);
        if rec.newline {
            msg.to_mut().push('\n');
        }
        push_json_str(out, &msg);
        out.extend_from_slice(b",\"timestamp\":");
        let ts = match &self.date {
            Some(fmt) => st.date(fmt),
            None => st.rfc3339(),
        };
        push_json_str(out, ts);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b"\",\"process_id\":");
        out.extend_from_slice(self.pm_id.to_string().as_bytes());
        out.extend_from_slice(b",\"app_name\":");
        out.extend_from_slice(&self.app_json);
        out.extend_from_slice(b"}\n");
    }

    /// The app's own bytes, with the date before each line start when `log_date_format` is set.
    #[inline]
    fn raw(&self, rec: &Record<'_>, st: &mut Stamp, out: &mut Vec<u8>) {
        self.date_prefix(rec, st, out);
        out.extend_from_slice(rec.bytes);
        if rec.newline {
            out.push(b'\n');
        }
    }

    /// `<date>: ` at the start of a line (never before a continuation piece), as pm2.
    #[inline]
    fn date_prefix(&self, rec: &Record<'_>, st: &mut Stamp, out: &mut Vec<u8>) {
        if let (Some(fmt), false) = (&self.date, rec.continued) {
            out.extend_from_slice(st.date(fmt).as_bytes());
            out.extend_from_slice(b": ");
        }
    }
}

/// Appends `bytes` in fixed-size blocks the compiler inlines (see `prefix_block`); the last
/// block overlaps the one before, so every length ≥ one block takes whole blocks only.
#[inline]
fn push_blocks(out: &mut Vec<u8>, bytes: &[u8]) {
    const B: usize = 32;
    if bytes.len() < B || bytes.len() > 1024 {
        out.extend_from_slice(bytes);
        return;
    }
    let end = out.len() + bytes.len();
    out.reserve(bytes.len() + B);
    let mut blocks = bytes.chunks_exact(B);
    for block in &mut blocks {
        if let Ok(block) = <&[u8; B]>::try_from(block) {
            out.extend_from_slice(block);
        }
    }
    if !blocks.remainder().is_empty() {
        out.truncate(end - B);
        if let Ok(last) = <&[u8; B]>::try_from(&bytes[bytes.len() - B..]) {
            out.extend_from_slice(last);
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        // Copy the run of plain bytes before this one in one go.
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if esc.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFiles;

    fn src(app: &str, instance: u32, instances: u32) -> LogSource {
        LogSource {
            app: app.into(),
            pm_id: 7,
            instance,
            instances,
            files: LogFiles::default(),
        }
    }

    fn stamp() -> Stamp {
        Stamp::at(
            DateTime::parse_from_rfc3339("2024-03-05T01:38:09.045Z")
                .expect("valid time")
                .with_timezone(&Utc),
        )
    }

    fn rec(bytes: &[u8], newline: bool, continued: bool) -> Record<'_> {
        Record {
            bytes,
            newline,
            continued,
        }
    }

    fn console(f: &SourceFmt, format: LogFormat, stream: Stream, r: Record<'_>) -> String {
        let mut out = Vec::new();
        f.console(format, stream, &r, &mut stamp(), &mut out);
        String::from_utf8(out).expect("utf-8 output")
    }

    #[test]
    fn push_blocks_copies_every_length() {
        let src: Vec<u8> = (0..1100u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..src.len() {
            let mut out = b"head".to_vec();
            push_blocks(&mut out, &src[..len]);
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &src[..len], "length {len}");
        }
    }

    #[test]
    fn json_escaping() {
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\\c\nd\te\r\u{1}é\u{7f}");
        let want = "\"a\\\"b\\\\c\\nd\\te\\r\\u0001é\u{7f}\"";
        assert_eq!(String::from_utf8_lossy(&out), want);
        let back: String = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(back, "a\"b\\c\nd\te\r\u{1}é\u{7f}");
    }

    #[test]
    fn prefixed_names_the_instance_only_when_needed() {
        let one = SourceFmt::new(&src("api", 0, 1));
        let many = SourceFmt::new(&src("api", 1, 4));
        let scaled = SourceFmt::new(&src("api", 2, 1));
        let r = rec(b"hello", true, false);
        assert_eq!(
            console(&one, LogFormat::Prefixed, Stream::Out, r),
            "api | hello\n"
        );
        assert_eq!(
            console(&many, LogFormat::Prefixed, Stream::Out, r),
            "api:1 | hello\n"
        );
        assert_eq!(
            console(&scaled, LogFormat::Prefixed, Stream::Err, r),
            "api:2 | hello\n"
        );
        // A piece becomes its own record, ended by a newline.
        let piece = rec(b"half", false, false);
        assert_eq!(
            console(&one, LogFormat::Prefixed, Stream::Out, piece),
            "api | half\n"
        );
    }

    #[test]
    fn raw_keeps_bytes_and_stamps_line_starts() {
        let plain = SourceFmt::new(&src("api", 0, 1));
        let mut dated_src = src("api", 0, 1);
        dated_src.files.date_format = Some("[at] x".into());
        let dated = SourceFmt::new(&dated_src);
        let raw = LogFormat::Raw;
        assert_eq!(
            console(&plain, raw, Stream::Out, rec(b"l", true, false)),
            "l\n"
        );
        assert_eq!(
            console(&plain, raw, Stream::Out, rec(b"p", false, false)),
            "p"
        );
        let line = rec(b"l", true, false);
        assert_eq!(
            console(&dated, raw, Stream::Out, line),
            "at 1709602689045: l\n"
        );
        let cont = rec(b"rest", true, true);
        assert_eq!(console(&dated, raw, Stream::Out, cont), "rest\n");
        // The prefixed format puts the date after the name.
        let pre = console(&dated, LogFormat::Prefixed, Stream::Out, line);
        assert_eq!(pre, "api | at 1709602689045: l\n");
    }

    #[test]
    fn json_console_record() {
        let f = SourceFmt::new(&src("a\"pi", 3, 4));
        let line = console(
            &f,
            LogFormat::Json,
            Stream::Err,
            rec(b"x\xffy", false, false),
        );
        assert_eq!(
            line,
            "{\"ts\":\"2024-03-05T01:38:09.045Z\",\"app\":\"a\\\"pi\",\"instance\":3,\
             \"stream\":\"err\",\"msg\":\"x\u{fffd}y\",\"partial\":true}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(v["msg"], "x\u{fffd}y");
        let whole = console(&f, LogFormat::Json, Stream::Out, rec(b"ok", true, false));
        assert!(
            whole.contains("\"stream\":\"out\",\"msg\":\"ok\"}\n"),
            "{whole}"
        );
    }

    #[test]
    fn pm2_json_file_record() {
        let mut s = src("api", 0, 1);
        s.files.json = true;
        let f = SourceFmt::new(&s);
        let mut out = Vec::new();
        f.file(
            Stream::Out,
            &rec(b"hi", true, false),
            &mut stamp(),
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(v["message"], "hi\n");
        assert_eq!(v["timestamp"], "2024-03-05T01:38:09.045Z");
        assert_eq!(v["type"], "out");
        assert_eq!(v["process_id"], 7);
        assert_eq!(v["app_name"], "api");
        assert_eq!(out.last(), Some(&b'\n'));
    }
}
