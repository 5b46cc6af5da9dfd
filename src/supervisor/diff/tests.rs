//! The diff, field by field: each field lands in its class, and the plan's order.

use std::time::Duration;

use super::*;
use crate::config::{CronSpec, Settings, Signal, WatchSpec};
use crate::supervisor::policy::tests::app;

fn one(o: AppSpec, n: AppSpec) -> Plan {
    let mut p = diff(&[&o], &[n]);
    assert_eq!(p.len(), 1);
    p.remove(0).plan
}

fn delta_of(change: impl FnOnce(&mut AppSpec)) -> Delta {
    let o = app("api");
    let mut n = o.clone();
    change(&mut n);
    delta(&o, &n)
}

fn process(change: impl FnOnce(&mut AppSpec)) -> Vec<&'static str> {
    let d = delta_of(change);
    assert!(d.supervision.is_empty() && d.instances.is_none(), "{d:?}");
    d.process
}

fn supervision(change: impl FnOnce(&mut AppSpec)) -> Vec<&'static str> {
    let d = delta_of(change);
    assert!(d.process.is_empty() && d.instances.is_none(), "{d:?}");
    d.supervision
}

#[test]
fn unchanged_is_unchanged() {
    assert_eq!(one(app("db"), app("db")), Plan::Unchanged(0));
}

#[test]
fn what_the_process_sees_reloads() {
    assert_eq!(process(|a| a.script = "other".into()), ["script"]);
    assert_eq!(
        process(|a| {
            a.script = "other".into();
            a.command = vec!["other".into()];
        }),
        ["script"],
        "command is listed only when none of its parts is"
    );
    assert_eq!(process(|a| a.command = vec!["x".into()]), ["command"]);
    assert_eq!(process(|a| a.args = vec!["-v".into()]), ["args"]);
    assert_eq!(
        process(|a| a.interpreter = Some("node".into())),
        ["interpreter"]
    );
    assert_eq!(
        process(|a| a.interpreter_args = vec!["--x".into()]),
        ["interpreter_args"]
    );
    assert_eq!(process(|a| a.cwd = "/srv".into()), ["cwd"]);
    assert_eq!(
        process(|a| a.exec_mode = crate::config::ExecMode::Cluster),
        ["exec_mode"]
    );
    assert_eq!(
        process(|a| {
            a.env.insert("K".into(), "v".into());
        }),
        ["env"]
    );
    assert_eq!(
        process(|a| a.filter_env = crate::config::FilterEnv::All),
        ["filter_env"]
    );
    assert_eq!(process(|a| a.instance_var = "I".into()), ["instance_var"]);
    assert_eq!(
        process(|a| a.increment_var = Some("P".into())),
        ["increment_var"]
    );
    assert_eq!(process(|a| a.port = Some(8080)), ["port"]);
    assert_eq!(process(|a| a.uid = Some(1000)), ["uid"]);
    assert_eq!(process(|a| a.gid = Some(1000)), ["gid"]);
    assert_eq!(process(|a| a.groups = vec![5]), ["gid"]);
    assert_eq!(
        process(|a| a.logs.out_file = Some("/tmp/o".into())),
        ["log files"]
    );
    assert_eq!(
        process(|a| a.logs.date_format = Some("HH".into())),
        ["log files"]
    );
    assert_eq!(process(|a| a.pid_file = Some("/p".into())), ["pid_file"]);
}

#[test]
fn supervision_is_applied_in_place() {
    assert_eq!(supervision(|a| a.namespace = "n".into()), ["namespace"]);
    assert_eq!(supervision(|a| a.autostart = false), ["autostart"]);
    assert_eq!(
        supervision(|a| a.restart.autorestart = false),
        ["autorestart"]
    );
    assert_eq!(
        supervision(|a| a.restart.max_restarts = 3),
        ["max_restarts"]
    );
    assert_eq!(
        supervision(|a| a.restart.min_uptime = Duration::from_secs(9)),
        ["min_uptime"]
    );
    assert_eq!(
        supervision(|a| a.restart.restart_delay = Duration::from_secs(1)),
        ["restart_delay"]
    );
    assert_eq!(
        supervision(|a| a.restart.exp_backoff_restart_delay = Some(Duration::from_millis(100))),
        ["exp_backoff_restart_delay"]
    );
    assert_eq!(
        supervision(|a| a.restart.stop_exit_codes = vec![0]),
        ["stop_exit_codes"]
    );
    assert_eq!(
        supervision(|a| a.kill_signal = Signal(libc::SIGTERM)),
        ["kill_signal"]
    );
    assert_eq!(
        supervision(|a| a.kill_timeout = Duration::from_secs(5)),
        ["kill_timeout"]
    );
    assert_eq!(
        supervision(|a| a.max_memory_restart = Some(1 << 20)),
        ["max_memory_restart"]
    );
    assert_eq!(supervision(|a| a.wait_ready = true), ["wait_ready"]);
    assert_eq!(
        supervision(|a| a.listen_timeout = Duration::from_secs(1)),
        ["listen_timeout"]
    );
    assert_eq!(
        supervision(|a| a.shutdown_with_message = true),
        ["shutdown_with_message"]
    );
    assert_eq!(
        supervision(|a| a.depends_on = vec!["db".into()]),
        ["depends_on"]
    );
}

#[test]
fn cron_and_watch_compare_by_what_was_written() {
    let cron = |s: &str| CronSpec {
        source: s.into(),
        schedule: s.parse().unwrap(),
    };
    let mut o = app("c");
    o.cron_restart = Some(cron("0 * * * * *"));
    let mut n = o.clone();
    assert_eq!(delta(&o, &n), Delta::default());
    n.cron_restart = Some(cron("30 * * * * *"));
    assert_eq!(delta(&o, &n).supervision, ["cron_restart"]);
    n.cron_restart = None;
    assert_eq!(delta(&o, &n).supervision, ["cron_restart"]);
    let w = WatchSpec {
        paths: vec!["/a".into()],
        ignore: vec![],
        delay: Duration::from_millis(100),
    };
    let mut o = app("w");
    o.watch = Some(w.clone());
    let mut n = o.clone();
    assert_eq!(delta(&o, &n), Delta::default());
    n.watch.as_mut().unwrap().ignore = vec!["x".into()];
    assert_eq!(delta(&o, &n).supervision, ["watch"]);
    n.watch = None;
    assert_eq!(delta(&o, &n).supervision, ["watch"]);
}

#[test]
fn instances_alone_is_a_scale() {
    let d = delta_of(|a| a.instances = 4);
    assert_eq!(d.instances, Some([1, 4]));
    assert!(d.process.is_empty() && d.supervision.is_empty());
    // With a process change too, both are reported.
    let d = delta_of(|a| {
        a.instances = 2;
        a.args = vec!["x".into()];
    });
    assert_eq!((d.instances, d.process), (Some([1, 2]), vec!["args"]));
}

#[test]
fn added_removed_and_the_order_of_the_plan() {
    let mut web = app("web");
    web.depends_on = vec!["db".into()];
    let old_api = app("api");
    let old_gone = app("old");
    let mut new_api = app("api");
    new_api.script = "v2".into();
    let new = vec![web, app("db"), new_api];
    let plan = diff(&[&old_gone, &old_api], &new);
    let got: Vec<(&str, &Plan)> = plan.iter().map(|p| (p.name.as_str(), &p.plan)).collect();
    assert_eq!(got[0], ("old", &Plan::Remove), "removals first");
    // web depends on db: db is planned (and started) first.
    assert_eq!(got[1], ("db", &Plan::Add(1)));
    assert_eq!(got[2], ("web", &Plan::Add(0)));
    assert!(matches!(got[3], ("api", Plan::Change(2, _))));
    assert_eq!(plan.len(), 4);
}

#[test]
fn settings_that_need_a_restart_and_those_that_do_not() {
    let old = Settings::default();
    let new = Settings {
        http: Some(":9615".into()),
        socket: Some("/x.sock".into()),
        log_format: Some(crate::config::LogFormat::Json),
        socket_group: Some("g".into()),
        auto_exit: Some(false),
        kill_timeout: Some(Duration::from_secs(3)),
        kill_signal: Some(Signal(libc::SIGTERM)),
        memory_check_interval: Some(Duration::from_secs(1)),
        watch_config: Some(true),
    };
    let (live, restart) = settings(&old, &new);
    assert_eq!(restart, ["socket", "socket_group", "http", "log_format"]);
    assert_eq!(
        live,
        [
            "auto_exit",
            "kill_signal",
            "kill_timeout",
            "memory_check_interval",
            "watch_config"
        ]
    );
    assert_eq!(settings(&new, &new), (vec![], vec![]));
    // A flag wins over both files: the file's change is no change.
    let flags = Settings {
        http: Some(":1".into()),
        ..Settings::default()
    };
    let (_, restart) = settings(
        &old.clone().with_flags(&flags),
        &new.clone().with_flags(&flags),
    );
    assert!(!restart.contains(&"http"));
}
