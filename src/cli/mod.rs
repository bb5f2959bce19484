//! The command line: one file per command group. Handlers parse arguments, call library
//! functions and print; they hold no logic of their own.
//!
//! Exit status (DESIGN.md §16): 0 success, 1 the thing run failed, 2 bad usage or invalid input,
//! 3 an internal or environment error.

mod audit;
mod bench;
mod cron;
mod doctor;
mod msg;
mod output;
mod run;
mod serve;
mod skill;
mod vault;
mod watcher;
mod workflow;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Dirs, Settings};
use crate::engine::Engine;
use crate::error::ExitStatus;

/// An error that ends the command, with its exit status.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }
    /// The command ran and what it ran failed; the message (if any) was already printed.
    pub fn failed() -> Self {
        Self {
            code: 1,
            message: String::new(),
        }
    }
}

/// Every library error becomes the command's error with the exit status it says it means: the
/// one place where failures are mapped to exit codes.
impl<E: ExitStatus> From<E> for CliError {
    fn from(e: E) -> Self {
        Self {
            code: e.exit_status(),
            message: e.to_string(),
        }
    }
}

pub type CliResult = Result<(), CliError>;

/// claw: durable YAML workflows, schedules and fleet operations for homelabs and small ops.
#[derive(Debug, Parser)]
#[command(name = "claw", version, about, max_term_width = 100)]
#[command(
    after_help = "Data directory: --home > CLAW_HOME > SUPERPOWERS_DATA_DIR > ~/.claw\n\
Config root:    --root > CLAW_ROOT > the current directory if it has workflows/ or claw.yaml > the data directory\n\
Diagnostic log: --log-level > -v > CLAW_LOG > warn, on stderr (CLAW_LOG_FORMAT=json for JSON)\n\
Exit status:    0 success, 1 what ran failed, 2 bad usage or invalid input, 3 internal or environment error"
)]
pub struct Cli {
    /// Data directory (state: claw.db, logs, vault, audit log).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Config root (workflows/, skills/, claw.yaml, …).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Diagnostic log level on stderr: a level (error, warn, info, debug, trace) or filter
    /// directives (`claw=debug,claw::audit=info`). Overrides CLAW_LOG; the default is warn.
    /// CLAW_LOG_FORMAT=json writes JSON lines. Secret values are masked.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// More diagnostic log on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, check, show and run workflows.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Inspect and control runs: list, show, logs, resume, cancel, rerun, approve, reject.
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Secrets in the age-encrypted vault.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// The tamper-evident audit log: tail, search, verify.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Scheduled jobs in cron/jobs.json: list, add, remove, enable, disable, run, logs, next,
    /// status (the default: the daemon, job counts and every schedule's state).
    Cron(cron::CronArgs),
    /// Skills: list, info, run, validate, create, and SkillHub (hub push|pull|list|diff).
    #[command(subcommand)]
    Skill(skill::SkillCommand),
    /// Check the machine, the data directory and the settings (with where each came from).
    Doctor,
    /// Built-in benchmarks, each measured against a baseline in the same process run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Internal: the launcher of a Landlock-confined skill (confines itself, then executes).
    #[command(name = "__sandbox", hide = true)]
    Sandbox(SandboxArgs),
    /// File watchers (watchers.yaml): list the rules, test one, or watch in the foreground.
    #[command(subcommand)]
    Watcher(watcher::WatcherCommand),
    /// The daemon: scheduler, file watchers, webhooks (HTTP on 127.0.0.1:8200) and the runs they
    /// start, plus runs queued with `claw workflow run --detach`. One per data directory.
    Serve(serve::ServeArgs),
    /// Messages: channels, test CH, send CH TARGET MSG, profiles, notify PROFILE MSG.
    #[command(subcommand)]
    Msg(msg::MsgCommand),
    /// Run `claw serve` as a systemd user service: install, uninstall, status, logs.
    #[command(subcommand)]
    Daemon(serve::DaemonCommand),
}

#[derive(Debug, clap::Args)]
struct SandboxArgs {
    #[arg(long = "read", value_name = "PATH")]
    read: Vec<PathBuf>,
    #[arg(long = "write", value_name = "PATH")]
    write: Vec<PathBuf>,
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

/// Context shared by the handlers.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) dirs: Dirs,
}

impl Ctx {
    pub(crate) fn settings(&self) -> Result<Settings, CliError> {
        Settings::load(&self.dirs.root).map_err(|e| CliError::usage(e.render()))
    }

    pub(crate) fn engine(&self) -> Result<Engine, CliError> {
        Ok(Engine::open(self.dirs.clone(), self.settings()?)?)
    }
}

/// The value parser of every time-valued flag: [`crate::time::parse_instant`] against the clock
/// (a bad value is a usage error, exit status 2, naming the accepted forms).
fn instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::time::parse_instant(text, chrono::Utc::now())
}

/// Parses `args` (including the program name) and runs the command. Returns the exit status.
pub fn run(args: Vec<OsString>) -> u8 {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if let Command::Sandbox(a) = &cli.command {
        // Before anything else: the launcher reads no configuration and must not need any.
        let Some((program, args)) = a.command.split_first() else {
            return 2;
        };
        return crate::skills::sandbox::launch(&a.read, &a.write, program, args);
    }
    let logging = crate::trace::Config::resolve(cli.log_level.as_deref(), cli.verbose)
        .and_then(|c| crate::trace::init(&c));
    if let Err(e) = logging {
        eprintln!("error: {e}");
        return 2;
    }
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            if !e.message.is_empty() {
                let msg = e.message.trim_end();
                if msg.starts_with("error") {
                    eprintln!("{msg}");
                } else {
                    eprintln!("error: {msg}");
                }
            }
            e.code
        }
    }
}

fn dispatch(cli: Cli) -> CliResult {
    let dirs = Dirs::resolve(cli.home, cli.root).map_err(CliError::internal)?;
    let ctx = Ctx { dirs };
    match cli.command {
        Command::Workflow(cmd) => workflow::run(&ctx, cmd),
        Command::Run(cmd) => run::run(&ctx, cmd),
        Command::Audit(cmd) => audit::run(&ctx, cmd),
        Command::Vault(cmd) => vault::run(&ctx, cmd),
        Command::Bench(cmd) => bench::run(&ctx, cmd),
        Command::Skill(cmd) => skill::run(&ctx, cmd),
        Command::Doctor => doctor::run(&ctx),
        Command::Cron(args) => cron::run(
            &ctx,
            args.cmd
                .unwrap_or(cron::CronCommand::Status { json: false }),
        ),
        Command::Sandbox(_) => Err(CliError::internal(
            "the sandbox launcher runs before dispatch",
        )),
        Command::Watcher(cmd) => watcher::run(&ctx, cmd),
        Command::Serve(args) => serve::serve(&ctx, args),
        Command::Daemon(cmd) => serve::daemon(&ctx, cmd),
        Command::Msg(cmd) => msg::run(&ctx, cmd),
    }
}

/// A single-threaded runtime: the engine's steps are processes, so one thread drives them all.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))
}

/// `claw run list | head -1`: when stdout's reader goes away, `println!` panics. claw keeps
/// SIGPIPE ignored (it writes to steps' stdin pipes and must survive their closing), so instead
/// such a panic ends the process quietly with the status a shell expects (128 + SIGPIPE).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            #[allow(clippy::disallowed_methods)]
            std::process::exit(141);
        }
        default(info);
    }));
}
