//! File watching (`watch`, `ignore_watch`, `watch_delay`): inotify on each app's paths; a change
//! that is not ignored restarts the app's instances gracefully, once per burst of changes.
//!
//! Invariant: a watcher only sends `Trigger`s to the supervisor; it never touches processes. It
//! sleeps in the kernel until something changes (no polling), and a watcher that fails is logged
//! and ends without affecting the apps. `config` watches the apps file itself (`watch_config`)
//! and owns the set of watchers (`manage`), which follows the apps through `pmi apply`.

pub mod config;

pub use config::manage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{sleep_until, Instant};

use crate::api::Trigger;
use crate::config::WatchSpec;

/// Changes closer together than this are one burst even with `watch_delay: 0`, so that an editor
/// saving through a temp file restarts the app once.
const MIN_DEBOUNCE: Duration = Duration::from_millis(100);
/// Directories deeper than this are not watched (a runaway tree must not exhaust watches).
const MAX_DEPTH: usize = 32;

fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
}

/// Starts one watcher task for an app. `root` is the app's cwd (ignore patterns are relative
/// to it).
pub fn spawn(
    app: usize,
    name: String,
    root: PathBuf,
    spec: WatchSpec,
    tx: UnboundedSender<Trigger>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = watch_app(app, &name, &root, &spec, tx).await {
            tracing::warn!("{name}: file watching stopped: {e}");
        }
    })
}

async fn watch_app(
    app: usize,
    name: &str,
    root: &Path,
    spec: &WatchSpec,
    tx: UnboundedSender<Trigger>,
) -> std::io::Result<()> {
    let inotify = Inotify::init()?;
    let mut watches = inotify.watches();
    let mut dirs: HashMap<WatchDescriptor, PathBuf> = HashMap::new();
    let ignore = Ignore::new(root, &spec.ignore);
    for p in &spec.paths {
        add_tree(&mut watches, &mut dirs, p, &ignore, 0);
    }
    tracing::debug!("{name}: watching {} directories", dirs.len());
    let mut stream = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
    let delay = spec.delay.max(MIN_DEBOUNCE);
    let mut due: Option<(Instant, PathBuf)> = None;
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return Ok(()) };
                let ev = ev?;
                let Some(dir) = dirs.get(&ev.wd).cloned() else { continue };
                let path = match &ev.name {
                    Some(n) => dir.join(n),
                    None => dir.clone(),
                };
                if ignore.matches(&path) {
                    continue;
                }
                if ev.mask.contains(inotify::EventMask::ISDIR)
                    && ev.mask.intersects(inotify::EventMask::CREATE | inotify::EventMask::MOVED_TO)
                {
                    add_tree(&mut watches, &mut dirs, &path, &ignore, 0);
                }
                if due.is_none() {
                    due = Some((Instant::now() + delay, path));
                }
            }
            _ = async { if let Some((t, _)) = &due { sleep_until(*t).await } }, if due.is_some() => {
                if let Some((_, path)) = due.take() {
                    let reason = format!("{name}: {} changed", path.display());
                    if tx.send(Trigger { app, reason }).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn add_tree(
    watches: &mut Watches,
    dirs: &mut HashMap<WatchDescriptor, PathBuf>,
    path: &Path,
    ignore: &Ignore,
    depth: usize,
) {
    if depth > MAX_DEPTH || (depth > 0 && ignore.matches(path)) {
        return;
    }
    let target = if path.is_dir() {
        path.to_path_buf()
    } else {
        // A file: watch its directory (editors replace files, which a file watch would miss).
        match path.parent() {
            Some(p) => p.to_path_buf(),
            None => return,
        }
    };
    match watches.add(&target, mask()) {
        Ok(wd) => {
            dirs.insert(wd, target.clone());
        }
        Err(e) => {
            tracing::warn!("cannot watch {}: {e}", target.display());
            return;
        }
    }
    if !path.is_dir() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                add_tree(watches, dirs, &e.path(), ignore, depth + 1);
            }
        }
    }
}

/// `ignore_watch` patterns. A pattern without `*` matches a path component equal to it or a
/// path (relative to the app's cwd) that starts with it; with `*` it is a glob (`*` within a
/// component, `**` across components) matched against the relative path and the file name.
#[derive(Debug)]
pub struct Ignore {
    root: PathBuf,
    patterns: Vec<String>,
}

impl Ignore {
    pub fn new(root: &Path, patterns: &[String]) -> Ignore {
        Ignore {
            root: root.to_path_buf(),
            patterns: patterns
                .iter()
                .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    pub fn matches(&self, path: &Path) -> bool {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let rel_s = rel.to_string_lossy();
        let comps: Vec<&str> = rel_s.split('/').filter(|c| !c.is_empty()).collect();
        let file = comps.last().copied().unwrap_or("");
        self.patterns.iter().any(|p| {
            if p.contains('*') {
                glob(p, &rel_s) || glob(p, file)
            } else {
                comps.contains(&p.as_str())
                    || rel_s == *p
                    || rel_s.starts_with(&format!("{p}/"))
                    || path.starts_with(p)
            }
        })
    }
}

/// Minimal glob: `**` matches anything, `*` anything but `/`, `?` one character but `/`.
fn glob(pat: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=s.len()).any(|i| go(rest, &s[i..]))
            }
            Some(b'*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(&p[1..], &s[i..])),
            Some(b'?') => s.first().is_some_and(|c| *c != b'/') && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(pat.as_bytes(), s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules() {
        let ig = Ignore::new(
            Path::new("/app"),
            &[
                "node_modules".into(),
                "logs/*".into(),
                "**/*.tmp".into(),
                "./dist/".into(),
            ],
        );
        assert!(ig.matches(Path::new("/app/node_modules/x/y.js")));
        assert!(ig.matches(Path::new("/app/src/node_modules")));
        assert!(ig.matches(Path::new("/app/logs/out.log")));
        assert!(ig.matches(Path::new("/app/a/b/c.tmp")));
        assert!(ig.matches(Path::new("/app/dist/main.js")));
        assert!(!ig.matches(Path::new("/app/src/index.js")));
        assert!(!ig.matches(Path::new("/app/logs2/x")));
    }

    #[test]
    fn glob_basics() {
        assert!(glob("*.js", "a.js"));
        assert!(!glob("*.js", "a/b.js"));
        assert!(glob("**/*.js", "a/b/c.js"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "a/c"));
    }
}
