//! The vocabulary of an apps file: every app key pmi knows, its aliases, and what to do with it.
//!
//! Invariant: one table. Validation, the unknown-key suggestions and `pmi convert` all read the
//! same `APP_FIELDS`, so an alias accepted by one is accepted by all. Every field is also known
//! in camelCase (`max_memory_restart` → `maxMemoryRestart`), as pm2 accepts.

/// An app field pmi reads: its canonical (pm2) name and the aliases that mean the same.
pub struct Field {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
}

const fn f(name: &'static str, aliases: &'static [&'static str]) -> Field {
    Field { name, aliases }
}

/// Every app field pmi gives a meaning to (pm2's, then pmi's additions).
pub const APP_FIELDS: &[Field] = &[
    f("name", &[]),
    f("script", &["exec", "cmd", "command"]),
    f("args", &[]),
    f("interpreter", &["exec_interpreter"]),
    f("interpreter_args", &["node_args"]),
    f("cwd", &[]),
    f("instances", &[]),
    f("exec_mode", &[]),
    f("namespace", &[]),
    f("autostart", &[]),
    f("autorestart", &[]),
    f("max_restarts", &[]),
    f("min_uptime", &[]),
    f("restart_delay", &[]),
    f("exp_backoff_restart_delay", &[]),
    f("stop_exit_codes", &[]),
    f("kill_timeout", &[]),
    f("listen_timeout", &[]),
    f("wait_ready", &[]),
    f("shutdown_with_message", &[]),
    f("cron_restart", &["cron"]),
    f("max_memory_restart", &[]),
    f("watch", &[]),
    f("ignore_watch", &[]),
    f("watch_delay", &[]),
    f("watch_options", &[]),
    f("env", &[]),
    f("filter_env", &[]),
    f("instance_var", &[]),
    f("increment_var", &[]),
    f("port", &[]),
    f("uid", &["user"]),
    f("gid", &[]),
    f("out_file", &["output", "out", "out_log"]),
    f("error_file", &["error", "err", "err_file", "err_log"]),
    f("log_file", &["log"]),
    f("merge_logs", &["combine_logs"]),
    f("log_date_format", &[]),
    f("time", &[]),
    f("log_type", &[]),
    f("pid_file", &["pid"]),
    f("append_env_to_name", &[]),
    f("execute_command", &[]),
    // Newer pm2 reads a dotenv file; pmi does not (reported, then ignored).
    f("env_file", &[]),
    // pmi additions.
    f("kill_signal", &[]),
    f("depends_on", &[]),
    f("listen", &[]),
    f("ready", &[]),
    f("health", &[]),
    f("watchdog", &[]),
];

/// pmi additions that are recognised but not implemented yet: reported, then ignored.
pub const NOT_YET: &[&str] = &["listen", "ready", "health", "watchdog"];

/// pm2 keys that only matter to PM2.io, Node internals, Windows or pm2's own CLI. pmi accepts
/// them and says once per file that they are ignored.
pub const IGNORED: &[&str] = &[
    "vizion",
    "pmx",
    "automation",
    "source_map_support",
    "disable_source_map_support",
    "trace",
    "disable_trace",
    "deep_monitoring",
    "v8",
    "event_loop_inspector",
    "io",
    "post_update",
    "treekill",
    "force",
    "next_gen_js",
    "no-daemon",
    "no_daemon",
    "windowsHide",
    "kill_retry_time",
    "write",
    "username",
    "node_version",
    "install_url",
    "name_prefix",
    "disable_logs",
    "versioning",
    "vizion_running",
    "instance_id",
    "pm_id",
];

/// Keys of the top-level `pmi:` block.
pub const SETTINGS_FIELDS: &[&str] = &[
    "socket",
    "http",
    "log_format",
    "auto_exit",
    "kill_signal",
    "kill_timeout",
    "memory_check_interval",
    "socket_group",
    "watch_config",
];

/// Top-level keys of the file.
pub const TOP_LEVEL: &[&str] = &["apps", "pm2", "deploy", "pmi", "static"];

/// What a key of an app object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A field, by canonical name.
    Field(&'static str),
    /// `env_<NAME>`: the block for `--env NAME`.
    EnvBlock(String),
    /// A known pm2 key pmi ignores.
    Ignored,
    Unknown,
}

/// Classifies an app key as written (snake_case, camelCase, alias).
pub fn classify(key: &str) -> Key {
    for fl in APP_FIELDS {
        let names = std::iter::once(fl.name).chain(fl.aliases.iter().copied());
        for n in names {
            if key == n || key == camel(n) {
                return Key::Field(fl.name);
            }
        }
    }
    if IGNORED.iter().any(|i| *i == key || camel(i) == key) {
        return Key::Ignored;
    }
    if let Some(env) = key.strip_prefix("env_") {
        if !env.is_empty() {
            return Key::EnvBlock(env.to_string());
        }
    }
    Key::Unknown
}

/// `max_memory_restart` → `maxMemoryRestart`.
pub fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The known name closest to an unknown key, if one is close enough to be a likely typo.
pub fn nearest<'a>(key: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let k = key.to_ascii_lowercase();
    known
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&k, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(k.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Every name an app key may have (for suggestions).
pub fn app_names() -> impl Iterator<Item = &'static str> {
    APP_FIELDS
        .iter()
        .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_camel_case() {
        assert_eq!(classify("exec"), Key::Field("script"));
        assert_eq!(classify("command"), Key::Field("script"));
        assert_eq!(
            classify("maxMemoryRestart"),
            Key::Field("max_memory_restart")
        );
        assert_eq!(classify("ignoreWatch"), Key::Field("ignore_watch"));
        assert_eq!(classify("interpreterArgs"), Key::Field("interpreter_args"));
        assert_eq!(classify("nodeArgs"), Key::Field("interpreter_args"));
        assert_eq!(classify("execMode"), Key::Field("exec_mode"));
        assert_eq!(classify("errFile"), Key::Field("error_file"));
        assert_eq!(classify("combine_logs"), Key::Field("merge_logs"));
        assert_eq!(classify("user"), Key::Field("uid"));
        assert_eq!(classify("cron"), Key::Field("cron_restart"));
        assert_eq!(
            classify("env_production"),
            Key::EnvBlock("production".into())
        );
        assert_eq!(classify("vizion"), Key::Ignored);
        assert_eq!(classify("sourceMapSupport"), Key::Ignored);
        assert_eq!(classify("no-daemon"), Key::Ignored);
        assert_eq!(classify("scirpt"), Key::Unknown);
        assert_eq!(classify("env_"), Key::Unknown);
    }

    #[test]
    fn suggestions() {
        assert_eq!(nearest("scirpt", app_names()).as_deref(), Some("script"));
        assert_eq!(
            nearest("instance", app_names()).as_deref(),
            Some("instances")
        );
        assert_eq!(nearest("max_memory", app_names()), None);
        assert_eq!(
            nearest("Watch_Delay", app_names()).as_deref(),
            Some("watch_delay")
        );
        assert_eq!(nearest("zzzzzzzz", app_names()), None);
        assert_eq!(
            nearest("app", TOP_LEVEL.iter().copied()).as_deref(),
            Some("apps")
        );
    }

    #[test]
    fn every_name_is_unique() {
        let mut all: Vec<String> = app_names().map(String::from).collect();
        all.extend(IGNORED.iter().map(|s| s.to_string()));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
