//! `listen` (SPEC §9), and the `pmi check` warning for cluster apps that cannot share a socket.
//!
//! Invariant: every address is kept with the place it was written, so that a bind failure at
//! start (`os::listen::bind_all`) is reported at that line and column, as a config error.

use std::path::Path;

use super::process::Process;
use super::top::RawApp;
use super::Validator;
use crate::config::listen;
use crate::config::tree::Value;
use crate::config::{Diagnostic, ExecMode, ListenAddr};

impl Validator<'_> {
    /// The app's `listen` addresses, relative `unix:` paths resolved against `cwd`, each with
    /// its place (for bind errors). Errors are recorded; the result is then empty.
    pub(super) fn listen(&mut self, raw: &RawApp, cwd: &Path) -> Vec<(ListenAddr, Diagnostic)> {
        let Some((e, n)) = raw.value("listen") else {
            return Vec::new();
        };
        let Some(addrs) = listen::report(n, &mut self.d, &raw.label, &e.key) else {
            return Vec::new();
        };
        let places: Vec<_> = match &n.value {
            Value::Seq(items) => items.iter().map(|i| i.pos).collect(),
            _ => vec![n.pos],
        };
        addrs
            .into_iter()
            .zip(places)
            .map(|(a, pos)| {
                let a = match a {
                    ListenAddr::Unix { path } if path.is_relative() => ListenAddr::Unix {
                        path: cwd.join(path),
                    },
                    a => a,
                };
                let place = self
                    .d
                    .make(pos, Some(&raw.label), Some(&e.key), String::new());
                (a, place)
            })
            .collect()
    }

    /// Cluster mode shares a socket only through `listen` or, for Node, pmi's preload: a
    /// non-Node app with several instances and no `listen` would have each instance bind the
    /// same port (EADDRINUSE for all but one).
    pub(super) fn cluster_notes(&mut self, raw: &RawApp, p: &Process, has_listen: bool) {
        let node = p.interpreter.as_deref().is_some_and(runs_node);
        if p.exec_mode != ExecMode::Cluster || node || has_listen || p.instances <= 1 {
            return;
        }
        let (pos, key) = match raw.get("exec_mode") {
            Some(e) => (e.key_pos, e.key.clone()),
            None => (raw.node.pos, "exec_mode".to_string()),
        };
        let msg = format!(
            "cluster mode with {} instances, but the script does not run under node and the app has no `listen`: each instance would bind its own port and all but one fail (EADDRINUSE). Add `listen: PORT` (pmi binds it once and passes it as fd 3 with LISTEN_FDS), or use one instance",
            p.instances
        );
        self.d.warn(pos, Some(&raw.label), Some(&key), msg);
    }
}

/// The interpreter is Node (`node`, `nodejs`, a path to one). Kept here, not taken from
/// `node::shim`, so that `config` imports nothing above it.
fn runs_node(interpreter: &str) -> bool {
    let base = Path::new(interpreter).file_name().and_then(|n| n.to_str());
    matches!(base, Some("node" | "nodejs"))
}
