//! `claw cron list | add | remove | enable | disable | run | logs | next`, on the seed's
//! `cron/jobs.json`. Job ids may be given as any unique prefix.

use crate::scheduler::seed::SeedForm;
use chrono::Utc;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::output;
use super::{CliError, CliResult, Ctx};
use crate::scheduler::{Schedule, parse_tz};
use crate::time::{self, at};
use crate::triggers::cron::jobs::{Job, JobType, JobsError, JobsFile};
use crate::triggers::cron::runner::{self, Delivery};

#[derive(Debug, clap::Args)]
pub(crate) struct CronArgs {
    #[command(subcommand)]
    pub(crate) cmd: Option<CronCommand>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CronCommand {
    /// The jobs of cron/jobs.json (ids shortened to 8 characters; --json shows everything).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a job. SCHEDULE: 5-field cron (optional leading seconds field), @hourly-style macros,
    /// `every 30s|5m|2h30m|1d`, `daily at HH:MM` or `HH:MM`. The schedule is checked before saving.
    Add {
        /// The job's name (shown by `cron list`; other commands take it in place of the id).
        name: String,
        /// When it runs (see above).
        schedule: String,
        /// Shell command, workflow name, prompt, URL or skill name (by --type).
        command: String,
        /// What COMMAND is.
        #[arg(long = "type", value_name = "TYPE", default_value = "shell",
              value_parser = clap::builder::PossibleValuesParser::new(JobType::NAMES))]
        job_type: String,
        /// Where the output goes: `file` (cron/output/<id>/), `CHANNEL:TARGET` or a profile name.
        #[arg(long, value_name = "OUTPUT", default_value = "file")]
        output: String,
        /// Save the job disabled.
        #[arg(long)]
        disabled: bool,
        /// IANA time zone of the schedule (default: the machine's).
        #[arg(long, value_name = "ZONE")]
        tz: Option<String>,
        /// An argument for the job (`JOB_<KEY>` for shell jobs, a param for workflow jobs).
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a job (its output files stay).
    Remove {
        /// The job: its name, its id, or a unique start of its id.
        #[arg(value_name = "JOB", add = super::complete::job_names())]
        id: String,
    },
    /// Enable a job (idempotent).
    Enable {
        /// The job: its name, its id, or a unique start of its id.
        #[arg(value_name = "JOB", add = super::complete::job_names())]
        id: String,
    },
    /// Disable a job (idempotent).
    Disable {
        /// The job: its name, its id, or a unique start of its id.
        #[arg(value_name = "JOB", add = super::complete::job_names())]
        id: String,
    },
    /// Run a job now in the foreground, record its output and status. Exit status 1 if it failed.
    Run {
        /// The job: its name, its id, or a unique start of its id.
        #[arg(value_name = "JOB", add = super::complete::job_names())]
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the newest output files of a job.
    Logs {
        /// The job: its name, its id, or a unique start of its id.
        #[arg(value_name = "JOB", add = super::complete::job_names())]
        id: String,
        /// How many (newest first).
        #[arg(
            short = 'n',
            long = "limit",
            visible_alias = "lines",
            default_value_t = 5,
            value_name = "N"
        )]
        n: usize,
    },
    /// Whether the daemon runs, the job counts, and per schedule (jobs and workflows): its last
    /// fire, next fire, and how many fires ran, were missed (claw down, per `catch_up`) or
    /// skipped (`overlap: skip`).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The next fires of a job, or of a workflow's `schedule:`, in the schedule's zone and UTC.
    Next {
        /// A job (its name, id or id prefix) or a workflow name.
        target: String,
        /// How many fires.
        #[arg(short = 'n', long = "limit", default_value_t = 5, value_name = "N")]
        n: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: CronCommand) -> CliResult {
    let file = JobsFile::in_home(&ctx.dirs.home);
    match cmd {
        CronCommand::List { json } => list(&file, json),
        CronCommand::Add {
            name,
            schedule,
            command,
            job_type,
            output,
            disabled,
            tz,
            args,
            json,
        } => {
            let job_type = JobType::parse(&job_type)
                .ok_or_else(|| CliError::usage(format!("unknown job type `{job_type}`")))?;
            if let Some(z) = &tz {
                parse_tz(z).map_err(CliError::usage)?;
            }
            Schedule::parse(&schedule, tz.as_deref())
                .map_err(|e| CliError::usage(format!("invalid schedule: {e}")))?;
            if name.trim().is_empty() {
                return Err(CliError::usage("the job needs a non-empty NAME"));
            }
            // What the job will start is checked now, not when it first fires.
            let mut given = Vec::new();
            for a in &args {
                given.push(
                    crate::params::split_assignment(a)
                        .map_err(|e| CliError::usage(format!("--arg {e}")))?,
                );
            }
            match job_type {
                JobType::Workflow => {
                    let wf = super::workflow::load(ctx, &command)?;
                    wf.bind_params(&given).map_err(|problems| {
                        CliError::usage(format!(
                            "the job would start workflow `{}` with bad --arg values: {}",
                            wf.name,
                            problems.join("; ")
                        ))
                    })?;
                }
                JobType::Skill => {
                    crate::skills::find(&ctx.dirs, &command)
                        .map_err(|e| CliError::usage(e.to_string()))?;
                }
                JobType::Shell | JobType::Webhook | JobType::Claude => {}
                JobType::Ssh => {
                    let target = given
                        .iter()
                        .find(|(k, _)| k == "target")
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| {
                            CliError::usage("an ssh job needs --arg target=ALIAS|GROUP|all")
                        })?;
                    crate::ssh::Registry::find(&ctx.dirs.root, &ctx.dirs.home)
                        .map_err(|e| CliError::usage(e.render()))?
                        .resolve(&target)
                        .map_err(|e| CliError::usage(e.0))?;
                }
            }
            let mut job = Job::new(name.trim(), &schedule, job_type, &command);
            job.enabled = !disabled;
            job.output_channel = output;
            job.tz = tz;
            // A seed sharing this data directory must be able to read jobs.json.
            match job.seed_compatible() {
                SeedForm::Same => {}
                SeedForm::Equivalent(text) => eprintln!(
                    "note: saved as `{text}`, the same schedule in the form the seed's cron also reads"
                ),
                SeedForm::None(why) => eprintln!(
                    "warning: {why}; the job is saved with `enabled: false` (and `claw_enabled`) so \
                     that a seed cron sharing this data directory skips it, and claw runs it"
                ),
            }
            for a in &args {
                let (k, v) = crate::params::split_assignment(a)
                    .map_err(|e| CliError::usage(format!("--arg {e}")))?;
                job.args.insert(k, serde_json::Value::String(v));
            }
            let saved = file.add(job, &crate::config::env::cli_actor())?;
            if json {
                output::print_json(&serde_json::to_value(&saved).unwrap_or_default());
            } else {
                println!(
                    "Added job {} ({}){}",
                    saved.id,
                    saved.name,
                    if saved.is_enabled() {
                        ""
                    } else {
                        " — disabled"
                    }
                );
            }
            Ok(())
        }
        CronCommand::Remove { id } => {
            let removed = file.remove(&id, &crate::config::env::cli_actor())?;
            println!("Removed job {} ({})", removed.id, removed.name);
            Ok(())
        }
        CronCommand::Enable { id } => set_enabled(&file, &id, true),
        CronCommand::Disable { id } => set_enabled(&file, &id, false),
        CronCommand::Run { id, json } => run_now(ctx, &file, &id, json),
        CronCommand::Logs { id, n } => logs(&file, &id, n),
        CronCommand::Next { target, n, json } => next(ctx, &file, &target, n, json),
        CronCommand::Status { json } => status(ctx, &file, json),
    }
}

fn status(ctx: &Ctx, file: &JobsFile, json: bool) -> CliResult {
    let jobs = file.load()?;
    let enabled = jobs.iter().filter(|j| j.is_enabled()).count();
    let daemon = crate::serve::lease::holder(&ctx.dirs.home);
    let seed = crate::serve::lease::seed_daemon(&ctx.dirs.home);
    let sources = crate::triggers::cron::sources::load_sources(&ctx.dirs);
    let engine = ctx.engine()?;
    let states: std::collections::HashMap<String, crate::store::ScheduleState> = engine
        .store
        .schedule_states()?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let items: Vec<serde_json::Value> = sources
        .entries
        .iter()
        .map(|e| {
            let st = states.get(&e.id);
            let anchor = st.map(|s| s.last_fire.unwrap_or(s.first_seen));
            // From the persisted last fire, as the daemon computes it (in the past while the
            // daemon is down: it is then caught up per the schedule's policy at the next start).
            let base = anchor.map_or_else(Utc::now, at);
            let next = e.schedule.next_after(base);
            serde_json::json!({
                "schedule": e.id,
                "name": e.label,
                "expr": e.schedule.expr(),
                "last_fire": st.and_then(|s| s.last_fire).map(|t| time::rfc3339(&at(t))),
                "next_fire": next.map(|t| time::rfc3339(&t)),
                "fired": st.map_or(0, |s| s.fired),
                "missed": st.map_or(0, |s| s.missed),
                "skipped": st.map_or(0, |s| s.skipped),
            })
        })
        .collect();
    if json {
        output::print_json(&serde_json::json!({
            "daemon": {"running": daemon.is_some(), "pid": daemon.flatten()},
            "seed_daemon": seed.as_ref().map(|(pid, cmd)| serde_json::json!({"pid": pid, "command": cmd})),
            "jobs": {"total": jobs.len(), "enabled": enabled, "disabled": jobs.len() - enabled},
            "schedules": items,
            "problems": sources.problems,
        }));
        return Ok(());
    }
    match daemon {
        Some(pid) => println!(
            "Daemon: running{}",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        None => println!("Daemon: not running (start it with `claw serve`)"),
    }
    if let Some((pid, cmd)) = &seed {
        println!(
            "Seed cron daemon: running (pid {pid}, {cmd}); it fires the jobs of jobs.json too \
             (`claw serve --take-over` stops it and takes its place)"
        );
    }
    println!(
        "Jobs: {} total, {enabled} enabled, {} disabled",
        jobs.len(),
        jobs.len() - enabled
    );
    for p in &sources.problems {
        eprintln!("warning: {p}");
    }
    if items.is_empty() {
        return Ok(());
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            // Tables show times on the local clock, as every claw table does.
            let when = |v: &serde_json::Value| {
                v.as_str()
                    .and_then(time::parse_iso)
                    .map_or_else(|| s(v), time::local)
            };
            vec![
                s(&i["name"]),
                s(&i["expr"]),
                when(&i["last_fire"]),
                when(&i["next_fire"]),
                s(&i["fired"]),
                s(&i["missed"]),
                s(&i["skipped"]),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "NAME",
                "SCHEDULE",
                "LAST FIRE",
                "NEXT FIRE",
                "FIRED",
                "MISSED",
                "SKIPPED"
            ],
            &rows
        )
    );
    Ok(())
}

fn list(file: &JobsFile, json: bool) -> CliResult {
    let jobs = file.load()?;
    let now = Utc::now();
    if json {
        let items: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                let mut v = serde_json::to_value(j).unwrap_or_default();
                let next = j.compiled().ok().and_then(|s| s.next_after(now));
                v["next_run"] =
                    serde_json::json!(next.filter(|_| j.is_enabled()).map(|t| time::rfc3339(&t)));
                v
            })
            .collect();
        output::print_json(&serde_json::Value::Array(items));
        return Ok(());
    }
    if jobs.is_empty() {
        println!("No cron jobs. Add one with `claw cron add NAME SCHEDULE COMMAND`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let next = match (j.is_enabled(), j.compiled()) {
                (false, _) => "-".to_owned(),
                (true, Ok(s)) => s
                    .next_after(now)
                    .map_or_else(|| "never".to_owned(), time::local),
                (true, Err(_)) => "invalid schedule".to_owned(),
            };
            vec![
                j.short_id().to_owned(),
                j.name.clone(),
                j.schedule.clone(),
                j.job_type.to_string(),
                match (j.is_enabled(), j.claw_enabled.is_some()) {
                    (true, true) => "yes (claw only)",
                    (true, false) => "yes",
                    (false, _) => "no",
                }
                .to_owned(),
                j.last_run.as_deref().map_or_else(
                    || "-".into(),
                    |t| time::parse_iso(t).map_or_else(|| t.to_owned(), time::local),
                ),
                j.last_status.clone().unwrap_or_else(|| "-".into()),
                next,
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "ID", "NAME", "SCHEDULE", "TYPE", "ENABLED", "LAST RUN", "STATUS", "NEXT"
            ],
            &rows
        )
    );
    Ok(())
}

fn set_enabled(file: &JobsFile, id: &str, on: bool) -> CliResult {
    let (job, changed) = file.set_enabled(id, on, &crate::config::env::cli_actor())?;
    let state = if on { "enabled" } else { "disabled" };
    if changed {
        println!("Job {} ({}) {state}", job.short_id(), job.name);
    } else {
        println!("Job {} ({}) was already {state}", job.short_id(), job.name);
    }
    Ok(())
}

fn run_now(ctx: &Ctx, file: &JobsFile, id: &str, json: bool) -> CliResult {
    // Resolve first, so a bad id is reported without opening the store.
    let job = file.find(id)?;
    let engine = ctx.engine()?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    let done = rt
        .block_on(async {
            let watcher = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    watcher.cancel();
                }
            });
            runner::run_by_hand(&engine, &job.id, &crate::config::env::cli_actor(), &cancel).await
        })
        .map_err(|e| CliError::internal(e.to_string()))?;
    if json {
        output::print_json(&serde_json::json!({
            "id": done.job_id, "name": done.job_name, "exit_code": done.exit_code,
            "status": done.status, "output": done.output, "output_file": done.output_file,
            "run": done.run_id,
            "delivery": done.delivery.to_json(),
        }));
    } else {
        print!("{}", done.output);
        if !done.output.is_empty() && !done.output.ends_with('\n') {
            println!();
        }
        eprintln!(
            "job {} ({}): {} — output in {}",
            done.job_id,
            done.job_name,
            done.status,
            done.output_file.display()
        );
        match &done.delivery {
            Delivery::File => {}
            Delivery::Queued { target, ids } => eprintln!(
                "output queued for {target} ({} message(s); `claw serve` or `claw msg flush` delivers them)",
                ids.len()
            ),
            Delivery::Failed { target, error } => {
                eprintln!("warning: the output was not sent to {target}: {error}");
            }
        }
    }
    if done.ok() {
        Ok(())
    } else {
        Err(CliError::failed())
    }
}

fn logs(file: &JobsFile, id: &str, n: usize) -> CliResult {
    let job = file.find(id)?;
    let files = file.output_files(&job.id);
    if files.is_empty() {
        println!("No output yet for job {} ({}).", job.short_id(), job.name);
        return Ok(());
    }
    for f in files.iter().take(n) {
        println!("==> {} <==", f.display());
        print!("{}", std::fs::read_to_string(f).unwrap_or_default());
        println!();
    }
    Ok(())
}

fn next(ctx: &Ctx, file: &JobsFile, target: &str, n: usize, json: bool) -> CliResult {
    let now = Utc::now();
    let mut schedules: Vec<(String, Schedule)> = Vec::new();
    match file.find(target) {
        Ok(job) => {
            let s = job.compiled().map_err(|e| {
                CliError::usage(format!(
                    "job {} has an invalid schedule: {e}",
                    job.short_id()
                ))
            })?;
            schedules.push((format!("job {} ({})", job.short_id(), job.name), s));
        }
        Err(JobsError::NotFound(_)) => {
            let wf = super::workflow::load(ctx, target).map_err(|e| {
                CliError::usage(format!(
                    "no job or workflow matches `{target}`: {}",
                    e.message
                ))
            })?;
            if wf.schedules.is_empty() {
                return Err(CliError::usage(format!(
                    "workflow `{}` has no `schedule:`",
                    wf.name
                )));
            }
            for spec in wf.schedules {
                schedules.push((
                    format!("workflow {} `{}`", wf.name, spec.expr),
                    spec.schedule,
                ));
            }
        }
        Err(e) => return Err(e.into()),
    }
    if json {
        let v: Vec<serde_json::Value> = schedules
            .iter()
            .map(|(what, s)| {
                serde_json::json!({
                    "schedule": what, "expr": s.expr(), "tz": s.tz().name(), "describe": s.describe(),
                    "next": s.upcoming(now, n).iter().map(|t| serde_json::json!({
                        "utc": time::rfc3339(t),
                        "local": time::rfc3339(&t.with_timezone(s.tz())),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        output::print_json(&serde_json::Value::Array(v));
        return Ok(());
    }
    for (what, s) in &schedules {
        println!("{what}: {}", s.describe());
        let fires = s.upcoming(now, n);
        if fires.is_empty() {
            println!("  (no fire within 50 years)");
        }
        for t in fires {
            println!(
                "  {}   {}",
                time::human_with_offset(&t.with_timezone(s.tz())),
                time::human(&t)
            );
        }
    }
    Ok(())
}
