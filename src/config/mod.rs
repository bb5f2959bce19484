//! Everything read from files and the environment: the spanned YAML tree, diagnostics, workflow
//! files, `claw.yaml` settings and where claw's directories are. The only module that reads
//! environment variables for configuration.

pub mod diagnostic;
pub mod node;
pub mod paths;
pub mod resolve;
pub mod schedule_keys;
pub mod settings;
pub mod workflow_file;

pub use diagnostic::{Diagnostic, Pos};
pub use paths::Dirs;
pub use settings::Settings;
