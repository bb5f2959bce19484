//! Watching the rules' directories with inotify (the `notify` crate) and turning its raw events
//! into one debounced event per file.
//!
//! inotify reports steps (`CREATE`, `MODIFY`, `MOVED_FROM`, `CLOSE_WRITE`, …), not outcomes: an
//! editor that saves by writing `file.tmp` and renaming it over `file` produces a dozen of them
//! for two paths. So raw events only mark paths *dirty*; once a path has been quiet for the rule's
//! `debounce`, it is compared with the rule's snapshot (device, inode, size, mtime of every file
//! it watches) and the net change is reported:
//!
//! | before | after | reported |
//! |---|---|---|
//! | absent | file | `created` (or `moved`, when a file that vanished in the same batch had its inode) |
//! | file | absent | `deleted` (or nothing, when it was the source of a `moved`) |
//! | file | file, another inode / size / mtime, or written to | `modified` |
//! | absent | absent | nothing (a temporary file) |
//!
//! Hence a burst of writes is one event, a rename-save is one `modified`, and a queue overflow
//! (`IN_Q_OVERFLOW`) costs a rescan, not lost events. A rule whose directory does not exist yet is
//! watched from its nearest existing ancestor and picked up when it appears (the files already in
//! it then are reported `created`). Reaching an inotify limit is reported, naming the sysctl.
//!
//! Some trees are never watched: claw's own data directory (a rule's action writes logs and audit
//! entries there, which would trigger it again, forever) and pseudo-filesystems (`/proc`, `/sys`,
//! `/dev`, cgroups, …: their "files" are not files, and walking them fails or never ends). A
//! recursive rule with such a tree below its directory watches its subdirectories one by one,
//! skipping those trees, up to [`MAX_WATCHES`] directories (past that it says so).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind as RawKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::rules::{EventKind, Rule};

/// A debounced change to one file, for one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEvent {
    pub rule: String,
    pub kind: EventKind,
    pub path: PathBuf,
    /// Where a `moved` file was before.
    pub from: Option<PathBuf>,
}

/// What the watcher has to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Event(FsEvent),
    /// A rule's directory is watched (at start, or once it appeared).
    Watching {
        rule: String,
        dir: PathBuf,
    },
    /// A rule's directory does not exist; its nearest existing ancestor is watched meanwhile.
    Waiting {
        rule: String,
        dir: PathBuf,
        ancestor: PathBuf,
    },
    /// Something is wrong (an inotify limit, an unreadable directory); watching goes on.
    Problem(String),
}

/// The watcher could not start at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WatchError(pub String);

/// A burst longer than this many debounce periods is reported anyway.
const MAX_DEFER: u32 = 10;

/// The most directories one rule watches when claw walks its tree itself.
pub const MAX_WATCHES: usize = 10_000;

/// Filesystem types whose trees are not real files.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devpts",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "binfmt_misc",
    "autofs",
    "efivarfs",
    "selinuxfs",
    "nsfs",
    "rpc_pipefs",
];

/// The mount points of pseudo-filesystems, from `/proc/self/mountinfo`.
fn pseudo_mounts() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return ["/proc", "/sys", "/dev"]
            .iter()
            .map(PathBuf::from)
            .collect();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        // `id parent major:minor root mount-point options [optional…] - fstype source super`
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype)) = (fields.get(4), fields.get(dash + 1)) else {
            continue;
        };
        if PSEUDO_FS.contains(fstype) {
            // Octal escapes (`\040` for a space) as the kernel writes them.
            out.push(PathBuf::from(point.replace("\\040", " ")));
        }
    }
    out
}

/// Trees no rule watches.
#[derive(Debug, Clone, Default)]
struct Excluded(Vec<PathBuf>);

impl Excluded {
    fn new(own: &[PathBuf]) -> Self {
        let mut roots: Vec<PathBuf> = own
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .chain(own.iter().cloned())
            .chain(pseudo_mounts())
            .collect();
        roots.sort();
        roots.dedup();
        Self(roots)
    }

    fn contains(&self, path: &Path) -> bool {
        self.0.iter().any(|r| path.starts_with(r))
    }

    /// Whether some excluded tree lies strictly below `dir`.
    fn below(&self, dir: &Path) -> bool {
        self.0.iter().any(|r| r != dir && r.starts_with(dir))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    is_dir: bool,
}

impl Meta {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            is_dir: m.is_dir(),
        })
    }
}

#[derive(Debug, Clone)]
struct Dirty {
    first: Instant,
    last: Instant,
    /// Written to (not only its attributes changed).
    touched: bool,
    /// The other end of a rename.
    link: Option<PathBuf>,
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    excluded: Excluded,
    /// Whether the walk of its tree reached [`MAX_WATCHES`] (said once).
    capped: bool,
    /// Whether the rule's directory exists (and is watched).
    present: bool,
    snapshot: HashMap<PathBuf, Meta>,
    dirty: HashMap<PathBuf, Dirty>,
}

impl RuleState {
    /// Whether `path` is in the part of the tree this rule looks at.
    fn covers(&self, path: &Path) -> bool {
        if self.excluded.contains(path) {
            return false;
        }
        match path.strip_prefix(&self.rule.dir) {
            Ok(rel) => {
                let depth = rel.components().count();
                depth >= 1 && (self.rule.recursive || depth == 1)
            }
            Err(_) => false,
        }
    }

    fn mark(&mut self, path: &Path, now: Instant, touched: bool, link: Option<&Path>) {
        let d = self.dirty.entry(path.to_path_buf()).or_insert(Dirty {
            first: now,
            last: now,
            touched: false,
            link: None,
        });
        d.last = now;
        d.touched |= touched;
        if let Some(l) = link {
            d.link = Some(l.to_path_buf());
        }
    }

    /// The files (and, when recursive, directories) under `dir`, as they are now.
    fn scan(&self, dir: &Path) -> Vec<(PathBuf, Meta)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if self.excluded.contains(&p) {
                    continue;
                }
                let Some(meta) = Meta::of(&p) else { continue };
                if meta.is_dir {
                    if self.rule.recursive {
                        stack.push(p.clone());
                        out.push((p, meta));
                    }
                } else {
                    out.push((p, meta));
                }
            }
        }
        out
    }

    fn due(&self, path: &Path, now: Instant) -> bool {
        self.dirty.get(path).is_some_and(|d| {
            d.last + self.rule.debounce <= now || d.first + self.rule.debounce * MAX_DEFER <= now
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.dirty
            .values()
            .map(|d| (d.last + self.rule.debounce).min(d.first + self.rule.debounce * MAX_DEFER))
            .min()
    }

    /// Compares the due paths with the snapshot and returns the events to report.
    fn flush(&mut self, now: Instant) -> Vec<FsEvent> {
        let mut batch: BTreeSet<PathBuf> = self
            .dirty
            .keys()
            .filter(|p| self.due(p, now))
            .cloned()
            .collect();
        if batch.is_empty() {
            return Vec::new();
        }
        // Both ends of a rename are decided together.
        let links: Vec<PathBuf> = batch
            .iter()
            .filter_map(|p| self.dirty.get(p).and_then(|d| d.link.clone()))
            .filter(|l| self.dirty.contains_key(l))
            .collect();
        batch.extend(links);
        let mut touched = BTreeSet::new();
        for p in &batch {
            if let Some(d) = self.dirty.remove(p)
                && d.touched
            {
                touched.insert(p.clone());
            }
        }
        let mut appeared: Vec<(PathBuf, Meta)> = Vec::new();
        let mut vanished: Vec<(PathBuf, Meta)> = Vec::new();
        let mut changed: Vec<(PathBuf, Meta)> = Vec::new();
        let mut queue: VecDeque<PathBuf> = batch.into_iter().collect();
        let mut seen = BTreeSet::new();
        while let Some(p) = queue.pop_front() {
            if !seen.insert(p.clone()) {
                continue;
            }
            let old = self.snapshot.get(&p).copied();
            let new = Meta::of(&p);
            match (old, new) {
                (None, None) => {}
                (None, Some(n)) if n.is_dir => {
                    // A new directory: its files were created before its watch existed. Each is
                    // decided now, as it is: events of its own already queued (the watch came up
                    // while it was being written) are part of that `created`, not a later
                    // `modified`.
                    if self.rule.recursive {
                        self.snapshot.insert(p.clone(), n);
                        for (child, _) in self.scan(&p) {
                            if !self.snapshot.contains_key(&child) {
                                self.dirty.remove(&child);
                                queue.push_back(child);
                            }
                        }
                    }
                }
                (None, Some(n)) => appeared.push((p, n)),
                (Some(o), None) if o.is_dir => {
                    self.snapshot.remove(&p);
                    let under: Vec<PathBuf> = self
                        .snapshot
                        .keys()
                        .filter(|k| k.starts_with(&p))
                        .cloned()
                        .collect();
                    queue.extend(under);
                }
                (Some(o), None) => vanished.push((p, o)),
                (Some(o), Some(n)) if o.is_dir || n.is_dir => {
                    self.snapshot.insert(p, n);
                }
                (Some(o), Some(n)) => {
                    if o != n || touched.contains(&p) {
                        changed.push((p, n));
                    } else {
                        self.snapshot.insert(p, n);
                    }
                }
            }
        }
        let mut events = Vec::new();
        let mut consumed: BTreeSet<PathBuf> = BTreeSet::new();
        let source_of = |m: &Meta, vanished: &[(PathBuf, Meta)], consumed: &BTreeSet<PathBuf>| {
            vanished
                .iter()
                .find(|(vp, vm)| vm.dev == m.dev && vm.ino == m.ino && !consumed.contains(vp))
                .map(|(vp, _)| vp.clone())
        };
        for (p, n) in &changed {
            // Renamed over an existing file (a rename-save whose temporary file was already
            // known): one `modified`, and the temporary file's disappearance is not news.
            if let Some(src) = source_of(n, &vanished, &consumed) {
                consumed.insert(src);
            }
            self.snapshot.insert(p.clone(), *n);
            events.push(self.event(EventKind::Modified, p, None));
        }
        for (p, n) in &appeared {
            self.snapshot.insert(p.clone(), *n);
            match source_of(n, &vanished, &consumed) {
                Some(src) => {
                    consumed.insert(src.clone());
                    events.push(self.event(EventKind::Moved, p, Some(src)));
                }
                None => events.push(self.event(EventKind::Created, p, None)),
            }
        }
        for (p, _) in &vanished {
            self.snapshot.remove(p);
            if !consumed.contains(p) {
                events.push(self.event(EventKind::Deleted, p, None));
            }
        }
        events.retain(|e| {
            self.rule.wants(e.kind)
                && (self.rule.matches(&e.path)
                    || e.from.as_deref().is_some_and(|f| self.rule.matches(f)))
        });
        events.sort_by(|a, b| a.path.cmp(&b.path));
        events
    }

    fn event(&self, kind: EventKind, path: &Path, from: Option<PathBuf>) -> FsEvent {
        FsEvent {
            rule: self.rule.name.clone(),
            kind,
            path: path.to_path_buf(),
            from,
        }
    }
}

/// Watches a set of rules. [`Watcher::next`] yields what happens.
pub struct Watcher {
    states: Vec<RuleState>,
    inner: notify::RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    /// Directories watched, and whether recursively.
    registered: BTreeMap<PathBuf, bool>,
    /// Directories whose watch failed (reported once; not retried until they change).
    failed: BTreeSet<PathBuf>,
    out: VecDeque<Report>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("rules", &self.states.len())
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching the enabled rules among `rules`, never inside `own` (claw's data
    /// directory) or a pseudo-filesystem. Must be called within a Tokio runtime.
    pub fn new(rules: Vec<Rule>, own: &[PathBuf]) -> Result<Self, WatchError> {
        let excluded = Excluded::new(own);
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = notify::recommended_watcher(move |res| {
            // The receiver is gone only when the watcher is being dropped.
            let _ = tx.send(res);
        })
        .map_err(|e| WatchError(describe(&e, None)))?;
        let mut w = Self {
            states: rules
                .into_iter()
                .filter(|r| r.enabled)
                .map(|rule| RuleState {
                    rule,
                    excluded: excluded.clone(),
                    capped: false,
                    present: false,
                    snapshot: HashMap::new(),
                    dirty: HashMap::new(),
                })
                .collect(),
            inner,
            rx,
            registered: BTreeMap::new(),
            failed: BTreeSet::new(),
            out: VecDeque::new(),
        };
        w.states.retain(|st| {
            if st.excluded.contains(&st.rule.dir) {
                w.out.push_back(Report::Problem(format!(
                    "rule `{}`: {} is inside claw's data directory or a pseudo-filesystem, \
                     which claw never watches (its own writes would trigger the rule forever); \
                     the rule is not watched",
                    st.rule.name,
                    st.rule.dir.display()
                )));
                return false;
            }
            true
        });
        w.reconcile(true);
        Ok(w)
    }

    /// The next report; `None` only if the inotify thread is gone.
    pub async fn next(&mut self) -> Option<Report> {
        loop {
            if let Some(r) = self.out.pop_front() {
                return Some(r);
            }
            let deadline = self
                .states
                .iter()
                .filter_map(RuleState::next_deadline)
                .min();
            tokio::select! {
                raw = self.rx.recv() => {
                    let first = raw?;
                    let mut batch = vec![first];
                    while let Ok(more) = self.rx.try_recv() {
                        batch.push(more);
                    }
                    self.handle(batch);
                }
                () = sleep_until_opt(deadline) => {
                    let now = Instant::now();
                    for st in &mut self.states {
                        for e in st.flush(now) {
                            self.out.push_back(Report::Event(e));
                        }
                    }
                }
            }
        }
    }

    fn handle(&mut self, batch: Vec<notify::Result<notify::Event>>) {
        let now = Instant::now();
        let mut structural = false;
        for raw in batch {
            let ev = match raw {
                Ok(ev) => ev,
                Err(e) => {
                    self.out.push_back(Report::Problem(describe(&e, None)));
                    continue;
                }
            };
            if ev.need_rescan() {
                // The kernel's queue overflowed: events were lost, so look at everything again.
                for st in &mut self.states {
                    let known: Vec<PathBuf> = st.snapshot.keys().cloned().collect();
                    let current: Vec<PathBuf> = if st.present {
                        st.scan(&st.rule.dir.clone())
                            .into_iter()
                            .map(|(p, _)| p)
                            .collect()
                    } else {
                        Vec::new()
                    };
                    for p in known.into_iter().chain(current) {
                        st.mark(&p, now, false, None);
                    }
                }
                structural = true;
                continue;
            }
            let touched = match ev.kind {
                RawKind::Access(AccessKind::Close(AccessMode::Write))
                | RawKind::Create(_)
                | RawKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => true,
                RawKind::Modify(ModifyKind::Name(_)) | RawKind::Remove(_) => {
                    structural = true;
                    false
                }
                RawKind::Modify(_) => false,
                // Opens and reads (ours included) change nothing.
                RawKind::Access(_) | RawKind::Any | RawKind::Other => continue,
            };
            if matches!(ev.kind, RawKind::Create(_)) {
                structural = true;
            }
            let rename_pair =
                matches!(ev.kind, RawKind::Modify(ModifyKind::Name(RenameMode::Both)))
                    && ev.paths.len() == 2;
            for (i, path) in ev.paths.iter().enumerate() {
                let link = if rename_pair {
                    ev.paths.get(1 - i)
                } else {
                    None
                };
                for st in &mut self.states {
                    if st.present && st.covers(path) {
                        st.mark(path, now, touched, link.map(PathBuf::as_path));
                    }
                }
            }
        }
        if structural || self.states.iter().any(|s| !s.present) {
            self.reconcile(false);
        }
    }

    /// Brings the inotify watches in line with what exists: each rule's directory if it exists,
    /// else its nearest existing ancestor.
    fn reconcile(&mut self, startup: bool) {
        // A directory may appear between looking and watching: look again until nothing moves.
        for _ in 0..8 {
            let mut desired: BTreeMap<PathBuf, bool> = BTreeMap::new();
            let now = Instant::now();
            for st in &mut self.states {
                let dir = st.rule.dir.clone();
                if dir.is_dir() {
                    if st.rule.recursive && st.excluded.below(&dir) {
                        // An excluded tree below: watch the directories one by one around it.
                        let (dirs, capped) = walk_dirs(&dir, &st.excluded);
                        if capped && !st.capped {
                            st.capped = true;
                            self.out.push_back(Report::Problem(format!(
                                "rule `{}`: {} holds more than {MAX_WATCHES} directories; \
                                 only the first {MAX_WATCHES} are watched (watch a narrower \
                                 directory)",
                                st.rule.name,
                                dir.display()
                            )));
                        }
                        for d in dirs {
                            desired.entry(d).or_insert(false);
                        }
                    } else {
                        *desired.entry(dir.clone()).or_insert(false) |= st.rule.recursive;
                    }
                    if !st.present {
                        st.present = true;
                        let files = st.scan(&dir);
                        if startup {
                            st.snapshot.extend(files);
                        } else {
                            // It appeared: what is in it already is new.
                            for (p, _) in files {
                                st.mark(&p, now, true, None);
                            }
                        }
                    }
                } else {
                    if st.present {
                        // Gone: every file it had is reported deleted.
                        st.present = false;
                        let known: Vec<PathBuf> = st.snapshot.keys().cloned().collect();
                        for p in known {
                            st.mark(&p, now, false, None);
                        }
                    }
                    let ancestor = nearest_existing(&dir);
                    desired.entry(ancestor).or_insert(false);
                }
            }
            let mut changed = false;
            let stale: Vec<PathBuf> = self
                .registered
                .iter()
                .filter(|(p, r)| desired.get(*p) != Some(r))
                .map(|(p, _)| p.clone())
                .collect();
            for p in stale {
                let _ = self.inner.unwatch(&p);
                self.registered.remove(&p);
            }
            self.failed.retain(|p| desired.contains_key(p));
            for (dir, recursive) in &desired {
                if self.registered.contains_key(dir) || self.failed.contains(dir) {
                    continue;
                }
                let mode = if *recursive {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                match self.inner.watch(dir, mode) {
                    Ok(()) => {
                        self.registered.insert(dir.clone(), *recursive);
                        changed = true;
                        self.announce(dir);
                    }
                    Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {
                        // Vanished meanwhile: the next round watches its ancestor.
                        changed = true;
                    }
                    Err(e) => {
                        self.failed.insert(dir.clone());
                        self.out.push_back(Report::Problem(describe(&e, Some(dir))));
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }

    fn announce(&mut self, watched: &Path) {
        for st in &self.states {
            if st.rule.dir == watched {
                self.out.push_back(Report::Watching {
                    rule: st.rule.name.clone(),
                    dir: st.rule.dir.clone(),
                });
            } else if !st.present && nearest_existing(&st.rule.dir) == watched {
                self.out.push_back(Report::Waiting {
                    rule: st.rule.name.clone(),
                    dir: st.rule.dir.clone(),
                    ancestor: watched.to_path_buf(),
                });
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// `dir` and the directories below it, outside `excluded`, without following symlinks; at most
/// [`MAX_WATCHES`] (and whether there were more).
fn walk_dirs(dir: &Path, excluded: &Excluded) -> (Vec<PathBuf>, bool) {
    let mut out = vec![dir.to_path_buf()];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if excluded.contains(&p) {
                continue;
            }
            if out.len() >= MAX_WATCHES {
                return (out, true);
            }
            out.push(p.clone());
            stack.push(p);
        }
    }
    (out, false)
}

fn nearest_existing(dir: &Path) -> PathBuf {
    let mut p = dir;
    loop {
        if p.is_dir() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return PathBuf::from("/"),
        }
    }
}

/// A kernel limit's current value, from `/proc/sys/fs/inotify/`.
fn inotify_limit(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned())
}

/// A notify error in words, naming the sysctl to raise when a limit is the cause.
pub fn describe(e: &notify::Error, dir: Option<&Path>) -> String {
    let what = dir
        .or_else(|| e.paths.first().map(PathBuf::as_path))
        .map_or_else(String::new, |d| format!("cannot watch {}: ", d.display()));
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => format!(
            "{what}the inotify watch limit is reached (fs.inotify.max_user_watches = {}); \
             raise it with `sysctl fs.inotify.max_user_watches=524288` (and a file in /etc/sysctl.d/ to keep it)",
            inotify_limit("max_user_watches")
        ),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(nix::libc::EMFILE) => format!(
            "{what}too many inotify instances (fs.inotify.max_user_instances = {}); \
             raise it with `sysctl fs.inotify.max_user_instances=1024`, or stop other watchers",
            inotify_limit("max_user_instances")
        ),
        notify::ErrorKind::Io(io) => format!("{what}{io}"),
        notify::ErrorKind::PathNotFound => format!("{what}no such directory"),
        notify::ErrorKind::Generic(g) => format!("{what}{g}"),
        other => format!("{what}{other:?}"),
    }
}

/// How long to wait, at most, for a rule's change to be reported (for tests and `--help`).
pub fn max_delay(rule: &Rule) -> Duration {
    rule.debounce * MAX_DEFER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_sysctl() {
        let e = notify::Error::new(notify::ErrorKind::MaxFilesWatch);
        let msg = describe(&e, Some(Path::new("/data")));
        assert!(msg.starts_with("cannot watch /data: the inotify watch limit is reached (fs.inotify.max_user_watches = "), "{msg}");
        let e = notify::Error::io(std::io::Error::from_raw_os_error(nix::libc::EMFILE));
        assert!(describe(&e, None).contains("fs.inotify.max_user_instances"));
    }

    /// A file written in a directory made a moment before: the directory's scan reports it
    /// `created`, and its own events, queued once the new directory's watch came up while it was
    /// being written, add no `modified`.
    #[test]
    fn a_file_in_a_new_directory_is_created_once() {
        let d = tempfile::tempdir().unwrap();
        let yaml = format!(
            "- name: r\n  path: {}/*.txt\n  recursive: true\n  events: [created, modified]\n  action: shell\n  command: 'true'\n  debounce: 50ms\n",
            d.path().display()
        );
        let rule = super::super::rules::load_str(Path::new("watchers.yaml"), yaml, d.path(), None)
            .unwrap()
            .remove(0);
        let mut st = RuleState {
            rule,
            excluded: Excluded::default(),
            capped: false,
            present: true,
            snapshot: HashMap::new(),
            dirty: HashMap::new(),
        };
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("deep.txt");
        std::fs::write(&file, "x").unwrap();
        let t0 = Instant::now();
        st.mark(&sub, t0, false, None);
        // The file's own events arrive just after the directory's.
        st.mark(&file, t0 + Duration::from_millis(20), true, None);
        let kinds = |evs: Vec<FsEvent>| {
            evs.into_iter()
                .map(|e| (e.kind, e.path))
                .collect::<Vec<_>>()
        };
        let first = kinds(st.flush(t0 + Duration::from_millis(60)));
        assert_eq!(first, vec![(EventKind::Created, file.clone())]);
        let later = kinds(st.flush(t0 + Duration::from_secs(5)));
        assert!(later.is_empty(), "reported again: {later:?}");
        // A write after the scan is news.
        std::fs::write(&file, "xy").unwrap();
        st.mark(&file, t0 + Duration::from_secs(6), true, None);
        let modified = kinds(st.flush(t0 + Duration::from_secs(7)));
        assert_eq!(modified, vec![(EventKind::Modified, file)]);
    }

    #[test]
    fn nearest_existing_ancestor() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(nearest_existing(&d.path().join("a/b/c")), d.path());
    }
}
