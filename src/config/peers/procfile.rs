//! Procfile (foreman, overmind, Heroku): `name: command` lines → one app each.
//!
//! Invariant: every non-blank, non-`#` line is a process or a located error. Each process gets
//! the `PORT` foreman gives it: 5000 for the first process type, +100 for each next one.

use super::{AppOut, Diags};
use crate::config::tree::Pos;

/// foreman's defaults: `--port 5000`, and 100 ports per process type.
const BASE_PORT: u32 = 5000;
const PORT_STEP: u32 = 100;
/// A budget: a Procfile with more process types than this is not hand-written.
const MAX_PROCESSES: usize = 500;

pub fn convert(text: &str, d: &mut Diags) -> Vec<AppOut> {
    let mut apps = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        // Windows line endings: the `\r` is not part of the command.
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let pos = Pos::new(line_no, 1);
        let Some((name, command)) = line.split_once(':') else {
            d.error(
                pos,
                None,
                None,
                format!("'{trimmed}' is not a process line; write `name: command`, or comment it out with `#`"),
            );
            continue;
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            d.error(
                pos,
                None,
                None,
                format!(
                    "'{name}' is not a process name: use letters, digits, '-' and '_' (as foreman)"
                ),
            );
            continue;
        }
        let command = command.trim();
        if command.is_empty() {
            let col = line.find(':').map_or(1, |c| c + 2);
            d.error(
                Pos::new(line_no, col),
                Some(name),
                None,
                "the command is empty; write the command after `name:`",
            );
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
            d.error(
                pos,
                Some(name),
                None,
                format!("process '{name}' is already defined on line {first}; give each process its own name"),
            );
            continue;
        }
        if apps.len() >= MAX_PROCESSES {
            d.error(
                pos,
                None,
                None,
                format!("more than {MAX_PROCESSES} processes; split the file"),
            );
            break;
        }
        let port = BASE_PORT + PORT_STEP * apps.len() as u32;
        seen.push((name.to_string(), line_no));
        let mut app = AppOut::new(name);
        app.shell_command(command);
        app.env("PORT", &port.to_string());
        if name == "release" {
            // Heroku's release phase: a one-off job (migrations) per deploy, not a service.
            app.set("autorestart", false);
            d.warn(pos, Some(name), None, "Heroku runs `release` once per deploy: pmi runs it once at start (autorestart: false); to hold the others until it succeeds, give them `depends_on: [{app: release, condition: completed}]`");
        }
        apps.push(app);
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::super::{convert_text, Peer};
    use std::path::Path;

    fn conv(text: &str) -> Result<String, Vec<String>> {
        convert_text(Path::new("Procfile"), text, Peer::Procfile)
            .map(|c| c.yaml)
            .map_err(|e| e.diagnostics.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn ports_follow_foreman_and_comments_and_crlf_are_handled() {
        let y = conv("# web first\r\nweb: bundle exec puma\r\n\r\nworker: bin/jobs\r\nclock: ./clock.sh --every 5\r\n").unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
        let apps = v["apps"].as_sequence().unwrap();
        assert_eq!(apps.len(), 3);
        assert_eq!(apps[0]["name"], "web");
        assert_eq!(apps[0]["script"], "bundle exec puma");
        assert_eq!(apps[0]["env"]["PORT"], "5000");
        assert_eq!(apps[1]["env"]["PORT"], "5100");
        assert_eq!(apps[2]["env"]["PORT"], "5200");
        assert_eq!(apps[2]["script"], "./clock.sh --every 5");
        assert!(!y.contains('\r'));
    }

    #[test]
    fn bad_lines_are_located_errors() {
        let errs =
            conv("web: a\nweb: b\nempty:   \nnot a process line\nbad name: x\n").unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("Procfile:2:1: app 'web': process 'web' is already defined on line 1"),
            "{all}"
        );
        assert!(
            all.contains("Procfile:3:7: app 'empty': the command is empty"),
            "{all}"
        );
        assert!(
            all.contains("Procfile:4:1: 'not a process line' is not a process line"),
            "{all}"
        );
        assert!(
            all.contains("Procfile:5:1: 'bad name' is not a process name"),
            "{all}"
        );
    }

    #[test]
    fn the_release_process_runs_once() {
        let c = convert_text(
            Path::new("Procfile"),
            "web: ./web\nrelease: ./migrate\n",
            Peer::Procfile,
        )
        .unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&c.yaml).unwrap();
        assert_eq!(v["apps"][1]["autorestart"], false);
        assert!(v["apps"][0].get("autorestart").is_none());
        assert!(
            c.warnings[0]
                .to_string()
                .starts_with("Procfile:2:1: app 'release'"),
            "{}",
            c.warnings[0]
        );
    }

    #[test]
    fn an_empty_procfile_is_an_error() {
        let errs = conv("# nothing\n\n").unwrap_err();
        assert!(errs[0].contains("no process found"), "{errs:?}");
    }
}
