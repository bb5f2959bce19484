//! The http step against a real server in the test process (axum on 127.0.0.1:0, its own tokio
//! runtime on a background thread; an HTTPS one with a self-signed certificate from rcgen).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};

use crate::common::*;

/// What the server saw: one entry per request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
}

type St = Arc<Shared>;

struct Server {
    addr: SocketAddr,
    shared: St,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

fn record(st: &St, path: &str, headers: &HeaderMap, body: &str) -> usize {
    let mut seen = st.seen.lock().expect("lock");
    seen.push(Seen {
        path: path.to_owned(),
        headers: headers.clone(),
        body: body.to_owned(),
    });
    seen.iter().filter(|s| s.path == path).count()
}

fn app(shared: St) -> Router {
    Router::new()
        .route(
            "/data",
            get(|State(st): State<St>, h: HeaderMap| async move {
                record(&st, "/data", &h, "");
                axum::Json(serde_json::json!({
                    "a": {"b": "deep value"},
                    "items": [{"id": 7, "name": "first"}, {"id": 8}],
                    "ok": true
                }))
            }),
        )
        .route(
            "/echo",
            post(
                |State(st): State<St>, h: HeaderMap, body: String| async move {
                    record(&st, "/echo", &h, &body);
                    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let auth = h
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    (
                        StatusCode::CREATED,
                        axum::Json(serde_json::json!({"got": json, "auth_seen": auth})),
                    )
                },
            ),
        )
        .route(
            "/flaky",
            get(|State(st): State<St>, h: HeaderMap| async move {
                let n = record(&st, "/flaky", &h, "");
                if n <= 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy, try later").into_response()
                } else {
                    (StatusCode::OK, "finally").into_response()
                }
            }),
        )
        .route(
            "/bad",
            any(
                |State(st): State<St>, h: HeaderMap, body: String| async move {
                    record(&st, "/bad", &h, &body);
                    (StatusCode::BAD_REQUEST, "{\"error\": \"missing field\"}")
                },
            ),
        )
        .route(
            "/big",
            get(|State(st): State<St>, h: HeaderMap| async move {
                record(&st, "/big", &h, "");
                "x".repeat(5000)
            }),
        )
        .route(
            "/stream",
            get(|State(st): State<St>, h: HeaderMap| async move {
                record(&st, "/stream", &h, "");
                // Chunked, no Content-Length: the cap is found while reading.
                let chunks = (0..10).map(|_| Ok::<_, std::io::Error>("y".repeat(500)));
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/slow",
            get(|State(st): State<St>, h: HeaderMap| async move {
                record(&st, "/slow", &h, "");
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        )
        .route(
            "/loop",
            get(|State(st): State<St>, h: HeaderMap| async move {
                record(&st, "/loop", &h, "");
                Redirect::temporary("/loop")
            }),
        )
        .route(
            "/hop",
            get(|State(st): State<St>, h: HeaderMap| async move {
                record(&st, "/hop", &h, "");
                Redirect::temporary("/data")
            }),
        )
        .route(
            "/limited",
            get(|State(st): State<St>, h: HeaderMap| async move {
                let n = record(&st, "/limited", &h, "");
                if n == 1 {
                    Response::builder()
                        .status(StatusCode::TOO_MANY_REQUESTS)
                        .header(header::RETRY_AFTER, "1")
                        .body(axum::body::Body::from("slow down"))
                        .expect("response")
                } else {
                    "ok".into_response()
                }
            }),
        )
        .with_state(shared)
}

/// Starts the plain HTTP server.
fn serve() -> Server {
    let shared = St::default();
    let router = app(shared.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            tx.send(listener.local_addr().expect("local address"))
                .expect("send the address");
            axum::serve(listener, router).await.expect("serve");
        });
    });
    // Bound before the address is sent: connections wait in the backlog, no polling needed.
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server address");
    Server { addr, shared }
}

/// Starts an HTTPS server with a self-signed certificate for 127.0.0.1.
fn serve_tls() -> Server {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let shared = St::default();
    let router = app(shared.clone());
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("TLS certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            tx.send(listener.local_addr().expect("local address"))
                .expect("send the address");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server address");
    Server { addr, shared }
}

/// `claw workflow run NAME --json`, without proxies from the environment in the way.
fn run(env: &Env, name: &str) -> Ran {
    env.command(&["workflow", "run", name, "--json"])
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .expect("run claw")
        .into()
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[test]
fn get_with_expect_and_extract_feeds_a_later_step() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "probe",
        &format!(
            r#"steps:
  - name: fetch
    type: http
    url: "{url}"
    query: {{q: "a b&c", tag: [x, y]}}
    expect:
      status: [200, 204]
      body_contains: deep value
      json: {{ok: true, a: {{b: deep value}}}}
    extract:
      deep: /a/b
      first_id: items[0].id
      name: $.items[0].name
  - name: use
    command: echo "${{{{ steps.fetch.outputs.deep }}}} ${{{{ steps.fetch.outputs.first_id }}}} ${{{{ steps.fetch.outputs.status }}}} ${{{{ steps.fetch.outputs.headers['content-type'] }}}}"
"#,
            url = server.url("/data")
        ),
    );
    let ran = run(&env, "probe");
    ran.expect_code(0);
    let j = ran.json();
    let fetch = step(&j, "fetch");
    assert_eq!(fetch["outputs"]["status"], 200);
    assert_eq!(fetch["outputs"]["deep"], "deep value");
    assert_eq!(fetch["outputs"]["first_id"], 7);
    assert_eq!(fetch["outputs"]["name"], "first");
    assert_eq!(fetch["outputs"]["json"]["ok"], true);
    assert_eq!(
        step(&j, "use")["stdout"],
        "deep value 7 200 application/json\n"
    );
    let seen = server.seen("/data");
    assert_eq!(seen.len(), 1);
    // The query was encoded, a list repeats its name; a GET carries no body.
    assert_eq!(seen[0].body, "");
    let log = read(std::path::Path::new(fetch["log"].as_str().unwrap()));
    assert!(
        log.contains(&format!(
            "> GET {}?q=a+b%26c&tag=x&tag=y",
            server.url("/data")
        )),
        "{log}"
    );
    assert!(log.contains("< 200 OK in "), "{log}");
    // A GET is idempotent by default: the key header is there all the same.
    let key = header(&seen[0], "idempotency-key");
    assert!(key.ends_with("/fetch/1"), "{key}");
}

#[test]
fn post_json_with_a_secret_header_masks_it_everywhere() {
    const CANARY: &str = "zz-HttpCanary-51d0";
    let server = serve();
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "API_TOKEN", CANARY])
        .expect_code(0);
    env.workflow(
        "post",
        &format!(
            r#"params:
  tag: blue
steps:
  - name: create
    type: http
    method: post
    url: "{url}"
    headers:
      Authorization: "Bearer ${{{{ secrets.API_TOKEN }}}}"
      X-Tag: "${{{{ params.tag }}}}"
    json:
      name: widget
      count: 3
      tags: [a, "${{{{ params.tag }}}}"]
    expect: {{status: 201}}
    extract: {{echoed: "got.tags[1]"}}
"#,
            url = server.url("/echo")
        ),
    );
    let ran = run(&env, "post");
    ran.expect_code(0);
    let seen = server.seen("/echo");
    assert_eq!(seen.len(), 1);
    // In clear in the request, and only there.
    assert_eq!(
        header(&seen[0], "authorization"),
        format!("Bearer {CANARY}")
    );
    assert_eq!(header(&seen[0], "x-tag"), "blue");
    assert_eq!(header(&seen[0], "content-type"), "application/json");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "widget", "count": 3, "tags": ["a", "blue"]})
    );
    // A POST is not idempotent, but the key is sent: the server can deduplicate retries.
    assert!(header(&seen[0], "idempotency-key").ends_with("/create/1"));
    let j = ran.json();
    let create = step(&j, "create");
    assert_eq!(create["outputs"]["echoed"], "blue");
    // The server echoed the token back: the stored outputs have it masked.
    assert_eq!(create["outputs"]["json"]["auth_seen"], "Bearer ***");
    assert!(!ran.stdout.contains(CANARY) && !ran.stderr.contains(CANARY));
    let shown = env.claw(&["run", "show", j["id"].as_str().unwrap(), "--json"]);
    assert!(!shown.stdout.contains(CANARY));
    let log = read(std::path::Path::new(create["log"].as_str().unwrap()));
    assert!(log.contains("> POST "), "{log}");
    assert!(
        log.contains("authorization"),
        "header names are logged: {log}"
    );
    for entry in walk(&env.home) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "canary in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_503_is_retried_with_backoff_and_the_same_key_prefix() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "flaky",
        &format!(
            r#"steps:
  - name: call
    type: http
    url: "{url}"
    retry: {{limit: 3, delay: 200ms, backoff: 2}}
"#,
            url = server.url("/flaky")
        ),
    );
    let started = Instant::now();
    let ran = run(&env, "flaky");
    let elapsed = started.elapsed();
    ran.expect_code(0);
    let j = ran.json();
    let call = step(&j, "call");
    assert_eq!(call["status"], "succeeded");
    assert_eq!(call["attempts"], 3);
    assert_eq!(call["outputs"]["body"], "finally");
    // Waited 200 ms, then 400 ms.
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    let seen = server.seen("/flaky");
    assert_eq!(seen.len(), 3);
    let keys: Vec<&str> = seen.iter().map(|s| header(s, "idempotency-key")).collect();
    let run_id = j["id"].as_str().unwrap();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(*key, format!("{run_id}/call/{}", i + 1));
    }
    let log = read(std::path::Path::new(call["log"].as_str().unwrap()));
    assert_eq!(log.matches("< 503 Service Unavailable").count(), 2, "{log}");
}

#[test]
fn a_400_is_not_retried() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "bad",
        &format!(
            r#"steps:
  - name: call
    type: http
    method: POST
    url: "{url}"
    body: "name=x"
    retry: {{limit: 3, delay: 100ms}}
"#,
            url = server.url("/bad")
        ),
    );
    let ran = run(&env, "bad");
    ran.expect_code(1);
    let j = ran.json();
    let call = step(&j, "call");
    assert_eq!(call["status"], "failed");
    assert_eq!(call["attempts"], 1);
    let message = call["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "HTTP 400 Bad Request from {} (expected 2xx): {{\"error\": \"missing field\"}}",
            server.url("/bad")
        )),
        "{message}"
    );
    assert!(message.contains("not retried"), "{message}");
    // Outputs are there for a later step that looks at the failure.
    assert_eq!(call["outputs"]["status"], 400);
    assert_eq!(call["outputs"]["json"]["error"], "missing field");
    assert_eq!(server.seen("/bad").len(), 1);
    assert_eq!(server.seen("/bad")[0].body, "name=x");
}

#[test]
fn retry_after_is_honoured_within_the_max_delay() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "limited",
        &format!(
            r#"steps:
  - name: call
    type: http
    url: "{url}"
    retry: {{limit: 1, delay: 10ms, max_delay: 5s}}
"#,
            url = server.url("/limited")
        ),
    );
    let started = Instant::now();
    let ran = run(&env, "limited");
    ran.expect_code(0);
    // The server asked for 1 s; the policy alone would have waited 10 ms.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(step(&ran.json(), "call")["attempts"], 2);
    assert_eq!(server.seen("/limited").len(), 2);
}

#[test]
fn a_response_over_the_size_cap_fails() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "big",
        &format!(
            r#"steps:
  - name: head
    type: http
    method: HEAD
    url: "{big}"
    max_response_bytes: 1KiB
  - name: call
    type: http
    url: "{big}"
    max_response_bytes: 1KiB
    retry: 2
    on_failure: continue
  - name: stream
    type: http
    url: "{stream}"
    max_response_bytes: 4000
    condition: always
"#,
            big = server.url("/big"),
            stream = server.url("/stream")
        ),
    );
    let ran = run(&env, "big");
    ran.expect_code(1);
    let j = ran.json();
    // A HEAD response announces 5000 bytes but has no body to cap.
    let head = step(&j, "head");
    assert_eq!(head["status"], "succeeded");
    assert_eq!(head["outputs"]["headers"]["content-length"], "5000");
    let call = step(&j, "call");
    assert_eq!(call["attempts"], 1, "the cap is not worth retrying");
    let message = call["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("the response body is 5000 bytes, over max_response_bytes (1024 bytes)"),
        "{message}"
    );
    assert_eq!(call["outputs"]["status"], 200);
    assert_eq!(call["outputs"]["body"], "");
    let stream = step(&j, "stream");
    assert_eq!(
        stream["message"],
        "the response body is more than 4000 bytes, over max_response_bytes (4000 bytes)"
    );
}

#[test]
fn a_slow_server_times_out() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "slow",
        &format!(
            r#"steps:
  - name: call
    type: http
    url: "{url}"
    timeout: 1s
"#,
            url = server.url("/slow")
        ),
    );
    let started = Instant::now();
    let ran = run(&env, "slow");
    ran.expect_code(1);
    // Proves the 30 s sleep was not waited out.
    assert!(started.elapsed() < Duration::from_secs(20));
    let call = step(&ran.json(), "call").clone();
    assert_eq!(call["message"], "timed out after 1s");
    assert_eq!(server.seen("/slow").len(), 1);
}

#[test]
fn redirects_are_followed_up_to_the_limit() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "redirects",
        &format!(
            r#"steps:
  - name: hop
    type: http
    url: "{hop}"
    extract: {{deep: a.b}}
  - name: loop
    type: http
    url: "{looping}"
    max_redirects: 3
    retry: 2
    on_failure: continue
  - name: not-followed
    type: http
    url: "{hop}"
    follow_redirects: false
    expect: {{status: 3xx}}
    on_failure: continue
"#,
            hop = server.url("/hop"),
            looping = server.url("/loop")
        ),
    );
    let ran = run(&env, "redirects");
    ran.expect_code(1);
    let j = ran.json();
    assert_eq!(step(&j, "hop")["outputs"]["deep"], "deep value");
    let looped = step(&j, "loop");
    assert_eq!(looped["status"], "failed");
    assert_eq!(looped["attempts"], 1);
    assert_eq!(
        looped["message"].as_str().unwrap(),
        format!(
            "too many redirects: {} redirected more than 3 times (max_redirects: 3) (not retried: another attempt would fail the same way)",
            server.url("/loop")
        )
    );
    // The first request and three redirects.
    assert_eq!(server.seen("/loop").len(), 4);
    let nf = step(&j, "not-followed");
    assert_eq!(nf["status"], "succeeded");
    assert_eq!(nf["outputs"]["status"], 307);
    assert_eq!(nf["outputs"]["headers"]["location"], "/data");
}

#[test]
fn a_self_signed_certificate_is_refused_unless_tls_verify_is_off() {
    let server = serve_tls();
    let env = Env::new();
    let url = format!("https://{}/data", server.addr);
    env.workflow(
        "tls",
        &format!(
            r#"steps:
  - name: strict
    type: http
    url: "{url}"
    retry: 2
    on_failure: continue
  - name: lax
    type: http
    url: "{url}"
    tls_verify: false
    on_failure: continue
    extract: {{deep: /a/b}}
"#
        ),
    );
    let ran = run(&env, "tls");
    ran.expect_code(1);
    let j = ran.json();
    let strict = step(&j, "strict");
    assert_eq!(strict["status"], "failed");
    assert_eq!(strict["attempts"], 1);
    let message = strict["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("TLS failure with {url}: invalid peer certificate")),
        "{message}"
    );
    assert!(message.contains("tls_verify: false"), "{message}");
    let lax = step(&j, "lax");
    assert_eq!(lax["status"], "succeeded");
    assert_eq!(lax["outputs"]["deep"], "deep value");
    let log = read(std::path::Path::new(lax["log"].as_str().unwrap()));
    assert!(
        log.contains("warning: TLS certificate verification is off"),
        "{log}"
    );
    // Only the lax step got through the handshake.
    assert_eq!(server.seen("/data").len(), 1);
}

#[test]
fn the_seed_form_posts_args_body_as_json() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "seed",
        &format!(
            r#"name: seed
steps:
  - name: notify
    type: http
    command: {url}
    args:
      headers: {{Content-Type: application/json, X-Seed: "yes"}}
      body: {{text: deployed, ok: true}}
    timeout: 10
"#,
            url = server.url("/echo")
        ),
    );
    let ran = run(&env, "seed");
    ran.expect_code(0);
    let seen = server.seen("/echo");
    assert_eq!(seen.len(), 1);
    assert_eq!(header(&seen[0], "x-seed"), "yes");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"text": "deployed", "ok": true}));
    assert_eq!(step(&ran.json(), "notify")["outputs"]["status"], 201);
}

#[test]
fn dry_run_shows_method_and_url_and_sends_nothing() {
    let server = serve();
    let env = Env::new();
    env.workflow(
        "dry",
        &format!(
            "steps:\n  - name: call\n    type: http\n    method: delete\n    url: {}\n",
            server.url("/bad")
        ),
    );
    let ran = env.claw(&["workflow", "run", "dry", "--dry-run", "--json"]);
    ran.expect_code(0);
    assert_eq!(
        step(&ran.json(), "call")["message"],
        format!("dry-run: would execute http: DELETE {}", server.url("/bad"))
    );
    assert!(server.seen("/bad").is_empty());
}

#[test]
fn bad_http_fields_are_reported_with_positions() {
    let env = Env::new();
    let file = env.workflow(
        "broken",
        r#"steps:
  - name: a
    type: http
    url: ftp://example.com/x
    method: FETCH
    body: text
    json: {a: 1}
    expect: {status: 2xy, body_contain: x}
    extract: {v: "a..b", w: "/a~2"}
    max_response_bytes: -5
    max_redirects: lots
    tls_verify: maybe
    headers: {"Bad Name": x}
  - name: b
    type: http
    url: http://example.com
    command: http://example.com
  - name: c
    type: http
    method: GET
"#,
    );
    let out = env.claw(&["workflow", "validate", file.to_str().unwrap()]);
    out.expect_code(2);
    let expected = [
        "broken.yaml:4:10: unsupported URL scheme `ftp` in `url` (expected http or https)",
        "broken.yaml:5:13: unknown HTTP method `FETCH`",
        "broken.yaml:7:11: `body` and `json` both give the request body",
        "broken.yaml:8:22: invalid `expect.status` `2xy`",
        "broken.yaml:8:27: unknown key `body_contain` in `expect`",
        "broken.yaml:9:18: `extract.v`: invalid path `a..b`: empty name between dots",
        "broken.yaml:9:29: `extract.w`: invalid JSON pointer `/a~2`",
        "broken.yaml:10:25: invalid `max_response_bytes`: must be at least 1 byte",
        "broken.yaml:11:20: `max_redirects` must be a whole number from 0 to 100",
        "broken.yaml:12:17: `tls_verify` must be true or false",
        "broken.yaml:13:27: invalid header name `Bad Name`",
        "broken.yaml:17:14: step `b` has both `url` and `command`",
        "broken.yaml:18:5: step `c` (http) has no `url`",
    ];
    for line in expected {
        assert!(
            out.stderr.contains(line),
            "missing `{line}` in:\n{}",
            out.stderr
        );
    }
}
