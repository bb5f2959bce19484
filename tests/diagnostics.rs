//! `claw workflow validate` on broken files: the full rendered text of every problem (file, line,
//! column, the source line with a caret, a suggestion), every problem of a file at once, several
//! files at once, and exit status 2. Validation runs nothing.

use pretty_assertions::assert_eq;

use crate::common::*;

/// Writes `name` in the test's directory (the working directory of `claw`), validates it by its
/// relative path, and returns what was printed.
fn validate(env: &Env, name: &str, yaml: &str) -> Ran {
    env.write(name, yaml);
    env.claw(&["workflow", "validate", name])
}

/// Validation failed with exactly this text on stderr (and nothing on stdout).
#[track_caller]
fn assert_fails_with(ran: &Ran, stderr: &str) {
    assert_eq!(ran.stderr, stderr);
    assert_eq!(ran.stdout, "");
    ran.expect_code(2);
}

#[test]
fn unknown_key_with_a_suggestion() {
    let env = Env::new();
    let ran = validate(
        &env,
        "key.yaml",
        "name: key
steps:
  - name: build
    command: make
  - name: test
    neds: [build]
    command: make test
",
    );
    assert_fails_with(
        &ran,
        r"error: key.yaml:6:5: unknown key `neds` in step `test`
  |
6 |     neds: [build]
  |     ^
  = help: did you mean `needs`?

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn unknown_step_type_with_a_suggestion() {
    let env = Env::new();
    let ran = validate(
        &env,
        "type.yaml",
        "steps:
  - name: ok
    command: 'true'
  - name: build
    type: shel
    command: make
",
    );
    assert_fails_with(
        &ran,
        r"error: type.yaml:5:11: unknown step type `shel` (expected one of: shell, llm, claude_prompt, skill, http, ssh, browser, approval, approval_gate, notify, workflow, auto_agent, memory)
  |
5 |     type: shel
  |           ^
  = help: did you mean `shell`?

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn duplicate_step_names() {
    let env = Env::new();
    let ran = validate(
        &env,
        "dup.yaml",
        "steps:
  - name: build
    command: make
  - name: build
    command: make again
",
    );
    assert_fails_with(
        &ran,
        r"error: dup.yaml:4:5: duplicate step name `build` (first used at line 2): step names must be unique
  |
4 |   - name: build
  |     ^

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn unknown_needs_target_with_a_suggestion() {
    let env = Env::new();
    let ran = validate(
        &env,
        "needs.yaml",
        "steps:
  - name: build
    command: make
  - name: test
    needs: [biuld]
    command: make test
",
    );
    assert_fails_with(
        &ran,
        r"error: needs.yaml:5:13: `needs` names an unknown step `biuld`
  |
5 |     needs: [biuld]
  |             ^
  = help: did you mean `build`?

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn a_dependency_cycle() {
    let env = Env::new();
    let ran = validate(
        &env,
        "cycle.yaml",
        "steps:
  - name: a
    needs: [b]
    command: echo a
  - name: b
    needs: [a]
    command: echo b
",
    );
    assert_fails_with(
        &ran,
        r"error: cycle.yaml:5:5: dependency cycle: b → a → b
  |
5 |   - name: b
  |     ^

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn a_bad_duration() {
    let env = Env::new();
    let ran = validate(
        &env,
        "dur.yaml",
        "steps:\n  - name: a\n    timeout: 5x\n    command: echo a\n",
    );
    assert_fails_with(
        &ran,
        r"error: dur.yaml:3:14: invalid duration for `timeout`: unknown unit `x` in `5x` (expected ms, s, m, h or d)
  |
3 |     timeout: 5x
  |              ^

0 of 1 workflow file(s) valid
",
    );
}

/// The message itself comes from the expression module, so only its frame is pinned here.
#[test]
fn a_bad_expression() {
    let env = Env::new();
    let ran = validate(
        &env,
        "expr.yaml",
        "steps:\n  - name: a\n    command: echo ${{ params.x + }}\n",
    );
    ran.expect_code(2);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: expr.yaml:3:") && lines[0].contains("invalid expression"),
        "{}",
        ran.stderr
    );
    assert_eq!(lines[1], "  |");
    assert_eq!(lines[2], "3 |     command: echo ${{ params.x + }}");
    assert!(
        lines[3].starts_with("  | ") && lines[3].ends_with('^'),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.ends_with("\n\n0 of 1 workflow file(s) valid\n"),
        "{}",
        ran.stderr
    );
}

#[test]
fn an_expression_naming_an_unknown_step() {
    let env = Env::new();
    let ran = validate(
        &env,
        "ref.yaml",
        "steps:
  - name: build
    command: make
  - name: ship
    command: echo ${{ steps.biuld.outputs.version }}
",
    );
    assert_fails_with(
        &ran,
        r"error: ref.yaml:5:23: expression refers to an unknown step `biuld`
  |
5 |     command: echo ${{ steps.biuld.outputs.version }}
  |                       ^
  = help: did you mean `build`?

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn a_missing_command() {
    let env = Env::new();
    let ran = validate(
        &env,
        "nocmd.yaml",
        "steps:
  - name: build
    command: make
  - name: test
    timeout: 10
",
    );
    assert_fails_with(
        &ran,
        r"error: nocmd.yaml:4:5: step `test` has no `command`
  |
4 |   - name: test
  |     ^

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn a_lone_step_without_command_is_one_problem() {
    let env = Env::new();
    let ran = validate(
        &env,
        "lone.yaml",
        "steps:\n  - name: test\n    timeout: 10\n",
    );
    assert_fails_with(
        &ran,
        r"error: lone.yaml:2:5: step `test` has no `command`
  |
2 |   - name: test
  |     ^

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn a_lone_step_of_unknown_type_is_one_problem() {
    let env = Env::new();
    let ran = validate(
        &env,
        "lonetype.yaml",
        "steps:\n  - name: build\n    type: shel\n    command: make\n",
    );
    assert_fails_with(
        &ran,
        r"error: lonetype.yaml:3:11: unknown step type `shel` (expected one of: shell, llm, claude_prompt, skill, http, ssh, browser, approval, approval_gate, notify, workflow, auto_agent, memory)
  |
3 |     type: shel
  |           ^
  = help: did you mean `shell`?

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn every_problem_of_a_file_at_once_sorted_by_line() {
    let env = Env::new();
    let ran = validate(
        &env,
        "multi.yaml",
        "name: multi
timeout: 5x
steps:
  - name: a
    comand: echo a
    command: echo a
  - name: b
    needs: [c]
    command: echo ${{ steps.nope.outputs.x }}
  - name: a
    command: echo dup
  - name: d
    on_failure: contine
    command: echo d
",
    );
    assert_fails_with(
        &ran,
        r"error: multi.yaml:2:10: invalid duration for `timeout`: unknown unit `x` in `5x` (expected ms, s, m, h or d)
  |
2 | timeout: 5x
  |          ^

error: multi.yaml:5:5: unknown key `comand` in step `a`
  |
5 |     comand: echo a
  |     ^
  = help: did you mean `command`?

error: multi.yaml:8:13: `needs` names an unknown step `c`
  |
8 |     needs: [c]
  |             ^

error: multi.yaml:9:23: expression refers to an unknown step `nope`
  |
9 |     command: echo ${{ steps.nope.outputs.x }}
  |                       ^

error: multi.yaml:10:5: duplicate step name `a` (first used at line 4): step names must be unique
   |
10 |   - name: a
   |     ^

error: multi.yaml:13:17: unknown on_failure `contine` (expected abort, continue or rollback)
   |
13 |     on_failure: contine
   |                 ^
   = help: did you mean `continue`?

0 of 1 workflow file(s) valid
",
    );
}

#[test]
fn several_files_at_once() {
    let env = Env::new();
    env.write("good.yaml", "steps:\n  - name: ok\n    command: 'true'\n");
    env.write(
        "key.yaml",
        "steps:\n  - name: a\n    comand: echo a\n    command: echo a\n",
    );
    env.write(
        "dup.yaml",
        "steps:\n  - name: a\n    command: echo a\n  - name: a\n    command: echo b\n",
    );
    let ran = env.claw(&["workflow", "validate", "good.yaml", "key.yaml", "dup.yaml"]);
    ran.expect_code(2);
    assert_eq!(ran.stdout, "ok: good.yaml (1 steps)\n");
    assert_eq!(
        ran.stderr,
        r"error: key.yaml:3:5: unknown key `comand` in step `a`
  |
3 |     comand: echo a
  |     ^
  = help: did you mean `command`?

error: dup.yaml:4:5: duplicate step name `a` (first used at line 2): step names must be unique
  |
4 |   - name: a
  |     ^

1 of 3 workflow file(s) valid
"
    );
}

#[test]
fn valid_files_exit_zero_with_a_summary() {
    let env = Env::new();
    env.write("one.yaml", "steps:\n  - name: ok\n    command: 'true'\n");
    env.write(
        "two.yaml",
        "steps:\n  - name: a\n    command: 'true'\n  - name: b\n    command: 'true'\n",
    );
    let ran = env.claw(&["workflow", "validate", "one.yaml", "two.yaml"]);
    ran.expect_code(0);
    assert_eq!(
        ran.stdout,
        "ok: one.yaml (1 steps)\nok: two.yaml (2 steps)\n2 of 2 workflow file(s) valid\n"
    );
}

#[test]
fn without_arguments_every_workflow_is_checked() {
    let env = Env::new();
    env.workflow("fine", "steps:\n  - name: ok\n    command: 'true'\n");
    env.workflow(
        "broken",
        "steps:\n  - name: ok\n    command: 'true'\n    timeout: soon\n",
    );
    let ran = env.claw(&["workflow", "validate"]);
    ran.expect_code(2);
    assert!(ran.stdout.contains("fine.yaml (1 steps)"), "{}", ran.stdout);
    assert!(
        ran.stderr.contains("broken.yaml:4:14: invalid duration"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.ends_with("1 of 2 workflow file(s) valid\n"),
        "{}",
        ran.stderr
    );
}

#[test]
fn json_lists_each_problem_with_its_place() {
    let env = Env::new();
    env.write(
        "needs.yaml",
        "steps:\n  - name: build\n    command: make\n  - name: test\n    needs: [biuld]\n    command: make test\n",
    );
    let ran = env.claw(&["workflow", "validate", "--json", "needs.yaml"]);
    ran.expect_code(2);
    assert_eq!(
        ran.json(),
        serde_json::json!([{
            "path": "needs.yaml",
            "valid": false,
            "problems": [{
                "line": 5,
                "column": 13,
                "message": "`needs` names an unknown step `biuld`",
                "help": "did you mean `build`?",
            }],
        }])
    );
}

#[test]
fn validation_runs_no_step() {
    let env = Env::new();
    let marker = env.path("ran");
    env.workflow(
        "touchy",
        &format!(
            "steps:\n  - name: touch\n    command: touch {}\n",
            marker.display()
        ),
    );
    env.claw(&["workflow", "validate", "touchy"]).expect_code(0);
    assert!(!marker.exists(), "validate ran a step");
    assert_eq!(
        env.claw(&["run", "list", "--json"]).json(),
        serde_json::json!([])
    );
}

#[test]
fn an_invalid_workflow_never_runs() {
    let env = Env::new();
    let marker = env.path("ran");
    env.workflow(
        "half",
        &format!(
            "steps:\n  - name: first\n    command: touch {}\n  - name: second\n    needs: [nope]\n    command: 'true'\n",
            marker.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "half"]);
    ran.expect_code(2);
    assert!(
        ran.stderr
            .contains("half.yaml:5:13: `needs` names an unknown step `nope`"),
        "{}",
        ran.stderr
    );
    assert!(!marker.exists(), "a step of an invalid workflow ran");
    assert_eq!(
        env.claw(&["run", "list", "--json"]).json(),
        serde_json::json!([])
    );
}

/// Every name an expression reads is checked against the workflow, with the caret on the name:
/// params, step names and fields, whether the step has run by then, `run` and `trigger` fields,
/// and the context's top-level names. The run would otherwise fail at that step.
#[test]
fn expression_references_are_checked_with_the_caret_on_the_name() {
    let env = Env::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "params:\n  who: {type: string, default: x}\nsteps:\n  - name: a\n    command: echo hi ${{ params.whom }}\n",
            "5:26: `params.whom` is not a param of this workflow (it declares: who)",
            "= help: did you mean `who`?",
        ),
        (
            "steps:\n  - name: use\n    command: 'true'\n  - name: b\n    command: |\n      echo one\n      echo ${{ step.use.stdout }}\n",
            "7:16: unknown name `step` in an expression",
            "= help: did you mean `steps`?",
        ),
        (
            "steps:\n  - name: a\n    needs: []\n    command: echo ${{ steps.b.stdout }}\n  - name: b\n    needs: []\n    command: 'true'\n",
            "4:23: step `a` reads `steps.b`, but `b` is not among the steps it needs, so it may not have run yet",
            "= help: add `b` to the `needs:` of `a`",
        ),
        (
            "steps:\n  - name: a\n    command: 'true'\n  - name: b\n    if: steps.a.statu == 'succeeded'\n    command: 'true'\n",
            "5:9: `steps.a.statu`: a step has no field `statu`",
            "= help: did you mean `status`?",
        ),
        (
            "steps:\n  - name: a\n    command: echo \"${{ run.idd }}\" ${{ trigger.hoook }}\n",
            "3:24: `run.idd`: `run` has no field `idd`",
            "= help: did you mean `id`?",
        ),
        (
            "steps:\n  - name: a\n    command: echo ${{ trigger.hoook }}\n",
            "3:23: `trigger.hoook`: `trigger` has no field `hoook`",
            "= help: did you mean `hook`?",
        ),
        (
            "steps:\n  - name: a\n    command: echo ${{ steps.a.stdout }}\n",
            "3:23: step `a` reads its own result",
            "",
        ),
    ];
    for (i, (yaml, first, help)) in cases.iter().enumerate() {
        let file = format!("r{i}.yaml");
        let ran = validate(&env, &file, yaml);
        ran.expect_code(2);
        assert!(
            ran.stderr.contains(&format!("error: {file}:{first}")),
            "case {i}: {}",
            ran.stderr
        );
        assert!(ran.stderr.contains(help), "case {i}: {}", ran.stderr);
    }
    // What is fine: a later step reading an earlier one through a chain of needs, a rollback
    // reading its own step, outputs reading any step, filters, tests and functions, trigger
    // fields, and names that are only known at run time.
    let ran = validate(
        &env,
        "fine.yaml",
        "params:\n  who: {type: string, default: x}\nsteps:\n  - name: a\n    command: echo ${{ params.who | upper }}\n    rollback: echo ${{ steps.a.outputs.f | default('') }}\n  - name: b\n    command: echo ${{ steps.a.stdout | trim }}\n  - name: c\n    if: steps.a.status == 'succeeded' and trigger.type is defined and run.dry_run is not true\n    command: echo ${{ range(3) | join(',') }} ${{ steps[params.who] is defined }} ${{ env.HOME }}\noutputs:\n  last: ${{ steps.c.stdout }}\n",
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
}

/// A valid workflow that cannot run here says why without `--env` (and fails with it).
#[test]
fn validate_says_when_a_valid_workflow_cannot_run_here() {
    let env = Env::new();
    let yaml = "steps:\n  - name: brief\n    type: auto_agent\n    command: Summarise\n";
    let ran = validate(&env, "brief.yaml", yaml);
    ran.expect_code(0);
    assert!(
        ran.stderr
            .contains("note: brief.yaml: step `brief`: type `auto_agent` cannot run in this version of claw yet: a run fails there"),
        "{}",
        ran.stderr
    );
    let strict = env.claw(&["workflow", "validate", "brief.yaml", "--env"]);
    strict.expect_code(2);
}
