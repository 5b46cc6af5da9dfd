//! docker/docker-compose.yml run for real under docker-compose: `up -d` with the image built
//! locally `FROM scratch` (docker/Dockerfile.scratch around docker/example/apps.yaml, the file's
//! own settings: read-only root, tmpfs /run and /tmp, user 1000:1000, its healthcheck), the
//! container turns healthy, `exec pmi status` lists the apps, and `down` stops pmi with exit 0.
//!
//! The compose file's `build:` uses the multi-stage docker/Dockerfile, which needs registry
//! images; here the image is built from the static binary instead and tagged with a name of
//! this test (an override file sets `image:`), and `up --no-build` uses it.
//! Needs a Docker engine and docker-compose; without either the test prints SKIPPED and passes.
//! The project, its container and the image are removed on drop, even when the test fails.

mod common;
mod support_ctr;

use common::{secs, wait_until};
use support_ctr::{repo, scratch_context, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn available(test: &str) -> bool {
    let info = Command::new("docker").arg("info").output();
    if !info.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED {test}: no Docker engine answers `docker info`");
        return false;
    }
    let dc = Command::new("docker-compose").arg("version").output();
    if !dc.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED {test}: no docker-compose (apt-get install docker-compose)");
        return false;
    }
    true
}

/// A compose project of docker/docker-compose.yml with a test image; `down` and `rmi` on drop.
struct Project {
    name: String,
    image: String,
    override_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Project {
    fn new(test: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("pmi-{test}-{}", std::process::id()).replace('_', "-");
        let image = format!("{name}:test");
        let override_file = dir.path().join("override.yml");
        std::fs::write(
            &override_file,
            format!("services:\n  app:\n    image: {image}\n"),
        )
        .unwrap();
        let p = Project {
            name,
            image,
            override_file,
            _dir: dir,
        };
        p.build(p._dir.path());
        p
    }

    fn build(&self, dir: &Path) {
        let ctx = dir.join("ctx");
        scratch_context(&ctx);
        let o = run(
            "docker",
            &["build", "-q", "-t", &self.image, ctx.to_str().unwrap()],
        );
        assert!(o.status.success(), "docker build: {}", text(&o));
    }

    fn compose(&self, args: &[&str]) -> Output {
        let file = repo().join("docker/docker-compose.yml");
        let mut all = vec![
            "-p",
            self.name.as_str(),
            "-f",
            file.to_str().unwrap(),
            "-f",
            self.override_file.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run("docker-compose", &all)
    }

    fn container(&self) -> String {
        let o = self.compose(&["ps", "-q", "app"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--timeout", "1"]);
        let _ = run("docker", &["rmi", "-f", &self.image]);
    }
}

#[test]
fn compose_up_healthy_status_and_down_exit_0() {
    let test = "compose_up_healthy_status_and_down_exit_0";
    if !available(test) {
        return;
    }
    let p = Project::new("compose");
    let up = p.compose(&["up", "-d", "--no-build"]);
    assert!(up.status.success(), "docker-compose up: {}", text(&up));
    let ctr = p.container();
    assert!(!ctr.is_empty(), "no container for service app");

    // The file's own healthcheck (pmi health every 10 s after a 5 s start period).
    let mut health = String::new();
    wait_until("the container is healthy", secs(90.0), || {
        let o = run(
            "docker",
            &["inspect", "--format", "{{.State.Health.Status}}", &ctr],
        );
        health = text(&o).trim().to_string();
        assert_ne!(
            health,
            "unhealthy",
            "logs: {}",
            text(&run("docker", &["logs", &ctr]))
        );
        health == "healthy"
    });

    let st = p.compose(&["exec", "-T", "app", "pmi", "status"]);
    let table = text(&st);
    assert!(st.status.success(), "exec pmi status: {table}");
    for app in ["web", "worker"] {
        assert!(
            table
                .lines()
                .any(|l| l.contains(app) && l.contains("online")),
            "{app} is not online:\n{table}"
        );
    }
    // The file's settings reached the container.
    let who = text(&p.compose(&["exec", "-T", "app", "id", "-u"]));
    assert_eq!(who.trim(), "1000", "user");

    // `docker wait` reports pmi's exit code while `down` stops and removes the container.
    let wait = Command::new("docker")
        .args(["wait", &ctr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker wait");
    let t = std::time::Instant::now();
    let down = p.compose(&["down"]);
    let took = t.elapsed();
    assert!(
        down.status.success(),
        "docker-compose down: {}",
        text(&down)
    );
    let code = wait.wait_with_output().expect("docker wait");
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "pmi's exit code on `docker-compose down`"
    );
    // Within the file's stop_grace_period (10 s), so pmi stopped the apps itself.
    assert!(took < Duration::from_secs(10), "down took {took:?}");
}
