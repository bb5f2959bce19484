//! Stopping a run: cancel (token and store request), the workflow timeout, the concurrency limit,
//! dry runs, and runs this process may not or need not drive.

use super::*;
use crate::engine::EngineError;
use crate::store::RunStatus;

/// A workflow whose first step has a compensation (logged to `log`), then a long step.
fn long_workflow(timeout: &str, log: &str) -> String {
    format!(
        "name: long
{timeout}steps:
  - name: first
    command: 'true'
    rollback: echo compensated >> {log}
  - name: long
    command: sleep 5
  - name: after
    command: 'true'
"
    )
}

#[test]
fn cancelling_the_token_stops_the_running_step_and_skips_the_rest() {
    let h = Harness::new();
    let log = h.file("comp.log");
    let wf = h.load(&long_workflow("", &log));
    let run = h.create(&wf, serde_json::json!({}), false);
    let cancel = CancellationToken::new();
    let rec = Recorder::default();
    let started = Instant::now();
    let (done, ()) = block_on(async {
        tokio::join!(
            h.engine.drive_loaded(&run.id, Some(&wf), &cancel, &rec),
            async {
                until("`long` to run", || {
                    h.status_now(&run.id, "long") == Some(StepStatus::Running)
                })
                .await;
                cancel.cancel();
            }
        )
    });
    let done = h.finished(done, &rec);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(done.run.status, RunStatus::Cancelled);
    assert_eq!(done.run.error.as_deref(), Some("cancelled"));
    assert_eq!(done.status("first"), StepStatus::Succeeded);
    assert_eq!(done.status("long"), StepStatus::Cancelled);
    assert_eq!(done.message("long"), "stopped: the run was cancelled");
    assert_eq!(done.status("after"), StepStatus::Skipped);
    assert_eq!(done.message("after"), "not run: the run was cancelled");
    assert_eq!(done.step("after").attempts, 0);
    // A cancelled run is not compensated.
    assert!(lines_of(&log).is_empty());
    assert_eq!(done.names(), ["first", "long", "after"]);
}

#[test]
fn a_cancel_request_in_the_store_stops_the_run() {
    // What `claw run cancel` does from another process while this one drives the run.
    let h = Harness::new();
    let log = h.file("comp.log");
    let wf = h.load(&long_workflow("", &log));
    let run = h.create(&wf, serde_json::json!({}), false);
    let rec = Recorder::default();
    let started = Instant::now();
    let never = CancellationToken::new();
    let (done, asked) = block_on(async {
        tokio::join!(
            h.engine.drive_loaded(&run.id, Some(&wf), &never, &rec),
            async {
                until("`long` to run", || {
                    h.status_now(&run.id, "long") == Some(StepStatus::Running)
                })
                .await;
                let current = h.engine.store.get_run(&run.id).unwrap().unwrap();
                h.engine.cancel(&current, "cli:tester").unwrap()
            }
        )
    });
    // The owner is alive: the request is recorded and the owner acts on it.
    assert_eq!(asked, RunStatus::Running);
    let done = h.finished(done, &rec);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(done.run.cancel_requested);
    assert_eq!(done.run.status, RunStatus::Cancelled);
    assert_eq!(done.status("long"), StepStatus::Cancelled);
    assert_eq!(done.status("after"), StepStatus::Skipped);
    assert!(lines_of(&log).is_empty());
}

#[test]
fn cancelling_a_run_nobody_drives_closes_it_at_once() {
    let h = Harness::new();
    let wf = h.load("steps:\n  - name: a\n    command: 'true'\n");
    let run = h
        .engine
        .create_run(&NewRun {
            workflow: &wf,
            params: serde_json::json!({}),
            trigger: serde_json::json!({"type": "manual"}),
            dry_run: false,
            claim: false,
        })
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.owner, None);
    assert_eq!(
        h.engine.cancel(&run, "cli:tester").unwrap(),
        RunStatus::Cancelled
    );
    let stored = h.engine.store.get_run(&run.id).unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Cancelled);
    assert_eq!(stored.error.as_deref(), Some("cancelled"));
    // Driving it now changes nothing.
    let rec = Recorder::default();
    let done = h.finished(
        block_on(h.engine.drive(&run.id, &CancellationToken::new(), &rec)),
        &rec,
    );
    assert_eq!(done.run.status, RunStatus::Cancelled);
    assert!(done.steps.is_empty());
    assert!(done.events.is_empty());
    // Cancelling a finished run changes nothing either.
    assert_eq!(
        h.engine.cancel(&done.run, "cli:tester").unwrap(),
        RunStatus::Cancelled
    );
}

#[test]
fn the_workflow_timeout_stops_the_run_and_fails_it() {
    let h = Harness::new();
    let log = h.file("comp.log");
    let started = Instant::now();
    let done = h.run(&long_workflow("timeout: 400ms\n", &log));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error.as_deref(),
        Some("the workflow timed out after 400ms")
    );
    assert_eq!(done.status("long"), StepStatus::Cancelled);
    assert_eq!(done.message("long"), "stopped: the workflow timed out");
    assert_eq!(done.status("after"), StepStatus::Skipped);
    assert_eq!(done.message("after"), "not run: the workflow timed out");
    // A failed run (unlike a cancelled one) is compensated.
    assert_eq!(lines_of(&log), ["compensated"]);
    assert_eq!(done.status("compensate:first"), StepStatus::Succeeded);
}

#[test]
fn a_busy_workflow_with_on_busy_skip_does_not_start_the_run() {
    let h = Harness::new();
    let wf = h.load(
        "name: busy
concurrency: {limit: 1, on_busy: skip}
steps:
  - name: a
    command: 'true'
",
    );
    let first = h.create(&wf, serde_json::json!({}), false);
    // A run with a concurrency limit waits for admission, even when this process claims it.
    assert_eq!(first.status, RunStatus::Queued);
    assert!(
        h.engine
            .store
            .admit_run(&first.id, 1, crate::engine::now_ms(), &|_| false)
            .unwrap()
    );

    let second = h.create(&wf, serde_json::json!({}), false);
    let rec = Recorder::default();
    let done = h.finished(
        block_on(
            h.engine
                .drive_loaded(&second.id, Some(&wf), &CancellationToken::new(), &rec),
        ),
        &rec,
    );
    let why = "skipped: 1 run(s) of `busy` already active (concurrency on_busy: skip)";
    assert_eq!(done.run.status, RunStatus::Cancelled);
    assert_eq!(done.run.error.as_deref(), Some(why));
    assert!(done.steps.is_empty());
    assert_eq!(done.events, [format!("note: {why}")]);

    // Once the first run is over, the next one starts.
    h.engine
        .store
        .update_run(
            &first.id,
            RunStatus::Succeeded,
            None,
            None,
            crate::engine::now_ms(),
        )
        .unwrap();
    let third = h.create(&wf, serde_json::json!({}), false);
    let rec = Recorder::default();
    let done = h.finished(
        block_on(
            h.engine
                .drive_loaded(&third.id, Some(&wf), &CancellationToken::new(), &rec),
        ),
        &rec,
    );
    assert_eq!(done.run.status, RunStatus::Succeeded);
}

#[test]
fn a_busy_workflow_with_on_busy_queue_waits_for_a_slot() {
    let h = Harness::new();
    let wf = h.load(
        "name: q
concurrency: 1
steps:
  - name: a
    command: 'true'
",
    );
    let first = h.create(&wf, serde_json::json!({}), false);
    assert!(
        h.engine
            .store
            .admit_run(&first.id, 1, crate::engine::now_ms(), &|_| false)
            .unwrap()
    );
    let second = h.create(&wf, serde_json::json!({}), false);
    let rec = Recorder::default();
    let waiting = "wait: waiting for a concurrency slot (1 run(s) of `q` at a time)";
    let never = CancellationToken::new();
    let (done, freed_at) = block_on(async {
        tokio::join!(
            h.engine.drive_loaded(&second.id, Some(&wf), &never, &rec),
            async {
                until("the second run to wait", || {
                    rec.lines().iter().any(|e| e == waiting)
                })
                .await;
                assert_eq!(
                    h.engine.store.get_run(&second.id).unwrap().unwrap().status,
                    RunStatus::Queued
                );
                let now = crate::engine::now_ms();
                h.engine
                    .store
                    .update_run(&first.id, RunStatus::Succeeded, None, None, now)
                    .unwrap();
                now
            }
        )
    });
    let done = h.finished(done, &rec);
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert_eq!(done.events[0], waiting);
    assert!(done.run.started_at.unwrap() >= freed_at, "{:?}", done.run);
}

#[test]
fn a_dry_run_runs_nothing_and_says_what_it_would_do() {
    let h = Harness::new();
    let marker = h.file("ran");
    let done = h.run_with(
        &format!(
            "params:
  target: {{type: string, default: staging}}
steps:
  - name: touch
    command: touch {marker}
  - name: gate
    type: approval
    message: Deploy?
  - name: call
    type: http
    method: POST
    url: http://127.0.0.1:9/hook
  - name: think
    type: llm
    prompt: summarise the logs
  - name: checked
    if: ${{{{ steps.touch.exit_code == 0 }}}}
    command: echo checked
  - name: prod-only
    if: ${{{{ params.target == 'prod' }}}}
    command: echo prod
"
        ),
        serde_json::json!({"target": "staging"}),
        true,
    );
    assert!(done.run.dry_run);
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert!(!Path::new(&marker).exists(), "a dry run ran a command");
    assert_eq!(
        done.message("touch"),
        format!("dry-run: would execute shell: touch {marker}")
    );
    assert_eq!(done.message("gate"), "dry-run: gate auto-approved");
    assert_eq!(
        done.message("call"),
        "dry-run: would execute http: POST http://127.0.0.1:9/hook"
    );
    assert_eq!(
        done.message("think"),
        "dry-run: would execute llm: summarise the logs"
    );
    assert_eq!(
        done.message("checked"),
        "dry-run: would execute shell: echo checked (its `if` is decided at run time)"
    );
    // An `if` on params is decided as in a real run.
    assert_eq!(done.status("prod-only"), StepStatus::Skipped);
    assert_eq!(done.message("prod-only"), "condition not met");
    for name in ["touch", "gate", "call", "think", "checked"] {
        let s = done.step(name);
        assert_eq!(s.status, StepStatus::Succeeded, "{s:?}");
        assert_eq!(s.attempts, 1);
        assert_eq!(s.exit_code, None);
    }
    assert!(done.events_like("start ").is_empty(), "{:#?}", done.events);
}

#[test]
fn a_run_held_by_a_live_owner_is_not_taken_over() {
    let h = Harness::new();
    let wf = h.load("steps:\n  - name: a\n    command: 'true'\n");
    let mut run = h.engine.run_record(
        &NewRun {
            workflow: &wf,
            params: serde_json::json!({}),
            trigger: serde_json::json!({"type": "manual"}),
            dry_run: false,
            claim: true,
        },
        crate::engine::now_ms(),
    );
    // Another machine's process, with its lease still running.
    run.owner = Some("elsewhere/other-boot/4242/1".into());
    run.lease_until = Some(crate::engine::now_ms() + 60_000);
    h.engine.store.create_run(&run).unwrap();
    assert!(!h.engine.is_orphaned(&run));
    let err = block_on(
        h.engine
            .drive(&run.id, &CancellationToken::new(), &Recorder::default()),
    )
    .expect_err("the run is busy");
    assert!(matches!(&err, EngineError::Busy { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "run {id} is being executed by another process (elsewhere/other-boot/4242/1); wait for it, or cancel it with `claw run cancel {id}`",
            id = run.id
        )
    );
    assert!(h.engine.store.steps(&run.id).unwrap().is_empty());
}
