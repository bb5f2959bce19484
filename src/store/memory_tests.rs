use super::*;

const T0: &str = "2026-01-01T00:00:00.000000+00:00";
const T1: &str = "2026-02-01T00:00:00.000000+00:00";

fn new<'a>(key: &'a str, value: &'a str) -> NewMemory<'a> {
    NewMemory {
        category: "fact",
        key,
        value,
        tags: &[],
        project: "",
    }
}

#[test]
fn upsert_keeps_created_at_and_counts() {
    let db = MemoryDb::in_memory().unwrap();
    let a = db.remember(new("k", "one"), T0).unwrap();
    assert_eq!(a.access_count, 0);
    let b = db.remember(new("k", "two"), T1).unwrap();
    assert_eq!((b.id, b.value.as_str()), (a.id, "two"));
    assert_eq!((b.created_at.as_str(), b.accessed_at.as_str()), (T0, T1));
    assert_eq!(b.access_count, 1);
    let r = db.recall("k", None, None, T1).unwrap().unwrap();
    assert_eq!(r.access_count, 2);
    assert!(db.recall("nope", None, None, T1).unwrap().is_none());
}

#[test]
fn the_index_follows_writes_made_with_plain_sql() {
    let db = MemoryDb::in_memory().unwrap();
    // As the seed writes: its own statements, no knowledge of the index.
    db.conn
        .execute(
            "INSERT INTO memories (category, key, value, tags, project, created_at, accessed_at, access_count)
             VALUES ('fact', 'router', 'the router is at 10.0.0.1', '[\"network\"]', '', ?1, ?1, 0)",
            [T0],
        )
        .unwrap();
    let hits = db.search("\"router\"*", Filter::default(), 10).unwrap();
    assert_eq!(hits.len(), 1);
    db.conn
        .execute(
            "UPDATE memories SET value = 'moved to 10.0.0.254' WHERE key = 'router'",
            [],
        )
        .unwrap();
    assert_eq!(
        db.search("\"254\"", Filter::default(), 10).unwrap().len(),
        1
    );
    assert_eq!(db.search("\"1\"", Filter::default(), 10).unwrap().len(), 0);
    db.forget("router", None).unwrap();
    assert!(
        db.search("\"router\"*", Filter::default(), 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn ranking_puts_the_key_first_and_prefixes_match() {
    let db = MemoryDb::in_memory().unwrap();
    db.remember(new("notes", "the backup server runs nightly"), T0)
        .unwrap();
    db.remember(new("backup", "nas at 10.0.0.5"), T0).unwrap();
    db.remember(new("unrelated", "coffee"), T0).unwrap();
    let hits = db.search("\"back\"*", Filter::default(), 10).unwrap();
    let keys: Vec<&str> = hits.iter().map(|(r, _)| r.key.as_str()).collect();
    assert_eq!(keys, ["backup", "notes"]);
}

#[test]
fn decay_compares_text_and_stats_count() {
    let db = MemoryDb::in_memory().unwrap();
    db.remember(new("old", "x"), T0).unwrap();
    db.remember(new("new", "y"), T1).unwrap();
    assert_eq!(db.decay("2026-01-15T00:00:00+00:00").unwrap(), 1);
    let s = db.stats().unwrap();
    assert_eq!(s.total, 1);
    assert_eq!(s.by_category, vec![("fact".to_owned(), 1)]);
    assert_eq!(s.oldest.as_deref(), Some(T1));
}

/// The search orders by `bm25(…)` with a LIMIT instead of FTS5's `rank` column (configured with
/// `rank MATCH 'bm25(10, 5, 1)'`): the same rows with the same scores, in the same order.
#[test]
fn search_ranks_as_the_rank_column_does() {
    let mut db = MemoryDb::in_memory().unwrap();
    let words = [
        "alpha", "alpine", "beta", "bet", "gamma", "gam", "delta", "alps",
    ];
    let rows: Vec<(String, String)> = (0..400usize)
        .map(|i| {
            let value: Vec<&str> = (0..(3 + i % 7))
                .map(|j| words[(i * 7 + j * 3 + i / 5) % words.len()])
                .collect();
            (format!("{}-{i}", words[i % words.len()]), value.join(" "))
        })
        .collect();
    let news: Vec<NewMemory<'_>> = rows.iter().map(|(k, v)| new(k, v)).collect();
    db.remember_many(&news, T0).unwrap();
    for q in [
        "\"al\"*",
        "\"alp\"*",
        "\"bet\"*",
        "\"gam\"* \"del\"*",
        "\"alpha\"",
    ] {
        let mut st = db
            .conn
            .prepare(
                "SELECT rowid, rank FROM memories_fts WHERE memories_fts MATCH ?1
                 AND rank MATCH 'bm25(10.0, 5.0, 1.0)' ORDER BY rank",
            )
            .unwrap();
        let mut want: Vec<(i64, f64)> = st
            .query_map([q], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(want.len() > 10, "{q}: {} matches", want.len());
        let got = |limit: u32| -> Vec<(i64, f64)> {
            db.search(q, Filter::default(), limit)
                .unwrap()
                .into_iter()
                .map(|(r, rank)| (r.id, rank))
                .collect()
        };
        // The best 10: the same scores in the same order.
        let ranks = |v: &[(i64, f64)]| v.iter().map(|(_, r)| *r).collect::<Vec<_>>();
        assert_eq!(ranks(&got(10)), ranks(&want[..10]), "{q}");
        // Every match: the same rows with the same scores (ties in any order).
        let mut all = got(10_000);
        let by = |a: &(i64, f64), b: &(i64, f64)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
        all.sort_by(by);
        want.sort_by(by);
        assert_eq!(all, want, "{q}");
    }
}
