//! Which schedules exist: the enabled jobs of the seed's `cron/jobs.json` and the `schedule:` of
//! every workflow, each with its stable id, its compiled schedule and its policy. The daemon
//! (`serve/`) and `claw cron status` read them from here.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Dirs;
use crate::scheduler::{Policy, Schedule, job_schedule_id};
use crate::triggers::cron::jobs::{Job, JobsFile};
use crate::workflow::Workflow;
use crate::workflow::catalogue::Catalogue;
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
    /// Set when a file could not be read for a reason that says nothing about its content (too
    /// many open files, an I/O error): what was found is incomplete, and whoever holds the
    /// schedules loaded before keeps them rather than dropping those it could not read.
    pub unreadable: Option<String>,
}

/// Whether reading `path` fails for a reason other than its absence.
fn read_fails(path: &std::path::Path) -> Option<String> {
    match std::fs::read(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Some(format!("cannot read {}: {e}", path.display()))
        }
        _ => None,
    }
}

/// Reads every schedule: enabled jobs of `cron/jobs.json` and the `schedule:` of every workflow.
pub fn load_sources(dirs: &Dirs) -> Sources {
    let mut out = Sources::default();
    let file = JobsFile::in_home(&dirs.home);
    match file.load() {
        Ok(jobs) => {
            for job in jobs {
                let id = job_schedule_id(&job.id);
                if !job.is_enabled() {
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
        Err(e) => {
            if let Some(why) = read_fails(file.path()) {
                out.unreadable = Some(why);
                return out;
            }
            out.problems
                .push(format!("{e}; no job of it will run until it is fixed"));
        }
    }
    // Every file is loaded first: a `name:` two files declare is ambiguous, and the schedules
    // of neither fire (as a lookup of that name is refused everywhere).
    let mut scheduled = Vec::new();
    let mut files_of: HashMap<String, Vec<PathBuf>> = HashMap::new();
    let files = match Catalogue::new(dirs).try_files() {
        Ok(f) => f,
        Err(e) => {
            out.unreadable = Some(e.to_string());
            return out;
        }
    };
    for path in files {
        let wf = match load::load_file(&path) {
            Ok(wf) => wf,
            Err(e) => {
                if let Some(why) = read_fails(&path) {
                    out.unreadable = Some(why);
                    return out;
                }
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
        files_of.entry(wf.name.clone()).or_default().push(path);
        if !wf.schedules.is_empty() {
            scheduled.push(wf);
        }
    }
    for wf in scheduled {
        if let Some(files) = files_of.get(&wf.name).filter(|f| f.len() > 1) {
            out.problems.push(format!(
                "several workflows are named `{}` ({}); the schedules of {} will not fire until only one is",
                wf.name,
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                wf.path.display()
            ));
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
    for f in Catalogue::new(dirs).files() {
        add(&f);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workflows_with_one_name_do_not_fire() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            home: tmp.path().join("home"),
            root: tmp.path().join("root"),
        };
        let wf_dir = dirs.root.join("workflows");
        std::fs::create_dir_all(&wf_dir).unwrap();
        let text = "name: nightly\nschedule: '@daily'\nsteps:\n  - {name: a, command: 'true'}\n";
        std::fs::write(wf_dir.join("a.yaml"), text).unwrap();
        std::fs::write(
            wf_dir.join("other.yaml"),
            "steps:\n  - {name: a, command: 'true'}\n",
        )
        .unwrap();
        assert_eq!(load_sources(&dirs).entries.len(), 1);
        std::fs::write(wf_dir.join("b.yaml"), text).unwrap();
        let s = load_sources(&dirs);
        assert!(s.entries.is_empty(), "{:?}", s.entries);
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(
            s.problems[0].starts_with("several workflows are named `nightly`"),
            "{:?}",
            s.problems
        );
    }

    /// An error reading the files is not "no files": the sources say they are incomplete (the
    /// daemon then keeps what it had) instead of listing no schedules.
    #[test]
    fn unreadable_files_are_not_read_as_no_schedules() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            home: tmp.path().join("home"),
            root: tmp.path().join("root"),
        };
        std::fs::create_dir_all(&dirs.root).unwrap();
        // Not a folder: reading it fails with something other than "not found".
        std::fs::write(dirs.root.join("workflows"), "").unwrap();
        let s = load_sources(&dirs);
        assert!(s.unreadable.is_some(), "{s:?}");
        std::fs::remove_file(dirs.root.join("workflows")).unwrap();
        std::fs::create_dir_all(dirs.root.join("workflows")).unwrap();
        // A workflow path that is a folder named like a file.
        std::fs::create_dir_all(dirs.root.join("workflows/x.yaml")).unwrap();
        let s = load_sources(&dirs);
        assert!(s.unreadable.is_none(), "{s:?}");
        std::fs::remove_dir(dirs.root.join("workflows/x.yaml")).unwrap();
        std::fs::create_dir_all(dirs.home.join("cron/jobs.json")).unwrap();
        let s = load_sources(&dirs);
        assert!(s.unreadable.is_some(), "{s:?}");
    }
}
