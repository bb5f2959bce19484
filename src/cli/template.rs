//! `claw template list | init | diff | upgrade | reset`: the starter files claw writes (the
//! workflows of `claw workflow init`), compared with the user's copies. What each copy was
//! written from is recorded in `<data>/templates.json` (name → sha256), so claw can tell a copy
//! the user edited from one that is only older than the current template.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Subcommand;
use sha2::{Digest, Sha256};

use super::{CliError, CliResult, Ctx, output};

/// The starter workflows: the repository's own examples, each runnable as written.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("hello", include_str!("../../workflows/hello.yaml")),
    (
        "disk-report",
        include_str!("../../workflows/disk-report.yaml"),
    ),
    (
        "backup-dir",
        include_str!("../../workflows/backup-dir.yaml"),
    ),
];

#[derive(Debug, Subcommand)]
pub(crate) enum TemplateCommand {
    /// Every template, its file and its state: missing, current, outdated (an older template,
    /// unedited), modified (edited by you) or modified+outdated.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the templates that are missing (all, or NAME); existing files are kept.
    Init {
        /// One template (default: all).
        name: Option<String>,
    },
    /// A unified diff from your copy to the current template. Exit status 1 when they differ.
    Diff {
        /// The template.
        name: String,
    },
    /// Replace copies that are outdated and unedited with the current template (all, or NAME);
    /// an edited copy needs --force.
    Upgrade {
        /// One template (default: all).
        name: Option<String>,
        /// Also replace copies you edited (the old copy is kept as FILE.bak).
        #[arg(long)]
        force: bool,
    },
    /// Put the current template back over your copy (the old copy is kept as FILE.bak).
    Reset {
        /// The template.
        name: String,
    },
}

fn path(ctx: &Ctx, name: &str) -> PathBuf {
    ctx.dirs.root.join("workflows").join(format!("{name}.yaml"))
}

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn record_path(ctx: &Ctx) -> PathBuf {
    ctx.dirs.home.join("templates.json")
}

fn records(ctx: &Ctx) -> BTreeMap<String, String> {
    std::fs::read_to_string(record_path(ctx))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Records that `name` was written from `text`.
pub(crate) fn record(ctx: &Ctx, name: &str, text: &str) -> CliResult {
    let mut r = records(ctx);
    r.insert(name.to_owned(), hash(text));
    ctx.dirs
        .ensure_home()
        .map_err(|e| CliError::internal(format!("cannot create the data directory: {e}")))?;
    let p = record_path(ctx);
    let bytes = serde_json::to_vec_pretty(&r).map_err(|e| CliError::internal(e.to_string()))?;
    crate::fsutil::write_atomic(&p, ".templates-", &bytes)
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", p.display())))
}

fn template(name: &str) -> Result<&'static str, CliError> {
    TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
            CliError::usage(format!(
                "no template named `{name}` (templates: {})",
                names.join(", ")
            ))
        })
}

/// The state of one copy.
fn state(ctx: &Ctx, name: &str, text: &str) -> &'static str {
    let Ok(copy) = std::fs::read_to_string(path(ctx, name)) else {
        return "missing";
    };
    if copy == text {
        return "current";
    }
    match records(ctx).get(name) {
        Some(base) if *base == hash(&copy) => "outdated",
        Some(base) if *base != hash(text) => "modified+outdated",
        _ => "modified",
    }
}

fn write(ctx: &Ctx, name: &str, text: &str, backup: bool) -> CliResult {
    let p = path(ctx, name);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    if backup && p.exists() {
        let bak = p.with_extension("yaml.bak");
        std::fs::copy(&p, &bak)
            .map_err(|e| CliError::internal(format!("cannot write {}: {e}", bak.display())))?;
        println!("kept your copy as {}", bak.display());
    }
    crate::fsutil::AtomicWrite::new(&p, ".template-")
        .write_with(|f| std::io::Write::write_all(f, text.as_bytes()))
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", p.display())))?;
    record(ctx, name, text)
}

fn selected(name: Option<&str>) -> Result<Vec<(&'static str, &'static str)>, CliError> {
    match name {
        Some(n) => Ok(vec![(
            TEMPLATES
                .iter()
                .find(|(x, _)| *x == n)
                .map(|(x, _)| *x)
                .unwrap_or_default(),
            template(n)?,
        )]),
        None => Ok(TEMPLATES.to_vec()),
    }
}

pub(crate) fn run(ctx: &Ctx, cmd: TemplateCommand) -> CliResult {
    match cmd {
        TemplateCommand::List { json } => {
            let rows: Vec<(String, String, String)> = TEMPLATES
                .iter()
                .map(|(n, t)| {
                    (
                        (*n).to_owned(),
                        state(ctx, n, t).to_owned(),
                        path(ctx, n).display().to_string(),
                    )
                })
                .collect();
            if json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(n, s, p)| serde_json::json!({"name": n, "state": s, "path": p}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> =
                    rows.into_iter().map(|(n, s, p)| vec![n, s, p]).collect();
                print!("{}", output::table(&["TEMPLATE", "STATE", "FILE"], &rows));
            }
            Ok(())
        }
        TemplateCommand::Init { name } => {
            for (n, t) in selected(name.as_deref())? {
                if path(ctx, n).exists() {
                    println!("kept     {}", path(ctx, n).display());
                    continue;
                }
                write(ctx, n, t, false)?;
                println!("created  {}", path(ctx, n).display());
            }
            Ok(())
        }
        TemplateCommand::Diff { name } => {
            let t = template(&name)?;
            let p = path(ctx, &name);
            let copy = std::fs::read_to_string(&p).unwrap_or_default();
            if copy == t {
                println!("{} is the current template", p.display());
                return Ok(());
            }
            let diff = similar::TextDiff::from_lines(copy.as_str(), t);
            print!(
                "{}",
                diff.unified_diff()
                    .header(&p.display().to_string(), &format!("template {name}"))
            );
            Err(CliError::failed())
        }
        TemplateCommand::Upgrade { name, force } => {
            let mut refused = Vec::new();
            for (n, t) in selected(name.as_deref())? {
                match state(ctx, n, t) {
                    "current" => println!("current  {n}"),
                    "missing" => println!("missing  {n} (claw template init {n} writes it)"),
                    "outdated" => {
                        write(ctx, n, t, false)?;
                        println!("upgraded {n}");
                    }
                    _ if force => {
                        write(ctx, n, t, true)?;
                        println!("upgraded {n} (your edits replaced)");
                    }
                    _ => {
                        println!("edited   {n}: see `claw template diff {n}`; --force replaces it");
                        refused.push(n);
                    }
                }
            }
            if refused.is_empty() {
                Ok(())
            } else {
                Err(CliError::failed())
            }
        }
        TemplateCommand::Reset { name } => {
            let t = template(&name)?;
            write(ctx, &name, t, true)?;
            println!("reset    {}", path(ctx, &name).display());
            Ok(())
        }
    }
}
