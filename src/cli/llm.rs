//! `claw llm list | test PROVIDER | set-default PROVIDER | ask PROMPT | usage`.

use std::io::Write as _;

use clap::Subcommand;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output;
use super::{CliError, CliResult, Ctx};
use crate::llm::{self, Config, Role};

#[derive(Debug, Subcommand)]
pub(crate) enum LlmCommand {
    /// The providers: kind, base URL, model, whether a key is set; the roles and the chain.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask one provider a short prompt (no fallback) and print its reply and timing.
    Test {
        /// anthropic, openai, ollama, claude-cli (or the seed's claude, chatgpt, gpt), or a
        /// provider declared in claw.yaml.
        provider: String,
        /// The prompt.
        #[arg(long, default_value = "Reply with the single word: pong")]
        prompt: String,
    },
    /// Set `llm.default` in claw.yaml (the provider of a role that names none).
    SetDefault {
        /// The provider.
        provider: String,
    },
    /// Tokens used by llm steps, per provider and model (from the runs in the store).
    Usage {
        /// Only runs created from this time on: RFC 3339, a date, or how long ago (`7d`).
        #[arg(long, value_name = "TIME", value_parser = super::instant)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the job role's chain (or --provider and its fallbacks) a prompt; the reply streams
    /// to stdout as it arrives.
    Ask {
        /// The prompt.
        prompt: String,
        /// The first provider to ask (its fallbacks follow).
        #[arg(long)]
        provider: Option<String>,
        /// The model (else the provider's).
        #[arg(long)]
        model: Option<String>,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// A JSON Schema file: the reply is repaired, validated and printed as JSON.
        #[arg(long, value_name = "FILE")]
        json_schema: Option<std::path::PathBuf>,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: LlmCommand) -> CliResult {
    let config = crate::steps::llm::load_config(&ctx.dirs).map_err(CliError::usage)?;
    crate::redact::register_global(config.secret_values().iter().map(String::as_str));
    match cmd {
        LlmCommand::List { json } => list(&config, json),
        LlmCommand::Usage { since, json } => usage(ctx, since, json),
        LlmCommand::Test { provider, prompt } => {
            config.provider(&provider).map_err(CliError::usage)?;
            let chain = vec![llm::config::canonical(&provider).to_owned()];
            let started = std::time::Instant::now();
            let reply = ask(ctx, &config, &chain, &llm::Request::prompt(&prompt), false)?;
            println!(
                "{}: ok in {} ms ({}, {} input + {} output tokens)",
                reply.provider,
                started.elapsed().as_millis(),
                reply.model,
                reply.usage.input_tokens,
                reply.usage.output_tokens
            );
            println!("{}", crate::redact::global().redact(reply.text.trim()));
            Ok(())
        }
        LlmCommand::SetDefault { provider } => {
            config.provider(&provider).map_err(CliError::usage)?;
            let path =
                llm::config::set_default(&ctx.dirs.root, &provider).map_err(CliError::usage)?;
            let event = crate::audit::Event::new(
                &crate::config::env::cli_actor(),
                crate::audit::Action::LlmSetDefault,
                &provider,
                "ok",
                json!({"file": path.display().to_string()}),
            );
            crate::audit::AuditLog::in_dir(&ctx.dirs.home)
                .record(&event)
                .map_err(|e| CliError::internal(e.to_string()))?;
            println!("default LLM provider: {provider} ({})", path.display());
            Ok(())
        }
        LlmCommand::Ask {
            prompt,
            provider,
            model,
            system,
            json_schema,
        } => {
            let schema = match json_schema {
                Some(f) => {
                    let text = std::fs::read_to_string(&f).map_err(|e| {
                        CliError::usage(format!("cannot read {}: {e}", f.display()))
                    })?;
                    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        CliError::usage(format!(
                            "{}:{}:{}: not JSON: {e}",
                            f.display(),
                            e.line(),
                            e.column()
                        ))
                    })?;
                    Some(
                        llm::json::Schema::new(v)
                            .map_err(|e| CliError::usage(format!("{}: {e}", f.display())))?,
                    )
                }
                None => None,
            };
            let chain = config.chain(Role::Job, provider.as_deref());
            config
                .provider(chain.first().map_or("", String::as_str))
                .map_err(CliError::usage)?;
            let mut req = llm::Request::prompt(&prompt);
            req.model = model;
            req.system = system;
            if let Some(s) = &schema {
                let ask = format!(
                    "Reply with only a JSON value (no prose, no Markdown fence) that is valid against this JSON Schema:\n{}",
                    s.source
                );
                req.system = Some(req.system.map_or(ask.clone(), |x| format!("{x}\n\n{ask}")));
            }
            let reply = ask(ctx, &config, &chain, &req, schema.is_none())?;
            let Some(schema) = schema else {
                println!();
                return Ok(());
            };
            let value = llm::json::repair(&reply.text)
                .map_err(|e| CliError::usage(format!("the reply is not JSON: {e}")))?;
            let errors = schema.errors(&value);
            if !errors.is_empty() {
                eprintln!("{}", crate::redact::global().redact(&reply.text));
                return Err(CliError::usage(format!(
                    "the reply is not valid against the schema: {}",
                    errors.join("; ")
                )));
            }
            let value = crate::redact::global().redact_json(&value);
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            Ok(())
        }
    }
}

/// Streams to stdout (masked) when `echo`.
struct Stdout {
    echo: bool,
}

impl llm::Sink for Stdout {
    fn text(&mut self, delta: &str) {
        if self.echo {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(crate::redact::global().redact(delta).as_bytes());
            let _ = out.flush();
        }
    }

    fn note(&mut self, line: &str) {
        eprintln!("{}", crate::redact::global().redact(line));
    }
}

fn ask(
    ctx: &Ctx,
    config: &Config,
    chain: &[String],
    req: &llm::Request,
    echo: bool,
) -> Result<llm::Reply, CliError> {
    let settings = ctx.settings()?;
    ctx.dirs
        .ensure_home()
        .map_err(|e| CliError::internal(format!("cannot create the data directory: {e}")))?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    let mut sink = Stdout { echo };
    let actor = crate::config::env::cli_actor();
    rt.block_on(async {
        let ask = llm::Ask {
            config,
            chain,
            sink: &mut sink,
            cancel: &cancel,
            actor: &actor,
            target: "claw llm",
            audit_home: Some(&ctx.dirs.home),
            kill_grace: settings.kill_grace,
        };
        tokio::select! {
            r = llm::complete(ask, req) => r.map(|(r, _)| r).map_err(|(e, _)| {
                CliError::failed_with(format!("the LLM request failed: {e}"))
            }),
            _ = tokio::signal::ctrl_c() => Err(CliError::usage("cancelled")),
        }
    })
}

fn list(config: &Config, as_json: bool) -> CliResult {
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for name in config.listed() {
        let Ok(p) = config.provider(&name) else {
            continue;
        };
        let key = match (&p.key_name, &p.api_key) {
            (None, _) => "-".to_owned(),
            (Some(k), Some(_)) => format!("{k} (set)"),
            (Some(k), None) => format!("{k} (not set)"),
        };
        let place = if p.kind == llm::ProviderKind::ClaudeCli {
            p.command.clone()
        } else {
            p.base_url.clone()
        };
        items.push(json!({
            "name": p.name, "kind": p.kind.as_str(), "url": place, "model": p.model,
            "key": p.key_name, "key_set": p.api_key.is_some(),
        }));
        rows.push(vec![
            p.name.clone(),
            p.kind.as_str().to_owned(),
            place,
            p.model.clone(),
            key,
        ]);
    }
    let chat = config.chain(Role::Chat, None);
    let job = config.chain(Role::Job, None);
    if as_json {
        let v = json!({
            "providers": items,
            "default": config.default_provider(),
            "roles": {"chat": chat, "job": job},
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    print!(
        "{}",
        output::table(&["PROVIDER", "KIND", "WHERE", "MODEL", "KEY"], &rows)
    );
    println!("default: {}", config.default_provider());
    println!("chat: {}", chat.join(" → "));
    println!("job: {}", job.join(" → "));
    Ok(())
}

/// Sums the `usage` outputs of llm steps (those with a `provider` output) per provider and model.
fn usage(ctx: &Ctx, since: Option<chrono::DateTime<chrono::Utc>>, as_json: bool) -> CliResult {
    use crate::store::{RunFilter, SqliteStore, Store as _};
    let mut totals: std::collections::BTreeMap<(String, String), (u64, u64, u64)> =
        std::collections::BTreeMap::new();
    let db = ctx.dirs.db_path();
    if db.exists() {
        let store = SqliteStore::open(&db)?;
        let from = since.map_or(i64::MIN, |t| t.timestamp_millis());
        for run in store.list_runs(&RunFilter::default())? {
            if run.created_at < from {
                continue;
            }
            for step in store.steps(&run.id)? {
                let o = &step.outputs;
                let (Some(provider), Some(u)) = (o["provider"].as_str(), o.get("usage")) else {
                    continue;
                };
                let model = o["model"].as_str().unwrap_or("").to_owned();
                let e = totals.entry((provider.to_owned(), model)).or_default();
                e.0 += 1;
                e.1 += u["input_tokens"].as_u64().unwrap_or(0);
                e.2 += u["output_tokens"].as_u64().unwrap_or(0);
            }
        }
    }
    if as_json {
        let rows: Vec<serde_json::Value> = totals
            .iter()
            .map(|((p, m), (n, i, o))| {
                json!({"provider": p, "model": m, "steps": n, "input_tokens": i, "output_tokens": o})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = totals
        .iter()
        .map(|((p, m), (n, i, o))| {
            vec![
                p.clone(),
                m.clone(),
                n.to_string(),
                i.to_string(),
                o.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["PROVIDER", "MODEL", "STEPS", "INPUT", "OUTPUT"], &rows)
    );
    Ok(())
}
