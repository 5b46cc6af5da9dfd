//! Run-time state of the supervisor: apps, their instances, and each instance's phase.
//!
//! Invariant: a pid exists only inside `Phase::Running` or `Phase::Stopping`, so an exit can be
//! matched to at most one instance and a stale pid can never be signalled.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::config::AppSpec;
use crate::exit::ExitStatus;

/// An instance's pm_id: unique for the life of the supervisor.
pub type InstId = u32;

/// The two clocks the policy needs: monotonic for delays, wall for cron and display.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: DateTime<Utc>,
}

impl Now {
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }

    pub fn wall_ms(&self) -> u64 {
        self.wall.timestamp_millis().max(0) as u64
    }

    /// The monotonic instant at which the wall clock will read `t` (now, if `t` is past).
    pub fn mono_at(&self, t: DateTime<Utc>) -> Instant {
        match (t - self.wall).to_std() {
            Ok(d) => self.mono + d,
            Err(_) => self.mono,
        }
    }
}

/// What happens once a stopping instance has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Stop,
    Restart,
    /// Scale-down: the instance disappears.
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not running and not going to run by itself (never started, stopped, or exited for good).
    Stopped,
    Running {
        pid: i32,
        since: Instant,
    },
    Stopping {
        pid: i32,
        deadline: Instant,
        killed: bool,
        then: Then,
    },
    /// The leader exited during a stop; the rest of its process group still runs and has until
    /// `deadline` before SIGKILL. No pid: the leader is gone.
    Draining {
        pgid: i32,
        deadline: Instant,
        killed: bool,
        then: Then,
    },
    /// Waiting out a restart delay; `until == now` means "spawn at once".
    WaitingRestart {
        until: Instant,
    },
    /// Gave up: too many unstable restarts.
    Errored,
}

impl Phase {
    pub fn pid(&self) -> Option<i32> {
        match self {
            Phase::Running { pid, .. } | Phase::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Running, stopping or about to restart: keeps pmi from auto-exiting.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            Phase::Running { .. }
                | Phase::Stopping { .. }
                | Phase::Draining { .. }
                | Phase::WaitingRestart { .. }
        )
    }
}

/// How an instance's last process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastExit {
    pub status: ExitStatus,
    pub wall_ms: u64,
    /// Order of exits across all instances (the "app that failed last").
    pub seq: u64,
    /// The exit counts as a failure for pmi's own exit code.
    pub failed: bool,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: InstId,
    /// Index into `State::apps`.
    pub app: usize,
    /// NODE_APP_INSTANCE.
    pub index: u32,
    pub phase: Phase,
    /// pm2's restart_time.
    pub restarts: u32,
    pub unstable_restarts: u32,
    /// The last exponential-backoff delay used, if the backoff is running.
    pub backoff: Option<Duration>,
    pub last_exit: Option<LastExit>,
    /// Wall-clock start of the current process (Unix ms).
    pub started_wall_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    /// Stable while the app exists (`Trigger::app`): its index in the first file; apps added
    /// by `pmi apply` get new keys.
    pub key: usize,
    pub spec: Arc<AppSpec>,
    /// `pmi stop` suspends the cron until `pmi start`.
    pub cron_suspended: bool,
    pub cron_next: Option<DateTime<Utc>>,
    /// Shutdown has sent this app's instances their stop signal.
    pub shutdown_signalled: bool,
}

#[derive(Debug)]
pub struct State {
    pub apps: Vec<AppState>,
    pub instances: Vec<Instance>,
    pub next_id: InstId,
    pub exit_seq: u64,
    pub auto_exit: bool,
    /// SIGTERM/SIGINT received: everything is being stopped.
    pub shutting_down: bool,
    /// An app had to be SIGKILLed during shutdown.
    pub killed_in_shutdown: bool,
    /// `Action::Finish` has been emitted.
    pub finished: bool,
    pub reaped_orphans: u64,
    pub forwarded_signals: u64,
}

impl State {
    pub fn new(apps: Vec<Arc<AppSpec>>, auto_exit: bool, now: Now) -> State {
        let mut st = State {
            apps: Vec::new(),
            instances: Vec::new(),
            next_id: 0,
            exit_seq: 0,
            auto_exit,
            shutting_down: false,
            killed_in_shutdown: false,
            finished: false,
            reaped_orphans: 0,
            forwarded_signals: 0,
        };
        for (i, spec) in apps.into_iter().enumerate() {
            let cron_next = spec
                .cron_restart
                .as_ref()
                .and_then(|c| c.next_after(now.wall));
            for index in 0..spec.instances {
                st.add_instance(i, index);
            }
            st.apps.push(AppState {
                key: i,
                spec,
                cron_suspended: false,
                cron_next,
                shutdown_signalled: false,
            });
        }
        st
    }

    pub fn add_instance(&mut self, app: usize, index: u32) -> InstId {
        let id = self.next_id;
        self.next_id += 1;
        self.instances.push(Instance {
            id,
            app,
            index,
            phase: Phase::Stopped,
            restarts: 0,
            unstable_restarts: 0,
            backoff: None,
            last_exit: None,
            started_wall_ms: None,
        });
        id
    }

    pub fn get(&self, id: InstId) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }

    pub fn get_mut(&mut self, id: InstId) -> Option<&mut Instance> {
        self.instances.iter_mut().find(|i| i.id == id)
    }

    pub fn by_pid(&self, pid: i32) -> Option<InstId> {
        self.instances
            .iter()
            .find(|i| i.phase.pid() == Some(pid))
            .map(|i| i.id)
    }

    pub fn spec_of(&self, id: InstId) -> Option<&Arc<AppSpec>> {
        self.get(id).map(|i| &self.apps[i.app].spec)
    }

    /// Instances of one app, in index order.
    pub fn of_app(&self, app: usize) -> Vec<InstId> {
        let mut v: Vec<&Instance> = self.instances.iter().filter(|i| i.app == app).collect();
        v.sort_by_key(|i| i.index);
        v.iter().map(|i| i.id).collect()
    }

    pub fn app_index(&self, name: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.spec.name == name)
    }

    /// The index of the app with this key (see `AppState::key`).
    pub fn app_by_key(&self, key: usize) -> Option<usize> {
        self.apps.iter().position(|a| a.key == key)
    }

    /// Forgets an app whose instances are all gone; later apps move down one index.
    pub fn forget_app(&mut self, app: usize) {
        if app >= self.apps.len() || self.instances.iter().any(|i| i.app == app) {
            return;
        }
        self.apps.remove(app);
        for i in &mut self.instances {
            if i.app > app {
                i.app -= 1;
            }
        }
    }
}
