//! The environment of one instance: pmi's own (minus `filter_env`), then the app's `env` (with
//! `env_<NAME>` already merged by config), then the variables pmi injects.
//!
//! Invariant: pure; the whole config is never passed through the environment (pm2 does that and
//! leaks every setting into every app).

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::config::{AppSpec, ExecMode, FilterEnv};

/// What pmi tells each instance about itself.
#[derive(Debug, Clone, Copy)]
pub struct Injected {
    pub pm_id: u32,
    pub index: u32,
    pub restarts: u32,
}

pub fn instance_env(
    base: &[(OsString, OsString)],
    app: &AppSpec,
    inj: Injected,
) -> Vec<(OsString, OsString)> {
    let mut env: BTreeMap<OsString, OsString> = base
        .iter()
        .filter(|(k, _)| keep_inherited(&app.filter_env, &k.to_string_lossy()))
        // pmi's own NOTIFY_SOCKET/WATCHDOG_* are for pmi: an app that inherited them would
        // tell systemd (or podman) it is ready on pmi's behalf.
        .filter(|(k, _)| !crate::os::notify::OWN_VARS.iter().any(|v| k == v))
        .cloned()
        .collect();
    let mut set = |k: &str, v: String| {
        env.insert(OsString::from(k), OsString::from(v));
    };
    // pm2 copies `port` into the app's env first, so `increment_var: PORT` counts up from it.
    let mut own = app.env.clone();
    if let Some(port) = app.port {
        own.insert("PORT".to_string(), port.to_string());
    }
    if let Some(var) = &app.increment_var {
        let start: i64 = own
            .get(var)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        own.insert(var.clone(), (start + inj.index as i64).to_string());
    }
    for (k, v) in own {
        set(&k, v);
    }
    set("name", app.name.clone());
    set("namespace", app.namespace.clone());
    set("pm_id", inj.pm_id.to_string());
    set(&app.instance_var, inj.index.to_string());
    set("instances", app.instances.to_string());
    let mode = match app.exec_mode {
        ExecMode::Fork => "fork_mode",
        ExecMode::Cluster => "cluster_mode",
    };
    set("exec_mode", mode.to_string());
    set("restart_time", inj.restarts.to_string());
    let python = app
        .interpreter
        .as_deref()
        .map(|i| i.rsplit('/').next().unwrap_or(i).starts_with("python"))
        .unwrap_or(false);
    if python {
        set("PYTHONUNBUFFERED", "1".to_string());
    }
    env.into_iter().collect()
}

fn keep_inherited(filter: &FilterEnv, key: &str) -> bool {
    match filter {
        FilterEnv::None => true,
        FilterEnv::All => false,
        FilterEnv::Containing(parts) => !parts.iter().any(|p| key.contains(p.as_str())),
        FilterEnv::Key(k) => key != k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmi_own_notify_variables_are_not_inherited() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("apps.yaml");
        std::fs::write(&file, "apps:\n- name: a\n  script: ./a.sh\n").unwrap();
        let mut opts = crate::config::LoadOptions::new();
        opts.check_scripts = false;
        let loaded = crate::config::load(&file, dir.path(), &opts).unwrap();
        let base: Vec<(OsString, OsString)> = [
            ("NOTIFY_SOCKET", "@outer"),
            ("WATCHDOG_USEC", "1"),
            ("WATCHDOG_PID", "1"),
            ("KEEP", "1"),
        ]
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        let inj = Injected {
            pm_id: 0,
            index: 0,
            restarts: 0,
        };
        let env = instance_env(&base, &loaded.spec.apps[0], inj);
        let keys: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into())
            .collect();
        assert!(keys.contains(&"KEEP".to_string()), "{keys:?}");
        for k in crate::os::notify::OWN_VARS {
            assert!(!keys.contains(&k.to_string()), "{k} leaked: {keys:?}");
        }
    }
}
