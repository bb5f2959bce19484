//! `claw memory remember | recall | search | forget | list | stats | decay | context`: the seed's
//! commands and flags on `<data>/memory.db`.

use clap::Subcommand;

use super::{CliError, CliResult, Ctx};
use crate::memory::{self, Entry, Memory};

#[derive(Debug, Subcommand)]
pub(crate) enum MemoryCommand {
    /// Store a memory; the same category, key and project updates it (and counts an access).
    Remember {
        /// The memory's key.
        key: String,
        /// What to remember.
        value: String,
        /// fact, preference, project_context or conversation_summary.
        #[arg(short, long, default_value = "fact")]
        category: String,
        /// Comma-separated tags.
        #[arg(short, long, default_value = "")]
        tags: String,
        /// Project scope (empty: none).
        #[arg(short, long, default_value = "")]
        project: String,
        /// Print the stored entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a memory by key (and count the access). Exit status 1 when there is none.
    Recall {
        /// The memory's key.
        key: String,
        /// Only in this category.
        #[arg(short, long)]
        category: Option<String>,
        /// Only in this project.
        #[arg(short, long)]
        project: Option<String>,
        /// Print the entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Full-text search of keys, values and tags: every word is a prefix and all must match,
    /// best match first (bm25). --like is the seed's substring search instead.
    Search {
        /// The words to look for.
        query: String,
        /// Only in this category.
        #[arg(short, long)]
        category: Option<String>,
        /// Only in this project.
        #[arg(short, long)]
        project: Option<String>,
        /// At most this many results.
        #[arg(short = 'n', long, default_value_t = memory::SEARCH_LIMIT)]
        limit: u32,
        /// Substring match on key or value (the seed's search), most recently accessed first.
        #[arg(long)]
        like: bool,
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a memory (every project's, unless --category narrows it). Exit status 1 when
    /// there is none.
    Forget {
        /// The memory's key.
        key: String,
        /// Only in this category.
        #[arg(short, long)]
        category: Option<String>,
    },
    /// Memories, most recently accessed first.
    List {
        /// Only in this category.
        #[arg(short, long)]
        category: Option<String>,
        /// Only in this project.
        #[arg(short, long)]
        project: Option<String>,
        /// At most this many.
        #[arg(short = 'n', long, default_value_t = memory::LIST_LIMIT)]
        limit: u32,
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
    },
    /// How many memories, by category, and the oldest and newest.
    Stats {
        /// Print JSON (`{total, by_category, oldest, newest}`).
        #[arg(long)]
        json: bool,
    },
    /// Delete memories not accessed in N days.
    Decay {
        /// Days without access.
        #[arg(short, long, default_value_t = memory::DECAY_DAYS)]
        days: u32,
        /// Print JSON (`{removed, days}`).
        #[arg(long)]
        json: bool,
    },
    /// The context text a prompt would get: the most recently accessed memories.
    Context {
        /// Project scope (empty: every project).
        #[arg(short, long, default_value = "")]
        project: String,
        /// At most this many memories.
        #[arg(short = 'n', long, default_value_t = memory::CONTEXT_LIMIT)]
        limit: u32,
    },
}

fn print_json(v: &serde_json::Value) {
    println!("{}", crate::redact::global().redact_json(v));
}

fn table(entries: &[Entry]) {
    println!(
        "{:<4}  {:<20}  {:<24}  {:<40}  {:<10}  HITS",
        "#", "CATEGORY", "KEY", "VALUE", "PROJECT"
    );
    for (i, e) in entries.iter().enumerate() {
        let value: String = if e.value.chars().count() > 40 {
            e.value.chars().take(37).chain("...".chars()).collect()
        } else {
            e.value.clone()
        };
        let project = if e.project.is_empty() {
            "-"
        } else {
            &e.project
        };
        println!(
            "{:<4}  {:<20}  {:<24}  {:<40}  {:<10}  {}",
            i + 1,
            e.category,
            e.key,
            value.replace('\n', " "),
            project,
            e.access_count
        );
    }
}

fn entries_json(entries: &[Entry]) -> serde_json::Value {
    serde_json::Value::Array(entries.iter().map(memory::entry_json).collect())
}

fn not_found(key: &str) -> CliError {
    eprintln!("Not found: {key}");
    CliError::failed()
}

pub(crate) fn run(ctx: &Ctx, cmd: MemoryCommand) -> CliResult {
    let store = Memory::open(&ctx.dirs.home, &crate::config::env::cli_actor())?;
    match cmd {
        MemoryCommand::Remember {
            key,
            value,
            category,
            tags,
            project,
            json,
        } => {
            let e = store.remember(
                &key,
                &value,
                &category,
                &memory::parse_tags(&tags),
                &project,
            )?;
            if json {
                print_json(&memory::entry_json(&e));
            } else {
                println!("Remembered {} ({})", e.key, e.category);
            }
        }
        MemoryCommand::Recall {
            key,
            category,
            project,
            json,
        } => {
            let e = store
                .recall(&key, category.as_deref(), project.as_deref())?
                .ok_or_else(|| not_found(&key))?;
            if json {
                print_json(&memory::entry_json(&e));
            } else {
                println!("{} ({})", e.key, e.category);
                println!("  {}", e.value);
                if !e.tags.is_empty() {
                    println!("  Tags: {}", e.tags.join(", "));
                }
                if !e.project.is_empty() {
                    println!("  Project: {}", e.project);
                }
                println!("  Accessed: {}x | Last: {}", e.access_count, e.accessed_at);
            }
        }
        MemoryCommand::Search {
            query,
            category,
            project,
            limit,
            like,
            json,
        } => {
            let (c, p) = (category.as_deref(), project.as_deref());
            let found = if like {
                store.search_like(&query, c, p, limit)?
            } else {
                store.search(&query, c, p, limit)?
            };
            if json {
                print_json(&entries_json(&found));
            } else if found.is_empty() {
                println!("No matches.");
            } else {
                table(&found);
            }
        }
        MemoryCommand::Forget { key, category } => {
            if !store.forget(&key, category.as_deref())? {
                return Err(not_found(&key));
            }
            println!("Forgot {key}");
        }
        MemoryCommand::List {
            category,
            project,
            limit,
            json,
        } => {
            let found = store.list(category.as_deref(), project.as_deref(), limit)?;
            if json {
                print_json(&entries_json(&found));
            } else if found.is_empty() {
                println!("No memories stored.");
            } else {
                table(&found);
            }
        }
        MemoryCommand::Stats { json } => {
            let s = store.stats()?;
            if json {
                print_json(&memory::stats_json(&s));
            } else {
                println!("Total memories: {}", s.total);
                for (c, n) in &s.by_category {
                    println!("  {c}: {n}");
                }
                if let Some(o) = &s.oldest {
                    println!("Oldest: {o}");
                }
                if let Some(n) = &s.newest {
                    println!("Newest: {n}");
                }
            }
        }
        MemoryCommand::Decay { days, json } => {
            let n = store.decay(days)?;
            if json {
                print_json(&serde_json::json!({"removed": n, "days": days}));
            } else {
                println!("Decayed {n} memories (older than {days} days)");
            }
        }
        MemoryCommand::Context { project, limit } => {
            let text = store.context(&project, limit)?;
            if text.is_empty() {
                println!("No context to inject.");
            } else {
                print!("{}", crate::redact::global().redact(&text));
            }
        }
    }
    Ok(())
}
