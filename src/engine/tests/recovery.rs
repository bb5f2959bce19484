//! Crash recovery decided from the store alone: a run left by a dead owner with steps recorded
//! `running` is driven again; an idempotent step runs again, any other waits for a decision
//! (`retry`, `skip`, `fail`) made through [`Engine::decide`].

use super::*;
use crate::engine::EngineError;
use crate::store::{Phase, RunStatus};

/// Marker lines: each step appends `<name>-<attempt>`.
fn crashed_workflow(log: &str) -> String {
    format!(
        "name: crashed
steps:
  - name: first
    command: echo first-$CLAW_ATTEMPT >> {log}
  - name: idem
    idempotent: true
    command: echo idem-$CLAW_ATTEMPT >> {log}
  - name: risky
    needs: [first]
    command: echo risky-$CLAW_ATTEMPT >> {log}
  - name: last
    needs: [idem, risky]
    command: echo last-$CLAW_ATTEMPT >> {log}
"
    )
}

/// Stores a run as a process that died mid-way left it: owned by a process whose lease ran out,
/// `first` done, `idem` and `risky` recorded `running` in their first attempt.
fn orphan(h: &Harness, wf: &Workflow) -> RunRecord {
    let now = crate::engine::now_ms();
    let mut run = h.engine.run_record(
        &NewRun {
            workflow: wf,
            params: serde_json::json!({}),
            trigger: serde_json::json!({"type": "manual", "user": "tester"}),
            dry_run: false,
            claim: true,
        },
        now - 1000,
    );
    run.owner = Some("elsewhere/other-boot/4242/1".into());
    run.lease_until = Some(now - 500);
    assert_eq!(run.status, RunStatus::Running);
    h.engine.store.create_run(&run).unwrap();
    let mut first = StepRecord::new("first", Phase::Main, 0);
    first.status = StepStatus::Succeeded;
    first.attempts = 1;
    first.exit_code = Some(0);
    first.started_at = Some(now - 900);
    first.finished_at = Some(now - 800);
    let mut running = Vec::new();
    for (seq, name) in [(1, "idem"), (2, "risky")] {
        let mut s = StepRecord::new(name, Phase::Main, seq);
        s.status = StepStatus::Running;
        s.attempts = 1;
        s.started_at = Some(now - 700);
        running.push(s);
    }
    h.engine
        .store
        .record_steps(&run.id, &[vec![first], running].concat(), None)
        .unwrap();
    assert!(h.engine.is_orphaned(&run));
    run
}

/// What recovery records on a step that may or may not have done its work.
fn interrupted_message(run_id: &str) -> String {
    format!(
        "interrupted while running (claw stopped) and not idempotent: it may or may not have done its work. \
         Run it again with `claw run approve {run_id} risky`, or mark it failed with `claw run reject {run_id} risky`"
    )
}

/// Drives the orphaned run from its stored definition; once it waits for a decision on `risky`,
/// checks what recovery recorded and decides `decision`. Returns the finished run.
fn resume_and_decide(h: &Harness, run: &RunRecord, decision: &str) -> Finished {
    let rec = Recorder::default();
    let never = CancellationToken::new();
    let (done, ()) = block_on(async {
        tokio::join!(h.engine.drive(&run.id, &never, &rec), async {
            until("the run to wait", || {
                h.engine.store.get_run(&run.id).unwrap().unwrap().status == RunStatus::Waiting
            })
            .await;
            let steps = h.engine.store.steps(&run.id).unwrap();
            let risky = steps.iter().find(|s| s.name == "risky").unwrap();
            assert_eq!(risky.status, StepStatus::Interrupted);
            assert_eq!(risky.attempts, 1);
            assert_eq!(risky.message, Some(interrupted_message(&run.id)));
            let idem = steps.iter().find(|s| s.name == "idem").unwrap();
            assert_ne!(idem.status, StepStatus::Interrupted, "{idem:?}");
            let current = h.engine.store.get_run(&run.id).unwrap().unwrap();
            h.engine
                .decide(
                    &current,
                    "risky",
                    decision.parse().expect("a decision"),
                    "cli:tester",
                )
                .unwrap();
        })
    });
    h.finished(done, &rec)
}

#[test]
fn an_idempotent_step_runs_again_and_the_other_waits_for_retry() {
    let h = Harness::new();
    let log = h.file("ran.log");
    let wf = h.load(&crashed_workflow(&log));
    let run = orphan(&h, &wf);
    let done = resume_and_decide(&h, &run, "retry");
    let id = &run.id;
    assert_eq!(
        done.events[..3],
        [
            format!("note: resumed run {id}: 2 step(s) were interrupted"),
            "start idem#2".to_owned(),
            "end idem succeeded".to_owned(),
        ]
    );
    assert_eq!(
        done.events[done.events.len() - 4..],
        [
            "start risky#2",
            "end risky succeeded",
            "start last#1",
            "end last succeeded"
        ]
    );
    // A finished step is never run again; the others continue their attempt count.
    assert_eq!(lines_of(&log), ["idem-2", "risky-2", "last-1"]);
    assert_eq!(done.step("first").attempts, 1);
    assert_eq!(done.step("idem").attempts, 2);
    assert_eq!(done.step("risky").attempts, 2);
    assert_eq!(done.status("risky"), StepStatus::Succeeded);
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert_eq!(done.run.owner.as_deref(), Some(h.engine.owner()));
}

/// The [`Event::Waiting`] a run sends when it waits for a decision on `risky`.
fn waiting_for_risky(run_id: &str) -> String {
    format!(
        "wait: run {run_id} waits for a decision on risky: `claw run approve {run_id} risky` runs it again, `claw run approve {run_id} risky --skip` takes it as done, `claw run reject {run_id} risky` marks it failed"
    )
}

#[test]
fn the_person_is_told_when_a_resumed_run_waits_for_a_decision() {
    // `Event::Waiting` is the one event the CLI prints on any stderr ("Waiting needs a person"),
    // so a detached or daemon resume tells the person what to do. Recovery records the run as
    // `waiting` itself; the wait must still be announced (it once was not).
    let h = Harness::new();
    let wf = h.load(&crashed_workflow(&h.file("ran.log")));
    let run = orphan(&h, &wf);
    let done = resume_and_decide(&h, &run, "retry");
    assert_eq!(done.events_like("wait: "), [waiting_for_risky(&run.id)]);
}

#[test]
fn a_step_left_interrupted_by_an_earlier_resume_is_announced() {
    // The same wait, found already recorded (a resume that ended before the decision).
    let h = Harness::new();
    let wf = h.load(&crashed_workflow(&h.file("ran.log")));
    let run = orphan(&h, &wf);
    let mut risky = h
        .engine
        .store
        .steps(&run.id)
        .unwrap()
        .into_iter()
        .find(|s| s.name == "risky")
        .unwrap();
    risky.status = StepStatus::Interrupted;
    risky.message = Some(interrupted_message(&run.id));
    h.engine
        .store
        .record_steps(&run.id, &[risky], Some(RunStatus::Waiting))
        .unwrap();
    let done = resume_and_decide(&h, &run, "retry");
    assert_eq!(done.events_like("wait: "), [waiting_for_risky(&run.id)]);
    assert_eq!(
        done.events[0],
        format!("note: resumed run {}: 1 step(s) were interrupted", run.id)
    );
    assert_eq!(done.run.status, RunStatus::Succeeded);
}

#[test]
fn skip_takes_the_interrupted_step_as_done() {
    let h = Harness::new();
    let log = h.file("ran.log");
    let wf = h.load(&crashed_workflow(&log));
    let run = orphan(&h, &wf);
    let done = resume_and_decide(&h, &run, "skip");
    assert_eq!(done.status("risky"), StepStatus::Skipped);
    assert_eq!(
        done.message("risky"),
        "interrupted; taken as done (not run again) on the decision of cli:tester"
    );
    assert_eq!(done.step("risky").attempts, 1);
    assert_eq!(done.status("last"), StepStatus::Succeeded);
    assert_eq!(lines_of(&log), ["idem-2", "last-1"]);
    assert_eq!(done.run.status, RunStatus::Succeeded);
}

#[test]
fn fail_marks_the_interrupted_step_failed_and_the_failure_rules_apply() {
    let h = Harness::new();
    let log = h.file("ran.log");
    let wf = h.load(&crashed_workflow(&log));
    let run = orphan(&h, &wf);
    let done = resume_and_decide(&h, &run, "fail");
    assert_eq!(done.status("risky"), StepStatus::Failed);
    assert_eq!(
        done.message("risky"),
        "interrupted; marked failed by cli:tester"
    );
    assert_eq!(done.status("last"), StepStatus::Skipped);
    assert_eq!(
        done.message("last"),
        "not run: the run stopped after `risky` failed"
    );
    assert_eq!(lines_of(&log), ["idem-2"]);
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `risky` failed: interrupted; marked failed by cli:tester")
    );
}

#[test]
fn cancelling_while_waiting_for_a_decision_ends_the_run() {
    let h = Harness::new();
    let log = h.file("ran.log");
    let wf = h.load(&crashed_workflow(&log));
    let run = orphan(&h, &wf);
    let rec = Recorder::default();
    let cancel = CancellationToken::new();
    let (done, ()) = block_on(async {
        tokio::join!(h.engine.drive(&run.id, &cancel, &rec), async {
            until("idem to finish while risky waits", || {
                h.status_now(&run.id, "idem") == Some(StepStatus::Succeeded)
            })
            .await;
            cancel.cancel();
        })
    });
    let done = h.finished(done, &rec);
    assert_eq!(done.status("risky"), StepStatus::Cancelled);
    assert_eq!(
        done.message("risky"),
        "run cancelled while waiting for a decision"
    );
    assert_eq!(done.status("last"), StepStatus::Skipped);
    assert_eq!(done.run.status, RunStatus::Cancelled);
    assert_eq!(lines_of(&log), ["idem-2"]);
}

#[test]
fn only_idempotent_steps_interrupted_means_no_wait() {
    let h = Harness::new();
    let log = h.file("ran.log");
    // `risky` is idempotent here: nothing needs a person.
    let wf = h.load(&crashed_workflow(&log).replace(
        "  - name: risky\n",
        "  - name: risky\n    idempotent: true\n",
    ));
    let run = orphan(&h, &wf);
    let rec = Recorder::default();
    let done = h.finished(
        block_on(h.engine.drive(&run.id, &CancellationToken::new(), &rec)),
        &rec,
    );
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert!(done.events_like("wait: ").is_empty(), "{:#?}", done.events);
    assert_eq!(
        done.events[0],
        format!("note: resumed run {}: 2 step(s) were interrupted", run.id)
    );
    assert_eq!(lines_of(&log).len(), 3, "idem, risky and last ran");
    assert_eq!(done.step("risky").attempts, 2);
}

#[test]
fn a_dry_run_treats_every_interrupted_step_as_idempotent() {
    let h = Harness::new();
    let log = h.file("ran.log");
    let wf = h.load(&crashed_workflow(&log));
    let run = orphan(&h, &wf);
    // The same orphan, but a dry run.
    let mut dry = h.engine.store.get_run(&run.id).unwrap().unwrap();
    dry.id = format!("{}-dry", run.id);
    dry.dry_run = true;
    h.engine.store.create_run(&dry).unwrap();
    let steps = h.engine.store.steps(&run.id).unwrap();
    h.engine.store.record_steps(&dry.id, &steps, None).unwrap();
    let rec = Recorder::default();
    let done = h.finished(
        block_on(h.engine.drive(&dry.id, &CancellationToken::new(), &rec)),
        &rec,
    );
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert_eq!(done.status("risky"), StepStatus::Succeeded);
    assert!(
        done.message("risky")
            .starts_with("dry-run: would execute shell: ")
    );
    assert!(lines_of(&log).is_empty(), "a dry run ran a command");
}

#[test]
fn decide_refuses_steps_that_do_not_wait() {
    let h = Harness::new();
    let wf = h.load(&crashed_workflow(&h.file("ran.log")));
    let run = orphan(&h, &wf);
    let invalid =
        |step: &str| match h
            .engine
            .decide(&run, step, crate::store::Decision::Retry, "cli:tester")
        {
            Err(EngineError::Invalid(msg)) => msg,
            other => panic!("expected a refusal, got {other:?}"),
        };
    let id = &run.id;
    assert_eq!(
        invalid("first"),
        format!("step `first` of run {id} is succeeded, not waiting for a decision")
    );
    assert_eq!(
        invalid("risky"),
        format!("step `risky` of run {id} is running, not waiting for a decision")
    );
    assert_eq!(
        invalid("riksy"),
        format!("run {id} has no step `riksy`; did you mean `risky`?")
    );
    assert_eq!(invalid("zzz"), format!("run {id} has no step `zzz`"));
    // Nothing was recorded.
    assert!(
        h.engine
            .store
            .steps(id)
            .unwrap()
            .iter()
            .all(|s| s.decision.is_none())
    );
}
