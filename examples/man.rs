//! Writes pmi's man pages (roff) from the command line's own definition: `pmi.1` and one
//! `pmi-VERB.1` per verb. Run at release time, not inside pmi (clap_mangen is a dev-dependency
//! only, so the 3 MB binary does not carry it):
//!
//!   cargo run --example man -- target/man
//!   man -l target/man/pmi.1

use std::path::PathBuf;

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/man".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let cmd = pmi::cli::Cli::command();
    clap_mangen::generate_to(cmd, &dir)?;
    for e in std::fs::read_dir(&dir)? {
        println!("{}", e?.path().display());
    }
    Ok(())
}
