//! pmi's own messages (tracing) on stderr: one compact text line, or one JSON object, per event.
//!
//! Text: `pmi: INFO app online app=api instance=0 pid=42`. JSON (with `--log-format json`):
//! `{"ts":"…Z","level":"info","src":"pmi","msg":"app online","app":"api",…}`, so a log collector
//! parses pmi's lines like the apps' ones. Invariant: emitting a message never panics and never
//! blocks on a slow or closed stderr (see `sink::write_own`).

use std::fmt::{self, Write as _};
use std::io;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use super::format::push_json_str;
use super::sink;
use crate::config::LogFormat;

/// Sets up pmi's own messages. Level: INFO; `-v` DEBUG, `-vv` TRACE; without `-v`, env
/// `PMI_LOG` = trace|debug|info|warn|error|off. A second call (tests) changes nothing.
pub fn init_tracing(format: LogFormat, verbose: u8) {
    let env = std::env::var("PMI_LOG").ok();
    let _ = tracing_subscriber::fmt()
        .with_max_level(level(verbose, env.as_deref()))
        .with_ansi(false)
        .log_internal_errors(false)
        .with_writer(OwnMakeWriter)
        .event_format(OwnFormat {
            json: format == LogFormat::Json,
        })
        .try_init();
}

fn level(verbose: u8, env: Option<&str>) -> LevelFilter {
    match verbose {
        0 => {}
        1 => return LevelFilter::DEBUG,
        _ => return LevelFilter::TRACE,
    }
    match env.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("trace") => LevelFilter::TRACE,
        Some("debug") => LevelFilter::DEBUG,
        Some("warn" | "warning") => LevelFilter::WARN,
        Some("error") => LevelFilter::ERROR,
        Some("off") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    }
}

struct OwnMakeWriter;

impl<'a> MakeWriter<'a> for OwnMakeWriter {
    type Writer = OwnWriter;

    fn make_writer(&'a self) -> OwnWriter {
        OwnWriter
    }
}

/// Takes each formatted event whole (the fmt layer writes an event in one call) and never
/// reports an error, so the layer has nothing to complain about on a closed stderr.
struct OwnWriter;

impl io::Write for OwnWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sink::write_own(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct OwnFormat {
    json: bool,
}

impl<S, N> FormatEvent<S, N> for OwnFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = if self.json {
            json_line(*event.metadata().level(), &fields)
        } else {
            text_line(*event.metadata().level(), &fields)
        };
        w.write_str(&line)
    }
}

/// An event's message and other fields, in order.
#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            self.rest.push((field.name(), format!("{value:?}").into()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            self.rest.push((field.name(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.push((field.name(), value.into()));
    }
}

fn text_line(level: Level, f: &Fields) -> String {
    let mut s = format!("pmi: {level} {}", f.msg);
    for (name, value) in &f.rest {
        let _ = match value {
            // Plain words unquoted; anything with spaces or quotes quoted, to stay parseable.
            serde_json::Value::String(v) if !v.is_empty() && !v.contains([' ', '"', '=']) => {
                write!(s, " {name}={v}")
            }
            v => write!(s, " {name}={v}"),
        };
    }
    s.push('\n');
    s
}

fn json_line(level: Level, f: &Fields) -> String {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"ts\":");
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    push_json_str(&mut out, &ts);
    out.extend_from_slice(b",\"level\":");
    push_json_str(&mut out, &level.as_str().to_ascii_lowercase());
    out.extend_from_slice(b",\"src\":\"pmi\",\"msg\":");
    push_json_str(&mut out, &f.msg);
    for (name, value) in &f.rest {
        out.push(b',');
        // A field named like a fixed key would make a duplicate key: rename it.
        let key = match *name {
            "ts" | "level" | "src" | "msg" => format!("{name}_"),
            n => n.to_string(),
        };
        push_json_str(&mut out, &key);
        out.push(b':');
        out.extend_from_slice(value.to_string().as_bytes());
    }
    out.extend_from_slice(b"}\n");
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            msg: "app online".into(),
            rest: vec![
                ("app", "api".into()),
                ("pid", 42u64.into()),
                ("why", "two words".into()),
                ("msg", "dup".into()),
            ],
        }
    }

    #[test]
    fn levels() {
        assert_eq!(level(0, None), LevelFilter::INFO);
        assert_eq!(level(1, Some("error")), LevelFilter::DEBUG);
        assert_eq!(level(2, None), LevelFilter::TRACE);
        assert_eq!(level(0, Some("WARN")), LevelFilter::WARN);
        assert_eq!(level(0, Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level(0, Some("nonsense")), LevelFilter::INFO);
    }

    #[test]
    fn text_is_compact() {
        assert_eq!(
            text_line(Level::INFO, &fields()),
            "pmi: INFO app online app=api pid=42 why=\"two words\" msg=dup\n"
        );
    }

    #[test]
    fn json_is_one_object() {
        let line = json_line(Level::WARN, &fields());
        assert!(line.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["src"], "pmi");
        assert_eq!(v["msg"], "app online");
        assert_eq!(v["app"], "api");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["msg_"], "dup");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn init_twice_and_log_without_panicking() {
        init_tracing(LogFormat::Raw, 0);
        init_tracing(LogFormat::Json, 2);
        tracing::info!(app = "api", "hello from a test");
    }
}
