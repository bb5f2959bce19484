//! Retries, step and workflow timeouts (with SIGKILL after the grace period, and the whole process
//! group gone), and cancelling a run from another process.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// Whether a process is gone (a zombie waiting for its reaper counts as gone: it runs no more).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Whether the run shows step `name` as running (false while the step has no record yet).
fn is_running(env: &Env, run: &str, name: &str) -> bool {
    env.show(run)["steps"].as_array().is_some_and(|steps| {
        steps
            .iter()
            .any(|s| s["name"] == name && s["status"] == "running")
    })
}

fn lines(p: &Path) -> usize {
    read(p).lines().count()
}

#[test]
fn a_retried_step_succeeds_on_the_third_attempt() {
    let env = Env::new();
    let count = env.path("attempts");
    env.workflow(
        "flaky",
        &format!(
            "steps:
  - name: flaky
    retry: {{limit: 2, delay: 100ms}}
    command: echo x >> {c}; [ $(wc -l < {c}) -ge 3 ]
",
            c = count.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "flaky", "--json"]);
    ran.expect_code(0);
    let run = ran.json();
    let s = step(&run, "flaky");
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["attempts"], 3);
    assert_eq!(s["exit_code"], 0);
    assert_eq!(lines(&count), 3);
}

#[test]
fn a_step_that_always_fails_gives_up_after_its_retries() {
    let env = Env::new();
    let count = env.path("attempts");
    env.workflow(
        "hopeless",
        &format!(
            "steps:\n  - name: hopeless\n    retry: 2\n    command: echo x >> {}; exit 5\n",
            count.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "hopeless", "--json"]);
    ran.expect_code(1);
    let run = ran.json();
    let s = step(&run, "hopeless");
    assert_eq!(s["status"], "failed");
    assert_eq!(s["attempts"], 3);
    assert_eq!(s["exit_code"], 5);
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(msg.contains("after 3 attempts"), "{msg}");
    assert_eq!(lines(&count), 3, "one first attempt and two retries");
}

#[test]
fn a_step_ignoring_sigterm_is_killed_after_the_grace() {
    let env = Env::new();
    env.workflow(
        "stubborn",
        "steps:\n  - name: stubborn\n    timeout: 1\n    command: trap '' TERM; sleep 30\n",
    );
    let start = Instant::now();
    let ran = env.claw(&["workflow", "run", "stubborn", "--json"]);
    let took = start.elapsed();
    ran.expect_code(1);
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let run = ran.json();
    assert_eq!(run["status"], "failed");
    let s = step(&run, "stubborn");
    assert_eq!(s["status"], "failed");
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(msg.contains("timed out"), "{msg}");
}

#[test]
fn a_timeout_kills_the_grandchildren_too() {
    let env = Env::new();
    let pidfile = env.path("grandchild.pid");
    env.workflow(
        "family",
        &format!(
            "steps:\n  - name: family\n    timeout: 1\n    command: sh -c 'sleep 30 & echo $! > {}; wait'\n",
            pidfile.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "family", "--json"]);
    ran.expect_code(1);
    let msg = step(&ran.json(), "family")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("timed out"), "{msg}");
    let pid: u32 = read(&pidfile)
        .trim()
        .parse()
        .expect("the grandchild wrote its pid");
    assert!(
        wait_for(Duration::from_secs(30), || process_gone(pid).then_some(())).is_some(),
        "grandchild {pid} outlived its step's timeout"
    );
}

#[test]
fn a_finished_step_leaves_no_background_process() {
    let env = Env::new();
    let pidfile = env.path("bg.pid");
    env.workflow(
        "leaky",
        &format!(
            "steps:\n  - name: leaky\n    command: sleep 30 > /dev/null 2>&1 & echo $! > {}\n",
            pidfile.display()
        ),
    );
    let start = Instant::now();
    env.claw(&["workflow", "run", "leaky", "--json"])
        .expect_code(0);
    assert!(start.elapsed() < Duration::from_secs(20));
    let pid: u32 = read(&pidfile).trim().parse().expect("pid");
    assert!(
        wait_for(Duration::from_secs(30), || process_gone(pid).then_some(())).is_some(),
        "background process {pid} outlived its step"
    );
}

#[test]
fn cancel_from_another_process_stops_the_run() {
    let env = Env::new();
    let after = env.path("after-ran");
    env.workflow(
        "long",
        &format!(
            "steps:\n  - name: long\n    command: sleep 30\n  - name: after\n    command: touch {}\n",
            after.display()
        ),
    );
    let start = Instant::now();
    let child = env.spawn(&["workflow", "run", "long", "--json"]);
    let id = wait_for(Duration::from_secs(30), || {
        let id = env.last_run()?;
        is_running(&env, &id, "long").then_some(id)
    })
    .expect("the step never showed as running");
    let cancel = env.claw(&["run", "cancel", &id]);
    cancel.expect_code(0);
    assert!(cancel.stdout.contains(&id), "{}", cancel.stdout);
    let out: Ran = child.wait_with_output().expect("wait").into();
    out.expect_code(1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let run = env.show(&id);
    assert_eq!(run["status"], "cancelled");
    assert_eq!(step(&run, "long")["status"], "cancelled");
    assert_eq!(step(&run, "after")["status"], "skipped");
    assert!(!after.exists());
    assert_eq!(out.json()["status"], "cancelled");
}

#[test]
fn cancelling_a_finished_run_changes_nothing() {
    let env = Env::new();
    env.workflow("quick", "steps:\n  - name: q\n    command: 'true'\n");
    env.claw(&["workflow", "run", "quick", "--json"])
        .expect_code(0);
    let id = env.last_run().expect("a run");
    let ran = env.claw(&["run", "cancel", &id]);
    ran.expect_code(0);
    assert!(ran.stdout.contains("already succeeded"), "{}", ran.stdout);
    assert_eq!(env.show(&id)["status"], "succeeded");
}

#[test]
fn a_workflow_timeout_stops_a_long_run() {
    let env = Env::new();
    let after = env.path("after-ran");
    env.workflow(
        "slow",
        &format!(
            "timeout: 1\nsteps:\n  - name: long\n    command: sleep 30\n  - name: after\n    command: touch {}\n",
            after.display()
        ),
    );
    let start = Instant::now();
    let ran = env.claw(&["workflow", "run", "slow", "--json"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    ran.expect_code(1);
    let run = ran.json();
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    assert_ne!(step(&run, "long")["status"], "succeeded");
    assert_eq!(step(&run, "after")["status"], "skipped");
    assert!(!after.exists());
}

#[test]
fn the_step_timeout_is_per_attempt_and_retries_apply() {
    let env = Env::new();
    let count = env.path("attempts");
    env.workflow(
        "slowretry",
        &format!(
            "steps:
  - name: s
    timeout: 1
    retry: {{limit: 1, delay: 10ms}}
    command: echo x >> {c}; [ $(wc -l < {c}) -ge 2 ] || sleep 30
",
            c = count.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "slowretry", "--json"]);
    ran.expect_code(0);
    let s = step(&ran.json(), "s").clone();
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["attempts"], 2);
}

/// Ctrl-C (SIGINT) or SIGTERM to a foreground `claw workflow run` cancels the run, like
/// `claw run cancel`: exit status 1, the run `cancelled`, the steps after it not started.
fn interrupt_cancels_the_run(signal: nix::sys::signal::Signal) {
    let env = Env::new();
    let after = env.path("after-ran");
    env.workflow(
        "long",
        &format!(
            "steps:\n  - name: long\n    command: sleep 30\n  - name: after\n    command: touch {}\n",
            after.display()
        ),
    );
    let child = env.spawn(&["workflow", "run", "long", "--json"]);
    let id = wait_for(Duration::from_secs(30), || {
        let id = env.last_run()?;
        is_running(&env, &id, "long").then_some(id)
    })
    .expect("the step never showed as running");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, signal).expect("signal claw");
    let out: Ran = child.wait_with_output().expect("wait").into();
    let run = env.show(&id);
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(step(&run, "long")["status"], "cancelled");
    assert_eq!(step(&run, "after")["status"], "skipped", "{run:#}");
    assert_eq!(step(&run, "after")["attempts"], 0, "{run:#}");
    assert!(!after.exists());
    out.expect_code(1);
}

#[test]
fn ctrl_c_cancels_the_run() {
    interrupt_cancels_the_run(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_cancels_the_run() {
    interrupt_cancels_the_run(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn cancel_stops_a_detached_run() {
    let env = Env::new();
    env.workflow(
        "long",
        "steps:\n  - name: long\n    command: sleep 30\n  - name: after\n    command: 'true'\n",
    );
    let ran = env.claw(&["workflow", "run", "long", "--detach"]);
    ran.expect_code(0);
    let id = ran.stdout.trim().to_owned();
    wait_for(Duration::from_secs(30), || {
        is_running(&env, &id, "long").then_some(())
    })
    .expect("the detached run never started its step");
    env.claw(&["run", "cancel", &id]).expect_code(0);
    let status = wait_for(Duration::from_secs(30), || {
        let s = env.show(&id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (s == "cancelled").then_some(s)
    });
    assert_eq!(status.as_deref(), Some("cancelled"), "{:#}", env.show(&id));
    assert_eq!(step(&env.show(&id), "after")["status"], "skipped");
}

/// A command that floods its output still times out, and its log stays within the cap
/// (the current file plus one rotated file).
#[test]
fn a_flooding_step_still_times_out_and_its_log_is_capped() {
    let env = Env::new();
    std::fs::write(
        env.root.join("claw.yaml"),
        "logs:\n  max_step_bytes: 65536\n",
    )
    .expect("claw.yaml");
    env.workflow(
        "flood",
        "steps:\n  - name: flood\n    timeout: 1\n    command: yes\n",
    );
    let start = Instant::now();
    let ran = env.claw(&["workflow", "run", "flood", "--json"]);
    ran.expect_code(1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let run = ran.json();
    let flood = step(&run, "flood");
    assert!(
        flood["message"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{flood}"
    );
    let log = std::path::PathBuf::from(flood["log"].as_str().expect("log path"));
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let rotated = std::path::PathBuf::from(format!("{}.1", log.display()));
    assert!(size(&log) <= 65536, "{}", size(&log));
    assert!(
        size(&rotated) <= 65536 && size(&rotated) > 0,
        "{}",
        size(&rotated)
    );
}
