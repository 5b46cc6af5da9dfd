//! Entry points for the fuzz targets (`fuzz/`) and their bounded twin (`tests/fuzz_smoke.rs`).
//!
//! Each function takes arbitrary bytes, runs one reader of hostile input the way pmi runs it,
//! and returns. Invariant: none of them may panic, abort or hang for any input; a crash found
//! by fuzzing is fixed in the reader and its input kept in `fuzz/corpus/<target>/`.
//! Not part of pmi's interface (hidden from the docs); only these harnesses call it.

use std::path::Path;

use super::tree::{Node, Pos, Value};
use super::{cron, js, json, units, validate, yaml, LoadOptions};

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Validation of a read tree, as `pmi check` does it (scripts not looked for on disk).
fn validate_tree(parsed: &super::tree::Parsed, name: &str) {
    let opts = LoadOptions {
        check_scripts: false,
        ..LoadOptions::new()
    };
    let _ = validate::validate(Path::new(name), parsed, Path::new("/nonexistent"), &opts);
}

/// The YAML reader, then validation of what it read.
pub fn yaml(data: &[u8]) {
    if let Some(Ok(p)) = text(data).map(yaml::parse) {
        validate_tree(&p, "apps.yaml");
    }
}

/// The tolerant JSON reader, then validation of what it read.
pub fn json(data: &[u8]) {
    if let Some(Ok(p)) = text(data).map(json::parse) {
        validate_tree(&p, "apps.json");
    }
}

/// The JS bridge after node has run: `data` is the JS source, a NUL, then what node printed
/// after the mark (the first byte after the NUL chooses the apps mark or the error mark).
pub fn js_bridge(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let (source, rest) = t.split_once('\0').unwrap_or((t, ""));
    let mut chars = rest.chars();
    let mark = match chars.next() {
        Some(c) if (c as u32) % 2 == 1 => js::MARK_ERR,
        _ => js::MARK,
    };
    let stdout = format!("noise\n{mark}{}", chars.as_str());
    let _ = js::interpret(&stdout, Path::new("/app/ecosystem.config.js"), source);
}

/// The cron parser, and the next firing of what it accepts (what the supervisor computes).
pub fn cron(data: &[u8]) {
    if let Some(Ok(Some(spec))) = text(data).map(cron::parse) {
        let _ = spec.schedule.upcoming(chrono::Utc).next();
    }
}

/// The duration, size, count and shell-word readers, on the text as a string and as a number.
pub fn units(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let mut nodes = vec![Node::new(Pos::new(1, 1), Value::Str(t.to_string()))];
    if let Ok(n) = t.trim().parse::<f64>() {
        nodes.push(Node::new(Pos::new(1, 1), Value::Num(n)));
    }
    for n in &nodes {
        let _ = units::duration(n);
        let _ = units::size(n);
        let _ = units::count(n);
        let _ = units::integer(n);
        let _ = units::words(n);
    }
    if let Ok(words) = units::shell_split(t) {
        let joined: Vec<String> = words.iter().map(|w| units::shell_quote(w)).collect();
        // Quoting round-trips: what pmi prints (`pmi convert`) reads back the same.
        assert_eq!(units::shell_split(&joined.join(" ")).ok(), Some(words));
    }
}
