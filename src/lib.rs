//! pmi: a PID 1 for containers that runs the apps of a pm2-style apps file.
//!
//! Data flows one way: `config` turns the apps file into a validated `Spec`; `daemon` wires the
//! `supervisor` (one task owns all run-time state and decides with the pure
//! `supervisor::policy`) to its readers; effects (spawn, signal, reap) happen only in `os`; app
//! output flows through `logs`; readers (control socket, HTTP) hold an `api::Handle`, see only
//! the `status::Snapshot` the supervisor publishes after every event, and compute answers in
//! `report`. `dispatch` is the entry point and the one place exit codes are chosen. Imports go
//! one way too (checked by tests/architecture.rs).

pub mod api;
pub mod checks;
pub mod cli;
pub mod complete;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dispatch;
pub mod exit;
pub mod http;
pub mod logs;
pub mod monit;
pub mod node;
pub mod os;
pub mod report;
pub mod signame;
pub mod single;
pub mod status;
pub mod supervisor;
pub mod term;
pub mod watch;
