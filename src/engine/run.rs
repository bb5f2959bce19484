//! The execution of one run: the DAG loop, then the rollback and compensation phases.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, Event, Progress, Result, now_ms, owner};
use crate::params::env_key;
use crate::steps::{self, StepInput, StepOutcome, StepReport};
use crate::store::{Phase, RunRecord, RunStatus, StepRecord, StepStatus};
use crate::workflow::load::strip_braces;
use crate::workflow::{Condition, OnBusy, OnFailure, Step, StepKind, Workflow};

mod waits;

/// How often the loop looks at the store (cancel requests, decisions) while steps run.
const POLL: Duration = Duration::from_millis(250);
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
type Done = (String, u32, StepReport);

pub(super) struct Exec<'a> {
    engine: &'a Engine,
    wf: Workflow,
    run: RunRecord,
    /// Every step record of the run, by record name (`name`, `rollback:name`, `compensate:name`).
    recs: HashMap<String, StepRecord>,
    cancel: CancellationToken,
    progress: &'a dyn Progress,
    stop: Option<Stop>,
    log_dir: PathBuf,
    base_env: Option<serde_json::Value>,
    /// Records written but not yet committed; [`Exec::flush`] commits them in one transaction
    /// and is called before anything is started or awaited.
    unflushed: Vec<StepRecord>,
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
        Ok(Self {
            engine,
            wf,
            run,
            recs,
            progress,
            stop: None,
            log_dir,
            base_env: None,
            unflushed: Vec::new(),
            redactor: crate::redact::Redactor::default(),
            secret_values: std::collections::BTreeSet::new(),
            last_heartbeat: now_ms(),
            deadline: None,
            audit_buf: Vec::new(),
            halt: cancel.child_token(),
            interrupting: false,
            cancel,
        })
    }

    fn store(&self) -> &dyn crate::store::Store {
        self.engine.store.as_ref()
    }

    pub(super) async fn execute(mut self) -> Result<RunRecord> {
        std::fs::create_dir_all(&self.log_dir).map_err(|e| {
            EngineError::Io(format!(
                "cannot create the log directory {}: {e}",
                self.log_dir.display()
            ))
        })?;
        if self.run.status == RunStatus::Queued && !self.admit().await? {
            return self.reload();
        }
        if self.run.cancel_requested {
            self.stop = Some(Stop::Cancel);
        }
        let action = if self.recs.is_empty() {
            "workflow.run.started"
        } else {
            "workflow.run.resumed"
        };
        self.engine.audit(
            &crate::audit::Event::new(
                &Engine::actor_of(&self.run),
                action,
                &self.run.id,
                "ok",
                serde_json::json!({
                    "workflow": self.wf.name,
                    "dry_run": self.run.dry_run,
                    "params": self.run.params.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
                }),
            ),
            self.progress,
        );
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
        if failed && self.stop != Some(Stop::Cancel) {
            self.sequential_phase(Phase::Compensation).await?;
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
                            self.engine.cancel(&other)?;
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
        if now - self.last_heartbeat >= owner::HEARTBEAT_MS {
            self.store()
                .heartbeat(&self.run.id, self.engine.owner(), now + owner::LEASE_MS)?;
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
                .wf
                .steps
                .iter()
                .find(|s| s.name == n)
                .and_then(|s| s.compensation.as_deref())
                .map(|c| (Phase::Compensation, c));
        }
        self.wf
            .steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| (Phase::Main, s))
    }

    /// Steps left `running` by a dead owner: idempotent ones run again, the others wait.
    fn recover_interrupted(&mut self) -> Result<()> {
        // Approval gates reopen their stored request (same deadline) when started again.
        for rec in self.recs.values_mut() {
            if rec.status == StepStatus::Waiting {
                rec.status = StepStatus::Pending;
            }
        }
        let mut changed = Vec::new();
        let mut waiting = false;
        let names: Vec<String> = self
            .recs
            .values()
            .filter(|r| r.status == StepStatus::Running)
            .map(|r| r.name.clone())
            .collect();
        for name in names {
            let idempotent =
                self.step_def(&name).is_none_or(|(_, s)| s.idempotent) || self.run.dry_run;
            let Some(rec) = self.recs.get_mut(&name) else {
                continue;
            };
            if idempotent {
                rec.status = StepStatus::Pending;
                rec.message = Some(format!(
                    "attempt {} was interrupted (claw stopped); running it again because the step is idempotent",
                    rec.attempts
                ));
            } else {
                rec.status = StepStatus::Interrupted;
                rec.message = Some(format!(
                    "interrupted while running (claw stopped) and not idempotent: it may or may not have done its work. \
                     Run it again with `claw run approve {run} {name}`, or mark it failed with `claw run reject {run} {name}`",
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

    /// Whether every step in progress only waits (an approval gate, a child run): no process of
    /// this run is working.
    fn only_waits(&self) -> bool {
        self.recs.values().all(|r| {
            !matches!(r.status, StepStatus::Running | StepStatus::Waiting)
                || self.step_def(&r.name).is_some_and(|(_, s)| {
                    matches!(s.kind, StepKind::Approval(_) | StepKind::Workflow(_))
                })
        })
    }

    fn status_of(&self, name: &str) -> StepStatus {
        self.recs
            .get(name)
            .map_or(StepStatus::Pending, |r| r.status)
    }

    fn main_failed(&self) -> bool {
        self.wf
            .steps
            .iter()
            .any(|s| self.status_of(&s.name) == StepStatus::Failed)
            || self.stop == Some(Stop::Timeout)
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

    /// The values of the secrets a step mentions (`${{ secrets.NAME }}` in any of its fields or
    /// the workflow's `env`), read from the vault; they join the run's redactor.
    fn load_secrets(
        &mut self,
        step: &Step,
    ) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
        use crate::expr::secrets_in;
        let mut names: Vec<String> = Vec::new();
        let mut add = |t: &str| {
            for n in secrets_in(t) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        };
        for (_, v) in self.wf.env.iter().chain(&step.env) {
            add(v);
        }
        for (_, v) in &step.args {
            add(&json_str(v));
        }
        if let StepKind::Shell(sh) = &step.kind {
            add(&sh.command);
            sh.cwd
                .as_deref()
                .into_iter()
                .chain(sh.stdin.as_deref())
                .for_each(&mut add);
        }
        if let StepKind::Http(http) = &step.kind {
            http.templates().into_iter().for_each(&mut add);
        }
        let mut out = std::collections::BTreeMap::new();
        if names.is_empty() {
            return Ok(out);
        }
        let vault = crate::vault::Vault::new(&self.engine.dirs.home);
        for name in names {
            match vault.get(&name) {
                Ok(Some(secret)) => {
                    out.insert(name, secret.expose().to_owned());
                }
                Ok(None) => {
                    return Err(format!(
                        "secret `{name}` is not in the vault (store it with `claw vault set {name}`)"
                    ));
                }
                Err(e) => return Err(format!("cannot read secret `{name}`: {e}")),
            }
        }
        let before = self.secret_values.len();
        self.secret_values.extend(out.values().cloned());
        crate::redact::register_global(out.values().map(String::as_str));
        if self.secret_values.len() != before {
            self.redactor =
                crate::redact::Redactor::new(self.secret_values.iter().map(String::as_str));
        }
        Ok(out)
    }

    /// [`Exec::context`] plus `secrets` (for fields other than shell commands).
    fn context_with(
        &mut self,
        secrets: &std::collections::BTreeMap<String, String>,
    ) -> minijinja::Value {
        if secrets.is_empty() {
            return self.context();
        }
        let mut ctx = self.context_json();
        if let Some(obj) = ctx.as_object_mut() {
            obj.insert("secrets".into(), serde_json::json!(secrets));
        }
        minijinja::Value::from(minijinja::value::Serde(&ctx))
    }

    /// The expression context: params, env, steps, run, trigger.
    fn context(&mut self) -> minijinja::Value {
        let ctx = self.context_json();
        minijinja::Value::from(minijinja::value::Serde(&ctx))
    }

    fn context_json(&mut self) -> serde_json::Value {
        let env = self
            .base_env
            .get_or_insert_with(|| {
                let mut m: serde_json::Map<String, serde_json::Value> =
                    crate::config::env::process_env()
                        .into_iter()
                        .filter_map(|(k, v)| {
                            Some((k.into_string().ok()?, v.into_string().ok()?.into()))
                        })
                        .collect();
                for (k, v) in &self.wf.env {
                    if !crate::expr::has_expressions(v) {
                        m.insert(k.clone(), v.clone().into());
                    }
                }
                serde_json::Value::Object(m)
            })
            .clone();
        let mut steps = serde_json::Map::new();
        for s in &self.wf.steps {
            let entry = match self.recs.get(&s.name) {
                Some(r) => serde_json::json!({
                    "status": r.status.as_str(),
                    "exit_code": r.exit_code,
                    "stdout": r.stdout_tail,
                    "outputs": r.outputs,
                    "attempts": r.attempts,
                }),
                None => {
                    serde_json::json!({"status": "pending", "exit_code": null, "stdout": "", "outputs": {}})
                }
            };
            steps.insert(s.name.clone(), entry);
        }
        let ctx = serde_json::json!({
            "params": self.run.params,
            "env": env,
            "steps": steps,
            "trigger": self.run.trigger,
            "run": {
                "id": self.run.id,
                "workflow": self.run.workflow,
                "created_at": self.run.created_at,
                "started_at": self.run.started_at,
                "dry_run": self.run.dry_run,
            },
        });
        ctx
    }

    fn needs_context(step: &Step) -> bool {
        use crate::expr::has_expressions as h;
        step.if_expr.is_some()
            || step.env.iter().any(|(_, v)| h(v))
            || step.args.iter().any(|(_, v)| h(&json_str(v)))
            || match &step.kind {
                StepKind::Shell(s) => {
                    h(&s.command)
                        || s.cwd.as_deref().is_some_and(h)
                        || s.stdin.as_deref().is_some_and(h)
                }
                StepKind::Http(http) => http.templates().into_iter().any(h),
                StepKind::Approval(_)
                | StepKind::Workflow(_)
                | StepKind::Skill(_)
                | StepKind::Unavailable { .. } => false,
            }
    }

    /// Renders a step's fields into the input of one attempt.
    fn prepare(
        &mut self,
        step: &Step,
        phase: Phase,
        attempt: u32,
    ) -> std::result::Result<StepInput, String> {
        let name = rec_name(phase, step);
        let seq = self.recs.get(&name).map_or(step.index as i64, |r| r.seq);
        let secrets = self.load_secrets(step)?;
        let ctx = if Self::needs_context(step)
            || self
                .wf
                .env
                .iter()
                .any(|(_, v)| crate::expr::has_expressions(v))
        {
            Some(self.context_with(&secrets))
        } else {
            None
        };
        let eval = &self.engine.eval;
        let plain = |text: &str| -> std::result::Result<String, String> {
            match &ctx {
                Some(c) if crate::expr::has_expressions(text) => {
                    eval.render_plain(text, c).map_err(|e| e.to_string())
                }
                _ => Ok(text.to_owned()),
            }
        };
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.wf.env {
            env.push((
                k.clone(),
                plain(v).map_err(|e| format!("cannot render env `{k}`: {e}"))?,
            ));
        }
        for (k, v) in &step.env {
            env.push((
                k.clone(),
                plain(v).map_err(|e| format!("cannot render env `{k}`: {e}"))?,
            ));
        }
        let mut rendered_args = Vec::with_capacity(step.args.len());
        for (k, v) in &step.args {
            let text = json_str(v);
            let text = plain(&text).map_err(|e| format!("cannot render arg `{k}`: {e}"))?;
            rendered_args.push((k.clone(), text.clone()));
            env.push((env_key("WF_", k), text));
        }
        if let serde_json::Value::Object(params) = &self.run.params {
            for (k, v) in params {
                env.push((env_key("CLAW_PARAM_", k), json_str(v)));
            }
        }
        // Secrets reach the command through its environment, never its command line.
        for (k, v) in &secrets {
            env.push((env_key("CLAW_SECRET_", k), v.clone()));
        }
        let base = file_name(seq, &name);
        let outputs_path = self.log_dir.join(format!("{base}.{attempt}.out"));
        env.extend([
            ("CLAW_RUN_ID".to_owned(), self.run.id.clone()),
            ("CLAW_WORKFLOW".to_owned(), self.wf.name.clone()),
            ("CLAW_STEP".to_owned(), name.clone()),
            ("CLAW_ATTEMPT".to_owned(), attempt.to_string()),
            (
                "CLAW_IDEMPOTENCY_KEY".to_owned(),
                format!("{}/{}/{}", self.run.id, name, attempt),
            ),
            ("CLAW_OUTPUT".to_owned(), outputs_path.display().to_string()),
        ]);
        let (command, cwd, stdin) = match &step.kind {
            StepKind::Shell(s) => {
                let command = match &ctx {
                    Some(c) if crate::expr::has_expressions(&s.command) => eval
                        .render_shell_with(&s.command, c, &|name| {
                            secrets
                                .contains_key(name)
                                .then(|| env_key("CLAW_SECRET_", name))
                        })
                        .map_err(|e| format!("cannot render the command: {e}"))?,
                    _ => s.command.clone(),
                };
                let cwd = s.cwd.as_deref().map(plain).transpose()?.map(PathBuf::from);
                let stdin = s.stdin.as_deref().map(plain).transpose()?;
                (command, cwd, stdin)
            }
            StepKind::Http(_)
            | StepKind::Approval(_)
            | StepKind::Workflow(_)
            | StepKind::Skill(_)
            | StepKind::Unavailable { .. } => (String::new(), None, None),
        };
        let kind = match &step.kind {
            // Rendered as plain text: a URL or a header is not a shell command.
            StepKind::Http(http) => StepKind::Http(http.render(&plain)?),
            other => other.clone(),
        };
        // A skill is looked up and checked (script, dependencies, arguments, vault grants) now:
        // what cannot work fails the step before anything starts.
        let skill = match &step.kind {
            StepKind::Skill(s) => {
                let launch = crate::skills::runner::prepare_step(
                    &self.engine.dirs,
                    s,
                    &rendered_args,
                    &outputs_path,
                )?;
                let before = self.secret_values.len();
                self.secret_values
                    .extend(launch.secret_values().map(str::to_owned));
                if self.secret_values.len() != before {
                    self.redactor =
                        crate::redact::Redactor::new(self.secret_values.iter().map(String::as_str));
                }
                Some(Box::new(launch))
            }
            _ => None,
        };
        Ok(StepInput {
            kind,
            command,
            env,
            cwd,
            stdin,
            timeout: skill.as_ref().map_or(step.timeout, |l| l.timeout),
            kill_grace: self.engine.settings.kill_grace,
            log_path: self.log_dir.join(format!("{base}.log")),
            max_log_bytes: self.engine.settings.max_step_log_bytes,
            outputs_path,
            redactor: self.redactor.clone(),
            skill,
        })
    }

    /// The `skill.run` audit entry of a skill step's attempt (other kinds: nothing).
    fn audit_skill(&self, step: &Step, outcome: &str, reason: &str, exit_code: Option<i32>) {
        if let StepKind::Skill(s) = &step.kind {
            let detail = serde_json::json!({
                "run": self.run.id,
                "workflow": self.wf.name,
                "step": step.name,
                "exit_code": exit_code,
                "reason": self.redactor.redact(reason),
            });
            let event =
                crate::skills::audit_event(&Engine::actor_of(&self.run), &s.name, outcome, detail);
            self.engine.audit(&event, self.progress);
        }
    }

    /// Records a step's new state; it is committed at the next [`Exec::flush`].
    fn record(&mut self, mut rec: StepRecord) -> Result<()> {
        if let Some(m) = &rec.message {
            rec.message = Some(self.redactor.redact(m).into_owned());
        }
        let before = self.recs.get(&rec.name).map(|r| (r.status, r.attempts));
        if before != Some((rec.status, rec.attempts)) {
            let action = match rec.status {
                StepStatus::Running => Some("workflow.step.started"),
                s if s.is_finished() => Some("workflow.step.finished"),
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
        self.unflushed.retain(|r| r.name != rec.name);
        self.unflushed.push(rec.clone());
        self.recs.insert(rec.name.clone(), rec);
        Ok(())
    }

    /// Commits the recorded states (one transaction: a finished step and the start of the next
    /// one cost one fsync together).
    fn flush(&mut self) -> Result<()> {
        if !self.unflushed.is_empty() {
            self.engine
                .store
                .record_steps(&self.run.id, &self.unflushed, None)?;
            self.unflushed.clear();
        }
        self.write_audit(false);
        Ok(())
    }

    /// Writes the buffered step entries to the audit log (synced with the next synced entry:
    /// the store already holds these transitions durably).
    fn write_audit(&mut self, sync: bool) {
        if self.audit_buf.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.audit_buf);
        if let Err(e) = self.engine.audit.record_batch(&events, sync) {
            let msg = format!("warning: {e}");
            self.progress.event(&Event::Note { message: &msg });
        }
    }

    fn finish_record(
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

    fn skip(&mut self, step: &Step, phase: Phase, reason: &str) -> Result<()> {
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

    /// Marks a step running (committed) and starts its attempt, or records its dry-run result.
    fn start(
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
        // A gate reopened after a restart keeps its attempt (and its request and deadline).
        if !(matches!(step.kind, StepKind::Approval(_)) && rec.attempts > 0) {
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
            rec.message =
                Some(match &step.kind {
                    StepKind::Approval(_) => "dry-run: gate auto-approved".to_owned(),
                    kind => format!(
                        "dry-run: would execute {}: {}{}",
                        kind.type_name(),
                        kind.describe(),
                        if step.if_expr.as_deref().is_some_and(|e| {
                            !crate::workflow::load::referenced_steps(e).is_empty()
                        }) {
                            " (its `if` is decided at run time)"
                        } else {
                            ""
                        }
                    ),
                });
            self.record(rec.clone())?;
            self.progress.event(&Event::StepFinished { step: &rec });
            return Ok(());
        }
        match &step.kind {
            StepKind::Approval(gate) => return self.open_gate(step, gate, rec, tasks),
            StepKind::Workflow(child) => return self.start_child(step, child, rec, tasks),
            _ => {}
        }
        let input = match self.prepare(step, phase, attempt) {
            Ok(i) => i,
            Err(why) => {
                self.audit_skill(step, "refused", &why, None);
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
        self.flush()?;
        self.progress.event(&Event::StepStarted {
            name: &name,
            attempt,
        });
        tracing::debug!(run = %self.run.id, step = %name, attempt, "step started");
        let cancel = self.halt.clone();
        tasks.spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = sleep(delay) => {}
                    () = cancel.cancelled() => {
                        return (name, attempt, StepReport { outcome: StepOutcome::Cancelled, ..StepReport::failed("") });
                    }
                }
            }
            let report = steps::run(&input, &cancel).await;
            (name, attempt, report)
        });
        Ok(())
    }

    /// Records a finished attempt. Returns the delay before a retry, if the step gets one.
    fn complete(&mut self, name: &str, report: StepReport) -> Result<Option<Duration>> {
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
        self.audit_skill(&step, outcome, &why, report.exit_code);
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
        if matches!(step.kind, StepKind::Approval(_)) {
            self.gate_closed(&step, &rec)?;
        }
        self.progress.event(&Event::StepFinished { step: &rec });
        if failed && phase == Phase::Main && self.stop.is_none() {
            self.stop = self.stop_after_failure(&step);
        }
        Ok(None)
    }

    /// Applies decisions on interrupted steps; returns true if some step still waits.
    fn apply_decisions(&mut self, phase_filter: Option<Phase>) -> Result<bool> {
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
                .and_then(|s| s.decision.clone().map(|d| (d, s.decided_by.clone())));
            if self.stop == Some(Stop::Cancel) {
                self.finish_record(
                    &name,
                    StepStatus::Cancelled,
                    Some("run cancelled while waiting for a decision".into()),
                )?;
                continue;
            }
            match decided {
                Some((d, who)) if d == "retry" => {
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
                Some((d, who)) if d == "skip" => {
                    let msg = format!(
                        "interrupted; taken as done (not run again) on the decision of {}",
                        who.unwrap_or_default()
                    );
                    self.finish_record(&name, StepStatus::Skipped, Some(msg))?;
                }
                Some((_, who)) => {
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

    async fn wait_for_decision(&mut self, phase: Option<Phase>) -> Result<()> {
        self.flush()?;
        if self.run.status != RunStatus::Waiting {
            self.store()
                .update_run(&self.run.id, RunStatus::Waiting, None, None, now_ms())?;
            self.run.status = RunStatus::Waiting;
            let names: Vec<String> = self
                .recs
                .values()
                .filter(|r| r.status == StepStatus::Interrupted)
                .map(|r| r.name.clone())
                .collect();
            let msg = format!(
                "run {} waits for a decision on {}: `claw run approve {} STEP` runs it again, `claw run reject {} STEP` marks it failed",
                self.run.id,
                names.join(", "),
                self.run.id,
                self.run.id
            );
            self.progress.event(&Event::Waiting { message: &msg });
        }
        while self.apply_decisions(phase)? {
            self.flush()?;
            self.poll_cancel()?;
            self.heartbeat()?;
            tokio::select! {
                () = sleep(Duration::from_millis(500)) => {}
                () = self.cancel.cancelled() => { self.stop = Some(Stop::Cancel); }
            }
        }
        self.store()
            .update_run(&self.run.id, RunStatus::Running, None, None, now_ms())?;
        self.run.status = RunStatus::Running;
        Ok(())
    }

    /// A step stopped by the daemon's shutdown: an idempotent one (or a gate or sub-workflow,
    /// which pick up their stored request or child again) runs again on resume; any other waits
    /// for a person, as after a crash.
    fn record_interrupted(&mut self, step: &Step, mut rec: StepRecord) -> Result<()> {
        let again = step.idempotent
            || self.run.dry_run
            || matches!(step.kind, StepKind::Approval(_) | StepKind::Workflow(_));
        if again {
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
    fn leave_interrupted(mut self) -> Result<RunRecord> {
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
        self.engine.audit(
            &crate::audit::Event::new(
                &Engine::actor_of(&self.run),
                "workflow.run.interrupted",
                &self.run.id,
                "interrupted",
                serde_json::json!({"workflow": self.wf.name, "waiting": waiting}),
            ),
            self.progress,
        );
        self.reload()
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
        let mut next_poll = Instant::now() + POLL;
        loop {
            // Start what can start.
            let steps = self.wf.steps.clone();
            if self.interrupting && running == 0 {
                return Ok(());
            }
            for step in &steps {
                if running >= self.wf.max_parallel || self.interrupting {
                    break;
                }
                if self.status_of(&step.name) != StepStatus::Pending {
                    continue;
                }
                if !step
                    .needs
                    .iter()
                    .all(|&d| self.status_of(&steps[d].name).is_finished())
                {
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
                if !steps.iter().any(|s| {
                    self.status_of(&s.name) == StepStatus::Pending
                        && s.needs
                            .iter()
                            .all(|&d| self.status_of(&steps[d].name).is_finished())
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
                done = tasks.join_next() => {
                    let Some(done) = done else { running = 0; continue };
                    running -= 1;
                    let (name, _attempt, report) = done.map_err(|e| EngineError::Io(format!("a step task failed: {e}")))?;
                    if let Some(delay) = self.complete(&name, report)?
                        && let Some((phase, step)) = self.step_def(&name).map(|(p, s)| (p, s.clone())) {
                            self.start(&step, phase, &mut tasks, delay)?;
                            running += 1;
                        }
                }
                () = sleep_until(next_poll) => {
                    next_poll = Instant::now() + POLL;
                    self.poll_cancel()?;
                    self.heartbeat()?;
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
        // Compensation records are found by their owner's name.
        let fresh_cancel = CancellationToken::new();
        let saved_halt = std::mem::replace(&mut self.halt, fresh_cancel.child_token());
        let saved = std::mem::replace(&mut self.cancel, fresh_cancel);
        let saved_stop = self.stop.take();
        for step in &list {
            let name = rec_name(phase, step);
            loop {
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
                    let Some(done) = tasks.join_next().await else {
                        break;
                    };
                    let (n, _, report) =
                        done.map_err(|e| EngineError::Io(format!("a step task failed: {e}")))?;
                    match self.complete(&n, report)? {
                        Some(d) => delay = d,
                        None => break,
                    }
                }
            }
        }
        self.flush()?;
        self.cancel = saved;
        self.halt = saved_halt;
        self.stop = saved_stop;
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
        // The last step records and the run's end in one transaction.
        let last = std::mem::take(&mut self.unflushed);
        // Step entries first: the run's own (synced) entry then carries them to disk.
        self.write_audit(false);
        self.store().finish_run(
            &self.run.id,
            &last,
            status,
            error.as_deref(),
            outputs.as_ref(),
            now_ms(),
        )?;
        tracing::info!(run = %self.run.id, workflow = %self.wf.name, status = %status.as_str(), error = error.as_deref().unwrap_or_default(), "run finished");
        self.engine.audit(
            &crate::audit::Event::new(
                &Engine::actor_of(&self.run),
                "workflow.run.finished",
                &self.run.id,
                status.as_str(),
                serde_json::json!({"workflow": self.wf.name, "error": error}),
            ),
            self.progress,
        );
        if let Err(e) = self.engine.prune(&self.wf.name) {
            let msg = format!("could not prune old runs: {e}");
            self.progress.event(&Event::Note { message: &msg });
        }
        self.cancel.cancel();
        self.reload()
    }
}
