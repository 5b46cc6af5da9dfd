//! Every real pm2 file of the shared corpus either loads or fails with located diagnostics;
//! none panics and none takes more than 10 s. Scripts of those files do not exist here, so
//! `check_scripts` is off.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pmi::config::{self, LoadOptions};

fn corpus() -> Option<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pm2-configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.as_bytes().first().is_some_and(u8::is_ascii_digit)
        })
        .collect();
    files.sort();
    Some(files)
}

#[test]
fn every_corpus_file_loads_or_fails_with_locations() {
    let Some(files) = corpus() else {
        println!("note: ../shared/pm2-configs not found; corpus test skipped");
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        check_scripts: false,
        ..LoadOptions::new()
    };
    let (mut loaded, mut failed) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let t0 = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| config::load(f, base.path(), &opts)));
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(10), "{name} took {took:?}");
        let r = r.unwrap_or_else(|_| panic!("{name}: load panicked"));
        match r {
            Ok(l) => {
                loaded += 1;
                assert!(!l.spec.apps.is_empty(), "{name}: loaded with no apps");
                println!(
                    "ok   {name}: {} app(s), {} warning(s)",
                    l.spec.apps.len(),
                    l.warnings.len()
                );
                for w in &l.warnings {
                    println!("     warning: {w}");
                }
            }
            Err(e) => {
                failed += 1;
                assert!(
                    !e.diagnostics.is_empty(),
                    "{name}: error without diagnostics"
                );
                for d in &e.diagnostics {
                    println!("fail {name}: {d}");
                    assert_eq!(d.file, *f, "{name}: diagnostic names another file");
                    let node_missing = d.message.contains("needs `node`");
                    assert!(d.line.is_some() || node_missing, "{name}: no line in: {d}");
                }
            }
        }
        // convert never panics either, and what it writes loads the same way when the input did.
        let c = catch_unwind(AssertUnwindSafe(|| config::convert(f, base.path(), &opts)))
            .unwrap_or_else(|_| panic!("{name}: convert panicked"));
        if let Ok(yaml) = c {
            let out = base.path().join(format!("{name}.converted.yaml"));
            std::fs::write(&out, &yaml).unwrap();
            let again = config::load(&out, base.path(), &opts);
            let first = config::load(f, base.path(), &opts);
            if let (Ok(a), Ok(b)) = (&again, &first) {
                let names = |l: &config::Loaded| {
                    l.spec
                        .apps
                        .iter()
                        .map(|a| a.name.clone())
                        .collect::<Vec<_>>()
                };
                assert_eq!(names(a), names(b), "{name}: convert changed the apps");
            }
        }
    }
    println!(
        "{loaded} loaded, {failed} failed with diagnostics, of {}",
        files.len()
    );
    assert!(
        loaded > files.len() / 2,
        "too few corpus files load: {loaded}"
    );
}
