//! The command line: version, workflow show/graph, run list/show/logs/rerun, --detach, and the
//! isolation `CLAW_HOME` gives.

use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::common::*;

const DIAMOND: &str = "name: diamond
description: A fan-out and a join
steps:
  - name: root
    command: echo root
  - name: left
    needs: [root]
    command: echo left
  - name: right
    needs: [root]
    command: echo right
  - name: join
    needs: [left, right]
    command: echo join
";

/// Runs a workflow with `--json`; returns its exit status and run id.
fn run(env: &Env, name: &str) -> (i32, String) {
    let ran = env.claw(&["workflow", "run", name, "--json"]);
    let id = ran.json()["id"].as_str().expect("run id").to_owned();
    (ran.code, id)
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn version() {
    let env = Env::new();
    let ran = env.claw(&["--version"]);
    ran.expect_code(0);
    assert_eq!(ran.stdout, "claw 0.1.0\n");
}

#[test]
fn workflow_show_lists_steps_and_needs() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let shown = env.claw(&["workflow", "show", "diamond", "--json"]);
    shown.expect_code(0);
    let shown = shown.json();
    assert_eq!(shown["name"], "diamond");
    assert_eq!(shown["description"], "A fan-out and a join");
    let needs = needs_of(&shown);
    assert_eq!(
        needs,
        vec![
            ("root".to_owned(), json!([])),
            ("left".to_owned(), json!(["root"])),
            ("right".to_owned(), json!(["root"])),
            ("join".to_owned(), json!(["left", "right"])),
        ]
    );
    assert_eq!(step(&shown, "root")["type"], "shell");
    assert_eq!(step(&shown, "root")["command"], "echo root");
    assert_eq!(step(&shown, "root")["on_failure"], "abort");
    assert_eq!(step(&shown, "root")["timeout_secs"], 300.0);

    let text = env.claw(&["workflow", "show", "diamond"]);
    text.expect_code(0);
    assert!(text.stdout.contains("left,right"), "{}", text.stdout);
}

#[test]
fn graph_as_dot() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let ran = env.claw(&["workflow", "graph", "diamond", "--format", "dot"]);
    ran.expect_code(0);
    assert_eq!(
        ran.stdout,
        r#"digraph "diamond" {
  rankdir=LR;
  s0 [label="root"];
  s1 [label="left"];
  s2 [label="right"];
  s3 [label="join"];
  s0 -> s1;
  s0 -> s2;
  s1 -> s3;
  s2 -> s3;
}
"#
    );
}

#[test]
fn graph_as_mermaid() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let ran = env.claw(&["workflow", "graph", "diamond", "--format", "mermaid"]);
    ran.expect_code(0);
    assert_eq!(
        ran.stdout,
        r#"graph TD
  s0["root"]
  s1["left"]
  s2["right"]
  s3["join"]
  s0 --> s1
  s0 --> s2
  s1 --> s3
  s2 --> s3
"#
    );
}

#[test]
fn graph_as_text_shows_levels() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let ran = env.claw(&["workflow", "graph", "diamond"]);
    ran.expect_code(0);
    assert_eq!(
        ran.stdout,
        "1. root\n2. left ← root   |   right ← root\n3. join ← left, right\n"
    );
}

#[test]
fn run_list_filters() {
    let env = Env::new();
    assert_eq!(env.claw(&["run", "list"]).stdout, "No runs.\n");
    env.workflow("good", "steps:\n  - name: a\n    command: 'true'\n");
    env.workflow("bad", "steps:\n  - name: a\n    command: 'false'\n");
    let (code, good1) = run(&env, "good");
    assert_eq!(code, 0);
    let (code, bad1) = run(&env, "bad");
    assert_eq!(code, 1);
    let (_, good2) = run(&env, "good");

    let all = env.claw(&["run", "list", "--json"]);
    all.expect_code(0);
    assert_eq!(
        ids(&all.json()),
        vec![good2.clone(), bad1.clone(), good1.clone()],
        "newest first"
    );

    let failed = env
        .claw(&["run", "list", "--json", "--status", "failed"])
        .json();
    assert_eq!(ids(&failed), vec![bad1.clone()]);
    assert_eq!(failed[0]["workflow"], "bad");
    assert_eq!(failed[0]["status"], "failed");

    let good = env
        .claw(&["run", "list", "--json", "--workflow", "good"])
        .json();
    assert_eq!(ids(&good), vec![good2.clone(), good1.clone()]);

    let limited = env.claw(&["run", "list", "--json", "--limit", "1"]).json();
    assert_eq!(ids(&limited), vec![good2.clone()]);

    let none = env
        .claw(&[
            "run",
            "list",
            "--json",
            "--workflow",
            "good",
            "--status",
            "failed",
        ])
        .json();
    assert_eq!(none, json!([]));

    let table = env.claw(&["run", "list"]);
    table.expect_code(0);
    assert!(table.stdout.starts_with("RUN "), "{}", table.stdout);
    for id in [&good1, &bad1, &good2] {
        assert!(table.stdout.contains(id.as_str()), "{}", table.stdout);
    }
}

#[test]
fn run_show_takes_a_unique_prefix() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let (_, first) = run(&env, "diamond");
    let (_, second) = run(&env, "diamond");

    // The shortest prefix that tells the two apart.
    let common = first
        .chars()
        .zip(second.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let prefix = &second[..=common];
    assert_eq!(env.show(prefix)["id"], second.as_str());
    assert_eq!(env.show(&second.to_uppercase())["id"], second.as_str());

    let ambiguous = env.claw(&["run", "show", &second[..common]]);
    ambiguous.expect_code(2);
    assert!(
        ambiguous.stderr.contains("matches several runs"),
        "{}",
        ambiguous.stderr
    );

    let text = env.claw(&["run", "show", prefix]);
    text.expect_code(0);
    assert!(
        text.stdout.starts_with(&format!("run       {second}\n")),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("status    succeeded"),
        "{}",
        text.stdout
    );
}

#[test]
fn run_show_of_an_unknown_id_is_usage_error() {
    let env = Env::new();
    let ran = env.claw(&["run", "show", "01zzzzzzzz"]);
    ran.expect_code(2);
    assert_eq!(ran.stderr, "error: no run matches `01zzzzzzzz`\n");
}

#[test]
fn run_logs_prints_step_output() {
    let env = Env::new();
    env.workflow(
        "talk",
        "steps:
  - name: one
    command: echo out-one
  - name: two
    command: echo out-two; echo err-two >&2
  - name: quiet
    command: 'true'
",
    );
    let (code, id) = run(&env, "talk");
    assert_eq!(code, 0);
    let all = env.claw(&["run", "logs", &id]);
    all.expect_code(0);
    assert_eq!(
        all.stdout,
        "==> one (succeeded) <==\nout-one\n==> two (succeeded) <==\nout-two\nerr-two\n"
    );
    let two = env.claw(&["run", "logs", &id, "two"]);
    two.expect_code(0);
    assert_eq!(two.stdout, "out-two\nerr-two\n");

    let wrong = env.claw(&["run", "logs", &id, "tow"]);
    wrong.expect_code(2);
    assert!(
        wrong
            .stderr
            .contains("has no step `tow`; did you mean `two`?"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn rerun_from_a_step_keeps_the_earlier_ones() {
    let env = Env::new();
    let counts = env.path("counts");
    std::fs::create_dir_all(&counts).expect("mkdir");
    let fixed = env.path("fixed");
    let c = counts.display();
    env.workflow(
        "pipeline",
        &format!(
            "steps:
  - name: fetch
    command: echo run >> {c}/fetch
  - name: build
    command: echo run >> {c}/build; test -e {fixed}
  - name: ship
    command: echo run >> {c}/ship
",
            fixed = fixed.display()
        ),
    );
    let count = |s: &str| read(&counts.join(s)).lines().count();
    let (code, old) = run(&env, "pipeline");
    assert_eq!(code, 1);
    assert_eq!((count("fetch"), count("build"), count("ship")), (1, 1, 0));

    std::fs::write(&fixed, "").expect("fix");
    let ran = env.claw(&["run", "rerun", &old, "--from", "build", "--json"]);
    ran.expect_code(0);
    let new = ran.json();
    let new_id = new["id"].as_str().expect("id").to_owned();
    assert_ne!(new_id, old);
    assert_eq!((count("fetch"), count("build"), count("ship")), (1, 2, 1));

    let shown = env.show(&new_id);
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(step(&shown, "fetch")["status"], "succeeded");
    assert_eq!(
        step(&shown, "fetch")["message"],
        format!("kept from run {old}").as_str()
    );
    assert_eq!(step(&shown, "build")["status"], "succeeded");
    assert_eq!(step(&shown, "build")["attempts"], 1);
    assert_eq!(step(&shown, "ship")["status"], "succeeded");
    assert_eq!(shown["trigger"]["type"], "rerun");
    assert_eq!(shown["trigger"]["of"], old.as_str());
    // The old run is untouched.
    assert_eq!(env.show(&old)["status"], "failed");
}

#[test]
fn rerun_without_from_runs_everything_again() {
    let env = Env::new();
    let log = env.path("log");
    env.workflow(
        "twice",
        &format!(
            "params:\n  who: {{type: string, default: a}}\nsteps:\n  - name: s\n    command: echo $CLAW_PARAM_WHO >> {}\n",
            log.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "twice", "--json", "-p", "who=b"]);
    ran.expect_code(0);
    let old = ran.json()["id"].as_str().expect("id").to_owned();
    env.claw(&["run", "rerun", &old, "--json"]).expect_code(0);
    assert_eq!(read(&log), "b\nb\n", "the rerun used the same params");
}

#[test]
fn rerun_from_an_unknown_step() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let (_, id) = run(&env, "diamond");
    let ran = env.claw(&["run", "rerun", &id, "--from", "jion"]);
    ran.expect_code(2);
    assert!(
        ran.stderr
            .contains("workflow `diamond` has no step `jion`; did you mean `join`?"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        ids(&env.claw(&["run", "list", "--json"]).json()),
        vec![id.clone()]
    );
}

#[test]
fn detach_prints_the_id_and_the_run_finishes_in_the_background() {
    let env = Env::new();
    let marker = env.path("done");
    env.workflow(
        "bg",
        &format!(
            "steps:\n  - name: a\n    command: sleep 0.3\n  - name: b\n    command: touch {}\n",
            marker.display()
        ),
    );
    let ran = env.claw(&["workflow", "run", "bg", "--detach"]);
    ran.expect_code(0);
    let id = ran.stdout.trim().to_owned();
    assert_eq!(id.len(), 26, "not a run id: {:?}", ran.stdout);
    let status = wait_for(Duration::from_secs(30), || {
        let s = env.show(&id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        matches!(s.as_str(), "succeeded" | "failed" | "cancelled").then_some(s)
    });
    assert_eq!(status.as_deref(), Some("succeeded"));
    assert!(marker.exists());

    let ran = env.claw(&["workflow", "run", "bg", "--detach", "--json"]);
    ran.expect_code(0);
    let queued = ran.json();
    assert_eq!(queued["status"], "queued");
    let id = queued["id"].as_str().expect("id").to_owned();
    assert!(
        wait_for(Duration::from_secs(30), || (env.show(&id)["status"]
            == "succeeded")
            .then_some(()))
        .is_some()
    );
}

#[test]
fn claw_home_isolates_instances() {
    let one = Env::new();
    let two = Env::new();
    one.workflow("diamond", DIAMOND);
    two.workflow("diamond", DIAMOND);
    let (_, id) = run(&one, "diamond");
    assert_eq!(two.claw(&["run", "list", "--json"]).json(), json!([]));
    two.claw(&["run", "show", &id]).expect_code(2);
    let (_, id2) = run(&two, "diamond");
    assert_eq!(
        ids(&one.claw(&["run", "list", "--json"]).json()),
        vec![id.clone()]
    );
    assert_eq!(
        ids(&two.claw(&["run", "list", "--json"]).json()),
        vec![id2.clone()]
    );
    assert!(one.home.join("claw.db").is_file());
    assert!(two.home.join("claw.db").is_file());
}

#[test]
fn the_home_flag_overrides_the_environment() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let other = env.path("other-home");
    let other = other.display().to_string();
    let ran = env.claw(&["--home", &other, "workflow", "run", "diamond", "--json"]);
    ran.expect_code(0);
    assert_eq!(env.claw(&["run", "list", "--json"]).json(), json!([]));
    let listed = env
        .claw(&["--home", &other, "run", "list", "--json"])
        .json();
    assert_eq!(ids(&listed).len(), 1);
}

#[test]
fn rerun_from_a_branch_keeps_the_other_branch() {
    let env = Env::new();
    let counts = env.path("counts");
    std::fs::create_dir_all(&counts).expect("mkdir");
    let c = counts.display();
    env.workflow(
        "branches",
        &format!(
            "steps:
  - name: root
    command: echo run >> {c}/root
  - name: left
    needs: [root]
    command: echo run >> {c}/left
  - name: right
    needs: [root]
    command: echo run >> {c}/right
  - name: join
    needs: [left, right]
    command: echo run >> {c}/join
"
        ),
    );
    let count = |s: &str| read(&counts.join(s)).lines().count();
    let (code, old) = run(&env, "branches");
    assert_eq!(code, 0);
    let ran = env.claw(&["run", "rerun", &old, "--from", "left", "--json"]);
    ran.expect_code(0);
    let new = ran.json();
    assert_eq!(
        [count("root"), count("left"), count("right"), count("join")],
        [1, 2, 1, 2],
        "only `left` and what depends on it ran again"
    );
    let kept = format!("kept from run {old}");
    assert_eq!(step(&new, "root")["message"], kept.as_str());
    assert_eq!(step(&new, "right")["message"], kept.as_str());
    assert_eq!(step(&new, "join")["status"], "succeeded");
}

#[test]
fn rerun_works_after_the_workflow_file_is_gone() {
    let env = Env::new();
    let log = env.path("log");
    let path = env.workflow(
        "ephemeral",
        &format!(
            "steps:\n  - name: a\n    command: echo a >> {l}\n  - name: b\n    command: echo b >> {l}\n",
            l = log.display()
        ),
    );
    let (code, old) = run(&env, "ephemeral");
    assert_eq!(code, 0);
    std::fs::remove_file(&path).expect("rm");
    let ran = env.claw(&["run", "rerun", &old, "--from", "b", "--json"]);
    ran.expect_code(0);
    assert_eq!(ran.json()["status"], "succeeded");
    assert_eq!(read(&log), "a\nb\nb\n");
}

#[test]
fn logs_follow_prints_until_the_run_ends() {
    let env = Env::new();
    env.workflow(
        "chatty",
        "steps:\n  - name: a\n    command: echo first; sleep 0.5; echo second\n  - name: b\n    command: echo third\n",
    );
    let ran = env.claw(&["workflow", "run", "chatty", "--detach"]);
    ran.expect_code(0);
    let id = ran.stdout.trim().to_owned();
    let follow = env.claw(&["run", "logs", &id, "--follow"]);
    follow.expect_code(0);
    let text: String = follow
        .stdout
        .lines()
        .filter(|l| !l.starts_with("==> "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(text, "first\nsecond\nthird\n", "{}", follow.stdout);
    assert_eq!(env.show(&id)["status"], "succeeded");
}

#[test]
fn resuming_a_finished_run_reports_it() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    let (_, id) = run(&env, "diamond");
    let ran = env.claw(&["run", "resume", &id]);
    ran.expect_code(0);
    assert!(
        ran.stderr.contains(&format!("run {id} already succeeded")),
        "{}",
        ran.stderr
    );
}

/// `claw workflow list` shows `name:`; a workflow can be run by it as well as by its file name.
#[test]
fn a_workflow_runs_by_its_name_field_too() {
    let env = Env::new();
    env.workflow(
        "nb",
        "name: nightly-backup\nsteps:\n  - name: a\n    command: echo by-name\n",
    );
    let ran = env.claw(&["workflow", "run", "nightly-backup", "--json"]);
    ran.expect_code(0);
    assert_eq!(ran.json()["workflow"], "nightly-backup");
    env.workflow(
        "nb2",
        "name: nightly-backup\nsteps:\n  - name: a\n    command: echo twin\n",
    );
    let twice = env.claw(&["workflow", "run", "nightly-backup"]);
    twice.expect_code(2);
    assert!(
        twice
            .stderr
            .contains("several workflows are named `nightly-backup`"),
        "{}",
        twice.stderr
    );
}

/// Retention: a finished run beyond `retention.max_runs` of its workflow, or older than
/// `retention.max_age`, is deleted with its logs when a run finishes.
#[test]
fn run_history_keeps_the_newest_runs_and_drops_old_logs() {
    let env = Env::new();
    std::fs::write(env.root.join("claw.yaml"), "retention:\n  max_runs: 2\n").expect("claw.yaml");
    env.workflow("r", "steps:\n  - name: a\n    command: echo hi\n");
    env.workflow("other", "steps:\n  - name: a\n    command: echo other\n");
    env.claw(&["workflow", "run", "other"]).expect_code(0);
    let mut ids = Vec::new();
    for _ in 0..4 {
        env.claw(&["workflow", "run", "r"]).expect_code(0);
        ids.push(env.last_run().expect("run id"));
    }
    let listed = env
        .claw(&["run", "list", "--workflow", "r", "--json"])
        .json();
    let kept: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(kept, [ids[3].as_str(), ids[2].as_str()]);
    assert!(
        !env.home.join("logs/runs").join(&ids[0]).exists(),
        "old logs removed"
    );
    assert!(env.home.join("logs/runs").join(&ids[3]).exists());
    // Another workflow's history is its own.
    assert_eq!(
        env.claw(&["run", "list", "--workflow", "other", "--json"])
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    std::fs::write(
        env.root.join("claw.yaml"),
        "retention:\n  max_age: 1s\n  max_runs: 100\n",
    )
    .expect("claw.yaml");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    env.claw(&["workflow", "run", "r"]).expect_code(0);
    let listed = env
        .claw(&["run", "list", "--workflow", "r", "--json"])
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

/// `run logs RUN STEP` of a step that printed nothing says so (on stderr: stdout stays the log),
/// and dry runs are marked in `run list`, never looking like runs that did something.
#[test]
fn silent_steps_and_dry_runs_say_what_they_are() {
    let env = Env::new();
    env.workflow(
        "q",
        "steps:\n  - name: quiet\n    command: 'true'\n  - name: loud\n    command: echo hi\n",
    );
    env.claw(&["workflow", "run", "q"]).expect_code(0);
    let id = env.last_run().expect("a run");
    let quiet = env.claw(&["run", "logs", &id, "quiet"]);
    quiet.expect_code(0);
    assert_eq!(quiet.stdout, "");
    assert!(
        quiet.stderr.contains("step `quiet` of run") && quiet.stderr.contains("printed nothing"),
        "{}",
        quiet.stderr
    );
    let loud = env.claw(&["run", "logs", &id, "loud"]);
    assert_eq!(loud.stdout, "hi\n");
    assert_eq!(loud.stderr, "");
    env.claw(&["workflow", "run", "q", "--dry-run"])
        .expect_code(0);
    let listed = env.claw(&["run", "list"]);
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", listed.stdout);
    assert!(lines[1].contains("(dry run)"), "{}", listed.stdout);
    assert!(!lines[2].contains("(dry run)"), "{}", listed.stdout);
}

/// A failed step's summary shows the end of its stderr (what explains the failure, not just the
/// exit code) and the command that shows its whole output.
#[test]
fn a_failed_step_shows_its_last_stderr_lines_and_the_logs_command() {
    let env = Env::new();
    env.workflow(
        "f",
        "steps:\n  - name: fetch config\n    command: \"echo starting; echo 'warming up' >&2; echo 'fatal: could not read config /etc/x' >&2; exit 255\"\n",
    );
    let ran = env.claw(&["workflow", "run", "f"]);
    ran.expect_code(1);
    let id = env.last_run().expect("a run");
    assert!(
        ran.stdout.contains("  fetch config (stderr, last lines):\n    warming up\n    fatal: could not read config /etc/x\n"),
        "{}",
        ran.stdout
    );
    let hint = format!("the whole output: claw run logs {id} 'fetch config'");
    assert!(ran.stdout.contains(&hint), "{}", ran.stdout);
    // The command it gives works.
    let logs = env.claw(&["run", "logs", &id, "fetch config"]);
    assert!(
        logs.stdout.contains("fatal: could not read config"),
        "{}",
        logs.stdout
    );
}

/// `-n` and `--limit` mean the same in every listing (the seed's spellings too), and a listing
/// cut at its limit says so.
#[test]
fn limits_are_spelled_alike_and_a_cut_listing_says_so() {
    let env = Env::new();
    env.workflow("q", "steps:\n  - name: a\n    command: 'true'\n");
    for _ in 0..3 {
        env.claw(&["workflow", "run", "q"]).expect_code(0);
    }
    for flag in ["-n", "--limit"] {
        let listed = env.claw(&["run", "list", flag, "2", "--json"]);
        listed.expect_code(0);
        assert_eq!(listed.json().as_array().map(Vec::len), Some(2));
        assert!(
            listed.stderr.contains("there are more"),
            "{}",
            listed.stderr
        );
        let tail = env.claw(&["audit", "tail", flag, "2", "--json"]);
        tail.expect_code(0);
        assert_eq!(
            tail.json().as_array().map(Vec::len),
            Some(2),
            "{}",
            tail.stdout
        );
        let search = env.claw(&["audit", "search", "workflow", flag, "1", "--json"]);
        search.expect_code(0);
        assert_eq!(
            search.json().as_array().map(Vec::len),
            Some(1),
            "{}",
            search.stdout
        );
        assert!(search.stderr.contains("not shown"), "{}", search.stderr);
    }
    let all = env.claw(&["run", "list", "-n", "3"]);
    assert!(!all.stderr.contains("there are more"), "{}", all.stderr);
    env.claw(&["audit", "tail", "--lines", "1"]).expect_code(0);
}

/// What bash offers after `words` (the last one being completed), through the script of
/// `claw completions bash` calling the claw on PATH.
fn bash_completes(env: &Env, words: &[&str]) -> Vec<String> {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_claw"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source <(claw completions bash) || exit 9\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}\n\
         _clap_complete_claw claw \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("PATH", path)
        .env("CLAW_HOME", &env.home)
        .env("CLAW_ROOT", &env.root)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_offer_workflows_runs_and_jobs_as_they_are_now() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    env.workflow("backup-nas", "steps:\n  - name: a\n    command: 'true'\n");
    let offered = bash_completes(&env, &["claw", "workflow", "run", ""]);
    assert!(offered.contains(&"diamond".to_owned()), "{offered:?}");
    assert!(offered.contains(&"backup-nas".to_owned()), "{offered:?}");
    let offered = bash_completes(&env, &["claw", "workflow", "run", "back"]);
    assert_eq!(offered, vec!["backup-nas".to_owned()]);
    // Nothing has run: completing offers no run and creates no data directory.
    assert!(
        !bash_completes(&env, &["claw", "run", "show", "0"])
            .iter()
            .any(|w| w.len() == 26)
    );
    assert!(!env.home.exists(), "completion created the data directory");

    let (_, id) = run(&env, "diamond");
    let offered = bash_completes(&env, &["claw", "run", "logs", &id[..4]]);
    assert_eq!(offered, vec![id.clone()]);
    env.claw(&["cron", "add", "nightly-backup", "@daily", "true"])
        .expect_code(0);
    let offered = bash_completes(&env, &["claw", "cron", "run", "nig"]);
    assert_eq!(offered, vec!["nightly-backup".to_owned()]);
    // Subcommands too.
    let offered = bash_completes(&env, &["claw", "workf"]);
    assert_eq!(offered, vec!["workflow".to_owned()]);
}

#[test]
fn completion_scripts_and_man_page() {
    let env = Env::new();
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef claw"),
        ("fish", "complete"),
    ] {
        let ran = env.claw(&["completions", shell]);
        ran.expect_code(0);
        assert!(ran.stdout.contains(marker), "{shell}: {}", ran.stdout);
        assert!(
            ran.stdout.contains("CLAW_COMPLETE"),
            "{shell}: {}",
            ran.stdout
        );
    }
    env.claw(&["completions", "tcsh"]).expect_code(2);
    let man = env.claw(&["man"]);
    man.expect_code(0);
    assert!(man.stdout.contains(".TH claw 1"), "{}", man.stdout);
    assert!(man.stdout.contains("workflow"), "{}", man.stdout);
}

/// Every argument and flag of every command says what it is in `--help`.
#[test]
fn every_flag_and_argument_has_a_description() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" || arg.is_hide_set() {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&claw::cli::command(), "claw", &mut missing);
    assert!(missing.is_empty(), "without a description: {missing:#?}");
}

/// The seed's command shapes that users' scripts call keep working.
#[test]
fn the_seed_command_shapes_work() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);

    // `claw dag run|visualize` are `workflow run|graph`.
    let ran = env.claw(&["dag", "run", "diamond", "--max-workers", "1"]);
    ran.expect_code(0);
    assert_eq!(
        env.claw(&["run", "list", "--json"])
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let shown = env.claw(&["dag", "visualize", "diamond"]);
    shown.expect_code(0);
    assert!(
        shown.stdout.contains("join ← left, right"),
        "{}",
        shown.stdout
    );
    env.claw(&["dag", "run", "diamond", "--max-workers", "0"])
        .expect_code(2);

    // `skill create --name --description --type --permission --trigger`.
    env.claw(&[
        "skill",
        "create",
        "--name",
        "disk",
        "--description",
        "Disk report",
        "--type",
        "bash",
        "--permission",
        "vault:API_KEY",
        "--trigger",
        "disk full",
    ])
    .expect_code(0);
    let info = env
        .claw(&["skill", "info", "disk", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(info["permissions"], json!(["vault:API_KEY"]), "{info}");
    assert_eq!(info["description"], "Disk report");
    env.claw(&["skill", "create", "x", "--name", "y"])
        .expect_code(2);
    // `skill sync` is `skill hub`.
    env.claw(&["skill", "sync", "list", "--help"])
        .expect_code(0);

    // `claw status`: one line per subsystem.
    let status = env.claw(&["status", "--json"]).expect_code(0).json();
    let names: Vec<&str> = status["subsystems"]
        .as_array()
        .expect("subsystems")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "daemon",
            "workflows",
            "runs",
            "cron",
            "watchers",
            "skills",
            "vault",
            "audit"
        ]
    );
    let runs = &status["subsystems"][2];
    assert_eq!(runs["ok"], true, "{runs}");
    let table = env.claw(&["status"]);
    table.expect_code(0);
    assert!(table.stdout.contains("1 skill(s)"), "{}", table.stdout);
}

/// Colour: on a terminal by default, never when NO_COLOR is set or off a terminal, and as
/// `--color always|never` says whatever the output is.
#[test]
fn colour_follows_the_terminal_no_color_and_the_flag() {
    let env = Env::new();
    env.workflow("diamond", DIAMOND);
    env.claw(&["workflow", "run", "diamond"]).expect_code(0);
    let green = "\u{1b}[32msucceeded";
    let piped = env.claw(&["run", "list"]);
    assert!(!piped.stdout.contains('\u{1b}'), "{}", piped.stdout);
    let always = env.claw(&["--color", "always", "run", "list"]);
    assert!(always.stdout.contains(green), "{}", always.stdout);
    // Columns stay aligned: the escape codes take no width.
    let lines: Vec<&str> = always.stdout.lines().collect();
    let created = |l: &str| {
        l.replace("\u{1b}[32m", "")
            .replace("\u{1b}[0m", "")
            .find("20")
    };
    assert_eq!(
        created(lines[0].replace("CREATED", "20").as_str()),
        created(lines[1])
    );
    let never = on_pty(&env.command(&["--color", "never", "run", "list"]), &[]);
    assert!(!never.stdout.contains('\u{1b}'), "{}", never.stdout);
    let mut on_terminal = env.command(&["run", "list"]);
    on_terminal.env("TERM", "xterm").env_remove("NO_COLOR");
    let tty = on_pty(&on_terminal, &[]);
    assert!(tty.stdout.contains(green), "{}", tty.stdout);
    let mut no_color = env.command(&["run", "list"]);
    no_color.env("NO_COLOR", "1").env("TERM", "xterm");
    let plain = on_pty(&no_color, &[]);
    assert!(!plain.stdout.contains('\u{1b}'), "{}", plain.stdout);
    env.claw(&["--color", "sometimes", "run", "list"])
        .expect_code(2);
}
