//! The memory store: facts, preferences and project context that workflows, agents (over MCP)
//! and people remember and recall, in `<data>/memory.db` with the seed's table and semantics
//! (see [`crate::store::memory`]) and a full-text index beside it.
//!
//! This module holds the seed's rules above the SQL: the four categories, tags as a comma list,
//! decay by days, the context text injected into prompts, and the search query: each word of it
//! a prefix, all of them required, ranked by bm25. Values pass the redactor before they are
//! stored; every change (remember, forget, decay) is audited under the caller's actor.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::audit::{Action, AuditError, AuditLog, Event};
use crate::store::StoreError;
use crate::store::memory::{Filter, MemoryDb, NewMemory};

pub use crate::store::memory::{MemoryRow as Entry, MemoryStats as Stats};

/// The seed's search and list limits, and the context's.
pub const SEARCH_LIMIT: u32 = 20;
pub const LIST_LIMIT: u32 = 50;
pub const CONTEXT_LIMIT: u32 = 10;
/// `decay`'s default: entries not accessed for 90 days.
pub const DECAY_DAYS: u32 = 90;

/// The seed's categories (`MemoryCategory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Fact,
    Preference,
    ProjectContext,
    ConversationSummary,
}

impl Category {
    pub const ALL: [Self; 4] = [
        Self::Fact,
        Self::Preference,
        Self::ProjectContext,
        Self::ConversationSummary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fact => "fact",
            Self::Preference => "preference",
            Self::ProjectContext => "project_context",
            Self::ConversationSummary => "conversation_summary",
        }
    }

    /// A category by name; anything else is the seed's "Invalid category" error.
    pub fn parse(name: &str) -> Result<Self, MemoryError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| MemoryError::InvalidCategory(name.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "Invalid category: {0} (one of fact, preference, project_context, conversation_summary)"
    )]
    InvalidCategory(String),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl crate::error::ExitStatus for MemoryError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::InvalidCategory(_) => crate::error::INVALID,
            Self::Dir { .. } | Self::Store(_) | Self::Audit(_) => crate::error::INTERNAL,
        }
    }
}

pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

/// `memory.db` in a data directory, acting for one actor (`cli:<user>`, `engine`, `mcp:<client>`).
#[derive(Debug)]
pub struct Memory {
    db: MemoryDb,
    audit: AuditLog,
    actor: String,
}

/// `<home>/memory.db`.
pub fn db_path(home: &Path) -> PathBuf {
    home.join("memory.db")
}

/// The seed's tags: a comma-separated list, each trimmed, empty ones left out.
pub fn parse_tags(csv: &str) -> Vec<String> {
    csv.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A search text as an FTS5 query: every word (letters and digits) a quoted prefix, all
/// required. `None` when the text has no word (then search falls back to the seed's LIKE).
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\"*"))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The seed's `accessed_at` text for an instant.
fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    crate::time::iso_utc(t)
}

fn now() -> String {
    stamp(chrono::Utc::now())
}

impl Memory {
    /// Opens (creating) `<home>/memory.db`.
    pub fn open(home: &Path, actor: &str) -> Result<Self> {
        std::fs::create_dir_all(home).map_err(|source| MemoryError::Dir {
            path: home.to_path_buf(),
            source,
        })?;
        Ok(Self {
            db: MemoryDb::open(&db_path(home))?,
            audit: AuditLog::in_dir(home),
            actor: actor.to_owned(),
        })
    }

    /// The same store acting for another actor.
    pub fn acting_as(mut self, actor: &str) -> Self {
        actor.clone_into(&mut self.actor);
        self
    }

    fn record(&self, action: Action, target: &str, detail: Value) -> Result<()> {
        self.audit
            .record(&Event::new(&self.actor, action, target, "ok", detail))?;
        Ok(())
    }

    /// Stores a memory (the seed's upsert on category, key and project). The value passes the
    /// redactor first.
    pub fn remember(
        &self,
        key: &str,
        value: &str,
        category: &str,
        tags: &[String],
        project: &str,
    ) -> Result<Entry> {
        let category = Category::parse(category)?;
        let redactor = crate::redact::global();
        let value = redactor.redact(value);
        let entry = self.db.remember(
            NewMemory {
                category: category.as_str(),
                key,
                value: &value,
                tags,
                project,
            },
            &now(),
        )?;
        self.record(
            Action::MemoryRemember,
            key,
            json!({"category": category.as_str(), "project": project, "id": entry.id,
                   "access_count": entry.access_count}),
        )?;
        Ok(entry)
    }

    /// The memory with this key (and category, project when given), its access recorded.
    pub fn recall(
        &self,
        key: &str,
        category: Option<&str>,
        project: Option<&str>,
    ) -> Result<Option<Entry>> {
        Ok(self.db.recall(key, category, project, &now())?)
    }

    /// Full-text search, best first; a text with no word falls back to the seed's substring
    /// match.
    pub fn search(
        &self,
        text: &str,
        category: Option<&str>,
        project: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        let filter = Filter { category, project };
        match fts_query(text) {
            Some(q) => Ok(self
                .db
                .search(&q, filter, limit)?
                .into_iter()
                .map(|(e, _)| e)
                .collect()),
            None => Ok(self.db.search_like(text, filter, limit)?),
        }
    }

    /// The seed's search exactly: substring of key or value, newest access first.
    pub fn search_like(
        &self,
        text: &str,
        category: Option<&str>,
        project: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        Ok(self
            .db
            .search_like(text, Filter { category, project }, limit)?)
    }

    /// Deletes every memory with this key (and category). Whether any was.
    pub fn forget(&self, key: &str, category: Option<&str>) -> Result<bool> {
        let n = self.db.forget(key, category)?;
        if n > 0 {
            self.record(
                Action::MemoryForget,
                key,
                json!({"category": category, "removed": n}),
            )?;
        }
        Ok(n > 0)
    }

    pub fn list(
        &self,
        category: Option<&str>,
        project: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        Ok(self.db.list(Filter { category, project }, limit)?)
    }

    /// Deletes the memories not accessed for `days` days. How many.
    pub fn decay(&self, days: u32) -> Result<usize> {
        let cutoff = stamp(chrono::Utc::now() - chrono::Duration::days(i64::from(days)));
        let n = self.db.decay(&cutoff)?;
        self.record(
            Action::MemoryDecay,
            "memory.db",
            json!({"days": days, "removed": n}),
        )?;
        Ok(n)
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(self.db.stats()?)
    }

    /// The seed's context text: the `limit` most recently accessed memories (of `project`, or
    /// all when it is empty) under "## Remembered Context"; empty when there are none.
    pub fn context(&self, project: &str, limit: u32) -> Result<String> {
        let project = (!project.is_empty()).then_some(project);
        let entries = self.list(None, project, limit)?;
        Ok(context_text(&entries))
    }
}

/// The seed's `ContextBuilder.build_context` text for these entries.
pub fn context_text(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut lines = vec!["## Remembered Context".to_owned(), String::new()];
    for e in entries {
        lines.push(format!(
            "- **{}** ({}): {}{}",
            e.key,
            e.category,
            e.value,
            tag_suffix(e)
        ));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// ` [a, b]` after a value when it has tags, as the seed prints them.
pub fn tag_suffix(e: &Entry) -> String {
    if e.tags.is_empty() {
        String::new()
    } else {
        format!(" [{}]", e.tags.join(", "))
    }
}

/// An entry as JSON: the seed's `MemoryEntry` fields.
pub fn entry_json(e: &Entry) -> Value {
    json!({
        "id": e.id,
        "category": e.category,
        "key": e.key,
        "value": e.value,
        "tags": e.tags,
        "project": e.project,
        "created_at": e.created_at,
        "accessed_at": e.accessed_at,
        "access_count": e.access_count,
    })
}

/// Stats as JSON: the seed's `{total, by_category, oldest, newest}`.
pub fn stats_json(s: &Stats) -> Value {
    let by: serde_json::Map<String, Value> = s
        .by_category
        .iter()
        .map(|(c, n)| (c.clone(), json!(n)))
        .collect();
    json!({"total": s.total, "by_category": by, "oldest": s.oldest, "newest": s.newest})
}

/// `memory` in the expression context: `${{ memory.<key> }}` is the value of the memory with
/// that key (recalled: its access is recorded). Nothing is read until an expression asks for a
/// key; a key that is not there is undefined (`| default(...)` covers it).
#[derive(Debug)]
pub struct ExprView {
    home: PathBuf,
    actor: String,
}

impl ExprView {
    pub fn new(home: &Path, actor: &str) -> Self {
        Self {
            home: home.to_path_buf(),
            actor: actor.to_owned(),
        }
    }

    /// The value of the memory `key`, if there is one (and the store opens).
    pub fn value(&self, key: &str) -> Option<String> {
        if !db_path(&self.home).exists() {
            return None;
        }
        let store = Memory::open(&self.home, &self.actor).ok()?;
        Some(store.recall(key, None, None).ok()??.value)
    }
}

impl minijinja::value::Object for ExprView {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.value(key.as_str()?).map(minijinja::Value::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_queries() {
        assert_eq!(
            Category::parse("project_context").unwrap(),
            Category::ProjectContext
        );
        assert!(
            Category::parse("facts")
                .unwrap_err()
                .to_string()
                .starts_with("Invalid category: facts")
        );
        assert_eq!(
            fts_query("back-up NAS!").as_deref(),
            Some("\"back\"* \"up\"* \"NAS\"*")
        );
        assert_eq!(fts_query("%%"), None);
        assert_eq!(parse_tags(" a, ,b "), ["a", "b"]);
    }
}
