//! Bad input is refused with exit status 2 and a message that says what is wrong and where;
//! hostile files (alias bombs, deep nesting, huge files) are refused quickly; an environment
//! problem is exit status 3, never a panic; and the store stays usable after every failure.

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use crate::common::*;

/// The store still answers, and no run was recorded by refused commands.
#[track_caller]
fn no_runs(env: &Env) {
    let list = env.claw(&["run", "list", "--json"]);
    list.expect_code(0);
    assert_eq!(
        list.json(),
        serde_json::json!([]),
        "a refused command recorded a run"
    );
}

#[track_caller]
fn refused(ran: &Ran, needle: &str) {
    ran.expect_code(2);
    assert!(
        ran.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

#[test]
fn a_missing_workflow_is_not_found() {
    let env = Env::new();
    env.workflow("deploy", "steps:\n  - name: a\n    command: 'true'\n");
    let ran = env.claw(&["workflow", "run", "nope"]);
    refused(&ran, "workflow not found: nope");
    assert!(
        ran.stderr
            .contains(&env.root.join("workflows").display().to_string()),
        "{}",
        ran.stderr
    );

    let ran = env.claw(&["workflow", "run", "deplyo"]);
    refused(&ran, "workflow not found: deplyo");
    assert!(
        ran.stderr.contains("did you mean `deploy`?"),
        "{}",
        ran.stderr
    );

    refused(
        &env.claw(&["workflow", "show", "nope"]),
        "workflow not found: nope",
    );
    refused(
        &env.claw(&["workflow", "run", "./nope.yaml"]),
        "workflow file not found: ./nope.yaml",
    );
    no_runs(&env);
}

#[test]
fn an_unreadable_file_is_refused() {
    let env = Env::new();
    let path = env.workflow("secret", "steps:\n  - name: a\n    command: 'true'\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::read(&path).is_ok() {
        eprintln!("skipped: this user (root?) can read a mode-000 file");
        return;
    }
    let ran = env.claw(&["workflow", "run", "secret"]);
    refused(&ran, "secret.yaml: cannot read: permission denied");
    no_runs(&env);
}

#[test]
fn a_directory_is_not_a_workflow() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("dir.yaml")).expect("mkdir");
    refused(
        &env.claw(&["workflow", "run", "dir.yaml"]),
        "dir.yaml: is a directory, not a workflow file",
    );
    refused(
        &env.claw(&["workflow", "validate", "./root/workflows"]),
        "./root/workflows: is a directory, not a workflow file",
    );
    no_runs(&env);
}

/// Nine levels of nine aliases each: 9^9 nodes if expanded.
fn billion_laughs() -> String {
    let mut yaml = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        yaml.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    yaml.push_str("steps:\n  - name: x\n    command: echo hi\n    args:\n      bomb: *a9\n");
    yaml
}

#[test]
fn an_alias_bomb_is_refused_quickly() {
    let env = Env::new();
    env.workflow("bomb", &billion_laughs());
    let start = Instant::now();
    let ran = env.claw(&["workflow", "run", "bomb"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    refused(&ran, "bomb.yaml:");
    assert!(ran.stderr.starts_with("error: "), "{}", ran.stderr);
    assert!(ran.stderr.contains("invalid YAML"), "{}", ran.stderr);
    no_runs(&env);
}

#[test]
fn the_alias_bomb_message_is_whole() {
    let env = Env::new();
    env.workflow("bomb", &billion_laughs());
    let ran = env.claw(&["workflow", "validate", "bomb"]);
    ran.expect_code(2);
    let headline = ran.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        headline.matches('(').count(),
        headline.matches(')').count(),
        "unbalanced: {headline}"
    );
    assert!(!headline.contains("{ nodes"), "{headline}");
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let env = Env::new();
    let depth = 10_000;
    env.workflow(
        "deep",
        &format!("steps: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    );
    let start = Instant::now();
    let ran = env.claw(&["workflow", "run", "deep"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    refused(&ran, "deep.yaml:1:");
    assert!(ran.stderr.contains("invalid YAML"), "{}", ran.stderr);
    // Deep mappings too.
    let mut yaml = String::from("steps:\n  - name: a\n    command: 'true'\n    args:\n");
    yaml.push_str(&"{a: ".repeat(depth));
    yaml.push_str(&"}".repeat(depth));
    yaml.push('\n');
    env.workflow("deepmap", &yaml);
    let start = Instant::now();
    let ran = env.claw(&["workflow", "validate", "deepmap"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    ran.expect_code(2);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    no_runs(&env);
}

#[test]
fn a_huge_file_is_refused_before_parsing() {
    let env = Env::new();
    env.workflow("huge", &"#".repeat(5 * 1024 * 1024));
    refused(
        &env.claw(&["workflow", "validate", "huge"]),
        "workflow files are limited to 4194304 bytes",
    );
}

#[test]
fn an_empty_file_says_so() {
    let env = Env::new();
    env.workflow("empty", "");
    refused(
        &env.claw(&["workflow", "run", "empty"]),
        "empty.yaml:1:1: the file is empty: a workflow needs `steps:`",
    );
    no_runs(&env);
}

#[test]
fn non_utf8_names_line_and_column() {
    let env = Env::new();
    let path = env.root.join("workflows").join("latin1.yaml");
    std::fs::write(&path, b"steps:\n  - name: a\n    command: echo caf\xe9\n").expect("write");
    let ran = env.claw(&["workflow", "run", "latin1"]);
    refused(
        &ran,
        "latin1.yaml:3:22: file is not valid UTF-8 (workflow files must be UTF-8 text)",
    );
    no_runs(&env);
}

#[test]
fn invalid_yaml_names_line_and_column() {
    let env = Env::new();
    env.workflow("syntax", "steps:\n  - name: a\n    command: [echo\n");
    let ran = env.claw(&["workflow", "run", "syntax"]);
    refused(&ran, "syntax.yaml:3:14: invalid YAML: unclosed bracket");
    assert!(
        ran.stderr.contains("3 |     command: [echo\n"),
        "{}",
        ran.stderr
    );
    no_runs(&env);
}

const WITH_PARAMS: &str = "params:
  note: {type: string, default: hi}
  count: {type: integer, default: 1}
  target: {type: string}
  mode: {type: string, default: fast, enum: [fast, safe]}
steps:
  - name: a
    command: echo $CLAW_PARAM_NOTE
";

#[test]
fn an_unknown_param_suggests_the_near_one() {
    let env = Env::new();
    env.workflow("p", WITH_PARAMS);
    let ran = env.claw(&["workflow", "run", "p", "-p", "target=x", "-p", "nope=1"]);
    refused(
        &ran,
        "error: workflow `p` has no param `nope` (it takes: note, count, target, mode); did you mean `note`?",
    );
    no_runs(&env);
}

#[test]
fn a_param_of_the_wrong_type() {
    let env = Env::new();
    env.workflow("p", WITH_PARAMS);
    refused(
        &env.claw(&["workflow", "run", "p", "-p", "target=x", "-p", "count=many"]),
        "param `count`: expected an integer, found `many`",
    );
    refused(
        &env.claw(&[
            "workflow",
            "run",
            "p",
            "-p",
            "target=x",
            "-p",
            "mode=reckless",
        ]),
        "param `mode` must be one of fast, safe, not `reckless`",
    );
    refused(
        &env.claw(&["workflow", "run", "p", "-p", "target"]),
        "-p expected KEY=VALUE, found `target`",
    );
    no_runs(&env);
}

#[test]
fn a_missing_required_param() {
    let env = Env::new();
    env.workflow("p", WITH_PARAMS);
    refused(
        &env.claw(&["workflow", "run", "p"]),
        "param `target` is required: pass it with -p target=VALUE",
    );
    no_runs(&env);
}

#[test]
fn every_param_problem_is_reported_at_once() {
    let env = Env::new();
    env.workflow("p", WITH_PARAMS);
    let ran = env.claw(&["workflow", "run", "p", "-p", "count=x", "-p", "nope=1"]);
    ran.expect_code(2);
    for needle in [
        "no param `nope`",
        "param `count`",
        "param `target` is required",
    ] {
        assert!(
            ran.stderr.contains(needle),
            "{needle} missing from:\n{}",
            ran.stderr
        );
    }
    no_runs(&env);
}

#[test]
fn bad_run_arguments() {
    let env = Env::new();
    refused(
        &env.claw(&["run", "show", "01nosuchrun"]),
        "no run matches `01nosuchrun`",
    );
    refused(
        &env.claw(&["run", "list", "--status", "bogus"]),
        "unknown run status `bogus`",
    );
    refused(&env.claw(&["run", "logs", "nosuch"]), "no run matches");
    let ran = env.claw(&["workflow", "frobnicate"]);
    ran.expect_code(2);
    no_runs(&env);
}

#[test]
fn a_log_directory_that_cannot_be_created_is_an_environment_error() {
    let env = Env::new();
    let marker = env.path("ran");
    env.workflow(
        "logged",
        &format!(
            "steps:\n  - name: a\n    command: echo hi; touch {}\n",
            marker.display()
        ),
    );
    // `logs/runs` is a file, so no run's log directory can be made under it.
    env.write("home/logs/runs", "not a directory");
    let ran = env.claw(&["workflow", "run", "logged"]);
    ran.expect_code(3);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot create the log directory"),
        "{}",
        ran.stderr
    );
    assert!(!marker.exists(), "the step ran without a log");

    let list = env.claw(&["run", "list", "--json"]);
    list.expect_code(0);
    let runs = list.json();
    let id = runs[0]["id"]
        .as_str()
        .expect("the run was recorded")
        .to_owned();
    env.claw(&["run", "list"]).expect_code(0);

    // Once the disk is fixed, the run can be carried on.
    std::fs::remove_file(env.path("home/logs/runs")).expect("rm");
    let resumed = env.claw(&["run", "resume", &id, "--json"]);
    resumed.expect_code(0);
    assert_eq!(env.show(&id)["status"], "succeeded");
    assert!(marker.exists());
}

/// Names that only look the same are one name (NFC), and names that display as something else
/// (bidirectional overrides, invisible or control characters) are refused where they are written.
#[test]
fn look_alike_and_misleading_names() {
    let env = Env::new();
    // `café` composed and decomposed: the same step twice.
    env.workflow(
        "nfd",
        "steps:\n  - name: \"caf\u{e9}\"\n    command: 'true'\n  - name: \"cafe\u{301}\"\n    command: 'true'\n",
    );
    refused(
        &env.claw(&["workflow", "validate", "nfd"]),
        "nfd.yaml:4:5: duplicate step name",
    );
    // `needs:` written in the other form still finds it.
    env.workflow(
        "needs",
        "steps:\n  - name: \"caf\u{e9}\"\n    command: 'true'\n  - name: after\n    needs: [\"cafe\u{301}\"]\n    command: 'true'\n",
    );
    env.claw(&["workflow", "validate", "needs"]).expect_code(0);
    for (what, name) in [
        ("bidi override", "deploy\u{202E}gnp.exe"),
        ("isolate", "a\u{2067}b"),
        ("zero width", "de\u{200B}ploy"),
        ("escape", "x\u{1b}[31m"),
    ] {
        env.workflow(
            "bad",
            &format!(
                "steps:\n  - name: {}\n    command: 'true'\n",
                serde_json::json!(name)
            ),
        );
        let ran = env.claw(&["workflow", "validate", "bad"]);
        refused(&ran, ":2:11: the step `name` contains U+");
        assert!(!ran.stderr.contains('\u{202E}'), "{what}: echoed raw");
        env.workflow(
            "bad",
            &format!(
                "name: {}\nsteps:\n  - name: a\n    command: 'true'\n",
                serde_json::json!(name)
            ),
        );
        refused(
            &env.claw(&["workflow", "validate", "bad"]),
            ":1:7: `name` contains U+",
        );
    }
    no_runs(&env);
}
