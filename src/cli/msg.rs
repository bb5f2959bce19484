//! `claw msg channels | test CH | send CH TARGET MSG | profiles | notify PROFILE MSG | outbox |
//! retry ID | flush | chats list|approve|deny|remove`.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;

use super::output;
use super::{CliError, CliResult, Ctx};
use crate::audit::AuditLog;
use crate::msg::{self, Channel, Creds, Delivery, Target};
use crate::store::{OutboxMessage, Store};

#[derive(Debug, Subcommand)]
pub(crate) enum MsgCommand {
    /// The channels, whether each is configured and what it needs.
    Channels {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a channel's credentials against its service (Telegram getMe, Slack auth.test,
    /// Discord users/@me).
    Test {
        /// telegram, slack, discord, ntfy or webhook.
        channel: String,
    },
    /// Send one message to one target (a chat or channel id, a topic or a URL). The message is
    /// queued in the outbox first, then delivered (retried for up to --wait; what is left is
    /// delivered by `claw serve` or the next `claw msg send|notify|flush`).
    Send {
        /// telegram, slack, discord, email, ntfy or webhook.
        channel: String,
        /// Where on the channel: a chat or channel id, an address, a topic or a URL.
        target: String,
        /// The text (secrets in it are masked; long text is split at the channel's limit).
        message: String,
        /// Only queue it (the daemon delivers it).
        #[arg(long)]
        queue: bool,
        /// How long to keep retrying before leaving the rest to the daemon.
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        wait: String,
    },
    /// The profiles in profiles.yaml (the config root's, else the data directory's).
    Profiles {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The chat triggers in triggers.yaml (checked: every problem with its line and column).
    Triggers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send one message to every target of a profile, all at once (through the outbox).
    Notify {
        /// A profile of profiles.yaml.
        profile: String,
        /// The text (secrets in it are masked; long text is split at each channel's limit).
        message: String,
        /// Only queue it (the daemon delivers it).
        #[arg(long)]
        queue: bool,
        /// How long to keep retrying before leaving the rest to the daemon.
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        wait: String,
    },
    /// The outbox: queued, sent and dead messages, newest first.
    Outbox {
        /// Only dead messages and pending ones that have failed at least once.
        #[arg(long)]
        failed: bool,
        /// How many (the newest).
        #[arg(short = 'n', long = "limit", default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead message again.
    Retry {
        /// The message's id (`claw msg outbox --failed` shows it).
        id: i64,
    },
    /// Chats and who may talk to claw through them (besides the ALLOWED_CHAT_IDS setting).
    Chats {
        #[command(subcommand)]
        cmd: ChatsCommand,
    },
    /// Deliver every queued message that is due now, waiting up to --wait for retries.
    Flush {
        /// How long to keep retrying before leaving the rest to the daemon.
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        wait: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ChatsCommand {
    /// Every chat recorded: access requests (/start), allowed and denied chats.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Let a chat talk to claw (kept in the store; the same as /approve from the admin chat).
    Approve {
        /// The chat id (`claw msg chats list` shows requests).
        chat: String,
        /// The channel of the chat.
        #[arg(long, default_value = "telegram")]
        channel: String,
    },
    /// Refuse a chat (wins over ALLOWED_CHAT_IDS; the same as /deny from the admin chat).
    Deny {
        /// The chat id.
        chat: String,
        /// The channel of the chat.
        #[arg(long, default_value = "telegram")]
        channel: String,
    },
    /// Forget a chat's record (a chat in ALLOWED_CHAT_IDS stays allowed).
    Remove {
        /// The chat id.
        chat: String,
        /// The channel of the chat.
        #[arg(long, default_value = "telegram")]
        channel: String,
    },
}

fn chats(ctx: &Ctx, cmd: ChatsCommand) -> CliResult {
    let store = store(ctx)?;
    let actor = crate::config::env::cli_actor();
    let (chat, channel, status) = match cmd {
        ChatsCommand::List { json } => {
            let rows = store.list_chat_access()?;
            if json {
                output::print_json(&serde_json::to_value(&rows).unwrap_or_default());
            } else if rows.is_empty() {
                println!("no chats recorded");
            } else {
                for r in rows {
                    println!(
                        "{:<9} {:<16} {:<10} {:<20} {}",
                        r.channel,
                        r.chat,
                        r.status,
                        r.name,
                        r.decided_by.unwrap_or_default()
                    );
                }
            }
            return Ok(());
        }
        ChatsCommand::Approve { chat, channel } => (chat, channel, "allowed"),
        ChatsCommand::Deny { chat, channel } => (chat, channel, "denied"),
        ChatsCommand::Remove { chat, channel } => (chat, channel, "removed"),
    };
    if !msg::CHANNELS.contains(&channel.as_str()) {
        return Err(CliError::usage(format!("unknown channel `{channel}`")));
    }
    let target = format!("{channel}:{chat}");
    if status == "removed" {
        if !store.remove_chat_access(&channel, &chat)? {
            return Err(CliError::usage(format!("no chat {target} is recorded")));
        }
    } else {
        store.set_chat_access(&crate::store::ChatAccess {
            channel: channel.clone(),
            chat: chat.clone(),
            status: status.to_owned(),
            name: String::new(),
            decided_by: Some(actor.clone()),
            updated_at: crate::time::now_ms(),
        })?;
    }
    AuditLog::in_dir(&ctx.dirs.home)
        .record(&crate::audit::Event::new(
            &actor,
            crate::audit::Action::ChatAccess,
            &target,
            status,
            json!({}),
        ))
        .map_err(|e| CliError::internal(format!("chat {target} {status}, but not audited: {e}")))?;
    println!("chat {target} {status}");
    Ok(())
}

pub(crate) fn run(ctx: &Ctx, cmd: MsgCommand) -> CliResult {
    match cmd {
        MsgCommand::Chats { cmd } => chats(ctx, cmd),
        MsgCommand::Channels { json } => channels(ctx, json),
        MsgCommand::Test { channel } => test(ctx, &channel),
        MsgCommand::Send {
            channel,
            target,
            message,
            queue,
            wait,
        } => {
            let targets = [Target { channel, target }];
            send(ctx, &targets, &message, None, queue, &wait)
        }
        MsgCommand::Profiles { json } => profiles(ctx, json),
        MsgCommand::Triggers { json } => triggers(ctx, json),
        MsgCommand::Outbox {
            failed,
            limit,
            json,
        } => outbox(ctx, failed, limit, json),
        MsgCommand::Retry { id } => {
            let store = store(ctx)?;
            if store.retry_message(id, crate::time::now_ms())? {
                println!("message {id} is queued again");
                Ok(())
            } else {
                Err(CliError::usage(format!("no dead message with id {id}")))
            }
        }
        MsgCommand::Flush { wait } => {
            let wait = parse_wait(&wait)?;
            let store = store(ctx)?;
            let pending: Vec<i64> = store
                .list_messages(false, u32::MAX)?
                .iter()
                .filter(|m| m.status == "pending")
                .map(|m| m.id)
                .collect();
            deliver(
                ctx,
                &store,
                &creds(ctx),
                &pending,
                std::time::Instant::now() + wait,
            )?;
            report(&store, &pending)
        }
        MsgCommand::Notify {
            profile,
            message,
            queue,
            wait,
        } => {
            let all = msg::profiles::load(&ctx.dirs).map_err(|e| CliError::usage(e.render()))?;
            let p = all.get(&profile).map_err(CliError::usage)?;
            if p.targets.is_empty() {
                return Err(CliError::usage(format!("profile {profile} has no targets")));
            }
            send(
                ctx,
                &p.targets.clone(),
                &message,
                Some(&profile),
                queue,
                &wait,
            )
        }
    }
}

fn creds(ctx: &Ctx) -> Creds {
    let (layers, _) = crate::vault::settings(&ctx.dirs.root, &ctx.dirs.home, Default::default());
    let creds = Creds::from_layers(&layers);
    // Every secret the settings hold is masked in whatever is sent, not only the channels'.
    let vault_values: Vec<String> = layers.vault.values().cloned().collect();
    crate::redact::register_global(vault_values.iter().map(String::as_str));
    crate::redact::register_global(creds.secret_values());
    if let Ok(all) = crate::vault::Vault::new(&ctx.dirs.home).all() {
        crate::redact::register_global(all.values().map(crate::secret::Secret::expose));
    }
    creds
}

fn channels(ctx: &Ctx, as_json: bool) -> CliResult {
    let creds = creds(ctx);
    let rows: Vec<_> = msg::CHANNELS
        .iter()
        .map(|name| {
            let (configured, needs) = Channel::status(name, &creds);
            (*name, configured, needs)
        })
        .collect();
    if as_json {
        output::print_json(&serde_json::Value::Array(
            rows.iter()
                .map(|(n, c, needs)| json!({"name": n, "configured": c, "needs": needs}))
                .collect(),
        ));
        return Ok(());
    }
    for (n, c, needs) in rows {
        let state = if c { "configured" } else { "not configured" };
        println!("{n:<9} {state:<15} {needs}");
    }
    Ok(())
}

fn test(ctx: &Ctx, name: &str) -> CliResult {
    let creds = creds(ctx);
    let ch = Channel::configure(name, &creds).map_err(CliError::usage)?;
    let client = msg::client().map_err(CliError::internal)?;
    let rt = super::runtime()?;
    match rt.block_on(ch.check(&client)) {
        None => {
            println!("{name}: configured (nothing to check without sending; use `claw msg send`)");
            Ok(())
        }
        Some(Ok(who)) => {
            println!("{name}: ok ({who})");
            Ok(())
        }
        Some(Err(e)) => {
            let m = crate::redact::global().redact(&e.message).into_owned();
            eprintln!(
                "error: {name}: the service refused the credentials or could not be reached: {m}"
            );
            Err(CliError::failed())
        }
    }
}

fn store(ctx: &Ctx) -> Result<Arc<dyn Store>, CliError> {
    ctx.store()
}

/// The outbox claim's owner and the audit entries' actor.
fn owner() -> String {
    format!("{}/msg", crate::config::env::cli_actor())
}

fn parse_wait(text: &str) -> Result<std::time::Duration, CliError> {
    crate::time::duration::parse(text).map_err(|e| CliError::usage(format!("--wait: {e}")))
}

fn send(
    ctx: &Ctx,
    targets: &[Target],
    text: &str,
    profile: Option<&str>,
    queue: bool,
    wait: &str,
) -> CliResult {
    let wait = parse_wait(wait)?;
    let creds = creds(ctx);
    let store = store(ctx)?;
    let source = profile.map_or_else(|| "cli".to_owned(), |p| format!("cli:profile:{p}"));
    let ids = msg::outbox::enqueue(store.as_ref(), &creds, targets, text, &source)
        .map_err(CliError::usage)?;
    if queue {
        println!("queued {} message(s): {}", ids.len(), join_ids(&ids));
        return Ok(());
    }
    let started = std::time::Instant::now();
    deliver(ctx, &store, &creds, &ids, started + wait)?;
    let r = report(&store, &ids);
    if targets.len() > 1 {
        println!("in {} ms", started.elapsed().as_millis());
    }
    r
}

/// Sends the messages `ids` (and whatever else is due) until they are out or `until`.
fn deliver(
    ctx: &Ctx,
    store: &Arc<dyn Store>,
    creds: &msg::Creds,
    ids: &[i64],
    until: std::time::Instant,
) -> CliResult {
    let client = msg::client().map_err(CliError::internal)?;
    super::runtime()?
        .block_on(msg::outbox::drain(
            store.clone(),
            &client,
            creds,
            &owner(),
            &AuditLog::in_dir(&ctx.dirs.home),
            Some(ids),
            until,
        ))
        .map_err(CliError::internal)?;
    Ok(())
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
}

/// One line and one audit entry per target of the messages `ids`; exit 1 when one is not sent.
fn report(store: &Arc<dyn Store>, ids: &[i64]) -> CliResult {
    let msgs = store.messages(ids)?;
    // Group the pieces by target, in the order first seen.
    let mut groups: Vec<(String, String, Vec<&OutboxMessage>)> = Vec::new();
    for m in &msgs {
        match groups
            .iter_mut()
            .find(|(c, t, _)| *c == m.channel && *t == m.target)
        {
            Some(g) => g.2.push(m),
            None => groups.push((m.channel.clone(), m.target.clone(), vec![m])),
        }
    }
    let (mut sent, mut total) = (0, 0);
    for (channel, target, pieces) in &groups {
        total += 1;
        let all_sent = pieces.iter().all(|m| m.status == "sent");
        let dead = pieces.iter().find(|m| m.status == "dead");
        let error = pieces.iter().rev().find_map(|m| m.last_error.clone());
        let d = Delivery {
            channel: channel.clone(),
            target: target.clone(),
            ok: all_sent,
            message: pieces
                .iter()
                .filter_map(|m| m.provider_id.clone())
                .collect::<Vec<_>>()
                .join(" "),
            error: error.clone(),
            attempts: u32::try_from(pieces.iter().map(|m| m.attempts).sum::<i64>()).unwrap_or(0),
        };
        if all_sent {
            sent += 1;
            println!("sent    {channel}:{target}  {}", d.message);
        } else if dead.is_some() {
            println!(
                "FAILED  {channel}:{target}  {}",
                error.as_deref().unwrap_or("")
            );
        } else {
            println!(
                "QUEUED  {channel}:{target}  not delivered yet ({}); `claw serve` or the next `claw msg flush` retries it",
                error.as_deref().unwrap_or("pending")
            );
        }
    }
    if total > 1 {
        println!("{sent} of {total} delivered");
    }
    if sent < total {
        return Err(CliError::failed());
    }
    Ok(())
}

fn outbox(ctx: &Ctx, failed: bool, limit: u32, as_json: bool) -> CliResult {
    let store = store(ctx)?;
    let msgs = store.list_messages(failed, limit)?;
    if as_json {
        output::print_json(&serde_json::to_value(&msgs).unwrap_or_default());
        return Ok(());
    }
    if msgs.is_empty() {
        println!(
            "{}",
            if failed {
                "No failed messages."
            } else {
                "The outbox is empty."
            }
        );
        return Ok(());
    }
    println!(
        "{:<6} {:<8} {:<28} {:>8}  {:<20} text / last error",
        "ID", "STATUS", "TO", "ATTEMPTS", "QUEUED"
    );
    for m in &msgs {
        let note = match (&m.status[..], &m.last_error) {
            ("sent", _) | (_, None) => super::output::first_line(&m.body, 40),
            (_, Some(e)) => super::output::first_line(e, 60),
        };
        println!(
            "{:<6} {:<8} {:<28} {:>8}  {:<20} {note}",
            m.id,
            m.status,
            super::output::first_line(&format!("{}:{}", m.channel, m.target), 28),
            m.attempts,
            super::output::local_time(Some(m.created_at)),
        );
    }
    Ok(())
}

fn profiles(ctx: &Ctx, as_json: bool) -> CliResult {
    let all = msg::profiles::load(&ctx.dirs).map_err(|e| CliError::usage(e.render()))?;
    if as_json {
        output::print_json(&serde_json::to_value(&all.profiles).unwrap_or_default());
        return Ok(());
    }
    let Some(path) = &all.path else {
        println!(
            "No profiles.yaml (looked in {} and {}).",
            ctx.dirs.root.display(),
            ctx.dirs.home.display()
        );
        return Ok(());
    };
    println!("{}:", path.display());
    for p in &all.profiles {
        let ts: Vec<String> = p
            .targets
            .iter()
            .map(|t| format!("{}:{}", t.channel, t.target))
            .collect();
        println!("  {:<16} {}", p.name, ts.join(", "));
    }
    Ok(())
}

fn triggers(ctx: &Ctx, as_json: bool) -> CliResult {
    let all = msg::triggers::load(&ctx.dirs).map_err(|e| CliError::usage(e.render()))?;
    let rows: Vec<serde_json::Value> = all
        .triggers
        .iter()
        .map(|t| {
            serde_json::json!({
                "line": t.pos.line,
                "pattern": t.pattern.as_str(),
                "action": t.action,
                "command": t.command,
                "reply": t.reply,
            })
        })
        .collect();
    if as_json {
        output::print_json(&serde_json::Value::Array(rows));
        return Ok(());
    }
    let Some(path) = &all.path else {
        println!(
            "No triggers.yaml (looked in {} and {}).",
            ctx.dirs.root.display(),
            ctx.dirs.home.display()
        );
        return Ok(());
    };
    println!("{}:", path.display());
    for t in &all.triggers {
        println!(
            "  line {:<4} {:<8} /{}/ -> {}{}",
            t.pos.line,
            serde_json::to_value(t.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            t.pattern.as_str(),
            t.command,
            if t.reply { "" } else { " (no reply)" }
        );
    }
    Ok(())
}
