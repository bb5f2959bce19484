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

/// Stops every worker (SIGTERM, then SIGKILL for one that does not exit in 30 s); whether all
/// stopped cleanly, and their logs.
fn stop_all(env: &Env, workers: Vec<(String, Child)>) -> (bool, String) {
    for (_, w) in &workers {
        signal(w, "-TERM");
    }
    let mut clean = true;
    let mut logs = String::new();
    for (name, mut w) in workers {
        let status = wait_for(Duration::from_secs(30), || w.try_wait().ok().flatten());
        if status.is_none() {
            let _ = w.kill();
            let _ = w.wait();
        }
        clean &= status.is_some_and(|s| s.success());
        logs.push_str(&format!(
            "--- {name} ({status:?})\n{}\n",
            read(&env.path(&format!("{name}.log")))
        ));
    }
    (clean, logs)
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
    // A worker holding a run that waits for a person stops at once on SIGTERM, and leaves the
    // run waiting for the next worker.
    let log_b = stop(&env, "b", b);
    assert!(log_b.contains("released 1 unfinished run"), "{log_b}");
    assert_eq!(status(&env, &run), "waiting");
    let c2 = worker(&env, "c", &[]);
    let pid = c2.id().to_string();
    let held = wait_for(Duration::from_secs(30), || {
        let owner = psql(&env, &format!("SELECT owner FROM runs WHERE id = '{run}'"));
        (owner.split('/').nth(2) == Some(pid.as_str())).then_some(())
    });
    assert!(held.is_some(), "{}", read(&env.path("c.log")));
    env.claw(&["run", "approve", &run, "two"]).expect_code(0);
    let done = wait_for(Duration::from_secs(30), || {
        (status(&env, &run) == "succeeded").then_some(())
    });
    let log_c = stop(&env, "c", c2);
    assert!(done.is_some(), "{log_c}");
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

/// A PostgreSQL server of the test's own (initdb into a temporary directory, `pg_ctl` on a free
/// port), so that it can be restarted without touching the machine's shared server. As root the
/// server runs as the `postgres` user (PostgreSQL refuses root). Stopped and removed on drop.
struct PgServer {
    dir: tempfile::TempDir,
    port: u16,
}

impl PgServer {
    fn bin(name: &str) -> std::path::PathBuf {
        let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
                    .filter(|p| p.exists())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found.pop().unwrap_or_else(|| {
            panic!("no /usr/lib/postgresql/*/bin/{name}: the test starts a PostgreSQL server of its own (apt-get install postgresql)")
        })
    }

    /// `name` from PostgreSQL's bin directory, as the `postgres` user when run as root.
    fn tool(name: &str) -> std::process::Command {
        let bin = Self::bin(name);
        if nix::unistd::geteuid().is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            std::process::Command::new(bin)
        }
    }

    fn run(mut c: std::process::Command, what: &str) {
        let out = c.stdin(Stdio::null()).output().expect(what);
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("claw-pg")
            .tempdir()
            .expect("temp dir");
        if nix::unistd::geteuid().is_root() {
            let ok = std::process::Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown postgres {}", dir.path().display());
        }
        let mut init = Self::tool("initdb");
        init.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(dir.path().join("data"));
        Self::run(init, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PgServer { dir, port };
        server.pg_ctl("start");
        server
    }

    /// `pg_ctl ACTION` (start, stop, restart), waiting for it to complete.
    fn pg_ctl(&self, action: &str) {
        let d = self.dir.path();
        let mut c = Self::tool("pg_ctl");
        c.arg("-D")
            .arg(d.join("data"))
            .arg("-w")
            .arg("-t")
            .arg("120");
        c.arg("-l").arg(d.join("server.log"));
        c.args(["-m", "fast", action]);
        if action != "stop" {
            c.arg("-o").arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                d.display()
            ));
        }
        Self::run(c, &format!("pg_ctl {action}"));
    }

    /// The server killed as by a crash (`-m immediate`: no checkpoint, clients cut off).
    fn crash(&self) {
        let mut c = Self::tool("pg_ctl");
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "immediate", "stop"]);
        Self::run(c, "pg_ctl stop -m immediate");
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn log(&self) -> String {
        read(&self.dir.path().join("server.log"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut c = Self::tool("pg_ctl");
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = c.status();
    }
}

/// A test environment whose store is a database on `server`.
fn env_on(server: &PgServer) -> Env {
    let mut env = Env::new();
    env.pg = Some(
        claw::store::postgres::ScratchDb::create_on(&server.admin_url(), "restart")
            .expect("a database on the test's server"),
    );
    env
}

/// The number of each line of `p`.
fn line_counts(p: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for l in read(p).lines() {
        *m.entry(l.to_owned()).or_insert(0) += 1;
    }
    m
}

#[test]
fn postgres_restarted_under_load_workers_reconnect_and_nothing_is_lost() {
    let server = PgServer::start();
    let env = env_on(&server);
    let c = env.path("counts");
    std::fs::create_dir_all(&c).expect("mkdir");
    let d = c.display();
    // Three steps, none idempotent: a step whose end was lost would wait for a decision
    // instead of finishing, and one run twice would leave its run id twice in its file.
    env.workflow(
        "job",
        &format!(
            "steps:\n  - name: a\n    command: echo $CLAW_RUN_ID >> {d}/a; sleep 0.2\n  \
             - name: b\n    needs: [a]\n    command: echo $CLAW_RUN_ID >> {d}/b; sleep 0.2\n  \
             - name: c\n    needs: [b]\n    command: echo $CLAW_RUN_ID >> {d}/c\n"
        ),
    );
    let runs: Vec<String> = (0..30).map(|_| queue(&env, "job")).collect();
    let workers: Vec<(String, Child)> = (0..3)
        .map(|i| {
            let name = format!("w{i}");
            let w = worker(&env, &name, &["--slots", "2"]);
            (name, w)
        })
        .collect();
    // Under load: wait until runs are being executed, then restart the server twice, once
    // cleanly (fast shutdown, down for two seconds) and once as by a crash.
    let busy = |n: usize| {
        wait_for(Duration::from_secs(60), || {
            (lines(&c.join("a")) >= n).then_some(())
        })
    };
    assert!(
        busy(4).is_some(),
        "no run started\n{}",
        read(&env.path("w0.log"))
    );
    server.pg_ctl("stop");
    std::thread::sleep(Duration::from_secs(2));
    server.pg_ctl("start");
    assert!(busy(14).is_some(), "runs did not go on after a restart");
    server.crash();
    std::thread::sleep(Duration::from_secs(1));
    server.pg_ctl("start");
    // More runs queued after the restarts are executed too.
    let mut runs = runs;
    runs.extend((0..6).map(|_| queue(&env, "job")));
    // No run is lost: each one succeeds, or (when the write of a step's end was cut off by the
    // restart, docs/scale-out.md) waits for a person's decision on that step, like after a
    // crash. The decision a person makes from the step's trace: it ran (its run id is in its
    // file): take it as done (`--skip`); it did not: run it.
    let mut decided: Vec<(String, String, bool)> = Vec::new();
    let settled = wait_for(Duration::from_secs(240), || {
        let mut pending = 0;
        for r in &runs {
            match status(&env, r).as_str() {
                "succeeded" => {}
                "waiting" => {
                    for (step, st) in env.step_statuses(r) {
                        if st == "interrupted"
                            && !decided.iter().any(|(d, s, _)| d == r && *s == step)
                        {
                            let ran = line_counts(&c.join(&step)).contains_key(r);
                            let mut args = vec!["run", "approve", r.as_str(), step.as_str()];
                            if ran {
                                args.push("--skip");
                            }
                            env.claw(&args).expect_code(0);
                            decided.push((r.clone(), step, ran));
                        }
                    }
                    pending += 1;
                }
                _ => pending += 1,
            }
        }
        (pending == 0).then_some(())
    });
    let (stopped, logs) = stop_all(&env, workers);
    let unfinished: Vec<_> = runs
        .iter()
        .map(|r| (r, status(&env, r)))
        .filter(|(_, s)| s != "succeeded")
        .collect();
    assert!(
        settled.is_some() && unfinished.is_empty(),
        "runs not finished: {unfinished:?}\n{logs}\n--- server\n{}",
        server.log()
    );
    assert!(stopped, "a worker did not stop cleanly\n{logs}");
    eprintln!("steps cut off by the restarts and decided: {decided:?}");
    // Every step of every run ran exactly once.
    for step in ["a", "b", "c"] {
        let counts = line_counts(&c.join(step));
        let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            doubled.is_empty(),
            "step {step} ran more than once: {doubled:?}\n{logs}"
        );
        for r in &runs {
            assert!(
                counts.contains_key(r),
                "step {step} of {r} never ran\n{logs}"
            );
        }
        assert_eq!(counts.len(), runs.len(), "step {step}: {counts:?}");
    }
    // The workers did see the server go.
    assert!(
        server.log().contains("terminating connection"),
        "{}",
        server.log()
    );
}

/// `claw serve` with a data directory of its own (`<dir>/<name>-home`) on the shared store, its
/// log in `<dir>/<name>.log`.
fn daemon(env: &Env, name: &str) -> Reaped {
    let log = File::create(env.path(&format!("{name}.log"))).expect("daemon log");
    let log2 = log.try_clone().expect("daemon log");
    env.command(&["serve", "--no-http"])
        .env("CLAW_HOME", env.path(&format!("{name}-home")))
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .map(Reaped)
        .expect("spawn claw serve")
}

/// The pid of the daemon holding the scheduler role, and the role's epoch.
fn scheduler(env: &Env) -> Option<(u32, i64)> {
    // Before the first daemon has migrated the store, there is no table yet.
    let url = env.store_url().expect("on PostgreSQL");
    let out = std::process::Command::new("psql")
        .args([
            url,
            "-tAc",
            "SELECT holder || ' ' || epoch FROM role_leases WHERE role = 'scheduler'",
        ])
        .output()
        .expect("run psql");
    let row = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (holder, epoch) = row.split_once(' ')?;
    Some((holder.split('/').nth(2)?.parse().ok()?, epoch.parse().ok()?))
}

/// How long the schedule tests run (`CLAW_SCALE_OUT_SECS`; scripts/test.sh and CI: 60).
fn window() -> Duration {
    Duration::from_secs(
        std::env::var("CLAW_SCALE_OUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    )
}

/// A per-second schedule whose one step appends its run id to `<marks>/<fire instant>`.
/// `idempotent`: whether the step runs again when its run is resumed after a crash.
fn tick(env: &Env, catch_up: &str, idempotent: bool) -> std::path::PathBuf {
    let marks = env.path("marks");
    std::fs::create_dir_all(&marks).expect("mkdir");
    env.workflow(
        "tick",
        &format!(
            "name: tick\nschedule: \"* * * * * *\"\ntz: UTC\ncatch_up: {catch_up}\noverlap: allow\nsteps:\n  \
             - name: mark\n    idempotent: {idempotent}\n    command: echo $CLAW_RUN_ID >> {m}/${{{{ trigger.scheduled_for }}}}\n",
            m = marks.display()
        ),
    );
    marks
}

/// Ends the schedule (the workflow loses its `schedule:`), then waits until every run it made has
/// finished; the fires, `(scheduled_for, due_at, enqueued_at, run_id)` in order.
fn end_schedule(env: &Env, logs: &dyn Fn() -> String) -> Vec<(i64, i64, i64, String)> {
    env.workflow(
        "tick",
        "name: tick\nsteps:\n  - name: mark\n    command: \"true\"\n",
    );
    // The scheduler sees the change within a second; give it ample time on a loaded machine.
    let settled = wait_for(Duration::from_secs(60), || {
        let before = psql(env, "SELECT count(*) FROM schedule_fires");
        std::thread::sleep(Duration::from_secs(3));
        (psql(env, "SELECT count(*) FROM schedule_fires") == before).then_some(())
    });
    assert!(settled.is_some(), "the schedule did not stop\n{}", logs());
    let done = wait_for(Duration::from_secs(180), || {
        (psql(env, "SELECT count(*) FROM runs WHERE status <> 'succeeded'") == "0").then_some(())
    });
    assert!(
        done.is_some(),
        "runs not finished: {}\n{}",
        psql(
            env,
            "SELECT string_agg(id || ' ' || status, ', ') FROM runs WHERE status <> 'succeeded'"
        ),
        logs()
    );
    psql(
        env,
        "SELECT string_agg(scheduled_for || ',' || due_at || ',' || enqueued_at || ',' || coalesce(run_id, ''), ';' ORDER BY scheduled_for) FROM schedule_fires",
    )
    .split(';')
    .filter(|f| !f.is_empty())
    .map(|f| {
        let v: Vec<&str> = f.split(',').collect();
        let n = |i: usize| v[i].parse::<i64>().expect("a number");
        (n(0), n(1), n(2), v[3].to_owned())
    })
    .collect()
}

/// Every second from the first fire to the last has one fire with one run, each fire's run
/// made its mark (exactly one unless `resumed_may_repeat`: an idempotent step of a run resumed
/// after a crash runs again), and `claw cron status` counts them all with no miss.
fn check_every_fire_once(
    env: &Env,
    marks: &Path,
    fires: &[(i64, i64, i64, String)],
    resumed_may_repeat: bool,
    logs: &str,
) {
    let first = fires.first().expect("fires").0;
    let last = fires.last().expect("fires").0;
    let instants: Vec<i64> = fires.iter().map(|f| f.0).collect();
    let expected: Vec<i64> = (first..=last).step_by(1000).collect();
    assert_eq!(instants, expected, "a gap in the fires\n{logs}");
    let runs: std::collections::HashSet<&str> = fires.iter().map(|f| f.3.as_str()).collect();
    assert_eq!(runs.len(), fires.len(), "a run shared or missing\n{logs}");
    assert!(!runs.contains(""), "a fire without its run\n{logs}");
    assert_eq!(
        psql(env, "SELECT count(*) FROM runs"),
        fires.len().to_string(),
        "runs that no fire made"
    );
    // The schedule's counters in the store (its workflow no longer lists it, so `claw cron
    // status` does not).
    let counters = psql(env, "SELECT fired || ' ' || missed FROM schedules");
    assert_eq!(
        counters,
        format!("{} 0", fires.len()),
        "fired, missed\n{logs}"
    );
    // Each fire's run ran its step once: one mark, holding the fire's own run id.
    let mut marked = 0;
    for entry in std::fs::read_dir(marks).expect("marks") {
        let p = entry.expect("mark").path();
        let ids = read(&p);
        let ids: Vec<&str> = ids.lines().collect();
        assert!(
            ids.len() == 1 || (resumed_may_repeat && !ids.is_empty()),
            "{} marked {} times\n{logs}",
            p.display(),
            ids.len()
        );
        assert!(
            ids.iter().all(|id| *id == ids[0] && runs.contains(id)),
            "{ids:?}: not one fire's run"
        );
        marked += 1;
    }
    assert_eq!(marked, fires.len(), "fires whose run left no mark\n{logs}");
}

#[test]
fn two_daemons_with_a_per_second_schedule_fire_each_second_exactly_once() {
    let env = Env::on_postgres();
    let marks = tick(&env, "all", false);
    let a = daemon(&env, "a");
    let holder = wait_for(Duration::from_secs(60), || scheduler(&env));
    assert!(
        holder.is_some(),
        "no daemon took the scheduler role\n{}",
        read(&env.path("a.log"))
    );
    let b = daemon(&env, "b");
    let logs = || {
        format!(
            "--- a\n{}\n--- b\n{}",
            read(&env.path("a.log")),
            read(&env.path("b.log"))
        )
    };
    // Both daemons run side by side for the window: both may execute runs; one schedules.
    std::thread::sleep(window());
    let fires = end_schedule(&env, &logs);
    for (name, d) in [("a", a), ("b", b)] {
        signal(&d, "-TERM");
        let mut d = d;
        let exited = wait_for(Duration::from_secs(60), || d.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = d.kill();
        }
        assert!(
            exited.is_some_and(|s| s.success()),
            "daemon {name} did not stop\n{}",
            logs()
        );
    }
    let logs = logs();
    check_every_fire_once(&env, &marks, &fires, false, &logs);
    assert!(
        fires.len() as u64 >= window().as_secs() / 2,
        "the schedule fired only {} times in {:?}\n{logs}",
        fires.len(),
        window()
    );
    // One holder all along: the role was taken once, by one daemon.
    assert_eq!(logs.matches("took the scheduler role").count(), 1, "{logs}");
    assert_eq!(scheduler(&env).map(|(_, e)| e), Some(1), "{logs}");
}

#[test]
fn kill_9_of_the_scheduling_daemon_another_takes_over_within_the_lease() {
    let env = Env::on_postgres();
    // `catch_up: all`: the fires due while no daemon scheduled all run, late, when the successor
    // takes the role over; none is recorded missed.
    let marks = tick(&env, "all", true);
    let first = daemon(&env, "a");
    let holder = wait_for(Duration::from_secs(60), || scheduler(&env));
    let (pid, epoch) = holder.unwrap_or_else(|| {
        panic!(
            "no daemon took the scheduler role\n{}",
            read(&env.path("a.log"))
        )
    });
    assert_eq!(pid, first.id());
    let second = daemon(&env, "b");
    let logs = || {
        format!(
            "--- a\n{}\n--- b\n{}",
            read(&env.path("a.log")),
            read(&env.path("b.log"))
        )
    };
    // Let both run, then kill the holder while it schedules.
    let half = window() / 4;
    std::thread::sleep(half.max(Duration::from_secs(5)));
    let mut first = first;
    signal(&first, "-KILL");
    let _ = first.wait();
    let killed = std::time::Instant::now();
    let took = wait_for(Duration::from_secs(120), || {
        scheduler(&env).filter(|(p, _)| *p == second.id())
    });
    let (_, epoch2) = took.unwrap_or_else(|| panic!("the role was not taken over\n{}", logs()));
    let after = killed.elapsed();
    eprintln!("the scheduler role was taken over {after:?} after the kill (lease 5 s)");
    assert!(epoch2 > epoch, "a new epoch for the new holder");
    // Within the lease (5 s), plus the successor's one-second poll, plus generous slack for a
    // loaded machine: not a performance figure, a check that it was not left to chance.
    assert!(
        after < Duration::from_secs(30),
        "took {after:?}\n{}",
        logs()
    );
    std::thread::sleep(half.max(Duration::from_secs(5)));
    let fires = end_schedule(&env, &logs);
    let mut second = second;
    signal(&second, "-TERM");
    let exited = wait_for(Duration::from_secs(60), || second.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = second.kill();
    }
    let logs = logs();
    assert!(exited.is_some_and(|s| s.success()), "{logs}");
    // A run the killed daemon was executing is resumed by the survivor, and its idempotent step
    // may run again (a second mark with the same run id); still one run per fire.
    check_every_fire_once(&env, &marks, &fires, true, &logs);
    // The fires due while no daemon held the role were enqueued late by the successor.
    let gap = fires.iter().filter(|f| f.2 - f.1 >= 1_000).count();
    assert!(
        gap >= 1,
        "no fire was left to the successor: {fires:?}\n{logs}"
    );
}
