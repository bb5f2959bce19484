//! Telegram inbound in `claw serve`: long polling against a loopback Bot API (getUpdates with
//! offsets, sendMessage), the allowlist, /start access requests and /approve from the admin chat
//! (kept across a restart, no update replayed), `!run` with typed params and injection attempts,
//! and `claw msg chats`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;

use crate::common::*;

#[derive(Default)]
struct Bot {
    /// Every update ever posted, by id (getUpdates returns those at or after the offset).
    updates: Mutex<Vec<serde_json::Value>>,
    /// (chat id, text) of every sendMessage.
    sent: Mutex<Vec<(String, String)>>,
    /// The body of every sendMessage, editMessageText and answerCallbackQuery, by method.
    calls: Mutex<Vec<(String, serde_json::Value)>>,
    /// Offsets asked for, in order.
    offsets: Mutex<Vec<i64>>,
    /// setWebhook bodies.
    hooks: Mutex<Vec<serde_json::Value>>,
    /// Chats whose sendMessage answers 502 (Telegram down for them).
    down: Mutex<Vec<String>>,
}

struct Api {
    addr: SocketAddr,
    bot: Arc<Bot>,
}

impl Api {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn say(&self, chat: i64, user: i64, text: &str) {
        let mut u = self.bot.updates.lock().expect("lock");
        let id = 1000 + i64::try_from(u.len()).expect("len");
        u.push(serde_json::json!({"update_id": id, "message": {
            "message_id": id, "chat": {"id": chat, "type": "private"},
            "from": {"id": user, "is_bot": false, "first_name": format!("u{user}")},
            "date": 1_700_000_000, "text": text}}));
    }
    /// A user pressing a button under the message `message_id` of `chat`.
    fn press(&self, chat: i64, user: i64, message_id: i64, data: &str) {
        let mut u = self.bot.updates.lock().expect("lock");
        let id = 1000 + i64::try_from(u.len()).expect("len");
        u.push(serde_json::json!({"update_id": id, "callback_query": {
            "id": format!("cb{id}"), "chat_instance": "1",
            "from": {"id": user, "is_bot": false, "first_name": format!("u{user}")},
            "message": {"message_id": message_id, "chat": {"id": chat, "type": "private"},
                "date": 1_700_000_000, "text": "..."},
            "data": data}}));
    }
    fn calls(&self, method: &str) -> Vec<serde_json::Value> {
        self.bot
            .calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn wait_calls(&self, method: &str, n: usize, what: &str) -> Vec<serde_json::Value> {
        wait_for(Duration::from_secs(60), || {
            let got = self.calls(method);
            (got.len() >= n).then_some(got)
        })
        .unwrap_or_else(|| panic!("{what}: {method} got {:?}", self.calls(method)))
    }
    fn raw(&self, update: serde_json::Value) {
        self.bot.updates.lock().expect("lock").push(update);
    }
    fn to(&self, chat: &str) -> Vec<String> {
        self.bot
            .sent
            .lock()
            .expect("lock")
            .iter()
            .filter(|(c, _)| c == chat)
            .map(|(_, t)| t.clone())
            .collect()
    }
    fn wait_to(&self, chat: &str, n: usize, what: &str) -> Vec<String> {
        wait_for(Duration::from_secs(60), || {
            let got = self.to(chat);
            (got.len() >= n).then_some(got)
        })
        .unwrap_or_else(|| panic!("{what}: chat {chat} got {:?}", self.to(chat)))
    }
}

/// Telegram down for a chat: sendMessage answers 502 Bad Gateway, as a proxy in front of it
/// would; else [`answer`].
async fn handle(
    State(bot): State<Arc<Bot>>,
    uri: Uri,
    body: Bytes,
) -> (axum::http::StatusCode, String) {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let chat = match &v["chat_id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if uri.path().ends_with("/sendMessage") && bot.down.lock().expect("lock").contains(&chat) {
        let body =
            serde_json::json!({"ok": false, "error_code": 502, "description": "Bad Gateway"});
        return (axum::http::StatusCode::BAD_GATEWAY, body.to_string());
    }
    (axum::http::StatusCode::OK, answer(bot, uri, body).await)
}

async fn answer(bot: Arc<Bot>, uri: Uri, body: Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = uri.path();
    if path.ends_with("/getUpdates") {
        let offset = v["offset"].as_i64().unwrap_or(0);
        bot.offsets.lock().expect("lock").push(offset);
        for _ in 0..10 {
            let due: Vec<serde_json::Value> = bot
                .updates
                .lock()
                .expect("lock")
                .iter()
                .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                .cloned()
                .collect();
            if !due.is_empty() {
                return serde_json::json!({"ok": true, "result": due}).to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return serde_json::json!({"ok": true, "result": []}).to_string();
    }
    let method = path.rsplit('/').next().unwrap_or("").to_owned();
    if ["sendMessage", "editMessageText", "answerCallbackQuery"].contains(&method.as_str()) {
        bot.calls
            .lock()
            .expect("lock")
            .push((method.clone(), v.clone()));
    }
    if method == "editMessageText" {
        if v["message_id"].as_i64().is_none() || v["text"].as_str().is_none() {
            return serde_json::json!({"ok": false, "error_code": 400, "description": "Bad Request: message text is empty"}).to_string();
        }
        return serde_json::json!({"ok": true, "result": {"message_id": v["message_id"]}})
            .to_string();
    }
    if method == "answerCallbackQuery" {
        return serde_json::json!({"ok": true, "result": true}).to_string();
    }
    if path.ends_with("/sendMessage") {
        let chat = match &v["chat_id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };

        let text = v["text"].as_str().unwrap_or("").to_owned();
        let mut s = bot.sent.lock().expect("lock");
        s.push((chat, text));
        return serde_json::json!({"ok": true, "result": {"message_id": s.len()}}).to_string();
    }
    if path.ends_with("/setWebhook") {
        bot.hooks.lock().expect("lock").push(v);
        return serde_json::json!({"ok": true, "result": true, "description": "Webhook was set"})
            .to_string();
    }
    serde_json::json!({"ok": false, "error_code": 404, "description": "Not Found"}).to_string()
}

fn api() -> Api {
    let bot = Arc::new(Bot::default());
    let addr = serve_router(Router::new().fallback(handle).with_state(bot.clone()));
    Api { addr, bot }
}

/// Waits until the outbox holds no pending message.
fn outbox_sent(env: &Env) {
    wait_for(Duration::from_secs(30), || {
        let all = env.claw(&["msg", "outbox", "--json", "-n", "1000"]).json();
        all.as_array()?
            .iter()
            .all(|m| m["status"] == "sent")
            .then_some(())
    })
    .expect("every message recorded sent");
}

fn daemon(env: &Env, api: &Api) -> std::process::Child {
    daemon_allowing(env, api, "100, ")
}

fn daemon_allowing(env: &Env, api: &Api, allowed: &str) -> std::process::Child {
    env.command(&["serve", "--no-http"])
        .env("TELEGRAM_BOT_TOKEN", "123456:inbound-test-token")
        .env("TELEGRAM_API_URL", api.url())
        .env("ALLOWED_CHAT_IDS", allowed)
        .env("TELEGRAM_ADMIN_CHAT_ID", "1")
        .env("DEPLOY_LOG", env.path("deployed.txt"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve")
}

#[test]
fn allowed_chats_run_workflows_unknown_ones_nothing_and_admin_approval_survives_a_restart() {
    let env = Env::new();
    let api = api();
    env.workflow(
        "deploy",
        r#"name: deploy
params:
  env: {type: string, default: staging}
steps:
  - name: go
    command: echo "${{ params.env }}" >> "$DEPLOY_LOG"
"#,
    );
    let mut d = daemon(&env, &api);
    // An update without a text, one without a chat, and a 1 MB message: skipped or cut, no harm.
    api.raw(serde_json::json!({"update_id": 990}));
    api.raw(serde_json::json!({"update_id": 991, "message": {"text": "!status"}}));
    api.say(555, 555, "!run deploy env=unknown");
    api.say(100, 7, "!run deploy env=prod");
    let prod = api.wait_to("100", 2, "queued and the outcome");
    assert!(
        prod[0].starts_with("run ") && prod[0].ends_with(" of deploy queued"),
        "{prod:?}"
    );
    let id = prod[0].split(' ').nth(1).expect("id").to_owned();
    assert_eq!(prod[1], format!("run {id} of deploy succeeded"));
    // Injection attempts are data: they become the param's value, quoted for the shell.
    api.say(100, 7, "!run deploy env=$(touch${IFS}pwned)");
    api.say(
        100,
        7,
        "!run deploy env=`touch${IFS}pwned2`;touch${IFS}pwned3",
    );
    api.say(100, 7, &format!("!help {}", "x".repeat(1024 * 1024)));
    let all = api.wait_to("100", 7, "two more runs and help");
    assert!(
        all.iter().filter(|t| t.ends_with("succeeded")).count() == 3,
        "{all:?}"
    );
    assert!(
        all.iter().any(|t| t.starts_with("claw commands:")),
        "{all:?}"
    );
    for f in ["pwned", "pwned2", "pwned3"] {
        for dir in [
            env.path(""),
            env.root.clone(),
            env.home.clone(),
            env.root.join("workflows"),
        ] {
            assert!(
                !dir.join(f).exists(),
                "{f} was created in {}",
                dir.display()
            );
        }
    }
    let deployed = std::fs::read_to_string(env.path("deployed.txt")).unwrap_or_default();
    let mut lines: Vec<&str> = deployed.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "$(touch${IFS}pwned)",
            "`touch${IFS}pwned2`;touch${IFS}pwned3",
            "prod"
        ],
        "each text arrived as the param's value, literally"
    );
    assert!(
        !deployed.contains("unknown"),
        "the unknown chat ran nothing"
    );
    assert!(api.to("555").is_empty(), "an unknown chat gets no answer");
    // /start from the unknown chat: a request, told to the admin; /approve lets it in.
    api.say(555, 555, "/start");
    let told = api.wait_to("1", 1, "the admin is told");
    assert!(told[0].contains("/approve 555"), "{told:?}");
    assert!(api.wait_to("555", 1, "pending")[0].contains("pending admin approval"));
    api.say(1, 1, "/approve 555");
    assert!(api.wait_to("555", 2, "granted")[1].starts_with("Access granted"));
    // Killed once the replies are recorded sent (killed between the service's answer and that
    // record, a reply would go again: the outbox is at-least-once).
    outbox_sent(&env);
    let _ = d.kill();
    let _ = d.wait();
    let chats = env
        .claw(&["msg", "chats", "list", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(chats[0]["chat"], "555");
    assert_eq!(chats[0]["status"], "allowed");
    assert_eq!(chats[0]["decided_by"], "telegram:1");
    // After a restart: the approval holds, and no update is handled twice.
    let before = api.bot.sent.lock().expect("lock").len();
    let mut d = daemon(&env, &api);
    api.say(555, 555, "!status");
    let st = api.wait_to("555", 3, "status after the restart");
    assert!(st[2].contains("running"), "{st:?}");
    std::thread::sleep(Duration::from_millis(500));
    let _ = d.kill();
    let _ = d.wait();
    assert_eq!(
        api.bot.sent.lock().expect("lock").len(),
        before + 1,
        "nothing replayed"
    );
    let runs = env.claw(&["run", "list", "--json"]).expect_code(0).json();
    assert_eq!(runs.as_array().expect("runs").len(), 3);
    let audit = read(&env.home.join("audit.log"));
    for needle in [
        "\"chat.access\"",
        "\"chat.command\"",
        "\"requested\"",
        "\"refused\"",
    ] {
        assert!(audit.contains(needle), "{needle} in {audit}");
    }
    assert!(!audit.contains("pwned"), "the audit log holds no chat text");
    // The CLI decides too.
    env.claw(&["msg", "chats", "deny", "555"]).expect_code(0);
    let chats = env
        .claw(&["msg", "chats", "list", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(chats[0]["status"], "denied");
    env.claw(&["msg", "chats", "remove", "555"]).expect_code(0);
    env.claw(&["msg", "chats", "remove", "555"]).expect_code(2);
}

#[test]
fn a_gate_is_announced_to_its_telegram_approvers_and_needs_two_distinct_allowed_ones() {
    let env = Env::new();
    let api = api();
    env.workflow(
        "gate",
        r"name: gate
steps:
  - name: ok
    type: approval
    message: ship it?
    approvers: [telegram:7, telegram:8]
    quorum: 2
  - name: after
    command: 'true'
",
    );
    let mut d = daemon(&env, &api);
    api.say(100, 7, "!run gate");
    let queued = api.wait_to("100", 1, "queued");
    let id = queued[0].split(' ').nth(1).expect("id").to_owned();
    for approver in ["7", "8"] {
        let asked = api.wait_to(approver, 1, "the gate is announced");
        assert!(
            asked[0].contains("ship it?") && asked[0].contains(&format!("!approve {id} ok")),
            "{asked:?}"
        );
    }
    api.say(100, 9, &format!("!approve {id}"));
    api.say(100, 7, &format!("!approve {id} ok"));
    let r = api.wait_to("100", 3, "a refusal and one vote");
    assert!(
        r[1].starts_with("refused: telegram:9 may not decide"),
        "{r:?}"
    );
    assert!(
        r[2].contains("telegram:7 approved step `ok` (1 of 2 approvals)"),
        "{r:?}"
    );
    api.say(100, 7, &format!("!approve {id}"));
    let r = api.wait_to("100", 4, "the same person twice");
    assert!(r[3].contains("already decided"), "{r:?}");
    api.say(100, 8, &format!("!approve {id}"));
    let r = api.wait_to("100", 6, "approved, then the outcome");
    assert!(r[4].contains("approved"), "{r:?}");
    assert_eq!(r[5], format!("run {id} of gate succeeded"));
    let _ = d.kill();
    let _ = d.wait();
    let audit = read(&env.home.join("audit.log"));
    assert!(audit.contains("\"approval.refused\""), "{audit}");
}

#[test]
fn a_workflow_command_trigger_takes_positional_and_named_params_and_refuses_extra_words() {
    let env = Env::new();
    let api = api();
    env.workflow(
        "ship",
        r#"name: ship
triggers:
  - command: deploy
params:
  target: {type: string, enum: [staging, prod]}
  tag: {type: string, default: latest}
steps:
  - name: go
    command: echo "${{ params.target }} ${{ params.tag }} ${{ trigger.command }}" >> "$DEPLOY_LOG"
"#,
    );
    let mut d = daemon(&env, &api);
    api.say(100, 7, "!deploy prod tag=v2");
    let r = api.wait_to("100", 2, "queued and done");
    assert!(r[1].ends_with("of ship succeeded"), "{r:?}");
    api.say(100, 7, "!deploy \"; touch X #");
    api.say(100, 7, "!deploy $(id)");
    api.say(100, 7, "!nosuch thing");
    let r = api.wait_to("100", 5, "refusals");
    let _ = d.kill();
    let _ = d.wait();
    assert!(
        r.iter()
            .any(|t| t == "workflow ship takes no more params: X"),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|t| t.starts_with("cannot start ship:") && t.contains("target")),
        "an enum param refuses `$(id)`: {r:?}"
    );
    assert!(
        r.iter().any(|t| t.starts_with("Unknown command !nosuch")),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("deployed.txt")).unwrap_or_default(),
        "prod v2 deploy\n"
    );
    assert!(!env.path("X").exists());
    assert_eq!(
        env.claw(&["run", "list", "--json"])
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// One HTTP/1.1 POST; the status code.
fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {out:?}"))
}

fn webhook_daemon(env: &Env, api: &Api, secret: Option<&str>) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = env.command(&["serve", "--bind", &addr]);
    c.env("TELEGRAM_BOT_TOKEN", "123456:inbound-test-token")
        .env("TELEGRAM_API_URL", api.url())
        .env(
            "TELEGRAM_WEBHOOK_URL",
            "https://claw.example/webhook/telegram",
        )
        .env("ALLOWED_CHAT_IDS", "100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(s) = secret {
        c.env("TELEGRAM_WEBHOOK_SECRET", s);
    }
    let child = c.spawn().expect("serve");
    wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).ok()
    })
    .expect("the daemon listens");
    (child, addr)
}

#[test]
fn webhook_mode_sets_the_webhook_and_refuses_requests_without_the_secret_fail_closed() {
    let env = Env::new();
    let api = api();
    let update = serde_json::json!({"update_id": 77, "message": {"message_id": 1,
        "chat": {"id": 100}, "from": {"id": 7}, "text": "!help"}})
    .to_string();
    let path = "/webhook/telegram";
    // No secret set: refused whatever the request says.
    let (mut d, addr) = webhook_daemon(&env, &api, None);
    let hdr = [("X-Telegram-Bot-Api-Secret-Token", "anything")];
    assert_eq!(post(&addr, path, &hdr, &update), 403);
    assert_eq!(post(&addr, path, &[], &update), 403);
    let _ = d.kill();
    let _ = d.wait();
    assert!(
        api.bot.hooks.lock().expect("lock").is_empty(),
        "no webhook without a secret"
    );

    let (mut d, addr) = webhook_daemon(&env, &api, Some("s3cret-token-1"));
    let hooks = wait_for(Duration::from_secs(30), || {
        let h = api.bot.hooks.lock().expect("lock").clone();
        (!h.is_empty()).then_some(h)
    })
    .expect("setWebhook");
    assert_eq!(hooks[0]["url"], "https://claw.example/webhook/telegram");
    assert_eq!(hooks[0]["secret_token"], "s3cret-token-1");
    let good = [("X-Telegram-Bot-Api-Secret-Token", "s3cret-token-1")];
    let bad = [("X-Telegram-Bot-Api-Secret-Token", "s3cret-token-2")];
    assert_eq!(post(&addr, path, &[], &update), 403, "no header");
    assert_eq!(post(&addr, path, &bad, &update), 403, "a forged request");
    assert_eq!(post(&addr, path, &good, "{not json"), 400);
    assert_eq!(post(&addr, path, &good, "{}"), 400);
    assert_eq!(post(&addr, path, &good, &update), 200);
    let got = api.wait_to("100", 1, "the help");
    assert!(got[0].starts_with("claw commands:"), "{got:?}");
    // Telegram posting the same update again (no answer seen) does not handle it twice.
    assert_eq!(post(&addr, path, &good, &update), 200);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = d.kill();
    let _ = d.wait();
    assert_eq!(api.to("100").len(), 1);
    assert!(
        api.bot.offsets.lock().expect("lock").is_empty(),
        "no polling in webhook mode"
    );
}

/// The message id and callback data of the Approve and Reject buttons sent to `chat`.
fn buttons(api: &Api, chat: &str) -> Option<(i64, String, String)> {
    let sent = api.bot.sent.lock().expect("lock").clone();
    let calls = api.calls("sendMessage");
    // sendMessage's n-th call got message_id n.
    calls.iter().enumerate().find_map(|(i, v)| {
        let to = match &v["chat_id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let row = &v["reply_markup"]["inline_keyboard"][0];
        (to == chat && row.is_array()).then(|| {
            assert_eq!(sent[i].0, chat);
            (
                i64::try_from(i + 1).expect("id"),
                row[0]["callback_data"].as_str().unwrap_or("").to_owned(),
                row[1]["callback_data"].as_str().unwrap_or("").to_owned(),
            )
        })
    })
}

#[test]
fn gate_buttons_decide_by_quorum_of_distinct_allowed_approvers_and_the_messages_show_it() {
    let env = Env::new();
    let api = api();
    env.workflow(
        "gate",
        r"name: gate
notify:
  on: [waiting]
  to: telegram:100
steps:
  - name: ok
    type: approval
    message: ship it?
    approvers: [telegram:7, telegram:8]
    quorum: 2
  - name: after
    command: 'true'
",
    );
    let mut d = daemon_allowing(&env, &api, "100, 7, 8");
    api.say(100, 7, "!run gate");
    let queued = api.wait_to("100", 1, "queued");
    let id = queued[0].split(' ').nth(1).expect("id").to_owned();
    let found = |chat: &str| {
        wait_for(Duration::from_secs(60), || buttons(&api, chat))
            .unwrap_or_else(|| panic!("buttons to {chat}: {:?}", api.calls("sendMessage")))
    };
    let (group_msg, approve, reject) = found("100");
    let (msg7, approve7, _) = found("7");
    let (msg8, approve8, _) = found("8");
    assert!(
        approve.starts_with("ap:") && reject.starts_with("rj:"),
        "{approve} {reject}"
    );
    assert_ne!(approve, approve7, "each announcement has its own buttons");
    // Someone not allowed to approve, pressing in the group: refused with an alert.
    api.press(100, 9, group_msg, &approve);
    let a = api.wait_calls("answerCallbackQuery", 1, "a refusal");
    assert_eq!(a[0]["show_alert"], true, "{a:?}");
    assert!(
        a[0]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("refused: telegram:9 may not decide"),
        "{a:?}"
    );
    // A chat that is not allowed: Unauthorized, nothing recorded.
    api.press(555, 7, group_msg, &approve);
    let a = api.wait_calls("answerCallbackQuery", 2, "unauthorized");
    assert_eq!(a[1]["text"], "Unauthorized");
    // A forged button (another message's id in this chat): refused.
    api.press(100, 7, group_msg, &approve8);
    let a = api.wait_calls("answerCallbackQuery", 3, "not claw's");
    assert_eq!(a[2]["show_alert"], true, "{a:?}");
    // The first approver: one of two.
    api.press(100, 7, group_msg, &approve);
    let a = api.wait_calls("answerCallbackQuery", 4, "one vote");
    assert_eq!(
        a[3]["text"], "approved: 1 of 2 approvals, waiting for more",
        "{a:?}"
    );
    // The same person again (from their own chat): refused, quorum needs distinct people.
    api.press(7, 7, msg7, &approve7);
    let a = api.wait_calls("answerCallbackQuery", 5, "twice");
    assert!(
        a[4]["text"]
            .as_str()
            .unwrap_or("")
            .contains("already decided"),
        "{a:?}"
    );
    assert!(api.calls("editMessageText").is_empty(), "not decided yet");
    // The second approver decides; every announcement is edited to say so, buttons gone.
    api.press(8, 8, msg8, &approve8);
    let a = api.wait_calls("answerCallbackQuery", 6, "decided");
    assert!(
        a[5]["text"].as_str().unwrap_or("").contains("approved"),
        "{a:?}"
    );
    let edits = api.wait_calls("editMessageText", 3, "the announcements edited");
    let mut edited: Vec<(String, i64)> = edits
        .iter()
        .map(|e| {
            assert!(e["text"].as_str().unwrap_or("").contains("ship it?"), "{e}");
            assert!(e["text"].as_str().unwrap_or("").contains("approved"), "{e}");
            assert!(
                e["text"].as_str().unwrap_or("").contains("telegram:8"),
                "{e}"
            );
            assert_eq!(e["reply_markup"]["inline_keyboard"], serde_json::json!([]));
            (
                e["chat_id"].as_str().unwrap_or("").to_owned(),
                e["message_id"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    edited.sort();
    assert_eq!(
        edited,
        [
            ("100".to_owned(), group_msg),
            ("7".to_owned(), msg7),
            ("8".to_owned(), msg8)
        ]
    );
    let done = api.wait_to("100", 3, "the outcome");
    assert!(
        done.iter()
            .any(|t| t == &format!("run {id} of gate succeeded")),
        "{done:?}"
    );
    // A late press on a decided gate: refused, and the message is shown decided.
    api.press(100, 7, group_msg, &reject);
    let a = api.wait_calls("answerCallbackQuery", 7, "late");
    assert_eq!(a[6]["show_alert"], true, "{a:?}");
    let _ = d.kill();
    let _ = d.wait();
    let votes = env
        .claw(&["run", "show", &id, "--json"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        votes.contains("telegram:7") && votes.contains("telegram:8"),
        "{votes}"
    );
    let audit = read(&env.home.join("audit.log"));
    assert!(audit.contains("\"approval.refused\""), "{audit}");
    assert!(audit.contains("button:approve"), "{audit}");
}

#[test]
fn a_chat_is_told_a_run_outcome_even_when_the_daemon_restarted_in_between() {
    let env = Env::new();
    let api = api();
    env.workflow(
        "held",
        r"name: held
steps:
  - name: ok
    type: approval
    message: go on?
  - name: after
    command: 'true'
",
    );
    let mut d = daemon(&env, &api);
    api.say(100, 7, "!run held");
    let queued = api.wait_to("100", 1, "queued");
    let id = queued[0].split(' ').nth(1).expect("id").to_owned();
    wait_for(Duration::from_secs(30), || {
        let r = env.claw(&["run", "show", &id, "--json"]).json();
        (r["status"] == "waiting").then_some(())
    })
    .expect("the run waits");
    let _ = d.kill();
    let _ = d.wait();
    // Decided while no daemon runs; the next daemon finishes the run and tells the chat.
    env.claw(&["run", "approve", &id, "ok"]).expect_code(0);
    let mut d = daemon(&env, &api);
    let told = api.wait_to("100", 2, "the outcome after the restart");
    std::thread::sleep(Duration::from_millis(800));
    let _ = d.kill();
    let _ = d.wait();
    assert_eq!(told[1], format!("run {id} of held succeeded"));
    assert_eq!(api.to("100").len(), 2, "told once: {:?}", api.to("100"));
}

#[test]
fn triggers_yaml_skills_and_logs_answer_chats_with_chat_text_kept_out_of_the_shell() {
    let env = Env::new();
    let api = api();
    env.write(
        "root/triggers.yaml",
        r#"- pattern: '^!disk\s+(\S+)'
  command: printf 'disk:%s\n' "$TRIGGER_MATCH_1"; printf '%s\n' "$TRIGGER_MESSAGE" >> "$DEPLOY_LOG"
- pattern: '^!silent (?P<when>morning|night)'
  action: workflow
  command: greet
  reply: false
- pattern: 'good (?P<when>morning|night)'
  action: workflow
  command: greet
- pattern: '^!quiet'
  command: touch quiet-ran
  reply: false
"#,
    );
    env.workflow(
        "greet",
        r#"name: greet
params:
  when: {type: string, enum: [morning, night]}
steps:
  - name: go
    command: 'echo "greeted ${{ params.when }}: ${{ trigger.text }} ${{ trigger.match[1] }}"'
"#,
    );
    env.write(
        "root/skills/hello/skill.yaml",
        "name: hello\nversion: 1.0.0\ndescription: says hello\nauthor: test\nscript: run.sh\n",
    );
    env.write(
        "root/skills/hello/run.sh",
        "#!/bin/bash\necho \"hello $SKILL_NAME\"\n",
    );
    let mut d = daemon(&env, &api);
    api.say(100, 7, "!disk /var");
    assert_eq!(api.wait_to("100", 1, "a shell trigger")[0], "disk:/var");
    for attack in [
        "!disk $(touch${IFS}pwned1)",
        "!disk ;touch${IFS}pwned2;",
        "!disk `touch${IFS}pwned3`",
    ] {
        api.say(100, 7, attack);
    }
    let got = api.wait_to("100", 4, "the attacks answered");
    assert_eq!(
        &got[1..],
        [
            "disk:$(touch${IFS}pwned1)",
            "disk:;touch${IFS}pwned2;",
            "disk:`touch${IFS}pwned3`"
        ]
    );
    api.say(100, 7, "!silent morning");
    wait_for(Duration::from_secs(30), || {
        let runs = env.claw(&["run", "list", "--json"]).json();
        (runs.as_array().map(Vec::len) == Some(1) && runs[0]["status"] == "succeeded").then_some(())
    })
    .expect("a workflow trigger with reply: false runs, and says nothing");
    api.say(100, 7, "!QUIET please");
    api.say(100, 7, "Good night, claw");
    let got = api.wait_to("100", 6, "the workflow trigger: queued and done");
    assert!(got[5].ends_with("of greet succeeded"), "{got:?}");
    let run = got[4].split(' ').nth(1).expect("id").to_owned();
    api.say(100, 7, &format!("!logs {run}"));
    let logs = api.wait_to("100", 7, "the logs");
    assert!(logs[6].contains("==&gt; go (succeeded) &lt;=="), "{logs:?}");
    assert!(
        logs[6].contains("greeted night: Good night, claw night"),
        "{logs:?}"
    );
    api.say(100, 7, "/skills");
    let skills = api.wait_to("100", 8, "the skills");
    assert!(skills[7].contains("hello — says hello"), "{skills:?}");
    api.say(100, 7, "/run hello name=$(touch${IFS}pwned4)");
    let ran = api.wait_to("100", 9, "the skill ran");
    assert_eq!(ran[8], "hello $(touch${IFS}pwned4)");
    // The seed's /skills buttons: one per skill, pressing it runs the skill.
    let (skills_msg, data) = wait_for(Duration::from_secs(30), || {
        api.calls("sendMessage")
            .iter()
            .enumerate()
            .find_map(|(i, v)| {
                let d = v["reply_markup"]["inline_keyboard"][0][0]["callback_data"].as_str()?;
                Some((i64::try_from(i + 1).ok()?, d.to_owned()))
            })
    })
    .expect("the /skills buttons");
    assert_eq!(data, "skill:hello");
    api.press(555, 7, skills_msg, &data);
    api.press(100, 7, skills_msg, &data);
    let pressed = api.wait_calls("answerCallbackQuery", 2, "the presses answered");
    let mut answers: Vec<&str> = pressed.iter().filter_map(|a| a["text"].as_str()).collect();
    answers.sort_unstable();
    assert_eq!(answers, ["Unauthorized", "running hello"]);
    let ran = api.wait_to("100", 10, "the skill ran from its button");
    assert_eq!(ran[9], "hello");
    // A triggers.yaml with an error: nothing runs, the chat is told, the CLI shows where.
    env.write(
        "root/triggers.yaml",
        "- pattern: '(open'\n  command: touch bad-ran\n",
    );
    api.say(100, 7, "(open");
    let bad = api.wait_to("100", 11, "a broken triggers.yaml");
    let _ = d.kill();
    let _ = d.wait();
    assert!(bad[10].starts_with("triggers.yaml has errors"), "{bad:?}");
    let cli = env.claw(&["msg", "triggers"]).expect_code(2).stderr.clone();
    assert!(
        cli.contains("triggers.yaml:1:") && cli.contains("not a valid regex"),
        "{cli}"
    );
    assert!(
        env.root.join("quiet-ran").exists(),
        "reply: false still runs"
    );
    assert!(!env.root.join("bad-ran").exists());
    for f in ["pwned1", "pwned2", "pwned3", "pwned4"] {
        for dir in [env.path(""), env.root.clone(), env.home.clone()] {
            assert!(
                !dir.join(f).exists(),
                "{f} was created in {}",
                dir.display()
            );
        }
    }
    let log = std::fs::read_to_string(env.path("deployed.txt")).unwrap_or_default();
    assert!(log.contains("!disk $(touch${IFS}pwned1)\n"), "{log}");
}

/// telegram-test-api (npm), an independent emulator of the Bot API, run by
/// scripts/telegram-emulator.cjs; the tests play users through its client side.
struct Emulator {
    child: std::process::Child,
    addr: String,
}

const EMU_TOKEN: &str = "123456:emulated-bot-token";

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    fn start() -> Self {
        use std::io::BufRead;
        let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let modules = repo.join("target/telegram-test-api/node_modules");
        assert!(
            modules.join("telegram-test-api").is_dir(),
            "telegram-test-api is not installed under target/telegram-test-api: run scripts/test.sh"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut child = std::process::Command::new("node")
            .arg(repo.join("scripts/telegram-emulator.cjs"))
            .arg(port.to_string())
            .env("NODE_PATH", &modules)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("read");
        assert!(line.starts_with("listening"), "the emulator said {line:?}");
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A POST to the emulator; its JSON answer.
    fn call(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        use std::io::{Read, Write};
        let body = body.to_string();
        let mut s = std::net::TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).expect("write");
        s.write_all(body.as_bytes()).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let json = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
    }

    /// A user writing `text` in `chat`.
    fn say(&self, chat: i64, user: i64, text: &str) {
        let r = self.call(
            "/sendMessage",
            &serde_json::json!({"botToken": EMU_TOKEN,
                "from": {"id": user, "is_bot": false, "first_name": format!("u{user}")},
                "chat": {"id": chat, "type": "private"}, "date": 1_700_000_000, "text": text}),
        );
        assert_eq!(r["ok"], true, "{r}");
    }

    /// A user pressing the button `data` under the bot's message `message_id` in `chat`.
    fn press(&self, chat: i64, user: i64, message_id: i64, data: &str) {
        let r = self.call(
            "/sendCallback",
            &serde_json::json!({"botToken": EMU_TOKEN,
                "from": {"id": user, "is_bot": false, "first_name": format!("u{user}")},
                "message": {"message_id": message_id, "chat": {"id": chat, "type": "private"},
                    "date": 1_700_000_000, "text": "..."},
                "data": data}),
        );
        assert_eq!(r["ok"], true, "{r}");
    }

    /// The bot's messages to `chat` as they stand now (edits applied): (message id, message).
    fn bot_to(&self, chat: &str) -> Vec<(i64, serde_json::Value)> {
        let h = self.call(
            "/getUpdatesHistory",
            &serde_json::json!({"token": EMU_TOKEN}),
        );
        h["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|u| {
                u["message"]["chat_id"].as_str() == Some(chat)
                    || u["message"]["chat_id"]
                        .as_i64()
                        .map(|c| c.to_string())
                        .as_deref()
                        == Some(chat)
            })
            .map(|u| (u["messageId"].as_i64().unwrap_or(0), u["message"].clone()))
            .collect()
    }

    fn texts_to(&self, chat: &str) -> Vec<String> {
        self.bot_to(chat)
            .iter()
            .map(|(_, m)| m["text"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn wait_texts(&self, chat: &str, n: usize, what: &str) -> Vec<String> {
        wait_for(Duration::from_secs(60), || {
            let got = self.texts_to(chat);
            (got.len() >= n).then_some(got)
        })
        .unwrap_or_else(|| panic!("{what}: chat {chat} got {:?}", self.texts_to(chat)))
    }
}

fn emulated_daemon(env: &Env, emu: &Emulator) -> std::process::Child {
    env.command(&["serve", "--no-http"])
        .env("TELEGRAM_BOT_TOKEN", EMU_TOKEN)
        .env("TELEGRAM_API_URL", emu.url())
        .env("ALLOWED_CHAT_IDS", "100, 7, 8")
        .env("TELEGRAM_ADMIN_CHAT_ID", "1")
        .env("DEPLOY_LOG", env.path("deployed.txt"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve")
}

#[test]
fn through_the_telegram_test_api_emulator_commands_buttons_and_admin_approval_work() {
    let emu = Emulator::start();
    let env = Env::new();
    env.workflow(
        "ship",
        r#"name: ship
triggers:
  - command: deploy
params:
  target: {type: string, enum: [staging, prod]}
steps:
  - name: go
    command: echo "${{ params.target }}" >> "$DEPLOY_LOG"
"#,
    );
    env.workflow(
        "gate",
        r"name: gate
notify:
  on: [waiting]
  to: telegram:100
steps:
  - name: ok
    type: approval
    message: ship it?
    approvers: [telegram:7, telegram:8]
    quorum: 2
",
    );
    let mut d = emulated_daemon(&env, &emu);
    // An allowed chat runs the workflow and is told its outcome; an unknown chat, nothing.
    emu.say(555, 555, "!deploy prod");
    emu.say(100, 7, "!deploy prod");
    let got = emu.wait_texts("100", 2, "queued and done");
    assert!(got[0].ends_with("of ship queued"), "{got:?}");
    assert!(got[1].ends_with("of ship succeeded"), "{got:?}");
    // Injection attempts create nothing.
    emu.say(100, 7, "!deploy \"; touch X #");
    emu.say(100, 7, "!deploy $(id)");
    emu.say(100, 7, "!deploy `touch${IFS}Y`");
    let got = emu.wait_texts("100", 5, "three refusals");
    assert!(got[2..].iter().all(|t| t.contains("ship")), "{got:?}");
    // The gate: announced with buttons; two distinct approvers decide; the message shows it.
    emu.say(100, 7, "!run gate");
    let (msg_id, approve) = wait_for(Duration::from_secs(60), || {
        emu.bot_to("100").into_iter().find_map(|(id, m)| {
            let data = m["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
                .as_str()?
                .to_owned();
            Some((id, data))
        })
    })
    .expect("the announcement with buttons");
    emu.press(100, 9, msg_id, &approve);
    emu.press(100, 7, msg_id, &approve);
    emu.press(100, 8, msg_id, &approve);
    let edited = wait_for(Duration::from_secs(60), || {
        emu.bot_to("100").into_iter().find_map(|(id, m)| {
            (id == msg_id && m["text"].as_str()?.contains("approved by")).then_some(m)
        })
    })
    .unwrap_or_else(|| panic!("the edit: {:?}", emu.bot_to("100")));
    assert_eq!(
        edited["reply_markup"]["inline_keyboard"],
        serde_json::json!([])
    );
    let got = wait_for(Duration::from_secs(60), || {
        let t = emu.texts_to("100");
        t.iter()
            .any(|x| x.ends_with("of gate succeeded"))
            .then_some(t)
    });
    assert!(got.is_some(), "{:?}", emu.texts_to("100"));
    // /start from the unknown chat, /approve from the admin: it is in, also after a restart.
    emu.say(555, 555, "/start");
    let admin = emu.wait_texts("1", 1, "the admin is told");
    assert!(admin[0].contains("/approve 555"), "{admin:?}");
    emu.say(1, 1, "/approve 555");
    emu.wait_texts("555", 2, "pending, then granted");
    outbox_sent(&env);
    let _ = d.kill();
    let _ = d.wait();
    let mut d = emulated_daemon(&env, &emu);
    emu.say(555, 555, "!status");
    let got = emu.wait_texts("555", 3, "status after the restart");
    let _ = d.kill();
    let _ = d.wait();
    assert!(got[2].contains("running"), "{got:?}");
    assert_eq!(
        std::fs::read_to_string(env.path("deployed.txt")).unwrap_or_default(),
        "prod\n",
        "one run, from the allowed chat"
    );
    for f in ["X", "Y"] {
        assert!(!env.path(f).exists() && !env.root.join(f).exists());
    }
    let audit = read(&env.home.join("audit.log"));
    assert!(audit.contains("\"approval.refused\""), "{audit}");
}

#[test]
fn a_gate_announcement_that_could_only_go_after_the_decision_goes_without_buttons() {
    let env = Env::new();
    let api = api();
    env.workflow(
        "gate",
        r"name: gate
steps:
  - name: ok
    type: approval
    message: ship it?
    approvers: [telegram:13, telegram:7]
",
    );
    api.bot.down.lock().expect("lock").push("13".to_owned());
    let mut d = daemon(&env, &api);
    api.say(100, 7, "!run gate");
    let queued = api.wait_to("100", 1, "queued");
    let id = queued[0].split(' ').nth(1).expect("id").to_owned();
    wait_for(Duration::from_secs(30), || {
        let r = env.claw(&["run", "show", &id, "--json"]).json();
        (r["status"] == "waiting").then_some(())
    })
    .expect("the run waits");
    api.say(100, 7, &format!("!approve {id}"));
    let got = api.wait_to("100", 3, "approved, then the outcome");
    assert!(got[2].ends_with("of gate succeeded"), "{got:?}");
    // (The attempts while down are recorded too: only what follows counts.)
    let before = api.calls("sendMessage").len();
    api.bot.down.lock().expect("lock").clear();
    let late = wait_for(Duration::from_secs(60), || {
        api.calls("sendMessage")
            .into_iter()
            .skip(before)
            .find(|v| v["chat_id"] == "13")
    });
    let _ = d.kill();
    let _ = d.wait();
    let late = late.expect("the announcement, once Telegram is back");
    assert!(
        late["text"].as_str().unwrap_or("").contains("ship it?"),
        "{late}"
    );
    assert!(
        late.get("reply_markup").is_none(),
        "no buttons on a decided gate: {late}"
    );
}
