//! The supervisor: one task that owns all run-time state.

use std::path::{Path, PathBuf};

use crate::cli::SupervisorOpts;

pub fn run(file: &Path, opts: SupervisorOpts, socket: Option<PathBuf>) -> i32 {
    let _ = (file, opts, socket);
    todo!()
}
