//! The top-level `pmi:` block and `deploy.<NAME>.env`.

use std::time::Duration;

use super::restart::signal;
use super::top::{normalize, unknown_msg};
use super::Validator;
use crate::config::tree::{Entry, Node, Value};
use crate::config::{fields, units, LogFormat, Settings};

impl Validator<'_> {
    /// The top-level `pmi:` block; the command line's kill options win.
    pub(super) fn settings(&mut self, block: Option<&Entry>) -> Settings {
        let mut s = Settings::default();
        if let Some(e) = block.filter(|e| e.value.value != Value::Null) {
            let Some(entries) = e.value.as_map() else {
                self.d.error(
                    e.value.pos,
                    None,
                    Some("pmi"),
                    format!("must be an object of settings, not {}", e.value.kind()),
                );
                return s;
            };
            for x in entries {
                let n = &x.value;
                let r: Result<(), String> = (|| {
                    match x.key.as_str() {
                        "socket" => {
                            s.socket = Some(normalize(&self.base_dir.join(units::string(n)?)))
                        }
                        "http" => s.http = Some(units::string(n)?),
                        "log_format" => {
                            s.log_format = Some(match n.as_str().map(str::trim) {
                                Some("raw") => LogFormat::Raw,
                                Some("prefixed") => LogFormat::Prefixed,
                                Some("json") => LogFormat::Json,
                                _ => {
                                    return Err(format!(
                                        "{} is not a log format; use raw, prefixed or json",
                                        n.show()
                                    ))
                                }
                            })
                        }
                        "auto_exit" => s.auto_exit = Some(units::boolean(n)?),
                        "kill_signal" => s.kill_signal = Some(signal(n)?),
                        "kill_timeout" => s.kill_timeout = Some(units::duration(n)?),
                        "memory_check_interval" => {
                            let d = units::duration(n)?;
                            if d < Duration::from_millis(100) {
                                return Err("must be at least 100 ms".into());
                            }
                            s.memory_check_interval = Some(d);
                        }
                        "socket_group" => s.socket_group = Some(units::string(n)?),
                        "watch_config" => s.watch_config = Some(units::boolean(n)?),
                        k => self.d.warn(
                            x.key_pos,
                            None,
                            Some(&format!("pmi.{k}")),
                            unknown_msg(k, fields::SETTINGS_FIELDS.iter().copied(), "setting"),
                        ),
                    }
                    Ok(())
                })();
                if let Err(m) = r {
                    self.d
                        .error(n.pos, None, Some(&format!("pmi.{}", x.key)), m);
                }
            }
        }
        s.kill_signal = self.opts.kill_signal.or(s.kill_signal);
        s.kill_timeout = self.opts.kill_timeout.or(s.kill_timeout);
        s
    }

    /// `deploy.<NAME>.env` for `--env NAME`, when present.
    pub(super) fn deploy_env<'t>(&mut self, deploy: Option<&'t Entry>) -> Option<&'t Node> {
        let name = self.opts.env_name.as_deref()?;
        let target = deploy?.value.get(name)?;
        let env = target.value.get("env")?;
        (env.value.value != Value::Null).then_some(&env.value)
    }
}
