//! Table tests for the readers of `ready`, `health`, `watchdog` and `depends_on`, from real YAML.

use std::path::Path;
use std::time::Duration;

use super::super::diag::Diags;
use super::super::tree::Entry;
use super::super::yaml;
use super::*;

/// The entry `key` of the YAML map `text`.
fn entry(text: &str, key: &str) -> Entry {
    let p = yaml::parse(text).unwrap();
    p.root.get(key).cloned().unwrap()
}

fn diags() -> Diags {
    Diags::new(Path::new("apps.yaml"))
}

fn one_error(d: &Diags) -> String {
    assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    d.errors[0].to_string()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn ready_sources() {
    let mut d = diags();
    assert_eq!(ready(&mut d, "a", None, false), Some(ReadySpec::Spawned));
    assert_eq!(ready(&mut d, "a", None, true), Some(ReadySpec::Message));
    let e = entry("ready: notify", "ready");
    assert_eq!(ready(&mut d, "a", Some(&e), false), Some(ReadySpec::Notify));
    let e = entry("ready: message", "ready");
    assert_eq!(ready(&mut d, "a", Some(&e), true), Some(ReadySpec::Message));
    let e = entry(
        "ready: {http: 'http://127.0.0.1:8080/ready?x=1', interval: 250ms}",
        "ready",
    );
    let Some(ReadySpec::Check(c)) = ready(&mut d, "a", Some(&e), false) else {
        panic!()
    };
    assert_eq!(c.interval, ms(250));
    assert_eq!(c.timeout, READY_TIMEOUT);
    let Probe::Http(u) = c.probe else { panic!() };
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("127.0.0.1", 8080, "/ready?x=1")
    );
    assert_eq!(u.host_header, "127.0.0.1:8080");
    let e = entry("ready: {tcp: 5432, timeout: 2s}", "ready");
    let Some(ReadySpec::Check(c)) = ready(&mut d, "a", Some(&e), false) else {
        panic!()
    };
    assert_eq!(c.probe, Probe::Tcp("127.0.0.1:5432".into()));
    assert_eq!(c.timeout, ms(2000));
    assert!(d.errors.is_empty(), "{:?}", d.errors);
}

#[test]
fn ready_errors_are_located() {
    let cases = [
        ("ready: soon", "1:8", "not a readiness source"),
        ("ready: 3", "1:8", "must be notify"),
        (
            "ready: {http: 'https://x/'}",
            "1:15",
            "https checks are not supported",
        ),
        (
            "ready: {http: 'ftp://x/'}",
            "1:15",
            "must start with http://",
        ),
        ("ready: {http: 'http://:80/'}", "1:15", "no host"),
        ("ready: {http: 'http://h:99999/'}", "1:15", "port"),
        ("ready: {http: 'http://h/a b'}", "1:15", "spaces"),
        ("ready: {tcp: 'nohost'}", "1:14", "not an address"),
        ("ready: {tcp: 'h:0'}", "1:14", "not an address"),
        ("ready: {interval: 1s}", "1:8", "needs one of"),
        (
            "ready: {http: 'http://h/', tcp: 1}",
            "1:28",
            "one of http, tcp or exec",
        ),
        (
            "ready: {http: 'http://h/', intervall: 1s}",
            "1:28",
            "did you mean 'interval'",
        ),
        ("ready: {exec: []}", "1:15", "empty"),
        ("ready: {exec: {a: 1}}", "1:15", "not a command"),
    ];
    for (text, at, what) in cases {
        let mut d = diags();
        let e = entry(text, "ready");
        assert_eq!(ready(&mut d, "web", Some(&e), false), None, "{text}");
        let m = one_error(&d);
        assert!(m.contains(&format!("apps.yaml:{at}:")), "{text}: {m}");
        assert!(m.contains("app 'web'"), "{text}: {m}");
        assert!(m.contains(what), "{text}: {m}");
    }
    let mut d = diags();
    let e = entry("ready: notify", "ready");
    assert_eq!(ready(&mut d, "web", Some(&e), true), None);
    assert!(one_error(&d).contains("keep one"));
}

#[test]
fn health_defaults_and_forms() {
    let mut d = diags();
    let e = entry("health: {exec: 'test -f /tmp/ok'}", "health");
    let h = health(&mut d, "w", Some(&e)).unwrap().unwrap();
    assert_eq!(
        h.check.probe,
        Probe::Exec(vec!["sh".into(), "-c".into(), "test -f /tmp/ok".into()])
    );
    assert_eq!(
        (h.check.interval, h.check.timeout, h.retries, h.start_period),
        (HEALTH_INTERVAL, HEALTH_TIMEOUT, 3, Duration::ZERO)
    );
    let e = entry("health: {exec: [test, -f, /tmp/ok], interval: 2s, timeout: 500ms, retries: 5, start_period: 1m}", "health");
    let h = health(&mut d, "w", Some(&e)).unwrap().unwrap();
    assert_eq!(
        h.check.probe,
        Probe::Exec(vec!["test".into(), "-f".into(), "/tmp/ok".into()])
    );
    assert_eq!(
        (h.check.interval, h.check.timeout, h.retries, h.start_period),
        (ms(2000), ms(500), 5, ms(60_000))
    );
    let e = entry("health: {http: 'http://[::1]:81/h'}", "health");
    let h = health(&mut d, "w", Some(&e)).unwrap().unwrap();
    let Probe::Http(u) = h.check.probe else {
        panic!()
    };
    assert_eq!(
        (u.host.as_str(), u.host_header.as_str()),
        ("::1", "[::1]:81")
    );
    assert_eq!(health(&mut d, "w", None), Ok(None));
    assert!(d.errors.is_empty(), "{:?}", d.errors);
}

#[test]
fn bad_durations_and_counts() {
    let cases = [
        ("health: {tcp: 80, interval: 0}", "too short"),
        (
            "health: {tcp: 80, interval: 30}",
            "a bare number is milliseconds",
        ),
        ("health: {tcp: 80, interval: -1s}", "not a duration"),
        ("health: {tcp: 80, interval: .nan}", "not a duration"),
        ("health: {tcp: 80, interval: 25h}", "longer than 24 h"),
        ("health: {tcp: 80, timeout: 1e15}", "too long"),
        ("health: {tcp: 80, timeout: 0}", "too short"),
        ("health: {tcp: 80, retries: 0}", "from 1 to 1000"),
        ("health: {tcp: 80, retries: 1.5}", "not a count"),
        ("health: {tcp: 80, start_period: -5}", "not a duration"),
        ("health: 'curl x'", "must be a check object"),
    ];
    for (text, what) in cases {
        let mut d = diags();
        let e = entry(text, "health");
        assert_eq!(health(&mut d, "w", Some(&e)), Err(Reported), "{text}");
        let m = one_error(&d);
        assert!(m.contains(what), "{text}: {m}");
        assert!(m.contains("app 'w' field 'health"), "{text}: {m}");
    }
    for (text, ok) in [
        ("watchdog: 10s", Ok(Some(ms(10_000)))),
        ("watchdog: 0", Err(Reported)),
        ("watchdog: 48h", Err(Reported)),
        ("watchdog: '-1'", Err(Reported)),
    ] {
        let mut d = diags();
        let e = entry(text, "watchdog");
        assert_eq!(watchdog(&mut d, "w", Some(&e)), ok, "{text}");
        assert_eq!(d.errors.len(), usize::from(ok.is_err()), "{text}");
    }
}

#[test]
fn dependency_forms() {
    let mut d = diags();
    let e = entry(
        "depends_on: [db, {app: migrate, condition: completed}, {app: cache, condition: started}]",
        "depends_on",
    );
    let deps = depends_on(&mut d, "web", Some(&e)).unwrap();
    let got: Vec<(&str, Condition)> = deps
        .iter()
        .map(|(x, _)| (x.app.as_str(), x.condition))
        .collect();
    assert_eq!(
        got,
        [
            ("db", Condition::Ready),
            ("migrate", Condition::Completed),
            ("cache", Condition::Started)
        ]
    );
    assert_eq!(deps[1].1.col, 18);
    let e = entry("depends_on: db", "depends_on");
    assert_eq!(depends_on(&mut d, "web", Some(&e)).unwrap().len(), 1);
    assert!(d.errors.is_empty());
    for (text, what) in [
        (
            "depends_on: [{app: db, condition: healthyish}]",
            "not a condition",
        ),
        ("depends_on: [{ap: db}]", "did you mean 'app'"),
        ("depends_on: [{condition: ready}]", "needs `app: NAME`"),
        ("depends_on: [[db]]", "must be a string"),
    ] {
        let mut d = diags();
        let e = entry(text, "depends_on");
        assert_eq!(depends_on(&mut d, "web", Some(&e)), None, "{text}");
        assert!(one_error(&d).contains(what), "{text}: {:?}", d.errors);
    }
}

/// Apps from a YAML `apps:` list (name + depends_on + autorestart), then the cross check.
fn cross(text: &str) -> Diags {
    let p = yaml::parse(text).unwrap();
    let mut d = diags();
    let apps = p.root.get("apps").unwrap();
    let Value::Seq(items) = &apps.value.value else {
        panic!()
    };
    let mut parsed = Vec::new();
    for it in items {
        let name = it.get("name").unwrap().value.as_str().unwrap().to_string();
        let deps = depends_on(&mut d, &name, it.get("depends_on")).unwrap();
        let auto = it
            .get("autorestart")
            .is_none_or(|e| e.value.value == Value::Bool(true));
        parsed.push((name, it.pos, deps, auto));
    }
    let view: Vec<DepsOf> = parsed
        .iter()
        .map(|(n, p, deps, a)| DepsOf {
            name: n,
            name_pos: *p,
            deps,
            autorestart: *a,
        })
        .collect();
    cross_check_deps(&mut d, &view);
    d
}

#[test]
fn unknown_self_and_cycles() {
    let d = cross("apps:\n- name: a\n  depends_on: [b]\n- name: b\n  depends_on: [c]\n- name: c\n  depends_on: [a]\n- name: x\n  depends_on: [x, nope]\n- name: y\n  depends_on: [z]\n- name: z\n  depends_on: [y]\n");
    let msgs: Vec<String> = d.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("9:16: app 'x' field 'depends_on': an app cannot depend on itself")), "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("9:19: app 'x' field 'depends_on': no app named 'nope'; apps in this file: a, b, c, x, y, z")), "{msgs:#?}");
    assert!(
        msgs.iter().any(
            |m| m.contains("7:16: app 'c' field 'depends_on': dependency cycle: a → b → c → a")
        ),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("13:16: app 'z' field 'depends_on': dependency cycle: y → z → y")),
        "{msgs:#?}"
    );
    assert!(d.warnings.is_empty());
}

#[test]
fn no_cycle_in_a_diamond_and_completed_warns_on_autorestart() {
    let d = cross("apps:\n- name: m\n- name: a\n  depends_on: [{app: m, condition: completed}]\n- name: b\n  depends_on: [m]\n- name: c\n  depends_on: [a, b]\n");
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0]
        .to_string()
        .contains("'m' must complete, but it has autorestart on"));
    let d = cross("apps:\n- name: m\n  autorestart: false\n- name: a\n  depends_on: [{app: m, condition: completed}]\n");
    assert!(d.errors.is_empty() && d.warnings.is_empty());
}

/// The shipped example stack reads without errors, with the conditions and checks it documents.
#[test]
fn the_example_stack_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stack/apps.yaml");
    let p = yaml::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let Value::Seq(items) = &p.root.get("apps").unwrap().value.value else {
        panic!()
    };
    let mut d = diags();
    let mut parsed = Vec::new();
    for it in items {
        let name = it.get("name").unwrap().value.as_str().unwrap().to_string();
        let r = ready(&mut d, &name, it.get("ready"), false).unwrap();
        let h = health(&mut d, &name, it.get("health")).unwrap();
        let w = watchdog(&mut d, &name, it.get("watchdog")).unwrap();
        let deps = depends_on(&mut d, &name, it.get("depends_on")).unwrap();
        let auto = it
            .get("autorestart")
            .is_none_or(|e| e.value.value == Value::Bool(true));
        parsed.push((name, it.pos, deps, auto, r, h, w));
    }
    let view: Vec<DepsOf> = parsed
        .iter()
        .map(|(n, p, deps, a, ..)| DepsOf {
            name: n,
            name_pos: *p,
            deps,
            autorestart: *a,
        })
        .collect();
    cross_check_deps(&mut d, &view);
    assert!(
        d.errors.is_empty() && d.warnings.is_empty(),
        "{:?} {:?}",
        d.errors,
        d.warnings
    );
    let (_, _, web_deps, _, web_ready, web_health, _) = &parsed[1];
    assert_eq!(web_deps[0].0.condition, Condition::Completed);
    assert!(matches!(
        web_ready,
        ReadySpec::Check(CheckSpec {
            probe: Probe::Http(_),
            ..
        })
    ));
    assert!(web_health.is_some());
    let (_, _, worker_deps, _, worker_ready, worker_health, worker_wd) = &parsed[2];
    assert_eq!(worker_deps[0].0.condition, Condition::Ready);
    assert_eq!(*worker_ready, ReadySpec::Notify);
    assert_eq!(*worker_wd, Some(Duration::from_secs(30)));
    let h = worker_health.as_ref().unwrap();
    let Probe::Exec(argv) = &h.check.probe else {
        panic!()
    };
    assert_eq!(argv[..2], ["sh", "-c"]);
    assert!(argv[2].starts_with("python3 -c 'import os"), "{argv:?}");
    assert_eq!((h.retries, h.start_period), (2, Duration::from_secs(5)));
}
