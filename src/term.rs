//! pmi's own terminal output: stdout for answers, stderr for its messages.
//!
//! Invariant: a closed pipe is ignored; pmi must not die because its reader went away. This
//! module sits at the bottom: it imports nothing of pmi.

use std::io::Write;

/// Writes to stdout, ignoring a closed pipe.
pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Writes one line of pmi's own to stderr, ignoring a closed pipe.
pub fn err_line(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{s}");
}
