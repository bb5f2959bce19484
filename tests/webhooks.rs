//! Webhooks end to end over a real socket: the router served by axum on 127.0.0.1:0, requests
//! written by hand over TCP, the run driven in-process and inspected with the real `claw` binary.

// Helpers here are test code: a failed setup is a failed test, with its backtrace.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use claw::config::{Dirs, Settings};
use claw::engine::Engine;
use claw::triggers::launch::{Execution, RunDriver};
use claw::triggers::webhook::verify::{Method, sign};
use claw::triggers::webhook::{WebhookState, router};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// Serves the webhook router on a free loopback port, on a thread of its own.
fn serve(env: &Env, execution_drive: bool) -> (SocketAddr, CancellationToken) {
    let dirs = Dirs {
        home: env.home.clone(),
        root: env.root.clone(),
    };
    let engine = Arc::new(Engine::open(dirs, Settings::default()).unwrap());
    let cancel = CancellationToken::new();
    let execution = if execution_drive {
        let (driver, _thread) = RunDriver::spawn(engine.clone(), cancel.clone()).unwrap();
        Execution::Drive(driver)
    } else {
        Execution::Queue
    };
    let state = Arc::new(WebhookState::new(
        engine,
        execution,
        claw::triggers::webhook::server::no_log(),
    ));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = cancel.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .unwrap();
        });
    });
    (rx.recv_timeout(Duration::from_secs(10)).unwrap(), cancel)
}

/// One HTTP/1.1 request; returns the status code and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_github_push_runs_the_workflow_with_its_body() {
    let env = Env::new();
    let out = env.path("pushed.txt");
    env.workflow(
        "on-push",
        &format!(
            "steps:\n  - name: record\n    command: echo \"${{{{ trigger.body.ref }}}} ${{{{ trigger.headers['x-github-event'] }}}}\" > {}\ntriggers:\n  - webhook:\n      name: github\n      verify: hmac-sha256\n      secret: ${{{{ secrets.GITHUB_WEBHOOK_SECRET }}}}\n",
            out.display()
        ),
    );
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&[
        "vault",
        "set",
        "GITHUB_WEBHOOK_SECRET",
        "It's a Secret to Everybody",
    ])
    .expect_code(0);
    let (addr, cancel) = serve(&env, true);

    let body = r#"{"ref": "refs/heads/main"}"#;
    let sig = sign(
        Method::HmacSha256,
        b"It's a Secret to Everybody",
        body.as_bytes(),
        0,
    );
    let headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-GitHub-Event", "push".to_owned()),
        (
            "X-GitHub-Delivery",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
        ),
        ("X-Hub-Signature-256", sig),
    ];
    let (status, resp) = request(addr, "POST", "/hooks/github", &headers, body);
    assert_eq!(status, 202, "{resp}");
    let json: serde_json::Value = serde_json::from_str(&resp).unwrap();
    let run_id = json["run_id"].as_str().unwrap().to_owned();

    wait_for(Duration::from_secs(20), || {
        (env.show(&run_id)["status"] == "succeeded").then_some(())
    })
    .unwrap_or_else(|| panic!("run never succeeded: {:#}", env.show(&run_id)));
    assert_eq!(read(&out), "refs/heads/main push\n");
    let shown = env.show(&run_id);
    assert_eq!(shown["trigger"]["type"], "webhook");
    assert_eq!(shown["trigger"]["body"]["ref"], "refs/heads/main");

    // GitHub redelivers: same delivery id, no second run.
    let (status, resp) = request(addr, "POST", "/hooks/github", &headers, body);
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains(&run_id), "{resp}");
    // Tampered body, wrong method, unknown hook.
    let (status, _) = request(
        addr,
        "POST",
        "/hooks/github",
        &headers,
        r#"{"ref": "refs/heads/evil"}"#,
    );
    assert_eq!(status, 401);
    assert_eq!(request(addr, "GET", "/hooks/github", &[], "").0, 405);
    assert_eq!(request(addr, "POST", "/hooks/gitlab", &[], "{}").0, 404);
    let runs = env.claw(&["run", "list", "--json"]).expect_code(0).json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    // The secret is nowhere in what claw wrote.
    let audit = read(&env.home.join("audit.log"));
    assert!(audit.contains("webhook.accepted"), "{audit}");
    assert!(!audit.contains("Everybody"));
    cancel.cancel();
}

#[test]
fn a_queued_run_waits_for_the_daemon() {
    let env = Env::new();
    env.workflow(
        "queued",
        "steps:\n  - name: s\n    command: 'true'\ntriggers:\n  - webhook: {name: q, verify: bearer, secret: letmein}\n",
    );
    let (addr, cancel) = serve(&env, false);
    let (status, resp) = request(
        addr,
        "POST",
        "/hooks/q",
        &[
            ("Authorization", "Bearer letmein".to_owned()),
            ("Idempotency-Key", "k1".to_owned()),
        ],
        "not json",
    );
    assert_eq!(status, 202, "{resp}");
    let id = serde_json::from_str::<serde_json::Value>(&resp).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = env.show(&id);
    assert_eq!(shown["status"], "queued");
    assert_eq!(shown["trigger"]["body"], "not json");
    // Anyone can then execute it, as the daemon will.
    env.claw(&["run", "resume", &id]).expect_code(0);
    assert_eq!(env.show(&id)["status"], "succeeded");
    cancel.cancel();
}
