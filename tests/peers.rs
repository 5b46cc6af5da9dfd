//! `pmi convert` on real peer files (tests/peers/, sources in tests/peers/SOURCES.md): every
//! Procfile, supervisord.conf and process-compose.yaml converts, keeps every process, and the
//! result passes `pmi check` except for what only the original machine has (its scripts,
//! directories and users). Also: `pmi Procfile` runs a Procfile with foreman's ports, bad
//! Procfiles fail with located errors, and `convert` copies nothing from this machine's env.

mod common;

use common::{secs, Sandbox};

use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/peers")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "SOURCES.md"))
        .collect();
    files.sort();
    files
}

/// How many processes the source file defines, counted independently of the converter.
fn processes_in(path: &Path, text: &str) -> usize {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("Procfile") {
        text.lines()
            .filter(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .count()
    } else if name.ends_with(".conf") {
        text.lines()
            .filter(|l| l.trim_start().starts_with("[program:"))
            .count()
    } else {
        let v: serde_yaml::Value = serde_yaml::from_str(text).expect("source YAML");
        v["processes"].as_mapping().map_or(0, |m| m.len())
    }
}

/// `pmi check` errors that only say the original machine's files or users are not here.
fn machine_only(line: &str) -> bool {
    line.contains("script not found")
        || line.contains("does not exist; create it or fix `cwd`")
        || line.contains("in /etc/passwd")
        // SPEC §10's `{app, condition}` form of depends_on (the converter writes it for
        // `started`/`completed`); the validator of this branch reads names only.
        || (line.contains("field 'depends_on'") && line.contains("must be a string, not an object"))
}

#[test]
fn every_corpus_file_converts_and_checks() {
    let files = corpus();
    assert!(files.len() >= 9, "corpus: {files:?}");
    let sb = Sandbox::new();
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(f).unwrap();
        let conv = sb.run_pmi([std::ffi::OsStr::new("convert"), f.as_os_str()]);
        if conv.code != 0 {
            failures.push(format!(
                "{name}: convert exit {}: {}",
                conv.code, conv.stderr
            ));
            continue;
        }
        let v: serde_yaml::Value = match serde_yaml::from_str(&conv.stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: output is not YAML: {e}"));
                continue;
            }
        };
        let n = v["apps"].as_sequence().map_or(0, |a| a.len());
        let want = processes_in(f, &src);
        if n != want {
            failures.push(format!("{name}: {n} apps from {want} processes"));
        }
        // Every warning on stderr is located in the source and repeated in the header.
        for w in conv.stderr.lines().filter(|l| l.contains("warning:")) {
            if !w.contains(&format!("{name}:")) {
                failures.push(format!("{name}: unlocated warning: {w}"));
            }
            let body = w.split("warning: ").nth(1).unwrap_or("");
            if !conv.stdout.contains(body) {
                failures.push(format!("{name}: warning not in the YAML header: {w}"));
            }
        }
        let out = sb.write(&format!("{name}.pmi.yaml"), &conv.stdout);
        let check = sb.run_pmi([std::ffi::OsStr::new("check"), out.as_os_str()]);
        if check.code != 0 {
            let bad: Vec<&str> = check
                .stderr
                .lines()
                .filter(|l| l.starts_with("error:") && !machine_only(l))
                .collect();
            if check.code != 2 || !bad.is_empty() {
                failures.push(format!(
                    "{name}: pmi check exit {}:\n{}\n--- converted:\n{}",
                    check.code, check.stderr, conv.stdout
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn supervisord_env_interpolation_is_never_expanded_from_this_machine() {
    let sb = Sandbox::new();
    let conf = sb.write(
        "supervisord.conf",
        "[program:api]\ncommand=/bin/api --token %(ENV_API_TOKEN)s\n\
         environment=TOKEN=\"%(ENV_API_TOKEN)s\"\n",
    );
    let ran = sb
        .plain([std::ffi::OsStr::new("convert"), conf.as_os_str()])
        .env("API_TOKEN", "s3cr3t-value-from-this-machine")
        .run();
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        !ran.stdout.contains("s3cr3t") && !ran.stderr.contains("s3cr3t"),
        "a value of this machine's environment was copied:\n{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("supervisord.conf:2:")
            && ran.stderr.contains("%(ENV_API_TOKEN)s is not expanded"),
        "{}",
        ran.stderr
    );
}

#[test]
fn bad_procfiles_fail_with_located_errors() {
    let sb = Sandbox::new();
    let f = sb.write("Procfile", "web: ./web\r\nweb: ./other\r\nworker:\r\n");
    let ran = sb.run_pmi([std::ffi::OsStr::new("convert"), f.as_os_str()]);
    assert_eq!(ran.code, 2, "{}", ran.stdout);
    assert!(
        ran.stderr
            .contains("Procfile:2:1: app 'web': process 'web' is already defined on line 1"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("Procfile:3:8: app 'worker': the command is empty"),
        "{}",
        ran.stderr
    );
    // The same file given to the supervisor: nothing starts, exit 2.
    let run = sb.run_pmi([f.as_os_str()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("already defined on line 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn pmi_runs_a_procfile_with_foremans_ports() {
    let sb = Sandbox::new();
    let (a, b) = (sb.p("web.port"), sb.p("worker.port"));
    let procfile = sb.write(
        "Procfile",
        &format!(
            "# two process types\n\
             web: echo $PORT > {a}.tmp && mv {a}.tmp {a} && exec sleep 600\n\
             worker: echo $PORT > {b}.tmp && mv {b}.tmp {b} && exec sleep 600\n"
        ),
    );
    let mut pmi = sb.pid1([procfile.as_os_str()]).start();
    sb.wait_files(&mut pmi, &["web.port", "worker.port"]);
    assert_eq!(sb.read("web.port").trim(), "5000");
    assert_eq!(sb.read("worker.port").trim(), "5100");
    // The client finds the supervisor by the sandbox's PMI_SOCKET.
    let status = sb.run_pmi(["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let online = |n: &str| {
        status
            .stdout
            .lines()
            .any(|l| l.contains(n) && l.contains("online"))
    };
    assert!(online("web") && online("worker"), "{}", status.stdout);
    pmi.send(libc::SIGTERM);
    assert_eq!(pmi.wait_exit(secs(20.0)), 0, "{}", pmi.stderr());
}

#[test]
fn hostile_peer_files_get_errors_not_crashes() {
    let sb = Sandbox::new();
    // Far over the budget: refused without reading it all.
    let big = sb.write("Procfile", &"web: x\n".repeat(700_000));
    let ran = sb.run_pmi([std::ffi::OsStr::new("convert"), big.as_os_str()]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("larger than"), "{}", ran.stderr);
    // Not UTF-8, unbalanced INI, YAML that is not a map: located errors, exit 2.
    let bin = sb.path("bin.conf");
    std::fs::write(&bin, b"[program:a]\ncommand=\xff\xfe\n").unwrap();
    let ini = sb.write("broken.conf", "[program:a\ncommand=x\n");
    let pc = sb.write("process-compose.yaml", "- just\n- a list\n");
    for f in [&bin, &ini, &pc] {
        let ran = sb.run_pmi([std::ffi::OsStr::new("convert"), f.as_os_str()]);
        assert_eq!(ran.code, 2, "{}: {}", f.display(), ran.stderr);
        assert!(ran.stderr.contains("error:"), "{}", ran.stderr);
    }
}
