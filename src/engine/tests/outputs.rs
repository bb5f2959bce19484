//! Outputs passed between steps (`$CLAW_OUTPUT`, `outputs: json`), workflow `outputs:`, and what
//! a step finds in its environment and its rendered command.

use super::*;
use crate::store::RunStatus;

#[test]
fn outputs_flow_from_step_to_step_and_into_the_workflow_outputs() {
    // The example of docs/workflows.md, "Outputs", plus a summary.
    let h = Harness::new();
    let done = h.run(
        r#"name: outputs-demo
steps:
  - name: build
    command: |
      echo "version=1.4.2" >> "$CLAW_OUTPUT"
      {
        echo "notes<<EOF"
        printf 'line one\nline two\n'
        echo "EOF"
      } >> "$CLAW_OUTPUT"
  - name: inspect
    outputs: json
    command: |
      echo '{"ok": true, "count": 3}'
  - name: use
    command: echo "v${{ steps.build.outputs.version }}, ${{ steps.inspect.outputs.count }} items"
outputs:
  version: ${{ steps.build.outputs.version }}
  summary: "${{ steps.build.outputs.notes | replace('\n', ' / ') }} (${{ steps.inspect.outputs.count }})"
"#,
    );
    assert_eq!(done.run.status, RunStatus::Succeeded, "{:#?}", done.steps);
    assert_eq!(
        done.step("build").outputs,
        serde_json::json!({"version": "1.4.2", "notes": "line one\nline two"})
    );
    assert_eq!(
        done.step("inspect").outputs,
        serde_json::json!({"ok": true, "count": 3})
    );
    assert_eq!(done.step("use").stdout_tail, "v1.4.2, 3 items\n");
    assert_eq!(done.step("use").outputs, serde_json::json!({}));
    assert_eq!(
        done.run.outputs,
        serde_json::json!({"version": "1.4.2", "summary": "line one / line two (3)"})
    );
}

#[test]
fn a_run_without_workflow_outputs_stores_an_empty_object() {
    let h = Harness::new();
    let done = h.run("steps:\n  - name: a\n    command: echo k=v >> \"$CLAW_OUTPUT\"\n");
    assert_eq!(done.step("a").outputs, serde_json::json!({"k": "v"}));
    assert_eq!(done.run.outputs, serde_json::json!({}));
}

#[test]
fn workflow_outputs_are_evaluated_when_a_run_fails_too() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: a
    command: echo sha=abc123 >> \"$CLAW_OUTPUT\"
  - name: b
    command: 'false'
outputs:
  sha: ${{ steps.a.outputs.sha }}
  status: ${{ steps.b.status }}
  missing: ${{ steps.a.outputs.nope }}
",
    );
    assert_eq!(done.run.status, RunStatus::Failed);
    // A value that does not render is null; the others are there.
    assert_eq!(
        done.run.outputs,
        serde_json::json!({"sha": "abc123", "status": "failed", "missing": null})
    );
}

#[test]
fn a_malformed_output_line_fails_the_step() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: bad
    command: printf 'version=1\\nnovalue\\n' >> \"$CLAW_OUTPUT\"
  - name: unclosed
    needs: []
    command: printf 'notes<<END\\nnever closed\\n' >> \"$CLAW_OUTPUT\"
",
    );
    let bad = done.step("bad");
    assert_eq!(bad.status, StepStatus::Failed);
    assert_eq!(bad.exit_code, Some(0));
    assert_eq!(
        bad.message.as_deref(),
        Some("$CLAW_OUTPUT line 2: expected `key=value` or `key<<DELIMITER`, found `novalue`")
    );
    assert_eq!(
        done.message("unclosed"),
        "$CLAW_OUTPUT line 1: `notes<<END` is never closed by a line `END`"
    );
}

#[test]
fn json_outputs_need_an_object() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: list
    outputs: json
    command: echo '[1, 2]'
  - name: text
    needs: []
    outputs: json
    command: echo not json
",
    );
    assert_eq!(done.status("list"), StepStatus::Failed);
    assert_eq!(
        done.message("list"),
        "`outputs: json` needs stdout to be a JSON object, but it is an array"
    );
    assert!(
        done.message("text")
            .starts_with("`outputs: json` needs stdout to be a JSON object: "),
        "{}",
        done.message("text")
    );
}

#[test]
fn a_step_sees_the_run_in_its_environment() {
    let h = Harness::new();
    let wf = h.load(
        "name: envy
params:
  target: {type: string, default: staging}
env:
  LEVEL: workflow
  WHERE: ${{ params.target }}
steps:
  - name: show
    env:
      LEVEL: step
    args:
      some-key: 42
    command: |
      printf '%s\\n' \"$CLAW_RUN_ID\" \"$CLAW_WORKFLOW\" \"$CLAW_STEP\" \"$CLAW_ATTEMPT\" \\
        \"$CLAW_IDEMPOTENCY_KEY\" \"$CLAW_PARAM_TARGET\" \"$WF_SOME_KEY\" \"$LEVEL\" \"$WHERE\"
      test -n \"$CLAW_OUTPUT\"
",
    );
    let run = h.create(&wf, serde_json::json!({"target": "prod"}), false);
    let rec = Recorder::default();
    let done = h.finished(
        block_on(
            h.engine
                .drive_loaded(&run.id, Some(&wf), &CancellationToken::new(), &rec),
        ),
        &rec,
    );
    assert_eq!(done.run.status, RunStatus::Succeeded, "{:#?}", done.steps);
    let id = &run.id;
    assert_eq!(
        done.step("show").stdout_tail,
        format!("{id}\nenvy\nshow\n1\n{id}/show/1\nprod\n42\nstep\nprod\n")
    );
}

#[test]
fn a_value_in_a_command_is_one_piece_of_data() {
    let h = Harness::new();
    let tricky = "it's $HOME; `id` \"quoted\" $(echo no)";
    let done = h.run_with(
        r#"params:
  msg: {type: string}
steps:
  - name: three-ways
    command: |
      printf '%s\n' ${{ params.msg }}
      printf '%s\n' "${{ params.msg }}"
      printf '%s\n' '${{ params.msg }}'
"#,
        serde_json::json!({"msg": tricky}),
        false,
    );
    assert_eq!(
        done.step("three-ways").stdout_tail,
        format!("{tricky}\n{tricky}\n{tricky}\n")
    );
}

#[test]
fn each_step_sees_the_outputs_of_every_step_finished_before_it_in_a_long_chain() {
    // The context is kept up to date step by step (not rebuilt): every link must see the value
    // its predecessor produced, and a skipped step's entry must say so.
    let mut yaml = String::from("name: chain\nsteps:\n  - name: s0\n    command: echo 0\n");
    for i in 1..120 {
        yaml.push_str(&format!(
            "  - name: s{i}\n    command: expr ${{{{ steps.s{p}.stdout | trim }}}} + 1\n",
            p = i - 1
        ));
    }
    yaml.push_str(
        "  - name: never\n    if: ${{ steps.s119.stdout | trim == '0' }}\n    command: echo no\n",
    );
    yaml.push_str(
        "  - name: last\n    command: echo ${{ steps.never.status }}-${{ steps.s119.exit_code }}\n",
    );
    let h = Harness::new();
    let done = h.run(&yaml);
    assert_eq!(done.run.status, RunStatus::Succeeded, "{:#?}", done.run);
    assert_eq!(done.step("s119").stdout_tail, "119\n");
    assert_eq!(done.step("never").status, StepStatus::Skipped);
    assert_eq!(done.step("last").stdout_tail, "skipped-0\n");
}
