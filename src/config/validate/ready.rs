//! `ready`, `health`, `watchdog` and `depends_on` of one app (the readers are in
//! `config::checks`), and the warning for pm2's ready message on an app that is not Node.

use std::path::Path;
use std::time::Duration;

use super::top::RawApp;
use super::Validator;
use crate::config::checks::{self, Dependency, HealthSpec, ReadySpec};
use crate::config::tree::Pos;

/// What `Validator::readiness` reads: `None` for `ready` means an error was recorded.
pub(super) type Readiness = (
    Option<ReadySpec>,
    Option<HealthSpec>,
    Option<Duration>,
    Vec<(Dependency, Pos)>,
);

impl Validator<'_> {
    pub(super) fn readiness(
        &mut self,
        raw: &RawApp,
        wait_ready: bool,
        interpreter: Option<&str>,
    ) -> Readiness {
        let label = raw.label.clone();
        let ready = checks::ready(&mut self.d, &label, raw.get("ready"), wait_ready);
        let health = checks::health(&mut self.d, &label, raw.get("health")).unwrap_or(None);
        let watchdog = checks::watchdog(&mut self.d, &label, raw.get("watchdog")).unwrap_or(None);
        let deps =
            checks::depends_on(&mut self.d, &label, raw.get("depends_on")).unwrap_or_default();
        if let (Some(ReadySpec::Message), Some(e)) =
            (&ready, raw.get("wait_ready").or(raw.get("ready")))
        {
            if !is_node(interpreter) {
                self.d.warn(e.key_pos, Some(&label), Some(&e.key), "pm2's ready message (`wait_ready`) is Node's process.send('ready'), but this app does not run under node; it will be online only after listen_timeout. Use `ready: notify` (sd_notify) or a check such as `ready: {http: URL}`");
            }
        }
        (ready, health, watchdog, deps)
    }
}

/// The interpreter is node (pm2's ready message needs Node's IPC channel).
fn is_node(interpreter: Option<&str>) -> bool {
    interpreter
        .and_then(|i| {
            Path::new(i)
                .file_name()?
                .to_str()
                .map(|f| f.starts_with("node"))
        })
        .unwrap_or(false)
}
