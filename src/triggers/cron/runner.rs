//! Running one `jobs.json` job now, as the seed's cron runner did: the output goes to
//! `cron/output/<job-id>/<YYYYmmddTHHMMSSZ>.log` with the seed's header
//! (`exit_code: N\ntimestamp: TS\n---\n<output>\n`) and the job's `last_run`, `last_status`
//! (`ok` or `error(<exit>)`) and `last_output_file` are updated in `jobs.json`.
//!
//! Shell jobs run with `/bin/sh -c` (claw runs every command through a shell; the seed split it
//! with shlex), in their own process group, with the seed's fixed 300 s timeout and its
//! environment: `JOB_<KEY>` for each arg and `LLM_MODEL`. Workflow jobs run the workflow named by
//! `command` through the engine (args become params) and log the run's id and status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::jobs::{Job, JobType, JobsError, JobsFile};
use crate::engine::{Engine, NewRun, Progress};
use crate::time;

/// The seed's fixed timeout for shell jobs.
pub const SHELL_TIMEOUT: Duration = Duration::from_secs(300);
/// The seed's timeout for webhook jobs.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Output kept in the log per stream (the end is kept when longer).
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;

/// Where a job's output goes besides its log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// `output_channel: file`: the log file only.
    File,
    /// A `channel:target` or a profile: the seed's message ([`channel_message`]) is in the
    /// outbox (`claw serve` delivers it).
    Queued { target: String, ids: Vec<i64> },
    /// It could not be queued (an unknown profile, …): the log file has the output.
    Failed { target: String, error: String },
}

impl Delivery {
    /// For `--json`: `"file"`, `{"queued": target, "messages": [ids]}` or `{"failed": target, "error": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::File => serde_json::json!("file"),
            Self::Queued { target, ids } => serde_json::json!({"queued": target, "messages": ids}),
            Self::Failed { target, error } => serde_json::json!({"failed": target, "error": error}),
        }
    }
}

/// How a job run went.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub job_id: String,
    pub job_name: String,
    pub exit_code: i32,
    /// `ok` or `error(<exit>)`, as stored in `last_status`.
    pub status: String,
    pub output: String,
    pub output_file: PathBuf,
    pub delivery: Delivery,
    /// The run of a workflow job.
    pub run_id: Option<String>,
    pub started_at: DateTime<Utc>,
}

impl JobRun {
    pub fn ok(&self) -> bool {
        self.exit_code == 0
    }
}

/// Why a job could not be run at all (a job that ran and failed is a [`JobRun`] with an error
/// status, not this).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("cannot write the job's output {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs job `job` now because a person asked (`claw cron run`, a dashboard button): the run is
/// [`run_job`]'s, and `actor` is recorded in the audit log as `cron.run` with its outcome (an
/// entry that cannot be written is reported as an error after the run).
pub async fn run_by_hand(
    engine: &Engine,
    job: &str,
    actor: &str,
    cancel: &CancellationToken,
) -> Result<JobRun, JobError> {
    let mut done = run_job(engine, job, None, cancel, &crate::engine::Silent).await?;
    // No daemon may be running: deliver the output now (for a while; the outbox keeps the rest).
    if let Delivery::Queued { target, ids } = &done.delivery {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let owner = format!("{actor}/cron");
        let send =
            crate::msg::route::deliver(engine.store.clone(), &engine.dirs, &owner, ids, until);
        tokio::select! {
            r = send => if let Err(e) = r {
                tracing::warn!("job {}: its output is queued, not delivered yet: {e}", done.job_id);
            },
            () = cancel.cancelled() => {}
        }
        if let Ok(msgs) = engine.store.messages(ids)
            && let Some(dead) = msgs.iter().find(|m| m.status == "dead")
        {
            done.delivery = Delivery::Failed {
                target: target.clone(),
                error: dead
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not delivered".to_owned()),
            };
        }
    }
    engine
        .audit
        .record(&crate::audit::Event::new(
            actor,
            crate::audit::Action::CronRun,
            &done.job_id,
            if done.ok() { "ok" } else { "failed" },
            serde_json::json!({"name": done.job_name, "status": done.status, "run": done.run_id}),
        ))
        .map_err(|source| {
            JobError::Jobs(JobsError::Audit {
                done: format!("job {} ran", done.job_id),
                source,
            })
        })?;
    Ok(done)
}

/// Runs job `job` (an id or unique id prefix) now, in this process, and records the result.
/// `scheduled_for` is the fire that started it (`None` for `claw cron run`).
pub async fn run_job(
    engine: &Engine,
    job: &str,
    scheduled_for: Option<DateTime<Utc>>,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<JobRun, JobError> {
    let file = JobsFile::in_home(&engine.dirs.home);
    let job = file.find(job)?;
    let started_at = Utc::now();
    let (exit_code, output, run_id) = match job.job_type {
        JobType::Shell => {
            let (code, out) = run_shell(&job, engine, cancel).await;
            (code, out, None)
        }
        JobType::Workflow => run_workflow(&job, engine, scheduled_for, cancel, progress).await,
        JobType::Skill => {
            let (code, out) = run_skill(&job, engine, cancel).await;
            (code, out, None)
        }
        JobType::Webhook => {
            let (code, out) = run_webhook(&job, cancel).await;
            (code, out, None)
        }
        JobType::Ssh => {
            let (code, out) = run_ssh(&job, engine, cancel).await;
            (code, out, None)
        }
        JobType::Claude => {
            let (code, out) = run_claude(&job, engine, cancel).await;
            (code, out, None)
        }
    };
    let status = if exit_code == 0 {
        "ok".to_owned()
    } else {
        format!("error({exit_code})")
    };
    // Secret values this process has loaded never reach the log or a channel.
    let output = crate::redact::global().redact(&output).into_owned();
    let output_file = write_log(&file, &job, started_at, exit_code, &output)?;
    let id = job.id.clone();
    let finished = Utc::now();
    let (st, of) = (status.clone(), output_file.display().to_string());
    file.update(|jobs| {
        // The job may have been removed meanwhile: then there is nothing to record.
        if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
            j.last_run = Some(time::iso_utc(finished));
            j.last_status = Some(st);
            j.last_output_file = Some(of);
        }
        Ok::<_, JobsError>(())
    })?;
    let mut done = JobRun {
        job_id: job.id,
        job_name: job.name,
        exit_code,
        status,
        output,
        output_file,
        delivery: Delivery::File,
        run_id,
        started_at,
    };
    done.delivery = deliver(engine, &done, &job.output_channel);
    Ok(done)
}

/// Queues the job's message for `output_channel` (a profile or `channel:target`; `file` or
/// nothing: the log file only). A messaging problem never fails the job: it is logged.
fn deliver(engine: &Engine, done: &JobRun, output_channel: &str) -> Delivery {
    let target = match output_channel.trim() {
        "" | "file" => return Delivery::File,
        t => t.to_owned(),
    };
    let to = crate::msg::route::Recipient::parse(&target);
    let source = format!("cron:{}", done.job_id);
    match crate::msg::route::queue(
        engine.store.as_ref(),
        &engine.dirs,
        &to,
        &channel_message(done),
        &source,
    ) {
        Ok(ids) => Delivery::Queued { target, ids },
        Err(error) => {
            tracing::warn!(
                "job {}: its output was not sent to {target}: {error}",
                done.job_id
            );
            Delivery::Failed { target, error }
        }
    }
}

/// The seed's message for a channel: `[cron] <name> — OK|FAILED(<code>)\n<first 2000 chars>`.
pub fn channel_message(run: &JobRun) -> String {
    let head = if run.ok() {
        "OK".to_owned()
    } else {
        format!("FAILED({})", run.exit_code)
    };
    let body: String = run.output.chars().take(2000).collect();
    format!("[cron] {} — {head}\n{body}", run.job_name)
}

fn write_log(
    file: &JobsFile,
    job: &Job,
    started: DateTime<Utc>,
    exit_code: i32,
    output: &str,
) -> Result<PathBuf, JobError> {
    let dir = file.output_dir(&job.id);
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JobError::Output { path, source }
    };
    crate::fsutil::create_dirs_private(&dir).map_err(err(&dir))?;
    let stamp = time::compact(started);
    let text = format!(
        "exit_code: {exit_code}\ntimestamp: {}\n---\n{output}\n",
        time::iso_utc(started)
    );
    // Two runs in one second get `-2`, `-3`, … rather than overwriting each other.
    for n in 1..1000 {
        let name = if n == 1 {
            format!("{stamp}.log")
        } else {
            format!("{stamp}-{n}.log")
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, text.as_bytes()).map_err(err(&path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(&path)(e)),
        }
    }
    Err(err(&dir)(std::io::Error::other(
        "too many logs in one second",
    )))
}

fn arg_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The end of `bytes`, at most [`MAX_OUTPUT`] of them.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(MAX_OUTPUT);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// A skill job: the skill named by `command`, with the args, as `claw skill run` runs it.
async fn run_skill(job: &Job, engine: &Engine, cancel: &CancellationToken) -> (i32, String) {
    let args = job.args.iter().map(|(k, v)| (k.clone(), arg_text(v)));
    let mut cmd = match crate::skills::runner::cli_command(&engine.dirs, &job.command, args) {
        Ok(c) => c,
        Err(e) => return (1, format!("Exception: cannot find the claw binary: {e}")),
    };
    cmd.current_dir(&engine.dirs.home);
    supervise(
        cmd,
        &format!("skill {}", job.command),
        engine.settings().kill_grace,
        cancel,
    )
    .await
}

/// A `claude` job: `command` is the prompt, asked of the job's `llm_model` provider (else the
/// `job` role's: JOB_MODEL, `llm.roles.job`) and its fallbacks, as an llm step asks. The reply
/// is the output (masked); exit status 1 when every provider failed.
async fn run_claude(job: &Job, engine: &Engine, cancel: &CancellationToken) -> (i32, String) {
    let config = match crate::steps::llm::load_config(&engine.dirs) {
        Ok(c) => c,
        Err(e) => return (1, format!("Exception: {e}")),
    };
    crate::redact::register_global(config.secret_values().iter().map(String::as_str));
    // The seed's `llm_model` names a provider (claude, gpt); another name is taken as a model
    // of the job role's provider (`claude-sonnet`).
    let named = (!job.llm_model.is_empty()).then_some(job.llm_model.as_str());
    let (first, model) = match named {
        Some(n) if config.provider(n).is_err() => (None, Some(n.to_owned())),
        other => (other, None),
    };
    let chain = config.chain(crate::llm::Role::Job, first);
    let mut req = crate::llm::Request::prompt(&job.command);
    req.model = model;
    let target = format!("cron:{}", job.id);
    let ask = crate::llm::Ask {
        config: &config,
        chain: &chain,
        sink: &mut crate::llm::Discard,
        cancel,
        actor: "cron",
        target: &target,
        audit_home: Some(&engine.dirs.home),
        kill_grace: engine.settings().kill_grace,
    };
    match crate::llm::complete(ask, &req).await {
        Ok((reply, _)) => (0, crate::redact::global().redact(&reply.text).into_owned()),
        Err((e, _)) => (1, format!("Exception: {e}")),
    }
}

/// A webhook job: `POST command` with the job's `args` as the JSON body (`{}` without args),
/// 30 s, as the seed did. Exit status 0 for a 2xx answer.
async fn run_webhook(job: &Job, cancel: &CancellationToken) -> (i32, String) {
    crate::steps::http::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .user_agent(concat!("claw/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return (1, format!("Exception: {e}")),
    };
    let body = serde_json::Value::Object(job.args.clone());
    let send = async {
        let resp = client
            .post(job.command.trim())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, text))
    };
    tokio::select! {
        r = send => match r {
            Ok((status, text)) => {
                let code = if status.is_success() { 0 } else { 1 };
                (code, format!("HTTP {status}\n{}", tail(text.as_bytes())))
            }
            Err(e) => (1, format!("Exception: {e}")),
        },
        () = cancel.cancelled() => (1, "Exception: cancelled".into()),
    }
}

/// The command policies on a job's command: a cron job has no run to hold an approval gate, so
/// `require_approval` refuses it as `deny` does, naming the rule (`Exception: refused …`).
fn policy_refusal(job: &Job, place: &str) -> Option<(i32, String)> {
    let subjects = [crate::policy::Subject::Command(job.command.clone())];
    match crate::policy::gate(place, "cron", &format!("cron:{}", job.id), &subjects) {
        crate::policy::Gate::Allow => None,
        crate::policy::Gate::Deny(why) => Some((1, format!("Exception: {why}"))),
        crate::policy::Gate::RequireApproval { rule, message } => Some((
            1,
            format!(
                "Exception: {}",
                crate::policy::refuse_without_run(&rule, &message)
            ),
        )),
    }
}

async fn run_shell(job: &Job, engine: &Engine, cancel: &CancellationToken) -> (i32, String) {
    if let Some(refused) = policy_refusal(job, "cron job") {
        return refused;
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "a shell job's command; the supervisor runs it"
    )]
    let mut cmd = crate::proc::Command::new("/bin/sh");
    cmd.arg("-c").arg(&job.command);
    for (k, v) in &job.args {
        cmd.env(format!("JOB_{}", k.to_ascii_uppercase()), arg_text(v));
    }
    let model = if job.llm_model.is_empty() {
        crate::config::env::var("JOB_MODEL").unwrap_or_else(|| "claude".into())
    } else {
        job.llm_model.clone()
    };
    cmd.env("LLM_MODEL", model);
    cmd.env("CLAW_JOB_ID", &job.id);
    cmd.current_dir(&engine.dirs.home);
    supervise(
        cmd,
        &format!("Command '{}'", job.command),
        engine.settings().kill_grace,
        cancel,
    )
    .await
}

/// An `ssh` job: `command` on every host of the `target` arg, each host's output under a
/// `── alias: status` line; exit 0 only when every host succeeded. Audited per host.
async fn run_ssh(job: &Job, engine: &Engine, cancel: &CancellationToken) -> (i32, String) {
    if let Some(refused) = policy_refusal(job, "cron ssh job") {
        return refused;
    }
    let dirs = &engine.dirs;
    let target = job.args.get("target").map(arg_text).unwrap_or_default();
    let registry = match crate::ssh::Registry::find(&dirs.root, &dirs.home) {
        Ok(r) => r,
        Err(e) => return (1, format!("Exception: {}", e.render())),
    };
    let hosts: Vec<crate::ssh::Host> = match registry.resolve(&target) {
        Ok(h) => h.into_iter().cloned().collect(),
        Err(e) => return (1, format!("Exception: {}", e.0)),
    };
    let pool = crate::ssh::shared_pool(&dirs.home);
    let cmd = crate::ssh::Command {
        command: job.command.clone(),
        env: Vec::new(),
        timeout: SHELL_TIMEOUT,
        sudo: false,
    };
    let results = crate::ssh::fan_out(
        &pool,
        &hosts,
        &cmd,
        crate::ssh::FanOut {
            parallel: 10,
            fail_fast: false,
        },
        cancel,
        std::sync::Arc::new(|_: &str, _: bool, _: &[u8]| {}),
    )
    .await;
    let mut out = String::new();
    let mut failed = 0;
    for (h, o) in &results {
        let status = match (&o.error, o.exit_code) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, Some(c)) => format!("exit {c}"),
            (None, None) => "no exit status".into(),
        };
        if !o.ok() {
            failed += 1;
        }
        out.push_str(&format!("── {}: {status}\n", h.alias));
        out.push_str(&String::from_utf8_lossy(&o.stdout));
        out.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    (i32::from(failed > 0), out)
}

/// Runs a prepared command under the process supervisor ([`crate::proc`]: its own process
/// group, SIGTERM then SIGKILL after the grace period, masked output) with the seed's 300 s limit;
/// its exit code and output (stdout then stderr), or the seed's `Exception: …` text.
async fn supervise(
    cmd: crate::proc::Command,
    what: &str,
    kill_grace: Duration,
    cancel: &CancellationToken,
) -> (i32, String) {
    use crate::proc::{self, End};
    let spec = proc::Spec {
        stdout_capture: MAX_OUTPUT,
        stderr_tail: MAX_OUTPUT,
        redactor: (*crate::redact::global()).clone(),
        ..proc::Spec::new(what, SHELL_TIMEOUT, kill_grace)
    };
    let done = proc::run(cmd, &spec, cancel).await;
    match done.end {
        End::Exited(status) => {
            let code = status.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt as _;
                128 + status.signal().unwrap_or(0)
            });
            let mut text = done.stdout;
            text.push_str(&done.stderr_tail);
            (code, text)
        }
        End::TimedOut => (
            1,
            format!(
                "Exception: {what} timed out after {} seconds",
                SHELL_TIMEOUT.as_secs()
            ),
        ),
        End::Cancelled => (1, "Exception: cancelled".to_owned()),
        End::NotStarted(why) => (1, format!("Exception: {why}")),
        End::Lost => (1, "Exception: lost track of the process".to_owned()),
    }
}

/// A workflow by path, file stem or `name:` in the workflow folders.
/// The workflow a job's command names, by the catalogue's rules (a relative path is taken from
/// the current directory), with the seed's "workflow not found" wording (lower-case, as every claw message).
fn find_workflow(engine: &Engine, arg: &str) -> Result<crate::workflow::Workflow, String> {
    use crate::workflow::catalogue::{Catalogue, FindError, LoadError};
    Catalogue::new(&engine.dirs).load(arg).map_err(|e| match e {
        LoadError::Find(FindError::NotFound { looked, help, .. }) => format!(
            "workflow not found: {arg} (looked in {}){}",
            FindError::looked_in(&looked),
            help.map(|h| format!("; {h}")).unwrap_or_default()
        ),
        other => other.to_string(),
    })
}

async fn run_workflow(
    job: &Job,
    engine: &Engine,
    scheduled_for: Option<DateTime<Utc>>,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> (i32, String, Option<String>) {
    let wf = match find_workflow(engine, job.command.trim()) {
        Ok(wf) => wf,
        Err(e) => return (1, format!("Exception: {e}"), None),
    };
    let given: Vec<(String, String)> = job
        .args
        .iter()
        .map(|(k, v)| (k.clone(), arg_text(v)))
        .collect();
    let params = match wf.bind_params(&given) {
        Ok(p) => p,
        Err(errs) => return (1, format!("Exception: {}", errs.join("; ")), None),
    };
    let trigger = serde_json::json!({
        "type": "cron",
        "job": job.id,
        "job_name": job.name,
        "scheduled_for": scheduled_for.map(|t| time::rfc3339(&t)),
    });
    let run = match engine.create_run(&NewRun {
        workflow: &wf,
        params,
        trigger,
        dry_run: false,
        claim: true,
    }) {
        Ok(r) => r,
        Err(e) => return (1, format!("Exception: {e}"), None),
    };
    match engine
        .drive_loaded(&run.id, Some(&wf), cancel, progress)
        .await
    {
        Ok(done) => {
            let code = i32::from(done.status != crate::store::RunStatus::Succeeded);
            let mut text = format!("run {} {}", done.id, done.status);
            if let Some(e) = &done.error {
                text.push_str(&format!("\n{e}"));
            }
            (code, text, Some(done.id))
        }
        Err(e) => (1, format!("Exception: {e}"), Some(run.id)),
    }
}
