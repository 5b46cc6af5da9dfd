//! Restart policy and stopping: autorestart, max_restarts, min_uptime, delays, stop codes, signals.

use std::time::Duration;

use super::top::RawApp;
use super::Validator;
use crate::config::tree::{Node, Value};
use crate::config::{cron, units, CronSpec, RestartPolicy, Settings, Signal, DEFAULT_KILL_TIMEOUT};

const MIN_UPTIME_FLOOR: Duration = Duration::from_millis(100);

impl Validator<'_> {
    /// `kill_signal` and `kill_timeout`: the app's, else the command line's, else the `pmi:`
    /// block's, else pm2's defaults.
    pub(super) fn stopping(&mut self, raw: &RawApp, settings: &Settings) -> (Signal, Duration) {
        let kill_signal = self
            .field(raw, "kill_signal", |_, n| signal(n))
            .or(self.opts.kill_signal)
            .or(settings.kill_signal)
            .unwrap_or(Signal(libc::SIGINT));
        let kill_timeout = self
            .field(raw, "kill_timeout", |_, n| units::duration(n))
            .or(self.opts.kill_timeout)
            .or(settings.kill_timeout)
            .unwrap_or(DEFAULT_KILL_TIMEOUT);
        (kill_signal, kill_timeout)
    }

    /// `cron_restart`; `0` disables it.
    pub(super) fn cron(&mut self, raw: &RawApp) -> Option<CronSpec> {
        self
            .field(raw, "cron_restart", |_, n| match &n.value {
                Value::Num(x) if *x == 0.0 => Ok(None),
                Value::Str(s) => cron::parse(s),
                _ => Err(format!("{} is not a cron expression; write it as a string, e.g. \"0 3 * * *\" (0 disables)", n.show())),
            })
            .flatten()
    }

    pub(super) fn restart(&mut self, raw: &RawApp) -> RestartPolicy {
        let dflt = RestartPolicy::default();
        RestartPolicy {
            autorestart: self
                .field(raw, "autorestart", |_, n| units::boolean(n))
                .unwrap_or(dflt.autorestart),
            max_restarts: self
                .field(raw, "max_restarts", |_, n| units::count(n))
                .unwrap_or(dflt.max_restarts),
            min_uptime: self
                .field(raw, "min_uptime", |_, n| {
                    let d = units::duration(n)?;
                    if d < MIN_UPTIME_FLOOR {
                        return Err(format!(
                            "{} is below the minimum of 100 ms (as pm2); use 100 or more",
                            n.show()
                        ));
                    }
                    Ok(d)
                })
                .unwrap_or(dflt.min_uptime),
            restart_delay: self
                .field(raw, "restart_delay", |_, n| units::duration(n))
                .unwrap_or(dflt.restart_delay),
            exp_backoff_restart_delay: self
                .field(raw, "exp_backoff_restart_delay", |_, n| units::duration(n))
                .filter(|d| !d.is_zero()),
            stop_exit_codes: self
                .field(raw, "stop_exit_codes", |_, n| exit_codes(n))
                .unwrap_or_default(),
        }
    }
}

pub(super) fn signal(n: &Node) -> Result<Signal, String> {
    let text = match &n.value {
        Value::Str(s) => s.clone(),
        Value::Num(_) => n.to_env_string(),
        _ => String::new(),
    };
    crate::os::signals::parse(&text).map(Signal).ok_or_else(|| {
        format!(
            "{} is not a signal; use a name such as SIGTERM, SIGINT, SIGQUIT, or a number",
            n.show()
        )
    })
}

pub(super) fn exit_codes(n: &Node) -> Result<Vec<i32>, String> {
    let one = |x: &Node| match units::integer(x) {
        Some(c) if (0..=255).contains(&c) => Ok(c as i32),
        _ => Err(format!(
            "{} is not an exit code; use numbers from 0 to 255",
            x.show()
        )),
    };
    match &n.value {
        Value::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(n)?]),
    }
}
