//! `pmi completions bash|zsh|fish`: shell completion scripts generated from the command line's
//! own definition (clap's generator), so they can never disagree with what pmi accepts.
//!
//! Invariant: writes the script to stdout and nothing else; a closed stdout is exit 1, not a panic.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Shell};
use crate::exit::{self, Failure};

pub fn print(shell: Shell) -> Result<i32, Failure> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    let gen = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(gen, &mut cmd, "pmi", &mut buf);
    match std::io::stdout().lock().write_all(&buf) {
        Ok(()) => Ok(exit::OK),
        Err(e) => Err(Failure::Failed(format!(
            "pmi: cannot write the script: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_the_verbs() {
        for (shell, marker) in [
            (clap_complete::Shell::Bash, "complete -F"),
            (clap_complete::Shell::Zsh, "#compdef pmi"),
            (clap_complete::Shell::Fish, "complete -c pmi"),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pmi", &mut buf);
            let s = String::from_utf8(buf).unwrap();
            assert!(s.contains(marker), "{shell:?}");
            for verb in ["status", "convert", "reload", "completions"] {
                assert!(s.contains(verb), "{shell:?} lacks {verb}");
            }
        }
    }
}
