//! `claw run list | show | logs | resume | cancel | rerun | approve | reject`.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::time::Duration;

use clap::Subcommand;

use super::output;
use super::workflow::{drive_foreground, report};
use super::{CliError, CliResult, Ctx};
use crate::engine::Engine;
use crate::store::{RunFilter, RunRecord, RunStatus, StepStatus};

#[derive(Debug, Subcommand)]
pub(crate) enum RunCommand {
    /// List runs, newest first.
    List {
        /// Only the runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// queued, running, waiting, succeeded, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// How many (the newest).
        #[arg(short = 'n', long, default_value_t = 20, value_name = "N")]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a run and its steps. RUN is an id or a unique prefix of one.
    Show {
        /// The run: its id or a unique start of it.
        #[arg(add = super::complete::run_ids())]
        run: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the logs of a run's steps (or of one step).
    ///
    /// Read from each step's log file; on the PostgreSQL store, a step executed on another
    /// machine (a `claw worker` elsewhere) is read from the copy kept in the store (its last
    /// `max_step_log_bytes`, masked as in the file).
    Logs {
        /// The run: its id or a unique start of it.
        #[arg(add = super::complete::run_ids())]
        run: String,
        /// The step (may be left out when only one waits, for a decision).
        step: Option<String>,
        /// Keep printing until the run finishes.
        #[arg(short, long)]
        follow: bool,
    },
    /// Carry on a run whose process died (or one queued with --detach), in the foreground.
    ///
    /// Finished steps are not run again. A step that was running when its process died runs again
    /// if it is idempotent; otherwise the run waits for `claw run approve|reject RUN STEP`.
    Resume {
        /// The run; with --all, every run left behind by a dead process.
        #[arg(add = super::complete::run_ids())]
        run: Option<String>,
        /// Every run left behind by a process that died.
        #[arg(long, conflicts_with = "run")]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// No progress lines, even on a terminal.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Cancel a run: its running steps are stopped and the rest skipped.
    Cancel {
        /// The run: its id or a unique start of it.
        #[arg(add = super::complete::run_ids())]
        run: String,
    },
    /// Start a new run of the same workflow with the same params.
    ///
    /// With --from STEP, the steps that STEP does not (transitively) depend on... are copied from the
    /// old run when they succeeded there, and STEP and everything after it run again.
    Rerun {
        /// The run: its id or a unique start of it.
        #[arg(add = super::complete::run_ids())]
        run: String,
        /// Run again from this step (the steps it needs keep their old results).
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// No progress lines, even on a terminal.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Decide a step that waits: approve an approval gate, or run an interrupted step again.
    ///
    /// An approval gate needs `quorum` distinct allowed approvers; its `input` fields are given
    /// with `--input k=v`. An interrupted step (claw stopped while it ran) runs again, or with
    /// `--skip` is taken as done without running again.
    Approve {
        /// The run: its id or a unique start of it.
        #[arg(add = super::complete::run_ids())]
        run: String,
        /// The waiting step (may be left out when only one waits).
        step: Option<String>,
        /// Who decides: `cli:NAME`, `telegram:ID`, `dashboard:NAME`, or a bare NAME meaning
        /// `cli:NAME` (default: the local user, as `cli:<user>`).
        #[arg(long = "as", value_name = "WHO")]
        who: Option<String>,
        /// A field the approval asks for (repeatable).
        #[arg(long = "input", value_name = "KEY=VALUE")]
        input: Vec<String>,
        /// For an interrupted step: do not run it again, take it as done (it is marked skipped).
        #[arg(long)]
        skip: bool,
        /// Decide and leave; do not carry the run on in this process.
        #[arg(long)]
        no_wait: bool,
    },
    /// Decide a step that waits: reject an approval gate, or mark an interrupted step failed.
    Reject {
        /// The run: its id or a unique start of it.
        #[arg(add = super::complete::run_ids())]
        run: String,
        /// The step (may be left out when only one waits, for a decision).
        step: Option<String>,
        /// Why (kept with the decision and in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Who decides: `cli:NAME`, `telegram:ID`, `dashboard:NAME`, or a bare NAME (default: the local user).
        #[arg(long = "as", value_name = "WHO")]
        who: Option<String>,
        /// Decide and leave; do not carry the run on in this process.
        #[arg(long)]
        no_wait: bool,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: RunCommand) -> CliResult {
    let engine = ctx.engine()?;
    match cmd {
        RunCommand::List {
            workflow,
            status,
            limit,
            json,
        } => list(&engine, workflow, status.as_deref(), limit, json),
        RunCommand::Show { run, json } => show(&engine, &run, json),
        RunCommand::Logs { run, step, follow } => logs(&engine, &run, step.as_deref(), follow),
        RunCommand::Resume {
            run,
            all,
            json,
            quiet,
        } => resume(&engine, run.as_deref(), all, json, quiet),
        RunCommand::Cancel { run } => cancel(&engine, &run),
        RunCommand::Rerun {
            run,
            from,
            json,
            quiet,
        } => rerun(&engine, &run, from.as_deref(), json, quiet),
        RunCommand::Approve {
            run,
            step,
            who,
            input,
            skip,
            no_wait,
        } => {
            let verdict = if skip {
                Verdict::Skip
            } else {
                Verdict::Approve
            };
            let input = input
                .iter()
                .map(|kv| crate::params::split_assignment(kv).map_err(CliError::usage))
                .collect::<Result<Vec<_>, _>>()?;
            decide(
                &engine,
                &run,
                step.as_deref(),
                verdict,
                who,
                None,
                &input,
                no_wait,
            )
        }
        RunCommand::Reject {
            run,
            step,
            reason,
            who,
            no_wait,
        } => decide(
            &engine,
            &run,
            step.as_deref(),
            Verdict::Reject,
            who,
            reason,
            &[],
            no_wait,
        ),
    }
}

fn status_label(engine: &Engine, r: &RunRecord) -> String {
    if engine.is_orphaned(r) {
        format!("{} (orphaned: `claw run resume {}`)", r.status, r.id)
    } else {
        r.status.to_string()
    }
}

fn list(
    engine: &Engine,
    workflow: Option<String>,
    status: Option<&str>,
    limit: u32,
    json: bool,
) -> CliResult {
    let status = status
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(|e| {
            CliError::usage(format!(
                "{e} (expected queued, running, waiting, succeeded, failed or cancelled)"
            ))
        })?;
    // One more than shown, to say whether the list stops at the limit.
    let mut runs = engine.store.list_runs(&RunFilter {
        workflow,
        status,
        limit: Some(limit.saturating_add(1)),
        ..RunFilter::default()
    })?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    if more {
        eprintln!("(only the newest {limit} runs are shown: there are more; raise -n/--limit)");
    }
    let waits: Vec<Vec<Wait>> = runs
        .iter()
        .map(|r| waiting_for(engine, r))
        .collect::<Result<_, _>>()?;
    if json {
        let items: Vec<serde_json::Value> = runs
            .iter()
            .zip(&waits)
            .map(|(r, w)| {
                let mut v = output::run_json(r, engine.is_orphaned(r), None);
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "waiting_for".into(),
                        w.iter().map(|w| w.json.clone()).collect(),
                    );
                }
                v
            })
            .collect();
        output::print_json(&serde_json::Value::Array(items));
        return Ok(());
    }
    if runs.is_empty() {
        println!("No runs.");
        return Ok(());
    }
    let any_wait = waits.iter().any(|w| !w.is_empty());
    let rows: Vec<Vec<String>> = runs
        .iter()
        .zip(&waits)
        .map(|(r, w)| {
            // A dry run did nothing: it must not read as a run that did.
            let label = status_label(engine, r);
            let word = label
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            let painted = label.replacen(&word, &super::colour::status(&word), 1);
            let status = if r.dry_run {
                format!("{painted} (dry run)")
            } else {
                painted
            };
            let mut row = vec![
                r.id.clone(),
                r.workflow.clone(),
                status,
                output::local_time(Some(r.created_at)),
                output::human_ms(output::duration_ms(r.started_at, r.finished_at)),
            ];
            if any_wait {
                row.push(
                    w.iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            row
        })
        .collect();
    let mut headers = vec!["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION"];
    if any_wait {
        headers.push("WAITING FOR");
    }
    print!("{}", output::table(&headers, &rows));
    Ok(())
}

/// One thing a run waits for: an approval, or a decision on an interrupted step.
#[derive(Debug)]
struct Wait {
    text: String,
    json: serde_json::Value,
}

fn waiting_for(engine: &Engine, run: &RunRecord) -> Result<Vec<Wait>, CliError> {
    if run.status != RunStatus::Waiting {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for s in engine.store.steps(&run.id)? {
        match s.status {
            StepStatus::Waiting => {
                // An llm step waits on the open sub-gate of its tool call (`STEP#tool-T.I`).
                let key = match engine.store.approval(&run.id, &s.name)? {
                    Some(_) => Some(s.name.clone()),
                    None => crate::engine::approval::open_sub_gate(
                        engine.store.as_ref(),
                        &run.id,
                        &s.name,
                    )?,
                };
                let Some(a) = key
                    .map(|k| engine.store.approval(&run.id, &k))
                    .transpose()?
                    .flatten()
                else {
                    continue;
                };
                let r = &a.request;
                let approved: Vec<&str> = a
                    .votes
                    .iter()
                    .filter(|v| v.decision == "approve")
                    .map(|v| v.approver.as_str())
                    .collect();
                let who = if r.approvers.is_empty() {
                    "anyone".to_owned()
                } else {
                    r.approvers.join(", ")
                };
                let deadline = r
                    .deadline
                    .map(|d| crate::time::rfc3339_secs(crate::time::at(d)));
                out.push(Wait {
                    text: format!(
                        "approval of `{}` by {who} ({}/{}){}",
                        r.step,
                        approved.len(),
                        r.quorum,
                        deadline
                            .as_deref()
                            .map(|d| format!(", until {d} then {}", r.on_timeout))
                            .unwrap_or_default()
                    ),
                    json: serde_json::json!({
                        "kind": "approval",
                        "step": r.step,
                        "message": r.message,
                        "approvers": r.approvers,
                        "quorum": r.quorum,
                        "approved_by": approved,
                        "deadline": deadline,
                        "on_timeout": r.on_timeout,
                        "input": r.input,
                    }),
                });
            }
            StepStatus::Interrupted => out.push(Wait {
                text: format!("decision on interrupted `{}` (retry, skip or fail)", s.name),
                json: serde_json::json!({"kind": "interrupted", "step": s.name}),
            }),
            _ => {}
        }
    }
    Ok(out)
}

fn show(engine: &Engine, id: &str, json: bool) -> CliResult {
    let run = engine.store.find_run(id)?;
    let steps = engine.store.steps(&run.id)?;
    let waits = waiting_for(engine, &run)?;
    let children = engine.store.list_runs(&RunFilter {
        parent: Some(run.id.clone()),
        ..RunFilter::default()
    })?;
    let artifacts = run_artifacts(engine, &run.id);
    if json {
        let mut v = output::run_json(&run, engine.is_orphaned(&run), Some(&steps));
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "waiting_for".into(),
                waits.iter().map(|w| w.json.clone()).collect(),
            );
            o.insert(
                "children".into(),
                children
                    .iter()
                    .map(|c| serde_json::json!({"id": c.id, "workflow": c.workflow, "status": c.status.as_str()}))
                    .collect(),
            );
            o.insert(
                "artifacts".into(),
                artifacts.iter().map(|a| a.display().to_string()).collect(),
            );
        }
        output::print_json(&v);
        return Ok(());
    }
    println!("run       {}", run.id);
    println!("workflow  {} ({})", run.workflow, run.workflow_path);
    println!(
        "status    {}{}",
        status_label(engine, &run),
        if run.dry_run { " (dry run)" } else { "" }
    );
    println!("created   {}", output::local_time(Some(run.created_at)));
    if run.finished_at.is_some() {
        println!(
            "finished  {} (took {})",
            output::local_time(run.finished_at),
            output::human_ms(output::duration_ms(run.started_at, run.finished_at))
        );
    }
    if run.params.as_object().is_some_and(|o| !o.is_empty()) {
        println!("params    {}", run.params);
    }
    if run.outputs.as_object().is_some_and(|o| !o.is_empty()) {
        println!("outputs   {}", run.outputs);
    }
    if let Some(e) = &run.error {
        println!("error     {e}");
    }
    if let Some(p) = &run.parent_run {
        println!("parent    {p}");
    }
    for c in &children {
        println!("child     {} ({}, {})", c.id, c.workflow, c.status);
    }
    for w in &waits {
        println!("waiting   {}", w.text);
        if let Some(m) = w.json.get("message").and_then(serde_json::Value::as_str) {
            println!("          {m}");
        }
    }
    println!();
    print!("{}", output::steps_table(&steps));
    for s in &steps {
        let Some(calls) = s
            .outputs
            .get("tool_calls")
            .and_then(serde_json::Value::as_array)
        else {
            continue;
        };
        println!("\ntool calls of {}", s.name);
        for (i, c) in calls.iter().enumerate() {
            let result: String = c["result"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let cut: String = result.chars().take(100).collect();
            println!(
                "  {}. {} {} {} in {} ms: {}{}",
                i + 1,
                c["name"].as_str().unwrap_or("?"),
                c["arguments"],
                if c["is_error"] == true {
                    "failed"
                } else {
                    "ok"
                },
                c["duration_ms"],
                cut,
                if result.chars().count() > 100 {
                    "…"
                } else {
                    ""
                }
            );
        }
    }
    for s in steps.iter().filter(|s| s.status == StepStatus::Interrupted) {
        println!("\n{}: {}", s.name, s.message.as_deref().unwrap_or_default());
    }
    if !artifacts.is_empty() {
        println!("\nartifacts");
        for a in &artifacts {
            println!("  {}", a.display());
        }
    }
    Ok(())
}

/// The files a run's steps kept (screenshots, PDFs, downloads), deleted with the run.
fn run_artifacts(engine: &Engine, id: &str) -> Vec<std::path::PathBuf> {
    let dir = crate::browser::artifacts_dir(&engine.dirs.run_log_dir(id));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn logs(engine: &Engine, id: &str, step: Option<&str>, follow: bool) -> CliResult {
    let run = engine.store.find_run(id)?;
    // Where each step's log was read up to: a byte offset in its file, or (a step executed on
    // another machine, whose file is not here) the last chunk read from the shared store.
    let mut offsets: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut chunks: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    loop {
        // Asked before reading: a run that had ended by then has all its output in this pass
        // (asked after, output written between the read and the question would be missed).
        let ended = follow && {
            let now = engine.store.find_run(&run.id)?;
            now.status.is_finished() || engine.is_orphaned(&now)
        };
        let steps = engine.store.steps(&run.id)?;
        if let Some(name) = step
            && !steps.iter().any(|s| s.name == name)
        {
            let hint = crate::diagnostic::did_you_mean(name, steps.iter().map(|s| s.name.as_str()))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(CliError::usage(format!(
                "run {} has no step `{name}`{hint}",
                run.id
            )));
        }
        let many = step.is_none();
        for s in steps.iter().filter(|s| step.is_none_or(|n| n == s.name)) {
            let Some(path) = &s.log_path else { continue };
            let Ok(mut f) = std::fs::File::open(path) else {
                let after = chunks.get(&s.name).copied().unwrap_or(0);
                let new = engine.store.step_log_after(&run.id, &s.name, after)?;
                let Some(last) = new.last() else { continue };
                if after == 0 && many {
                    println!("==> {} ({}) <==", s.name, s.status);
                }
                chunks.insert(s.name.clone(), last.seq);
                for c in &new {
                    print!("{}", c.text);
                }
                continue;
            };
            let from = offsets.get(&s.name).copied().unwrap_or(0);
            let len = f.metadata().map_or(0, |m| m.len());
            if len <= from {
                continue;
            }
            if from == 0 && many {
                println!("==> {} ({}) <==", s.name, s.status);
            }
            let _ = f.seek(SeekFrom::Start(from));
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            print!("{}", String::from_utf8_lossy(&buf));
            offsets.insert(s.name.clone(), len);
        }
        if !follow {
            if let Some(name) = step
                && !offsets.contains_key(name)
                && !chunks.contains_key(name)
                && let Some(s) = steps.iter().find(|s| s.name == name)
            {
                // Said on stderr: stdout stays the log's bytes (empty) for scripts.
                eprintln!(
                    "step `{name}` of run {} printed nothing ({})",
                    run.id,
                    if s.status.is_finished() {
                        s.status.to_string()
                    } else {
                        format!("{} so far; `--follow` waits for more", s.status)
                    }
                );
            }
            return Ok(());
        }
        if ended {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn resume(engine: &Engine, id: Option<&str>, all: bool, json: bool, quiet: bool) -> CliResult {
    if all {
        let runs: Vec<RunRecord> = engine
            .store
            .unfinished_runs(None)?
            .into_iter()
            .filter(|r| r.owner.is_none() || engine.is_orphaned(r))
            .collect();
        if runs.is_empty() {
            println!("No runs to resume.");
            return Ok(());
        }
        let mut failed = false;
        for r in runs {
            eprintln!("resuming run {} ({})", r.id, r.workflow);
            if let Err(e) = drive_foreground(engine, &r.id, None, json, quiet) {
                failed = true;
                if !e.message.is_empty() {
                    eprintln!("error: {}", e.message);
                }
            }
        }
        return if failed {
            Err(CliError::failed())
        } else {
            Ok(())
        };
    }
    let Some(id) = id else {
        return Err(CliError::usage("give a run id, or --all"));
    };
    let run = engine.store.find_run(id)?;
    if run.status.is_finished() {
        eprintln!("run {} already {}", run.id, run.status);
        return report(engine, &run, json);
    }
    drive_foreground(engine, &run.id, None, json, quiet)
}

fn cancel(engine: &Engine, id: &str) -> CliResult {
    let run = engine.store.find_run(id)?;
    if run.status.is_finished() {
        println!("run {} already {}", run.id, run.status);
        return Ok(());
    }
    match engine.cancel(&run, &crate::config::env::cli_actor())? {
        RunStatus::Cancelled => println!("run {} cancelled", run.id),
        _ => println!(
            "run {}: cancellation requested; its process is stopping it",
            run.id
        ),
    }
    Ok(())
}

fn rerun(engine: &Engine, id: &str, from: Option<&str>, json: bool, quiet: bool) -> CliResult {
    let old = engine.store.find_run(id)?;
    let run = engine.rerun(&old, from, true)?;
    if !json {
        eprintln!("rerun of {}: run {}", old.id, run.id);
    }
    drive_foreground(engine, &run.id, None, json, quiet)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Approve,
    Reject,
    Skip,
}

#[allow(clippy::too_many_arguments)]
fn decide(
    engine: &Engine,
    id: &str,
    step: Option<&str>,
    verdict: Verdict,
    who: Option<String>,
    reason: Option<String>,
    input: &[(String, String)],
    no_wait: bool,
) -> CliResult {
    let run = engine.store.find_run(id)?;
    let steps = engine.store.steps(&run.id)?;
    let step = match step {
        Some(s) => s.to_owned(),
        None => {
            let waiting: Vec<&str> = steps
                .iter()
                .filter(|s| matches!(s.status, StepStatus::Interrupted | StepStatus::Waiting))
                .map(|s| s.name.as_str())
                .collect();
            match waiting.as_slice() {
                [one] => (*one).to_owned(),
                [] => {
                    return Err(CliError::usage(format!(
                        "run {} has no step waiting for a decision",
                        run.id
                    )));
                }
                many => {
                    return Err(CliError::usage(format!(
                        "run {} has several steps waiting ({}): name one",
                        run.id,
                        many.join(", ")
                    )));
                }
            }
        }
    };
    let identity = crate::engine::approval::identity(who.as_deref());
    // An llm step's tool call waiting for approval is a sub-gate `STEP#KEY` of its step.
    let waits = |name: &str| {
        steps
            .iter()
            .any(|s| s.name == name && s.status == StepStatus::Waiting)
    };
    let gate = waits(&step) || crate::engine::approval::sub_gate_owner(&step).is_some_and(waits);
    if gate {
        if verdict == Verdict::Skip {
            return Err(CliError::usage(
                "--skip is for interrupted steps; an approval gate is approved or rejected",
            ));
        }
        let result = engine.vote(
            &run,
            &step,
            &identity,
            verdict == Verdict::Approve,
            reason.as_deref(),
            input,
        )?;
        let crate::engine::approval::VoteResult::Recorded {
            decided,
            approvals,
            quorum,
        } = result;
        match &decided {
            Some(r) => println!(
                "run {}: step `{step}` {}",
                run.id,
                crate::engine::approval::describe(r)
            ),
            None => println!(
                "run {}: {identity} approved step `{step}` ({approvals} of {quorum} approvals)",
                run.id
            ),
        }
        if decided.is_none() {
            return Ok(());
        }
    } else {
        if !input.is_empty() {
            return Err(CliError::usage(format!(
                "step `{step}` is not an approval gate: --input does not apply"
            )));
        }
        let decision = match verdict {
            Verdict::Approve => crate::store::Decision::Retry,
            Verdict::Reject => crate::store::Decision::Fail,
            Verdict::Skip => crate::store::Decision::Skip,
        };
        let who = match &reason {
            Some(r) => format!("{identity} ({r})"),
            None => identity,
        };
        engine.decide(&run, &step, decision, &who)?;
        println!(
            "run {}: step `{step}` {} by {who}",
            run.id,
            match verdict {
                Verdict::Approve => "will run again",
                Verdict::Reject => "marked failed",
                Verdict::Skip => "taken as done (skipped)",
            }
        );
    }
    // Nobody executes the run any more: carry it on here, unless asked not to.
    let now = engine.store.find_run(&run.id)?;
    if !no_wait && (now.owner.is_none() || engine.is_orphaned(&now)) && !now.status.is_finished() {
        return drive_foreground(engine, &run.id, None, false, false);
    }
    Ok(())
}
