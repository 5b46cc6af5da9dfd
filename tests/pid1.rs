//! PID-1 duties in apps-file mode (SPEC §4): reaping, subreaper, signal forwarding, job control,
//! cwd, a closed stdout.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use common::*;

/// An app that makes `n` orphan zombies, then writes `ready` and sleeps.
fn zombie_maker(sb: &Sandbox, n: usize) -> App {
    App::new(
        "zombies",
        &["orphans", &n.to_string(), "touch-ready", &sb.p("ready")],
    )
}

#[test]
fn reaps_2000_orphan_zombies() {
    let sb = Sandbox::new();
    let mut pmi = sb.start_apps(&[zombie_maker(&sb, 2000)], &[]);
    pmi.wait_for("2000 orphans made", secs(60.0), || sb.exists("ready"));
    let t = Instant::now();
    let pid = pmi.pid;
    pmi.wait_for("no zombie left in the namespace", secs(10.0), || {
        zombies_under(pid) == 0
    });
    eprintln!("zombies gone {:?} after the maker reported", t.elapsed());
    pmi.send(libc::SIGTERM);
    // The sleeper dies by the default SIGINT within kill_timeout.
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

#[test]
fn reaps_orphans_of_processes_that_enter_the_namespace() {
    let sb = Sandbox::new();
    let apps = [App::new("idle", &["touch-ready", &sb.p("ready")])];
    let mut pmi = sb.start_apps(&apps, &[]);
    sb.wait_files(&mut pmi, &["ready"]);
    // Like `docker exec`: the process has no parent inside; its orphans go to PID 1.
    let out = pmi.nsenter([testkit().as_str(), "orphans", "100"]);
    assert!(out.status.success(), "nsenter: {out:?}");
    let pid = pmi.pid;
    pmi.wait_for("exec'd process's orphans reaped", wait_time(), || {
        zombies_under(pid) == 0
    });
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

/// An app whose orphan records its new parent, then lives 0.3 s: it must be re-parented to pmi
/// (`expect_ppid` as seen inside pmi's namespace) and reaped when it exits.
fn orphan_is_adopted_and_reaped(pid1: bool) {
    let sb = Sandbox::new();
    let apps = [App::new(
        "parent",
        &[
            "spawn-orphan",
            "0.3",
            &sb.p("orphan"),
            "touch-ready",
            &sb.p("ready"),
        ],
    )];
    let mut pmi = sb.apps_launch(pid1, &apps, &[]).start();
    sb.wait_files(&mut pmi, &["ready", "orphan"]);
    let expect_ppid = if pid1 { 1 } else { pmi.pid };
    pmi.wait_for("orphan recorded its parent", wait_time(), || {
        sb.read("orphan").contains('\n')
    });
    assert_eq!(
        sb.read("orphan").trim(),
        format!("ppid={expect_ppid}"),
        "the orphan is re-parented to pmi"
    );
    let pid = pmi.pid;
    pmi.wait_for("orphan exited and reaped", wait_time(), || {
        let kids = descendants(pid);
        !kids
            .iter()
            .filter_map(|p| proc_info(*p))
            .any(|p| p.comm == "tk-orphan" || p.state == 'Z')
    });
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

#[test]
fn app_orphans_are_reaped_as_pid1() {
    orphan_is_adopted_and_reaped(true);
}

#[test]
fn not_pid1_pmi_is_a_subreaper_and_reaps_app_orphans() {
    orphan_is_adopted_and_reaped(false);
}

#[test]
fn signals_are_forwarded_to_every_instance_process_group() {
    let sb = Sandbox::new();
    let apps = [App::new(
        "fw",
        &[
            "sigecho",
            &sb.p("app-%{NODE_APP_INSTANCE}"),
            "--exit-on",
            "INT",
            "--group-child",
            &sb.p("child-%{NODE_APP_INSTANCE}"),
        ],
    )
    .set("instances", "2")];
    let files = ["app-0", "app-1", "child-0", "child-1"];
    let mut pmi = sb.start_apps(&apps, &[]);
    sb.wait_files(&mut pmi, &files);
    let sigs = [
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGQUIT,
        libc::SIGWINCH,
        SIGRT37,
    ];
    let want = send_each_and_wait(&mut pmi, &sb, &sigs, &files);
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    // Nothing else was forwarded (the stop of the group is tested in apps_mode.rs).
    for f in files {
        assert_eq!(recorded(&sb, f)[..want.len()], want, "{f}");
    }
}

fn job_control_signals_do_not_stop_pmi(pid1: bool) {
    let sb = Sandbox::new();
    let apps = [App::new(
        "app",
        &["sigecho", &sb.p("sig"), "--exit-on", "INT"],
    )];
    let mut pmi = sb.apps_launch(pid1, &apps, &[]).start();
    sb.wait_files(&mut pmi, &["sig"]);
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        pmi.send(sig);
    }
    // WINCH has a higher number than the three: once it has been forwarded, pmi has dealt with them.
    pmi.send(libc::SIGWINCH);
    pmi.wait_for("WINCH forwarded after TSTP/TTIN/TTOU", wait_time(), || {
        recorded(&sb, "sig").iter().any(|s| s == "WINCH")
    });
    assert_ne!(pmi.state(), 'T', "pmi is stopped");
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

#[test]
fn tstp_ttin_ttou_do_not_stop_pmi_as_pid1() {
    job_control_signals_do_not_stop_pmi(true);
}

#[test]
fn tstp_ttin_ttou_do_not_stop_pmi_when_not_pid1() {
    job_control_signals_do_not_stop_pmi(false);
}

#[test]
fn pmi_cwd_is_root() {
    let sb = Sandbox::new();
    let apps = [App::new("idle", &["touch-ready", &sb.p("ready")])];
    let mut pmi = sb.start_apps(&apps, &[]);
    sb.wait_files(&mut pmi, &["ready"]);
    assert_eq!(pmi.cwd(), std::path::Path::new("/"));
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
}

#[test]
fn term_from_inside_the_namespace_stops_gracefully() {
    let sb = Sandbox::new();
    let apps = [App::new(
        "app",
        &["sigecho", &sb.p("sig"), "--exit-on", "INT"],
    )];
    let mut pmi = sb.start_apps(&apps, &[]);
    sb.wait_files(&mut pmi, &["sig"]);
    let out = pmi.nsenter(["kill", "-TERM", "1"]);
    // `kill` may itself be SIGKILLed when pmi finishes first and the namespace goes away.
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGKILL),
        "kill -TERM 1 inside: {out:?}"
    );
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    assert_eq!(recorded(&sb, "sig"), ["INT"]);
}

fn closed_stdout_does_not_kill_pmi(pid1: bool) {
    let sb = Sandbox::new();
    // 1 MB to a closed stdout, then a line on stderr, then exit 0: pmi must keep draining the app
    // and end with the app's code.
    let apps = [
        App::new("chatty", &["write", "1000000", "100", "echo-err", "done"])
            .set("autorestart", "false"),
    ];
    let mut pmi = sb.apps_launch(pid1, &apps, &[]).stdout_closed().start();
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    assert!(
        pmi.stderr().contains("done"),
        "stderr still works: {}",
        pmi.stderr()
    );
}

#[test]
fn closed_stdout_does_not_kill_pmi_as_pid1() {
    closed_stdout_does_not_kill_pmi(true);
}

#[test]
fn closed_stdout_does_not_kill_pmi_when_not_pid1() {
    closed_stdout_does_not_kill_pmi(false);
}
