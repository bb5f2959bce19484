//! Unit tests of the workflow loader, through [`load_str`]: the defaults a file gets, the seed's
//! spellings, and every kind of diagnostic with its exact position and text. The end-to-end
//! rendering through `claw workflow validate` is in `tests/diagnostics.rs` and
//! `tests/bad_input.rs`.

use std::path::Path;
use std::time::Duration;

use pretty_assertions::assert_eq;

use super::{FileErrors, load_str};
use crate::workflow::{Condition, OnBusy, OnFailure, RetryPolicy, Step, Workflow};

const PATH: &str = "workflows/deploy.yaml";

#[track_caller]
fn load(yaml: &str) -> Workflow {
    load_str(Path::new(PATH), yaml.to_owned())
        .unwrap_or_else(|e| panic!("expected the file to load:\n{}", e.render()))
}

#[track_caller]
fn fails(yaml: &str) -> FileErrors {
    match load_str(Path::new(PATH), yaml.to_owned()) {
        Ok(wf) => panic!("expected problems, but it loaded: {:?}", wf.name),
        Err(e) => e,
    }
}

/// Every problem as `line:col: message`, with ` [help]` when there is one, in reported order.
#[track_caller]
fn problems(yaml: &str) -> Vec<String> {
    let errors = fails(yaml);
    assert_eq!(errors.path, Path::new(PATH));
    errors
        .diagnostics
        .iter()
        .map(|d| {
            let head = d.headline();
            let head = head
                .strip_prefix(&format!("{PATH}:"))
                .unwrap_or_else(|| panic!("not in {PATH}: {head}"));
            match &d.help {
                Some(h) => format!("{head} [{h}]"),
                None => head.to_owned(),
            }
        })
        .collect()
}

/// The one problem of a file.
#[track_caller]
fn problem(yaml: &str) -> String {
    let all = problems(yaml);
    assert_eq!(all.len(), 1, "expected one problem: {all:#?}");
    all.into_iter().next().unwrap_or_default()
}

#[track_caller]
fn step<'a>(wf: &'a Workflow, name: &str) -> &'a Step {
    wf.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step `{name}`"))
}

/// The names of the steps a step needs.
fn needs<'a>(wf: &'a Workflow, name: &str) -> Vec<&'a str> {
    step(wf, name)
        .needs
        .iter()
        .map(|&i| wf.steps[i].name.as_str())
        .collect()
}

// --- defaults ---------------------------------------------------------------------------------

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let text = "steps:
  - name: a
    command: echo a
  - name: b
    command: echo b
  - name: c
    needs: []
    command: echo c
";
    let wf = load(text);
    assert_eq!(wf.name, "deploy", "the name comes from the file's stem");
    assert_eq!(wf.description, "");
    assert_eq!(wf.path, Path::new(PATH));
    assert_eq!(wf.source, text);
    assert!(wf.params.is_empty() && wf.env.is_empty() && wf.outputs.is_empty());
    assert_eq!(wf.concurrency, None);
    assert_eq!(wf.timeout, None);
    assert_eq!(
        wf.max_parallel,
        std::thread::available_parallelism().map_or(2, usize::from)
    );
    assert!(wf.rollback.is_empty() && wf.schedules.is_empty() && wf.triggers.is_empty());
    let names: Vec<&str> = wf.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    for (i, s) in wf.steps.iter().enumerate() {
        assert_eq!(s.index, i);
        assert_eq!(s.kind.type_name(), "shell");
        assert_eq!(s.timeout, Duration::from_secs(300));
        assert_eq!(s.on_failure, OnFailure::Abort);
        assert_eq!(s.retry, RetryPolicy::NONE);
        assert_eq!(s.condition, None);
        assert_eq!(s.if_expr, None);
        assert!(
            !s.idempotent,
            "a shell step is not idempotent unless it says so"
        );
        assert!(s.compensation.is_none() && s.env.is_empty() && s.args.is_empty());
    }
    assert_eq!(step(&wf, "a").kind.describe(), "echo a");
    // Without `needs`, a step waits for the one before it; `needs: []` makes a root.
    assert!(needs(&wf, "a").is_empty());
    assert_eq!(needs(&wf, "b"), ["a"]);
    assert!(needs(&wf, "c").is_empty());
}

#[test]
fn the_name_key_overrides_the_stem() {
    let wf = load(
        "name: nightly-backup\ndescription: Back up\nsteps:\n  - name: a\n    command: 'true'\n",
    );
    assert_eq!(wf.name, "nightly-backup");
    assert_eq!(wf.description, "Back up");
}

#[test]
fn idempotent_defaults_per_kind() {
    let wf = load(
        "steps:
  - name: get
    type: http
    url: http://example.com/
  - name: head
    type: http
    method: head
    url: http://example.com/
  - name: post
    type: http
    method: POST
    url: http://example.com/
  - name: get-but-not
    type: http
    url: http://example.com/
    idempotent: false
  - name: shell
    command: 'true'
  - name: shell-yes
    command: 'true'
    idempotent: yes
  - name: think
    type: llm
    prompt: hello
  - name: tell
    type: notify
    profile: ops
    message: done
  - name: skill
    type: skill
    skill: backup
",
    );
    let idem = |n: &str| step(&wf, n).idempotent;
    assert!(idem("get"), "GET is safe");
    assert!(
        idem("head"),
        "HEAD is safe (the method is case-insensitive)"
    );
    assert!(!idem("post"));
    assert!(!idem("get-but-not"));
    assert!(!idem("shell"));
    assert!(idem("shell-yes"), "`yes` is a boolean where one is wanted");
    assert!(idem("think"));
    assert!(idem("tell"));
    assert!(!idem("skill"));
    assert_eq!(
        step(&wf, "head").kind.describe(),
        "HEAD http://example.com/"
    );
    assert_eq!(step(&wf, "skill").kind.describe(), "run skill backup");
}

#[test]
fn workflow_level_keys_are_read() {
    let wf = load(
        "params:
  target: {type: string, default: staging, enum: [staging, prod]}
  replicas: 2
  tag: {type: string}
env:
  LEVEL: info
concurrency: {limit: 2, on_busy: skip}
timeout: 2h30m
max_parallel: 3
outputs:
  where: ${{ params.target }}
steps:
  - name: a
    command: 'true'
    retry: {limit: 2, delay: 5s, backoff: 1.5, max_delay: 1m}
    timeout: 1m30s
",
    );
    let c = wf.concurrency.expect("concurrency");
    assert_eq!((c.limit, c.on_busy), (2, OnBusy::Skip));
    assert_eq!(wf.timeout, Some(Duration::from_secs(9000)));
    assert_eq!(wf.max_parallel, 3);
    assert_eq!(wf.env, [("LEVEL".to_owned(), "info".to_owned())]);
    assert_eq!(
        wf.outputs,
        [("where".to_owned(), "${{ params.target }}".to_owned())]
    );
    let names: Vec<(&str, bool)> = wf
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.required))
        .collect();
    assert_eq!(
        names,
        [("target", false), ("replicas", false), ("tag", true)]
    );
    assert_eq!(wf.params[1].default, Some(serde_json::json!(2)));
    let a = step(&wf, "a");
    assert_eq!(a.timeout, Duration::from_secs(90));
    assert_eq!(
        a.retry,
        RetryPolicy {
            limit: 2,
            delay: Duration::from_secs(5),
            backoff: 1.5,
            max_delay: Duration::from_secs(60),
        }
    );
    assert_eq!(
        load("concurrency: 1\nsteps:\n  - name: a\n    command: 'true'\n")
            .concurrency
            .map(|c| (c.limit, c.on_busy)),
        Some((1, OnBusy::Queue))
    );
}

// --- the seed's spellings ---------------------------------------------------------------------

#[test]
fn a_seed_workflow_loads_with_its_own_spellings() {
    let wf = load(
        "name: seed
steps:
  - name: check
    type: shell
    command: exit 0
    timeout: 30
    on_failure: rollback
    args:
      target: prod
  - name: approve
    type: approval_gate
    args:
      prompt: Deploy now?
  - name: summarise
    type: claude_prompt
    command: summarise the run
    condition: previous.ok
  - name: retried
    command: 'true'
    retry: 3
rollback:
  - name: undo
    command: echo undo
",
    );
    let check = step(&wf, "check");
    assert_eq!(check.timeout, Duration::from_secs(30), "integer seconds");
    assert_eq!(check.on_failure, OnFailure::Rollback);
    assert_eq!(
        check.args,
        [("target".to_owned(), serde_json::json!("prod"))]
    );
    let approve = step(&wf, "approve");
    assert_eq!(approve.kind.type_name(), "approval");
    assert_eq!(approve.kind.describe(), "Deploy now?");
    let summarise = step(&wf, "summarise");
    assert_eq!(summarise.kind.type_name(), "llm");
    assert_eq!(summarise.kind.describe(), "summarise the run");
    assert!(summarise.idempotent, "an llm step is idempotent by default");
    assert_eq!(summarise.condition, Some(Condition::PreviousOk));
    assert_eq!(needs(&wf, "summarise"), ["approve"]);
    let retried = step(&wf, "retried");
    assert_eq!(retried.retry.limit, 3);
    assert_eq!(retried.retry.delay, Duration::from_secs(1));
    assert_eq!(wf.rollback.len(), 1);
    assert_eq!(wf.rollback[0].name, "undo");
    assert_eq!(wf.rollback[0].kind.describe(), "echo undo");
}

#[test]
fn an_approval_gate_without_a_message_asks_about_its_step() {
    let wf = load("steps:\n  - name: go\n    type: approval\n");
    assert_eq!(step(&wf, "go").kind.describe(), "Approve step 'go'?");
}

#[test]
fn a_previous_condition_adds_the_step_before_to_explicit_needs() {
    let wf = load(
        "steps:
  - name: a
    command: 'true'
  - name: b
    needs: []
    command: 'true'
  - name: c
    needs: [a]
    condition: previous.failed
    command: 'true'
  - name: d
    needs: []
    condition: always
    command: 'true'
",
    );
    assert_eq!(needs(&wf, "c"), ["a", "b"]);
    assert_eq!(step(&wf, "c").condition, Some(Condition::PreviousFailed));
    assert!(needs(&wf, "d").is_empty(), "`always` adds nothing");
    assert_eq!(step(&wf, "d").condition, Some(Condition::Always));
}

#[test]
fn compensations_get_their_owner_name() {
    let wf = load(
        "steps:
  - name: reserve
    command: 'true'
    rollback: echo release
  - name: charge
    command: 'true'
    rollback:
      command: echo refund
      timeout: 30s
",
    );
    let reserve = step(&wf, "reserve")
        .compensation
        .as_deref()
        .expect("compensation");
    assert_eq!(reserve.name, "reserve-compensate");
    assert_eq!(reserve.kind.describe(), "echo release");
    assert_eq!(reserve.on_failure, OnFailure::Continue);
    let charge = step(&wf, "charge")
        .compensation
        .as_deref()
        .expect("compensation");
    assert_eq!(charge.name, "charge-compensate");
    assert_eq!(charge.timeout, Duration::from_secs(30));
}

// --- diagnostics, one kind at a time ------------------------------------------------------------

#[test]
fn an_unknown_step_key_is_reported_with_a_suggestion() {
    let yaml = "steps:
  - name: build
    command: make
  - name: test
    neds: [build]
    command: make test
";
    assert_eq!(
        problem(yaml),
        "5:5: unknown key `neds` in step `test` [did you mean `needs`?]"
    );
    // The full rendering, as `claw workflow validate` prints it.
    assert_eq!(
        fails(yaml).render(),
        "error: workflows/deploy.yaml:5:5: unknown key `neds` in step `test`
  |
5 |     neds: [build]
  |     ^
  = help: did you mean `needs`?
"
    );
}

#[test]
fn an_unknown_top_level_key_is_reported_with_a_suggestion() {
    assert_eq!(
        problems("stpes:\n  - name: a\n    command: 'true'\n"),
        [
            "1:1: unknown key `stpes` in the workflow [did you mean `steps`?]",
            "1:1: the workflow has no `steps:`",
        ]
    );
}

#[test]
fn a_key_of_another_kind_is_unknown_for_this_one() {
    assert_eq!(
        problem("steps:\n  - name: a\n    command: 'true'\n    url: http://x/\n"),
        "4:5: unknown key `url` in step `a`"
    );
}

#[test]
fn bad_durations() {
    assert_eq!(
        problem("steps:\n  - name: a\n    timeout: 5x\n    command: echo a\n"),
        "3:14: invalid duration for `timeout`: unknown unit `x` in `5x` (expected ms, s, m, h or d)"
    );
    assert_eq!(
        problem("steps:\n  - name: a\n    timeout: 0\n    command: echo a\n"),
        "3:14: invalid duration for `timeout`: must be greater than zero (expected seconds or e.g. 30s, 5m, 1h, 2h30m)"
    );
    assert_eq!(
        problem("timeout: soon\nsteps:\n  - name: a\n    command: echo a\n"),
        "1:10: invalid duration for `timeout`: `soon` is not a duration (expected e.g. 30s, 5m, 1h, 2h30m)"
    );
    assert_eq!(
        problem("steps:\n  - name: a\n    command: echo a\n    retry: {limit: 2, delay: 5 s}\n"),
        "4:30: invalid duration for `retry.delay`: unknown unit ` s` in `5 s` (expected ms, s, m, h or d)"
    );
}

#[test]
fn an_unknown_needs_target_is_reported_with_a_suggestion() {
    assert_eq!(
        problem(
            "steps:
  - name: build
    command: make
  - name: test
    needs: [biuld]
    command: make test
"
        ),
        "5:13: `needs` names an unknown step `biuld` [did you mean `build`?]"
    );
}

#[test]
fn a_step_cannot_need_itself() {
    assert_eq!(
        problem("steps:\n  - name: a\n    needs: a\n    command: 'true'\n"),
        "3:12: step `a` cannot need itself"
    );
}

#[test]
fn a_dependency_cycle_is_shown_as_its_path() {
    assert_eq!(
        problem(
            "steps:
  - name: a
    needs: [c]
    command: 'true'
  - name: b
    needs: [a]
    command: 'true'
  - name: c
    needs: [b]
    command: 'true'
"
        ),
        "5:5: dependency cycle: b → c → a → b"
    );
}

#[test]
fn duplicate_step_names() {
    assert_eq!(
        problem(
            "steps:
  - name: build
    command: make
  - name: build
    command: make again
"
        ),
        "4:5: duplicate step name `build` (first used at line 2): step names must be unique"
    );
}

#[test]
fn missing_names_commands_and_steps() {
    assert_eq!(
        problem("steps:\n  - command: 'true'\n"),
        "2:5: step 1 of `steps` has no `name`"
    );
    assert_eq!(
        problem("steps:\n  - name: a\n"),
        "2:5: step `a` has no `command`"
    );
    assert_eq!(
        problem("steps:\n  - name: a\n    type: auto_agent\n"),
        "2:5: step `a` (auto_agent) has nothing to do: give it `command` or the fields of its kind"
    );
    assert_eq!(
        problem("steps:\n  - name: a\n    type: llm\n"),
        "2:5: step `a` (llm) needs `prompt:` (the seed's `command:`)"
    );
    assert_eq!(problem("name: x\n"), "1:1: the workflow has no `steps:`");
    assert_eq!(
        problem("steps: []\n"),
        "1:8: `steps` is empty: a workflow needs at least one step"
    );
    assert_eq!(
        problem("steps:\n  - just a string\n"),
        "2:5: each entry of `steps` must be a step (a mapping with `name`), found a string"
    );
}

#[test]
fn an_empty_file() {
    for text in ["", "\n\n", "# only a comment\n"] {
        assert_eq!(
            problem(text),
            "1:1: the file is empty: a workflow needs `steps:`",
            "{text:?}"
        );
    }
}

#[test]
fn unknown_values_get_suggestions() {
    assert_eq!(
        problem("steps:\n  - name: a\n    type: shel\n    command: make\n"),
        "3:11: unknown step type `shel` (expected one of: shell, llm, claude_prompt, skill, http, ssh, browser, approval, approval_gate, notify, workflow, auto_agent, memory) [did you mean `shell`?]"
    );
    assert_eq!(
        problem("steps:\n  - name: a\n    on_failure: contineu\n    command: make\n"),
        "3:17: unknown on_failure `contineu` (expected abort, continue or rollback) [did you mean `continue`?]"
    );
    assert_eq!(
        problem("steps:\n  - name: a\n    condition: previous.okay\n    command: make\n"),
        "3:16: unknown condition `previous.okay` (expected previous.ok, previous.failed or always; use `if:` for expressions) [did you mean `previous.ok`?]"
    );
    assert_eq!(
        problem(
            "concurrency: {limit: 1, on_busy: skipp}\nsteps:\n  - name: a\n    command: make\n"
        ),
        "1:34: unknown `on_busy` value `skipp` (expected queue, skip or cancel_running) [did you mean `skip`?]"
    );
}

#[test]
fn bad_expressions() {
    let p = problem("steps:\n  - name: a\n    command: echo ${{ params.x + }}\n");
    assert!(p.starts_with("3:14: invalid expression: "), "{p}");
    let p = problem("steps:\n  - name: a\n    if: ${{ 1 + }}\n    command: 'true'\n");
    assert!(p.starts_with("3:9: invalid expression in `if`: "), "{p}");
    let p = problem("env:\n  X: ${{ params. }}\nsteps:\n  - name: a\n    command: 'true'\n");
    assert!(p.starts_with("2:6: invalid expression: "), "{p}");
}

#[test]
fn an_expression_naming_an_unknown_step() {
    assert_eq!(
        problem(
            "steps:
  - name: build
    command: make
  - name: ship
    command: echo ${{ steps.biuld.outputs.v }}
"
        ),
        "5:23: expression refers to an unknown step `biuld` [did you mean `build`?]"
    );
}

#[test]
fn an_expression_where_no_value_is_ever_safe() {
    assert_eq!(
        problem(
            "steps:\n  - name: a\n    command: echo $'${{ params.x }}'\nparams:\n  x: {type: string}\n"
        ),
        "3:14: invalid expression: cannot substitute `${{ params.x }}` into the shell command: it is inside `$'…'` quoting"
    );
    // In a block scalar, the position is where its text starts.
    assert_eq!(
        problem(
            "steps:\n  - name: a\n    command: |\n      cat <<${{ params.x }}\n      hi\n      EOF\nparams:\n  x: {type: string}\n"
        ),
        "4:7: invalid expression: cannot substitute `${{ params.x }}` into the shell command: a here-document delimiter cannot contain an expression"
    );
    // The same text outside a shell command is plain text, and fine.
    load(
        "steps:\n  - name: a\n    command: 'true'\n    env:\n      X: $'${{ params.x }}'\nparams:\n  x: {type: string}\n",
    );
}

#[test]
fn bad_params() {
    assert_eq!(
        problem(
            "params:\n  replicas: {type: integer, default: two}\nsteps:\n  - name: a\n    command: 'true'\n"
        ),
        "2:38: default of `replicas` is not of type integer"
    );
    assert_eq!(
        problem(
            "params:\n  env: {type: string, default: dev, enum: [staging, prod]}\nsteps:\n  - name: a\n    command: 'true'\n"
        ),
        "2:8: default of `env` is not one of its `enum` choices"
    );
    assert_eq!(
        problem(
            "params:\n  n: {type: integer, enum: [1, two]}\nsteps:\n  - name: a\n    command: 'true'\n"
        ),
        "2:32: choice for `n` is not of type integer"
    );
    assert_eq!(
        problem("params:\n  n: {type: strng}\nsteps:\n  - name: a\n    command: 'true'\n"),
        "2:13: unknown param type `strng` (expected string, integer, number or boolean) [did you mean `string`?]"
    );
}

#[test]
fn an_unreachable_quorum() {
    assert_eq!(
        problem(
            "steps:
  - name: gate
    type: approval
    approvers: [cli:alice]
    quorum: 2
"
        ),
        "5:13: quorum 2 can never be reached: only 1 approver(s) are allowed"
    );
}

#[test]
fn on_timeout_needs_a_timeout() {
    assert_eq!(
        problem("steps:\n  - name: gate\n    type: approval\n    on_timeout: approve\n"),
        "4:17: `on_timeout` needs a `timeout` (how long to wait for a decision)"
    );
}

#[test]
fn a_sub_workflow_must_be_named_literally() {
    assert_eq!(
        problem(
            "steps:\n  - name: child\n    type: workflow\n    workflow: ${{ params.which }}\nparams:\n  which: {type: string}\n"
        ),
        "4:15: the child workflow must be named literally (it is checked, and recursion detected, before the run)"
    );
    assert_eq!(
        problem("steps:\n  - name: child\n    type: workflow\n"),
        "2:5: step `child` (workflow) needs `workflow: NAME` (the workflow to run)"
    );
}

#[test]
fn invalid_yaml_is_one_problem_with_its_position() {
    let errors = fails("steps:\n  - name: a\n    command: [unclosed\n");
    assert_eq!(errors.diagnostics.len(), 1);
    assert!(
        errors.diagnostics[0].pos.line >= 3,
        "{:?}",
        errors.diagnostics
    );
}

// --- every problem at once ----------------------------------------------------------------------

#[test]
fn every_problem_of_a_file_is_reported_at_once_in_file_order() {
    // Problems found in different passes (keys, values, `needs`, expressions), listed by position.
    assert_eq!(
        problems(
            "name: all
steps:
  - name: build
    command: make
    timeout: 5x
  - name: test
    needs: [biuld]
    command: echo ${{ steps.tset.outputs.x }}
  - name: test
    command: again
  - name: deploy
    neds: [test]
    on_failure: sometimes
    command: deploy
max_paralel: 2
"
        ),
        [
            "5:14: invalid duration for `timeout`: unknown unit `x` in `5x` (expected ms, s, m, h or d)",
            "7:13: `needs` names an unknown step `biuld` [did you mean `build`?]",
            "8:23: expression refers to an unknown step `tset` [did you mean `test`?]",
            "9:5: duplicate step name `test` (first used at line 6): step names must be unique",
            "12:5: unknown key `neds` in step `deploy` [did you mean `needs`?]",
            "13:17: unknown on_failure `sometimes` (expected abort, continue or rollback)",
            "15:1: unknown key `max_paralel` in the workflow [did you mean `max_parallel`?]",
        ]
    );
}

/// `type: notify` and a workflow's `notify:` (steps::notify, workflow::NotifyOn).
mod notify {
    use crate::steps::{Kind, StepKind};
    use crate::workflow::load::load_str;

    fn load(steps: &str) -> Result<crate::workflow::Workflow, String> {
        load_str(
            std::path::Path::new("n.yaml"),
            format!("name: n\nsteps:\n{steps}"),
        )
        .map_err(|e| e.render())
    }

    fn notify(steps: &str) -> crate::steps::notify::NotifyStep {
        let wf = load(steps).unwrap_or_else(|e| panic!("{e}"));
        match &wf.steps[0].kind {
            StepKind::Notify(n) => n.clone(),
            other => panic!("not a notify step: {other:?}"),
        }
    }

    #[test]
    fn profile_to_and_channel_target_name_the_recipient() {
        let n = notify(
            "  - name: a\n    type: notify\n    profile: ops\n    message: hi ${{ run.id }}\n",
        );
        assert_eq!(n.to, "ops");
        assert_eq!(n.message, "hi ${{ run.id }}");
        let n = notify("  - name: a\n    type: notify\n    to: telegram:42\n    message: hi\n");
        assert_eq!(n.to, "telegram:42");
        let n = notify(
            "  - name: a\n    type: notify\n    channel: webhook\n    target: http://h/x\n    message: hi\n",
        );
        assert_eq!(n.to, "webhook:http://h/x");
        assert_eq!(n.describe(), "notify webhook:http://h/x");
    }

    #[test]
    fn a_notify_step_without_a_recipient_or_with_two_is_refused_at_its_position() {
        let e = load("  - name: a\n    type: notify\n    message: hi\n").unwrap_err();
        assert!(
            e.contains("n.yaml:3:") && e.contains("needs `profile: NAME`"),
            "{e}"
        );
        let e = load(
            "  - name: a\n    type: notify\n    profile: x\n    to: telegram:1\n    message: hi\n",
        )
        .unwrap_err();
        assert!(e.contains("more than one recipient"), "{e}");
        let e = load("  - name: a\n    type: notify\n    profile: x\n").unwrap_err();
        assert!(e.contains("needs `message:`"), "{e}");
        let e = load(
            "  - name: a\n    type: notify\n    channel: telegran\n    target: '1'\n    message: m\n",
        )
        .unwrap_err();
        assert!(
            e.contains("unknown channel `telegran`") && e.contains("telegram"),
            "{e}"
        );
        let e = load("  - name: a\n    type: notify\n    channel: telegram\n    message: m\n")
            .unwrap_err();
        assert!(e.contains("needs `target:`"), "{e}");
        let e =
            load("  - name: a\n    type: notify\n    profile: ops\n    message: '${{ nope( }}'\n")
                .unwrap_err();
        assert!(e.contains("invalid expression"), "{e}");
    }

    #[test]
    fn workflow_notify_takes_the_long_and_the_short_form_and_refuses_unknown_events() {
        use crate::workflow::NotifyOn;
        let wf = load_str(
            std::path::Path::new("n.yaml"),
            "name: n\nnotify_profile: summary\nnotify:\n  on: [failure, waiting]\n  to: telegram:1\nsteps:\n  - name: a\n    command: 'true'\n".to_owned(),
        )
        .unwrap_or_else(|e| panic!("{}", e.render()));
        assert_eq!(
            wf.recipients(NotifyOn::Failure),
            vec!["summary", "telegram:1"]
        );
        assert_eq!(wf.recipients(NotifyOn::Success), vec!["summary"]);
        assert_eq!(wf.recipients(NotifyOn::Waiting), vec!["telegram:1"]);
        let wf = load_str(
            std::path::Path::new("n.yaml"),
            "name: n\nnotify: {on_success: [info], on_wait: critical}\nsteps:\n  - name: a\n    command: 'true'\n".to_owned(),
        )
        .unwrap_or_else(|e| panic!("{}", e.render()));
        assert_eq!(wf.recipients(NotifyOn::Success), vec!["info"]);
        assert_eq!(wf.recipients(NotifyOn::Waiting), vec!["critical"]);
        assert!(wf.recipients(NotifyOn::Failure).is_empty());
        let e = load_str(
            std::path::Path::new("n.yaml"),
            "name: n\nnotify:\n  on: [failur]\n  profile: x\nsteps:\n  - name: a\n    command: 'true'\n".to_owned(),
        )
        .map(|_| ())
        .unwrap_err()
        .render();
        assert!(
            e.contains("n.yaml:3:8")
                && e.contains("unknown event `failur`")
                && e.contains("failure"),
            "{e}"
        );
        let e = load_str(
            std::path::Path::new("n.yaml"),
            "name: n\nnotify:\n  on: [failure]\nsteps:\n  - name: a\n    command: 'true'\n"
                .to_owned(),
        )
        .map(|_| ())
        .unwrap_err()
        .render();
        assert!(e.contains("needs `profile:` or `to:`"), "{e}");
    }
}

#[test]
fn a_step_may_read_what_it_needs_through_others_in_any_file_order() {
    // Listed last-first, so every `needs:` points further down the file.
    let p = problem(
        "name: t\nsteps:\n\
         \x20 - name: d\n    needs: [c]\n    command: echo ${{ steps.a.outputs.x }}\n\
         \x20 - name: e\n    needs: [b]\n    command: echo ${{ steps.c.outputs.x }}\n\
         \x20 - name: c\n    needs: [b]\n    command: echo ${{ steps.a.outputs.x }}\n\
         \x20 - name: b\n    needs: [a]\n    command: echo ${{ steps.a.outputs.x }}\n\
         \x20 - name: a\n    needs: []\n    command: \"true\"\n",
    );
    assert!(
        p.contains("step `e` reads `steps.c`, but `c` is not among the steps it needs"),
        "{p}"
    );
}

#[test]
fn long_chains_reading_early_and_recent_steps_are_checked() {
    let mut yaml = String::from("name: t\nsteps:\n  - name: s0\n    command: \"true\"\n");
    for i in 1..3000_usize {
        let read = if i % 2 == 0 { 0 } else { i.saturating_sub(2) };
        yaml.push_str(&format!(
            "  - name: s{i}\n    needs: [s{}]\n    command: echo ${{{{ steps.s{read}.outputs.x }}}}\n",
            i - 1
        ));
    }
    assert_eq!(load(&yaml).steps.len(), 3000);
    // A step that needs nothing reading the last one is still refused.
    yaml.push_str(
        "  - name: late\n    needs: []\n    command: echo ${{ steps.s2999.outputs.x }}\n",
    );
    assert!(problem(&yaml).contains("step `late` reads `steps.s2999`"));
}
