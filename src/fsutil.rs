//! File plumbing shared by every store of plain files (the vault, `cron/jobs.json`, the daemon's
//! PID files): an exclusive lock file, and replacing a file atomically (temp file in the same
//! directory, fsync, rename, fsync the directory), so a crash leaves the old file or the new one,
//! never a torn one, and a temp file a killed writer left is removed by the next lock holder.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The mode files are created with when no other is asked for (the umask applies).
const DEFAULT_MODE: u32 = 0o666;

/// An exclusive `flock` on a lock file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
}

impl FileLock {
    /// Takes the lock on `path` (created if missing), waiting up to `timeout`. Fails with
    /// [`io::ErrorKind::TimedOut`] when another holder kept it all that time.
    pub fn acquire(path: &Path, timeout: Duration) -> io::Result<Self> {
        Self::acquire_mode(path, 0o600, timeout)
    }

    /// [`FileLock::acquire`], creating a missing lock file with `mode` (the vault's is 0600).
    pub fn acquire_mode(path: &Path, mode: u32, timeout: Duration) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .open(path)?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Self { _lock: lock }),
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "{} is held by another process (waited {}s)",
                                path.display(),
                                timeout.as_secs()
                            ),
                        ));
                    }
                    file = f;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err((_, errno)) => return Err(io::Error::from(errno)),
            }
        }
    }
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

/// Replaces `target` with `bytes` atomically, through `<dir>/<prefix><random>.tmp`; the file is
/// private to its owner (0600) whatever the umask: claw writes this way only its own state.
pub fn write_atomic(target: &Path, prefix: &str, bytes: &[u8]) -> io::Result<()> {
    AtomicWrite::new(target, prefix)
        .mode(0o600)
        .write_with(|f| f.write_all(bytes))
        .map(drop)
}

/// How [`AtomicWrite`] puts the finished file in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Rename over the target, whatever is there.
    Always,
    /// Link into place only if the target does not exist (never overwrites, even racing
    /// another writer); nothing changes if it does.
    IfAbsent,
}

/// An atomic write with its options: the temp file is `<dir>/<prefix><random>.tmp` beside the
/// target, created with `mode` (default 0666, less the umask) so the content is never readable
/// more widely than the final file, filled, fsynced, put in place, then the directory fsynced.
/// The temp file never outlives the call, whatever fails.
#[derive(Debug, Clone, Copy)]
pub struct AtomicWrite<'a> {
    target: &'a Path,
    prefix: &'a str,
    mode: u32,
    replace: Replace,
}

impl<'a> AtomicWrite<'a> {
    /// A write replacing `target`, through temp files named `<prefix><random>.tmp`.
    pub fn new(target: &'a Path, prefix: &'a str) -> Self {
        Self {
            target,
            prefix,
            mode: DEFAULT_MODE,
            replace: Replace::Always,
        }
    }

    /// The permission bits the file has from its creation (0600 for secrets).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How the file is put in place (default [`Replace::Always`]).
    #[must_use]
    pub fn replace(mut self, replace: Replace) -> Self {
        self.replace = replace;
        self
    }

    /// Writes what `fill` writes into the temp file. Returns `false` only for
    /// [`Replace::IfAbsent`] when the target already existed (nothing was changed).
    pub fn write_with<F>(self, fill: F) -> io::Result<bool>
    where
        F: FnOnce(&mut File) -> io::Result<()>,
    {
        let dir = parent_dir(self.target);
        let (mut file, mut guard) = loop {
            let path = dir.join(format!(
                "{}{}.tmp",
                self.prefix,
                uuid::Uuid::new_v4().simple()
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.mode)
                .open(&path)
            {
                Ok(f) => break (f, TempGuard { path, armed: true }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        };
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        let placed = match self.replace {
            Replace::Always => {
                fs::rename(&guard.path, self.target)?;
                guard.armed = false;
                true
            }
            // The temp name goes (the guard removes it) whether or not the link was made.
            Replace::IfAbsent => match fs::hard_link(&guard.path, self.target) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            },
        };
        drop(guard);
        if placed {
            sync_dir(dir)?;
        }
        Ok(placed)
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory, so that a rename, link or removal in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `<prefix>*.tmp` files in `dir` (left by a writer killed mid-write). Call only while
/// holding the lock every writer takes.
pub fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Creates `path` empty if it does not exist, readable and writable by its owner only whatever
/// the umask (an existing file is left as it is).
pub fn create_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The file [`make_spare`] leaves in a directory for [`create_private_from_spare`].
const SPARE: &str = ".claw-spare";

/// Leaves an empty private file (0600) in `dir` for the next [`create_private_from_spare`] there,
/// unless one is there already. Called while a step's process runs, it takes the costly part of
/// creating a file off the path from one step to the next: allocating an inode (on ext4 without
/// a journal, a search past every inode freed in the last half minute, tens of microseconds
/// when steps run back to back).
pub fn make_spare(dir: &Path) {
    // Best effort: without a spare, the next file is created the ordinary way.
    let _ = create_private(&dir.join(SPARE));
}

/// Removes the spare file [`make_spare`] left in `dir`, if any.
pub fn remove_spare(dir: &Path) {
    let _ = fs::remove_file(dir.join(SPARE));
}

/// [`create_private`], by renaming the spare file [`make_spare`] left in `path`'s directory into
/// place when there is one (a rename allocates no inode). A spare is used only if it is what
/// `make_spare` made: an empty regular file of this user, private, with one link; anything else
/// in its place is removed and the file is created the ordinary way. A file already at `path` is
/// left as it is, as `create_private` leaves it.
pub fn create_private_from_spare(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    if let Some(dir) = path.parent() {
        let spare = dir.join(SPARE);
        let moved = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &spare,
            nix::fcntl::AT_FDCWD,
            path,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        );
        if moved.is_ok() {
            let ours = fs::symlink_metadata(path).is_ok_and(|m| {
                m.file_type().is_file()
                    && m.len() == 0
                    && m.nlink() == 1
                    && m.mode() & 0o777 == 0o600
                    && m.uid() == nix::unistd::geteuid().as_raw()
            });
            if ours {
                return Ok(());
            }
            fs::remove_file(path)?;
        }
    }
    create_private(path)
}

/// Creates a directory of claw's own (and its missing parents) private to its owner (0700)
/// whatever the umask; an existing one is left as it is.
pub fn create_dirs_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Opens a file of claw's own for appending, creating it private to its owner (0600) whatever
/// the umask.
pub fn open_append_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Group commit for a file that several threads append to and must each see on disk before they
/// acknowledge: a writer notes its write ([`GroupSync::note_write`], a ticket) and then waits
/// ([`GroupSync::wait`]); one waiter at a time calls `fdatasync` for everything written so far,
/// and every writer whose ticket that covers returns without a sync of its own. With N writers
/// arriving during one sync, the next sync serves all N: the disk's sync rate, not the writers',
/// bounds throughput, and nothing is acknowledged before it is on disk.
///
/// The file is opened by path for syncing (an `fdatasync` on any descriptor of a file flushes the
/// file's data, whoever wrote it) and reopened when the path names a new file; a path that no
/// longer exists has nothing left to sync.
#[derive(Debug)]
pub struct GroupSync {
    path: PathBuf,
    state: std::sync::Mutex<SyncState>,
    done: std::sync::Condvar,
    /// Used by the one thread syncing at a time.
    file: std::sync::Mutex<Option<File>>,
}

#[derive(Debug, Default)]
struct SyncState {
    written: u64,
    synced: u64,
    syncing: bool,
    syncs: u64,
}

impl GroupSync {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: std::sync::Mutex::default(),
            done: std::sync::Condvar::new(),
            file: std::sync::Mutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        // Counters only: consistent whatever a panicking holder was doing.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a completed write; the ticket [`GroupSync::wait`] takes. Call it after the
    /// write() returned, so that the sync that covers the ticket covers the bytes.
    pub fn note_write(&self) -> u64 {
        let mut st = self.state();
        st.written += 1;
        st.written
    }

    /// How many writes were recorded so far ([`GroupSync::note_write`]).
    pub fn writes(&self) -> u64 {
        self.state().written
    }

    /// How many syncs served the writes so far (fewer than the writes when they were grouped).
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Returns once everything written up to `ticket` is on disk.
    pub fn wait(&self, ticket: u64) -> io::Result<()> {
        let mut st = self.state();
        loop {
            if st.synced >= ticket {
                return Ok(());
            }
            if st.syncing {
                st = self
                    .done
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            st.syncing = true;
            let target = st.written;
            drop(st);
            let result = self.sync_file();
            st = self.state();
            st.syncing = false;
            if result.is_ok() {
                st.synced = st.synced.max(target);
                st.syncs += 1;
            }
            self.done.notify_all();
            result?;
        }
    }

    /// Starts writing the file's dirty pages to the disk and returns without waiting for them
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the next [`GroupSync::wait`] finds
    /// them written or under way and waits only for the rest (on a disk with a write cache, its
    /// flush). Nothing is done while a sync is running or before the first one opened the file.
    pub fn start_writeback(&self) {
        use std::os::fd::AsRawFd as _;
        let Ok(file) = self.file.try_lock() else {
            return;
        };
        if let Some(f) = file.as_ref() {
            // SAFETY: `sync_file_range` takes a file descriptor, which `f` keeps open for the
            // call, two offsets and flags; it touches no memory of this process. Its result is
            // advisory: the sync that follows reports every error that matters.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::sync_file_range(f.as_raw_fd(), 0, 0, nix::libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }

    fn sync_file(&self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = match fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let same = match file.as_ref() {
            Some(f) => f.metadata().map(|m| (m.dev(), m.ino()))? == current,
            None => false,
        };
        if !same {
            *file = Some(OpenOptions::new().read(true).open(&self.path)?);
        }
        match file.as_ref() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_becomes_a_private_file_only_when_it_is_ours() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().unwrap();
        let spare = dir.path().join(SPARE);
        let private_and_empty = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            assert!(m.file_type().is_file(), "{}", p.display());
            assert_eq!((m.mode() & 0o777, m.len()), (0o600, 0), "{}", p.display());
        };
        // Made, then renamed into place.
        make_spare(dir.path());
        private_and_empty(&spare);
        let ino = fs::metadata(&spare).unwrap().ino();
        let a = dir.path().join("a.out");
        create_private_from_spare(&a).unwrap();
        private_and_empty(&a);
        assert_eq!(fs::metadata(&a).unwrap().ino(), ino);
        assert!(!spare.exists());
        // No spare: created the ordinary way.
        let b = dir.path().join("b.out");
        create_private_from_spare(&b).unwrap();
        private_and_empty(&b);
        // A file already there is left as it is, and so is the spare.
        fs::write(&b, "kept").unwrap();
        make_spare(dir.path());
        create_private_from_spare(&b).unwrap();
        assert_eq!(fs::read_to_string(&b).unwrap(), "kept");
        assert!(spare.exists());
        // Something else in the spare's place (written to, opened up, a link to another file) is
        // never what a step gets.
        let target = dir.path().join("elsewhere");
        fs::write(&target, "x").unwrap();
        for (i, plant) in ["written", "open", "symlink"].into_iter().enumerate() {
            let _ = fs::remove_file(&spare);
            match plant {
                "written" => fs::write(&spare, "planted=1\n").unwrap(),
                "open" => {
                    fs::write(&spare, "").unwrap();
                    fs::set_permissions(&spare, fs::Permissions::from_mode(0o666)).unwrap();
                }
                _ => std::os::unix::fs::symlink(&target, &spare).unwrap(),
            }
            let out = dir.path().join(format!("c{i}.out"));
            create_private_from_spare(&out).unwrap();
            private_and_empty(&out);
            assert!(!spare.exists(), "{plant}");
        }
        assert_eq!(fs::read_to_string(&target).unwrap(), "x");
        remove_spare(dir.path());
        make_spare(dir.path());
        remove_spare(dir.path());
        assert!(!spare.exists());
    }

    #[test]
    fn group_sync_covers_every_write_with_fewer_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let group = std::sync::Arc::new(GroupSync::new(path.clone()));
        let file = std::sync::Arc::new(std::sync::Mutex::new(open_append_private(&path).unwrap()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (group, file) = (group.clone(), file.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let ticket = {
                            let mut f = file.lock().unwrap();
                            writeln!(f, "{t} {i}").unwrap();
                            group.note_write()
                        };
                        group.wait(ticket).unwrap();
                        // Whatever was acknowledged is covered by a completed sync.
                        assert!(group.state().synced >= ticket);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(group.state().synced, 200);
        assert!(
            group.syncs() >= 1 && group.syncs() <= 200,
            "{}",
            group.syncs()
        );
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 200);
        // A path that is gone has nothing to sync; one that names a new file is reopened.
        fs::remove_file(&path).unwrap();
        let t = group.note_write();
        group.wait(t).unwrap();
        fs::write(&path, b"new").unwrap();
        let t = group.note_write();
        group.wait(t).unwrap();
    }

    #[test]
    fn replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("jobs.json");
        fs::write(&target, b"old").unwrap();
        write_atomic(&target, ".jobs_", b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("jobs.json")]);
    }

    #[test]
    fn failed_rename_keeps_target_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"x").unwrap();
        assert!(write_atomic(&target, ".t_", b"new").is_err());
        let temps = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".t_")
            })
            .count();
        assert_eq!(temps, 0);
    }

    fn temps_in(dir: &Path, prefix: &str) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    #[test]
    fn failed_fill_leaves_no_temp_and_keeps_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vault.enc");
        fs::write(&target, b"old").unwrap();
        let err = AtomicWrite::new(&target, ".v-")
            .write_with(|f| {
                f.write_all(b"partial").unwrap();
                Err(io::Error::other("injected"))
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "injected");
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(temps_in(dir.path(), ".v-").is_empty());
    }

    #[test]
    fn if_absent_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("id");
        let write = |bytes: &'static [u8]| {
            AtomicWrite::new(&target, ".v-")
                .replace(Replace::IfAbsent)
                .write_with(|f| f.write_all(bytes))
                .unwrap()
        };
        assert!(write(b"first"));
        assert!(!write(b"second"));
        assert_eq!(fs::read(&target).unwrap(), b"first");
        assert!(temps_in(dir.path(), ".v-").is_empty());
    }

    #[test]
    fn a_mode_holds_from_creation_and_stale_temps_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        AtomicWrite::new(&target, ".v-")
            .mode(0o600)
            .write_with(|f| {
                assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
                Ok(())
            })
            .unwrap();
        assert_eq!(mode(&target), 0o600);
        let lock = dir.path().join("l");
        drop(FileLock::acquire_mode(&lock, 0o600, Duration::ZERO).unwrap());
        assert_eq!(mode(&lock), 0o600);
        fs::write(dir.path().join(".v-dead.tmp"), b"x").unwrap();
        fs::write(dir.path().join(".v-keep"), b"x").unwrap();
        remove_stale_temps(dir.path(), ".v-");
        assert_eq!(temps_in(dir.path(), ".v-"), [".v-keep"]);
        assert!(target.exists());
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let held = FileLock::acquire(&p, Duration::from_secs(1)).unwrap();
        let err = FileLock::acquire(&p, Duration::from_millis(30)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(held);
        FileLock::acquire(&p, Duration::from_millis(30)).unwrap();
    }
}
