//! `claw serve` and `claw daemon install|uninstall|status|logs`.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx};
use crate::serve::{self, Options, lease, systemd};

/// How the daemon listens and stops: given to `claw serve` and written into the unit file.
#[derive(Debug, clap::Args)]
pub(crate) struct DaemonArgs {
    /// Address of the HTTP listener (webhooks at POST /hooks/<name>, GET /healthz).
    #[arg(long, value_name = "ADDR", default_value = serve::DEFAULT_BIND)]
    bind: SocketAddr,
    /// Run without the HTTP listener.
    #[arg(long, conflicts_with = "bind")]
    no_http: bool,
    /// How long running runs and jobs may take to finish after SIGTERM/SIGINT before their steps
    /// are stopped and recorded interrupted (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    grace: String,
}

impl DaemonArgs {
    /// The listener address (`None` with `--no-http`) and the grace period.
    fn resolve(&self) -> Result<(Option<SocketAddr>, Duration), CliError> {
        let grace = crate::time::duration::parse(&self.grace)
            .map_err(|e| CliError::usage(format!("invalid --grace `{}`: {e}", self.grace)))?;
        Ok(((!self.no_http).then_some(self.bind), grace))
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// If another daemon owns the data directory, wait for it to exit instead of refusing.
    #[arg(long)]
    wait: bool,
    /// If the seed's cron daemon runs on this data directory, stop it (SIGTERM) and take its
    /// place instead of refusing (both would fire every job).
    #[arg(long)]
    take_over: bool,
    /// Runs executed at once (more stay queued).
    #[arg(long, value_name = "N", default_value_t = serve::DEFAULT_MAX_RUNS)]
    max_runs: usize,
    /// Install and start the systemd user unit running this command (same as `claw daemon install`).
    #[arg(long)]
    install: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DaemonCommand {
    /// Write the systemd user unit `claw.service` for `claw serve` and enable and start it.
    Install {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Only write the unit file (do not call systemctl).
        #[arg(long)]
        no_start: bool,
    },
    /// Stop and disable the unit and remove its file.
    Uninstall,
    /// Whether a daemon owns this data directory (pid), and the unit's state.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The daemon's log (`<home>/logs/serve.log`).
    Logs {
        /// Lines from the end.
        #[arg(
            short = 'n',
            long = "limit",
            visible_alias = "lines",
            default_value_t = 50,
            value_name = "N"
        )]
        n: usize,
        /// Keep printing lines as they are written.
        #[arg(short, long)]
        follow: bool,
    },
}

pub(crate) fn serve(ctx: &Ctx, args: ServeArgs) -> CliResult {
    let (bind, grace) = args.daemon.resolve()?;
    if args.install {
        return install(ctx, bind, grace, false);
    }
    let settings = ctx.settings()?;
    let opts = Options {
        bind,
        grace,
        wait: args.wait,
        take_over: args.take_over,
        max_runs: args.max_runs,
    };
    Ok(serve::run(
        ctx.dirs.clone(),
        settings,
        &opts,
        CancellationToken::new(),
    )?)
}

pub(crate) fn daemon(ctx: &Ctx, cmd: DaemonCommand) -> CliResult {
    match cmd {
        DaemonCommand::Install { daemon, no_start } => {
            let (bind, grace) = daemon.resolve()?;
            install(ctx, bind, grace, no_start)
        }
        DaemonCommand::Uninstall => uninstall(),
        DaemonCommand::Status { json } => status(ctx, json),
        DaemonCommand::Logs { n, follow } => logs(ctx, n, follow),
    }
}

fn unit_path() -> Result<std::path::PathBuf, CliError> {
    systemd::unit_dir()
        .map(|d| d.join(systemd::UNIT))
        .ok_or_else(|| CliError::internal("cannot find the systemd user unit directory: neither XDG_CONFIG_HOME nor HOME is set"))
}

fn install(ctx: &Ctx, bind: Option<SocketAddr>, grace: Duration, no_start: bool) -> CliResult {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::internal(format!("cannot find the claw binary: {e}")))?;
    let path = unit_path()?;
    let home = std::path::absolute(&ctx.dirs.home).unwrap_or_else(|_| ctx.dirs.home.clone());
    let root = std::path::absolute(&ctx.dirs.root).unwrap_or_else(|_| ctx.dirs.root.clone());
    let bind = bind.map(|b| b.to_string());
    let text = systemd::unit_text(&exe, &home, &root, bind.as_deref(), grace);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    crate::fsutil::write_atomic(&path, ".claw.service.", text.as_bytes())
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    if no_start {
        println!(
            "start it with: systemctl --user daemon-reload && systemctl --user enable --now {}",
            systemd::UNIT
        );
        return Ok(());
    }
    let started = systemd::systemctl(&["daemon-reload"])
        .and_then(|_| systemd::systemctl(&["enable", "--now", systemd::UNIT]));
    match started {
        Ok(_) => {
            println!(
                "enabled and started {} (logs: claw daemon logs)",
                systemd::UNIT
            );
            Ok(())
        }
        Err(e) => Err(CliError::internal(format!(
            "the unit is written, but systemctl could not start it: {e}\n  = help: on a machine without a systemd user session, run `claw serve` under your own supervisor"
        ))),
    }
}

fn uninstall() -> CliResult {
    let path = unit_path()?;
    if !path.exists() {
        println!(
            "{} is not installed ({} does not exist)",
            systemd::UNIT,
            path.display()
        );
        return Ok(());
    }
    if let Err(e) = systemd::systemctl(&["disable", "--now", systemd::UNIT]) {
        eprintln!("warning: systemctl: {e}");
    }
    std::fs::remove_file(&path)
        .map_err(|e| CliError::internal(format!("cannot remove {}: {e}", path.display())))?;
    let _ = systemd::systemctl(&["daemon-reload"]);
    println!("removed {}", path.display());
    Ok(())
}

fn status(ctx: &Ctx, json: bool) -> CliResult {
    let holder = lease::holder(&ctx.dirs.home);
    let unit = unit_path().ok().filter(|p| p.exists());
    let active = unit
        .as_ref()
        .map(|_| systemd::systemctl(&["is-active", systemd::UNIT]).unwrap_or_else(|e| e));
    if json {
        let v = serde_json::json!({
            "running": holder.is_some(),
            "pid": holder.flatten(),
            "home": ctx.dirs.home.display().to_string(),
            "unit": unit.as_ref().map(|p| p.display().to_string()),
            "unit_state": active,
            "log": serve::log_path(&ctx.dirs.home).display().to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        match holder {
            Some(pid) => println!(
                "claw serve is running{} on {}",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                ctx.dirs.home.display()
            ),
            None => println!("claw serve is not running on {}", ctx.dirs.home.display()),
        }
        match (&unit, &active) {
            (Some(p), Some(state)) => println!("unit {} ({}): {state}", systemd::UNIT, p.display()),
            _ => println!(
                "unit {}: not installed (claw daemon install)",
                systemd::UNIT
            ),
        }
    }
    if holder.is_some() {
        Ok(())
    } else {
        Err(CliError {
            code: 1,
            message: String::new(),
        })
    }
}

fn logs(ctx: &Ctx, n: usize, follow: bool) -> CliResult {
    let path = serve::log_path(&ctx.dirs.home);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            println!("no daemon log yet ({} does not exist)", path.display());
            return Ok(());
        }
        Err(e) => {
            return Err(CliError::internal(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut reader = std::io::BufReader::new(file);
    let mut lines: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut line = String::new();
    while reader
        .read_line(&mut line)
        .map_err(|e| CliError::internal(format!("cannot read {}: {e}", path.display())))?
        > 0
    {
        if lines.len() == n {
            lines.pop_front();
        }
        lines.push_back(std::mem::take(&mut line));
    }
    for l in &lines {
        print!("{l}");
    }
    if !follow {
        return Ok(());
    }
    loop {
        let mut l = String::new();
        match reader.read_line(&mut l) {
            // The daemon appends to the same file, also after a restart.
            Ok(0) => std::thread::sleep(Duration::from_millis(250)),
            Ok(_) => print!("{l}"),
            Err(e) => {
                return Err(CliError::internal(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        }
    }
}
