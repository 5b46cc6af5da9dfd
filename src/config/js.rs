//! JavaScript apps files (`ecosystem.config.js`, `.cjs`, `.mjs`) → positioned tree, by running
//! `node`.
//!
//! A JS apps file is a program (it reads `process.env`, calls `path.join`, requires dotenv), so
//! only a JavaScript engine can evaluate it. pmi runs `node` as a child that `require`s the file
//! and prints the exported object as JSON after a marker line (the file itself may print to
//! stdout). RegExp values (pm2 allows them in `ignore_watch`) are printed as their source;
//! functions are dropped, as JSON does.
//!
//! Positions: node cannot say where a value came from, so after parsing the printed JSON each
//! key is looked up in the source text (starting from where its parent object was found). The
//! line and column are therefore those of the key in the file when it is written literally, and
//! fall back to the enclosing object's (or line 1) when it was computed.
//!
//! Process rule: pmi runs as PID 1 with a global `waitpid(-1)` reaper, and `pmi apply` loads
//! files while it runs. node is therefore started by `os::helper`, as a child whose exit the
//! reaper cannot see (never std's `Child::wait`, never tokio::process).

use std::path::Path;
use std::time::Duration;

use super::interp;
use super::json;
use super::tree::{Node, Parsed, Pos, ReadIssue, Value};

/// How long node may take to evaluate a file before pmi gives up on it.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) const MARK: &str = "\u{1}PMI-JSON\u{1}";
pub(super) const MARK_ERR: &str = "\u{1}PMI-ERROR\u{1}";
const MARK_ENV: &str = "\u{1}PMI-ENV\u{1}";

/// Runs in node: `require` the file (falling back to `import()` for ES modules), print the
/// export as JSON after MARK, or the error after MARK_ERR; then exit, even if the file left
/// timers or sockets open.
const LOADER: &str = r#"
const file = process.argv[1];
const MARK = '\u0001PMI-JSON\u0001', MARK_ERR = '\u0001PMI-ERROR\u0001', MARK_ENV = '\u0001PMI-ENV\u0001';
// Records which variables of this machine's environment the file reads (for `pmi convert`).
const envRead = new Set(); let envAll = false;
const realEnv = process.env;
const noteKey = (t, k) => { if (typeof k === 'string' && Object.prototype.hasOwnProperty.call(t, k)) envRead.add(k); };
process.env = new Proxy(realEnv, {
  get(t, k) { noteKey(t, k); return Reflect.get(t, k); },
  has(t, k) { noteKey(t, k); return Reflect.has(t, k); },
  getOwnPropertyDescriptor(t, k) { noteKey(t, k); return Reflect.getOwnPropertyDescriptor(t, k); },
  ownKeys(t) { envAll = true; return Reflect.ownKeys(t); },
});
function done(m) {
  if (m && m.apps === undefined && m.default !== undefined) m = m.default;
  let json;
  try {
    json = JSON.stringify(m === undefined ? null : m, (k, x) =>
      x instanceof RegExp ? x.source : (typeof x === 'bigint' ? x.toString() : x));
  } catch (e) { return fail(e); }
  const env = JSON.stringify({ read: [...envRead], all: envAll });
  process.stdout.write('\n' + MARK_ENV + env + '\n' + MARK + json + '\n', () => process.exit(0));
}
function fail(e) {
  const o = e instanceof Error
    ? { name: e.name, code: e.code, message: String(e.message), stack: String(e.stack) }
    : { name: 'Error', message: 'the file threw ' + String(e), stack: '' };
  process.stdout.write('\n' + MARK_ERR + JSON.stringify(o) + '\n', () => process.exit(3));
}
let loaded, ok = false;
try { loaded = require(file); ok = true; } catch (e) {
  if (e && e.code === 'ERR_REQUIRE_ESM') import(require('url').pathToFileURL(file).href).then(done, fail);
  else fail(e);
}
if (ok) Promise.resolve(loaded).then(done, fail);
"#;

/// Which variables of this machine's environment a JS file read while it was evaluated.
#[derive(Debug, Default, Clone)]
pub struct EnvReads {
    /// Names read (only those set here).
    pub keys: Vec<String>,
    /// The whole environment was enumerated (`{...process.env}`, `Object.keys`).
    pub all: bool,
}

/// Evaluates a JS apps file with node, recording the environment variables it read. `cwd` is
/// the directory pmi was started in (the file's `process.cwd()`, as under pm2).
pub fn parse_recording(
    file: &Path,
    source: &str,
    cwd: &Path,
) -> Result<(Parsed, EnvReads), ReadIssue> {
    let path_var = std::env::var("PATH").unwrap_or_else(|_| interp::DEFAULT_PATH.to_string());
    let Some(node) = interp::which("node", &path_var, cwd) else {
        return Err(ReadIssue {
            pos: Pos::default(),
            message: format!(
                "a JavaScript apps file needs `node`, which is not on PATH; install Node.js in the image, or run `pmi convert {}` once on a machine with node and use the YAML it prints",
                file.display()
            ),
        });
    };
    // Canonical, so that node's stack traces name the file exactly as we search for it.
    let joined = cwd.join(file);
    let abs = std::fs::canonicalize(&joined).unwrap_or(joined);
    let out = run(&node, &abs, cwd)?;
    interpret(&out.stdout, &abs, source).unwrap_or_else(|| {
        let tail: String = out.stderr.trim().lines().last().unwrap_or("").to_string();
        Err(ReadIssue {
            pos: Pos::new(1, 1),
            message: format!(
                "node could not evaluate the file (exit {}): {tail}",
                out.status
            ),
        })
    })
}

/// What node printed for the file at `abs` (whose text is `source`): the apps, placed at their
/// positions in the source, and the variables read; or the located error. `None` when it
/// printed neither mark. Kept apart from `run` so that the fuzz targets reach it.
pub(super) fn interpret(
    stdout: &str,
    abs: &Path,
    source: &str,
) -> Option<Result<(Parsed, EnvReads), ReadIssue>> {
    let printed = |mark: &str| {
        stdout
            .rfind(mark)
            .map(|i| stdout[i + mark.len()..].trim_end().to_string())
    };
    if let Some(err) = printed(MARK_ERR) {
        return Some(Err(explain_error(&err, abs, source)));
    }
    let json_text = printed(MARK)?;
    let mut parsed = match json::parse(&json_text) {
        Ok(p) => p,
        Err(e) => {
            return Some(Err(ReadIssue {
                pos: Pos::new(1, 1),
                message: format!("node printed something that is not JSON: {}", e.message),
            }))
        }
    };
    let loc = Locator::new(source);
    let start = loc.export_offset();
    loc.place(&mut parsed.root, start);
    // Repeated keys cannot occur in what JSON.stringify prints.
    parsed.warnings.clear();
    let reads = stdout
        .rfind(MARK_ENV)
        .and_then(|i| stdout[i + MARK_ENV.len()..].lines().next())
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| EnvReads {
            keys: v["read"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            all: v["all"].as_bool().unwrap_or(false),
        })
        .unwrap_or_default();
    Some(Ok((parsed, reads)))
}

/// The most of node's output kept (the apps as JSON): four times the largest apps file.
const OUTPUT_CAP: u64 = 4 * super::tree::MAX_FILE_BYTES;

struct Output {
    stdout: String,
    stderr: String,
    status: String,
}

/// Runs node with a time limit (see the module doc for how it escapes the reaper).
fn run(node: &Path, file: &Path, cwd: &Path) -> Result<Output, ReadIssue> {
    let args = [
        std::ffi::OsString::from("-e"),
        LOADER.into(),
        file.as_os_str().to_os_string(),
    ];
    match crate::os::helper::run_captured(node, &args, cwd, TIMEOUT, OUTPUT_CAP) {
        Ok(c) => Ok(Output {
            stdout: c.stdout,
            stderr: c.stderr,
            status: match c.status {
                crate::exit::ExitStatus::Code(n) => n.to_string(),
                crate::exit::ExitStatus::Signal(_) => "by a signal".to_string(),
            },
        }),
        Err(crate::os::helper::HelperError::Timeout(_)) => Err(ReadIssue {
            pos: Pos::new(1, 1),
            message: format!(
                "node did not finish evaluating the file within {} s (does it start a server or wait for input?); run `pmi convert` once and use the YAML",
                TIMEOUT.as_secs()
            ),
        }),
        Err(e) => Err(ReadIssue {
            pos: Pos::new(1, 1),
            message: format!("cannot run {}: {e}", node.display()),
        }),
    }
}

/// Turns node's error report into a located, actionable message.
fn explain_error(report: &str, file: &Path, source: &str) -> ReadIssue {
    let v: serde_json::Value = serde_json::from_str(report).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let (name, code, message, stack) = (s("name"), s("code"), s("message"), s("stack"));
    let first_line = message.lines().next().unwrap_or("").to_string();
    let loc = Locator::new(source);
    let mut pos = stack_pos(&stack, file).unwrap_or(Pos::new(1, 1));
    let dir = file
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();

    let text = if let Some(module) = missing_module(&code, &first_line) {
        if let Some(o) = loc.find_literal(&module, 0) {
            pos = loc.pos(o);
        }
        if module.starts_with('.') || module.starts_with('/') {
            format!("the file requires '{module}', which does not exist next to it; add that file, or run `pmi convert` where it exists and use the YAML")
        } else {
            format!("the file requires the node module '{module}', which is not installed: run `npm install {module}` in {dir}, or run `pmi convert` once where it is installed and use the YAML")
        }
    } else if first_line.contains("Cannot use import statement outside a module")
        || first_line.contains("Unexpected token 'export'")
    {
        format!("the file uses ES module syntax (import/export) but node loads it as CommonJS: use `module.exports = {{...}}`, rename it to .mjs, or run `pmi convert` and use the YAML ({name}: {first_line})")
    } else if name == "SyntaxError" {
        format!("JavaScript syntax error: {first_line}")
    } else {
        format!("evaluating the file with node failed: {name}: {first_line}")
    };
    ReadIssue { pos, message: text }
}

/// `Cannot find module 'x'` / `Cannot find package 'x'` → `x`.
fn missing_module(code: &str, msg: &str) -> Option<String> {
    if code != "MODULE_NOT_FOUND" && code != "ERR_MODULE_NOT_FOUND" {
        return None;
    }
    let start = msg.find('\'')? + 1;
    let len = msg[start..].find('\'')?;
    Some(msg[start..start + len].to_string())
}

/// The first `file:line[:col]` of the file itself in a stack trace.
fn stack_pos(stack: &str, file: &Path) -> Option<Pos> {
    let f = file.display().to_string();
    let mut rest = stack;
    while let Some(i) = rest.find(&f) {
        let after = &rest[i + f.len()..];
        if let Some(nums) = after.strip_prefix(':') {
            let mut parts = nums
                .split(|c: char| !c.is_ascii_digit())
                .take(2)
                .map(|n| n.parse::<usize>().ok());
            if let Some(Some(line)) = parts.next() {
                let col = if nums
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .starts_with(':')
                {
                    parts.next().flatten().unwrap_or(1)
                } else {
                    1
                };
                return Some(Pos::new(line, col));
            }
        }
        rest = after;
    }
    None
}

/// Finds where keys and apps were written in the JS source.
struct Locator<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Locator { text, line_starts }
    }

    fn pos(&self, offset: usize) -> Pos {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let col = self.text[start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        Pos::new(line.max(1), col)
    }

    /// Where the exported value starts: `module.exports`, `export default`, or the file start.
    fn export_offset(&self) -> usize {
        ["module.exports", "export default"]
            .iter()
            .find_map(|m| self.text.find(m))
            .unwrap_or(0)
    }

    /// A string literal `'s'`, `"s"` or `` `s` `` from `from` on.
    fn find_literal(&self, s: &str, from: usize) -> Option<usize> {
        ['\'', '"', '`']
            .iter()
            .filter_map(|q| {
                let lit = format!("{q}{s}{q}");
                self.text.get(from..)?.find(&lit).map(|i| from + i)
            })
            .min()
    }

    /// A property key `k:` / `'k':` / `"k":` from `from` on; returns the key's offset and the
    /// offset of its value.
    fn find_key(&self, key: &str, from: usize) -> Option<(usize, usize)> {
        let hay = self.text.get(from..)?;
        let bytes = self.text.as_bytes();
        for (i, _) in hay.match_indices(key) {
            let at = from + i;
            let mut start = at;
            let mut end = at + key.len();
            if start > 0 && matches!(bytes[start - 1], b'\'' | b'"') {
                start -= 1;
                if bytes.get(end) == Some(&bytes[start]) {
                    end += 1;
                } else {
                    continue;
                }
            }
            let before_ok =
                start == 0 || !is_ident_byte(bytes[start - 1]) && bytes[start - 1] != b'.';
            let after_ok = bytes.get(end).is_none_or(|b| !is_ident_byte(*b));
            if !(before_ok && after_ok) {
                continue;
            }
            let rest = &self.text[end..];
            let trimmed = rest.trim_start();
            if let Some(v) = trimmed.strip_prefix(':') {
                let value_at = self.text.len() - v.trim_start().len();
                return Some((start, value_at));
            }
        }
        None
    }

    /// Gives `node` (found at `offset`) and its children their source positions.
    fn place(&self, node: &mut Node, offset: usize) {
        node.pos = self.pos(offset);
        match &mut node.value {
            Value::Map(entries) => {
                for e in entries.iter_mut() {
                    match self.find_key(&e.key, offset) {
                        Some((k, v)) => {
                            e.key_pos = self.pos(k);
                            self.place(&mut e.value, v);
                        }
                        None => {
                            e.key_pos = node.pos;
                            self.place(&mut e.value, offset);
                        }
                    }
                }
            }
            Value::Seq(items) => {
                // Apps are found by their `name` literal, one after the other.
                let mut cursor = offset;
                for item in items.iter_mut() {
                    let start = item
                        .get("name")
                        .and_then(|e| e.value.as_str())
                        .and_then(|n| self.find_literal(n, cursor))
                        .map(|lit| {
                            cursor = lit + 1;
                            self.text[..lit].rfind('{').unwrap_or(lit)
                        })
                        .unwrap_or(offset);
                    self.place(item, start);
                }
            }
            _ => {}
        }
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn node_available() -> bool {
        interp::which(
            "node",
            &std::env::var("PATH").unwrap_or_default(),
            Path::new("/"),
        )
        .is_some()
    }

    fn load(src: &str) -> Result<Parsed, ReadIssue> {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("eco.config.js");
        std::fs::write(&f, src).unwrap();
        parse_recording(&f, src, t.path()).map(|(p, _)| p)
    }

    #[test]
    fn evaluates_and_locates() {
        if !node_available() {
            eprintln!("node not on PATH: skipped");
            return;
        }
        let src = "const x = 2;\nconsole.log('noise');\nmodule.exports = {\n  apps: [{\n    name: 'api',\n    instances: x * 2,\n    ignore_watch: [/node_modules/],\n  }, {\n    name: \"w\",\n    'script': 'w.js',\n  }],\n};\n";
        let p = load(src).unwrap();
        let apps = &p.root.get("apps").unwrap().value;
        let Value::Seq(l) = &apps.value else { panic!() };
        let inst = l[0].get("instances").unwrap();
        assert_eq!(inst.value.value, Value::Num(4.0));
        assert_eq!(inst.key_pos, Pos::new(6, 5));
        assert_eq!(inst.value.pos, Pos::new(6, 16));
        let iw = &l[0].get("ignore_watch").unwrap().value;
        assert_eq!(iw.to_json(), serde_json::json!(["node_modules"]));
        assert_eq!(l[1].get("script").unwrap().key_pos, Pos::new(10, 5));
    }

    #[test]
    fn missing_module_is_explained() {
        if !node_available() {
            return;
        }
        let e = load("require('dotenv').config();\nmodule.exports = {apps: []};\n").unwrap_err();
        assert!(e.message.contains("npm install dotenv"), "{}", e.message);
        assert!(e.message.contains("pmi convert"));
        assert_eq!(e.pos.line, 1);
    }

    #[test]
    fn syntax_and_runtime_errors_are_located() {
        if !node_available() {
            return;
        }
        let e =
            load("module.exports = {\n  apps: [{ name: 'a'\n    script: 'x' }]\n};\n").unwrap_err();
        assert!(e.message.contains("syntax error"), "{}", e.message);
        assert_eq!(e.pos.line, 3);
        let e = load(
            "const p = require('path');\nconst d = p.join(undefined);\nmodule.exports = {};\n",
        )
        .unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(e.message.contains("TypeError"), "{}", e.message);
    }

    #[test]
    fn a_file_that_never_ends_times_out() {
        if !node_available() {
            return;
        }
        let t0 = Instant::now();
        let e = load("while (true) {}\n").unwrap_err();
        assert!(e.message.contains("did not finish"), "{}", e.message);
        assert!(t0.elapsed() < TIMEOUT + Duration::from_secs(3));
    }

    #[test]
    fn stack_positions() {
        let f = Path::new("/x/eco.js");
        assert_eq!(stack_pos("/x/eco.js:3\n  code", f), Some(Pos::new(3, 1)));
        assert_eq!(
            stack_pos("at Object.<anonymous> (/x/eco.js:12:7)", f),
            Some(Pos::new(12, 7))
        );
        assert_eq!(stack_pos("nothing", f), None);
    }
}
