//! The `pmi` binary: argv → dispatch, one exit code out.

fn main() {
    let code = pmi::dispatch::main(std::env::args_os().collect());
    std::process::exit(code);
}
