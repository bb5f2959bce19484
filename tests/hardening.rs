//! What an attacker with the binary and the docs tried, and what must hold: claw's own files
//! private whatever the umask, a damaged store refused (never replaced by an empty one), and
//! decisions and reveals that fail closed when they cannot be audited.

use std::os::unix::fs::PermissionsExt as _;

use crate::common::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).map_or(0, |m| m.permissions().mode() & 0o777)
}

/// `claw` run under a umask of 000 (through `sh -c 'umask 000; exec claw …'`).
fn claw_umask0(env: &Env, args: &[&str]) -> Ran {
    let base = env.command(&[]);
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_claw"))
        .args(args);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.current_dir(env.dir.path());
    sh.stdin(std::process::Stdio::null());
    sh.output().expect("run claw").into()
}

#[test]
fn claws_own_files_are_private_under_umask_000() {
    let env = Env::new();
    env.workflow(
        "w",
        "steps:\n  - name: a\n    command: echo hi; echo k=v >> \"$CLAW_OUTPUT\"\n",
    );
    claw_umask0(&env, &["workflow", "run", "w"]).expect_code(0);
    claw_umask0(&env, &["vault", "init"]).expect_code(0);
    claw_umask0(&env, &["vault", "set", "K", "value-1234"]).expect_code(0);
    claw_umask0(&env, &["cron", "add", "j", "@daily", "echo hi"]);
    let mut checked = 0;
    let mut stack = vec![env.home.clone()];
    while let Some(d) = stack.pop() {
        assert_eq!(mode(&d) & 0o077, 0, "{} is {:o}", d.display(), mode(&d));
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                checked += 1;
                assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
            }
        }
    }
    assert!(checked >= 4, "only {checked} files");
}

#[test]
fn an_existing_open_data_directory_is_tightened_and_doctor_says_so() {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).expect("mkdir");
    std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let doc = env.claw(&["doctor"]);
    assert!(doc.stdout.contains("others can write"), "{}", doc.stdout);
    env.workflow("w", "steps:\n  - name: a\n    command: true\n");
    env.claw(&["workflow", "run", "w"]).expect_code(0);
    assert_eq!(mode(&env.home), 0o700);
}

#[test]
fn a_truncated_or_damaged_store_is_refused_not_replaced() {
    let env = Env::new();
    env.workflow("w", "steps:\n  - name: a\n    command: echo one\n");
    env.claw(&["workflow", "run", "w"]).expect_code(0);
    let db = env.home.join("claw.db");
    // Truncated to nothing: refused, and the (empty) file is not turned into a new store.
    std::fs::write(&db, b"").expect("truncate");
    let _ = std::fs::remove_file(env.home.join("claw.db-wal"));
    let _ = std::fs::remove_file(env.home.join("claw.db-shm"));
    let listed = env.claw(&["run", "list"]);
    assert_ne!(listed.code, 0, "{listed:?}");
    assert!(listed.stderr.contains("truncated"), "{}", listed.stderr);
    assert_eq!(std::fs::metadata(&db).map(|m| m.len()).ok(), Some(0));
    env.claw(&["workflow", "run", "w"]).expect_code(3);
    assert_eq!(std::fs::metadata(&db).map(|m| m.len()).ok(), Some(0));
    // Not a database at all.
    std::fs::write(&db, vec![b'x'; 8192]).expect("overwrite");
    let listed = env.claw(&["run", "list"]);
    assert_ne!(listed.code, 0);
    assert!(
        listed.stderr.contains("not a SQLite database"),
        "{}",
        listed.stderr
    );
}

#[test]
fn a_damaged_page_is_found_by_doctor() {
    let env = Env::new();
    env.workflow("w", "steps:\n  - name: a\n    command: seq 1 2000\n");
    for _ in 0..3 {
        env.claw(&["workflow", "run", "w"]).expect_code(0);
    }
    // Checkpoint everything into claw.db, then damage a page in the middle.
    let db = env.home.join("claw.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .expect("checkpoint");
    drop(conn);
    let mut bytes = std::fs::read(&db).expect("read");
    let page = 4096;
    assert!(bytes.len() >= 4 * page, "{} bytes", bytes.len());
    // Every page but the schema's (page 1): b-tree headers and cells.
    for b in &mut bytes[page..] {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &bytes).expect("damage");
    let doc = env.claw(&["doctor"]);
    assert_ne!(doc.code, 0, "{}", doc.stdout);
    assert!(
        doc.stdout.contains("store") && doc.stdout.contains("damaged"),
        "{}",
        doc.stdout
    );
    let listed = env.claw(&["run", "list"]);
    assert_ne!(listed.code, 0);
    assert!(listed.stderr.contains("damaged"), "{}", listed.stderr);
}

#[test]
fn reveals_and_decisions_fail_closed_without_an_audit_log() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "K", "canary-value-77"])
        .expect_code(0);
    env.workflow(
        "gate",
        "steps:\n  - name: ok\n    type: approval\n    message: go?\n  - name: after\n    needs: [ok]\n    command: echo went\n",
    );
    let mut child = env.spawn(&["workflow", "run", "gate"]);
    let id = wait_for(std::time::Duration::from_secs(60), || {
        let id = env.last_run()?;
        (step_status(&env.show(&id), "ok") == Some("waiting")).then_some(id)
    })
    .expect("the gate waits");
    // audit.log replaced by a symlink to a file elsewhere.
    let log = env.home.join("audit.log");
    let elsewhere = env.path("elsewhere.log");
    std::fs::rename(&log, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &log).expect("symlink");
    let before = read(&elsewhere);
    let reveal = env.claw(&["vault", "get", "K", "--reveal"]);
    assert_ne!(reveal.code, 0);
    assert!(
        !reveal.stdout.contains("canary-value-77"),
        "{}",
        reveal.stdout
    );
    let approve = env.claw(&["run", "approve", &id, "ok"]);
    assert_ne!(approve.code, 0, "{approve:?}");
    assert!(approve.stderr.contains("audit"), "{}", approve.stderr);
    assert_eq!(
        read(&elsewhere),
        before,
        "nothing written through the symlink"
    );
    assert_eq!(step_status(&env.show(&id), "ok"), Some("waiting"));
    let doc = env.claw(&["doctor"]);
    assert!(doc.stdout.contains("is a symlink"), "{}", doc.stdout);
    let _ = child.kill();
    let _ = child.wait();
}

/// A step that times out is stopped with everything it started, including a process that left
/// its process group with `setsid` (a double fork would do the same).
#[test]
fn a_timed_out_step_stops_processes_that_left_its_group() {
    let env = Env::new();
    let pid_file = env.path("escaped.pid");
    env.workflow(
        "escape",
        &format!(
            "steps:\n  - name: a\n    timeout: 1s\n    command: setsid sh -c 'echo $$ > {}; exec sleep 300' & sleep 60\n",
            pid_file.display()
        ),
    );
    env.claw(&["workflow", "run", "escape"]).expect_code(1);
    let pid: i32 = read(&pid_file).trim().parse().expect("pid");
    let gone = wait_for(std::time::Duration::from_secs(10), || {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        (state.is_empty() || state.contains(") Z ")).then_some(())
    });
    if gone.is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("the escaped process {pid} outlived the step's timeout");
    }
}

/// The programs claw runs cannot read claw's own environment through /proc (claw is not
/// dumpable): checked as an unprivileged user, since root may read any process's.
#[test]
fn steps_cannot_read_claws_environment_through_proc() {
    let env = Env::new();
    let root_user = nix::unistd::geteuid().is_root();
    if root_user {
        // Let `nobody` use the test's directories.
        for d in [env.dir.path(), &env.root, &env.root.join("workflows")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
    }
    env.workflow(
        "peek",
        "steps:\n  - name: peek\n    command: cat /proc/$PPID/environ | tr '\\0' '\\n' | grep -c PARENT_CANARY || true\n",
    );
    let mut cmd = env.command(&["workflow", "run", "peek", "--json"]);
    cmd.env("PARENT_CANARY", "sekret-in-the-parent-env");
    let out: Ran = if root_user {
        let mut sp = std::process::Command::new("setpriv");
        sp.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sp.env(k, v),
                None => sp.env_remove(k),
            };
        }
        sp.current_dir(env.dir.path())
            .output()
            .expect("setpriv")
            .into()
    } else {
        cmd.output().expect("claw").into()
    };
    out.expect_code(0);
    let run = out.json();
    assert_eq!(step(&run, "peek")["stdout"], "0\n", "{run}");
}

/// `claw run cancel` and the workflow's `timeout:` stop a rollback that hangs, as they stop the
/// main phase; neither used to reach it.
#[test]
fn cancel_and_timeout_reach_the_rollback_phase() {
    let env = Env::new();
    let started = env.path("undo-started");
    let finished = env.path("undo-finished");
    let wf = |timeout: &str| {
        format!(
            "{timeout}steps:\n  - name: a\n    command: sleep 1; exit 1\n    on_failure: rollback\nrollback:\n  - name: undo\n    command: touch {s}; sleep 30; touch {f}\n",
            s = started.display(),
            f = finished.display()
        )
    };
    env.workflow("hang", &wf(""));
    let mut child = env.spawn(&["workflow", "run", "hang"]);
    wait_for(std::time::Duration::from_secs(30), || {
        started.exists().then_some(())
    })
    .expect("the rollback started");
    let id = env.last_run().expect("a run");
    let began = std::time::Instant::now();
    env.claw(&["run", "cancel", &id]).expect_code(0);
    let status = wait_for(std::time::Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    assert!(status.is_some(), "the run did not stop on cancel");
    assert!(began.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(env.show(&id)["status"], "cancelled");
    assert!(!finished.exists());

    std::fs::remove_file(&started).expect("rm");
    env.workflow("hang", &wf("timeout: 4s\n"));
    let began = std::time::Instant::now();
    let ran = env.claw(&["workflow", "run", "hang", "--json"]);
    ran.expect_code(1);
    assert!(started.exists());
    assert!(
        began.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    let run = ran.json();
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{run}"
    );
    assert!(!finished.exists());
}
