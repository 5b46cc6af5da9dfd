//! Writes the shell completion scripts that `pmi completions` prints, from the command line's
//! own definition (clap's generator). Run after changing `src/cli.rs`; the unit test
//! `complete::tests::embedded_scripts_are_current` fails until you do:
//!
//!   cargo run --example completions

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    for (shell, file) in [
        (Shell::Bash, "pmi.bash"),
        (Shell::Zsh, "_pmi"),
        (Shell::Fish, "pmi.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut pmi::cli::Cli::command(), "pmi", &mut buf);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/completions")
            .join(file);
        std::fs::write(&path, buf)?;
        println!("{}", path.display());
    }
    Ok(())
}
