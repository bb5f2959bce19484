//! The step DAG: the implicit chain, `needs`, `max_parallel`, and what is recorded per step.

use super::*;
use crate::store::{Phase, RunStatus};

#[test]
fn steps_without_needs_run_one_after_another_in_file_order() {
    let h = Harness::new();
    let done = h.run(
        "name: chain
max_parallel: 4
steps:
  - name: a
    command: 'true'
  - name: b
    command: 'true'
  - name: c
    command: 'true'
",
    );
    assert_eq!(
        done.events,
        [
            "start a#1",
            "end a succeeded",
            "start b#1",
            "end b succeeded",
            "start c#1",
            "end c succeeded",
        ]
    );
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert_eq!(done.run.error, None);
    assert_eq!(done.run.workflow, "chain");
    assert!(done.run.finished_at.is_some());
    assert_eq!(done.names(), ["a", "b", "c"]);
    for (i, s) in done.steps.iter().enumerate() {
        assert_eq!(s.status, StepStatus::Succeeded, "{s:?}");
        assert_eq!(s.phase, Phase::Main);
        assert_eq!(s.seq, i as i64);
        assert_eq!(s.attempts, 1);
        assert_eq!(s.exit_code, Some(0));
        assert_eq!(s.message, None);
        assert!(
            s.started_at.is_some() && s.finished_at >= s.started_at,
            "{s:?}"
        );
    }
}

#[test]
fn roots_start_together_up_to_max_parallel() {
    let h = Harness::new();
    let done = h.run(
        "max_parallel: 2
steps:
  - name: a
    needs: []
    command: 'true'
  - name: b
    needs: []
    command: 'true'
  - name: c
    needs: []
    command: 'true'
",
    );
    // Two start before anything ends; the third waits for a free slot.
    assert_eq!(done.events[..2], ["start a#1", "start b#1"]);
    assert!(done.events[2].starts_with("end "), "{:#?}", done.events);
    assert!(done.at("start c#1") > 2, "{:#?}", done.events);
    assert_eq!(done.events.len(), 6);
    assert_eq!(done.run.status, RunStatus::Succeeded);
}

#[test]
fn roots_all_start_at_once_when_slots_allow() {
    let h = Harness::new();
    let done = h.run(
        "max_parallel: 3
steps:
  - name: a
    needs: []
    command: 'true'
  - name: b
    needs: []
    command: 'true'
  - name: c
    needs: []
    command: 'true'
",
    );
    assert_eq!(done.events[..3], ["start a#1", "start b#1", "start c#1"]);
}

#[test]
fn max_parallel_one_runs_independent_steps_in_file_order() {
    let h = Harness::new();
    let done = h.run(
        "max_parallel: 1
steps:
  - name: a
    needs: []
    command: 'true'
  - name: b
    needs: []
    command: 'true'
  - name: c
    needs: []
    command: 'true'
",
    );
    assert_eq!(
        done.events,
        [
            "start a#1",
            "end a succeeded",
            "start b#1",
            "end b succeeded",
            "start c#1",
            "end c succeeded",
        ]
    );
}

#[test]
fn parallel_steps_overlap_in_time() {
    let h = Harness::new();
    let done = h.run(
        "max_parallel: 2
steps:
  - name: a
    needs: []
    command: sleep 0.2
  - name: b
    needs: []
    command: sleep 0.2
",
    );
    let (a, b) = (done.step("a"), done.step("b"));
    assert!(
        a.started_at < b.finished_at && b.started_at < a.finished_at,
        "a and b did not overlap: {a:?} {b:?}"
    );
}

#[test]
fn a_diamond_waits_for_both_branches() {
    let h = Harness::new();
    let done = h.run(
        "max_parallel: 4
steps:
  - name: root
    command: 'true'
  - name: left
    needs: [root]
    command: 'true'
  - name: right
    needs: root
    command: 'true'
  - name: join
    needs: [left, right]
    command: 'true'
",
    );
    assert_eq!(
        done.events[..4],
        [
            "start root#1",
            "end root succeeded",
            "start left#1",
            "start right#1"
        ]
    );
    let join = done.at("start join#1");
    assert!(join > done.at("end left succeeded"), "{:#?}", done.events);
    assert!(join > done.at("end right succeeded"), "{:#?}", done.events);
    assert_eq!(done.events.len(), 8);
}

#[test]
fn needs_may_name_a_step_later_in_the_file() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: report
    needs: [build]
    command: 'true'
  - name: build
    needs: []
    command: 'true'
",
    );
    assert_eq!(
        done.events,
        [
            "start build#1",
            "end build succeeded",
            "start report#1",
            "end report succeeded",
        ]
    );
    // Records keep the file's order (seq), not the order of execution.
    assert_eq!(done.names(), ["report", "build"]);
}

#[test]
fn needs_orders_but_does_not_require_success() {
    // A dependency that failed with `on_failure: continue` still lets a `continue` step run.
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: flaky
    command: 'false'
    on_failure: continue
  - name: after
    needs: [flaky]
    on_failure: continue
    command: 'true'
",
    );
    assert_eq!(done.status("flaky"), StepStatus::Failed);
    assert_eq!(done.status("after"), StepStatus::Succeeded);
    assert_eq!(done.run.status, RunStatus::Failed);
}
