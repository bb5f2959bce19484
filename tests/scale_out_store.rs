//! What a shared PostgreSQL store holds for every machine (docs/scale-out.md): the step logs of
//! runs executed by a `claw worker` in another data directory, and `claw store migrate`, which
//! moves a SQLite store into PostgreSQL.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const CANARY: &str = "zz-Canary-5d4c3b";

/// A `claw` command of `env` on the database `url` (another machine's data directory, sharing
/// the store).
fn on(env: &Env, url: &str, args: &[&str]) -> Command {
    let mut c = env.command(args);
    c.env("CLAW_STORE_URL", url);
    c
}

/// Every log file under `dir` (the step logs of a run).
fn log_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

#[test]
fn logs_of_a_run_executed_on_another_machine_are_read_from_the_store() {
    // `here` queues the run and reads its logs; `there` is the worker's machine: its own data
    // directory and vault, the same database.
    let here = Env::on_postgres();
    let there = Env::new();
    let url = here.store_url().expect("on PostgreSQL").to_owned();
    let cap = 8192;
    std::fs::write(
        there.root.join("claw.yaml"),
        format!("logs:\n  max_step_bytes: {cap}\n"),
    )
    .expect("claw.yaml");
    let wf = r#"steps:
  - name: talk
    env: {TOKEN: "${{ secrets.CANARY }}"}
    command: |
      echo "start é"
      echo "token is $TOKEN"
      printf '%s' "$TOKEN" | head -c 7; sleep 0.7; printf '%s\n' "$TOKEN" | tail -c +8
      echo "done" >&2
  - name: flood
    command: |
      i=0; while [ $i -lt 600 ]; do echo "line $i of the flood .........................."; i=$((i+1)); done
      echo "the end"
"#;
    here.workflow("remote", wf);
    there.workflow("remote", wf);
    let ok = |c: &mut Command| {
        let out = c.output().expect("run claw");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&mut on(&there, &url, &["vault", "init"]));
    ok(&mut on(&there, &url, &["vault", "set", "CANARY", CANARY]));
    let run = here
        .claw(&["workflow", "run", "remote", "--detach"])
        .expect_code(0)
        .stdout
        .trim()
        .to_owned();
    // Followed from here while it runs there.
    let follow = here
        .command(&["run", "logs", &run, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn claw run logs --follow");
    let log = File::create(here.path("worker.log")).expect("worker log");
    let mut worker = on(&there, &url, &["worker", "--lease", "3s", "--grace", "2s"])
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn claw worker");
    let done = wait_for(Duration::from_secs(60), || {
        let s = here.show(&run)["status"].as_str().unwrap_or("").to_owned();
        (s == "succeeded" || s == "failed").then_some(s)
    });
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = wait_for(Duration::from_secs(20), || worker.try_wait().ok().flatten());
    let _ = worker.kill();
    assert_eq!(
        done.as_deref(),
        Some("succeeded"),
        "{}",
        read(&here.path("worker.log"))
    );

    // Nothing of the run is on this machine's disk: what follows comes from the store.
    let run_dir = |env: &Env| env.home.join("logs").join("runs").join(&run);
    assert!(!run_dir(&here).exists(), "{}", run_dir(&here).display());
    let files = log_files(&run_dir(&there));
    assert_eq!(files.len(), 2, "{files:?}");
    let talk_file = read(&files[0]);
    // The worker's files are on its machine: out of reach from here (the paths the store
    // records are the worker's).
    std::fs::remove_dir_all(there.home.join("logs")).expect("rm");

    let talk = here
        .claw(&["run", "logs", &run, "talk"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(talk.contains("start é\n"), "{talk}");
    assert!(talk.contains("token is "), "{talk}");
    assert!(talk.contains("done\n"), "{talk}");
    // The same masked bytes as the worker's own file.
    assert_eq!(talk, talk_file, "the store holds the file's bytes");

    let flood = here
        .claw(&["run", "logs", &run, "flood"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(flood.ends_with("the end\n"), "{flood}");
    assert!(flood.len() <= cap, "capped at {cap}: {}", flood.len());
    assert!(
        flood.len() >= cap * 3 / 4,
        "most of the cap kept: {}",
        flood.len()
    );
    assert!(!flood.contains("line 0 of"), "the oldest lines are dropped");

    let followed: Ran = follow.wait_with_output().expect("follow").into();
    followed.expect_code(0);
    let followed = followed.stdout;
    assert!(followed.starts_with("==> talk ("), "{followed}");
    assert!(followed.contains("start é\n"), "{followed}");
    assert!(followed.contains("token is "), "{followed}");
    assert!(followed.ends_with("the end\n"), "{followed}");

    let all = here
        .claw(&["run", "logs", &run])
        .expect_code(0)
        .stdout
        .clone();
    assert!(all.contains("==> talk (succeeded) <=="), "{all}");
    assert!(all.contains("==> flood (succeeded) <=="), "{all}");
    for text in [&talk, &flood, &all, &followed] {
        assert!(!text.contains(CANARY), "the secret leaked: {text}");
    }
    // Not a byte of the secret in the database either.
    let dump = Command::new("pg_dump")
        .args(["--data-only", &url])
        .output()
        .expect("pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("token is "), "the logs are in the dump");
    assert!(!dump.contains(CANARY), "the secret is in the database");
}

#[test]
fn store_migrate_copies_a_sqlite_store_into_postgresql_once() {
    let env = Env::new();
    if env.pg.is_some() {
        return; // CLAW_TEST_STORE=postgres: this test starts from the default store.
    }
    env.workflow(
        "hello",
        "steps:\n  - name: a\n    command: echo hi\n  - name: b\n    command: echo there\n",
    );
    env.claw(&["workflow", "run", "hello"]).expect_code(0);
    let run = env.last_run().expect("a run");
    let db = scratch_db();

    // Bad input first: nothing is copied.
    let bad = env.claw(&["store", "migrate", "--to", "mysql://x@y/z"]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("not a PostgreSQL URL"),
        "{}",
        bad.stderr
    );
    let down = env.claw(&[
        "store",
        "migrate",
        "--to",
        "postgres://claw:hunter2@127.0.0.1:1/claw",
    ]);
    down.expect_code(3);
    assert!(
        down.stderr.contains("cannot connect") && down.stderr.contains("127.0.0.1:1"),
        "{}",
        down.stderr
    );
    assert!(
        !down.stderr.contains("hunter2"),
        "the password is never shown: {}",
        down.stderr
    );

    let first = env.claw(&["store", "migrate", "--to", &db.url, "--json"]);
    first.expect_code(0);
    let tables = first.json()["tables"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let count = |name: &str, key: &str| {
        tables
            .iter()
            .find(|t| t["table"] == name)
            .and_then(|t| t[key].as_u64())
    };
    assert_eq!(count("runs", "rows"), Some(1), "{}", first.stdout);
    assert_eq!(count("runs", "copied"), Some(1));
    assert_eq!(count("steps", "copied"), Some(2));
    assert!(
        count("outbox", "rows").is_some(),
        "every table is listed: {}",
        first.stdout
    );

    // The run is there, seen through the PostgreSQL store.
    let shown = env
        .command(&["run", "show", &run, "--json"])
        .env("CLAW_STORE_URL", &db.url)
        .output()
        .expect("claw");
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["steps"].as_array().map(Vec::len), Some(2));

    // A second copy is refused, and with --merge adds nothing.
    let again = env.claw(&["store", "migrate", "--to", &db.url]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("not empty") && again.stderr.contains("--merge"),
        "{}",
        again.stderr
    );
    let merged = env.claw(&["store", "migrate", "--to", &db.url, "--merge"]);
    merged.expect_code(0);
    assert!(merged.stdout.contains("0 of "), "{}", merged.stdout);

    // A running daemon writes to the SQLite store: refused while it runs.
    let mut daemon = env.spawn(&["serve"]);
    let up = wait_for(Duration::from_secs(30), || {
        let r = env.claw(&["store", "migrate", "--to", &db.url, "--merge"]);
        (r.code == 2).then_some(r)
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let up = up.expect("refused while the daemon runs");
    assert!(
        up.stderr.contains("daemon") && up.stderr.contains("stop it first"),
        "{}",
        up.stderr
    );
}
