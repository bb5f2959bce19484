//! Sub-workflows: the engine's way to the child a `type: workflow` step names. Finding it and
//! refusing recursion are the workflow catalogue's ([`crate::workflow::catalogue`]).

use std::path::{Path, PathBuf};

use crate::config::Dirs;

/// The file of the workflow `name`, as a step of the workflow in `from` names it.
/// Same as [`crate::workflow::catalogue::find_child`], which new code calls.
pub fn locate(dirs: &Dirs, from: &Path, name: &str) -> Result<PathBuf, String> {
    crate::workflow::catalogue::find_child(dirs, from, name)
}
