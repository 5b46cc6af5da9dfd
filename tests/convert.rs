//! `pmi convert` of a JS apps file bakes in the converting machine: every value taken from its
//! environment or its absolute paths is warned about (located, the value never printed), and
//! `--env`/`--only`, which convert does not use, are rejected instead of silently ignored.
//! Real node, real files; SKIPPED without node.

mod common;

use std::process::Command;

use common::{pmi_bin, Sandbox};

const ECOSYSTEM: &str = "const path = require('path');
module.exports = {
  apps: [{
    name: 'api',
    script: path.join(__dirname, 'dist/server.js'),
    cwd: __dirname,
    env: {
      DB_PASSWORD: process.env.PMI_TEST_DB_PASSWORD,
      URL: 'postgres://u:' + process.env.PMI_TEST_DB_PASSWORD + '@db/x',
      MODE: process.env.PMI_TEST_MODE === 'production' ? 'prod' : 'dev',
      PLAIN: 'hello',
    },
  }],
};
";

fn convert(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(pmi_bin())
        .arg("convert")
        .args(args)
        .current_dir(sb.dir())
        .env("PMI_TEST_DB_PASSWORD", "s3cr3t-pass")
        .env("PMI_TEST_MODE", "production")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn node_missing() -> bool {
    let missing = Command::new("node").arg("--version").output().is_err();
    if missing {
        eprintln!("SKIPPED: node is not on PATH");
    }
    missing
}

#[test]
fn convert_warns_for_the_machines_env_and_paths() {
    if node_missing() {
        return;
    }
    let sb = Sandbox::new();
    sb.write("ecosystem.config.js", ECOSYSTEM);
    let (code, out, err) = convert(&sb, &["ecosystem.config.js"]);
    assert_eq!(code, 0, "{err}");
    // The output is still what the file evaluated to.
    assert!(out.contains("DB_PASSWORD: s3cr3t-pass"), "{out}");
    let dir = sb.dir().display().to_string();
    for want in [
        "ecosystem.config.js:5:13: app 'api' field 'script': ".to_string(),
        format!("{dir}/dist/server.js is an absolute path of the converting machine"),
        "ecosystem.config.js:6:10: app 'api' field 'cwd': ".to_string(),
        "ecosystem.config.js:8:20: app 'api' field 'env.DB_PASSWORD': this value comes from the converting machine's environment ($PMI_TEST_DB_PASSWORD)".to_string(),
        "app 'api' field 'env.URL': this value comes from the converting machine's environment ($PMI_TEST_DB_PASSWORD)".to_string(),
        "the file read $PMI_TEST_MODE from the converting machine's environment".to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("s3cr3t"),
        "a warning printed the value:\n{err}"
    );
    assert!(!err.contains("PLAIN"), "{err}");
}

#[test]
fn convert_rejects_env_and_only() {
    let sb = Sandbox::new();
    sb.write(
        "apps.yaml",
        "apps:\n  - name: a\n    script: a.js\n    env_production: {X: 1}\n",
    );
    for args in [
        &["--env", "production", "apps.yaml"][..],
        &["--only", "a", "apps.yaml"][..],
    ] {
        let (code, out, err) = convert(&sb, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("pmi --env NAME --only a,b"), "{err}");
        assert!(out.is_empty(), "{out}");
    }
    let (code, out, _) = convert(&sb, &["apps.yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains("env_production"), "{out}");
}
