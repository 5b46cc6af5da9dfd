//! Interpreters and PATH look-ups.
//!
//! Invariant: look-ups use the PATH the app itself will get (pmi's PATH, overridden by the app's
//! `env.PATH`), so what `pmi check` finds is what the spawn finds.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The PATH used when pmi's environment has none (what sh and execvp assume).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds an executable: a name with a `/` is a path (relative to `cwd`); otherwise each PATH
/// directory is tried in order.
pub fn which(name: &str, path_var: &str, cwd: &Path) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let p = cwd.join(name);
        return is_executable(&p).then_some(p);
    }
    path_var
        .split(':')
        .map(|d| {
            if d.is_empty() {
                cwd.to_path_buf()
            } else {
                cwd.join(d)
            }
        })
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The interpreter pm2 would pick for a script by its extension; `None` runs the file itself.
/// `.sh` prefers bash (as pm2) but falls back to sh, which every image has; `.py` prefers python3.
pub fn by_extension(script: &str, path_var: &str, cwd: &Path) -> Option<String> {
    let ext = Path::new(script)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)?;
    let first_found = |names: &[&str]| -> String {
        names
            .iter()
            .find(|n| which(n, path_var, cwd).is_some())
            .unwrap_or(&names[0])
            .to_string()
    };
    Some(match ext.as_str() {
        "js" | "cjs" | "mjs" | "ts" | "mts" | "cts" | "tsx" => "node".to_string(),
        "py" => first_found(&["python3", "python"]),
        "sh" => {
            if which("bash", path_var, cwd).is_some() {
                "bash".to_string()
            } else {
                "sh".to_string()
            }
        }
        "bash" => "bash".to_string(),
        "rb" => "ruby".to_string(),
        "php" => "php".to_string(),
        "pl" => "perl".to_string(),
        _ => return None,
    })
}

/// What to install to get an interpreter, for the "not found" message.
pub fn install_hint(interp: &str) -> String {
    let base = Path::new(interp)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(interp);
    let pkg = match base {
        "node" | "nodejs" => "Node.js (e.g. apt-get install nodejs, or a node base image)",
        "python3" | "python" => "Python 3 (e.g. apt-get install python3)",
        "bash" => "bash (e.g. apk add bash)",
        "ruby" => "Ruby (e.g. apt-get install ruby)",
        "php" => "PHP (e.g. apt-get install php-cli)",
        "perl" => "Perl (e.g. apt-get install perl)",
        "bun" => "Bun",
        "deno" => "Deno",
        _ => "it",
    };
    format!("install {pkg} in the image, or set `interpreter` to a path that exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn which_searches_path_in_order_and_needs_x_bit() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let b = t.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        exe(&b, "tool");
        std::fs::write(a.join("tool"), "not executable").unwrap();
        let path = format!("{}:{}", a.display(), b.display());
        assert_eq!(which("tool", &path, Path::new("/")), Some(b.join("tool")));
        assert_eq!(which("missing", &path, Path::new("/")), None);
        assert_eq!(
            which("./b/tool", "", t.path()),
            Some(t.path().join("./b/tool"))
        );
    }

    #[test]
    fn extensions() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path();
        let path = bin.display().to_string();
        assert_eq!(by_extension("a.js", &path, bin).as_deref(), Some("node"));
        assert_eq!(by_extension("a.MJS", &path, bin).as_deref(), Some("node"));
        assert_eq!(by_extension("a.rb", &path, bin).as_deref(), Some("ruby"));
        assert_eq!(by_extension("a.sh", &path, bin).as_deref(), Some("sh"));
        exe(bin, "bash");
        assert_eq!(by_extension("a.sh", &path, bin).as_deref(), Some("bash"));
        assert_eq!(by_extension("a.py", &path, bin).as_deref(), Some("python3"));
        exe(bin, "python");
        assert_eq!(by_extension("a.py", &path, bin).as_deref(), Some("python"));
        assert_eq!(by_extension("server", &path, bin), None);
        assert_eq!(by_extension("a.bin", &path, bin), None);
    }
}
