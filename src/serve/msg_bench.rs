//! `claw bench msg`: a chat `!run` through a real `claw serve` (Telegram long polling against a
//! Bot API served by this process, the run created and executed, the replies through the
//! outbox) beside the same API's own round trip; and a profile of 10 targets that each answer
//! after 200 ms, against one such target.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bench::{BenchDaemon, Spread, scratch};
use crate::msg::Target;
use crate::store::{SqliteStore, Store};

/// What `claw bench msg` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MsgBench {
    pub commands: usize,
    /// `!run` posted → `run … queued` reply received.
    pub queued: Spread,
    /// `!run` posted → `run … succeeded` reply received.
    pub done: Spread,
    /// The Bot API's own round trip from this process (getUpdates, then sendMessage).
    pub baseline: Spread,
    pub p50_ratio: f64,
    /// A profile of 10 targets that each answer after 200 ms, queued and delivered.
    pub fanout_ms: f64,
    /// One such target.
    pub single_ms: f64,
    pub fanout_ratio: f64,
}

#[derive(Default)]
struct Api {
    updates: Mutex<Vec<serde_json::Value>>,
    sent: Mutex<Vec<(String, Instant)>>,
    bell: tokio::sync::Notify,
}

async fn handle(
    axum::extract::State(api): axum::extract::State<Arc<Api>>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = uri.path();
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return "{}".into();
    }
    if path.ends_with("/getUpdates") {
        let offset = v["offset"].as_i64().unwrap_or(0);
        let end = Instant::now() + Duration::from_secs(1);
        loop {
            let due: Vec<serde_json::Value> = api
                .updates
                .lock()
                .map(|u| {
                    u.iter()
                        .filter(|x| x["update_id"].as_i64().unwrap_or(0) >= offset)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if !due.is_empty() || Instant::now() >= end {
                return serde_json::json!({"ok": true, "result": due}).to_string();
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), api.bell.notified()).await;
        }
    }
    let text = v["text"].as_str().unwrap_or("").to_owned();
    if let Ok(mut s) = api.sent.lock() {
        s.push((text, Instant::now()));
    }
    serde_json::json!({"ok": true, "result": {"message_id": 1}}).to_string()
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the benchmark: `commands` sequential `!run`s.
pub fn run(commands: usize) -> Result<MsgBench, String> {
    let dir = scratch().map_err(io)?;
    let home = dir.join("home");
    std::fs::write(
        dir.join("workflows/ping.yaml"),
        "name: ping\nsteps:\n  - name: a\n    command: \"true\"\n",
    )
    .map_err(io)?;
    let api = Arc::new(Api::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io)?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let router = axum::Router::new().fallback(handle).with_state(api.clone());
    rt.spawn(async move { axum::serve(listener, router).await });
    let base = format!("http://{addr}");
    let daemon = BenchDaemon::start(
        &home,
        &dir,
        &["--no-http"],
        &[
            ("TELEGRAM_BOT_TOKEN", Some("123456:bench-token")),
            ("TELEGRAM_API_URL", Some(&base)),
            ("ALLOWED_CHAT_IDS", Some("1")),
            ("TELEGRAM_WEBHOOK_URL", None),
        ],
    )?;
    let replies = |prefix: &str, suffix: &str| -> Vec<Instant> {
        api.sent
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(t, _)| t.starts_with(prefix) && t.ends_with(suffix))
                    .map(|(_, at)| *at)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut queued = Vec::new();
    let mut done = Vec::new();
    let mut failure = None;
    for i in 0..commands {
        let t0 = Instant::now();
        if let Ok(mut u) = api.updates.lock() {
            u.push(
                serde_json::json!({"update_id": 1 + i, "message": {"message_id": 1 + i,
                "chat": {"id": 1}, "from": {"id": 1}, "text": "!run ping"}}),
            );
        }
        api.bell.notify_waiters();
        let end = t0 + Duration::from_secs(60);
        loop {
            let q = replies("run ", " of ping queued");
            let d = replies("run ", " of ping succeeded");
            if d.len() > i && q.len() > i {
                queued.push(q[i].duration_since(t0).as_secs_f64() * 1000.0);
                done.push(d[i].duration_since(t0).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > end {
                failure = Some(format!("command {i} got no outcome within 60 s"));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if failure.is_some() {
            break;
        }
    }
    drop(daemon);
    if let Some(f) = failure {
        return Err(f);
    }
    // The API's own round trip, from this process.
    let client = crate::msg::client()?;
    let mut baseline = Vec::new();
    for _ in 0..commands {
        let t0 = Instant::now();
        rt.block_on(async {
            let _ = client
                .post(format!("{base}/bot1:x/getUpdates"))
                .body(r#"{"offset": 1}"#)
                .send()
                .await;
            let _ = client
                .post(format!("{base}/bot1:x/sendMessage"))
                .body(r#"{"chat_id": 2, "text": "x"}"#)
                .send()
                .await;
        });
        baseline.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    // Fan-out through the outbox, in this process.
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&home.join("bench-msg.db")).map_err(io)?);
    let creds = crate::msg::Creds::default();
    let audit = crate::audit::AuditLog::in_dir(&home);
    let send = |n: usize| -> Result<f64, String> {
        let targets: Vec<Target> = (0..n)
            .map(|i| Target {
                channel: "webhook".into(),
                target: format!("{base}/slow/{n}/{i}"),
            })
            .collect();
        let t0 = Instant::now();
        let ids = crate::msg::outbox::enqueue(store.as_ref(), &creds, &targets, "bench", "bench")?;
        rt.block_on(crate::msg::outbox::drain(
            store.clone(),
            &client,
            &creds,
            "bench",
            &audit,
            Some(&ids),
            Instant::now() + Duration::from_secs(30),
        ))?;
        Ok(t0.elapsed().as_secs_f64() * 1000.0)
    };
    let single_ms = send(1)?;
    let fanout_ms = send(10)?;
    let _ = std::fs::remove_dir_all(&dir);
    let (queued, done, baseline) = (Spread::of(queued), Spread::of(done), Spread::of(baseline));
    Ok(MsgBench {
        commands,
        p50_ratio: done.p50_ms / baseline.p50_ms.max(0.001),
        queued,
        done,
        baseline,
        fanout_ms,
        single_ms,
        fanout_ratio: fanout_ms / single_ms.max(0.001),
    })
}
