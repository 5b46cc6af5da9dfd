//! pmi: a PID 1 for containers that runs the apps of a pm2-style apps file.
//!
//! Data flows one way: `config` turns the apps file into a validated `Spec`; the `supervisor`
//! task owns all run-time state and decides with the pure `supervisor::policy`; effects (spawn,
//! signal, reap) happen only in `os`; app output flows through `logs`; readers (control socket,
//! HTTP) see only the `status::Snapshot` the supervisor publishes after every event.

pub mod cli;
pub mod complete;
pub mod config;
pub mod control;
pub mod exit;
pub mod http;
pub mod logs;
pub mod monit;
pub mod os;
pub mod run;
pub mod single;
pub mod status;
pub mod supervisor;
pub mod watch;
