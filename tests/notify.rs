//! Where messages come from: the `notify` step kind, a workflow's `notify_profile` and
//! `notify:`, an approval gate announcing itself, and cron jobs' `output_channel`; every one
//! through the outbox to a loopback JSON webhook (and Telegram's sendMessage shape).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;

use crate::common::*;

type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

struct Hook {
    addr: SocketAddr,
    seen: Seen,
}

impl Hook {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// The `text` of every message posted to `path`.
    fn texts(&self, path: &str) -> Vec<String> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p.ends_with(path))
            .map(|(_, v)| v["text"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

async fn handle(State(seen): State<Seen>, uri: Uri, body: Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let n = {
        let mut s = seen.lock().expect("lock");
        s.push((uri.path().to_owned(), v));
        s.len()
    };
    // Telegram's answer shape; a webhook ignores it.
    serde_json::json!({"ok": true, "result": {"message_id": n}}).to_string()
}

fn hook() -> Hook {
    let seen = Seen::default();
    let addr = serve_router(Router::new().fallback(handle).with_state(seen.clone()));
    Hook { addr, seen }
}

fn with_telegram(mut c: std::process::Command, h: &Hook) -> Ran {
    c.env("TELEGRAM_BOT_TOKEN", "123456:notify-test-token")
        .env("TELEGRAM_API_URL", h.url(""))
        .output()
        .expect("run claw")
        .into()
}

#[test]
fn a_notify_step_sends_its_rendered_message_to_a_target_and_a_profile() {
    let env = Env::new();
    let h = hook();
    env.write(
        "root/profiles.yaml",
        &format!(
            "ops:\n  - channel: webhook\n    target: {}\n  - channel: telegram\n    target: '777'\n",
            h.url("/ops")
        ),
    );
    env.workflow(
        "tell",
        &format!(
            r#"name: tell
params:
  env: {{type: string, default: staging}}
steps:
  - name: direct
    type: notify
    to: webhook:{}
    message: "deployed ${{{{ params.env }}}} in ${{{{ run.id }}}}"
  - name: team
    type: notify
    profile: ops
    message: "all done: $(id) `id`"
  - name: after
    command: echo "sent=${{{{ steps.team.outputs.sent }}}}"
"#,
            h.url("/direct")
        ),
    );
    let r = with_telegram(
        env.command(&["workflow", "run", "tell", "-p", "env=prod", "--json"]),
        &h,
    );
    r.expect_code(0);
    let run = r.json();
    let id = run["id"].as_str().expect("id").to_owned();
    assert_eq!(h.texts("/direct"), vec![format!("deployed prod in {id}")]);
    // Chat text is data: the shell never sees it.
    assert_eq!(h.texts("/ops"), vec!["all done: $(id) `id`".to_owned()]);
    let tg = h.texts("/sendMessage");
    assert_eq!(tg.len(), 1, "{tg:?}");
    assert!(tg[0].contains("all done"), "{tg:?}");
    let team = step(&run, "team");
    assert_eq!(team["outputs"]["sent"], 2, "{team}");
    assert_eq!(team["outputs"]["failed"], 0);
    let audit = read(&env.home.join("audit.log"));
    assert_eq!(audit.matches("\"message.sent\"").count(), 3, "{audit}");
    assert!(
        !audit.contains("all done"),
        "the audit log holds no message text"
    );
}

#[test]
fn a_failing_channel_or_an_unknown_profile_is_told_and_only_the_profile_fails_the_step() {
    let env = Env::new();
    env.workflow(
        "bad",
        r"name: bad
steps:
  - name: down
    type: notify
    to: webhook:http://127.0.0.1:9/nothing-listens
    message: hello
  - name: nobody
    type: notify
    profile: opz
    message: hello
",
    );
    let r = env.claw(&["workflow", "run", "bad", "--json"]);
    r.expect_code(1);
    let run = r.json();
    // A channel that fails never fails the step (the message stays queued for the daemon).
    assert_eq!(step(&run, "down")["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "down")["outputs"]["sent"], 0);
    assert_eq!(step(&run, "nobody")["status"], "failed");
    assert!(
        step(&run, "nobody")["message"]
            .as_str()
            .unwrap_or("")
            .contains("profile not found: opz"),
        "{run}"
    );
}

#[test]
fn a_run_end_is_told_to_notify_profile_and_notify_on_and_a_gate_to_its_telegram_approver() {
    let env = Env::new();
    let h = hook();
    env.write(
        "root/profiles.yaml",
        &format!(
            "summary:\n  - channel: webhook\n    target: {}\n",
            h.url("/summary")
        ),
    );
    env.workflow(
        "ends",
        &format!(
            r"name: ends
notify_profile: summary
notify:
  on: [failure, waiting]
  to: webhook:{}
steps:
  - name: ok
    command: 'true'
  - name: gate
    type: approval
    message: ship it?
    approvers: [telegram:4242]
  - name: boom
    needs: [gate]
    command: exit 3
",
            h.url("/alerts")
        ),
    );
    let mut c = env.command(&["workflow", "run", "ends"]);
    c.env("TELEGRAM_BOT_TOKEN", "123456:notify-test-token")
        .env("TELEGRAM_API_URL", h.url(""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let asked = wait_for(Duration::from_secs(60), || {
        let tg = h.texts("/sendMessage");
        (!tg.is_empty() && !h.texts("/alerts").is_empty()).then_some(tg)
    })
    .expect("the gate was announced");
    assert!(asked[0].contains("ship it?"), "{asked:?}");
    let id = env.last_run().expect("run");
    assert!(asked[0].contains(&id), "{asked:?}");
    env.claw(&["run", "approve", &id, "gate", "--as", "telegram:4242"])
        .expect_code(0);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1));
    let summary = h.texts("/summary");
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert!(
        summary[0].starts_with("Workflow 'ends': 2 passed, 1 failed"),
        "{summary:?}"
    );
    assert!(
        summary[0].contains(&format!("run {id} failed")),
        "{summary:?}"
    );
    let alerts = h.texts("/alerts");
    assert_eq!(alerts.len(), 2, "waiting, then the failure: {alerts:?}");
    assert!(alerts[1].starts_with("Workflow 'ends'"), "{alerts:?}");
}

#[test]
fn a_cron_job_output_channel_is_delivered_and_an_unknown_profile_is_reported() {
    let env = Env::new();
    let h = hook();
    let target = format!("webhook:{}", h.url("/cron"));
    env.claw(&[
        "cron",
        "add",
        "hello",
        "@daily",
        "echo hi there",
        "--output",
        &target,
    ])
    .expect_code(0);
    let r = env.claw(&["cron", "run", "hello", "--json"]);
    r.expect_code(0);
    assert_eq!(r.json()["delivery"]["queued"], target.as_str());
    assert_eq!(
        h.texts("/cron"),
        vec!["[cron] hello — OK\nhi there\n".to_owned()]
    );
    env.claw(&[
        "cron", "add", "lost", "@daily", "true", "--output", "nobody",
    ])
    .expect_code(0);
    let r = env.claw(&["cron", "run", "lost"]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains("the output was not sent to nobody: profile not found: nobody"),
        "{}",
        r.stderr
    );
}
