//! The `hypograph` binary: everything lives in the library; this only maps errors to exit codes.

use std::process::ExitCode;

/// glibc malloc spent 30-50% of training time in page faults on fresh tensors (BURN_NOTES).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    hypograph::cli::main()
}
