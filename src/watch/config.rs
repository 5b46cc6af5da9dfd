//! `pmi: {watch_config: true}`: pmi applies its apps file by itself when the file changes; and
//! `manage`, the one owner of every watcher task, which follows the apps through `pmi apply`.
//!
//! The watch is on the file's DIRECTORY (and on the directory its symlink points to, resolved
//! again after every change), because editors write a new file and rename it over the old one,
//! and Kubernetes updates a mounted ConfigMap by swapping the `..data` symlink: a watch on the
//! file itself would see neither. A burst of changes is one apply, once the directory has been
//! quiet for `QUIET` (at most `MAX_WAIT` after the first change). Invariant: only a file whose
//! content differs from the last one seen is applied, so an invalid version is logged once; a
//! missing file or a directory in its place is a warning and changes nothing.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::api::{ApplyMsg, ApplyRequest, Trigger, WatchOrder};

/// The directory must be quiet this long before the file is read.
const QUIET: Duration = Duration::from_millis(500);
/// …but a directory that never stops changing is read at least this often.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Bytes of the file hashed to tell versions apart; past this the loader's own byte budget
/// reports the file (it is read by `config::load` like any other).
const HASH_BUDGET: u64 = 32 << 20;

/// Keeps one watcher task per app with `watch`, and the apps-file watcher, as ordered.
pub async fn manage(
    mut orders: UnboundedReceiver<WatchOrder>,
    triggers: UnboundedSender<Trigger>,
    apply: mpsc::Sender<ApplyMsg>,
) {
    let mut apps: HashMap<usize, JoinHandle<()>> = HashMap::new();
    let mut file: Option<(PathBuf, JoinHandle<()>)> = None;
    while let Some(order) = orders.recv().await {
        match order {
            WatchOrder::App { key, spec } => {
                if let Some(h) = apps.remove(&key) {
                    h.abort();
                }
                if let Some(s) = spec {
                    if let Some(w) = &s.watch {
                        let (name, cwd) = (s.name.clone(), s.cwd.clone());
                        let h = super::spawn(key, name, cwd, w.clone(), triggers.clone());
                        apps.insert(key, h);
                    }
                }
            }
            WatchOrder::ConfigFile(path) => {
                if file.as_ref().map(|(p, _)| p) == path.as_ref() {
                    continue;
                }
                if let Some((_, h)) = file.take() {
                    h.abort();
                }
                if let Some(p) = path {
                    tracing::info!("watch_config: watching {}", p.display());
                    let h = tokio::spawn(watch_file(p.clone(), apply.clone()));
                    file = Some((p, h));
                }
            }
        }
    }
}

/// What the file is now, to tell a change from a touch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Missing,
    NotAFile,
    Content(u64),
}

fn seen(path: &Path) -> Seen {
    let Ok(meta) = std::fs::metadata(path) else {
        return Seen::Missing;
    };
    if !meta.is_file() {
        return Seen::NotAFile;
    }
    let Ok(f) = std::fs::File::open(path) else {
        return Seen::Missing;
    };
    let mut bytes = Vec::new();
    if f.take(HASH_BUDGET).read_to_end(&mut bytes).is_err() {
        return Seen::Missing;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Seen::Content(h.finish())
}

async fn seen_async(path: &Path) -> Seen {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || seen(&p))
        .await
        .unwrap_or(Seen::Missing)
}

/// Watches `path` and asks the supervisor to apply it after each change. Ends when the
/// supervisor is gone; a failure to watch is logged once.
pub async fn watch_file(path: PathBuf, apply: mpsc::Sender<ApplyMsg>) {
    if let Err(e) = watch_loop(&path, &apply).await {
        tracing::warn!(
            "watch_config: cannot watch {}: {e}; apply changes with `pmi apply`",
            path.display()
        );
    }
}

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
}

/// The names in the file's directories whose change may change the file: the file, the first
/// step of its symlink (`..data` in a ConfigMap), and the name it finally resolves to.
struct Names {
    dir: PathBuf,
    file: std::ffi::OsString,
    link_first: Option<std::ffi::OsString>,
    target: Option<PathBuf>,
}

impl Names {
    fn of(path: &Path) -> Names {
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let file = path.file_name().unwrap_or_default().to_os_string();
        let link_first = std::fs::read_link(path)
            .ok()
            .and_then(|t| t.components().next().map(|c| c.as_os_str().to_os_string()));
        let target = std::fs::canonicalize(path).ok();
        Names {
            dir,
            file,
            link_first,
            target,
        }
    }

    fn relevant(&self, dir: &Path, name: &std::ffi::OsStr) -> bool {
        if dir == self.dir
            && (name == self.file
                || self.link_first.as_deref() == Some(name)
                || name.to_string_lossy().starts_with(".."))
        {
            return true;
        }
        self.target
            .as_ref()
            .is_some_and(|t| t.parent() == Some(dir) && t.file_name() == Some(name))
    }

    /// Watches the file's directory and the directory it resolves to now.
    fn watch(&self, watches: &mut Watches, dirs: &mut HashMap<WatchDescriptor, PathBuf>) {
        let target_dir = self.target.as_ref().and_then(|t| t.parent());
        for d in std::iter::once(self.dir.as_path()).chain(target_dir) {
            if dirs.values().any(|x| x == d) {
                continue;
            }
            match watches.add(d, mask()) {
                Ok(wd) => {
                    dirs.insert(wd, d.to_path_buf());
                }
                Err(e) => tracing::warn!("watch_config: cannot watch {}: {e}", d.display()),
            }
        }
    }
}

async fn watch_loop(path: &Path, apply: &mpsc::Sender<ApplyMsg>) -> std::io::Result<()> {
    let inotify = Inotify::init()?;
    let mut watches = inotify.watches();
    let mut dirs: HashMap<WatchDescriptor, PathBuf> = HashMap::new();
    let mut names = Names::of(path);
    names.watch(&mut watches, &mut dirs);
    if dirs.is_empty() {
        return Err(std::io::Error::other(
            "no directory of the file can be watched",
        ));
    }
    let mut stream = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
    let mut last = seen_async(path).await;
    // (quiet deadline, latest allowed deadline)
    let mut due: Option<(Instant, Instant)> = None;
    loop {
        let wake = due.map(|(q, m)| q.min(m));
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return Ok(()) };
                let ev = ev?;
                if ev.mask.contains(inotify::EventMask::IGNORED) {
                    // The kernel dropped a watch (its directory went away, e.g. an old
                    // ConfigMap version): forget it, so that it can be added again.
                    dirs.remove(&ev.wd);
                    continue;
                }
                let (Some(dir), Some(name)) = (dirs.get(&ev.wd), ev.name.as_ref()) else {
                    continue;
                };
                if !names.relevant(dir, name) {
                    continue;
                }
                let now = Instant::now();
                due = Some(match due {
                    Some((_, max)) => (now + QUIET, max),
                    None => (now + QUIET, now + MAX_WAIT),
                });
            }
            _ = async { if let Some(t) = wake { sleep_until(t).await } }, if wake.is_some() => {
                due = None;
                names = Names::of(path);
                names.watch(&mut watches, &mut dirs);
                let now_seen = seen_async(path).await;
                if now_seen == last {
                    continue;
                }
                match &now_seen {
                    Seen::Missing => tracing::warn!(
                        "watch_config: {} was deleted; the running apps are kept, and the file is applied when it is back",
                        path.display()
                    ),
                    Seen::NotAFile => tracing::warn!(
                        "watch_config: {} is not a regular file any more; nothing was changed",
                        path.display()
                    ),
                    Seen::Content(_) => {
                        tracing::info!("watch_config: {} changed: applying it", path.display());
                        if !ask(apply).await {
                            return Ok(());
                        }
                    }
                }
                last = now_seen;
            }
        }
    }
}

/// Asks for an apply of the current apps file and waits until it is done (the supervisor logs
/// the outcome). `false` once the supervisor is gone.
async fn ask(apply: &mpsc::Sender<ApplyMsg>) -> bool {
    let (tx, rx) = oneshot::channel();
    let req = ApplyRequest {
        file: None,
        dry_run: false,
        from_watcher: true,
    };
    if apply.send(ApplyMsg { req, reply: tx }).await.is_err() {
        return false;
    }
    match rx.await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!("watch_config: the apply was refused: {e}");
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_names_are_relevant() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("..2026_01")).unwrap();
        std::fs::write(root.join("..2026_01/apps.yaml"), "apps: []").unwrap();
        std::os::unix::fs::symlink("..2026_01", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/apps.yaml", root.join("apps.yaml")).unwrap();
        let n = Names::of(&root.join("apps.yaml"));
        assert_eq!(
            n.link_first.as_deref(),
            Some(std::ffi::OsStr::new("..data"))
        );
        assert!(n.relevant(root, std::ffi::OsStr::new("..data")));
        assert!(n.relevant(root, std::ffi::OsStr::new("..data_tmp")));
        assert!(n.relevant(root, std::ffi::OsStr::new("apps.yaml")));
        assert!(!n.relevant(root, std::ffi::OsStr::new("app.log")));
        let canon = std::fs::canonicalize(root.join("..2026_01")).unwrap();
        assert!(n.relevant(&canon, std::ffi::OsStr::new("apps.yaml")));
    }

    #[test]
    fn seen_tells_content_missing_and_directories_apart() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("apps.yaml");
        assert_eq!(seen(&p), Seen::Missing);
        std::fs::write(&p, "a").unwrap();
        let a = seen(&p);
        std::fs::write(&p, "b").unwrap();
        assert_ne!(seen(&p), a);
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert_eq!(seen(&p), Seen::NotAFile);
    }
}
