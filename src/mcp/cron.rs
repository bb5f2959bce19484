//! The cron tools (`cron_list_jobs`, `cron_add_job`, `cron_remove_job`, `cron_enable_job`,
//! `cron_disable_job`, `cron_job_logs`) on the seed's `cron/jobs.json`, and `run_skill`.
//! Changes are audited as the client (`mcp:<name>`), as `claw cron` audits its user.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{Answer, Server, arg_int, arg_str};
use crate::triggers::cron::jobs::{Job, JobType, JobsFile};

impl Server {
    fn jobs_file(&self) -> JobsFile {
        JobsFile::in_home(&self.dirs.home)
    }

    pub(super) fn cron_list_jobs(&self) -> Answer {
        let jobs = self
            .jobs_file()
            .load()
            .map_err(|e| format!("Error listing cron jobs: {e}"))?;
        if jobs.is_empty() {
            return Ok(("No cron jobs.".into(), json!({"jobs": []})));
        }
        let now = Utc::now();
        let mut lines = vec![format!("{} cron job(s):", jobs.len()), String::new()];
        let mut items = Vec::new();
        for j in &jobs {
            let next = j
                .compiled()
                .ok()
                .filter(|_| j.is_enabled())
                .and_then(|s| s.next_after(now))
                .map(|t| crate::time::rfc3339(&t));
            lines.push(format!(
                "  [{}] {} ({}) {} — {} — {}{}",
                j.short_id(),
                j.name,
                j.job_type.as_str(),
                j.schedule,
                if j.is_enabled() {
                    "enabled"
                } else {
                    "disabled"
                },
                j.last_status.as_deref().unwrap_or("never run"),
                next.as_deref()
                    .map(|n| format!(" — next {n}"))
                    .unwrap_or_default()
            ));
            items.push(json!({
                "id": j.id,
                "name": j.name,
                "schedule": j.schedule,
                "job_type": j.job_type.as_str(),
                "command": j.command,
                "output_channel": j.output_channel,
                "enabled": j.is_enabled(),
                "last_run": j.last_run,
                "last_status": j.last_status,
                "next_run": next,
            }));
        }
        Ok((lines.join("\n"), json!({"jobs": items})))
    }

    pub(super) fn cron_add_job(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let name = arg_str(a, "name").trim();
        let schedule = arg_str(a, "schedule");
        let command = arg_str(a, "command");
        let fail = |e: String| format!("Error adding cron job '{name}': {e}");
        if name.is_empty() {
            return Err(fail("the job needs a non-empty name".into()));
        }
        let kind = arg_str(a, "job_type");
        let job_type = JobType::parse(kind).ok_or_else(|| {
            fail(format!(
                "unknown job_type `{kind}` (expected one of {})",
                JobType::NAMES.join(", ")
            ))
        })?;
        crate::scheduler::Schedule::parse(schedule, None)
            .map_err(|e| fail(format!("invalid schedule: {e}")))?;
        // What the job will start is checked now, not when it first fires.
        match job_type {
            JobType::Workflow => {
                self.load(command).map_err(fail)?;
            }
            JobType::Skill => {
                crate::skills::find(&self.dirs, command).map_err(|e| fail(e.to_string()))?;
            }
            JobType::Ssh => {
                return Err(fail(
                    "ssh jobs need a target argument: add them with `claw cron add --type ssh --arg target=…`".into(),
                ));
            }
            JobType::Shell | JobType::Webhook | JobType::Claude => {}
        }
        let mut job = Job::new(name, schedule, job_type, command);
        job.output_channel = arg_str(a, "output_channel").to_owned();
        let _ = job.seed_compatible();
        let saved = self
            .jobs_file()
            .add(job, actor)
            .map_err(|e| fail(e.to_string()))?;
        Ok((
            format!(
                "Added cron job {} ({}) — {}{}",
                saved.id,
                saved.name,
                saved.schedule,
                if saved.is_enabled() {
                    ""
                } else {
                    " — disabled"
                }
            ),
            json!({"id": saved.id, "name": saved.name, "schedule": saved.schedule, "enabled": saved.is_enabled()}),
        ))
    }

    pub(super) fn cron_remove_job(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let id = arg_str(a, "job_id");
        let removed = self
            .jobs_file()
            .remove(id, actor)
            .map_err(|e| format!("Error removing cron job '{id}': {e}"))?;
        Ok((
            format!("Removed cron job {} ({})", removed.id, removed.name),
            json!({"id": removed.id, "name": removed.name, "removed": true}),
        ))
    }

    pub(super) fn cron_set_enabled(&self, a: &Map<String, Value>, actor: &str, on: bool) -> Answer {
        let id = arg_str(a, "job_id");
        let state = if on { "enabled" } else { "disabled" };
        let (job, changed) = self
            .jobs_file()
            .set_enabled(id, on, actor)
            .map_err(|e| format!("Error changing cron job '{id}': {e}"))?;
        let text = if changed {
            format!("Cron job {} ({}) {state}", job.short_id(), job.name)
        } else {
            format!(
                "Cron job {} ({}) was already {state}",
                job.short_id(),
                job.name
            )
        };
        Ok((
            text,
            json!({"id": job.id, "name": job.name, "enabled": job.is_enabled(), "changed": changed}),
        ))
    }

    pub(super) fn cron_job_logs(&self, a: &Map<String, Value>) -> Answer {
        let id = arg_str(a, "job_id");
        let limit = usize::try_from(arg_int(a, "limit").max(1)).unwrap_or(1);
        let file = self.jobs_file();
        let job = file
            .find(id)
            .map_err(|e| format!("Error reading cron job logs '{id}': {e}"))?;
        let files = file.output_files(&job.id);
        if files.is_empty() {
            return Ok((
                format!(
                    "No output yet for cron job {} ({}).",
                    job.short_id(),
                    job.name
                ),
                json!({"id": job.id, "logs": []}),
            ));
        }
        let mut lines = Vec::new();
        let mut logs = Vec::new();
        for f in files.iter().take(limit) {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            lines.push(format!("==> {} <==\n{text}", f.display()));
            logs.push(json!({"file": f.display().to_string(), "output": text}));
        }
        Ok((lines.join("\n"), json!({"id": job.id, "logs": logs})))
    }

    /// `run_skill(name, args)`: the skill run as `claw skill run` does, its output as text.
    pub(super) async fn run_skill(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let name = arg_str(a, "name");
        let fail = |e: String| format!("Error running skill '{name}': {e}");
        let mut args = Vec::new();
        for pair in arg_str(a, "args")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            if k.trim().is_empty() {
                return Err(fail(format!(
                    "argument `{pair}` has no name (expected key=value)"
                )));
            }
            args.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let skill = crate::skills::find(&self.dirs, name).map_err(|e| fail(e.to_string()))?;
        let cancel = tokio_util::sync::CancellationToken::new();
        let report = crate::steps::skill::run_by_hand(
            &self.dirs,
            &self.settings,
            &skill,
            &args,
            None,
            actor,
            &cancel,
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        let (ok, status) = match &report.outcome {
            crate::steps::StepOutcome::Succeeded => (true, "succeeded".to_owned()),
            crate::steps::StepOutcome::Cancelled => (false, "cancelled".to_owned()),
            crate::steps::StepOutcome::Failed { reason } => (false, format!("failed: {reason}")),
        };
        let mut text = format!("Skill '{name}' {status}");
        if !report.stdout.trim().is_empty() {
            text.push_str(&format!("\n{}", report.stdout.trim_end()));
        }
        if !ok && !report.stderr_tail.trim().is_empty() {
            text.push_str(&format!("\n{}", report.stderr_tail.trim_end()));
        }
        let data = json!({
            "name": name,
            "status": if ok { "succeeded" } else { "failed" },
            "exit_code": report.exit_code,
            "stdout": report.stdout,
            "outputs": report.outputs,
        });
        if ok { Ok((text, data)) } else { Err(text) }
    }
}
