//! The Kubernetes manifests in deploy/ render (base and overlays) and validate strictly against
//! the Kubernetes OpenAPI schemas, offline, with `kubernetes-validate` (PyPI; it bundles the
//! schemas), plus pmi's own needs (probes, read-only root, non-root, socket volume, grace period
//! covering the apps' kill_timeout): see deploy/validate.py.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validate(dirs: &[&Path]) -> Output {
    let out = Command::new("python3")
        .arg(repo().join("deploy/validate.py"))
        .args(dirs)
        .output()
        .expect("python3 is needed to validate deploy/");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("ModuleNotFoundError"),
        "missing Python module (.ci/run installs it: pip install kubernetes-validate): {err}"
    );
    out
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let base = repo().join("deploy/base");
    let prod = repo().join("deploy/overlays/production");
    let out = validate(&[&base, &prod]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("Deployment/pmi-example").count(), 2, "{text}");
}

#[test]
fn the_validator_rejects_broken_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    for f in ["kustomization.yaml", "configmap.yaml", "service.yaml"] {
        std::fs::copy(repo().join("deploy/base").join(f), base.join(f)).unwrap();
    }
    let dep = std::fs::read_to_string(repo().join("deploy/base/deployment.yaml")).unwrap();
    for (what, from, to) in [
        (
            "unknown field",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFS: true",
        ),
        ("wrong type", "periodSeconds: 10", "periodSeconds: \"ten\""),
        (
            "short grace",
            "terminationGracePeriodSeconds: 15",
            "terminationGracePeriodSeconds: 5",
        ),
    ] {
        assert!(dep.contains(from), "{from}");
        std::fs::write(base.join("deployment.yaml"), dep.replacen(from, to, 1)).unwrap();
        let out = validate(&[&base]);
        assert!(!out.status.success(), "{what} was accepted");
    }
}
