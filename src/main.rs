//! The `hypograph` binary: everything lives in the library; this only maps errors to exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    hypograph::cli::main()
}
