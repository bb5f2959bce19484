//! `claw setup [vault | telegram | dashboard | check]`. On a terminal, `claw setup` (and each
//! part) asks for what it needs, tests each answer for real (Telegram `getMe` and a test message,
//! the dashboard password's strength) and writes nothing until the answers check out: secrets go
//! to the vault, the dashboard user to the store. Without a terminal each part says which
//! commands, flags and variables do the same. `check` is a readable checklist.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use clap::Subcommand;

use super::{CliError, CliResult, Ctx};
use crate::msg::{self, Creds};

#[derive(Debug, Subcommand)]
pub(crate) enum SetupCommand {
    /// What is configured and what is not, as a checklist. Exit status 1 if a file is invalid.
    Check,
    /// Create the vault (on a terminal; otherwise: how to).
    Vault,
    /// Set up Telegram: the bot token (checked with getMe) and the chat (sent a test message).
    Telegram,
    /// Add the dashboard's first user (on a terminal; otherwise: how to).
    Dashboard,
    /// Set up email: the SMTP server (checked with a login) and a test message.
    Email,
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

const DASHBOARD: &str = "Dashboard:
  claw dashboard user add NAME             the first user (the password is asked, never echoed)
  (or DASHBOARD_USER / DASHBOARD_PASS in the vault or environment, as in the seed)";

pub(crate) fn run(ctx: &Ctx, cmd: Option<SetupCommand>) -> CliResult {
    let tty = std::io::stdin().is_terminal();
    let guide = |text: &str| {
        println!("{text}\n\n(claw setup asks for these itself when it runs on a terminal.)");
        Ok(())
    };
    match cmd {
        None if tty => {
            println!(
                "claw setup: the vault, Telegram and the dashboard. Nothing is written until a part's answers check out.\n"
            );
            let mut done = Vec::new();
            for (part, name, default) in [
                (Part::Vault, "the vault", true),
                (Part::Telegram, "Telegram", true),
                (Part::Email, "email (SMTP)", false),
                (Part::Dashboard, "the dashboard", true),
            ] {
                if confirm(&format!("Set up {name}?"), default)? {
                    part.run(ctx)?;
                    done.push(name);
                }
            }
            println!(
                "\nDone ({}). See: claw setup check",
                if done.is_empty() {
                    "nothing".to_owned()
                } else {
                    done.join(", ")
                }
            );
            Ok(())
        }
        None => guide(&format!(
            "claw setup needs a terminal to ask its questions. The same steps by hand:\n\n{VAULT}\n\n{TELEGRAM}\n\n{DASHBOARD}\n\nThen: claw setup check"
        )),
        Some(SetupCommand::Vault) if tty => Part::Vault.run(ctx),
        Some(SetupCommand::Vault) => guide(VAULT),
        Some(SetupCommand::Telegram) if tty => Part::Telegram.run(ctx),
        Some(SetupCommand::Telegram) => guide(TELEGRAM),
        Some(SetupCommand::Dashboard) if tty => Part::Dashboard.run(ctx),
        Some(SetupCommand::Dashboard) => guide(DASHBOARD),
        Some(SetupCommand::Email) if tty => Part::Email.run(ctx),
        Some(SetupCommand::Email) => guide(TELEGRAM),
        Some(SetupCommand::Check) => check(ctx),
    }
}

/// A part of the guided setup.
#[derive(Debug, Clone, Copy)]
enum Part {
    Vault,
    Telegram,
    Email,
    Dashboard,
}

impl Part {
    fn run(self, ctx: &Ctx) -> CliResult {
        match self {
            Self::Vault => setup_vault(ctx, true).map(|_| ()),
            Self::Telegram => setup_telegram(ctx),
            Self::Email => setup_email(ctx),
            Self::Dashboard => setup_dashboard(ctx),
        }
    }
}

/// Prints a prompt on stderr and reads one line of stdin (the terminal).
fn ask(question: &str, default: Option<&str>) -> Result<String, CliError> {
    match default {
        Some(d) if !d.is_empty() => eprint!("{question} [{d}]: "),
        _ => eprint!("{question}: "),
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::internal(format!("cannot read the answer: {e}")))?;
    if n == 0 {
        return Err(CliError::usage(
            "no answer (end of input); nothing more was written",
        ));
    }
    let answer = line.trim().to_owned();
    Ok(match default {
        Some(d) if answer.is_empty() => d.to_owned(),
        _ => answer,
    })
}

fn confirm(question: &str, default: bool) -> Result<bool, CliError> {
    loop {
        let a = ask(
            &format!("{question} {}", if default { "[Y/n]" } else { "[y/N]" }),
            None,
        )?;
        match a.to_ascii_lowercase().as_str() {
            "" => return Ok(default),
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => eprintln!("Answer y or n."),
        }
    }
}

/// A line typed without echo.
fn ask_hidden(question: &str) -> Result<String, CliError> {
    let v = super::vault::read_secret(question)?;
    if v.is_empty() {
        return Err(CliError::usage(format!(
            "{question}: no value; nothing was written"
        )));
    }
    Ok(v)
}

/// The vault, created when missing (after asking, when `ask_first`). `Ok(false)`: not created.
fn setup_vault(ctx: &Ctx, ask_first: bool) -> Result<bool, CliError> {
    let vault = crate::vault::Vault::new(&ctx.dirs.home);
    if vault.vault_path().is_file() {
        println!(
            "[x] vault: {} (already initialized)",
            vault.vault_path().display()
        );
        return Ok(true);
    }
    if ask_first
        && !confirm(
            &format!("Create the vault in {}?", ctx.dirs.home.display()),
            true,
        )?
    {
        println!("[ ] vault: not created (claw vault init)");
        return Ok(false);
    }
    ctx.dirs.ensure_home().map_err(|e| {
        CliError::internal(format!("cannot create {}: {e}", ctx.dirs.home.display()))
    })?;
    let protect = confirm(
        "Protect the vault's key with a passphrase (asked at each use)?",
        false,
    )?;
    if protect {
        let first = ask_hidden("New passphrase")?;
        let again = ask_hidden("Confirm passphrase")?;
        if first != again {
            return Err(CliError::usage(
                "the passphrases differ; the vault was not created",
            ));
        }
        vault.init_protected(&crate::secret::Secret::new(first))?;
    } else {
        vault.init()?;
    }
    println!("[x] vault: created {}", vault.vault_path().display());
    Ok(true)
}

fn setup_telegram(ctx: &Ctx) -> CliResult {
    let (layers, _) = crate::vault::settings(&ctx.dirs.root, &ctx.dirs.home, Default::default());
    let creds = Creds::from_layers(&layers);
    let api = creds
        .get("TELEGRAM_API_URL")
        .unwrap_or("https://api.telegram.org")
        .trim_end_matches('/')
        .to_owned();
    println!(
        "Telegram: create a bot with @BotFather and paste its token; it is checked with getMe."
    );
    let token = ask_hidden("Telegram bot token")?;
    let ch = msg::channels::Channel::Telegram {
        api,
        token: token.clone(),
    };
    crate::redact::register_global([token.as_str()]);
    let client = msg::client().map_err(CliError::internal)?;
    let rt = super::runtime()?;
    let who = match rt.block_on(ch.check(&client)) {
        Some(Ok(who)) => who,
        Some(Err(e)) => {
            let m = crate::redact::global().redact(&e.message).into_owned();
            eprintln!(
                "error: Telegram refused the token or could not be reached: {m}\nNothing was written."
            );
            return Err(CliError::failed());
        }
        None => String::from("?"),
    };
    println!("[x] token: {who}");
    let chat = ask(
        "Chat id to send to (your chat with the bot; @userinfobot tells it)",
        creds.get("TELEGRAM_DEFAULT_CHAT_ID"),
    )?;
    if chat.is_empty() || chat.contains(char::is_whitespace) {
        return Err(CliError::usage("a chat id is needed; nothing was written"));
    }
    let sent = rt.block_on(ch.send(
        &client,
        &chat,
        "claw setup: this chat receives claw's messages.",
    ));
    if let Err(e) = sent {
        let m = crate::redact::global().redact(&e.message).into_owned();
        eprintln!(
            "error: the test message to chat {chat} was not delivered: {m}\nNothing was written."
        );
        return Err(CliError::failed());
    }
    println!("[x] chat {chat}: test message sent");
    if !setup_vault(ctx, false)? {
        return Err(CliError::failed());
    }
    let vault = crate::vault::Vault::new(&ctx.dirs.home);
    vault.set("TELEGRAM_BOT_TOKEN", &crate::secret::Secret::new(token))?;
    vault.set(
        "TELEGRAM_DEFAULT_CHAT_ID",
        &crate::secret::Secret::new(chat),
    )?;
    println!("[x] telegram: TELEGRAM_BOT_TOKEN and TELEGRAM_DEFAULT_CHAT_ID stored in the vault");
    Ok(())
}

fn setup_email(ctx: &Ctx) -> CliResult {
    let (layers, _) = crate::vault::settings(&ctx.dirs.root, &ctx.dirs.home, Default::default());
    let known = Creds::from_layers(&layers);
    let mut values = std::collections::BTreeMap::new();
    for (key, question, default) in [
        ("SMTP_HOST", "SMTP server", None),
        ("SMTP_PORT", "SMTP port", Some("587")),
        ("SMTP_USER", "SMTP user", None),
    ] {
        let d = known.get(key).or(default);
        values.insert(key.to_owned(), ask(question, d)?);
    }
    let pass = ask_hidden("SMTP password")?;
    crate::redact::register_global([pass.as_str()]);
    values.insert("SMTP_PASS".to_owned(), pass);
    let from_default = known
        .get("SMTP_FROM")
        .map(str::to_owned)
        .or_else(|| values.get("SMTP_USER").filter(|u| u.contains('@')).cloned());
    values.insert(
        "SMTP_FROM".to_owned(),
        ask("Sender address", from_default.as_deref())?,
    );
    let tls_default = if values.get("SMTP_PORT").map(String::as_str) == Some("465") {
        "tls"
    } else {
        "starttls"
    };
    values.insert(
        "SMTP_TLS".to_owned(),
        ask(
            "TLS (starttls, tls or none)",
            Some(known.get("SMTP_TLS").unwrap_or(tls_default)),
        )?,
    );
    if let Some(v) = known.get("SMTP_TLS_VERIFY") {
        values.insert("SMTP_TLS_VERIFY".to_owned(), v.to_owned());
    }
    let creds = Creds::from_map(values.clone());
    let ch = msg::channels::Channel::configure("email", &creds).map_err(CliError::usage)?;
    let client = msg::client().map_err(CliError::internal)?;
    let rt = super::runtime()?;
    match rt.block_on(ch.check(&client)) {
        Some(Err(e)) => {
            let m = crate::redact::global().redact(&e.message).into_owned();
            eprintln!("error: the SMTP login failed: {m}\nNothing was written.");
            return Err(CliError::failed());
        }
        Some(Ok(who)) => println!("[x] smtp: {who}"),
        None => {}
    }
    let to = ask(
        "Send a test message to (address)",
        values.get("SMTP_FROM").map(String::as_str),
    )?;
    let text = "claw setup: test message\n\nThis address receives claw's email.";
    if let Err(e) = rt.block_on(ch.send(&client, &to, text)) {
        let m = crate::redact::global().redact(&e.message).into_owned();
        eprintln!("error: the test message to {to} was not sent: {m}\nNothing was written.");
        return Err(CliError::failed());
    }
    println!("[x] test message sent to {to}");
    if !setup_vault(ctx, false)? {
        return Err(CliError::failed());
    }
    let vault = crate::vault::Vault::new(&ctx.dirs.home);
    for (k, v) in &values {
        vault.set(k, &crate::secret::Secret::new(v.clone()))?;
    }
    println!("[x] email: the SMTP settings and password stored in the vault");
    Ok(())
}

fn setup_dashboard(ctx: &Ctx) -> CliResult {
    use crate::web::auth;
    ctx.dirs.ensure_home().map_err(|e| {
        CliError::internal(format!("cannot create {}: {e}", ctx.dirs.home.display()))
    })?;
    let store = crate::store::SqliteStore::open(&ctx.dirs.db_path())?;
    let name = ask("Dashboard user name", Some("admin"))?;
    auth::check_user_name(&name).map_err(CliError::usage)?;
    if crate::store::Store::dashboard_password(&store, &name)?.is_some() {
        println!(
            "[x] dashboard: user {name} exists (claw dashboard user passwd {name} changes the password)"
        );
        return Ok(());
    }
    let password = loop {
        let first = ask_hidden(&format!("the password of {name}"))?;
        if let Err(e) = auth::check_strength(&name, &first) {
            eprintln!("{e}");
            continue;
        }
        let again = ask_hidden("the same password again")?;
        if first == again {
            break first;
        }
        eprintln!("The passwords differ; again.");
    };
    let hash = auth::hash_password(&password).map_err(CliError::internal)?;
    let now = crate::time::now_ms();
    if !crate::store::Store::add_dashboard_user(&store, &name, &hash, now)? {
        return Err(CliError::usage(format!("user `{name}` exists")));
    }
    let event = crate::audit::Event::new(
        &crate::config::env::cli_actor(),
        crate::audit::Action::DashboardUserAdd,
        &name,
        "ok",
        serde_json::json!({"by": "claw setup"}),
    );
    crate::audit::AuditLog::in_dir(&ctx.dirs.home)
        .record(&event)
        .map_err(|e| CliError::internal(format!("done, but not in the audit log: {e}")))?;
    println!("[x] dashboard: user {name} added (claw serve, then sign in)");
    Ok(())
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
    let users = if ctx.dirs.db_path().is_file() {
        crate::store::SqliteStore::open(&ctx.dirs.db_path())
            .ok()
            .and_then(|s| crate::store::Store::dashboard_users(&s).ok())
            .map_or(0, |u| u.len())
    } else {
        0
    };
    line(
        Some(users > 0),
        "dashboard",
        &if users > 0 {
            format!("{users} user(s)")
        } else {
            "no user: claw setup dashboard".to_owned()
        },
    );
    if broken {
        Err(CliError::failed())
    } else {
        Ok(())
    }
}
