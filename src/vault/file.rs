//! The vault's files on [`crate::fsutil`]: its lock (`vault.lock`, 0600, `Locked` after the
//! timeout), its atomic writes (`.vault-<random>.tmp` beside the target, 0600 from creation,
//! fsynced, renamed or linked into place, the directory fsynced) and the cleanup of temp files a
//! killed writer left. This module fixes the vault's choices and its error type; the mechanism
//! is fsutil's.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::Duration;

pub(super) use crate::fsutil::Replace;
use crate::fsutil::{self, AtomicWrite, FileLock};

use super::VaultError;

/// Prefix of the temp files written before a rename (they end in `.tmp`).
pub(super) const TEMP_PREFIX: &str = ".vault-";

/// How long a writer waits for another writer's lock before giving up with `Locked`.
pub(super) const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Every vault file is readable by its owner only, from the moment it exists.
const MODE: u32 = 0o600;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Takes the exclusive lock on `path` (released when the returned lock is dropped), waiting up
/// to `timeout` for another holder, then failing with `Locked`.
pub(super) fn lock(path: &Path, timeout: Duration) -> Result<FileLock, VaultError> {
    FileLock::acquire_mode(path, MODE, timeout).map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            VaultError::Locked {
                path: path.to_path_buf(),
                waited: timeout,
            }
        } else {
            io_err(path)(e)
        }
    })
}

/// Writes `target` atomically with what `fill` writes (see [`fsutil::AtomicWrite`]). Returns
/// `false` only for [`Replace::IfAbsent`] when the target already existed (nothing changed).
pub(super) fn write_atomic<F>(target: &Path, how: Replace, fill: F) -> Result<bool, VaultError>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    AtomicWrite::new(target, TEMP_PREFIX)
        .mode(MODE)
        .replace(how)
        .write_with(fill)
        .map_err(io_err(target))
}

/// Copies `src` to `dst` (which must not exist) atomically, mode 0600; `false` if `dst` exists.
pub(super) fn copy_new(src: &Path, dst: &Path) -> Result<bool, VaultError> {
    let bytes = zeroize::Zeroizing::new(fs::read(src).map_err(io_err(src))?);
    write_atomic(dst, Replace::IfAbsent, |f| io::Write::write_all(f, &bytes))
}

/// Fsyncs a directory so a removal in it is durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    fsutil::sync_dir(dir).map_err(io_err(dir))
}

/// Removes temp files left by a writer that was killed mid-write. Call only while holding
/// the vault lock: every live writer holds it, so any temp file seen then is an orphan.
pub(super) fn remove_stale_temps(dir: &Path) {
    fsutil::remove_stale_temps(dir, TEMP_PREFIX);
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
            Err(io::Error::other("injected"))
        })
        .unwrap_err();
        assert!(
            matches!(&err, VaultError::Io { path, .. } if *path == target),
            "{err:?}"
        );
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
            io::Write::write_all(f, b"new")
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
            io::Write::write_all(f, b"new")
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

    #[test]
    fn a_held_lock_is_locked_after_the_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.lock");
        let held = lock(&path, Duration::ZERO).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = lock(&path, Duration::from_millis(20)).unwrap_err();
        assert!(
            matches!(err, VaultError::Locked { waited, .. } if waited == Duration::from_millis(20)),
            "{err:?}"
        );
        drop(held);
        lock(&path, Duration::ZERO).unwrap();
    }
}
