//! Apps-file mode (SPEC §2 validation, §3 running apps, §4 shutdown and auto-exit), pmi as PID 1.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

fn env_app(sb: &Sandbox) -> App {
    App::new(
        "envapp",
        &["env", &sb.p("env-%{NODE_APP_INSTANCE}"), "exit", "0"],
    )
    .set("instances", "3")
    .set("autorestart", "false")
    .set("env", "{FOO: bar, SHARED: base}")
    .set("env_production", "{SHARED: prod, PRODONLY: \"1\"}")
}

#[test]
fn instances_get_pm2_variables_and_env_blocks() {
    let sb = Sandbox::new();
    let mut pmi = sb
        .apps_launch(true, &[env_app(&sb)], &["--env", "production"])
        .env("PMI_TEST_OUTER", "inherited")
        .start();
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    let mut ids = Vec::new();
    for i in 0..3 {
        let env = sb.env_map(&format!("env-{i}"));
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("instance {i}: no {k} in {env:?}"))
        };
        assert_eq!(get("NODE_APP_INSTANCE"), i.to_string());
        assert_eq!(get("name"), "envapp");
        assert_eq!(get("instances"), "3");
        assert_eq!(get("restart_time"), "0");
        assert_eq!(get("FOO"), "bar", "env block");
        assert_eq!(get("SHARED"), "prod", "env_production overrides env");
        assert_eq!(get("PRODONLY"), "1");
        assert_eq!(get("PMI_TEST_OUTER"), "inherited", "pmi's own environment");
        assert!(env.contains_key("exec_mode"), "exec_mode injected: {env:?}");
        ids.push(get("pm_id"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct pm_id per instance: {ids:?}");
}

#[test]
fn env_production_is_unused_without_env_flag() {
    let sb = Sandbox::new();
    let mut pmi = sb.start_apps(&[env_app(&sb)], &[]);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    let env = sb.env_map("env-0");
    assert_eq!(env.get("SHARED").map(String::as_str), Some("base"));
    assert!(!env.contains_key("PRODONLY"), "{env:?}");
}

#[test]
fn all_apps_succeeding_auto_exit_0() {
    let sb = Sandbox::new();
    let apps = [
        App::new("a", &["exit", "0"]).set("autorestart", "false"),
        App::new("b", &["exit-after", "200", "0"]).set("autorestart", "false"),
    ];
    let mut pmi = sb.start_apps(&apps, &[]);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

#[test]
fn app_exit_code_without_autorestart_is_pmi_exit_code() {
    let sb = Sandbox::new();
    let apps = [
        App::new("ok", &["exit", "0"]).set("autorestart", "false"),
        App::new("fails", &["exit-after", "300", "3"]).set("autorestart", "false"),
    ];
    let mut pmi = sb.start_apps(&apps, &[]);
    assert_eq!(pmi.wait_exit(wait_time()), 3);
}

#[test]
fn app_killed_by_signal_gives_128_plus_n() {
    let sb = Sandbox::new();
    let apps = [App::new("dies", &["kill-self", "USR2"]).set("autorestart", "false")];
    let mut pmi = sb.start_apps(&apps, &[]);
    assert_eq!(pmi.wait_exit(wait_time()), 128 + libc::SIGUSR2);
}

#[test]
fn crash_loop_runs_max_restarts_times_then_errors_with_its_code() {
    let sb = Sandbox::new();
    let apps = [App::new(
        "crashy",
        &[
            "env",
            &sb.p("env-%{restart_time}"),
            "record-start",
            &sb.p("starts"),
            "exit",
            "7",
        ],
    )
    .set("max_restarts", "3")];
    let mut pmi = sb.start_apps(&apps, &[]);
    assert_eq!(pmi.wait_exit(wait_time()), 7);
    assert_eq!(
        sb.lines("starts").len(),
        3,
        "runs: {:?}",
        sb.lines("starts")
    );
    for r in 0..3 {
        let env = sb.env_map(&format!("env-{r}"));
        assert_eq!(
            env.get("restart_time").map(String::as_str),
            Some(r.to_string().as_str())
        );
    }
}

/// Gaps in milliseconds between consecutive recorded starts.
fn gaps(starts: &[u64]) -> Vec<f64> {
    starts.windows(2).map(|w| (w[1] - w[0]) as f64).collect()
}

#[test]
fn restart_delay_is_respected() {
    let sb = Sandbox::new();
    let apps = [
        App::new("delayed", &["record-start", &sb.p("starts"), "exit", "1"])
            .set("max_restarts", "3")
            .set("restart_delay", "400"),
    ];
    let mut pmi = sb.start_apps(&apps, &[]);
    assert_eq!(pmi.wait_exit(wait_time()), 1);
    let starts = sb.start_times("starts");
    assert_eq!(starts.len(), 3, "{starts:?}");
    for g in gaps(&starts) {
        assert!(
            g >= 399.0,
            "restart after {g} ms, restart_delay is 400: {starts:?}"
        );
    }
}

#[test]
fn exp_backoff_restart_delay_grows_by_about_1_5() {
    let sb = Sandbox::new();
    let apps = [
        App::new("backoff", &["record-start", &sb.p("starts"), "exit", "1"])
            .set("max_restarts", "100")
            .set("exp_backoff_restart_delay", "200"),
    ];
    let mut pmi = sb.start_apps(&apps, &[]);
    pmi.wait_for("6 starts", secs(30.0), || sb.lines("starts").len() >= 6);
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    let starts = sb.start_times("starts");
    let g = gaps(&starts[..6]);
    assert!(g[0] >= 180.0, "first backoff {} ms < 200: {g:?}", g[0]);
    for w in g.windows(2) {
        let ratio = w[1] / w[0];
        assert!(
            (1.15..=2.2).contains(&ratio),
            "backoff ratio {ratio:.2} not ~1.5: gaps {g:?}"
        );
    }
    let overall = g[4] / g[0];
    assert!(
        (2.5..=8.0).contains(&overall),
        "4 steps of x1.5 should give ~5x, got {overall:.2}: gaps {g:?}"
    );
}

#[test]
fn stop_exit_codes_are_not_restarted() {
    let sb = Sandbox::new();
    let apps = [
        App::new("stopper", &["record-start", &sb.p("starts"), "exit", "5"])
            .set("stop_exit_codes", "[5]"),
    ];
    let mut pmi = sb.start_apps(&apps, &[]);
    // Not restarted. A code listed in stop_exit_codes is a deliberate, clean end, so auto-exit
    // counts it as a success (pmi's reading of SPEC §4; the spec only says "success").
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    assert_eq!(sb.lines("starts").len(), 1, "{:?}", sb.lines("starts"));
}

/// Starts the apps, waits for their sigecho files, sends `sig` to pmi; returns the exit code and
/// how long pmi took to exit.
fn shutdown(sb: &Sandbox, apps: &[App], ready: &[&str], sig: i32) -> (i32, Duration) {
    let mut pmi = sb.start_apps(apps, &[]);
    sb.wait_files(&mut pmi, ready);
    let t = Instant::now();
    pmi.send(sig);
    let code = pmi.wait_exit(wait_time());
    (code, t.elapsed())
}

fn graceful_shutdown_by(sig: i32) {
    let sb = Sandbox::new();
    let apps = [
        App::new(
            "dflt",
            &[
                "sigecho",
                &sb.p("dflt-%{NODE_APP_INSTANCE}"),
                "--exit-on",
                "INT",
            ],
        )
        .set("instances", "2"),
        App::new("custom", &["sigecho", &sb.p("custom"), "--exit-on", "USR1"])
            .set("kill_signal", "SIGUSR1"),
    ];
    let (code, _) = shutdown(&sb, &apps, &["dflt-0", "dflt-1", "custom"], sig);
    assert_eq!(code, 0, "every app ended within its kill_timeout");
    assert_eq!(
        recorded(&sb, "dflt-0"),
        ["INT"],
        "default kill_signal is SIGINT"
    );
    assert_eq!(recorded(&sb, "dflt-1"), ["INT"]);
    assert_eq!(recorded(&sb, "custom"), ["USR1"], "per-app kill_signal");
}

#[test]
fn sigterm_stops_each_app_with_its_kill_signal_and_exits_0() {
    graceful_shutdown_by(libc::SIGTERM);
}

#[test]
fn sigint_stops_each_app_with_its_kill_signal_and_exits_0() {
    graceful_shutdown_by(libc::SIGINT);
}

#[test]
fn a_stopped_leaders_group_is_killed_at_once_and_the_stop_is_clean() {
    // The app's second process (same group) would need 300 ms after SIGINT; the leader exits at
    // once. SPEC §3 "Stop": once the instance's own process has exited, what is left of its
    // group is SIGKILLed at once, and the stop is clean (exit 0): the leader made it in time.
    let sb = Sandbox::new();
    let apps = [App::new(
        "workers",
        &[
            "sigecho",
            &sb.p("leader"),
            "--exit-on",
            "INT",
            "--group-child",
            &sb.p("worker"),
            "--child-exit-delay",
            "300",
        ],
    )];
    let (code, _) = shutdown(&sb, &apps, &["leader", "worker"], libc::SIGTERM);
    assert_eq!(code, 0);
    assert_eq!(sb.lines("leader"), ["ready", "INT", "bye"]);
    // It may or may not have recorded the signals before the SIGKILL (a loaded machine decides),
    // but it never reaches its `bye`, 300 ms later.
    let worker = sb.lines("worker");
    assert_eq!(worker.first().map(String::as_str), Some("ready"));
    assert!(
        !worker.iter().any(|l| l == "bye"),
        "the group's other process is killed once the leader is gone, not given 300 ms: {worker:?}"
    );
}

#[test]
fn app_ignoring_its_kill_signal_is_killed_after_kill_timeout_and_pmi_exits_1() {
    let sb = Sandbox::new();
    let apps = [
        App::new("stubborn", &["sigecho", &sb.p("stubborn")]).set("kill_timeout", "500"),
        App::new("polite", &["sigecho", &sb.p("polite"), "--exit-on", "INT"]),
    ];
    let (code, took) = shutdown(&sb, &apps, &["stubborn", "polite"], libc::SIGTERM);
    assert_eq!(code, 1, "an app had to be SIGKILLed");
    assert!(took >= Duration::from_millis(450), "exited after {took:?}");
    // SIGCONT follows the kill signal (a frozen app could not handle it otherwise).
    assert_eq!(recorded(&sb, "stubborn"), ["INT", "CONT"]);
    assert_eq!(recorded(&sb, "polite"), ["INT"]);
}

#[test]
fn cron_restart_restarts_running_apps_and_starts_exited_ones() {
    let sb = Sandbox::new();
    let every2s = q("*/2 * * * * *");
    let apps = [
        App::new(
            "running",
            &[
                "record-start",
                &sb.p("running-starts"),
                "sigecho",
                &sb.p("running-signals"),
                "--exit-on",
                "INT",
            ],
        )
        .set("cron_restart", &every2s),
        App::new(
            "oneshot",
            &["record-start", &sb.p("oneshot-starts"), "exit", "0"],
        )
        .set("autorestart", "false")
        .set("cron_restart", &every2s),
    ];
    let mut pmi = sb.start_apps(&apps, &[]);
    pmi.wait_for("two cron restarts and two cron starts", secs(20.0), || {
        sb.lines("running-starts").len() >= 3 && sb.lines("oneshot-starts").len() >= 3
    });
    assert!(
        recorded(&sb, "running-signals")
            .iter()
            .filter(|s| *s == "INT")
            .count()
            >= 2,
        "cron restarts are graceful (kill_signal): {:?}",
        sb.lines("running-signals")
    );
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

/// Many apps exit in the same instant (one SIGCHLD may stand for all of them): every status must
/// still be seen, or pmi never auto-exits or exits with the wrong code.
#[test]
fn simultaneous_exits_never_lose_an_exit_status() {
    const N: usize = 12;
    for round in 0..5 {
        let sb = Sandbox::new();
        let go = sb.p("go");
        let code = |i: usize| -> i32 {
            if round == 0 {
                20 + i as i32 // all distinct, all failures
            } else if i == (round * 5) % N {
                40 + round as i32 // only one failure
            } else {
                0
            }
        };
        let apps: Vec<App> = (0..N)
            .map(|i| {
                App::new(
                    &format!("app{i}"),
                    &[
                        "touch-ready",
                        &sb.p(&format!("ready{i}")),
                        "wait-file",
                        &go,
                        "exit",
                        &code(i).to_string(),
                    ],
                )
                .set("autorestart", "false")
            })
            .collect();
        let mut pmi = sb.start_apps(&apps, &[]);
        let ready: Vec<String> = (0..N).map(|i| format!("ready{i}")).collect();
        let ready: Vec<&str> = ready.iter().map(String::as_str).collect();
        sb.wait_files(&mut pmi, &ready);
        sb.write("go", "");
        let got = pmi.wait_exit(wait_time());
        if round == 0 {
            assert!(
                (20..20 + N as i32).contains(&got),
                "round 0: pmi exited {got}, not one of the apps' codes 20..{}",
                20 + N
            );
        } else {
            assert_eq!(got, 40 + round as i32, "round {round}");
        }
    }
}

#[test]
fn apps_get_only_fds_0_to_2_clean_signals_own_group_and_pmi_start_dir() {
    let sb = Sandbox::new();
    let apps = [App::new("conf", &["sigconf"]).set("autorestart", "false")];
    let mut pmi = sb
        .apps_launch(true, &apps, &[])
        .pass_fd(9)
        .block(&[libc::SIGTERM, libc::SIGUSR1, libc::SIGTTIN])
        .ignore(&[libc::SIGINT, libc::SIGHUP, libc::SIGTTOU])
        .start();
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    let out = pmi.stdout();
    let field = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {out:?}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("fds:"), "0 1 2", "only stdio (not pmi's fd 9): {out}");
    assert_eq!(
        u64::from_str_radix(&field("SigBlk:"), 16).unwrap(),
        0,
        "{out}"
    );
    // Signals 32-34 are libc-reserved (see single_mode.rs); everything else must be default.
    let ign = u64::from_str_radix(&field("SigIgn:"), 16).unwrap();
    assert_eq!(ign & !(0b111 << 31), 0, "{out}");
    assert_eq!(field("cwd:"), sb.dir().to_string_lossy(), "default cwd");
    let ids = field("ids:");
    let kv: BTreeMap<&str, &str> = ids
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .collect();
    assert_eq!(
        kv["pid"], kv["pgid"],
        "app leads its own process group: {ids}"
    );
}

#[test]
fn invalid_apps_file_is_rejected_with_locations_before_anything_starts() {
    let sb = Sandbox::new();
    let tk = q(&testkit());
    let ready = q(&sb.p("started"));
    let yaml = format!(
        "apps:
  - name: good
    script: {tk}
    interpreter: none
    args: [touch-ready, {ready}]
  - name: bad-instances
    script: {tk}
    interpreter: none
    instances: lots
  - name: no-script
    interpreter: none
  - name: bad-mode
    script: {tk}
    interpreter: none
    exec_mode: warp
  - name: missing-file
    script: {missing}
    interpreter: none
",
        missing = q(&sb.p("does-not-exist"))
    );
    let file = sb.write("apps.yaml", &yaml);
    let mut pmi = sb.pid1([&file]).start();
    assert_eq!(pmi.wait_exit(wait_time()), 2);
    let err = pmi.stderr();
    assert!(!sb.exists("started"), "nothing may start: {err}");
    let locs = locations(&err, "apps.yaml");
    // (app, field, lines where the problem may be reported)
    let expect = [
        ("bad-instances", "instances", 9..=9),
        ("no-script", "script", 10..=11),
        ("bad-mode", "exec_mode", 15..=15),
        ("missing-file", "script", 16..=17),
    ];
    for (app, field, lines) in expect {
        assert!(
            locs.iter().any(|(l, c, text)| lines.contains(l)
                && *c >= 1
                && text.contains(app)
                && text.contains(field)),
            "no `apps.yaml:LINE:COL` diagnostic on line {lines:?} naming app {app} and field \
             {field}:\n{err}"
        );
    }
    // The same file through `pmi check`.
    let check = sb.run_pmi([std::ffi::OsStr::new("check"), file.as_os_str()]);
    assert_eq!(check.code, 2, "{check:?}");
}

#[test]
fn check_exit_codes() {
    let sb = Sandbox::new();
    let good = sb.apps(&[App::new("web", &["sleep"]).set("instances", "2")]);
    let r = sb.run_pmi([std::ffi::OsStr::new("check"), good.as_os_str()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("web"), "check prints the apps: {r:?}");

    let typo = sb.write(
        "typo.yaml",
        &apps_yaml(&[App::new("web", &["sleep"]).set("instnces", "2")]),
    );
    let r = sb.run_pmi([std::ffi::OsStr::new("check"), typo.as_os_str()]);
    assert_eq!(r.code, 0, "an unknown key is a warning: {r:?}");
    assert!(
        r.stderr.contains("instnces") && r.stderr.contains("web"),
        "the warning names the key and the app: {r:?}"
    );
    assert!(
        r.stderr.contains("instances"),
        "suggests the nearest key: {r:?}"
    );
    let r = sb.run_pmi([
        std::ffi::OsStr::new("check"),
        std::ffi::OsStr::new("--strict"),
        typo.as_os_str(),
    ]);
    assert_eq!(r.code, 2, "--strict makes warnings errors: {r:?}");

    let bad = sb.write(
        "bad.yaml",
        &apps_yaml(&[App::new("web", &["sleep"]).set("instances", "lots")]),
    );
    let r = sb.run_pmi([std::ffi::OsStr::new("check"), bad.as_os_str()]);
    assert_eq!(r.code, 2, "{r:?}");

    let r = sb.run_pmi(["check", "/nonexistent/apps.yaml"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    let file = sb.apps(&[App::new("a", &["exit", "0"]).set("autorestart", "false")]);
    let f = file.to_string_lossy().into_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--no-such-flag", &f],
        vec!["--log-format", "fancy", &f],
        vec![&f, "--", "true"],
        vec!["run"],
        vec!["--"],
        vec!["/nonexistent/apps.yaml"],
    ];
    for args in cases {
        let r = sb.run_pmi(&args);
        assert_eq!(r.code, 2, "pmi {args:?}: {r:?}");
        assert!(!r.stderr.trim().is_empty(), "pmi {args:?} says why");
    }
}
