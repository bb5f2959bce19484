//! The `claw` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(claw::cli::run(std::env::args_os().collect()))
}
