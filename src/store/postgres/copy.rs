//! `claw store migrate --to postgres://…` (docs/scale-out.md, "Migrating from SQLite"): the rows
//! of a SQLite store copied into PostgreSQL.
//!
//! **Every table.** The tables are read from the SQLite file itself (in the order they were
//! created, so that a row's parent is copied before it), not from a list kept here: a table a
//! later migration adds is copied without anyone remembering to. Both schemas come from the same
//! migrations, brought up to date first, so each SQLite table has its PostgreSQL twin; the values
//! are converted to the types PostgreSQL gives the columns, and a value that does not fit is an
//! error naming the table, the column and the row.
//!
//! **Safe to rerun.** One SQLite read transaction (a consistent snapshot, even if a process
//! writes meanwhile) and one PostgreSQL transaction: a copy that fails leaves the target as it
//! was. A target that already holds rows is refused unless `merge` is asked for; then rows whose
//! primary key is already there are kept as they are (`ON CONFLICT DO NOTHING`), so a second
//! copy of the same store adds nothing. Serial columns (the outbox's ids) have their sequences
//! moved past the copied values.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::{PgStore, block};
use crate::store::{SqliteStore, StoreError};

/// Rows per `INSERT` (bounded by PostgreSQL's 65,535 parameters).
const BATCH_ROWS: usize = 500;

/// What the copy did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: String,
    /// Rows in the SQLite store.
    pub rows: u64,
    /// Rows added to PostgreSQL (fewer than `rows` when merging into a target that had some).
    pub copied: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds rows, and merging was not asked for (`table: count` list).
    #[error(
        "the PostgreSQL store is not empty ({0}): nothing was copied. Copy into an empty database, \
         or pass --merge to add the rows it lacks (rows already there are kept as they are)"
    )]
    NotEmpty(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CopyError {
    fn from(source: rusqlite::Error) -> Self {
        Self::Store(source.into())
    }
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(source: tokio_postgres::Error) -> Self {
        Self::Store(source.into())
    }
}

/// The PostgreSQL types the copy converts to (every column of the schema is one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Text,
    Real,
    Bytes,
}

/// One value, typed for its PostgreSQL column.
#[derive(Debug)]
enum Val {
    Int(Option<i64>),
    Text(Option<String>),
    Real(Option<f64>),
    Bytes(Option<Vec<u8>>),
}

impl Val {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Int(v) => v,
            Self::Text(v) => v,
            Self::Real(v) => v,
            Self::Bytes(v) => v,
        }
    }
}

/// A double-quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Opens the target store, failing at once when the server does not answer (rather than
/// waiting for it as a running claw does: a wrong host or port is a mistake to say now).
pub fn open_target(url: &str) -> Result<PgStore, CopyError> {
    let pool = super::Pool::new(url)?;
    if let Err((e, _)) = pool.connect_once(None) {
        return Err(StoreError::Schema(format!(
            "cannot connect to the PostgreSQL store {}: {e}",
            super::redact_url(url)
        ))
        .into());
    }
    drop(pool);
    Ok(PgStore::open(url)?)
}

/// The tables of the SQLite store at `path`, in the order they were created.
pub fn sqlite_tables(conn: &Connection) -> Result<Vec<String>, CopyError> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY rowid",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Opens the SQLite store at `path` read-only, after bringing its schema up to this claw's.
pub fn open_sqlite(path: &Path) -> Result<Connection, CopyError> {
    if !path.is_file() {
        return Err(StoreError::Schema(format!(
            "there is no SQLite store at {}: nothing to copy",
            path.display()
        ))
        .into());
    }
    drop(SqliteStore::open(path)?);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Db {
        context: format!("cannot open {}", path.display()),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Copies every table of the SQLite store at `path` into `target` (see the module's
/// documentation). Returns what was done to each table, in copy order.
pub fn from_sqlite(
    path: &Path,
    target: &PgStore,
    merge: bool,
) -> Result<Vec<TableCopy>, CopyError> {
    let src = open_sqlite(path)?;
    // A snapshot: every table as of the same instant.
    src.execute_batch("BEGIN")?;
    let tables = sqlite_tables(&src)?;
    let mut c = target.pool.get()?;
    let done = block(async {
        let tx = c.transaction().await?;
        let mut columns = Vec::with_capacity(tables.len());
        for t in &tables {
            let cols = pg_columns(&tx, t).await?;
            if cols.is_empty() {
                return Err(CopyError::Store(StoreError::Schema(format!(
                    "the SQLite store's table `{t}` is not in the PostgreSQL schema (is this claw \
                     older than the one that last wrote the SQLite store?)"
                ))));
            }
            columns.push(cols);
        }
        if !merge {
            let mut held = Vec::new();
            for t in &tables {
                let n: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {}", ident(t)), &[])
                    .await?
                    .try_get(0)?;
                if n > 0 {
                    held.push(format!("{t}: {n}"));
                }
            }
            if !held.is_empty() {
                return Err(CopyError::NotEmpty(held.join(", ")));
            }
        }
        let mut done = Vec::with_capacity(tables.len());
        for (t, cols) in tables.iter().zip(&columns) {
            done.push(copy_table(&src, &tx, t, cols).await?);
            reset_sequences(&tx, t, cols).await?;
        }
        tx.commit().await?;
        Ok::<_, CopyError>(done)
    })?;
    src.execute_batch("COMMIT")?;
    Ok(done)
}

/// The columns of `table` in PostgreSQL, in order, with their types.
async fn pg_columns(tx: &Transaction<'_>, table: &str) -> Result<Vec<(String, Ty)>, CopyError> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get(0)?;
            let ty: String = r.try_get(1)?;
            let ty = match ty.as_str() {
                "bigint" => Ty::Int,
                "text" => Ty::Text,
                "double precision" => Ty::Real,
                "bytea" => Ty::Bytes,
                other => {
                    return Err(CopyError::Store(StoreError::Schema(format!(
                        "{table}.{name} is of type {other} in PostgreSQL, which the copy does not \
                         know"
                    ))));
                }
            };
            Ok((name, ty))
        })
        .collect()
}

async fn copy_table(
    src: &Connection,
    tx: &Transaction<'_>,
    table: &str,
    cols: &[(String, Ty)],
) -> Result<TableCopy, CopyError> {
    let names: Vec<String> = cols.iter().map(|(n, _)| ident(n)).collect();
    let mut stmt = src.prepare(&format!(
        "SELECT {} FROM {}",
        names.join(", "),
        ident(table)
    ))?;
    let per_batch = BATCH_ROWS.min(60_000 / cols.len().max(1)).max(1);
    let mut rows = stmt.query([])?;
    let mut batch: Vec<Val> = Vec::with_capacity(per_batch * cols.len());
    let (mut read, mut copied) = (0u64, 0u64);
    while let Some(row) = rows.next()? {
        read += 1;
        for (i, (name, ty)) in cols.iter().enumerate() {
            let v = row.get_ref(i)?;
            batch.push(convert(v, *ty).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{table}.{name}, row {read} of the SQLite store: a {} where PostgreSQL \
                     expects {}",
                    kind(v),
                    match ty {
                        Ty::Int => "an integer",
                        Ty::Text => "text",
                        Ty::Real => "a number",
                        Ty::Bytes => "bytes",
                    }
                ))
            })?);
        }
        if batch.len() == per_batch * cols.len() {
            copied += insert(tx, table, &names, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        copied += insert(tx, table, &names, &batch).await?;
    }
    Ok(TableCopy {
        table: table.to_owned(),
        rows: read,
        copied,
    })
}

fn kind(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "null",
        ValueRef::Integer(_) => "integer",
        ValueRef::Real(_) => "real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "blob",
    }
}

/// `v` as a value of type `ty`, or `None` when it is not one (text that is not UTF-8 included).
fn convert(v: ValueRef<'_>, ty: Ty) -> Option<Val> {
    Some(match (v, ty) {
        (ValueRef::Null, Ty::Int) => Val::Int(None),
        (ValueRef::Null, Ty::Text) => Val::Text(None),
        (ValueRef::Null, Ty::Real) => Val::Real(None),
        (ValueRef::Null, Ty::Bytes) => Val::Bytes(None),
        (ValueRef::Integer(i), Ty::Int) => Val::Int(Some(i)),
        (ValueRef::Integer(i), Ty::Real) => Val::Real(Some(i as f64)),
        (ValueRef::Real(f), Ty::Real) => Val::Real(Some(f)),
        (ValueRef::Text(t), Ty::Text) => Val::Text(Some(std::str::from_utf8(t).ok()?.to_owned())),
        (ValueRef::Blob(b), Ty::Bytes) => Val::Bytes(Some(b.to_vec())),
        _ => return None,
    })
}

/// One `INSERT` of whole rows (`vals` holds `names.len()` values per row); the rows added.
async fn insert(
    tx: &Transaction<'_>,
    table: &str,
    names: &[String],
    vals: &[Val],
) -> Result<u64, CopyError> {
    let width = names.len();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        ident(table),
        names.join(", ")
    );
    for r in 0..vals.len() / width {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    let params: Vec<&(dyn ToSql + Sync)> = vals.iter().map(Val::param).collect();
    Ok(tx.execute(&sql, &params).await?)
}

/// Moves the sequence of each serial column of `table` past its largest value, so that the next
/// row PostgreSQL numbers does not collide with a copied one.
async fn reset_sequences(
    tx: &Transaction<'_>,
    table: &str,
    cols: &[(String, Ty)],
) -> Result<(), CopyError> {
    for (name, _) in cols {
        let seq: Option<String> = tx
            .query_one(
                "SELECT pg_get_serial_sequence($1, $2)",
                &[&ident(table), &name],
            )
            .await?
            .try_get(0)?;
        if let Some(seq) = seq {
            tx.execute(
                &format!(
                    "SELECT setval($1::text::regclass, COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                    ident(name),
                    ident(table)
                ),
                &[&seq],
            )
            .await?;
        }
    }
    Ok(())
}

impl crate::error::ExitStatus for CopyError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::NotEmpty(_) => crate::error::INVALID,
            Self::Store(e) => e.exit_status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::ScratchDb;

    /// Every table of a fresh SQLite store, two rows each: every column filled in the first
    /// (text with quotes, a newline and non-ASCII; integers beyond 32 bits), the nullable ones
    /// null in the second; foreign keys pointing at the parent's row of the same number.
    fn fill(conn: &Connection) -> rusqlite::Result<Vec<String>> {
        let tables = sqlite_tables(conn)
            .map_err(|e| rusqlite::Error::InvalidParameterName(e.to_string()))?;
        for t in &tables {
            let mut cols = Vec::new();
            let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", ident(t)))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (name, ty, notnull, pk): (String, String, bool, i64) =
                    (r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?);
                cols.push((name, ty.to_uppercase().contains("INT"), notnull || pk > 0));
            }
            let mut fks = Vec::new();
            let mut stmt = conn.prepare(&format!("PRAGMA foreign_key_list({})", ident(t)))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                fks.push((
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ));
            }
            for i in 0..2i64 {
                let mut vals: Vec<rusqlite::types::Value> = Vec::new();
                for (c, (name, int, required)) in cols.iter().enumerate() {
                    use rusqlite::types::Value as V;
                    let v = if let Some((parent, _, to)) = fks.iter().find(|f| &f.1 == name) {
                        conn.query_row(
                            &format!(
                                "SELECT {} FROM {} LIMIT 1 OFFSET {i}",
                                ident(to),
                                ident(parent)
                            ),
                            [],
                            |r| r.get::<_, V>(0),
                        )?
                    } else if name == "status" {
                        // The CHECK constraints' values.
                        V::Text(if t == "outbox" { "pending" } else { "allowed" }.into())
                    } else if i == 1 && !required {
                        V::Null
                    } else if *int {
                        V::Integer((i + 1) * 5_000_000_000 + c as i64)
                    } else {
                        V::Text(format!("{t}.{name}.{i} é \"q\" 'a' \\ \n{{\"k\": 1}}"))
                    };
                    vals.push(v);
                }
                let marks = vec!["?"; vals.len()].join(", ");
                let names: Vec<String> = cols.iter().map(|c| ident(&c.0)).collect();
                conn.execute(
                    &format!(
                        "INSERT INTO {} ({}) VALUES ({marks})",
                        ident(t),
                        names.join(", ")
                    ),
                    rusqlite::params_from_iter(vals),
                )?;
            }
        }
        Ok(tables)
    }

    /// A table's rows as text (`NULL` for null), sorted.
    fn sqlite_rows(conn: &Connection, t: &str) -> Vec<Vec<String>> {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {}", ident(t)))
            .expect("select");
        let n = stmt.column_count();
        let mut out: Vec<Vec<String>> = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => "NULL".to_owned(),
                            ValueRef::Integer(v) => v.to_string(),
                            ValueRef::Real(v) => v.to_string(),
                            ValueRef::Text(v) => String::from_utf8_lossy(v).into_owned(),
                            ValueRef::Blob(v) => format!("{v:?}"),
                        })
                    })
                    .collect()
            })
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        out.sort();
        out
    }

    fn pg_rows(store: &PgStore, t: &str, names: &[String]) -> Vec<Vec<String>> {
        let c = store.pool.get().expect("connection");
        let sql = format!(
            "SELECT {} FROM {}",
            names
                .iter()
                .map(|n| format!("{}::text", ident(n)))
                .collect::<Vec<_>>()
                .join(", "),
            ident(t)
        );
        let rows = block(c.query(&sql, &[])).expect("select");
        let mut out: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                (0..names.len())
                    .map(|i| {
                        r.get::<_, Option<String>>(i)
                            .unwrap_or_else(|| "NULL".to_owned())
                    })
                    .collect()
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_table_round_trips_and_a_rerun_is_refused_or_adds_nothing() -> Result<(), CopyError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Schema(e.to_string()))?;
        let path = dir.path().join("claw.db");
        drop(SqliteStore::open(&path)?);
        let conn = Connection::open(&path)?;
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
        let tables = fill(&conn)?;
        assert!(tables.len() >= 18, "{tables:?}");
        let db = ScratchDb::create("copy")?;
        let target = open_target(&db.url)?;

        let done = from_sqlite(&path, &target, false)?;
        let names: Vec<&str> = done.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(names, tables.iter().map(String::as_str).collect::<Vec<_>>());
        for t in &done {
            assert_eq!((t.rows, t.copied), (2, 2), "{}", t.table);
            let stmt = conn.prepare(&format!("SELECT * FROM {}", ident(&t.table)))?;
            let cols: Vec<String> = stmt
                .column_names()
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            drop(stmt);
            assert_eq!(
                sqlite_rows(&conn, &t.table),
                pg_rows(&target, &t.table, &cols),
                "{}",
                t.table
            );
        }

        // The outbox's next id comes after the copied ones.
        let c = target.pool.get()?;
        let next: i64 = block(c.query_one(
            "SELECT nextval(pg_get_serial_sequence('outbox', 'id'))",
            &[],
        ))?
        .try_get(0)?;
        let max: i64 = conn.query_row("SELECT MAX(id) FROM outbox", [], |r| r.get(0))?;
        assert!(next > max, "{next} after {max}");
        drop(c);

        match from_sqlite(&path, &target, false) {
            Err(CopyError::NotEmpty(held)) => assert!(held.contains("runs: 2"), "{held}"),
            other => panic!("a second copy must be refused: {other:?}"),
        }
        let again = from_sqlite(&path, &target, true)?;
        assert!(
            again.iter().all(|t| t.rows == 2 && t.copied == 0),
            "{again:?}"
        );
        let runs = pg_rows(&target, "runs", &["id".to_owned()]);
        assert_eq!(runs.len(), 2, "nothing doubled");

        let refused = open_target("postgres://postgres@127.0.0.1:1/nothing")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains("cannot connect") && refused.contains("127.0.0.1:1"),
            "{refused}"
        );
        Ok(())
    }
}
