//! `on_failure` (abort, continue, rollback), `condition:`, `if:`, compensations, and the run's
//! final status and error.

use super::*;
use crate::store::{Phase, RunStatus};

#[test]
fn abort_skips_what_has_not_started_and_fails_the_run() {
    let h = Harness::new();
    let done = h.run(
        "max_parallel: 2
steps:
  - name: broken
    needs: []
    command: exit 3
  - name: sibling
    needs: []
    command: 'true'
  - name: after
    needs: [broken, sibling]
    command: 'true'
",
    );
    assert_eq!(done.status("broken"), StepStatus::Failed);
    assert_eq!(done.step("broken").exit_code, Some(3));
    assert_eq!(done.message("broken"), "exited with code 3");
    // A step already running when the failure came finishes normally.
    assert_eq!(done.status("sibling"), StepStatus::Succeeded);
    assert_eq!(done.status("after"), StepStatus::Skipped);
    assert_eq!(done.step("after").attempts, 0);
    assert_eq!(
        done.message("after"),
        "not run: the run stopped after `broken` failed"
    );
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `broken` failed: exited with code 3")
    );
    assert!(!done.events.iter().any(|e| e == "start after#1"));
    assert!(done.events.iter().any(|e| e == "end after skipped"));
}

#[test]
fn continue_makes_the_failure_sticky_as_in_the_seed() {
    // The example of docs/workflows.md, "Failures".
    let h = Harness::new();
    let done = h.run(
        "name: failure-demo
steps:
  - name: flaky-check
    command: exit 1
    on_failure: continue
  - name: report-failure
    condition: previous.failed
    command: echo the check failed
  - name: deploy
    command: echo deploying
  - name: cleanup
    on_failure: continue
    command: echo cleaning up
",
    );
    assert_eq!(done.status("flaky-check"), StepStatus::Failed);
    assert_eq!(done.status("report-failure"), StepStatus::Succeeded);
    assert_eq!(
        done.step("report-failure").stdout_tail,
        "the check failed\n"
    );
    assert_eq!(done.status("deploy"), StepStatus::Skipped);
    assert_eq!(
        done.message("deploy"),
        "not run: an earlier step failed (use `on_failure: continue` or a `condition` to run after failures)"
    );
    assert_eq!(done.status("cleanup"), StepStatus::Succeeded);
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `flaky-check` failed: exited with code 1")
    );
}

#[test]
fn the_first_failure_names_the_run_error() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: one
    command: exit 4
    on_failure: continue
  - name: two
    command: exit 5
    on_failure: continue
",
    );
    assert_eq!(done.status("two"), StepStatus::Failed);
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `one` failed: exited with code 4")
    );
}

#[test]
fn rollback_runs_every_rollback_step_then_fails_the_run() {
    let h = Harness::new();
    let log = h.file("rollback.log");
    let done = h.run(&format!(
        "steps:
  - name: prepare
    command: 'true'
  - name: deploy
    command: 'false'
    on_failure: rollback
  - name: announce
    command: 'true'
rollback:
  - name: undo-deploy
    command: echo undo-deploy >> {log}; exit 7
  - name: undo-prepare
    command: echo undo-prepare >> {log}
"
    ));
    assert_eq!(done.status("prepare"), StepStatus::Succeeded);
    assert_eq!(done.status("deploy"), StepStatus::Failed);
    assert_eq!(done.status("announce"), StepStatus::Skipped);
    assert_eq!(
        done.message("announce"),
        "not run: rolling back after `deploy` failed"
    );
    // Every rollback step runs, in order, even after one of them fails.
    assert_eq!(lines_of(&log), ["undo-deploy", "undo-prepare"]);
    let undo = done.step("rollback:undo-deploy");
    assert_eq!(undo.phase, Phase::Rollback);
    assert_eq!(undo.status, StepStatus::Failed);
    assert_eq!(undo.message.as_deref(), Some("exited with code 7"));
    let undo2 = done.step("rollback:undo-prepare");
    assert_eq!(undo2.phase, Phase::Rollback);
    assert_eq!(undo2.status, StepStatus::Succeeded);
    assert!(
        done.at("start rollback:undo-deploy#1") > done.at("end announce skipped"),
        "{:#?}",
        done.events
    );
    assert!(done.at("start rollback:undo-prepare#1") > done.at("end rollback:undo-deploy failed"));
    assert_eq!(
        done.names(),
        [
            "prepare",
            "deploy",
            "announce",
            "rollback:undo-deploy",
            "rollback:undo-prepare"
        ]
    );
    assert_eq!(done.run.status, RunStatus::Failed);
    // The run's error is the main step's failure, not the rollback's.
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `deploy` failed: exited with code 1")
    );
}

#[test]
fn rollback_without_rollback_steps_is_continue() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: deploy
    command: 'false'
    on_failure: rollback
  - name: carry-on
    on_failure: continue
    command: 'true'
  - name: strict
    command: 'true'
",
    );
    assert_eq!(done.status("carry-on"), StepStatus::Succeeded);
    assert_eq!(done.status("strict"), StepStatus::Skipped);
    assert!(
        done.message("strict")
            .starts_with("not run: an earlier step failed"),
        "{}",
        done.message("strict")
    );
    assert_eq!(done.run.status, RunStatus::Failed);
}

#[test]
fn rollback_steps_do_not_run_when_nothing_fails() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: deploy
    command: 'true'
    on_failure: rollback
rollback:
  - name: undo
    command: 'true'
",
    );
    assert_eq!(done.names(), ["deploy"]);
    assert_eq!(done.run.status, RunStatus::Succeeded);
}

#[test]
fn condition_looks_at_the_step_just_before() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: first-ok
    condition: previous.ok
    command: 'true'
  - name: first-always
    needs: []
    condition: always
    command: 'true'
  - name: ok
    command: 'true'
  - name: on-ok
    condition: previous.ok
    command: 'true'
  - name: on-failed
    condition: previous.failed
    command: 'true'
",
    );
    // On the first step, only `always` is true.
    assert_eq!(done.status("first-ok"), StepStatus::Skipped);
    assert_eq!(done.message("first-ok"), "condition not met");
    assert_eq!(done.status("first-always"), StepStatus::Succeeded);
    assert_eq!(done.status("ok"), StepStatus::Succeeded);
    assert_eq!(done.status("on-ok"), StepStatus::Succeeded);
    assert_eq!(done.status("on-failed"), StepStatus::Skipped);
    assert_eq!(done.message("on-failed"), "condition not met");
    // Only skipped steps: the run succeeds.
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert_eq!(done.run.error, None);
}

#[test]
fn a_true_condition_runs_after_a_failure_without_continue() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: broken
    command: 'false'
    on_failure: continue
  - name: handler
    if: ${{ steps.broken.status == 'failed' }}
    command: 'true'
  - name: always
    condition: always
    command: 'true'
  - name: plain
    command: 'true'
",
    );
    assert_eq!(done.status("handler"), StepStatus::Succeeded);
    assert_eq!(done.status("always"), StepStatus::Succeeded);
    assert_eq!(done.status("plain"), StepStatus::Skipped);
    assert_eq!(done.run.status, RunStatus::Failed);
}

#[test]
fn if_reads_params_and_earlier_outputs() {
    let h = Harness::new();
    let wf = "params:
  target: {type: string, default: staging}
steps:
  - name: probe
    command: echo level=3 >> \"$CLAW_OUTPUT\"
  - name: prod-only
    if: ${{ params.target == 'prod' }}
    command: 'true'
  - name: high
    needs: [probe]
    if: steps.probe.outputs.level | int > 2
    command: 'true'
  - name: low
    needs: [probe]
    if: ${{ steps.probe.outputs.level == '1' }}
    command: 'true'
";
    let done = h.run_with(wf, serde_json::json!({"target": "staging"}), false);
    assert_eq!(done.status("prod-only"), StepStatus::Skipped);
    assert_eq!(done.message("prod-only"), "condition not met");
    assert_eq!(done.status("high"), StepStatus::Succeeded);
    assert_eq!(done.status("low"), StepStatus::Skipped);
    assert_eq!(done.run.status, RunStatus::Succeeded);

    let done = h.run_with(wf, serde_json::json!({"target": "prod"}), false);
    assert_eq!(done.status("prod-only"), StepStatus::Succeeded);
}

#[test]
fn an_if_that_cannot_be_evaluated_fails_the_step() {
    let h = Harness::new();
    let done = h.run(
        "params:
  missing: {type: string, required: false}
steps:
  - name: a
    if: ${{ params.missing.deeper == 1 }}
    command: 'true'
",
    );
    assert_eq!(done.status("a"), StepStatus::Failed);
    assert!(
        done.message("a").starts_with("cannot evaluate `if`: "),
        "{}",
        done.message("a")
    );
    assert_eq!(done.step("a").attempts, 0);
    assert_eq!(done.run.status, RunStatus::Failed);
}

#[test]
fn compensations_run_newest_first_when_the_run_fails() {
    // The saga of docs/workflows.md, "Compensation".
    let h = Harness::new();
    let log = h.file("saga.log");
    let done = h.run(&format!(
        "name: saga
steps:
  - name: reserve
    command: 'true'
    rollback: echo release >> {log}
  - name: charge
    command: 'true'
    rollback:
      command: echo refund >> {log}; exit 2
      timeout: 30s
  - name: untouched
    command: 'true'
  - name: ship
    command: exit 1
  - name: never
    command: 'true'
    rollback: echo never >> {log}
"
    ));
    assert_eq!(done.status("ship"), StepStatus::Failed);
    // Reverse order of completion; a failing compensation does not stop the others.
    assert_eq!(lines_of(&log), ["refund", "release"]);
    let charge = done.step("compensate:charge");
    assert_eq!(charge.phase, Phase::Compensation);
    assert_eq!(charge.status, StepStatus::Failed);
    assert_eq!(charge.seq, 0);
    let reserve = done.step("compensate:reserve");
    assert_eq!(reserve.phase, Phase::Compensation);
    assert_eq!(reserve.status, StepStatus::Succeeded);
    assert_eq!(reserve.seq, 1);
    assert!(done.at("start compensate:reserve#1") > done.at("end compensate:charge failed"));
    assert!(!done.names().contains(&"compensate:never"));
    assert!(!done.names().contains(&"compensate:untouched"));
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `ship` failed: exited with code 1")
    );
}

#[test]
fn compensations_do_not_run_when_the_run_succeeds() {
    let h = Harness::new();
    let log = h.file("saga.log");
    let done = h.run(&format!(
        "steps:
  - name: reserve
    command: 'true'
    rollback: echo release >> {log}
"
    ));
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert_eq!(done.names(), ["reserve"]);
    assert!(lines_of(&log).is_empty());
}
