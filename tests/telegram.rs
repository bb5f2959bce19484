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
    /// Offsets asked for, in order.
    offsets: Mutex<Vec<i64>>,
    /// setWebhook bodies.
    hooks: Mutex<Vec<serde_json::Value>>,
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

async fn handle(State(bot): State<Arc<Bot>>, uri: Uri, body: Bytes) -> String {
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
    let router = Router::new().fallback(handle).with_state(bot.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            axum::serve(l, router).await.expect("serve");
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("addr");
    Api { addr, bot }
}

fn daemon(env: &Env, api: &Api) -> std::process::Child {
    env.command(&["serve", "--no-http"])
        .env("TELEGRAM_BOT_TOKEN", "123456:inbound-test-token")
        .env("TELEGRAM_API_URL", api.url())
        .env("ALLOWED_CHAT_IDS", "100, ")
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
