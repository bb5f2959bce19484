//! File watchers through the real binary: `claw watcher start` in the background on a temporary
//! directory, real files, real inotify. Each test waits for the watcher's readiness lines and
//! polls for outcomes (never a fixed sleep for something it expects); a fixed wait is used only
//! to prove that something did *not* happen, and is several debounce periods long.

// Helpers here are test code: a failed setup is a failed test, with its backtrace.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pretty_assertions::assert_eq;

use crate::common::*;

/// A `claw watcher start` running in the background, its stdout collected line by line.
struct Watching {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// What it printed on stderr (warnings).
    errs: Arc<Mutex<Vec<String>>>,
}

impl Watching {
    /// Starts the watcher and waits until each of `rules` reports that it watches (or waits).
    fn start(env: &Env, rules: &[&str]) -> Self {
        let mut child = env.spawn(&["watcher", "start"]);
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let errs = Arc::new(Mutex::new(Vec::new()));
        let err_sink = errs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                err_sink.lock().unwrap().push(line);
            }
        });
        let w = Self { child, lines, errs };
        for rule in rules {
            let tag = format!("[{rule}] ");
            w.wait_line(|l| {
                l.starts_with(&tag) && (l.contains(" watching ") || l.contains(" waiting for "))
            });
        }
        w
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    #[track_caller]
    fn wait_line(&self, f: impl Fn(&str) -> bool) -> String {
        match wait_for(Duration::from_secs(20), || {
            self.lines().into_iter().find(|l| f(l))
        }) {
            Some(l) => l,
            None => panic!("no such line in:\n{}", self.lines().join("\n")),
        }
    }

    /// Stops the watcher the way a user does (SIGTERM) and checks it exits cleanly.
    fn stop(mut self) -> Vec<String> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "watcher exited with {status}");
        self.lines()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of a file, trimmed.
fn lines_of(p: &Path) -> Vec<String> {
    read(p).lines().map(str::to_owned).collect()
}

#[track_caller]
fn wait_lines(p: &Path, n: usize) -> Vec<String> {
    wait_for(Duration::from_secs(20), || {
        let l = lines_of(p);
        (l.len() >= n).then_some(l)
    })
    .unwrap_or_else(|| panic!("{} never had {n} lines: {:?}", p.display(), lines_of(p)))
}

/// A rule whose shell action appends `EVENT PATH [FROM]` to `log`.
fn logging_rule(name: &str, dir: &Path, log: &Path, extra: &str) -> String {
    format!(
        "- name: {name}\n  path: {}\n  events: [created, modified, deleted, moved]\n  action: shell\n  command: 'echo \"$WATCHER_EVENT $WATCHER_FILE $WATCHER_FROM\" >> {}'\n  debounce: 150ms\n{extra}",
        dir.display(),
        log.display()
    )
}

fn setup(env: &Env, yaml: &str) {
    std::fs::write(env.root.join("watchers.yaml"), yaml).unwrap();
}

fn rel(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn created_modified_moved_deleted() {
    let env = Env::new();
    let dir = env.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    let log = env.path("events.log");
    setup(&env, &logging_rule("all", &dir, &log, ""));
    let w = Watching::start(&env, &["all"]);

    std::fs::write(rel(&dir, "a.txt"), "one").unwrap();
    assert_eq!(
        wait_lines(&log, 1),
        vec![format!("created {} ", rel(&dir, "a.txt").display())]
    );
    std::fs::write(rel(&dir, "a.txt"), "two, longer").unwrap();
    assert_eq!(
        wait_lines(&log, 2)[1],
        format!("modified {} ", rel(&dir, "a.txt").display())
    );
    std::fs::rename(rel(&dir, "a.txt"), rel(&dir, "b.txt")).unwrap();
    assert_eq!(
        wait_lines(&log, 3)[2],
        format!(
            "moved {} {}",
            rel(&dir, "b.txt").display(),
            rel(&dir, "a.txt").display()
        )
    );
    std::fs::remove_file(rel(&dir, "b.txt")).unwrap();
    assert_eq!(
        wait_lines(&log, 4)[3],
        format!("deleted {} ", rel(&dir, "b.txt").display())
    );
    let out = w.stop();
    assert!(
        out.iter()
            .any(|l| l == &format!("[all] created {}", rel(&dir, "a.txt").display())),
        "{out:#?}"
    );
    assert!(
        out.iter().any(|l| l.starts_with(&format!(
            "[all] deleted {}: ok: exit 0",
            rel(&dir, "b.txt").display()
        ))),
        "{out:#?}"
    );
    // Each action is in the audit log.
    let audit = read(&env.home.join("audit.log"));
    assert_eq!(audit.matches("\"watcher.action\"").count(), 4, "{audit}");
}

#[test]
fn a_burst_is_one_event_and_a_rename_save_is_one_modified() {
    let env = Env::new();
    let dir = env.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(rel(&dir, "doc.txt"), "v1").unwrap();
    let log = env.path("events.log");
    setup(&env, &logging_rule("burst", &dir, &log, ""));
    let w = Watching::start(&env, &["burst"]);

    // Twenty writes in quick succession: one `created`.
    for i in 0..20 {
        std::fs::write(rel(&dir, "new.txt"), format!("write {i}")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // An editor's save: write a temporary file, rename it over the original.
    std::fs::write(rel(&dir, ".doc.txt.swp"), "v2, saved by rename").unwrap();
    std::fs::rename(rel(&dir, ".doc.txt.swp"), rel(&dir, "doc.txt")).unwrap();

    wait_lines(&log, 2);
    // Long enough for anything else to have been reported (several debounce periods).
    std::thread::sleep(Duration::from_millis(1000));
    let mut got = lines_of(&log);
    got.sort();
    assert_eq!(
        got,
        vec![
            format!("created {} ", rel(&dir, "new.txt").display()),
            format!("modified {} ", rel(&dir, "doc.txt").display()),
        ]
    );
    drop(w);
}

#[test]
fn ignore_globs_and_file_name_globs() {
    let env = Env::new();
    let dir = env.path("in");
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    let log = env.path("events.log");
    let yaml = logging_rule(
        "globs",
        &dir.join("*.txt"),
        &log,
        "  recursive: true\n  ignore: ['skip-*', 'cache/**']\n",
    );
    setup(&env, &yaml);
    let w = Watching::start(&env, &["globs"]);
    std::fs::write(rel(&dir, "skip-me.txt"), "x").unwrap();
    std::fs::write(dir.join("cache/c.txt"), "x").unwrap();
    std::fs::write(rel(&dir, "other.log"), "x").unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/deep.txt"), "x").unwrap();
    std::fs::write(rel(&dir, "keep.txt"), "x").unwrap();
    wait_lines(&log, 2);
    std::thread::sleep(Duration::from_millis(800));
    let mut got = lines_of(&log);
    got.sort();
    assert_eq!(
        got,
        vec![
            format!("created {} ", rel(&dir, "keep.txt").display()),
            format!("created {} ", dir.join("sub/deep.txt").display()),
        ]
    );
    drop(w);
}

#[test]
fn a_directory_created_after_start_is_picked_up() {
    let env = Env::new();
    let dir = env.path("later/inbox");
    let log = env.path("events.log");
    setup(&env, &logging_rule("later", &dir, &log, ""));
    let w = Watching::start(&env, &["later"]);
    assert!(
        w.lines().iter().any(|l| l.starts_with(&format!(
            "[later] waiting for {} to appear (watching ",
            dir.display()
        ))),
        "{:#?}",
        w.lines()
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(rel(&dir, "first.txt"), "x").unwrap();
    assert_eq!(
        wait_lines(&log, 1),
        vec![format!("created {} ", rel(&dir, "first.txt").display())]
    );
    w.wait_line(|l| l == format!("[later] watching {}", dir.display()));
    std::fs::write(rel(&dir, "second.txt"), "x").unwrap();
    assert_eq!(
        wait_lines(&log, 2)[1],
        format!("created {} ", rel(&dir, "second.txt").display())
    );
    drop(w);
}

#[test]
fn workflow_action_sees_the_trigger() {
    let env = Env::new();
    let dir = env.path("drop");
    std::fs::create_dir_all(&dir).unwrap();
    let out = env.path("wf-out.txt");
    env.workflow(
        "on-file",
        &format!(
            "params:\n  label: none\nsteps:\n  - name: record\n    command: echo \"${{{{ trigger.type }}}} ${{{{ trigger.rule }}}} ${{{{ trigger.event }}}} ${{{{ trigger.path }}}} ${{{{ params.label }}}}\" > {}\n",
            out.display()
        ),
    );
    setup(
        &env,
        &format!(
            "- name: to-workflow\n  path: {}\n  action: workflow\n  command: on-file\n  args: {{label: from-rule}}\n  debounce: 100ms\n",
            dir.display()
        ),
    );
    let w = Watching::start(&env, &["to-workflow"]);
    let file = dir.join("it's here.txt");
    std::fs::write(&file, "x").unwrap();
    let line = w.wait_line(|l| l.starts_with("[to-workflow] run ") && l.ends_with(" succeeded"));
    assert_eq!(
        read(&out),
        format!("watcher to-workflow created {} from-rule\n", file.display())
    );
    let run_id = line.split(' ').nth(2).unwrap().to_owned();
    let shown = env.show(&run_id);
    assert_eq!(shown["trigger"]["type"], "watcher");
    assert_eq!(shown["trigger"]["path"], file.display().to_string());
    assert_eq!(shown["status"], "succeeded");
    drop(w);
}

#[test]
fn move_and_copy_actions() {
    let env = Env::new();
    let inbox = env.path("inbox");
    let copies = env.path("copies");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(&copies).unwrap();
    let moved_to = env.path("moved");
    let backup = env.path("backup");
    setup(
        &env,
        &format!(
            "- name: mover\n  path: {}/*.torrent\n  events: [created]\n  action: move\n  command: {}\n  debounce: 100ms\n\
             - name: copier\n  path: {}\n  events: [created]\n  action: copy\n  command: {}\n  debounce: 100ms\n",
            inbox.display(),
            moved_to.display(),
            copies.display(),
            backup.display()
        ),
    );
    let w = Watching::start(&env, &["mover", "copier"]);
    std::fs::write(inbox.join("a.torrent"), "torrent").unwrap();
    std::fs::write(inbox.join("a.txt"), "not a torrent").unwrap();
    std::fs::write(copies.join("c.dat"), "data").unwrap();
    let mtime = std::fs::metadata(copies.join("c.dat"))
        .unwrap()
        .modified()
        .unwrap();
    wait_for(Duration::from_secs(20), || {
        moved_to.join("a.torrent").is_file().then_some(())
    })
    .expect("moved");
    wait_for(Duration::from_secs(20), || {
        (read(&backup.join("c.dat")) == "data").then_some(())
    })
    .expect("copied");
    assert!(!inbox.join("a.torrent").exists());
    assert!(inbox.join("a.txt").exists());
    assert_eq!(read(&copies.join("c.dat")), "data");
    assert_eq!(
        std::fs::metadata(backup.join("c.dat"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    drop(w);
}

#[test]
fn list_test_and_the_seed_file() {
    let env = Env::new();
    std::fs::write(
        env.root.join("watchers.yaml"),
        include_str!("fixtures/seed/examples/watchers.yaml"),
    )
    .unwrap();
    let list = env
        .claw(&["watcher", "list", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["name"], "torrent-mover");
    assert_eq!(list[0]["pattern"], "*.torrent");
    assert_eq!(list[1]["action"], "shell");
    let table = env.claw(&["watcher", "list"]);
    table.expect_code(0);
    assert!(
        table.stdout.contains("screenshot-processor"),
        "{}",
        table.stdout
    );

    // `test` shows what would happen, and runs nothing without --run.
    let t = env.claw(&[
        "watcher",
        "test",
        "screenshot-processor",
        "--path",
        "/tmp/x/Screenshot 1.png",
    ]);
    t.expect_code(0);
    assert!(
        t.stdout
            .contains("would run `/bin/sh -c optipng $WATCHER_FILE` with "),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.contains("WATCHER_FILE=/tmp/x/Screenshot 1.png"),
        "{}",
        t.stdout
    );
    let bad = env.claw(&["watcher", "test", "torent-mover"]);
    bad.expect_code(2);
    assert_eq!(
        bad.stderr,
        "error: no watcher rule named `torent-mover`\n  = help: did you mean `torrent-mover`?\n"
    );
}

#[test]
fn test_run_does_the_action() {
    let env = Env::new();
    let log = env.path("t.log");
    setup(
        &env,
        &format!(
            "- name: echo\n  path: {}\n  action: shell\n  command: 'echo \"$WATCHER_EVENT $WATCHER_FILE $WATCHER_TAG\" > {}'\n  args: {{tag: v1}}\n",
            env.path("w").display(),
            log.display()
        ),
    );
    let r = env.claw(&["watcher", "test", "echo", "--event", "modified", "--run"]);
    r.expect_code(0);
    assert!(r.stdout.contains(": ok: exit 0"), "{}", r.stdout);
    assert_eq!(
        read(&log),
        format!("modified {}/test_file.tmp v1\n", env.path("w").display())
    );
}

#[test]
fn a_broken_watchers_yaml_is_reported_in_full() {
    let env = Env::new();
    setup(
        &env,
        "- name: a\n  path: /tmp\n  events: [created, delted]\n  action: shel\n  command: x\n- name: b\n  path: /tmp\n  action: move\n  debounce: 500\n",
    );
    let r = env.claw(&["watcher", "start"]);
    r.expect_code(2);
    let file = env.root.join("watchers.yaml");
    assert_eq!(
        r.stderr,
        format!(
            "error: {f}:3:21: unknown event `delted` (expected created, modified, deleted or moved)
  |
3 |   events: [created, delted]
  |                     ^
  = help: did you mean `deleted`?

error: {f}:4:11: unknown action `shel` (expected shell, skill, workflow, move or copy)
  |
4 |   action: shel
  |           ^
  = help: did you mean `shell`?

error: {f}:6:3: rule `b` has no `command` (the destination directory for a move action)
  |
6 | - name: b
  |   ^

error: {f}:9:13: invalid `debounce`: a bare number is ambiguous
  |
9 |   debounce: 500
  |             ^
  = help: write a unit, e.g. `500ms`, `2s` or `0s` for none
",
            f = file.display()
        )
    );
    assert_eq!(r.stdout, "");
    env.claw(&["watcher", "list"]).expect_code(2);
}

#[test]
fn a_skill_action_runs_the_skill_with_its_args_and_the_file() {
    let env = Env::new();
    let out = env.path("skill.out");
    let dir = env.root.join("skills/stamp");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("skill.yaml"),
        "name: stamp\nversion: \"1.0.0\"\ndescription: writes what it got\nauthor: tests\nscript: run.sh\n",
    )
    .expect("manifest");
    std::fs::write(
        dir.join("run.sh"),
        format!(
            "#!/bin/sh\necho \"$SKILL_TAG $SKILL_FILE\" > {}\necho stamped\n",
            out.display()
        ),
    )
    .expect("script");
    setup(
        &env,
        &format!(
            "- name: stamper\n  path: {}\n  action: skill\n  command: stamp\n  args: {{tag: v2}}\n",
            env.path("w").display()
        ),
    );
    let r = env.claw(&["watcher", "test", "stamper", "--run"]);
    r.expect_code(0);
    assert!(r.stdout.contains("ok: exit 0: stamped"), "{}", r.stdout);
    assert_eq!(
        read(&out),
        format!("v2 {}/test_file.tmp\n", env.path("w").display())
    );
    let audit = env.claw(&["audit", "search", "skill.run"]);
    assert!(audit.stdout.contains("stamp"), "{}", audit.stdout);
}

/// A recursive rule over a tree that holds claw's data directory never hears claw's own writes
/// (the action's log, the audit log): one file change is one action, not a loop. A rule on the
/// data directory itself, or on a pseudo-filesystem, is refused with a reason.
#[test]
fn claws_own_data_directory_and_pseudo_filesystems_are_never_watched() {
    let env = Env::new();
    // The temp dir holds `home/` (the data directory) and the watched files.
    let top = env.dir.path().to_path_buf();
    let watched = top.join("inbox");
    std::fs::create_dir_all(&watched).unwrap();
    let log = env.path("actions.log");
    let yaml = format!(
        "- name: everything\n  path: {}\n  recursive: true\n  events: [created, modified, deleted, moved]\n  action: shell\n  command: 'case \"$WATCHER_FILE\" in *actions.log) ;; *) echo \"$WATCHER_EVENT $WATCHER_FILE\" >> {} ;; esac'\n  debounce: 150ms\n- name: own\n  path: {}\n  action: shell\n  command: 'true'\n- name: proc\n  path: /proc\n  recursive: true\n  action: shell\n  command: 'true'\n",
        top.display(),
        log.display(),
        env.home.join("logs").display(),
    );
    setup(&env, &yaml);
    let w = Watching::start(&env, &["everything"]);
    for rule in ["own", "proc"] {
        let said = wait_for(Duration::from_secs(20), || {
            let errs = w.errs.lock().unwrap().clone();
            errs.into_iter()
                .find(|l| l.contains(&format!("rule `{rule}`")) && l.contains("never watches"))
        });
        assert!(said.is_some(), "{:?}", w.errs.lock().unwrap());
    }
    std::fs::write(watched.join("one.txt"), "x").unwrap();
    let got = wait_lines(&log, 1);
    // Several debounce periods: claw's own writes (logs, audit) would have shown by now.
    std::thread::sleep(Duration::from_millis(1500));
    let got2 = lines_of(&log);
    assert_eq!(got2, got, "{:?}", w.lines());
    assert_eq!(got2.len(), 1, "{got2:?}");
    assert!(got2[0].ends_with("inbox/one.txt"), "{got2:?}");
    let lines = w.stop();
    assert!(!lines.iter().any(|l| l.contains("/home/")), "{lines:?}");
}
