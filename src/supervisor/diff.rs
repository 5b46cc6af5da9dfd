//! What `pmi apply` must do: the running apps' specs against a new file's, app by app, by name.
//!
//! Pure: specs in, a plan out; nothing here looks at processes. Each `AppSpec` field is put in
//! exactly one class (the destructuring below is exhaustive, so a new field does not compile
//! until it is classified): what the process sees (a change reloads the app), `instances` (a
//! scale), or supervision (applied in place, processes untouched). docs/apply.md has the table.

use crate::config::{AppSpec, CronSpec, LogFiles, Settings, WatchSpec};

/// What to do with one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// In the new file only: index into the new apps.
    Add(usize),
    /// In the running apps only.
    Remove,
    /// In both: index into the new apps, and what differs.
    Change(usize, Delta),
    /// In both, identical.
    Unchanged(usize),
}

/// How a changed app differs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Fields the process sees (pm2's names): the instances are restarted one at a time.
    pub process: Vec<&'static str>,
    /// `[from, to]` when `instances` changed.
    pub instances: Option<[u32; 2]>,
    /// Supervision fields: applied in place.
    pub supervision: Vec<&'static str>,
}

/// One app of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlan {
    pub name: String,
    pub plan: Plan,
}

/// The plan: removals first (in the old order), then the new file's apps with every dependency
/// before its dependents (else in file order), so that added apps start in `depends_on` order.
pub fn diff(old: &[&AppSpec], new: &[AppSpec]) -> Vec<AppPlan> {
    let mut out: Vec<AppPlan> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.name == o.name))
        .map(|o| AppPlan {
            name: o.name.clone(),
            plan: Plan::Remove,
        })
        .collect();
    for i in start_order(new) {
        let n = &new[i];
        let plan = match old.iter().find(|o| o.name == n.name) {
            None => Plan::Add(i),
            Some(o) => {
                let d = delta(o, n);
                if d == Delta::default() {
                    Plan::Unchanged(i)
                } else {
                    Plan::Change(i, d)
                }
            }
        };
        out.push(AppPlan {
            name: n.name.clone(),
            plan,
        });
    }
    out
}

/// Indices of `apps` with each app after the apps it depends on (the file is validated: no
/// cycles; a name outside the file is ignored).
fn start_order(apps: &[AppSpec]) -> Vec<usize> {
    let mut done: Vec<usize> = Vec::with_capacity(apps.len());
    while done.len() < apps.len() {
        let before = done.len();
        for (i, a) in apps.iter().enumerate() {
            if done.contains(&i) {
                continue;
            }
            let ready = a.depends_on.iter().all(|d| {
                apps.iter()
                    .position(|x| &x.name == d)
                    .is_none_or(|j| done.contains(&j))
            });
            if ready {
                // Rescan from the top: each app comes as early as the file puts it.
                done.push(i);
                break;
            }
        }
        if done.len() == before {
            // A cycle (cannot pass validation): keep file order for the rest.
            done.extend(
                (0..apps.len())
                    .filter(|i| !done.contains(i))
                    .collect::<Vec<_>>(),
            );
        }
    }
    done
}

/// Field by field. `command` (built from interpreter, script and args) is listed only when none
/// of its parts is, so that a reply says `script changed`, not `script, command changed`.
pub fn delta(o: &AppSpec, n: &AppSpec) -> Delta {
    let AppSpec {
        name: _,
        namespace,
        script,
        command,
        args,
        interpreter,
        interpreter_args,
        cwd,
        instances,
        exec_mode,
        autostart,
        restart,
        kill_signal,
        kill_timeout,
        cron_restart,
        env,
        filter_env,
        instance_var,
        increment_var,
        port,
        max_memory_restart,
        watch,
        logs,
        uid,
        gid,
        groups,
        pid_file,
        wait_ready,
        listen_timeout,
        shutdown_with_message,
        depends_on,
    } = o;
    let mut d = Delta::default();
    let mut p = |changed: bool, field: &'static str| {
        if changed {
            d.process.push(field);
        }
    };
    p(*script != n.script, "script");
    p(*args != n.args, "args");
    p(*interpreter != n.interpreter, "interpreter");
    p(*interpreter_args != n.interpreter_args, "interpreter_args");
    let parts = d.process.len();
    let mut p = |changed: bool, field: &'static str| {
        if changed {
            d.process.push(field);
        }
    };
    p(parts == 0 && *command != n.command, "command");
    p(*cwd != n.cwd, "cwd");
    p(*exec_mode != n.exec_mode, "exec_mode");
    p(*env != n.env, "env");
    p(*filter_env != n.filter_env, "filter_env");
    p(*instance_var != n.instance_var, "instance_var");
    p(*increment_var != n.increment_var, "increment_var");
    p(*port != n.port, "port");
    p(*uid != n.uid, "uid");
    p(*gid != n.gid || *groups != n.groups, "gid");
    p(!same_logs(logs, &n.logs), "log files");
    p(*pid_file != n.pid_file, "pid_file");
    if *instances != n.instances {
        d.instances = Some([*instances, n.instances]);
    }
    let mut s = |changed: bool, field: &'static str| {
        if changed {
            d.supervision.push(field);
        }
    };
    s(*namespace != n.namespace, "namespace");
    s(*autostart != n.autostart, "autostart");
    let (r, nr) = (restart, &n.restart);
    s(r.autorestart != nr.autorestart, "autorestart");
    s(r.max_restarts != nr.max_restarts, "max_restarts");
    s(r.min_uptime != nr.min_uptime, "min_uptime");
    s(r.restart_delay != nr.restart_delay, "restart_delay");
    s(
        r.exp_backoff_restart_delay != nr.exp_backoff_restart_delay,
        "exp_backoff_restart_delay",
    );
    s(r.stop_exit_codes != nr.stop_exit_codes, "stop_exit_codes");
    s(*kill_signal != n.kill_signal, "kill_signal");
    s(*kill_timeout != n.kill_timeout, "kill_timeout");
    s(!same_cron(cron_restart, &n.cron_restart), "cron_restart");
    s(
        *max_memory_restart != n.max_memory_restart,
        "max_memory_restart",
    );
    s(!same_watch(watch, &n.watch), "watch");
    s(*wait_ready != n.wait_ready, "wait_ready");
    s(*listen_timeout != n.listen_timeout, "listen_timeout");
    s(
        *shutdown_with_message != n.shutdown_with_message,
        "shutdown_with_message",
    );
    s(*depends_on != n.depends_on, "depends_on");
    d
}

fn same_cron(a: &Option<CronSpec>, b: &Option<CronSpec>) -> bool {
    a.as_ref().map(|c| &c.source) == b.as_ref().map(|c| &c.source)
}

fn same_watch(a: &Option<WatchSpec>, b: &Option<WatchSpec>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.paths == b.paths && a.ignore == b.ignore && a.delay == b.delay,
        _ => false,
    }
}

fn same_logs(a: &LogFiles, b: &LogFiles) -> bool {
    let LogFiles {
        out_file,
        error_file,
        log_file,
        merge_logs,
        date_format,
        json,
    } = a;
    *out_file == b.out_file
        && *error_file == b.error_file
        && *log_file == b.log_file
        && *merge_logs == b.merge_logs
        && *date_format == b.date_format
        && *json == b.json
}

/// `pmi:` settings that differ: (applied at once, need a restart of pmi). `old` is what the
/// file said at the last load (flags are compared by the caller: a flag wins over both).
pub fn settings(old: &Settings, new: &Settings) -> (Vec<&'static str>, Vec<&'static str>) {
    let Settings {
        socket,
        http,
        log_format,
        auto_exit,
        kill_signal,
        kill_timeout,
        memory_check_interval,
        socket_group,
        watch_config,
    } = old;
    let mut live = Vec::new();
    let mut restart = Vec::new();
    let mut r = |changed: bool, field: &'static str| {
        if changed {
            restart.push(field);
        }
    };
    r(*socket != new.socket, "socket");
    r(*socket_group != new.socket_group, "socket_group");
    r(*http != new.http, "http");
    r(*log_format != new.log_format, "log_format");
    let mut l = |changed: bool, field: &'static str| {
        if changed {
            live.push(field);
        }
    };
    l(*auto_exit != new.auto_exit, "auto_exit");
    // The apps' own kill_signal/kill_timeout carry these defaults (and are diffed per app);
    // pmi keeps the new value for the grace of stray processes at exit.
    l(*kill_signal != new.kill_signal, "kill_signal");
    l(*kill_timeout != new.kill_timeout, "kill_timeout");
    l(
        *memory_check_interval != new.memory_check_interval,
        "memory_check_interval",
    );
    l(*watch_config != new.watch_config, "watch_config");
    (live, restart)
}

#[cfg(test)]
mod tests;
