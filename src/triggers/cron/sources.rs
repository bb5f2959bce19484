//! Which schedules exist: the enabled jobs of the seed's `cron/jobs.json` and the `schedule:` of
//! every workflow, each with its stable id, its compiled schedule and its policy. The daemon
//! (`serve/`) and `claw cron status` read them from here.

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use crate::config::Dirs;
use crate::scheduler::{Policy, Schedule, job_schedule_id};
use crate::triggers::cron::jobs::{Job, JobsFile};
use crate::workflow::Workflow;
use crate::workflow::load;

/// What a schedule starts.
#[derive(Debug, Clone)]
pub enum Target {
    /// A `jobs.json` job (its id is the schedule id's, after `job:`).
    Job,
    /// A workflow run (params at their defaults).
    Workflow(Arc<Workflow>),
}

/// One schedule the daemon keeps.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `job:<uuid>` or `workflow:<name>:<expr>[@tz]`.
    pub id: String,
    /// The job's or workflow's name.
    pub label: String,
    pub schedule: Schedule,
    /// Shared between schedules with the same policy (most have the default one).
    pub policy: Arc<Policy>,
    pub target: Target,
}

/// The schedules found in the files, and what was wrong with the others.
#[derive(Debug, Default)]
pub struct Sources {
    pub entries: Vec<Entry>,
    /// Schedules of disabled jobs: their time passes without fires (re-enabling one does not
    /// replay what passed while it was disabled).
    pub paused: Vec<String>,
    /// One line per schedule that cannot run (bad expression, unreadable file, ...).
    pub problems: Vec<String>,
}

/// Reads every schedule: enabled jobs of `cron/jobs.json` and the `schedule:` of every workflow.
pub fn load_sources(dirs: &Dirs) -> Sources {
    let mut out = Sources::default();
    let file = JobsFile::in_home(&dirs.home);
    match file.load() {
        Ok(jobs) => {
            for job in jobs {
                let id = job_schedule_id(&job.id);
                if !job.enabled {
                    out.paused.push(id);
                    continue;
                }
                match job_entry(&job) {
                    Ok(e) => out.entries.push(e),
                    Err(why) => out.problems.push(format!(
                        "job {} ({}): {why}; it will not run",
                        job.short_id(),
                        job.name
                    )),
                }
            }
        }
        Err(e) => out
            .problems
            .push(format!("{e}; no job of it will run until it is fixed")),
    }
    for path in crate::triggers::launch::workflow_files(dirs) {
        let wf = match load::load_file(&path) {
            Ok(wf) => wf,
            Err(e) => {
                // A broken file that has no schedule is not the scheduler's business; one
                // that has one is reported (it would have fired).
                if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("schedule")) {
                    out.problems.push(format!(
                        "{}: the workflow has errors and its schedules will not fire:\n{}",
                        path.display(),
                        e.render()
                    ));
                }
                continue;
            }
        };
        if wf.schedules.is_empty() {
            continue;
        }
        if let Err(errs) = wf.bind_params(&[]) {
            out.problems.push(format!(
                "workflow `{}`: a scheduled run starts with default params, but {}; its schedules will not fire",
                wf.name,
                errs.join("; ")
            ));
            continue;
        }
        let wf = Arc::new(wf);
        for spec in &wf.schedules {
            out.entries.push(Entry {
                id: spec.id(&wf.name),
                label: wf.name.clone(),
                schedule: spec.schedule.clone(),
                policy: Arc::new(spec.policy),
                target: Target::Workflow(wf.clone()),
            });
        }
    }
    // One allocation per distinct policy.
    let mut distinct: Vec<Arc<Policy>> = Vec::new();
    for e in &mut out.entries {
        match distinct.iter().find(|p| **p == e.policy) {
            Some(p) => e.policy = p.clone(),
            None => distinct.push(e.policy.clone()),
        }
    }
    out
}

/// A job's schedule and policy (`catch_up`, `catch_up_window`, `max_catch_up`, `overlap` and
/// `jitter` may be added to a job in `jobs.json`; the seed ignores them).
pub fn job_entry(job: &Job) -> Result<Entry, String> {
    let schedule = job.compiled()?;
    Ok(Entry {
        id: job_schedule_id(&job.id),
        label: job.name.clone(),
        schedule,
        policy: Arc::new(crate::triggers::cron::jobs::policy(job)?),
        target: Target::Job,
    })
}

/// A cheap fingerprint of the files schedules come from (path, size, mtime), to reload only
/// when one changed.
pub fn fingerprint(dirs: &Dirs) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut add = |p: &std::path::Path| {
        p.hash(&mut h);
        if let Ok(m) = std::fs::metadata(p) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    };
    add(JobsFile::in_home(&dirs.home).path());
    for f in crate::triggers::launch::workflow_files(dirs) {
        add(&f);
    }
    h.finish()
}
