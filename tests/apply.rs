//! Black-box tests of `pmi apply` and `watch_config`: the real pmi as PID 1 of a new PID
//! namespace, the verbs run inside it with `nsenter` (as `docker exec` does), pids compared
//! before and after. Each test waits for conditions with deadlines and kills what it started.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{apps_yaml, secs, App, Pmi, Sandbox};
use serde_json::Value;

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0
        && Command::new("nsenter")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: needs root and nsenter");
    }
    ok
}

/// `pmi ARGS` inside pmi's namespaces, with `dir` as the client's working directory.
fn cli_in(pmi: &Pmi, sb: &Sandbox, dir: &Path, args: &[&str]) -> Output {
    // `cd` inside the namespace: a directory opened outside it (nsenter -w) is unreachable
    // from inside, and getcwd() fails there.
    Command::new("nsenter")
        .args(["-t", &pmi.pid.to_string(), "-p", "-m", "--"])
        .args(["/bin/sh", "-c", "cd \"$0\" && exec \"$@\""])
        .arg(dir)
        .arg(common::pmi_bin())
        .args(args)
        .env("PMI_SOCKET", sb.path("pmi.sock"))
        .stdin(Stdio::null())
        .output()
        .expect("run nsenter")
}

fn cli(pmi: &Pmi, sb: &Sandbox, args: &[&str]) -> Output {
    cli_in(pmi, sb, sb.dir(), args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn status(pmi: &Pmi, sb: &Sandbox) -> Value {
    let o = cli(pmi, sb, &["status", "--json"]);
    assert!(o.status.success(), "status: {o:?}");
    serde_json::from_slice(&o.stdout).expect("status json")
}

/// (name, instance) → (pid, status), in status order; none while pmi is not reachable yet.
fn instances(pmi: &Pmi, sb: &Sandbox) -> Vec<(String, u64, Option<u64>, String)> {
    let o = cli(pmi, sb, &["status", "--json"]);
    if o.status.code() == Some(3) {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&o.stdout).expect("status json");
    v["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or("").to_string(),
                i["instance"].as_u64().unwrap_or(0),
                i["pid"].as_u64(),
                i["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn pid_of(pmi: &Pmi, sb: &Sandbox, name: &str, index: u64) -> Option<u64> {
    instances(pmi, sb)
        .into_iter()
        .find(|i| i.0 == name && i.1 == index)
        .and_then(|i| i.2)
}

fn online(pmi: &Pmi, sb: &Sandbox, name: &str, n: usize) -> bool {
    let v: Vec<_> = instances(pmi, sb)
        .into_iter()
        .filter(|i| i.0 == name)
        .collect();
    v.len() == n && v.iter().all(|i| i.3 == "online")
}

fn names(pmi: &Pmi, sb: &Sandbox) -> Vec<String> {
    let mut v: Vec<String> = instances(pmi, sb).into_iter().map(|i| i.0).collect();
    v.dedup();
    v
}

fn sleeper(name: &str) -> App {
    App::new(name, &["sleep"])
}

fn start(sb: &Sandbox, apps: &[App]) -> Pmi {
    let pmi = sb.start_apps(apps, &["--no-auto-exit"]);
    common::wait_until("every app online", secs(20.0), || {
        let st = instances(&pmi, sb);
        st.len() >= apps.len() && st.iter().all(|i| i.3 == "online")
    });
    pmi
}

#[test]
fn add_remove_change_and_unchanged_in_one_apply() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    let pmi = start(
        &sb,
        &[
            sleeper("keep"),
            sleeper("api"),
            sleeper("old"),
            sleeper("tuned").set("kill_timeout", "1000"),
        ],
    );
    let keep = pid_of(&pmi, &sb, "keep", 0).expect("keep pid");
    let api = pid_of(&pmi, &sb, "api", 0).expect("api pid");
    let tuned = pid_of(&pmi, &sb, "tuned", 0).expect("tuned pid");
    sb.write(
        "apps.yaml",
        &apps_yaml(&[
            sleeper("keep"),
            App::new("api", &["sleep", "3600"]),
            sleeper("tuned").set("kill_timeout", "2500"),
            sleeper("web"),
        ]),
    );
    let o = cli(&pmi, &sb, &["apply"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for line in [
        "removed old",
        "unchanged keep",
        "reloaded api (args changed)",
        "updated tuned (kill_timeout)",
        "added web",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // Answered after the effect: the state is already the new one.
    assert_eq!(names(&pmi, &sb), ["keep", "api", "tuned", "web"]);
    assert_eq!(
        pid_of(&pmi, &sb, "keep", 0),
        Some(keep),
        "unchanged: same pid"
    );
    assert_eq!(
        pid_of(&pmi, &sb, "tuned", 0),
        Some(tuned),
        "in place: same pid"
    );
    let new_api = pid_of(&pmi, &sb, "api", 0).expect("api runs");
    assert_ne!(new_api, api, "reloaded: new pid");
    assert!(online(&pmi, &sb, "web", 1));
    let log = pmi.stderr();
    assert!(log.contains("apply: added web"), "{log}");
    assert!(log.contains("apply: removed old"), "{log}");
    // Applying the same file again changes nothing.
    let o = cli(&pmi, &sb, &["apply"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.matches("unchanged").count(), 4, "{out}");
    assert_eq!(pid_of(&pmi, &sb, "api", 0), Some(new_api));
}

#[test]
fn instances_alone_is_a_scale_that_keeps_the_others() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    let pmi = start(&sb, &[sleeper("w").set("instances", "2")]);
    let w0 = pid_of(&pmi, &sb, "w", 0).expect("w:0");
    let w1 = pid_of(&pmi, &sb, "w", 1).expect("w:1");
    sb.write(
        "apps.yaml",
        &apps_yaml(&[sleeper("w").set("instances", "4")]),
    );
    let o = cli(&pmi, &sb, &["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("scaled w 2 → 4"), "{}", text(&o));
    common::wait_until("4 online", secs(10.0), || online(&pmi, &sb, "w", 4));
    assert_eq!(pid_of(&pmi, &sb, "w", 0), Some(w0));
    assert_eq!(pid_of(&pmi, &sb, "w", 1), Some(w1));
    sb.write(
        "apps.yaml",
        &apps_yaml(&[sleeper("w").set("instances", "1")]),
    );
    let o = cli(&pmi, &sb, &["apply", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(r["changes"][0]["kind"], "scaled");
    assert_eq!(r["changes"][0]["instances"], serde_json::json!([4, 1]));
    // Scaling down removes the highest indexes.
    let left = instances(&pmi, &sb);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!((left[0].1, left[0].2), (0, Some(w0)));
}

#[test]
fn an_invalid_file_changes_nothing_and_dry_run_changes_nothing() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    let pmi = start(&sb, &[sleeper("a"), sleeper("b")]);
    let before = instances(&pmi, &sb);
    // Two problems: both reported, located.
    let bad = format!(
        "{}    instances: lots\n  - name: c\n    script: /nonexistent/x\n",
        apps_yaml(&[sleeper("a")])
    );
    sb.write("apps.yaml", &bad);
    let o = cli(&pmi, &sb, &["apply"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("apps.yaml:6:16"), "located: {out}");
    assert!(out.contains("field 'instances'"), "{out}");
    assert!(out.contains("/nonexistent/x"), "every problem: {out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(instances(&pmi, &sb), before);
    // A file that is not there, a directory, a file cut in the middle of a write.
    for (arg, what) in [
        ("gone.yaml", "cannot read"),
        ("adir.yaml", "cannot read"),
        ("cut.yaml", "cut.yaml"),
    ] {
        if arg == "adir.yaml" {
            sb.mkdir(arg);
        }
        if arg == "cut.yaml" {
            let full = apps_yaml(&[sleeper("a")]);
            sb.write(arg, &full[..full.len() / 2 + 7]);
        }
        let o = cli(&pmi, &sb, &["apply", arg]);
        assert_eq!(o.status.code(), Some(2), "{arg}: {}", text(&o));
        assert!(text(&o).contains(what), "{arg}: {}", text(&o));
        assert_eq!(instances(&pmi, &sb), before, "{arg}");
    }
    // --dry-run lists the changes and makes none.
    sb.write("next.yaml", &apps_yaml(&[sleeper("a"), sleeper("z")]));
    let o = cli(&pmi, &sb, &["apply", "next.yaml", "--dry-run"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("dry run"), "{out}");
    assert!(
        out.contains("removed b") && out.contains("added z"),
        "{out}"
    );
    assert!(out.contains("unchanged a"), "{out}");
    assert_eq!(instances(&pmi, &sb), before);
    let file = status(&pmi, &sb)["pmi"]["apps_file"].clone();
    assert_eq!(
        file,
        sb.p("apps.yaml"),
        "a dry run does not change the apps file"
    );
}

#[test]
fn pm2_verbs_reload_and_start_or_reload_a_file() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    let pmi = start(&sb, &[sleeper("a")]);
    let a = pid_of(&pmi, &sb, "a", 0);
    sb.mkdir("sub");
    sb.write("sub/two.yaml", &apps_yaml(&[sleeper("a"), sleeper("b")]));
    // A relative FILE is resolved against the client's directory, not pmi's (`/`).
    let o = cli_in(&pmi, &sb, &sb.path("sub"), &["reload", "two.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("added b"), "{}", text(&o));
    assert_eq!(pid_of(&pmi, &sb, "a", 0), a);
    // An applied FILE is the apps file from then on.
    assert_eq!(status(&pmi, &sb)["pmi"]["apps_file"], sb.p("sub/two.yaml"));
    sb.write(
        "three.json",
        r#"{"apps": [{"name": "c", "script": "TK", "interpreter": "none", "args": ["sleep"]}]}"#
            .replace("TK", &common::testkit())
            .as_str(),
    );
    let o = cli(&pmi, &sb, &["startOrReload", "three.json"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("removed a") && out.contains("removed b"),
        "{out}"
    );
    assert!(out.contains("added c"), "{out}");
    assert_eq!(names(&pmi, &sb), ["c"]);
    // `reload NAME` is still a reload.
    let c = pid_of(&pmi, &sb, "c", 0);
    let o = cli(&pmi, &sb, &["reload", "c"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(pid_of(&pmi, &sb, "c", 0), c);
}

#[test]
fn only_names_that_are_gone_are_a_warning() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    sb.apps(&[sleeper("a"), sleeper("b"), sleeper("c")]);
    let pmi = sb
        .pid1([
            "--no-auto-exit",
            "--only",
            "a,b",
            sb.p("apps.yaml").as_str(),
        ])
        .start();
    common::wait_until("a and b online", secs(20.0), || {
        online(&pmi, &sb, "a", 1) && online(&pmi, &sb, "b", 1)
    });
    sb.write("apps.yaml", &apps_yaml(&[sleeper("a"), sleeper("c")]));
    let o = cli(&pmi, &sb, &["apply"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("--only: no app or namespace named 'b'"),
        "{out}"
    );
    assert!(out.contains("removed b"), "{out}");
    assert_eq!(names(&pmi, &sb), ["a"], "c is still left out by --only");
}

fn watched(sb: &Sandbox, file: &str, apps: &[App]) -> String {
    let y = apps_yaml(apps);
    sb.write(file, &format!("pmi:\n  watch_config: true\n{y}"));
    sb.p(file)
}

/// Writes `content` beside `path` and renames it over `path`, as editors do.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn watch_config_applies_a_renamed_file_once_and_ignores_bad_versions() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    let file = watched(&sb, "apps.yaml", &[sleeper("a")]);
    let pmi = sb.pid1(["--no-auto-exit", file.as_str()]).start();
    common::wait_until("a online", secs(20.0), || online(&pmi, &sb, "a", 1));
    let a = pid_of(&pmi, &sb, "a", 0);
    let next = format!(
        "pmi:\n  watch_config: true\n{}",
        apps_yaml(&[sleeper("a"), sleeper("b")])
    );
    replace(Path::new(&file), &next);
    common::wait_until("b added by the watcher", secs(20.0), || {
        online(&pmi, &sb, "b", 1)
    });
    assert_eq!(pid_of(&pmi, &sb, "a", 0), a);
    // An invalid version: logged once, with its location, and nothing changes.
    replace(Path::new(&file), &format!("{next}    instances: lots\n"));
    common::wait_until("the invalid version logged", secs(20.0), || {
        pmi.stderr().contains("is invalid; nothing was changed")
    });
    // A touch without a change is not a new version.
    replace(Path::new(&file), &format!("{next}    instances: lots\n"));
    std::fs::remove_file(&file).unwrap();
    common::wait_until("the deletion warned about", secs(20.0), || {
        pmi.stderr()
            .contains("was deleted; the running apps are kept")
    });
    let log = pmi.stderr();
    assert_eq!(
        log.matches("is invalid; nothing was changed").count(),
        1,
        "{log}"
    );
    assert!(log.contains("apps.yaml:"), "located: {log}");
    assert_eq!(names(&pmi, &sb), ["a", "b"]);
    // Back again: applied.
    replace(
        Path::new(&file),
        &format!("pmi:\n  watch_config: true\n{}", apps_yaml(&[sleeper("b")])),
    );
    common::wait_until("a removed", secs(20.0), || names(&pmi, &sb) == ["b"]);
}

#[test]
fn watch_config_follows_a_configmap_symlink_swap() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    // What the kubelet makes: apps.yaml -> ..data/apps.yaml, ..data -> ..2026_01_x.
    sb.mkdir("cm/..2026_01_x");
    watched(&sb, "cm/..2026_01_x/apps.yaml", &[sleeper("a")]);
    std::os::unix::fs::symlink("..2026_01_x", sb.path("cm/..data")).unwrap();
    std::os::unix::fs::symlink("..data/apps.yaml", sb.path("cm/apps.yaml")).unwrap();
    let pmi = sb
        .pid1(["--no-auto-exit", sb.p("cm/apps.yaml").as_str()])
        .start();
    common::wait_until("a online", secs(20.0), || online(&pmi, &sb, "a", 1));
    let a = pid_of(&pmi, &sb, "a", 0);
    // The update: a new version directory, a new symlink renamed over ..data, the old removed.
    sb.mkdir("cm/..2026_02_y");
    watched(
        &sb,
        "cm/..2026_02_y/apps.yaml",
        &[sleeper("a"), sleeper("b")],
    );
    std::os::unix::fs::symlink("..2026_02_y", sb.path("cm/..data_tmp")).unwrap();
    std::fs::rename(sb.path("cm/..data_tmp"), sb.path("cm/..data")).unwrap();
    std::fs::remove_dir_all(sb.path("cm/..2026_01_x")).unwrap();
    common::wait_until("b added from the new ConfigMap version", secs(20.0), || {
        online(&pmi, &sb, "b", 1)
    });
    assert_eq!(pid_of(&pmi, &sb, "a", 0), a);
    // And a second swap (the watch follows the new target directory too).
    sb.mkdir("cm/..2026_03_z");
    watched(&sb, "cm/..2026_03_z/apps.yaml", &[sleeper("b")]);
    std::os::unix::fs::symlink("..2026_03_z", sb.path("cm/..data_tmp")).unwrap();
    std::fs::rename(sb.path("cm/..data_tmp"), sb.path("cm/..data")).unwrap();
    common::wait_until("a removed", secs(20.0), || names(&pmi, &sb) == ["b"]);
}

#[test]
fn a_failed_change_is_named_and_the_others_are_made() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    let pmi = start(&sb, &[sleeper("a"), sleeper("keep")]);
    let keep = pid_of(&pmi, &sb, "keep", 0);
    // Executable, so the file is valid; its interpreter is missing, so every start fails.
    let bad = sb.write("bad-app", "#!/nonexistent/interpreter\n");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let y = format!(
        "{}  - name: a\n    script: {}\n    interpreter: none\n    max_restarts: 2\n",
        apps_yaml(&[sleeper("keep"), sleeper("new")]),
        common::q(&bad.to_string_lossy())
    );
    sb.write("apps.yaml", &y);
    let o = cli(&pmi, &sb, &["apply"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("reloaded a (script, args, max_restarts changed): FAILED"),
        "{out}"
    );
    assert!(out.contains("a:0 did not start"), "{out}");
    assert!(out.contains("the change of a failed"), "{out}");
    assert!(
        out.contains("added new"),
        "the other changes were made: {out}"
    );
    assert!(online(&pmi, &sb, "new", 1));
    assert_eq!(pid_of(&pmi, &sb, "keep", 0), keep);
}

#[test]
fn an_apply_during_another_waits_for_it() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    // `slow` ignores SIGINT: its reload takes its kill_timeout.
    let slow = |arg: &str| {
        App::new("slow", &["ignore-term", "sleep", arg])
            .set("kill_timeout", "1500")
            .set("kill_signal", "SIGTERM")
    };
    let pmi = start(&sb, &[slow("3600")]);
    sb.write("apps.yaml", &apps_yaml(&[slow("3601")]));
    let first = Command::new("nsenter")
        .args(["-t", &pmi.pid.to_string(), "-p", "-m", "--"])
        .arg(common::pmi_bin())
        .arg("apply")
        .env("PMI_SOCKET", sb.path("pmi.sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until("the first apply under way", secs(10.0), || {
        pmi.stderr().contains("apply: reloaded slow")
    });
    sb.write("apps.yaml", &apps_yaml(&[slow("3601"), sleeper("b")]));
    let o = cli(&pmi, &sb, &["apply"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("waited for an earlier apply"), "{out}");
    assert!(
        out.contains("unchanged slow") && out.contains("added b"),
        "{out}"
    );
    let first_out = first.wait_with_output().unwrap();
    assert!(first_out.status.success(), "{first_out:?}");
    assert!(String::from_utf8_lossy(&first_out.stdout).contains("reloaded slow"));
}

#[test]
fn a_js_file_is_applied_while_pmi_reaps_a_crash_loop() {
    if !can_run() {
        return;
    }
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipped: needs node");
        return;
    }
    let sb = Sandbox::new();
    // `churn`'s instances exit and are restarted every ~120 ms each: pmi's reaper runs all the
    // time while node runs.
    let churn = App::new("churn", &["exit-after", "120", "0"])
        .set("instances", "4")
        .set("min_uptime", "100");
    let pmi = start(&sb, &[sleeper("a")]);
    sb.write("first.yaml", &apps_yaml(&[sleeper("a"), churn.clone()]));
    let o = cli(&pmi, &sb, &["apply", "first.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    let tk = common::testkit();
    let js = format!(
        "const path = require('path');\nmodule.exports = {{ apps: [\n  {{ name: 'a', script: {tk:?}, interpreter: 'none', args: ['sleep'] }},\n  {{ name: 'j', script: {tk:?}, interpreter: 'none', args: ['sleep'], env: {{ WHERE: path.basename(__filename) }} }},\n] }};\n"
    );
    sb.write("ecosystem.config.js", &js);
    for round in 0..5 {
        let o = cli(&pmi, &sb, &["apply", "ecosystem.config.js"]);
        let out = text(&o);
        assert!(o.status.success(), "round {round}: {out}");
        if round == 0 {
            assert!(
                out.contains("removed churn") && out.contains("added j"),
                "{out}"
            );
        }
        assert!(out.contains("unchanged a"), "{out}");
        // Back to the crash loop for the next round.
        let o = cli(&pmi, &sb, &["apply", "first.yaml"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(
        !pmi.stderr().contains("did not finish evaluating"),
        "{}",
        pmi.stderr()
    );
}

#[test]
fn a_huge_file_or_another_format_harms_nothing() {
    if !can_run() {
        return;
    }
    let sb = Sandbox::new();
    let pmi = start(&sb, &[sleeper("a")]);
    let before = instances(&pmi, &sb);
    // 100 MB: refused (no apps in it, or over the reader's byte budget), nothing changed, and
    // pmi still answers.
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(sb.path("huge.yaml")).unwrap());
        let line = format!("#{}\n", "x".repeat(99));
        for _ in 0..1_000_000 {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    let o = cli(&pmi, &sb, &["apply", "huge.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nothing was changed"), "{}", text(&o));
    assert_eq!(instances(&pmi, &sb), before);
    std::fs::remove_file(sb.path("huge.yaml")).unwrap();
    // The same apps as JSON in the .yaml file (JSON is YAML): nothing to change.
    let tk = common::testkit();
    sb.write(
        "apps.yaml",
        &format!(
            r#"{{"apps": [{{"name": "a", "script": {tk:?}, "interpreter": "none", "args": ["sleep"]}}]}}"#
        ),
    );
    let o = cli(&pmi, &sb, &["apply"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("unchanged a"), "{}", text(&o));
    assert_eq!(instances(&pmi, &sb), before);
}
