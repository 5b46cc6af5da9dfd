//! Table tests: scripts of (time, event) with the decisions each step must produce.

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[derive(Debug, Clone)]
enum Ev {
    Tick,
    ReadyMsg,
    Listening,
    Notify(&'static str),
    /// The result of the last requested check of this kind.
    Result(CheckKind, bool),
    /// A result with a seq nobody asked for.
    Stale(CheckKind),
}

/// Short names for expected decisions.
#[derive(Debug, Clone, PartialEq)]
enum D {
    Online(ReadyBy),
    Run(CheckKind),
    Unhealthy(u32),
    Watchdog,
    Trigger,
    ReplacementFailed,
    Warn,
}

fn short(d: &Decision) -> D {
    match d {
        Decision::Online { by } => D::Online(*by),
        Decision::RunCheck { kind, .. } => D::Run(*kind),
        Decision::Restart(RestartWhy::Unhealthy { failures, .. }) => D::Unhealthy(*failures),
        Decision::Restart(RestartWhy::Watchdog { .. }) => D::Watchdog,
        Decision::Restart(RestartWhy::WatchdogTrigger) => D::Trigger,
        Decision::ReplacementFailed => D::ReplacementFailed,
        Decision::Warn(_) => D::Warn,
    }
}

fn cfg(source: Source) -> Config {
    Config {
        source,
        listen_timeout: MS(3000),
        replacement: false,
        health: None,
        watchdog: None,
    }
}

fn health(interval: u64, retries: u32, start_period: u64) -> Option<HealthTiming> {
    Some(HealthTiming {
        interval: MS(interval),
        timeout: MS(100),
        retries,
        start_period: MS(start_period),
    })
}

/// Runs the script; each step's decisions must equal the expected ones. Returns the tracker.
fn run(c: Config, initial: &[D], steps: &[(u64, Ev, &[D])]) -> Tracker {
    let t0 = Instant::now();
    let (mut t, out) = Tracker::new(c, t0);
    assert_eq!(
        out.iter().map(short).collect::<Vec<_>>(),
        initial,
        "at spawn"
    );
    let mut last_seq = [0u64; 2];
    let slot = |k: CheckKind| (k == CheckKind::Health) as usize;
    for (i, (at, ev, want)) in steps.iter().enumerate() {
        let now = t0 + MS(*at);
        let out = match ev {
            Ev::Tick => t.on_tick(now),
            Ev::ReadyMsg => t.on_ready_message(),
            Ev::Listening => t.on_listening(),
            Ev::Notify(text) => {
                let mut n = Notice::default();
                n.add_datagram(text.as_bytes());
                t.on_notify(&n, now)
            }
            Ev::Result(k, _) | Ev::Stale(k) => {
                let ok = matches!(ev, Ev::Result(_, true));
                let stale = matches!(ev, Ev::Stale(_));
                let r = CheckResult {
                    kind: *k,
                    seq: if stale { 999 } else { last_seq[slot(*k)] },
                    ok,
                    summary: if ok { "HTTP 200" } else { "HTTP 500" }.into(),
                    output: String::new(),
                    took: MS(3),
                };
                t.on_check_result(&r, now)
            }
        };
        for d in &out {
            if let Decision::RunCheck { kind, seq, .. } = d {
                last_seq[slot(*kind)] = *seq;
            }
        }
        assert_eq!(
            out.iter().map(short).collect::<Vec<_>>(),
            *want,
            "step {i} at {at} ms: {ev:?}"
        );
    }
    t
}

#[test]
fn spawned_is_online_at_once_and_sleeps_without_timers() {
    let t = run(
        cfg(Source::Spawned),
        &[D::Online(ReadyBy::Spawned)],
        &[(5000, Ev::Tick, &[])],
    );
    assert!(t.is_ready());
    assert_eq!(t.next_deadline(), None, "nothing timed: the loop sleeps");
}

#[test]
fn message_listening_and_notify_sources() {
    let t = run(
        cfg(Source::Message),
        &[],
        &[
            (10, Ev::Listening, &[]),
            (20, Ev::Notify("READY=1"), &[]),
            (30, Ev::ReadyMsg, &[D::Online(ReadyBy::Message)]),
            (40, Ev::ReadyMsg, &[]),
        ],
    );
    assert!(t.is_ready());
    let t = run(
        cfg(Source::Listening),
        &[],
        &[
            (10, Ev::ReadyMsg, &[]),
            (20, Ev::Listening, &[D::Online(ReadyBy::Listening)]),
        ],
    );
    assert!(t.is_ready());
    let t = run(
        cfg(Source::Notify),
        &[],
        &[
            (10, Ev::Notify("STATUS=loading"), &[]),
            (
                20,
                Ev::Notify("READY=1\nSTATUS=serving"),
                &[D::Online(ReadyBy::Notify)],
            ),
        ],
    );
    assert_eq!(t.status_text(), Some("serving"));
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn listen_timeout_at_first_start_is_online_but_not_ready_for_dependents() {
    let t = run(
        cfg(Source::Notify),
        &[],
        &[
            (2999, Ev::Tick, &[]),
            (3000, Ev::Tick, &[D::Warn, D::Online(ReadyBy::Timeout)]),
            (3001, Ev::Tick, &[]),
        ],
    );
    assert!(t.is_online() && !t.is_ready());
    // The real signal still comes: now ready for dependents.
    let mut t = t;
    let n = Notice {
        ready: true,
        ..Notice::default()
    };
    assert_eq!(
        t.on_notify(&n, Instant::now()),
        [Decision::Online {
            by: ReadyBy::Notify
        }]
    );
    assert!(t.is_ready());
}

#[test]
fn a_replacement_not_ready_in_time_fails() {
    let mut c = cfg(Source::Message);
    c.replacement = true;
    let t = run(
        c,
        &[],
        &[
            (3000, Ev::Tick, &[D::ReplacementFailed]),
            (3100, Ev::ReadyMsg, &[]),
        ],
    );
    assert!(t.is_done() && !t.is_online());
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn ready_check_runs_on_its_interval_until_it_passes() {
    let c = cfg(Source::Check {
        interval: MS(500),
        timeout: MS(200),
    });
    let t = run(
        c,
        &[],
        &[
            (499, Ev::Tick, &[]),
            (500, Ev::Tick, &[D::Run(CheckKind::Ready)]),
            (600, Ev::Tick, &[]), // in flight: not requested twice
            (650, Ev::Result(CheckKind::Ready, false), &[]),
            (1100, Ev::Tick, &[]),
            (1150, Ev::Tick, &[D::Run(CheckKind::Ready)]),
            (1160, Ev::Stale(CheckKind::Ready), &[]),
            (
                1170,
                Ev::Result(CheckKind::Ready, true),
                &[D::Online(ReadyBy::Check)],
            ),
            (9000, Ev::Tick, &[]),
        ],
    );
    assert!(t.is_ready());
    assert_eq!(t.last_check(CheckKind::Ready).map(|l| l.ok), Some(true));
    assert_eq!(t.next_deadline(), None, "no ready checks once ready");
}

#[test]
fn a_check_that_never_reports_counts_as_failed() {
    let mut c = cfg(Source::Spawned);
    c.health = health(1000, 1, 0);
    let t = run(
        c,
        &[D::Online(ReadyBy::Spawned)],
        &[
            (1000, Ev::Tick, &[D::Run(CheckKind::Health)]),
            // timeout 100 ms + RESULT_GRACE
            (1000 + 100 + 2000, Ev::Tick, &[D::Unhealthy(1)]),
        ],
    );
    assert_eq!(
        t.last_check(CheckKind::Health).unwrap().summary,
        "no result within the timeout"
    );
}

#[test]
fn health_failures_in_a_row_restart_and_a_pass_resets() {
    let mut c = cfg(Source::Spawned);
    c.health = health(1000, 3, 0);
    let t0 = [D::Online(ReadyBy::Spawned)];
    let h = CheckKind::Health;
    let t = run(
        c,
        &t0,
        &[
            (1000, Ev::Tick, &[D::Run(h)]),
            (1010, Ev::Result(h, false), &[]),
            (2010, Ev::Tick, &[D::Run(h)]),
            (2020, Ev::Result(h, false), &[]),
            (3020, Ev::Tick, &[D::Run(h)]),
            (3030, Ev::Result(h, true), &[]),
            (4030, Ev::Tick, &[D::Run(h)]),
            (4040, Ev::Result(h, false), &[]),
            (5040, Ev::Tick, &[D::Run(h)]),
            (5050, Ev::Result(h, false), &[]),
            (6050, Ev::Tick, &[D::Run(h)]),
            (6060, Ev::Result(h, false), &[D::Unhealthy(3)]),
            (7060, Ev::Tick, &[]),
        ],
    );
    assert_eq!(t.health(), Some(Health::Unhealthy));
    assert!(t.is_done());
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn failures_within_start_period_do_not_count() {
    let mut c = cfg(Source::Spawned);
    c.health = health(1000, 1, 2500);
    let h = CheckKind::Health;
    let t = run(
        c,
        &[D::Online(ReadyBy::Spawned)],
        &[
            (1000, Ev::Tick, &[D::Run(h)]),
            (1010, Ev::Result(h, false), &[]),
            (2010, Ev::Tick, &[D::Run(h)]),
            (2020, Ev::Result(h, false), &[]),
            (3020, Ev::Tick, &[D::Run(h)]),
            (3030, Ev::Result(h, false), &[D::Unhealthy(1)]),
        ],
    );
    assert!(t.is_done());
    // A pass inside the start period ends it: the next failure counts.
    let mut c = cfg(Source::Spawned);
    c.health = health(1000, 1, 60_000);
    run(
        c,
        &[D::Online(ReadyBy::Spawned)],
        &[
            (1000, Ev::Tick, &[D::Run(h)]),
            (1010, Ev::Result(h, true), &[]),
            (2010, Ev::Tick, &[D::Run(h)]),
            (2020, Ev::Result(h, false), &[D::Unhealthy(1)]),
        ],
    );
}

#[test]
fn watchdog_starts_at_ready_and_each_keepalive_extends_it() {
    let mut c = cfg(Source::Notify);
    c.watchdog = Some(MS(1000));
    let t = run(
        c,
        &[],
        &[
            (5000, Ev::Tick, &[D::Warn, D::Online(ReadyBy::Timeout)]), // not armed before READY=1
            (5100, Ev::Notify("READY=1"), &[D::Online(ReadyBy::Notify)]),
            (6000, Ev::Notify("WATCHDOG=1"), &[]),
            (6990, Ev::Notify("WATCHDOG=1"), &[]),
            (6999, Ev::Tick, &[]),
            (7989, Ev::Tick, &[]),
            (7990, Ev::Tick, &[D::Watchdog]),
            (9000, Ev::Notify("WATCHDOG=1"), &[]),
        ],
    );
    assert!(t.is_done());
}

#[test]
fn watchdog_trigger_and_usec_change() {
    let mut c = cfg(Source::Spawned);
    c.watchdog = Some(MS(1000));
    let online = [D::Online(ReadyBy::Spawned)];
    run(
        c,
        &online,
        &[(10, Ev::Notify("WATCHDOG=trigger"), &[D::Trigger])],
    );
    let t = run(
        c,
        &online,
        &[
            (0, Ev::Notify("WATCHDOG=1"), &[]),
            (10, Ev::Notify("WATCHDOG_USEC=5000000"), &[]),
            (4000, Ev::Tick, &[]),
            (5010, Ev::Tick, &[D::Watchdog]),
        ],
    );
    assert!(t.is_done());
    // Absurd values are clamped: 1 µs would otherwise restart the app in a loop.
    let t = run(
        c,
        &online,
        &[
            (0, Ev::Notify("WATCHDOG=1\nWATCHDOG_USEC=1"), &[]),
            (99, Ev::Tick, &[]),
            (100, Ev::Tick, &[D::Watchdog]),
        ],
    );
    assert!(t.is_done());
}

#[test]
fn next_deadline_is_the_earliest_timer() {
    let mut c = cfg(Source::Check {
        interval: MS(700),
        timeout: MS(100),
    });
    c.health = health(400, 3, 0);
    c.listen_timeout = MS(2000);
    let t0 = Instant::now();
    let (mut t, _) = Tracker::new(c, t0);
    assert_eq!(t.next_deadline(), Some(t0 + MS(400)));
    let out = t.on_tick(t0 + MS(400));
    assert_eq!(
        out.iter().map(short).collect::<Vec<_>>(),
        [D::Run(CheckKind::Health)]
    );
    // Health in flight until 400+100+grace; the ready check at 700 is next.
    assert_eq!(t.next_deadline(), Some(t0 + MS(700)));
    assert!(
        t.on_tick(t0 + MS(650)).is_empty(),
        "a wake-up before any deadline does nothing"
    );
}
