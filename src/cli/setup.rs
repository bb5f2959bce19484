//! `claw setup [vault | telegram | dashboard | check]`. `check` is a readable checklist of what
//! is configured; the guided, interactive parts are not built yet: each one says which commands,
//! flags and variables do the same today.

use clap::Subcommand;

use super::{CliError, CliResult, Ctx};
use crate::msg::{self, Creds};

#[derive(Debug, Subcommand)]
pub(crate) enum SetupCommand {
    /// What is configured and what is not, as a checklist. Exit status 1 if a file is invalid.
    Check,
    /// How to create the vault and store secrets in it.
    Vault,
    /// How to configure Telegram (bot token, chat) and check it.
    Telegram,
    /// The dashboard user (the dashboard is a separate piece of work, not in this build).
    Dashboard,
}

const VAULT: &str = "Vault:
  claw vault init                          create vault.enc and age-identity.txt (0600)
  claw vault set NAME                      store a secret (the value is asked, never echoed)
  claw vault passphrase set                protect the identity with a passphrase
  (or claw vault init --passphrase)";

const TELEGRAM: &str = "Telegram:
  claw vault set TELEGRAM_BOT_TOKEN        the token from @BotFather (or the environment variable)
  claw vault set TELEGRAM_DEFAULT_CHAT_ID  the chat to send to
  claw msg test telegram                   checks the token (getMe)
  claw msg send telegram CHAT_ID hello     sends a test message
Email: SMTP_HOST, SMTP_PORT (587), SMTP_USER, SMTP_PASS, SMTP_FROM (vault or environment),
  then: claw msg test email";

const DASHBOARD: &str =
    "Dashboard: not in this build (the web dashboard is a separate piece of work).
  Its user will be DASHBOARD_USER / DASHBOARD_PASS (vault or environment), as in the seed.";

pub(crate) fn run(ctx: &Ctx, cmd: Option<SetupCommand>) -> CliResult {
    match cmd {
        None => {
            println!(
                "claw setup: the guided, interactive setup is not built yet. Today, the same steps:\n\n{VAULT}\n\n{TELEGRAM}\n\n{DASHBOARD}\n\nThen: claw setup check"
            );
            Ok(())
        }
        Some(SetupCommand::Vault) => {
            println!("{VAULT}");
            Ok(())
        }
        Some(SetupCommand::Telegram) => {
            println!("{TELEGRAM}");
            Ok(())
        }
        Some(SetupCommand::Dashboard) => {
            println!("{DASHBOARD}");
            Ok(())
        }
        Some(SetupCommand::Check) => check(ctx),
    }
}

fn line(ok: Option<bool>, what: &str, detail: &str) {
    let mark = match ok {
        Some(true) => "[x]",
        Some(false) => "[ ]",
        None => "[!]",
    };
    println!("{mark} {what:<14} {detail}");
}

fn check(ctx: &Ctx) -> CliResult {
    let mut broken = false;
    let home = &ctx.dirs.home;
    line(
        Some(home.is_dir()),
        "data directory",
        &home.display().to_string(),
    );
    let vault = home.join("vault.enc").is_file() && home.join("age-identity.txt").is_file();
    line(
        Some(vault),
        "vault",
        if vault {
            "initialized"
        } else {
            "not initialized: claw vault init"
        },
    );
    let (layers, _) = crate::vault::settings(&ctx.dirs.root, home, Default::default());
    let creds = Creds::from_layers(&layers);
    for name in msg::CHANNELS {
        let (configured, needs) = msg::Channel::status(name, &creds);
        let detail = if configured {
            format!("configured (check it: claw msg test {name})")
        } else {
            format!("not configured: {needs}")
        };
        line(Some(configured), name, &detail);
    }
    match crate::policy::load(&ctx.dirs.root, home) {
        Ok(p) => line(
            Some(true),
            "policies",
            &match &p.file {
                Some(f) => format!("{} ({} rules)", f.display(), p.rules.len()),
                None => format!("built-in rules only ({})", p.rules.len()),
            },
        ),
        Err(e) => {
            broken = true;
            line(None, "policies", &format!("invalid: {}", e.path.display()));
        }
    }
    match crate::ssh::Registry::find(&ctx.dirs.root, home) {
        Ok(r) if r.hosts.is_empty() => line(Some(false), "ssh hosts", "none (hosts.yaml)"),
        Ok(r) => line(Some(true), "ssh hosts", &format!("{} hosts", r.hosts.len())),
        Err(e) => {
            broken = true;
            line(None, "ssh hosts", &format!("invalid: {}", e.path.display()));
        }
    }
    match crate::packs::list(&ctx.dirs) {
        Ok(l) => line(
            Some(!l.is_empty()),
            "packs",
            &format!("{} installed", l.len()),
        ),
        Err(e) => {
            broken = true;
            line(None, "packs", &e.to_string());
        }
    }
    line(Some(false), "dashboard", "not in this build");
    if broken {
        Err(CliError::failed())
    } else {
        Ok(())
    }
}
