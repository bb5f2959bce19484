//! The PostgreSQL store (scale-out, docs/scale-out.md): the same [`Store`] verbs as SQLite, for
//! several claw processes on several machines sharing one queue and one history.
//!
//! **Driver.** `tokio-postgres`, without a pool crate. The `Store` trait is synchronous and is
//! called from inside the daemon's and the engine's Tokio runtimes, where the sync `postgres`
//! crate (and r2d2 on top of it) would panic: it blocks on a runtime of its own. Here each
//! connection's I/O task runs on one private runtime thread owned by the store, and a call
//! drives its client future with `futures_executor::block_on` on the caller's thread: a short
//! blocking call, exactly as a SQLite call is. Idle connections are kept in a small free list; a
//! connection found closed (the server restarted) is dropped and a new one is made, with retries
//! for as long as the server takes to come back ([`CONNECT_PATIENCE`]).
//!
//! **Schema.** The numbered migrations of [`super::MIGRATIONS`] (the files SQLite runs),
//! translated by [`dialect`]; applied under `pg_advisory_lock`, so that several processes
//! starting at once migrate once; each applied migration is a row of `claw_migrations`.
//!
//! **Fencing.** A worker claims a run with a new epoch ([`PgStore::claim_queued`]); every write of
//! that run's state by this store (heartbeat, status, steps, finish) is then conditional on the
//! epoch it holds, so a process that was paused past its lease and wakes up cannot overwrite what
//! its successor did: its write fails with [`StoreError::Fenced`].

pub mod copy;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, NoTls, Row};

use super::{
    Approval, ApprovalRequest, Decision, FireBatch, FireRecord, FireStatus, LogChunk,
    RecoveredFires, Result, RunFilter, RunRecord, RunStatus, ScheduleState, StepRecord, Store,
    StoreError, Vote,
};

/// How long a call waits for the server to accept a connection (a restart) before it fails.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// Idle connections kept for the next calls.
const MAX_IDLE: usize = 8;
/// The advisory lock key of migrations (any constant; "claw" in ASCII).
const MIGRATE_LOCK: i64 = 0x636c_6177;
/// The channel a new unowned run is announced on (`LISTEN claw_runs`).
pub const RUNS_CHANNEL: &str = "claw_runs";
/// A step log chunk's cap, in bytes.
pub const LOG_CHUNK: usize = 64 * 1024;

/// Whether `s` names a PostgreSQL database.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The URL with its password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    match auth {
        Some(a) => match a.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://{a}@{host}"),
        },
        None => url.to_owned(),
    }
}

/// The PostgreSQL text of a migration written for SQLite: `--` comments dropped,
/// `INTEGER PRIMARY KEY AUTOINCREMENT` → `BIGSERIAL PRIMARY KEY`, `INTEGER` → `BIGINT` (times are
/// milliseconds, beyond 32 bits), `WITHOUT ROWID` dropped, and the column `user` (a reserved word
/// in PostgreSQL) quoted. Anything else must already be portable (or the migration gives its
/// own PostgreSQL text, see [`super::Migration`]).
pub fn dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        let code = match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    let out = out
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace("WITHOUT ROWID", "");
    // `user` as a whole word (not `dashboard_sessions_user`, not `users`).
    let mut quoted = String::with_capacity(out.len());
    let bytes = out.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'"';
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with("user")
            && (i == 0 || !word(bytes[i - 1]))
            && bytes.get(i + 4).is_none_or(|b| !word(*b))
        {
            quoted.push_str("\"user\"");
            i += 4;
        } else {
            let ch = out[i..].chars().next().unwrap_or(' ');
            quoted.push(ch);
            i += ch.len_utf8();
        }
    }
    quoted
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(source: tokio_postgres::Error) -> Self {
        Self::Pg {
            context: String::new(),
            source,
        }
    }
}

fn corrupt(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn json(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// Runs a client future to its end on this thread (see the module's documentation).
fn block<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// The connections and the runtime thread that drives their I/O.
struct Pool {
    /// The URL as given (it may hold a password: never shown).
    url: String,
    rt: tokio::runtime::Handle,
    idle: Mutex<Vec<Client>>,
    /// Dropped with the store: ends the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Pool {
    fn new(url: &str) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("claw-pg".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| StoreError::Schema(format!("cannot start the store's thread: {e}")))?;
        let rt = rx
            .recv()
            .map_err(|e| StoreError::Schema(format!("cannot start the store's runtime: {e}")))?
            .map_err(|e| StoreError::Schema(format!("cannot start the store's runtime: {e}")))?;
        Ok(Self {
            url: url.to_owned(),
            rt,
            idle: Mutex::new(Vec::new()),
            _stop: stop,
        })
    }

    /// A new connection, its I/O driven by the runtime thread. `on_message` gets the server's
    /// notifications (LISTEN), when given.
    fn connect_once(
        &self,
        on_message: Option<Arc<tokio::sync::Notify>>,
    ) -> std::result::Result<Client, (String, bool)> {
        let url = self.url.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.spawn(async move {
            let connect = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_postgres::connect(&url, NoTls),
            )
            .await;
            let (client, mut conn) = match connect {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    // Worth retrying: no answer (the server is down) or a server starting or
                    // stopping; not a refusal (a wrong password, no such database).
                    let retry = e.code().is_none_or(|c| {
                        *c == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW
                            || *c == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN
                    });
                    let _ = tx.send(Err((e.to_string(), retry)));
                    return;
                }
                Err(_) => {
                    let _ = tx.send(Err(("timed out".to_owned(), true)));
                    return;
                }
            };
            let _ = tx.send(Ok(client));
            // Drive the connection until it closes, passing notifications on.
            loop {
                let msg = std::future::poll_fn(|cx| conn.poll_message(cx)).await;
                match msg {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                        if let Some(n) = &on_message {
                            n.notify_one();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            if let Some(n) = &on_message {
                // Wake the listener so that it sees the connection gone.
                n.notify_one();
            }
        });
        rx.recv()
            .map_err(|_| ("the store's runtime stopped".to_owned(), false))?
    }

    /// A connection, retried for up to [`CONNECT_PATIENCE`] while the server is down.
    fn connect(&self, on_message: Option<Arc<tokio::sync::Notify>>) -> Result<Client> {
        let deadline = Instant::now() + CONNECT_PATIENCE;
        let mut wait = Duration::from_millis(50);
        loop {
            match self.connect_once(on_message.clone()) {
                Ok(c) => return Ok(c),
                Err((e, retry)) if !retry || Instant::now() >= deadline => {
                    return Err(StoreError::Schema(format!(
                        "cannot connect to the PostgreSQL store {}: {e}",
                        redact_url(&self.url)
                    )));
                }
                Err((e, _)) => {
                    tracing::debug!("PostgreSQL store: cannot connect ({e}); retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn get(&self) -> Result<Conn<'_>> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => self.connect(None)?,
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
        })
    }
}

/// A connection held for one call; back to the free list when dropped (unless closed).
struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(c);
            }
        }
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    /// The runs this process holds, with the fencing epoch of its claim.
    held: Mutex<HashMap<String, i64>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &redact_url(&self.pool.url))
            .finish_non_exhaustive()
    }
}

const RUN_COLUMNS: &str = "id, workflow, workflow_path, definition, params, trigger_data, status, owner, \
     lease_until, dry_run, cancel_requested, parent_run, outputs, error, created_at, started_at, finished_at";

const STEP_COLUMNS: &str = "name, phase, seq, status, attempts, exit_code, started_at, finished_at, outputs, \
     stdout_tail, stderr_tail, message, log_path, decision, decided_by";

const SCHEDULE_COLUMNS: &str = "id, last_fire, first_seen, fired, missed, skipped";

const FIRE_COLUMNS: &str =
    "schedule, scheduled_for, due_at, enqueued_at, late, status, run_id, detail, finished_at";

const OUTBOX_COLUMNS: &str = "id, channel, target, body, source, status, attempts, next_at, created_at, \
     updated_at, last_error, provider_id, extra";

fn run_from_row(row: &Row) -> Result<RunRecord> {
    let status: String = row.try_get(6)?;
    let params: String = row.try_get(4)?;
    let trigger: String = row.try_get(5)?;
    let outputs: String = row.try_get(12)?;
    Ok(RunRecord {
        id: row.try_get(0)?,
        workflow: row.try_get(1)?,
        workflow_path: row.try_get(2)?,
        definition: row.try_get(3)?,
        params: json(&params, "run params")?,
        trigger: json(&trigger, "run trigger")?,
        status: status.parse().map_err(|e| corrupt("run status", e))?,
        owner: row.try_get(7)?,
        lease_until: row.try_get(8)?,
        dry_run: row.try_get::<_, i64>(9)? != 0,
        cancel_requested: row.try_get::<_, i64>(10)? != 0,
        parent_run: row.try_get(11)?,
        outputs: json(&outputs, "run outputs")?,
        error: row.try_get(13)?,
        created_at: row.try_get(14)?,
        started_at: row.try_get(15)?,
        finished_at: row.try_get(16)?,
    })
}

fn runs(rows: &[Row]) -> Result<Vec<RunRecord>> {
    rows.iter().map(run_from_row).collect()
}

fn step_from_row(row: &Row) -> Result<StepRecord> {
    let phase: String = row.try_get(1)?;
    let status: String = row.try_get(3)?;
    let outputs: String = row.try_get(8)?;
    let attempts: i64 = row.try_get(4)?;
    let exit_code: Option<i64> = row.try_get(5)?;
    let decision: Option<String> = row.try_get(13)?;
    Ok(StepRecord {
        name: row.try_get(0)?,
        phase: phase.parse().map_err(|e| corrupt("step phase", e))?,
        seq: row.try_get(2)?,
        status: status.parse().map_err(|e| corrupt("step status", e))?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("step attempts", e))?,
        exit_code: exit_code
            .map(|c| i32::try_from(c).map_err(|e| corrupt("step exit code", e)))
            .transpose()?,
        started_at: row.try_get(6)?,
        finished_at: row.try_get(7)?,
        outputs: json(&outputs, "step outputs")?,
        stdout_tail: row.try_get(9)?,
        stderr_tail: row.try_get(10)?,
        message: row.try_get(11)?,
        log_path: row.try_get(12)?,
        decision: decision
            .map(|d| d.parse().map_err(|e| corrupt("step decision", e)))
            .transpose()?,
        decided_by: row.try_get(14)?,
    })
}

fn schedule_from_row(row: &Row) -> Result<ScheduleState> {
    let count =
        |i: usize| -> Result<u64> { Ok(u64::try_from(row.try_get::<_, i64>(i)?).unwrap_or(0)) };
    Ok(ScheduleState {
        id: row.try_get(0)?,
        last_fire: row.try_get(1)?,
        first_seen: row.try_get(2)?,
        fired: count(3)?,
        missed: count(4)?,
        skipped: count(5)?,
    })
}

fn fire_from_row(row: &Row) -> Result<FireRecord> {
    Ok(FireRecord {
        schedule: row.try_get(0)?,
        scheduled_for: row.try_get(1)?,
        due_at: row.try_get(2)?,
        enqueued_at: row.try_get(3)?,
        late: row.try_get::<_, i64>(4)? != 0,
        status: row.try_get(5)?,
        run_id: row.try_get(6)?,
        detail: row.try_get(7)?,
        finished_at: row.try_get(8)?,
    })
}

fn outbox_from_row(r: &Row) -> Result<super::OutboxMessage> {
    Ok(super::OutboxMessage {
        id: r.try_get(0)?,
        channel: r.try_get(1)?,
        target: r.try_get(2)?,
        body: r.try_get(3)?,
        source: r.try_get(4)?,
        status: r.try_get(5)?,
        attempts: r.try_get(6)?,
        next_at: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        last_error: r.try_get(10)?,
        provider_id: r.try_get(11)?,
        extra: r.try_get(12)?,
    })
}

fn chat_from_row(r: &Row) -> Result<super::ChatAccess> {
    Ok(super::ChatAccess {
        channel: r.try_get(0)?,
        chat: r.try_get(1)?,
        status: r.try_get(2)?,
        name: r.try_get(3)?,
        decided_by: r.try_get(4)?,
        updated_at: r.try_get(5)?,
    })
}

/// The `runs_on:` labels of a workflow definition (a JSON array), read from its text: the store
/// keeps them beside the run so that a worker claims only runs it can execute.
pub fn labels_of(definition: &str) -> String {
    if !definition.contains("runs_on") {
        return "[]".to_owned();
    }
    let Ok(root) = crate::yaml::node::parse(definition) else {
        return "[]".to_owned();
    };
    let crate::yaml::Value::Map(entries) = &root.value else {
        return "[]".to_owned();
    };
    let mut labels: Vec<String> = Vec::new();
    for (k, v) in entries {
        if k.value != crate::yaml::Value::Str("runs_on".into()) {
            continue;
        }
        match &v.value {
            crate::yaml::Value::Str(s) => labels.push(s.clone()),
            crate::yaml::Value::Seq(items) => {
                for i in items {
                    if let crate::yaml::Value::Str(s) = &i.value {
                        labels.push(s.clone());
                    }
                }
            }
            _ => {}
        }
    }
    serde_json::Value::from(labels).to_string()
}

async fn insert_run(c: &impl GenericClient, r: &RunRecord) -> Result<()> {
    let labels = labels_of(&r.definition);
    c.execute(
        &format!(
            "INSERT INTO runs ({RUN_COLUMNS}, labels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ),
        &[
            &r.id,
            &r.workflow,
            &r.workflow_path,
            &r.definition,
            &r.params.to_string(),
            &r.trigger.to_string(),
            &r.status.as_str(),
            &r.owner,
            &r.lease_until,
            &i64::from(r.dry_run),
            &i64::from(r.cancel_requested),
            &r.parent_run,
            &r.outputs.to_string(),
            &r.error,
            &r.created_at,
            &r.started_at,
            &r.finished_at,
            &labels,
        ],
    )
    .await?;
    if r.owner.is_none() {
        c.execute("SELECT pg_notify($1, $2)", &[&RUNS_CHANNEL, &r.id])
            .await?;
    }
    Ok(())
}

async fn write_step(c: &impl GenericClient, run_id: &str, s: &StepRecord) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO steps (run_id, {STEP_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (run_id, name) DO UPDATE SET phase = excluded.phase, seq = excluded.seq, \
             status = excluded.status, attempts = excluded.attempts, exit_code = excluded.exit_code, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             outputs = excluded.outputs, stdout_tail = excluded.stdout_tail, \
             stderr_tail = excluded.stderr_tail, message = excluded.message, \
             log_path = excluded.log_path, decision = excluded.decision, decided_by = excluded.decided_by"
        ),
        &[
            &run_id,
            &s.name,
            &s.phase.as_str(),
            &s.seq,
            &s.status.as_str(),
            &i64::from(s.attempts),
            &s.exit_code.map(i64::from),
            &s.started_at,
            &s.finished_at,
            &s.outputs.to_string(),
            &s.stdout_tail,
            &s.stderr_tail,
            &s.message,
            &s.log_path,
            &s.decision.map(Decision::as_str),
            &s.decided_by,
        ],
    )
    .await?;
    Ok(())
}

async fn read_approval(
    c: &impl GenericClient,
    run_id: &str,
    step: &str,
) -> Result<Option<Approval>> {
    let Some(r) = c
        .query_opt(
            "SELECT message, approvers, quorum, deadline, on_timeout, input, requested_at \
             FROM approvals WHERE run_id = $1 AND step = $2",
            &[&run_id, &step],
        )
        .await?
    else {
        return Ok(None);
    };
    let approvers: String = r.try_get(1)?;
    let approvers: Vec<String> =
        serde_json::from_str(&approvers).map_err(|e| corrupt("approvers", e))?;
    let quorum: i64 = r.try_get(2)?;
    let input: String = r.try_get(5)?;
    let request = ApprovalRequest {
        run_id: run_id.to_owned(),
        step: step.to_owned(),
        message: r.try_get(0)?,
        approvers,
        quorum: u32::try_from(quorum).map_err(|e| corrupt("approval quorum", e))?,
        deadline: r.try_get(3)?,
        on_timeout: r.try_get(4)?,
        input: json(&input, "approval input")?,
        requested_at: r.try_get(6)?,
    };
    let rows = c
        .query(
            "SELECT approver, decision, reason, input, decided_at FROM approval_votes \
             WHERE run_id = $1 AND step = $2 ORDER BY decided_at, approver",
            &[&run_id, &step],
        )
        .await?;
    let mut votes = Vec::new();
    for r in rows {
        let input: String = r.try_get(3)?;
        votes.push(Vote {
            approver: r.try_get(0)?,
            decision: r.try_get(1)?,
            reason: r.try_get(2)?,
            input: json(&input, "vote input")?,
            decided_at: r.try_get(4)?,
        });
    }
    Ok(Some(Approval { request, votes }))
}

/// A worker as it last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: String,
    pub labels: Vec<String>,
    pub slots: i64,
    pub started_at: i64,
    pub seen_at: i64,
    pub lease_until: i64,
}

/// Wakes when a run is announced on [`RUNS_CHANNEL`] (or the listening connection closed).
#[derive(Debug)]
pub struct Listener {
    bell: Arc<tokio::sync::Notify>,
    /// Kept open: the LISTEN lives as long as this connection.
    client: Client,
}

impl Listener {
    /// Waits for an announcement (or its connection's end); false after `timeout` without one.
    pub async fn wait(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.bell.notified())
            .await
            .is_ok()
    }

    /// Whether the connection is gone (the caller listens again).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

impl PgStore {
    /// Connects (waiting up to [`CONNECT_PATIENCE`] for the server) and applies pending migrations.
    pub fn open(url: &str) -> Result<Self> {
        let store = Self {
            pool: Pool::new(url)?,
            held: Mutex::new(HashMap::new()),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The URL with its password hidden.
    pub fn url_shown(&self) -> String {
        redact_url(&self.pool.url)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The epoch this process holds run `id` with, if it claimed it.
    fn fence(&self, id: &str) -> Option<i64> {
        self.held().get(id).copied()
    }

    fn fenced(&self, id: &str, held: i64) -> StoreError {
        self.held().remove(id);
        StoreError::Fenced {
            run: id.to_owned(),
            held,
        }
    }

    fn migrate(&self) -> Result<()> {
        let mut c = self.pool.get()?;
        block(async {
            c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
                .await?;
            let r = migrate_locked(&mut c).await;
            // Released also when the connection closes.
            c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
                .await?;
            r
        })
    }

    /// The newest migration applied (the schema version).
    pub fn schema_version(&self) -> Result<i64> {
        let c = self.pool.get()?;
        block(async {
            let r = c
                .query_one("SELECT COALESCE(MAX(version), 0) FROM claw_migrations", &[])
                .await?;
            Ok(r.try_get(0)?)
        })
    }

    /// Claims up to `limit` runs nobody holds (queued and unowned, or whose owner's lease has
    /// expired) whose labels are all among `labels`, oldest first, skipping the ones other
    /// workers are claiming at this instant (`FOR UPDATE SKIP LOCKED`). Each claim bumps the
    /// run's fencing epoch, which this store then holds.
    pub fn claim_queued(
        &self,
        owner: &str,
        labels: &[String],
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<String>> {
        let labels = serde_json::Value::from(labels.to_vec()).to_string();
        let c = self.pool.get()?;
        let rows = block(async {
            c.query(
                "WITH c AS (SELECT id FROM runs \
                   WHERE status IN ('queued', 'running', 'waiting') \
                   AND (owner IS NULL OR lease_until IS NULL OR lease_until < $1) \
                   AND labels::jsonb <@ $2::text::jsonb \
                   ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 UPDATE runs r SET owner = $4, lease_until = $5, epoch = r.epoch + 1 \
                 FROM c WHERE r.id = c.id RETURNING r.id, r.epoch",
                &[&now, &labels, &i64::from(limit), &owner, &lease_until],
            )
            .await
        })?;
        let mut held = self.held();
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0)?;
            held.insert(id.clone(), r.try_get(1)?);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Lets go of the runs this process holds and has not finished (a worker stopping cleanly):
    /// another worker may claim them at once instead of after their lease.
    pub fn release_runs(&self, owner: &str) -> Result<u64> {
        let held: Vec<(String, i64)> = self.held().drain().collect();
        let c = self.pool.get()?;
        block(async {
            let mut n = 0;
            for (id, epoch) in &held {
                n += c
                    .execute(
                        "UPDATE runs SET owner = NULL, lease_until = NULL \
                         WHERE id = $1 AND owner = $2 AND epoch = $3 \
                         AND status IN ('queued', 'running', 'waiting')",
                        &[id, &owner, epoch],
                    )
                    .await?;
            }
            if n > 0 {
                c.execute("SELECT pg_notify($1, '')", &[&RUNS_CHANNEL])
                    .await?;
            }
            Ok(n)
        })
    }

    /// Records (or refreshes) a worker's row.
    pub fn touch_worker(&self, w: &WorkerInfo) -> Result<()> {
        let labels = serde_json::Value::from(w.labels.clone()).to_string();
        let c = self.pool.get()?;
        block(async {
            c.execute(
                "INSERT INTO workers (id, labels, slots, started_at, seen_at, lease_until) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
                 labels = excluded.labels, slots = excluded.slots, seen_at = excluded.seen_at, \
                 lease_until = excluded.lease_until",
                &[
                    &w.id,
                    &labels,
                    &w.slots,
                    &w.started_at,
                    &w.seen_at,
                    &w.lease_until,
                ],
            )
            .await?;
            Ok(())
        })
    }

    /// Forgets a worker (it stopped cleanly).
    pub fn remove_worker(&self, id: &str) -> Result<()> {
        let c = self.pool.get()?;
        block(async {
            c.execute("DELETE FROM workers WHERE id = $1", &[&id])
                .await?;
            Ok(())
        })
    }

    /// Workers whose lease runs past `now`.
    pub fn workers_alive(&self, now: i64) -> Result<Vec<WorkerInfo>> {
        let c = self.pool.get()?;
        let rows = block(async {
            c.query(
                "SELECT id, labels, slots, started_at, seen_at, lease_until FROM workers \
                 WHERE lease_until >= $1 ORDER BY id",
                &[&now],
            )
            .await
        })?;
        rows.iter()
            .map(|r| {
                let labels: String = r.try_get(1)?;
                Ok(WorkerInfo {
                    id: r.try_get(0)?,
                    labels: serde_json::from_str(&labels)
                        .map_err(|e| corrupt("worker labels", e))?,
                    slots: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    seen_at: r.try_get(4)?,
                    lease_until: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// A connection that listens on [`RUNS_CHANNEL`].
    pub fn listen(&self) -> Result<Listener> {
        let bell = Arc::new(tokio::sync::Notify::new());
        let client = self.pool.connect(Some(bell.clone()))?;
        block(client.batch_execute(&format!("LISTEN {RUNS_CHANNEL}")))?;
        Ok(Listener { bell, client })
    }

    /// Who holds `role`, and until when.
    pub fn role_holder(&self, role: &str) -> Result<Option<(String, i64)>> {
        let c = self.pool.get()?;
        let row = block(async {
            c.query_opt(
                "SELECT holder, lease_until FROM role_leases WHERE role = $1",
                &[&role],
            )
            .await
        })?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// A step's log as stored (its chunks in order).
    pub fn step_log(&self, run_id: &str, step: &str) -> Result<String> {
        Ok(self
            .step_log_after(run_id, step, 0)?
            .into_iter()
            .map(|c| c.text)
            .collect())
    }

    /// Runs `sql` (tests and `claw store migrate`).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        let c = self.pool.get()?;
        block(c.batch_execute(sql))?;
        Ok(())
    }

    /// The first row of `sql`, each column a `BIGINT` (benchmarks count what they drove).
    pub fn query_i64s(&self, sql: &str) -> Result<Vec<i64>> {
        let c = self.pool.get()?;
        let row = block(c.query_one(sql, &[]))?;
        (0..row.len())
            .map(|i| row.try_get::<_, i64>(i).map_err(StoreError::from))
            .collect()
    }
}

async fn migrate_locked(c: &mut Client) -> Result<()> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS claw_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = c
        .query("SELECT version FROM claw_migrations", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    let known = super::MIGRATIONS
        .iter()
        .map(|m| i64::from(m.number))
        .max()
        .unwrap_or(0);
    if let Some(newer) = applied.iter().find(|v| **v > known) {
        return Err(StoreError::Schema(format!(
            "the database has schema version {newer}, newer than this claw knows ({known}); upgrade claw"
        )));
    }
    for m in super::MIGRATIONS {
        if applied.contains(&i64::from(m.number)) {
            continue;
        }
        let sql = m.postgres.map_or_else(|| dialect(m.sql), str::to_owned);
        let tx = c.transaction().await?;
        tx.batch_execute(&sql)
            .await
            .map_err(|source| StoreError::Pg {
                context: format!("migration {:04}", m.number),
                source,
            })?;
        tx.execute(
            "INSERT INTO claw_migrations (version, applied_at) VALUES ($1, $2)",
            &[&i64::from(m.number), &crate::time::now_ms()],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

impl Store for PgStore {
    /// One statement (atomic, its own transaction, which does not wait for the WAL flush): the chunks (of at most [`LOG_CHUNK`] bytes, or a
    /// quarter of `cap` when smaller, so that at least three quarters of the cap stay when the
    /// oldest go; cut at character boundaries) inserted, and the older chunks beyond `cap` bytes
    /// deleted. Text longer than `cap` keeps its last `cap` bytes, so the new chunks themselves
    /// always fit (the statement's delete cannot see the rows it inserts).
    fn append_step_log(&self, run_id: &str, step: &str, text: &str, cap: u64) -> Result<()> {
        let cap_bytes = usize::try_from(cap).unwrap_or(usize::MAX);
        let mut text = text;
        if text.len() > cap_bytes {
            let mut cut = text.len() - cap_bytes;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = &text[cut..];
        }
        if text.is_empty() {
            return Ok(());
        }
        let size = (cap_bytes / 4).clamp(4, LOG_CHUNK);
        let mut pieces: Vec<&str> = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(size);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            pieces.push(piece);
            rest = tail;
        }
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let c = self.pool.get()?;
        // One round trip: typed parameters (no prepare), and the statement is its own
        // transaction. `cfg`: a copy of a file the worker keeps is not worth a WAL flush per
        // step (which made a step's end twice as slow); a crash of the server can lose its last
        // fraction of a second. Every write of the run's state stays synchronous.
        block(c.query_typed(
            "WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)), \
                  base AS (SELECT COALESCE(MAX(seq), 0) AS s FROM step_log_chunks \
                           WHERE run_id = $1 AND step = $2), \
                  ins AS (INSERT INTO step_log_chunks (run_id, step, seq, body) \
                          SELECT $1, $2, base.s + p.n, p.body \
                          FROM cfg, base, unnest($3::text[]) WITH ORDINALITY AS p(body, n) \
                          RETURNING seq, octet_length(body) AS len), \
                  every AS (SELECT seq, octet_length(body) AS len FROM step_log_chunks \
                            WHERE run_id = $1 AND step = $2 \
                            UNION ALL SELECT seq, len FROM ins), \
                  cut AS (SELECT MAX(seq) AS s FROM \
                          (SELECT seq, SUM(len) OVER (ORDER BY seq DESC) AS kept FROM every) k \
                          WHERE kept > $4) \
             DELETE FROM step_log_chunks WHERE run_id = $1 AND step = $2 \
             AND seq <= (SELECT s FROM cut)",
            &[
                (&run_id, Type::TEXT),
                (&step, Type::TEXT),
                (&pieces, Type::TEXT_ARRAY),
                (&cap, Type::INT8),
            ],
        ))?;
        Ok(())
    }

    fn step_log_after(&self, run_id: &str, step: &str, after: i64) -> Result<Vec<LogChunk>> {
        let c = self.pool.get()?;
        let rows = block(async {
            c.query(
                "SELECT seq, body FROM step_log_chunks WHERE run_id = $1 AND step = $2 AND seq > $3 ORDER BY seq",
                &[&run_id, &step, &after],
            )
            .await
        })?;
        rows.iter()
            .map(|r| {
                Ok(LogChunk {
                    seq: r.try_get(0)?,
                    text: r.try_get(1)?,
                })
            })
            .collect()
    }

    fn shared(&self) -> bool {
        true
    }

    fn take_role(
        &self,
        role: &str,
        holder: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<i64>> {
        let c = self.pool.get()?;
        let row = block(async {
            c.query_opt(
                "INSERT INTO role_leases (role, holder, epoch, lease_until) VALUES ($1, $2, 1, $4) \
                 ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, \
                 lease_until = excluded.lease_until, \
                 epoch = CASE WHEN role_leases.holder = excluded.holder THEN role_leases.epoch \
                         ELSE role_leases.epoch + 1 END \
                 WHERE role_leases.holder = excluded.holder OR role_leases.lease_until < $3 \
                 RETURNING epoch",
                &[&role, &holder, &now, &lease_until],
            )
            .await
        })?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    fn create_run(&self, r: &RunRecord) -> Result<()> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            insert_run(&tx, r).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let c = self.pool.get()?;
        let row = block(c.query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
            &[&id],
        ))?;
        row.as_ref().map(run_from_row).transpose()
    }

    fn find_run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        if let Some(r) = self.get_run(id_or_prefix)? {
            return Ok(r);
        }
        let prefix = id_or_prefix.to_ascii_lowercase();
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE starts_with(id, $1) ORDER BY id LIMIT 6"
            ),
            &[&prefix],
        ))?;
        let found = runs(&rows)?;
        match found.len() {
            0 => Err(StoreError::NoSuchRun(id_or_prefix.to_owned())),
            1 => found
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NoSuchRun(prefix.clone())),
            _ => Err(StoreError::Ambiguous {
                prefix: id_or_prefix.to_owned(),
                candidates: found
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>> {
        let c = self.pool.get()?;
        let limit = f.limit.map(i64::from);
        let rows = block(c.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE ($1::text IS NULL OR workflow = $1::text) \
                 AND ($2::text IS NULL OR status = $2::text) \
                 AND ($4::text IS NULL OR parent_run = $4::text) \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            &[
                &f.workflow,
                &f.status.map(RunStatus::as_str),
                &limit,
                &f.parent,
            ],
        ))?;
        runs(&rows)
    }

    fn unfinished_runs(&self, workflow: Option<&str>) -> Result<Vec<RunRecord>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'running', 'waiting') \
                 AND ($1::text IS NULL OR workflow = $1::text) ORDER BY created_at, id"
            ),
            &[&workflow],
        ))?;
        runs(&rows)
    }

    fn unfinished_runs_after(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
        skip: &[&str],
    ) -> Result<Vec<RunRecord>> {
        let c = self.pool.get()?;
        let (at, id) = after.unzip();
        let rows = block(c.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'running', 'waiting') \
                 AND ($1::bigint IS NULL OR created_at > $1::bigint \
                      OR (created_at = $1::bigint AND id > $2::text)) \
                 AND NOT (id = ANY($4)) ORDER BY created_at, id LIMIT $3"
            ),
            &[&at, &id, &i64::from(limit), &skip],
        ))?;
        runs(&rows)
    }

    fn schedule_run_before(&self, schedule: &str, created_at: i64, id: &str) -> Result<bool> {
        let c = self.pool.get()?;
        let row = block(c.query_opt(
            "SELECT 1 FROM runs WHERE status IN ('queued', 'running', 'waiting') \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             AND trigger_data::jsonb ->> 'schedule' = $1 LIMIT 1",
            &[&schedule, &created_at, &id],
        ))?;
        Ok(row.is_some())
    }

    fn count_waiting(&self, ids: &[&str]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let c = self.pool.get()?;
        let row = block(c.query_one(
            "SELECT count(*) FROM runs WHERE status = 'waiting' AND id = ANY($1)",
            &[&ids],
        ))?;
        Ok(usize::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    fn claim_run(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        is_dead: &dyn Fn(&RunRecord) -> bool,
    ) -> Result<Option<RunRecord>> {
        let mut c = self.pool.get()?;
        let (run, epoch) = block(async {
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    &format!("SELECT {RUN_COLUMNS}, epoch FROM runs WHERE id = $1 FOR UPDATE"),
                    &[&id],
                )
                .await?
            else {
                return Err(StoreError::NoSuchRun(id.to_owned()));
            };
            let mut run = run_from_row(&row)?;
            let epoch: i64 = row.try_get(17)?;
            let free = match run.owner.as_deref() {
                None => true,
                Some(o) if o == owner => return Ok((Some(run), epoch)),
                Some(_) => is_dead(&run),
            };
            if !free {
                return Ok((None, epoch));
            }
            let row = tx
                .query_one(
                    "UPDATE runs SET owner = $2, lease_until = $3, epoch = epoch + 1 \
                     WHERE id = $1 RETURNING epoch",
                    &[&id, &owner, &lease_until],
                )
                .await?;
            tx.commit().await?;
            run.owner = Some(owner.to_owned());
            run.lease_until = Some(lease_until);
            Ok((Some(run), row.try_get(0)?))
        })?;
        if run.is_some() {
            self.held().insert(id.to_owned(), epoch);
        }
        Ok(run)
    }

    fn admit_run(
        &self,
        id: &str,
        limit: u32,
        now: i64,
        is_dead: &dyn Fn(&RunRecord) -> bool,
    ) -> Result<bool> {
        let fence = self.fence(id);
        let mut c = self.pool.get()?;
        let out = block(async {
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT workflow, created_at, epoch FROM runs WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?
            else {
                return Err(StoreError::NoSuchRun(id.to_owned()));
            };
            let workflow: String = row.try_get(0)?;
            let created_at: i64 = row.try_get(1)?;
            let epoch: i64 = row.try_get(2)?;
            if fence.is_some_and(|f| f != epoch) {
                return Ok(None);
            }
            // One admission per workflow at a time, across processes.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&workflow])
                .await?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE workflow = $1 AND id != $2 AND \
                         (status IN ('running', 'waiting') OR (status = 'queued' AND \
                          (created_at < $3 OR (created_at = $3 AND id < $2))))"
                    ),
                    &[&workflow, &id, &created_at],
                )
                .await?;
            let others = runs(&rows)?;
            let busy = others.iter().filter(|r| !is_dead(r)).count();
            if busy >= limit as usize {
                return Ok(Some(false));
            }
            tx.execute(
                "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $2) WHERE id = $1",
                &[&id, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(true))
        })?;
        match (out, fence) {
            (Some(v), _) => Ok(v),
            (None, f) => Err(self.fenced(id, f.unwrap_or(0))),
        }
    }

    fn heartbeat(&self, id: &str, owner: &str, lease_until: i64) -> Result<()> {
        let fence = self.fence(id);
        let c = self.pool.get()?;
        let n = block(c.execute(
            "UPDATE runs SET lease_until = $3 WHERE id = $1 AND owner = $2 \
             AND ($4::bigint IS NULL OR epoch = $4::bigint)",
            &[&id, &owner, &lease_until, &fence],
        ))?;
        match fence {
            Some(f) if n == 0 => Err(self.fenced(id, f)),
            _ => Ok(()),
        }
    }

    fn update_run(
        &self,
        id: &str,
        status: RunStatus,
        error: Option<&str>,
        outputs: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<()> {
        let fence = self.fence(id);
        let finished = status.is_finished().then_some(now);
        let started = (status == RunStatus::Running).then_some(now);
        let c = self.pool.get()?;
        let n = block(c.execute(
            "UPDATE runs SET status = $2, error = COALESCE($3, error), outputs = COALESCE($4, outputs), \
             finished_at = COALESCE($5, finished_at), started_at = COALESCE(started_at, $6) \
             WHERE id = $1 AND ($7::bigint IS NULL OR epoch = $7::bigint)",
            &[
                &id,
                &status.as_str(),
                &error,
                &outputs.map(ToString::to_string),
                &finished,
                &started,
                &fence,
            ],
        ))?;
        match fence {
            Some(f) if n == 0 => Err(self.fenced(id, f)),
            _ => {
                if status.is_finished() {
                    self.held().remove(id);
                }
                Ok(())
            }
        }
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
        let fence = self.fence(id);
        let mut c = self.pool.get()?;
        let ok = block(async {
            let tx = c.transaction().await?;
            if !check_fence(&tx, id, fence).await? {
                return Ok(false);
            }
            for s in steps {
                write_step(&tx, id, s).await?;
            }
            tx.execute(
                "UPDATE runs SET status = $2, error = $3, outputs = COALESCE($4, outputs), finished_at = $5 WHERE id = $1",
                &[&id, &status.as_str(), &error, &outputs.map(ToString::to_string), &now],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(true)
        })?;
        if !ok {
            return Err(self.fenced(id, fence.unwrap_or(0)));
        }
        self.held().remove(id);
        Ok(())
    }

    fn request_cancel(&self, id: &str) -> Result<()> {
        let c = self.pool.get()?;
        block(c.execute("UPDATE runs SET cancel_requested = 1 WHERE id = $1", &[&id]))?;
        Ok(())
    }

    fn cancel_requested(&self, id: &str) -> Result<bool> {
        let c = self.pool.get()?;
        let row = block(c.query_opt("SELECT cancel_requested FROM runs WHERE id = $1", &[&id]))?;
        Ok(match row {
            Some(r) => r.try_get::<_, i64>(0)? != 0,
            None => false,
        })
    }

    fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!(
                "SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 ORDER BY \
                 CASE phase WHEN 'main' THEN 0 WHEN 'rollback' THEN 1 ELSE 2 END, seq, started_at"
            ),
            &[&run_id],
        ))?;
        rows.iter().map(step_from_row).collect()
    }

    fn record_steps(
        &self,
        run_id: &str,
        steps: &[StepRecord],
        run_status: Option<RunStatus>,
    ) -> Result<()> {
        let fence = self.fence(run_id);
        let mut c = self.pool.get()?;
        let ok = block(async {
            let tx = c.transaction().await?;
            if !check_fence(&tx, run_id, fence).await? {
                return Ok(false);
            }
            for s in steps {
                write_step(&tx, run_id, s).await?;
            }
            if let Some(status) = run_status {
                tx.execute(
                    "UPDATE runs SET status = $2 WHERE id = $1",
                    &[&run_id, &status.as_str()],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(true)
        })?;
        if ok {
            Ok(())
        } else {
            Err(self.fenced(run_id, fence.unwrap_or(0)))
        }
    }

    fn decide_step(&self, run_id: &str, step: &str, decision: Decision, who: &str) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "UPDATE steps SET decision = $3, decided_by = $4 WHERE run_id = $1 AND name = $2 AND status = 'interrupted'",
            &[&run_id, &step, &decision.as_str(), &who],
        ))?;
        Ok(n > 0)
    }

    fn open_approval(&self, request: &ApprovalRequest) -> Result<(ApprovalRequest, bool)> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "INSERT INTO approvals (run_id, step, message, approvers, quorum, deadline, \
                     on_timeout, input, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT DO NOTHING",
                    &[
                        &request.run_id,
                        &request.step,
                        &request.message,
                        &serde_json::Value::from(request.approvers.clone()).to_string(),
                        &i64::from(request.quorum),
                        &request.deadline,
                        &request.on_timeout,
                        &request.input.to_string(),
                        &request.requested_at,
                    ],
                )
                .await?;
            let stored = read_approval(&tx, &request.run_id, &request.step)
                .await?
                .ok_or_else(|| StoreError::Schema("the approval request vanished".into()))?;
            tx.commit().await?;
            Ok((stored.request, n > 0))
        })
    }

    fn approval(&self, run_id: &str, step: &str) -> Result<Option<Approval>> {
        let c = self.pool.get()?;
        block(read_approval(&*c, run_id, step))
    }

    fn add_vote(&self, run_id: &str, step: &str, vote: &Vote) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "INSERT INTO approval_votes (run_id, step, approver, decision, reason, input, decided_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &run_id,
                &step,
                &vote.approver,
                &vote.decision,
                &vote.reason,
                &vote.input.to_string(),
                &vote.decided_at,
            ],
        ))?;
        Ok(n > 0)
    }

    fn pending_approvals(&self) -> Result<Vec<Approval>> {
        let c = self.pool.get()?;
        block(async {
            let keys = c
                .query(
                    "SELECT a.run_id, a.step FROM approvals a JOIN steps s ON s.run_id = a.run_id AND (s.name = a.step \
                     OR (substr(a.step, 1, length(s.name) + 1) = s.name || '#' AND NOT EXISTS \
                     (SELECT 1 FROM approval_votes v WHERE v.run_id = a.run_id AND v.step = a.step))) \
                     JOIN runs r ON r.id = a.run_id \
                     WHERE s.status = 'waiting' AND r.status NOT IN ('succeeded', 'failed', 'cancelled') \
                     ORDER BY a.requested_at",
                    &[],
                )
                .await?;
            let mut out = Vec::new();
            for k in keys {
                let run: String = k.try_get(0)?;
                let step: String = k.try_get(1)?;
                if let Some(a) = read_approval(&*c, &run, &step).await? {
                    out.push(a);
                }
            }
            Ok(out)
        })
    }

    fn prune_runs(&self, workflow: &str, older_than: i64, keep: u32) -> Result<Vec<String>> {
        let mut c = self.pool.get()?;
        block(async {
            let r = c
                .query_one(
                    "SELECT COUNT(*), MIN(created_at) FROM runs WHERE workflow = $1 \
                     AND status IN ('succeeded', 'failed', 'cancelled')",
                    &[&workflow],
                )
                .await?;
            let count: i64 = r.try_get(0)?;
            let oldest: Option<i64> = r.try_get(1)?;
            if count <= i64::from(keep) && oldest.is_none_or(|t| t >= older_than) {
                return Ok(Vec::new());
            }
            let tx = c.transaction().await?;
            let rows = tx
                .query(
                    "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE workflow = $1 \
                     AND status IN ('succeeded', 'failed', 'cancelled') \
                     AND (created_at < $2 OR id NOT IN (SELECT id FROM runs WHERE workflow = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $3))) RETURNING id",
                    &[&workflow, &older_than, &i64::from(keep)],
                )
                .await?;
            tx.commit().await?;
            rows.iter()
                .map(|r| r.try_get(0).map_err(StoreError::from))
                .collect()
        })
    }

    fn claim_delivery(
        &self,
        hook: &str,
        delivery_id: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<super::Delivery> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE received_at < $1",
                &[&forget_before],
            )
            .await?;
            let inserted = tx
                .execute(
                    "INSERT INTO webhook_deliveries (hook, delivery_id, run_id, received_at) \
                     VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING",
                    &[&hook, &delivery_id, &now],
                )
                .await?;
            let out = if inserted == 1 {
                super::Delivery::New
            } else {
                let r = tx
                    .query_one(
                        "SELECT run_id FROM webhook_deliveries WHERE hook = $1 AND delivery_id = $2",
                        &[&hook, &delivery_id],
                    )
                    .await?;
                super::Delivery::Seen {
                    run_id: r.try_get(0)?,
                }
            };
            tx.commit().await?;
            Ok(out)
        })
    }

    fn set_delivery_run(&self, hook: &str, delivery_id: &str, run_id: Option<&str>) -> Result<()> {
        let c = self.pool.get()?;
        block(async {
            if let Some(run_id) = run_id {
                c.execute(
                    "UPDATE webhook_deliveries SET run_id = $3 WHERE hook = $1 AND delivery_id = $2",
                    &[&hook, &delivery_id, &run_id],
                )
                .await?;
            } else {
                c.execute(
                    "DELETE FROM webhook_deliveries WHERE hook = $1 AND delivery_id = $2",
                    &[&hook, &delivery_id],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn enqueue_messages(&self, messages: &[super::NewMessage], now: i64) -> Result<Vec<i64>> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            let mut ids = Vec::with_capacity(messages.len());
            for m in messages {
                let r = tx
                    .query_one(
                        "INSERT INTO outbox (channel, target, body, source, status, attempts, next_at, \
                         created_at, updated_at, extra) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5, $6) RETURNING id",
                        &[&m.channel, &m.target, &m.body, &m.source, &now, &m.extra],
                    )
                    .await?;
                ids.push(r.try_get(0)?);
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<super::OutboxMessage>> {
        let mut c = self.pool.get()?;
        let ids: Vec<i64> = block(async {
            let tx = c.transaction().await?;
            // One claimer at a time: the head of each (channel, target) queue is decided whole.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(MIGRATE_LOCK + 1)])
                .await?;
            let rows = tx
                .query(
                    "SELECT o.id FROM outbox o WHERE o.status = 'pending' AND o.id = ( \
                       SELECT MIN(i.id) FROM outbox i WHERE i.status = 'pending' \
                       AND i.channel = o.channel AND i.target = o.target) \
                     AND o.next_at <= $1 AND (o.claimed_until IS NULL OR o.claimed_until < $1) \
                     ORDER BY o.id LIMIT $2",
                    &[&now, &i64::from(limit)],
                )
                .await?;
            let ids: Vec<i64> = rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            tx.execute(
                "UPDATE outbox SET claimed_by = $2, claimed_until = $3 WHERE id = ANY($1)",
                &[&ids, &owner, &lease_until],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(ids)
        })?;
        drop(c);
        self.messages(&ids)
    }

    fn finish_message(&self, id: i64, outcome: &super::MessageOutcome, now: i64) -> Result<()> {
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
        let c = self.pool.get()?;
        block(c.execute(
            "UPDATE outbox SET status = $2, attempts = attempts + 1, \
             next_at = COALESCE($3, next_at), last_error = COALESCE($4, last_error), \
             provider_id = COALESCE($5, provider_id), claimed_by = NULL, claimed_until = NULL, \
             updated_at = $6 WHERE id = $1",
            &[&id, &status, &next_at, &error, &provider, &now],
        ))?;
        Ok(())
    }

    fn list_messages(&self, failed: bool, limit: u32) -> Result<Vec<super::OutboxMessage>> {
        let sql = if failed {
            format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'dead' OR (status = 'pending' AND attempts > 0) \
                 ORDER BY id DESC LIMIT $1"
            )
        } else {
            format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT $1")
        };
        let c = self.pool.get()?;
        let rows = block(c.query(&sql, &[&i64::from(limit)]))?;
        rows.iter().map(outbox_from_row).collect()
    }

    fn messages(&self, ids: &[i64]) -> Result<Vec<super::OutboxMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ANY($1)"),
            &[&ids],
        ))?;
        let mut by_id: HashMap<i64, super::OutboxMessage> = HashMap::new();
        for r in &rows {
            let m = outbox_from_row(r)?;
            by_id.insert(m.id, m);
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    fn retry_message(&self, id: i64, now: i64) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_at = $2, updated_at = $2, \
             claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND status = 'dead'",
            &[&id, &now],
        ))?;
        Ok(n == 1)
    }

    fn chat_access(&self, channel: &str, chat: &str) -> Result<Option<super::ChatAccess>> {
        let c = self.pool.get()?;
        let row = block(c.query_opt(
            "SELECT channel, chat, status, name, decided_by, updated_at FROM chat_access \
             WHERE channel = $1 AND chat = $2",
            &[&channel, &chat],
        ))?;
        row.as_ref().map(chat_from_row).transpose()
    }

    fn set_chat_access(&self, a: &super::ChatAccess) -> Result<()> {
        let c = self.pool.get()?;
        block(c.execute(
            "INSERT INTO chat_access (channel, chat, status, name, decided_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel, chat) DO UPDATE SET \
             status = excluded.status, name = CASE WHEN excluded.name = '' THEN chat_access.name \
             ELSE excluded.name END, decided_by = excluded.decided_by, updated_at = excluded.updated_at",
            &[
                &a.channel,
                &a.chat,
                &a.status,
                &a.name,
                &a.decided_by,
                &a.updated_at,
            ],
        ))?;
        Ok(())
    }

    fn remove_chat_access(&self, channel: &str, chat: &str) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "DELETE FROM chat_access WHERE channel = $1 AND chat = $2",
            &[&channel, &chat],
        ))?;
        Ok(n == 1)
    }

    fn list_chat_access(&self) -> Result<Vec<super::ChatAccess>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT channel, chat, status, name, decided_by, updated_at FROM chat_access \
             ORDER BY channel, status, chat",
            &[],
        ))?;
        rows.iter().map(chat_from_row).collect()
    }

    fn inbound_cursor(&self, channel: &str) -> Result<Option<i64>> {
        let c = self.pool.get()?;
        let row = block(c.query_opt(
            "SELECT next_offset FROM inbound_cursor WHERE channel = $1",
            &[&channel],
        ))?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    fn set_inbound_cursor(&self, channel: &str, next_offset: i64, now: i64) -> Result<()> {
        let c = self.pool.get()?;
        block(c.execute(
            "INSERT INTO inbound_cursor (channel, next_offset, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (channel) DO UPDATE SET \
             next_offset = GREATEST(inbound_cursor.next_offset, excluded.next_offset), \
             updated_at = excluded.updated_at",
            &[&channel, &next_offset, &now],
        ))?;
        Ok(())
    }

    fn register_schedules(&self, ids: &[String], now: i64) -> Result<Vec<ScheduleState>> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                tx.execute(
                    "INSERT INTO schedules (id, first_seen) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[id, &now],
                )
                .await?;
                let r = tx
                    .query_one(
                        &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1"),
                        &[id],
                    )
                    .await?;
                out.push(schedule_from_row(&r)?);
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id"),
            &[],
        ))?;
        rows.iter().map(schedule_from_row).collect()
    }

    fn commit_fires(&self, batch: &FireBatch, now: i64) -> Result<Vec<bool>> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            let mut inserted = Vec::with_capacity(batch.fires.len());
            for f in &batch.fires {
                let run_id = f.run.as_ref().map(|r| r.id.as_str());
                let n = tx
                    .execute(
                        "INSERT INTO schedule_fires (schedule, scheduled_for, due_at, enqueued_at, late, \
                         status, run_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                        &[
                            &f.schedule,
                            &f.scheduled_for,
                            &f.due_at,
                            &now,
                            &i64::from(f.late),
                            &f.status.as_str(),
                            &run_id,
                            &f.detail,
                        ],
                    )
                    .await?;
                let new = n == 1;
                if new {
                    if let Some(run) = &f.run {
                        insert_run(&tx, run).await?;
                    }
                    let skipped = f.status == FireStatus::Skipped;
                    tx.execute(
                        "UPDATE schedules SET fired = fired + $2, skipped = skipped + $3 WHERE id = $1",
                        &[&f.schedule, &i64::from(!skipped), &i64::from(skipped)],
                    )
                    .await?;
                }
                inserted.push(new);
            }
            for a in &batch.advances {
                let missed = i64::try_from(a.missed).unwrap_or(i64::MAX);
                tx.execute(
                    "UPDATE schedules SET last_fire = GREATEST(COALESCE(last_fire, $2), $2), \
                     missed = missed + $3 WHERE id = $1",
                    &[&a.schedule, &a.last_fire, &missed],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }

    fn schedule_busy(&self, schedule: &str) -> Result<bool> {
        let c = self.pool.get()?;
        let r = block(c.query_one(
            "SELECT EXISTS (SELECT 1 FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id \
             WHERE f.schedule = $1 AND (f.status IN ('queued', 'running') \
             OR (f.status = 'run' AND r.status IN ('queued', 'running', 'waiting'))))",
            &[&schedule],
        ))?;
        Ok(r.try_get(0)?)
    }

    fn set_fire_status(
        &self,
        schedule: &str,
        scheduled_for: i64,
        status: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let finished = (!matches!(status, "queued" | "running")).then_some(now);
        let c = self.pool.get()?;
        block(c.execute(
            "UPDATE schedule_fires SET status = $3, detail = COALESCE($4, detail), \
             finished_at = $5 WHERE schedule = $1 AND scheduled_for = $2",
            &[&schedule, &scheduled_for, &status, &detail, &finished],
        ))?;
        Ok(())
    }

    fn recover_fires(&self, now: i64) -> Result<RecoveredFires> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            let select = format!(
                "SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE status = $1 \
                 ORDER BY scheduled_for, schedule"
            );
            let queued = tx
                .query(&select, &[&"queued"])
                .await?
                .iter()
                .map(fire_from_row)
                .collect::<Result<Vec<_>>>()?;
            let mut interrupted = tx
                .query(&select, &[&"running"])
                .await?
                .iter()
                .map(fire_from_row)
                .collect::<Result<Vec<_>>>()?;
            tx.execute(
                "UPDATE schedule_fires SET status = 'interrupted', finished_at = $1, \
                 detail = 'interrupted: claw stopped while the job ran; not run again (a job may not be safe to repeat)' \
                 WHERE status = 'running'",
                &[&now],
            )
            .await?;
            tx.commit().await?;
            for f in &mut interrupted {
                f.status = "interrupted".into();
            }
            Ok(RecoveredFires {
                queued,
                interrupted,
            })
        })
    }

    fn list_fires(&self, schedule: Option<&str>, limit: u32) -> Result<Vec<FireRecord>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!(
                "SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE $1::text IS NULL OR schedule = $1::text \
                 ORDER BY scheduled_for DESC, schedule LIMIT $2"
            ),
            &[&schedule, &i64::from(limit)],
        ))?;
        rows.iter().map(fire_from_row).collect()
    }

    fn prune_fires(&self, before: i64) -> Result<usize> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "DELETE FROM schedule_fires WHERE enqueued_at < $1 \
             AND status NOT IN ('queued', 'running') \
             AND scheduled_for < (SELECT MAX(scheduled_for) FROM schedule_fires g \
                                  WHERE g.schedule = schedule_fires.schedule)",
            &[&before],
        ))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn runs_page(&self, q: &super::RunQuery) -> Result<Vec<RunRecord>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE ($1::text IS NULL OR workflow = $1::text) \
                 AND ($2::text IS NULL OR status = $2::text) \
                 AND ($3::bigint IS NULL OR created_at >= $3::bigint) AND parent_run IS NULL \
                 ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
            ),
            &[
                &q.workflow,
                &q.status.map(RunStatus::as_str),
                &q.since,
                &i64::from(q.limit),
                &i64::from(q.offset),
            ],
        ))?;
        runs(&rows)
    }

    fn run_counts(&self, since: Option<i64>) -> Result<Vec<(String, i64)>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT status, COUNT(*) FROM runs WHERE ($1::bigint IS NULL OR created_at >= $1::bigint) \
             GROUP BY status ORDER BY status",
            &[&since],
        ))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn dashboard_users(&self) -> Result<Vec<super::DashboardUser>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT u.name, u.created_at, u.updated_at, \
             (SELECT COUNT(*) FROM dashboard_sessions s WHERE s.\"user\" = u.name), \
             (SELECT COUNT(*) FROM dashboard_tokens t WHERE t.\"user\" = u.name) \
             FROM dashboard_users u ORDER BY u.name",
            &[],
        ))?;
        rows.iter()
            .map(|r| {
                Ok(super::DashboardUser {
                    name: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                    updated_at: r.try_get(2)?,
                    sessions: r.try_get(3)?,
                    tokens: r.try_get(4)?,
                })
            })
            .collect()
    }

    fn dashboard_password(&self, name: &str) -> Result<Option<String>> {
        let c = self.pool.get()?;
        let row = block(c.query_opt("SELECT hash FROM dashboard_users WHERE name = $1", &[&name]))?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    fn add_dashboard_user(&self, name: &str, hash: &str, now: i64) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "INSERT INTO dashboard_users (name, hash, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT DO NOTHING",
            &[&name, &hash, &now],
        ))?;
        Ok(n == 1)
    }

    fn set_dashboard_password(&self, name: &str, hash: &str, now: i64) -> Result<bool> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "UPDATE dashboard_users SET hash = $2, updated_at = $3 WHERE name = $1",
                    &[&name, &hash, &now],
                )
                .await?;
            tx.execute(
                "DELETE FROM dashboard_sessions WHERE \"user\" = $1",
                &[&name],
            )
            .await?;
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    fn remove_dashboard_user(&self, name: &str) -> Result<bool> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            let n = tx
                .execute("DELETE FROM dashboard_users WHERE name = $1", &[&name])
                .await?;
            tx.execute(
                "DELETE FROM dashboard_sessions WHERE \"user\" = $1",
                &[&name],
            )
            .await?;
            tx.execute("DELETE FROM dashboard_tokens WHERE \"user\" = $1", &[&name])
                .await?;
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    fn create_session(&self, s: &super::DashboardSession) -> Result<()> {
        let c = self.pool.get()?;
        block(c.execute(
            "INSERT INTO dashboard_sessions (id_hash, \"user\", csrf, created_at, last_seen) VALUES ($1, $2, $3, $4, $5)",
            &[&s.id_hash, &s.user, &s.csrf, &s.created_at, &s.last_seen],
        ))?;
        Ok(())
    }

    fn session(&self, id_hash: &str) -> Result<Option<super::DashboardSession>> {
        let c = self.pool.get()?;
        let row = block(c.query_opt(
            "SELECT id_hash, \"user\", csrf, created_at, last_seen FROM dashboard_sessions WHERE id_hash = $1",
            &[&id_hash],
        ))?;
        row.map(|r| {
            Ok(super::DashboardSession {
                id_hash: r.try_get(0)?,
                user: r.try_get(1)?,
                csrf: r.try_get(2)?,
                created_at: r.try_get(3)?,
                last_seen: r.try_get(4)?,
            })
        })
        .transpose()
    }

    fn touch_session(&self, id_hash: &str, now: i64) -> Result<()> {
        let c = self.pool.get()?;
        block(c.execute(
            "UPDATE dashboard_sessions SET last_seen = $2 WHERE id_hash = $1",
            &[&id_hash, &now],
        ))?;
        Ok(())
    }

    fn end_session(&self, id_hash: &str) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "DELETE FROM dashboard_sessions WHERE id_hash = $1",
            &[&id_hash],
        ))?;
        Ok(n == 1)
    }

    fn prune_sessions(&self, idle_before: i64, created_before: i64) -> Result<usize> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "DELETE FROM dashboard_sessions WHERE last_seen < $1 OR created_at < $2",
            &[&idle_before, &created_before],
        ))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn add_api_token(&self, hash: &str, user: &str, name: &str, now: i64) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "INSERT INTO dashboard_tokens (hash, \"user\", name, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&hash, &user, &name, &now],
        ))?;
        Ok(n == 1)
    }

    fn api_token_user(&self, hash: &str, now: i64) -> Result<Option<String>> {
        let c = self.pool.get()?;
        block(async {
            let Some(r) = c
                .query_opt(
                    "SELECT \"user\", last_used FROM dashboard_tokens WHERE hash = $1",
                    &[&hash],
                )
                .await?
            else {
                return Ok(None);
            };
            let user: String = r.try_get(0)?;
            let last_used: Option<i64> = r.try_get(1)?;
            if last_used.is_none_or(|t| now - t >= 60_000) {
                c.execute(
                    "UPDATE dashboard_tokens SET last_used = $2 WHERE hash = $1",
                    &[&hash, &now],
                )
                .await?;
            }
            Ok(Some(user))
        })
    }

    fn api_tokens(&self) -> Result<Vec<super::ApiToken>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT \"user\", name, created_at, last_used FROM dashboard_tokens ORDER BY \"user\", name",
            &[],
        ))?;
        rows.iter()
            .map(|r| {
                Ok(super::ApiToken {
                    user: r.try_get(0)?,
                    name: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    last_used: r.try_get(3)?,
                })
            })
            .collect()
    }

    fn remove_api_token(&self, user: &str, name: &str) -> Result<bool> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "DELETE FROM dashboard_tokens WHERE \"user\" = $1 AND name = $2",
            &[&user, &name],
        ))?;
        Ok(n == 1)
    }

    fn release_messages(&self, prefix: &str, keep: &str) -> Result<usize> {
        let c = self.pool.get()?;
        let n = block(c.execute(
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE status = 'pending' \
             AND claimed_by IS NOT NULL AND substr(claimed_by, 1, length($1)) = $1 AND claimed_by <> $2",
            &[&prefix, &keep],
        ))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn messages_from(&self, source: &str) -> Result<Vec<super::OutboxMessage>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE source = $1 ORDER BY id"),
            &[&source],
        ))?;
        rows.iter().map(outbox_from_row).collect()
    }

    fn watch_run(&self, w: &super::RunWatch) -> Result<()> {
        let c = self.pool.get()?;
        block(c.execute(
            "INSERT INTO chat_watch (run_id, channel, chat, workflow, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id) DO UPDATE SET channel = excluded.channel, \
             chat = excluded.chat, workflow = excluded.workflow, created_at = excluded.created_at",
            &[&w.run_id, &w.channel, &w.chat, &w.workflow, &w.created_at],
        ))?;
        Ok(())
    }

    fn run_watches(&self) -> Result<Vec<super::RunWatch>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT run_id, channel, chat, workflow, created_at FROM chat_watch ORDER BY created_at",
            &[],
        ))?;
        rows.iter()
            .map(|r| {
                Ok(super::RunWatch {
                    run_id: r.try_get(0)?,
                    channel: r.try_get(1)?,
                    chat: r.try_get(2)?,
                    workflow: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    fn end_watch(
        &self,
        run_id: &str,
        messages: &[super::NewMessage],
        now: i64,
    ) -> Result<Vec<i64>> {
        let mut c = self.pool.get()?;
        block(async {
            let tx = c.transaction().await?;
            // The one that removes the watch queues the messages: a chat is told once.
            if tx
                .execute("DELETE FROM chat_watch WHERE run_id = $1", &[&run_id])
                .await?
                == 0
            {
                return Ok(Vec::new());
            }
            let mut ids = Vec::with_capacity(messages.len());
            for m in messages {
                let r = tx
                    .query_one(
                        "INSERT INTO outbox (channel, target, body, source, status, attempts, next_at, \
                         created_at, updated_at, extra) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5, $6) RETURNING id",
                        &[&m.channel, &m.target, &m.body, &m.source, &now, &m.extra],
                    )
                    .await?;
                ids.push(r.try_get(0)?);
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    fn chat_session(&self, channel: &str, chat: &str) -> Result<Option<super::ChatSession>> {
        let c = self.pool.get()?;
        let row = block(c.query_opt(
            "SELECT mode, model, history, updated_at FROM chat_sessions WHERE channel = $1 AND chat = $2",
            &[&channel, &chat],
        ))?;
        let Some(r) = row else { return Ok(None) };
        let history: String = r.try_get(2)?;
        Ok(Some(super::ChatSession {
            channel: channel.to_owned(),
            chat: chat.to_owned(),
            mode: r.try_get(0)?,
            model: r.try_get(1)?,
            // A history that does not read is no history (the next turn rewrites it).
            history: serde_json::from_str(&history).unwrap_or_default(),
            updated_at: r.try_get(3)?,
        }))
    }

    fn set_chat_session(&self, s: &super::ChatSession) -> Result<()> {
        let history = serde_json::to_string(&s.history).unwrap_or_else(|_| "[]".to_owned());
        let c = self.pool.get()?;
        block(c.execute(
            "INSERT INTO chat_sessions (channel, chat, mode, model, history, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel, chat) DO UPDATE SET \
             mode = excluded.mode, model = excluded.model, history = excluded.history, \
             updated_at = excluded.updated_at",
            &[
                &s.channel,
                &s.chat,
                &s.mode,
                &s.model,
                &history,
                &s.updated_at,
            ],
        ))?;
        Ok(())
    }

    // The JSON columns are text written by claw; only objects are read as JSON (`LIKE '{%'`), so
    // a value that is not one is left out rather than failing the query.

    fn runs_by_trigger(&self, kind: &str, limit: u32) -> Result<Vec<RunRecord>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE trigger_data LIKE '{{%' \
                 AND trigger_data::jsonb ->> 'type' = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            ),
            &[&kind, &i64::from(limit)],
        ))?;
        rows.iter().map(run_from_row).collect()
    }

    fn trigger_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT COALESCE(t ->> 'type', ''), COALESCE(t ->> 'hook', t ->> 'rule', ''), COUNT(*) \
             FROM (SELECT trigger_data::jsonb AS t FROM runs WHERE trigger_data LIKE '{%') x \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        ))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    fn step_durations(&self, bounds_ms: &[i64]) -> Result<super::StepDurations> {
        // The bounds are numbers, written into the statement (one per column).
        let cols: String = bounds_ms
            .iter()
            .map(|b| format!(", COUNT(*) FILTER (WHERE d <= {b})"))
            .collect();
        let c = self.pool.get()?;
        let r = block(c.query_one(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(d), 0)::BIGINT{cols} FROM (SELECT GREATEST(finished_at - started_at, 0) AS d \
                 FROM steps WHERE started_at IS NOT NULL AND finished_at IS NOT NULL) x"
            ),
            &[],
        ))?;
        let mut buckets = Vec::with_capacity(bounds_ms.len());
        for i in 0..bounds_ms.len() {
            buckets.push(r.try_get(i + 2)?);
        }
        Ok(super::StepDurations {
            buckets,
            count: r.try_get(0)?,
            sum_ms: r.try_get(1)?,
        })
    }

    fn llm_usage(&self, since: Option<i64>) -> Result<Vec<super::LlmUsage>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT o ->> 'provider', COALESCE(o ->> 'model', ''), COUNT(*), \
             COALESCE(SUM((o -> 'usage' ->> 'input_tokens')::NUMERIC), 0)::BIGINT, \
             COALESCE(SUM((o -> 'usage' ->> 'output_tokens')::NUMERIC), 0)::BIGINT \
             FROM (SELECT s.outputs::jsonb AS o FROM steps s JOIN runs r ON r.id = s.run_id \
                   WHERE ($1::BIGINT IS NULL OR r.created_at >= $1) AND s.outputs LIKE '{%') x \
             WHERE jsonb_typeof(o -> 'provider') = 'string' AND jsonb_typeof(o -> 'usage') = 'object' \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[&since],
        ))?;
        rows.iter()
            .map(|r| {
                Ok(super::LlmUsage {
                    provider: r.try_get(0)?,
                    model: r.try_get(1)?,
                    steps: r.try_get(2)?,
                    input_tokens: r.try_get(3)?,
                    output_tokens: r.try_get(4)?,
                })
            })
            .collect()
    }

    fn message_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let c = self.pool.get()?;
        let rows = block(c.query(
            "SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY channel, status",
            &[],
        ))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

/// The server tests and benchmarks use unless `CLAW_TEST_PG` names another (a database they may
/// create databases from).
pub const TEST_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database made for one test or benchmark, dropped (with its connections) when this is.
#[derive(Debug)]
pub struct ScratchDb {
    admin: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl ScratchDb {
    /// Creates an empty database `claw_<tag>_<pid>_<n>` on the server of `CLAW_TEST_PG` (or
    /// [`TEST_SERVER`]).
    pub fn create(tag: &str) -> Result<Self> {
        let admin =
            crate::config::env::var("CLAW_TEST_PG").unwrap_or_else(|| TEST_SERVER.to_owned());
        Self::create_on(&admin, tag)
    }

    /// Creates an empty database `claw_<tag>_<pid>_<n>` on the server whose maintenance
    /// database is `admin` (a URL ending in `/database`).
    pub fn create_on(admin: &str, tag: &str) -> Result<Self> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = admin.to_owned();
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!("claw_{tag}_{}_{n}", std::process::id());
        admin_execute(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        admin_execute(&admin, &format!("CREATE DATABASE {name}"))?;
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => {
                return Err(StoreError::Schema(format!(
                    "CLAW_TEST_PG must be a URL ending in /database, not {}",
                    redact_url(&admin)
                )));
            }
        };
        Ok(Self { admin, name, url })
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = admin_execute(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `sql` on a connection of its own to `url`.
pub fn admin_execute(url: &str, sql: &str) -> Result<()> {
    let pool = Pool::new(url)?;
    let c = pool.get()?;
    block(c.batch_execute(sql))?;
    Ok(())
}

/// Whether this process may still write run `id`: true without a fence; with one, the run's
/// epoch is still the one this process claimed with (the row stays locked until the
/// transaction ends, so no claim slips in between).
async fn check_fence(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    fence: Option<i64>,
) -> Result<bool> {
    let Some(f) = fence else {
        return Ok(true);
    };
    let row = tx
        .query_opt("SELECT epoch FROM runs WHERE id = $1 FOR UPDATE", &[&id])
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<_, i64>(0)? == f,
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialect_translates_the_sqlite_migrations() {
        let sql = dialect(
            "-- a user comment\nCREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT, n INTEGER) WITHOUT ROWID;\n\
             CREATE INDEX t_user ON t (user);\nCREATE TABLE users (x INTEGER);",
        );
        assert!(!sql.contains("comment"), "{sql}");
        assert!(sql.contains("id BIGSERIAL PRIMARY KEY"), "{sql}");
        assert!(sql.contains("\"user\" TEXT, n BIGINT)"), "{sql}");
        assert!(sql.contains("t_user ON t (\"user\")"), "{sql}");
        assert!(sql.contains("CREATE TABLE users (x BIGINT)"), "{sql}");
        assert!(!sql.contains("ROWID"), "{sql}");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://claw:s3cret@db:5432/claw"),
            "postgres://claw:***@db:5432/claw"
        );
        assert_eq!(
            redact_url("postgres://claw@db/claw"),
            "postgres://claw@db/claw"
        );
        assert_eq!(redact_url("postgres://db/claw"), "postgres://db/claw");
    }

    #[test]
    fn labels_come_from_runs_on() {
        assert_eq!(labels_of("steps: []\n"), "[]");
        assert_eq!(
            labels_of("name: x\nruns_on: [gpu, lan]\nsteps: []\n"),
            r#"["gpu","lan"]"#
        );
        assert_eq!(labels_of("runs_on: gpu\n"), r#"["gpu"]"#);
    }
}
