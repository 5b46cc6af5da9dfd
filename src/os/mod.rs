//! The only place where pmi acts on the OS: spawning, signalling, reaping, PID-1 set-up.
//!
//! Invariant: nothing here decides anything. Callers (the supervisor, single-command mode) say
//! what to do; these functions do it and report the outcome as data.

pub mod cgroup;
pub mod helper;
pub mod listen;
pub mod notify;
pub mod pdeath;
pub mod pid1;
pub mod proc;
pub mod reap;
pub mod signals;
pub mod spawn;
pub mod strays;

/// The current-thread runtime both supervising modes run on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
