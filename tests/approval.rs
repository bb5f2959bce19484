//! Approval gates: durable across `kill -9`, decided from another process, with approvers,
//! quorum, deadlines applied late, and input that later steps use. Also the decisions on
//! interrupted steps (`--skip`), which share the commands.

use std::time::Duration;

use crate::common::*;

const GATE: &str = r#"name: gate
steps:
  - name: build
    command: echo version=1.2 >> "$CLAW_OUTPUT"
  - name: approve
    type: approval
    message: "Deploy ${{ steps.build.outputs.version }}?"
    approvers: [alice, bob, "cli:carol"]
    quorum: 2
    on_failure: continue
    input:
      ticket: {type: string, required: true}
      canary: {type: integer, default: 5}
  - name: on-reject
    condition: previous.failed
    command: touch rejected.txt
  - name: deploy
    needs: [approve]
    command: echo "ticket=${{ steps.approve.outputs.ticket }} canary=${{ steps.approve.outputs.canary }}" > deployed.txt
"#;

/// Starts `workflow run NAME` in the background and returns it once the run waits.
fn start_waiting(env: &Env, name: &str) -> (std::process::Child, String) {
    let child = env.spawn(&["workflow", "run", name]);
    let id = wait_for(Duration::from_secs(60), || {
        let id = env.last_run()?;
        (env.show(&id)["status"] == "waiting").then_some(id)
    })
    .expect("the run never started waiting");
    (child, id)
}

fn finished(env: &Env, id: &str) -> serde_json::Value {
    wait_for(Duration::from_secs(60), || {
        let shown = env.show(id);
        let status = shown["status"].as_str()?.to_owned();
        ["succeeded", "failed", "cancelled"]
            .contains(&status.as_str())
            .then_some(shown)
    })
    .expect("the run never finished")
}

#[test]
fn a_waiting_run_survives_kill_9_and_completes_after_approvals_from_other_processes() {
    let env = Env::new();
    env.workflow("gate", GATE);
    let (mut waiter, id) = start_waiting(&env, "gate");
    let shown = env.show(&id);
    assert_eq!(step(&shown, "approve")["status"], "waiting");
    assert!(
        step(&shown, "approve")["message"]
            .as_str()
            .unwrap()
            .contains("Deploy 1.2?"),
        "{shown:#}"
    );
    // `run list --status waiting` says what it waits for, and from whom.
    let list = env.claw(&["run", "list", "--status", "waiting"]);
    list.expect_code(0);
    assert!(
        list.stdout
            .contains("approval of `approve` by alice, bob, cli:carol (0/2)"),
        "{}",
        list.stdout
    );

    waiter.kill().unwrap();
    waiter.wait().unwrap();

    // One approval is not a quorum of two; the same approver twice is refused.
    env.claw(&[
        "run",
        "approve",
        &id,
        "approve",
        "--as",
        "alice",
        "--input",
        "ticket=T-7",
        "--no-wait",
    ])
    .expect_code(0);
    let again = env.claw(&[
        "run",
        "approve",
        &id,
        "approve",
        "--as",
        "alice",
        "--input",
        "ticket=T-7",
    ]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already decided"), "{}", again.stderr);
    assert_eq!(env.show(&id)["status"], "waiting");
    // The second approval comes from yet another process, which carries the orphaned run on.
    env.claw(&[
        "run",
        "approve",
        &id,
        "approve",
        "--as",
        "bob",
        "--input",
        "ticket=T-7",
    ])
    .expect_code(0);
    let done = finished(&env, &id);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let approve = step(&done, "approve");
    assert_eq!(
        approve["outputs"]["approved_by"],
        serde_json::json!(["cli:alice", "cli:bob"])
    );
    assert_eq!(
        read(&env.path("deployed.txt")).trim(),
        "ticket=T-7 canary=5",
        "approver input and defaults reach later steps"
    );
    assert_eq!(step(&done, "on-reject")["status"], "skipped");
    let audit = env.claw(&["audit", "search", "approval"]);
    assert!(
        audit.stdout.contains("approval.requested"),
        "{}",
        audit.stdout
    );
    assert_eq!(
        audit.stdout.matches("approval.decided").count(),
        2,
        "{}",
        audit.stdout
    );
}

#[test]
fn the_waiting_foreground_process_carries_on_when_approved_elsewhere() {
    let env = Env::new();
    env.workflow(
        "one",
        "steps:\n  - name: ok\n    type: approval\n  - name: after\n    command: echo \"${{ steps.ok.outputs.decision }}\" > after.txt\n",
    );
    let (waiter, id) = start_waiting(&env, "one");
    env.claw(&["run", "approve", &id]).expect_code(0);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&env.path("after.txt")).trim(), "approved");
    assert_eq!(env.show(&id)["status"], "succeeded");
}

#[test]
fn reject_runs_the_failure_path() {
    let env = Env::new();
    env.workflow("gate", GATE);
    let (waiter, id) = start_waiting(&env, "gate");
    env.claw(&[
        "run",
        "reject",
        &id,
        "approve",
        "--as",
        "carol",
        "--reason",
        "not today",
    ])
    .expect_code(0);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let done = env.show(&id);
    assert_eq!(done["status"], "failed");
    let approve = step(&done, "approve");
    assert_eq!(approve["status"], "failed");
    assert!(
        approve["message"]
            .as_str()
            .unwrap()
            .contains("rejected by cli:carol: not today"),
        "{done:#}"
    );
    assert_eq!(step(&done, "deploy")["status"], "skipped");
    assert!(env.path("rejected.txt").exists(), "the failure path ran");
    assert!(!env.path("deployed.txt").exists());
}

#[test]
fn an_approver_not_on_the_list_is_refused_and_audited() {
    let env = Env::new();
    env.workflow("gate", GATE);
    let (mut waiter, id) = start_waiting(&env, "gate");
    let r = env.claw(&[
        "run", "approve", &id, "approve", "--as", "mallory", "--input", "ticket=X",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("cli:mallory may not decide"),
        "{}",
        r.stderr
    );
    // A Telegram identity does not match `cli:carol`.
    let r = env.claw(&[
        "run",
        "approve",
        &id,
        "approve",
        "--as",
        "telegram:carol",
        "--input",
        "ticket=X",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let audit = env.claw(&["audit", "search", "approval.refused", "--json"]);
    assert_eq!(
        audit.stdout.matches("approval.refused").count(),
        2,
        "{}",
        audit.stdout
    );
    assert_eq!(env.show(&id)["status"], "waiting");
    // Missing required input is refused too, and no vote is recorded.
    let r = env.claw(&["run", "approve", &id, "approve", "--as", "alice"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("input `ticket` is required"),
        "{}",
        r.stderr
    );
    let r = env.claw(&[
        "run",
        "approve",
        &id,
        "approve",
        "--as",
        "alice",
        "--input",
        "ticket=X",
        "--input",
        "canary=many",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("expected an integer"), "{}", r.stderr);
    waiter.kill().unwrap();
    waiter.wait().unwrap();
}

#[test]
fn a_deadline_that_passed_while_nothing_ran_is_applied_at_the_next_start_dated_at_the_deadline() {
    let env = Env::new();
    env.workflow(
        "late",
        "steps:\n  - name: gate\n    type: approval\n    timeout: 1s\n    on_timeout: approve\n  - name: after\n    command: echo ran > after.txt\n",
    );
    let (mut waiter, id) = start_waiting(&env, "late");
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        env.show(&id)["status"],
        "waiting",
        "nothing ran to apply it"
    );
    env.claw(&["run", "resume", &id]).expect_code(0);
    let done = env.show(&id);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let gate = step(&done, "gate");
    assert_eq!(gate["outputs"]["timed_out"], true);
    let took = gate["duration_ms"].as_i64().unwrap();
    assert!(
        (900..1500).contains(&took),
        "decided at the deadline, not when resumed: {took} ms"
    );
    assert!(env.path("after.txt").exists());
    let audit = env.claw(&["audit", "search", "approval.decided", "--json"]);
    assert!(audit.stdout.contains("claw:timeout"), "{}", audit.stdout);
}

#[test]
fn on_timeout_reject_is_the_default_and_fails_the_gate() {
    let env = Env::new();
    env.workflow(
        "late",
        "steps:\n  - name: gate\n    type: approval\n    timeout: 1s\n",
    );
    let r = env.claw(&["workflow", "run", "late", "--json"]);
    r.expect_code(1);
    let gate = step(&r.json(), "gate").clone();
    assert_eq!(gate["status"], "failed");
    assert!(
        gate["message"]
            .as_str()
            .unwrap()
            .contains("no decision before the deadline"),
        "{gate:#}"
    );
}

#[test]
fn dry_run_auto_approves() {
    let env = Env::new();
    env.workflow("gate", GATE);
    let r = env.claw(&["workflow", "run", "gate", "--dry-run", "--json"]);
    r.expect_code(0);
    assert_eq!(
        step(&r.json(), "approve")["message"],
        "dry-run: gate auto-approved"
    );
}

#[test]
fn the_seed_approval_gate_with_args_prompt_loads_and_waits() {
    let env = Env::new();
    env.workflow(
        "seed",
        "name: seed\nsteps:\n  - name: confirm\n    type: approval_gate\n    args:\n      prompt: \"Ship it? [y/N] \"\n",
    );
    let (waiter, id) = start_waiting(&env, "seed");
    assert!(
        env.show(&id)["steps"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Ship it?")
    );
    env.claw(&["run", "reject", &id]).expect_code(0);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_approval_fields_are_named_with_their_position() {
    let env = Env::new();
    let p = env.workflow(
        "bad",
        "steps:\n  - name: g\n    type: approval\n    approvers: [alice, \"slack:bob\"]\n    quorum: 3\n    on_timeout: maybe\n",
    );
    let r = env.claw(&["workflow", "validate", p.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.yaml:4:"), "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown approver kind `slack:`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("quorum 3 can never be reached"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("unknown on_timeout `maybe`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`on_timeout` needs a `timeout`"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_interrupted_step_can_be_skipped() {
    let env = Env::new();
    env.workflow(
        "slow",
        "steps:\n  - name: long\n    command: sleep 30\n  - name: after\n    command: echo after > after.txt\n",
    );
    let mut child = env.spawn(&["workflow", "run", "slow"]);
    let id = wait_for(Duration::from_secs(60), || {
        let id = env.last_run()?;
        (step_status(&env.show(&id), "long") == Some("running")).then_some(id)
    })
    .expect("running");
    child.kill().unwrap();
    child.wait().unwrap();
    // Resume finds the step interrupted (not idempotent) and waits for a decision.
    let resumer = env.spawn(&["run", "resume", &id, "--quiet"]);
    wait_for(Duration::from_secs(60), || {
        (step_status(&env.show(&id), "long") == Some("interrupted")).then_some(())
    })
    .expect("interrupted");
    env.claw(&["run", "approve", &id, "long", "--skip"])
        .expect_code(0);
    let out = resumer.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = env.show(&id);
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(step(&done, "long")["status"], "skipped");
    assert!(env.path("after.txt").exists());
}

#[test]
fn a_resume_that_waits_for_a_decision_says_so_without_a_terminal() {
    let env = Env::new();
    env.workflow(
        "slow",
        "steps:\n  - name: long\n    command: sleep 30\n  - name: after\n    command: 'true'\n",
    );
    let mut child = env.spawn(&["workflow", "run", "slow"]);
    let id = wait_for(Duration::from_secs(60), || {
        let id = env.last_run()?;
        (step_status(&env.show(&id), "long") == Some("running")).then_some(id)
    })
    .expect("running");
    child.kill().unwrap();
    child.wait().unwrap();
    // No --quiet, stderr a pipe: the wait and the commands that end it are still said.
    let resumer = env.spawn(&["run", "resume", &id]);
    wait_for(Duration::from_secs(60), || {
        (step_status(&env.show(&id), "long") == Some("interrupted")).then_some(())
    })
    .expect("interrupted");
    env.claw(&["run", "reject", &id, "long"]).expect_code(0);
    let out = resumer.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for command in [
        format!("claw run approve {id} long"),
        format!("claw run approve {id} long --skip"),
        format!("claw run reject {id} long"),
    ] {
        assert!(stderr.contains(&command), "`{command}` not in:\n{stderr}");
    }
}

/// A seed-form `approval_gate` in a foreground run on a terminal asks there (y/N), as the seed
/// did; the answer decides as the local user, with the same rules as `claw run approve`.
#[test]
fn a_gate_in_a_foreground_run_on_a_terminal_asks_there() {
    let env = Env::new();
    env.workflow(
        "asked",
        "steps:\n  - name: gate\n    type: approval_gate\n    args: {prompt: \"Ship it?\"}\n  - name: after\n    command: echo shipped\n",
    );
    let yes = on_pty_prompt(
        &env.command(&["workflow", "run", "asked"]),
        &["y"],
        Some(r"\[y/N\] $"),
    );
    assert_eq!(yes.code, 0, "{}", yes.stdout);
    assert!(yes.stdout.contains("Ship it? [y/N]"), "{}", yes.stdout);
    assert!(yes.stdout.contains("approved by cli:"), "{}", yes.stdout);
    let no = on_pty_prompt(
        &env.command(&["workflow", "run", "asked"]),
        &["n"],
        Some(r"\[y/N\] $"),
    );
    assert_eq!(no.code, 1, "{}", no.stdout);
    assert!(no.stdout.contains("rejected"), "{}", no.stdout);
    let decided = env
        .claw(&["audit", "search", "--action", "approval", "--json"])
        .json();
    let reasons: Vec<String> = decided
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["metadata"].to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("answered no at the terminal")),
        "{reasons:?}"
    );
    // Without a terminal nothing is asked, and claw says how to decide.
    let waiting = env
        .command(&["workflow", "run", "asked"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let run = wait_for(Duration::from_secs(30), || {
        env.last_run()
            .filter(|r| env.show(r)["status"] == "waiting")
    });
    let run = run.expect("the run waits");
    env.claw(&["run", "approve", &run, "gate"]).expect_code(0);
    let out = waiting.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("[y/N]"), "{stderr}");
    assert!(
        stderr.contains(&format!("claw run approve {run} gate")),
        "{stderr}"
    );
}
