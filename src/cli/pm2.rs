//! pm2 verbs that pmi does not have (`ps`, `delete`, `jlist`, …): a user's hands type them, and
//! without this they would be read as the name of an apps file ("cannot read the apps file:
//! ps"). Each gets "did you mean …" with pmi's verb, or says why pmi has none; exit 2.
//!
//! Invariant: only names that are pm2 verbs and not pmi verbs are listed here; a file with such
//! a name still runs with `pmi run NAME`.

use std::ffi::OsString;

/// The hint for `pmi <pm2 verb> [ARGS]`, if the first argument is one.
pub fn hint(argv: &[OsString]) -> Option<String> {
    let verb = argv.get(1)?.to_str()?;
    let target = argv
        .get(2)
        .and_then(|a| a.to_str())
        .filter(|a| !a.starts_with('-'))
        .unwrap_or("all");
    let advice = match verb {
        "ps" | "l" => "did you mean `pmi status`?".to_string(),
        "jlist" | "prettylist" => "did you mean `pmi status --json`?".to_string(),
        "show" | "info" | "desc" => format!("did you mean `pmi describe {target}`?"),
        "delete" | "del" => format!(
            "did you mean `pmi stop {target}`? pmi keeps the apps of its file (stopped apps stay listed; remove an app from the file to drop it)"
        ),
        "dashboard" => "did you mean `pmi monit`?".to_string(),
        "flush" | "reloadLogs" => {
            "not supported: pmi writes app output to the container log, and keeps only a bounded recent buffer for `pmi logs`; there is nothing to flush (log files of `out_file` reopen on SIGUSR2)".to_string()
        }
        "startOrRestart" | "startOrGracefulReload" => {
            let file = argv.get(2).and_then(|a| a.to_str()).unwrap_or("FILE");
            format!("did you mean `pmi apply {file}`? (pm2's `startOrReload` works too)")
        }
        "kill" => "did you mean `pmi stop all`? pmi is the container's PID 1: stop the container to stop pmi".to_string(),
        "save" | "resurrect" | "startup" | "unstartup" => {
            "not needed: the apps file is what pmi runs every time the container starts".to_string()
        }
        _ => return None,
    };
    Some(format!(
        "pmi: `{verb}` is a pm2 command; {advice}\n(to run an apps file named {verb:?}: `pmi run {verb}`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(args: &[&str]) -> Option<String> {
        let v: Vec<OsString> = std::iter::once("pmi")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        hint(&v)
    }

    #[test]
    fn pm2_verbs_get_a_hint() {
        assert!(h(&["ps"]).unwrap().contains("`pmi status`"));
        assert!(h(&["delete", "web"]).unwrap().contains("`pmi stop web`"));
        assert!(h(&["jlist"]).unwrap().contains("`pmi status --json`"));
        assert!(h(&["show", "api"]).unwrap().contains("`pmi describe api`"));
        assert!(h(&["flush"]).unwrap().contains("not supported"));
        assert!(h(&["dashboard"]).unwrap().contains("pmi monit"));
        // pmi verbs now: no hint.
        assert_eq!(h(&["monit"]), None);
        assert!(h(&["startOrRestart", "x.json"])
            .unwrap()
            .contains("`pmi apply x.json`"));
        // A pmi verb now: `pmi startOrReload FILE` is `pmi apply FILE`.
        assert_eq!(h(&["startOrReload", "x.json"]), None);
    }

    #[test]
    fn files_and_pmi_verbs_are_left_alone() {
        assert_eq!(h(&["apps.yaml"]), None);
        assert_eq!(h(&["status"]), None);
        assert_eq!(h(&[]), None);
    }
}
