//! The static aarch64 build, smoke-tested under qemu-user: single-command mode, an apps file
//! with two apps, `pmi status` over the control socket, SIGTERM → exit 0.
//!
//! Needs: `PMI_BIN_AARCH64` (the static `aarch64-unknown-linux-musl` pmi; .ci/run builds it and
//! sets it) and `qemu-aarch64-static` (Debian's qemu-user-static), called explicitly so that no
//! binfmt registration is needed. Without either, every test prints SKIPPED and passes.
//! pmi runs plainly, not as PID 1 of a PID namespace: qemu-user does not emulate
//! what `unshare --pid` testing relies on. Apps are host programs (/bin/sh): qemu-user hands a
//! foreign-architecture execve to the host kernel, so only pmi itself is emulated. Each app is one
//! process (`exec sleep`): qemu-user cannot make pmi a subreaper, so an app's orphaned children
//! would go to the host's init and pmi would wait out kill_timeout for their group.

mod common;

use common::{secs, wait_time, Sandbox};

use std::path::PathBuf;
use std::process::{Command, Stdio};

const QEMU: &str = "qemu-aarch64-static";

/// The aarch64 pmi and qemu, or None after saying why the test is skipped.
fn setup(test: &str) -> Option<PathBuf> {
    let Some(bin) = std::env::var_os("PMI_BIN_AARCH64").map(PathBuf::from) else {
        eprintln!(
            "SKIPPED {test}: PMI_BIN_AARCH64 is not set (cargo build --release --target \
             aarch64-unknown-linux-musl, then point it at target/aarch64-unknown-linux-musl/release/pmi)"
        );
        return None;
    };
    assert!(
        bin.is_file(),
        "PMI_BIN_AARCH64={} is not a file",
        bin.display()
    );
    match Command::new(QEMU).arg("-version").output() {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("SKIPPED {test}: {QEMU} is missing (apt-get install qemu-user-static)");
            return None;
        }
    }
    let file = Command::new("file").arg(&bin).output().expect("run file");
    let desc = String::from_utf8_lossy(&file.stdout);
    assert!(
        desc.contains("aarch64") && desc.contains("statically linked"),
        "PMI_BIN_AARCH64 is not a static aarch64 binary: {desc}"
    );
    Some(std::fs::canonicalize(&bin).unwrap_or(bin))
}

#[test]
fn single_command_mode_runs_and_passes_the_exit_code() {
    let Some(bin) = setup("single_command_mode_runs_and_passes_the_exit_code") else {
        return;
    };
    let sb = Sandbox::new();
    let ok = sb
        .plain([bin.as_os_str(), "--".as_ref(), "true".as_ref()])
        .program(QEMU)
        .run();
    assert_eq!(ok.code, 0, "pmi -- true under qemu: {}", ok.stderr);
    let fail = sb
        .plain([bin.as_os_str(), "--".as_ref(), "false".as_ref()])
        .program(QEMU)
        .run();
    assert_eq!(fail.code, 1, "pmi -- false under qemu: {}", fail.stderr);
    let v = sb
        .plain([bin.as_os_str(), "version".as_ref()])
        .program(QEMU)
        .run();
    assert_eq!(v.code, 0);
    assert!(v.stdout.starts_with("pmi "), "version: {}", v.stdout);
}

#[test]
fn two_apps_status_and_sigterm() {
    let Some(bin) = setup("two_apps_status_and_sigterm") else {
        return;
    };
    let sb = Sandbox::new();
    let (a, b) = (sb.p("a.started"), sb.p("b.started"));
    let apps = sb.write(
        "apps.yaml",
        &format!(
            "apps:\n\
             \x20 - name: alpha\n\
             \x20   script: /bin/sh\n\
             \x20   interpreter: none\n\
             \x20   args: [-c, \"touch {a}; exec sleep 600\"]\n\
             \x20 - name: beta\n\
             \x20   script: /bin/sh\n\
             \x20   interpreter: none\n\
             \x20   args: [-c, \"touch {b}; exec sleep 600\"]\n\
             \x20   kill_timeout: 3000\n"
        ),
    );
    let mut pmi = sb
        .plain([bin.as_os_str(), apps.as_os_str()])
        .program(QEMU)
        .watchdog(120.0)
        .start();
    sb.wait_files(&mut pmi, &["a.started", "b.started"]);

    // The client is the aarch64 binary too, on the same socket.
    let socket = sb.path("pmi.sock");
    let mut table = String::new();
    pmi.wait_for("pmi status lists both apps online", wait_time(), || {
        let o = Command::new(QEMU)
            .arg(&bin)
            .arg("status")
            .env("PMI_SOCKET", &socket)
            .stdin(Stdio::null())
            .output()
            .expect("run pmi status under qemu");
        table = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success()
            && ["alpha", "beta"]
                .iter()
                .all(|n| table.lines().any(|l| l.contains(n) && l.contains("online")))
    });

    pmi.send(libc::SIGTERM);
    let code = pmi.wait_exit(secs(30.0));
    assert_eq!(
        code,
        0,
        "SIGTERM: exit code; status was:\n{table}\nstderr:\n{}",
        pmi.stderr()
    );
}

/// The two-architecture recipe of docker/README.md, arm64 half: a `FROM scratch` image built with
/// `--platform linux/arm64` from the aarch64 binary is an arm64 image holding that binary.
#[test]
fn arm64_scratch_image_builds() {
    let Some(bin) = setup("arm64_scratch_image_builds") else {
        return;
    };
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIPPED arm64_scratch_image_builds: no Docker engine answers `docker info`");
        return;
    }
    let sb = Sandbox::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ctx = sb.path("ctx");
    let o = Command::new("sh")
        .arg(repo.join("docker/scratch-context.sh"))
        .arg(&ctx)
        .arg(repo.join("docker/example/apps.yaml"))
        .env("PMI_BIN", &bin)
        // Debian's busybox-static is the host's architecture: an arm64 image goes without it.
        .env("BUSYBOX", "none")
        .output()
        .expect("scratch-context.sh");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tag = format!("pmi-test-arm64:{}", std::process::id());
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rm", "-f", &format!("{}-x", self.0.replace(':', "-"))])
                .output();
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _rm = Rm(tag.clone());
    let docker = |args: &[&str]| {
        let o = Command::new("docker")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker");
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    docker(&[
        "build",
        "-q",
        "--platform",
        "linux/arm64",
        "-t",
        &tag,
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Architecture}}", &tag]),
        "arm64"
    );
    // The binary in the image is the static aarch64 pmi (copied out, not run: no binfmt needed).
    let name = format!("{}-x", tag.replace(':', "-"));
    docker(&["create", "--name", &name, &tag]);
    let out = sb.path("pmi-from-image");
    docker(&[
        "cp",
        &format!("{name}:/usr/local/bin/pmi"),
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&bin).unwrap());
}
