//! `claw workflow list | show | validate | run | graph | init`.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::output::{self, TermProgress};
use super::{CliError, CliResult, Ctx};
use crate::engine::{Engine, EngineError, NewRun};
use crate::params;
use crate::store::{RunRecord, RunStatus};
use crate::workflow::Workflow;
use crate::workflow::catalogue::{self, Catalogue, FindError};
use crate::workflow::load::{self, FileErrors};

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// List the workflows in the config root's workflows/ (and the data directory's).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a workflow: params, steps, dependencies.
    Show {
        /// Name (file stem or `name:`) or path (with `/`, or ending in .yaml/.yml) of the workflow.
        #[arg(add = super::complete::workflow_names())]
        workflow: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check workflow files and report every problem, with file, line and column. Runs nothing.
    ///
    /// Without arguments, checks every workflow file. Exit status 2 when any file is invalid.
    Validate {
        /// Names or paths; all workflows when none is given.
        #[arg(add = super::complete::workflow_names())]
        workflows: Vec<String>,
        /// Also check the machine: interpreters on PATH, step kinds this claw can run.
        #[arg(long)]
        env: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow in the foreground (or queue it with --detach).
    ///
    /// Exit status 0 when the run succeeds, 1 when a step failed or the run was cancelled,
    /// 2 when the workflow or its params are invalid.
    Run {
        /// Name (file stem or `name:`) or path (with `/`, or ending in .yaml/.yml) of the workflow.
        #[arg(add = super::complete::workflow_names())]
        workflow: String,
        /// A param value, `-p key=value` (repeatable).
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Show what would run without running anything.
        #[arg(long)]
        dry_run: bool,
        /// Start the run in the background and print its id.
        #[arg(long)]
        detach: bool,
        /// Print the finished run as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// No progress lines, even on a terminal.
        #[arg(short, long)]
        quiet: bool,
        /// At most N steps at once in this run (instead of the workflow's `max_parallel`).
        #[arg(long, value_name = "N", conflicts_with = "detach", value_parser = clap::value_parser!(u32).range(1..))]
        max_parallel: Option<u32>,
    },
    /// Print the step graph.
    Graph {
        /// Name (file stem or `name:`) or path of the workflow.
        #[arg(add = super::complete::workflow_names())]
        workflow: String,
        /// `text` (an indented tree) or `mermaid`/`dot` for a diagram.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Write the starter workflows (hello, disk-report, backup-dir) into workflows/ if absent.
    ///
    /// Each runs as written on a fresh machine and touches nothing outside /tmp: params, a DAG,
    /// outputs, retries, rollback and a schedule (disk-report, daily at 08:00 under `claw serve`).
    Init,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

pub(crate) fn run(ctx: &Ctx, cmd: WorkflowCommand) -> CliResult {
    match cmd {
        WorkflowCommand::List { json } => list(ctx, json),
        WorkflowCommand::Show { workflow, json } => show(ctx, &workflow, json),
        WorkflowCommand::Validate {
            workflows,
            env,
            json,
        } => validate(ctx, &workflows, env, json),
        WorkflowCommand::Run {
            workflow,
            params,
            dry_run,
            detach,
            json,
            quiet,
            max_parallel,
        } => {
            let how = How {
                dry_run,
                detach,
                json,
                quiet,
                max_parallel,
            };
            run_workflow(ctx, &workflow, &params, how)
        }
        WorkflowCommand::Graph { workflow, format } => graph(ctx, &workflow, format),
        WorkflowCommand::Init => init(ctx),
    }
}

/// Every workflow file, sorted by stem; the config root's shadow the data directory's.
pub(crate) fn all_files(ctx: &Ctx) -> Vec<PathBuf> {
    Catalogue::new(&ctx.dirs).files()
}

/// A workflow argument: a path to a file (relative to the current directory), or a name looked
/// up in the workflow folders (see [`crate::workflow::catalogue`]).
pub(crate) fn locate(ctx: &Ctx, arg: &str) -> Result<PathBuf, CliError> {
    Catalogue::new(&ctx.dirs).find(arg).map_err(|e| match e {
        FindError::NotFound { looked, help, .. } => CliError::usage(format!(
            "workflow not found: {arg} (looked in {}){}",
            FindError::looked_in(&looked),
            help.map(|h| format!("\n  = help: {h}")).unwrap_or_default()
        )),
        other => CliError::usage(other.to_string()),
    })
}

pub(crate) fn load(ctx: &Ctx, arg: &str) -> Result<Workflow, CliError> {
    let path = locate(ctx, arg)?;
    load::load_file(&path).map_err(|e| CliError::usage(e.render()))
}

fn list(ctx: &Ctx, json: bool) -> CliResult {
    let files = all_files(ctx);
    let loaded: Vec<(PathBuf, Result<Workflow, FileErrors>)> = files
        .into_iter()
        .map(|f| {
            let r = load::load_file(&f);
            (f, r)
        })
        .collect();
    if json {
        let items: Vec<serde_json::Value> = loaded
            .iter()
            .map(|(path, r)| match r {
                Ok(wf) => serde_json::json!({
                    "name": wf.name, "description": wf.description, "path": path,
                    "steps": wf.steps.len(), "valid": true,
                }),
                Err(e) => serde_json::json!({
                    "name": path.file_stem().map(|s| s.to_string_lossy().into_owned()),
                    "path": path, "valid": false, "problems": e.diagnostics.len(),
                }),
            })
            .collect();
        output::print_json(&serde_json::Value::Array(items));
        return Ok(());
    }
    if loaded.is_empty() {
        let looked: Vec<String> = ctx
            .dirs
            .workflow_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        println!(
            "No workflows found (looked in {}). `claw workflow init` writes starter ones.",
            looked.join(", ")
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = loaded
        .iter()
        .map(|(path, r)| match r {
            Ok(wf) => vec![
                wf.name.clone(),
                wf.steps.len().to_string(),
                output::first_line(&wf.description, 60),
            ],
            Err(e) => vec![
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                "-".into(),
                format!(
                    "INVALID: {} problem(s); see `claw workflow validate {}`",
                    e.diagnostics.len(),
                    path.display()
                ),
            ],
        })
        .collect();
    print!(
        "{}",
        output::table(&["NAME", "STEPS", "DESCRIPTION"], &rows)
    );
    Ok(())
}

fn step_json(s: &crate::workflow::Step, wf: &Workflow) -> serde_json::Value {
    let mut json = serde_json::json!({
        "name": s.name,
        "type": s.kind.type_name(),
        "needs": s.needs.iter().map(|&i| wf.steps[i].name.clone()).collect::<Vec<_>>(),
        "on_failure": s.on_failure.as_str(),
        "timeout_secs": s.timeout.as_secs_f64(),
        "retries": s.retry.limit,
        "idempotent": s.idempotent,
        "if": s.if_expr,
        "command": null,
        "skill": null,
        "compensation": s.compensation.is_some(),
    });
    if let Some(obj) = json.as_object_mut() {
        for (k, v) in s.kind.show() {
            obj.insert(k.to_owned(), v);
        }
    }
    json
}

fn show(ctx: &Ctx, arg: &str, json: bool) -> CliResult {
    let wf = load(ctx, arg)?;
    if json {
        output::print_json(&serde_json::json!({
            "name": wf.name,
            "description": wf.description,
            "path": wf.path,
            "params": wf.params.iter().map(|p| serde_json::json!({
                "name": p.name, "type": p.kind.as_str(), "default": p.default,
                "enum": p.choices, "required": p.required, "description": p.description,
            })).collect::<Vec<_>>(),
            "max_parallel": wf.max_parallel,
            "timeout_secs": wf.timeout.map(|t| t.as_secs_f64()),
            "steps": wf.steps.iter().map(|s| step_json(s, &wf)).collect::<Vec<_>>(),
            "rollback": wf.rollback.iter().map(|s| step_json(s, &wf)).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!("{}  ({})", wf.name, wf.path.display());
    if !wf.description.is_empty() {
        println!("{}", wf.description);
    }
    if !wf.params.is_empty() {
        println!("\nparams:");
        for p in &wf.params {
            let default = p
                .default
                .as_ref()
                .map(|d| format!(" = {d}"))
                .unwrap_or_default();
            let req = if p.required { " (required)" } else { "" };
            let choices = if p.choices.is_empty() {
                String::new()
            } else {
                format!(" one of {}", serde_json::Value::Array(p.choices.clone()))
            };
            println!("  {}: {}{default}{req}{choices}", p.name, p.kind.as_str());
        }
    }
    println!("\nsteps:");
    let rows: Vec<Vec<String>> = wf
        .steps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.kind.type_name().to_owned(),
                s.needs
                    .iter()
                    .map(|&i| wf.steps[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                s.on_failure.as_str().to_owned(),
                output::first_line(&s.kind.describe(), 60),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["STEP", "TYPE", "NEEDS", "ON_FAILURE", "DOES"], &rows)
    );
    if !wf.rollback.is_empty() {
        println!("\nrollback:");
        for s in &wf.rollback {
            println!(
                "  {}: {}",
                s.name,
                output::first_line(&s.kind.describe(), 80)
            );
        }
    }
    Ok(())
}

fn env_problems(wf: &Workflow, dirs: &crate::config::Dirs) -> Vec<String> {
    let home = &dirs.home;
    let mut out = Vec::new();
    // Every secret a step mentions must be in the vault.
    let names = crate::expr::secrets_in(&wf.source);
    if !names.is_empty() {
        let vault = crate::vault::Vault::new(home);
        for name in names {
            match vault.get(&name) {
                Ok(Some(_)) => {}
                Ok(None) => out.push(format!(
                    "secret `{name}` is not in the vault (store it with `claw vault set {name}`)"
                )),
                Err(e) => out.push(format!("secret `{name}`: {e}")),
            }
        }
    }
    for s in wf.steps.iter().chain(&wf.rollback) {
        out.extend(
            s.kind
                .environment_problems(dirs)
                .into_iter()
                .map(|p| format!("step `{}`: {p}", s.name)),
        );
    }
    out
}

fn validate(ctx: &Ctx, args: &[String], env: bool, json: bool) -> CliResult {
    let mut targets: Vec<Result<PathBuf, String>> = Vec::new();
    if args.is_empty() {
        targets.extend(all_files(ctx).into_iter().map(Ok));
        if targets.is_empty() && !json {
            let looked: Vec<String> = ctx
                .dirs
                .workflow_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            println!("No workflow files found (looked in {}).", looked.join(", "));
            return Ok(());
        }
    } else {
        for a in args {
            targets.push(locate(ctx, a).map_err(|e| e.message));
        }
    }
    let mut invalid = 0usize;
    let mut report = Vec::new();
    for t in &targets {
        match t {
            Err(msg) => {
                invalid += 1;
                if !json {
                    eprintln!("error: {msg}\n");
                }
                report.push(serde_json::json!({"path": null, "valid": false, "problems": [{"message": msg}]}));
            }
            Ok(path) => match load::load_file(path) {
                Ok(wf) => {
                    let mut problems = catalogue::check_children(&ctx.dirs, &wf);
                    for s in wf.steps.iter().chain(&wf.rollback) {
                        if let crate::steps::StepKind::Llm(l) = &s.kind {
                            problems
                                .extend(crate::steps::llm::config_problems(&ctx.dirs, &s.name, l));
                        }
                    }
                    if env {
                        problems.extend(env_problems(&wf, &ctx.dirs));
                    }
                    if problems.is_empty() {
                        if !json {
                            println!("ok: {} ({} steps)", path.display(), wf.steps.len());
                            // Valid, but a run cannot get past these steps here: say why now.
                            if !env {
                                for s in wf.steps.iter().chain(&wf.rollback) {
                                    if let crate::workflow::StepKind::Unavailable(_) = s.kind {
                                        for p in s.kind.environment_problems(&ctx.dirs) {
                                            eprintln!(
                                                "note: {}: step `{}`: {p}: a run fails there (`--env` checks everything this machine lacks)",
                                                path.display(),
                                                s.name
                                            );
                                        }
                                    }
                                }
                            }
                        }
                        report
                            .push(serde_json::json!({"path": path, "valid": true, "problems": []}));
                    } else {
                        invalid += 1;
                        if !json {
                            for p in &problems {
                                eprintln!("error: {}: {p}", path.display());
                            }
                            eprintln!();
                        }
                        report.push(serde_json::json!({"path": path, "valid": false,
                            "problems": problems.iter().map(|p| serde_json::json!({"message": p})).collect::<Vec<_>>()}));
                    }
                }
                Err(e) => {
                    invalid += 1;
                    record_invalid(ctx, path, e.diagnostics.len());
                    if !json {
                        eprintln!("{}", e.render());
                    }
                    report.push(serde_json::json!({"path": path, "valid": false,
                        "problems": e.diagnostics.iter().map(|d| serde_json::json!({
                            "line": d.pos.line, "column": d.pos.col, "message": d.message, "help": d.help,
                        })).collect::<Vec<_>>()}));
                }
            },
        }
    }
    if json {
        output::print_json(&serde_json::Value::Array(report));
    } else {
        let total = targets.len();
        let summary = format!("{} of {total} workflow file(s) valid", total - invalid);
        if invalid > 0 {
            eprintln!("{summary}");
        } else {
            println!("{summary}");
        }
    }
    if invalid > 0 {
        Err(CliError {
            code: 2,
            message: String::new(),
        })
    } else {
        Ok(())
    }
}

/// Audits a file that failed validation (only in an existing data directory: validating
/// creates no state).
fn record_invalid(ctx: &Ctx, path: &Path, problems: usize) {
    if !ctx.dirs.home.is_dir() {
        return;
    }
    let event = crate::audit::Event::new(
        &crate::config::env::cli_actor(),
        crate::audit::Action::ConfigValidationFailed,
        &path.display().to_string(),
        "failed",
        serde_json::json!({"problems": problems}),
    );
    if let Err(e) = crate::audit::AuditLog::in_dir(&ctx.dirs.home).record(&event) {
        eprintln!("warning: {e}");
    }
}

/// How `workflow run` runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct How {
    pub(crate) dry_run: bool,
    pub(crate) detach: bool,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    pub(crate) max_parallel: Option<u32>,
}

pub(crate) fn run_workflow(ctx: &Ctx, arg: &str, raw_params: &[String], how: How) -> CliResult {
    let How {
        dry_run,
        detach,
        json,
        quiet,
        max_parallel,
    } = how;
    let mut wf = load(ctx, arg)?;
    if let Some(n) = max_parallel {
        wf.max_parallel = n as usize;
    }
    let problems = catalogue::check_children(&ctx.dirs, &wf);
    if !problems.is_empty() {
        return Err(CliError::usage(problems.join("\nerror: ")));
    }
    let mut given = Vec::new();
    for p in raw_params {
        given.push(params::split_assignment(p).map_err(|e| CliError::usage(format!("-p {e}")))?);
    }
    let bound = wf
        .bind_params(&given)
        .map_err(|errs| CliError::usage(errs.join("\nerror: ")))?;
    let engine = ctx.engine()?;
    let user = crate::config::env::local_user();
    let new = NewRun {
        workflow: &wf,
        params: bound,
        trigger: serde_json::json!({"type": "manual", "user": user}),
        dry_run,
        claim: !detach,
    };
    // A detached run is durable before its id is printed; a run driven here is synced with its
    // first step.
    let run = if detach {
        engine.create_run(&new)?
    } else {
        engine.create_run_here(&new)?
    };
    if detach {
        spawn_detached(ctx, &engine, &run.id)?;
        if json {
            output::print_json(&serde_json::json!({"id": run.id, "status": "queued"}));
        } else {
            println!("{}", run.id);
        }
        return Ok(());
    }
    drive_foreground(&engine, &run.id, Some(&wf), json, quiet)
}

/// Leaves the queued run to the daemon when one owns the data directory (`claw serve`) or to the
/// workers of the shared PostgreSQL store, else
/// starts `claw run resume ID` in its own process group, detached from this terminal.
pub(crate) fn spawn_detached(ctx: &Ctx, engine: &Engine, run_id: &str) -> CliResult {
    // On the shared PostgreSQL store, `claw worker` processes (or a daemon) take it from the queue.
    if crate::serve::lease::holder(&ctx.dirs.home).is_some() || engine.settings().store.is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::internal(format!("cannot find the claw binary: {e}")))?;
    let dir = engine.dirs.run_log_dir(run_id);
    crate::fsutil::create_dirs_private(&dir)
        .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    let log = crate::fsutil::open_append_private(&dir.join("claw.log"))
        .map_err(|e| CliError::internal(format!("cannot create the run's log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| CliError::internal(e.to_string()))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "`--detach`: `claw run resume RUN` in a process of its own"
    )]
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home")
        .arg(&ctx.dirs.home)
        .arg("--root")
        .arg(&ctx.dirs.root);
    cmd.args(["run", "resume", run_id, "--quiet"]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn()
        .map_err(|e| CliError::internal(format!("cannot start the background run: {e}")))?;
    Ok(())
}

/// Executes a run in this process, with Ctrl-C / SIGTERM cancelling it cleanly, and prints the result.
pub(crate) fn drive_foreground(
    engine: &Engine,
    run_id: &str,
    workflow: Option<&Workflow>,
    json: bool,
    quiet: bool,
) -> CliResult {
    let rt = super::runtime()?;
    let progress = TermProgress::new(quiet || json).asking(engine.dirs.clone(), engine.settings());
    let cancel = CancellationToken::new();
    let finished = rt.block_on(async {
        let watcher = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("claw: cancelling the run (stopping its steps)…");
            watcher.cancel();
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("claw: stopped; the run can be resumed with `claw run resume`");
            // The user asked twice: leave now. The run stays resumable (its owner is gone).
            #[allow(clippy::disallowed_methods)]
            std::process::exit(130);
        });
        engine
            .drive_loaded(run_id, workflow, &cancel, &progress)
            .await
    });
    let finished = match finished {
        Ok(run) => run,
        // The store or the machine failed mid-run: what was committed stays, and the run can
        // be carried on once the problem is fixed.
        Err(e @ (EngineError::Store(_) | EngineError::Io { .. })) => {
            let mut err = CliError::from(e);
            err.message.push_str(&format!(
                "
  run {run_id} stopped where it was; once this is fixed, continue it with `claw run resume {run_id}`"
            ));
            return Err(err);
        }
        Err(e) => return Err(e.into()),
    };
    report(engine, &finished, json)
}

/// Prints a finished run and maps its status to the exit status.
pub(crate) fn report(engine: &Engine, run: &RunRecord, json: bool) -> CliResult {
    let steps = engine.store.steps(&run.id)?;
    if json {
        output::print_json(&output::run_json(run, false, Some(&steps)));
    } else {
        print!("{}", output::steps_table(&steps));
        let count = |st: crate::store::StepStatus| steps.iter().filter(|s| s.status == st).count();
        let mut line = format!(
            "\nRun {} {} in {}: {} succeeded, {} failed, {} skipped",
            run.id,
            run.status,
            output::human_ms(output::duration_ms(
                run.started_at.or(Some(run.created_at)),
                run.finished_at
            )),
            count(crate::store::StepStatus::Succeeded),
            count(crate::store::StepStatus::Failed),
            count(crate::store::StepStatus::Skipped),
        );
        if let Some(e) = &run.error
            && run.status != RunStatus::Succeeded
        {
            line.push_str(&format!("\n{}", output::first_line(e, 200)));
        }
        // What explains a failure is usually the end of its stderr, not its exit code.
        for s in steps
            .iter()
            .filter(|s| s.status == crate::store::StepStatus::Failed)
        {
            let tail: Vec<&str> = s
                .stderr_tail
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            let last = &tail[tail.len().saturating_sub(3)..];
            if !last.is_empty() {
                line.push_str(&format!("\n  {} (stderr, last lines):", s.name));
                for l in last {
                    line.push_str(&format!("\n    {}", output::first_line(l, 200)));
                }
            }
            let name = if s
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            {
                s.name.clone()
            } else {
                format!("'{}'", s.name.replace('\'', "'\\''"))
            };
            line.push_str(&format!(
                "\n  the whole output: claw run logs {} {}",
                run.id,
                crate::diagnostic::visible(&name)
            ));
        }
        println!("{line}");
    }
    match run.status {
        RunStatus::Succeeded => Ok(()),
        RunStatus::Queued | RunStatus::Running | RunStatus::Waiting => Ok(()),
        RunStatus::Failed | RunStatus::Cancelled => Err(CliError::failed()),
    }
}

pub(crate) fn graph(ctx: &Ctx, arg: &str, format: GraphFormat) -> CliResult {
    let wf = load(ctx, arg)?;
    let id = |i: usize| format!("s{i}");
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    match format {
        GraphFormat::Dot => {
            println!("digraph \"{}\" {{\n  rankdir=LR;", esc(&wf.name));
            for s in &wf.steps {
                println!("  {} [label=\"{}\"];", id(s.index), esc(&s.name));
            }
            for s in &wf.steps {
                for &d in &s.needs {
                    println!("  {} -> {};", id(d), id(s.index));
                }
            }
            println!("}}");
        }
        GraphFormat::Mermaid => {
            println!("graph TD");
            for s in &wf.steps {
                println!("  {}[\"{}\"]", id(s.index), s.name.replace('"', "#quot;"));
            }
            for s in &wf.steps {
                for &d in &s.needs {
                    println!("  {} --> {}", id(d), id(s.index));
                }
            }
        }
        GraphFormat::Text => {
            // Levels: a step's level is one more than its deepest dependency's.
            let mut level = vec![0usize; wf.steps.len()];
            for s in &wf.steps {
                level[s.index] = s.needs.iter().map(|&d| level[d] + 1).max().unwrap_or(0);
            }
            // Dependencies may point forward in the file; settle the levels.
            for _ in 0..wf.steps.len() {
                for s in &wf.steps {
                    level[s.index] = s.needs.iter().map(|&d| level[d] + 1).max().unwrap_or(0);
                }
            }
            let max = level.iter().copied().max().unwrap_or(0);
            for l in 0..=max {
                let names: Vec<String> = wf
                    .steps
                    .iter()
                    .filter(|s| level[s.index] == l)
                    .map(|s| {
                        if s.needs.is_empty() {
                            s.name.clone()
                        } else {
                            let deps: Vec<&str> =
                                s.needs.iter().map(|&d| wf.steps[d].name.as_str()).collect();
                            format!("{} ← {}", s.name, deps.join(", "))
                        }
                    })
                    .collect();
                println!("{}. {}", l + 1, names.join("   |   "));
            }
        }
    }
    Ok(())
}

fn init(ctx: &Ctx) -> CliResult {
    // The repository's own examples: each runs as written on a fresh machine, reads or writes
    // nothing outside /tmp, and together they show params, a DAG, outputs, retries, rollback
    // and a schedule.
    use super::template::TEMPLATES;
    let dir = ctx.dirs.root.join("workflows");
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    for (name, text) in TEMPLATES {
        let path = dir.join(format!("{name}.yaml"));
        if path.exists() {
            println!("kept     {}", path.display());
            continue;
        }
        std::fs::write(&path, text)
            .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))?;
        // `claw template` tells later whether this copy was edited or is only older.
        super::template::record(ctx, name, text)?;
        println!("created  {}", path.display());
    }
    println!(
        "\nTry: claw workflow run hello -p who=you    (then: claw run list, claw workflow graph disk-report)"
    );
    Ok(())
}

/// The seed's `claw dag` commands, kept for scripts written for it.
#[derive(Debug, Subcommand)]
pub(crate) enum DagCommand {
    /// The seed's name for `claw workflow run`: runs the workflow (its steps as a DAG).
    Run {
        /// Name (file stem or `name:`) or path of the workflow.
        #[arg(add = super::complete::workflow_names())]
        workflow: String,
        /// At most N steps at once (the seed's default was 4; claw's is the workflow's
        /// `max_parallel`).
        #[arg(long = "max-workers", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_workers: Option<u32>,
        /// Show what would run without running anything.
        #[arg(long)]
        dry_run: bool,
        /// A param value, `-p key=value` (repeatable).
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// The seed's name for `claw workflow graph`.
    Visualize {
        /// Name (file stem or `name:`) or path of the workflow.
        #[arg(add = super::complete::workflow_names())]
        workflow: String,
        /// `text` (an indented tree) or `mermaid`/`dot` for a diagram.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
}

pub(crate) fn dag(ctx: &Ctx, cmd: DagCommand) -> CliResult {
    match cmd {
        DagCommand::Run {
            workflow,
            max_workers,
            dry_run,
            params,
        } => run_workflow(
            ctx,
            &workflow,
            &params,
            How {
                dry_run,
                detach: false,
                json: false,
                quiet: false,
                max_parallel: max_workers,
            },
        ),
        DagCommand::Visualize { workflow, format } => graph(ctx, &workflow, format),
    }
}
