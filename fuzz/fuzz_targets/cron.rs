//! Fuzz target: `pmi::config::fuzzing::cron` (see that module for what it covers).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmi::config::fuzzing::cron(data));
