//! `memory.db`: the seed's memory table, as its `MemoryStore` creates and uses it, plus a
//! full-text index beside it.
//!
//! The table, its unique key `(category, key, project)`, its indexes and every statement's
//! semantics are the seed's, so a `memory.db` written by either is read and updated by the other.
//! What claw adds lives in objects the seed never looks at: `memories_fts`, an FTS5 table with
//! external content (the rows stay in `memories` only), kept in step by three triggers that fire
//! for the seed's writes as well as claw's, and rebuilt from the table when it is first created.
//! Times are the seed's text (`2026-03-01T04:00:00.123456+00:00`), compared as text.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _, Row, params};

use super::{Result, StoreError};

/// The seed's schema, exactly (`CREATE … IF NOT EXISTS`, so a seed file is left as it is).
const SEED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    category TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    tags TEXT DEFAULT '[]',
    project TEXT DEFAULT '',
    created_at TEXT NOT NULL,
    accessed_at TEXT NOT NULL,
    access_count INTEGER DEFAULT 0,
    UNIQUE(category, key, project)
);
CREATE INDEX IF NOT EXISTS idx_memories_category ON memories(category);
CREATE INDEX IF NOT EXISTS idx_memories_project ON memories(project);
";

/// The full-text index (key, value and tags; bm25 weights key > value > tags) and the triggers
/// that keep it in step with `memories`. Recall's bump of `accessed_at` touches no indexed
/// column, so it does not fire the update trigger.
const FTS_SCHEMA: &str = "
CREATE VIRTUAL TABLE memories_fts USING fts5(
    key, value, tags,
    content='memories', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2',
    prefix='2 3 4'
);
CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, key, value, tags) VALUES (new.id, new.key, new.value, new.tags);
END;
CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, key, value, tags)
        VALUES ('delete', old.id, old.key, old.value, old.tags);
END;
CREATE TRIGGER memories_fts_au AFTER UPDATE OF key, value, tags ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, key, value, tags)
        VALUES ('delete', old.id, old.key, old.value, old.tags);
    INSERT INTO memories_fts(rowid, key, value, tags) VALUES (new.id, new.key, new.value, new.tags);
END;
INSERT INTO memories_fts(memories_fts) VALUES ('rebuild');
";

const COLUMNS: &str = "m.id, m.category, m.key, m.value, m.tags, m.project, m.created_at, m.accessed_at, m.access_count";

/// One row of `memories`, as stored (`tags` decoded from its JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRow {
    pub id: i64,
    pub category: String,
    pub key: String,
    pub value: String,
    pub tags: Vec<String>,
    pub project: String,
    pub created_at: String,
    pub accessed_at: String,
    pub access_count: i64,
}

/// What one new or updated memory holds.
#[derive(Debug, Clone, Copy)]
pub struct NewMemory<'a> {
    pub category: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub tags: &'a [String],
    pub project: &'a str,
}

/// Filters shared by search and list (`None`: any).
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub category: Option<&'a str>,
    pub project: Option<&'a str>,
}

/// `stats`: the seed's `{total, by_category, oldest, newest}` (oldest and newest by `created_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryStats {
    pub total: i64,
    pub by_category: Vec<(String, i64)>,
    pub oldest: Option<String>,
    pub newest: Option<String>,
}

/// An open `memory.db`.
#[derive(Debug)]
pub struct MemoryDb {
    conn: Connection,
}

fn db(context: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Db {
        context: context.to_owned(),
        source,
    }
}

fn row(r: &Row<'_>) -> rusqlite::Result<MemoryRow> {
    let tags: Option<String> = r.get(4)?;
    let tags = tags
        .filter(|t| !t.is_empty())
        .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
        .unwrap_or_default();
    Ok(MemoryRow {
        id: r.get(0)?,
        category: r.get(1)?,
        key: r.get(2)?,
        value: r.get(3)?,
        tags,
        project: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
        created_at: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        accessed_at: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
        access_count: r.get::<_, Option<i64>>(8)?.unwrap_or_default(),
    })
}

impl MemoryDb {
    /// Opens (creating) the file: the seed's schema, WAL as the seed sets it, and the full-text
    /// index, built from the rows already there the first time.
    pub fn open(path: &Path) -> Result<Self> {
        let conn =
            Connection::open(path).map_err(db(&format!("cannot open {}", path.display())))?;
        Self::init(conn)
    }

    /// A database in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(db("cannot open"))?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db("busy timeout"))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(db("journal mode"))?;
        conn.execute_batch(SEED_SCHEMA)
            .map_err(db("memory schema"))?;
        let has_fts: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE name = 'memories_fts')",
                [],
                |r| r.get(0),
            )
            .map_err(db("memory schema"))?;
        if !has_fts {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {FTS_SCHEMA} COMMIT;"))
                .map_err(db("full-text index"))?;
        }
        Ok(Self { conn })
    }

    /// The seed's upsert: a new row, or (same category, key and project) the value, tags and
    /// `accessed_at` replaced and `access_count` + 1, `created_at` kept.
    pub fn remember(&self, m: NewMemory<'_>, now: &str) -> Result<MemoryRow> {
        let tags = serde_json::Value::from(m.tags.to_vec()).to_string();
        self.conn
            .execute(
                "INSERT INTO memories (category, key, value, tags, project, created_at, accessed_at, access_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)
                 ON CONFLICT(category, key, project) DO UPDATE SET
                     value = excluded.value,
                     tags = excluded.tags,
                     accessed_at = excluded.accessed_at,
                     access_count = access_count + 1",
                params![m.category, m.key, m.value, tags, m.project, now],
            )
            .map_err(db("remember"))?;
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM memories m WHERE category = ?1 AND key = ?2 AND project = ?3"
                ),
                params![m.category, m.key, m.project],
                row,
            )
            .map_err(db("remember"))
    }

    /// Writes many memories in one transaction (benchmarks, imports).
    pub fn remember_many(&mut self, rows: &[NewMemory<'_>], now: &str) -> Result<()> {
        let tx = self.conn.transaction().map_err(db("remember"))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO memories (category, key, value, tags, project, created_at, accessed_at, access_count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)
                     ON CONFLICT(category, key, project) DO UPDATE SET
                         value = excluded.value, tags = excluded.tags,
                         accessed_at = excluded.accessed_at, access_count = access_count + 1",
                )
                .map_err(db("remember"))?;
            for m in rows {
                let tags = serde_json::Value::from(m.tags.to_vec()).to_string();
                st.execute(params![m.category, m.key, m.value, tags, m.project, now])
                    .map_err(db("remember"))?;
            }
        }
        tx.commit().map_err(db("remember"))
    }

    /// The seed's recall: the first row with this key (and category, project when given), its
    /// `accessed_at` set to `now` and `access_count` + 1.
    pub fn recall(
        &self,
        key: &str,
        category: Option<&str>,
        project: Option<&str>,
        now: &str,
    ) -> Result<Option<MemoryRow>> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM memories WHERE key = ?1 AND (?2 IS NULL OR category = ?2)
                 AND (?3 IS NULL OR project = ?3)",
                params![key, category, project],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("recall"))?;
        let Some(id) = id else { return Ok(None) };
        self.conn
            .execute(
                "UPDATE memories SET accessed_at = ?1, access_count = access_count + 1 WHERE id = ?2",
                params![now, id],
            )
            .map_err(db("recall"))?;
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM memories m WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(db("recall"))
    }

    /// Full-text search: `fts_query` in FTS5's syntax, best bm25 first (key weighs more than
    /// value, value more than tags). Returns each row with its rank (lower is better).
    pub fn search(
        &self,
        fts_query: &str,
        filter: Filter<'_>,
        limit: u32,
    ) -> Result<Vec<(MemoryRow, f64)>> {
        // Without filters, the best `limit` are picked on the index alone (no row of `memories`
        // is read until they are known); with them, the join filters before the cut.
        //
        // `ORDER BY bm25(…) LIMIT n` rather than FTS5's `rank` column: the same scores, but
        // `ORDER BY rank` makes FTS5 prepare a statement of its own for every query and sort
        // every match in full before the LIMIT applies, where SQLite's top-n sorter keeps only
        // `n` rows. For a prefix matching 4,000 of 100,000 memories that is a third of the time;
        // what remains is bm25 itself (one `_docsize` lookup per match).
        let sql = if filter.category.is_none() && filter.project.is_none() {
            format!(
                "SELECT {COLUMNS}, f.rank FROM (
                     SELECT rowid, bm25(memories_fts, 10.0, 5.0, 1.0) AS rank FROM memories_fts
                     WHERE memories_fts MATCH ?1
                     ORDER BY rank LIMIT ?4
                 ) f JOIN memories m ON m.id = f.rowid
                 WHERE ?2 IS NULL AND ?3 IS NULL ORDER BY f.rank"
            )
        } else {
            format!(
                "SELECT {COLUMNS}, bm25(memories_fts, 10.0, 5.0, 1.0) AS rank
                 FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid
                 WHERE memories_fts MATCH ?1 AND (?2 IS NULL OR m.category = ?2)
                 AND (?3 IS NULL OR m.project = ?3)
                 ORDER BY rank LIMIT ?4"
            )
        };
        let mut st = self.conn.prepare_cached(&sql).map_err(db("search"))?;
        let rows = st
            .query_map(
                params![fts_query, filter.category, filter.project, limit],
                |r| Ok((row(r)?, r.get::<_, f64>(9)?)),
            )
            .map_err(db("search"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db("search"))
    }

    /// The seed's search: `LIKE %q%` on key or value (case-insensitive for ASCII), newest
    /// `accessed_at` first. Also the baseline of `claw bench memory`.
    pub fn search_like(&self, q: &str, filter: Filter<'_>, limit: u32) -> Result<Vec<MemoryRow>> {
        let pattern = format!("%{q}%");
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM memories m WHERE (key LIKE ?1 OR value LIKE ?1)
                 AND (?2 IS NULL OR category = ?2) AND (?3 IS NULL OR project = ?3)
                 ORDER BY accessed_at DESC LIMIT ?4"
            ))
            .map_err(db("search"))?;
        let rows = st
            .query_map(
                params![pattern, filter.category, filter.project, limit],
                row,
            )
            .map_err(db("search"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db("search"))
    }

    /// The seed's forget: deletes every row with this key (and category when given).
    pub fn forget(&self, key: &str, category: Option<&str>) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM memories WHERE key = ?1 AND (?2 IS NULL OR category = ?2)",
                params![key, category],
            )
            .map_err(db("forget"))
    }

    /// The seed's list: newest `accessed_at` first.
    pub fn list(&self, filter: Filter<'_>, limit: u32) -> Result<Vec<MemoryRow>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM memories m WHERE (?1 IS NULL OR category = ?1)
                 AND (?2 IS NULL OR project = ?2) ORDER BY accessed_at DESC LIMIT ?3"
            ))
            .map_err(db("list"))?;
        let rows = st
            .query_map(params![filter.category, filter.project, limit], row)
            .map_err(db("list"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db("list"))
    }

    /// The seed's decay: deletes the rows whose `accessed_at` sorts before `cutoff` (text
    /// comparison, as the seed does). Returns how many.
    pub fn decay(&self, cutoff: &str) -> Result<usize> {
        self.conn
            .execute("DELETE FROM memories WHERE accessed_at < ?1", [cutoff])
            .map_err(db("decay"))
    }

    pub fn stats(&self) -> Result<MemoryStats> {
        let total = self
            .conn
            .query_row("SELECT COUNT(*) FROM memories", [], |r| r.get(0))
            .map_err(db("stats"))?;
        let mut st = self
            .conn
            .prepare("SELECT category, COUNT(*) FROM memories GROUP BY category ORDER BY category")
            .map_err(db("stats"))?;
        let by_category = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db("stats"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db("stats"))?;
        let (oldest, newest) = self
            .conn
            .query_row(
                "SELECT MIN(created_at), MAX(created_at) FROM memories",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db("stats"))?;
        Ok(MemoryStats {
            total,
            by_category,
            oldest,
            newest,
        })
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
