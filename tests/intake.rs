//! `claw intake run` end to end: the LLM's plan from the loopback provider of tests/llm.rs, the
//! mapped skills run in parallel, `runtime/` files, `intake.*` audit entries, the Telegram start
//! and finish messages, and bad input (empty text, an unknown role, no provider, a bad plan).

use serde_json::Value;

use crate::common::*;
use crate::llm::{Answer, anthropic_text, cmd, serve};

fn skill(env: &Env, name: &str, description: &str, script: &str) {
    env.write(
        &format!("root/skills/{name}/skill.yaml"),
        &format!(
            "name: {name}\nversion: '1'\ndescription: {description}\nauthor: t\nscript: run.sh\n"
        ),
    );
    let p = env.write(&format!("root/skills/{name}/run.sh"), script);
    let mut perm = std::fs::metadata(&p).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).expect("chmod");
}

fn actions(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.home.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["action"].as_str().map(str::to_owned))
        .filter(|a| a.starts_with("intake."))
        .collect()
}

fn count(list: &[String], action: &str) -> usize {
    list.iter().filter(|a| *a == action).count()
}

fn runtime(env: &Env) -> Value {
    serde_json::from_str(&read(&env.home.join("runtime/current_request.json"))).expect("json")
}

#[test]
fn the_llm_plan_runs_in_parallel_and_is_saved_and_announced() {
    let srv = serve();
    let env = Env::new();
    let marks = env.path("marks");
    std::fs::create_dir_all(&marks).expect("mkdir");
    // Both skills wait for the other's mark: they only finish if they run at the same time.
    let m = marks.display();
    skill(
        &env,
        "disk-usage",
        "Report disk usage",
        &format!(
            "#!/bin/sh\ntouch {m}/a\nfor i in $(seq 100); do [ -e {m}/b ] && break; sleep 0.1; done\n[ -e {m}/b ] || exit 7\necho 'disk: 42% used'\n"
        ),
    );
    skill(
        &env,
        "net-scan",
        "Scan the network",
        &format!(
            "#!/bin/sh\ntouch {m}/b\nfor i in $(seq 100); do [ -e {m}/a ] && break; sleep 0.1; done\necho 'scan: host down' >&2\nexit 3\n"
        ),
    );
    let never = env.path("never");
    skill(
        &env,
        "unused",
        "Never chosen",
        &format!("#!/bin/sh\ntouch {}\n", never.display()),
    );
    srv.script(
        "/v1/messages",
        vec![anthropic_text(&[
            "{\"tasks\": [{\"id\": 1, \"role\": \"verifier\", \"skill\": \"disk-usage\"},",
            " {\"id\": 2, \"role\": \"executor\", \"skill\": \"net-scan\"},",
            " {\"id\": 3, \"role\": \"planner\", \"skill\": null},",
            " {\"id\": 4, \"role\": \"executor\", \"skill\": \"made-up\"}]}",
        ])],
    );
    let out = cmd(
        &env,
        &srv,
        &[
            "intake",
            "run",
            "- how full are the disks\n* scan the LAN\n\nplan the move\nbake a cake",
            "--execute",
            "--max-workers",
            "2",
            "--provider",
            "anthropic",
            "--notify",
            "telegram:100",
            "--json",
        ],
    )
    .env("TELEGRAM_BOT_TOKEN", "123456:intake-token")
    .env("TELEGRAM_API_URL", srv.url())
    .output()
    .expect("run");
    let ran: Ran = out.into();
    ran.expect_code(1);
    assert!(ran.stderr.contains("1 task(s) failed"), "{}", ran.stderr);
    let printed = ran.json();
    let saved = runtime(&env);
    assert_eq!(printed, saved);
    assert_eq!(saved["execute"], true);
    assert_eq!(saved["role"], "all");
    assert_eq!(saved["requirements"].as_array().expect("reqs").len(), 4);
    let t = &saved["tasks"];
    assert_eq!(t[0]["skill"], "disk-usage");
    assert_eq!(t[0]["status"], "ok");
    assert_eq!(t[0]["assigned_role"], "verifier");
    assert_eq!(t[0]["mapped_by"], "llm");
    assert_eq!(t[0]["output"], "disk: 42% used\n");
    assert_eq!(t[1]["status"], "failed");
    assert!(t[1]["error"].as_str().expect("err").contains('3'), "{t}");
    assert_eq!(t[2]["status"], "skipped");
    assert_eq!(t[3]["status"], "skipped");
    assert!(t[3]["error"].as_str().expect("err").contains("made-up"));
    assert_eq!(
        saved["role_assignments"]["executor"],
        serde_json::json!([2, 4])
    );
    assert_eq!(saved["role_assignments"]["planner"], serde_json::json!([3]));
    assert!(!never.exists());
    assert!(env.home.join("runtime/context-cleared.json").exists());
    // The LLM was told the requirements and the catalogue.
    let asked = serde_json::to_string(&srv.seen()[0].body).expect("body");
    assert!(
        asked.contains("scan the LAN") && asked.contains("net-scan"),
        "{asked}"
    );
    let a = actions(&env);
    for (action, n) in [
        ("intake.context_cleared", 1),
        ("intake.requirements_extracted", 1),
        ("intake.plan_built", 1),
        ("intake.skill_mapped", 2),
        ("intake.skill_map_failed", 2),
        ("intake.task_started", 2),
        ("intake.task_completed", 2),
        ("intake.session_saved", 1),
        ("intake.notification", 2),
    ] {
        assert_eq!(count(&a, action), n, "{action} in {a:?}");
    }
    let start = srv.reply("100", 1);
    assert!(start.contains("4 requirement"), "{start}");
    let finish = srv.reply("100", 2);
    assert!(
        finish.contains("net-scan: failed") && finish.contains("disk-usage: ok"),
        "{finish}"
    );
}

#[test]
fn keywords_plan_without_an_llm_and_the_role_filter_skips_the_rest() {
    let env = Env::new();
    skill(
        &env,
        "disk-usage",
        "Report disk usage",
        "#!/bin/sh\necho disk\n",
    );
    let ran_logs = env.path("ran-logs");
    skill(
        &env,
        "log-search",
        "Search the logs",
        &format!("#!/bin/sh\ntouch {}\n", ran_logs.display()),
    );
    let ran = env.claw(&[
        "intake",
        "run",
        "check disk usage\nsearch logs for errors",
        "--keywords",
    ]);
    ran.expect_code(0);
    assert!(ran.stdout.contains("plan only"), "{}", ran.stdout);
    let saved = runtime(&env);
    assert_eq!(saved["execute"], false);
    assert_eq!(saved["tasks"][0]["skill"], "disk-usage");
    assert_eq!(saved["tasks"][0]["assigned_role"], "verifier");
    assert_eq!(saved["tasks"][0]["status"], "planned");
    assert_eq!(saved["tasks"][1]["skill"], "log-search");
    assert_eq!(saved["tasks"][1]["mapped_by"], "keywords");
    let ran = env.claw(&[
        "intake",
        "run",
        "check disk usage\nsearch logs for errors",
        "--keywords",
        "--execute",
        "--role",
        "verifier",
        "--json",
    ]);
    ran.expect_code(0);
    let saved = runtime(&env);
    assert_eq!(saved["role"], "verifier");
    assert_eq!(saved["tasks"][0]["status"], "ok");
    assert_eq!(saved["tasks"][0]["output"], "disk\n");
    assert_eq!(saved["tasks"][1]["status"], "skipped");
    assert!(!ran_logs.exists());
    assert_eq!(count(&actions(&env), "intake.task_started"), 1);
}

#[test]
fn bad_input_is_refused_and_leaves_the_previous_request() {
    let srv = serve();
    let env = Env::new();
    skill(
        &env,
        "disk-usage",
        "Report disk usage",
        "#!/bin/sh\necho disk\n",
    );
    let ran = env.claw(&["intake", "run", " \n - \n", "--keywords"]);
    ran.expect_code(2);
    assert!(ran.stderr.contains("no requirement"), "{}", ran.stderr);
    assert!(!env.home.join("runtime").exists());
    let ran = env.claw(&["intake", "run", "x", "--role", "boss", "--keywords"]);
    ran.expect_code(2);
    assert!(
        ran.stderr.contains("boss") && ran.stderr.contains("verifier"),
        "{}",
        ran.stderr
    );
    env.claw(&["intake", "run", "check disk", "--keywords"])
        .expect_code(0);
    let before = read(&env.home.join("runtime/current_request.json"));
    // No provider: an unknown one, and the default `claude` CLI not on PATH.
    let ran = env.claw(&["intake", "run", "check disk", "--provider", "nosuch"]);
    ran.expect_code(1);
    assert!(
        ran.stderr.contains("nosuch") && ran.stderr.contains("--keywords"),
        "{}",
        ran.stderr
    );
    let ran: Ran = env
        .command(&["intake", "run", "check disk"])
        .env("PATH", "/usr/bin:/bin")
        .env_remove("JOB_MODEL")
        .env_remove("LLM_PROVIDERS")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run")
        .into();
    ran.expect_code(1);
    assert!(ran.stderr.contains("LLM"), "{}", ran.stderr);
    // A plan that is not what was asked for.
    srv.script(
        "/v1/messages",
        vec![
            anthropic_text(&["Sure! Here is the plan."]),
            anthropic_text(&["{\"tasks\": [{\"id\": 1, \"role\": \"boss\", \"skill\": null}]}"]),
            Answer::Error { status: 401, retry_after: None, body: "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"bad key\"}}".to_owned() },
        ],
    );
    for expected in ["not JSON", "tasks[0].role", "failed"] {
        let ran: Ran = cmd(
            &env,
            &srv,
            &["intake", "run", "check disk", "--provider", "anthropic"],
        )
        .env("LLM_FALLBACK", "false")
        .output()
        .expect("run")
        .into();
        ran.expect_code(1);
        assert!(ran.stderr.contains(expected), "{expected}: {}", ran.stderr);
    }
    assert_eq!(read(&env.home.join("runtime/current_request.json")), before);
}

#[test]
fn telegram_skill_mode_runs_a_message_as_an_intake_request() {
    let srv = serve();
    let env = Env::new();
    skill(
        &env,
        "disk-usage",
        "Report disk usage",
        "#!/bin/sh\necho 'disk: 42% used'\n",
    );
    srv.script(
        "/v1/messages",
        vec![anthropic_text(&[
            "{\"tasks\": [{\"id\": 1, \"role\": \"verifier\", \"skill\": \"disk-usage\"}]}",
        ])],
    );
    let mut daemon = cmd(&env, &srv, &["serve", "--no-http"])
        .env("TELEGRAM_BOT_TOKEN", "123456:intake-mode-token")
        .env("TELEGRAM_API_URL", srv.url())
        .env("ALLOWED_CHAT_IDS", "100")
        .env("JOB_MODEL", "anthropic")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Reaped)
        .expect("serve");
    srv.say(100, "/mode skill");
    assert_eq!(srv.reply("100", 1), "mode set to skill");
    srv.say(100, "how full are the disks");
    let reply = srv.reply("100", 2);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(reply.contains("disk-usage: ok"), "{reply}");
    assert!(reply.contains("disk: 42% used"), "{reply}");
    let saved = runtime(&env);
    assert_eq!(saved["tasks"][0]["status"], "ok");
    assert_eq!(saved["tasks"][0]["mapped_by"], "llm");
    let a = actions(&env);
    assert_eq!(count(&a, "intake.task_completed"), 1, "{a:?}");
    assert_eq!(count(&a, "intake.session_saved"), 1, "{a:?}");
}
