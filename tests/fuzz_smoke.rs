//! The fuzz targets of `fuzz/` as a bounded plain test (what CI runs on stable): each target
//! gets its seed corpus (`fuzz/corpus/<target>/`, real pm2 files among them) and then a few
//! thousand inputs made from it by a small deterministic mutator. Any panic fails the test
//! and names the input (saved under `target/fuzz-smoke/`); an abort or stack overflow kills
//! the test binary, which fails it too; a target that does not finish in its time fails it.
//!
//! `cargo +nightly fuzz run <target>` runs the same entry points under libFuzzer for longer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pmi::config::fuzzing;
use pmi::control::proto::{self, Request, Response};

/// Mutated inputs per target (after the corpus itself).
const MUTATIONS: usize = 20_000;
/// Mutated inputs stay below this size, so each run stays fast.
const MAX_INPUT: usize = 64 * 1024;

fn proto_decode(data: &[u8]) {
    if let [a, b, c, d, ..] = *data {
        let _ = proto::body_len([a, b, c, d]);
    }
    if let Ok(req) = proto::decode::<Request>(data) {
        let _ = proto::encode(&req);
    }
    let _ = proto::decode::<Response>(data);
}

/// xorshift64*: the same inputs on every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes the readers give meaning to: YAML anchors and flow, JSON quirks, cron fields, units.
const TOKENS: &[&[u8]] = &[
    b"&a ",
    b"*a",
    b"<<: *a",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b"- ",
    b"\n  ",
    b"'",
    b"\"",
    b"\\u",
    b"\\",
    b"/*",
    b"*/",
    b"//",
    b",",
    b"0x",
    b"NaN",
    b"Infinity",
    b"-",
    b"1e999",
    b"undefined",
    b"\0",
    b"\xff",
    b"\xc3",
    b"*/5",
    b"1-7",
    b"SUN",
    b"L",
    b"#",
    b"?",
    b"ms",
    b"G",
    b"!!str ",
    b"apps",
    b"name",
    b"script",
    b"instances",
    b"env",
    b"cron_restart",
    b"watch_delay",
    b"\"type\":",
    b"\"hello\"",
    b"\"logs\"",
    b"18446744073709551616",
    b"(",
    b")",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !v.is_empty() => {
                // Repeat a slice: deep nesting, long lists, repeated keys.
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(64)).min(v.len());
                let piece = v[start..end].to_vec();
                for _ in 0..1 + rng.below(16) {
                    v.splice(at..at, piece.iter().copied());
                }
            }
            4 if !other.is_empty() => {
                // Splice in part of another seed.
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(256)).min(other.len());
                v.splice(at..at, other[start..end].iter().copied());
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "empty corpus {}", dir.display());
    seeds
}

/// Runs one target on its corpus and mutations; returns how many inputs it ran.
fn run(target: &'static str, f: fn(&[u8]), seed: u64) -> usize {
    let seeds = corpus(target);
    let mut rng = Rng(seed);
    let inputs = seeds.iter().cloned().chain((0..MUTATIONS).map(|_| {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        mutate(&mut rng, a, b)
    }));
    let mut n = 0;
    for input in inputs {
        if catch_unwind(AssertUnwindSafe(|| f(&input))).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-smoke");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{target}-{n}"));
            let _ = std::fs::write(&file, &input);
            panic!(
                "fuzz target {target} panicked on input {n} (saved to {}; add it to fuzz/corpus/{target}/ once fixed)",
                file.display()
            );
        }
        n += 1;
    }
    n
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    let targets: [Target; TARGETS] = [
        ("yaml", fuzzing::yaml),
        ("json", fuzzing::json),
        ("js_bridge", fuzzing::js_bridge),
        ("cron", fuzzing::cron),
        ("units", fuzzing::units),
        ("proto", proto_decode),
    ];
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    for (i, (name, f)) in targets.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("fuzz-{name}"))
            .stack_size(8 << 20)
            .spawn(move || {
                let r = catch_unwind(|| run(name, f, 0x9E37_79B9_7F4A_7C15 ^ i as u64));
                let _ = tx.send((name, r.map_err(|e| panic_text(&*e))));
            })
            .unwrap();
    }
    drop(tx);
    // The whole run stays well under a minute on a loaded 2-core machine (debug build).
    let deadline = start + Duration::from_secs(50);
    let mut failures = Vec::new();
    for _ in 0..TARGETS {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, Ok(n))) => eprintln!("{name}: {n} inputs, no crash"),
            Ok((name, Err(e))) => failures.push(format!("{name}: {e}")),
            Err(_) => {
                failures.push("a target did not finish within 50 s (a hang?)".to_string());
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A fuzz target: its corpus directory's name and its entry point.
type Target = (&'static str, fn(&[u8]));

const TARGETS: usize = 6;

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}
