//! One instance's readiness, health and watchdog, as a pure state machine with time passed in.
//!
//! Invariant: nothing here touches the OS or reads a clock. The supervisor creates one `Tracker`
//! per spawned process, feeds it what happened (a ready message, a notify batch, a check result,
//! a tick at `next_deadline`), and carries out the `Decision`s it returns (run a check, restart,
//! log). Every timer is a deadline reported by `next_deadline`, so the loop sleeps until the
//! earliest one: no polling. A tracker that decided a restart is `done` and asks for nothing more.
//! Check results carry the `seq` of their request; a stale or unknown one is ignored, and a check
//! that never reports counts as failed at its timeout plus `RESULT_GRACE`.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::checks::{HealthSpec, Probe, ReadySpec};
use crate::os::notify::Notice;

/// How long past its timeout a check may take to report before it counts as failed (the runner
/// enforces the timeout itself; this guards against a result that never comes).
pub const RESULT_GRACE: Duration = Duration::from_secs(2);
/// Bounds for a `WATCHDOG_USEC=` an app sends about itself.
const WATCHDOG_MIN: Duration = Duration::from_millis(100);
const WATCHDOG_MAX: Duration = Duration::from_secs(24 * 3600);

/// What makes this instance ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// As soon as it is spawned (pm2's default).
    Spawned,
    /// pm2's `process.send('ready')`.
    Message,
    /// sd_notify `READY=1`.
    Notify,
    /// A Node cluster instance listening on the shared socket.
    Listening,
    /// A passing ready check.
    Check {
        interval: Duration,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTiming {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// Everything the tracker needs, from the app's spec and the kind of start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub source: Source,
    pub listen_timeout: Duration,
    /// A reload's replacement: not ready in time is a failed replacement, not "online anyway".
    pub replacement: bool,
    pub health: Option<HealthTiming>,
    pub watchdog: Option<Duration>,
}

impl Config {
    /// From the app's validated fields. `node_cluster`: a Node instance on a shared socket, whose
    /// default readiness is "listening" rather than "spawned".
    pub fn from_spec(
        ready: &ReadySpec,
        health: Option<&HealthSpec>,
        watchdog: Option<Duration>,
        listen_timeout: Duration,
        node_cluster: bool,
        replacement: bool,
    ) -> Config {
        let source = match ready {
            ReadySpec::Spawned if node_cluster => Source::Listening,
            ReadySpec::Spawned => Source::Spawned,
            ReadySpec::Message => Source::Message,
            ReadySpec::Notify => Source::Notify,
            ReadySpec::Check(c) => Source::Check {
                interval: c.interval,
                timeout: c.timeout,
            },
        };
        Config {
            source,
            listen_timeout,
            replacement,
            health: health.map(|h| HealthTiming {
                interval: h.check.interval,
                timeout: h.check.timeout,
                retries: h.retries,
                start_period: h.start_period,
            }),
            watchdog,
        }
    }

    /// The probe to run for a `RunCheck` of this kind, if the spec has one.
    pub fn probe<'a>(
        kind: CheckKind,
        ready: &'a ReadySpec,
        health: Option<&'a HealthSpec>,
    ) -> Option<&'a Probe> {
        match kind {
            CheckKind::Ready => match ready {
                ReadySpec::Check(c) => Some(&c.probe),
                _ => None,
            },
            CheckKind::Health => health.map(|h| &h.check.probe),
        }
    }
}

/// Why the instance counts as online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadyBy {
    Spawned,
    Message,
    Notify,
    Listening,
    Check,
    /// `listen_timeout` passed at a first start: online with a warning, not ready for dependents.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Ready,
    Health,
}

/// The outcome of one check attempt, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub kind: CheckKind,
    pub seq: u64,
    pub ok: bool,
    /// One line for logs and status ("HTTP 500", "connection refused", "exit code 1").
    pub summary: String,
    /// The bounded output (HTTP status line and body start, or the command's last bytes).
    pub output: String,
    pub took: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartWhy {
    Unhealthy {
        failures: u32,
        last: String,
    },
    /// No `WATCHDOG=1` within the watchdog time.
    Watchdog {
        after: Duration,
    },
    /// The app sent `WATCHDOG=trigger`.
    WatchdogTrigger,
}

impl std::fmt::Display for RestartWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartWhy::Unhealthy { failures, last } => {
                write!(
                    f,
                    "unhealthy: {failures} health checks failed in a row (last: {last})"
                )
            }
            RestartWhy::Watchdog { after } => {
                write!(f, "watchdog: no WATCHDOG=1 for {} ms", after.as_millis())
            }
            RestartWhy::WatchdogTrigger => write!(f, "watchdog: the app sent WATCHDOG=trigger"),
        }
    }
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The instance is now online (again, with a better reason, after a `Timeout`).
    Online { by: ReadyBy },
    /// Start this check now and report it with `on_check_result` (same kind and seq).
    RunCheck {
        kind: CheckKind,
        seq: u64,
        timeout: Duration,
    },
    /// Restart the instance gracefully (a reload when the app has a shared socket); counts as a
    /// restart under the unstable-restart rules.
    Restart(RestartWhy),
    /// A reload's replacement was not ready within `listen_timeout`: stop it, keep the old one.
    ReplacementFailed,
    /// A line for pmi's log (warning level).
    Warn(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No check has passed yet (within `start_period`, or before the first check).
    Starting,
    Healthy,
    /// Failing, below `retries` so far.
    Failing,
    /// `retries` failures in a row: a restart was decided.
    Unhealthy,
}

/// The last check of one kind, for `describe` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastCheck {
    pub ok: bool,
    pub summary: String,
    pub output: String,
    pub took_ms: u64,
}

/// A periodic check: due at `due`, or in flight since a request.
#[derive(Debug, Clone)]
struct Timer {
    interval: Duration,
    timeout: Duration,
    due: Option<Instant>,
    /// (seq, give up at) while a request is out.
    in_flight: Option<(u64, Instant)>,
}

impl Timer {
    fn new(interval: Duration, timeout: Duration, first: Instant) -> Timer {
        Timer {
            interval,
            timeout,
            due: Some(first),
            in_flight: None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.in_flight.map(|(_, t)| t).or(self.due)
    }
}

#[derive(Debug, Clone)]
struct HealthState {
    timer: Timer,
    retries: u32,
    grace_until: Instant,
    status: Health,
    failures: u32,
    last: Option<LastCheck>,
}

/// One spawned process's readiness, health and watchdog.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: Config,
    online: Option<ReadyBy>,
    listen_deadline: Option<Instant>,
    ready_check: Option<Timer>,
    last_ready_check: Option<LastCheck>,
    health: Option<HealthState>,
    /// The watchdog time in force and, once armed (READY=1 or a first WATCHDOG=1), its deadline.
    watchdog: Option<(Duration, Option<Instant>)>,
    status_text: Option<String>,
    stopping: bool,
    seq: u64,
    done: bool,
}

impl Tracker {
    /// Created right after the spawn succeeded; the decisions are for that moment (an instance
    /// with `Source::Spawned` is online at once).
    pub fn new(cfg: Config, now: Instant) -> (Tracker, Vec<Decision>) {
        let ready_check = match cfg.source {
            Source::Check { interval, timeout } => {
                Some(Timer::new(interval, timeout, now + interval))
            }
            _ => None,
        };
        let health = cfg.health.map(|h| HealthState {
            timer: Timer::new(h.interval, h.timeout, now + h.interval),
            retries: h.retries.max(1),
            grace_until: now + h.start_period,
            status: Health::Starting,
            failures: 0,
            last: None,
        });
        let mut t = Tracker {
            cfg,
            online: None,
            listen_deadline: Some(now + cfg.listen_timeout),
            ready_check,
            last_ready_check: None,
            health,
            watchdog: cfg.watchdog.map(|w| (w, None)),
            status_text: None,
            stopping: false,
            seq: 0,
            done: false,
        };
        let mut out = Vec::new();
        if cfg.source == Source::Spawned {
            t.become_ready(ReadyBy::Spawned, &mut out);
        }
        (t, out)
    }

    /// Online: ready, or past `listen_timeout` at a first start.
    pub fn is_online(&self) -> bool {
        self.online.is_some()
    }

    /// Ready in the sense dependents, `/readyz` and pmi's own READY=1 use.
    pub fn is_ready(&self) -> bool {
        self.online.is_some_and(|b| b != ReadyBy::Timeout)
    }

    pub fn ready_by(&self) -> Option<ReadyBy> {
        self.online
    }

    /// `None` without a health check.
    pub fn health(&self) -> Option<Health> {
        self.health.as_ref().map(|h| h.status)
    }

    pub fn health_failures(&self) -> u32 {
        self.health.as_ref().map_or(0, |h| h.failures)
    }

    pub fn last_check(&self, kind: CheckKind) -> Option<&LastCheck> {
        match kind {
            CheckKind::Ready => self.last_ready_check.as_ref(),
            CheckKind::Health => self.health.as_ref().and_then(|h| h.last.as_ref()),
        }
    }

    /// The app's last sd_notify `STATUS=`.
    pub fn status_text(&self) -> Option<&str> {
        self.status_text.as_deref()
    }

    /// The app said `STOPPING=1`.
    pub fn app_stopping(&self) -> bool {
        self.stopping
    }

    /// A restart was decided (or a replacement failed): the tracker is finished.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The earliest moment `on_tick` has something to do; `None`: nothing is timed.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let listen = self.listen_deadline.filter(|_| self.online.is_none());
        [
            listen,
            self.ready_check.as_ref().and_then(Timer::deadline),
            self.health.as_ref().and_then(|h| h.timer.deadline()),
            self.watchdog.and_then(|(_, d)| d),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// pm2's `'ready'` message.
    pub fn on_ready_message(&mut self) -> Vec<Decision> {
        self.ready_from(Source::Message, ReadyBy::Message)
    }

    /// The instance listens on its shared socket.
    pub fn on_listening(&mut self) -> Vec<Decision> {
        self.ready_from(Source::Listening, ReadyBy::Listening)
    }

    /// A batch from the instance's notify socket.
    pub fn on_notify(&mut self, n: &Notice, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if let Some(s) = &n.status {
            self.status_text = Some(s.clone());
        }
        self.stopping |= n.stopping;
        if n.ready {
            out.extend(self.ready_from(Source::Notify, ReadyBy::Notify));
        }
        if let Some((time, deadline)) = &mut self.watchdog {
            if let Some(us) = n.watchdog_usec {
                *time = Duration::from_micros(us).clamp(WATCHDOG_MIN, WATCHDOG_MAX);
            }
            // The clock starts at READY=1 (or the first keepalive) and restarts at each one.
            if n.ready || n.watchdog || (deadline.is_some() && n.watchdog_usec.is_some()) {
                *deadline = Some(now + *time);
            }
            if n.watchdog_trigger {
                self.done = true;
                out.push(Decision::Restart(RestartWhy::WatchdogTrigger));
            }
        }
        out
    }

    /// A check reported. Stale or unexpected results change nothing.
    pub fn on_check_result(&mut self, r: &CheckResult, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let last = LastCheck {
            ok: r.ok,
            summary: r.summary.clone(),
            output: r.output.clone(),
            took_ms: r.took.as_millis() as u64,
        };
        match r.kind {
            CheckKind::Ready => {
                let Some(t) = self
                    .ready_check
                    .as_mut()
                    .filter(|t| t.in_flight.map(|f| f.0) == Some(r.seq))
                else {
                    return out;
                };
                t.in_flight = None;
                t.due = Some(now + t.interval);
                self.last_ready_check = Some(last);
                if r.ok {
                    self.ready_check = None;
                    self.become_ready(ReadyBy::Check, &mut out);
                }
            }
            CheckKind::Health => {
                let Some(h) = self
                    .health
                    .as_mut()
                    .filter(|h| h.timer.in_flight.map(|f| f.0) == Some(r.seq))
                else {
                    return out;
                };
                h.timer.in_flight = None;
                h.timer.due = Some(now + h.timer.interval);
                h.last = Some(last);
                self.health_outcome(r.ok, &r.summary, now, &mut out);
            }
        }
        out
    }

    /// Time passed: run what is due at `now`.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if let Some((time, Some(d))) = self.watchdog {
            if d <= now {
                self.done = true;
                out.push(Decision::Restart(RestartWhy::Watchdog { after: time }));
                return out;
            }
        }
        if self.online.is_none() && self.listen_deadline.is_some_and(|d| d <= now) {
            self.listen_deadline = None;
            let ms = self.cfg.listen_timeout.as_millis();
            if self.cfg.replacement {
                self.done = true;
                out.push(Decision::ReplacementFailed);
                return out;
            }
            // pm2: online anyway at a first start; pmi says so and keeps waiting for the real
            // signal, which makes the instance ready for its dependents when it comes.
            out.push(Decision::Warn(format!("not ready after listen_timeout ({ms} ms); online, but not ready for dependents until it is")));
            self.online = Some(ReadyBy::Timeout);
            out.push(Decision::Online {
                by: ReadyBy::Timeout,
            });
        }
        if let Some(t) = self.ready_check.as_mut() {
            if let Some(d) = due(t, now, &mut self.seq, CheckKind::Ready, &mut out) {
                // No result in time: a failed ready check, tried again after the interval.
                self.last_ready_check = Some(no_result(d));
            }
        }
        let mut lost = None;
        if let Some(h) = self.health.as_mut() {
            lost = due(
                &mut h.timer,
                now,
                &mut self.seq,
                CheckKind::Health,
                &mut out,
            );
            if let Some(d) = lost {
                h.last = Some(no_result(d));
            }
        }
        if lost.is_some() {
            self.health_outcome(false, "no result within the timeout", now, &mut out);
        }
        out
    }

    fn ready_from(&mut self, src: Source, by: ReadyBy) -> Vec<Decision> {
        let mut out = Vec::new();
        if !self.done && self.cfg.source == src {
            self.become_ready(by, &mut out);
        }
        out
    }

    fn become_ready(&mut self, by: ReadyBy, out: &mut Vec<Decision>) {
        if self.is_ready() {
            return;
        }
        self.online = Some(by);
        self.listen_deadline = None;
        out.push(Decision::Online { by });
    }

    fn health_outcome(&mut self, ok: bool, summary: &str, now: Instant, out: &mut Vec<Decision>) {
        let Some(h) = self.health.as_mut() else {
            return;
        };
        if ok {
            h.failures = 0;
            h.status = Health::Healthy;
            // A pass ends the start period (Docker's rule).
            h.grace_until = now;
            return;
        }
        if now < h.grace_until && h.status == Health::Starting {
            return; // within start_period: does not count
        }
        h.failures += 1;
        if h.failures < h.retries {
            h.status = Health::Failing;
            return;
        }
        h.status = Health::Unhealthy;
        self.done = true;
        out.push(Decision::Restart(RestartWhy::Unhealthy {
            failures: h.failures,
            last: summary.to_string(),
        }));
    }
}

/// Requests the check when it is due, or gives up on one in flight past its grace (returns how
/// long it was waited for).
fn due(
    t: &mut Timer,
    now: Instant,
    seq: &mut u64,
    kind: CheckKind,
    out: &mut Vec<Decision>,
) -> Option<Duration> {
    if let Some((_, give_up)) = t.in_flight {
        if give_up <= now {
            t.in_flight = None;
            t.due = Some(now + t.interval);
            return Some(t.timeout + RESULT_GRACE);
        }
        return None;
    }
    if t.due.is_some_and(|d| d <= now) {
        *seq += 1;
        t.due = None;
        t.in_flight = Some((*seq, now + t.timeout + RESULT_GRACE));
        out.push(Decision::RunCheck {
            kind,
            seq: *seq,
            timeout: t.timeout,
        });
    }
    None
}

fn no_result(waited: Duration) -> LastCheck {
    LastCheck {
        ok: false,
        summary: "no result within the timeout".into(),
        output: String::new(),
        took_ms: waited.as_millis() as u64,
    }
}

#[cfg(test)]
#[path = "readiness_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "readiness_loop_tests.rs"]
mod loop_tests;
