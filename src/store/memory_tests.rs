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
