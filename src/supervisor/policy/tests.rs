//! Table-driven tests of the pure policy: no processes, time moved by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::config::{AppSpec, CronSpec, ExecMode, FilterEnv, LogFiles, RestartPolicy, Signal};

pub(crate) fn app(name: &str) -> AppSpec {
    AppSpec {
        name: name.into(),
        namespace: "default".into(),
        script: "app".into(),
        command: vec!["app".into()],
        args: vec![],
        interpreter: None,
        interpreter_args: vec![],
        cwd: "/".into(),
        instances: 1,
        exec_mode: ExecMode::Fork,
        autostart: true,
        restart: RestartPolicy::default(),
        kill_signal: Signal(libc::SIGINT),
        kill_timeout: Duration::from_millis(1600),
        cron_restart: None,
        env: BTreeMap::new(),
        filter_env: FilterEnv::None,
        instance_var: "NODE_APP_INSTANCE".into(),
        increment_var: None,
        port: None,
        listen: vec![],
        listen_at: vec![],
        max_memory_restart: None,
        watch: None,
        logs: LogFiles::default(),
        uid: None,
        gid: None,
        groups: vec![],
        pid_file: None,
        wait_ready: false,
        listen_timeout: Duration::from_millis(3000),
        shutdown_with_message: false,
        depends_on: vec![],
        ready: Default::default(),
        health: None,
        watchdog: None,
    }
}

fn every_second() -> Option<CronSpec> {
    Some(CronSpec {
        source: "* * * * * *".into(),
        schedule: "* * * * * *".parse().unwrap(),
    })
}

/// A clock the test moves by hand.
struct Clock(Now);
impl Clock {
    fn new() -> Clock {
        Clock(Now::read())
    }
    fn advance(&mut self, ms: u64) -> Now {
        let d = Duration::from_millis(ms);
        self.0 = Now {
            mono: self.0.mono + d,
            wall: self.0.wall + chrono::Duration::milliseconds(ms as i64),
        };
        self.0
    }
}

fn state(apps: Vec<AppSpec>, now: Now) -> State {
    State::new(apps.into_iter().map(Arc::new).collect(), true, now)
}

/// A state whose autostart instances run, and the last pid handed out.
fn started(apps: Vec<AppSpec>, now: Now) -> (State, i32) {
    let mut st = state(apps, now);
    let mut pid = 100;
    let acts = st.on_start(now);
    run(&mut st, acts, now, &mut pid);
    (st, pid)
}

/// Carries out spawns with made-up pids, as the supervisor loop would (the readiness tracker
/// starts right after the spawn, and may start dependents).
pub(crate) fn run(
    st: &mut State,
    actions: Vec<Action>,
    now: Now,
    next_pid: &mut i32,
) -> Vec<Action> {
    let mut rest = Vec::new();
    let mut queue = std::collections::VecDeque::from(actions);
    while let Some(a) = queue.pop_front() {
        match a {
            Action::Spawn(id) => {
                *next_pid += 1;
                st.on_spawned(id, *next_pid, now);
                queue.extend(st.track_spawn(id, now));
            }
            Action::Note(..) => {}
            other => rest.push(other),
        }
    }
    rest
}

/// An exit as the supervisor loop sees it: a stopped leader's group is empty at once here.
fn exit(pid: i32, status: ExitStatus, now: Now, st: &mut State) -> Vec<Action> {
    let mut acts = st.on_exit(pid, status, now);
    for (id, _) in st.draining() {
        acts.extend(st.on_group_empty(id, now));
    }
    acts
}

fn pid_of(st: &State, id: InstId) -> i32 {
    st.get(id).and_then(|i| i.phase.pid()).expect("running")
}

#[test]
fn backoff_sequence_matches_pm2() {
    let base = Duration::from_millis(100);
    let mut prev = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let d = next_backoff(base, prev);
        seen.push(d.as_millis() as u64);
        prev = Some(d);
    }
    assert_eq!(seen, [100, 150, 225, 337, 505, 757, 1135, 1702, 2553, 3829]);
    let mut d = Duration::from_millis(100);
    for _ in 0..30 {
        d = next_backoff(base, Some(d));
    }
    assert_eq!(d, BACKOFF_CAP);
}

#[test]
fn crash_loop_runs_max_restarts_times_then_errors_and_exits_with_its_code() {
    let mut c = Clock::new();
    let mut a = app("api");
    a.restart.max_restarts = 3;
    let (mut st, mut pid) = started(vec![a], c.0);
    let mut runs = 1;
    loop {
        let now = c.advance(10);
        let p = pid_of(&st, 0);
        let acts = exit(p, ExitStatus::Code(3), now, &mut st);
        if let Some(Action::Finish { code }) =
            acts.iter().find(|a| matches!(a, Action::Finish { .. }))
        {
            assert_eq!(*code, 3);
            break;
        }
        assert!(acts.contains(&Action::Spawn(0)), "{acts:?}");
        run(&mut st, acts, now, &mut pid);
        runs += 1;
        assert!(runs < 10);
    }
    assert_eq!(runs, 3);
    assert_eq!(st.get(0).unwrap().phase, Phase::Errored);
    assert_eq!(st.get(0).unwrap().restarts, 2);
}

#[test]
fn stable_runs_are_not_counted_as_unstable() {
    let mut c = Clock::new();
    let mut a = app("api");
    a.restart.max_restarts = 2;
    let (mut st, mut pid) = started(vec![a], c.0);
    for _ in 0..5 {
        let now = c.advance(1500);
        let acts = exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
        assert!(acts.contains(&Action::Spawn(0)));
        run(&mut st, acts, now, &mut pid);
    }
    assert_eq!(st.get(0).unwrap().unstable_restarts, 0);
    assert_eq!(st.get(0).unwrap().restarts, 5);
}

#[test]
fn stop_exit_codes_apply_to_codes_not_signals() {
    let mut c = Clock::new();
    let mut a = app("job");
    a.restart.stop_exit_codes = vec![0];
    let mut b = app("other");
    b.restart.stop_exit_codes = vec![0];
    let (mut st, _) = started(vec![a, b], c.0);
    let now = c.advance(2000);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(0), now, &mut st);
    assert!(!acts.contains(&Action::Spawn(0)));
    assert_eq!(st.get(0).unwrap().phase, Phase::Stopped);
    let acts = exit(
        pid_of(&st, 1),
        ExitStatus::Signal(libc::SIGKILL),
        now,
        &mut st,
    );
    assert!(
        acts.contains(&Action::Spawn(1)),
        "a signal death is never code 0"
    );
}

#[test]
fn restart_delay_waits_until_the_deadline() {
    let mut c = Clock::new();
    let mut a = app("api");
    a.restart.restart_delay = Duration::from_millis(500);
    let (mut st, _) = started(vec![a], c.0);
    let now = c.advance(2000);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
    assert!(!acts.contains(&Action::Spawn(0)));
    assert_eq!(
        st.next_deadline(now),
        Some(now.mono + Duration::from_millis(500))
    );
    let early = c.advance(499);
    assert!(!st.on_tick(early).contains(&Action::Spawn(0)));
    let due = c.advance(1);
    assert!(st.on_tick(due).contains(&Action::Spawn(0)));
}

#[test]
fn exp_backoff_grows_then_resets_after_a_stable_run() {
    let mut c = Clock::new();
    let mut a = app("api");
    a.restart.exp_backoff_restart_delay = Some(Duration::from_millis(100));
    a.restart.max_restarts = 100;
    let (mut st, mut pid) = started(vec![a], c.0);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let now = c.advance(10);
        exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
        let until = match st.get(0).unwrap().phase {
            Phase::WaitingRestart { until } => until,
            ref p => panic!("{p:?}"),
        };
        delays.push((until - now.mono).as_millis());
        let due = c.advance((until - now.mono).as_millis() as u64);
        let acts = st.on_tick(due);
        run(&mut st, acts, due, &mut pid);
    }
    assert_eq!(delays, [100, 150, 225, 337]);
    let now = c.advance(STABLE_RUN.as_millis() as u64);
    exit(pid_of(&st, 0), ExitStatus::Code(1), now, &mut st);
    assert_eq!(st.get(0).unwrap().backoff, Some(Duration::from_millis(100)));
}

#[test]
fn shutdown_sends_kill_signal_then_escalates_and_exits_1() {
    let mut c = Clock::new();
    let mut a = app("api");
    a.kill_signal = Signal(libc::SIGTERM);
    a.kill_timeout = Duration::from_millis(1000);
    let b = app("web");
    let (mut st, _) = started(vec![a, b], c.0);
    let (p0, p1) = (pid_of(&st, 0), pid_of(&st, 1));
    let acts = st.on_signal(libc::SIGTERM, c.0);
    assert!(acts.contains(&Action::KillGroup {
        pgid: p0,
        sig: libc::SIGTERM
    }));
    assert!(acts.contains(&Action::KillGroup {
        pgid: p1,
        sig: libc::SIGINT
    }));
    let now = c.advance(100);
    assert!(!st
        .on_exit(p1, ExitStatus::Code(0), now)
        .iter()
        .any(|a| matches!(a, Action::Finish { .. })));
    let now = c.advance(900);
    let acts = st.on_tick(now);
    assert!(acts.iter().any(
        |a| matches!(a, Action::KillLeftovers { pgid, level: Level::Warn, .. } if *pgid == p0)
    ));
    let acts = exit(p0, ExitStatus::Signal(libc::SIGKILL), c.advance(1), &mut st);
    assert!(acts.contains(&Action::Finish { code: 1 }), "{acts:?}");
}

#[test]
fn cooperative_shutdown_exits_0_and_never_restarts() {
    let mut c = Clock::new();
    let (mut st, _) = started(vec![app("a")], c.0);
    st.on_signal(libc::SIGINT, c.0);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(130), c.advance(5), &mut st);
    assert!(!acts.contains(&Action::Spawn(0)));
    assert!(acts.contains(&Action::Finish { code: 0 }));
}

#[test]
fn auto_exit_uses_the_code_of_the_app_that_failed_last() {
    let mut c = Clock::new();
    let mut a = app("a");
    a.restart.autorestart = false;
    let mut b = app("b");
    b.restart.autorestart = false;
    let mut ok = app("ok");
    ok.restart.autorestart = false;
    let (mut st, _) = started(vec![a, b, ok], c.0);
    let (pa, pb, pok) = (pid_of(&st, 0), pid_of(&st, 1), pid_of(&st, 2));
    assert!(st
        .on_exit(pa, ExitStatus::Code(3), c.advance(1))
        .iter()
        .all(|a| !matches!(a, Action::Finish { .. })));
    exit(pb, ExitStatus::Signal(libc::SIGKILL), c.advance(1), &mut st);
    let acts = exit(pok, ExitStatus::Code(0), c.advance(1), &mut st);
    assert!(acts.contains(&Action::Finish { code: 137 }), "{acts:?}");
}

#[test]
fn auto_exit_waits_for_a_restart_delay_and_a_cron() {
    let mut c = Clock::new();
    let mut a = app("a");
    a.restart.restart_delay = Duration::from_secs(10);
    let (mut st, _) = started(vec![a], c.0);
    let acts = exit(
        pid_of(&st, 0),
        ExitStatus::Code(1),
        c.advance(5000),
        &mut st,
    );
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Finish { .. })),
        "pm2 exits here; pmi waits"
    );
    let mut cronjob = app("cron");
    cronjob.restart.autorestart = false;
    cronjob.cron_restart = every_second();
    let (mut st, mut pid) = started(vec![cronjob], c.0);
    let acts = st.on_start(c.0);
    run(&mut st, acts, c.0, &mut pid);
    let acts = exit(pid_of(&st, 0), ExitStatus::Code(0), c.advance(1), &mut st);
    assert!(!acts.iter().any(|a| matches!(a, Action::Finish { .. })));
    let acts = st.on_tick(c.advance(1000));
    assert!(
        acts.contains(&Action::Spawn(0)),
        "cron starts an exited app: {acts:?}"
    );
}

#[test]
fn cron_restarts_a_running_app_gracefully() {
    let mut c = Clock::new();
    let mut a = app("a");
    a.cron_restart = every_second();
    let (mut st, _) = started(vec![a], c.0);
    let p = pid_of(&st, 0);
    let acts = st.on_tick(c.advance(1000));
    assert!(acts.contains(&Action::KillGroup {
        pgid: p,
        sig: libc::SIGINT
    }));
    let acts = exit(p, ExitStatus::Code(0), c.advance(5), &mut st);
    assert!(acts.contains(&Action::Spawn(0)));
    assert_eq!(st.get(0).unwrap().restarts, 1);
    st.stop_ids(&[0], c.0);
    assert!(st.apps[0].cron_suspended);
}

#[test]
fn other_signals_are_forwarded_to_every_running_group() {
    let c = Clock::new();
    let mut a = app("a");
    a.instances = 2;
    let (mut st, _) = started(vec![a], c.0);
    let acts = st.on_signal(libc::SIGHUP, c.0);
    assert_eq!(acts.len(), 2);
    assert!(st.on_signal(libc::SIGTSTP, c.0).is_empty());
    assert_eq!(st.forwarded_signals, 1);
}

#[test]
fn shutdown_follows_reverse_depends_on_order() {
    let mut c = Clock::new();
    let db = app("db");
    let mut api = app("api");
    api.depends_on = vec![crate::config::checks::Dependency {
        app: "db".into(),
        condition: crate::config::checks::Condition::Ready,
    }];
    let (mut st, _) = started(vec![db, api], c.0);
    let (pdb, papi) = (pid_of(&st, 0), pid_of(&st, 1));
    let acts = st.on_signal(libc::SIGTERM, c.0);
    assert!(acts.contains(&Action::KillGroup {
        pgid: papi,
        sig: libc::SIGINT
    }));
    assert!(!acts
        .iter()
        .any(|a| matches!(a, Action::KillGroup { pgid, .. } if *pgid == pdb)));
    let acts = exit(papi, ExitStatus::Code(0), c.advance(5), &mut st);
    assert!(
        acts.contains(&Action::KillGroup {
            pgid: pdb,
            sig: libc::SIGINT
        }),
        "{acts:?}"
    );
}

#[test]
fn scale_takes_lowest_free_index_and_removes_highest() {
    let c = Clock::new();
    let mut a = app("w");
    a.instances = 3;
    let (mut st, mut pid) = started(vec![a], c.0);
    let (acts, gone) = st.scale(0, 1, c.0);
    assert_eq!(gone.len(), 2);
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::KillGroup { sig, .. } if *sig == libc::SIGINT))
            .count(),
        2
    );
    for id in gone {
        let p = pid_of(&st, id);
        exit(p, ExitStatus::Code(0), c.0, &mut st);
    }
    assert_eq!(st.of_app(0).len(), 1);
    let (acts, new) = st.scale(0, 3, c.0);
    run(&mut st, acts, c.0, &mut pid);
    let idx: Vec<u32> = new.iter().map(|id| st.get(*id).unwrap().index).collect();
    assert_eq!(idx, [1, 2]);
}

#[test]
fn spawn_failure_is_an_exit_with_127() {
    let c = Clock::new();
    let mut a = app("missing");
    a.restart.max_restarts = 1;
    let (mut st, _) = started(vec![a], c.0);
    st.on_start(c.0);
    let acts = st.on_spawn_failed(0, 127, c.0);
    assert!(acts.contains(&Action::Finish { code: 127 }), "{acts:?}");
    assert_eq!(st.get(0).unwrap().phase, Phase::Errored);
}

/// Leftovers of a stopped leader's group are killed at once; the stop is clean when the leader
/// ended within kill_timeout, and unclean only when the deadline forced it.
#[test]
fn a_stopped_leaders_group_is_killed_at_once_and_the_stop_counts_as_clean() {
    // (leader exits after ms, kill_timeout ms, pmi's exit code)
    let table = [
        (100, 1600, 0),
        (1599, 1600, 0),
        (10, 50, 0),
        (1700, 1600, 1),
    ];
    for (exit_after, timeout, code) in table {
        let mut c = Clock::new();
        let mut a = app("a");
        a.kill_timeout = Duration::from_millis(timeout);
        let (mut st, _) = started(vec![a], c.0);
        let p = pid_of(&st, 0);
        st.on_signal(libc::SIGTERM, c.0);
        let mut acts = st.on_tick(c.advance(exit_after));
        acts.extend(st.on_exit(p, ExitStatus::Code(0), c.0));
        let killed_rest = acts.iter().any(
            |a| matches!(a, Action::KillLeftovers { pgid, level: Level::Info, .. } if *pgid == p),
        );
        assert!(
            killed_rest || exit_after > timeout,
            "{exit_after}: {acts:?}"
        );
        assert!(!acts.iter().any(|a| matches!(a, Action::Finish { .. })));
        assert_eq!(st.draining(), vec![(0, p)]);
        // The group stays empty-pending without any further kill, however long it takes.
        assert!(st
            .on_tick(c.advance(10 * timeout))
            .iter()
            .all(|a| !matches!(a, Action::KillGroup { .. } | Action::KillLeftovers { .. })));
        let acts = st.on_group_empty(0, c.advance(1));
        assert!(
            acts.contains(&Action::Finish { code }),
            "{exit_after}: {acts:?}"
        );
    }
}

#[test]
fn all_names_nothing_but_is_no_error_after_every_instance_was_scaled_away() {
    // The supervisor used to refuse `all` here ("unknown target") while the snapshot readers
    // accepted it; both now follow `Target::select`.
    let c = Clock::new();
    let mut a = app("w");
    a.instances = 2;
    let (mut st, _) = started(vec![a], c.0);
    let (_, gone) = st.scale(0, 0, c.0);
    for id in gone {
        let p = pid_of(&st, id);
        exit(p, ExitStatus::Code(0), c.0, &mut st);
    }
    assert!(st.instances.is_empty());
    assert_eq!(st.resolve(&crate::api::Target::All), Ok(vec![]));
    assert_eq!(st.resolve(&crate::api::Target::parse("w")), Ok(vec![]));
    assert!(st.resolve(&crate::api::Target::parse("nope")).is_err());
}

#[test]
fn a_stop_sends_sigcont_after_the_kill_signal_so_a_frozen_app_can_stop() {
    let c = Clock::new();
    let (mut st, _) = started(vec![app("a")], c.0);
    let p = pid_of(&st, 0);
    let acts = st.stop_ids(&[0], c.0);
    let at = |sig| {
        acts.iter()
            .position(|a| *a == Action::KillGroup { pgid: p, sig })
            .unwrap_or_else(|| panic!("no signal {sig}: {acts:?}"))
    };
    assert!(at(libc::SIGINT) < at(libc::SIGCONT), "{acts:?}");
}

#[test]
fn a_removal_is_final_even_while_a_restart_stops_or_drains() {
    let now = Clock::new().0;
    let (mut st, _) = started(vec![app("a"), app("b")], now);
    // a: restart, the leader exits while its group drains, then the app is removed.
    let pid = pid_of(&st, 0);
    st.restart_all(&[0], now);
    st.on_exit(pid, ExitStatus::Code(0), now);
    assert!(matches!(
        st.get(0).map(|i| &i.phase),
        Some(Phase::Draining {
            then: Then::Restart,
            ..
        })
    ));
    st.scale(0, 0, now);
    let acts = st.on_group_empty(0, now);
    assert!(acts.contains(&Action::Removed(0)), "{acts:?}");
    assert!(st.get(0).is_none());
    // b: removed, then a restart (cron, memory, `pmi restart`) while it stops.
    st.scale(1, 0, now);
    let acts = st.restart_all(&[1], now);
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Spawn(_))),
        "{acts:?}"
    );
    assert!(matches!(
        st.get(1).map(|i| &i.phase),
        Some(Phase::Stopping {
            then: Then::Remove,
            ..
        })
    ));
}

#[path = "ready_tests.rs"]
mod ready_tests;
