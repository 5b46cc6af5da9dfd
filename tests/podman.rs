//! deploy/ under a real pod runtime: `kubectl kustomize` renders the base and the production
//! overlay, `podman kube play` runs them with an image built locally `FROM scratch` under the
//! manifest's image name (docker/Dockerfile.scratch: static pmi + busybox-static), the ConfigMap
//! mounted, `runAsUser` and `readOnlyRootFilesystem` as written.
//!
//! Checked: /readyz answers 200 inside the pod, `pmi status` lists the apps, the exec liveness
//! probe (podman turns it into the container's healthcheck) passes, then fails once an app is
//! errored, and the pod stops gracefully (pmi exits 0 within terminationGracePeriodSeconds).
//!
//! Needs podman (Debian's podman + catatonit), kubectl (kubernetes-client) and the release musl
//! binary; without podman or kubectl every test prints SKIPPED and passes.
//! What the tests change in the rendered manifests, and why:
//! - the ConfigMap gets one more app, `flaky`, that fails on demand (an errored app for the
//!   liveness check);
//! - production's `replicas: 3` becomes 1: podman 4.3 publishes every containerPort on the host,
//!   so three pods of one Deployment collide on one machine.
//!
//! Stopping: Debian's podman 4.3 `kube play --down` SIGKILLs containers (podman issue #22397,
//! fixed in podman 5.1), so the graceful stop is `podman pod stop` (it honours the stop signal
//! and timeout), then `--down` removes the pod. Every pod, image and file is removed on drop.

mod common;
mod support_ctr;

use common::{secs, wait_until};
use support_ctr::{repo, scratch_context, text};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

/// Both tests bind the manifests' host ports (podman 4.3 publishes containerPorts): one at a time.
static PODS: Mutex<()> = Mutex::new(());

/// Podman with this test's containers.conf: `default_ulimits` within this machine's hard limits
/// (podman's defaults are above what this sandbox allows, and runc then fails with EPERM).
struct Podman {
    conf: PathBuf,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        let hard = |res| {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit fills the struct it is given.
            unsafe { libc::getrlimit(res, &mut r) };
            r.rlim_max
        };
        let nofile = hard(libc::RLIMIT_NOFILE).min(1 << 20);
        let nproc = hard(libc::RLIMIT_NPROC).min(4096);
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n"
            ),
        )
        .unwrap();
        Podman { conf }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run podman {args:?}: {e}"))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "podman {args:?} failed:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// False (after saying why) when podman or kubectl cannot run here.
fn available(test: &str, podman: &Podman) -> bool {
    match podman.cmd(&["info"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("SKIPPED {test}: `podman info` failed: {}", text(&o).trim());
            return false;
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot run podman ({e}); apt-get install podman catatonit");
            return false;
        }
    }
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("SKIPPED {test}: no kubectl (apt-get install kubernetes-client)");
        return false;
    }
    true
}

/// The rendered manifests, one YAML value per document.
fn render(overlay: &str) -> Vec<Value> {
    let o = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join(overlay))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        o.status.success(),
        "kubectl kustomize {overlay}: {}",
        text(&o)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&out)
        .map(|d| Value::deserialize(d).expect("rendered YAML"))
        .collect()
}

fn kind<'a>(docs: &'a mut [Value], k: &str) -> &'a mut Value {
    docs.iter_mut()
        .find(|d| d["kind"] == k)
        .unwrap_or_else(|| panic!("no {k} in the rendered manifests"))
}

/// An app that runs until /tmp/fail exists, then fails at once on every restart: errored after
/// `max_restarts` unstable restarts.
const FLAKY: &str = "name: flaky
script: sh
args: [\"-c\", \"while [ ! -e /tmp/fail ]; do sleep 1; done; exit 3\"]
min_uptime: 5000
max_restarts: 2
restart_delay: 100
";

/// Adds `flaky` to the ConfigMap's apps file; returns the app names in it.
fn add_flaky_app(docs: &mut [Value]) -> Vec<String> {
    let cm = kind(docs, "ConfigMap");
    let apps_yaml = cm["data"]["apps.yaml"]
        .as_str()
        .expect("apps.yaml")
        .to_string();
    let mut apps: Value = serde_yaml::from_str(&apps_yaml).unwrap();
    let list = apps["apps"].as_sequence_mut().expect("apps list");
    list.push(serde_yaml::from_str(FLAKY).unwrap());
    let names = list
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    cm["data"]["apps.yaml"] = Value::String(serde_yaml::to_string(&apps).unwrap());
    names
}

/// A pod played from a manifest file, with the image it needs; all removed on drop.
struct Played<'a> {
    podman: &'a Podman,
    file: PathBuf,
    image: String,
    pod: String,
    ctr: String,
    grace: u64,
}

impl<'a> Played<'a> {
    fn start(
        podman: &'a Podman,
        dir: &Path,
        mut docs: Vec<Value>,
        replicas_one: bool,
    ) -> (Played<'a>, Vec<String>) {
        let names = add_flaky_app(&mut docs);
        let dep = kind(&mut docs, "Deployment");
        if replicas_one {
            dep["spec"]["replicas"] = Value::from(1);
        }
        let name = dep["metadata"]["name"].as_str().unwrap().to_string();
        let pod_spec = &dep["spec"]["template"]["spec"];
        let grace = pod_spec["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let ctr_name = pod_spec["containers"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let image = pod_spec["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string();
        let body: Vec<String> = docs
            .iter()
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect();
        let file = dir.join("manifests.yaml");
        std::fs::write(&file, body.join("---\n")).unwrap();
        // podman 4.3 names a Deployment's pod NAME-pod-0 and its container POD-CONTAINER.
        let pod = format!("{name}-pod-0");
        let played = Played {
            podman,
            file,
            ctr: format!("{pod}-{ctr_name}"),
            pod,
            image,
            grace,
        };
        played.build_image(dir);
        played
            .podman
            .ok(&["kube", "play", played.file.to_str().unwrap()]);
        (played, names)
    }

    fn build_image(&self, dir: &Path) {
        let ctx = dir.join("ctx");
        scratch_context(&ctx);
        self.podman
            .ok(&["build", "-q", "-t", &self.image, ctx.to_str().unwrap()]);
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["exec", self.ctr.as_str()];
        a.extend_from_slice(args);
        self.podman.run(&a)
    }

    fn status(&self) -> String {
        text(&self.exec(&["pmi", "status"]))
    }

    /// Every name has a row with this status.
    fn all(&self, names: &[&str], want: &str) -> bool {
        let s = self.status();
        names.iter().all(|n| {
            s.lines()
                .any(|l| l.contains(&format!(" {n} ")) && l.contains(want))
        })
    }

    fn readyz_200(&self) -> bool {
        let o = self.exec(&[
            "wget",
            "-S",
            "-q",
            "-O",
            "/dev/null",
            "http://127.0.0.1:9090/readyz",
        ]);
        o.status.success() && text(&o).contains("200 OK")
    }

    /// `podman pod stop` while `podman wait` watches: pmi's exit code and how long it took.
    fn stop(&self) -> (String, Duration) {
        let wait: Child = self
            .podman
            .cmd(&["wait", &self.ctr])
            .stdout(Stdio::piped())
            .spawn()
            .expect("podman wait");
        let t = Instant::now();
        self.podman.ok(&["pod", "stop", &self.pod]);
        let took = t.elapsed();
        let out = wait.wait_with_output().expect("podman wait output");
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            took,
        )
    }
}

impl Drop for Played<'_> {
    fn drop(&mut self) {
        let f = self.file.to_string_lossy().into_owned();
        let _ = self.podman.run(&["kube", "play", "--down", &f]);
        let _ = self.podman.run(&["pod", "rm", "-f", &self.pod]);
        let _ = self.podman.run(&["rmi", "-f", &self.image]);
    }
}

fn pod_test(test: &str, overlay: &str, replicas_one: bool, liveness: bool) {
    let dir = tempfile::tempdir().unwrap();
    let podman = Podman::new(dir.path());
    if !available(test, &podman) {
        return;
    }
    let _one = PODS.lock().unwrap_or_else(|e| e.into_inner());
    let (pod, names) = Played::start(&podman, dir.path(), render(overlay), replicas_one);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();

    wait_until("/readyz answers 200 in the pod", secs(60.0), || {
        pod.readyz_200()
    });
    wait_until("pmi status lists every app online", secs(30.0), || {
        pod.all(&names, "online")
    });
    // The securityContext was applied as written.
    let who = text(&pod.exec(&["id", "-u"]));
    assert_eq!(who.trim(), "10001", "runAsUser");
    let ro = pod.exec(&["touch", "/probe"]);
    assert!(!ro.status.success(), "the root file system is writable");

    if liveness {
        let hc = podman.run(&[
            "inspect",
            "--format",
            "{{json .Config.Healthcheck.Test}}",
            &pod.ctr,
        ]);
        assert!(
            text(&hc).contains("pmi") && text(&hc).contains("health"),
            "healthcheck: {}",
            text(&hc)
        );
        let run = podman.run(&["healthcheck", "run", &pod.ctr]);
        assert!(
            run.status.success(),
            "healthy pod, healthcheck failed: {}",
            text(&run)
        );
        let t = pod.exec(&["touch", "/tmp/fail"]);
        assert!(t.status.success(), "touch /tmp/fail: {}", text(&t));
        wait_until("flaky is errored", secs(60.0), || {
            pod.all(&["flaky"], "errored")
        });
        let run = podman.run(&["healthcheck", "run", &pod.ctr]);
        assert!(
            !run.status.success(),
            "an errored app, yet the healthcheck passed: {}",
            text(&run)
        );
        assert!(text(&run).contains("unhealthy"), "{}", text(&run));
    }

    let (code, took) = pod.stop();
    let logs = text(&podman.run(&["logs", &pod.ctr]));
    assert_eq!(
        code, "0",
        "pmi's exit code after `podman pod stop`; its log:\n{logs}"
    );
    assert!(
        took < Duration::from_secs(pod.grace),
        "the stop took {took:?}, more than terminationGracePeriodSeconds ({} s)",
        pod.grace
    );
}

#[test]
fn base_runs_under_podman_kube_play_with_exec_liveness() {
    pod_test(
        "base_runs_under_podman_kube_play_with_exec_liveness",
        "deploy/base",
        false,
        true,
    );
}

#[test]
fn production_overlay_runs_under_podman_kube_play() {
    pod_test(
        "production_overlay_runs_under_podman_kube_play",
        "deploy/overlays/production",
        true,
        false,
    );
}
