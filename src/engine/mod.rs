//! The engine: creates runs, claims them, and executes their step DAG to the end.
//!
//! One event loop per run (`run::Exec`) starts every step whose dependencies are done, up to
//! `max_parallel`, and records each transition in the store *before* the work it starts, so that
//! a `kill -9` at any moment leaves a state from which [`Engine::drive`] can carry on: finished
//! steps are never run again, an interrupted idempotent step is run again, and an interrupted
//! non-idempotent step waits for a person's decision.

pub mod approval;
pub mod changes;
pub mod owner;

mod rerun;
mod run;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Dirs, Settings};
use crate::error::ExitStatus;
use crate::expr::Evaluator;
use crate::store::{RunRecord, RunStatus, StepRecord, Store, StoreError};
use crate::workflow::Workflow;
use crate::workflow::load::{self, FileErrors};

/// Faults of the engine itself (a failed step is not one of these).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input was wrong: bad params, a decision for a step that does not wait, …
    #[error("{0}")]
    Invalid(String),
    #[error("the run's stored workflow definition no longer loads:\n{}", .0.render())]
    Definition(Box<FileErrors>),
    #[error(
        "run {run} is being executed by another process ({owner}); wait for it, or cancel it with `claw run cancel {run}`"
    )]
    Busy { run: String, owner: String },
    /// The machine failed under the engine (a directory that cannot be made, a log file).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A step's task ended without a report (it panicked or was aborted).
    #[error("a step task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Not done, because its audit entry could not be written first (decisions fail closed).
    #[error(
        "{what} was not done: its audit entry could not be written ({source}); `claw doctor` checks the audit log"
    )]
    Unaudited {
        what: String,
        #[source]
        source: crate::audit::AuditError,
    },
    /// What was done is recorded, but its audit entry could not be written.
    #[error("{done}, but not in the audit log: {source}")]
    Audit {
        done: String,
        #[source]
        source: crate::audit::AuditError,
    },
    /// Someone not allowed tried to decide (audited).
    #[error("{0}")]
    Denied(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl ExitStatus for EngineError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::Invalid(_) | Self::Busy { .. } | Self::Denied(_) => crate::error::INVALID,
            Self::Store(e) => e.exit_status(),
            Self::Definition(_)
            | Self::Io { .. }
            | Self::Task(_)
            | Self::Audit { .. }
            | Self::Unaudited { .. } => crate::error::INTERNAL,
        }
    }
}

/// What the engine tells whoever watches a run (the CLI prints it on a terminal).
#[derive(Debug)]
pub enum Event<'a> {
    StepStarted {
        name: &'a str,
        attempt: u32,
    },
    StepFinished {
        step: &'a StepRecord,
    },
    /// The run waits for a person (an interrupted step, a concurrency slot).
    Waiting {
        message: &'a str,
    },
    Note {
        message: &'a str,
    },
    /// An approval gate of this run opened (after its [`Event::Waiting`]): a foreground front
    /// end may also ask at its terminal, as the seed's `approval_gate` did.
    GateOpen {
        run: &'a str,
        step: &'a str,
        /// The question.
        question: &'a str,
        /// Whether the gate asks for input fields (a yes/no answer cannot give them).
        has_input: bool,
    },
}

/// Receives [`Event`]s.
pub trait Progress {
    fn event(&self, event: &Event<'_>);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: &Event<'_>) {}
}

pub use crate::time::now_ms;

/// The engine for one data directory.
#[derive(Debug)]
pub struct Engine {
    pub dirs: Dirs,
    /// `claw.yaml`'s settings; the daemon replaces them when the file changes.
    settings: std::sync::RwLock<Settings>,
    pub store: Arc<dyn Store>,
    pub audit: crate::audit::AuditLog,
    owner: String,
    eval: Evaluator,
    /// Cancelled when the daemon's shutdown deadline passes: runs stop their steps, record them
    /// interrupted and stay resumable (unlike a cancel, which finishes the run).
    shutdown: CancellationToken,
    /// Cancelled when the daemon stops taking work: runs that only wait (approval gates, child
    /// runs) are put aside at once, like at the shutdown deadline.
    park: CancellationToken,
    /// Rung when the store may hold a new decision (see [`changes`]).
    changes: Arc<changes::Changes>,
    /// How long a claim of this engine lasts without renewal (ms); renewed every third of it.
    lease_ms: i64,
    /// Its thread drives many runs (the daemon, a worker): it never waits for the disk itself.
    shared_thread: bool,
}

/// What starts a run.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub workflow: &'a Workflow,
    pub params: serde_json::Value,
    pub trigger: serde_json::Value,
    pub dry_run: bool,
    /// Whether this process will execute the run itself (else it stays unowned in the queue).
    pub claim: bool,
}

impl Engine {
    /// Opens the store in the data directory (creating both if needed).
    pub fn open(dirs: Dirs, settings: Settings) -> Result<Self> {
        dirs.ensure_home().map_err(|source| EngineError::Io {
            context: format!("cannot create the data directory {}", dirs.home.display()),
            source,
        })?;
        // On SQLite each commit is made durable by an `fdatasync` of the WAL (group commit,
        // here with one writer) rather than SQLite's own `fsync`, which also flushes the inode:
        // the same promise at about half the cost per step on ext4.
        let url = settings.store.as_ref().map(|u| u.as_str().to_owned());
        let store = crate::store::open(url.as_deref(), &dirs.db_path())?;
        Ok(Self::with_store(dirs, settings, store))
    }

    pub fn with_store(dirs: Dirs, settings: Settings, store: Arc<dyn Store>) -> Self {
        Self {
            audit: crate::audit::AuditLog::in_dir(&dirs.home),
            dirs,
            settings: std::sync::RwLock::new(settings),
            store,
            owner: owner::current(),
            eval: Evaluator::new(),
            shutdown: CancellationToken::new(),
            park: CancellationToken::new(),
            changes: Arc::default(),
            lease_ms: owner::LEASE_MS,
            shared_thread: false,
        }
    }

    /// Claims last `lease` without renewal (a `claw worker`'s `--lease`); the run loop renews
    /// them every third of it (at most every [`owner::HEARTBEAT_MS`]).
    #[must_use]
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease_ms = i64::try_from(lease.as_millis())
            .unwrap_or(owner::LEASE_MS)
            .max(1_000);
        self
    }

    /// See [`Engine::with_lease`].
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// The settings in force (a copy: the daemon may replace them while runs go on; a step
    /// takes them when it starts).
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the settings (the daemon, when `claw.yaml` changed).
    pub fn set_settings(&self, settings: Settings) {
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = settings;
    }

    /// Wakes when the store may hold news for a waiting step (a decision taken in another
    /// process, or in this one). Must be called within a Tokio runtime.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe(&self.store)
    }

    /// Tells this process's waiting steps that something they wait on changed.
    pub fn ring_changes(&self) {
        self.changes.ring();
    }

    /// Records an audit entry. A failure to write the audit log does not stop the work; it is
    /// reported to `progress`.
    pub fn audit(&self, event: &crate::audit::Event, progress: &dyn Progress) {
        if let Err(e) = self.audit.record(event) {
            let msg = format!("warning: {e}");
            progress.event(&Event::Note { message: &msg });
        }
    }

    /// Who started a run, for the audit log: `cli:<user>` for a manual run.
    pub fn actor_of(run: &RunRecord) -> String {
        match run.trigger.get("user").and_then(serde_json::Value::as_str) {
            Some(u) => format!("cli:{u}"),
            None => run
                .trigger
                .get("type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("claw")
                .to_owned(),
        }
    }

    /// For an engine whose thread drives many runs (the daemon, a worker): a step's start waits
    /// for its record to reach the disk off that thread, so other runs never wait for the disk.
    /// Without it (a process driving one run), the start waits on the thread, saving two thread
    /// hand-offs per step.
    #[must_use]
    pub fn with_shared_thread(mut self) -> Self {
        self.shared_thread = true;
        self
    }

    /// Uses `token` as the shutdown signal of every run this engine drives.
    #[must_use]
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// See [`Engine::with_shutdown`].
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Uses `token` as the signal that this process stops taking work: a run whose steps only
    /// wait is then interrupted (resumable) without waiting for the shutdown deadline.
    #[must_use]
    pub fn with_park(mut self, token: CancellationToken) -> Self {
        self.park = token;
        self
    }

    /// See [`Engine::with_park`].
    pub fn park_token(&self) -> &CancellationToken {
        &self.park
    }

    /// This process's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether a run's owner is gone.
    pub fn is_orphaned(&self, run: &RunRecord) -> bool {
        !run.status.is_finished() && run.owner.is_some() && owner::is_dead(run, now_ms())
    }

    /// Records a new run (status `queued`) and returns it.
    pub fn create_run(&self, new: &NewRun<'_>) -> Result<RunRecord> {
        let run = self.run_record(new, now_ms());
        self.store.create_run(&run)?;
        Ok(run)
    }

    /// [`Engine::create_run`] for a run this process drives at once (`claw workflow run` in the
    /// foreground). The record is committed now, and it is synced together with the run's first
    /// durable step, that is its first step's start or, at the latest, its end: a sync covers
    /// every commit before it. A crash of claw cannot lose the run, because it is committed. A
    /// power cut before that first sync can lose it, but the run had done nothing by then.
    pub fn create_run_here(&self, new: &NewRun<'_>) -> Result<RunRecord> {
        let run = self.run_record(new, now_ms());
        self.write_unsynced(|store| Ok(store.create_run(&run)?))?;
        Ok(run)
    }

    /// The record [`Engine::create_run`] stores, not stored yet (the scheduler stores it in the
    /// transaction that claims its fire).
    pub fn run_record(&self, new: &NewRun<'_>, now: i64) -> RunRecord {
        new_record(new, now, new.claim.then_some(self.owner.as_str()))
    }

    /// The record of a run that nobody executes yet (queued, for the daemon or a process of its
    /// own), not stored yet.
    pub fn unclaimed_record(new: &NewRun<'_>, now: i64) -> RunRecord {
        new_record(new, now, None)
    }

    /// Store writes the calling thread need not wait for: with group commit (the daemon) they
    /// are committed now and synced by a blocking task shared with every write made meanwhile,
    /// so the thread that drives the runs never waits for the disk; otherwise they are durable
    /// when this returns.
    pub(crate) fn write_behind<T>(&self, f: impl FnOnce(&dyn Store) -> Result<T>) -> Result<T> {
        let (out, wait) = self.deferred_write(f);
        if let Some(wait) = wait {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || wait.wait())),
                Err(_) => wait.wait(),
            }
        }
        out
    }

    /// Store writes that need no sync of their own: committed now (a crash of claw cannot lose
    /// them) and made durable by the next sync, which covers every commit before it. Without
    /// group commit (PostgreSQL) they are durable when this returns.
    pub(crate) fn write_unsynced<T>(&self, f: impl FnOnce(&dyn Store) -> Result<T>) -> Result<T> {
        self.deferred_write(f).0
    }

    /// Runs store writes under [`Store::deferred`]: what they returned, and what makes them
    /// durable (nothing to wait for when they already are).
    fn deferred_write<T>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T>,
    ) -> (Result<T>, Option<crate::store::SyncWait>) {
        let store = self.store.as_ref();
        let mut f = Some(f);
        let mut out = None;
        let wait = store.deferred(&mut || {
            if let Some(f) = f.take() {
                out = Some(f(store));
            }
        });
        let out =
            out.unwrap_or_else(|| Err(EngineError::Invalid("a store write did not run".into())));
        (out, wait)
    }

    /// Loads the workflow definition a run was created with.
    pub fn definition(&self, run: &RunRecord) -> Result<Workflow> {
        load::load_str(Path::new(&run.workflow_path), run.definition.clone())
            .map_err(|e| EngineError::Definition(Box::new(e)))
    }

    /// Claims a run and executes it until it finishes (waiting, in this process, for whatever
    /// decisions it needs). Works the same for a new run and for one left behind by a dead process.
    pub async fn drive(
        &self,
        run_id: &str,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Result<RunRecord> {
        self.drive_loaded(run_id, None, cancel, progress).await
    }

    /// [`Engine::drive`] for a run just created from `workflow` (saves parsing its stored text again).
    pub async fn drive_loaded(
        &self,
        run_id: &str,
        workflow: Option<&Workflow>,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Result<RunRecord> {
        let now = now_ms();
        // Its first step's work waits for the claim to be on disk.
        let claimed = self.write_behind(|store| {
            Ok(
                store.claim_run(run_id, &self.owner, now + self.lease_ms, &|r| {
                    owner::is_dead(r, now_ms())
                })?,
            )
        })?;
        let Some(run) = claimed else {
            let r = self.store.find_run(run_id)?;
            return Err(EngineError::Busy {
                run: r.id,
                owner: r.owner.unwrap_or_default(),
            });
        };
        if run.status.is_finished() {
            return Ok(run);
        }
        let wf = match workflow {
            Some(wf) if wf.source == run.definition => wf.clone(),
            _ => self.definition(&run)?,
        };
        run::Exec::new(self, wf, run, cancel.child_token(), progress)?
            .execute()
            .await
    }

    /// Records a person's decision on an interrupted step: `retry` runs it again, `skip` takes it
    /// as done (marked skipped), `fail` marks it failed. Returns an error if the step does not wait for a decision.
    pub fn decide(
        &self,
        run: &RunRecord,
        step: &str,
        decision: crate::store::Decision,
        who: &str,
    ) -> Result<()> {
        let step_nfc = crate::names::nfc(step);
        let step = step_nfc.as_str();
        let steps = self.store.steps(&run.id)?;
        let Some(rec) = steps.iter().find(|s| s.name == step) else {
            let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            let hint = crate::diagnostic::did_you_mean(step, names.iter().copied())
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(EngineError::Invalid(format!(
                "run {} has no step `{step}`{hint}",
                run.id
            )));
        };
        if rec.status != crate::store::StepStatus::Interrupted {
            return Err(EngineError::Invalid(format!(
                "step `{step}` of run {} is {}, not waiting for a decision",
                run.id, rec.status
            )));
        }
        // Audited before it counts: a decision that cannot be audited is not taken.
        self.audit
            .record(&crate::audit::Event::new(
                who,
                crate::audit::Action::WorkflowStepDecided,
                &format!("{}/{step}", run.id),
                decision.as_str(),
                serde_json::json!({"workflow": run.workflow}),
            ))
            .map_err(|source| EngineError::Unaudited {
                what: format!("the decision on step `{step}`"),
                source,
            })?;
        if !self.store.decide_step(&run.id, step, decision, who)? {
            return Err(EngineError::Invalid(format!(
                "step `{step}` of run {} no longer waits for a decision",
                run.id
            )));
        }
        Ok(())
    }

    /// Asks a run to stop. A run nobody executes any more is marked cancelled right away.
    /// `who` is recorded in the audit log (`workflow.run.cancel_requested`).
    pub fn cancel(&self, run: &RunRecord, who: &str) -> Result<RunStatus> {
        if run.status.is_finished() {
            return Ok(run.status);
        }
        self.store.request_cancel(&run.id)?;
        self.ring_changes();
        self.audit
            .record(&crate::audit::Event::new(
                who,
                crate::audit::Action::WorkflowRunCancelRequested,
                &run.id,
                "ok",
                serde_json::json!({"workflow": run.workflow}),
            ))
            .map_err(|source| EngineError::Audit {
                done: "the cancel request was recorded".to_owned(),
                source,
            })?;
        let unowned = run.owner.is_none() || owner::is_dead(run, now_ms());
        if unowned {
            // Claim it so that no resume races with us, then close it.
            let claimed =
                self.store
                    .claim_run(&run.id, &self.owner, now_ms() + owner::LEASE_MS, &|r| {
                        owner::is_dead(r, now_ms())
                    })?;
            if claimed.is_some() {
                let mut steps = self.store.steps(&run.id)?;
                for s in &mut steps {
                    if !s.status.is_finished() {
                        s.status = if s.status == crate::store::StepStatus::Pending {
                            crate::store::StepStatus::Skipped
                        } else {
                            crate::store::StepStatus::Cancelled
                        };
                        s.message = Some("run cancelled".into());
                        s.finished_at.get_or_insert(now_ms());
                    }
                }
                self.store.record_steps(&run.id, &steps, None)?;
                self.store.update_run(
                    &run.id,
                    RunStatus::Cancelled,
                    Some("cancelled"),
                    None,
                    now_ms(),
                )?;
                return Ok(RunStatus::Cancelled);
            }
        }
        Ok(run.status)
    }

    /// Deletes runs past the retention policy, with their logs.
    pub fn prune(&self, workflow: &str) -> Result<usize> {
        let max_age =
            i64::try_from(self.settings().retention_max_age.as_millis()).unwrap_or(i64::MAX);
        // Not waited for: a prune lost to a power cut is made again by the next one.
        let keep = self.settings().retention_max_runs;
        let gone = self.write_unsynced(|store| {
            Ok(store.prune_runs(workflow, now_ms().saturating_sub(max_age), keep)?)
        })?;
        for id in &gone {
            let _ = std::fs::remove_dir_all(self.dirs.run_log_dir(id));
        }
        Ok(gone.len())
    }
}

/// A new run's record; `owner` when this process executes it at once.
fn new_record(new: &NewRun<'_>, now: i64, owner: Option<&str>) -> RunRecord {
    // A run this process executes at once, with no concurrency limit, needs no admission.
    let start_now = owner.is_some() && new.workflow.concurrency.is_none();
    RunRecord {
        id: ulid::Ulid::new().to_string().to_ascii_lowercase(),
        workflow: new.workflow.name.clone(),
        workflow_path: new.workflow.path.display().to_string(),
        definition: new.workflow.source.clone(),
        params: new.params.clone(),
        trigger: new.trigger.clone(),
        status: if start_now {
            RunStatus::Running
        } else {
            RunStatus::Queued
        },
        owner: owner.map(str::to_owned),
        lease_until: owner.map(|_| now + owner::LEASE_MS),
        dry_run: new.dry_run,
        cancel_requested: false,
        // A sub-workflow's child names its parent in its trigger.
        parent_run: new
            .trigger
            .get("parent_run")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        outputs: serde_json::json!({}),
        error: None,
        created_at: now,
        started_at: start_now.then_some(now),
        finished_at: None,
    }
}
