//! One daemon per data directory: an exclusive `flock` on `<home>/serve.lock`, held for the
//! daemon's whole life (the kernel releases it when the process dies, `kill -9` included), and
//! the PID file `<home>/claw.pid` beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fsutil::FileLock;

pub const LOCK_FILE: &str = "serve.lock";
pub const PID_FILE: &str = "claw.pid";
/// The seed's PID file (`cron/cron-daemon.pid`), written too, for tools that look there.
pub const SEED_PID_FILE: &str = "cron/cron-daemon.pid";

/// How long a starting daemon retries the lock before it refuses (a `claw workflow run --detach`
/// that checks for a daemon holds it for an instant).
const START_TRIES: Duration = Duration::from_secs(2);

/// The data directory is owned by another daemon.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "another `claw serve`{} already owns the data directory {}: only one daemon may run its schedules and queue. \
         Stop it first (`claw daemon status` shows it), or start this one with --wait to take over when it exits",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        home.display()
    )]
    Held { home: PathBuf, pid: Option<u32> },
    #[error(
        "the seed's cron daemon (pid {pid}, {cmd}) is running on the data directory {}: with both, \
         every job would fire twice. Stop it (`systemctl --user stop claude-superpowers-cron`, or \
         `kill {pid}`), or start claw with --take-over to stop it and take its place",
        home.display()
    )]
    SeedDaemon {
        home: PathBuf,
        pid: u32,
        cmd: String,
    },
    #[error("the seed's cron daemon (pid {pid}) did not stop within {waited:?} of SIGTERM")]
    SeedDaemonStays { pid: u32, waited: Duration },
    #[error("cannot take the daemon lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The daemon's hold on its data directory; dropping it removes the PID file and releases it.
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
    pid_files: Vec<PathBuf>,
}

impl Lease {
    /// Takes the lease; with `wait`, waits for the daemon holding it to exit (calling `waiting`
    /// once), else refuses after a short retry.
    /// With `take_over`, a running seed cron daemon is stopped (SIGTERM, then waited for);
    /// without, it is a refusal.
    pub fn acquire(
        home: &Path,
        wait: bool,
        take_over: bool,
        waiting: &dyn Fn(Option<u32>),
    ) -> Result<Lease, LeaseError> {
        let path = home.join(LOCK_FILE);
        let mut told = false;
        let lock = loop {
            match FileLock::acquire(&path, START_TRIES) {
                Ok(lock) => break lock,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if !wait {
                        return Err(LeaseError::Held {
                            home: home.to_owned(),
                            pid: read_pid(home),
                        });
                    }
                    if !told {
                        waiting(read_pid(home));
                        told = true;
                    }
                }
                Err(source) => return Err(LeaseError::Io { path, source }),
            }
        };
        if let Some((pid, cmd)) = seed_daemon(home) {
            if !take_over {
                return Err(LeaseError::SeedDaemon {
                    home: home.to_owned(),
                    pid,
                    cmd,
                });
            }
            stop_seed_daemon(pid)?;
        }
        let text = format!("{}\n", std::process::id());
        let mut pid_files = Vec::new();
        for name in [PID_FILE, SEED_PID_FILE] {
            let pid_file = home.join(name);
            if let Some(dir) = pid_file.parent() {
                let _ = crate::fsutil::create_dirs_private(dir);
            }
            crate::fsutil::write_atomic(&pid_file, ".claw.pid.", text.as_bytes()).map_err(
                |source| LeaseError::Io {
                    path: pid_file.clone(),
                    source,
                },
            )?;
            pid_files.push(pid_file);
        }
        Ok(Lease {
            _lock: lock,
            pid_files,
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        for f in &self.pid_files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// How long `--take-over` waits for the seed's daemon to exit after SIGTERM (it stops its
/// scheduler, which waits for running jobs).
const SEED_STOP_WAIT: Duration = Duration::from_secs(30);

/// The seed's cron daemon running on `home`, from its PID file: its pid and command line, when
/// that process is alive and is the seed's (`python -m superpowers.cron_runner`), not claw.
pub fn seed_daemon(home: &Path) -> Option<(u32, String)> {
    let pid: u32 = std::fs::read_to_string(home.join(SEED_PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid == std::process::id() || pid == 0 {
        return None;
    }
    // /proc/<pid>/cmdline: NUL-separated arguments; gone (or empty, a zombie) when it exited.
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmd = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let seed = cmd.contains("cron_runner") && !cmd.contains("claw serve");
    seed.then_some((pid, cmd))
}

/// Sends SIGTERM to the seed's daemon and waits for it to exit.
fn stop_seed_daemon(pid: u32) -> Result<(), LeaseError> {
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    tracing::warn!(target: "claw::serve", pid, "stopping the seed's cron daemon (--take-over)");
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let start = std::time::Instant::now();
    while start.elapsed() < SEED_STOP_WAIT {
        let alive = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty());
        if !alive {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LeaseError::SeedDaemonStays {
        pid,
        waited: SEED_STOP_WAIT,
    })
}

/// The pid in the PID file, if any.
pub fn read_pid(home: &Path) -> Option<u32> {
    std::fs::read_to_string(home.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a daemon holds the data directory now, and its pid if known. Probes the lock without
/// waiting (a daemon that is starting retries past such a probe).
pub fn holder(home: &Path) -> Option<Option<u32>> {
    let path = home.join(LOCK_FILE);
    if !path.exists() {
        return None;
    }
    match FileLock::acquire(&path, Duration::ZERO) {
        Ok(_released_at_once) => None,
        Err(_) => Some(read_pid(home)),
    }
}
