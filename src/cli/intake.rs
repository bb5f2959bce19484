//! `claw intake run TEXT [--execute] [--role R] [--max-workers N]`: the seed's intake pipeline
//! (see `crate::intake`).

use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx, output};
use crate::audit::Action;
use crate::intake::{self, Mapper, Role};

#[derive(Debug, Subcommand)]
pub(crate) enum IntakeCommand {
    /// Turns a request (one requirement per line; a leading `-` or `*` is dropped) into tasks,
    /// each with a role and a skill chosen by the LLM (the job role's providers) or, with
    /// `--keywords`, by the seed's keyword rules. Prints the plan; with `--execute`, runs the
    /// mapped skills in parallel, sandboxed as their manifests say. Writes
    /// `<data>/runtime/current_request.json`. Exit status 1 if an executed task failed.
    Run {
        /// The request (one requirement per line; it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        text: String,
        /// Run the mapped skills (without it, only the plan is made).
        #[arg(long)]
        execute: bool,
        /// Run only the tasks of this role (the others are `skipped`).
        #[arg(long, value_enum, default_value = "all")]
        role: RoleArg,
        /// How many skills run at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        max_workers: u16,
        /// Choose roles and skills by the seed's keyword rules instead of asking an LLM.
        #[arg(long)]
        keywords: bool,
        /// The LLM provider to ask first (default: the job role's).
        #[arg(long, value_name = "NAME", conflicts_with = "keywords")]
        provider: Option<String>,
        /// Where the start and finish messages go: a profile of profiles.yaml or
        /// `channel:target` (default: telegram:TELEGRAM_DEFAULT_CHAT_ID when that is set).
        #[arg(long, value_name = "PROFILE|CHANNEL:TARGET")]
        notify: Option<String>,
        /// Send no start or finish message.
        #[arg(long, conflicts_with = "notify")]
        no_notify: bool,
        /// Print the request (current_request.json's content) as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    All,
    Planner,
    Executor,
    Verifier,
}

impl RoleArg {
    fn role(self) -> Option<Role> {
        match self {
            Self::All => None,
            Self::Planner => Some(Role::Planner),
            Self::Executor => Some(Role::Executor),
            Self::Verifier => Some(Role::Verifier),
        }
    }
}

pub(crate) fn run(ctx: &Ctx, cmd: IntakeCommand) -> CliResult {
    match cmd {
        IntakeCommand::Run {
            text,
            execute,
            role,
            max_workers,
            keywords,
            provider,
            notify,
            no_notify,
            json,
        } => {
            let mapper = if keywords {
                Mapper::Keywords
            } else {
                Mapper::Llm
            };
            let opts = Opts {
                execute,
                role,
                max_workers: usize::from(max_workers),
                mapper,
                provider,
                notify,
                no_notify,
                json,
            };
            run_intake(ctx, &text, &opts)
        }
    }
}

struct Opts {
    execute: bool,
    role: RoleArg,
    max_workers: usize,
    mapper: Mapper,
    provider: Option<String>,
    notify: Option<String>,
    no_notify: bool,
    json: bool,
}

fn run_intake(ctx: &Ctx, text: &str, o: &Opts) -> CliResult {
    let reqs = intake::requirements(text);
    if reqs.is_empty() {
        return Err(CliError::usage(
            "intake run: TEXT has no requirement (expected one requirement per non-empty line)",
        ));
    }
    let settings = ctx.settings()?;
    ctx.dirs
        .ensure_home()
        .map_err(|e| CliError::internal(format!("cannot create the data directory: {e}")))?;
    let home = ctx.dirs.home.clone();
    let actor = crate::config::env::cli_actor();
    let catalog = crate::skills::discover(&ctx.dirs);
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    // The plan comes first: an LLM that cannot be asked leaves the previous request's files.
    let mut tasks = rt
        .block_on(intake::plan(
            &ctx.dirs,
            &settings,
            &catalog,
            &reqs,
            o.mapper,
            o.provider.as_deref(),
            &actor,
            &cancel,
        ))
        .map_err(|e| {
            CliError::failed_with(format!(
                "intake run: {e} (--keywords chooses roles and skills without an LLM)"
            ))
        })?;
    intake::record_plan(&home, &actor, &reqs, &tasks, o.mapper).map_err(CliError::internal)?;
    let recipient = recipient(ctx, o);
    if let Some(to) = &recipient {
        notify(ctx, &rt, to, &intake::start_text(&reqs, o.execute), &actor);
    }
    if o.execute {
        rt.block_on(async {
            let on_ctrl_c = cancel.clone();
            let watcher = tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_ctrl_c.cancel();
                }
            });
            intake::execute(
                &ctx.dirs,
                &settings,
                &catalog,
                &mut tasks,
                o.role.role(),
                o.max_workers,
                &actor,
                &cancel,
            )
            .await;
            watcher.abort();
        });
    }
    let request = intake::Request {
        created_at: intake::now(),
        execute: o.execute,
        role: o.role.role().map_or("all", Role::as_str).to_owned(),
        requirements: reqs,
        role_assignments: intake::role_assignments(&tasks),
        tasks,
    };
    let path = intake::finish(&home, &actor, &request).map_err(CliError::internal)?;
    if let Some(to) = &recipient {
        notify(ctx, &rt, to, &intake::finish_text(&request.tasks), &actor);
    }
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&request).unwrap_or_default()
        );
    } else {
        let rows: Vec<Vec<String>> = request
            .tasks
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.assigned_role.as_str().to_owned(),
                    t.skill.clone().unwrap_or_else(|| "-".to_owned()),
                    t.status.clone(),
                    t.requirement.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["ID", "ROLE", "SKILL", "STATUS", "REQUIREMENT"], &rows)
        );
        for t in &request.tasks {
            if let Some(e) = &t.error {
                println!("{}: {e}", t.id);
            }
        }
        if !o.execute {
            println!("plan only: --execute runs the mapped skills");
        }
        println!("saved {}", path.display());
    }
    if request.tasks.iter().any(|t| t.status == "failed") {
        return Err(CliError::failed_with(format!(
            "intake run: {} task(s) failed",
            request
                .tasks
                .iter()
                .filter(|t| t.status == "failed")
                .count()
        )));
    }
    Ok(())
}

/// `--notify`, else `telegram:TELEGRAM_DEFAULT_CHAT_ID` when set, else nobody.
fn recipient(ctx: &Ctx, o: &Opts) -> Option<crate::msg::route::Recipient> {
    use crate::msg::route::Recipient;
    if o.no_notify {
        return None;
    }
    if let Some(n) = &o.notify {
        return Some(Recipient::parse(n));
    }
    let creds = crate::msg::route::creds(&ctx.dirs);
    creds
        .get("TELEGRAM_DEFAULT_CHAT_ID")
        .map(|id| Recipient::parse(&format!("telegram:{id}")))
}

/// Queues `text` for `to` and tries to deliver it for a few seconds (the rest stays in the
/// outbox for `claw serve`). A failure is a warning, audited: the request goes on.
fn notify(
    ctx: &Ctx,
    rt: &tokio::runtime::Runtime,
    to: &crate::msg::route::Recipient,
    text: &str,
    actor: &str,
) {
    use crate::store::{SqliteStore, Store};
    let result = (|| -> Result<usize, String> {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&ctx.dirs.db_path()).map_err(|e| format!("the store: {e}"))?,
        );
        let ids = crate::msg::route::queue(store.as_ref(), &ctx.dirs, to, text, "intake")?;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        rt.block_on(crate::msg::route::deliver(
            store.clone(),
            &ctx.dirs,
            &format!("{actor}/intake"),
            &ids,
            until,
        ))?;
        Ok(ids.len())
    })();
    let (outcome, detail) = match &result {
        Ok(n) => ("ok", json!({"to": to.to_string(), "messages": n})),
        Err(e) => {
            eprintln!("warning: intake: the message to {to} was not queued: {e}");
            ("failed", json!({"to": to.to_string(), "error": e}))
        }
    };
    intake::audit(
        &ctx.dirs.home,
        actor,
        Action::IntakeNotification,
        &to.to_string(),
        outcome,
        detail,
    );
}
