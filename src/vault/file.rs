//! File-system plumbing for the vault: the exclusive lock, atomic replace-by-rename with
//! fsyncs, and cleanup of temp files a killed writer left behind.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::VaultError;

/// Prefix and suffix of the temp files written before a rename.
pub(super) const TEMP_PREFIX: &str = ".vault-";
pub(super) const TEMP_SUFFIX: &str = ".tmp";

/// How long a writer waits for another writer's lock before giving up with `Locked`.
pub(super) const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An exclusive `flock` on the vault's lock file, released on drop.
#[derive(Debug)]
pub(super) struct VaultLock {
    _lock: Flock<File>,
}

impl VaultLock {
    /// Takes the exclusive lock on `path`, waiting up to `timeout` for another holder.
    pub(super) fn acquire(path: &Path, timeout: Duration) -> Result<Self, VaultError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Self { _lock: lock }),
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                    if Instant::now() >= deadline {
                        return Err(VaultError::Locked {
                            path: path.to_path_buf(),
                            waited: timeout,
                        });
                    }
                    file = f;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err((_, errno)) => {
                    return Err(VaultError::Io {
                        path: path.to_path_buf(),
                        source: io::Error::from(errno),
                    });
                }
            }
        }
    }
}

/// A random-enough suffix for temp file names (collisions are retried by `create_new`).
fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    format!("{:016x}", hasher.finish())
}

/// Removes the temp file on drop unless it was renamed into place.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Where the new content goes once the temp file is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replace {
    /// Rename over the target, whatever is there.
    Always,
    /// Link into place only if the target does not exist; `Ok(false)` if it does.
    IfAbsent,
}

/// Writes a file atomically: a `.vault-<random>.tmp` in the same directory (mode 0600 from
/// creation) filled by `fill`, fsynced, moved over `target`, then the directory fsynced.
/// The temp file never outlives the call. Returns `false` only for `Replace::IfAbsent`
/// when the target already existed (nothing was changed).
pub(super) fn write_atomic<F>(target: &Path, how: Replace, fill: F) -> Result<bool, VaultError>
where
    F: FnOnce(&mut File) -> Result<(), VaultError>,
{
    let dir = parent_dir(target);
    let (mut file, guard) = loop {
        let path = dir.join(format!("{TEMP_PREFIX}{}{TEMP_SUFFIX}", random_suffix()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => break (f, TempGuard { path, armed: true }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&path)(e)),
        }
    };
    fill(&mut file)?;
    file.sync_all().map_err(io_err(&guard.path))?;
    drop(file);
    let placed = match how {
        Replace::Always => {
            fs::rename(&guard.path, target).map_err(io_err(target))?;
            true
        }
        Replace::IfAbsent => match fs::hard_link(&guard.path, target) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io_err(target)(e)),
        },
    };
    // After a rename the temp name is gone; after a link (or a refused link) it must go.
    let mut guard = guard;
    if how == Replace::Always {
        guard.armed = false;
    }
    drop(guard);
    if placed {
        sync_dir(dir)?;
    }
    Ok(placed)
}

/// Copies `src` to `dst` (which must not exist) atomically, mode 0600.
pub(super) fn copy_new(src: &Path, dst: &Path) -> Result<bool, VaultError> {
    let bytes = zeroize::Zeroizing::new(fs::read(src).map_err(io_err(src))?);
    write_atomic(dst, Replace::IfAbsent, |f| {
        io::Write::write_all(f, &bytes).map_err(io_err(dst))
    })
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so a rename in it is durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Removes temp files left by a writer that was killed mid-write. Call only while holding
/// the vault lock: every live writer holds it, so any temp file seen then is an orphan.
pub(super) fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps_in(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn failed_fill_leaves_no_temp_and_keeps_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vault.enc");
        fs::write(&target, b"old").unwrap();
        let err = write_atomic(&target, Replace::Always, |f| {
            io::Write::write_all(f, b"partial").unwrap();
            Err(VaultError::Corrupt {
                path: target.clone(),
                why: "injected".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, VaultError::Corrupt { .. }));
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(temps_in(dir.path()).is_empty());
    }

    #[test]
    fn failed_rename_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory where the file should go makes the rename fail.
        let target = dir.path().join("vault.enc");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"x").unwrap();
        let err = write_atomic(&target, Replace::Always, |f| {
            io::Write::write_all(f, b"new").map_err(io_err(&target))
        })
        .unwrap_err();
        assert!(matches!(err, VaultError::Io { .. }), "{err:?}");
        assert!(temps_in(dir.path()).is_empty());
    }

    #[test]
    fn if_absent_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("id");
        fs::write(&target, b"keep").unwrap();
        let placed = write_atomic(&target, Replace::IfAbsent, |f| {
            io::Write::write_all(f, b"new").map_err(io_err(&target))
        })
        .unwrap();
        assert!(!placed);
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(temps_in(dir.path()).is_empty());
    }

    #[test]
    fn temp_files_are_0600_and_stale_ones_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        write_atomic(&target, Replace::Always, |f| {
            let mode = f.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::write(dir.path().join(".vault-dead.tmp"), b"x").unwrap();
        remove_stale_temps(dir.path());
        assert!(temps_in(dir.path()).is_empty());
        assert!(target.exists());
    }
}
