//! Where claw keeps its state (the data directory) and finds its files (the config root),
//! resolved as DESIGN.md §3 says.

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
    super::env::var_os(name).map(PathBuf::from)
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

    /// Creates the data directory (mode 0700: it will hold secrets), or tightens an existing one
    /// of this user's that others could enter (whatever the umask made it).
    pub fn ensure_home(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.home)?;
        let meta = std::fs::metadata(&self.home)?;
        if meta.mode() & 0o077 != 0 && meta.uid() == nix::unistd::geteuid().as_raw() {
            std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
