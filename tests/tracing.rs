//! The tracing output on stderr (`CLAW_LOG`, `--log-level`, `-v`, `CLAW_LOG_FORMAT=json`): lines
//! at the run's and steps' transitions, the audit log mirrored under `claw::audit`, and no
//! secret value in any line, whatever event carried it.

use crate::common::*;

const CANARY: &str = "zz-Trace-Canary-4e5d3c";

/// A vault with the canary, and a workflow whose failing step's reason holds it: the step
/// reports `working directory /nonexistent/<canary> does not exist`, and the `step finished`
/// line carries that reason as it came.
fn env_with_canary() -> Env {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "CANARY", CANARY]).expect_code(0);
    env.workflow(
        "traced",
        r#"steps:
  - name: uses
    command: echo "${{ secrets.CANARY }}"
  - name: bad-cwd
    needs: [uses]
    cwd: /nonexistent/${{ secrets.CANARY }}
    command: "true"
"#,
    );
    env
}

#[test]
fn debug_lines_mask_secrets_and_mirror_the_audit_log() {
    let env = env_with_canary();
    let ran: Ran = env
        .command(&["workflow", "run", "traced", "--json"])
        .env("CLAW_LOG", "debug")
        .env_remove("CLAW_LOG_FORMAT")
        .output()
        .expect("claw")
        .into();
    ran.expect_code(1);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    let having = |needle: &str| -> Vec<&str> {
        lines
            .iter()
            .copied()
            .filter(|l| l.contains(needle))
            .collect()
    };
    for needle in [
        "store opened",
        "vault read",
        "run started",
        "step started",
        "run finished",
    ] {
        assert!(
            !having(needle).is_empty(),
            "no `{needle}` line in\n{}",
            ran.stderr
        );
    }
    let finished = having("step=bad-cwd");
    let finished: Vec<&&str> = finished
        .iter()
        .filter(|l| l.contains("step finished"))
        .collect();
    assert_eq!(finished.len(), 1, "{}", ran.stderr);
    assert!(
        finished[0].contains("/nonexistent/***"),
        "the reason is there, masked: {}",
        finished[0]
    );
    let audit = having("claw::audit");
    assert!(
        audit
            .iter()
            .any(|l| l.contains("action=workflow.run.finished") && l.contains("outcome=failed")),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains(CANARY), "{}", ran.stderr);
    assert!(!ran.stdout.contains(CANARY));
}

#[test]
fn json_lines_and_the_flag_and_the_default() {
    let env = env_with_canary();
    let ran: Ran = env
        .command(&[
            "--log-level",
            "claw::audit=info",
            "workflow",
            "run",
            "traced",
        ])
        .env("CLAW_LOG_FORMAT", "json")
        .env("CLAW_LOG", "off")
        .output()
        .expect("claw")
        .into();
    ran.expect_code(1);
    let events: Vec<serde_json::Value> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(!events.is_empty(), "{}", ran.stderr);
    assert!(
        events.iter().all(|e| e["target"] == "claw::audit"),
        "{events:?}"
    );
    let finished = events
        .iter()
        .find(|e| e["fields"]["action"] == "workflow.run.finished")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(finished["fields"]["outcome"], "failed");
    assert_eq!(finished["level"], "INFO");
    assert!(!ran.stderr.contains(CANARY), "{}", ran.stderr);

    // Without any setting: warn and above only, so a good run prints no tracing line.
    env.workflow("quiet", "steps:\n  - name: a\n    command: \"true\"\n");
    let quiet: Ran = env
        .command(&["workflow", "run", "quiet", "--quiet"])
        .env_remove("CLAW_LOG")
        .output()
        .expect("claw")
        .into();
    quiet.expect_code(0);
    assert!(
        !quiet.stderr.contains("INFO") && !quiet.stderr.contains("DEBUG"),
        "{}",
        quiet.stderr
    );
    // -vv is debug.
    let verbose = env.claw(&["-vv", "vault", "list"]);
    verbose.expect_code(0);
    assert!(verbose.stderr.contains("vault read"), "{}", verbose.stderr);
}

#[test]
fn a_bad_filter_or_format_is_a_usage_error() {
    let env = Env::new();
    let bad: Ran = env
        .command(&["vault", "list"])
        .env("CLAW_LOG", "claw=loud")
        .output()
        .expect("claw")
        .into();
    bad.expect_code(2);
    assert!(
        bad.stderr
            .starts_with("error: CLAW_LOG: `claw=loud` is not a log filter"),
        "{}",
        bad.stderr
    );
    let bad: Ran = env
        .command(&["vault", "list"])
        .env("CLAW_LOG_FORMAT", "xml")
        .output()
        .expect("claw")
        .into();
    bad.expect_code(2);
    assert!(
        bad.stderr
            .contains("CLAW_LOG_FORMAT: expected `text` or `json`, found `xml`"),
        "{}",
        bad.stderr
    );
}
