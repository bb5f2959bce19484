//! `claw dashboard [--bind ADDR]` (the daemon, with the dashboard on its listener) and
//! `claw dashboard user add|passwd|remove|list`, `claw dashboard token add|remove|list`.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx, output};
use crate::audit::{Action, AuditLog, Event};
use crate::store::Store;
use crate::web::auth;

#[derive(Debug, clap::Args)]
pub(crate) struct DashboardArgs {
    /// Address to serve the dashboard (and the webhooks) on; the same as `claw serve --bind`.
    #[arg(long, value_name = "ADDR", default_value = crate::serve::DEFAULT_BIND)]
    bind: SocketAddr,
    #[command(subcommand)]
    cmd: Option<DashboardCommand>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DashboardCommand {
    /// Dashboard users (argon2id hashes in the store): add, passwd, remove, list.
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens for `Authorization: Bearer` (kept hashed; shown once): add, remove, list.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user. The password is read from stdin (typed without echo on a terminal); weak or
    /// common passwords are refused.
    Add {
        /// The user name (letters, digits, `.`, `_`, `-`, `@`).
        name: String,
    },
    /// Change a user's password (read as for `add`); their open sessions end.
    Passwd {
        /// The user name.
        name: String,
    },
    /// Remove a user with their sessions and API tokens.
    Remove {
        /// The user name.
        name: String,
    },
    /// The users, with their open sessions and tokens.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make an API token for a user and print it (only this once).
    Add {
        /// The user the token acts as.
        user: String,
        /// A name for the token (to revoke it by).
        name: String,
    },
    /// Revoke a token.
    Remove {
        /// The user the token acts as.
        user: String,
        /// The token's name.
        name: String,
    },
    /// The tokens (names, never the tokens).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(ctx: &Ctx, args: DashboardArgs) -> CliResult {
    let Some(cmd) = args.cmd else {
        let opts = crate::serve::Options {
            bind: Some(args.bind),
            ..crate::serve::Options::default()
        };
        return Ok(crate::serve::run(
            ctx.dirs.clone(),
            ctx.settings()?,
            &opts,
            CancellationToken::new(),
        )?);
    };
    let store = store(ctx)?;
    let audit = AuditLog::in_dir(&ctx.dirs.home);
    let actor = crate::config::env::cli_actor();
    let record = |action: Action, target: &str| {
        audit
            .record(&Event::new(&actor, action, target, "ok", json!({})))
            .map(|_| ())
            .map_err(|e| CliError::internal(format!("done, but not in the audit log: {e}")))
    };
    let now = crate::time::now_ms();
    match cmd {
        DashboardCommand::User(UserCommand::Add { name }) => {
            auth::check_user_name(&name).map_err(CliError::usage)?;
            if store.dashboard_password(&name)?.is_some() {
                return Err(CliError::usage(format!(
                    "user `{name}` exists; `claw dashboard user passwd {name}` changes the password"
                )));
            }
            let hash = new_hash(&name)?;
            if !store.add_dashboard_user(&name, &hash, now)? {
                return Err(CliError::usage(format!("user `{name}` exists")));
            }
            record(Action::DashboardUserAdd, &name)?;
            println!("user {name} added");
        }
        DashboardCommand::User(UserCommand::Passwd { name }) => {
            if store.dashboard_password(&name)?.is_none() {
                return Err(CliError::usage(format!("no dashboard user `{name}`")));
            }
            let hash = new_hash(&name)?;
            store.set_dashboard_password(&name, &hash, now)?;
            record(Action::DashboardUserPasswd, &name)?;
            println!("password of {name} changed; their sessions ended");
        }
        DashboardCommand::User(UserCommand::Remove { name }) => {
            if !store.remove_dashboard_user(&name)? {
                return Err(CliError::usage(format!("no dashboard user `{name}`")));
            }
            record(Action::DashboardUserRemove, &name)?;
            println!("user {name} removed, with their sessions and tokens");
        }
        DashboardCommand::User(UserCommand::List { json }) => {
            let users = store.dashboard_users()?;
            if json {
                output::print_json(&json!(
                    users
                        .iter()
                        .map(|u| json!({
                            "name": u.name,
                            "created_at": output::rfc3339(Some(u.created_at)),
                            "updated_at": output::rfc3339(Some(u.updated_at)),
                            "sessions": u.sessions,
                            "tokens": u.tokens,
                        }))
                        .collect::<Vec<_>>()
                ));
            } else if users.is_empty() {
                println!("no dashboard users: `claw dashboard user add NAME`");
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.clone(),
                            output::local_time(Some(u.created_at)),
                            u.sessions.to_string(),
                            u.tokens.to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(&["USER", "ADDED", "SESSIONS", "TOKENS"], &rows)
                );
            }
        }
        DashboardCommand::Token(TokenCommand::Add { user, name }) => {
            if store.dashboard_password(&user)?.is_none() {
                return Err(CliError::usage(format!("no dashboard user `{user}`")));
            }
            let token = auth::random_token().map_err(CliError::internal)?;
            if !store.add_api_token(&auth::token_hash(&token), &user, &name, now)? {
                return Err(CliError::usage(format!(
                    "user `{user}` already has a token named `{name}`"
                )));
            }
            record(Action::DashboardTokenAdd, &format!("{user}/{name}"))?;
            eprintln!(
                "token {name} for {user} (shown only now; send it as `Authorization: Bearer TOKEN`):"
            );
            println!("{token}");
        }
        DashboardCommand::Token(TokenCommand::Remove { user, name }) => {
            if !store.remove_api_token(&user, &name)? {
                return Err(CliError::usage(format!(
                    "user `{user}` has no token `{name}`"
                )));
            }
            record(Action::DashboardTokenRemove, &format!("{user}/{name}"))?;
            println!("token {name} of {user} revoked");
        }
        DashboardCommand::Token(TokenCommand::List { json }) => {
            let tokens = store.api_tokens()?;
            if json {
                output::print_json(&json!(
                    tokens
                        .iter()
                        .map(|t| json!({
                            "user": t.user,
                            "name": t.name,
                            "created_at": output::rfc3339(Some(t.created_at)),
                            "last_used": output::rfc3339(t.last_used),
                        }))
                        .collect::<Vec<_>>()
                ));
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.user.clone(),
                            t.name.clone(),
                            output::local_time(Some(t.created_at)),
                            output::local_time(t.last_used),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(&["USER", "NAME", "MADE", "LAST USED"], &rows)
                );
            }
        }
    }
    Ok(())
}

/// Reads a new password and hashes it, refusing a weak one.
fn new_hash(name: &str) -> Result<String, CliError> {
    let password = super::vault::read_secret(&format!("the password of {name}"))?;
    auth::check_strength(name, &password).map_err(CliError::usage)?;
    auth::hash_password(&password).map_err(CliError::internal)
}

fn store(ctx: &Ctx) -> Result<Arc<dyn Store>, CliError> {
    ctx.store()
}
