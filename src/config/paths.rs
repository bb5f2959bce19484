//! Where claw keeps its state (the data directory) and finds its files (the config root),
//! resolved as DESIGN.md §3 says.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The two directories every command works with.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// State: `claw.db`, logs, vault, audit log.
    pub home: PathBuf,
    /// Files: `workflows/`, `skills/`, `claw.yaml`, …
    pub root: PathBuf,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Dirs {
    /// `--home` > `CLAW_HOME` > `SUPERPOWERS_DATA_DIR` > `CLAUDE_SUPERPOWERS_DATA_DIR` > `~/.claw`;
    /// `--root` > `CLAW_ROOT` > the current directory if it has `workflows/` or `claw.yaml` > home.
    pub fn resolve(home_flag: Option<PathBuf>, root_flag: Option<PathBuf>) -> Result<Self, String> {
        let home = home_flag
            .or_else(|| env_path("CLAW_HOME"))
            .or_else(|| env_path("SUPERPOWERS_DATA_DIR"))
            .or_else(|| env_path("CLAUDE_SUPERPOWERS_DATA_DIR"))
            .or_else(|| env_path("HOME").map(|h| h.join(".claw")))
            .ok_or("cannot find a data directory: set CLAW_HOME or HOME")?;
        let cwd = std::env::current_dir().ok();
        let root = root_flag
            .or_else(|| env_path("CLAW_ROOT"))
            .or_else(|| {
                cwd.filter(|d| d.join("workflows").is_dir() || d.join("claw.yaml").is_file())
            })
            .unwrap_or_else(|| home.clone());
        Ok(Self {
            home: absolute(&home),
            root: absolute(&root),
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.home.join("claw.db")
    }

    pub fn run_log_dir(&self, run_id: &str) -> PathBuf {
        self.home.join("logs").join("runs").join(run_id)
    }

    /// Folders searched for `workflows/<name>.yaml`: the config root's, then the data directory's
    /// (where the seed kept them).
    pub fn workflow_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.root.join("workflows")];
        let home_dir = self.home.join("workflows");
        if !dirs.contains(&home_dir) {
            dirs.push(home_dir);
        }
        dirs
    }

    /// Creates the data directory (mode 0700: it will hold secrets).
    pub fn ensure_home(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.home)
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// claw's environment as `${{ env.* }}` sees it: its own, less the vault passphrase (a step gets
/// the secrets it names, never the key to all of them). Kept here so that reading the
/// environment stays in `config/`.
pub fn process_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| k != crate::vault::passphrase::PASSPHRASE_ENV)
        .collect()
}

/// One environment variable (for the few settings that have one).
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The local user's name: `$USER`, else the password database's name for this uid, else the uid.
pub fn local_user() -> String {
    if let Some(u) = env_var("USER") {
        return u;
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// The audit actor of a command typed on this machine: `cli:<user>`.
pub fn cli_actor() -> String {
    format!("cli:{}", local_user())
}
