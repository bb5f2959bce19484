//! In-process tests of the engine: runs driven over the in-memory SQLite store, on a
//! current-thread runtime, with a data directory in a temporary folder. They assert on what the
//! engine promises (ARCHITECTURE.md, docs/workflows.md, docs/runs.md) through its public API
//! only: the store's run and step records and the [`Progress`] events. The end-to-end tests in
//! `tests/` cover the same ground through the binary; these are fast and show the engine's own
//! behaviour without the CLI around it.
//!
//! Steps are shell steps with trivial commands. Events are recorded as short strings:
//! `start NAME#ATTEMPT`, `end NAME STATUS`, `wait: MESSAGE`, `note: MESSAGE`.

mod dag;
mod failures;
mod outputs;
mod recovery;
mod retries;
mod stopping;
mod syncs;

use std::cell::RefCell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Engine, Event, NewRun, Progress};
use crate::config::{Dirs, Settings};
use crate::store::{RunRecord, SqliteStore, StepRecord, StepStatus};
use crate::workflow::Workflow;

/// A [`Progress`] that keeps every event as a line of text.
#[derive(Debug, Default)]
struct Recorder(RefCell<Vec<String>>);

impl Progress for Recorder {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::StepStarted { name, attempt } => format!("start {name}#{attempt}"),
            Event::StepFinished { step } => format!("end {} {}", step.name, step.status),
            Event::Waiting { message } => format!("wait: {message}"),
            Event::Note { message } => format!("note: {message}"),
            Event::GateOpen { step, .. } => format!("gate {step}"),
        };
        self.0.borrow_mut().push(line);
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}

/// Runs a future to completion on a fresh current-thread runtime (the engine's futures are not
/// `Send`; the daemon and the CLI drive them the same way).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Polls `cond` every few milliseconds until it holds; panics after 5 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An engine over an in-memory store, with its data directory and config root in a temporary
/// folder (which also holds the marker files the tests' commands write).
struct Harness {
    tmp: tempfile::TempDir,
    engine: Engine,
}

/// A finished drive: the run as stored, its step records and the events seen.
#[derive(Debug)]
struct Finished {
    run: RunRecord,
    steps: Vec<StepRecord>,
    events: Vec<String>,
}

impl Harness {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dirs = Dirs {
            home: tmp.path().join("home"),
            root: tmp.path().join("root"),
        };
        dirs.ensure_home().expect("the data directory");
        let settings = Settings {
            // Commands here die on SIGTERM; a short grace keeps a mistake from costing seconds.
            kill_grace: Duration::from_millis(200),
            ..Settings::default()
        };
        let store = SqliteStore::in_memory().expect("an in-memory store");
        Self {
            engine: Engine::with_store(dirs, settings, Arc::new(store)),
            tmp,
        }
    }

    /// A path in the scratch folder, as text to paste into a command.
    fn file(&self, name: &str) -> String {
        self.tmp.path().join(name).display().to_string()
    }

    /// Loads a workflow from YAML, as if it were `workflows/test.yaml` of the config root.
    fn load(&self, yaml: &str) -> Workflow {
        let path: PathBuf = self.engine.dirs.root.join("workflows/test.yaml");
        crate::workflow::load::load_str(&path, yaml.to_owned())
            .unwrap_or_else(|e| panic!("the test workflow does not load:\n{}", e.render()))
    }

    /// Creates a run this process will execute (as `claw workflow run` does).
    fn create(&self, wf: &Workflow, params: serde_json::Value, dry_run: bool) -> RunRecord {
        self.engine
            .create_run(&NewRun {
                workflow: wf,
                params,
                trigger: serde_json::json!({"type": "manual", "user": "tester"}),
                dry_run,
                claim: true,
            })
            .expect("create the run")
    }

    /// Loads, creates and drives a run to its end.
    fn run(&self, yaml: &str) -> Finished {
        self.run_with(yaml, serde_json::json!({}), false)
    }

    fn run_with(&self, yaml: &str, params: serde_json::Value, dry_run: bool) -> Finished {
        let wf = self.load(yaml);
        let run = self.create(&wf, params, dry_run);
        let rec = Recorder::default();
        let cancel = CancellationToken::new();
        let done = block_on(self.engine.drive_loaded(&run.id, Some(&wf), &cancel, &rec));
        self.finished(done, &rec)
    }

    /// What a drive ended with, read back from the store.
    fn finished(&self, done: super::Result<RunRecord>, rec: &Recorder) -> Finished {
        let run = done.unwrap_or_else(|e| panic!("the engine failed: {e}"));
        let stored = self
            .engine
            .store
            .get_run(&run.id)
            .unwrap()
            .expect("the run");
        assert_eq!(run, stored, "drive returns the run as stored");
        Finished {
            steps: self.engine.store.steps(&run.id).unwrap(),
            run,
            events: rec.lines(),
        }
    }

    /// The status of a step of a run, as stored now.
    fn status_now(&self, run_id: &str, name: &str) -> Option<StepStatus> {
        self.engine
            .store
            .steps(run_id)
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.status)
    }
}

impl Finished {
    #[track_caller]
    fn step(&self, name: &str) -> &StepRecord {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step record `{name}` in {:#?}", self.steps))
    }

    #[track_caller]
    fn status(&self, name: &str) -> StepStatus {
        self.step(name).status
    }

    #[track_caller]
    fn message(&self, name: &str) -> &str {
        self.step(name).message.as_deref().unwrap_or_default()
    }

    /// Where `event` is in the recorded events.
    #[track_caller]
    fn at(&self, event: &str) -> usize {
        self.events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("no event `{event}` in {:#?}", self.events))
    }

    /// The recorded events that start with `prefix`.
    fn events_like(&self, prefix: &str) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }

    /// Names of the step records, in the order the store lists them.
    fn names(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.name.as_str()).collect()
    }
}

/// The lines of a marker file (empty if it does not exist).
fn lines_of(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}
