//! `claw msg channels | test CH | send CH TARGET MSG | profiles | notify PROFILE MSG`.

use clap::Subcommand;
use serde_json::json;

use super::output;
use super::{CliError, CliResult, Ctx};
use crate::audit::{Action, AuditLog, Event};
use crate::msg::{self, Channel, Creds, Delivery, RetryPolicy, Target};

#[derive(Debug, Subcommand)]
pub(crate) enum MsgCommand {
    /// The channels, whether each is configured and what it needs.
    Channels {
        #[arg(long)]
        json: bool,
    },
    /// Check a channel's credentials against its service (Telegram getMe, Slack auth.test,
    /// Discord users/@me).
    Test {
        /// telegram, slack, discord, ntfy or webhook.
        channel: String,
    },
    /// Send one message to one target (a chat or channel id, a topic or a URL).
    Send {
        channel: String,
        target: String,
        message: String,
    },
    /// The profiles in profiles.yaml (the config root's, else the data directory's).
    Profiles {
        #[arg(long)]
        json: bool,
    },
    /// Send one message to every target of a profile, all at once.
    Notify { profile: String, message: String },
}

pub(crate) fn run(ctx: &Ctx, cmd: MsgCommand) -> CliResult {
    match cmd {
        MsgCommand::Channels { json } => channels(ctx, json),
        MsgCommand::Test { channel } => test(ctx, &channel),
        MsgCommand::Send {
            channel,
            target,
            message,
        } => {
            let targets = [Target { channel, target }];
            send(ctx, &targets, &message, None)
        }
        MsgCommand::Profiles { json } => profiles(ctx, json),
        MsgCommand::Notify { profile, message } => {
            let all = msg::profiles::load(&ctx.dirs).map_err(|e| CliError::usage(e.render()))?;
            let p = all.get(&profile).map_err(CliError::usage)?;
            if p.targets.is_empty() {
                return Err(CliError::usage(format!("profile {profile} has no targets")));
            }
            send(ctx, &p.targets.clone(), &message, Some(&profile))
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

fn send(ctx: &Ctx, targets: &[Target], text: &str, profile: Option<&str>) -> CliResult {
    let creds = creds(ctx);
    // A bad channel name is a usage error before anything is sent.
    for t in targets {
        if !msg::CHANNELS.contains(&t.channel.as_str()) {
            Channel::configure(&t.channel, &creds).map_err(CliError::usage)?;
        }
    }
    let client = msg::client().map_err(CliError::internal)?;
    let rt = super::runtime()?;
    let started = std::time::Instant::now();
    let results = rt.block_on(msg::fan_out(
        &client,
        &creds,
        targets,
        text,
        RetryPolicy::default(),
    ));
    let elapsed = started.elapsed();
    if let Err(e) = ctx.dirs.ensure_home() {
        eprintln!("warning: cannot create {}: {e}", ctx.dirs.home.display());
    }
    let audit = AuditLog::in_dir(&ctx.dirs.home);
    let actor = crate::config::env::cli_actor();
    let mut failed = 0;
    for d in &results {
        audit_one(&audit, &actor, d, profile, text);
        if d.ok {
            println!("sent    {}:{}  {}", d.channel, d.target, d.message);
        } else {
            failed += 1;
            println!(
                "FAILED  {}:{}  {}",
                d.channel,
                d.target,
                d.error.as_deref().unwrap_or("")
            );
        }
    }
    if results.len() > 1 {
        println!(
            "{} of {} delivered in {} ms",
            results.len() - failed,
            results.len(),
            elapsed.as_millis()
        );
    }
    if failed > 0 {
        return Err(CliError::failed());
    }
    Ok(())
}

fn audit_one(audit: &AuditLog, actor: &str, d: &Delivery, profile: Option<&str>, text: &str) {
    let mut detail = json!({
        "channel": d.channel,
        "chars": text.chars().count(),
        "attempts": d.attempts,
    });
    if let Some(p) = profile {
        detail["profile"] = p.into();
    }
    if let Some(e) = &d.error {
        detail["error"] = e.clone().into();
    }
    let entry = Event::new(
        actor,
        Action::MessageSent,
        &format!("{}:{}", d.channel, d.target),
        if d.ok { "success" } else { "failure" },
        detail,
    );
    if let Err(e) = audit.record(&entry) {
        eprintln!(
            "warning: the message to {}:{} was not audited: {e}",
            d.channel, d.target
        );
    }
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
