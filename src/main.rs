//! The `containers-storage` command: parse, run, report the error once,
//! exit with its code.

mod cli;

fn main() {
    std::process::exit(cli::main(std::env::args_os().collect()));
}
