//! The router in-process (`tower::ServiceExt::oneshot`, no socket), with a real store, vault
//! and audit log in a temporary data directory.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::server::{WebhookState, router};
use super::verify::{Method, sign};
use crate::config::{Dirs, Settings};
use crate::engine::Engine;
use crate::store::RunFilter;
use crate::triggers::launch::Execution;

struct Fixture {
    _dir: tempfile::TempDir,
    state: Arc<WebhookState>,
    log: Arc<Mutex<Vec<String>>>,
}

fn fixture(workflows: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let dirs = Dirs {
        home: dir.path().join("home"),
        root: dir.path().join("root"),
    };
    std::fs::create_dir_all(dirs.root.join("workflows")).unwrap();
    for (name, text) in workflows {
        std::fs::write(
            dirs.root.join("workflows").join(format!("{name}.yaml")),
            text,
        )
        .unwrap();
    }
    let engine = Arc::new(Engine::open(dirs, Settings::default()).unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let state = WebhookState::new(
        engine,
        Execution::Queue,
        Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_owned())),
    )
    .with_max_body(1024);
    Fixture {
        _dir: dir,
        state: Arc::new(state),
        log,
    }
}

const GH: &str = "steps:\n  - name: s\n    command: 'true'\ntriggers:\n  - webhook:\n      name: gh\n      verify: hmac-sha256\n      secret: ${{ secrets.GH_SECRET }}\n  - webhook: {name: open, verify: bearer}\n  - webhook: {name: literal, verify: bearer, secret: tok3n}\n";

impl Fixture {
    fn set_secret(&self, key: &str, value: &str) {
        let v = crate::vault::Vault::new(&self.state.engine.dirs.home);
        v.init().unwrap();
        v.set(key, &crate::vault::Secret::new(value.to_owned()))
            .unwrap();
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method("POST").uri(path);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = router(self.state.clone())
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn runs(&self) -> Vec<crate::store::RunRecord> {
        self.state
            .engine
            .store
            .list_runs(&RunFilter::default())
            .unwrap()
    }

    fn logged(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

fn gh_headers(secret: &str, body: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "x-hub-signature-256",
            sign(Method::HmacSha256, secret.as_bytes(), body.as_bytes(), 0),
        ),
        ("x-github-delivery", delivery.to_owned()),
        ("x-github-event", "push".to_owned()),
        ("content-type", "application/json".to_owned()),
    ]
}

#[tokio::test]
async fn accepted_creates_a_run_with_the_body() {
    let f = fixture(&[("deploy", GH)]);
    f.set_secret("GH_SECRET", "hunter2-secret");
    let body = r#"{"ref":"refs/heads/main","after":"abc"}"#;
    let (status, json) = f
        .post(
            "/hooks/gh",
            &gh_headers("hunter2-secret", body, "d-1"),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", f.logged());
    let runs = f.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(json["run_id"], runs[0].id.as_str());
    let t = &runs[0].trigger;
    assert_eq!(t["type"], "webhook");
    assert_eq!(t["hook"], "gh");
    assert_eq!(t["body"]["ref"], "refs/heads/main");
    assert_eq!(t["headers"]["x-github-event"], "push");
    // The signature header is not kept, and the run is queued for the daemon.
    assert!(t["headers"].get("x-hub-signature-256").is_none());
    assert_eq!(runs[0].status, crate::store::RunStatus::Queued);
    assert!(runs[0].owner.is_none());
    // Audited.
    let audit = std::fs::read_to_string(f.state.engine.dirs.home.join("audit.log")).unwrap();
    assert!(audit.contains("\"webhook.accepted\""), "{audit}");
    assert!(!audit.contains("hunter2"), "{audit}");
}

#[tokio::test]
async fn a_duplicate_delivery_starts_no_second_run() {
    let f = fixture(&[("deploy", GH)]);
    f.set_secret("GH_SECRET", "s");
    let body = "{}";
    let (s1, j1) = f
        .post("/hooks/gh", &gh_headers("s", body, "same"), body)
        .await;
    let (s2, j2) = f
        .post("/hooks/gh", &gh_headers("s", body, "same"), body)
        .await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(j1["run_id"], j2["run_id"]);
    assert_eq!(j2["duplicate"], true);
    let (s3, _) = f
        .post("/hooks/gh", &gh_headers("s", body, "other"), body)
        .await;
    assert_eq!(s3, StatusCode::ACCEPTED);
    assert_eq!(f.runs().len(), 2);
}

#[tokio::test]
async fn refusals() {
    let f = fixture(&[("deploy", GH)]);
    // The vault has no GH_SECRET yet: fail-closed, even with a "signature" over an empty key.
    let body = "{}";
    let (s, j) = f.post("/hooks/gh", &gh_headers("", body, "x"), body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(j, serde_json::json!({"error": "unauthorized"}));
    assert!(
        f.logged()
            .contains("its secret `GH_SECRET` is not in the vault"),
        "{}",
        f.logged()
    );
    f.set_secret("GH_SECRET", "right");
    let (s, _) = f
        .post("/hooks/gh", &gh_headers("wrong", body, "y"), body)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        f.logged()
            .contains("webhook `gh`: refused (401): signature does not match")
    );
    let (s, _) = f.post("/hooks/gh", &[], body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(f.logged().contains("missing header X-Hub-Signature-256"));
    // No secret configured at all.
    let (s, _) = f
        .post(
            "/hooks/open",
            &[("authorization", "Bearer ".to_owned())],
            body,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        f.logged()
            .contains("webhook `open`: refused (401): the hook has no secret configured")
    );
    // Over the size limit (1024 bytes here): 413, before any verification.
    let big = "x".repeat(2000);
    let (s, _) = f
        .post("/hooks/gh", &gh_headers("right", &big, "z"), &big)
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown hook.
    let (s, j) = f.post("/hooks/nope", &[], body).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(j, serde_json::json!({"error": "not found"}));
    assert!(f.runs().is_empty());
    // A literal secret works (with a warning in the log).
    let (s, _) = f
        .post(
            "/hooks/literal",
            &[("authorization", "Bearer tok3n".to_owned())],
            "plain text",
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(f.runs()[0].trigger["body"], "plain text");
    assert!(
        f.logged()
            .contains("has its secret written in the workflow file")
    );
}

#[tokio::test]
async fn not_post_is_405() {
    let f = fixture(&[("deploy", GH)]);
    let resp = router(f.state.clone())
        .oneshot(
            Request::builder()
                .method("GET")
                .uri("/hooks/gh")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn slack_and_telegram() {
    let wf = "steps:\n  - name: s\n    command: 'true'\ntriggers:\n  - webhook:\n      name: sl\n      verify: slack\n      secret: ${{ secrets.SLACK }}\n  - webhook:\n      name: tg\n      verify: telegram\n      secret: '${{ secrets.TG }}'\n";
    let f = fixture(&[("chat", wf)]);
    f.set_secret("SLACK", "slack-signing");
    f.set_secret("TG", "tg-token");
    let now = crate::engine::now_ms() / 1000;
    let body = "token=x&text=hi";
    let sig = sign(Method::Slack, b"slack-signing", body.as_bytes(), now);
    let h = vec![
        ("x-slack-request-timestamp", now.to_string()),
        ("x-slack-signature", sig.clone()),
    ];
    assert_eq!(f.post("/hooks/sl", &h, body).await.0, StatusCode::ACCEPTED);
    // Stale: signed correctly, six minutes ago.
    let old = now - 360;
    let h_old = vec![
        ("x-slack-request-timestamp", old.to_string()),
        (
            "x-slack-signature",
            sign(Method::Slack, b"slack-signing", body.as_bytes(), old),
        ),
    ];
    assert_eq!(
        f.post("/hooks/sl", &h_old, body).await.0,
        StatusCode::UNAUTHORIZED
    );
    // 360 s, or a little more if a second turned between signing and checking.
    assert!(
        ["360", "361", "362"]
            .iter()
            .any(|s| f.logged().contains(&format!("timestamp is {s} s away"))),
        "{}",
        f.logged()
    );
    // Telegram: the update_id dedupes.
    let update = r#"{"update_id": 77, "message": {"text": "hi"}}"#;
    let h = vec![("x-telegram-bot-api-secret-token", "tg-token".to_owned())];
    assert_eq!(
        f.post("/hooks/tg", &h, update).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(f.post("/hooks/tg", &h, update).await.0, StatusCode::OK);
    let bad = vec![("x-telegram-bot-api-secret-token", "TG-TOKEN".to_owned())];
    assert_eq!(
        f.post("/hooks/tg", &bad, update).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.runs().len(), 2);
}

#[tokio::test]
async fn a_hook_declared_twice_refuses_and_params_without_defaults_are_422() {
    let twice = "steps:\n  - name: s\n    command: 'true'\ntriggers:\n  - webhook: {name: dup, verify: bearer, secret: a}\n";
    let needs = "params:\n  env: {type: string}\nsteps:\n  - name: s\n    command: 'true'\ntriggers:\n  - webhook: {name: needs, verify: bearer, secret: a}\n";
    let f = fixture(&[("one", twice), ("two", twice), ("three", needs)]);
    let h = vec![("authorization", "Bearer a".to_owned())];
    assert_eq!(
        f.post("/hooks/dup", &h, "{}").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(f.logged().contains("is declared by several workflows"));
    let (s, j) = f.post("/hooks/needs", &h, "{}").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(j["error"].as_str().unwrap().contains("env"), "{j}");
}
