//! Recording a run's steps: every transition goes through [`Exec::record`] and is committed by
//! [`Exec::flush`] before the work it starts; starting and completing attempts; what an
//! interruption means for a step ([`Exec::after_interruption`], the one policy); decisions on
//! interrupted steps.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::sleep;

use super::log_copy::LogCopy;
use super::{Done, Exec, STDOUT_TAIL, Stop, rec_name, tail};
use crate::engine::{Engine, Event, Result, now_ms};
use crate::proc::StartGate;
use crate::steps::{self, Runtime, StepKind, StepOutcome, StepReport};
use crate::store::{Decision, Phase, RunRecord, RunStatus, StepRecord, StepStatus};
use crate::workflow::Step;

/// What becomes of an attempt that was interrupted (claw was killed, or the daemon stopped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Again {
    /// Run it again: the step is idempotent (or the run is a dry run).
    Run,
    /// Open it again as the same attempt: the step only waits on the store (an approval
    /// request, a child run), which it finds again.
    Reopen,
    /// A person decides: it may or may not have done its work.
    Decide,
}

impl Exec<'_> {
    /// The one policy for an interrupted attempt of `step`.
    pub(super) fn after_interruption(&self, step: &Step) -> Again {
        if step.kind.waits() {
            Again::Reopen
        } else if step.idempotent || self.run.dry_run {
            Again::Run
        } else {
            Again::Decide
        }
    }

    /// The audit entry a kind gives an attempt's end (a skill run's `skill.run`).
    fn audit_attempt(
        &mut self,
        step: &Step,
        prepared: &StepKind,
        outcome: &str,
        reason: &str,
        exit_code: Option<i32>,
    ) {
        let actor = Engine::actor_of(&self.run);
        let reason = self.redactor.redact(reason);
        let attempt = steps::AttemptAudit {
            actor: &actor,
            run_id: &self.run.id,
            workflow: &self.wf.name,
            step: &step.name,
            outcome,
            reason: &reason,
            exit_code,
        };
        if let Some(event) = prepared.audit(&attempt) {
            self.audit_now(event);
        }
    }

    /// After a step that waited ends: the run leaves `waiting` once no step waits any more.
    pub(super) fn wait_closed(&mut self) -> Result<()> {
        let still = self.recs.values().any(|r| r.status == StepStatus::Waiting);
        if !still && self.run.status == RunStatus::Waiting {
            self.flush()?;
            self.store()
                .update_run(&self.run.id, RunStatus::Running, None, None, now_ms())?;
            self.run.status = RunStatus::Running;
        }
        Ok(())
    }

    /// Records a step's new state; it is committed at the next [`Exec::flush`].
    pub(super) fn record(&mut self, mut rec: StepRecord) -> Result<()> {
        if let Some(m) = &rec.message {
            rec.message = Some(self.redactor.redact(m).into_owned());
        }
        let before = self.recs.get(&rec.name).map(|r| (r.status, r.attempts));
        if before != Some((rec.status, rec.attempts)) {
            let action = match rec.status {
                StepStatus::Running => Some(crate::audit::Action::WorkflowStepStarted),
                s if s.is_finished() => Some(crate::audit::Action::WorkflowStepFinished),
                _ => None,
            };
            if let Some(action) = action {
                self.audit_buf.push(crate::audit::Event::new(
                    &Engine::actor_of(&self.run),
                    action,
                    &format!("{}/{}", self.run.id, rec.name),
                    rec.status.as_str(),
                    serde_json::json!({"workflow": self.wf.name, "attempt": rec.attempts}),
                ));
            }
        }
        if rec.phase == Phase::Main
            && let Some(&i) = self.index.get(&rec.name)
        {
            let before = before.map_or(StepStatus::Pending, |(s, _)| s);
            self.frontier.changed(i, before, rec.status);
            if let Some(view) = &mut self.steps_view {
                std::sync::Arc::make_mut(view)
                    .insert(rec.name.clone(), super::prepare::step_entry(Some(&rec)));
            }
        }
        self.unflushed.retain(|r| r.name != rec.name);
        self.unflushed.push(rec.clone());
        self.recs.insert(rec.name.clone(), rec);
        Ok(())
    }

    /// Commits the recorded states (one transaction: a finished step and the start of the next
    /// one cost one fsync together).
    pub(super) fn flush(&mut self) -> Result<()> {
        self.flush_store()?;
        self.write_audit(false);
        Ok(())
    }

    /// The store part of [`Exec::flush`].
    fn flush_store(&mut self) -> Result<()> {
        if !self.unflushed.is_empty() {
            // With group commit this thread does not wait for the disk (other runs' transitions
            // and webhook deliveries share the sync); the next step's work waits instead.
            let store = self.engine.store.clone();
            let mut result = Ok(());
            let (id, recs) = (&self.run.id, &self.unflushed);
            let wait = store.deferred(&mut || result = store.record_steps(id, recs, None));
            result?;
            if wait.is_some() {
                self.pending_sync = wait;
            }
            self.unflushed.clear();
        }
        Ok(())
    }

    /// Writes an entry after the buffered ones, all synced before this returns.
    pub(super) fn audit_now(&mut self, event: crate::audit::Event) {
        self.audit_buf.push(event);
        self.write_audit(true);
    }

    /// Writes the buffered step entries to the audit log (synced with the next synced entry:
    /// the store already holds these transitions durably).
    pub(super) fn write_audit(&mut self, sync: bool) {
        if self.audit_buf.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.audit_buf);
        if let Err(e) = self.engine.audit.record_batch(&events, sync) {
            let msg = format!("warning: {e}");
            self.progress.event(&Event::Note { message: &msg });
        }
    }

    pub(super) fn finish_record(
        &mut self,
        name: &str,
        status: StepStatus,
        message: Option<String>,
    ) -> Result<()> {
        let Some(mut rec) = self.recs.get(name).cloned() else {
            return Ok(());
        };
        rec.status = status;
        rec.message = message;
        rec.finished_at = Some(now_ms());
        self.record(rec.clone())?;
        self.progress.event(&Event::StepFinished { step: &rec });
        Ok(())
    }

    pub(super) fn skip(&mut self, step: &Step, phase: Phase, reason: &str) -> Result<()> {
        let name = rec_name(phase, step);
        let mut rec = self
            .recs
            .get(&name)
            .cloned()
            .unwrap_or_else(|| StepRecord::new(&name, phase, step.index as i64));
        rec.status = StepStatus::Skipped;
        rec.message = Some(reason.to_owned());
        rec.finished_at = Some(now_ms());
        self.record(rec.clone())?;
        self.progress.event(&Event::StepFinished { step: &rec });
        Ok(())
    }

    /// Marks a step running (committed) and starts its attempt, or records its dry-run result.
    pub(super) fn start(
        &mut self,
        step: &Step,
        phase: Phase,
        tasks: &mut JoinSet<Done>,
        delay: Duration,
    ) -> Result<()> {
        let name = rec_name(phase, step);
        let mut rec = self
            .recs
            .get(&name)
            .cloned()
            .unwrap_or_else(|| StepRecord::new(&name, phase, step.index as i64));
        // A wait reopened after an interruption (an approval request, a child run) is the same
        // attempt: it finds its request or child again.
        if !(self.reopen.remove(&name) && rec.attempts > 0) {
            rec.attempts += 1;
        }
        let attempt = rec.attempts;
        rec.status = StepStatus::Running;
        rec.started_at.get_or_insert(now_ms());
        rec.finished_at = None;
        rec.decision = None;
        rec.decided_by = None;
        if self.run.dry_run {
            rec.status = StepStatus::Succeeded;
            rec.finished_at = Some(now_ms());
            let later = if step
                .if_expr
                .as_deref()
                .is_some_and(|e| !crate::workflow::load::referenced_steps(e).is_empty())
            {
                " (its `if` is decided at run time)"
            } else {
                ""
            };
            rec.message = Some(step.kind.dry_run(later));
            self.record(rec.clone())?;
            self.progress.event(&Event::StepFinished { step: &rec });
            return Ok(());
        }
        let input = match self.prepare(step, phase, attempt) {
            Ok(i) => i,
            Err(why) => {
                self.audit_attempt(step, &step.kind, "refused", &why, None);
                rec.status = StepStatus::Failed;
                rec.finished_at = Some(now_ms());
                rec.message = Some(why);
                self.record(rec.clone())?;
                self.progress.event(&Event::StepFinished { step: &rec });
                return Ok(());
            }
        };
        rec.log_path = Some(input.log_path.display().to_string());
        // Committed before the process starts: after a crash we know this attempt may have run.
        self.record(rec)?;
        self.flush_store()?;
        // The attempt is on disk before its work starts: after a power cut we know it may have
        // run. The sync starts now; the audit entries and the step's own preparation (its policy
        // check, its files) go on meanwhile, and the step's first effect waits at the gate.
        let start_gate = match self.pending_sync.take() {
            Some(wait) => StartGate::after(wait, !self.engine.shared_thread),
            None => StartGate::default(),
        };
        self.write_audit(false);
        self.progress.event(&Event::StepStarted {
            name: &name,
            attempt,
        });
        tracing::debug!(run = %self.run.id, step = %name, attempt, "step started");
        let rt = Runtime {
            cancel: self.halt.clone(),
            services: Some(self.services()),
            start_gate,
            spare_dir: Some(self.log_dir.clone()),
        };
        // A shared store (PostgreSQL) keeps a copy of the log for the other machines.
        let copy = self
            .engine
            .store
            .shared()
            .then(|| LogCopy::new(std::sync::Arc::clone(&self.engine.store), &input));
        // The attempt's state (the largest of every step kind's) lives in one heap allocation,
        // so spawning the task and finishing it move a pointer, not kilobytes per step.
        tasks.spawn(Box::pin(async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = sleep(delay) => {}
                    () = rt.cancel.cancelled() => {
                        return (name, attempt, StepReport::cancelled(), Some(input.kind));
                    }
                }
            }
            let report = match copy {
                Some(c) => c.around(steps::run(&input, &rt)).await,
                None => steps::run(&input, &rt).await,
            };
            (name, attempt, report, Some(input.kind))
        }));
        Ok(())
    }

    /// Records a finished attempt (`prepared`: the kind as the attempt ran it). Returns the delay
    /// before a retry, if the step gets one.
    pub(super) fn complete(
        &mut self,
        name: &str,
        report: StepReport,
        prepared: Option<StepKind>,
    ) -> Result<Option<Duration>> {
        let Some((phase, step)) = self.step_def(name).map(|(p, s)| (p, s.clone())) else {
            return Ok(None);
        };
        let Some(mut rec) = self.recs.get(name).cloned() else {
            return Ok(None);
        };
        tracing::debug!(run = %self.run.id, step = %name, attempt = rec.attempts, outcome = ?report.outcome, exit_code = ?report.exit_code, "step finished");
        let (outcome, why) = match &report.outcome {
            StepOutcome::Succeeded => ("ok", String::new()),
            StepOutcome::Failed { reason } => ("failed", reason.clone()),
            StepOutcome::Cancelled => ("cancelled", String::new()),
        };
        self.audit_attempt(
            &step,
            prepared.as_ref().unwrap_or(&step.kind),
            outcome,
            &why,
            report.exit_code,
        );
        rec.exit_code = report.exit_code;
        rec.stdout_tail = tail(&report.stdout, STDOUT_TAIL);
        rec.stderr_tail = report.stderr_tail.clone();
        rec.outputs = serde_json::Value::Object(report.outputs.clone());
        let finished_at = report.finished_at;
        if self.interrupting && !matches!(report.outcome, StepOutcome::Succeeded) {
            self.record_interrupted(&step, rec)?;
            return Ok(None);
        }
        match report.outcome {
            StepOutcome::Succeeded => {
                rec.status = StepStatus::Succeeded;
                rec.message = report.note.clone();
            }
            StepOutcome::Cancelled => {
                // A step is only cancelled through the run's token: the run is being cancelled.
                if self.stop.is_none() {
                    self.stop = Some(Stop::Cancel);
                }
                rec.status = StepStatus::Cancelled;
                rec.message = Some(match self.stop {
                    Some(Stop::Timeout) => "stopped: the workflow timed out".to_owned(),
                    _ => "stopped: the run was cancelled".to_owned(),
                });
            }
            StepOutcome::Failed { reason } => {
                let retries_left = rec.attempts <= step.retry.limit;
                if retries_left && report.retryable && self.stop.is_none() {
                    let mut delay = step.retry.delay_before(rec.attempts + 1);
                    // The wait the server asked for, unless it is longer than the policy allows.
                    if let Some(asked) = report.retry_after
                        && asked <= step.retry.max_delay
                    {
                        delay = asked;
                    }
                    rec.message = Some(format!(
                        "attempt {} failed: {reason}; retrying in {}",
                        rec.attempts,
                        crate::time::duration::format(delay)
                    ));
                    self.record(rec.clone())?;
                    self.progress.event(&Event::Note {
                        message: &format!("{name}: {}", rec.message.as_deref().unwrap_or_default()),
                    });
                    return Ok(Some(delay));
                }
                rec.status = StepStatus::Failed;
                let not_retried = "not retried: another attempt would fail the same way";
                rec.message = Some(match rec.attempts {
                    1 if retries_left && !report.retryable => format!("{reason} ({not_retried})"),
                    1 => reason,
                    n if retries_left && !report.retryable => {
                        format!("{reason} (after {n} attempts; {not_retried})")
                    }
                    n => format!("{reason} (after {n} attempts)"),
                });
            }
        }
        rec.finished_at = Some(finished_at.unwrap_or_else(now_ms));
        let failed = rec.status == StepStatus::Failed;
        self.record(rec.clone())?;
        if step.kind.waits() {
            self.wait_closed()?;
        }
        self.progress.event(&Event::StepFinished { step: &rec });
        if failed && phase == Phase::Main && self.stop.is_none() {
            self.stop = self.stop_after_failure(&step);
        }
        Ok(None)
    }

    /// Applies decisions on interrupted steps; returns true if some step still waits.
    pub(super) fn apply_decisions(&mut self, phase_filter: Option<Phase>) -> Result<bool> {
        let waiting: Vec<String> = self
            .recs
            .values()
            .filter(|r| {
                r.status == StepStatus::Interrupted && phase_filter.is_none_or(|p| p == r.phase)
            })
            .map(|r| r.name.clone())
            .collect();
        if waiting.is_empty() {
            return Ok(false);
        }
        let stored: HashMap<String, StepRecord> = self
            .store()
            .steps(&self.run.id)?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut still = false;
        for name in waiting {
            let decided = stored
                .get(&name)
                .and_then(|s| s.decision.map(|d| (d, s.decided_by.clone())));
            if self.stop == Some(Stop::Cancel) {
                self.finish_record(
                    &name,
                    StepStatus::Cancelled,
                    Some("run cancelled while waiting for a decision".into()),
                )?;
                continue;
            }
            match decided {
                Some((d @ Decision::Retry, who)) => {
                    let Some(mut rec) = self.recs.get(&name).cloned() else {
                        continue;
                    };
                    rec.status = StepStatus::Pending;
                    rec.message = Some(format!(
                        "run again on the decision of {}",
                        who.unwrap_or_default()
                    ));
                    rec.decision = Some(d);
                    self.record(rec)?;
                }
                Some((Decision::Skip, who)) => {
                    let msg = format!(
                        "interrupted; taken as done (not run again) on the decision of {}",
                        who.unwrap_or_default()
                    );
                    self.finish_record(&name, StepStatus::Skipped, Some(msg))?;
                }
                Some((Decision::Fail, who)) => {
                    let msg = format!("interrupted; marked failed by {}", who.unwrap_or_default());
                    self.finish_record(&name, StepStatus::Failed, Some(msg))?;
                    if let Some((Phase::Main, step)) =
                        self.step_def(&name).map(|(p, s)| (p, s.clone()))
                        && self.stop.is_none()
                    {
                        self.stop = self.stop_after_failure(&step);
                    }
                }
                None => still = true,
            }
        }
        Ok(still)
    }

    pub(super) async fn wait_for_decision(&mut self, phase: Option<Phase>) -> Result<()> {
        self.flush()?;
        if self.run.status != RunStatus::Waiting {
            self.store()
                .update_run(&self.run.id, RunStatus::Waiting, None, None, now_ms())?;
            self.run.status = RunStatus::Waiting;
        }
        // Every wait is announced, with the commands that end it (also when recovery already
        // recorded the run as waiting).
        let mut names: Vec<String> = self
            .recs
            .values()
            .filter(|r| r.status == StepStatus::Interrupted)
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        let run = &self.run.id;
        let how: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "`claw run approve {run} {n}` runs it again, `claw run approve {run} {n} --skip` takes it as done, `claw run reject {run} {n}` marks it failed"
                )
            })
            .collect();
        let msg = format!(
            "run {run} waits for a decision on {}: {}",
            names.join(", "),
            how.join("; ")
        );
        self.progress.event(&Event::Waiting { message: &msg });
        // Woken by the store's change bell (a decision from another process), at the latest
        // every 2 s for the lease's heartbeat.
        let mut changes = self.engine.watch_changes();
        while !self.interrupting && self.apply_decisions(phase)? {
            self.flush()?;
            self.poll_cancel()?;
            self.heartbeat()?;
            changes.mark_unchanged();
            tokio::select! {
                _ = changes.changed() => {}
                () = sleep(Duration::from_secs(2)) => {}
                () = self.cancel.cancelled() => { self.stop = Some(Stop::Cancel); }
                // The process is stopping (a worker's or the daemon's SIGTERM): nothing runs
                // while the run waits for a person, so it is put aside at once, still waiting,
                // for whichever process claims it next.
                () = self.engine.park_token().cancelled() => { self.interrupting = true; }
                () = self.engine.shutdown_token().cancelled() => { self.interrupting = true; }
            }
        }
        if self.interrupting {
            return Ok(());
        }
        self.store()
            .update_run(&self.run.id, RunStatus::Running, None, None, now_ms())?;
        self.run.status = RunStatus::Running;
        Ok(())
    }

    /// Steps left `running` by a dead owner: idempotent ones run again, the others wait.
    pub(super) fn recover_interrupted(&mut self) -> Result<()> {
        // Records change below without `record`: the context's view of them is made again.
        self.steps_view = None;
        let mut changed = Vec::new();
        let mut waiting = false;
        let names: Vec<String> = self
            .recs
            .values()
            .filter(|r| matches!(r.status, StepStatus::Running | StepStatus::Waiting))
            .map(|r| r.name.clone())
            .collect();
        for name in names {
            let again = match self.step_def(&name) {
                Some((_, s)) => self.after_interruption(s),
                None => Again::Run,
            };
            // What the attempt had done (an ssh step: which hosts had finished), for the decision.
            let note = match (self.step_def(&name), self.recs.get(&name)) {
                (Some((_, s)), Some(r)) => r
                    .log_path
                    .as_deref()
                    .and_then(|p| s.kind.interrupted_note(std::path::Path::new(p))),
                _ => None,
            };
            if again == Again::Reopen {
                // A wait (an approval request, a child run) is found again, same attempt.
                self.reopen.insert(name.clone());
                if let Some(rec) = self.recs.get_mut(&name) {
                    rec.status = StepStatus::Pending;
                }
                continue;
            }
            let Some(rec) = self.recs.get_mut(&name) else {
                continue;
            };
            if again == Again::Run {
                rec.status = StepStatus::Pending;
                rec.message = Some(format!(
                    "attempt {} was interrupted (claw stopped); running it again because the step is idempotent",
                    rec.attempts
                ));
            } else {
                rec.status = StepStatus::Interrupted;
                rec.message = Some(format!(
                    "interrupted while running (claw stopped) and not idempotent: it may or may not have done its work{}. \
                     Run it again with `claw run approve {run} {name}`, or mark it failed with `claw run reject {run} {name}`",
                    note.map(|n| format!(" ({n})")).unwrap_or_default(),
                    run = self.run.id
                ));
                waiting = true;
            }
            changed.push(rec.clone());
        }
        if !changed.is_empty() {
            let status = if waiting {
                RunStatus::Waiting
            } else {
                RunStatus::Running
            };
            self.store()
                .record_steps(&self.run.id, &changed, Some(status))?;
            self.run.status = status;
            let msg = format!(
                "resumed run {}: {} step(s) were interrupted",
                self.run.id,
                changed.len()
            );
            self.progress.event(&Event::Note { message: &msg });
        } else if self.run.status != RunStatus::Running {
            self.store()
                .update_run(&self.run.id, RunStatus::Running, None, None, now_ms())?;
            self.run.status = RunStatus::Running;
        }
        Ok(())
    }

    /// A step stopped by the daemon's shutdown: an idempotent one (or a gate or sub-workflow,
    /// which pick up their stored request or child again) runs again on resume; any other waits
    /// for a person, as after a crash.
    pub(super) fn record_interrupted(&mut self, step: &Step, mut rec: StepRecord) -> Result<()> {
        let again = self.after_interruption(step);
        if again == Again::Reopen {
            self.reopen.insert(rec.name.clone());
        }
        if again != Again::Decide {
            rec.status = StepStatus::Pending;
            rec.message = Some(format!(
                "attempt {} was interrupted (claw serve stopped); it runs again when the run resumes",
                rec.attempts
            ));
        } else {
            rec.status = StepStatus::Interrupted;
            rec.message = Some(format!(
                "interrupted (claw serve stopped) and not idempotent: it may or may not have done its work. \
                 Run it again with `claw run approve {run} {name}`, or mark it failed with `claw run reject {run} {name}`",
                run = self.run.id,
                name = rec.name
            ));
        }
        self.record(rec)
    }

    /// Ends this process's part of a run interrupted by the daemon's shutdown: every record is
    /// committed, the run stays unfinished (waiting if a step needs a decision) for the next
    /// process that owns the queue.
    pub(super) fn leave_interrupted(mut self) -> Result<RunRecord> {
        let waiting = self
            .recs
            .values()
            .any(|r| r.status == StepStatus::Interrupted);
        let status = if waiting {
            RunStatus::Waiting
        } else {
            RunStatus::Running
        };
        self.flush()?;
        self.store()
            .update_run(&self.run.id, status, None, None, now_ms())?;
        self.audit_now(crate::audit::Event::new(
            &Engine::actor_of(&self.run),
            crate::audit::Action::WorkflowRunInterrupted,
            &self.run.id,
            "interrupted",
            serde_json::json!({"workflow": self.wf.name, "waiting": waiting}),
        ));
        self.reload()
    }
}
