//! Scale-out (docs/scale-out.md): the store on PostgreSQL and `claw worker` processes, with real
//! processes killed (`kill -9`) and paused (SIGSTOP) on a real PostgreSQL server.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::*;

/// `psql` on the test's database: one value.
fn psql(env: &Env, sql: &str) -> String {
    let url = env.store_url().expect("on PostgreSQL");
    let out = std::process::Command::new("psql")
        .args([url, "-tAc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A worker with its output in `<dir>/<name>.log`.
fn worker(env: &Env, name: &str, args: &[&str]) -> Child {
    let log = File::create(env.path(&format!("{name}.log"))).expect("worker log");
    let log2 = log.try_clone().expect("worker log");
    let mut all = vec!["worker", "--lease", "3s", "--grace", "2s"];
    all.extend_from_slice(args);
    env.command(&all)
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .expect("spawn claw worker")
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

/// Stops a worker with SIGTERM and returns its log.
fn stop(env: &Env, name: &str, mut child: Child) -> String {
    signal(&child, "-TERM");
    let status = wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    let log = read(&env.path(&format!("{name}.log")));
    assert!(
        status.is_some_and(|s| s.success()),
        "worker {name} did not stop cleanly: {status:?}\n{log}"
    );
    log
}

fn queue(env: &Env, workflow: &str) -> String {
    env.claw(&["workflow", "run", workflow, "--detach"])
        .expect_code(0)
        .stdout
        .trim()
        .to_owned()
}

fn status(env: &Env, run: &str) -> String {
    env.show(run)["status"].as_str().unwrap_or("").to_owned()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

#[test]
fn a_worker_needs_the_shared_store() {
    let env = Env::new();
    if env.pg.is_some() {
        return; // CLAW_TEST_STORE=postgres: this test is about the default store.
    }
    let r = env.claw(&["worker"]);
    r.expect_code(2);
    assert!(r.stderr.contains("postgres://"), "{}", r.stderr);
}

#[test]
fn workers_share_the_queue_and_labels_route_runs() {
    let env = Env::on_postgres();
    let out = env.path("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let o = out.display();
    env.workflow(
        "plain",
        &format!("steps:\n  - name: a\n    command: echo $CLAW_RUN_ID >> {o}/plain; sleep 0.2\n"),
    );
    env.workflow(
        "gpu",
        &format!(
            "runs_on: [gpu]\nsteps:\n  - name: a\n    command: echo $CLAW_RUN_ID >> {o}/gpu\n"
        ),
    );
    let mut runs: Vec<String> = (0..6).map(|_| queue(&env, "plain")).collect();
    let gpu = queue(&env, "gpu");
    let a = worker(&env, "a", &["--slots", "2"]);
    let b = worker(&env, "b", &["--slots", "2", "--labels", "gpu,lan"]);
    runs.push(gpu.clone());
    let all_done = wait_for(Duration::from_secs(60), || {
        runs.iter()
            .all(|r| status(&env, r) == "succeeded")
            .then_some(())
    });
    let b_pid = b.id();
    let log_a = stop(&env, "a", a);
    let log_b = stop(&env, "b", b);
    assert!(
        all_done.is_some(),
        "runs left unfinished\n--- a\n{log_a}\n--- b\n{log_b}"
    );
    assert_eq!(lines(&out.join("plain")), 6, "each run once");
    assert_eq!(lines(&out.join("gpu")), 1);
    // The gpu run went to the worker with the label.
    let owner = psql(&env, &format!("SELECT owner FROM runs WHERE id = '{gpu}'"));
    assert_eq!(
        owner.split('/').nth(2),
        Some(b_pid.to_string().as_str()),
        "{owner}"
    );
    assert!(log_a.contains("claimed run"), "{log_a}");
    // Stopped cleanly: no worker is left alive in the store.
    assert_eq!(psql(&env, "SELECT count(*) FROM workers"), "0");
}

#[test]
fn kill_9_of_a_worker_mid_run_another_resumes_it() {
    let env = Env::on_postgres();
    let c = env.path("counts");
    std::fs::create_dir_all(&c).expect("mkdir");
    let d = c.display();
    env.workflow(
        "crashy",
        &format!(
            "steps:\n  - name: one\n    idempotent: true\n    command: echo run >> {d}/one\n  \
             - name: two\n    needs: [one]\n    command: echo run >> {d}/two; sleep 3\n  \
             - name: three\n    needs: [two]\n    idempotent: true\n    command: echo run >> {d}/three\n"
        ),
    );
    let run = queue(&env, "crashy");
    let mut a = worker(&env, "a", &[]);
    assert!(
        wait_for(Duration::from_secs(30), || (lines(&c.join("two")) == 1)
            .then_some(()))
        .is_some(),
        "step two never started\n{}",
        read(&env.path("a.log"))
    );
    signal(&a, "-KILL");
    let _ = a.wait();
    // Another worker takes the run over once the dead one's lease (3 s) has expired. `two` is
    // not idempotent: it was interrupted, so the run waits for a decision instead of re-running it.
    let b = worker(&env, "b", &[]);
    let waiting = wait_for(Duration::from_secs(30), || {
        env.step_statuses(&run)
            .iter()
            .any(|(n, s)| n == "two" && s == "interrupted")
            .then_some(())
    });
    assert!(
        waiting.is_some(),
        "not taken over\n{}",
        read(&env.path("b.log"))
    );
    assert_eq!(lines(&c.join("two")), 1, "not re-run without a decision");
    env.claw(&["run", "approve", &run, "two"]).expect_code(0);
    let done = wait_for(Duration::from_secs(30), || {
        (status(&env, &run) == "succeeded").then_some(())
    });
    let log_b = stop(&env, "b", b);
    assert!(done.is_some(), "{log_b}");
    assert_eq!(lines(&c.join("one")), 1, "a finished step is not run again");
    assert_eq!(lines(&c.join("two")), 2, "run again once, as decided");
    assert_eq!(lines(&c.join("three")), 1);
}

#[test]
fn a_worker_paused_past_its_lease_is_fenced_off() {
    let env = Env::on_postgres();
    let c = env.path("counts");
    std::fs::create_dir_all(&c).expect("mkdir");
    let d = c.display();
    env.workflow(
        "slow",
        &format!(
            "steps:\n  - name: slow\n    idempotent: true\n    command: echo run >> {d}/slow; sleep 2\n  \
             - name: after\n    needs: [slow]\n    command: echo run >> {d}/after\n"
        ),
    );
    let run = queue(&env, "slow");
    let a = worker(&env, "a", &[]);
    assert!(
        wait_for(Duration::from_secs(30), || (lines(&c.join("slow")) == 1)
            .then_some(()))
        .is_some(),
        "step slow never started\n{}",
        read(&env.path("a.log"))
    );
    // Paused past its lease: its step process goes on and ends, the worker sees nothing.
    signal(&a, "-STOP");
    let b = worker(&env, "b", &[]);
    let done = wait_for(Duration::from_secs(40), || {
        (status(&env, &run) == "succeeded").then_some(())
    });
    assert!(
        done.is_some(),
        "b did not finish the run\n{}",
        read(&env.path("b.log"))
    );
    let epoch_b = psql(&env, &format!("SELECT epoch FROM runs WHERE id = '{run}'"));
    let shown = env.show(&run);
    // Woken up, a's writes are refused by the fence: the run stays as b left it.
    signal(&a, "-CONT");
    let refused = wait_for(Duration::from_secs(20), || {
        read(&env.path("a.log"))
            .contains("taken over")
            .then_some(())
    });
    let log_a = stop(&env, "a", a);
    let log_b = stop(&env, "b", b);
    assert!(
        refused.is_some(),
        "a was not fenced off\n--- a\n{log_a}\n--- b\n{log_b}"
    );
    assert_eq!(env.show(&run), shown, "a changed nothing");
    assert_eq!(
        psql(&env, &format!("SELECT epoch FROM runs WHERE id = '{run}'")),
        epoch_b
    );
    assert_eq!(lines(&c.join("after")), 1, "nothing doubled");
    assert_eq!(
        lines(&c.join("slow")),
        2,
        "the idempotent step was run again by b"
    );
}

#[test]
fn runs_approvals_and_resume_work_on_postgres() {
    let env = Env::on_postgres();
    env.workflow(
        "gate",
        "steps:\n  - name: ask\n    type: approval\n    message: go?\n  - name: after\n    needs: [ask]\n    command: echo done\n",
    );
    let run = queue(&env, "gate");
    let w = worker(&env, "w", &[]);
    let asked = wait_for(Duration::from_secs(30), || {
        (status(&env, &run) == "waiting").then_some(())
    });
    assert!(asked.is_some(), "{}", read(&env.path("w.log")));
    env.claw(&["run", "approve", &run, "ask"]).expect_code(0);
    let done = wait_for(Duration::from_secs(30), || {
        (status(&env, &run) == "succeeded").then_some(())
    });
    let log = stop(&env, "w", w);
    assert!(done.is_some(), "{log}");
}
