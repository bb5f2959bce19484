//! `claw audit tail | search | verify`.

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::output;
use super::{CliError, CliResult, Ctx};
use crate::audit::{AuditLog, Line, Query};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// The last entries.
    Tail {
        /// How many (the newest).
        #[arg(
            short = 'n',
            long = "limit",
            visible_alias = "lines",
            default_value_t = 20,
            value_name = "N"
        )]
        lines: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Entries matching a text (case-insensitive) and filters.
    Search {
        /// Text to find in an entry (case-insensitive).
        query: Option<String>,
        /// An action, or a prefix of one (`vault` matches `vault.set`).
        #[arg(long)]
        action: Option<String>,
        /// Only entries by this actor (`cli:alice`, `cron`, …).
        #[arg(long)]
        actor: Option<String>,
        /// Entries from this time on: RFC 3339 (`2026-11-22T10:00:00Z`), a date (`2026-11-22`,
        /// midnight local time) or how long ago (`30m`, `1h`, `2h30m`, `7d`).
        #[arg(long, value_name = "TIME", value_parser = super::instant)]
        since: Option<DateTime<Utc>>,
        /// Entries up to this time (included), in the forms of `--since`.
        #[arg(long, value_name = "TIME", value_parser = super::instant)]
        until: Option<DateTime<Utc>>,
        /// At most N entries (the newest matching); all by default.
        #[arg(short = 'n', long = "limit", value_name = "N")]
        limit: Option<usize>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain and name the first broken entry. Exit status 1 if it is broken.
    Verify {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: AuditCommand) -> CliResult {
    let log = AuditLog::in_dir(&ctx.dirs.home);
    match cmd {
        AuditCommand::Tail { lines, json } => print(&log.tail(lines)?, json),
        AuditCommand::Search {
            query,
            action,
            actor,
            since,
            until,
            limit,
            json,
        } => {
            let q = Query {
                text: query,
                action,
                actor,
                since,
                until,
            };
            let mut found = log.search(&q)?;
            if let Some(n) = limit
                && found.len() > n
            {
                let more = found.len() - n;
                found.drain(..more);
                eprintln!("({more} older matching entries not shown: raise -n/--limit)");
            }
            print(&found, json)
        }
        AuditCommand::Verify { json } => {
            let r = log.verify()?;
            if json {
                output::print_json(&serde_json::json!({
                    "path": log.path(),
                    "ok": r.problem.is_none(),
                    "entries": r.entries,
                    "legacy": r.legacy,
                    "problem": r.problem.as_ref().map(|p| serde_json::json!({
                        "line": p.line, "kind": format!("{:?}", p.kind).to_lowercase(), "message": p.message,
                    })),
                }));
            } else {
                if r.legacy > 0 {
                    println!(
                        "{} seed-format line(s) before the chain: not chained, not verifiable",
                        r.legacy
                    );
                }
                match &r.problem {
                    None => println!(
                        "ok: {} entries, chain intact ({})",
                        r.entries,
                        log.path().display()
                    ),
                    Some(p) => eprintln!(
                        "BROKEN at line {}: {}\n({} entries before it verified)",
                        p.line, p.message, r.entries
                    ),
                }
            }
            if r.problem.is_some() {
                Err(CliError::failed())
            } else {
                Ok(())
            }
        }
    }
}

fn print(lines: &[Line], json: bool) -> CliResult {
    if json {
        output::print_json(&serde_json::Value::Array(
            lines.iter().map(|l| l.value().clone()).collect(),
        ));
        return Ok(());
    }
    let s = |v: &serde_json::Value, k: &str| match v.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let v = l.value();
            let detail = match crate::audit::entry_data(v) {
                Some(data) => crate::audit::pairs(data),
                None => s(v, "detail"),
            };
            // The one time format of claw's tables: the local clock to the second.
            let ts = s(v, "ts");
            let ts = crate::time::parse_iso(&ts).map_or(ts, crate::time::local);
            vec![
                ts,
                s(v, "actor").if_empty(&s(v, "source")),
                s(v, "action"),
                s(v, "target"),
                s(v, "outcome"),
                output::first_line(&detail, 60),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"],
            &rows
        )
    );
    Ok(())
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_owned()
        } else {
            self
        }
    }
}
