//! What an error means to whoever ran the command: each error type of the library says which
//! exit status it stands for ([`ExitStatus`]), and the command line maps every error through that
//! one trait (`cli::CliError`'s `From`), so the class of a failure is decided where the failure is
//! understood, once.

/// The thing run failed (a step, a job, a lookup that found nothing where the seed said so).
pub const FAILED: u8 = 1;
/// Bad usage or invalid input (a file with problems, an unknown name, a refused decision).
pub const INVALID: u8 = 2;
/// An internal or environment error (a disk, a database, a missing program).
pub const INTERNAL: u8 = 3;

/// An error that knows which exit status it means.
pub trait ExitStatus: std::error::Error {
    /// [`FAILED`], [`INVALID`] or [`INTERNAL`].
    fn exit_status(&self) -> u8;
}
