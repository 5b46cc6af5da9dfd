//! `pmi check` and loading as a user meets them: every problem at once, `--file-only`, the
//! CPU count behind `instances: max`, duplicate names, compound shell scripts, scripts without
//! an extension, pm2 verbs. Real files in a sandbox, the real binary.

mod common;

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
    let sb = Sandbox::new();
    std::fs::copy(pmi_bin(), sb.path("pmi")).unwrap();
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
