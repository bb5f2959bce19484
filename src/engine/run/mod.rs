//! The execution of one run: the DAG loop, then the rollback and compensation phases.
//!
//! `mod.rs` holds the loop and the phases; `prepare.rs` turns a step into the input of one
//! attempt (secrets, context, the kind's own preparation); `record.rs` records every transition
//! (and decides what an interruption means); `waits.rs` is the engine's side of steps that wait
//! on the store (approval gates, sub-workflows).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, Event, Progress, Result, now_ms, owner};
use crate::steps::StepReport;
use crate::store::{Phase, RunRecord, RunStatus, StepRecord, StepStatus};
use crate::workflow::load::strip_braces;
use crate::workflow::{Condition, OnBusy, OnFailure, Step, Workflow};

mod log_copy;
mod prepare;
mod record;
mod waits;

use record::Again;

/// How often the loop looks at the store (cancel requests, decisions) while steps run.
const POLL: Duration = Duration::from_millis(250);

/// How often a run looks at the store on its own (lease heartbeat, and a cancel request the
/// store's change bell missed); a cancel request from another process is heard at once through
/// the bell ([`crate::engine::changes`]).
const TICK: Duration = Duration::from_secs(2);
/// Cap of a step's stdout kept in the store.
const STDOUT_TAIL: usize = 64 * 1024;

/// Why no further main step may start.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Abort(String),
    Rollback(String),
    Cancel,
    Timeout,
}

/// A finished attempt coming back from its task.
/// A finished attempt coming back from its task, with the kind as the attempt ran it.
type Done = (String, u32, StepReport, Option<crate::steps::StepKind>);

pub(super) struct Exec<'a> {
    engine: &'a Engine,
    /// Shared, so that the loop can walk the steps while it records (no copy per pass).
    wf: std::sync::Arc<Workflow>,
    /// Main steps by name.
    index: HashMap<String, usize>,
    /// Which main steps can start: kept up to date by [`Exec::record`], so that each pass of the
    /// loop costs what changed, not the number of steps.
    frontier: Frontier,
    run: RunRecord,
    /// Every step record of the run, by record name (`name`, `rollback:name`, `compensate:name`).
    recs: HashMap<String, StepRecord>,
    cancel: CancellationToken,
    progress: &'a dyn Progress,
    stop: Option<Stop>,
    log_dir: PathBuf,
    base_env: Option<minijinja::Value>,
    /// `steps.<name>` of the expression context (see `prepare.rs`); `None` until first needed.
    steps_view: Option<std::sync::Arc<std::collections::BTreeMap<String, minijinja::Value>>>,
    /// Records written but not yet committed; [`Exec::flush`] commits them in one transaction
    /// and is called before anything is started or awaited.
    unflushed: Vec<StepRecord>,
    /// The wait for committed transitions to reach the disk (group commit, in the daemon): a
    /// step's work starts after it.
    pending_sync: Option<crate::store::SyncWait>,
    /// Masks the run's secret values in everything recorded.
    redactor: crate::redact::Redactor,
    /// Every secret value the run has used so far.
    secret_values: std::collections::BTreeSet<String>,
    last_heartbeat: i64,
    deadline: Option<Instant>,
    /// Step start/finish audit entries, written (not synced) with each flush.
    audit_buf: Vec<crate::audit::Event>,
    /// What the steps' tasks watch: cancelled with the run's token, or alone when the daemon
    /// shuts down ([`Engine::shutdown_token`]).
    halt: CancellationToken,
    /// The daemon is shutting down: steps are being stopped and recorded interrupted, nothing
    /// new starts, and the run stays resumable.
    interrupting: bool,
    /// Steps whose wait (an approval request, a child run) opens again as the same attempt.
    reopen: std::collections::HashSet<String>,
    /// What this run's waiting steps get from the engine (made once, on first use).
    services: Option<std::sync::Arc<dyn crate::steps::Services>>,
    /// What waiting steps' tasks ask the loop to record ([`waits::Notice`]).
    notices_tx: tokio::sync::mpsc::UnboundedSender<waits::Notice>,
    notices_rx: tokio::sync::mpsc::UnboundedReceiver<waits::Notice>,
}

fn rec_name(phase: Phase, step: &Step) -> String {
    match phase {
        Phase::Main => step.name.clone(),
        Phase::Rollback => format!("rollback:{}", step.name),
        Phase::Compensation => format!("compensate:{}", step.name),
    }
}

fn file_name(seq: i64, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("{seq:02}-{clean}")
}

fn json_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

impl<'a> Exec<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        wf: Workflow,
        run: RunRecord,
        cancel: CancellationToken,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        let recs = engine
            .store
            .steps(&run.id)?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let log_dir = engine.dirs.run_log_dir(&run.id);
        let (notices_tx, notices_rx) = tokio::sync::mpsc::unbounded_channel();
        let index = wf
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Ok(Self {
            engine,
            wf: std::sync::Arc::new(wf),
            index,
            frontier: Frontier::default(),
            run,
            recs,
            progress,
            stop: None,
            log_dir,
            base_env: None,
            steps_view: None,
            unflushed: Vec::new(),
            pending_sync: None,
            redactor: crate::redact::Redactor::default(),
            secret_values: std::collections::BTreeSet::new(),
            last_heartbeat: now_ms(),
            deadline: None,
            audit_buf: Vec::new(),
            halt: cancel.child_token(),
            interrupting: false,
            reopen: std::collections::HashSet::new(),
            services: None,
            notices_tx,
            notices_rx,
            cancel,
        })
    }

    fn store(&self) -> &dyn crate::store::Store {
        self.engine.store.as_ref()
    }

    pub(super) async fn execute(mut self) -> Result<RunRecord> {
        crate::fsutil::create_dirs_private(&self.log_dir).map_err(|source| EngineError::Io {
            context: format!("cannot create the log directory {}", self.log_dir.display()),
            source,
        })?;
        if self.run.status == RunStatus::Queued && !self.admit().await? {
            return self.reload();
        }
        if self.run.cancel_requested {
            self.stop = Some(Stop::Cancel);
        }
        let action = if self.recs.is_empty() {
            crate::audit::Action::WorkflowRunStarted
        } else {
            crate::audit::Action::WorkflowRunResumed
        };
        // Written with the first step's entries and synced with the next synced entry, like
        // them: the store already holds the run's start durably.
        self.audit_buf.push(crate::audit::Event::new(
            &Engine::actor_of(&self.run),
            action,
            &self.run.id,
            "ok",
            serde_json::json!({
                "workflow": self.wf.name,
                "dry_run": self.run.dry_run,
                "params": self.run.params.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
            }),
        ));
        tracing::info!(run = %self.run.id, workflow = %self.wf.name, action = %action, dry_run = self.run.dry_run, "run started");
        if let Some(limit) = self.wf.timeout {
            let started = self.run.started_at.unwrap_or_else(now_ms);
            let elapsed = u64::try_from(now_ms().saturating_sub(started)).unwrap_or(0);
            let left = limit.saturating_sub(Duration::from_millis(elapsed));
            self.deadline = Some(Instant::now() + left);
        }
        self.recover_interrupted()?;
        self.derive_stop();
        self.main_phase().await?;
        if self.interrupting {
            return self.leave_interrupted();
        }
        if let Some(Stop::Rollback(_)) = &self.stop {
            self.sequential_phase(Phase::Rollback).await?;
        }
        let failed = self.main_failed();
        if failed && !self.interrupting && self.stop != Some(Stop::Cancel) {
            self.sequential_phase(Phase::Compensation).await?;
        }
        if self.interrupting {
            return self.leave_interrupted();
        }
        self.finish().await
    }

    fn reload(&self) -> Result<RunRecord> {
        Ok(self.store().find_run(&self.run.id)?)
    }

    /// Waits for the workflow's concurrency limit to let the run start.
    async fn admit(&mut self) -> Result<bool> {
        let (limit, on_busy) = match self.wf.concurrency {
            Some(c) => (c.limit, c.on_busy),
            None => (u32::MAX, OnBusy::Queue),
        };
        let is_dead = |r: &RunRecord| owner::is_dead(r, now_ms());
        let mut told = false;
        loop {
            if self
                .store()
                .admit_run(&self.run.id, limit, now_ms(), &is_dead)?
            {
                self.run.status = RunStatus::Running;
                self.run.started_at.get_or_insert(now_ms());
                return Ok(true);
            }
            match on_busy {
                OnBusy::Skip => {
                    let msg = format!(
                        "skipped: {limit} run(s) of `{}` already active (concurrency on_busy: skip)",
                        self.wf.name
                    );
                    self.store().update_run(
                        &self.run.id,
                        RunStatus::Cancelled,
                        Some(&msg),
                        None,
                        now_ms(),
                    )?;
                    self.progress.event(&Event::Note { message: &msg });
                    return Ok(false);
                }
                OnBusy::CancelRunning if !told => {
                    for other in self.store().unfinished_runs(Some(&self.wf.name))? {
                        if other.id != self.run.id && other.created_at <= self.run.created_at {
                            self.engine
                                .cancel(&other, &format!("run:{}", self.run.id))?;
                        }
                    }
                }
                _ => {}
            }
            if !told {
                told = true;
                let msg = format!(
                    "waiting for a concurrency slot ({limit} run(s) of `{}` at a time)",
                    self.wf.name
                );
                self.progress.event(&Event::Waiting { message: &msg });
            }
            self.heartbeat()?;
            tokio::select! {
                () = sleep(Duration::from_millis(500)) => {}
                () = self.cancel.cancelled() => {
                    self.store().update_run(&self.run.id, RunStatus::Cancelled, Some("cancelled while queued"), None, now_ms())?;
                    return Ok(false);
                }
            }
            if self.store().cancel_requested(&self.run.id)? {
                self.store().update_run(
                    &self.run.id,
                    RunStatus::Cancelled,
                    Some("cancelled while queued"),
                    None,
                    now_ms(),
                )?;
                return Ok(false);
            }
        }
    }

    fn heartbeat(&mut self) -> Result<()> {
        let now = now_ms();
        let lease = self.engine.lease_ms();
        if now - self.last_heartbeat >= (lease / 3).min(owner::HEARTBEAT_MS) {
            self.store()
                .heartbeat(&self.run.id, self.engine.owner(), now + lease)?;
            self.last_heartbeat = now;
        }
        Ok(())
    }

    fn step_def(&self, name: &str) -> Option<(Phase, &Step)> {
        if let Some(n) = name.strip_prefix("rollback:") {
            return self
                .wf
                .rollback
                .iter()
                .find(|s| s.name == n)
                .map(|s| (Phase::Rollback, s));
        }
        if let Some(n) = name.strip_prefix("compensate:") {
            return self
                .index
                .get(n)
                .and_then(|&i| self.wf.steps[i].compensation.as_deref())
                .map(|c| (Phase::Compensation, c));
        }
        self.index
            .get(name)
            .map(|&i| (Phase::Main, &self.wf.steps[i]))
    }

    /// Whether every step in progress only waits (an approval gate, a child run): no process of
    /// this run is working.
    fn only_waits(&self) -> bool {
        self.recs.values().all(|r| {
            !matches!(r.status, StepStatus::Running | StepStatus::Waiting)
                || self
                    .step_def(&r.name)
                    .is_some_and(|(_, s)| self.after_interruption(s) == Again::Reopen)
        })
    }

    fn status_of(&self, name: &str) -> StepStatus {
        self.recs
            .get(name)
            .map_or(StepStatus::Pending, |r| r.status)
    }

    fn main_failed(&self) -> bool {
        let failed = if self.frontier.live {
            self.frontier.failed > 0
        } else {
            self.wf
                .steps
                .iter()
                .any(|s| self.status_of(&s.name) == StepStatus::Failed)
        };
        failed || self.stop == Some(Stop::Timeout)
    }

    /// After a resume, the stop reason follows from what is recorded.
    fn derive_stop(&mut self) {
        if self.stop.is_some() {
            return;
        }
        let mut failed: Vec<&StepRecord> = self
            .wf
            .steps
            .iter()
            .filter_map(|s| self.recs.get(&s.name))
            .filter(|r| r.status == StepStatus::Failed)
            .collect();
        failed.sort_by_key(|r| r.finished_at);
        for r in failed {
            if let Some((_, step)) = self.step_def(&r.name)
                && let Some(stop) = self.stop_after_failure(step)
            {
                self.stop = Some(stop);
                return;
            }
        }
    }

    fn stop_after_failure(&self, step: &Step) -> Option<Stop> {
        match step.on_failure {
            OnFailure::Abort => Some(Stop::Abort(step.name.clone())),
            OnFailure::Rollback if !self.wf.rollback.is_empty() => {
                Some(Stop::Rollback(step.name.clone()))
            }
            OnFailure::Rollback | OnFailure::Continue => None,
        }
    }

    /// Decides whether a ready main step runs: `Ok(None)` to run it, `Ok(Some(reason))` to skip.
    fn gate(&mut self, step: &Step) -> std::result::Result<Option<String>, String> {
        if let Some(stop) = &self.stop {
            return Ok(Some(match stop {
                Stop::Abort(s) => format!("not run: the run stopped after `{s}` failed"),
                Stop::Rollback(s) => format!("not run: rolling back after `{s}` failed"),
                Stop::Cancel => "not run: the run was cancelled".to_owned(),
                Stop::Timeout => "not run: the workflow timed out".to_owned(),
            }));
        }
        let previous = step
            .index
            .checked_sub(1)
            .and_then(|i| self.wf.steps.get(i))
            .map(|p| self.status_of(&p.name));
        let condition = step.condition.as_ref().map(|c| match c {
            Condition::Always => true,
            Condition::PreviousOk => previous == Some(StepStatus::Succeeded),
            Condition::PreviousFailed => previous == Some(StepStatus::Failed),
        });
        let if_ok = match &step.if_expr {
            // A dry run has no outputs or exit codes: a condition on them is decided at run time.
            Some(e)
                if self.run.dry_run && !crate::workflow::load::referenced_steps(e).is_empty() =>
            {
                Some(true)
            }
            Some(e) => {
                let ctx = self.context();
                Some(
                    self.engine
                        .eval
                        .truthy(strip_braces(e), &ctx)
                        .map_err(|err| format!("cannot evaluate `if`: {err}"))?,
                )
            }
            None => None,
        };
        let explicit = condition.is_some() || if_ok.is_some();
        if !(condition.unwrap_or(true) && if_ok.unwrap_or(true)) {
            return Ok(Some("condition not met".to_owned()));
        }
        let failed_before = self.main_failed();
        if failed_before && step.on_failure != OnFailure::Continue && !explicit {
            return Ok(Some(
                "not run: an earlier step failed (use `on_failure: continue` or a `condition` to run after failures)"
                    .to_owned(),
            ));
        }
        Ok(None)
    }

    fn poll_cancel(&mut self) -> Result<()> {
        if self.stop != Some(Stop::Cancel)
            && (self.cancel.is_cancelled() || self.store().cancel_requested(&self.run.id)?)
        {
            self.stop = Some(Stop::Cancel);
            self.cancel.cancel();
        }
        Ok(())
    }

    /// The DAG: start every ready step, up to `max_parallel`, until nothing is left.
    async fn main_phase(&mut self) -> Result<()> {
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut running = 0usize;
        let mut next_poll = Instant::now() + TICK;
        let mut changes = self.engine.watch_changes();
        self.frontier = Frontier::new(&self.wf.steps, &self.recs);
        let wf = std::sync::Arc::clone(&self.wf);
        let steps = &wf.steps;
        loop {
            // Start what can start, in the file's order.
            if self.interrupting && running == 0 {
                return Ok(());
            }
            let mut cursor = 0;
            while let Some(i) = self.frontier.ready.range(cursor..).next().copied() {
                cursor = i + 1;
                if running >= self.wf.max_parallel || self.interrupting {
                    break;
                }
                let step = &steps[i];
                if self.status_of(&step.name) != StepStatus::Pending
                    || self.frontier.needs_left[i] != 0
                {
                    self.frontier.ready.remove(&i);
                    continue;
                }
                match self.gate(step) {
                    Ok(Some(reason)) => self.skip(step, Phase::Main, &reason)?,
                    Err(why) => {
                        let mut rec = StepRecord::new(&step.name, Phase::Main, step.index as i64);
                        rec.status = StepStatus::Failed;
                        rec.message = Some(why);
                        rec.finished_at = Some(now_ms());
                        self.record(rec.clone())?;
                        self.progress.event(&Event::StepFinished { step: &rec });
                        if self.stop.is_none() {
                            self.stop = self.stop_after_failure(step);
                        }
                    }
                    Ok(None) => {
                        self.start(step, Phase::Main, &mut tasks, Duration::ZERO)?;
                        if matches!(
                            self.status_of(&step.name),
                            StepStatus::Running | StepStatus::Waiting
                        ) {
                            running += 1;
                        }
                    }
                }
            }
            if running == 0 {
                let pending = steps
                    .iter()
                    .any(|s| self.status_of(&s.name) == StepStatus::Pending);
                let interrupted = steps
                    .iter()
                    .any(|s| self.status_of(&s.name) == StepStatus::Interrupted);
                if interrupted {
                    self.wait_for_decision(Some(Phase::Main)).await?;
                    continue;
                }
                if !pending {
                    return Ok(());
                }
                // Pending steps whose dependencies are done get started (or skipped) above, so
                // anything still pending waits on a step that is pending or interrupted too.
                if !steps.iter().enumerate().any(|(i, s)| {
                    self.status_of(&s.name) == StepStatus::Pending
                        && self.frontier.needs_left[i] == 0
                }) {
                    return Err(EngineError::Invalid(format!(
                        "run {} cannot make progress (a dependency never finished)",
                        self.run.id
                    )));
                }
                continue;
            }
            // Everything recorded so far is committed before this task waits.
            self.flush()?;
            let deadline = self.deadline;
            tokio::select! {
                // What a waiting step asks to record (its gate is open, its child exists).
                Some(notice) = self.notices_rx.recv() => {
                    self.on_notice(notice)?;
                }
                done = tasks.join_next() => {
                    let Some(done) = done else { running = 0; continue };
                    running -= 1;
                    // Whatever the step said before it ended is recorded before its end.
                    self.take_notices()?;
                    let (name, _attempt, report, prepared) = done?;
                    if let Some(delay) = self.complete(&name, report, prepared)?
                        && let Some(i) = self.index.get(&name).copied() {
                            self.start(&steps[i], Phase::Main, &mut tasks, delay)?;
                            running += 1;
                        }
                }
                () = sleep_until(next_poll) => {
                    next_poll = Instant::now() + TICK;
                    self.poll_cancel()?;
                    self.heartbeat()?;
                }
                r = changes.changed() => {
                    if r.is_ok() {
                        self.poll_cancel()?;
                    }
                }
                () = self.cancel.cancelled(), if self.stop.is_none() => {
                    // Ctrl-C, SIGTERM or the workflow's own token: stop starting steps now.
                    self.stop = Some(Stop::Cancel);
                }
                () = self.engine.shutdown_token().cancelled(), if !self.interrupting => {
                    // The daemon's shutdown deadline passed: stop the steps, keep the run resumable.
                    self.interrupting = true;
                    self.halt.cancel();
                }
                () = self.engine.park_token().cancelled(), if !self.interrupting && self.only_waits() => {
                    // The daemon is stopping and this run only waits (on a gate or a child run):
                    // nothing to let finish, so it is put aside at once, resumable.
                    self.interrupting = true;
                    self.halt.cancel();
                }
                () = async { if let Some(d) = deadline { sleep_until(d).await } else { std::future::pending().await } }, if self.stop != Some(Stop::Timeout) && deadline.is_some() => {
                    self.stop = Some(Stop::Timeout);
                    self.cancel.cancel();
                }
            }
        }
    }

    /// The workflow's `rollback:` steps, or the compensations of succeeded steps (newest first):
    /// one after another, every one even if another fails.
    async fn sequential_phase(&mut self, phase: Phase) -> Result<()> {
        let list: Vec<Step> = match phase {
            Phase::Rollback => self.wf.rollback.clone(),
            Phase::Compensation => {
                let mut done: Vec<(i64, Step)> = self
                    .wf
                    .steps
                    .iter()
                    .filter(|s| self.status_of(&s.name) == StepStatus::Succeeded)
                    .filter_map(|s| {
                        let mut c = s.compensation.as_deref()?.clone();
                        c.name = s.name.clone();
                        c.index = s.index;
                        Some((
                            self.recs
                                .get(&s.name)
                                .and_then(|r| r.finished_at)
                                .unwrap_or(0),
                            c,
                        ))
                    })
                    .collect();
                done.sort_by_key(|(t, c)| (std::cmp::Reverse(*t), std::cmp::Reverse(c.index)));
                // Recorded in the order they run.
                done.into_iter()
                    .enumerate()
                    .map(|(i, (_, mut c))| {
                        c.index = i;
                        c
                    })
                    .collect()
            }
            Phase::Main => return Ok(()),
        };
        if list.is_empty() {
            return Ok(());
        }
        // The phase runs even though the main phase was stopped (that is what it is for), so it
        // gets tokens of its own; but a cancel requested now, the workflow's `timeout:` and the
        // daemon's shutdown stop it like the main phase.
        let fresh_cancel = CancellationToken::new();
        let saved_halt = std::mem::replace(&mut self.halt, fresh_cancel.child_token());
        let saved = std::mem::replace(&mut self.cancel, fresh_cancel);
        let outer_was_cancelled = saved.is_cancelled();
        let saved_stop = self.stop.take();
        let mut phase_stop: Option<Stop> = None;
        let mut next_poll = Instant::now() + POLL;
        // A phase that starts after the workflow's timeout (the cleanup of a run that timed
        // out) runs, each step within its own timeout; one that starts before it stops there.
        let deadline = self.deadline.filter(|d| *d > Instant::now());
        'steps: for step in &list {
            let name = rec_name(phase, step);
            loop {
                if phase_stop.is_some() || self.interrupting {
                    break 'steps;
                }
                let status = self.status_of(&name);
                if status.is_finished() {
                    break;
                }
                if status == StepStatus::Interrupted {
                    self.wait_for_decision(Some(phase)).await?;
                    continue;
                }
                let mut tasks: JoinSet<Done> = JoinSet::new();
                let mut delay = Duration::ZERO;
                loop {
                    self.start(step, phase, &mut tasks, delay)?;
                    let done = loop {
                        tokio::select! {
                            Some(notice) = self.notices_rx.recv() => self.on_notice(notice)?,
                            done = tasks.join_next() => break done,
                            () = sleep_until(next_poll) => {
                                next_poll = Instant::now() + POLL;
                                self.heartbeat()?;
                                if phase_stop.is_none() && self.store().cancel_requested(&self.run.id)? {
                                    phase_stop = Some(Stop::Cancel);
                                    self.cancel.cancel();
                                }
                            }
                            () = saved.cancelled(), if !outer_was_cancelled && phase_stop.is_none() => {
                                // Ctrl-C or SIGTERM of the process running the phase.
                                phase_stop = Some(Stop::Cancel);
                                self.cancel.cancel();
                            }
                            () = async { if let Some(d) = deadline { sleep_until(d).await } else { std::future::pending().await } }, if deadline.is_some() && phase_stop.is_none() => {
                                phase_stop = Some(Stop::Timeout);
                                self.cancel.cancel();
                            }
                            () = self.engine.shutdown_token().cancelled(), if !self.interrupting => {
                                // Stopped here, resumable: the phase goes on where it stopped.
                                self.interrupting = true;
                                self.halt.cancel();
                            }
                        }
                    };
                    let Some(done) = done else {
                        break;
                    };
                    let (n, _, report, prepared) = done?;
                    self.take_notices()?;
                    match self.complete(&n, report, prepared)? {
                        Some(d) => delay = d,
                        None => break,
                    }
                }
            }
        }
        self.flush()?;
        self.cancel = saved;
        self.halt = saved_halt;
        // A stop during the phase is the run's outcome (`cancelled`, or the timeout's error).
        self.stop = phase_stop.or(saved_stop);
        Ok(())
    }

    async fn finish(mut self) -> Result<RunRecord> {
        let status = if self.stop == Some(Stop::Cancel) {
            RunStatus::Cancelled
        } else if self.main_failed() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let error = match &self.stop {
            Some(Stop::Cancel) => Some("cancelled".to_owned()),
            Some(Stop::Timeout) => Some(format!(
                "the workflow timed out after {}",
                self.wf
                    .timeout
                    .map(crate::time::duration::format)
                    .unwrap_or_default()
            )),
            _ => self
                .wf
                .steps
                .iter()
                .filter_map(|s| self.recs.get(&s.name))
                .filter(|r| r.status == StepStatus::Failed)
                .min_by_key(|r| r.finished_at)
                .map(|r| {
                    format!(
                        "step `{}` failed: {}",
                        r.name,
                        r.message.clone().unwrap_or_default()
                    )
                }),
        };
        let outputs = if self.wf.outputs.is_empty() {
            None
        } else {
            let ctx = self.context();
            let mut out = serde_json::Map::new();
            for (k, tpl) in &self.wf.outputs {
                let v = self
                    .engine
                    .eval
                    .render_plain(tpl, &ctx)
                    .map_or(serde_json::Value::Null, serde_json::Value::String);
                out.insert(k.clone(), v);
            }
            Some(serde_json::Value::Object(out))
        };
        let error = if status == RunStatus::Succeeded {
            None
        } else {
            error
        };
        crate::fsutil::remove_spare(&self.log_dir);
        // The last step records and the run's end in one transaction.
        let last = std::mem::take(&mut self.unflushed);
        // Step entries first (a crash of claw cannot lose them): the run's own, synced, entry
        // then carries them to disk.
        self.write_audit(false);
        self.engine.write_behind(|store| {
            Ok(store.finish_run(
                &self.run.id,
                &last,
                status,
                error.as_deref(),
                outputs.as_ref(),
                now_ms(),
            )?)
        })?;
        tracing::info!(run = %self.run.id, workflow = %self.wf.name, status = %status.as_str(), error = error.as_deref().unwrap_or_default(), "run finished");
        self.audit_now(crate::audit::Event::new(
            &Engine::actor_of(&self.run),
            crate::audit::Action::WorkflowRunFinished,
            &self.run.id,
            status.as_str(),
            serde_json::json!({"workflow": self.wf.name, "error": error}),
        ));
        if !self.run.dry_run {
            self.announce_end(status, error.as_deref()).await;
        }
        if let Err(e) = self.engine.prune(&self.wf.name) {
            let msg = format!("could not prune old runs: {e}");
            self.progress.event(&Event::Note { message: &msg });
        }
        self.cancel.cancel();
        self.reload()
    }
}

impl Exec<'_> {
    /// Tells the run's end to `notify_profile` and `notify:`'s recipients for it: the seed's
    /// summary (`Workflow '<name>': P passed, F failed`) with the run's id and status. A messaging
    /// failure never changes the run (it is noted, and the outbox keeps what it could not send).
    async fn announce_end(&self, status: RunStatus, error: Option<&str>) {
        let event = match status {
            RunStatus::Succeeded => crate::workflow::NotifyOn::Success,
            _ => crate::workflow::NotifyOn::Failure,
        };
        let recipients = self.wf.recipients(event);
        if recipients.is_empty() {
            return;
        }
        let count = |st: StepStatus| {
            self.wf
                .steps
                .iter()
                .filter_map(|s| self.recs.get(&s.name))
                .filter(|r| r.status == st)
                .count()
        };
        let mut text = format!(
            "Workflow '{}': {} passed, {} failed\nrun {} {}",
            self.wf.name,
            count(StepStatus::Succeeded),
            count(StepStatus::Failed),
            self.run.id,
            status.as_str()
        );
        if let Some(e) = error {
            text.push_str(&format!(": {e}"));
        }
        let text = self.redactor.redact(&text).into_owned();
        self.send_notice(&recipients, &text, "end").await;
    }

    /// Queues `text` for each recipient and tries to deliver it a short while; problems are
    /// notes.
    async fn send_notice(&self, recipients: &[String], text: &str, what: &str) {
        let source = format!("run:{}/{what}", self.run.id);
        let cancel = self.engine.shutdown_token().clone();
        for to in recipients {
            let to = crate::msg::route::Recipient::parse(to);
            let r = waits::queue_and_deliver(
                &self.engine.store,
                &self.engine.dirs,
                &to,
                text,
                &source,
                &cancel,
            )
            .await;
            let note = match r {
                Ok(s) if s.pending + s.failed == 0 => continue,
                Ok(s) => format!(
                    "notify {to}: {} sent, {} pending (claw serve delivers them), {} failed",
                    s.sent, s.pending, s.failed
                ),
                Err(e) => format!("notify {to}: {e}"),
            };
            self.progress.event(&Event::Note { message: &note });
        }
    }
}

/// The main steps that can start: every dependency finished, not started yet.
#[derive(Default)]
struct Frontier {
    /// Set while the main phase runs (before it, nothing reads it).
    live: bool,
    /// Per step: how many of its `needs` have not finished.
    needs_left: Vec<usize>,
    /// Per step: the steps that need it.
    dependents: Vec<Vec<usize>>,
    /// Candidates, in the file's order; a candidate that no longer qualifies is dropped when met.
    ready: std::collections::BTreeSet<usize>,
    /// How many main steps are failed.
    failed: usize,
}

impl Frontier {
    fn new(steps: &[Step], recs: &HashMap<String, StepRecord>) -> Self {
        let status = |s: &Step| recs.get(&s.name).map_or(StepStatus::Pending, |r| r.status);
        let mut dependents = vec![Vec::new(); steps.len()];
        let mut needs_left = vec![0; steps.len()];
        for (i, s) in steps.iter().enumerate() {
            for &d in &s.needs {
                dependents[d].push(i);
                if !status(&steps[d]).is_finished() {
                    needs_left[i] += 1;
                }
            }
        }
        let ready = (0..steps.len())
            .filter(|&i| needs_left[i] == 0 && status(&steps[i]) == StepStatus::Pending)
            .collect();
        let failed = steps
            .iter()
            .filter(|s| status(s) == StepStatus::Failed)
            .count();
        Self {
            live: true,
            needs_left,
            dependents,
            ready,
            failed,
        }
    }

    /// A main step's status changed from `before` to `after`.
    fn changed(&mut self, i: usize, before: StepStatus, after: StepStatus) {
        if !self.live || before == after {
            return;
        }
        if before == StepStatus::Failed {
            self.failed -= 1;
        }
        if after == StepStatus::Failed {
            self.failed += 1;
        }
        match (before.is_finished(), after.is_finished()) {
            (false, true) => {
                for &d in &self.dependents[i] {
                    self.needs_left[d] -= 1;
                    if self.needs_left[d] == 0 {
                        self.ready.insert(d);
                    }
                }
            }
            (true, false) => {
                for &d in &self.dependents[i] {
                    self.needs_left[d] += 1;
                }
            }
            _ => {}
        }
        if after == StepStatus::Pending && self.needs_left[i] == 0 {
            self.ready.insert(i);
        }
    }
}
