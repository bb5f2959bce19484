//! `claw skill list | info | run | validate | create | hub push|pull|list|diff`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use super::{CliError, CliResult, Ctx, output};
use crate::skills::hub::{Hub, Pulled};
use crate::skills::runner;
use crate::skills::{self, Skill, manifest, sandbox, scaffold};

#[derive(Debug, Subcommand)]
pub(crate) enum SkillCommand {
    /// The skills in the config root's `skills/` and the data directory's (a broken manifest is
    /// reported on stderr with its line and column).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A skill's manifest, where it lives, and whether it can run here: its script, its
    /// dependencies, its vault grants, and the Landlock confinement this kernel gives it.
    Info {
        /// The skill's name.
        #[arg(add = super::complete::skill_names())]
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runs a skill: `claw skill run NAME key=value ...` (a bare `key` means key=true). The
    /// arguments reach the script as SKILL_<KEY>; the exit status is the skill's (124 when it
    /// timed out).
    Run {
        /// The skill's name.
        #[arg(add = super::complete::skill_names())]
        name: String,
        /// Arguments, `key=value`.
        #[arg(value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// Overrides the manifest's `timeout` (seconds, or 30s, 5m, 1h).
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
    },
    /// Checks skill directories or skill.yaml files: every problem with file:line:col; a
    /// missing script is reported as such. Exit status 2 if any is invalid.
    Validate {
        /// Skill directories or skill.yaml files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Check the manifest alone (not whether its script exists).
        #[arg(long)]
        manifest_only: bool,
    },
    /// Creates `skills/NAME/` in the config root from a template (never overwrites).
    Create {
        /// The new skill's name (or `--name NAME`, the seed's form).
        #[arg(required_unless_present = "name_flag")]
        name: Option<String>,
        /// The new skill's name (the seed's spelling of NAME).
        #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
        name_flag: Option<String>,
        /// A permission for the manifest (repeatable): `vault` (every vault value) or
        /// `vault:KEY` (just KEY).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        /// A trigger phrase for the manifest (repeatable).
        #[arg(long = "trigger", value_name = "TEXT")]
        triggers: Vec<String>,
        /// The script's language.
        #[arg(long = "type", value_enum, default_value = "bash")]
        kind: ScriptType,
        /// One line saying what the skill does.
        #[arg(long, default_value = "A new skill")]
        description: String,
    },
    /// SkillHub: share skills through a git repository (CLAW_SKILL_HUB or --hub). `skill sync`
    /// is the seed's name for it.
    #[command(visible_alias = "sync")]
    Hub(HubArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ScriptType {
    Bash,
    Python,
}

#[derive(Debug, clap::Args)]
pub(crate) struct HubArgs {
    /// The SkillHub git repository (a URL or a path); default: the CLAW_SKILL_HUB setting.
    #[arg(long, global = true, value_name = "REPO")]
    hub: Option<String>,
    #[command(subcommand)]
    command: HubCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HubCommand {
    /// Publishes a local skill to the hub (commit "Update skill: NAME", then push).
    Push {
        /// The local skill's name.
        #[arg(add = super::complete::skill_names())]
        name: String,
    },
    /// Installs the hub's skill NAME (or every hub skill) into the config root's `skills/`.
    Pull {
        /// The hub skill's name (every hub skill when left out).
        name: Option<String>,
    },
    /// The hub's skills, and whether each is installed here and the same.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The differences between the hub's copy of a skill and the local one (exit status 1 if
    /// they differ, as diff(1)).
    Diff {
        /// The skill's name.
        #[arg(add = super::complete::skill_names())]
        name: String,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: SkillCommand) -> CliResult {
    match cmd {
        SkillCommand::List { json } => list(ctx, json),
        SkillCommand::Info { name, json } => info(ctx, &name, json),
        SkillCommand::Run {
            name,
            args,
            timeout,
        } => run_skill(ctx, &name, &args, timeout.as_deref()),
        SkillCommand::Validate {
            paths,
            manifest_only,
        } => validate(&paths, manifest_only),
        SkillCommand::Create {
            name,
            name_flag,
            permissions,
            triggers,
            kind,
            description,
        } => {
            let name = name.or(name_flag).unwrap_or_default();
            create(ctx, &name, kind, &description, &permissions, &triggers)
        }
        SkillCommand::Hub(h) => hub(ctx, h),
    }
}

fn skill_json(s: &Skill) -> serde_json::Value {
    let m = &s.manifest;
    serde_json::json!({
        "name": m.name,
        "version": m.version,
        "description": m.description,
        "author": m.author,
        "dir": s.dir,
        "script": m.script,
        "script_found": s.script_path().is_file(),
        "slash_command": m.slash_command,
        "skill_type": m.skill_type,
        "triggers": m.triggers,
        "dependencies": m.dependencies,
        "permissions": m.permissions,
        "tags": m.tags,
        "timeout_secs": s.timeout().as_secs(),
        "args": m.args.iter().map(|a| serde_json::json!({
            "name": a.name, "type": a.kind.as_str(), "default": a.default,
            "required": a.required, "enum": a.choices, "description": a.description,
        })).collect::<Vec<_>>(),
        "paths": m.paths.as_ref().map(|p| serde_json::json!({"read": p.read, "write": p.write})),
    })
}

fn report_broken(cat: &skills::Catalog) {
    for b in &cat.broken {
        eprintln!("{}", b.render());
    }
    for (hidden, by) in &cat.shadowed {
        eprintln!(
            "note: {} is hidden by {} (same skill name)",
            hidden.display(),
            by.display()
        );
    }
}

fn list(ctx: &Ctx, json: bool) -> CliResult {
    let cat = skills::discover(&ctx.dirs);
    if json {
        output::print_json(&serde_json::Value::Array(
            cat.skills.iter().map(skill_json).collect(),
        ));
    } else if cat.skills.is_empty() {
        let looked: Vec<String> = skills::skill_dirs(&ctx.dirs)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        println!("No skills found (looked in {}).", looked.join(", "));
    } else {
        let rows: Vec<Vec<String>> = cat
            .skills
            .iter()
            .map(|s| {
                vec![
                    s.name().to_owned(),
                    s.manifest.version.clone(),
                    output::first_line(&s.manifest.description, 60),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["NAME", "VERSION", "DESCRIPTION"], &rows)
        );
    }
    report_broken(&cat);
    if cat.broken.is_empty() {
        Ok(())
    } else {
        Err(CliError {
            code: 2,
            message: format!("{} skill manifest(s) are invalid", cat.broken.len()),
        })
    }
}

fn info(ctx: &Ctx, name: &str, json: bool) -> CliResult {
    let skill = skills::find(&ctx.dirs, name)?;
    let problems = runner::environment_problems(&ctx.dirs, name);
    let support = sandbox::detect();
    let confinement = match (&skill.manifest.paths, support.is_available()) {
        (None, _) => format!(
            "none (the manifest has no `paths:`); Landlock on this machine: {}",
            support.word()
        ),
        (Some(_), _) => format!("Landlock, {}", support.describe()),
    };
    if json {
        let mut v = skill_json(&skill);
        if let Some(o) = v.as_object_mut() {
            o.insert("problems".into(), serde_json::json!(problems));
            o.insert("landlock".into(), serde_json::json!(support.word()));
            o.insert("confinement".into(), serde_json::json!(confinement));
        }
        output::print_json(&v);
        return Ok(());
    }
    let m = &skill.manifest;
    let none = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("{} {}", m.name, m.version);
    println!("  description:  {}", m.description);
    println!("  author:       {}", m.author);
    println!("  directory:    {}", skill.dir.display());
    let how = skill.interpreter().map_or_else(
        || "executed directly".to_owned(),
        |i| format!("run with {i}"),
    );
    println!(
        "  script:       {} ({how}{})",
        m.script,
        if skill.script_path().is_file() {
            ""
        } else {
            ", NOT FOUND"
        }
    );
    println!(
        "  timeout:      {}",
        crate::time::duration::format(skill.timeout())
    );
    if !m.skill_type.is_empty() {
        println!("  type:         {}", m.skill_type);
    }
    println!("  slash command: {}", m.slash_command);
    println!("  dependencies: {}", none(&m.dependencies));
    println!("  permissions:  {}", none(&m.permissions));
    if !m.tags.is_empty() {
        println!("  tags:         {}", m.tags.join(", "));
    }
    if !m.args.is_empty() {
        println!("  arguments:");
        for a in &m.args {
            let default = a
                .default
                .as_ref()
                .map(|d| format!(", default {}", manifest::json_text(d)))
                .unwrap_or_default();
            let req = if a.required { ", required" } else { "" };
            println!(
                "    {} ({}{default}{req}){}",
                a.name,
                a.kind.as_str(),
                if a.description.is_empty() {
                    String::new()
                } else {
                    format!(": {}", a.description)
                }
            );
        }
    }
    if let Some(p) = &m.paths {
        println!(
            "  paths:        read {} / write {}",
            none(&p.read),
            none(&p.write)
        );
    }
    println!("  confinement:  {confinement}");
    if problems.is_empty() {
        println!("  ready:        yes");
    } else {
        println!("  ready:        no");
        for p in &problems {
            println!("    - {p}");
        }
    }
    Ok(())
}

/// `k=v` pairs; a bare `k` means `k=true` (the seed's rule).
fn parse_args(args: &[String]) -> Result<Vec<(String, String)>, CliError> {
    args.iter()
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a.as_str(), "true"));
            if k.trim().is_empty() {
                return Err(CliError::usage(format!(
                    "argument `{a}` has no name (expected key=value)"
                )));
            }
            Ok((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

fn run_skill(ctx: &Ctx, name: &str, args: &[String], timeout: Option<&str>) -> CliResult {
    let args = parse_args(args)?;
    let settings = ctx.settings()?;
    let timeout = timeout
        .map(|t| {
            crate::time::duration::parse(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    CliError::usage(format!("--timeout: `{t}` is not a duration (e.g. 30s, 5m)"))
                })
        })
        .transpose()?;
    let skill = skills::find(&ctx.dirs, name)?;
    if skill.manifest.paths.is_some() {
        let support = sandbox::detect();
        if !support.is_available() {
            eprintln!(
                "warning: skill `{name}` declares `paths:` but Landlock is {}",
                support.describe()
            );
        }
    }
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let on_ctrl_c = cancel.clone();
        let watcher = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.cancel();
            }
        });
        let report = crate::steps::skill::run_by_hand(
            &ctx.dirs,
            &settings,
            &skill,
            &args,
            timeout,
            &crate::config::env::cli_actor(),
            &cancel,
        )
        .await;
        watcher.abort();
        report
    })?;
    use crate::steps::StepOutcome;
    let (code, message) = match &report.outcome {
        StepOutcome::Succeeded => (0u8, String::new()),
        StepOutcome::Cancelled => (130, format!("skill `{name}` was interrupted")),
        StepOutcome::Failed { reason } => {
            let code = if reason.starts_with("timed out") {
                124
            } else {
                report
                    .exit_code
                    .and_then(|c| u8::try_from(c).ok())
                    .filter(|c| *c != 0)
                    .unwrap_or(1)
            };
            (code, format!("skill `{name}` {reason}"))
        }
    };
    if code == 0 {
        Ok(())
    } else {
        Err(CliError { code, message })
    }
}

fn validate(paths: &[PathBuf], manifest_only: bool) -> CliResult {
    let mut invalid = 0usize;
    for p in paths {
        let file = if p.is_dir() {
            p.join(manifest::MANIFEST_FILE)
        } else {
            p.clone()
        };
        let m = match manifest::load_file(&file) {
            Ok(m) => m,
            Err(e) => {
                invalid += 1;
                eprintln!("{}", e.render());
                continue;
            }
        };
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let skill = Skill {
            manifest: m,
            dir,
            manifest_path: file.clone(),
        };
        let what = format!("skill {} {}", skill.name(), skill.manifest.version);
        match skill.script_problem().filter(|_| !manifest_only) {
            None => println!("ok: {} ({what})", file.display()),
            Some(d) => {
                invalid += 1;
                println!("manifest ok: {} ({what})", file.display());
                let source = std::fs::read_to_string(&file).ok();
                eprintln!("{}", d.render(source.as_deref()));
            }
        }
    }
    if invalid > 0 {
        Err(CliError {
            code: 2,
            message: format!("{invalid} of {} skill(s) invalid", paths.len()),
        })
    } else {
        Ok(())
    }
}

fn create(
    ctx: &Ctx,
    name: &str,
    kind: ScriptType,
    description: &str,
    permissions: &[String],
    triggers: &[String],
) -> CliResult {
    let kind = match kind {
        ScriptType::Bash => scaffold::Kind::Bash,
        ScriptType::Python => scaffold::Kind::Python,
    };
    let skills_dir = ctx.dirs.root.join("skills");
    let dir = scaffold::create_with(
        &skills_dir,
        name,
        kind,
        description,
        &crate::config::env::local_user(),
        permissions,
        triggers,
    )?;
    println!("created {}", dir.display());
    println!("try it: claw skill run {name} who=you");
    Ok(())
}

fn hub(ctx: &Ctx, args: HubArgs) -> CliResult {
    let mut flags = BTreeMap::new();
    if let Some(h) = args.hub {
        flags.insert("CLAW_SKILL_HUB".to_owned(), h);
    }
    let (layers, _) = crate::vault::settings(&ctx.dirs.root, &ctx.dirs.home, flags);
    let url = crate::config::resolve::DEFS
        .iter()
        .find(|d| d.name == "CLAW_SKILL_HUB")
        .and_then(|d| layers.get(*d).value);
    let hub = Hub::new(url, &ctx.dirs.home)?;
    let actor = crate::config::env::cli_actor();
    match args.command {
        HubCommand::Push { name } => {
            let skill = skills::find(&ctx.dirs, &name)?;
            if hub.push(&skill, &actor)? {
                println!("pushed {name} to {}", hub.url);
            } else {
                println!("{name} is already up to date in {}", hub.url);
            }
        }
        HubCommand::Pull { name } => {
            let dest = ctx.dirs.root.join("skills");
            let pulled = hub.pull(name.as_deref(), &dest, &actor)?;
            if pulled.is_empty() {
                println!("the hub has no skills");
            }
            for p in pulled {
                match p {
                    Pulled::Installed(n) => {
                        println!("installed {n} into {}", dest.join(&n).display());
                    }
                    Pulled::Updated(n) => {
                        println!("updated {n} in {}", dest.join(&n).display());
                    }
                    Pulled::Unchanged(n) => println!("{n} is up to date"),
                }
            }
        }
        HubCommand::List { json } => {
            let local = skills::discover(&ctx.dirs);
            let list = hub.list(&local)?;
            if json {
                output::print_json(&serde_json::Value::Array(
                    list.iter()
                        .map(|s| {
                            serde_json::json!({"name": s.name, "version": s.version,
                                "description": s.description, "local": s.local.as_str()})
                        })
                        .collect(),
                ));
            } else if list.is_empty() {
                println!("the hub has no skills");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.version.clone(),
                            s.local.as_str().to_owned(),
                            output::first_line(&s.description, 50),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(&["NAME", "VERSION", "HERE", "DESCRIPTION"], &rows)
                );
            }
        }
        HubCommand::Diff { name } => {
            let skill = skills::find(&ctx.dirs, &name)?;
            let diff = hub.diff(&name, &skill.dir)?;
            if diff.is_empty() {
                println!("{name}: no differences");
            } else {
                print!("{diff}");
                return Err(CliError::failed());
            }
        }
    }
    Ok(())
}

/// `claw doctor`'s lines about skills: (is it a problem, what, detail).
pub(crate) fn doctor_lines(ctx: &Ctx) -> Vec<(bool, String, String)> {
    let mut out = Vec::new();
    let support = sandbox::detect();
    out.push((false, "landlock".to_owned(), support.describe()));
    match sandbox::metadata_filter_works() {
        Ok(()) => out.push((
            false,
            "sandbox".to_owned(),
            "skills with `paths:` also cannot chmod, chown or set file times (seccomp); not \
             confined: network access, signals to your other processes, reading the system \
             directories"
                .to_owned(),
        )),
        Err(why) => out.push((
            true,
            "sandbox".to_owned(),
            format!(
                "the seccomp filter does not work here ({why}): skills with `paths:` will not start"
            ),
        )),
    }
    let cat = skills::discover(&ctx.dirs);
    if cat.broken.is_empty() {
        out.push((
            false,
            "skills".to_owned(),
            format!("{} valid", cat.skills.len()),
        ));
    } else {
        out.push((
            true,
            "skills".to_owned(),
            format!(
                "{} invalid manifest(s): {}",
                cat.broken.len(),
                cat.broken
                    .iter()
                    .map(|b| b.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    out
}
