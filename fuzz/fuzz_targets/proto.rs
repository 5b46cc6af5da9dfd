//! Fuzz target: the control protocol's frame decoder (`proto::body_len`, `proto::decode`) on
//! what a hostile peer may send: a header and a body. `tests/fuzz_smoke.rs` runs the same.
#![no_main]

use pmi::control::proto::{self, Request, Response};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let [a, b, c, d, ..] = *data {
        let _ = proto::body_len([a, b, c, d]);
    }
    if let Ok(req) = proto::decode::<Request>(data) {
        let _ = proto::encode(&req);
    }
    let _ = proto::decode::<Response>(data);
});
