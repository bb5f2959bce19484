//! The seed's pinned workflow semantics: sticky failure with the `continue` escape, the
//! previous-result conditions (and the first-step rule), rollback, compensation, dry run, the
//! environment a step sees, and the exit status (1 only when a step failed).

use serde_json::Value;

use crate::common::*;

/// `claw workflow run NAME --json ARGS…`: what it printed, and the run as `claw run show` has it.
fn run(env: &Env, name: &str, args: &[&str]) -> (Ran, Value) {
    let mut argv = vec!["workflow", "run", name, "--json"];
    argv.extend_from_slice(args);
    let ran = env.claw(&argv);
    let id = ran.json()["id"]
        .as_str()
        .expect("the printed run has an id")
        .to_owned();
    let shown = env.show(&id);
    (ran, shown)
}

/// `(name, status)` of every step, in the order `run show` lists them.
fn statuses(run: &Value) -> Vec<(String, String)> {
    run["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or_default().to_owned(),
                        s["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn abort_is_the_default_and_skips_the_rest() {
    let env = Env::new();
    let marker = env.path("never-ran");
    env.workflow(
        "abort",
        &format!(
            "steps:\n  - name: fail\n    command: exit 3\n  - name: never\n    command: touch {}\n",
            marker.display()
        ),
    );
    let (ran, shown) = run(&env, "abort", &[]);
    ran.expect_code(1);
    assert_eq!(shown["status"], "failed");
    assert_eq!(
        statuses(&shown),
        pairs(&[("fail", "failed"), ("never", "skipped")])
    );
    assert_eq!(step(&shown, "fail")["exit_code"], 3);
    assert_eq!(step(&shown, "never")["attempts"], 0);
    assert!(!marker.exists(), "a skipped step ran");
}

#[test]
fn continue_carries_on_and_failure_stays_sticky() {
    let env = Env::new();
    env.workflow(
        "sticky",
        r"steps:
  - name: fail
    command: exit 1
    on_failure: continue
  - name: needs-ok
    condition: previous.ok
    on_failure: continue
    command: echo should-not-run
  - name: echo
    command: echo still-here
    on_failure: continue
",
    );
    let (ran, shown) = run(&env, "sticky", &[]);
    ran.expect_code(1);
    assert_eq!(
        shown["status"], "failed",
        "continue does not hide a failure"
    );
    assert_eq!(
        statuses(&shown),
        pairs(&[
            ("fail", "failed"),
            ("needs-ok", "skipped"),
            ("echo", "succeeded")
        ])
    );
    assert_eq!(step(&shown, "needs-ok")["message"], "condition not met");
    assert_eq!(step(&shown, "needs-ok")["stdout"], "");
    assert_eq!(step(&shown, "echo")["stdout"], "still-here\n");
}

#[test]
fn a_step_without_continue_after_a_continued_failure_is_skipped() {
    let env = Env::new();
    let marker = env.path("plain-ran");
    env.workflow(
        "sticky2",
        &format!(
            "steps:
  - name: fail
    command: exit 1
    on_failure: continue
  - name: plain
    command: touch {}
  - name: tail
    command: echo tail
    on_failure: continue
",
            marker.display()
        ),
    );
    let (ran, shown) = run(&env, "sticky2", &[]);
    ran.expect_code(1);
    assert_eq!(
        statuses(&shown),
        pairs(&[
            ("fail", "failed"),
            ("plain", "skipped"),
            ("tail", "succeeded")
        ])
    );
    assert!(!marker.exists());
    let msg = step(&shown, "plain")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains("earlier step failed"), "{msg}");
}

#[test]
fn rollback_runs_every_rollback_step_and_stops() {
    let env = Env::new();
    let log = env.path("rollback.log");
    let after = env.path("after-ran");
    let l = log.display();
    env.workflow(
        "rb",
        &format!(
            "steps:
  - name: prepare
    command: echo prepared
  - name: deploy
    command: exit 4
    on_failure: rollback
  - name: after
    command: touch {after}
    on_failure: continue
rollback:
  - name: undo-one
    command: echo undo-one >> {l}; exit 1
  - name: undo-two
    command: echo undo-two >> {l}
",
            after = after.display()
        ),
    );
    let (ran, shown) = run(&env, "rb", &[]);
    ran.expect_code(1);
    assert_eq!(shown["status"], "failed");
    assert_eq!(
        statuses(&shown),
        pairs(&[
            ("prepare", "succeeded"),
            ("deploy", "failed"),
            ("after", "skipped"),
            ("rollback:undo-one", "failed"),
            ("rollback:undo-two", "succeeded"),
        ])
    );
    for name in ["rollback:undo-one", "rollback:undo-two"] {
        assert_eq!(step(&shown, name)["phase"], "rollback", "{name}");
    }
    assert_eq!(
        read(&log),
        "undo-one\nundo-two\n",
        "every rollback step ran, in order"
    );
    assert!(
        !after.exists(),
        "a step after the failure ran during a rollback"
    );
}

#[test]
fn rollback_without_rollback_steps_behaves_like_continue() {
    let env = Env::new();
    env.workflow(
        "rbnone",
        r"steps:
  - name: boom
    command: exit 2
    on_failure: rollback
  - name: plain
    command: echo plain
  - name: cont
    command: echo cont
    on_failure: continue
",
    );
    let (ran, shown) = run(&env, "rbnone", &[]);
    ran.expect_code(1);
    assert_eq!(
        statuses(&shown),
        pairs(&[
            ("boom", "failed"),
            ("plain", "skipped"),
            ("cont", "succeeded")
        ])
    );
}

#[test]
fn previous_failed_runs_after_a_failure() {
    let env = Env::new();
    env.workflow(
        "recover",
        r"steps:
  - name: boom
    command: exit 1
    on_failure: continue
  - name: recover
    condition: previous.failed
    command: echo recovering
",
    );
    let (ran, shown) = run(&env, "recover", &[]);
    ran.expect_code(1);
    assert_eq!(
        statuses(&shown),
        pairs(&[("boom", "failed"), ("recover", "succeeded")])
    );
    assert_eq!(step(&shown, "recover")["stdout"], "recovering\n");
}

#[test]
fn on_the_first_step_only_always_is_true() {
    let env = Env::new();
    env.workflow(
        "first-ok",
        "steps:\n  - name: first\n    condition: previous.ok\n    command: echo first\n",
    );
    env.workflow(
        "first-failed",
        "steps:\n  - name: first\n    condition: previous.failed\n    command: echo first\n",
    );
    env.workflow(
        "first-always",
        "steps:\n  - name: first\n    condition: always\n    command: echo first\n",
    );

    let (ran, shown) = run(&env, "first-ok", &[]);
    ran.expect_code(0);
    assert_eq!(step(&shown, "first")["status"], "skipped");
    assert_eq!(step(&shown, "first")["message"], "condition not met");

    let (ran, shown) = run(&env, "first-failed", &[]);
    ran.expect_code(0);
    assert_eq!(step(&shown, "first")["status"], "skipped");

    let (ran, shown) = run(&env, "first-always", &[]);
    ran.expect_code(0);
    assert_eq!(step(&shown, "first")["status"], "succeeded");
    assert_eq!(step(&shown, "first")["stdout"], "first\n");
}

#[test]
fn conditions_look_at_the_step_just_before_even_a_skipped_one() {
    let env = Env::new();
    env.workflow(
        "chain",
        r"steps:
  - name: ok
    command: 'true'
  - name: only-on-failure
    condition: previous.failed
    command: echo nope
  - name: after-skip
    condition: previous.ok
    command: echo nope
  - name: always
    condition: always
    command: echo yes
",
    );
    let (ran, shown) = run(&env, "chain", &[]);
    ran.expect_code(0);
    assert_eq!(
        statuses(&shown),
        pairs(&[
            ("ok", "succeeded"),
            ("only-on-failure", "skipped"),
            ("after-skip", "skipped"),
            ("always", "succeeded"),
        ])
    );
}

#[test]
fn skips_alone_exit_zero_and_a_failure_exits_one() {
    let env = Env::new();
    env.workflow(
        "skips",
        "steps:\n  - name: ok\n    command: 'true'\n  - name: on-fail\n    condition: previous.failed\n    command: echo no\n",
    );
    let (ran, shown) = run(&env, "skips", &[]);
    ran.expect_code(0);
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(step(&shown, "on-fail")["status"], "skipped");

    env.workflow(
        "fails",
        "steps:\n  - name: bad\n    command: 'false'\n    on_failure: continue\n",
    );
    let (ran, shown) = run(&env, "fails", &[]);
    ran.expect_code(1);
    assert_eq!(shown["status"], "failed");
}

#[test]
fn dry_run_executes_nothing() {
    let env = Env::new();
    let victim = env.write("victim/file.txt", "keep me");
    env.workflow(
        "dry",
        &format!(
            "steps:
  - name: wipe
    command: rm -rf {}
  - name: gate
    type: approval_gate
    message: proceed?
  - name: ask
    type: claude_prompt
    command: summarise
",
            victim.display()
        ),
    );
    let (ran, shown) = run(&env, "dry", &["--dry-run"]);
    ran.expect_code(0);
    assert!(victim.exists(), "the dry run deleted the file");
    assert_eq!(shown["dry_run"], true);
    assert_eq!(shown["status"], "succeeded");
    let wipe = step(&shown, "wipe");
    assert_eq!(wipe["status"], "succeeded");
    let msg = wipe["message"].as_str().unwrap_or_default();
    assert!(msg.contains("dry-run: would execute shell:"), "{msg}");
    assert!(msg.contains("rm -rf"), "{msg}");
    let gate = step(&shown, "gate");
    assert_eq!(gate["status"], "succeeded");
    assert_eq!(gate["message"], "dry-run: gate auto-approved");
    let ask = step(&shown, "ask")["message"].as_str().unwrap_or_default();
    assert!(ask.starts_with("dry-run: would execute "), "{ask}");
}

#[test]
fn dry_run_still_applies_conditions() {
    let env = Env::new();
    env.workflow(
        "drycond",
        "steps:\n  - name: first\n    condition: previous.ok\n    command: echo x\n  - name: second\n    command: echo y\n",
    );
    let (ran, shown) = run(&env, "drycond", &["--dry-run"]);
    ran.expect_code(0);
    assert_eq!(
        statuses(&shown),
        pairs(&[("first", "skipped"), ("second", "succeeded")])
    );
}

#[test]
fn args_params_and_the_idempotency_key_reach_the_step() {
    let env = Env::new();
    env.workflow(
        "vars",
        r#"params:
  target-host: {type: string, default: web0}
  count: {type: integer, default: 1}
steps:
  - name: show
    args:
      target-host: web1
      retries: 5
      Mixed-Case: v
    command: |
      echo "wf=$WF_TARGET_HOST,$WF_RETRIES,$WF_MIXED_CASE"
      echo "param=$CLAW_PARAM_TARGET_HOST,$CLAW_PARAM_COUNT"
      echo "key=$CLAW_IDEMPOTENCY_KEY"
      echo "run=$CLAW_RUN_ID step=$CLAW_STEP attempt=$CLAW_ATTEMPT wf=$CLAW_WORKFLOW"
"#,
    );
    let (ran, shown) = run(&env, "vars", &["-p", "count=7"]);
    ran.expect_code(0);
    let id = shown["id"].as_str().unwrap_or_default();
    assert_eq!(
        step(&shown, "show")["stdout"].as_str().unwrap_or_default(),
        format!(
            "wf=web1,5,v\nparam=web0,7\nkey={id}/show/1\nrun={id} step=show attempt=1 wf=vars\n"
        )
    );
}

#[test]
fn the_idempotency_key_changes_with_the_attempt() {
    let env = Env::new();
    let keys = env.path("keys");
    env.workflow(
        "keyed",
        &format!(
            "steps:
  - name: flaky
    retry: {{limit: 1, delay: 10ms}}
    command: echo \"$CLAW_IDEMPOTENCY_KEY\" >> {k}; [ \"$CLAW_ATTEMPT\" = 2 ]
",
            k = keys.display()
        ),
    );
    let (ran, shown) = run(&env, "keyed", &[]);
    ran.expect_code(0);
    let id = shown["id"].as_str().unwrap_or_default();
    assert_eq!(read(&keys), format!("{id}/flaky/1\n{id}/flaky/2\n"));
}

#[test]
fn compensations_of_succeeded_steps_run_in_reverse_order() {
    let env = Env::new();
    let undo = env.path("undo.log");
    let u = undo.display();
    env.workflow(
        "saga",
        &format!(
            "steps:
  - name: a
    command: echo a
    rollback: \"echo undo-a >> {u}\"
  - name: b
    command: echo b
    rollback: \"echo undo-b >> {u}\"
  - name: c
    command: exit 1
    rollback: \"echo undo-c >> {u}\"
"
        ),
    );
    let (ran, shown) = run(&env, "saga", &[]);
    ran.expect_code(1);
    assert_eq!(shown["status"], "failed");
    assert_eq!(
        read(&undo),
        "undo-b\nundo-a\n",
        "c failed: it has nothing to undo"
    );
    for name in ["compensate:a", "compensate:b"] {
        let s = step(&shown, name);
        assert_eq!(s["status"], "succeeded", "{name}");
        assert_eq!(s["phase"], "compensation", "{name}");
    }
    assert!(
        shown["steps"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["name"] != "compensate:c")),
        "{shown:#}"
    );
}

#[test]
fn compensations_do_not_run_when_the_run_succeeds() {
    let env = Env::new();
    let undo = env.path("undo.log");
    env.workflow(
        "saga-ok",
        &format!(
            "steps:\n  - name: a\n    command: echo a\n    rollback: \"echo undo-a >> {}\"\n",
            undo.display()
        ),
    );
    let (ran, shown) = run(&env, "saga-ok", &[]);
    ran.expect_code(0);
    assert!(!undo.exists());
    assert_eq!(statuses(&shown), pairs(&[("a", "succeeded")]));
}

#[test]
fn kinds_not_built_yet_fail_cleanly() {
    let env = Env::new();
    env.workflow(
        "later",
        r"steps:
  - name: ask
    type: claude_prompt
    command: say hello
    on_failure: continue
  - name: skill
    type: skill
    command: heartbeat
    on_failure: continue
  - name: still
    command: echo still
    on_failure: continue
",
    );
    let (ran, shown) = run(&env, "later", &[]);
    ran.expect_code(1);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    // Skills exist now: a seed skill step whose skill is not installed fails, saying so.
    for (name, why) in [
        ("ask", "`claude` is not on PATH"),
        ("skill", "skill not found: heartbeat"),
    ] {
        let s = step(&shown, name);
        assert_eq!(s["status"], "failed", "{name}");
        let msg = s["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{name}: {msg}");
    }
    assert_eq!(step(&shown, "still")["status"], "succeeded");
}

#[test]
fn a_dry_run_of_an_if_on_outputs_does_not_fail() {
    let env = Env::new();
    env.workflow(
        "dryif",
        r#"steps:
  - name: probe
    command: echo healthy=no >> "$CLAW_OUTPUT"
  - name: repair
    if: ${{ steps.probe.outputs.healthy == 'no' }}
    command: echo repairing
"#,
    );
    let (ran, shown) = run(&env, "dryif", &["--dry-run"]);
    assert_ne!(step(&shown, "repair")["status"], "failed", "{shown:#}");
    ran.expect_code(0);
}

/// Seed rule: a dry run says "dry-run: would execute <type>: <command>" for every step but a gate.
#[test]
fn dry_run_names_the_command_of_every_kind() {
    let env = Env::new();
    env.workflow(
        "dryask",
        "steps:\n  - name: ask\n    type: claude_prompt\n    command: summarise the logs\n",
    );
    let (ran, shown) = run(&env, "dryask", &["--dry-run"]);
    ran.expect_code(0);
    let msg = step(&shown, "ask")["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("dry-run: would execute "), "{msg}");
    assert!(msg.ends_with(": summarise the logs"), "{msg}");
}
