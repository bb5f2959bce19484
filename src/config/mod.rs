//! Everything read from files and the environment: the spanned YAML tree, diagnostics, workflow
//! files, `claw.yaml` settings and where claw's directories are. The only module that reads
//! environment variables for configuration.

pub mod env;
pub mod paths;
pub mod resolve;
pub mod settings;

pub use paths::Dirs;
pub use settings::Settings;
