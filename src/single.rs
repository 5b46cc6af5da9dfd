//! Single-command mode (`pmi -- CMD ARGS`): tini's contract.

use std::ffi::OsString;

use crate::cli::SupervisorOpts;

pub fn run(command: Vec<OsString>, opts: &SupervisorOpts) -> i32 {
    let _ = (command, opts);
    todo!()
}
