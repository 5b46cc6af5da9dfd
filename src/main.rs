//! The `pmi` binary: argv → dispatch, one exit code out.

fn main() {
    let code = pmi::run::main(std::env::args_os().collect());
    std::process::exit(code);
}
