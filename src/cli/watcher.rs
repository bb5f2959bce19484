//! `claw watcher list | test RULE | start`.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::output;
use super::{CliError, CliResult, Ctx};
use crate::diagnostic::did_you_mean;
use crate::triggers::launch::{Execution, Launcher, RunDriver};
use crate::triggers::watch::{
    self, ActionKind, Dispatcher, EventKind, FsEvent, Notice, Outcome, Report, RuleSet,
};

#[derive(Debug, Subcommand)]
pub(crate) enum WatcherCommand {
    /// List the rules in watchers.yaml (the config root's, else the data directory's).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show what a rule would do for an event (with --run, do it).
    ///
    /// By default the event is the seed's synthetic `created` event for `<dir>/test_file.tmp`.
    Test {
        /// The rule's name.
        rule: String,
        /// The file the event is about (default: `test_file.tmp` in the watched directory).
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
        /// created, modified, deleted or moved.
        #[arg(long, value_name = "EVENT", default_value = "created")]
        event: String,
        /// Run the action for real (a workflow action runs the workflow in the foreground).
        #[arg(long)]
        run: bool,
    },
    /// Watch in the foreground (watchers only, no daemon) until Ctrl-C or SIGTERM, printing
    /// each event and the outcome of its action.
    Start,
}

pub(crate) fn run(ctx: &Ctx, cmd: WatcherCommand) -> CliResult {
    match cmd {
        WatcherCommand::List { json } => list(ctx, json),
        WatcherCommand::Test {
            rule,
            path,
            event,
            run,
        } => test(ctx, &rule, path, &event, run),
        WatcherCommand::Start => start(ctx),
    }
}

fn load(ctx: &Ctx) -> Result<RuleSet, CliError> {
    watch::rules::load(&ctx.dirs).map_err(|e| CliError::usage(e.render()))
}

fn list(ctx: &Ctx, json: bool) -> CliResult {
    let set = load(ctx)?;
    if json {
        output::print_json(&serde_json::Value::Array(
            set.rules.iter().map(watch::Rule::to_json).collect(),
        ));
        return Ok(());
    }
    let Some(path) = &set.path else {
        println!(
            "No watchers.yaml (looked in {} and {}).",
            ctx.dirs.root.display(),
            ctx.dirs.home.display()
        );
        return Ok(());
    };
    if set.rules.is_empty() {
        println!("No rules in {}.", path.display());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = set
        .rules
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.path.clone(),
                r.events
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                r.action.as_str().to_owned(),
                output::first_line(&r.command, 40),
                if r.enabled { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["NAME", "PATH", "EVENTS", "ACTION", "COMMAND", "ENABLED"],
            &rows
        )
    );
    Ok(())
}

fn needs_engine(set: &RuleSet) -> bool {
    set.rules.iter().any(|r| r.action == ActionKind::Workflow)
}

/// The dispatcher, with an engine and a run driver when a rule starts workflows.
fn dispatcher(
    ctx: &Ctx,
    with_engine: bool,
    cancel: &CancellationToken,
) -> Result<(Dispatcher, Option<std::thread::JoinHandle<()>>), CliError> {
    let settings = ctx.settings()?;
    let (launcher, thread) = if with_engine {
        let engine = Arc::new(ctx.engine()?);
        let (driver, thread) = RunDriver::spawn(engine.clone(), cancel.clone())
            .map_err(|e| CliError::internal(format!("cannot start the run driver: {e}")))?;
        (
            Some(Launcher::new(engine, Execution::Drive(driver))),
            Some(thread),
        )
    } else {
        (None, None)
    };
    Ok((
        Dispatcher::new(ctx.dirs.clone(), settings, launcher, cancel.clone()),
        thread,
    ))
}

fn test(ctx: &Ctx, name: &str, path: Option<PathBuf>, event: &str, run: bool) -> CliResult {
    let set = load(ctx)?;
    let Some(rule) = set.get(name) else {
        let hint = did_you_mean(name, set.rules.iter().map(|r| r.name.as_str()))
            .map(|h| format!("\n  = help: {h}"))
            .unwrap_or_default();
        return Err(CliError::usage(format!(
            "no watcher rule named `{name}`{hint}"
        )));
    };
    let Some(kind) = EventKind::parse(event) else {
        return Err(CliError::usage(format!(
            "unknown event `{event}` (expected created, modified, deleted or moved)"
        )));
    };
    let path = path.map_or_else(
        || rule.dir.join("test_file.tmp"),
        |p| std::path::absolute(&p).unwrap_or(p),
    );
    let ev = FsEvent {
        rule: rule.name.clone(),
        kind,
        path,
        from: None,
    };
    if !rule.matches(&ev.path) {
        println!(
            "note: rule `{}` would not act on {} (outside {}{}, or ignored)",
            rule.name,
            ev.path.display(),
            rule.dir.display(),
            rule.pattern
                .as_deref()
                .map(|p| format!(" or not matching `{p}`"))
                .unwrap_or_default()
        );
    }
    if !rule.wants(kind) {
        println!(
            "note: rule `{}` does not listen for `{kind}` events (it listens for {})",
            rule.name,
            rule.events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !rule.enabled {
        println!("note: rule `{}` is disabled", rule.name);
    }
    println!(
        "{} {}: would {}",
        kind,
        ev.path.display(),
        watch::action::describe(rule, &ev)
    );
    if !run {
        return Ok(());
    }
    let cancel = CancellationToken::new();
    let rt = super::runtime()?;
    let (dispatcher, thread) = dispatcher(ctx, rule.action == ActionKind::Workflow, &cancel)?;
    let result = rt.block_on(async {
        let outcome = dispatcher.dispatch(rule, &ev).await;
        print_outcome(&ev, &outcome);
        match outcome {
            Outcome::Done(_) => Ok(()),
            Outcome::Failed(_) => Err(CliError::failed()),
            Outcome::Started { run_id, finished } => {
                let Some(done) = finished else { return Ok(()) };
                match done.await {
                    Ok(Ok(run)) => {
                        println!("run {run_id} {}", run.status);
                        if run.status == crate::store::RunStatus::Succeeded {
                            Ok(())
                        } else {
                            Err(CliError::failed())
                        }
                    }
                    Ok(Err(e)) => Err(CliError::internal(e)),
                    Err(_) => Err(CliError::internal("the run driver stopped")),
                }
            }
        }
    });
    drop(dispatcher);
    if let Some(t) = thread {
        let _ = t.join();
    }
    result
}

fn print_outcome(ev: &FsEvent, outcome: &Outcome) {
    match outcome {
        Outcome::Done(what) => println!(
            "[{}] {} {}: ok: {what}",
            ev.rule,
            ev.kind,
            ev.path.display()
        ),
        Outcome::Failed(why) => println!(
            "[{}] {} {}: failed: {why}",
            ev.rule,
            ev.kind,
            ev.path.display()
        ),
        Outcome::Started { run_id, .. } => println!(
            "[{}] {} {}: started run {run_id}",
            ev.rule,
            ev.kind,
            ev.path.display()
        ),
    }
}

fn start(ctx: &Ctx) -> CliResult {
    let set = load(ctx)?;
    let rules: Vec<watch::Rule> = set.enabled().cloned().collect();
    if rules.is_empty() {
        return Err(CliError::usage(match &set.path {
            Some(p) => format!("nothing to watch: {} has no enabled rule", p.display()),
            None => format!(
                "nothing to watch: no watchers.yaml in {} or {}",
                ctx.dirs.root.display(),
                ctx.dirs.home.display()
            ),
        }));
    }
    let cancel = CancellationToken::new();
    let (dispatcher, thread) = dispatcher(ctx, needs_engine(&set), &cancel)?;
    let dispatcher = Arc::new(dispatcher);
    let rt = super::runtime()?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, async {
        let stop = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("claw: stopping the watchers…");
            stop.cancel();
        });
        let notify: Rc<dyn Fn(&Notice<'_>)> = Rc::new(print_notice);
        watch::serve(rules, dispatcher.clone(), cancel.clone(), notify).await
    });
    drop(dispatcher);
    if let Some(t) = thread {
        let _ = t.join();
    }
    result.map_err(|e| CliError::internal(e.to_string()))
}

fn print_notice(n: &Notice<'_>) {
    match n {
        Notice::Watcher(Report::Watching { rule, dir }) => {
            println!("[{rule}] watching {}", dir.display());
        }
        Notice::Watcher(Report::Waiting {
            rule,
            dir,
            ancestor,
        }) => println!(
            "[{rule}] waiting for {} to appear (watching {})",
            dir.display(),
            ancestor.display()
        ),
        Notice::Watcher(Report::Problem(p)) => eprintln!("warning: {p}"),
        Notice::Watcher(Report::Event(e)) => match &e.from {
            Some(from) => println!(
                "[{}] {} {} (from {})",
                e.rule,
                e.kind,
                e.path.display(),
                from.display()
            ),
            None => println!("[{}] {} {}", e.rule, e.kind, e.path.display()),
        },
        Notice::Action { event, outcome } => print_outcome(event, outcome),
        Notice::RunFinished {
            event,
            run_id,
            result,
        } => match result {
            Ok(run) => println!("[{}] run {run_id} {}", event.rule, run.status),
            Err(e) => println!("[{}] run {run_id} could not run: {e}", event.rule),
        },
    }
}
