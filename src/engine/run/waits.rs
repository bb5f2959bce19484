//! Steps the engine runs itself, because they wait on the store rather than a process: approval
//! gates and sub-workflows. Each becomes a task in the run's `JoinSet` that polls the store, so
//! other branches of the DAG go on while it waits.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::sleep;

use super::{Done, Exec, POLL};
use crate::engine::approval::{self, Resolution, TIMEOUT_ACTOR};
use crate::engine::{Engine, Event, NewRun, Result, now_ms};
use crate::steps::{StepOutcome, StepReport};
use crate::store::{ApprovalRequest, RunStatus, StepRecord, StepStatus, Vote};
use crate::time;
use crate::workflow::{ApprovalStep, Step, SubWorkflowStep, TimeoutDecision};

impl Exec<'_> {
    /// Renders a text field of a step (plain, not shell) with the run's context and the secrets
    /// the step names.
    fn render_text(&mut self, step: &Step, text: &str) -> std::result::Result<String, String> {
        if !crate::expr::has_expressions(text) {
            return Ok(text.to_owned());
        }
        let secrets = self.load_secrets(step)?;
        let ctx = self.context_with(&secrets);
        self.engine
            .eval
            .render_plain(text, &ctx)
            .map_err(|e| e.to_string())
    }

    fn fail_now(&mut self, mut rec: StepRecord, why: String) -> Result<()> {
        rec.status = StepStatus::Failed;
        rec.finished_at = Some(now_ms());
        rec.message = Some(why);
        self.record(rec.clone())?;
        self.progress.event(&Event::StepFinished { step: &rec });
        if self.stop.is_none()
            && let Some((crate::store::Phase::Main, step)) =
                self.step_def(&rec.name).map(|(p, s)| (p, s.clone()))
        {
            self.stop = self.stop_after_failure(&step);
        }
        Ok(())
    }

    /// Opens (or, after a restart, reopens) an approval request and waits for it in a task.
    pub(super) fn open_gate(
        &mut self,
        step: &Step,
        gate: &ApprovalStep,
        mut rec: StepRecord,
        tasks: &mut JoinSet<Done>,
    ) -> Result<()> {
        let message = match self.render_text(step, &gate.message) {
            Ok(m) => self.redactor.redact(&m).into_owned(),
            Err(why) => return self.fail_now(rec, format!("cannot render the message: {why}")),
        };
        let now = now_ms();
        let request = ApprovalRequest {
            run_id: self.run.id.clone(),
            step: rec.name.clone(),
            message,
            approvers: gate.approvers.clone(),
            quorum: gate.quorum,
            deadline: gate
                .timeout
                .map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))),
            on_timeout: match gate.on_timeout {
                TimeoutDecision::Approve => "approve",
                TimeoutDecision::Reject => "reject",
            }
            .to_owned(),
            input: approval::input_spec(&gate.input),
            requested_at: now,
        };
        let (request, new) = self.store().open_approval(&request)?;
        let name = rec.name.clone();
        let attempt = rec.attempts;
        rec.status = StepStatus::Waiting;
        rec.message = Some(format!("waiting for approval: {}", request.message));
        self.record(rec)?;
        self.flush()?;
        if self.run.status != RunStatus::Waiting {
            self.store()
                .update_run(&self.run.id, RunStatus::Waiting, None, None, now_ms())?;
            self.run.status = RunStatus::Waiting;
        }
        let who = if request.approvers.is_empty() {
            "anyone".to_owned()
        } else {
            request.approvers.join(", ")
        };
        if new {
            self.engine.audit(
                &crate::audit::Event::new(
                    &Engine::actor_of(&self.run),
                    "approval.requested",
                    &format!("{}/{name}", self.run.id),
                    "waiting",
                    serde_json::json!({
                        "workflow": self.wf.name,
                        "approvers": request.approvers,
                        "quorum": request.quorum,
                        "deadline": request.deadline.map(|d| time::rfc3339_secs(time::at(d))),
                    }),
                ),
                self.progress,
            );
        }
        let msg = format!(
            "run {run} waits for approval of `{name}`: {message}\n  who: {who} (quorum {quorum}){deadline}\n  approve: claw run approve {run} {name}    reject: claw run reject {run} {name} --reason WHY",
            run = self.run.id,
            message = request.message,
            quorum = request.quorum,
            deadline = request
                .deadline
                .map(|d| format!(
                    ", deadline {} then {}",
                    time::rfc3339_secs(time::at(d)),
                    request.on_timeout
                ))
                .unwrap_or_default(),
        );
        self.progress.event(&Event::Waiting { message: &msg });
        let store = self.engine.store.clone();
        let run_id = self.run.id.clone();
        let cancel = self.halt.clone();
        tasks.spawn(async move {
            loop {
                let decided = match store.approval(&run_id, &name) {
                    Ok(Some(a)) => approval::resolve(&a, now_ms()).map(|r| (r, a)),
                    Ok(None) => {
                        return (name, attempt, StepReport::failed("the approval request is gone from the store"));
                    }
                    // A busy database is retried at the next poll.
                    Err(_) => None,
                };
                if let Some((resolution, a)) = decided {
                    if let Resolution::TimedOut { approve, at } = &resolution
                        && !a.votes.iter().any(|v| v.approver == TIMEOUT_ACTOR)
                    {
                        // Dated at the deadline, also when claw was down then.
                        let vote = Vote {
                            approver: TIMEOUT_ACTOR.to_owned(),
                            decision: if *approve { "approve" } else { "reject" }.to_owned(),
                            reason: Some("deadline passed".to_owned()),
                            input: serde_json::json!({}),
                            decided_at: *at,
                        };
                        if store.add_vote(&run_id, &name, &vote).is_err() {
                            continue;
                        }
                    }
                    return (name, attempt, gate_report(&resolution));
                }
                tokio::select! {
                    () = sleep(POLL.max(Duration::from_millis(300))) => {}
                    () = cancel.cancelled() => {
                        return (name, attempt, StepReport { outcome: StepOutcome::Cancelled, ..StepReport::failed("") });
                    }
                }
            }
        });
        Ok(())
    }

    /// After a gate's outcome is recorded: audit a deadline's decision, and leave `waiting`.
    pub(super) fn gate_closed(&mut self, step: &Step, rec: &StepRecord) -> Result<()> {
        if rec.outputs.get("timed_out") == Some(&serde_json::Value::Bool(true)) {
            let decision = rec
                .outputs
                .get("decision")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("rejected")
                .to_owned();
            self.engine.audit(
                &crate::audit::Event::new(
                    TIMEOUT_ACTOR,
                    "approval.decided",
                    &format!("{}/{}", self.run.id, step.name),
                    &decision,
                    serde_json::json!({
                        "workflow": self.wf.name,
                        "deadline": rec.finished_at.map(|t| time::rfc3339_secs(time::at(t))),
                    }),
                ),
                self.progress,
            );
        }
        let still = self.recs.values().any(|r| r.status == StepStatus::Waiting);
        if !still && self.run.status == RunStatus::Waiting {
            self.flush()?;
            self.store()
                .update_run(&self.run.id, RunStatus::Running, None, None, now_ms())?;
            self.run.status = RunStatus::Running;
        }
        Ok(())
    }

    /// Creates (or, after a restart, finds) the child run of a sub-workflow step and waits for
    /// it in a task. The child is executed by a `claw run resume` process of its own, so it
    /// survives this one and shows in `claw run list` like any run.
    pub(super) fn start_child(
        &mut self,
        step: &Step,
        child: &SubWorkflowStep,
        mut rec: StepRecord,
        tasks: &mut JoinSet<Done>,
    ) -> Result<()> {
        let existing = rec
            .outputs
            .get("run_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .filter(|id| {
                self.store()
                    .get_run(id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| !r.status.is_finished() || rec.attempts <= 1)
            });
        let child_id = match existing {
            Some(id) => id,
            None => match self.create_child(step, child) {
                Ok(id) => id,
                Err(why) => return self.fail_now(rec, why),
            },
        };
        let name = rec.name.clone();
        let attempt = rec.attempts;
        rec.outputs = serde_json::json!({"run_id": child_id});
        rec.message = Some(format!("child run {child_id}"));
        self.record(rec)?;
        self.flush()?;
        self.progress.event(&Event::StepStarted {
            name: &name,
            attempt,
        });
        let store = self.engine.store.clone();
        let cancel = self.halt.clone();
        let launcher = Launcher {
            exe: std::env::current_exe().map_err(|e| {
                crate::engine::EngineError::Io(format!("cannot find the claw binary: {e}"))
            })?,
            home: self.engine.dirs.home.clone(),
            root: self.engine.dirs.root.clone(),
            log: self.engine.dirs.run_log_dir(&child_id).join("claw.log"),
        };
        let wait = child.wait;
        tasks.spawn(async move {
            let mut proc = launcher.spawn(&child_id);
            if !wait {
                let mut report = StepReport {
                    outcome: StepOutcome::Succeeded,
                    ..StepReport::failed("")
                };
                report
                    .outputs
                    .insert("run_id".into(), child_id.clone().into());
                report.note = Some(format!("started child run {child_id} (not waited for)"));
                return (name, attempt, report);
            }
            let mut asked_cancel = false;
            loop {
                if let Ok(Some(run)) = store.get_run(&child_id)
                    && run.status.is_finished()
                {
                    if let Some(p) = proc.as_mut() {
                        let _ = p.wait().await;
                    }
                    return (name, attempt, child_report(&run));
                }
                tokio::select! {
                    () = sleep(POLL) => {}
                    () = cancel.cancelled(), if !asked_cancel => {
                        // The child stops like any cancelled run; its end is waited for.
                        asked_cancel = true;
                        let _ = store.request_cancel(&child_id);
                    }
                }
                // A child nobody executes any more (its process died): start another.
                if let Some(p) = proc.as_mut()
                    && let Ok(Some(_)) = p.try_wait()
                    && let Ok(Some(run)) = store.get_run(&child_id)
                    && !run.status.is_finished()
                    && (run.owner.is_none() || crate::engine::owner::is_dead(&run, now_ms()))
                {
                    proc = launcher.spawn(&child_id);
                }
            }
        });
        Ok(())
    }

    fn create_child(
        &mut self,
        step: &Step,
        child: &SubWorkflowStep,
    ) -> std::result::Result<String, String> {
        let path =
            crate::engine::subflow::locate(&self.engine.dirs, &self.wf.path, &child.workflow)?;
        let wf = crate::workflow::load::load_file(&path)
            .map_err(|e| format!("the child workflow does not load:\n{}", e.render()))?;
        let mut given = Vec::new();
        for (k, v) in &child.params {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let text = self
                .render_text(step, &text)
                .map_err(|e| format!("cannot render param `{k}`: {e}"))?;
            given.push((k.clone(), text));
        }
        let params = wf
            .bind_params(&given)
            .map_err(|problems| format!("bad params for `{}`: {}", wf.name, problems.join("; ")))?;
        let run = self
            .engine
            .create_run(&NewRun {
                workflow: &wf,
                params,
                trigger: serde_json::json!({
                    "type": "workflow",
                    "parent_run": self.run.id,
                    "step": step.name,
                    "user": self.run.trigger.get("user"),
                }),
                dry_run: self.run.dry_run,
                claim: false,
            })
            .map_err(|e| format!("cannot create the child run: {e}"))?;
        Ok(run.id)
    }
}

/// Starts `claw run resume CHILD` in its own process group, logging to the child's log dir.
#[derive(Debug, Clone)]
struct Launcher {
    exe: std::path::PathBuf,
    home: std::path::PathBuf,
    root: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Launcher {
    fn spawn(&self, id: &str) -> Option<tokio::process::Child> {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).ok()?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .ok()?;
        let log2 = log.try_clone().ok()?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("--home")
            .arg(&self.home)
            .arg("--root")
            .arg(&self.root)
            .args(["run", "resume", id, "--quiet"])
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        cmd.spawn().ok()
    }
}

fn gate_report(r: &Resolution) -> StepReport {
    let mut report = StepReport::failed(approval::describe(r));
    match r {
        Resolution::Approved { by, at, input } => {
            report.outcome = StepOutcome::Succeeded;
            report.note = Some(approval::describe(r));
            report.outputs = input.clone();
            report.outputs.insert("decision".into(), "approved".into());
            report
                .outputs
                .insert("approved_by".into(), by.clone().into());
            report.outputs.insert(
                "decided_at".into(),
                time::rfc3339_secs(time::at(*at)).into(),
            );
        }
        Resolution::Rejected { by, reason, at } => {
            report.outputs.insert("decision".into(), "rejected".into());
            report
                .outputs
                .insert("rejected_by".into(), by.clone().into());
            report
                .outputs
                .insert("reason".into(), reason.clone().into());
            report.outputs.insert(
                "decided_at".into(),
                time::rfc3339_secs(time::at(*at)).into(),
            );
        }
        Resolution::TimedOut { approve, at } => {
            if *approve {
                report.outcome = StepOutcome::Succeeded;
                report.note = Some(approval::describe(r));
            }
            report.finished_at = Some(*at);
            report.outputs.insert(
                "decision".into(),
                if *approve { "approved" } else { "rejected" }.into(),
            );
            report.outputs.insert("timed_out".into(), true.into());
            report.outputs.insert(
                "decided_at".into(),
                time::rfc3339_secs(time::at(*at)).into(),
            );
        }
    }
    report
}

fn child_report(run: &crate::store::RunRecord) -> StepReport {
    let mut report = match run.status {
        RunStatus::Succeeded => StepReport {
            outcome: StepOutcome::Succeeded,
            ..StepReport::failed("")
        },
        status => StepReport::failed(format!(
            "child run {} {status}{}",
            run.id,
            run.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
    };
    if let serde_json::Value::Object(m) = &run.outputs {
        report.outputs = m.clone();
    }
    report
        .outputs
        .insert("run_id".into(), run.id.clone().into());
    report
        .outputs
        .insert("status".into(), run.status.as_str().into());
    if run.status == RunStatus::Succeeded {
        report.note = Some(format!("child run {} succeeded", run.id));
    }
    report
}
