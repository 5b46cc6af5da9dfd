//! App output → the container log (and, when asked, log files and the `pmi logs` buffers).
//!
//! Each instance's stdout and stderr pipe is read by its own task; bytes are cut into lines and
//! formatted, then handed over a bounded channel to one writer thread per output stream, so a slow
//! reader of pmi's stdout slows the apps (pipe back-pressure) and never the supervisor.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::config::{LogFiles, LogFormat};

/// Identity and log settings of one instance.
#[derive(Debug, Clone)]
pub struct LogSource {
    pub app: Arc<str>,
    pub pm_id: u32,
    pub instance: u32,
    pub files: LogFiles,
}

/// Shared handle to the log machinery. Cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    format: LogFormat,
}

impl LogHub {
    pub fn new(format: LogFormat) -> LogHub {
        LogHub { format }
    }

    /// Starts reading one instance's pipes. Must be called inside the tokio runtime.
    pub fn attach(&self, src: LogSource, stdout: OwnedFd, stderr: OwnedFd) {
        let _ = (src, stdout, stderr, self.format);
        todo!("log pipeline: being written")
    }

    /// Waits until every attached pipe has reached end of file and everything read is written,
    /// or `timeout` passes.
    pub async fn drain(&self, timeout: std::time::Duration) {
        let _ = timeout;
    }
}

/// Sets up pmi's own messages (tracing) on stderr, as text or JSON.
pub fn init_tracing(format: LogFormat, verbose: u8) {
    let _ = (format, verbose);
}
