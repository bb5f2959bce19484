//! `claw store`: the run store itself (docs/scale-out.md): `migrate --to postgres://…` copies the
//! SQLite store of this data directory into PostgreSQL.

use std::time::Duration;

use super::{CliError, CliResult, Ctx};
use crate::store::postgres::{self, copy};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy this data directory's SQLite store (claw.db) into a PostgreSQL database.
    ///
    /// Every table is copied: runs, steps, approvals and votes, webhook deliveries, schedules
    /// and their fires, the outbox, chats, dashboard users, sessions and tokens. The copy is one
    /// transaction: if it fails, the target is left as it was, and it can be run again. A target
    /// that already holds rows is refused, unless --merge (rows already there are kept; a second
    /// copy of the same store adds nothing). The daemon of this data directory must be stopped
    /// (it would write to the SQLite store during the copy). The SQLite store is only read. Then
    /// set `store:` in claw.yaml (or CLAW_STORE_URL) to the same URL.
    #[command(after_long_help = "Examples:
  claw store migrate --to postgres://claw@db.lan:5432/claw
  claw store migrate --to postgres://claw@db.lan/claw --merge    add what an earlier copy lacks")]
    Migrate {
        /// The PostgreSQL database (postgres://user[:password]@host[:port]/database); its
        /// schema is created if it has none.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Copy into a database that already holds rows, adding only the rows it lacks.
        #[arg(long)]
        merge: bool,
        /// Print JSON (`{tables: [{table, rows, copied}]}`).
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: StoreCommand) -> CliResult {
    match cmd {
        StoreCommand::Migrate { to, merge, json } => migrate(ctx, &to, merge, json),
    }
}

fn migrate(ctx: &Ctx, to: &str, merge: bool, json: bool) -> CliResult {
    if !postgres::is_url(to) {
        return Err(CliError::usage(format!(
            "--to `{}` is not a PostgreSQL URL: postgres://user@host:port/database",
            postgres::redact_url(to)
        )));
    }
    let db = ctx.dirs.db_path();
    if !db.is_file() {
        return Err(CliError::usage(format!(
            "there is no SQLite store at {}: nothing to copy (is --home the data directory?)",
            db.display()
        )));
    }
    // The daemon's lock, held for the copy: no daemon writes to the SQLite store meanwhile.
    let lock_path = ctx.dirs.home.join(crate::serve::lease::LOCK_FILE);
    let _lock = crate::fsutil::FileLock::acquire(&lock_path, Duration::ZERO).map_err(|_| {
        let pid = crate::serve::lease::holder(&ctx.dirs.home)
            .flatten()
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        CliError::usage(format!(
            "the daemon{pid} is using the SQLite store {}: stop it first (`claw daemon status` \
             shows it), so that nothing changes in the store during the copy",
            db.display()
        ))
    })?;
    let target = copy::open_target(to)?;
    let done = copy::from_sqlite(&db, &target, merge)?;
    if json {
        let tables: Vec<serde_json::Value> = done
            .iter()
            .map(|t| serde_json::json!({"table": t.table, "rows": t.rows, "copied": t.copied}))
            .collect();
        println!("{}", serde_json::json!({ "tables": tables }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = done
        .iter()
        .map(|t| vec![t.table.clone(), t.rows.to_string(), t.copied.to_string()])
        .collect();
    print!(
        "{}",
        super::output::table(&["TABLE", "ROWS", "COPIED"], &rows)
    );
    let (all, copied) = done
        .iter()
        .fold((0, 0), |(a, c), t| (a + t.rows, c + t.copied));
    println!(
        "{copied} of {all} rows copied into {}{}",
        postgres::redact_url(to),
        if copied < all {
            " (the others were already there)"
        } else {
            ""
        }
    );
    println!(
        "Next: set `store: {}` in claw.yaml (or CLAW_STORE_URL).",
        postgres::redact_url(to)
    );
    Ok(())
}
