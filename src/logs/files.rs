//! Log files (`out_file`, `error_file`, `log_file`), written by one thread with pm2's naming and a
//! size-based rotation that pm2-runtime lacks.
//!
//! Invariant: a file problem is never fatal and never blocks the runtime: opening or writing
//! fails → one warning, and that file is skipped (its lines counted as lost) until it is tried
//! again, `RETRY_AFTER` later or at `reopen` (a full disk that gets room back is written again,
//! with one message saying how much was lost); the rest of the logging goes on. Files are keyed by path, so instances that share a file (`merge_logs`) share one handle
//! and whole-line chunks never interleave mid-line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::pool;
use super::work::Job;
use super::{Stream, CHANNEL_BUFFERS, ROTATE_BYTES, ROTATE_KEEP};

pub(crate) struct FileJob {
    /// Every file these bytes go to (the stream's own file and the combined `log_file`).
    pub paths: Arc<[Arc<Path>]>,
    pub data: Vec<u8>,
}

pub(crate) enum FileMsg {
    Write(Job<FileJob>),
    /// Close every file; the next write opens it again (after logrotate moved it, say) and
    /// retries the ones that failed.
    Reopen,
}

pub(crate) type FileTx = mpsc::Sender<FileMsg>;

/// pm2's per-instance name: without `merge_logs`, `-<pm_id>` goes before the extension
/// (`out.log` → `out-3.log`, `out` → `out-3`).
pub(crate) fn instance_path(path: &Path, pm_id: u32, merge_logs: bool) -> PathBuf {
    if merge_logs {
        return path.to_path_buf();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{pm_id}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{pm_id}"),
    };
    path.with_file_name(name)
}

/// Which of pmi's own output streams `path` is, if it is the very file behind fd 1 or fd 2
/// (same device and inode): `/dev/stdout`, `/proc/self/fd/2`, or the file pmi's stdout was
/// redirected to. Opening such a path again would give a second file description with its own
/// offset: every line twice, and chunks torn by the two writers. `first` is checked first (a
/// tty or `2>&1` makes both streams the same file).
pub(crate) fn console_alias(path: &Path, first: Stream) -> Option<Stream> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let is = |s: Stream| {
        let st = match s {
            Stream::Out => nix::sys::stat::fstat(io::stdout().as_fd()),
            Stream::Err => nix::sys::stat::fstat(io::stderr().as_fd()),
        };
        st.is_ok_and(|st| st.st_dev == meta.dev() && st.st_ino == meta.ino())
    };
    let second = match first {
        Stream::Out => Stream::Err,
        Stream::Err => Stream::Out,
    };
    [first, second].into_iter().find(|s| is(*s))
}

pub(crate) fn spawn_file_writer() -> FileTx {
    let (tx, mut rx) = mpsc::channel::<FileMsg>(CHANNEL_BUFFERS);
    let spawned = std::thread::Builder::new()
        .name("pmi-files".into())
        .spawn(move || {
            let mut files = FileSet::new(ROTATE_BYTES, ROTATE_KEEP);
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    FileMsg::Write(job) => {
                        for path in job.data.paths.iter() {
                            files.write(path, &job.data.data);
                        }
                        pool::put(job.into_data().data);
                    }
                    FileMsg::Reopen => files.reopen(),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the log file writer: {e}; log files are not written");
    }
    tx
}

/// A file that failed (full disk, removed directory, permissions) is tried again after this.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The open log files and their rotation state.
pub(crate) struct FileSet {
    files: HashMap<Arc<Path>, OpenFile>,
    rotate_bytes: u64,
    keep: usize,
    retry_after: Duration,
}

enum OpenFile {
    Open {
        file: File,
        size: u64,
        /// Only regular files rotate (never `/dev/stdout` or a fifo).
        rotates: bool,
    },
    /// Failed and reported; skipped (its bytes counted) until `retry_at` or `reopen`.
    Failed { retry_at: Instant, lost: u64 },
}

impl FileSet {
    pub fn new(rotate_bytes: u64, keep: usize) -> FileSet {
        FileSet {
            files: HashMap::new(),
            rotate_bytes,
            keep,
            retry_after: RETRY_AFTER,
        }
    }

    #[cfg(test)]
    fn retrying_after(mut self, d: Duration) -> FileSet {
        self.retry_after = d;
        self
    }

    pub fn reopen(&mut self) {
        self.files.clear();
    }

    pub fn write(&mut self, path: &Arc<Path>, data: &[u8]) {
        let now = Instant::now();
        let retry = now + self.retry_after;
        let entry = self
            .files
            .entry(path.clone())
            .or_insert_with(|| opened(path, open(path), "open", retry));
        if let OpenFile::Failed { retry_at, lost } = entry {
            if now < *retry_at {
                *lost += data.len() as u64;
                return;
            }
            match open(path) {
                Ok((file, size, rotates)) => {
                    tracing::info!(
                        "log file {} is written again ({} bytes were lost while it failed)",
                        path.display(),
                        *lost
                    );
                    *entry = OpenFile::Open {
                        file,
                        size,
                        rotates,
                    };
                }
                Err(_) => {
                    *retry_at = retry;
                    *lost += data.len() as u64;
                    return;
                }
            }
        }
        let OpenFile::Open {
            file,
            size,
            rotates,
        } = entry
        else {
            return;
        };
        if let Err(e) = file.write_all(data) {
            tracing::warn!(
                "cannot write log file {}: {e}; not writing it, trying again in {} s",
                path.display(),
                self.retry_after.as_secs()
            );
            *entry = OpenFile::Failed {
                retry_at: retry,
                lost: data.len() as u64,
            };
            return;
        }
        *size += data.len() as u64;
        // Rotation happens between chunks, so a file can pass the limit by at most one chunk,
        // and a line is never cut across two files.
        if *rotates && *size > self.rotate_bytes {
            *entry = opened(
                path,
                rotate(path, self.keep).and_then(|()| open(path)),
                "rotate",
                retry,
            );
        }
    }
}

fn open(path: &Path) -> io::Result<(File, u64, bool)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let meta = file.metadata()?;
    // Only a name that is itself a regular file rotates: renaming a symlink (`/dev/stdout` →
    // `/proc/self/fd/1` when stdout is a file) would move the link away and leave a plain file.
    let plain = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
    Ok((file, meta.len(), meta.is_file() && plain))
}

/// `f` → `f.1` → `f.2` … → `f.<keep>`; the oldest is replaced.
fn rotate(path: &Path, keep: usize) -> io::Result<()> {
    let numbered = |n: usize| {
        let mut s = path.as_os_str().to_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    };
    for n in (1..keep).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    std::fs::rename(path, numbered(1))
}

/// The state of a file after an open (or a rotation, which reopens): a failure is reported once
/// and the file is skipped until `retry_at`.
fn opened(
    path: &Path,
    r: std::io::Result<(File, u64, bool)>,
    what: &str,
    retry_at: Instant,
) -> OpenFile {
    match r {
        Ok((file, size, rotates)) => OpenFile::Open {
            file,
            size,
            rotates,
        },
        Err(e) => {
            tracing::warn!(
                "cannot {what} log file {}: {e}; not writing it for now",
                path.display()
            );
            OpenFile::Failed { retry_at, lost: 0 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm2_suffix_rules() {
        let p = Path::new("/var/log/app/out.log");
        assert_eq!(instance_path(p, 3, true), p);
        assert_eq!(
            instance_path(p, 3, false),
            Path::new("/var/log/app/out-3.log")
        );
        assert_eq!(
            instance_path(Path::new("/l/out"), 0, false),
            Path::new("/l/out-0")
        );
        assert_eq!(
            instance_path(Path::new("/l/a.b.txt"), 12, false),
            Path::new("/l/a.b-12.txt")
        );
        assert_eq!(
            instance_path(Path::new("/l/.hidden"), 1, false),
            Path::new("/l/.hidden-1")
        );
    }

    #[test]
    fn creates_directories_and_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path: Arc<Path> = dir.path().join("a/b/out.log").into();
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(&path, "old\n").expect("seed");
        std::fs::remove_dir_all(dir.path().join("a")).expect("rm");
        let mut set = FileSet::new(1 << 20, 3);
        set.write(&path, b"one\n");
        set.write(&path, b"two\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\ntwo\n");
        // Reopening appends to what is there.
        set.reopen();
        set.write(&path, b"three\n");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "one\ntwo\nthree\n"
        );
    }

    #[test]
    fn rotates_by_size_keeping_some() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path: Arc<Path> = dir.path().join("out.log").into();
        let mut set = FileSet::new(10, 3);
        for i in 0..10 {
            set.write(&path, format!("line {i:02}\n").as_bytes());
            set.write(&path, b"more\n");
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        // Each file got two chunks (8 + 5 bytes > 10), then rotated: the current file is empty,
        // .1 is the newest full one, .3 the oldest kept, .4 never exists.
        assert_eq!(read("out.log"), "");
        assert_eq!(read("out.log.1"), "line 09\nmore\n");
        assert_eq!(read("out.log.2"), "line 08\nmore\n");
        assert_eq!(read("out.log.3"), "line 07\nmore\n");
        assert!(!dir.path().join("out.log.4").exists());
    }

    #[test]
    fn open_failure_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be: open fails.
        let bad: Arc<Path> = dir.path().into();
        let good: Arc<Path> = dir.path().join("ok.log").into();
        let mut set = FileSet::new(1 << 20, 3);
        set.write(&bad, b"lost\n");
        set.write(&bad, b"lost\n");
        set.write(&good, b"kept\n");
        assert_eq!(std::fs::read_to_string(&good).expect("read"), "kept\n");
    }

    #[test]
    fn a_failed_file_is_tried_again_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A plain file where the log's directory should be: open fails until it is removed.
        std::fs::write(dir.path().join("d"), "").expect("seed");
        let path: Arc<Path> = dir.path().join("d/out.log").into();
        let mut set = FileSet::new(1 << 20, 3).retrying_after(Duration::from_millis(50));
        set.write(&path, b"lost 1\n");
        std::fs::remove_file(dir.path().join("d")).expect("rm");
        // Within the retry delay the file is still skipped…
        set.write(&path, b"lost 2\n");
        assert!(!path.exists());
        // …after it, the next write opens it again.
        std::thread::sleep(Duration::from_millis(60));
        set.write(&path, b"kept\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "kept\n");
    }

    /// A real full file system (a 64 KiB tmpfs; needs root, else it says so and passes): the
    /// log file that hit ENOSPC is written again once there is room, without SIGUSR2.
    #[test]
    fn a_full_disk_is_retried_once_it_has_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=64k",
                "pmi-test",
                &mnt.to_string_lossy(),
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
            return;
        }
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _unmount = Unmount(mnt);
        let filler = mnt.join("filler");
        let path: Arc<Path> = mnt.join("out.log").into();
        let mut set = FileSet::new(1 << 20, 3).retrying_after(Duration::from_millis(50));
        set.write(&path, b"first\n");
        // Fill the rest of the file system.
        let _ = std::fs::write(&filler, vec![b'x'; 128 * 1024]);
        let chunk = vec![b'y'; 8 * 1024];
        for _ in 0..16 {
            set.write(&path, &chunk);
        }
        assert!(matches!(
            set.files.get(&path),
            Some(OpenFile::Failed { .. })
        ));
        std::fs::remove_file(&filler).expect("rm filler");
        std::thread::sleep(Duration::from_millis(60));
        set.write(&path, b"after\n");
        let text = std::fs::read(&path).expect("read");
        assert!(text.starts_with(b"first\n"));
        assert!(
            text.ends_with(b"after\n"),
            "not written again after room came back"
        );
    }

    #[test]
    fn symlinks_do_not_rotate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("real.log");
        let link: Arc<Path> = dir.path().join("link.log").into();
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let mut set = FileSet::new(4, 3);
        set.write(&link, b"12345\n");
        set.write(&link, b"67890\n");
        let meta = std::fs::symlink_metadata(&link).expect("link kept");
        assert!(meta.file_type().is_symlink());
        assert!(!dir.path().join("link.log.1").exists());
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "12345\n67890\n"
        );
    }

    #[test]
    fn devices_do_not_rotate() {
        let null: Arc<Path> = Path::new("/dev/null").into();
        let mut set = FileSet::new(1, 3);
        set.write(&null, b"xx\n");
        set.write(&null, b"xx\n");
        assert!(Path::new("/dev/null").exists());
        assert!(!Path::new("/dev/null.1").exists());
    }
}
