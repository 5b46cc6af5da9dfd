//! Issue 3's features, black-box with real processes (pmi as PID 1 unless only the config loader is
//! involved): file watching, max_memory_restart, log files, uid/gid, filter_env, `--only`,
//! ecosystem.config.js, JSON as pm2 reads it, `instances: max`, increment_var/port, pid_file.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Lines recorded so far by `record-start FILE`.
fn count(sb: &Sandbox, file: &str) -> usize {
    sb.lines(file).len()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes a file in the sandbox (its directory created) with fresh content: one file change.
fn touch(sb: &Sandbox, name: &str) {
    let p = sb.path(name);
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).expect("create dir");
    }
    fs::write(&p, format!("{}\n", now_ms())).expect("touch");
}

/// Parses `pmi check --json` output, failing with pmi's output when it is not a success.
fn check_json(ran: &Ran) -> Value {
    assert_eq!(ran.code, 0, "pmi check failed: {ran:?}");
    serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e}): {}", ran.stdout))
}

/// `pmi check --json FILE`, plain.
fn check(sb: &Sandbox, file: &Path) -> Value {
    check_json(&sb.run_pmi([Path::new("check"), Path::new("--json"), file]))
}

/// The `apps` of a `check --json` document, by name.
fn apps_by_name(doc: &Value) -> BTreeMap<String, Value> {
    doc["apps"]
        .as_array()
        .expect("apps array")
        .iter()
        .map(|a| (a["name"].as_str().expect("name").to_string(), a.clone()))
        .collect()
}

/// An app that writes its environment to `env-<name>-<instance>` and exits 0, never restarted.
fn env_app(sb: &Sandbox, name: &str) -> App {
    App::new(
        name,
        &[
            "env",
            &sb.p(&format!("env-{name}-%{{NODE_APP_INSTANCE}}")),
            "exit",
            "0",
        ],
    )
    .set("autorestart", "false")
}

/// The environment instance `i` of an `env_app` wrote.
fn env_of(sb: &Sandbox, name: &str, i: u32) -> BTreeMap<String, String> {
    let env = sb.env_map(&format!("env-{name}-{i}"));
    assert!(!env.is_empty(), "{name}:{i} wrote no environment");
    env
}

/// How many instances of an `env_app` ran.
fn instances_run(sb: &Sandbox, name: &str) -> usize {
    let prefix = format!("env-{name}-");
    fs::read_dir(sb.dir())
        .expect("read sandbox")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

/// Runs pmi until it exits by itself, which must be with 0.
fn run_to_exit_0(launch: Launch) {
    let ran = launch.run();
    assert_eq!(ran.code, 0, "pmi exit code: {ran:?}");
}

// ---------------------------------------------------------------------------------------------
// watch
// ---------------------------------------------------------------------------------------------

/// Starts, as PID 1, an app with cwd `w/` that records each start in `starts` (outside `w/`) and
/// its environment in `env-<restart_time>`, with these watch fields.
fn start_watched(sb: &Sandbox, fields: &[(&str, &str)]) -> Pmi {
    sb.mkdir("w/src");
    let mut app = App::new(
        "watched",
        &[
            "env",
            &sb.p("env-%{restart_time}"),
            "record-start",
            &sb.p("starts"),
        ],
    )
    .set("cwd", &q(&sb.p("w")));
    for (k, v) in fields {
        app = app.set(k, v);
    }
    let mut pmi = sb.start_apps(&[app], &[]);
    pmi.wait_for("first start", wait_time(), || count(sb, "starts") >= 1);
    pmi
}

/// Changes `file` (every `every`, as the watcher may still be setting up) until the app has
/// started `n` times; then waits until the starts settle (no restart for `quiet`).
fn poke_until_started(pmi: &mut Pmi, sb: &Sandbox, file: &str, n: usize, every: Duration) {
    let mut last: Option<Instant> = None;
    pmi.wait_for(
        &format!("start {n} after changing {file}"),
        wait_time(),
        || {
            if count(sb, "starts") >= n {
                return true;
            }
            if last.is_none_or(|t| t.elapsed() > every) {
                touch(sb, file);
                last = Some(Instant::now());
            }
            false
        },
    );
    settle(pmi, sb, every);
}

/// Waits until the number of starts has not changed for `quiet`; returns it.
fn settle(pmi: &mut Pmi, sb: &Sandbox, quiet: Duration) -> usize {
    let mut seen = count(sb, "starts");
    let mut since = Instant::now();
    pmi.wait_for("restarts to settle", wait_time(), || {
        let c = count(sb, "starts");
        if c != seen {
            seen = c;
            since = Instant::now();
        }
        since.elapsed() >= quiet
    });
    seen
}

/// Changes each of `files` and checks that none restarts the app; then changes `trigger` and
/// checks that exactly one restart follows.
fn assert_ignored_then_trigger(pmi: &mut Pmi, sb: &Sandbox, files: &[&str], trigger: &str) {
    let before = count(sb, "starts");
    for f in files {
        touch(sb, f);
    }
    pmi.assert_holds(
        &format!("no restart after changing ignored {files:?}"),
        Duration::from_millis(800),
        || count(sb, "starts") == before,
    );
    touch(sb, trigger);
    pmi.wait_for(
        &format!("restart after changing {trigger}"),
        wait_time(),
        || count(sb, "starts") > before,
    );
    pmi.assert_holds(
        "exactly one restart for one change",
        Duration::from_millis(600),
        || count(sb, "starts") == before + 1,
    );
}

#[test]
fn watch_true_restarts_on_a_change_with_restart_time_incremented() {
    let sb = Sandbox::new();
    let mut pmi = start_watched(&sb, &[("watch", "true")]);
    poke_until_started(&mut pmi, &sb, "w/app.js", 2, Duration::from_secs(1));
    let pids: Vec<String> = sb
        .lines("starts")
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect();
    assert_ne!(pids[0], pids[1], "a new process after the change: {pids:?}");
    assert_eq!(
        sb.env_map("env-1").get("restart_time").map(String::as_str),
        Some("1"),
        "the restarted instance's restart_time"
    );
}

#[test]
fn watch_ignore_watch_paths_do_not_restart() {
    let sb = Sandbox::new();
    let mut pmi = start_watched(
        &sb,
        &[("watch", "true"), ("ignore_watch", "[ignored, \"*.tmp\"]")],
    );
    poke_until_started(&mut pmi, &sb, "w/app.js", 2, Duration::from_secs(1));
    assert_ignored_then_trigger(
        &mut pmi,
        &sb,
        &["w/ignored/a.js", "w/ignored/deep/b.js", "w/src/x.tmp"],
        "w/src/real.js",
    );
}

#[test]
fn watch_ignores_node_modules_and_dot_files_by_default() {
    let sb = Sandbox::new();
    let mut pmi = start_watched(&sb, &[("watch", "true")]);
    poke_until_started(&mut pmi, &sb, "w/app.js", 2, Duration::from_secs(1));
    assert_ignored_then_trigger(
        &mut pmi,
        &sb,
        &[
            "w/node_modules/pkg/index.js",
            "w/src/node_modules/x.js",
            "w/.env",
            "w/.git/HEAD",
        ],
        "w/app.js",
    );
}

#[test]
fn watch_paths_watch_only_those_paths() {
    let sb = Sandbox::new();
    let mut pmi = start_watched(&sb, &[("watch", "[src]")]);
    poke_until_started(&mut pmi, &sb, "w/src/a.js", 2, Duration::from_secs(1));
    assert_ignored_then_trigger(&mut pmi, &sb, &["w/top.js"], "w/src/b.js");
}

#[test]
fn watch_delay_debounces_a_burst_into_one_restart() {
    let sb = Sandbox::new();
    let delay_ms = 1500;
    let mut pmi = start_watched(
        &sb,
        &[("watch", "true"), ("watch_delay", &delay_ms.to_string())],
    );
    poke_until_started(&mut pmi, &sb, "w/app.js", 2, Duration::from_secs(3));
    let before = count(&sb, "starts");
    let burst_start = now_ms();
    // Five changes 150 ms apart: each gap is longer than pmi's minimum debounce (100 ms), the
    // whole burst shorter than watch_delay.
    for i in 0..5 {
        touch(&sb, &format!("w/burst-{i}.js"));
        std::thread::sleep(Duration::from_millis(150));
    }
    pmi.wait_for("restart after the burst", wait_time(), || {
        count(&sb, "starts") > before
    });
    pmi.assert_holds(
        "one restart for the whole burst",
        Duration::from_millis(delay_ms + 500),
        || count(&sb, "starts") == before + 1,
    );
    let restarted = *sb.start_times("starts").last().expect("a start");
    assert!(
        restarted >= burst_start + delay_ms - 100,
        "restarted {} ms after the first change, watch_delay is {delay_ms}",
        restarted - burst_start
    );
}

// ---------------------------------------------------------------------------------------------
// max_memory_restart
// ---------------------------------------------------------------------------------------------

#[test]
fn max_memory_restart_restarts_only_the_app_over_its_limit() {
    let sb = Sandbox::new();
    let apps = [
        App::new(
            "big",
            &["record-start", &sb.p("big-starts"), "grow-mem", "80", "5"],
        )
        .set("max_memory_restart", "30M"),
        App::new("small", &["record-start", &sb.p("small-starts")])
            .set("max_memory_restart", "30M"),
        // The leader stays small; its child (same process group) grows.
        App::new(
            "group",
            &[
                "bg",
                "grow-mem",
                "80",
                "5",
                "::",
                "record-start",
                &sb.p("group-starts"),
            ],
        )
        .set("max_memory_restart", "30M")
        .set("kill_timeout", "300"),
    ];
    let file = sb.write(
        "apps.yaml",
        &format!("{}pmi:\n  memory_check_interval: 200ms\n", apps_yaml(&apps)),
    );
    let settings = &check(&sb, &file)["settings"];
    assert_eq!(settings["memory_check_interval"], 200, "{settings}");
    let mut pmi = sb.pid1([&file]).start();
    // The default interval is 30 s: a restart within 10 s shows the setting is used.
    pmi.wait_for("big restarted over its limit", secs(10.0), || {
        count(&sb, "big-starts") >= 2
    });
    pmi.wait_for(
        "group restarted: the limit is on the whole process group's RSS",
        secs(10.0),
        || count(&sb, "group-starts") >= 2,
    );
    assert_eq!(
        count(&sb, "small-starts"),
        1,
        "the small app (RSS ~1 MB, limit 30M) must not be restarted"
    );
    assert!(
        pmi.stderr().contains("max_memory_restart"),
        "pmi says why it restarted: {}",
        pmi.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// Log files
// ---------------------------------------------------------------------------------------------

/// An app of `instances` instances that prints `<name>-out` and `<name>-err` once and exits.
fn printer(name: &str) -> App {
    App::new(
        name,
        &[
            "echo",
            &format!("{name}-out"),
            "echo-err",
            &format!("{name}-err"),
        ],
    )
    .set("autorestart", "false")
}

fn sorted_lines(sb: &Sandbox, file: &str) -> Vec<String> {
    let mut l = sb.lines(file);
    l.sort();
    l
}

#[test]
fn log_files_resolve_against_cwd_with_pm2_suffix_rules() {
    let sb = Sandbox::new();
    sb.mkdir("app");
    let apps = [
        printer("multi")
            .set("instances", "2")
            .set("cwd", "app")
            .set("out_file", "logs/out.log")
            .set("error_file", "logs/err.log")
            .set("log_file", "logs/all.log"),
        printer("merged")
            .set("instances", "2")
            .set("merge_logs", "true")
            .set("out_file", "merged/out.log"),
        printer("combined")
            .set("instances", "2")
            .set("combine_logs", "true")
            .set("error_file", "combined/err.log"),
        printer("single").set("out_file", "single/out.log"),
    ];
    run_to_exit_0(sb.apps_launch(true, &apps, &[]));
    // multi: pm_ids 0 and 1, `-<pm_id>` before `.log`, directories created, relative to cwd.
    for id in 0..2 {
        assert_eq!(sb.lines(&format!("app/logs/out-{id}.log")), ["multi-out"]);
        assert_eq!(sb.lines(&format!("app/logs/err-{id}.log")), ["multi-err"]);
        assert_eq!(
            sorted_lines(&sb, &format!("app/logs/all-{id}.log")),
            ["multi-err", "multi-out"],
            "log_file gets both streams"
        );
    }
    for f in ["app/logs/out.log", "app/logs/err.log", "app/logs/all.log"] {
        assert!(!sb.exists(f), "{f}: without merge_logs only suffixed files");
    }
    assert_eq!(sb.lines("merged/out.log"), ["merged-out", "merged-out"]);
    assert_eq!(
        sb.lines("combined/err.log"),
        ["combined-err", "combined-err"]
    );
    assert_eq!(
        sb.lines("single/out.log"),
        ["single-out"],
        "fork app: no suffix"
    );
    let files: Vec<String> = ["merged", "combined", "single"]
        .iter()
        .flat_map(|d| fs::read_dir(sb.path(d)).expect("dir").flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.len(),
        3,
        "merged logs make no per-instance files: {files:?}"
    );
}

/// `s` has the shape of `pat`, where `0` is any digit and every other character is itself.
fn has_shape(s: &str, pat: &str) -> bool {
    s.len() == pat.len()
        && s.chars()
            .zip(pat.chars())
            .all(|(c, p)| if p == '0' { c.is_ascii_digit() } else { c == p })
}

#[test]
fn log_date_format_json_files_and_dev_null() {
    let sb = Sandbox::new();
    sb.mkdir("nul");
    let apps = [
        printer("dated")
            .set("log_date_format", &q("YYYY-MM-DD HH:mm:ss"))
            .set("out_file", "dated.log"),
        printer("jsonl")
            .set("log_type", "json")
            .set("out_file", "json-out.log")
            .set("error_file", "json-err.log"),
        printer("devnull")
            .set("cwd", "nul")
            .set("out_file", "/dev/null")
            .set("error_file", "NULL"),
    ];
    run_to_exit_0(sb.apps_launch(true, &apps, &[]));

    let dated = sb.lines("dated.log");
    assert_eq!(dated.len(), 1, "{dated:?}");
    let (date, msg) = dated[0].split_at(dated[0].len().min(19));
    assert!(
        has_shape(date, "0000-00-00 00:00:00") && msg == ": dated-out",
        "want `YYYY-MM-DD HH:mm:ss: dated-out`, got {:?}",
        dated[0]
    );

    for (file, stream, text) in [
        ("json-out.log", "out", "jsonl-out\n"),
        ("json-err.log", "err", "jsonl-err\n"),
    ] {
        let lines = sb.lines(file);
        assert_eq!(lines.len(), 1, "{file}: {lines:?}");
        let v: Value = serde_json::from_str(&lines[0])
            .unwrap_or_else(|e| panic!("{file}: not a JSON line ({e}): {:?}", lines[0]));
        assert_eq!(v["message"], text, "{v}");
        assert_eq!(v["type"], stream, "{v}");
        assert_eq!(v["app_name"], "jsonl", "{v}");
        assert!(v["process_id"].is_u64(), "{v}");
        assert!(v["timestamp"].is_string(), "{v}");
    }

    let left: Vec<_> = fs::read_dir(sb.path("nul"))
        .expect("dir")
        .flatten()
        .collect();
    assert!(
        left.is_empty(),
        "/dev/null and NULL write no file: {left:?}"
    );
    let meta = fs::metadata("/dev/null").expect("/dev/null");
    assert!(meta.file_type().is_char_device(), "/dev/null is intact");
}

// ---------------------------------------------------------------------------------------------
// uid / gid
// ---------------------------------------------------------------------------------------------

/// `(uid, gid, home)` of a user in /etc/passwd.
fn passwd(user: &str) -> (u32, u32, String) {
    let text = fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let f: Vec<&str> = text
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[0] == user)
        .unwrap_or_else(|| panic!("no user {user} in /etc/passwd"));
    (
        f[2].parse().expect("uid"),
        f[3].parse().expect("gid"),
        f[5].to_string(),
    )
}

/// Groups of /etc/group that list `user` as a member, sorted; and the gid of group `name`.
fn group_info(user: &str, name: &str) -> (Vec<u32>, u32) {
    let text = fs::read_to_string("/etc/group").expect("/etc/group");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(':').collect()).collect();
    let mut member: Vec<u32> = rows
        .iter()
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == user))
        .filter_map(|f| f[2].parse().ok())
        .collect();
    member.sort_unstable();
    let gid = rows
        .iter()
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
        .unwrap_or_else(|| panic!("no group {name} in /etc/group"));
    (member, gid)
}

/// The numbers of a `Uid:`/`Gid:`/`Groups:` line written by `pmi-testkit ids`.
fn ids_line(sb: &Sandbox, file: &str, key: &str) -> Vec<u32> {
    let lines = sb.lines(file);
    let line = lines
        .iter()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {file}: {lines:?}"));
    let mut v: Vec<u32> = line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().expect("id"))
        .collect();
    if key == "Groups:" {
        v.sort_unstable();
    }
    v
}

#[test]
fn uid_and_user_run_apps_as_nobody_with_its_groups_and_home() {
    let sb = Sandbox::new();
    // nobody must reach its cwd and write its files there.
    fs::set_permissions(sb.dir(), fs::Permissions::from_mode(0o711)).expect("chmod");
    let shared = sb.mkdir("u");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
    let (uid, gid, home) = passwd("nobody");
    let (groups, daemon_gid) = group_info("nobody", "daemon");
    let ids_app = |name: &str| {
        App::new(
            name,
            &[
                "ids",
                &sb.p(&format!("u/ids-{name}")),
                "env",
                &sb.p(&format!("u/env-{name}")),
                "exit",
                "0",
            ],
        )
        .set("cwd", "u")
        .set("autorestart", "false")
    };
    let apps = [
        ids_app("by-uid").set("uid", "nobody"),
        ids_app("by-user")
            .set("user", "nobody")
            .set("gid", "daemon"),
    ];
    run_to_exit_0(sb.apps_launch(true, &apps, &[]));
    for (name, want_gid) in [("by-uid", gid), ("by-user", daemon_gid)] {
        let f = format!("u/ids-{name}");
        assert_eq!(
            ids_line(&sb, &f, "Uid:"),
            [uid; 4],
            "{name}: real, effective, saved, fs uid"
        );
        assert_eq!(ids_line(&sb, &f, "Gid:"), [want_gid; 4], "{name}: gids");
        assert_eq!(
            ids_line(&sb, &f, "Groups:"),
            groups,
            "{name}: supplementary groups are nobody's in /etc/group (none of root's)"
        );
        let env = sb.env_map(&format!("u/env-{name}"));
        assert_eq!(
            env.get("HOME"),
            Some(&home),
            "{name}: HOME from /etc/passwd"
        );
    }
}

#[test]
fn unknown_user_is_a_located_config_error() {
    let sb = Sandbox::new();
    let apps =
        [App::new("ghost", &["record-start", &sb.p("starts")]).set("user", "no-such-user-pmi")];
    let file = sb.apps(&apps);
    let ran = sb.run_pmi([&file]);
    assert_eq!(ran.code, 2, "{ran:?}");
    // apps_yaml writes the first extra field on line 6.
    let locs = locations(&ran.stderr, "apps.yaml");
    assert!(
        locs.iter()
            .any(|(line, _, text)| *line == 6 && text.contains("no-such-user-pmi")),
        "want an error at apps.yaml:6 naming the user: {}",
        ran.stderr
    );
    assert!(!sb.exists("starts"), "nothing may start");
}

// ---------------------------------------------------------------------------------------------
// filter_env
// ---------------------------------------------------------------------------------------------

/// Variable names of a live process's environment.
fn environ_keys(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).expect("environ");
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            s.split_once('=').map(|(k, _)| k.to_string())
        })
        .collect()
}

#[test]
fn filter_env_true_string_and_list() {
    let sb = Sandbox::new();
    let apps = [
        env_app(&sb, "all")
            .set("filter_env", "true")
            .set("env", "{APP_VAR: mine}"),
        env_app(&sb, "key").set("filter_env", "PMI_FT_DROP"),
        env_app(&sb, "list").set("filter_env", "[SECRET, TOKEN]"),
        // Keeps pmi (and so its environment) alive until the test has read it.
        App::new("keeper", &["wait-file", &sb.p("release")]).set("autorestart", "false"),
    ];
    let mut pmi = sb
        .apps_launch(true, &apps, &[])
        .env("PMI_FT_DROP", "1")
        .env("PMI_FT_DROP_MORE", "1")
        .env("MY_SECRET_X", "1")
        .env("API_TOKEN_Y", "1")
        .env("PMI_FT_KEEP", "1")
        .start();
    sb.wait_files(&mut pmi, &["env-all-0", "env-key-0", "env-list-0"]);
    let inherited = environ_keys(pmi.pid);
    sb.write("release", "");
    assert_eq!(pmi.wait_exit(wait_time()), 0);

    let all = env_of(&sb, "all", 0);
    assert!(
        inherited.iter().any(|k| k == "PMI_FT_KEEP"),
        "{inherited:?}"
    );
    let leaked: Vec<&String> = inherited.iter().filter(|k| all.contains_key(*k)).collect();
    assert!(
        leaked.is_empty(),
        "filter_env: true leaks {leaked:?}: {all:?}"
    );
    assert_eq!(
        all.get("APP_VAR").map(String::as_str),
        Some("mine"),
        "app env kept"
    );
    for k in ["name", "pm_id", "NODE_APP_INSTANCE", "restart_time"] {
        assert!(all.contains_key(k), "injected {k} kept: {all:?}");
    }

    let key = env_of(&sb, "key", 0);
    assert!(!key.contains_key("PMI_FT_DROP"), "exactly that key dropped");
    for k in ["PMI_FT_DROP_MORE", "PMI_FT_KEEP", "MY_SECRET_X", "PATH"] {
        assert!(
            key.contains_key(k),
            "string filter drops only its key; {k} missing"
        );
    }

    let list = env_of(&sb, "list", 0);
    for k in ["MY_SECRET_X", "API_TOKEN_Y"] {
        assert!(!list.contains_key(k), "list filter drops {k}");
    }
    for k in ["PMI_FT_DROP", "PMI_FT_KEEP", "PATH"] {
        assert!(list.contains_key(k), "list filter keeps {k}");
    }
}

// ---------------------------------------------------------------------------------------------
// --only
// ---------------------------------------------------------------------------------------------

#[test]
fn only_starts_the_named_apps() {
    let sb = Sandbox::new();
    let apps = [env_app(&sb, "a"), env_app(&sb, "b"), env_app(&sb, "c")];
    run_to_exit_0(sb.apps_launch(true, &apps, &["--only", "a,b"]));
    assert_eq!(instances_run(&sb, "a"), 1);
    assert_eq!(instances_run(&sb, "b"), 1);
    assert_eq!(instances_run(&sb, "c"), 0, "c is not in --only");
}

#[test]
fn only_with_an_unknown_name_is_exit_2_naming_the_apps() {
    let sb = Sandbox::new();
    let apps = [env_app(&sb, "a"), env_app(&sb, "b"), env_app(&sb, "c")];
    let ran = sb.apps_launch(false, &apps, &["--only", "a,nosuch"]).run();
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("nosuch"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("a, b, c"),
        "names the apps: {}",
        ran.stderr
    );
    assert_eq!(instances_run(&sb, "a"), 0, "nothing may start");
}

// ---------------------------------------------------------------------------------------------
// ecosystem.config.js, JSON as JavaScript
// ---------------------------------------------------------------------------------------------

/// An ecosystem file whose app `js-app` writes its environment and exits; `head` goes first.
fn ecosystem(sb: &Sandbox, head: &str) -> std::path::PathBuf {
    let js = format!(
        r#"{head}
const base = {{ interpreter: 'none', autorestart: false }};
module.exports = {{
  apps: [{{
    ...base,
    name: 'js-app',
    script: {tk},
    args: ['env', {env}, 'exit', '0'],
    instances: 1 + 1,
    exec_mode: 'fork',
    env: {{ FROM_JS: ['x', 'y'].join('-') }},
  }}],
}};
"#,
        tk = serde_json::to_string(&testkit()).expect("json"),
        env = serde_json::to_string(&sb.p("env-js-app-%{NODE_APP_INSTANCE}")).expect("json"),
    );
    sb.write("ecosystem.config.js", &js)
}

#[test]
fn ecosystem_js_runs_through_node() {
    let sb = Sandbox::new();
    let file = ecosystem(&sb, "");
    run_to_exit_0(sb.pid1([&file]));
    assert_eq!(instances_run(&sb, "js-app"), 2, "instances: 1 + 1");
    for i in 0..2 {
        let env = env_of(&sb, "js-app", i);
        assert_eq!(env.get("FROM_JS").map(String::as_str), Some("x-y"));
        assert_eq!(env.get("instances").map(String::as_str), Some("2"));
    }
}

#[test]
fn ecosystem_js_with_a_missing_module_is_exit_2_naming_it() {
    let sb = Sandbox::new();
    let file = ecosystem(&sb, "require('dotenv').config();");
    let ran = sb.run_pmi([&file]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains("dotenv") && ran.stderr.contains("npm install"),
        "names the module and the npm install: {}",
        ran.stderr
    );
    assert_eq!(instances_run(&sb, "js-app"), 0, "nothing may start");
}

#[test]
fn convert_js_gives_yaml_that_resolves_to_the_same_apps() {
    let sb = Sandbox::new();
    let js = ecosystem(&sb, "");
    let conv = sb.run_pmi([Path::new("convert"), &js]);
    assert_eq!(conv.code, 0, "{conv:?}");
    let yaml = sb.write("converted.yaml", &conv.stdout);
    let plain = sb.run_pmi([Path::new("check"), &yaml]);
    assert_eq!(
        plain.code, 0,
        "pmi check accepts the converted file: {plain:?}"
    );
    let mut from_js = check(&sb, &js);
    let mut from_yaml = check(&sb, &yaml);
    assert_eq!(from_js["apps"][0]["instances"], 2);
    for doc in [&mut from_js, &mut from_yaml] {
        doc.as_object_mut().expect("object").remove("file");
    }
    assert_eq!(
        from_js, from_yaml,
        "converted YAML:\n{}\nresolves differently",
        conv.stdout
    );
}

#[test]
fn json_with_comments_trailing_commas_single_quotes_and_bare_keys_loads() {
    let sb = Sandbox::new();
    let text = format!(
        r#"// pm2 evaluates JSON as JavaScript
{{
  /* block comment */
  apps: [
    {{
      name: 'loose',            // single quotes
      "script": {tk},
      interpreter: 'none',
      args: ['exit', '0',],
      env: {{ KEY: 'v', "OTHER": 2, }},
    }},
  ],
}}
"#,
        tk = serde_json::to_string(&testkit()).expect("json")
    );
    let file = sb.write("apps.json", &text);
    let doc = check(&sb, &file);
    let app = &apps_by_name(&doc)["loose"];
    assert_eq!(app["args"], serde_json::json!(["exit", "0"]));
    assert_eq!(app["env"], serde_json::json!({"KEY": "v", "OTHER": "2"}));
}

// ---------------------------------------------------------------------------------------------
// instances: max / -1, increment_var, port, pid_file
// ---------------------------------------------------------------------------------------------

#[test]
fn instances_max_and_minus_1_count_usable_cpus() {
    let sb = Sandbox::new();
    let apps = [
        env_app(&sb, "max").set("instances", "max"),
        env_app(&sb, "minus1").set("instances", "-1"),
        env_app(&sb, "zero").set("instances", "0"),
    ];
    let file = sb.apps(&apps);
    let check_args = [Path::new("check"), Path::new("--json"), &file];

    let pinned = apps_by_name(&check_json(&sb.plain(check_args).cpus(&[0]).run()));
    assert_eq!(pinned["max"]["instances"], 1, "max under taskset -c 0");
    assert_eq!(pinned["minus1"]["instances"], 1, "-1 under taskset -c 0");
    assert_eq!(pinned["zero"]["instances"], 1, "0 under taskset -c 0");

    let free = apps_by_name(&check_json(&sb.plain(check_args).run()));
    let n = free["max"]["instances"].as_u64().expect("instances");
    assert!(n >= 1);
    assert_eq!(
        free["minus1"]["instances"].as_u64(),
        Some((n - 1).max(1)),
        "-1 is one less than max ({n}), at least 1"
    );
    assert_eq!(free["zero"]["instances"].as_u64(), Some(n), "0 is max");

    run_to_exit_0(sb.pid1([&file]).cpus(&[0]));
    assert_eq!(
        instances_run(&sb, "max"),
        1,
        "max started under taskset -c 0"
    );
    assert_eq!(
        instances_run(&sb, "minus1"),
        1,
        "-1 started under taskset -c 0"
    );
}

#[test]
fn increment_var_and_port_per_instance() {
    let sb = Sandbox::new();
    let apps = [
        env_app(&sb, "inc")
            .set("instances", "3")
            .set("env", "{BASE_ID: 10}")
            .set("increment_var", "BASE_ID"),
        env_app(&sb, "zero")
            .set("instances", "2")
            .set("increment_var", "COUNTER"),
        env_app(&sb, "fixed")
            .set("instances", "2")
            .set("port", "9000"),
        // pm2 sets env.PORT from `port` before it increments increment_var.
        env_app(&sb, "web")
            .set("instances", "3")
            .set("port", "8000")
            .set("increment_var", "PORT"),
    ];
    run_to_exit_0(sb.apps_launch(true, &apps, &[]));
    let var = |app: &str, i: u32, k: &str| env_of(&sb, app, i).get(k).cloned();
    for i in 0..3 {
        assert_eq!(
            var("inc", i, "BASE_ID"),
            Some((10 + i).to_string()),
            "inc:{i}"
        );
    }
    for i in 0..2 {
        assert_eq!(var("zero", i, "COUNTER"), Some(i.to_string()), "zero:{i}");
        assert_eq!(
            var("fixed", i, "PORT").as_deref(),
            Some("9000"),
            "fixed:{i}"
        );
    }
    for i in 0..3 {
        assert_eq!(
            var("web", i, "PORT"),
            Some((8000 + i).to_string()),
            "web:{i}: port 8000 with increment_var PORT (pm2: 8000, 8001, 8002)"
        );
    }
}

/// The pid in a pid file, if it has one.
fn pid_in(sb: &Sandbox, file: &str) -> Option<String> {
    let t = sb.read(file);
    let t = t.trim();
    (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit())).then(|| t.to_string())
}

/// Pids recorded by `record-start FILE`, in order.
fn started_pids(sb: &Sandbox, file: &str) -> Vec<String> {
    sb.lines(file)
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

#[test]
fn pid_file_holds_the_pid_of_the_current_run() {
    let sb = Sandbox::new();
    // Crashes after 300 ms: each run must be written.
    let apps = [App::new(
        "pidded",
        &["record-start", &sb.p("starts"), "exit-after", "300", "1"],
    )
    .set("pid_file", "pidded.pid")];
    let mut pmi = sb.start_apps(&apps, &[]);
    // pm2 would write pidded-0.pid; pmi writes the path as given for a single instance.
    let name = || {
        ["pidded.pid", "pidded-0.pid"]
            .into_iter()
            .find(|f| sb.exists(f))
    };
    for run in 1..=2 {
        pmi.wait_for(&format!("run {run} in the pid file"), wait_time(), || {
            let pids = started_pids(&sb, "starts");
            pids.len() >= run
                && name().and_then(|f| pid_in(&sb, f)).as_ref() == Some(&pids[run - 1])
        });
    }
}

#[test]
fn pid_file_of_several_instances_gets_pm_id_suffixes() {
    let sb = Sandbox::new();
    let apps = [
        App::new("multi", &["record-start", &sb.p("starts-%{pm_id}")])
            .set("instances", "2")
            .set("pid_file", "multi.pid"),
    ];
    let mut pmi = sb.start_apps(&apps, &[]);
    sb.wait_files(&mut pmi, &["starts-0", "starts-1"]);
    for id in 0..2 {
        let want = started_pids(&sb, &format!("starts-{id}"));
        let f = format!("multi-{id}.pid");
        pmi.wait_for(
            &format!("{f} holding instance {id}'s pid {want:?} (as pm2: `-<pm_id>.pid`)"),
            secs(5.0),
            || pid_in(&sb, &f).as_ref() == want.first(),
        );
    }
}

#[test]
fn pid_file_is_removed_when_the_instance_exits() {
    let sb = Sandbox::new();
    let apps = [App::new("brief", &["wait-file", &sb.p("release")])
        .set("autorestart", "false")
        .set("pid_file", "brief.pid")];
    let mut pmi = sb.start_apps(&apps, &[]);
    let written = || {
        ["brief.pid", "brief-0.pid"]
            .into_iter()
            .find(|f| pid_in(&sb, f).is_some())
    };
    pmi.wait_for("the pid file", wait_time(), || written().is_some());
    sb.write("release", "");
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    assert_eq!(
        written(),
        None,
        "pm2 unlinks the pid file when the process exits (God.handleExit); a stale pid \
         file names a pid that may be reused"
    );
}
