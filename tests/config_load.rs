//! Loading apps files end to end: every field, good and bad, with the located messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pmi::config::{
    self, AppSpec, ConfigError, ExecMode, FilterEnv, LoadOptions, Loaded, LogFormat,
};

struct Dir {
    t: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            t: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.t.path()
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    fn exe(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.file(name, "#!/bin/sh\necho hi\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
    fn load(&self, name: &str, text: &str, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
        self.file(name, text);
        config::load(Path::new(name), self.path(), opts)
    }
}

fn unchecked() -> LoadOptions {
    LoadOptions {
        check_scripts: false,
        ..LoadOptions::new()
    }
}

fn with_env(name: &str) -> LoadOptions {
    LoadOptions {
        env_name: Some(name.into()),
        ..unchecked()
    }
}

fn ok(text: &str) -> Loaded {
    ok_with(text, &unchecked())
}

fn ok_with(text: &str, opts: &LoadOptions) -> Loaded {
    match Dir::new().load("apps.yaml", text, opts) {
        Ok(l) => l,
        Err(e) => panic!("expected to load, got:\n{e}"),
    }
}

fn app(text: &str) -> AppSpec {
    let l = ok(text);
    assert_eq!(l.spec.apps.len(), 1);
    l.spec.apps.into_iter().next().unwrap()
}

/// A one-app file with `field` appended to `script: x.js`.
fn one(field: &str) -> AppSpec {
    app(&format!(
        "apps:\n  - name: a\n    script: x.js\n    {field}\n"
    ))
}

fn err_with(text: &str, opts: &LoadOptions) -> String {
    match Dir::new().load("apps.yaml", text, opts) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn err(text: &str) -> String {
    err_with(text, &unchecked())
}

fn one_err(field: &str) -> String {
    err(&format!(
        "apps:\n  - name: a\n    script: x.js\n    {field}\n"
    ))
}

fn warnings(text: &str) -> Vec<String> {
    ok(text).warnings.iter().map(|w| w.to_string()).collect()
}

// ---------------------------------------------------------------- layout of the file

#[test]
fn top_level_forms() {
    assert_eq!(
        ok("apps:\n  - script: a.js\n  - script: b.js\n")
            .spec
            .apps
            .len(),
        2
    );
    assert_eq!(ok("apps:\n  script: a.js\n").spec.apps[0].name, "a");
    assert_eq!(ok("pm2:\n  - script: a.js\n").spec.apps[0].name, "a");
    assert_eq!(ok("- script: a.js\n- script: b.js\n").spec.apps.len(), 2);
    assert_eq!(ok("script: a.js\nname: solo\n").spec.apps[0].name, "solo");
    let l = ok("apps:\n  - script: a.js\ndeploy:\n  production:\n    user: x\n    host: h\n");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn static_and_unknown_top_level_keys_warn() {
    let w = warnings("apps:\n  - script: a.js\nstatic:\n  - path: .\nappz: 1\n");
    assert!(
        w.iter()
            .any(|w| w.contains("apps.yaml:3:1") && w.contains("static")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("apps.yaml:5:1") && w.contains("did you mean 'apps'")),
        "{w:?}"
    );
}

#[test]
fn empty_and_appless_files_fail() {
    assert!(err("").contains("the file is empty"));
    assert!(err("# nothing\n").contains("the file is empty"));
    assert!(err("apps: []\n").contains("list of apps is empty"));
    let e = err("app:\n  - script: a.js\n");
    assert!(e.contains("did you mean `apps`"), "{e}");
    assert!(err("just a string\n").contains("found a string"));
    assert!(err("apps:\n  - 42\n").contains("must be an object"));
}

#[test]
fn settings_block() {
    let l = ok("pmi:\n  socket: ./run/pmi.sock\n  http: 127.0.0.1:9000\n  log_format: prefixed\n  auto_exit: false\n  kill_signal: SIGTERM\n  kill_timeout: 5s\n  memory_check_interval: 10s\n  socket_group: ops\napps:\n  - script: a.js\n");
    let s = &l.spec.settings;
    assert!(s.socket.as_ref().unwrap().ends_with("run/pmi.sock"));
    assert!(s.socket.as_ref().unwrap().is_absolute());
    assert_eq!(s.http.as_deref(), Some("127.0.0.1:9000"));
    assert_eq!(s.log_format, Some(LogFormat::Prefixed));
    assert_eq!(s.auto_exit, Some(false));
    assert_eq!(s.kill_signal.map(|x| x.0), Some(libc::SIGTERM));
    assert_eq!(s.kill_timeout, Some(Duration::from_secs(5)));
    assert_eq!(s.memory_check_interval, Some(Duration::from_secs(10)));
    assert_eq!(s.socket_group.as_deref(), Some("ops"));
    // The block's kill settings are the apps' defaults.
    let a = &l.spec.apps[0];
    assert_eq!(a.kill_signal.0, libc::SIGTERM);
    assert_eq!(a.kill_timeout, Duration::from_secs(5));

    let e = err("pmi:\n  log_format: fancy\napps:\n  - script: a.js\n");
    assert!(e.contains("apps.yaml:2:15: field 'pmi.log_format'"), "{e}");
    let w = warnings("pmi:\n  sockit: /x\napps:\n  - script: a.js\n");
    assert!(w[0].contains("did you mean 'socket'"), "{w:?}");
}

// ---------------------------------------------------------------- identity and command

#[test]
fn names_and_defaults() {
    let a = app("apps:\n  - script: ./dist/server.js\n");
    assert_eq!(a.name, "server");
    assert_eq!(a.namespace, "default");
    assert_eq!(app("apps:\n  - script: npm start\n").name, "npm start");
    assert_eq!(one("namespace: backend").namespace, "backend");
    let l = ok_with(
        "apps:\n  - name: api\n    script: a.js\n    append_env_to_name: true\n    env_production: {}\n",
        &with_env("production"),
    );
    assert_eq!(l.spec.apps[0].name, "api-production");
}

#[test]
fn script_aliases_and_camel_case() {
    for k in ["script", "exec", "cmd", "command"] {
        assert_eq!(app(&format!("apps:\n  - {k}: a.js\n")).script, "a.js");
    }
    let a = app("apps:\n  - script: a.js\n    maxMemoryRestart: 1G\n    execMode: fork\n    ignoreWatch: [x]\n    watch: true\n    interpreterArgs: --inspect\n    killTimeout: 100\n");
    assert_eq!(a.max_memory_restart, Some(1 << 30));
    assert_eq!(a.exec_mode, ExecMode::Fork);
    assert_eq!(a.watch.unwrap().ignore, ["x"]);
    assert_eq!(a.interpreter_args, ["--inspect"]);
    assert_eq!(a.kill_timeout, Duration::from_millis(100));
    let l = ok("apps:\n  - exec: a.js\n    script: b.js\n");
    assert_eq!(l.spec.apps[0].script, "b.js");
    assert!(
        l.warnings[0].to_string().contains("same field"),
        "{:?}",
        l.warnings
    );
}

#[test]
fn args_and_interpreter_args() {
    assert_eq!(
        one(r#"args: "--port 3000 --name 'a b'""#).args,
        ["--port", "3000", "--name", "a b"]
    );
    assert_eq!(one("args: [--x, 2]").args, ["--x", "2"]);
    assert_eq!(
        one("node_args: --max-old-space-size=300").interpreter_args,
        ["--max-old-space-size=300"]
    );
    assert_eq!(
        one("interpreter_args: [-r, ts-node/register]").interpreter_args,
        ["-r", "ts-node/register"]
    );
    assert!(one_err("args: \"a 'b\"").contains("unclosed"));
    assert!(one_err("args: {a: 1}").contains("not an object"));
}

#[test]
fn interpreters_by_extension() {
    let i = |s: &str| app(&format!("apps:\n  - script: {s}\n")).interpreter;
    assert_eq!(i("a.js").as_deref(), Some("node"));
    assert_eq!(i("a.cjs").as_deref(), Some("node"));
    assert_eq!(i("a.mjs").as_deref(), Some("node"));
    assert_eq!(i("a.ts").as_deref(), Some("node"));
    assert_eq!(i("a.rb").as_deref(), Some("ruby"));
    assert_eq!(i("a.php").as_deref(), Some("php"));
    assert_eq!(i("a.pl").as_deref(), Some("perl"));
    assert!(matches!(i("a.py").as_deref(), Some("python3" | "python")));
    assert!(matches!(i("a.sh").as_deref(), Some("bash" | "sh")));
    assert_eq!(i("server"), None);
    assert_eq!(i("a.bin"), None);
    let a = one("interpreter: none");
    assert_eq!(a.interpreter, None);
    assert_eq!(
        one("exec_interpreter: python3").interpreter.as_deref(),
        Some("python3")
    );
}

#[test]
fn commands_are_built_from_their_parts() {
    let d = Dir::new();
    let a = &d
        .load(
            "apps.yaml",
            "apps:\n  - script: app/x.js\n    node_args: --inspect\n    args: [-p, '1']\n",
            &unchecked(),
        )
        .unwrap()
        .spec
        .apps[0];
    let script = d.path().join("app/x.js").display().to_string();
    assert_eq!(a.command, ["node", "--inspect", script.as_str(), "-p", "1"]);
    // A command line runs through sh, with the arguments quoted.
    let a = one("script: npm run start\n    args: [\"it's\", plain]").command;
    assert_eq!(a, ["sh", "-c", "exec npm run start 'it'\\''s' plain"]);
    // `interpreter: none` with a relative path runs the path itself.
    let d = Dir::new();
    let l = d
        .load("apps.yaml", "apps:\n  - script: ./bin/srv\n", &unchecked())
        .unwrap();
    assert_eq!(
        l.spec.apps[0].command,
        [d.path().join("bin/srv").display().to_string()]
    );
}

#[test]
fn scripts_are_found_in_cwd_or_on_path() {
    let d = Dir::new();
    d.exe("bin/run");
    d.file("srv/app.sh", "echo\n");
    let l = d
        .load(
            "apps.yaml",
            "apps:\n  - name: a\n    script: ./bin/run\n  - name: b\n    script: sh\n    args: -c true\n  - name: c\n    cwd: srv\n    script: app.sh\n  - name: d\n    script: no such command here\n",
            &LoadOptions::new(),
        )
        .unwrap();
    let by = |n: &str| l.spec.apps.iter().find(|a| a.name == n).unwrap().clone();
    assert_eq!(
        by("a").command[0],
        d.path().join("bin/run").display().to_string()
    );
    assert_eq!(by("b").command, ["sh", "-c", "true"]);
    let c = by("c");
    assert_eq!(c.cwd, d.path().join("srv"));
    assert_eq!(
        c.command.last().unwrap(),
        &d.path().join("srv/app.sh").display().to_string()
    );
    assert_eq!(by("d").command[0], "sh");
}

#[test]
fn missing_scripts_interpreters_and_cwds_are_errors() {
    let d = Dir::new();
    d.file("plain", "data");
    let e = d
        .load(
            "apps.yaml",
            "apps:\n  - name: a\n    script: ./missing.js\n  - name: b\n    script: x.xyz\n    interpreter: no-such-interp\n  - name: c\n    script: a.js\n    cwd: nowhere\n  - name: d\n    script: ./plain\n",
            &LoadOptions::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apps.yaml:3:13: app 'a' field 'script': script not found"),
        "{e}"
    );
    assert!(
        e.contains("app 'c' field 'cwd'") && e.contains("does not exist"),
        "{e}"
    );
    assert!(
        e.contains("app 'd' field 'script'") && e.contains("not executable"),
        "{e}"
    );
    // b: the script is missing too; create it to see the interpreter error.
    d.file("x.xyz", "");
    let e = d
        .load(
            "apps.yaml",
            "apps:\n  - name: b\n    script: x.xyz\n    interpreter: no-such-interp\n",
            &LoadOptions::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("apps.yaml:4:18: app 'b' field 'interpreter': interpreter 'no-such-interp' is not on PATH"), "{e}");
}

#[test]
fn path_from_app_env_is_used_for_lookups() {
    let d = Dir::new();
    d.exe("tools/mytool");
    let text = format!(
        "apps:\n  - script: mytool\n    env:\n      PATH: {}\n",
        d.path().join("tools").display()
    );
    let l = d.load("apps.yaml", &text, &LoadOptions::new()).unwrap();
    assert_eq!(l.spec.apps[0].command, ["mytool"]);
}

// ---------------------------------------------------------------- instances and modes

#[test]
fn instances_count_cpus() {
    let cpus = pmi::os::cgroup::available_cpus();
    assert_eq!(one("instances: 3").instances, 3);
    assert_eq!(one("instances: '4'").instances, 4);
    assert_eq!(one("instances: max").instances, cpus);
    assert_eq!(one("instances: MAX").instances, cpus);
    assert_eq!(one("instances: 0").instances, cpus);
    assert_eq!(
        one("instances: -1").instances,
        (cpus as i64 - 1).max(1) as u32
    );
    assert_eq!(
        one("instances: '-1'").instances,
        (cpus as i64 - 1).max(1) as u32
    );
    assert_eq!(one("instances: -100").instances, 1);
    assert!(one_err("instances: 1.5").contains("is not a count"));
    assert!(one_err("instances: 100000").contains("more than pmi allows"));
}

#[test]
fn the_documented_instances_error() {
    let text = "# header\n\n\napps:\n  - name: api\n    script: api.js\n    instances: lots\n";
    let e = err(text);
    assert_eq!(
        e,
        "apps.yaml:7:16: app 'api' field 'instances': \"lots\" is not a count; use a number, \"max\", 0 or a negative number"
    );
}

#[test]
fn exec_modes() {
    assert_eq!(one("exec_mode: fork").exec_mode, ExecMode::Fork);
    assert_eq!(one("exec_mode: fork_mode").exec_mode, ExecMode::Fork);
    assert_eq!(one("exec_mode: cluster").exec_mode, ExecMode::Cluster);
    assert_eq!(one("exec_mode: cluster_mode").exec_mode, ExecMode::Cluster);
    assert!(one_err("exec_mode: swarm").contains("use fork or cluster"));
    // pm2: `instances` without exec_mode puts a node app in cluster mode, even with 1.
    assert_eq!(one("instances: 1").exec_mode, ExecMode::Cluster);
    assert_eq!(one("autostart: true").exec_mode, ExecMode::Fork);
    assert_eq!(
        app("apps:\n  - script: w.sh\n    instances: 2\n").exec_mode,
        ExecMode::Fork
    );
}

// ---------------------------------------------------------------- restarts and stopping

#[test]
fn restart_policy() {
    let a = one("autostart: false");
    assert!(!a.autostart);
    assert!(a.restart.autorestart);
    assert_eq!(a.restart.max_restarts, 16);
    assert_eq!(a.restart.min_uptime, Duration::from_secs(1));
    assert_eq!(a.restart.restart_delay, Duration::ZERO);
    assert_eq!(a.restart.exp_backoff_restart_delay, None);
    assert!(!one("autorestart: false").restart.autorestart);
    assert!(!one("autorestart: 'false'").restart.autorestart);
    assert_eq!(one("max_restarts: 3").restart.max_restarts, 3);
    assert_eq!(
        one("min_uptime: 10s").restart.min_uptime,
        Duration::from_secs(10)
    );
    assert_eq!(
        one("min_uptime: 5000").restart.min_uptime,
        Duration::from_secs(5)
    );
    assert_eq!(
        one("restart_delay: 1500").restart.restart_delay,
        Duration::from_millis(1500)
    );
    assert_eq!(
        one("exp_backoff_restart_delay: 100")
            .restart
            .exp_backoff_restart_delay,
        Some(Duration::from_millis(100))
    );
    assert_eq!(one("stop_exit_codes: 0").restart.stop_exit_codes, [0]);
    assert_eq!(
        one("stop_exit_codes: [0, 3]").restart.stop_exit_codes,
        [0, 3]
    );
    assert!(one_err("autorestart: maybe").contains("use true or false"));
    assert!(one_err("autostart: 1").contains("use true or false"));
    assert!(one_err("max_restarts: -1").contains("not a count"));
    assert!(one_err("min_uptime: 50").contains("minimum of 100 ms"));
    assert!(one_err("restart_delay: soon").contains("not a duration"));
    assert!(one_err("stop_exit_codes: [0, 300]").contains("0 to 255"));
}

#[test]
fn kill_signal_and_timeout() {
    let a = one("autostart: true");
    assert_eq!(a.kill_signal.0, libc::SIGINT);
    assert_eq!(a.kill_timeout, Duration::from_millis(1600));
    assert_eq!(one("kill_signal: SIGTERM").kill_signal.0, libc::SIGTERM);
    assert_eq!(one("kill_signal: quit").kill_signal.0, libc::SIGQUIT);
    assert_eq!(one("kill_signal: 9").kill_signal.0, libc::SIGKILL);
    assert_eq!(
        one("kill_timeout: 3000").kill_timeout,
        Duration::from_secs(3)
    );
    assert!(one_err("kill_signal: SIGNOPE").contains("not a signal"));
    // Command-line defaults beat the pmi: block; the app's own value beats both.
    let opts = LoadOptions {
        kill_signal: Some(config::Signal(libc::SIGHUP)),
        kill_timeout: Some(Duration::from_millis(42)),
        ..unchecked()
    };
    let l = ok_with(
        "pmi:\n  kill_timeout: 7000\napps:\n  - name: a\n    script: a.js\n  - name: b\n    script: b.js\n    kill_timeout: 9\n",
        &opts,
    );
    assert_eq!(l.spec.apps[0].kill_timeout, Duration::from_millis(42));
    assert_eq!(l.spec.apps[0].kill_signal.0, libc::SIGHUP);
    assert_eq!(l.spec.apps[1].kill_timeout, Duration::from_millis(9));
}

#[test]
fn cron_restart() {
    let a = one("cron_restart: '*/2 * * * *'");
    assert_eq!(a.cron_restart.unwrap().source, "*/2 * * * *");
    assert!(one("cron: '0 0 3 * * *'").cron_restart.is_some());
    assert!(one("cron_restart: 0").cron_restart.is_none());
    assert!(one("cron_restart: '0'").cron_restart.is_none());
    let e = one_err("cron_restart: 'every day'");
    assert!(
        e.contains("apps.yaml:4:19: app 'a' field 'cron_restart'"),
        "{e}"
    );
    assert!(one_err("cron_restart: '99 * * * *'").contains("(minute is 0-59)"));
    assert!(one_err("cron_restart: 5").contains("write it as a string"));
}

#[test]
fn memory_limits() {
    let m = |v: &str| one(&format!("max_memory_restart: {v}")).max_memory_restart;
    assert_eq!(m("1048576"), Some(1 << 20));
    assert_eq!(m("512K"), Some(512 << 10));
    assert_eq!(m("300M"), Some(300 << 20));
    assert_eq!(m("300MB"), Some(300 << 20));
    assert_eq!(m("300m"), Some(300 << 20));
    assert_eq!(m("1G"), Some(1 << 30));
    assert_eq!(m("1.5G"), Some(3 << 29));
    assert!(one_err("max_memory_restart: lots").contains("is not a size"));
}

// ---------------------------------------------------------------- watch

#[test]
fn watch_settings() {
    let d = Dir::new();
    let l = d
        .load(
            "apps.yaml",
            "apps:\n  - name: a\n    script: a.js\n    watch: true\n  - name: b\n    script: b.js\n    watch: [src, ./lib]\n    ignore_watch: 'node_modules logs/*'\n    watch_delay: 1s\n  - name: c\n    script: c.js\n    watch: 'true'\n  - name: d\n    script: d.js\n    watch: src\n    cwd: sub\n  - name: e\n    script: e.js\n    watch: false\n",
            &unchecked(),
        )
        .unwrap();
    let w = |i: usize| l.spec.apps[i].watch.clone();
    let a = w(0).unwrap();
    assert_eq!(a.paths, [d.path()]);
    assert_eq!(a.ignore, ["node_modules", ".*"]);
    assert_eq!(a.delay, Duration::ZERO);
    let b = w(1).unwrap();
    assert_eq!(b.paths, [d.path().join("src"), d.path().join("lib")]);
    assert_eq!(b.ignore, ["node_modules", "logs/*"]);
    assert_eq!(b.delay, Duration::from_secs(1));
    assert_eq!(w(2).unwrap().paths, [d.path()]);
    assert_eq!(w(3).unwrap().paths, [d.path().join("sub/src")]);
    assert!(w(4).is_none());
    assert!(one_err("watch: 3").contains("not a watch setting"));
    let w = warnings(
        "apps:\n  - script: a.js\n    watch: true\n    watch_options:\n      usePolling: true\n",
    );
    assert!(
        w[0].contains("apps.yaml:4:5") && w[0].contains("watch_options"),
        "{w:?}"
    );
}

// ---------------------------------------------------------------- environment

#[test]
fn env_values_are_stringified() {
    let a = one("env:\n      PORT: 3000\n      DEBUG: true\n      RATIO: 1.5\n      EMPTY:\n      OBJ: {a: [1, x]}\n      S: text");
    assert_eq!(a.env["PORT"], "3000");
    assert_eq!(a.env["DEBUG"], "true");
    assert_eq!(a.env["RATIO"], "1.5");
    assert_eq!(a.env["EMPTY"], "");
    assert_eq!(a.env["OBJ"], r#"{"a":[1,"x"]}"#);
    assert_eq!(a.env["S"], "text");
    assert!(one_err("env: [A, B]").contains("must be an object"));
    assert!(one_err("env:\n      'A=B': x").contains("not a valid environment variable name"));
}

#[test]
fn env_merge_order() {
    let text = "apps:\n  - script: a.js\n    env:\n      A: env\n      B: env\n      C: env\n    env_production:\n      B: prod\n    env_staging:\n      C: staging\ndeploy:\n  production:\n    env:\n      A: deploy\n      B: deploy\n      D: deploy\n";
    let plain = ok(text).spec.apps[0].env.clone();
    assert_eq!(plain["A"], "env");
    assert_eq!(plain["B"], "env");
    assert!(!plain.contains_key("D"));
    let prod = ok_with(text, &with_env("production")).spec.apps[0]
        .env
        .clone();
    // pm2: deploy env < env < env_<NAME>.
    assert_eq!(prod["A"], "env");
    assert_eq!(prod["B"], "prod");
    assert_eq!(prod["C"], "env");
    assert_eq!(prod["D"], "deploy");
    let l = ok_with(text, &with_env("qa"));
    assert!(
        l.warnings
            .iter()
            .any(|w| w.message.contains("no `env_qa` block")),
        "{:?}",
        l.warnings
    );
    assert!(one_err("env_production: nope").contains("must be an object"));
}

#[test]
fn filter_env_instance_var_increment_var_port() {
    assert_eq!(one("autostart: true").filter_env, FilterEnv::None);
    assert_eq!(one("filter_env: true").filter_env, FilterEnv::All);
    assert_eq!(one("filter_env: false").filter_env, FilterEnv::None);
    assert_eq!(
        one("filter_env: SECRET").filter_env,
        FilterEnv::Key("SECRET".into())
    );
    assert_eq!(
        one("filter_env: [AWS_, TOKEN]").filter_env,
        FilterEnv::Containing(vec!["AWS_".into(), "TOKEN".into()])
    );
    assert!(one_err("filter_env: 3").contains("not a filter"));
    assert_eq!(one("autostart: true").instance_var, "NODE_APP_INSTANCE");
    assert_eq!(one("instance_var: INSTANCE_ID").instance_var, "INSTANCE_ID");
    assert_eq!(
        one("increment_var: PORT").increment_var.as_deref(),
        Some("PORT")
    );
    assert!(one_err("increment_var: 'a b'").contains("not an environment variable name"));
    assert_eq!(one("port: 3000").port, Some(3000));
    assert_eq!(one("port: '8080'").port, Some(8080));
    assert!(one_err("port: 70000").contains("not a port"));
}

// ---------------------------------------------------------------- users

#[test]
fn users_and_groups() {
    let a = one("uid: 4321");
    assert_eq!((a.uid, a.gid), (Some(4321), None));
    let a = one("user: root");
    assert_eq!((a.uid, a.gid), (Some(0), Some(0)));
    assert_eq!(one("uid: 0\n    gid: 5").gid, Some(5));
    let e = one_err("uid: no-such-user-here");
    assert!(
        e.contains("apps.yaml:4:10: app 'a' field 'uid': no user named"),
        "{e}"
    );
    assert!(one_err("gid: no-such-group-here").contains("/etc/group"));
}

// ---------------------------------------------------------------- logs

#[test]
fn log_files() {
    let d = Dir::new();
    let l = d
        .load(
            "apps.yaml",
            "apps:\n  - name: a\n    script: a.js\n    cwd: app\n    output: logs/out.log\n    err: /var/log/err.log\n    log: all.log\n    pid: run/a.pid\n  - name: b\n    script: b.js\n    out_file: /dev/null\n    error_file: NULL\n    instances: 2\n    exec_mode: fork\n",
            &unchecked(),
        )
        .unwrap();
    let a = &l.spec.apps[0].logs;
    assert_eq!(
        a.out_file.as_deref(),
        Some(d.path().join("app/logs/out.log").as_path())
    );
    assert_eq!(a.error_file.as_deref(), Some(Path::new("/var/log/err.log")));
    assert_eq!(
        a.log_file.as_deref(),
        Some(d.path().join("app/all.log").as_path())
    );
    assert!(
        a.merge_logs,
        "a fork app without instances merges logs, as pm2"
    );
    assert_eq!(
        l.spec.apps[0].pid_file.as_deref(),
        Some(d.path().join("app/run/a.pid").as_path())
    );
    let b = &l.spec.apps[1].logs;
    assert_eq!((b.out_file.clone(), b.error_file.clone()), (None, None));
    assert!(!b.merge_logs);
    assert!(one("combine_logs: true\n    instances: 2").logs.merge_logs);
    let e = one_err("log_file: true");
    assert!(
        e.contains("field 'log_file'") && e.contains("pmi does not write"),
        "{e}"
    );
    assert_eq!(
        one("time: true").logs.date_format.as_deref(),
        Some("YYYY-MM-DDTHH:mm:ss")
    );
    assert_eq!(
        one("time: true\n    log_date_format: 'YY-MM-DD HH:mm'")
            .logs
            .date_format
            .as_deref(),
        Some("YY-MM-DD HH:mm")
    );
    assert!(one("log_type: json").logs.json);
    assert!(one_err("log_type: xml").contains("not a log type"));
}

// ---------------------------------------------------------------- readiness, deps

#[test]
fn readiness_fields() {
    let a = one("autostart: true");
    assert!(!a.wait_ready);
    assert_eq!(a.listen_timeout, Duration::from_secs(3));
    assert!(!a.shutdown_with_message);
    let a = one("wait_ready: true\n    listen_timeout: 10000\n    shutdown_with_message: true");
    assert!(a.wait_ready && a.shutdown_with_message);
    assert_eq!(a.listen_timeout, Duration::from_secs(10));
}

#[test]
fn depends_on() {
    let l = ok("apps:\n  - name: db\n    script: db.js\n  - name: api\n    script: api.js\n    depends_on: [db]\n  - name: web\n    script: web.js\n    depends_on: api\n");
    assert_eq!(l.spec.apps[1].depends_on[0].app, "db");
    assert_eq!(l.spec.apps[2].depends_on[0].app, "api");
    let e = err("apps:\n  - name: api\n    script: api.js\n    depends_on: [dbb]\n");
    assert!(
        e.contains("apps.yaml:4:18: app 'api' field 'depends_on': no app named 'dbb'"),
        "{e}"
    );
    let e = err("apps:\n  - name: a\n    script: a.js\n    depends_on: [b]\n  - name: b\n    script: b.js\n    depends_on: [a]\n");
    assert!(e.contains("dependency cycle: a → b → a"), "{e}");
    assert!(err("apps:\n  - name: a\n    script: a.js\n    depends_on: a\n").contains("itself"));
}

#[test]
fn duplicate_names_load_with_a_warning() {
    // pm2 starts both; so does pmi: two apps with one name, told apart by id.
    let l = ok("apps:\n  - name: a\n    script: a.js\n    env: {PORT: 1}\n  - name: a\n    script: b.js\n    env: {PORT: 2}\n");
    assert_eq!(l.spec.apps.len(), 2);
    assert_eq!(
        l.spec.apps[1].env.get("PORT").map(String::as_str),
        Some("2")
    );
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("apps.yaml:5:11: app 'a' field 'name': another app (line 2)")),
        "{w:?}"
    );
    // Default names collide too; a dependency on a shared name is fine.
    let l = ok("apps:\n  - script: a.js\n  - script: lib/a.py\n  - name: c\n    script: c.js\n    depends_on: a\n");
    assert_eq!(l.spec.apps.len(), 3);
    assert!(l.warnings.iter().any(|w| w.message.contains("same name")));
}

#[test]
fn only_filters_by_name_or_namespace() {
    let text = "apps:\n  - name: a\n    script: a.js\n  - name: b\n    script: b.js\n    namespace: jobs\n    depends_on: a\n  - name: c\n    script: c.js\n    namespace: jobs\n";
    let only = |v: &[&str]| LoadOptions {
        only: Some(v.iter().map(|s| s.to_string()).collect()),
        ..unchecked()
    };
    let l = ok_with(text, &only(&["jobs"]));
    let names: Vec<_> = l.spec.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["b", "c"]);
    assert!(l.spec.apps[0].depends_on.is_empty());
    assert_eq!(ok_with(text, &only(&["a", "c"])).spec.apps.len(), 2);
    let e = err_with(text, &only(&["zzz"]));
    assert!(
        e.contains("no app or namespace named 'zzz'; apps in this file: a, b, c"),
        "{e}"
    );
}

// ---------------------------------------------------------------- unknown and ignored keys

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let w = warnings("apps:\n  - script: a.js\n    instanses: 2\n    colour: red\n");
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0], "apps.yaml:3:5: app 'a' field 'instanses': unknown key 'instanses' is ignored; did you mean 'instances'?");
    assert_eq!(
        w[1],
        "apps.yaml:4:5: app 'a' field 'colour': unknown key 'colour' is ignored"
    );
}

#[test]
fn ignored_pm2_keys_are_reported_once_per_file() {
    let w = warnings("apps:\n  - script: a.js\n    vizion: false\n    pmx: false\n  - script: b.js\n    vizion: true\n    treekill: true\n    source_map_support: true\n");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("apps.yaml:3:5:"), "{w:?}");
    assert!(
        w[0].contains("pmx, source_map_support, treekill, vizion"),
        "{w:?}"
    );
}

#[test]
fn pmi_additions_are_all_supported_now() {
    let w = warnings("apps:\n  - script: a.js\n    listen: 3000\n    ready: notify\n");
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = Dir::new()
        .load(
            "apps.yaml",
            "apps:\n  - name: a\n    script: a.js\n    instances: lots\n    watch: 3\n  - name: b\n    max_memory_restart: huge\n",
            &unchecked(),
        )
        .unwrap_err();
    let lines: Vec<String> = e.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("apps.yaml:4:16: app 'a' field 'instances'"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("apps.yaml:5:12: app 'a' field 'watch'"),
        "{lines:#?}"
    );
    assert!(
        lines[2].starts_with("apps.yaml:6:5: app 'b' field 'script'"),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with("apps.yaml:7:25: app 'b' field 'max_memory_restart'"),
        "{lines:#?}"
    );
}

// ---------------------------------------------------------------- other formats

#[test]
fn json_with_comments_and_trailing_commas() {
    let d = Dir::new();
    let l = d
        .load(
            "apps.json",
            "{\n  // pm2 evaluates this as JavaScript\n  apps: [{\n    name: 'api',\n    script: \"a.js\",\n    instances: 2,\n  },],\n}\n",
            &unchecked(),
        )
        .unwrap();
    assert_eq!(l.spec.apps[0].instances, 2);
    let e = d
        .load(
            "apps.json",
            "{\n  \"apps\": [{\n    \"script\": \"a.js\",\n    \"instances\": \"lots\"\n  }]\n}\n",
            &unchecked(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("apps.json:4:18: app 'a' field 'instances'"),
        "{e}"
    );
    let e = d
        .load("apps.json", "{\n  \"apps\": [\n}\n", &unchecked())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("apps.json:3:1: invalid JSON"), "{e}");
}

#[test]
fn javascript_files_run_through_node() {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("node missing: skipped");
        return;
    }
    let d = Dir::new();
    let l = d
        .load(
            "ecosystem.config.js",
            "const base = { autorestart: false };\nmodule.exports = {\n  apps: [{\n    ...base,\n    name: 'api',\n    script: 'a.js',\n    instances: 1 + 1,\n  }],\n};\n",
            &unchecked(),
        )
        .unwrap();
    assert_eq!(l.spec.apps[0].instances, 2);
    assert!(!l.spec.apps[0].restart.autorestart);
    let e = d
        .load(
            "ecosystem.config.js",
            "module.exports = {\n  apps: [{\n    name: 'api',\n    script: 'a.js',\n    instances: 'lots',\n  }],\n};\n",
            &unchecked(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("ecosystem.config.js:5:16: app 'api' field 'instances'"),
        "{e}"
    );
}

// ---------------------------------------------------------------- convert and check --json

#[test]
fn convert_resolves_aliases_and_keeps_env() {
    let d = Dir::new();
    d.file(
        "eco.json",
        "{\"apps\": [{\"name\": \"api\", \"exec\": \"a.js\", \"maxMemoryRestart\": \"1G\", \"err\": \"e.log\",\n \"env\": {\"A\": 1}, \"env_production\": {\"A\": \"p\"}, \"vizion\": false}],\n \"pmi\": {\"kill_timeout\": 5000}}\n",
    );
    let y = config::convert(Path::new("eco.json"), d.path(), &unchecked()).unwrap();
    assert!(y.starts_with("# pmi apps file"), "{y}");
    for want in [
        "script: a.js",
        "max_memory_restart: 1G",
        "error_file: e.log",
        "env_production:",
        "A: 1",
        "vizion: false",
        "kill_timeout: 5000",
    ] {
        assert!(y.contains(want), "missing {want:?} in:\n{y}");
    }
    assert!(
        !y.contains("exec:") && !y.contains("maxMemoryRestart"),
        "{y}"
    );
    d.file("converted.yaml", &y);
    let a = config::load(
        Path::new("converted.yaml"),
        d.path(),
        &with_env("production"),
    )
    .unwrap();
    let b = config::load(Path::new("eco.json"), d.path(), &with_env("production")).unwrap();
    assert_eq!(
        serde_json::to_value(&a.spec.apps).unwrap(),
        serde_json::to_value(&b.spec.apps).unwrap()
    );
}

#[test]
fn check_json_shape() {
    let l = ok("apps:\n  - name: a\n    script: a.js\n    min_uptime: 2s\n    max_memory_restart: 1K\n    cron_restart: '0 3 * * *'\n    env:\n      SECRET_IS_SHOWN: yes\n");
    let v = serde_json::to_value(&l.spec).unwrap();
    let a = &v["apps"][0];
    assert_eq!(a["restart"]["min_uptime"], 2000);
    assert_eq!(a["kill_timeout"], 1600);
    assert_eq!(a["kill_signal"], "SIGINT");
    assert_eq!(a["max_memory_restart"], 1024);
    assert_eq!(a["cron_restart"]["source"], "0 3 * * *");
    assert_eq!(a["env"]["SECRET_IS_SHOWN"], "yes");
    assert_eq!(a["exec_mode"], "fork");
    assert_eq!(a["groups"], serde_json::json!([]));
    assert!(v["file"].as_str().unwrap().ends_with("apps.yaml"));
}

#[test]
fn the_shipped_examples_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["examples/apps.yaml", "examples/pm2-app.yaml"] {
        if let Err(e) = config::load(Path::new(f), root, &LoadOptions::new()) {
            panic!("{f}:\n{e}");
        }
    }
}

/// docs/check-json.md lists exactly the fields `pmi check --json` prints for an app.
#[test]
fn check_json_doc_matches_the_output() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/check-json.md"))
            .unwrap();
    let section = doc
        .split("## `apps[]`")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut documented: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect();
    // A row for an object itself (`watch`) is documented along with its fields (`watch.paths`).
    let all = documented.clone();
    documented.retain(|d| !all.iter().any(|o| o.starts_with(&format!("{d}."))));
    documented.sort();
    let l = ok("apps:\n  - script: a.js\n    watch: true\n    cron_restart: '0 * * * *'\n");
    let v = serde_json::to_value(&l.spec.apps[0]).unwrap();
    let mut actual = Vec::new();
    for (k, x) in v.as_object().unwrap() {
        match x.as_object() {
            Some(inner) if k != "env" && k != "cron_restart" => {
                actual.extend(inner.keys().map(|i| format!("{k}.{i}")))
            }
            _ => actual.push(k.clone()),
        }
    }
    actual.sort();
    assert_eq!(documented, actual);
}

// ---------------------------------------------------------------- listen (SPEC §9)

#[test]
fn listen_is_read_with_unix_paths_against_cwd_and_no_warning() {
    let a = app("apps:\n  - name: a\n    script: x.js\n    cwd: /srv/app\n    listen: [3000, '127.0.0.1:8080', 'unix:run/a.sock']\n");
    let shown: Vec<String> = a.listen.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        shown,
        ["3000", "127.0.0.1:8080", "unix:/srv/app/run/a.sock"]
    );
    assert_eq!(a.listen_at.len(), 3);
    assert_eq!(a.listen_at[1].line, Some(5));
    let w = warnings("apps:\n  - script: x.js\n    listen: 3000\n");
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn a_bad_listen_address_is_located() {
    let e = one_err("listen: [3000, 'example.com:80']");
    assert!(e.contains("apps.yaml:4:") && e.contains("'listen'"), "{e}");
    assert!(e.contains("not an IP address"), "{e}");
}

#[test]
fn check_warns_about_a_non_node_cluster_app_without_listen() {
    let text =
        "apps:\n  - name: py\n    script: app.py\n    exec_mode: cluster\n    instances: 4\n";
    let w = warnings(text);
    assert!(
        w.iter()
            .any(|w| w.contains("EADDRINUSE") && w.contains("'py'")),
        "{w:?}"
    );
    for quiet in [
        "apps:\n  - name: py\n    script: app.py\n    exec_mode: cluster\n    instances: 4\n    listen: 8000\n",
        "apps:\n  - name: js\n    script: app.js\n    exec_mode: cluster\n    instances: 4\n",
        "apps:\n  - name: py\n    script: app.py\n    exec_mode: cluster\n    instances: 1\n",
    ] {
        let w = warnings(quiet);
        assert!(!w.iter().any(|w| w.contains("EADDRINUSE")), "{quiet}: {w:?}");
    }
}
