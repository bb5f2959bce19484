//! `claw pack install | update | list | uninstall | validate`: the seed's packs (`pack.yaml`).

use clap::Subcommand;

use super::{CliError, CliResult, Ctx, output};
use crate::packs::{self, InstallOpts};

#[derive(Debug, Subcommand)]
pub(crate) enum PackCommand {
    /// Install a pack from a directory or a git URL: validated first, installed all or nothing.
    Install {
        /// A directory holding pack.yaml, or a git URL.
        source: String,
        /// Downgrade, or replace files the pack does not own or that were edited.
        #[arg(long)]
        force: bool,
    },
    /// Update an installed pack from a directory or a git URL (a downgrade needs --force).
    Update {
        /// A directory holding pack.yaml, or a git URL.
        source: String,
        /// Downgrade, or replace files that were edited since the install.
        #[arg(long)]
        force: bool,
    },
    /// The installed packs.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove exactly the files a pack installed (an edited one needs --force).
    Uninstall {
        /// The pack's name.
        name: String,
        /// Also remove files edited since the install.
        #[arg(long)]
        force: bool,
    },
    /// Check a pack directory (pack.yaml, its skills and workflows) without installing it.
    Validate {
        /// A directory holding pack.yaml.
        dir: std::path::PathBuf,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: PackCommand) -> CliResult {
    let actor = crate::config::env::cli_actor();
    match cmd {
        PackCommand::Install { source, force } => install(ctx, &source, force, false, &actor),
        PackCommand::Update { source, force } => install(ctx, &source, force, true, &actor),
        PackCommand::List { json } => {
            let list = packs::list(&ctx.dirs)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_value(&list).map_err(|e| CliError::internal(e.to_string()))?
                );
                return Ok(());
            }
            if list.is_empty() {
                println!("no packs installed");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|i| {
                    vec![
                        i.pack.name.clone(),
                        i.pack.version.clone(),
                        i.files.len().to_string(),
                        i.source.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["PACK", "VERSION", "FILES", "SOURCE"], &rows)
            );
            Ok(())
        }
        PackCommand::Uninstall { name, force } => {
            let n = packs::uninstall(&ctx.dirs, &name, force, &actor)?;
            println!("uninstalled pack `{name}` ({n} files removed)");
            Ok(())
        }
        PackCommand::Validate { dir } => {
            let (pack, warnings) = packs::validate(&dir)?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "pack `{}` {} is valid: {} skills, {} workflows",
                pack.name,
                pack.version,
                pack.skills.len(),
                pack.workflows.len()
            );
            Ok(())
        }
    }
}

fn install(ctx: &Ctx, source: &str, force: bool, update: bool, actor: &str) -> CliResult {
    let out = packs::install(&ctx.dirs, source, InstallOpts { force, update }, actor)?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    match out.previous {
        Some(prev) => println!(
            "updated pack `{}` {prev} -> {} ({} files)",
            out.pack.name, out.pack.version, out.files
        ),
        None => println!(
            "installed pack `{}` {} ({} files)",
            out.pack.name, out.pack.version, out.files
        ),
    }
    Ok(())
}
