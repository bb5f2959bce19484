//! The `claw` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    // Not dumpable: the programs claw runs (steps, skills, as the same user) cannot read its
    // memory or its environment through /proc/<pid>/ (a vault passphrase or an API key exported
    // in the shell that started claw), nor attach a debugger to it. A failure leaves it as it was.
    let _ = nix::sys::prctl::set_dumpable(false);
    std::process::ExitCode::from(claw::cli::run(std::env::args_os().collect()))
}
