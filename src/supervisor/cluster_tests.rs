//! What one spawn gets from cluster mode (fds, variables, argv), and bind errors at their place.

use std::ffi::OsString;
use std::net::TcpListener;

use super::*;
use crate::config::{Diagnostic, ExecMode, ListenAddr};
use crate::supervisor::policy::tests::app;

fn var<'a>(env: &'a [(OsString, OsString)], k: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(n, _)| n == k)
        .and_then(|(_, v)| v.to_str())
}

fn node_app(listen: Vec<ListenAddr>, mode: ExecMode) -> AppSpec {
    AppSpec {
        interpreter: Some("/usr/bin/node".into()),
        command: vec!["/usr/bin/node".into(), "/srv/app.js".into(), "--x".into()],
        exec_mode: mode,
        listen,
        ..app("web")
    }
}

#[test]
fn a_node_cluster_app_gets_listen_fds_then_its_channel_then_the_preload() {
    let spec = node_app(
        vec![ListenAddr::Tcp {
            addr: "127.0.0.1:0".parse().unwrap(),
        }],
        ExecMode::Cluster,
    );
    let mut c = Cluster::new();
    c.bind_apps(&[std::sync::Arc::new(spec.clone())]).unwrap();
    // An inherited value is replaced, not duplicated.
    let mut env = vec![("LISTEN_FDS".into(), "9".into())];
    let p = c.prepare(&spec, &mut env).unwrap();
    assert_eq!(p.fds().len(), 3);
    assert!(p.listen_pid);
    assert_eq!(env.iter().filter(|(k, _)| k == "LISTEN_FDS").count(), 1);
    assert_eq!(var(&env, "LISTEN_FDS"), Some("1"));
    assert_eq!(var(&env, "NODE_CHANNEL_FD"), Some("4"));
    assert_eq!(var(&env, "NODE_CHANNEL_SERIALIZATION_MODE"), Some("json"));
    assert_eq!(var(&env, "PMI_LISTEN_MAP"), Some(r#"{"0":3}"#));
    assert_eq!(
        var(&env, "PMI_SHARE"),
        None,
        "listen is set: no on-demand ports"
    );
    let argv: Vec<&str> = p.argv.iter().map(|a| a.to_str().unwrap()).collect();
    assert_eq!(
        argv,
        [
            "/usr/bin/node",
            "--preserve-symlinks-main",
            "/proc/self/fd/5",
            "/srv/app.js",
            "--x"
        ]
    );
}

#[test]
fn without_listen_a_node_cluster_app_shares_ports_on_demand_and_fork_mode_gets_only_the_channel() {
    let mut c = Cluster::new();
    let cluster = node_app(vec![], ExecMode::Cluster);
    let fork = AppSpec {
        name: "forked".into(),
        ..node_app(vec![], ExecMode::Fork)
    };
    let specs = [cluster.clone(), fork.clone()].map(std::sync::Arc::new);
    c.bind_apps(&specs).unwrap();
    let mut env = Vec::new();
    let p = c.prepare(&cluster, &mut env).unwrap();
    assert_eq!((p.fds().len(), p.listen_pid), (2, false));
    assert_eq!(var(&env, "PMI_SHARE"), Some("1"));
    assert_eq!(var(&env, "NODE_CHANNEL_FD"), Some("3"));
    let mut env = Vec::new();
    let p = c.prepare(&fork, &mut env).unwrap();
    assert_eq!(p.fds().len(), 1);
    assert_eq!(var(&env, "NODE_CHANNEL_FD"), Some("3"));
    assert_eq!(var(&env, "PMI_LISTEN_MAP"), None);
    assert_eq!(
        p.argv,
        fork.command.iter().map(OsString::from).collect::<Vec<_>>()
    );
    // Not Node: no channel, no preload.
    let mut env = Vec::new();
    let p = c.prepare(&app("plain"), &mut env).unwrap();
    assert_eq!((p.fds().len(), env.len()), (0, 0));
}

#[test]
fn a_bind_failure_names_the_file_line_app_and_field_and_binds_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ListenAddr::Tcp {
        addr: taken.local_addr().unwrap(),
    };
    let place = Diagnostic {
        file: "apps.yaml".into(),
        line: Some(7),
        column: Some(15),
        app: Some("web".into()),
        field: Some("listen".into()),
        message: String::new(),
    };
    let spec = AppSpec {
        listen: vec![addr],
        listen_at: vec![place],
        ..app("web")
    };
    let ok = AppSpec {
        name: "other".into(),
        listen: vec![ListenAddr::Tcp {
            addr: "127.0.0.1:0".parse().unwrap(),
        }],
        ..app("other")
    };
    let mut c = Cluster::new();
    let e = c
        .bind_apps(&[std::sync::Arc::new(ok), std::sync::Arc::new(spec)])
        .unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("apps.yaml:7:15: app 'web' field 'listen': cannot listen on 127.0.0.1:"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("in use"), "{}", e[0]);
    assert!(c.apps.is_empty(), "all or nothing");
}

#[test]
fn a_changed_listen_keeps_the_sockets_it_still_names_and_binds_the_new_ones() {
    let a = ListenAddr::Tcp {
        addr: "127.0.0.1:0".parse().unwrap(),
    };
    let b = ListenAddr::Tcp {
        addr: "[::1]:0".parse().unwrap(),
    };
    let one = AppSpec {
        listen: vec![a.clone()],
        ..app("web")
    };
    let mut c = Cluster::new();
    c.bind_app(&one).unwrap();
    let port = |c: &Cluster, i: usize| c.apps["web"].listeners[i].local_addr().unwrap();
    let before = port(&c, 0);
    let two = AppSpec {
        listen: vec![b, a],
        ..app("web")
    };
    // ::1 may be missing in a container: then only the kept socket can be checked.
    if c.bind_app(&two).is_ok() {
        assert_eq!(port(&c, 1), before, "the same socket, not a new bind");
        assert_eq!(c.apps["web"].addrs.len(), 2);
    }
    c.bind_app(&one).unwrap();
    assert_eq!(port(&c, 0), before);
    c.forget_app("web");
    assert!(c.apps.is_empty());
}
