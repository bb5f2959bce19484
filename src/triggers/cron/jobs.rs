//! The seed's `cron/jobs.json`: a pretty-printed JSON list of jobs, read and written compatibly.
//!
//! Fields (seed-reference §1.2): `id` (uuid4), `name`, `schedule`, `job_type`
//! (shell|claude|webhook|skill, and claw's `workflow`), `command`, `args`, `output_channel`,
//! `enabled`, `llm_model`, `created_at`, `last_run`, `last_status`, `last_output_file`. claw adds
//! `tz` only when one is set. Fields it does not know are kept as they are on every rewrite.
//! Every change is a read-modify-write under `cron/.jobs.lock`, written atomically (the seed's
//! `.jobs_*.tmp` names), so concurrent `claw cron` commands and the daemon never lose an update.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FileLock};
use crate::scheduler::{CatchUp, Overlap, Policy, Schedule};
use crate::time;

const TEMP_PREFIX: &str = ".jobs_";
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    Shell,
    Claude,
    Webhook,
    Skill,
    Workflow,
    /// claw: `command` on the hosts of the `target` arg (hosts.yaml).
    Ssh,
}

impl JobType {
    pub const NAMES: [&'static str; 6] = ["shell", "claude", "webhook", "skill", "workflow", "ssh"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shell" => Some(Self::Shell),
            "claude" => Some(Self::Claude),
            "webhook" => Some(Self::Webhook),
            "skill" => Some(Self::Skill),
            "workflow" => Some(Self::Workflow),
            "ssh" => Some(Self::Ssh),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Claude => "claude",
            Self::Webhook => "webhook",
            Self::Skill => "skill",
            Self::Workflow => "workflow",
            Self::Ssh => "ssh",
        }
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_type() -> JobType {
    JobType::Shell
}
fn default_output() -> String {
    "file".into()
}
fn default_true() -> bool {
    true
}

/// One job, with the seed's fields in the seed's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub schedule: String,
    #[serde(default = "default_type")]
    pub job_type: JobType,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
    #[serde(default = "default_output")]
    pub output_channel: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub llm_model: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub last_run: Option<String>,
    #[serde(default)]
    pub last_status: Option<String>,
    #[serde(default)]
    pub last_output_file: Option<String>,
    /// claw: the schedule's IANA zone (absent: the machine's local zone, as in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// claw: whether claw runs the job, for a schedule the seed cannot read (or would read with
    /// another meaning). Such a job is saved with `enabled: false`, so a seed daemon sharing the
    /// data directory neither parses nor fires it; absent, `enabled` is for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claw_enabled: Option<bool>,
    /// Fields claw does not know, kept on rewrite.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Job {
    /// A new enabled job with a fresh uuid4 id, created now.
    pub fn new(name: &str, schedule: &str, job_type: JobType, command: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            schedule: schedule.trim().to_owned(),
            job_type,
            command: command.to_owned(),
            args: serde_json::Map::new(),
            output_channel: default_output(),
            enabled: true,
            llm_model: String::new(),
            created_at: time::iso_utc(Utc::now()),
            last_run: None,
            last_status: None,
            last_output_file: None,
            tz: None,
            claw_enabled: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Whether claw runs the job.
    pub fn is_enabled(&self) -> bool {
        self.claw_enabled.unwrap_or(self.enabled)
    }

    /// Enables or disables the job for claw, and for the seed too unless the job is hidden from
    /// it (claw saved it so) or the seed cannot parse its schedule.
    pub fn set_enabled(&mut self, on: bool) {
        if self.claw_enabled.is_some() || !crate::scheduler::seed::seed_parses(&self.schedule) {
            self.enabled = false;
            self.claw_enabled = Some(on);
        } else {
            self.enabled = on;
        }
    }

    /// Writes the schedule in the form the seed reads when there is one with the same meaning;
    /// otherwise the job is hidden from the seed (see [`Job::claw_enabled`]). Returns what the
    /// seed makes of it.
    pub fn seed_compatible(&mut self) -> crate::scheduler::seed::SeedForm {
        let form = crate::scheduler::seed::seed_form(&self.schedule);
        let on = self.is_enabled();
        match &form {
            crate::scheduler::seed::SeedForm::None(_) => {
                self.enabled = false;
                self.claw_enabled = Some(on);
            }
            crate::scheduler::seed::SeedForm::Equivalent(text) => {
                self.schedule.clone_from(text);
                self.enabled = on;
                self.claw_enabled = None;
            }
            crate::scheduler::seed::SeedForm::Same => {
                self.enabled = on;
                self.claw_enabled = None;
            }
        }
        form
    }

    /// The creation time (the anchor of `every` schedules), if `created_at` parses.
    pub fn created(&self) -> Option<DateTime<Utc>> {
        time::parse_iso(&self.created_at)
    }

    /// The compiled schedule (anchored at the creation time).
    pub fn compiled(&self) -> Result<Schedule, String> {
        let s = Schedule::parse(&self.schedule, self.tz.as_deref())?;
        Ok(match self.created() {
            Some(c) => s.with_anchor(c),
            None => s,
        })
    }

    /// The first 8 characters of the id, as `cron list` shows them.
    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }
}

/// A job's scheduling policy: claw reads the optional keys `catch_up`, `catch_up_window`,
/// `max_catch_up`, `overlap` and `jitter` from a job (the seed ignores them; they are kept on
/// rewrite like any unknown field). Absent keys take the defaults.
pub fn policy(job: &Job) -> Result<Policy, String> {
    use crate::time::duration;
    let mut p = Policy::default();
    let text = |key: &str| -> Result<Option<&str>, String> {
        match job.extra.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("`{key}` must be a string, not {other}")),
        }
    };
    if let Some(s) = text("catch_up")? {
        p.catch_up = CatchUp::parse(s)
            .ok_or_else(|| format!("`catch_up: {s}` (expected none, last or all)"))?;
    }
    if let Some(s) = text("overlap")? {
        p.overlap = Overlap::parse(s)
            .ok_or_else(|| format!("`overlap: {s}` (expected skip, queue or allow)"))?;
    }
    if let Some(s) = text("catch_up_window")? {
        p.catch_up_window = duration::parse(s).map_err(|e| format!("`catch_up_window`: {e}"))?;
    }
    if let Some(s) = text("jitter")? {
        p.jitter = Some(duration::parse(s).map_err(|e| format!("`jitter`: {e}"))?);
    }
    match job.extra.get("max_catch_up") {
        None | Some(serde_json::Value::Null) => {}
        Some(v) => {
            p.max_catch_up = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("`max_catch_up` must be a whole number ≥ 0, not {v}"))?;
        }
    }
    Ok(p)
}

/// Problems with `jobs.json` or with finding a job in it.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("{path}:{line}:{col}: {why}")]
    Invalid {
        path: PathBuf,
        line: usize,
        col: usize,
        why: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no job matches `{0}` (see `claw cron list`)")]
    NotFound(String),
    #[error("`{prefix}` matches {} jobs: {}; give the id, or more of it", matches.len(), matches.join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
    /// The change is made, but its audit entry could not be written.
    #[error("{done}, but not in the audit log: {source}")]
    Audit {
        done: String,
        #[source]
        source: crate::audit::AuditError,
    },
}

impl crate::error::ExitStatus for JobsError {
    fn exit_status(&self) -> u8 {
        match self {
            // The seed's `cron` commands exit 1 for a job that is not there.
            Self::NotFound(_) | Self::Ambiguous { .. } => crate::error::FAILED,
            Self::Invalid { .. } => crate::error::INVALID,
            Self::Io { .. } | Self::Audit { .. } => crate::error::INTERNAL,
        }
    }
}

/// The job file of a data directory.
#[derive(Debug, Clone)]
pub struct JobsFile {
    path: PathBuf,
}

impl JobsFile {
    /// `<home>/cron/jobs.json`.
    pub fn in_home(home: &Path) -> Self {
        Self {
            path: home.join("cron").join("jobs.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<home>/cron/output/<job-id>/`.
    pub fn output_dir(&self, job_id: &str) -> PathBuf {
        self.dir().join("output").join(job_id)
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn io(&self, source: std::io::Error) -> JobsError {
        JobsError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Every job (a missing or empty file is no jobs).
    pub fn load(&self) -> Result<Vec<Job>, JobsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str::<Vec<Job>>(&text).map_err(|e| JobsError::Invalid {
            path: self.path.clone(),
            line: e.line(),
            col: e.column(),
            why: format!("{e}").split(" at line ").next().unwrap_or_default().to_owned()
                + " (expected the seed's list of jobs: [{\"id\": ..., \"name\": ..., \"schedule\": ..., ...}])",
        })
    }

    /// Applies `change` to the jobs under the lock and saves the result atomically. The value
    /// `change` returns is passed back; an `Err` from it leaves the file untouched.
    pub fn update<T, E>(&self, change: impl FnOnce(&mut Vec<Job>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<JobsError>,
    {
        fsutil::create_dirs_private(self.dir()).map_err(|e| self.io(e))?;
        let _lock = FileLock::acquire(&self.dir().join(".jobs.lock"), LOCK_TIMEOUT)
            .map_err(|e| self.io(e))?;
        fsutil::remove_stale_temps(self.dir(), TEMP_PREFIX);
        let mut jobs = self.load()?;
        let out = change(&mut jobs)?;
        let mut text =
            serde_json::to_string_pretty(&jobs).map_err(|e| self.io(std::io::Error::other(e)))?;
        text.push('\n');
        fsutil::write_atomic(&self.path, TEMP_PREFIX, text.as_bytes()).map_err(|e| self.io(e))?;
        Ok(out)
    }

    /// The output files (`*.log`) of job `job_id`, newest first (their names are UTC times).
    pub fn output_files(&self, job_id: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.output_dir(job_id))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.reverse();
        files
    }

    /// The job whose id is `prefix` or starts with it (exactly one).
    pub fn find(&self, prefix: &str) -> Result<Job, JobsError> {
        let jobs = self.load()?;
        find_index(&jobs, prefix).map(|i| jobs[i].clone())
    }

    /// Adds a job; `actor` is recorded in the audit log (`cron.add`).
    pub fn add(&self, job: Job, actor: &str) -> Result<Job, JobsError> {
        let saved = job.clone();
        self.update(|jobs| {
            jobs.push(job);
            Ok::<_, JobsError>(())
        })?;
        self.audit(
            actor,
            crate::audit::Action::CronAdd,
            &saved,
            serde_json::json!({"name": saved.name, "schedule": saved.schedule, "type": saved.job_type.as_str()}),
        )?;
        Ok(saved)
    }

    /// Removes the job `id` (an id or a unique prefix); audited as `cron.remove`.
    pub fn remove(&self, id: &str, actor: &str) -> Result<Job, JobsError> {
        let removed = self.update(|jobs| {
            let i = find_index(jobs, id)?;
            Ok::<_, JobsError>(jobs.remove(i))
        })?;
        self.audit(
            actor,
            crate::audit::Action::CronRemove,
            &removed,
            serde_json::json!({"name": removed.name}),
        )?;
        Ok(removed)
    }

    /// Enables or disables the job `id`; returns it and whether anything changed (a change is
    /// audited as `cron.enable` or `cron.disable`).
    pub fn set_enabled(&self, id: &str, on: bool, actor: &str) -> Result<(Job, bool), JobsError> {
        let (job, changed) = self.update(|jobs| {
            let i = find_index(jobs, id)?;
            let changed = jobs[i].is_enabled() != on;
            jobs[i].set_enabled(on);
            Ok::<_, JobsError>((jobs[i].clone(), changed))
        })?;
        if changed {
            let action = if on {
                crate::audit::Action::CronEnable
            } else {
                crate::audit::Action::CronDisable
            };
            self.audit(actor, action, &job, serde_json::json!({"name": job.name}))?;
        }
        Ok((job, changed))
    }

    /// The data directory this file belongs to (`<home>/cron/jobs.json`).
    fn home(&self) -> &Path {
        self.dir().parent().unwrap_or(Path::new("."))
    }

    fn audit(
        &self,
        actor: &str,
        action: crate::audit::Action,
        job: &Job,
        detail: serde_json::Value,
    ) -> Result<(), JobsError> {
        crate::audit::AuditLog::in_dir(self.home())
            .record(&crate::audit::Event::new(
                actor, action, &job.id, "ok", detail,
            ))
            .map(drop)
            .map_err(|source| JobsError::Audit {
                done: format!("{action} {} done", job.id),
                source,
            })
    }
}

/// The job `prefix` names: the one whose id it is, else the one whose name it is (the name
/// `cron add` took and `cron list` shows), else the one id starting with it. A name or prefix
/// that fits several jobs is an error listing them.
pub fn find_index(jobs: &[Job], prefix: &str) -> Result<usize, JobsError> {
    let prefix = prefix.trim();
    if prefix.is_empty() {
        return Err(JobsError::NotFound(String::new()));
    }
    if let Some(i) = jobs.iter().position(|j| j.id == prefix) {
        return Ok(i);
    }
    let named: Vec<usize> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.name == prefix)
        .map(|(i, _)| i)
        .collect();
    match named[..] {
        [i] => return Ok(i),
        [] => {}
        _ => {
            return Err(JobsError::Ambiguous {
                prefix: prefix.to_owned(),
                matches: named
                    .iter()
                    .map(|&i| format!("{} ({})", jobs[i].id, jobs[i].name))
                    .collect(),
            });
        }
    }
    let hits: Vec<usize> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.id.starts_with(prefix))
        .map(|(i, _)| i)
        .collect();
    match hits[..] {
        [i] => Ok(i),
        [] => Err(JobsError::NotFound(prefix.to_owned())),
        _ => Err(JobsError::Ambiguous {
            prefix: prefix.to_owned(),
            matches: hits
                .iter()
                .map(|&i| format!("{} ({})", jobs[i].id, jobs[i].name))
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"[
  {
    "id": "3f2b1c9e-8a47-4d2e-9b6a-1f0e2d3c4b5a",
    "name": "backup",
    "schedule": "daily at 2:30",
    "job_type": "shell",
    "command": "echo hi",
    "args": {"dest": "/srv"},
    "output_channel": "file",
    "enabled": true,
    "llm_model": "",
    "created_at": "2024-05-01T12:00:00.123456+00:00",
    "last_run": null,
    "last_status": null,
    "last_output_file": null,
    "future_field": {"kept": [1, 2]}
  }
]"#;

    #[test]
    fn seed_jobs_round_trip_with_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let f = JobsFile::in_home(dir.path());
        std::fs::create_dir_all(f.path().parent().unwrap()).unwrap();
        std::fs::write(f.path(), SEED).unwrap();
        let jobs = f.load().unwrap();
        assert_eq!(jobs[0].job_type, JobType::Shell);
        assert_eq!(jobs[0].extra["future_field"]["kept"][1], 2);
        f.update(|jobs| {
            jobs[0].enabled = false;
            Ok::<_, JobsError>(())
        })
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f.path()).unwrap()).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(SEED).unwrap();
        want[0]["enabled"] = false.into();
        assert_eq!(v, want);
        assert!(
            !std::fs::read_to_string(f.path())
                .unwrap()
                .contains("\"tz\"")
        );
    }

    #[test]
    fn bad_file_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let f = JobsFile::in_home(dir.path());
        std::fs::create_dir_all(f.path().parent().unwrap()).unwrap();
        std::fs::write(f.path(), "[\n  {\"id\": 3}\n]").unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(e.contains("jobs.json:2:"), "{e}");
        assert!(e.contains("expected the seed's list"), "{e}");
    }

    #[test]
    fn prefix_lookup() {
        let mut a = Job::new("a", "@hourly", JobType::Shell, "true");
        let mut b = a.clone();
        a.id = "abc123".into();
        b.id = "abd456".into();
        let jobs = vec![a, b];
        assert_eq!(find_index(&jobs, "abc").unwrap(), 0);
        assert_eq!(find_index(&jobs, "abd456").unwrap(), 1);
        assert!(matches!(
            find_index(&jobs, "ab"),
            Err(JobsError::Ambiguous { .. })
        ));
        assert!(matches!(
            find_index(&jobs, "zz"),
            Err(JobsError::NotFound(_))
        ));
    }

    #[test]
    fn times_in_seed_forms() {
        let t = time::parse_iso("2024-05-01T12:00:00.123456+00:00").unwrap();
        assert_eq!(time::iso_utc(t), "2024-05-01T12:00:00.123456+00:00");
        assert!(time::parse_iso("2024-05-01T12:00:00").is_some());
        assert!(time::parse_iso("yesterday").is_none());
    }

    #[test]
    fn job_changes_are_audited_by_the_library_verbs() {
        let home = tempfile::tempdir().unwrap();
        let file = JobsFile::in_home(home.path());
        let job = file
            .add(
                Job::new("disk", "@hourly", JobType::Shell, "df -h"),
                "cli:bob",
            )
            .unwrap();
        let (_, changed) = file.set_enabled(&job.id, false, "cli:bob").unwrap();
        assert!(changed);
        let (_, changed) = file.set_enabled(&job.id, false, "cli:bob").unwrap();
        assert!(!changed, "disabling twice changes nothing");
        file.remove(&job.id, "dashboard:ann").unwrap();
        let lines = crate::audit::AuditLog::in_dir(home.path())
            .tail(10)
            .unwrap();
        let got: Vec<(String, String, String)> = lines
            .iter()
            .map(|l| {
                let v = l.value();
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (s("actor"), s("action"), s("target"))
            })
            .collect();
        assert_eq!(
            got,
            [
                ("cli:bob".into(), "cron.add".into(), job.id.clone()),
                ("cli:bob".into(), "cron.disable".into(), job.id.clone()),
                ("dashboard:ann".into(), "cron.remove".into(), job.id.clone()),
            ]
        );
    }
}
