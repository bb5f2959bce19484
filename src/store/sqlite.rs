//! The embedded SQLite store: WAL journal, `synchronous=FULL` (a committed transition survives a
//! power cut), foreign keys on, numbered migrations embedded in the binary.
//!
//! [`super::open`], which the engine, the daemon and the CLI go through, opens it with group
//! commit ([`SqliteStore::with_group_commit`]; the daemon has many threads writing at once, and
//! a foreground `claw workflow run` pays an `fdatasync`, about half SQLite's `fsync`, which also
//! flushes the inode): SQLite commits without its own fsync
//! (`synchronous=NORMAL`) and the caller then waits for a shared `fdatasync` of the WAL
//! ([`crate::fsutil::GroupSync`]), so a write still returns only once it is on disk, but writes
//! that arrive together share one sync. The WAL is synced by SQLite before every checkpoint
//! copies it into the database, so what is synced in the WAL stays durable through checkpoints.
//! In the daemon ([`Store::checkpoint_beside_writers`]) those checkpoints are made on a thread of
//! their own after a sync, while the writers go on, instead of inside a commit: see
//! [`Checkpoints`].

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{
    Approval, ApprovalRequest, Decision, FireBatch, FireRecord, FireStatus, RecoveredFires, Result,
    RunFilter, RunRecord, RunStatus, ScheduleState, StepRecord, Store, StoreError, SyncWait, Vote,
};

/// Pages the WAL holds before SQLite copies them into the database (see `init`).
const WAL_PAGES: i64 = 128;

/// Checkpoints beside the writers: commits between two ([`Checkpoints`]), about [`WAL_PAGES`]
/// pages of step transitions.
const CHECKPOINT_COMMITS: u64 = 40;

/// Checkpoints beside the writers: pages at which a writer checkpoints in its commit after all,
/// as it does otherwise at [`WAL_PAGES`] (only when the checkpoints beside it fall behind).
const WAL_BACKSTOP_PAGES: i64 = 1000;

/// The migrations (one list for both backends, see [`super::MIGRATIONS`]);
/// `PRAGMA user_version` holds how many are applied.
const MIGRATIONS: &[super::Migration] = super::MIGRATIONS;

/// SQLite behind one connection. Several claw processes may open the same file; SQLite's locking
/// (with a busy timeout) serialises their writes.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Group commit of the WAL (the daemon's store), see the module's documentation.
    group: Option<Arc<Group>>,
}

/// Group commit's state: the WAL sync the writers share, and the checkpoints made beside them.
#[derive(Debug)]
struct Group {
    sync: crate::fsutil::GroupSync,
    checkpoints: Checkpoints,
}

impl Group {
    /// Waits for `ticket` to be on disk ([`sync_or_abort`]), then starts a checkpoint if one is
    /// due.
    fn wait(&self, ticket: u64) {
        sync_or_abort(&self.sync, ticket);
        self.checkpoints.after_sync(self.sync.writes());
    }
}

/// Checkpoints of a group-commit store made on a thread of their own with a connection of their
/// own, once [`Store::checkpoint_beside_writers`] asked for them (the daemon). SQLite's automatic
/// checkpoint runs inside the commit that crosses its threshold: two fsyncs (the WAL, then the
/// database) and the copy, about a millisecond here, during which the daemon's thread, which
/// drives every run and answers the listener's writes, would wait for the disk. Started after a
/// sync instead, every [`CHECKPOINT_COMMITS`] commits, a checkpoint copies what the WAL holds
/// while the writers go on: `PASSIVE` never waits for them nor makes them wait, and the WAL starts
/// over once a checkpoint has copied all of it. SQLite's own checkpoint stays as a backstop at
/// [`WAL_BACKSTOP_PAGES`]. A checkpoint cut short (claw exits or is killed meanwhile) loses
/// nothing: the WAL still holds every frame, and the next checkpoint copies them again.
///
/// A one-run process (`claw workflow run`) keeps SQLite's own: there the checkpoint's fsyncs,
/// made beside the run, delayed the run's own syncs by more than they took inline (a 40-step run
/// was 1.5 ms slower on this two-core machine).
#[derive(Debug)]
struct Checkpoints {
    /// Off until [`Store::checkpoint_beside_writers`].
    on: std::sync::atomic::AtomicBool,
    path: PathBuf,
    /// The commit count at which the last checkpoint was started.
    started_at: AtomicU64,
    /// The connection they use, opened by the first; held by the one running.
    conn: Arc<Mutex<Option<Connection>>>,
}

impl Checkpoints {
    fn new(path: &Path) -> Self {
        Self {
            on: std::sync::atomic::AtomicBool::new(false),
            path: path.to_path_buf(),
            started_at: AtomicU64::new(0),
            conn: Arc::default(),
        }
    }

    /// Starts a checkpoint when [`CHECKPOINT_COMMITS`] commits were made since the last one.
    fn after_sync(&self, commits: u64) {
        let last = self.started_at.load(Ordering::Relaxed);
        if !self.on.load(Ordering::Relaxed)
            || commits < last + CHECKPOINT_COMMITS
            || self
                .started_at
                .compare_exchange(last, commits, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (path, conn) = (self.path.clone(), Arc::clone(&self.conn));
        // A thread that cannot start leaves the WAL to SQLite's own checkpoint (the backstop).
        let _ = std::thread::Builder::new()
            .name("claw-checkpoint".into())
            .spawn(move || checkpoint(&path, &conn));
    }
}

/// One `PASSIVE` checkpoint of the database at `path`, unless another is running.
fn checkpoint(path: &Path, conn: &Mutex<Option<Connection>>) {
    let Ok(mut held) = conn.try_lock() else {
        return;
    };
    if held.is_none() {
        *held = open_checkpointer(path)
            .inspect_err(|e| tracing::debug!("cannot open the store to checkpoint it: {e}"))
            .ok();
    }
    if let Some(c) = held.as_ref()
        && let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    {
        tracing::debug!("checkpoint of the store's WAL: {e}");
    }
}

/// The checkpoints' connection: it never writes rows, and closing it leaves the WAL alone, as
/// every claw connection does (see `init`).
fn open_checkpointer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    Ok(conn)
}

thread_local! {
    /// Inside [`Store::durable_together`] on this thread: the newest ticket not waited for yet.
    static DEFERRED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The connection, held for one call. With group commit, dropping it after a write commits
/// releases the connection first and then waits for the write to be on disk.
struct Conn<'a> {
    guard: Option<MutexGuard<'a, Connection>>,
    group: Option<&'a Group>,
    changes: u64,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Present until drop.
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let Some(group) = self.group else {
            return;
        };
        // Rows changed and no transaction left open: something was committed.
        let ticket = (guard.total_changes() != self.changes && guard.is_autocommit())
            .then(|| group.sync.note_write());
        drop(guard);
        let Some(ticket) = ticket else {
            return;
        };
        if DEFERRED.with(Cell::get).is_some() {
            DEFERRED.with(|d| d.set(Some(ticket)));
            return;
        }
        group.wait(ticket);
    }
}

/// [`Store::list_runs`]'s query with only the filters given (in this order: workflow, status,
/// parent, then the limit), so that SQLite can use their indexes: with `?1 IS NULL OR …` for each,
/// the children of a run (`claw run show`) were found by reading every run kept.
fn list_runs_sql(workflow: bool, status: bool, parent: bool) -> String {
    let mut conds = Vec::new();
    for (on, column) in [
        (workflow, "workflow"),
        (status, "status"),
        (parent, "parent_run"),
    ] {
        if on {
            conds.push(format!("{column} = ?{}", conds.len() + 1));
        }
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    format!(
        "SELECT {RUN_COLUMNS} FROM runs{filter} ORDER BY created_at DESC, id DESC LIMIT ?{}",
        conds.len() + 1
    )
}

/// Waits for `ticket` to be on disk. When the sync fails the kernel may already have dropped the
/// unwritten pages, so no later sync can make the write durable, and the caller is about to act
/// as if it were (answer 202, start a step): claw stops instead, as PostgreSQL does after a failed
/// fsync, and the restart recovers from what is on disk (runs resume, deliveries not answered
/// are sent again by their senders).
fn sync_or_abort(group: &crate::fsutil::GroupSync, ticket: u64) {
    if let Err(e) = group.wait(ticket) {
        eprintln!(
            "claw: cannot sync the store's write-ahead log to disk ({e}); stopping so that nothing \
             is acknowledged that is not on disk"
        );
        std::process::abort();
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e
            && matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            )
        {
            return Self::Corrupt(format!(
                "the store (claw.db) is damaged ({e}); nothing was changed. `claw doctor` checks \
                 it; restore claw.db from a backup, or move it aside to start a new history"
            ));
        }
        Self::Db {
            context: String::new(),
            source: e,
        }
    }
}

/// Beside `claw.db`: written once the store has been created, so that a store later truncated
/// to nothing is told apart from one being created right now.
const MARKER_SUFFIX: &str = ".created";

/// The cheap checks made before opening an existing store: that it is a SQLite database, that it
/// is not cut short, and that an empty file is a store being created (not one truncated). SQLite
/// itself would open an empty file as a new, empty store, silently showing an empty history.
fn check_file(path: &Path) -> Result<()> {
    use std::io::Read as _;
    let damaged = |why: String| {
        StoreError::Corrupt(format!(
            "{} {why}; claw will not run on it (nothing was changed). Restore it from a backup, \
             or move it aside to start a new history",
            path.display()
        ))
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Schema(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut marker = path.as_os_str().to_owned();
    marker.push(MARKER_SUFFIX);
    if len == 0 {
        if Path::new(&marker).exists() {
            return Err(damaged(
                "is empty, but a store was created here before: it has been truncated".into(),
            ));
        }
        return Ok(());
    }
    let mut header = [0u8; 100];
    if file.read_exact(&mut header).is_err() {
        return Err(damaged(format!(
            "is {len} bytes long, too short for a store"
        )));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err(damaged("is not a SQLite database".into()));
    }
    let page = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_empty = std::fs::metadata(Path::new(&wal)).map_or(true, |m| m.len() == 0);
    // With no WAL to replay, the file is whole pages (a checkpoint in progress may leave it
    // otherwise, and SQLite repairs that from the WAL).
    if page < 512 || (wal_empty && len % page != 0) {
        return Err(damaged(format!(
            "is cut short ({len} bytes is not a whole number of {page}-byte pages)"
        )));
    }
    Ok(())
}

fn mark_created(path: &Path) {
    let mut marker = path.as_os_str().to_owned();
    marker.push(MARKER_SUFFIX);
    let marker = Path::new(&marker);
    if !marker.exists() {
        let _ = crate::fsutil::write_atomic(marker, ".claw.db.created.", b"");
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

const RUN_COLUMNS: &str = "id, workflow, workflow_path, definition, params, trigger_data, status, owner, \
     lease_until, dry_run, cancel_requested, parent_run, outputs, error, created_at, started_at, finished_at";

const STEP_COLUMNS: &str = "name, phase, seq, status, attempts, exit_code, started_at, finished_at, outputs, \
     stdout_tail, stderr_tail, message, log_path, decision, decided_by";

fn json(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Result<RunRecord>> {
    let status: String = row.get(6)?;
    let params: String = row.get(4)?;
    let trigger: String = row.get(5)?;
    let outputs: String = row.get(12)?;
    let build = || -> Result<RunRecord> {
        Ok(RunRecord {
            id: row.get(0)?,
            workflow: row.get(1)?,
            workflow_path: row.get(2)?,
            definition: row.get(3)?,
            params: json(&params, "run params")?,
            trigger: json(&trigger, "run trigger")?,
            status: status.parse().map_err(|e| corrupt("run status", e))?,
            owner: row.get(7)?,
            lease_until: row.get(8)?,
            dry_run: row.get(9)?,
            cancel_requested: row.get(10)?,
            parent_run: row.get(11)?,
            outputs: json(&outputs, "run outputs")?,
            error: row.get(13)?,
            created_at: row.get(14)?,
            started_at: row.get(15)?,
            finished_at: row.get(16)?,
        })
    };
    Ok(build())
}

fn step_from_row(row: &Row<'_>) -> rusqlite::Result<Result<StepRecord>> {
    let phase: String = row.get(1)?;
    let status: String = row.get(3)?;
    let outputs: String = row.get(8)?;
    let attempts: i64 = row.get(4)?;
    let decision: Option<String> = row.get(13)?;
    let build = || -> Result<StepRecord> {
        Ok(StepRecord {
            name: row.get(0)?,
            phase: phase.parse().map_err(|e| corrupt("step phase", e))?,
            seq: row.get(2)?,
            status: status.parse().map_err(|e| corrupt("step status", e))?,
            attempts: u32::try_from(attempts).map_err(|e| corrupt("step attempts", e))?,
            exit_code: row.get(5)?,
            started_at: row.get(6)?,
            finished_at: row.get(7)?,
            outputs: json(&outputs, "step outputs")?,
            stdout_tail: row.get(9)?,
            stderr_tail: row.get(10)?,
            message: row.get(11)?,
            log_path: row.get(12)?,
            decision: decision
                .map(|d| d.parse().map_err(|e| corrupt("step decision", e)))
                .transpose()?,
            decided_by: row.get(14)?,
        })
    };
    Ok(build())
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<Result<T>>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

const ACTIVE: &str = "('running', 'waiting')";

const SCHEDULE_COLUMNS: &str = "id, last_fire, first_seen, fired, missed, skipped";

fn schedule_from_row(row: &Row<'_>) -> rusqlite::Result<ScheduleState> {
    let count = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(i)?).unwrap_or(0))
    };
    Ok(ScheduleState {
        id: row.get(0)?,
        last_fire: row.get(1)?,
        first_seen: row.get(2)?,
        fired: count(3)?,
        missed: count(4)?,
        skipped: count(5)?,
    })
}

const FIRE_COLUMNS: &str =
    "schedule, scheduled_for, due_at, enqueued_at, late, status, run_id, detail, finished_at";

fn fire_from_row(row: &Row<'_>) -> rusqlite::Result<FireRecord> {
    Ok(FireRecord {
        schedule: row.get(0)?,
        scheduled_for: row.get(1)?,
        due_at: row.get(2)?,
        enqueued_at: row.get(3)?,
        late: row.get(4)?,
        status: row.get(5)?,
        run_id: row.get(6)?,
        detail: row.get(7)?,
        finished_at: row.get(8)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        check_file(path)?;
        let conn = Connection::open(path).map_err(|source| StoreError::Db {
            context: format!("cannot open {}", path.display()),
            source,
        })?;
        tracing::debug!(path = %path.display(), "store opened");
        let store = Self::init(conn)?;
        // Its own: private whatever the umask (SQLite creates it 0644 less the umask).
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = fs_private(Path::new(&file));
        }
        mark_created(path);
        Ok(store)
    }

    /// SQLite's `PRAGMA quick_check`: every page read and its structure checked (it reads the
    /// whole file). The problems found, none when the store is whole.
    pub fn quick_check(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("PRAGMA quick_check(20)")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let found: Vec<String> = rows.collect::<std::result::Result<_, _>>()?;
        Ok(found.into_iter().filter(|l| l != "ok").collect())
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(30))?;
        // WAL lets readers (claw run list) work while a run writes; FULL makes every commit durable.
        // Turning a new database to WAL needs it to itself: two processes opening a fresh data
        // directory at once (a run starting while `claw run list` polls) get SQLITE_BUSY here
        // without the busy handler being asked, so wait for the other one.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Keep the WAL file when the last connection closes (no checkpoint-and-delete on every
        // `claw` invocation): later commits then overwrite WAL space instead of growing the file,
        // and an fsync that does not change the file's size is far cheaper. The first connection
        // of a process reads every frame written since the last checkpoint to rebuild the WAL's
        // index, so the WAL is checkpointed every WAL_PAGES pages (SQLite's default, 1000, made
        // every `claw` command read up to 4 MB before its first query).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)?;
        let store = Self {
            conn: Mutex::new(conn),
            group: None,
        };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Conn<'_> {
        // A poisoned lock only means another thread panicked mid-call; the connection is still
        // consistent because every write is one transaction.
        let guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Conn {
            changes: guard.total_changes(),
            guard: Some(guard),
            group: self.group.as_deref(),
        }
    }

    /// Group commit (see the module's documentation), as [`super::open`] applies it.
    pub fn with_group_commit(mut self, path: &Path) -> Result<Self> {
        self.conn().pragma_update(None, "synchronous", "NORMAL")?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        self.group = Some(Arc::new(Group {
            sync: crate::fsutil::GroupSync::new(wal.into()),
            checkpoints: Checkpoints::new(path),
        }));
        Ok(self)
    }

    /// How many WAL syncs group commit has made (none without it).
    pub fn group_syncs(&self) -> u64 {
        self.group.as_deref().map_or(0, |g| g.sync.syncs())
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let applied = usize::try_from(version).map_err(|e| corrupt("schema version", e))?;
        if applied > MIGRATIONS.len() {
            return Err(StoreError::Schema(format!(
                "the database has schema version {applied}, newer than this claw knows ({}); upgrade claw",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(applied) {
            tx.execute_batch(m.sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn insert_run(conn: &Connection, r: &RunRecord) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
                r.id,
                r.workflow,
                r.workflow_path,
                r.definition,
                r.params.to_string(),
                r.trigger.to_string(),
                status_str(r.status),
                r.owner,
                r.lease_until,
                r.dry_run,
                r.cancel_requested,
                r.parent_run,
                r.outputs.to_string(),
                r.error,
                r.created_at,
                r.started_at,
                r.finished_at,
            ])?;
    Ok(())
}

fn status_str(s: RunStatus) -> &'static str {
    s.as_str()
}

/// `f` in one `BEGIN IMMEDIATE` transaction, as `Connection::transaction_with_behavior` runs it
/// but with `BEGIN` and `COMMIT` prepared once per connection: this is every step transition's
/// transaction, and parsing the two statements again each time was a tenth of its cost.
fn immediate<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let done = f(conn).and_then(|v| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(v)
    });
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

fn write_step(conn: &Connection, run_id: &str, s: &StepRecord) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO steps (run_id, {STEP_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?
    .execute(params![
        run_id,
        s.name,
        s.phase.as_str(),
        s.seq,
        s.status.as_str(),
        s.attempts,
        s.exit_code,
        s.started_at,
        s.finished_at,
        s.outputs.to_string(),
        s.stdout_tail,
        s.stderr_tail,
        s.message,
        s.log_path,
        s.decision.map(Decision::as_str),
        s.decided_by,
    ])?;
    Ok(())
}

impl Store for SqliteStore {
    fn checkpoint_beside_writers(&self) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        self.conn()
            .pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)?;
        group.checkpoints.on.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn durable_together(&self, f: &mut dyn FnMut()) {
        if let Some(wait) = self.deferred(f) {
            wait.wait();
        }
    }

    fn deferred(&self, f: &mut dyn FnMut()) -> Option<SyncWait> {
        // Nested, or without group commit: each write already waits (or the outer call will).
        let group = match &self.group {
            Some(g) if DEFERRED.with(Cell::get).is_none() => g.clone(),
            _ => {
                f();
                return None;
            }
        };
        /// Ends the deferral even if `f` panics.
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                DEFERRED.with(|d| d.set(None));
            }
        }
        let reset = Reset;
        DEFERRED.with(|d| d.set(Some(0)));
        f();
        let ticket = DEFERRED.with(Cell::get).unwrap_or(0);
        drop(reset);
        let start = Arc::clone(&group);
        (ticket > 0).then(|| {
            SyncWait::new(move || group.wait(ticket))
                .with_start(move || start.sync.start_writeback())
        })
    }

    fn create_run(&self, r: &RunRecord) -> Result<()> {
        insert_run(&self.conn(), r)
    }

    fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?;
        stmt.query_row([id], run_from_row).optional()?.transpose()
    }

    fn find_run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        if let Some(r) = self.get_run(id_or_prefix)? {
            return Ok(r);
        }
        let prefix = id_or_prefix.to_ascii_lowercase();
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id >= ?1 AND id < ?1 || x'7f' ORDER BY id LIMIT 6"
        ))?;
        let runs = collect(stmt.query_map([&prefix], run_from_row)?)?;
        match runs.len() {
            0 => Err(StoreError::NoSuchRun(id_or_prefix.to_owned())),
            1 => Ok(runs
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NoSuchRun(prefix.clone()))?),
            _ => Err(StoreError::Ambiguous {
                prefix: id_or_prefix.to_owned(),
                candidates: runs
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>> {
        let status = f.status.map(status_str);
        let limit = f.limit.map_or(-1, i64::from);
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
        args.extend(f.workflow.as_ref().map(|w| w as &dyn rusqlite::ToSql));
        args.extend(status.as_ref().map(|s| s as &dyn rusqlite::ToSql));
        args.extend(f.parent.as_ref().map(|p| p as &dyn rusqlite::ToSql));
        args.push(&limit);
        let sql = list_runs_sql(f.workflow.is_some(), status.is_some(), f.parent.is_some());
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        collect(stmt.query_map(args.as_slice(), run_from_row)?)
    }

    fn unfinished_runs(&self, workflow: Option<&str>) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'running', 'waiting') \
             AND (?1 IS NULL OR workflow = ?1) ORDER BY created_at, id"
        ))?;
        collect(stmt.query_map(params![workflow], run_from_row)?)
    }

    fn unfinished_runs_after(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
        skip: &[&str],
    ) -> Result<Vec<RunRecord>> {
        let skip = serde_json::to_string(skip).map_err(|e| corrupt("run ids", e))?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'running', 'waiting') \
             AND (?1 IS NULL OR created_at > ?1 OR (created_at = ?1 AND id > ?2)) \
             AND id NOT IN (SELECT value FROM json_each(?4)) \
             ORDER BY created_at, id LIMIT ?3"
        ))?;
        let (at, id) = after.unzip();
        collect(stmt.query_map(params![at, id, limit, skip], run_from_row)?)
    }

    fn schedule_run_before(&self, schedule: &str, created_at: i64, id: &str) -> Result<bool> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT 1 FROM runs WHERE status IN ('queued', 'running', 'waiting') \
                 AND (created_at < ?2 OR (created_at = ?2 AND id < ?3)) \
                 AND json_extract(trigger_data, '$.schedule') = ?1 LIMIT 1",
                params![schedule, created_at, id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    fn count_waiting(&self, ids: &[&str]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let list = serde_json::to_string(ids).map_err(|e| corrupt("run ids", e))?;
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM runs WHERE status = 'waiting' \
             AND id IN (SELECT value FROM json_each(?1))",
            [list],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn claim_run(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        is_dead: &dyn Fn(&RunRecord) -> bool,
    ) -> Result<Option<RunRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let run = {
            let mut stmt =
                tx.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?;
            stmt.query_row([id], run_from_row).optional()?.transpose()?
        };
        let Some(mut run) = run else {
            return Err(StoreError::NoSuchRun(id.to_owned()));
        };
        let free = match run.owner.as_deref() {
            None => true,
            // Already ours (the creator claimed it): nothing to write.
            Some(o) if o == owner => return Ok(Some(run)),
            Some(_) => is_dead(&run),
        };
        if !free {
            return Ok(None);
        }
        tx.execute(
            "UPDATE runs SET owner = ?2, lease_until = ?3 WHERE id = ?1",
            params![id, owner, lease_until],
        )?;
        tx.commit()?;
        run.owner = Some(owner.to_owned());
        run.lease_until = Some(lease_until);
        Ok(Some(run))
    }

    fn admit_run(
        &self,
        id: &str,
        limit: u32,
        now: i64,
        is_dead: &dyn Fn(&RunRecord) -> bool,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (workflow, created_at): (String, i64) = tx
            .query_row(
                "SELECT workflow, created_at FROM runs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_owned()))?;
        let others = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE workflow = ?1 AND id != ?2 AND \
                 (status IN {ACTIVE} OR (status = 'queued' AND (created_at < ?3 OR (created_at = ?3 AND id < ?2))))"
            ))?;
            collect(stmt.query_map(params![workflow, id, created_at], run_from_row)?)?
        };
        // A run whose owner died holds no slot; an unowned queued run (a detached one not yet
        // picked up) keeps its place in the queue.
        let busy = others.iter().filter(|r| !is_dead(r)).count();
        if busy >= limit as usize {
            return Ok(false);
        }
        tx.execute(
            "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn heartbeat(&self, id: &str, owner: &str, lease_until: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET lease_until = ?3 WHERE id = ?1 AND owner = ?2",
            params![id, owner, lease_until],
        )?;
        Ok(())
    }

    fn update_run(
        &self,
        id: &str,
        status: RunStatus,
        error: Option<&str>,
        outputs: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<()> {
        let finished = status.is_finished().then_some(now);
        let started = (status == RunStatus::Running).then_some(now);
        self.conn().execute(
            "UPDATE runs SET status = ?2, error = COALESCE(?3, error), outputs = COALESCE(?4, outputs), \
             finished_at = COALESCE(?5, finished_at), started_at = COALESCE(started_at, ?6) WHERE id = ?1",
            params![
                id,
                status_str(status),
                error,
                outputs.map(ToString::to_string),
                finished,
                started
            ],
        )?;
        Ok(())
    }

    fn finish_run(
        &self,
        id: &str,
        steps: &[StepRecord],
        status: RunStatus,
        error: Option<&str>,
        outputs: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for s in steps {
            write_step(&tx, id, s)?;
        }
        tx.execute(
            "UPDATE runs SET status = ?2, error = ?3, outputs = COALESCE(?4, outputs), finished_at = ?5 WHERE id = ?1",
            params![id, status_str(status), error, outputs.map(ToString::to_string), now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn request_cancel(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    fn cancel_requested(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached("SELECT cancel_requested FROM runs WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .unwrap_or(false))
    }

    fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY \
             CASE phase WHEN 'main' THEN 0 WHEN 'rollback' THEN 1 ELSE 2 END, seq, started_at"
        ))?;
        collect(stmt.query_map([run_id], step_from_row)?)
    }

    fn record_steps(
        &self,
        run_id: &str,
        steps: &[StepRecord],
        run_status: Option<RunStatus>,
    ) -> Result<()> {
        immediate(&self.conn(), |tx| {
            for s in steps {
                write_step(tx, run_id, s)?;
            }
            if let Some(status) = run_status {
                tx.prepare_cached("UPDATE runs SET status = ?2 WHERE id = ?1")?
                    .execute(params![run_id, status_str(status)])?;
            }
            Ok(())
        })
    }

    fn decide_step(&self, run_id: &str, step: &str, decision: Decision, who: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE steps SET decision = ?3, decided_by = ?4 WHERE run_id = ?1 AND name = ?2 AND status = 'interrupted'",
            params![run_id, step, decision.as_str(), who],
        )?;
        Ok(n > 0)
    }

    fn open_approval(&self, request: &ApprovalRequest) -> Result<(ApprovalRequest, bool)> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO approvals (run_id, step, message, approvers, quorum, deadline, \
             on_timeout, input, requested_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                request.run_id,
                request.step,
                request.message,
                serde_json::Value::from(request.approvers.clone()).to_string(),
                request.quorum,
                request.deadline,
                request.on_timeout,
                request.input.to_string(),
                request.requested_at,
            ],
        )?;
        let stored = read_approval(&tx, &request.run_id, &request.step)?
            .ok_or_else(|| StoreError::Schema("the approval request vanished".into()))?;
        tx.commit()?;
        Ok((stored.request, n > 0))
    }

    fn approval(&self, run_id: &str, step: &str) -> Result<Option<Approval>> {
        read_approval(&self.conn(), run_id, step)
    }

    fn add_vote(&self, run_id: &str, step: &str, vote: &Vote) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO approval_votes (run_id, step, approver, decision, reason, input, decided_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                run_id,
                step,
                vote.approver,
                vote.decision,
                vote.reason,
                vote.input.to_string(),
                vote.decided_at,
            ],
        )?;
        Ok(n > 0)
    }

    fn pending_approvals(&self) -> Result<Vec<Approval>> {
        let conn = self.conn();
        let keys: Vec<(String, String)> = {
            let mut stmt = conn.prepare_cached(
                "SELECT a.run_id, a.step FROM approvals a JOIN steps s ON s.run_id = a.run_id AND (s.name = a.step \
                 OR (substr(a.step, 1, length(s.name) + 1) = s.name || '#' AND NOT EXISTS \
                 (SELECT 1 FROM approval_votes v WHERE v.run_id = a.run_id AND v.step = a.step))) \
                 JOIN runs r ON r.id = a.run_id \
                 WHERE s.status = 'waiting' AND r.status NOT IN ('succeeded', 'failed', 'cancelled') \
                 ORDER BY a.requested_at",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::new();
        for (run, step) in keys {
            if let Some(a) = read_approval(&conn, &run, &step)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn prune_runs(&self, workflow: &str, older_than: i64, keep: u32) -> Result<Vec<String>> {
        let mut conn = self.conn();
        // Most calls find nothing to delete: check without taking the write lock.
        let (count, oldest): (i64, Option<i64>) = conn
            .prepare_cached(
                "SELECT COUNT(*), MIN(created_at) FROM runs WHERE workflow = ?1 \
                 AND status IN ('succeeded', 'failed', 'cancelled')",
            )?
            .query_row([workflow], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if count <= i64::from(keep) && oldest.is_none_or(|t| t >= older_than) {
            return Ok(Vec::new());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id FROM runs WHERE workflow = ?1 AND status IN ('succeeded', 'failed', 'cancelled') \
                 AND (created_at < ?2 OR id NOT IN (SELECT id FROM runs WHERE workflow = ?1 \
                 ORDER BY created_at DESC, id DESC LIMIT ?3))",
            )?;
            let rows = stmt.query_map(params![workflow, older_than, keep], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for id in &ids {
            tx.execute("DELETE FROM runs WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(ids)
    }

    // --- webhook deliveries ---

    fn claim_delivery(
        &self,
        hook: &str,
        delivery_id: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<super::Delivery> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM webhook_deliveries WHERE received_at < ?1",
            [forget_before],
        )?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (hook, delivery_id, run_id, received_at) \
             VALUES (?1, ?2, NULL, ?3)",
            params![hook, delivery_id, now],
        )?;
        let out = if inserted == 1 {
            super::Delivery::New
        } else {
            let run_id: Option<String> = tx.query_row(
                "SELECT run_id FROM webhook_deliveries WHERE hook = ?1 AND delivery_id = ?2",
                params![hook, delivery_id],
                |r| r.get(0),
            )?;
            super::Delivery::Seen { run_id }
        };
        tx.commit()?;
        Ok(out)
    }

    fn set_delivery_run(&self, hook: &str, delivery_id: &str, run_id: Option<&str>) -> Result<()> {
        let conn = self.conn();
        if let Some(run_id) = run_id {
            conn.execute(
                "UPDATE webhook_deliveries SET run_id = ?3 WHERE hook = ?1 AND delivery_id = ?2",
                params![hook, delivery_id, run_id],
            )?;
        } else {
            conn.execute(
                "DELETE FROM webhook_deliveries WHERE hook = ?1 AND delivery_id = ?2",
                params![hook, delivery_id],
            )?;
        }
        Ok(())
    }

    fn release_memory(&self) {
        let _ = self.conn().execute_batch("PRAGMA shrink_memory");
    }

    fn enqueue_messages(&self, messages: &[super::NewMessage], now: i64) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            tx.execute(
                "INSERT INTO outbox (channel, target, body, source, status, attempts, next_at, \
                 created_at, updated_at, extra) VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5, ?6)",
                params![m.channel, m.target, m.body, m.source, now, m.extra],
            )?;
            ids.push(tx.last_insert_rowid());
        }
        tx.commit()?;
        Ok(ids)
    }

    fn release_messages(&self, prefix: &str, keep: &str) -> Result<usize> {
        let n = self.conn().execute(
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE status = 'pending' \
             AND claimed_by IS NOT NULL AND substr(claimed_by, 1, length(?1)) = ?1 AND claimed_by != ?2",
            params![prefix, keep],
        )?;
        Ok(n)
    }

    fn messages_from(&self, source: &str) -> Result<Vec<super::OutboxMessage>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT * FROM outbox WHERE source = ?1 ORDER BY id")?;
        let rows = stmt
            .query_map([source], outbox_row)?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn watch_run(&self, w: &super::RunWatch) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO chat_watch (run_id, channel, chat, workflow, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![w.run_id, w.channel, w.chat, w.workflow, w.created_at],
        )?;
        Ok(())
    }

    fn run_watches(&self) -> Result<Vec<super::RunWatch>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT run_id, channel, chat, workflow, created_at FROM chat_watch ORDER BY created_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(super::RunWatch {
                run_id: r.get(0)?,
                channel: r.get(1)?,
                chat: r.get(2)?,
                workflow: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn end_watch(
        &self,
        run_id: &str,
        messages: &[super::NewMessage],
        now: i64,
    ) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if tx.execute("DELETE FROM chat_watch WHERE run_id = ?1", [run_id])? == 0 {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            tx.execute(
                "INSERT INTO outbox (channel, target, body, source, status, attempts, next_at, \
                 created_at, updated_at, extra) VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5, ?6)",
                params![m.channel, m.target, m.body, m.source, now, m.extra],
            )?;
            ids.push(tx.last_insert_rowid());
        }
        tx.commit()?;
        Ok(ids)
    }

    fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<super::OutboxMessage>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The head of each (channel, target) queue: a later message never overtakes it.
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT o.id FROM outbox o WHERE o.status = 'pending' AND o.id = ( \
                   SELECT MIN(i.id) FROM outbox i WHERE i.status = 'pending' \
                   AND i.channel = o.channel AND i.target = o.target) \
                 AND o.next_at <= ?1 AND (o.claimed_until IS NULL OR o.claimed_until < ?1) \
                 ORDER BY o.id LIMIT ?2",
            )?;
            stmt.query_map(params![now, limit], |r| r.get(0))?
                .collect::<std::result::Result<_, _>>()?
        };
        for id in &ids {
            tx.execute(
                "UPDATE outbox SET claimed_by = ?2, claimed_until = ?3 WHERE id = ?1",
                params![id, owner, lease_until],
            )?;
        }
        tx.commit()?;
        drop(conn);
        self.messages(&ids)
    }

    fn finish_message(&self, id: i64, outcome: &super::MessageOutcome, now: i64) -> Result<()> {
        let conn = self.conn();
        let (status, next_at, error, provider): (&str, Option<i64>, Option<&str>, Option<&str>) =
            match outcome {
                super::MessageOutcome::Sent { provider_id } => {
                    ("sent", None, None, Some(provider_id))
                }
                super::MessageOutcome::Retry { next_at, error } => {
                    ("pending", Some(*next_at), Some(error), None)
                }
                super::MessageOutcome::Dead { error } => ("dead", None, Some(error), None),
            };
        conn.execute(
            "UPDATE outbox SET status = ?2, attempts = attempts + 1, \
             next_at = COALESCE(?3, next_at), last_error = COALESCE(?4, last_error), \
             provider_id = COALESCE(?5, provider_id), claimed_by = NULL, claimed_until = NULL, \
             updated_at = ?6 WHERE id = ?1",
            params![id, status, next_at, error, provider, now],
        )?;
        Ok(())
    }

    fn list_messages(&self, failed: bool, limit: u32) -> Result<Vec<super::OutboxMessage>> {
        let conn = self.conn();
        let sql = if failed {
            "SELECT * FROM outbox WHERE status = 'dead' OR (status = 'pending' AND attempts > 0) \
             ORDER BY id DESC LIMIT ?1"
        } else {
            "SELECT * FROM outbox ORDER BY id DESC LIMIT ?1"
        };
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt
            .query_map([limit], outbox_row)?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn messages(&self, ids: &[i64]) -> Result<Vec<super::OutboxMessage>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT * FROM outbox WHERE id = ?1")?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(m) = stmt.query_row([id], outbox_row).optional()? {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn retry_message(&self, id: i64, now: i64) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_at = ?2, updated_at = ?2, \
             claimed_by = NULL, claimed_until = NULL WHERE id = ?1 AND status = 'dead'",
            params![id, now],
        )?;
        Ok(n == 1)
    }

    fn chat_access(&self, channel: &str, chat: &str) -> Result<Option<super::ChatAccess>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT channel, chat, status, name, decided_by, updated_at FROM chat_access \
                 WHERE channel = ?1 AND chat = ?2",
                params![channel, chat],
                chat_row,
            )
            .optional()?)
    }

    fn set_chat_access(&self, access: &super::ChatAccess) -> Result<()> {
        self.conn().execute(
            "INSERT INTO chat_access (channel, chat, status, name, decided_by, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (channel, chat) DO UPDATE SET \
             status = excluded.status, name = CASE WHEN excluded.name = '' THEN chat_access.name \
             ELSE excluded.name END, decided_by = excluded.decided_by, updated_at = excluded.updated_at",
            params![
                access.channel,
                access.chat,
                access.status,
                access.name,
                access.decided_by,
                access.updated_at
            ],
        )?;
        Ok(())
    }

    fn chat_session(&self, channel: &str, chat: &str) -> Result<Option<super::ChatSession>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT mode, model, history, updated_at FROM chat_sessions \
                 WHERE channel = ?1 AND chat = ?2",
                params![channel, chat],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()?;
        Ok(
            row.map(|(mode, model, history, updated_at)| super::ChatSession {
                channel: channel.to_owned(),
                chat: chat.to_owned(),
                mode,
                model,
                // A history that does not read is no history (the next turn rewrites it).
                history: serde_json::from_str(&history).unwrap_or_default(),
                updated_at,
            }),
        )
    }

    fn set_chat_session(&self, s: &super::ChatSession) -> Result<()> {
        let history = serde_json::to_string(&s.history).unwrap_or_else(|_| "[]".to_owned());
        self.conn().execute(
            "INSERT INTO chat_sessions (channel, chat, mode, model, history, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (channel, chat) DO UPDATE SET \
             mode = excluded.mode, model = excluded.model, history = excluded.history, \
             updated_at = excluded.updated_at",
            params![s.channel, s.chat, s.mode, s.model, history, s.updated_at],
        )?;
        Ok(())
    }

    fn remove_chat_access(&self, channel: &str, chat: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM chat_access WHERE channel = ?1 AND chat = ?2",
            params![channel, chat],
        )?;
        Ok(n == 1)
    }

    fn list_chat_access(&self) -> Result<Vec<super::ChatAccess>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT channel, chat, status, name, decided_by, updated_at FROM chat_access \
             ORDER BY channel, status, chat",
        )?;
        let rows = stmt.query_map([], chat_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn inbound_cursor(&self, channel: &str) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT next_offset FROM inbound_cursor WHERE channel = ?1",
                [channel],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn set_inbound_cursor(&self, channel: &str, next_offset: i64, now: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO inbound_cursor (channel, next_offset, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (channel) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset), \
             updated_at = excluded.updated_at",
            params![channel, next_offset, now],
        )?;
        Ok(())
    }

    fn runs_page(&self, q: &super::RunQuery) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR workflow = ?1) AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR created_at >= ?3) AND +parent_run IS NULL \
             ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5"
        ))?;
        collect(stmt.query_map(
            params![
                q.workflow,
                q.status.map(status_str),
                q.since,
                i64::from(q.limit),
                i64::from(q.offset)
            ],
            run_from_row,
        )?)
    }

    fn run_counts(&self, since: Option<i64>) -> Result<Vec<(String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT status, COUNT(*) FROM runs WHERE (?1 IS NULL OR created_at >= ?1) GROUP BY status ORDER BY status",
        )?;
        let rows = stmt
            .query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn runs_by_trigger(&self, kind: &str, limit: u32) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE json_valid(trigger_data) \
             AND json_extract(trigger_data, '$.type') = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))?;
        collect(stmt.query_map(params![kind, i64::from(limit)], run_from_row)?)
    }

    fn trigger_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT COALESCE(json_extract(trigger_data, '$.type'), ''), \
             COALESCE(json_extract(trigger_data, '$.hook'), json_extract(trigger_data, '$.rule'), ''), \
             COUNT(*) FROM runs WHERE json_valid(trigger_data) GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    value_text(r.get_ref(0)?),
                    value_text(r.get_ref(1)?),
                    r.get(2)?,
                ))
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn step_durations(&self, bounds_ms: &[i64]) -> Result<super::StepDurations> {
        // The bounds are numbers, written into the statement (one per column).
        let cols: String = bounds_ms
            .iter()
            .map(|b| format!(", COALESCE(SUM(d <= {b}), 0)"))
            .collect();
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT COUNT(*), COALESCE(SUM(d), 0){cols} FROM (SELECT MAX(finished_at - started_at, 0) AS d \
             FROM steps WHERE started_at IS NOT NULL AND finished_at IS NOT NULL)"
        ))?;
        let out = stmt.query_row([], |r| {
            let mut buckets = Vec::with_capacity(bounds_ms.len());
            for i in 0..bounds_ms.len() {
                buckets.push(r.get(i + 2)?);
            }
            Ok(super::StepDurations {
                buckets,
                count: r.get(0)?,
                sum_ms: r.get(1)?,
            })
        })?;
        Ok(out)
    }

    fn llm_usage(&self, since: Option<i64>) -> Result<Vec<super::LlmUsage>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT json_extract(s.outputs, '$.provider'), COALESCE(json_extract(s.outputs, '$.model'), ''), \
             COUNT(*), COALESCE(SUM(json_extract(s.outputs, '$.usage.input_tokens')), 0), \
             COALESCE(SUM(json_extract(s.outputs, '$.usage.output_tokens')), 0) \
             FROM steps s JOIN runs r ON r.id = s.run_id \
             WHERE (?1 IS NULL OR r.created_at >= ?1) AND json_valid(s.outputs) \
             AND json_type(s.outputs, '$.provider') = 'text' AND json_type(s.outputs, '$.usage') = 'object' \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let rows = stmt
            .query_map(params![since], |r| {
                Ok(super::LlmUsage {
                    provider: value_text(r.get_ref(0)?),
                    model: value_text(r.get_ref(1)?),
                    steps: r.get(2)?,
                    input_tokens: r.get(3)?,
                    output_tokens: r.get(4)?,
                })
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn message_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY channel, status",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn dashboard_users(&self) -> Result<Vec<super::DashboardUser>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT u.name, u.created_at, u.updated_at, \
             (SELECT COUNT(*) FROM dashboard_sessions s WHERE s.user = u.name), \
             (SELECT COUNT(*) FROM dashboard_tokens t WHERE t.user = u.name) \
             FROM dashboard_users u ORDER BY u.name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(super::DashboardUser {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    updated_at: r.get(2)?,
                    sessions: r.get(3)?,
                    tokens: r.get(4)?,
                })
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn dashboard_password(&self, name: &str) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT hash FROM dashboard_users WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn add_dashboard_user(&self, name: &str, hash: &str, now: i64) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO dashboard_users (name, hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
            params![name, hash, now],
        )?;
        Ok(n == 1)
    }

    fn set_dashboard_password(&self, name: &str, hash: &str, now: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE dashboard_users SET hash = ?2, updated_at = ?3 WHERE name = ?1",
            params![name, hash, now],
        )?;
        tx.execute("DELETE FROM dashboard_sessions WHERE user = ?1", [name])?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn remove_dashboard_user(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM dashboard_users WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM dashboard_sessions WHERE user = ?1", [name])?;
        tx.execute("DELETE FROM dashboard_tokens WHERE user = ?1", [name])?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn create_session(&self, s: &super::DashboardSession) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO dashboard_sessions (id_hash, user, csrf, created_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.id_hash, s.user, s.csrf, s.created_at, s.last_seen],
        )?;
        Ok(())
    }

    fn session(&self, id_hash: &str) -> Result<Option<super::DashboardSession>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id_hash, user, csrf, created_at, last_seen FROM dashboard_sessions WHERE id_hash = ?1",
        )?;
        Ok(stmt
            .query_row([id_hash], |r| {
                Ok(super::DashboardSession {
                    id_hash: r.get(0)?,
                    user: r.get(1)?,
                    csrf: r.get(2)?,
                    created_at: r.get(3)?,
                    last_seen: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn touch_session(&self, id_hash: &str, now: i64) -> Result<()> {
        let conn = self.conn();
        conn.prepare_cached("UPDATE dashboard_sessions SET last_seen = ?2 WHERE id_hash = ?1")?
            .execute(params![id_hash, now])?;
        Ok(())
    }

    fn end_session(&self, id_hash: &str) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "DELETE FROM dashboard_sessions WHERE id_hash = ?1",
            [id_hash],
        )?;
        Ok(n == 1)
    }

    fn prune_sessions(&self, idle_before: i64, created_before: i64) -> Result<usize> {
        let conn = self.conn();
        Ok(conn.execute(
            "DELETE FROM dashboard_sessions WHERE last_seen < ?1 OR created_at < ?2",
            params![idle_before, created_before],
        )?)
    }

    fn add_api_token(&self, hash: &str, user: &str, name: &str, now: i64) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO dashboard_tokens (hash, user, name, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, user, name, now],
        )?;
        Ok(n == 1)
    }

    fn api_token_user(&self, hash: &str, now: i64) -> Result<Option<String>> {
        let conn = self.conn();
        let found: Option<(String, Option<i64>)> = conn
            .prepare_cached("SELECT user, last_used FROM dashboard_tokens WHERE hash = ?1")?
            .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((user, last_used)) = found else {
            return Ok(None);
        };
        // Recorded at most once a minute: a write (and its fsync) per API request would cost
        // more than the request.
        if last_used.is_none_or(|t| now - t >= 60_000) {
            conn.prepare_cached("UPDATE dashboard_tokens SET last_used = ?2 WHERE hash = ?1")?
                .execute(params![hash, now])?;
        }
        Ok(Some(user))
    }

    fn api_tokens(&self) -> Result<Vec<super::ApiToken>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT user, name, created_at, last_used FROM dashboard_tokens ORDER BY user, name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(super::ApiToken {
                    user: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used: r.get(3)?,
                })
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn remove_api_token(&self, user: &str, name: &str) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "DELETE FROM dashboard_tokens WHERE user = ?1 AND name = ?2",
            params![user, name],
        )?;
        Ok(n == 1)
    }

    fn data_version(&self) -> Option<u64> {
        self.conn()
            .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .ok()
            .and_then(|v| u64::try_from(v).ok())
    }

    fn register_schedules(&self, ids: &[String], now: i64) -> Result<Vec<ScheduleState>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(ids.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO schedules (id, first_seen) VALUES (?1, ?2)",
            )?;
            let mut select = tx.prepare_cached(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"
            ))?;
            for id in ids {
                insert.execute(params![id, now])?;
                out.push(select.query_row([id], schedule_from_row)?);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id"
        ))?;
        let rows = stmt.query_map([], schedule_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn commit_fires(&self, batch: &FireBatch, now: i64) -> Result<Vec<bool>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = Vec::with_capacity(batch.fires.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO schedule_fires \
                 (schedule, scheduled_for, due_at, enqueued_at, late, status, run_id, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut count = tx.prepare_cached(
                "UPDATE schedules SET fired = fired + ?2, skipped = skipped + ?3 WHERE id = ?1",
            )?;
            for f in &batch.fires {
                let run_id = f.run.as_ref().map(|r| r.id.as_str());
                let new = insert.execute(params![
                    f.schedule,
                    f.scheduled_for,
                    f.due_at,
                    now,
                    f.late,
                    f.status.as_str(),
                    run_id,
                    f.detail,
                ])? == 1;
                if new {
                    if let Some(run) = &f.run {
                        insert_run(&tx, run)?;
                    }
                    let skipped = f.status == FireStatus::Skipped;
                    count.execute(params![f.schedule, i64::from(!skipped), i64::from(skipped)])?;
                }
                inserted.push(new);
            }
            let mut advance = tx.prepare_cached(
                "UPDATE schedules SET last_fire = MAX(COALESCE(last_fire, ?2), ?2), \
                 missed = missed + ?3 WHERE id = ?1",
            )?;
            for a in &batch.advances {
                let missed = i64::try_from(a.missed).unwrap_or(i64::MAX);
                advance.execute(params![a.schedule, a.last_fire, missed])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    fn schedule_busy(&self, schedule: &str) -> Result<bool> {
        let conn = self.conn();
        let busy: i64 = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id \
                 WHERE f.schedule = ?1 AND (f.status IN ('queued', 'running') \
                 OR (f.status = 'run' AND r.status IN ('queued', 'running', 'waiting'))))",
            )?
            .query_row([schedule], |r| r.get(0))?;
        Ok(busy != 0)
    }

    fn set_fire_status(
        &self,
        schedule: &str,
        scheduled_for: i64,
        status: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let finished = !matches!(status, "queued" | "running");
        self.conn()
            .prepare_cached(
                "UPDATE schedule_fires SET status = ?3, detail = COALESCE(?4, detail), \
                 finished_at = ?5 WHERE schedule = ?1 AND scheduled_for = ?2",
            )?
            .execute(params![
                schedule,
                scheduled_for,
                status,
                detail,
                finished.then_some(now)
            ])?;
        Ok(())
    }

    fn recover_fires(&self, now: i64) -> Result<RecoveredFires> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let select = |status: &str| -> Result<Vec<FireRecord>> {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE status = ?1 \
                 ORDER BY scheduled_for, schedule"
            ))?;
            let rows = stmt.query_map([status], fire_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        };
        let queued = select("queued")?;
        let mut interrupted = select("running")?;
        tx.execute(
            "UPDATE schedule_fires SET status = 'interrupted', finished_at = ?1, \
             detail = 'interrupted: claw stopped while the job ran; not run again (a job may not be safe to repeat)' \
             WHERE status = 'running'",
            [now],
        )?;
        tx.commit()?;
        for f in &mut interrupted {
            f.status = "interrupted".into();
        }
        Ok(RecoveredFires {
            queued,
            interrupted,
        })
    }

    fn list_fires(&self, schedule: Option<&str>, limit: u32) -> Result<Vec<FireRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE ?1 IS NULL OR schedule = ?1 \
             ORDER BY scheduled_for DESC, schedule LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![schedule, limit], fire_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn prune_fires(&self, before: i64) -> Result<usize> {
        let n = self.conn().execute(
            "DELETE FROM schedule_fires WHERE enqueued_at < ?1 \
             AND status NOT IN ('queued', 'running') \
             AND scheduled_for < (SELECT MAX(scheduled_for) FROM schedule_fires g \
                                  WHERE g.schedule = schedule_fires.schedule)",
            [before],
        )?;
        Ok(n)
    }
}

fn read_approval(conn: &Connection, run_id: &str, step: &str) -> Result<Option<Approval>> {
    let row = conn
        .prepare_cached(
            "SELECT message, approvers, quorum, deadline, on_timeout, input, requested_at \
             FROM approvals WHERE run_id = ?1 AND step = ?2",
        )?
        .query_row([run_id, step], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .optional()?;
    let Some((message, approvers, quorum, deadline, on_timeout, input, requested_at)) = row else {
        return Ok(None);
    };
    let approvers: Vec<String> =
        serde_json::from_str(&approvers).map_err(|e| corrupt("approvers", e))?;
    let request = ApprovalRequest {
        run_id: run_id.to_owned(),
        step: step.to_owned(),
        message,
        approvers,
        quorum,
        deadline,
        on_timeout,
        input: json(&input, "approval input")?,
        requested_at,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT approver, decision, reason, input, decided_at FROM approval_votes \
         WHERE run_id = ?1 AND step = ?2 ORDER BY decided_at, approver",
    )?;
    let rows = stmt.query_map([run_id, step], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut votes = Vec::new();
    for row in rows {
        let (approver, decision, reason, input, decided_at) = row?;
        votes.push(Vote {
            approver,
            decision,
            reason,
            input: json(&input, "vote input")?,
            decided_at,
        });
    }
    Ok(Some(Approval { request, votes }))
}

/// Makes a file of claw's private to its owner if others could read it.
fn fs_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn chat_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<super::ChatAccess> {
    Ok(super::ChatAccess {
        channel: r.get(0)?,
        chat: r.get(1)?,
        status: r.get(2)?,
        name: r.get(3)?,
        decided_by: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

fn outbox_row(r: &Row<'_>) -> rusqlite::Result<super::OutboxMessage> {
    Ok(super::OutboxMessage {
        id: r.get("id")?,
        channel: r.get("channel")?,
        target: r.get("target")?,
        body: r.get("body")?,
        source: r.get("source")?,
        status: r.get("status")?,
        attempts: r.get("attempts")?,
        next_at: r.get("next_at")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        last_error: r.get("last_error")?,
        provider_id: r.get("provider_id")?,
        extra: r.get("extra")?,
    })
}

/// A JSON value read by `json_extract` as text (a number or anything else as its SQL text).
fn value_text(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    //! SQLite only; the store's behaviour is tested on both backends in `store::tests`.
    use super::*;

    use crate::store::tests::run;

    #[test]
    fn group_commit_syncs_writes_and_groups_them() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| corrupt("tempdir", e))?;
        let path = dir.path().join("claw.db");
        let s = std::sync::Arc::new(SqliteStore::open(&path)?.with_group_commit(&path)?);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || -> Result<()> {
                    for i in 0..20 {
                        s.create_run(&run(&format!("r{t}-{i}"), "wf", i))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| corrupt("thread", "panicked"))??;
        }
        let syncs = s.group_syncs();
        assert!((1..=160).contains(&syncs), "{syncs} syncs for 160 writes");
        // Reads and writes that change nothing need no sync; deferred writes sync once.
        s.get_run("r0-0")?;
        assert_eq!(s.group_syncs(), syncs);
        s.durable_together(&mut || {
            for i in 0..5 {
                s.create_run(&run(&format!("d{i}"), "wf", i)).unwrap();
            }
        });
        assert_eq!(s.group_syncs(), syncs + 1);
        // Another connection (another process) sees everything.
        let other = SqliteStore::open(&path)?;
        assert_eq!(other.unfinished_runs(None)?.len(), 165);
        Ok(())
    }

    #[test]
    fn group_commit_checkpoints_beside_the_writer() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| corrupt("tempdir", e))?;
        let path = dir.path().join("claw.db");
        let s = SqliteStore::open(&path)?.with_group_commit(&path)?;
        s.checkpoint_beside_writers()?;
        let db_len = || std::fs::metadata(&path).map_or(0, |m| m.len());
        let before = db_len();
        // Far fewer pages than SQLite's own checkpoint (the backstop) waits for.
        let commits = CHECKPOINT_COMMITS * 3;
        for i in 0..commits {
            s.create_run(&run(&format!("r{i}"), "wf", i as i64))?;
        }
        // The checkpoints run on threads of their own: the database file takes the pages.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db_len() <= before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            db_len() > before,
            "nothing was checkpointed ({} bytes)",
            db_len()
        );
        // Not by the writer: its own checkpoint waits for far more pages than were written.
        let backstop: i64 = s
            .conn()
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
        assert_eq!(backstop, WAL_BACKSTOP_PAGES);
        // Every run is there, for this connection and another process's.
        let other = SqliteStore::open(&path)?;
        assert_eq!(other.unfinished_runs(None)?.len() as u64, commits);
        assert_eq!(s.unfinished_runs(None)?.len() as u64, commits);
        assert!(other.quick_check()?.is_empty());
        Ok(())
    }

    /// Each filter of `list_runs` finds its runs through an index, not by reading every run kept.
    #[test]
    fn listing_runs_by_parent_or_workflow_uses_an_index() -> Result<()> {
        let s = SqliteStore::in_memory()?;
        let conn = s.conn();
        for (workflow, status, parent, index) in [
            (false, false, true, "runs_parent"),
            (true, false, false, "runs_workflow_created"),
            (true, true, false, "runs_workflow_status"),
            (false, true, false, "runs_status"),
        ] {
            let sql = list_runs_sql(workflow, status, parent);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let args: Vec<&dyn rusqlite::ToSql> =
                (0..(usize::from(workflow) + usize::from(status) + usize::from(parent)))
                    .map(|_| &"x" as &dyn rusqlite::ToSql)
                    .chain([&-1i64 as &dyn rusqlite::ToSql])
                    .collect();
            let plan: Vec<String> = stmt
                .query_map(args.as_slice(), |r| r.get::<_, String>(3))?
                .collect::<std::result::Result<_, _>>()?;
            let plan = plan.join("; ");
            assert!(
                plan.contains(&format!("SEARCH runs USING INDEX {index} (")),
                "{sql}: {plan}"
            );
        }
        Ok(())
    }
}
