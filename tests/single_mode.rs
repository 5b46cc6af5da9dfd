//! Single-command mode (`pmi -- CMD ARGS`): tini's contract (SPEC §5), pmi as real PID 1.

mod common;

use common::*;

/// `pmi -- pmi-testkit ARGS` as PID 1.
fn single(sb: &Sandbox, pre: &[&str], tk_args: &[&str]) -> Launch {
    let tk = testkit();
    let mut args: Vec<&str> = pre.to_vec();
    args.push("--");
    args.push(&tk);
    args.extend_from_slice(tk_args);
    sb.pid1(args)
}

fn run_single(tk_args: &[&str]) -> i32 {
    let sb = Sandbox::new();
    let mut pmi = single(&sb, &[], tk_args).start();
    pmi.wait_exit(wait_time())
}

#[test]
fn exit_codes_pass_through() {
    for code in ["0", "1", "42", "255"] {
        assert_eq!(
            run_single(&["exit", code]),
            code.parse::<i32>().unwrap(),
            "exit {code}"
        );
    }
}

#[test]
fn signal_deaths_become_128_plus_n() {
    for (sig, want) in [("TERM", 143), ("KILL", 137), ("SEGV", 139), ("USR2", 140)] {
        assert_eq!(run_single(&["kill-self", sig]), want, "killed by SIG{sig}");
    }
}

#[test]
fn missing_command_is_127_and_named() {
    let sb = Sandbox::new();
    let missing = sb.p("no-such-program");
    let mut pmi = sb.pid1(["--", missing.as_str(), "arg"]).start();
    assert_eq!(pmi.wait_exit(wait_time()), 127);
    assert!(
        pmi.stderr().contains(&missing),
        "stderr should name {missing}: {}",
        pmi.stderr()
    );

    let mut pmi = sb.pid1(["--", "pmi-no-such-command-on-path"]).start();
    assert_eq!(pmi.wait_exit(wait_time()), 127);
    assert!(pmi.stderr().contains("pmi-no-such-command-on-path"));
}

#[test]
fn non_executable_command_is_126_and_named() {
    let sb = Sandbox::new();
    let file = sb.write("not-executable.sh", "#!/bin/sh\nexit 0\n");
    let path = file.to_string_lossy().into_owned();
    let mut pmi = sb.pid1(["--", path.as_str()]).start();
    assert_eq!(pmi.wait_exit(wait_time()), 126);
    assert!(
        pmi.stderr().contains(&path),
        "stderr should name {path}: {}",
        pmi.stderr()
    );
}

#[test]
fn forwards_each_signal_to_the_command() {
    let sb = Sandbox::new();
    let rec = sb.p("signals");
    let mut pmi = single(&sb, &[], &["sigecho", &rec, "--exit-on", "TERM"]).start();
    pmi.wait_for("command ready", wait_time(), || sb.exists("signals"));
    let sigs = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGWINCH,
        libc::SIGCONT,
        SIGRT37,
        libc::SIGTERM,
    ];
    let want = send_each_and_wait(&mut pmi, &sb, &sigs, &["signals"]);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    assert_eq!(recorded(&sb, "signals"), want);
}

#[test]
fn distinct_signals_sent_back_to_back_all_arrive() {
    let sb = Sandbox::new();
    let rec = sb.p("signals");
    let mut pmi = single(&sb, &[], &["sigecho", &rec, "--exit-on", "TERM"]).start();
    pmi.wait_for("command ready", wait_time(), || sb.exists("signals"));
    for sig in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGHUP, libc::SIGWINCH] {
        pmi.send(sig);
    }
    pmi.wait_for("4 signals forwarded", wait_time(), || {
        recorded(&sb, "signals").len() >= 4
    });
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    let mut got = recorded(&sb, "signals");
    got.sort();
    assert_eq!(got, ["HUP", "TERM", "USR1", "USR2", "WINCH"]);
}

/// Parses `SigBlk:\t<hex>` style lines of `pmi-testkit sigconf` output.
fn sig_field(out: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {out:?}"));
    u64::from_str_radix(line[key.len()..].trim(), 16).expect("hex mask")
}

fn fds(out: &str) -> Vec<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("fds:"))
        .unwrap_or_else(|| panic!("no fds line in {out:?}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

const LAUNCHER_BLOCKED: [i32; 4] = [libc::SIGTERM, libc::SIGILL, libc::SIGTTIN, libc::SIGUSR1];
const LAUNCHER_IGNORED: [i32; 5] = [
    libc::SIGINT,
    libc::SIGPIPE,
    libc::SIGTTOU,
    libc::SIGXFSZ,
    SIGRT37,
];
/// Bits of signals 32-34 in a /proc mask: reserved by glibc/musl for their own use.
const LIBC_RESERVED_BITS: u64 = 0b111 << 31;

/// Runs `sigconf` as the command under a launcher that blocked/ignored these signals; checks first
/// that the launcher's state does reach a program started the same way without pmi.
fn command_sigconf(block: &[i32], ignore: &[i32]) -> String {
    let sb = Sandbox::new();
    let mut direct = sb
        .pid1(["sigconf"])
        .program(&testkit())
        .block(block)
        .ignore(ignore)
        .start();
    assert_eq!(direct.wait_exit(wait_time()), 0);
    let out = direct.stdout();
    assert_ne!(
        sig_field(&out, "SigBlk:") | sig_field(&out, "SigIgn:"),
        0,
        "control run: {out}"
    );
    let mut pmi = single(&sb, &[], &["sigconf"])
        .block(block)
        .ignore(ignore)
        .start();
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    pmi.stdout()
}

#[test]
fn command_gets_clean_signal_mask_and_dispositions() {
    let out = command_sigconf(&LAUNCHER_BLOCKED, &LAUNCHER_IGNORED);
    assert_eq!(
        sig_field(&out, "SigBlk:"),
        0,
        "command's blocked mask: {out}"
    );
    // Signals 32-34 are checked by the next test (the test runner itself may ignore 32).
    assert_eq!(
        sig_field(&out, "SigIgn:") & !LIBC_RESERVED_BITS,
        0,
        "command's ignored set: {out}"
    );
}

#[test]
fn command_gets_libc_reserved_rt_signals_back_at_default() {
    // A launcher may leave SIG_IGN on 32/33 (glibc's SIGCANCEL/SIGSETXID); libc's signal() and
    // sigaction() refuse those numbers, so only a raw rt_sigaction resets them.
    let out = command_sigconf(&[], &[32, 33]);
    assert_eq!(
        sig_field(&out, "SigIgn:"),
        0,
        "command's ignored set (signals 32-34 inherited from the launcher): {out}"
    );
}

#[test]
fn command_inherits_the_fds_pmi_was_given() {
    let sb = Sandbox::new();
    let mut pmi = single(&sb, &[], &["sigconf"]).pass_fd(9).start();
    assert_eq!(pmi.wait_exit(wait_time()), 0);
    // 0-2 and the passed fd 9; none of pmi's own fds (they must all be CLOEXEC).
    assert_eq!(fds(&pmi.stdout()), ["0", "1", "2", "9"], "{}", pmi.stdout());
}

#[test]
fn kill_timeout_sigkills_a_command_that_ignores_term() {
    let sb = Sandbox::new();
    let ready = sb.p("ready");
    let mut pmi = single(
        &sb,
        &["--kill-timeout", "500"],
        &["ignore-term", "touch-ready", &ready],
    )
    .start();
    pmi.wait_for("command ready", wait_time(), || sb.exists("ready"));
    let sent = std::time::Instant::now();
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 137);
    let took = sent.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(450),
        "SIGKILL came {took:?} after TERM, before the 500 ms kill timeout"
    );
}

#[test]
fn without_kill_timeout_pmi_does_not_escalate() {
    let sb = Sandbox::new();
    let ready = sb.p("ready");
    let mut pmi = single(&sb, &[], &["ignore-term", "touch-ready", &ready]).start();
    pmi.wait_for("command ready", wait_time(), || sb.exists("ready"));
    pmi.send(libc::SIGTERM);
    // An observation window, not synchronisation: longer than pmi's default 1600 ms kill timeout,
    // the command must still be running (tini forwards and waits).
    let until = std::time::Instant::now() + std::time::Duration::from_millis(2500);
    while std::time::Instant::now() < until {
        pmi.assert_running("after a TERM the command ignores, without --kill-timeout");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    pmi.send(libc::SIGQUIT); // not ignored: the command dies by it
    assert_eq!(pmi.wait_exit(wait_time()), 128 + libc::SIGQUIT);
}

#[test]
fn leftover_background_processes_get_term_and_are_reaped_first() {
    let sb = Sandbox::new();
    let bg = sb.p("bg");
    // The background child handles TERM by waiting 300 ms, then writing `bye`: that line exists
    // only if pmi waited for it before exiting (the kernel kills the namespace when PID 1 exits).
    let mut pmi = single(
        &sb,
        &[],
        &[
            "bg",
            "sigecho",
            &bg,
            "--exit-on",
            "TERM",
            "--exit-delay",
            "300",
            "::",
            "wait-file",
            &bg,
            "exit",
            "9",
        ],
    )
    .start();
    assert_eq!(pmi.wait_exit(wait_time()), 9);
    assert_eq!(sb.lines("bg"), ["ready", "TERM", "bye"]);
}

#[test]
fn leftover_background_process_ignoring_term_is_killed() {
    let sb = Sandbox::new();
    let bg = sb.p("bg");
    // The background sigecho never exits by itself: pmi must SIGKILL it after the grace period.
    let mut pmi = single(
        &sb,
        &["--kill-timeout", "300"],
        &["bg", "sigecho", &bg, "::", "wait-file", &bg, "exit", "9"],
    )
    .start();
    assert_eq!(pmi.wait_exit(wait_time()), 9);
    assert_eq!(recorded(&sb, "bg"), ["TERM"]);
}

#[test]
fn orphans_of_the_command_are_reaped() {
    let sb = Sandbox::new();
    let ready = sb.p("ready");
    let mut pmi = single(&sb, &[], &["orphans", "200", "touch-ready", &ready]).start();
    pmi.wait_for("orphans made", wait_time(), || sb.exists("ready"));
    let pid = pmi.pid;
    pmi.wait_for("no zombies left", wait_time(), || zombies_under(pid) == 0);
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(wait_time()), 143);
}
