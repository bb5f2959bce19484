//! Which commits wait for their own sync on the file store (group commit) and which ride the
//! next one (docs/runs.md, "States").

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Recorder, block_on};
use crate::config::{Dirs, Settings};
use crate::engine::{Engine, NewRun};
use crate::store::{RunStatus, SqliteStore};

fn engine(tmp: &tempfile::TempDir, keep: u32) -> (Engine, Arc<SqliteStore>) {
    let dirs = Dirs {
        home: tmp.path().join("home"),
        root: tmp.path().join("root"),
    };
    dirs.ensure_home().expect("the data directory");
    let db = dirs.db_path();
    let store = Arc::new(
        SqliteStore::open(&db)
            .and_then(|s| s.with_group_commit(&db))
            .expect("a file store"),
    );
    let settings = Settings {
        retention_max_runs: keep,
        ..Settings::default()
    };
    (Engine::with_store(dirs, settings, store.clone()), store)
}

fn one_step(engine: &Engine) -> crate::workflow::Workflow {
    let path = engine.dirs.root.join("workflows/one.yaml");
    crate::workflow::load::load_str(
        &path,
        "name: one\nsteps:\n  - name: a\n    command: \"true\"\n".to_owned(),
    )
    .expect("the workflow loads")
}

fn new_run(wf: &crate::workflow::Workflow) -> NewRun<'_> {
    NewRun {
        workflow: wf,
        params: serde_json::json!({}),
        trigger: serde_json::json!({"type": "manual", "user": "tester"}),
        dry_run: false,
        claim: true,
    }
}

/// A run created to be driven here is committed without a sync of its own; its first step's
/// start syncs it (with everything before it). A detached run's record is synced at once.
#[test]
fn a_foreground_run_record_rides_its_first_steps_sync() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (engine, store) = engine(&tmp, 200);
    let wf = one_step(&engine);
    let before = store.group_syncs();
    let run = engine.create_run_here(&new_run(&wf)).expect("create");
    assert_eq!(store.group_syncs(), before, "no sync of its own");
    // Committed: another connection (another process) sees it at once.
    let other = SqliteStore::open(&engine.dirs.db_path()).expect("a second connection");
    assert_eq!(
        crate::store::Store::get_run(&other, &run.id)
            .expect("read")
            .map(|r| r.id),
        Some(run.id.clone())
    );
    let rec = Recorder::default();
    let done = block_on(engine.drive_loaded(&run.id, Some(&wf), &CancellationToken::new(), &rec))
        .expect("the run ends");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert!(store.group_syncs() > before, "the step's start synced it");

    let before = store.group_syncs();
    engine.create_run(&new_run(&wf)).expect("create");
    assert_eq!(
        store.group_syncs(),
        before + 1,
        "a detached run is synced at once"
    );
}

/// Deleting runs past the retention limit waits for no sync (the next prune redoes a lost one),
/// and it deletes what it should.
#[test]
fn pruning_waits_for_no_sync() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (engine, store) = engine(&tmp, 1);
    let rec = Recorder::default();
    let wf = one_step(&engine);
    let drive = || {
        let run = engine.create_run_here(&new_run(&wf)).expect("create");
        block_on(engine.drive_loaded(&run.id, Some(&wf), &CancellationToken::new(), &rec))
            .expect("the run ends");
    };
    for _ in 0..3 {
        drive();
    }
    // Each run pruned the one before it when it finished: one is left.
    let left = |s: &SqliteStore| {
        let query = crate::store::RunQuery {
            limit: 100,
            ..crate::store::RunQuery::default()
        };
        crate::store::Store::runs_page(s, &query)
            .expect("list")
            .len()
    };
    assert_eq!(left(&store), 1);
    // Three more runs kept, then a prune that deletes two of them: no sync of its own.
    engine.set_settings(Settings {
        retention_max_runs: 200,
        ..engine.settings()
    });
    for _ in 0..3 {
        drive();
    }
    assert_eq!(left(&store), 4);
    engine.set_settings(Settings {
        retention_max_runs: 2,
        ..engine.settings()
    });
    let before = store.group_syncs();
    assert_eq!(engine.prune("one").expect("prune"), 2);
    assert_eq!(
        store.group_syncs(),
        before,
        "the deletion waited for a sync"
    );
    assert_eq!(left(&store), 2);
}
