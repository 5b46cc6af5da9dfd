//! The one table of pmi's exit codes, how a process ended (`ExitStatus`), and why a mode ended
//! (`Failure`). `dispatch` maps every outcome to one of these codes. Pure data: below everything.

/// Success: every app's last exit was a success, or a client request succeeded.
pub const OK: i32 = 0;
/// Shutdown had to SIGKILL an app; or a client request failed (unknown target, unhealthy, refused).
pub const FAILURE: i32 = 1;
/// Usage or configuration error: nothing was started.
pub const USAGE: i32 = 2;
/// No pmi reachable (client verbs): no socket file, nobody listening, or a time-out.
pub const UNREACHABLE: i32 = 3;
/// pmi itself failed (a bug, or the OS refused what pmi needs to run). Apps were stopped first.
pub const INTERNAL: i32 = 70;
/// The command was found but could not be executed (single-command mode, or an app's run).
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// The shell's convention for a process killed by signal `sig`.
pub fn for_signal(sig: i32) -> i32 {
    128 + sig
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell's view: the code, or 128+N for a signal death.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => for_signal(s),
        }
    }

    pub fn is_success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {}", crate::signame::name(*s)),
        }
    }
}

/// Why a mode ended without an exit code of its own. Each variant carries the message for the
/// user (one or more lines, without the trailing newline); `dispatch` prints it and maps the
/// variant to a code of this table, in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Bad usage or configuration; nothing was started (exit 2).
    Usage(String),
    /// A client request was refused or failed (exit 1).
    Failed(String),
    /// No pmi reachable (exit 3).
    Unreachable(String),
    /// pmi itself failed (exit 70).
    Internal(String),
}
