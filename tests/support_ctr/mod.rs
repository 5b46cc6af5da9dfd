//! What the container-runtime tests (podman, compose) share: paths, output text, and the
//! `FROM scratch` build context of docker/Dockerfile.scratch around the static pmi.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// stdout then stderr, lossy: for assertion messages and checks on either stream.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes the build context for docker/Dockerfile.scratch into `ctx`: `PMI_BIN` (else the
/// release musl build), busybox-static, docker/example/apps.yaml.
pub fn scratch_context(ctx: &Path) {
    let pmi = std::env::var_os("PMI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/x86_64-unknown-linux-musl/release/pmi"));
    let o = Command::new("sh")
        .arg(repo().join("docker/scratch-context.sh"))
        .arg(ctx)
        .arg(repo().join("docker/example/apps.yaml"))
        .env("PMI_BIN", &pmi)
        .output()
        .expect("run docker/scratch-context.sh");
    assert!(o.status.success(), "scratch-context.sh: {}", text(&o));
}
