//! Readiness, health restarts and start order as state transitions, time moved by hand.

use super::*;
use crate::config::checks::{CheckSpec, Condition, Dependency, HealthSpec, Probe, ReadySpec};
use crate::os::notify::Notice;
use crate::status::Status;
use crate::supervisor::readiness::{CheckKind, CheckResult};

fn dep(app: &str, condition: Condition) -> Dependency {
    Dependency {
        app: app.into(),
        condition,
    }
}

fn job(name: &str) -> AppSpec {
    let mut a = app(name);
    a.restart.autorestart = false;
    a
}

fn status(st: &State, id: InstId) -> Status {
    st.status(st.get(id).unwrap())
}

fn spawned(acts: &[Action]) -> Vec<InstId> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Spawn(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn ready_notice() -> Notice {
    Notice {
        ready: true,
        ..Notice::default()
    }
}

fn with_health(mut a: AppSpec, retries: u32) -> AppSpec {
    a.health = Some(HealthSpec {
        check: CheckSpec {
            probe: Probe::Tcp("1".into()),
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(100),
        },
        retries,
        start_period: Duration::ZERO,
    });
    a
}

/// Each due check of instance `id` fails; returns the actions of the last round.
fn fail_checks(st: &mut State, c: &mut Clock, id: InstId, rounds: u32) -> Vec<Action> {
    let mut last = Vec::new();
    for _ in 0..rounds {
        let now = c.advance(1000);
        let acts = st.on_tick(now);
        let (pid, seq) = acts
            .iter()
            .find_map(|a| match a {
                Action::RunCheck { pid, seq, .. } => Some((*pid, *seq)),
                _ => None,
            })
            .expect("a check is due");
        let r = CheckResult {
            kind: CheckKind::Health,
            seq,
            ok: false,
            summary: "connection refused".into(),
            output: String::new(),
            took: Duration::from_millis(1),
        };
        last = st.on_check_done(id, pid, &r, c.advance(1));
    }
    last
}

#[test]
fn completed_then_ready_starts_in_order() {
    let mut c = Clock::new();
    let mut web = app("web");
    web.depends_on = vec![dep("migrate", Condition::Completed)];
    web.ready = ReadySpec::Notify;
    let mut worker = app("worker");
    worker.depends_on = vec![dep("web", Condition::Ready)];
    let (mut st, mut pid) = started(vec![job("migrate"), web, worker], c.0);
    assert!(matches!(st.get(0).unwrap().phase, Phase::Running { .. }));
    assert_eq!(status(&st, 1), Status::Waiting);
    assert_eq!(status(&st, 2), Status::Waiting);
    assert_eq!(
        st.container_ready().unwrap_err(),
        "web: waiting on migrate (completed)"
    );

    let now = c.advance(500);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(0), now, &mut st);
    assert_eq!(spawned(&acts), [1], "web starts once migrate completed");
    run(&mut st, acts, now, &mut pid);
    assert_eq!(status(&st, 1), Status::Launching);
    assert_eq!(status(&st, 2), Status::Waiting);

    let now = c.advance(100);
    let acts = st.on_notice(1, pid_of(&st, 1), &ready_notice(), now);
    assert_eq!(spawned(&acts), [2], "worker starts once web is ready");
    run(&mut st, acts, now, &mut pid);
    assert_eq!(status(&st, 1), Status::Online);
    assert_eq!(
        st.container_ready(),
        Ok(()),
        "a completed job counts as ready"
    );
}

#[test]
fn a_notice_from_an_old_process_is_ignored() {
    let c = Clock::new();
    let mut web = app("web");
    web.ready = ReadySpec::Notify;
    let (mut st, _) = started(vec![web], c.0);
    let stale = pid_of(&st, 0) + 1000;
    assert!(st.on_notice(0, stale, &ready_notice(), c.0).is_empty());
    assert_eq!(status(&st, 0), Status::Launching);
}

#[test]
fn a_failed_migration_blocks_dependents_transitively_and_pmi_exits_1() {
    let mut c = Clock::new();
    let mut web = app("web");
    web.depends_on = vec![dep("migrate", Condition::Completed)];
    let mut worker = app("worker");
    worker.depends_on = vec![dep("web", Condition::Started)];
    let (mut st, _) = started(vec![job("migrate"), web, worker], c.0);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(3), c.advance(10), &mut st);
    assert!(spawned(&acts).is_empty());
    assert_eq!(status(&st, 1), Status::Blocked);
    assert_eq!(status(&st, 2), Status::Blocked);
    assert!(acts.contains(&Action::Finish { code: 3 }), "{acts:?}");
    let why = st.container_ready().unwrap_err();
    assert_eq!(why, "migrate: exited with a failure");
}

#[test]
fn an_errored_dependency_blocks_with_exit_code_1_when_nothing_else_says() {
    let mut c = Clock::new();
    let mut db = app("db");
    db.restart.max_restarts = 1;
    db.ready = ReadySpec::Notify; // never says it is ready
    let mut api = app("api");
    api.depends_on = vec![dep("db", Condition::Ready)];
    let (mut st, _) = started(vec![db, api], c.0);
    assert_eq!(status(&st, 1), Status::Waiting);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(2), c.advance(10), &mut st);
    assert_eq!(status(&st, 0), Status::Errored, "{acts:?}");
    assert_eq!(status(&st, 1), Status::Blocked);
    let v = &st.apps[1].gate;
    assert_eq!(v.describe().unwrap(), "blocked: db (ready) errored");
    st.instances[0].last_exit = None; // no failed exit left to name a code
    assert_eq!(st.exit_code(), 1);
}

#[test]
fn a_dependency_restarting_later_does_not_touch_its_dependents() {
    let mut c = Clock::new();
    let mut api = app("api");
    api.depends_on = vec![dep("db", Condition::Ready)];
    let (mut st, mut pid) = started(vec![app("db"), api], c.0);
    let api_pid = pid_of(&st, 1);
    let now = c.advance(40_000);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
    assert!(!acts
        .iter()
        .any(|a| matches!(a, Action::KillGroup { pgid, .. } if *pgid == api_pid)));
    run(&mut st, acts, now, &mut pid);
    let acts = st.on_tick(c.advance(10));
    run(&mut st, acts, c.0, &mut pid);
    assert_eq!(pid_of(&st, 1), api_pid);
    assert_eq!(status(&st, 1), Status::Online);
}

#[test]
fn health_failures_restart_gracefully_and_count_as_restarts() {
    let mut c = Clock::new();
    let mut a = with_health(app("w"), 2);
    a.restart.min_uptime = Duration::from_secs(3600); // every run is unstable
    a.restart.max_restarts = 2;
    let (mut st, mut pid) = started(vec![a], c.0);
    let first = pid_of(&st, 0);
    let acts = fail_checks(&mut st, &mut c, 0, 2);
    assert!(acts.contains(&Action::KillGroup {
        pgid: first,
        sig: libc::SIGINT
    }));
    assert_eq!(status(&st, 0), Status::Unhealthy);
    let now = c.advance(5);
    let acts = exit(first, ExitStatus::Signal(libc::SIGINT), now, &mut st);
    assert_eq!(spawned(&acts), [0]);
    run(&mut st, acts, now, &mut pid);
    let inst = st.get(0).unwrap();
    assert_eq!((inst.restarts, inst.unstable_restarts), (1, 1));
    assert_eq!(status(&st, 0), Status::Online);
    // The second health restart of an unstable app reaches max_restarts: errored.
    let second = pid_of(&st, 0);
    fail_checks(&mut st, &mut c, 0, 2);
    exit(
        second,
        ExitStatus::Signal(libc::SIGINT),
        c.advance(5),
        &mut st,
    );
    assert_eq!(status(&st, 0), Status::Errored);
}

#[test]
fn a_late_check_result_of_a_previous_process_is_ignored() {
    let mut c = Clock::new();
    let (mut st, _) = started(vec![with_health(app("w"), 1)], c.0);
    let acts = st.on_tick(c.advance(1000));
    let seq = acts
        .iter()
        .find_map(|a| match a {
            Action::RunCheck { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap();
    let r = CheckResult {
        kind: CheckKind::Health,
        seq,
        ok: false,
        summary: "x".into(),
        output: String::new(),
        took: Duration::ZERO,
    };
    let old_pid = pid_of(&st, 0) - 1;
    assert!(st.on_check_done(0, old_pid, &r, c.advance(1)).is_empty());
    assert_eq!(status(&st, 0), Status::Online);
}

#[test]
fn tracker_deadlines_join_the_policy_deadline() {
    let c = Clock::new();
    let (st, _) = started(vec![with_health(app("w"), 3)], c.0);
    assert_eq!(
        st.next_deadline(c.0),
        Some(c.0.mono + Duration::from_millis(1000))
    );
    let (idle, _) = started(vec![app("w")], c.0);
    assert_eq!(idle.next_deadline(c.0), None, "nothing timed: pmi sleeps");
}

#[test]
fn wait_ready_online_after_listen_timeout_counts_for_the_container_not_for_dependents() {
    let mut c = Clock::new();
    let mut api = app("api");
    api.ready = ReadySpec::Message;
    let mut web = app("web");
    web.depends_on = vec![dep("api", Condition::Ready)];
    let (mut st, _) = started(vec![api, web], c.0);
    st.on_tick(c.advance(3000)); // listen_timeout
    assert_eq!(status(&st, 0), Status::Online);
    assert_eq!(status(&st, 1), Status::Waiting, "no ready message yet");
    assert!(st
        .container_ready()
        .unwrap_err()
        .starts_with("web: waiting on api"));
    // Alone, it holds nothing back: pm2 treats it as online.
    let mut api = app("api");
    api.ready = ReadySpec::Message;
    let (mut alone, _) = started(vec![api], c.0);
    assert!(alone.container_ready().is_err(), "launching");
    alone.on_tick(c.advance(3000));
    assert_eq!(alone.container_ready(), Ok(()), "pm2: online anyway");
}
