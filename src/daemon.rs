//! Apps-file mode, wired in one room: load the file, merge the flags once, PID-1 set-up, build
//! the supervisor, bind HTTP and the control socket, start the watchers, run, and the emergency
//! stop after a bug.
//!
//! Invariant: this is the only module that knows both the supervisor and its readers (control
//! socket, HTTP, watchers); they meet only through `api::Handle` and `api::Trigger`. A panic
//! anywhere below still stops every process pmi started before pmi exits 70.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::api::WatchOrder;
use crate::cli::SupervisorOpts;
use crate::config::{self, LoadOptions, LogFormat, Settings, DEFAULT_KILL_TIMEOUT};
use crate::exit::Failure;
use crate::os::{pid1, signals, strays};
use crate::supervisor::apply::ApplyConfig;
use crate::supervisor::Supervisor;
use crate::term::err_line;

/// How long a pmi already on the socket has to answer the start-up hello.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the apps of `file` until they are all done or pmi is told to stop. Returns the exit code.
pub fn run(file: &Path, opts: SupervisorOpts, socket: Option<PathBuf>) -> Result<i32, Failure> {
    let start_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let load_opts = LoadOptions {
        env_name: opts.env.clone(),
        only: opts.only.clone(),
        kill_signal: opts.kill_signal.map(config::Signal),
        kill_timeout: opts.kill_timeout.map(Duration::from_millis),
        ..LoadOptions::new()
    };
    let loaded = config::load(file, &start_dir, &load_opts).map_err(|e| {
        // Every problem at once: the warnings too (an unknown key is often the cause).
        let mut lines: Vec<String> = e
            .warnings
            .iter()
            .map(|w| format!("pmi: warning: {w}"))
            .chain(e.diagnostics.iter().map(|d| format!("pmi: error: {d}")))
            .collect();
        lines.push(
            "pmi: nothing was started; fix the apps file (`pmi check FILE` validates it)".into(),
        );
        Failure::Usage(lines.join("\n"))
    })?;
    for w in &loaded.warnings {
        err_line(&format!("pmi: warning: {w}"));
    }
    let apply = ApplyConfig {
        file: loaded.spec.file.clone(),
        base_dir: start_dir.clone(),
        load: load_opts.clone(),
        file_settings: loaded.spec.settings.clone(),
        flags: flag_settings(&opts, socket.clone()),
    };
    let settings = merge_settings(loaded.spec.settings.clone(), &opts, socket);
    refuse_if_running(settings.socket.as_deref())?;
    // Before any thread exists (the log writers, tracing's): threads inherit the signal mask.
    signals::prepare_process();
    let format = settings.log_format.unwrap_or_default();
    crate::logs::init_tracing(format, opts.verbose);
    let p1 = pid1::setup(true);
    let rt = crate::os::runtime()
        .map_err(|e| Failure::Internal(format!("pmi: cannot start the runtime: {e}")))?;
    let apps: Vec<Arc<config::AppSpec>> = loaded.spec.apps.into_iter().map(Arc::new).collect();
    let file_name = loaded.spec.file.display().to_string();
    let is_pid1 = p1.is_pid1;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(serve(apps, settings, format, p1, file_name, apply))
    }));
    // pmi's last messages ("… did not stop within its kill_timeout") sit in the stderr writer's
    // queue; exiting now would lose them.
    crate::logs::sync_console(CONSOLE_SYNC);
    match result {
        Ok(r) => r,
        Err(_) => {
            err_line("pmi: internal error: stopping every process before exiting");
            strays::emergency_stop(is_pid1, DEFAULT_KILL_TIMEOUT);
            Err(Failure::Internal(String::new()))
        }
    }
}

/// How long pmi's exit waits for the console writers to write what they hold.
const CONSOLE_SYNC: Duration = Duration::from_millis(500);

/// Another pmi answers where this one would put its socket (`docker exec ctr pmi apps.yaml`):
/// start nothing, and say how to reach the running one (SPEC §7). Checked before any spawn.
fn refuse_if_running(explicit: Option<&Path>) -> Result<(), Failure> {
    let uid = nix::unistd::geteuid().as_raw();
    for p in crate::control::socket::server_candidates(explicit, uid) {
        if let Some(pid) = crate::control::socket::answering_pmi(&p, PROBE_TIMEOUT) {
            let pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            return Err(Failure::Usage(format!(
                "pmi: pmi is already running (pid {pid}, socket {}); use `pmi status`, `pmi apply`; nothing was started",
                p.display()
            )));
        }
    }
    Ok(())
}

/// Command-line flags win over the file's `pmi:` block.
fn merge_settings(s: Settings, opts: &SupervisorOpts, socket: Option<PathBuf>) -> Settings {
    s.with_flags(&flag_settings(opts, socket))
}

/// The settings the command line gives (each `None` unless its flag was given).
fn flag_settings(opts: &SupervisorOpts, socket: Option<PathBuf>) -> Settings {
    Settings {
        socket,
        http: opts.http.clone(),
        log_format: opts.log_format,
        auto_exit: opts.no_auto_exit.then_some(false),
        kill_signal: opts.kill_signal.map(config::Signal),
        kill_timeout: opts.kill_timeout.map(Duration::from_millis),
        ..Settings::default()
    }
}

/// Signals, the supervisor, its readers and watchers; then the loop until pmi exits.
async fn serve(
    apps: Vec<Arc<config::AppSpec>>,
    settings: Settings,
    format: LogFormat,
    p1: pid1::Pid1,
    file_name: String,
    apply: ApplyConfig,
) -> Result<i32, Failure> {
    // Handlers before the first spawn: as PID 1 an unhandled signal is lost.
    let sigs = signals::Signals::open()
        .map_err(|e| Failure::Internal(format!("pmi: cannot register signal handlers: {e}")))?;
    if !p1.reaps_orphans {
        tracing::warn!("not PID 1 and could not become a subreaper: orphans will not be reaped");
    }
    let (orders_tx, orders_rx) = tokio::sync::mpsc::unbounded_channel();
    // The watchers start through the same orders as after an apply: one place owns them.
    for (key, a) in apps.iter().enumerate().filter(|(_, a)| a.watch.is_some()) {
        let spec = Some(a.clone());
        let _ = orders_tx.send(WatchOrder::App { key, spec });
    }
    if settings.watch_config == Some(true) {
        let _ = orders_tx.send(WatchOrder::ConfigFile(Some(apply.file.clone())));
    }
    let mut sup = Supervisor::new(apps, settings.clone(), format, p1, file_name);
    sup.enable_apply(apply, orders_tx);
    // `listen` sockets before anything starts: a bind failure is a config error (exit 2).
    sup.bind_sockets().map_err(|errors| {
        let mut lines: Vec<String> = errors.iter().map(|e| format!("pmi: error: {e}")).collect();
        lines.push("pmi: nothing was started; fix the apps file's `listen`".into());
        Failure::Usage(lines.join("\n"))
    })?;
    let handle = sup.handle();
    if let Some(addr) = &settings.http {
        let l = crate::http::bind(addr)
            .await
            .map_err(|e| Failure::Usage(format!("pmi: {e}; nothing was started")))?;
        drop(tokio::spawn(crate::http::serve(l, handle.clone())));
    }
    let (sock, group) = (settings.socket.as_deref(), settings.socket_group.as_deref());
    match crate::control::server::bind(sock, group) {
        Ok(l) => {
            // Said at every start: where `pmi status` finds this pmi.
            tracing::info!("control socket: {}", l.path().display());
            drop(tokio::spawn(crate::control::server::serve(
                l,
                handle.clone(),
            )))
        }
        Err(e) => tracing::warn!(
            "no control socket: {e}; apps run without it (`pmi status` and `pmi health` cannot reach this pmi; give a writable path with --socket or PMI_SOCKET)"
        ),
    }
    let triggers = sup.triggers();
    drop(tokio::spawn(crate::watch::manage(
        orders_rx,
        triggers,
        handle.apply,
    )));
    Ok(sup.run(sigs).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let file = Settings {
            http: Some("127.0.0.1:1".into()),
            kill_timeout: Some(Duration::from_millis(5)),
            ..Settings::default()
        };
        let opts = SupervisorOpts {
            http: Some("127.0.0.1:2".into()),
            kill_signal: Some(libc::SIGINT),
            no_auto_exit: true,
            ..SupervisorOpts::default()
        };
        let s = merge_settings(file, &opts, Some("/tmp/x.sock".into()));
        assert_eq!(s.http.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(s.kill_signal, Some(config::Signal(libc::SIGINT)));
        assert_eq!(s.kill_timeout, Some(Duration::from_millis(5)));
        assert_eq!(s.auto_exit, Some(false));
        assert_eq!(s.socket, Some(PathBuf::from("/tmp/x.sock")));
    }
}
