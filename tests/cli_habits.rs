//! `pmi monit` against a real supervisor, and `pmi completions` loaded by a real bash.

mod common;

use common::{secs, App, Sandbox};

use std::process::Command;

#[test]
fn monit_prints_refreshing_frames_then_exits() {
    let sb = Sandbox::new();
    let mut pmi = sb.start_apps(
        &[
            App::new("api", &["touch-ready", &sb.p("api.up")]).set("instances", "2"),
            App::new("jobs", &["touch-ready", &sb.p("jobs.up")]),
        ],
        &[],
    );
    sb.wait_files(&mut pmi, &["api.up", "jobs.up"]);
    let ran = sb.run_pmi(["monit", "--count", "3", "--interval", "500"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // Not a terminal: frames follow each other, no escape codes.
    assert_eq!(
        ran.stdout.matches("pmi monit · every 0.5s").count(),
        3,
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains('\x1b'), "escape codes off a terminal");
    assert!(ran.stdout.contains("3 instances"), "{}", ran.stdout);
    for name in ["api", "jobs"] {
        assert!(ran.stdout.contains(name), "{}", ran.stdout);
    }
    pmi.send(libc::SIGTERM);
    pmi.wait_exit(secs(20.0));
    // pmi gone: monit says so with exit 3 (no pmi reachable), like every client verb.
    let gone = sb.run_pmi(["monit", "--count", "1"]);
    assert_eq!(gone.code, 3, "{}", gone.stderr);
}

#[test]
fn bash_loads_the_completion_script() {
    let sb = Sandbox::new();
    let script = sb.run_pmi(["completions", "bash"]);
    assert_eq!(script.code, 0, "{}", script.stderr);
    let file = sb.write("pmi.bash", &script.stdout);
    // Ask bash's completion machinery for `pmi re<TAB>`.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(pmi re); COMP_CWORD=1; COMP_LINE='pmi re'; COMP_POINT=6; _pmi pmi re pmi; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .expect("bash");
    let words = String::from_utf8_lossy(&o.stdout);
    assert!(words.lines().any(|w| w == "restart"), "{words}");
    assert!(words.lines().any(|w| w == "reload"), "{words}");
    let bad = sb.run_pmi(["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
