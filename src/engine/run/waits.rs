//! What the engine lends step kinds that wait on the store instead of a process
//! ([`crate::steps::Services`]): approval gates and sub-workflows. Their waits run inside the
//! step's task, so other branches of the DAG go on; what must be recorded while they wait (the
//! step and the run waiting, the child's id) travels to the run's loop as a [`Notice`] and is
//! recorded there, like every other transition.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use super::{Exec, POLL};
use crate::audit::{AuditLog, Event as AuditEvent};
use crate::config::Dirs;
use crate::engine::approval::{self, TIMEOUT_ACTOR};
use crate::engine::{Engine, NewRun, now_ms, owner};
use crate::msg::route::{self, Recipient};
use crate::steps::approval::{GateRequest, Resolution};
use crate::steps::notify::{NotifyStep, Sent};
use crate::steps::subworkflow::{ChildEnd, SubWorkflowStep};
use crate::steps::{BoxFuture, Services, StepInput, WaitEnd};
use crate::store::{ApprovalRequest, RunFilter, RunStatus, Store, Vote};

/// Something a waiting step's task tells the run's loop to record.
#[derive(Debug)]
pub(super) enum Notice {
    /// An approval gate is open: the step (and the run) wait for a decision.
    GateOpen {
        step: String,
        attempt: u32,
        /// The step's message (`waiting for approval: …`).
        message: String,
        /// What the people watching are told (who may decide, and the commands).
        announce: String,
        /// `approval.requested`, when the request is new (not reopened).
        audit: Option<AuditEvent>,
        /// The question, for a terminal prompt.
        question: String,
        /// Whether the gate asks for input fields.
        has_input: bool,
    },
    /// A sub-gate of a step that goes on after it (an llm step's tool call) is decided: the
    /// step runs again.
    GateClosed { step: String, attempt: u32 },
    /// A sub-workflow's child run exists.
    Child {
        step: String,
        attempt: u32,
        run_id: String,
    },
}

/// The engine's side of waiting steps, for one run.
pub(super) struct RunServices {
    store: Arc<dyn Store>,
    audit: AuditLog,
    dirs: Dirs,
    run_id: String,
    workflow: String,
    workflow_path: PathBuf,
    /// The run's trigger `user`, passed on to a child run.
    user: serde_json::Value,
    /// Who started the run, for the audit log.
    actor: String,
    dry_run: bool,
    /// Cancelled when the run itself is cancelled (or timed out), not when the daemon merely
    /// stops: only then is a child run cancelled too.
    run_cancel: CancellationToken,
    notices: UnboundedSender<Notice>,
    /// Rung when the store may hold a decision (one watcher per process, not a poll per gate).
    changes: tokio::sync::watch::Receiver<u64>,
    /// Who is told when a gate opens (`notify:` for `waiting`).
    waiting_to: Vec<String>,
}

impl Exec<'_> {
    /// The capability this run's waiting steps get.
    pub(super) fn services(&mut self) -> Arc<dyn Services> {
        if let Some(s) = &self.services {
            return s.clone();
        }
        let services: Arc<dyn Services> = Arc::new(RunServices {
            store: self.engine.store.clone(),
            audit: AuditLog::in_dir(&self.engine.dirs.home),
            dirs: self.engine.dirs.clone(),
            run_id: self.run.id.clone(),
            workflow: self.wf.name.clone(),
            workflow_path: self.wf.path.clone(),
            user: self
                .run
                .trigger
                .get("user")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            actor: Engine::actor_of(&self.run),
            dry_run: self.run.dry_run,
            run_cancel: self.cancel.clone(),
            notices: self.notices_tx.clone(),
            changes: self.engine.watch_changes(),
            waiting_to: self.wf.recipients(crate::workflow::NotifyOn::Waiting),
        });
        self.services = Some(services.clone());
        services
    }

    /// Records what waiting steps told the loop (a step whose attempt already ended is left
    /// alone: its end is recorded already).
    pub(super) fn take_notices(&mut self) -> crate::engine::Result<()> {
        while let Ok(notice) = self.notices_rx.try_recv() {
            self.on_notice(notice)?;
        }
        Ok(())
    }

    pub(super) fn on_notice(&mut self, notice: Notice) -> crate::engine::Result<()> {
        use crate::store::StepStatus;
        match notice {
            Notice::GateOpen {
                step,
                attempt,
                message,
                announce,
                audit,
                question,
                has_input,
            } => {
                // A sub-gate (`STEP#KEY`: an llm step's tool call) makes its step wait.
                let rec = self.recs.get(&step).or_else(|| {
                    approval::sub_gate_owner(&step).and_then(|owner| self.recs.get(owner))
                });
                let Some(mut rec) = rec.cloned() else {
                    return Ok(());
                };
                if rec.attempts != attempt || rec.status != StepStatus::Running {
                    return Ok(());
                }
                rec.status = StepStatus::Waiting;
                rec.message = Some(message);
                self.record(rec)?;
                self.flush()?;
                if self.run.status != RunStatus::Waiting {
                    self.store().update_run(
                        &self.run.id,
                        RunStatus::Waiting,
                        None,
                        None,
                        now_ms(),
                    )?;
                    self.run.status = RunStatus::Waiting;
                }
                if let Some(event) = audit {
                    self.audit_now(event);
                }
                self.progress
                    .event(&crate::engine::Event::Waiting { message: &announce });
                self.progress.event(&crate::engine::Event::GateOpen {
                    run: &self.run.id,
                    step: &step,
                    question: &question,
                    has_input,
                });
            }
            Notice::GateClosed { step, attempt } => {
                let Some(mut rec) = self.recs.get(&step).cloned() else {
                    return Ok(());
                };
                if rec.attempts != attempt || rec.status != StepStatus::Waiting {
                    return Ok(());
                }
                rec.status = StepStatus::Running;
                rec.message = None;
                self.record(rec)?;
                self.flush()?;
                self.wait_closed()?;
            }
            Notice::Child {
                step,
                attempt,
                run_id,
            } => {
                let Some(mut rec) = self.recs.get(&step).cloned() else {
                    return Ok(());
                };
                if rec.attempts != attempt || rec.status != StepStatus::Running {
                    return Ok(());
                }
                rec.outputs = serde_json::json!({ "run_id": run_id });
                rec.message = Some(format!("child run {run_id}"));
                self.record(rec)?;
                self.flush()?;
            }
        }
        Ok(())
    }
}

impl RunServices {
    fn notify(&self, notice: Notice) {
        // The loop is gone only when the run is being torn down: nothing left to record.
        let _ = self.notices.send(notice);
    }

    /// Opens the request (or finds it again) and announces it.
    fn open_gate(
        &self,
        input: &StepInput,
        gate: &GateRequest,
        actor: &str,
    ) -> Result<ApprovalRequest, String> {
        let now = now_ms();
        let request = ApprovalRequest {
            run_id: self.run_id.clone(),
            step: input.step.clone(),
            message: gate.message.clone(),
            approvers: gate.approvers.clone(),
            quorum: gate.quorum,
            deadline: gate
                .timeout
                .map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))),
            on_timeout: gate.on_timeout.as_str().to_owned(),
            input: gate.input.clone(),
            requested_at: now,
        };
        let (request, new) = self
            .store
            .open_approval(&request)
            .map_err(|e| format!("cannot open the approval request: {e}"))?;
        let name = &input.step;
        let who = if request.approvers.is_empty() {
            "anyone".to_owned()
        } else {
            request.approvers.join(", ")
        };
        let announce = format!(
            "run {run} waits for approval of `{name}`: {message}\n  who: {who} (quorum {quorum}){deadline}\n  approve: claw run approve {run} {name}    reject: claw run reject {run} {name} --reason WHY",
            run = self.run_id,
            message = request.message,
            quorum = request.quorum,
            deadline = request
                .deadline
                .map(|d| format!(
                    ", deadline {} then {}",
                    crate::time::rfc3339_secs(crate::time::at(d)),
                    request.on_timeout
                ))
                .unwrap_or_default(),
        );
        let audit = new.then(|| {
            AuditEvent::new(
                actor,
                crate::audit::Action::ApprovalRequested,
                &format!("{}/{name}", self.run_id),
                "waiting",
                serde_json::json!({
                    "workflow": self.workflow,
                    "approvers": request.approvers,
                    "quorum": request.quorum,
                    "deadline": request.deadline.map(|d| crate::time::rfc3339_secs(crate::time::at(d))),
                }),
            )
        });
        if new && !self.dry_run {
            self.tell_gate(&request, &announce);
        }
        self.notify(Notice::GateOpen {
            step: name.clone(),
            attempt: input.attempt,
            message: format!("waiting for approval: {}", request.message),
            announce,
            audit,
            question: request.message.clone(),
            has_input: request.input.as_array().is_some_and(|a| !a.is_empty())
                || request.input.as_object().is_some_and(|o| !o.is_empty()),
        });
        Ok(request)
    }

    /// Queues the gate's announcement for `notify:`'s `waiting` recipients and every
    /// `telegram:<id>` approver (each once), and delivers it in the background; a messaging
    /// problem never stops the gate (it is logged, the outbox keeps the message).
    fn tell_gate(&self, request: &ApprovalRequest, announce: &str) {
        let mut to: Vec<Recipient> = Vec::new();
        let approvers = request
            .approvers
            .iter()
            .filter(|a| a.starts_with("telegram:"));
        for r in self.waiting_to.iter().chain(approvers) {
            let r = Recipient::parse(r);
            if !to.contains(&r) {
                to.push(r);
            }
        }
        let source = format!("run:{}/{}/gate", self.run_id, request.step);
        let text = format!(
            "{announce}\n  from a chat: !approve {run} {step}    !reject {run} {step} REASON",
            run = self.run_id,
            step = request.step
        );
        let text = crate::redact::global().redact(&text).into_owned();
        let mut ids = Vec::new();
        for r in &to {
            match route::queue_with_buttons(self.store.as_ref(), &self.dirs, r, &text, &source) {
                Ok(mut more) => ids.append(&mut more),
                Err(e) => tracing::warn!("the approval request was not sent to {r}: {e}"),
            }
        }
        if ids.is_empty() {
            return;
        }
        let (store, dirs) = (self.store.clone(), self.dirs.clone());
        let owner = format!("{source}/{}", std::process::id());
        tokio::spawn(async move {
            let until = std::time::Instant::now() + DELIVER_FOR;
            if let Err(e) = route::deliver(store, &dirs, &owner, &ids, until).await {
                tracing::warn!("messages {ids:?} are queued, not delivered yet: {e}");
            }
        });
    }

    /// A deadline's decision, recorded as a vote of [`TIMEOUT_ACTOR`] dated at the deadline
    /// (also when claw was down then) and audited.
    fn record_deadline(&self, step: &str, approve: bool, at: i64) -> bool {
        let vote = Vote {
            approver: TIMEOUT_ACTOR.to_owned(),
            decision: if approve { "approve" } else { "reject" }.to_owned(),
            reason: Some("deadline passed".to_owned()),
            input: serde_json::json!({}),
            decided_at: at,
        };
        if self.store.add_vote(&self.run_id, step, &vote).is_err() {
            return false;
        }
        let event = AuditEvent::new(
            TIMEOUT_ACTOR,
            crate::audit::Action::ApprovalDecided,
            &format!("{}/{step}", self.run_id),
            if approve { "approved" } else { "rejected" },
            serde_json::json!({
                "workflow": self.workflow,
                "deadline": crate::time::rfc3339_secs(crate::time::at(at)),
            }),
        );
        if let Err(e) = self.audit.record(&event) {
            tracing::warn!(run = %self.run_id, step, error = %e, "the deadline's decision was not audited");
        }
        true
    }

    /// The child run of this attempt: found again (it names this step and attempt in its
    /// trigger), or created (queued, unowned) with the step's params bound to its types.
    fn child_run(&self, input: &StepInput, child: &SubWorkflowStep) -> Result<String, String> {
        let existing = self
            .store
            .list_runs(&RunFilter {
                parent: Some(self.run_id.clone()),
                ..RunFilter::default()
            })
            .map_err(|e| format!("cannot look up the child run: {e}"))?
            .into_iter()
            .find(|r| {
                r.trigger.get("step").and_then(serde_json::Value::as_str)
                    == Some(input.step.as_str())
                    && match r.trigger.get("attempt").and_then(serde_json::Value::as_u64) {
                        Some(a) => a == u64::from(input.attempt),
                        // A child made before attempts were recorded: only while it runs.
                        None => !r.status.is_finished(),
                    }
            });
        if let Some(run) = existing {
            return Ok(run.id);
        }
        let path = crate::workflow::catalogue::find_child(
            &self.dirs,
            &self.workflow_path,
            &child.workflow,
        )?;
        let wf = crate::workflow::load::load_file(&path)
            .map_err(|e| format!("the child workflow does not load:\n{}", e.render()))?;
        let params = wf
            .bind_params(&child.given())
            .map_err(|problems| format!("bad params for `{}`: {}", wf.name, problems.join("; ")))?;
        let run = Engine::unclaimed_record(
            &NewRun {
                workflow: &wf,
                params,
                trigger: serde_json::json!({
                    "type": "workflow",
                    "parent_run": self.run_id,
                    "step": input.step,
                    "attempt": input.attempt,
                    "user": self.user,
                }),
                dry_run: self.dry_run,
                claim: false,
            },
            now_ms(),
        );
        self.store
            .create_run(&run)
            .map_err(|e| format!("cannot create the child run: {e}"))?;
        Ok(run.id)
    }
}

/// How long a notify step (or the end of a run) tries to deliver its messages itself before
/// leaving them to `claw serve`.
pub(super) const DELIVER_FOR: Duration = Duration::from_secs(10);

/// Queues `text` for `to` and tries to deliver it for up to [`DELIVER_FOR`] (or until `cancel`);
/// the outbox ids and how they stand.
pub(super) async fn queue_and_deliver(
    store: &Arc<dyn Store>,
    dirs: &Dirs,
    to: &Recipient,
    text: &str,
    source: &str,
    cancel: &CancellationToken,
) -> Result<Sent, String> {
    let ids = route::queue(store.as_ref(), dirs, to, text, source)?;
    let owner = format!("{source}/{}", std::process::id());
    let until = std::time::Instant::now() + DELIVER_FOR;
    tokio::select! {
        r = route::deliver(store.clone(), dirs, &owner, &ids, until) => {
            if let Err(e) = r {
                tracing::warn!("messages {ids:?} are queued, not delivered yet: {e}");
            }
        }
        () = cancel.cancelled() => {}
    }
    let (sent, pending, failed) = route::tally(store.as_ref(), &ids)?;
    Ok(Sent {
        ids,
        sent,
        pending,
        failed,
    })
}

impl Services for RunServices {
    fn gate_closed(&self, input: &StepInput) {
        self.notify(Notice::GateClosed {
            step: input.step.clone(),
            attempt: input.attempt,
        });
    }

    fn send_message<'a>(
        &'a self,
        input: &'a StepInput,
        step: &'a NotifyStep,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Sent, WaitEnd>> {
        Box::pin(async move {
            let to = Recipient::parse(&step.to);
            let source = format!("run:{}/{}", self.run_id, input.step);
            queue_and_deliver(&self.store, &self.dirs, &to, &step.message, &source, cancel)
                .await
                .map_err(WaitEnd::Failed)
        })
    }

    fn await_approval<'a>(
        &'a self,
        input: &'a StepInput,
        gate: GateRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Resolution, WaitEnd>> {
        Box::pin(async move {
            self.open_gate(input, &gate, &self.actor)
                .map_err(WaitEnd::Failed)?;
            let step = &input.step;
            let mut changes = self.changes.clone();
            loop {
                changes.mark_unchanged();
                // When to look again without being woken: at the gate's deadline, or soon after
                // a busy database.
                let next_look: Option<i64>;
                let decided = match self.store.approval(&self.run_id, step) {
                    Ok(Some(a)) => {
                        next_look = a.request.deadline;
                        approval::resolve(&a, now_ms()).map(|r| (r, a))
                    }
                    Ok(None) => {
                        return Err(WaitEnd::Failed(
                            "the approval request is gone from the store".to_owned(),
                        ));
                    }
                    Err(_) => {
                        next_look = Some(now_ms() + 300);
                        None
                    }
                };
                if let Some((resolution, a)) = decided {
                    let recorded = match &resolution {
                        Resolution::TimedOut { approve, at }
                            if !a.votes.iter().any(|v| v.approver == TIMEOUT_ACTOR) =>
                        {
                            self.record_deadline(step, *approve, *at)
                        }
                        _ => true,
                    };
                    if recorded {
                        return Ok(resolution);
                    }
                }
                let wait = next_look.map(|at| {
                    Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
                        + Duration::from_millis(5)
                });
                tokio::select! {
                    r = changes.changed() => {
                        if r.is_err() {
                            // No bell any more (the engine is going away): fall back to polling.
                            sleep(POLL.max(Duration::from_millis(300))).await;
                        }
                    }
                    () = async { match wait { Some(w) => sleep(w).await, None => std::future::pending().await } } => {}
                    () = cancel.cancelled() => return Err(WaitEnd::Cancelled),
                }
            }
        })
    }

    fn await_child<'a>(
        &'a self,
        input: &'a StepInput,
        child: &'a SubWorkflowStep,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ChildEnd, WaitEnd>> {
        Box::pin(async move {
            let child_id = self.child_run(input, child).map_err(WaitEnd::Failed)?;
            self.notify(Notice::Child {
                step: input.step.clone(),
                attempt: input.attempt,
                run_id: child_id.clone(),
            });
            let launcher = Launcher {
                exe: std::env::current_exe()
                    .map_err(|e| WaitEnd::Failed(format!("cannot find the claw binary: {e}")))?,
                home: self.dirs.home.clone(),
                root: self.dirs.root.clone(),
                log: self.dirs.run_log_dir(&child_id).join("claw.log"),
            };
            let mut proc = launcher.spawn(&child_id);
            if !child.wait {
                return Ok(ChildEnd {
                    run_id: child_id,
                    status: None,
                    outputs: serde_json::json!({}),
                    error: None,
                });
            }
            let mut asked_cancel = false;
            loop {
                if let Ok(Some(run)) = self.store.get_run(&child_id)
                    && run.status.is_finished()
                {
                    if let Some(p) = proc.as_mut() {
                        let _ = p.wait().await;
                    }
                    return Ok(ChildEnd {
                        run_id: run.id,
                        status: Some(run.status),
                        outputs: run.outputs,
                        error: run.error,
                    });
                }
                tokio::select! {
                    () = sleep(POLL) => {}
                    () = cancel.cancelled(), if !asked_cancel => {
                        if !self.run_cancel.is_cancelled() {
                            // The daemon stops: the child goes on (its own process, or the
                            // next daemon), and this step finds it again when the run resumes.
                            return Err(WaitEnd::Cancelled);
                        }
                        // The run is cancelled: so is its child, whose end is waited for.
                        asked_cancel = true;
                        let _ = self.store.request_cancel(&child_id);
                    }
                }
                // A child nobody executes any more (its process died): start another.
                if let Some(p) = proc.as_mut()
                    && let Ok(Some(_)) = p.try_wait()
                    && let Ok(Some(run)) = self.store.get_run(&child_id)
                    && !run.status.is_finished()
                    && (run.owner.is_none() || owner::is_dead(&run, now_ms()))
                {
                    proc = launcher.spawn(&child_id);
                }
            }
        })
    }
}

/// Starts `claw run resume CHILD` in its own process group, logging to the child's log dir.
#[derive(Debug, Clone)]
struct Launcher {
    exe: PathBuf,
    home: PathBuf,
    root: PathBuf,
    log: PathBuf,
}

impl Launcher {
    fn spawn(&self, id: &str) -> Option<tokio::process::Child> {
        if let Some(dir) = self.log.parent() {
            crate::fsutil::create_dirs_private(dir).ok()?;
        }
        let log = crate::fsutil::open_append_private(&self.log).ok()?;
        let log2 = log.try_clone().ok()?;
        #[allow(
            clippy::disallowed_methods,
            reason = "a child run is executed by a `claw run resume` process of its own"
        )]
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
