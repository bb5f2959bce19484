//! The command line: one file per command group. Handlers parse arguments, call library
//! functions and print; they hold no logic of their own.
//!
//! Exit status (DESIGN.md §16): 0 success, 1 the thing run failed, 2 bad usage or invalid input,
//! 3 an internal or environment error.

mod audit;
mod bench;
mod browse;
mod colour;
mod complete;
mod cron;
mod dashboard;
mod doctor;
mod intake;
mod llm;
mod mcp;
mod memory;
mod msg;
mod output;
mod pack;
mod policy;
mod run;
mod serve;
mod setup;
mod skill;
mod ssh;
mod status;
mod store;
mod template;
mod vault;
mod watcher;
mod worker;
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
    /// What the command ran failed, for the reason given.
    pub fn failed_with(message: impl Into<String>) -> Self {
        Self {
            code: 1,
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
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    home: Option<PathBuf>,
    /// Config root (workflows/, skills/, claw.yaml, …).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    root: Option<PathBuf>,
    /// Diagnostic log level on stderr: a level (error, warn, info, debug, trace) or filter
    /// directives (`claw=debug,claw::audit=info`). Overrides CLAW_LOG; the default is warn.
    /// CLAW_LOG_FORMAT=json writes JSON lines. Secret values are masked.
    #[arg(
        long,
        global = true,
        value_name = "FILTER",
        help_heading = "Global options"
    )]
    log_level: Option<String>,
    /// Colour: `auto` (on a terminal, unless NO_COLOR is set), `always` or `never`.
    #[arg(long, global = true, value_enum, default_value_t = colour::ColorChoice::Auto, value_name = "WHEN", help_heading = "Global options")]
    color: colour::ColorChoice,
    /// More diagnostic log on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, check, show and run workflows.
    #[command(subcommand)]
    #[command(after_long_help = "Examples:
  claw workflow init                      write three starter workflows into workflows/
  claw workflow validate --env            check every workflow, and that this machine can run it
  claw workflow run hello -p who=world    run one in the foreground
  claw workflow run backup --detach       queue it; `claw run logs ID -f` follows it
  claw workflow graph deploy --format mermaid")]
    Workflow(workflow::WorkflowCommand),
    /// Inspect and control runs: list, show, logs, resume, cancel, rerun, approve, reject.
    #[command(after_long_help = "Examples:
  claw run list -n 5 --status failed
  claw run show 01J9            a unique start of an id is enough
  claw run logs 01J9 build -f   follow one step's output
  claw run approve 01J9 gate --input reason=ok
  claw run rerun 01J9 --from deploy")]
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Secrets in the age-encrypted vault.
    #[command(after_long_help = "Examples:
  claw vault init
  claw vault set GITHUB_TOKEN            the value is read without echo
  echo \"$TOKEN\" | claw vault set API_KEY
  claw vault list")]
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// The tamper-evident audit log: tail, search, verify.
    #[command(after_long_help = "Examples:
  claw audit tail -n 20
  claw audit search deploy --since 7d --action run
  claw audit verify")]
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Scheduled jobs in cron/jobs.json: list, add, remove, enable, disable, run, logs, next,
    /// status (the default: the daemon, job counts and every schedule's state).
    #[command(after_long_help = "Examples:
  claw cron add disk @hourly 'df -h /'
  claw cron add nightly '0 3 * * *' backup --type workflow --arg target=nas
  claw cron run disk && claw cron logs disk -n 1
  claw cron next -n 5")]
    Cron(cron::CronArgs),
    /// Skills: list, info, run, validate, create, and SkillHub (hub push|pull|list|diff).
    #[command(after_long_help = "Examples:
  claw skill create disk-report --type bash
  claw skill run disk-report path=/
  claw skill info disk-report")]
    #[command(subcommand)]
    Skill(skill::SkillCommand),
    /// The SSH fleet (hosts.yaml): hosts, groups, run, test, trust, upload, download, health.
    #[command(subcommand)]
    Ssh(ssh::SshCommand),
    /// Check the machine, the data directory and the settings (with where each came from).
    Doctor,
    /// One screen on every subsystem: the daemon, workflows, runs, cron, watchers, skills, the
    /// vault and the audit log (the seed's `claw status`).
    Status {
        /// Print JSON (`{subsystems: [{name, ok, detail, count}]}`).
        #[arg(long)]
        json: bool,
    },
    /// The seed's `claw dag run|visualize`: `workflow run` and `workflow graph` by other names.
    #[command(subcommand)]
    Dag(workflow::DagCommand),
    /// Built-in benchmarks, each measured against a baseline in the same process run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Internal: the launcher of a Landlock-confined skill (confines itself, then executes).
    #[command(name = "__sandbox", hide = true)]
    Sandbox(SandboxArgs),
    /// Internal: the launcher of Chromium (dies with claw, then executes Chromium).
    #[command(name = "__chromium", hide = true)]
    Chromium(ChromiumArgs),
    /// Headless Chromium: open, screenshot, extract, table, js URL, and the profiles.
    #[command(after_long_help = "Examples:
  claw browse open https://example.com
  claw browse screenshot https://example.com -o page.png
  claw browse table https://example.com/prices -s table.prices --json
  claw browse profiles")]
    #[command(subcommand)]
    Browse(browse::BrowseCommand),
    /// File watchers (watchers.yaml): list the rules, test one, or watch in the foreground.
    #[command(after_long_help = "Examples:
  claw watcher list
  claw watcher test incoming --path /srv/inbox/a.csv
  claw watcher start            run the rules in the foreground")]
    #[command(subcommand)]
    Watcher(watcher::WatcherCommand),
    /// The daemon: scheduler, file watchers, webhooks (HTTP on 127.0.0.1:8200) and the runs they
    /// start, plus runs queued with `claw workflow run --detach`. One per data directory.
    #[command(after_long_help = "Examples:
  claw serve                    in the foreground (Ctrl-C stops it after running steps finish)
  claw daemon install           as a systemd service")]
    Serve(serve::ServeArgs),
    /// Messages: channels, test CH, send CH TARGET MSG, profiles, notify PROFILE MSG.
    #[command(subcommand)]
    Msg(msg::MsgCommand),
    /// LLM providers: list, test PROVIDER, set-default PROVIDER, ask PROMPT, usage.
    #[command(
        subcommand,
        after_long_help = "Examples:
  claw llm list
  claw llm test anthropic
  claw llm ask \"Summarise: disks are 91% full\" --provider openai"
    )]
    Llm(llm::LlmCommand),
    /// The memory store (memory.db): remember, recall, search, forget, list, stats, decay,
    /// context.
    #[command(after_long_help = "Examples:
  claw memory remember nas-ip 10.0.0.5 -c fact -t network,storage
  claw memory recall nas-ip
  claw memory search 'nas stor'      every word a prefix, best match first
  claw memory context -p homelab")]
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
    /// Serve claw's tools over the Model Context Protocol on stdin/stdout (the seed's claw-mcp
    /// tool names): `claude mcp add claw -- claw mcp`.
    Mcp,
    /// Command policies (policies.yaml over built-in rules): list, check COMMAND, check-file
    /// PATH, test-output TEXT.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Packs of skills and workflows (the seed's pack.yaml): install, update, list, uninstall,
    /// validate.
    #[command(subcommand)]
    Pack(pack::PackCommand),
    /// The seed's intake: a request, one requirement per line, mapped to skills (by an LLM or
    /// by keywords) and, with --execute, run in parallel.
    #[command(subcommand)]
    Intake(intake::IntakeCommand),
    /// The starter workflows (`workflow init`): list, init, diff, upgrade, reset.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Setup: `check` is a checklist of what is configured; vault, telegram and dashboard say
    /// how to configure each (the interactive wizard is not built yet).
    Setup {
        #[command(subcommand)]
        cmd: Option<setup::SetupCommand>,
    },
    /// Run `claw serve` as a systemd user service: install, uninstall, status, logs.
    #[command(subcommand)]
    Daemon(serve::DaemonCommand),
    /// The dashboard: `claw dashboard` serves it (the daemon, as `claw serve --bind`); users and
    /// API tokens: `claw dashboard user add|passwd|remove|list`, `claw dashboard token add|remove|list`.
    #[command(after_long_help = "Examples:
  claw dashboard user add alice          the password is read without echo
  claw dashboard                         http://127.0.0.1:8200/
  claw dashboard token add alice ci      a token for the JSON API (/api/v1)")]
    Dashboard(dashboard::DashboardArgs),
    /// Print a completion script: `claw completions bash > ~/.local/share/bash-completion/completions/claw`
    /// (zsh: into a folder of $fpath as `_claw`; fish: ~/.config/fish/completions/claw.fish).
    ///
    /// The script asks claw for candidates on every Tab press: workflow names, run ids, cron job
    /// names and skill names as they are now. Load it at shell start-up so it follows upgrades:
    /// `source <(claw completions bash)` in ~/.bashrc, `source <(claw completions zsh)` in ~/.zshrc,
    /// `claw completions fish | source` in ~/.config/fish/config.fish.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: complete::Shell,
    },
    /// Print the manual page (roff): `claw man | man -l -`, or save it as
    /// /usr/local/share/man/man1/claw.1.
    Man,
    /// Execute queued runs from the shared PostgreSQL store (scale-out): claims runs with a
    /// lease and a fencing epoch, wakes on LISTEN/NOTIFY, resumes runs of dead workers.
    #[command(after_long_help = "Examples:
  CLAW_STORE_URL=postgres://claw@db:5432/claw claw worker --slots 4
  claw worker --labels gpu,lan    also runs whose workflow says runs_on: [gpu] or [gpu, lan]")]
    Worker(worker::WorkerArgs),
    /// The run store itself: `claw store migrate --to postgres://…` copies this data directory's
    /// SQLite store into PostgreSQL (scale-out).
    #[command(subcommand)]
    Store(store::StoreCommand),
}

#[derive(Debug, clap::Args)]
struct ChromiumArgs {
    /// The pid of the claw that starts it (Chromium is not started if that one is gone).
    #[arg(long)]
    parent: i32,
    /// Chromium and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

/// Internal: the sandbox launcher's arguments.
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

    /// The store `claw.yaml` (or `CLAW_STORE_URL`) names: SQLite in the data directory by
    /// default, PostgreSQL for scale-out.
    pub(crate) fn store(&self) -> Result<std::sync::Arc<dyn crate::store::Store>, CliError> {
        self.dirs.ensure_home().map_err(|e| {
            CliError::internal(format!("cannot create {}: {e}", self.dirs.home.display()))
        })?;
        let settings = self.settings()?;
        Ok(crate::store::open(
            settings
                .store
                .as_ref()
                .map(crate::config::settings::StoreUrl::as_str),
            &self.dirs.db_path(),
        )?)
    }
}

/// The value parser of every time-valued flag: [`crate::time::parse_instant`] against the clock
/// (a bad value is a usage error, exit status 2, naming the accepted forms).
fn instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::time::parse_instant(text, chrono::Utc::now())
}

/// The whole command line as clap sees it (for tests of the help text and for tools).
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    Cli::command()
}

/// Parses `args` (including the program name) and runs the command. Returns the exit status.
pub fn run(args: Vec<OsString>) -> u8 {
    quiet_on_closed_stdout();
    if complete::answer(&args) {
        return 0;
    }
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
    if let Command::Chromium(a) = &cli.command {
        let Some((program, args)) = a.command.split_first() else {
            return 2;
        };
        return crate::browser::launch::exec_launcher(a.parent, program, args);
    }
    let logging = crate::trace::Config::resolve(cli.log_level.as_deref(), cli.verbose)
        .and_then(|c| crate::trace::init(&c));
    if let Err(e) = logging {
        eprintln!("error: {e}");
        return 2;
    }
    colour::set(cli.color);
    let result = dispatch(cli);
    // No Chromium outlives the command (closed gracefully: its profile is written).
    crate::browser::close_all();
    match result {
        Ok(()) => 0,
        Err(e) => {
            if !e.message.is_empty() {
                let msg = e.message.trim_end();
                let prefix = colour::paint(colour::stderr(), colour::Tone::Bad, "error:");
                match msg.strip_prefix("error:") {
                    Some(rest) => eprintln!("{prefix}{rest}"),
                    None if msg.starts_with("error") => eprintln!("{msg}"),
                    None => eprintln!("{prefix} {msg}"),
                }
            }
            e.code
        }
    }
}

fn dispatch(cli: Cli) -> CliResult {
    let dirs = Dirs::resolve(cli.home, cli.root).map_err(CliError::internal)?;
    crate::policy::install(&dirs.root, &dirs.home);
    let ctx = Ctx { dirs };
    match cli.command {
        Command::Workflow(cmd) => workflow::run(&ctx, cmd),
        Command::Run(cmd) => run::run(&ctx, cmd),
        Command::Audit(cmd) => audit::run(&ctx, cmd),
        Command::Vault(cmd) => vault::run(&ctx, cmd),
        Command::Bench(cmd) => bench::run(&ctx, cmd),
        Command::Skill(cmd) => skill::run(&ctx, cmd),
        Command::Ssh(cmd) => ssh::run(&ctx, cmd),
        Command::Doctor => doctor::run(&ctx),
        Command::Status { json } => status::run(&ctx, json),
        Command::Dag(cmd) => workflow::dag(&ctx, cmd),
        Command::Completions { shell } => complete::script(shell),
        Command::Man => complete::man(),
        Command::Cron(args) => cron::run(
            &ctx,
            args.cmd
                .unwrap_or(cron::CronCommand::Status { json: false }),
        ),
        Command::Sandbox(_) | Command::Chromium(_) => {
            Err(CliError::internal("the launchers run before dispatch"))
        }
        Command::Browse(cmd) => browse::run(&ctx, cmd),
        Command::Watcher(cmd) => watcher::run(&ctx, cmd),
        Command::Serve(args) => serve::serve(&ctx, args),
        Command::Daemon(cmd) => serve::daemon(&ctx, cmd),
        Command::Msg(cmd) => msg::run(&ctx, cmd),
        Command::Llm(cmd) => llm::run(&ctx, cmd),
        Command::Memory(cmd) => memory::run(&ctx, cmd),
        Command::Mcp => mcp::run(&ctx),
        Command::Policy(cmd) => policy::run(&ctx, cmd),
        Command::Pack(cmd) => pack::run(&ctx, cmd),
        Command::Intake(cmd) => intake::run(&ctx, cmd),
        Command::Template(cmd) => template::run(&ctx, cmd),
        Command::Setup { cmd } => setup::run(&ctx, cmd),
        Command::Dashboard(args) => dashboard::run(&ctx, args),
        Command::Worker(args) => worker::run(&ctx, args),
        Command::Store(cmd) => store::run(&ctx, cmd),
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
