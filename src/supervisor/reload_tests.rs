//! Table tests of the rolling reload: no processes, time moved by hand, the loop's part
//! (spawn → `on_spawned` + `track_spawn`, a stopped leader's empty group) played here.

use std::sync::Arc;
use std::time::Duration;

use super::super::policy::tests::app;
use super::super::policy::Action;
use super::super::state::{InstId, Now, Phase, State};
use crate::config::checks::ReadySpec;
use crate::config::AppSpec;
use crate::exit::ExitStatus;

struct World {
    st: State,
    now: Now,
    pid: i32,
    /// Group signals sent, in order.
    kills: Vec<i32>,
}

impl World {
    fn new(spec: AppSpec) -> World {
        let now = Now::read();
        let st = State::new(vec![Arc::new(spec)], true, now);
        let mut w = World {
            st,
            now,
            pid: 100,
            kills: Vec::new(),
        };
        let a = w.st.on_start(now);
        w.run(a);
        w
    }

    /// Carries out actions as the loop would (spawns get made-up pids).
    fn run(&mut self, actions: Vec<Action>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Spawn(id) => {
                    self.pid += 1;
                    self.st.on_spawned(id, self.pid, self.now);
                    queue.extend(self.st.track_spawn(id, self.now));
                }
                // The stop signal (SIGCONT follows it, for a frozen process).
                Action::KillGroup { pgid, sig } if sig != libc::SIGCONT => self.kills.push(pgid),
                _ => {}
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now = Now {
            mono: self.now.mono + Duration::from_millis(ms),
            wall: self.now.wall + chrono::Duration::milliseconds(ms as i64),
        };
        let a = self.st.on_tick(self.now);
        self.run(a);
    }

    /// `pid` exits; a stopped one's group is empty at once.
    fn exit(&mut self, pid: i32, status: ExitStatus) {
        let mut a = self.st.on_exit(pid, status, self.now);
        for (id, _) in self.st.draining() {
            a.extend(self.st.on_group_empty(id, self.now));
        }
        self.run(a);
    }

    fn reload(&mut self, ids: &[InstId]) -> u64 {
        let mut out = Vec::new();
        let r = self.st.reload(ids, self.now, &mut out);
        self.st.after_event(self.now, &mut out);
        self.run(out);
        r
    }

    fn pid(&self, id: InstId) -> Option<i32> {
        self.st.get(id).and_then(|i| i.phase.pid())
    }

    /// (pm_id, index, pid) of every instance, in id order.
    fn table(&self) -> Vec<(InstId, u32, Option<i32>)> {
        let mut v: Vec<_> = self
            .st
            .instances
            .iter()
            .map(|i| (i.id, i.index, i.phase.pid()))
            .collect();
        v.sort();
        v
    }
}

fn two(wait_ready: bool) -> AppSpec {
    AppSpec {
        instances: 2,
        wait_ready,
        ready: if wait_ready {
            ReadySpec::Message
        } else {
            ReadySpec::Spawned
        },
        ..app("web")
    }
}

#[test]
fn one_at_a_time_the_replacement_first_then_the_old_one() {
    let mut w = World::new(two(false));
    assert_eq!(w.table(), [(0, 0, Some(101)), (1, 1, Some(102))]);
    let r = w.reload(&[0, 1]);
    // Ready at spawn (no other readiness source): the old one is stopped at once, and the
    // second replacement waits until the first old one is gone.
    assert_eq!(w.kills, [101]);
    assert_eq!(
        w.table(),
        [(0, 0, Some(101)), (1, 1, Some(102)), (2, 0, Some(103))]
    );
    assert!(w.st.reload_outcome(r).is_none());
    w.exit(101, ExitStatus::Signal(libc::SIGINT));
    assert_eq!(w.kills, [101, 102]);
    assert_eq!(
        w.table(),
        [(1, 1, Some(102)), (2, 0, Some(103)), (3, 1, Some(104))]
    );
    w.exit(102, ExitStatus::Signal(libc::SIGINT));
    assert_eq!(w.table(), [(2, 0, Some(103)), (3, 1, Some(104))]);
    assert_eq!(w.st.reload_outcome(r), Some(&Ok(vec![2, 3])));
    // pm2's restart count goes on; the replacements restart normally from now on.
    assert_eq!(
        w.st.get(2).map(|i| (i.restarts, i.replacement)),
        Some((1, false))
    );
}

#[test]
fn with_wait_ready_the_old_one_runs_until_the_ready_message() {
    let mut w = World::new(two(true));
    w.reload(&[0, 1]);
    w.advance(1000);
    assert!(w.kills.is_empty(), "{:?}", w.kills);
    // A message from another pid (a stale one) changes nothing.
    let a = w.st.on_ready_message(2, 999, w.now);
    w.run(a);
    assert!(w.kills.is_empty());
    let a = w.st.on_ready_message(2, 103, w.now);
    w.run(a);
    assert_eq!(w.kills, [101]);
}

#[test]
fn a_replacement_that_exits_is_rolled_back_and_the_reload_stops() {
    let mut w = World::new(two(true));
    let r = w.reload(&[0, 1]);
    w.exit(103, ExitStatus::Code(3));
    // Not restarted, removed; the old instances run untouched; instance 1 was not tried.
    assert_eq!(w.table(), [(0, 0, Some(101)), (1, 1, Some(102))]);
    assert!(w.kills.is_empty());
    let Some(Err(f)) = w.st.reload_outcome(r) else {
        panic!("{:?}", w.st.reload_outcome(r))
    };
    assert_eq!((f.name.as_str(), f.index), ("web", 0));
    assert!(f.why.contains("exited (exit code 3)"), "{}", f.why);
    assert!(f.done.is_empty());
}

#[test]
fn a_replacement_not_ready_by_listen_timeout_is_stopped() {
    let mut w = World::new(AppSpec {
        listen_timeout: Duration::from_millis(3000),
        ..two(true)
    });
    let r = w.reload(&[0, 1]);
    assert_eq!(
        w.st.next_deadline(w.now),
        Some(w.now.mono + Duration::from_millis(3000))
    );
    w.advance(2999);
    assert!(w.st.reload_outcome(r).is_none() && w.kills.is_empty());
    w.advance(1);
    assert_eq!(
        w.kills,
        [103],
        "the replacement is stopped, not the old one"
    );
    let Some(Err(f)) = w.st.reload_outcome(r) else {
        panic!()
    };
    assert!(f.why.contains("listen_timeout (3000 ms)"), "{}", f.why);
    w.exit(103, ExitStatus::Signal(libc::SIGINT));
    assert_eq!(w.table(), [(0, 0, Some(101)), (1, 1, Some(102))]);
}

#[test]
fn stopped_instances_are_started_and_count_as_reloaded() {
    let mut w = World::new(two(false));
    let a = w.st.stop_ids(&[1], w.now);
    w.run(a);
    w.exit(102, ExitStatus::Signal(libc::SIGINT));
    assert_eq!(w.pid(1), None);
    let r = w.reload(&[1]);
    assert_eq!(w.pid(1), Some(103));
    assert_eq!(w.st.reload_outcome(r), Some(&Ok(vec![1])));
}

#[test]
fn a_cron_restart_of_several_instances_is_a_reload() {
    let every_second = crate::config::CronSpec {
        source: "* * * * * *".into(),
        schedule: "* * * * * *".parse().unwrap(),
    };
    let mut w = World::new(AppSpec {
        cron_restart: Some(every_second),
        ..two(false)
    });
    w.advance(1100);
    // The replacement of index 0 runs before its old instance gets the stop signal.
    assert_eq!(w.kills, [101]);
    assert!(w.table().contains(&(2, 0, Some(103))));
    // An instance already in a reload is not taken by a second one.
    let r = w.reload(&[0, 1]);
    assert_eq!(w.st.reload_outcome(r), Some(&Ok(vec![])));
}

#[test]
fn one_instance_without_a_shared_socket_restarts_stop_then_start() {
    let mut w = World::new(app("solo"));
    let a = w.st.restart_instances(&[0], w.now);
    w.run(a);
    assert_eq!(w.kills, [101]);
    assert_eq!(w.table(), [(0, 0, Some(101))]);
    assert!(matches!(
        w.st.get(0).map(|i| &i.phase),
        Some(Phase::Stopping { .. })
    ));
}

#[test]
fn one_instance_without_a_shared_socket_is_reloaded_in_place() {
    let mut w = World::new(AppSpec {
        ready: ReadySpec::Message,
        ..app("solo")
    });
    let r = w.reload(&[0]);
    // Stop, then start (a second process would fight over the app's own port).
    assert_eq!(w.kills, [101]);
    w.exit(101, ExitStatus::Signal(libc::SIGINT));
    assert_eq!(w.table(), [(0, 0, Some(102))]);
    assert!(w.st.reload_outcome(r).is_none(), "answered before ready");
    let a = w.st.on_ready_message(0, 102, w.now);
    w.run(a);
    assert_eq!(w.st.reload_outcome(r), Some(&Ok(vec![0])));
}

#[test]
fn memory_and_watch_restarts_of_several_instances_are_reloads() {
    // The memory limit: one instance, replaced beside the others.
    let mut w = World::new(two(false));
    let a = w.st.restart_instances(&[1], w.now);
    w.run(a);
    assert_eq!(w.kills, [102]);
    assert!(w.table().contains(&(2, 1, Some(103))), "{:?}", w.table());
    // A watched file: every running instance, one at a time.
    let mut w = World::new(two(false));
    let a = w.st.restart_app(0, w.now);
    w.run(a);
    assert_eq!(
        w.kills,
        [101],
        "the first old one only, once its replacement runs"
    );
    assert!(w.table().contains(&(2, 0, Some(103))), "{:?}", w.table());
}
