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
    /// Leave the dashboard and its API (`/`, `/api/v1/…`, `/metrics`) out of the listener: it
    /// serves the webhooks, `/healthz` and `/mcp` only.
    #[arg(long, conflicts_with_all = ["no_http", "install"])]
    no_dashboard: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DaemonCommand {
    /// Write the systemd unit `claw.service` for `claw serve` and enable and start it: a user
    /// unit (as the seed), or with --system a system unit that runs as a given user.
    ///
    /// The unit runs an installed claw: this one, unless it runs from a build tree (then the
    /// `claw` on PATH outside one, or --exe).
    Install {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(flatten)]
        unit: UnitArgs,
        /// Only write the unit file (do not call systemctl).
        #[arg(long)]
        no_start: bool,
    },
    /// Stop and disable the unit and remove its file.
    Uninstall {
        /// The system unit (installed with --system), not the user unit.
        #[arg(long)]
        system: bool,
    },
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

/// Where the unit goes and what it runs.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct UnitArgs {
    /// A system unit in /etc/systemd/system (as root), for machines without a systemd user
    /// session; it runs as --user-name.
    #[arg(long)]
    system: bool,
    /// The account a system unit runs as (default: the user who ran sudo, else the current one).
    #[arg(long, value_name = "NAME", requires = "system")]
    user_name: Option<String>,
    /// The claw binary the unit runs (default: this one if installed, else `claw` on PATH).
    #[arg(long, value_name = "PATH")]
    exe: Option<std::path::PathBuf>,
}

impl UnitArgs {
    fn scope(&self) -> systemd::Scope {
        if self.system {
            systemd::Scope::System
        } else {
            systemd::Scope::User
        }
    }
}

pub(crate) fn serve(ctx: &Ctx, args: ServeArgs) -> CliResult {
    let (bind, grace) = args.daemon.resolve()?;
    if args.install {
        return install(ctx, bind, grace, &UnitArgs::default(), false);
    }
    let settings = ctx.settings()?;
    let opts = Options {
        bind,
        grace,
        wait: args.wait,
        take_over: args.take_over,
        max_runs: args.max_runs,
        no_dashboard: args.no_dashboard,
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
        DaemonCommand::Install {
            daemon,
            unit,
            no_start,
        } => {
            let (bind, grace) = daemon.resolve()?;
            install(ctx, bind, grace, &unit, no_start)
        }
        DaemonCommand::Uninstall { system } => uninstall(if system {
            systemd::Scope::System
        } else {
            systemd::Scope::User
        }),
        DaemonCommand::Status { json } => status(ctx, json),
        DaemonCommand::Logs { n, follow } => logs(ctx, n, follow),
    }
}

fn unit_path(scope: systemd::Scope) -> Result<std::path::PathBuf, CliError> {
    systemd::unit_dir(scope)
        .map(|d| d.join(systemd::UNIT))
        .ok_or_else(|| CliError::internal("cannot find the systemd user unit directory: neither XDG_CONFIG_HOME nor HOME is set"))
}

/// Whether `path` is a binary in a cargo build tree (`target/<profile>/`), which `cargo clean`
/// or the next build replaces: no unit should point there.
fn in_build_tree(path: &std::path::Path) -> bool {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts
        .windows(2)
        .any(|w| w[0] == "target" && matches!(w[1].as_str(), "debug" | "release"))
        || parts.iter().rev().nth(1).is_some_and(|p| p == "deps")
}

/// The binary the unit runs, and how it was chosen (said to the user).
fn choose_exe(given: Option<&std::path::Path>) -> Result<(std::path::PathBuf, String), CliError> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(p) = given {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        if !executable(&p) {
            return Err(CliError::usage(format!(
                "--exe {}: not an executable file",
                p.display()
            )));
        }
        return Ok((p, "given with --exe".into()));
    }
    let me = std::env::current_exe()
        .map_err(|e| CliError::internal(format!("cannot find the claw binary: {e}")))?;
    if !in_build_tree(&me) {
        return Ok((me.clone(), how_installed(&me)));
    }
    let path = crate::config::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join("claw");
        let real = std::fs::canonicalize(&cand).unwrap_or_else(|_| cand.clone());
        if executable(&cand) && !in_build_tree(&real) {
            let how = how_installed(&cand);
            return Ok((cand, how));
        }
    }
    Err(CliError::usage(format!(
        "this claw runs from a build tree ({}): a unit pointing there stops working at the next \
         `cargo clean` or build. Install claw first, `cargo install --locked --path .` (into \
         ~/.cargo/bin), then run `claw daemon install` again; or name a binary with --exe PATH",
        me.display()
    )))
}

/// How an installed binary got where it is, as far as its place says.
fn how_installed(path: &std::path::Path) -> String {
    let cargo_bin = crate::config::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            crate::config::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo"))
        })
        .map(|c| c.join("bin"));
    if cargo_bin.is_some_and(|b| path.starts_with(b)) {
        "installed by `cargo install`".into()
    } else if path.starts_with("/usr/bin") {
        "installed by the Debian package".into()
    } else if path.starts_with("/usr/local/bin") {
        "installed in /usr/local/bin".into()
    } else {
        "found on PATH".into()
    }
}

fn install(
    ctx: &Ctx,
    bind: Option<SocketAddr>,
    grace: Duration,
    unit: &UnitArgs,
    no_start: bool,
) -> CliResult {
    let scope = unit.scope();
    let (exe, how) = choose_exe(unit.exe.as_deref())?;
    let user = match scope {
        systemd::Scope::System => Some(
            unit.user_name
                .clone()
                .or_else(|| crate::config::env::var("SUDO_USER"))
                .unwrap_or_else(crate::config::env::local_user),
        ),
        systemd::Scope::User => None,
    };
    let path = unit_path(scope)?;
    let home = std::path::absolute(&ctx.dirs.home).unwrap_or_else(|_| ctx.dirs.home.clone());
    let root = std::path::absolute(&ctx.dirs.root).unwrap_or_else(|_| ctx.dirs.root.clone());
    let bind = bind.map(|b| b.to_string());
    let text = systemd::unit_text(&exe, &home, &root, bind.as_deref(), grace, user.as_deref());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    crate::fsutil::write_atomic(&path, ".claw.service.", text.as_bytes())
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    println!("it runs {} ({how})", exe.display());
    let ctl = match scope {
        systemd::Scope::User => "systemctl --user",
        systemd::Scope::System => "systemctl",
    };
    if no_start {
        println!(
            "start it with: {ctl} daemon-reload && {ctl} enable --now {}",
            systemd::UNIT
        );
        return Ok(());
    }
    let started = systemd::systemctl(scope, &["daemon-reload"])
        .and_then(|_| systemd::systemctl(scope, &["enable", "--now", systemd::UNIT]));
    match started {
        Ok(_) => {
            println!(
                "enabled and started {} (logs: claw daemon logs)",
                systemd::UNIT
            );
            Ok(())
        }
        Err(e) => Err(CliError::internal(format!(
            "the unit is written, but {ctl} could not start it: {}",
            systemd::explain(scope, &e)
        ))),
    }
}

fn uninstall(scope: systemd::Scope) -> CliResult {
    let path = unit_path(scope)?;
    if !path.exists() {
        println!(
            "{} is not installed ({} does not exist)",
            systemd::UNIT,
            path.display()
        );
        return Ok(());
    }
    if let Err(e) = systemd::systemctl(scope, &["disable", "--now", systemd::UNIT]) {
        eprintln!("warning: {}", systemd::explain(scope, &e));
    }
    std::fs::remove_file(&path)
        .map_err(|e| CliError::internal(format!("cannot remove {}: {e}", path.display())))?;
    let _ = systemd::systemctl(scope, &["daemon-reload"]);
    println!("removed {}", path.display());
    Ok(())
}

fn status(ctx: &Ctx, json: bool) -> CliResult {
    let holder = lease::holder(&ctx.dirs.home);
    // The user unit, else a system unit.
    let found = [systemd::Scope::User, systemd::Scope::System]
        .into_iter()
        .find_map(|scope| {
            unit_path(scope)
                .ok()
                .filter(|p| p.exists())
                .map(|p| (scope, p))
        });
    let unit = found.as_ref().map(|(_, p)| p.clone());
    let active = found.as_ref().map(|(scope, _)| {
        systemd::systemctl(*scope, &["is-active", systemd::UNIT])
            .unwrap_or_else(|e| systemd::explain(*scope, &e))
    });
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
