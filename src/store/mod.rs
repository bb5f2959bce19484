//! Durable state: runs and steps. The only module that writes SQL.
//!
//! [`Store`] is a trait of domain verbs so that the engine does not know which database is behind
//! it: SQLite is the embedded default, PostgreSQL will follow for several workers. Nothing in the
//! trait assumes SQLite (no rowids, no SQLite types; times are integers, JSON is text).
//! Every method commits before it returns: the engine relies on "committed before the work it
//! starts" (DESIGN.md §10).

pub mod memory;
pub mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A numbered schema migration: `src/store/migrations/NNNN_name.sql`.
///
/// One list for both backends, one source of truth for the schema's meaning. The file is written
/// for SQLite in the portable subset both databases read; the PostgreSQL store applies it through
/// [`postgres::dialect`], a small documented translation (`INTEGER` → `BIGINT`,
/// `INTEGER PRIMARY KEY AUTOINCREMENT` → `BIGSERIAL PRIMARY KEY`, no `WITHOUT ROWID`, the column
/// `user` quoted). A migration that needs more than that gives its PostgreSQL text in `postgres`
/// (a sibling file `NNNN_name.pg.sql`). To add one: write the file, append a line here, and run
/// the store tests (`cargo test --lib store::`), which run on both backends.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub number: u32,
    pub sql: &'static str,
    /// The PostgreSQL text, when the translation of `sql` is not enough.
    pub postgres: Option<&'static str>,
}

macro_rules! migration {
    ($n:literal, $file:literal) => {
        Migration {
            number: $n,
            sql: include_str!(concat!("migrations/", $file)),
            postgres: None,
        }
    };
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_runs.sql"),
    migration!(2, "0002_approvals.sql"),
    migration!(3, "0003_webhooks.sql"),
    migration!(4, "0004_schedules.sql"),
    migration!(5, "0005_run_indexes.sql"),
    migration!(6, "0006_outbox.sql"),
    migration!(7, "0007_chats.sql"),
    migration!(8, "0008_dashboard.sql"),
    migration!(9, "0009_chat_sessions.sql"),
    migration!(10, "0010_chat_buttons.sql"),
    migration!(11, "0011_scale_out.sql"),
];

/// Opens the store: PostgreSQL when `url` is a `postgres://` (or `postgresql://`) URL, else the
/// embedded SQLite database at `sqlite_path`, with group commit (each commit is durable when it
/// returns, through an `fdatasync` of the WAL shared by the writes made meanwhile, see
/// [`SqliteStore::with_group_commit`]).
pub fn open(url: Option<&str>, sqlite_path: &std::path::Path) -> Result<std::sync::Arc<dyn Store>> {
    match url {
        Some(u) if postgres::is_url(u) => Ok(std::sync::Arc::new(PgStore::open(u)?)),
        Some(u) => Err(StoreError::Schema(format!(
            "the store `{}` is not a PostgreSQL URL (postgres://user@host:port/database); leave \
             `store` unset for the embedded SQLite store",
            postgres::redact_url(u)
        ))),
        None => Ok(std::sync::Arc::new(
            SqliteStore::open(sqlite_path)?.with_group_commit(sqlite_path)?,
        )),
    }
}

/// Errors from the database, or stored data that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {}{source}", if context.is_empty() { String::new() } else { format!("{context}: ") })]
    Db {
        /// What was being done, when it says more than the operation (`cannot open …`).
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// From PostgreSQL (the scale-out store).
    #[error("database error: {}{source}", if context.is_empty() { String::new() } else { format!("{context}: ") })]
    Pg {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A write of a run's state by a process that no longer holds the run: its lease expired and
    /// another worker claimed the run (a newer fencing epoch). Nothing was written.
    #[error(
        "run {run} was taken over by another process (its lease expired; fencing epoch {held} is \
         stale): this process's write was refused"
    )]
    Fenced { run: String, held: i64 },
    /// The database is not one this claw can use (a newer schema, a row that vanished).
    #[error("database error: {0}")]
    Schema(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no run matches `{0}`")]
    NoSuchRun(String),
    #[error("`{prefix}` matches several runs: {candidates}")]
    Ambiguous { prefix: String, candidates: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl crate::error::ExitStatus for StoreError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::NoSuchRun(_) | Self::Ambiguous { .. } => crate::error::INVALID,
            Self::Db { .. }
            | Self::Pg { .. }
            | Self::Fenced { .. }
            | Self::Schema(_)
            | Self::Corrupt(_) => crate::error::INTERNAL,
        }
    }
}

/// Run states (DESIGN.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Running,
        Self::Waiting,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown run status `{s}`"))
    }
}

/// Step states. `Interrupted` is a step that was running when its owner died and is not
/// idempotent: it waits for a person to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    Interrupted,
    /// An approval gate waiting for its decision.
    Waiting,
}

impl StepStatus {
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
        Self::Interrupted,
        Self::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
            Self::Waiting => "waiting",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown step status `{s}`"))
    }
}

/// A person's decision on an interrupted step (`claw run approve|reject RUN STEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Run it again (`approve`).
    Retry,
    /// Take it as done without running it again (`approve --skip`).
    Skip,
    /// Mark it failed (`reject`).
    Fail,
}

impl Decision {
    pub const ALL: [Self; 3] = [Self::Retry, Self::Skip, Self::Fail];

    /// As stored and audited.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Skip => "skip",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown decision `{s}`"))
    }
}

/// Which list a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Main,
    /// The workflow's `rollback:` steps (named `rollback:<name>`, as in the seed).
    Rollback,
    /// A step's own `rollback:` (named `compensate:<step>`).
    Compensation,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Rollback => "rollback",
            Self::Compensation => "compensation",
        }
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "main" => Ok(Self::Main),
            "rollback" => Ok(Self::Rollback),
            "compensation" => Ok(Self::Compensation),
            _ => Err(format!("unknown phase `{s}`")),
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub workflow: String,
    pub workflow_path: String,
    /// The workflow file's text when the run was created.
    pub definition: String,
    pub params: serde_json::Value,
    pub trigger: serde_json::Value,
    pub status: RunStatus,
    /// Who executes the run (see `engine::owner`); `None` when nobody has claimed it.
    pub owner: Option<String>,
    pub lease_until: Option<i64>,
    pub dry_run: bool,
    pub cancel_requested: bool,
    pub parent_run: Option<String>,
    pub outputs: serde_json::Value,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl RunRecord {
    /// A queued run of `workflow` created at `created_at` (ms), with no parameters, owner or
    /// definition: the base that fixtures and benchmarks fill in (`..RunRecord::queued(…)`).
    pub fn queued(id: &str, workflow: &str, created_at: i64) -> Self {
        Self {
            id: id.to_owned(),
            workflow: workflow.to_owned(),
            workflow_path: String::new(),
            definition: String::new(),
            params: serde_json::json!({}),
            trigger: serde_json::json!({}),
            status: RunStatus::Queued,
            owner: None,
            lease_until: None,
            dry_run: false,
            cancel_requested: false,
            parent_run: None,
            outputs: serde_json::json!({}),
            error: None,
            created_at,
            started_at: None,
            finished_at: None,
        }
    }
}

/// A step of a run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub name: String,
    pub phase: Phase,
    /// Order for display: the step's index in its list.
    pub seq: i64,
    pub status: StepStatus,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub outputs: serde_json::Value,
    pub stdout_tail: String,
    pub stderr_tail: String,
    /// Why it failed or was skipped, or what a dry run would have done.
    pub message: Option<String>,
    pub log_path: Option<String>,
    /// A person's decision on an interrupted step.
    pub decision: Option<Decision>,
    pub decided_by: Option<String>,
}

impl StepRecord {
    pub fn new(name: &str, phase: Phase, seq: i64) -> Self {
        Self {
            name: name.to_owned(),
            phase,
            seq,
            status: StepStatus::Pending,
            attempts: 0,
            exit_code: None,
            started_at: None,
            finished_at: None,
            outputs: serde_json::Value::Object(serde_json::Map::new()),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            message: None,
            log_path: None,
            decision: None,
            decided_by: None,
        }
    }
}

/// What a waiting approval step asks for (one per run and step; a resumed run keeps it).
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    pub run_id: String,
    pub step: String,
    /// The rendered question (secrets masked).
    pub message: String,
    /// Who may decide; empty: anyone.
    pub approvers: Vec<String>,
    pub quorum: u32,
    /// When `on_timeout` decides, in ms since the epoch.
    pub deadline: Option<i64>,
    /// `approve` or `reject`.
    pub on_timeout: String,
    /// The input fields the approvers fill in: `[{name, type, required, default, description}]`.
    pub input: serde_json::Value,
    pub requested_at: i64,
}

/// One approver's decision on an approval request.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub reason: Option<String>,
    pub input: serde_json::Value,
    pub decided_at: i64,
}

/// A request with the votes cast so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub request: ApprovalRequest,
    pub votes: Vec<Vote>,
}

/// Filter for [`Store::list_runs`].
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: Option<u32>,
    /// Only the children of this run (sub-workflows).
    pub parent: Option<String>,
}

/// The persistent store of runs and steps.
///
/// Methods are blocking and short (one small transaction each). The engine calls them between
/// steps from its own thread; a server embedding the engine calls them from `spawn_blocking`.
/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub channel: String,
    pub target: String,
    pub body: String,
    /// What queued it (`cli`, `run:<id>`, `cron:<job>` …).
    pub source: String,
    /// What the channel sends besides the text (JSON: Telegram's gate buttons, or the message
    /// an edit replaces), when anything.
    pub extra: Option<String>,
}

/// A chat waiting for a run's outcome (kept in the store, so a restart still tells it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunWatch {
    pub run_id: String,
    pub channel: String,
    pub chat: String,
    pub workflow: String,
    pub created_at: i64,
}

/// A chat's LLM conversation: its mode, its provider override, its last turns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatSession {
    pub channel: String,
    pub chat: String,
    /// `chat` (the default: free text goes to the LLM) or `skill`.
    pub mode: String,
    /// The provider `/model` chose (`None`: the chat role's).
    pub model: Option<String>,
    /// Oldest first.
    pub history: Vec<ChatTurn>,
    pub updated_at: i64,
}

/// One message of a chat's conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatTurn {
    /// `user` or `assistant`.
    pub role: String,
    pub text: String,
    pub at: i64,
}

/// Whether a chat may talk to claw, as recorded (besides the `ALLOWED_CHAT_IDS` setting).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatAccess {
    pub channel: String,
    pub chat: String,
    /// `requested` (asked with /start), `allowed` or `denied`.
    pub status: String,
    /// Who asked (a Telegram username or first name), for the admin.
    pub name: String,
    /// Who decided (`telegram:<admin chat>`, `cli:<user>`).
    pub decided_by: Option<String>,
    pub updated_at: i64,
}

/// A queued message and its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxMessage {
    pub id: i64,
    pub channel: String,
    pub target: String,
    pub body: String,
    pub source: String,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    /// See [`NewMessage::extra`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

/// One attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    Sent { provider_id: String },
    Retry { next_at: i64, error: String },
    Dead { error: String },
}

/// A wait for writes to reach the disk ([`Store::deferred`]). It blocks: the daemon makes it on a
/// blocking thread; a one-run process starts it ([`SyncWait::start`]) and makes it later on its
/// own thread.
#[derive(Clone)]
pub struct SyncWait {
    wait: std::sync::Arc<dyn Fn() + Send + Sync>,
    start: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

impl SyncWait {
    /// `wait` may be called more than once, from several threads (group commit's wait).
    pub fn new(wait: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            wait: std::sync::Arc::new(wait),
            start: None,
        }
    }

    /// With `start`, which sets the writes on their way to the disk without waiting for them
    /// (see [`SyncWait::start`]).
    #[must_use]
    pub fn with_start(mut self, start: impl Fn() + Send + Sync + 'static) -> Self {
        self.start = Some(std::sync::Arc::new(start));
        self
    }

    /// Sets the writes on their way to the disk and returns at once, so that the thread can
    /// prepare what comes next while the disk works; [`SyncWait::wait`] then waits for less.
    pub fn start(&self) {
        if let Some(start) = &self.start {
            start();
        }
    }

    /// Returns once the writes are on disk.
    pub fn wait(&self) {
        (self.wait)();
    }
}

impl fmt::Debug for SyncWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncWait")
    }
}

/// A page of top-level runs for [`Store::runs_page`], newest first.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs created at or after this time (ms).
    pub since: Option<i64>,
    pub limit: u32,
    pub offset: u32,
}

/// What [`Store::llm_usage`] counts for one provider and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmUsage {
    pub provider: String,
    pub model: String,
    pub steps: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// What [`Store::step_durations`] counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepDurations {
    /// Per bound, the steps that took at most that long (cumulative, as Prometheus buckets).
    pub buckets: Vec<i64>,
    pub count: i64,
    pub sum_ms: i64,
}

/// A dashboard user as listed (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardUser {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Sessions open now.
    pub sessions: i64,
    pub tokens: i64,
}

/// A dashboard session: the SHA-256 of the cookie's value, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    pub id_hash: String,
    pub user: String,
    /// The session's CSRF token (sent in every form and htmx request).
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// An API token as listed (its hash stays in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub user: String,
    pub name: String,
    pub created_at: i64,
    pub last_used: Option<i64>,
}

pub trait Store: Send + Sync + fmt::Debug {
    /// For a process whose writing thread must not wait for the disk (the daemon): the store's
    /// own upkeep (SQLite's WAL checkpoints) is done beside the writers from now on, rather than
    /// inside the commit that makes it due. Nothing where there is no such upkeep.
    fn checkpoint_beside_writers(&self) -> Result<()> {
        Ok(())
    }

    /// Runs `f`, whose writes each commit when made but reach the disk together when this
    /// returns (one sync for all, where the store groups syncs): for a caller that acknowledges
    /// only once `f` is done (a webhook's 202). Inside `f`, a write is not yet durable.
    fn durable_together(&self, f: &mut dyn FnMut()) {
        f();
    }

    /// Runs `f`, whose writes commit when made (a crash of claw cannot lose them), without
    /// waiting for them to reach the disk; returns what to wait on, off the caller's thread,
    /// before acting on them, or `None` when they are on disk already (no group commit).
    fn deferred(&self, f: &mut dyn FnMut()) -> Option<SyncWait> {
        f();
        None
    }

    /// Inserts a new run (status as given, normally `queued`).
    fn create_run(&self, run: &RunRecord) -> Result<()>;
    fn get_run(&self, id: &str) -> Result<Option<RunRecord>>;
    /// A run by id or unique id prefix.
    fn find_run(&self, id_or_prefix: &str) -> Result<RunRecord>;
    /// Newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// Runs not finished (queued, running, waiting), oldest first.
    fn unfinished_runs(&self, workflow: Option<&str>) -> Result<Vec<RunRecord>>;
    /// Unfinished runs in the same order, at most `limit` of them after the run `after`
    /// (`created_at`, `id`), leaving out the runs `skip`: the queue read a page at a time, so a
    /// long queue costs its head only, and the runs a daemon already drives cost nothing.
    fn unfinished_runs_after(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
        skip: &[&str],
    ) -> Result<Vec<RunRecord>>;
    /// Whether an unfinished run of the schedule `schedule` was created before the run
    /// (`created_at`, `id`) (`overlap: queue` keeps a schedule's runs one at a time).
    fn schedule_run_before(&self, schedule: &str, created_at: i64, id: &str) -> Result<bool>;
    /// How many of the runs `ids` are waiting (parked at a gate or for a decision).
    fn count_waiting(&self, ids: &[&str]) -> Result<usize>;

    /// Takes ownership of a run if it has no owner, is already ours, or its owner is dead
    /// according to `is_dead`. Atomic against other processes. Returns the run as claimed, or
    /// `None` if a live owner holds it.
    fn claim_run(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        is_dead: &dyn Fn(&RunRecord) -> bool,
    ) -> Result<Option<RunRecord>>;

    /// Moves a queued run to `running` if fewer than `limit` other runs of its workflow are active
    /// (running or waiting with a live owner, or queued before it). Atomic against other processes.
    fn admit_run(
        &self,
        id: &str,
        limit: u32,
        now: i64,
        is_dead: &dyn Fn(&RunRecord) -> bool,
    ) -> Result<bool>;

    /// Extends the owner's lease.
    fn heartbeat(&self, id: &str, owner: &str, lease_until: i64) -> Result<()>;
    /// Sets the run's status (and finish time, error, outputs when given).
    fn update_run(
        &self,
        id: &str,
        status: RunStatus,
        error: Option<&str>,
        outputs: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<()>;
    /// Writes the last step records and the run's final status in one transaction.
    fn finish_run(
        &self,
        id: &str,
        steps: &[StepRecord],
        status: RunStatus,
        error: Option<&str>,
        outputs: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<()>;
    /// Marks the run for cancellation; its owner sees it at its next check.
    fn request_cancel(&self, id: &str) -> Result<()>;
    fn cancel_requested(&self, id: &str) -> Result<bool>;

    fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>>;
    /// Writes several step records and the run status in one transaction.
    fn record_steps(
        &self,
        run_id: &str,
        steps: &[StepRecord],
        run_status: Option<RunStatus>,
    ) -> Result<()>;
    /// Records a person's decision on an interrupted step.
    fn decide_step(&self, run_id: &str, step: &str, decision: Decision, who: &str) -> Result<bool>;

    /// Stores the request of an approval step, unless the step already has one (a resumed run
    /// keeps its first request and deadline). Returns the stored request and whether it is new.
    fn open_approval(&self, request: &ApprovalRequest) -> Result<(ApprovalRequest, bool)>;
    fn approval(&self, run_id: &str, step: &str) -> Result<Option<Approval>>;
    /// Adds a vote; `false` if this approver has already voted on the request.
    fn add_vote(&self, run_id: &str, step: &str, vote: &Vote) -> Result<bool>;
    /// Requests whose step is still waiting, oldest first; also the undecided sub-gates of a
    /// waiting step (`STEP#KEY`: an llm step's tool call waiting for approval).
    fn pending_approvals(&self) -> Result<Vec<Approval>>;

    /// Deletes finished runs older than `older_than` (ms) or beyond the newest `keep` of their
    /// workflow; returns the ids deleted so their log directories can go too.
    fn prune_runs(&self, workflow: &str, older_than: i64, keep: u32) -> Result<Vec<String>>;

    // --- webhook deliveries (dedupe by the sender's delivery id) ---

    /// Records that `hook` received `delivery_id` (atomically: of two concurrent calls, one gets
    /// [`Delivery::New`]). Ids received before `forget_before` (ms) are forgotten first.
    fn claim_delivery(
        &self,
        hook: &str,
        delivery_id: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<Delivery>;
    /// The run a claimed delivery started; `None` forgets the delivery (no run was started, so a
    /// retry may start one).
    fn set_delivery_run(&self, hook: &str, delivery_id: &str, run_id: Option<&str>) -> Result<()>;

    // --- the outbox: messages committed before they are sent ---

    /// Queues messages (in order); their ids.
    fn enqueue_messages(&self, messages: &[NewMessage], now: i64) -> Result<Vec<i64>>;
    /// Claims, until `lease_until`, the oldest pending message of each (channel, target) whose
    /// turn has come (`next_at <= now`) and that nobody else holds; at most `limit`.
    fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>>;
    /// Records one attempt's outcome and releases the claim.
    fn finish_message(&self, id: i64, outcome: &MessageOutcome, now: i64) -> Result<()>;
    /// The messages, newest first (`failed`: dead ones and pending ones that have failed).
    fn list_messages(&self, failed: bool, limit: u32) -> Result<Vec<OutboxMessage>>;
    /// Messages by id (missing ids are left out).
    fn messages(&self, ids: &[i64]) -> Result<Vec<OutboxMessage>>;
    /// Releases the claims of owners whose name starts with `prefix`, except `keep`'s (the
    /// daemon's, at its start: another daemon's claims are a dead one's); how many.
    fn release_messages(&self, prefix: &str, keep: &str) -> Result<usize>;
    /// The messages `source` queued, oldest first.
    fn messages_from(&self, source: &str) -> Result<Vec<OutboxMessage>>;
    /// Remembers that a chat waits for a run's outcome.
    fn watch_run(&self, watch: &RunWatch) -> Result<()>;
    /// Every run a chat waits for.
    fn run_watches(&self) -> Result<Vec<RunWatch>>;
    /// Forgets the watch of `run_id` and queues `messages` (its outcome) in one transaction; the
    /// ids, none when nobody watched it any more.
    fn end_watch(&self, run_id: &str, messages: &[NewMessage], now: i64) -> Result<Vec<i64>>;
    /// A dead message is pending again, due now, with its attempts reset; false when `id` is not
    /// a dead message.
    fn retry_message(&self, id: i64, now: i64) -> Result<bool>;

    // --- chat front ends: who may talk to claw, and each channel's inbound cursor ---

    /// A chat's access record (`None`: never seen, nor decided).
    fn chat_access(&self, channel: &str, chat: &str) -> Result<Option<ChatAccess>>;
    /// Records a request or a decision (an empty `name` keeps the one stored).
    fn set_chat_access(&self, access: &ChatAccess) -> Result<()>;
    /// Forgets a chat; false when it was not recorded.
    fn remove_chat_access(&self, channel: &str, chat: &str) -> Result<bool>;
    /// A chat's LLM conversation (mode, provider override, last turns), if it has one.
    fn chat_session(&self, channel: &str, chat: &str) -> Result<Option<ChatSession>>;
    /// Keeps a chat's LLM conversation (replacing what was kept).
    fn set_chat_session(&self, session: &ChatSession) -> Result<()>;
    /// Every recorded chat, by channel and status.
    fn list_chat_access(&self) -> Result<Vec<ChatAccess>>;
    /// Where a channel's inbound stream resumes (Telegram's getUpdates offset).
    fn inbound_cursor(&self, channel: &str) -> Result<Option<i64>>;
    /// Moves it forward (never back).
    fn set_inbound_cursor(&self, channel: &str, next_offset: i64, now: i64) -> Result<()>;

    // --- the scheduler: persisted last fires and exactly-once fire rows ---

    /// The state of each schedule in `ids`, in order; a schedule not seen before is recorded with
    /// `first_seen = now` (its anchor until it has a fire).
    fn register_schedules(&self, ids: &[String], now: i64) -> Result<Vec<ScheduleState>>;
    /// Every schedule's state.
    fn schedule_states(&self) -> Result<Vec<ScheduleState>>;
    /// Commits one scheduler pass in one transaction: each fire is inserted under its unique key
    /// `(schedule, scheduled_for)` (a fire already there is left alone and its run not created),
    /// then each schedule's `last_fire` moves forward and its counters grow. Returns, per fire,
    /// whether it was new.
    fn commit_fires(&self, batch: &FireBatch, now: i64) -> Result<Vec<bool>>;
    /// Whether a fire of `schedule` is still going: a job fire queued or running, or the run of a
    /// workflow fire not finished.
    fn schedule_busy(&self, schedule: &str) -> Result<bool>;
    /// Moves a fire to `status` (`running`, `ok`, `error`, ...).
    fn set_fire_status(
        &self,
        schedule: &str,
        scheduled_for: i64,
        status: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// At daemon start (it holds the data directory's lease, so no other process runs fires):
    /// job fires left `running` become `interrupted` (not run again: a job is not known to be
    /// idempotent); fires left `queued` are returned to be run now. Returns the interrupted ones too.
    fn recover_fires(&self, now: i64) -> Result<RecoveredFires>;
    /// Fires, newest first (of one schedule, or all).
    fn list_fires(&self, schedule: Option<&str>, limit: u32) -> Result<Vec<FireRecord>>;
    /// Deletes fire rows enqueued before `before` (ms), keeping each schedule's newest.
    fn prune_fires(&self, before: i64) -> Result<usize>;

    /// A page of top-level runs (no sub-workflow children), newest first.
    fn runs_page(&self, query: &RunQuery) -> Result<Vec<RunRecord>>;
    /// How many runs have each status (created since `since`, or all).
    fn run_counts(&self, since: Option<i64>) -> Result<Vec<(String, i64)>>;
    /// The newest runs started by one kind of trigger (`trigger.type`: `webhook`, `watcher`,
    /// `cron`, ...), sub-workflow children included only if their trigger says so.
    fn runs_by_trigger(&self, kind: &str, limit: u32) -> Result<Vec<RunRecord>>;
    /// How many runs each trigger started: `(type, source, count)`, the source being the
    /// webhook's `hook` or the watcher's `rule` (empty for others).
    fn trigger_counts(&self) -> Result<Vec<(String, String, i64)>>;
    /// Finished steps' durations as a histogram: for each bound (ms, ascending) how many took
    /// at most that long, then the count and the sum (ms) of all.
    fn step_durations(&self, bounds_ms: &[i64]) -> Result<StepDurations>;
    /// LLM use per provider and model, from the outputs of `llm` steps (`provider`, `model`,
    /// `usage`) of runs created since `since` (ms).
    fn llm_usage(&self, since: Option<i64>) -> Result<Vec<LlmUsage>>;
    /// How many outbox messages (pieces) each channel has in each status (pending, sent, dead).
    fn message_counts(&self) -> Result<Vec<(String, String, i64)>>;

    // The dashboard's users, sessions and API tokens.
    fn dashboard_users(&self) -> Result<Vec<DashboardUser>>;
    /// The user's argon2id PHC string.
    fn dashboard_password(&self, name: &str) -> Result<Option<String>>;
    /// False if the user exists.
    fn add_dashboard_user(&self, name: &str, hash: &str, now: i64) -> Result<bool>;
    /// Sets the hash and ends every session of the user. False if there is no such user.
    fn set_dashboard_password(&self, name: &str, hash: &str, now: i64) -> Result<bool>;
    /// Removes the user with their sessions and tokens. False if there is no such user.
    fn remove_dashboard_user(&self, name: &str) -> Result<bool>;
    fn create_session(&self, session: &DashboardSession) -> Result<()>;
    fn session(&self, id_hash: &str) -> Result<Option<DashboardSession>>;
    fn touch_session(&self, id_hash: &str, now: i64) -> Result<()>;
    fn end_session(&self, id_hash: &str) -> Result<bool>;
    /// Ends sessions idle since before `idle_before` or opened before `created_before`.
    fn prune_sessions(&self, idle_before: i64, created_before: i64) -> Result<usize>;
    /// False if the user already has a token of that name.
    fn add_api_token(&self, hash: &str, user: &str, name: &str, now: i64) -> Result<bool>;
    /// The user a token (by its hash) belongs to; records its use (at most once a minute).
    fn api_token_user(&self, hash: &str, now: i64) -> Result<Option<String>>;
    fn api_tokens(&self) -> Result<Vec<ApiToken>>;
    fn remove_api_token(&self, user: &str, name: &str) -> Result<bool>;

    /// Releases the memory the store keeps only to go faster (page caches); a long-running
    /// process calls it after a burst of work.
    fn release_memory(&self) {}

    /// Whether processes on other machines share this store (PostgreSQL): a daemon's roles are
    /// then taken through [`Store::take_role`], not given by its data directory's lock.
    fn shared(&self) -> bool {
        false
    }

    /// Takes or renews the role `role` (the scheduler, among several daemons) for `holder` until
    /// `lease_until`, unless another holder's lease runs past `now`. Returns the role's epoch
    /// (bumped at each change of holder) when held, `None` when another process holds it. A
    /// store that is not shared has one daemon (its data directory's lock): always held.
    fn take_role(
        &self,
        role: &str,
        holder: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<i64>> {
        let _ = (role, holder, now, lease_until);
        Ok(Some(0))
    }

    /// A number that changes when another process (another connection) commits to the store
    /// (`None`: the store cannot tell; watchers then check at every tick).
    fn data_version(&self) -> Option<u64> {
        None
    }

    /// Appends `text` (already masked) to the copy of a step's log kept in a shared store, so
    /// that any machine can show it (a worker's log file is on its own disk). At most `cap`
    /// bytes are kept: the oldest chunks are dropped, as the log file rotates. A store that is
    /// not shared keeps no copy (the file is on the machine that reads it): nothing is written.
    fn append_step_log(&self, run_id: &str, step: &str, text: &str, cap: u64) -> Result<()> {
        let _ = (run_id, step, text, cap);
        Ok(())
    }

    /// The chunks of a step's log kept in the store whose number is above `after`, in order;
    /// the last one's number is where to continue from. Empty when the store keeps no copy.
    fn step_log_after(&self, run_id: &str, step: &str, after: i64) -> Result<Vec<LogChunk>> {
        let _ = (run_id, step, after);
        Ok(Vec::new())
    }
}

/// A piece of a step's log kept in a shared store ([`Store::step_log_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Increasing within the step; numbers of dropped chunks (over the cap) are not reused.
    pub seq: i64,
    pub text: String,
}

/// A schedule's persistent state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    pub id: String,
    /// The newest fire instant handled (ms).
    pub last_fire: Option<i64>,
    pub first_seen: i64,
    pub fired: u64,
    pub missed: u64,
    pub skipped: u64,
}

/// What a new fire row starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireStatus {
    /// A job fire, to run now (or when the schedule's previous fire ends).
    Queued,
    /// Not run: the previous fire was still going (`overlap: skip`).
    Skipped,
    /// A workflow fire: its run is created in the same transaction.
    Run,
}

impl FireStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Skipped => "skipped",
            Self::Run => "run",
        }
    }
}

/// A fire to insert.
#[derive(Debug, Clone)]
pub struct NewFire {
    pub schedule: String,
    pub scheduled_for: i64,
    pub due_at: i64,
    pub late: bool,
    pub status: FireStatus,
    /// The run of a workflow fire (inserted only if the fire is new).
    pub run: Option<RunRecord>,
    pub detail: Option<String>,
}

/// A schedule's progress in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub schedule: String,
    /// The newest fire instant handled (ms); `last_fire` never moves back.
    pub last_fire: i64,
    /// Fires recorded missed in this pass.
    pub missed: u64,
}

/// One scheduler pass.
#[derive(Debug, Clone, Default)]
pub struct FireBatch {
    pub fires: Vec<NewFire>,
    pub advances: Vec<Advance>,
}

/// A stored fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireRecord {
    pub schedule: String,
    pub scheduled_for: i64,
    pub due_at: i64,
    pub enqueued_at: i64,
    pub late: bool,
    pub status: String,
    pub run_id: Option<String>,
    pub detail: Option<String>,
    pub finished_at: Option<i64>,
}

/// What [`Store::recover_fires`] found.
#[derive(Debug, Clone, Default)]
pub struct RecoveredFires {
    pub queued: Vec<FireRecord>,
    pub interrupted: Vec<FireRecord>,
}

/// What [`Store::claim_delivery`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    New,
    /// Received before; the run it started, if it got that far.
    Seen {
        run_id: Option<String>,
    },
}
