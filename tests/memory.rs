//! `claw memory` on `memory.db`: the seed's file read and written by both sides, full-text
//! ranking, decay, and the command shapes.

use std::path::Path;
use std::process::Command;

use crate::common::Env;

/// The seed's `MemoryStore` statements, run by Python's sqlite3 as the seed runs them.
const SEED: &str = r#"
import json, sqlite3, sys
from datetime import UTC, datetime, timedelta
db, op = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db)
conn.row_factory = sqlite3.Row
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("""CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT, category TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL, tags TEXT DEFAULT '[]', project TEXT DEFAULT '',
    created_at TEXT NOT NULL, accessed_at TEXT NOT NULL, access_count INTEGER DEFAULT 0,
    UNIQUE(category, key, project))""")
conn.execute("CREATE INDEX IF NOT EXISTS idx_memories_category ON memories(category)")
conn.execute("CREATE INDEX IF NOT EXISTS idx_memories_project ON memories(project)")
def remember(key, value, category="fact", tags=(), project="", when=None):
    now = (when or datetime.now(UTC)).isoformat()
    conn.execute("""INSERT INTO memories (category, key, value, tags, project, created_at, accessed_at, access_count)
        VALUES (?, ?, ?, ?, ?, ?, ?, 0)
        ON CONFLICT(category, key, project) DO UPDATE SET value = excluded.value, tags = excluded.tags,
        accessed_at = excluded.accessed_at, access_count = access_count + 1""",
        (category, key, value, json.dumps(list(tags)), project, now, now))
if op == "seed":
    remember("nas-ip", "the NAS answers on 10.0.0.5", tags=["network", "storage"])
    remember("editor", "prefers helix over vim", category="preference")
    remember("deploy", "blue/green behind traefik", category="project_context", project="homelab")
    remember("stale", "nobody asked for this", when=datetime.now(UTC) - timedelta(days=200))
elif op == "update":
    remember("nas-ip", "the NAS moved to 10.0.0.9", tags=["network"])
    remember("printer", "the printer is on the second floor")
elif op == "dump":
    rows = conn.execute("SELECT * FROM memories ORDER BY id").fetchall()
    print(json.dumps([dict(r) for r in rows]))
conn.commit()
"#;

fn seed(db: &Path, op: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(SEED)
        .arg(db)
        .arg(op)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| e["key"].as_str().expect("key").to_owned())
        .collect()
}

#[test]
fn a_seed_memory_db_is_read_and_updated_and_the_seed_reads_it_back() {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).unwrap();
    let db = env.home.join("memory.db");
    seed(&db, "seed");

    // claw reads the seed's rows (the index is built from them on first open).
    let r = env.claw(&["memory", "recall", "nas-ip", "--json"]);
    let e = r.expect_code(0).json();
    assert_eq!(e["value"], "the NAS answers on 10.0.0.5");
    assert_eq!(e["tags"], serde_json::json!(["network", "storage"]));
    assert_eq!(e["access_count"], 1);
    let found = env.claw(&["memory", "search", "stor", "--json"]).json();
    assert_eq!(keys(&found), ["nas-ip"]);

    // claw's upsert on the seed's row: same id, created_at kept, one more access.
    let up = env
        .claw(&[
            "memory",
            "remember",
            "nas-ip",
            "NAS on 10.0.0.7",
            "-t",
            "network",
            "--json",
        ])
        .json();
    assert_eq!(
        (up["id"].clone(), up["access_count"].clone()),
        (e["id"].clone(), 2.into())
    );
    assert_eq!(up["created_at"], e["created_at"]);
    env.claw(&[
        "memory",
        "remember",
        "vlan",
        "iot on vlan 30",
        "-p",
        "homelab",
    ])
    .expect_code(0);

    // The seed reads claw's writes, and writes again through the triggers claw added.
    let rows: serde_json::Value = serde_json::from_str(&seed(&db, "dump")).unwrap();
    let nas = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "nas-ip")
        .unwrap();
    assert_eq!(nas["value"], "NAS on 10.0.0.7");
    assert_eq!(nas["tags"], "[\"network\"]");
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["key"] == "vlan" && r["project"] == "homelab")
    );
    seed(&db, "update");
    let found = env.claw(&["memory", "search", "printer", "--json"]).json();
    assert_eq!(keys(&found), ["printer"]);
    let found = env.claw(&["memory", "search", "10.0.0.7", "--json"]).json();
    assert!(
        keys(&found).is_empty(),
        "the old value left the index: {found}"
    );
    let e = env.claw(&["memory", "recall", "nas-ip", "--json"]).json();
    assert_eq!(e["value"], "the NAS moved to 10.0.0.9");
    assert_eq!(e["access_count"], 4);

    // Context, list and stats in the seed's shapes.
    let ctx = env.claw(&["memory", "context", "-p", "homelab"]);
    assert_eq!(
        ctx.expect_code(0).stdout,
        "## Remembered Context\n\n- **vlan** (fact): iot on vlan 30\n- **deploy** (project_context): blue/green behind traefik\n"
    );
    let stats = env.claw(&["memory", "stats", "--json"]).json();
    assert_eq!(stats["total"], 6);
    assert_eq!(stats["by_category"]["preference"], 1);
}

#[test]
fn search_ranks_keys_first_and_matches_prefixes_and_all_words() {
    let env = Env::new();
    for (k, v) in [
        ("notes", "the backup job runs nightly at three"),
        ("backup", "restic to the nas"),
        ("coffee", "espresso, no sugar"),
        ("backup-offsite", "rclone to b2 weekly"),
    ] {
        env.claw(&["memory", "remember", k, v]).expect_code(0);
    }
    let found = env.claw(&["memory", "search", "back", "--json"]).json();
    let k = keys(&found);
    assert_eq!(k.len(), 3, "{k:?}");
    assert_eq!(
        k[2], "notes",
        "a key match ranks above a value match: {k:?}"
    );
    let found = env
        .claw(&["memory", "search", "backup week", "--json"])
        .json();
    assert_eq!(keys(&found), ["backup-offsite"]);
    // The seed's substring search is still there.
    let found = env
        .claw(&["memory", "search", "spress", "--like", "--json"])
        .json();
    assert_eq!(keys(&found), ["coffee"]);
    let r = env.claw(&["memory", "search", "zzz"]);
    assert_eq!(r.expect_code(0).stdout.trim(), "No matches.");
}

#[test]
fn decay_forget_and_bad_input() {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).unwrap();
    seed(&env.home.join("memory.db"), "seed");
    let r = env.claw(&["memory", "decay", "-d", "90", "--json"]).json();
    assert_eq!(r["removed"], 1);
    assert!(env.claw(&["memory", "recall", "stale"]).code == 1);
    env.claw(&["memory", "forget", "editor"]).expect_code(0);
    let r = env.claw(&["memory", "forget", "editor"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Not found: editor"), "{}", r.stderr);
    let r = env.claw(&["memory", "remember", "k", "v", "-c", "facts"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Invalid category: facts"), "{}", r.stderr);
    let audit = std::fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert!(audit.contains("\"memory.decay\"") && audit.contains("\"memory.forget\""));
    assert!(!audit.contains("helix"), "values stay out of the audit log");
}

#[test]
fn workflows_remember_recall_search_and_read_memory_in_expressions() {
    let env = Env::new();
    env.claw(&["memory", "remember", "nas-ip", "10.0.0.5", "-t", "network"])
        .expect_code(0);
    env.workflow(
        "mem",
        r#"
name: mem
steps:
  - name: note
    type: memory
    action: remember
    key: gateway
    value: "gw-${{ memory.nas-ip }}"
    tags: lan, core
  - name: read
    type: memory
    action: recall
    key: gateway
  - name: missing
    type: memory
    action: recall
    key: nothing-here
    default: none
  - name: find
    type: memory
    action: search
    query: gw
  - name: use
    command: 'echo "${{ steps.read.outputs.value }} ${{ steps.missing.outputs.found }} ${{ steps.find.outputs.count }} ${{ memory.nothing | default(''d'') }}"'
"#,
    );
    let r = env.claw(&["workflow", "run", "mem"]);
    r.expect_code(0);
    let run = env.last_run().expect("a run");
    let shown = env.show(&run);
    let use_step = crate::common::step(&shown, "use");
    assert_eq!(
        use_step["stdout"].as_str().unwrap_or_default().trim(),
        "gw-10.0.0.5 false 1 d",
        "{shown}"
    );
    let e = env.claw(&["memory", "recall", "gateway", "--json"]).json();
    assert_eq!(e["tags"], serde_json::json!(["lan", "core"]));
    let audit = std::fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert!(
        audit.contains(&format!("\"run:{run}\"")),
        "the run is the actor"
    );

    // A recall of a missing key without a default fails the step, saying so.
    env.workflow(
        "miss",
        "name: miss\nsteps:\n  - name: r\n    type: memory\n    action: recall\n    key: nope\n",
    );
    let r = env.claw(&["workflow", "run", "miss"]);
    assert_eq!(r.code, 1);
    // A bad category is refused when the file is read.
    env.workflow(
        "bad",
        "name: bad\nsteps:\n  - name: r\n    type: memory\n    action: remember\n    key: k\n    value: v\n    category: facts\n",
    );
    let r = env.claw(&["workflow", "validate", "bad"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Invalid category: facts"), "{}", r.stderr);
}
