//! The audit log through the binary: runs are recorded, `claw audit verify` detects an edited,
//! deleted, reordered or cut entry and names it, and a torn last line is repaired on the next
//! append without losing it.

use crate::common::*;

fn lines(env: &Env) -> Vec<String> {
    read(&env.home.join("audit.log"))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(env: &Env, lines: &[String]) {
    std::fs::write(env.home.join("audit.log"), lines.join("\n") + "\n").expect("write");
}

/// Three quick runs of one step: twelve entries (run started, step started, step finished, run
/// finished).
fn env_with_runs() -> Env {
    let env = Env::new();
    env.workflow("q", "steps:\n  - name: a\n    command: 'true'\n");
    for _ in 0..3 {
        env.claw(&["workflow", "run", "q"]).expect_code(0);
    }
    env
}

#[test]
fn runs_are_recorded_and_the_chain_verifies() {
    let env = env_with_runs();
    let tail = env
        .claw(&["audit", "tail", "-n", "4", "--json"])
        .expect_code(0)
        .json();
    let actions: Vec<&str> = tail
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        [
            "workflow.run.started",
            "workflow.step.started",
            "workflow.step.finished",
            "workflow.run.finished"
        ]
    );
    assert_eq!(
        tail[2]["target"].as_str().map(|t| t.ends_with("/a")),
        Some(true)
    );
    assert_eq!(tail[3]["outcome"], "succeeded");
    assert!(
        tail[3]["actor"].as_str().unwrap_or("").starts_with("cli:"),
        "{tail}"
    );
    let verify = env.claw(&["audit", "verify"]);
    verify.expect_code(0);
    assert!(
        verify.stdout.contains("ok: 12 entries"),
        "{}",
        verify.stdout
    );
    let found = env
        .claw(&["audit", "search", "--action", "workflow.run", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(found.as_array().map(Vec::len), Some(6));
}

#[test]
fn an_edit_is_detected_and_named() {
    let env = env_with_runs();
    let mut l = lines(&env);
    assert!(l[4].contains("workflow.run.started"), "{}", l[4]);
    l[4] = l[4].replace("\"ok\"", "\"failed\"");
    write_lines(&env, &l);
    let v = env.claw(&["audit", "verify"]);
    v.expect_code(1);
    assert!(
        v.stderr
            .contains("BROKEN at line 5: entry 5 (line 5) was changed"),
        "{}",
        v.stderr
    );
}

#[test]
fn a_deleted_line_is_detected_and_named() {
    let env = env_with_runs();
    let mut l = lines(&env);
    l.remove(1);
    write_lines(&env, &l);
    let v = env.claw(&["audit", "verify", "--json"]);
    v.expect_code(1);
    let j = v.json();
    assert_eq!(j["problem"]["line"], 2);
    assert_eq!(j["problem"]["kind"], "deleted");
}

#[test]
fn swapped_lines_are_detected_and_named() {
    let env = env_with_runs();
    let mut l = lines(&env);
    l.swap(1, 4);
    write_lines(&env, &l);
    let j = env
        .claw(&["audit", "verify", "--json"])
        .expect_code(1)
        .json();
    assert_eq!(j["problem"]["line"], 2);
    assert_eq!(j["problem"]["kind"], "reordered");
}

#[test]
fn a_cut_last_line_is_reported_then_repaired_by_the_next_append() {
    let env = env_with_runs();
    let path = env.home.join("audit.log");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 15]).expect("cut");
    let j = env
        .claw(&["audit", "verify", "--json"])
        .expect_code(1)
        .json();
    assert_eq!(j["problem"]["kind"], "torn");
    assert_eq!(j["problem"]["line"], 12);
    env.claw(&["workflow", "run", "q"]).expect_code(0);
    let after = env
        .claw(&["audit", "verify", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(after["entries"], 16, "11 kept + repair + 4 new: {after}");
    let repaired = env
        .claw(&["audit", "search", "--action", "audit.repaired", "--json"])
        .expect_code(0)
        .json();
    let saved = repaired[0]["metadata"]["saved_to"]
        .as_str()
        .expect("saved_to")
        .to_owned();
    let cut = &bytes[..bytes.len() - 15];
    let fragment = &cut[cut.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)..];
    assert_eq!(std::fs::read(&saved).expect("fragment"), fragment);
}

#[test]
fn a_seed_audit_log_is_an_unchained_prefix() {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).expect("mkdir");
    std::fs::write(
        env.home.join("audit.log"),
        "{\"ts\": \"2026-03-01T10:00:00\", \"action\": \"skill.run\", \"detail\": \"heartbeat ok\", \"source\": \"cli\"}\n",
    )
    .expect("write");
    env.workflow("q", "steps:\n  - name: a\n    command: 'true'\n");
    env.claw(&["workflow", "run", "q"]).expect_code(0);
    let v = env.claw(&["audit", "verify"]);
    v.expect_code(0);
    assert!(v.stdout.contains("1 seed-format line(s)"), "{}", v.stdout);
    assert!(v.stdout.contains("ok: 4 entries"), "{}", v.stdout);
    let found = env.claw(&["audit", "search", "HEARTBEAT"]);
    found.expect_code(0);
    assert!(found.stdout.contains("skill.run"), "{}", found.stdout);
}

/// A seed-format log (no chain) with one line per time, each named by its `detail`.
fn env_with_times(times: &[(&str, chrono::DateTime<chrono::Utc>)]) -> Env {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).expect("mkdir");
    let lines: Vec<String> = times
        .iter()
        .map(|(name, t)| {
            serde_json::json!({"ts": t.to_rfc3339(), "action": "skill.run", "detail": name, "source": "cli"})
                .to_string()
        })
        .collect();
    write_lines(&env, &lines);
    env
}

fn found(env: &Env, args: &[&str]) -> Vec<String> {
    let mut all = vec!["audit", "search", "--json"];
    all.extend_from_slice(args);
    let out = env.claw(&all);
    out.expect_code(0);
    out.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn since_and_until_take_a_time_a_date_or_how_long_ago() {
    let now = chrono::Utc::now();
    let env = env_with_times(&[
        ("old", now - chrono::TimeDelta::hours(3)),
        ("recent", now - chrono::TimeDelta::minutes(30)),
    ]);
    assert_eq!(found(&env, &["--since", "1h"]), ["recent"]);
    assert_eq!(found(&env, &["--until", "1h"]), ["old"]);
    assert_eq!(found(&env, &["--since", "2h30m"]), ["recent"]);
    assert_eq!(found(&env, &["--since", "4h", "--until", "2h"]), ["old"]);
    assert_eq!(found(&env, &["--since", "7d"]), ["old", "recent"]);
    let between = (now - chrono::TimeDelta::hours(1)).to_rfc3339();
    assert_eq!(found(&env, &["--since", &between]), ["recent"]);
    assert_eq!(found(&env, &["--until", &between]), ["old"]);
    assert_eq!(found(&env, &["--since", "2000-01-01"]), ["old", "recent"]);
    assert!(found(&env, &["--until", "2000-01-01"]).is_empty());
}

#[test]
fn a_time_that_does_not_read_is_a_usage_error_naming_the_forms() {
    let env = env_with_times(&[("only", chrono::Utc::now())]);
    for (flag, bad) in [
        ("--since", "garbage"),
        ("--since", "3000"),
        ("--since", "2026-13-45"),
        ("--until", "yesterday"),
    ] {
        let out = env.claw(&["audit", "search", flag, bad]);
        out.expect_code(2);
        for form in ["RFC 3339", "2026-11-22", "how long ago", "2h30m"] {
            assert!(out.stderr.contains(form), "{flag} {bad}: {}", out.stderr);
        }
        assert!(out.stderr.contains(bad), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
}

/// Whole entries cut from the end leave a valid, shorter chain: the anchor kept beside the log
/// (the newest entry's seq and hash) shows they are gone.
#[test]
fn entries_removed_from_the_end_are_detected() {
    let env = env_with_runs();
    env.claw(&["audit", "verify"]).expect_code(0);
    let mut l = lines(&env);
    let total = l.len();
    l.truncate(total - 2);
    write_lines(&env, &l);
    let v = env.claw(&["audit", "verify", "--json"]);
    v.expect_code(1);
    let j = v.json();
    assert_eq!(j["problem"]["kind"], "truncated", "{j}");
    let message = j["problem"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "entries {}..{total} were removed from the end",
            total - 1
        )),
        "{message}"
    );
    // An entry rewritten in place (re-hashed, so the chain itself holds) is caught too.
    let env = env_with_runs();
    let mut l = lines(&env);
    let last: serde_json::Value = serde_json::from_str(l.last().expect("a line")).expect("json");
    let mut forged = last.clone();
    forged["actor"] = serde_json::json!("someone-else");
    forged["hash"] = serde_json::json!("0".repeat(64));
    let n = l.len();
    l[n - 1] = forged.to_string();
    write_lines(&env, &l);
    let v = env.claw(&["audit", "verify", "--json"]);
    v.expect_code(1);
}

/// What the seed's `claw audit tail` does with each line (seed-reference §1.10: `ts`, `action`,
/// `detail`, `source` rendered as text, `detail` cut to a width), run by Python on claw's log.
const SEED_TAIL: &str = r#"
import json, sys
from datetime import datetime
for raw in open(sys.argv[1]):
    e = json.loads(raw)
    datetime.fromisoformat(e["ts"])
    print(f"{e['ts'][:19]}  {e['action']:<24}  {e['detail'][:60]:<60}  {e.get('source', '')}")
"#;

#[test]
fn the_seed_can_read_every_entry_claw_writes_and_the_chain_still_verifies() {
    let env = Env::new();
    env.workflow("q", "steps:\n  - name: a\n    command: 'true'\n");
    env.claw(&["workflow", "run", "q"]).expect_code(0);
    env.claw(&["vault", "init"]).expect_code(0);
    let mut set = env.command(&["vault", "set", "TOKEN"]);
    set.stdin(std::process::Stdio::piped());
    let mut child = set.spawn().expect("spawn");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"hunter2-secret-value\n").expect("write");
    }
    assert!(child.wait().expect("wait").success());
    env.claw(&["cron", "add", "disk", "@hourly", "df -h"])
        .expect_code(0);

    let log = env.home.join("audit.log");
    let out = std::process::Command::new("python3")
        .args(["-c", SEED_TAIL])
        .arg(&log)
        .output()
        .expect("python3");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{printed}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("workflow.run"), "{printed}");
    assert!(printed.contains("vault.set"), "{printed}");
    assert!(!read(&log).contains("hunter2-secret-value"));
    // The structured detail is kept beside it, and claw's own views use it.
    let tail = env.claw(&["audit", "tail", "--json"]).expect_code(0).json();
    let entries = tail.as_array().expect("entries");
    assert!(
        entries
            .iter()
            .all(|e| e["detail"].is_string() && e["source"].is_string())
    );
    assert!(entries.iter().any(|e| e["metadata"].is_object()));
    env.claw(&["audit", "verify"]).expect_code(0);
}
