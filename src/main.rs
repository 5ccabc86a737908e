//! The `cairn` command: a thin layer over the `cairn` library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
