//! The step DAG: `needs`, parallelism up to `max_parallel`, the implicit dependency on the step
//! before, outputs passed between steps, `if:` and workflow outputs.
//!
//! Overlap is judged from the steps' recorded start and finish times, not the wall clock.

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::common::*;

/// Runs a workflow with `--json` and returns the run as `claw run show` has it.
fn run_ok(env: &Env, name: &str, args: &[&str]) -> Value {
    let mut argv = vec!["workflow", "run", name, "--json"];
    argv.extend_from_slice(args);
    let ran = env.claw(&argv);
    ran.expect_code(0);
    let id = ran.json()["id"].as_str().expect("run id").to_owned();
    env.show(&id)
}

#[track_caller]
fn time(run: &Value, name: &str, field: &str) -> DateTime<FixedOffset> {
    let text = step(run, name)[field]
        .as_str()
        .unwrap_or_else(|| panic!("step `{name}` has no {field}: {run:#}"));
    DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time")
}

/// Whether the two steps' [started, finished] intervals overlap.
fn overlap(run: &Value, a: &str, b: &str) -> bool {
    time(run, a, "started_at") < time(run, b, "finished_at")
        && time(run, b, "started_at") < time(run, a, "finished_at")
}

#[test]
fn independent_roots_run_in_parallel() {
    let env = Env::new();
    env.workflow(
        "par",
        r"max_parallel: 2
steps:
  - name: a
    needs: []
    command: sleep 1
  - name: b
    needs: []
    command: sleep 1
",
    );
    let run = run_ok(&env, "par", &[]);
    assert!(overlap(&run, "a", "b"), "a and b did not overlap: {run:#}");
    let took = run["duration_ms"].as_i64().expect("duration");
    assert!(took < 1950, "two parallel 1 s steps took {took} ms");
}

#[test]
fn children_of_the_same_parent_run_in_parallel() {
    let env = Env::new();
    env.workflow(
        "fan-out",
        r"max_parallel: 4
steps:
  - name: root
    command: 'true'
  - name: left
    needs: [root]
    command: sleep 0.6
  - name: right
    needs: [root]
    command: sleep 0.6
",
    );
    let run = run_ok(&env, "fan-out", &[]);
    assert!(overlap(&run, "left", "right"), "{run:#}");
    for child in ["left", "right"] {
        assert!(time(&run, child, "started_at") >= time(&run, "root", "finished_at"));
    }
}

#[test]
fn max_parallel_one_runs_steps_one_at_a_time() {
    let env = Env::new();
    env.workflow(
        "serial",
        r"max_parallel: 1
steps:
  - name: a
    needs: []
    command: sleep 0.3
  - name: b
    needs: []
    command: sleep 0.3
  - name: c
    needs: []
    command: sleep 0.3
",
    );
    let run = run_ok(&env, "serial", &[]);
    for (x, y) in [("a", "b"), ("a", "c"), ("b", "c")] {
        assert!(!overlap(&run, x, y), "{x} and {y} overlapped: {run:#}");
    }
}

#[test]
fn a_step_with_two_needs_starts_after_both() {
    let env = Env::new();
    env.workflow(
        "fan-in",
        r"max_parallel: 4
steps:
  - name: quick
    needs: []
    command: sleep 0.1
  - name: slow
    needs: []
    command: sleep 0.5
  - name: join
    needs: [quick, slow]
    command: echo joined
",
    );
    let run = run_ok(&env, "fan-in", &[]);
    let start = time(&run, "join", "started_at");
    assert!(start >= time(&run, "quick", "finished_at"), "{run:#}");
    assert!(start >= time(&run, "slow", "finished_at"), "{run:#}");
    assert_eq!(step(&run, "join")["stdout"], "joined\n");
}

#[test]
fn without_needs_a_step_depends_on_the_one_before() {
    let env = Env::new();
    env.workflow(
        "seq",
        r"max_parallel: 4
steps:
  - name: first
    command: sleep 0.3
  - name: second
    command: 'true'
  - name: third
    needs: []
    command: 'true'
",
    );
    let shown = env.claw(&["workflow", "show", "seq", "--json"]);
    let shown = shown.expect_code(0).json();
    let needs = needs_of(&shown);
    assert_eq!(
        needs,
        vec![
            ("first".to_owned(), serde_json::json!([])),
            ("second".to_owned(), serde_json::json!(["first"])),
            ("third".to_owned(), serde_json::json!([])),
        ]
    );
    let run = run_ok(&env, "seq", &[]);
    assert!(time(&run, "second", "started_at") >= time(&run, "first", "finished_at"));
    // `needs: []` made `third` a root: it did not wait for `first`.
    assert!(time(&run, "third", "started_at") < time(&run, "first", "finished_at"));
}

#[test]
fn a_failed_dependency_skips_its_dependents_but_not_other_branches() {
    let env = Env::new();
    let other = env.path("other-branch");
    env.workflow(
        "branches",
        &format!(
            "max_parallel: 1
steps:
  - name: bad
    needs: []
    command: exit 1
    on_failure: continue
  - name: child
    needs: [bad]
    command: echo child
  - name: other
    needs: []
    on_failure: continue
    command: touch {}
",
            other.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "branches", "--json"]);
    ran.expect_code(1);
    let run = ran.json();
    assert_eq!(step(&run, "child")["status"], "skipped");
    assert_eq!(step(&run, "other")["status"], "succeeded");
    assert!(other.exists());
}

#[test]
fn outputs_pass_between_steps() {
    let env = Env::new();
    env.workflow(
        "outs",
        r#"steps:
  - name: build
    command: |
      echo version=1.2.3 >> "$CLAW_OUTPUT"
      echo "url=http://x/?a=b" >> "$CLAW_OUTPUT"
  - name: use
    command: printf '%s;%s\n' ${{ steps.build.outputs.version }} ${{ steps.build.outputs.url }}
"#,
    );
    let run = run_ok(&env, "outs", &[]);
    assert_eq!(
        step(&run, "build")["outputs"],
        serde_json::json!({"version": "1.2.3", "url": "http://x/?a=b"})
    );
    assert_eq!(step(&run, "use")["stdout"], "1.2.3;http://x/?a=b\n");
}

#[test]
fn outputs_of_a_hyphenated_step_name() {
    let env = Env::new();
    env.workflow(
        "hyphen",
        r#"steps:
  - name: git-pull
    command: echo rev=abc123 >> "$CLAW_OUTPUT"
  - name: use
    command: echo ${{ steps.git-pull.outputs.rev }}
"#,
    );
    let run = run_ok(&env, "hyphen", &[]);
    assert_eq!(step(&run, "use")["stdout"], "abc123\n", "{run:#}");
}

#[test]
fn multi_line_outputs() {
    let env = Env::new();
    env.workflow(
        "heredoc",
        r#"steps:
  - name: gen
    command: printf 'notes<<EOF\nline one\nline two\nEOF\nafter=yes\n' >> "$CLAW_OUTPUT"
  - name: use
    command: printf '[%s]\n' ${{ steps.gen.outputs.notes }}
"#,
    );
    let run = run_ok(&env, "heredoc", &[]);
    assert_eq!(
        step(&run, "gen")["outputs"],
        serde_json::json!({"notes": "line one\nline two", "after": "yes"})
    );
    assert_eq!(step(&run, "use")["stdout"], "[line one\nline two]\n");
}

#[test]
fn json_outputs_parse_stdout() {
    let env = Env::new();
    env.workflow(
        "jsonout",
        r#"steps:
  - name: probe
    outputs: json
    command: >-
      echo '{"count": 5, "name": "web", "nested": {"ok": true}}'
  - name: use
    command: echo ${{ steps.probe.outputs.count }} ${{ steps.probe.outputs.name }} ${{ steps.probe.outputs.nested.ok }}
"#,
    );
    let run = run_ok(&env, "jsonout", &[]);
    assert_eq!(
        step(&run, "probe")["outputs"],
        serde_json::json!({"count": 5, "name": "web", "nested": {"ok": true}})
    );
    let out = step(&run, "use")["stdout"].as_str().unwrap_or_default();
    assert!(out.starts_with("5 web "), "{out:?}");
}

#[test]
fn json_outputs_that_are_not_an_object_fail_the_step() {
    let env = Env::new();
    env.workflow(
        "jsonbad",
        "steps:\n  - name: probe\n    outputs: json\n    command: echo '[1, 2]'\n",
    );
    let ran = env.claw(&["workflow", "run", "jsonbad", "--json"]);
    ran.expect_code(1);
    let run = ran.json();
    let msg = step(&run, "probe")["message"].as_str().unwrap_or_default();
    assert!(msg.contains("JSON object"), "{msg}");
}

#[test]
fn a_false_if_skips_the_step() {
    let env = Env::new();
    let marker = env.path("deployed");
    env.workflow(
        "iffy",
        &format!(
            "params:
  target: {{type: string, default: staging}}
steps:
  - name: prod-only
    if: ${{{{ params.target == 'prod' }}}}
    command: touch {}
  - name: staging-only
    if: ${{{{ params.target == 'staging' }}}}
    command: echo staging
",
            marker.display()
        ),
    );
    let run = run_ok(&env, "iffy", &[]);
    assert_eq!(step(&run, "prod-only")["status"], "skipped");
    assert_eq!(step(&run, "prod-only")["message"], "condition not met");
    assert!(!marker.exists());
    assert_eq!(step(&run, "staging-only")["status"], "succeeded");

    let run = run_ok(&env, "iffy", &["-p", "target=prod"]);
    assert_eq!(step(&run, "prod-only")["status"], "succeeded");
    assert_eq!(step(&run, "staging-only")["status"], "skipped");
    assert!(marker.exists());
}

#[test]
fn workflow_outputs_are_recorded_on_the_run() {
    let env = Env::new();
    env.workflow(
        "wfout",
        r#"outputs:
  version: ${{ steps.build.outputs.version }}
  summary: "built ${{ steps.build.outputs.version }} for ${{ params.target }}"
params:
  target: {type: string, default: web}
steps:
  - name: build
    command: echo version=2.0 >> "$CLAW_OUTPUT"
"#,
    );
    let run = run_ok(&env, "wfout", &[]);
    assert_eq!(
        run["outputs"],
        serde_json::json!({"version": "2.0", "summary": "built 2.0 for web"})
    );
}

/// docs/workflows.md: printing a value that does not exist fails the step, naming the expression.
#[test]
fn printing_a_missing_output_fails_the_step() {
    let env = Env::new();
    let marker = env.path("ran");
    env.workflow(
        "typo",
        &format!(
            r#"steps:
  - name: build
    command: echo version=1 >> "$CLAW_OUTPUT"
  - name: ship
    command: echo ${{{{ steps.build.outputs.verison }}}}; touch {}
"#,
            marker.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "typo", "--json"]);
    ran.expect_code(1);
    let run = ran.json();
    let ship = step(&run, "ship");
    assert_eq!(ship["status"], "failed");
    let msg = ship["message"].as_str().unwrap_or_default();
    assert!(msg.contains("steps.build.outputs.verison"), "{msg}");
    assert!(!marker.exists(), "the command ran with a missing value");
}

#[test]
fn a_missing_output_can_be_tested_in_a_condition() {
    let env = Env::new();
    env.workflow(
        "defined",
        r#"steps:
  - name: probe
    command: echo found=1 >> "$CLAW_OUTPUT"
  - name: if-missing
    if: ${{ steps.probe.outputs.other is defined }}
    command: echo no
  - name: if-present
    if: ${{ steps.probe.outputs.found is defined }}
    command: echo yes
"#,
    );
    let run = run_ok(&env, "defined", &[]);
    assert_eq!(step(&run, "if-missing")["status"], "skipped");
    assert_eq!(step(&run, "if-present")["status"], "succeeded");
}
