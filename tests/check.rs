//! `pmi check` and loading as a user meets them: every problem at once, `--file-only`, the
//! CPU count behind `instances: max`, duplicate names, compound shell scripts, scripts without
//! an extension, pm2 verbs. Real files in a sandbox, the real binary.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{pmi_bin, Sandbox};

/// `instances: max` in a real cgroup: `docker run --cpus N` (v1 or v2 engine). The image is
/// imported from a tar of pmi and the apps file, so no registry is needed. SKIPPED without docker.
#[test]
fn docker_cpus_limit_gives_max() {
    if !Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED docker_cpus_limit_gives_max: `docker info` failed");
        return;
    }
    // The image has no libc: it needs the static musl pmi, as tests/docker.rs does.
    let pmi = std::env::var_os("PMI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/x86_64-unknown-linux-musl/release/pmi")
        });
    assert!(
        pmi.is_file(),
        "no static pmi at {}: build it first with `cargo build --release --target x86_64-unknown-linux-musl` (.ci/run does)",
        pmi.display()
    );
    let sb = Sandbox::new();
    std::fs::copy(&pmi, sb.path("pmi")).unwrap();
    sb.write(
        "apps.yaml",
        "apps:\n  - name: web\n    script: /pmi\n    instances: max\n",
    );
    let tag = format!("pmi-check-cpus-{}:t", std::process::id());
    let tar = Command::new("tar")
        .args(["-C", &sb.p(""), "-cf", &sb.p("img.tar"), "pmi", "apps.yaml"])
        .status()
        .unwrap();
    assert!(tar.success());
    let imp = Command::new("docker")
        .args(["import", &sb.p("img.tar"), &tag])
        .output()
        .unwrap();
    assert!(imp.status.success(), "{imp:?}");
    struct Rmi(String);
    impl Drop for Rmi {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _rmi = Rmi(tag.clone());
    for (cpus, want) in [("1", "web [fork x1]"), ("0.5", "web [fork x1]")] {
        let o = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--cpus",
                cpus,
                &tag,
                "/pmi",
                "check",
                "/apps.yaml",
            ])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{o:?}");
        assert!(out.contains(want), "--cpus {cpus}: {out}");
        assert!(out.contains("instances: max = 1: cgroup quota"), "{out}");
    }
}

/// SPEC §3: a compound `script` runs whole (`sh -c "a && b"`); `exec` in front of it would end
/// the line after the first command, so `touch` would never run.
#[test]
fn compound_script_runs_whole() {
    let sb = Sandbox::new();
    let file = sb.write(
        "apps.yaml",
        &format!(
            "apps:\n  - name: both\n    script: \"sh -c 'exit 0' && touch done\"\n    cwd: {dir}\n    autorestart: false\n  - name: list\n    script: \"true; touch list-done\"\n    cwd: {dir}\n    autorestart: false\n",
            dir = sb.p("")
        ),
    );
    let ran = sb.run_pmi([&file]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(sb.exists("done"), "the part after && did not run: {ran:?}");
    assert!(
        sb.exists("list-done"),
        "the part after ; did not run: {ran:?}"
    );
    // A simple command still gets `exec` (the app is the instance's process, not a shell).
    let check = sb.run_pmi(["check", "--json", &sb.p("apps.yaml")]);
    assert!(
        check.stdout.contains("sh -c 'exit 0' && touch done"),
        "{check:?}"
    );
    assert!(!check.stdout.contains("exec sh -c"), "{check:?}");
}

fn check(sb: &Sandbox, args: &[&str], yaml: &str) -> common::Ran {
    let file = sb.write("apps.yaml", yaml);
    let mut a: Vec<String> = vec!["check".into()];
    a.extend(args.iter().map(|s| s.to_string()));
    a.push(file.to_string_lossy().into_owned());
    sb.run_pmi(&a)
}

/// Every problem at once: warnings beside errors, a `depends_on` cycle beside another app's type
/// error, no "no app named" for an app that is in the file but invalid, cron bounds in pmi's
/// words with a caret under what the user wrote, a cron that can never fire.
#[test]
fn check_reports_every_problem_at_once() {
    let sb = Sandbox::new();
    let r = check(
        &sb,
        &[],
        "apps:
  - name: b
    script: /bin/sh
    instances: lots
    colour: red
  - name: c
    script: /bin/sh
    depends_on: b
  - name: x
    script: /bin/sh
    depends_on: y
  - name: y
    script: /bin/sh
    depends_on: x
  - name: h
    script: /bin/sh
    cron_restart: \"0 24 * * *\"
  - name: feb
    script: /bin/sh
    cron_restart: \"0 0 31 2 *\"
",
    );
    assert_eq!(r.code, 2, "{r:?}");
    let e = &r.stderr;
    assert!(e.contains("warning:") && e.contains("'colour'"), "{e}");
    assert!(e.contains("\"lots\" is not a count"), "{e}");
    assert!(!e.contains("no app named 'b'"), "{e}");
    assert!(e.contains("dependency cycle: x → y → x"), "{e}");
    assert!(
        e.contains(
            "24 is out of range in the hour field (hour is 0-23)\n    0 24 * * *\n      ^^\n"
        ),
        "{e}"
    );
    assert!(!e.contains("less than 23"), "{e}");
    assert!(e.contains("\"0 0 31 2 *\" can never fire"), "{e}");
    // Running the file says the same, and starts nothing.
    let run = sb.run_pmi([sb.path("apps.yaml")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("'colour'"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("dependency cycle: x → y → x"),
        "{run:?}"
    );
    // A real unknown name is still an error.
    let r = check(
        &sb,
        &[],
        "apps:\n  - name: c\n    script: /bin/sh\n    depends_on: nope\n",
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("no app named 'nope'; apps in this file: c"),
        "{r:?}"
    );
}

/// SPEC §1: `--file-only` judges the file alone (CI lint before the build); without it a missing
/// script, cwd, interpreter or user stays an error.
#[test]
fn check_file_only_skips_the_machine() {
    let sb = Sandbox::new();
    let yaml = "apps:
  - name: web
    script: dist/app.js
    cwd: build
    interpreter: no-such-interpreter
    uid: no-such-user
  - name: bad
    script: ./x
    instances: lots
";
    let r = check(&sb, &[], yaml);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("build does not exist"), "{r:?}");
    assert!(
        r.stderr.contains("build/dist/app.js does not exist"),
        "{r:?}"
    );
    assert!(r.stderr.contains("no user named"), "{r:?}");
    let r = check(&sb, &["--file-only"], yaml);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!r.stderr.contains("does not exist"), "{r:?}");
    assert!(!r.stderr.contains("no user named"), "{r:?}");
    assert!(
        r.stderr.contains("\"lots\" is not a count"),
        "file errors stay: {r:?}"
    );
    let r = check(
        &sb,
        &["--file-only"],
        &yaml[..yaml.find("  - name: bad").unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("web [fork x1] no-such-interpreter"),
        "{r:?}"
    );
}

/// Issue 14: a name with a control character (newline, ESC) is a located error, and the message
/// does not carry the character raw.
#[test]
fn control_characters_in_names_are_rejected() {
    let sb = Sandbox::new();
    let r = check(
        &sb,
        &["--file-only"],
        "apps:\n  - name: \"a\\nb\"\n    script: /bin/sh\n  - name: \"red\\e[31m\"\n    script: /bin/sh\n",
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("apps.yaml:2:11: app 'a\\nb' field 'name'"),
        "{r:?}"
    );
    assert!(r.stderr.contains("control character"), "{r:?}");
    assert!(!r.stderr.contains('\x1b'), "raw ESC in the message: {r:?}");
    assert_eq!(r.stderr.matches("control character").count(), 2, "{r:?}");
}

/// pm2 starts two apps with one name (a real file starts `worker-1` twice with different
/// `PORT`s); so does pmi: both run with their own environment, status lists both with distinct
/// ids, and the name targets all of them.
#[test]
fn duplicate_names_both_run() {
    let sb = Sandbox::new();
    let w = |port: &str| {
        common::App::new(
            "worker-1",
            &["env", &sb.p(&format!("env-{port}.txt")), "sleep"],
        )
        .set("env", &format!("{{PORT: \"{port}\"}}"))
    };
    let mut pmi = sb.start_apps(&[w("3001"), w("3002")], &[]);
    sb.wait_files(&mut pmi, &["env-3001.txt", "env-3002.txt"]);
    assert_eq!(
        sb.env_map("env-3001.txt").get("PORT").map(String::as_str),
        Some("3001")
    );
    assert_eq!(
        sb.env_map("env-3002.txt").get("PORT").map(String::as_str),
        Some("3002")
    );
    assert!(pmi.stderr().contains("same name"), "{}", pmi.stderr());
    let st = sb.run_pmi(["status", "--json"]);
    assert_eq!(st.code, 0, "{st:?}");
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let rows: Vec<&serde_json::Value> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["name"] == "worker-1")
        .collect();
    assert_eq!(rows.len(), 2, "{}", st.stdout);
    assert_ne!(rows[0]["id"], rows[1]["id"]);
    // The name targets both.
    let stop = sb.run_pmi(["stop", "worker-1"]);
    assert_eq!(stop.code, 0, "{stop:?}");
    pmi.wait_exit(common::wait_time());
}

/// Express's `./bin/www`: no extension, not executable, `#!/usr/bin/env node`. pm2 runs it with
/// node; so does pmi. Without a node shebang the error says what to do.
#[test]
fn script_without_extension_runs_with_node_shebang() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED: node is not on PATH");
        return;
    }
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("bin")).unwrap();
    sb.write(
        "bin/www",
        "#!/usr/bin/env node\nrequire('fs').writeFileSync('started', process.argv[1]);\n",
    );
    let yaml = |script: &str| {
        format!(
            "apps:\n  - name: www\n    script: {script}\n    cwd: {}\n    autorestart: false\n",
            sb.p("")
        )
    };
    let file = sb.write("apps.yaml", &yaml("./bin/www"));
    let r = sb.run_pmi(["check", &file.to_string_lossy()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("www [fork x1] node "), "{r:?}");
    let ran = sb.run_pmi([&file]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(sb.read("started").ends_with("bin/www"), "{ran:?}");

    sb.write("bin/job", "#!/bin/sh\ntouch started-sh\n");
    let file = sb.write("apps.yaml", &yaml("./bin/job"));
    let r = sb.run_pmi(["check", &file.to_string_lossy()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("bin/job is not executable") && r.stderr.contains("chmod +x"),
        "{r:?}"
    );
    assert!(r.stderr.contains("set `interpreter`"), "{r:?}");
}

/// pm2 verbs are not apps-file names: each gets "did you mean" (or why pmi has none), exit 2.
/// (`monit` is a pmi verb of its own, tested in tests/cli_habits.rs.)
#[test]
fn pm2_verbs_get_did_you_mean() {
    let sb = Sandbox::new();
    for (args, want) in [
        (&["ps"][..], "did you mean `pmi status`?"),
        (&["delete", "web"][..], "did you mean `pmi stop web`?"),
        (&["jlist"][..], "did you mean `pmi status --json`?"),
        (&["show", "api"][..], "did you mean `pmi describe api`?"),
        (&["flush"][..], "not supported"),
    ] {
        let r = sb.run_pmi(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("cannot read the apps file"), "{r:?}");
    }
}

/// The top-level help lists the supervisor options (they live on `run`, the implicit verb).
#[test]
fn top_level_help_shows_supervisor_options() {
    let sb = Sandbox::new();
    let r = sb.run_pmi(["--help"]);
    assert_eq!(r.code, 0, "{r:?}");
    for flag in [
        "--http <ADDR>",
        "--env <NAME>",
        "--only <A,B>",
        "--log-format <FORMAT>",
        "--no-auto-exit",
        "--kill-signal <SIG>",
        "--kill-timeout <MS>",
        "--verbose",
    ] {
        assert!(r.stdout.contains(flag), "{flag} missing:\n{}", r.stdout);
    }
}

/// docker/scratch-context.sh makes the image run the file it was given, whatever its name.
#[test]
fn scratch_context_runs_the_given_file() {
    let sb = Sandbox::new();
    sb.write(
        "ecosystem.json",
        "{\"apps\": [{\"script\": \"/bin/true\"}]}",
    );
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(repo.join("docker/scratch-context.sh"))
        .arg(sb.path("ctx"))
        .arg(sb.path("ecosystem.json"))
        .env("BUSYBOX", "none")
        .env("PMI_BIN", pmi_bin())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let df = sb.read("ctx/Dockerfile");
    assert!(df.ends_with("CMD [\"ecosystem.json\"]\n"), "{df}");
    assert_eq!(df.matches("\nCMD ").count(), 1, "{df}");
    assert!(sb.exists("ctx/rootfs/app/ecosystem.json"));
    assert!(repo.join(".dockerignore").is_file());
}
