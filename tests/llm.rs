//! LLM steps against a loopback server speaking the providers' wire formats: Anthropic Messages
//! SSE (`message_start`, `content_block_*` with `tool_use`, `message_delta` usage,
//! `message_stop`, `error`) and OpenAI Chat Completions SSE (`choices[].delta`, `tool_calls`,
//! `usage`, `[DONE]`), their error shapes (400, 401, 429 with Retry-After, 500, 529, a stream cut
//! in the middle, a malformed event), and a fake `claude` program on PATH for `claude-cli`.

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// One scripted answer.
#[derive(Clone)]
pub(crate) enum Answer {
    /// 200 with these SSE chunks; `gate` pauses after the first chunk until released.
    Sse { chunks: Vec<String>, gate: bool },
    /// An error response: status, Retry-After, JSON body.
    Error {
        status: u16,
        retry_after: Option<u64>,
        body: String,
    },
    /// Accepts and never answers.
    Hang,
    /// 200 with a plain body (an HTTP tool's endpoint).
    Plain(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    head: String,
    pub(crate) body: Value,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// Answers by path prefix (`/v1/messages`, `/v1/chat/completions`), consumed in order.
    script: Mutex<Vec<(String, VecDeque<Answer>)>>,
    released: AtomicBool,
    /// A Telegram Bot API beside the providers: updates for getUpdates, sendMessage texts.
    updates: Mutex<Vec<Value>>,
    sent: Mutex<Vec<(String, String)>>,
}

pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub(crate) fn script(&self, path: &str, answers: Vec<Answer>) {
        self.shared
            .script
            .lock()
            .expect("lock")
            .push((path.to_owned(), answers.into()));
    }
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }
    fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || handle(conn, &s));
        }
    });
    Server { addr, shared }
}

fn read_request(conn: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut byte).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut byte).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&byte[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    Some((path, head, body))
}

fn handle(mut conn: TcpStream, s: &Shared) {
    let Some((path, head, body)) = read_request(&mut conn) else {
        return;
    };
    if path.contains("/getUpdates") || path.contains("/sendMessage") || path.contains("/getMe") {
        return telegram(conn, s, &path, &body);
    }
    s.seen.lock().expect("lock").push(Seen {
        path: path.clone(),
        head: head.to_ascii_lowercase(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let answer = {
        let mut script = s.script.lock().expect("lock");
        script
            .iter_mut()
            .find(|(p, q)| path.starts_with(p.as_str()) && !q.is_empty())
            .and_then(|(_, q)| q.pop_front())
    };
    let answer = answer.unwrap_or_else(|| {
        if path.contains("chat/completions") {
            openai_text(&["default ", "reply"])
        } else {
            anthropic_text(&["default ", "reply"])
        }
    });
    match answer {
        Answer::Hang => std::thread::sleep(Duration::from_secs(60)),
        Answer::Plain(body) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Answer::Error {
            status,
            retry_after,
            body,
        } => {
            let ra = retry_after
                .map(|s| format!("retry-after: {s}\r\n"))
                .unwrap_or_default();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{ra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Answer::Sse { chunks, gate } => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
            );
            for (i, c) in chunks.iter().enumerate() {
                let _ = conn.write_all(c.as_bytes());
                let _ = conn.flush();
                if i == 0 && gate {
                    let until = Instant::now() + Duration::from_secs(20);
                    while !s.released.load(Ordering::SeqCst) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }
}

/// The Bot API methods claw uses: getUpdates (updates at or after the offset, a short long-poll),
/// sendMessage (recorded) and getMe (401 for a token starting with `bad`).
fn telegram(mut conn: TcpStream, s: &Shared, path: &str, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if path.contains("/getMe") {
        let (status, answer) = if path.contains("/botbad") {
            (
                401,
                json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
            )
        } else {
            (
                200,
                json!({"ok": true, "result": {"id": 42, "is_bot": true, "first_name": "claw", "username": "claw_test_bot"}}),
            )
        };
        let answer = answer.to_string();
        let _ = write!(
            conn,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        return;
    }
    let answer = if path.contains("/getUpdates") {
        let offset = v["offset"].as_i64().unwrap_or(0);
        let mut due = Vec::new();
        for _ in 0..20 {
            due = s
                .updates
                .lock()
                .expect("lock")
                .iter()
                .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                .cloned()
                .collect();
            if !due.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        json!({"ok": true, "result": due})
    } else {
        let chat = match &v["chat_id"] {
            Value::String(c) => c.clone(),
            other => other.to_string(),
        };
        let mut sent = s.sent.lock().expect("lock");
        sent.push((chat, v["text"].as_str().unwrap_or("").to_owned()));
        json!({"ok": true, "result": {"message_id": sent.len()}})
    }
    .to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

fn sse(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// An Anthropic Messages stream of text pieces, ending with usage and `message_stop`.
fn anthropic_chunks(pieces: &[&str]) -> Vec<String> {
    let mut c = vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1", "content": [], "stop_reason": null, "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse("ping", &json!({"type": "ping"})),
    ];
    for p in pieces {
        c.push(sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
        ));
    }
    c.push(sse(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    c.push(sse(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
    ));
    c.push(sse("message_stop", &json!({"type": "message_stop"})));
    c
}

pub(crate) fn anthropic_text(pieces: &[&str]) -> Answer {
    Answer::Sse {
        chunks: anthropic_chunks(pieces),
        gate: false,
    }
}

fn openai_chunks(pieces: &[&str]) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut c = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for p in pieces {
        c.push(chunk(json!({"content": p}), Value::Null));
    }
    c.push(chunk(json!({}), json!("stop")));
    c.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
    ));
    c.push("data: [DONE]\n\n".to_owned());
    c
}

fn openai_text(pieces: &[&str]) -> Answer {
    Answer::Sse {
        chunks: openai_chunks(pieces),
        gate: false,
    }
}

fn error(status: u16, retry_after: Option<u64>, kind: &str) -> Answer {
    Answer::Error {
        status,
        retry_after,
        body: json!({"type": "error", "error": {"type": kind, "message": format!("{kind} from the test server")}})
            .to_string(),
    }
}

/// A claw command with both providers pointed at `srv` and keys set.
pub(crate) fn cmd(env: &Env, srv: &Server, args: &[&str]) -> std::process::Command {
    let mut c = env.command(args);
    c.env("ANTHROPIC_BASE_URL", srv.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test-secret-1234")
        .env("OPENAI_BASE_URL", format!("{}/v1", srv.url()))
        .env("OPENAI_API_KEY", "sk-openai-test-secret-5678")
        .env_remove("JOB_MODEL")
        .env_remove("CHAT_MODEL")
        .env_remove("LLM_PROVIDERS")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY");
    c
}

fn run(env: &Env, srv: &Server, name: &str) -> Ran {
    cmd(env, srv, &["workflow", "run", name, "--json"])
        .output()
        .expect("run claw")
        .into()
}

fn step_of<'a>(ran: &'a Value, name: &str) -> &'a Value {
    ran["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {ran}"))
}

/// Every step log of every run, concatenated.
fn logs(home: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![home.join("logs").join("runs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn one_step(env: &Env, name: &str, fields: &str) {
    env.workflow(
        name,
        &format!("name: {name}\nsteps:\n  - name: ask\n    type: llm\n{fields}"),
    );
}

#[test]
fn anthropic_reply_streams_into_the_log_before_it_ends() {
    let srv = serve();
    let env = Env::new();
    // Text reaches the log line by line (a partial line is held back only as long as the longest
    // secret, which could continue in the next piece).
    let mut chunks = anthropic_chunks(&["web1: fine.\n", "db1: fine."]);
    // The first chunk carries message_start through the first delta; the rest waits.
    let first: String = chunks.drain(..4).collect();
    chunks.insert(0, first);
    srv.script("/v1/messages", vec![Answer::Sse { chunks, gate: true }]);
    one_step(
        &env,
        "brief",
        "    provider: anthropic\n    system: Be terse.\n    prompt: \"Summarise ${{ params.what }}\"\n    max_tokens: 300\n    temperature: 0.2\nparams:\n  what: {type: string, default: disks}\n",
    );
    let child = cmd(&env, &srv, &["workflow", "run", "brief", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let streamed = wait_for(Duration::from_secs(20), || {
        logs(&env.home).contains("web1: fine.").then_some(())
    });
    let log_then = logs(&env.home);
    srv.release();
    let out = child.wait_with_output().expect("wait");
    let ran = Ran::from(out);
    assert!(streamed.is_some(), "the first piece never reached the log");
    assert!(!log_then.contains("db1"), "{log_then}");
    ran.expect_code(0);
    let v = ran.json();
    let s = step_of(&v, "ask");
    assert_eq!(s["outputs"]["text"], "web1: fine.\ndb1: fine.");
    assert_eq!(s["outputs"]["model"], "claude-test-1");
    assert_eq!(s["outputs"]["provider"], "anthropic");
    assert_eq!(s["outputs"]["usage"]["input_tokens"], 11);
    assert_eq!(s["outputs"]["usage"]["output_tokens"], 7);
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/messages");
    assert!(seen[0].head.contains("x-api-key: sk-ant-test-secret-1234"));
    assert!(seen[0].head.contains("anthropic-version: 2023-06-01"));
    let b = &seen[0].body;
    assert_eq!(b["stream"], true);
    assert_eq!(b["system"], "Be terse.");
    assert_eq!(b["max_tokens"], 300);
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["messages"][0]["content"], "Summarise disks");
    assert!(!logs(&env.home).contains("sk-ant-test-secret-1234"));
}

#[test]
fn openai_stream_with_usage_and_done() {
    let srv = serve();
    let env = Env::new();
    // The model echoes a key: masked in the outputs and the log.
    srv.script(
        "/v1/chat/completions",
        vec![openai_text(&["four", "ty-two", " sk-ant-test-secret-1234"])],
    );
    one_step(
        &env,
        "o",
        "    provider: gpt\n    model: gpt-test\n    prompt: answer\n",
    );
    let ran = run(&env, &srv, "o");
    ran.expect_code(0);
    let v = ran.json();
    let s = step_of(&v, "ask");
    assert_eq!(
        s["outputs"]["text"],
        "fourty-two ***",
        "{}",
        logs(&env.home)
    );
    assert!(!logs(&env.home).contains("sk-ant-test-secret-1234"));
    assert_eq!(s["outputs"]["provider"], "openai");
    assert_eq!(s["outputs"]["usage"]["input_tokens"], 5);
    assert_eq!(s["outputs"]["usage"]["output_tokens"], 3);
    let usage = env.claw(&["llm", "usage", "--since", "1h", "--json"]);
    usage.expect_code(0);
    assert_eq!(
        usage.json(),
        json!([{"provider": "openai", "model": "gpt-test", "steps": 1, "input_tokens": 5, "output_tokens": 3}])
    );
    let seen = srv.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert!(
        seen[0]
            .head
            .contains("authorization: bearer sk-openai-test-secret-5678")
    );
    assert_eq!(seen[0].body["model"], "gpt-test");
    assert_eq!(seen[0].body["stream_options"]["include_usage"], true);
}

#[test]
fn ollama_is_the_openai_format_at_its_base_url() {
    let srv = serve();
    let env = Env::new();
    srv.script("/v1/chat/completions", vec![openai_text(&["local"])]);
    one_step(&env, "l", "    provider: ollama\n    prompt: hi\n");
    let ran: Ran = cmd(&env, &srv, &["workflow", "run", "l", "--json"])
        .env("OLLAMA_BASE_URL", srv.url())
        .env("OLLAMA_MODEL", "qwen")
        .output()
        .expect("run")
        .into();
    ran.expect_code(0);
    assert_eq!(step_of(&ran.json(), "ask")["outputs"]["provider"], "ollama");
    let seen = srv.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].body["model"], "qwen");
    assert!(
        !seen[0].head.contains("authorization"),
        "no key is sent to ollama"
    );
}

#[test]
fn fallback_on_529_500_cut_and_malformed_streams_is_audited() {
    let cut: Vec<String> = anthropic_chunks(&["half"]).into_iter().take(4).collect();
    let malformed = vec![
        anthropic_chunks(&[])[0].clone(),
        "event: content_block_delta\ndata: {not json\n\n".to_owned(),
    ];
    let cases = [
        ("529", error(529, None, "overloaded_error")),
        ("500", error(500, None, "api_error")),
        (
            "cut",
            Answer::Sse {
                chunks: cut,
                gate: false,
            },
        ),
        (
            "malformed",
            Answer::Sse {
                chunks: malformed,
                gate: false,
            },
        ),
    ];
    for (what, answer) in cases {
        let srv = serve();
        let env = Env::new();
        srv.script("/v1/messages", vec![answer]);
        srv.script("/v1/chat/completions", vec![openai_text(&["from openai"])]);
        env.write("root/claw.yaml", "llm:\n  fallback: [openai]\n");
        one_step(&env, "f", "    provider: anthropic\n    prompt: hi\n");
        let ran = run(&env, &srv, "f");
        ran.expect_code(0);
        let v = ran.json();
        let s = step_of(&v, "ask");
        assert_eq!(s["outputs"]["provider"], "openai", "{what}");
        assert_eq!(s["outputs"]["text"], "from openai", "{what}");
        let paths: Vec<String> = srv.seen().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["/v1/messages", "/v1/chat/completions"], "{what}");
        assert!(logs(&env.home).contains("falling back to openai"), "{what}");
        let audit = env
            .claw(&["audit", "search", "--action", "llm.fallback", "--json"])
            .stdout;
        assert!(audit.contains("\"anthropic\""), "{what}: {audit}");
        assert!(audit.contains("\"openai\""), "{what}: {audit}");
    }
}

#[test]
fn no_fallback_on_400_or_401() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
    ] {
        let srv = serve();
        let env = Env::new();
        srv.script("/v1/messages", vec![error(status, None, kind)]);
        env.write("root/claw.yaml", "llm:\n  fallback: [openai]\n");
        one_step(
            &env,
            "n",
            "    provider: anthropic\n    prompt: hi\n    retry: {limit: 2, delay: 10ms}\n",
        );
        let ran = run(&env, &srv, "n");
        assert_ne!(ran.code, 0, "{status}");
        let paths: Vec<String> = srv.seen().into_iter().map(|s| s.path).collect();
        assert_eq!(
            paths,
            ["/v1/messages"],
            "{status}: not retried, no fallback"
        );
        assert!(
            logs(&env.home).contains(&format!("HTTP {status}")),
            "{status}"
        );
    }
}

#[test]
fn a_429_is_retried_after_retry_after_then_answers() {
    let srv = serve();
    let env = Env::new();
    srv.script(
        "/v1/messages",
        vec![
            error(429, Some(1), "rate_limit_error"),
            anthropic_text(&["later"]),
        ],
    );
    one_step(&env, "r", "    provider: anthropic\n    prompt: hi\n");
    let started = Instant::now();
    let ran = run(&env, &srv, "r");
    ran.expect_code(0);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(step_of(&ran.json(), "ask")["outputs"]["text"], "later");
    assert_eq!(srv.seen().len(), 2);
}

#[test]
fn a_provider_that_hangs_times_out() {
    let srv = serve();
    let env = Env::new();
    srv.script("/v1/messages", vec![Answer::Hang]);
    one_step(
        &env,
        "h",
        "    provider: anthropic\n    prompt: hi\n    timeout: 2s\n",
    );
    let started = Instant::now();
    let ran: Ran = cmd(&env, &srv, &["workflow", "run", "h", "--json"])
        .env("LLM_FALLBACK", "no")
        .output()
        .expect("run")
        .into();
    assert_ne!(ran.code, 0);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        logs(&env.home).contains("timed out after 2s"),
        "{}",
        logs(&env.home)
    );
}

#[test]
fn json_schema_repairs_and_reasks_once() {
    let srv = serve();
    let env = Env::new();
    srv.script(
        "/v1/messages",
        vec![
            // Fenced, with a trailing comma, missing a required field.
            anthropic_text(&["```json\n{\"status\": \"ok\",}\n```"]),
            // Cut off at the end, but otherwise valid.
            anthropic_text(&["{\"status\": \"ok\", \"disks\": [\"sda\", \"sdb\""]),
        ],
    );
    one_step(
        &env,
        "j",
        "    provider: anthropic\n    prompt: report\n    json_schema:\n      type: object\n      required: [status, disks]\n      properties:\n        status: {type: string}\n        disks: {type: array, items: {type: string}}\n",
    );
    let ran = run(&env, &srv, "j");
    ran.expect_code(0);
    let v = ran.json();
    assert_eq!(
        step_of(&v, "ask")["outputs"]["json"],
        json!({"status": "ok", "disks": ["sda", "sdb"]})
    );
    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].body["system"]
            .as_str()
            .unwrap_or("")
            .contains("JSON Schema")
    );
    let reask = seen[1].body["messages"][2]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reask.contains("disks"), "{reask}");
}

#[test]
fn a_reply_that_never_fits_fails_with_it_in_the_log() {
    let srv = serve();
    let env = Env::new();
    srv.script(
        "/v1/messages",
        vec![
            anthropic_text(&["I cannot do JSON"]),
            anthropic_text(&["still prose, sorry"]),
        ],
    );
    one_step(
        &env,
        "x",
        "    provider: anthropic\n    prompt: report\n    json_schema: {type: object}\n",
    );
    let ran = run(&env, &srv, "x");
    assert_ne!(ran.code, 0);
    let log = logs(&env.home);
    assert!(log.contains("still prose, sorry"), "{log}");
    assert!(
        format!("{}{}", ran.stdout, ran.stderr).contains("not valid against json_schema"),
        "{}",
        ran.stdout
    );
}

#[test]
fn bad_input_is_refused_at_validation_with_its_position() {
    let env = Env::new();
    env.workflow(
        "bad",
        "name: bad\nsteps:\n  - name: a\n    type: llm\n    prompt: hi\n    provider: antropic\n  - name: b\n    type: llm\n    prompt: hi\n    json_schema: {type: strin}\n  - name: c\n    type: llm\n    system: no prompt\n",
    );
    let ran = env.claw(&["workflow", "validate", "bad"]);
    assert_ne!(ran.code, 0);
    let out = format!("{}{}", ran.stdout, ran.stderr);
    assert!(out.contains("bad.yaml:6:15"), "{out}");
    assert!(out.contains("did you mean `anthropic`"), "{out}");
    assert!(out.contains("not a valid JSON Schema"), "{out}");
    assert!(out.contains("needs `prompt:`"), "{out}");
}

/// A fake `claude` on PATH that answers with its arguments.
fn fake_claude(env: &Env) -> PathBuf {
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let p = bin.join("claude");
    std::fs::write(
        &p,
        "#!/bin/sh\n[ \"$1\" = -p ] || exit 3\nprintf 'cli says: %s|%s %s\\n' \"$2\" \"$3\" \"$4\"\n",
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn seed_workflows_with_claude_prompt_run_through_the_claude_cli() {
    let env = Env::new();
    let bin = fake_claude(&env);
    // The seed's format (examples/workflows/morning-brief.yaml, incident-report.yaml).
    env.workflow(
        "morning-brief",
        "name: morning-brief\ndescription: \"Check services, summarize alerts, send digest\"\nnotify_profile: info\nsteps:\n  - name: health-check\n    type: shell\n    command: \"echo all services up\"\n    on_failure: continue\n\n  - name: summarize\n    type: claude_prompt\n    command: \"Read the latest health check output and summarize the status of all services in 3 bullet points.\"\n    on_failure: continue\n\n  - name: send-digest\n    type: shell\n    command: \"echo Morning brief complete\"\n    on_failure: continue\n",
    );
    env.workflow(
        "incident-report",
        "name: incident-report\ndescription: \"Incident documentation generator\"\nnotify_profile: info\nsteps:\n  - name: collect-logs\n    type: shell\n    command: \"echo '=== Recent Logs ==='\"\n    timeout: 60\n    on_failure: continue\n\n  - name: generate-report\n    type: claude_prompt\n    command: \"Generate a structured incident report from the collected data. Format in markdown.\"\n    on_failure: continue\n",
    );
    for (name, step, prompt) in [
        ("morning-brief", "summarize", "Read the latest health check"),
        (
            "incident-report",
            "generate-report",
            "Generate a structured",
        ),
    ] {
        let ran: Ran = env
            .command(&["workflow", "run", name, "--json"])
            .env("PATH", path_with(&bin))
            .env_remove("JOB_MODEL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("LLM_PROVIDERS")
            .output()
            .expect("run")
            .into();
        ran.expect_code(0);
        let v = ran.json();
        let s = step_of(&v, step);
        assert_eq!(s["status"], "succeeded", "{name}: {s}");
        let text = s["outputs"]["text"].as_str().unwrap_or("");
        assert!(text.starts_with(&format!("cli says: {prompt}")), "{text}");
        assert!(text.ends_with("|--output-format text"), "{text}");
        assert_eq!(s["outputs"]["provider"], "claude-cli");
    }
}

#[test]
fn claude_cron_jobs_ask_the_job_provider() {
    let srv = serve();
    let env = Env::new();
    srv.script("/v1/messages", vec![anthropic_text(&["cron ", "answer"])]);
    cmd(
        &env,
        &srv,
        &[
            "cron", "add", "ask", "every 1h", "Say hi", "--type", "claude",
        ],
    )
    .output()
    .map(Ran::from)
    .expect("add")
    .expect_code(0);
    let ran: Ran = cmd(&env, &srv, &["cron", "run", "ask"])
        .env("JOB_MODEL", "anthropic")
        .output()
        .expect("run")
        .into();
    ran.expect_code(0);
    assert!(
        format!("{}{}", ran.stdout, ran.stderr).contains("cron answer"),
        "{ran:?}"
    );
    assert_eq!(srv.seen()[0].body["messages"][0]["content"], "Say hi");
}

#[test]
fn llm_cli_list_ask_and_set_default() {
    let srv = serve();
    let env = Env::new();
    let list = cmd(&env, &srv, &["llm", "list", "--json"])
        .output()
        .map(Ran::from)
        .expect("list");
    list.expect_code(0);
    let v = list.json();
    let names: Vec<&str> = v["providers"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["anthropic", "openai", "ollama", "claude-cli"]);
    assert!(!list.stdout.contains("sk-ant-test-secret-1234"));

    srv.script("/v1/messages", vec![anthropic_text(&["{\"n\": 4", "2,}"])]);
    let schema = env.write("schema.json", r#"{"type":"object","required":["n"]}"#);
    let ask: Ran = cmd(
        &env,
        &srv,
        &[
            "llm",
            "ask",
            "give n",
            "--provider",
            "anthropic",
            "--json-schema",
            &schema.display().to_string(),
        ],
    )
    .output()
    .expect("ask")
    .into();
    ask.expect_code(0);
    assert_eq!(ask.json(), json!({"n": 42}));

    cmd(&env, &srv, &["llm", "set-default", "openai"])
        .output()
        .map(Ran::from)
        .expect("set")
        .expect_code(0);
    assert!(read(&env.root.join("claw.yaml")).contains("default: openai"));
    let bad: Ran = cmd(&env, &srv, &["llm", "set-default", "opneai"])
        .output()
        .expect("set")
        .into();
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("did you mean `openai`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn model_output_reaching_a_shell_command_is_quoted() {
    let srv = serve();
    let env = Env::new();
    let marker = env.path("pwned");
    let evil = format!(
        "ok'; touch {} #$(touch {})",
        marker.display(),
        marker.display()
    );
    srv.script("/v1/messages", vec![anthropic_text(&[&evil])]);
    env.workflow(
        "q",
        "name: q\nsteps:\n  - name: ask\n    type: llm\n    provider: anthropic\n    prompt: hi\n  - name: use\n    command: echo reply ${{ steps.ask.outputs.text }}\n",
    );
    let ran = run(&env, &srv, "q");
    ran.expect_code(0);
    assert!(!marker.exists(), "model output ran as shell");
    let v = ran.json();
    let out = step_of(&v, "use")["stdout"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(out.contains("touch"), "{v}");

    let test: Ran = cmd(&env, &srv, &["llm", "test", "anthropic"])
        .output()
        .expect("test")
        .into();
    test.expect_code(0);
    assert!(
        test.stdout.starts_with("anthropic: ok in "),
        "{}",
        test.stdout
    );
    assert!(test.stdout.contains("default reply"), "{}", test.stdout);
}

// ---- tools ----

/// An Anthropic reply asking for tools: `(id, name, input)` each, the input streamed in two
/// `input_json_delta` pieces.
fn anthropic_tool_use(calls: &[(&str, &str, Value)]) -> Answer {
    let mut c = vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_t", "type": "message", "role": "assistant", "model": "claude-test-1", "content": [], "stop_reason": null, "usage": {"input_tokens": 20, "output_tokens": 1}}}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look."}}),
        ),
        sse(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ),
    ];
    for (i, (id, name, input)) in calls.iter().enumerate() {
        let text = input.to_string();
        let (a, b) = text.split_at(text.len() / 2);
        c.push(sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": i + 1, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        for piece in [a, b] {
            c.push(sse(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i + 1, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        c.push(sse(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i + 1}),
        ));
    }
    c.push(sse(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
    ));
    c.push(sse("message_stop", &json!({"type": "message_stop"})));
    Answer::Sse {
        chunks: c,
        gate: false,
    }
}

/// An OpenAI reply asking for tools, each call's arguments in fragments.
fn openai_tool_calls(calls: &[(&str, &str, Value)]) -> Answer {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut c = vec![chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    )];
    for (i, (id, name, input)) in calls.iter().enumerate() {
        c.push(chunk(
            json!({"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        let text = input.to_string();
        let (a, b) = text.split_at(text.len() / 2);
        for piece in [a, b] {
            c.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    c.push(chunk(json!({}), json!("tool_calls")));
    c.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}})
    ));
    c.push("data: [DONE]\n\n".to_owned());
    Answer::Sse {
        chunks: c,
        gate: false,
    }
}

/// Writes `root/skills/<name>/` with a shell script.
fn skill(env: &Env, name: &str, script: &str) {
    let dir = env.root.join("skills").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("skill.yaml"),
        format!("name: {name}\nversion: \"1.0.0\"\ndescription: Reports {name}\nauthor: tests\nscript: run.sh\n"),
    )
    .expect("manifest");
    std::fs::write(dir.join("run.sh"), script).expect("script");
}

/// The messages of the request number `i` the server saw.
fn messages(srv: &Server, i: usize) -> Vec<Value> {
    srv.seen()[i].body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn anthropic_tool_loop_runs_a_skill_and_a_workflow() {
    let srv = serve();
    let env = Env::new();
    let count = env.path("skill-ran");
    skill(
        &env,
        "disk-report",
        &format!(
            "#!/bin/sh\necho ran >> {}\necho \"sda: 41% used on $SKILL_HOST\"\n",
            count.display()
        ),
    );
    env.workflow(
        "restart",
        "name: restart\ndescription: Restarts a service\nparams:\n  service: {type: string, required: true}\noutputs:\n  said: ${{ steps.go.stdout }}\nsteps:\n  - name: go\n    command: echo restarted ${{ params.service }}\n",
    );
    srv.script(
        "/v1/messages",
        vec![
            anthropic_tool_use(&[
                ("toolu_1", "disk-report", json!({"host": "web1"})),
                ("toolu_2", "restart", json!({"service": "nginx"})),
            ]),
            anthropic_text(&["Disk is fine; nginx restarted."]),
        ],
    );
    one_step(
        &env,
        "t",
        "    provider: anthropic\n    prompt: check web1\n    max_turns: 3\n    tools:\n      - skill: disk-report\n      - workflow: restart\n",
    );
    let ran = run(&env, &srv, "t");
    ran.expect_code(0);
    let v = ran.json();
    let s = step_of(&v, "ask");
    assert_eq!(s["outputs"]["text"], "Disk is fine; nginx restarted.");
    let calls = s["outputs"]["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(calls.len(), 2, "{s}");
    assert_eq!(calls[0]["name"], "disk-report");
    assert_eq!(calls[0]["arguments"], json!({"host": "web1"}));
    assert!(
        calls[0]["result"]
            .as_str()
            .unwrap_or("")
            .contains("sda: 41% used on web1"),
        "{calls:?}"
    );
    assert_eq!(calls[1]["name"], "restart");
    assert_eq!(calls[1]["is_error"], false, "{calls:?}");
    assert!(
        calls[1]["result"]
            .as_str()
            .unwrap_or("")
            .contains("restarted nginx"),
        "{calls:?}"
    );
    assert_eq!(s["outputs"]["usage"]["input_tokens"], 31);
    assert_eq!(read(&count).lines().count(), 1);
    // The request offered the tools with their schemas; the second sent the results back.
    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    let tools = seen[0].body["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(tools[0]["name"], "disk-report");
    assert_eq!(tools[0]["description"], "Reports disk-report");
    assert_eq!(tools[1]["name"], "restart");
    assert_eq!(tools[1]["input_schema"]["required"], json!(["service"]));
    let m = messages(&srv, 1);
    assert_eq!(m.len(), 3);
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(m[1]["content"][1]["type"], "tool_use");
    assert_eq!(m[1]["content"][1]["input"], json!({"host": "web1"}));
    assert_eq!(m[2]["content"][0]["type"], "tool_result");
    assert_eq!(m[2]["content"][0]["tool_use_id"], "toolu_1");
    assert_eq!(m[2]["content"][1]["tool_use_id"], "toolu_2");
    // The child run exists, linked to this run; every call is audited.
    let runs = env.claw(&["run", "list", "--json"]).json();
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
    let audit = env
        .claw(&["audit", "search", "--action", "llm.tool_call", "--json"])
        .stdout;
    assert!(
        audit.contains("disk-report") && audit.contains("restart"),
        "{audit}"
    );
    let log = logs(&env.home);
    assert!(
        log.contains("> tool disk-report {\"host\":\"web1\"}"),
        "{log}"
    );
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    let shown = env.claw(&["run", "show", &id]);
    shown.expect_code(0);
    assert!(
        shown.stdout.contains("tool calls of ask")
            && shown
                .stdout
                .contains("1. disk-report {\"host\":\"web1\"} ok in "),
        "{}",
        shown.stdout
    );
}

#[test]
fn openai_tool_calls_reach_an_http_tool_and_policies_refuse_a_denied_call() {
    let srv = serve();
    let env = Env::new();
    srv.script("/uptime", vec![Answer::Plain("up 12 days".to_owned())]);
    env.claw(&["vault", "init"]).expect_code(0);
    let mut set = env
        .command(&["vault", "set", "UPTIME_TOKEN"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("vault set");
    set.stdin
        .take()
        .expect("stdin")
        .write_all(b"uptime-secret-4242")
        .expect("write");
    assert!(set.wait().expect("wait").success());
    let marker = env.path("never");
    skill(
        &env,
        "wipe",
        &format!("#!/bin/sh\ntouch {}\n", marker.display()),
    );
    env.write(
        "root/policies.yaml",
        "rules:\n  - name: no-wipe\n    action: deny\n    command: 'skill wipe'\n    reason: never from a model\n",
    );
    srv.script(
        "/v1/chat/completions",
        vec![
            openai_tool_calls(&[
                ("call_a", "uptime", json!({"host": "db1"})),
                ("call_b", "wipe", json!({})),
            ]),
            openai_text(&["db1 is up 12 days."]),
        ],
    );
    one_step(
        &env,
        "o",
        &format!(
            "    provider: openai\n    model: gpt-test\n    prompt: uptime of db1\n    tools:\n      - name: uptime\n        description: Uptime of a host\n        http: {{url: \"{}/uptime\", method: GET, headers: {{X-Token: \"${{{{ secrets.UPTIME_TOKEN }}}}\"}}}}\n      - skill: wipe\n",
            srv.url()
        ),
    );
    let ran = run(&env, &srv, "o");
    ran.expect_code(0);
    let v = ran.json();
    let s = step_of(&v, "ask");
    assert_eq!(s["outputs"]["text"], "db1 is up 12 days.");
    assert!(!marker.exists(), "a denied call ran");
    let calls = s["outputs"]["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(calls[0]["result"], "up 12 days");
    assert_eq!(calls[1]["is_error"], true);
    assert!(
        calls[1]["result"]
            .as_str()
            .unwrap_or("")
            .contains("no-wipe"),
        "{calls:?}"
    );
    let seen = srv.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/uptime?host=db1",
            "/v1/chat/completions"
        ]
    );
    assert!(
        seen[1].head.contains("x-token: uptime-secret-4242"),
        "{}",
        seen[1].head
    );
    assert!(!logs(&env.home).contains("uptime-secret-4242"));
    let b = &seen[0].body;
    assert_eq!(b["tools"][0]["type"], "function");
    assert_eq!(b["tools"][0]["function"]["name"], "uptime");
    let m = messages(&srv, 2);
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(m[1]["tool_calls"][0]["id"], "call_a");
    assert_eq!(
        m[1]["tool_calls"][0]["function"]["arguments"],
        "{\"host\":\"db1\"}"
    );
    assert_eq!(m[2]["role"], "tool");
    assert_eq!(m[2]["tool_call_id"], "call_a");
    assert_eq!(m[2]["content"], "up 12 days");
    assert_eq!(m[3]["tool_call_id"], "call_b");
    let audit = env
        .claw(&["audit", "search", "--action", "policy.denied", "--json"])
        .stdout;
    assert!(audit.contains("llm tool"), "{audit}");
}

#[test]
fn an_always_tool_waits_for_approval_and_goes_on_after_run_approve() {
    let srv = serve();
    let env = Env::new();
    let count = env.path("restarts");
    skill(
        &env,
        "restart",
        &format!("#!/bin/sh\necho r >> {}\necho restarted\n", count.display()),
    );
    srv.script(
        "/v1/messages",
        vec![
            anthropic_tool_use(&[("toolu_1", "restart", json!({"service": "nginx"}))]),
            anthropic_tool_use(&[("toolu_2", "restart", json!({"service": "db"}))]),
            anthropic_text(&["done"]),
        ],
    );
    one_step(
        &env,
        "a",
        "    provider: anthropic\n    prompt: restart things\n    tools:\n      - skill: restart\n        approve: always\n",
    );
    let child = cmd(&env, &srv, &["workflow", "run", "a", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // First call: waits; the step shows as waiting; the skill has not run.
    let id = wait_for(Duration::from_secs(60), || {
        let id = env.last_run()?;
        (env.show(&id)["status"] == "waiting").then_some(id)
    })
    .expect("the run never waited");
    assert!(!count.exists());
    let shown = env.show(&id);
    assert_eq!(shown["waiting_for"][0]["step"], "ask#tool-1.0", "{shown}");
    assert_eq!(step_of(&shown, "ask")["status"], "waiting");
    assert!(
        step_of(&shown, "ask")["message"]
            .as_str()
            .unwrap_or("")
            .contains("restart"),
        "{shown}"
    );
    env.claw(&["run", "approve", &id, "--no-wait"])
        .expect_code(0);
    // Second call: waits again, under its own request; rejected, the model is told.
    wait_for(Duration::from_secs(60), || {
        let shown = env.show(&id);
        let message = step_of(&shown, "ask")["message"].as_str()?.to_owned();
        (shown["status"] == "waiting" && message.contains("db")).then_some(())
    })
    .expect("the second call never waited");
    env.claw(&[
        "run",
        "reject",
        &id,
        "ask#tool-2.0",
        "--reason",
        "not the db",
        "--no-wait",
    ])
    .expect_code(0);
    let out = child.wait_with_output().expect("wait");
    let ran = Ran::from(out);
    ran.expect_code(0);
    let v = ran.json();
    let calls = step_of(&v, "ask")["outputs"]["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(read(&count).lines().count(), 1);
    assert_eq!(calls[0]["is_error"], false);
    assert_eq!(calls[1]["is_error"], true);
    assert!(
        calls[1]["result"]
            .as_str()
            .unwrap_or("")
            .contains("not the db"),
        "{calls:?}"
    );
}

#[test]
fn a_tool_loop_killed_mid_way_resumes_without_running_finished_tools_again() {
    let srv = serve();
    let env = Env::new();
    let count = env.path("ran");
    skill(
        &env,
        "probe",
        &format!(
            "#!/bin/sh\necho x >> {}\necho probed $SKILL_N\n",
            count.display()
        ),
    );
    srv.script(
        "/v1/messages",
        vec![
            anthropic_tool_use(&[
                ("toolu_1", "probe", json!({"n": 1})),
                ("toolu_2", "probe", json!({"n": 2})),
            ]),
            // The process is killed while it waits for the second reply.
            Answer::Hang,
            anthropic_text(&["all probed"]),
        ],
    );
    one_step(
        &env,
        "k",
        "    provider: anthropic\n    prompt: probe\n    timeout: 120s\n    tools:\n      - skill: probe\n",
    );
    let mut child = cmd(&env, &srv, &["workflow", "run", "k", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(Duration::from_secs(60), || {
        (srv.seen().len() >= 2).then_some(())
    })
    .expect("the second request never came");
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    assert_eq!(read(&count).lines().count(), 2);
    let id = env.last_run().expect("a run");
    let resumed: Ran = cmd(&env, &srv, &["run", "resume", &id])
        .output()
        .expect("resume")
        .into();
    resumed.expect_code(0);
    let shown = env.show(&id);
    assert_eq!(shown["status"], "succeeded", "{shown}");
    let s = step_of(&shown, "ask");
    assert_eq!(s["outputs"]["text"], "all probed");
    // Neither finished call ran again; the model was not asked the first question again.
    assert_eq!(read(&count).lines().count(), 2);
    let seen = srv.seen();
    assert_eq!(seen.len(), 3);
    let m = messages(&srv, 2);
    assert_eq!(m.len(), 3, "{m:?}");
    for (i, n) in [(0, "probed 1"), (1, "probed 2")] {
        let got = m[2]["content"][i]["content"].as_str().unwrap_or("");
        assert!(got.contains(n), "{m:?}");
    }
    assert!(logs(&env.home).contains("replayed from the journal"));
}

#[test]
fn max_turns_bounds_the_loop() {
    let srv = serve();
    let env = Env::new();
    skill(&env, "again", "#!/bin/sh\necho more\n");
    srv.script(
        "/v1/messages",
        vec![
            anthropic_tool_use(&[("toolu_1", "again", json!({}))]),
            anthropic_tool_use(&[("toolu_2", "again", json!({}))]),
            anthropic_tool_use(&[("toolu_3", "again", json!({}))]),
        ],
    );
    one_step(
        &env,
        "m",
        "    provider: anthropic\n    prompt: loop\n    max_turns: 2\n    tools:\n      - skill: again\n",
    );
    let ran = run(&env, &srv, "m");
    assert_ne!(ran.code, 0);
    assert_eq!(srv.seen().len(), 2);
    assert!(
        format!("{}{}", ran.stdout, ran.stderr).contains("max_turns (2)"),
        "{}",
        ran.stdout
    );
}

#[test]
fn a_token_budget_stops_the_run() {
    let srv = serve();
    let env = Env::new();
    // Each reply costs 11 + 7 = 18 tokens: the second step goes over 30.
    env.write("root/claw.yaml", "llm:\n  max_tokens_per_run: 30\n");
    env.workflow(
        "b",
        "name: b\nsteps:\n  - name: one\n    type: llm\n    provider: anthropic\n    prompt: a\n  - name: two\n    needs: [one]\n    type: llm\n    provider: anthropic\n    prompt: b\n  - name: three\n    needs: [two]\n    type: llm\n    provider: anthropic\n    prompt: c\n",
    );
    let ran = run(&env, &srv, "b");
    assert_ne!(ran.code, 0);
    let v = ran.json();
    assert_eq!(step_of(&v, "one")["status"], "succeeded");
    assert_eq!(step_of(&v, "two")["status"], "failed");
    assert!(
        format!("{v}").contains("token budget exceeded: this run's llm steps have used 36 tokens of max_tokens_per_run 30"),
        "{v}"
    );
    // The second request asked for no more than what was left.
    assert_eq!(srv.seen()[1].body["max_tokens"], 12);
    assert_eq!(srv.seen().len(), 2);
}

#[test]
fn validate_refuses_an_unknown_model_or_provider_with_its_position() {
    let env = Env::new();
    env.write(
        "root/claw.yaml",
        "llm:\n  providers:\n    local: {kind: openai, base_url: \"http://127.0.0.1:9/v1\", model: qwen2.5, models: [qwen2.5, llama3.1]}\n",
    );
    env.workflow(
        "v",
        "name: v\nsteps:\n  - name: a\n    type: llm\n    provider: local\n    model: qwen25\n    prompt: hi\n  - name: b\n    type: llm\n    provider: elsewhere\n    prompt: hi\n",
    );
    let ran = env.claw(&["workflow", "validate", "v"]);
    assert_ne!(ran.code, 0);
    let out = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        out.contains("line 6, column 12: step `a`: unknown model `qwen25` for provider `local`"),
        "{out}"
    );
    assert!(out.contains("did you mean `qwen2.5`"), "{out}");
    assert!(
        out.contains("line 10, column 15: step `b`: unknown LLM provider `elsewhere`"),
        "{out}"
    );
    env.workflow(
        "ok",
        "name: ok\nsteps:\n  - name: a\n    type: llm\n    provider: local\n    model: llama3.1\n    prompt: hi\n",
    );
    env.claw(&["workflow", "validate", "ok"]).expect_code(0);
    // A workflow tool is a child run: one that would run the step's own workflow, or that does
    // not exist, is refused before any run.
    env.workflow(
        "selfish",
        "name: selfish\nsteps:\n  - name: a\n    type: llm\n    prompt: hi\n    tools:\n      - workflow: selfish\n      - workflow: nowhere\n",
    );
    let ran = env.claw(&["workflow", "validate", "selfish"]);
    assert_ne!(ran.code, 0);
    let out = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        out.contains("workflow recursion: selfish → selfish"),
        "{out}"
    );
    assert!(out.contains("child workflow `nowhere` not found"), "{out}");
}

// ---- Telegram chat mode ----

impl Server {
    pub(crate) fn say(&self, chat: i64, text: &str) {
        let mut u = self.shared.updates.lock().expect("lock");
        let id = 500 + i64::try_from(u.len()).expect("len");
        u.push(json!({"update_id": id, "message": {
            "message_id": id, "chat": {"id": chat, "type": "private"},
            "from": {"id": chat, "is_bot": false, "first_name": "tester"},
            "date": 1_700_000_000, "text": text}}));
    }
    pub(crate) fn sent_to(&self, chat: &str) -> Vec<String> {
        self.shared
            .sent
            .lock()
            .expect("lock")
            .iter()
            .filter(|(c, _)| c == chat)
            .map(|(_, t)| t.clone())
            .collect()
    }
    /// Waits for the `n`th message to `chat` and returns it.
    pub(crate) fn reply(&self, chat: &str, n: usize) -> String {
        wait_for(Duration::from_secs(60), || {
            self.sent_to(chat).get(n - 1).cloned()
        })
        .unwrap_or_else(|| panic!("no message {n} to {chat}: {:?}", self.sent_to(chat)))
    }
}

#[test]
fn telegram_chat_mode_talks_with_history_model_reset_and_cancel() {
    let srv = serve();
    let env = Env::new();
    srv.script(
        "/v1/messages",
        vec![
            anthropic_text(&["Hi! ", "(1)"]),
            anthropic_text(&["Still here (2)"]),
            anthropic_text(&["Fresh start (4)"]),
            Answer::Hang,
        ],
    );
    srv.script("/v1/chat/completions", vec![openai_text(&["From gpt (3)"])]);
    let mut daemon = cmd(&env, &srv, &["serve", "--no-http"])
        .env("TELEGRAM_BOT_TOKEN", "123456:chat-mode-token")
        .env("TELEGRAM_API_URL", srv.url())
        .env("ALLOWED_CHAT_IDS", "100")
        .env("CHAT_MODEL", "anthropic")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Reaped)
        .expect("serve");
    let llm_requests = |srv: &Server| -> Vec<Seen> {
        srv.seen()
            .into_iter()
            .filter(|s| s.path.starts_with("/v1/"))
            .collect()
    };
    srv.say(100, "hello there");
    assert_eq!(srv.reply("100", 1), "Hi! (1)");
    srv.say(100, "and again");
    assert_eq!(srv.reply("100", 2), "Still here (2)");
    let second = llm_requests(&srv)[1].body["messages"].clone();
    assert_eq!(
        second,
        json!([
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi! (1)"}]},
            {"role": "user", "content": "and again"},
        ])
    );
    srv.say(100, "/history");
    let history = srv.reply("100", 3);
    srv.say(100, "/status");
    let status = srv.reply("100", 4);
    assert!(
        status.ends_with("chat mode: chat, model: auto, 4 messages in the history"),
        "{status}"
    );
    assert!(
        history.starts_with("You: hello there\nAssistant: Hi! (1)\nYou: and again"),
        "{history}"
    );
    srv.say(100, "/model gpt");
    assert!(srv.reply("100", 5).starts_with("model set to openai"));
    srv.say(100, "third");
    assert_eq!(srv.reply("100", 6), "From gpt (3)");
    assert_eq!(llm_requests(&srv)[2].path, "/v1/chat/completions");
    assert_eq!(
        llm_requests(&srv)[2].body["messages"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    srv.say(100, "/model auto");
    srv.reply("100", 7);
    srv.say(100, "/reset");
    assert_eq!(srv.reply("100", 8), "Conversation history cleared.");
    srv.say(100, "fresh");
    assert_eq!(srv.reply("100", 9), "Fresh start (4)");
    assert_eq!(
        llm_requests(&srv)[3].body["messages"],
        json!([{"role": "user", "content": "fresh"}])
    );
    // A reply that hangs is really cancelled: /cancel answers, the reply never comes.
    srv.say(100, "slow question");
    wait_for(Duration::from_secs(30), || {
        (llm_requests(&srv).len() >= 5).then_some(())
    })
    .expect("the slow question never reached the provider");
    srv.say(100, "/cancel");
    assert_eq!(srv.reply("100", 10), "Cancelled.");
    // Nothing else is said about it (the history did not take it either).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(srv.sent_to("100").len(), 10, "{:?}", srv.sent_to("100"));
    srv.say(100, "/history");
    let h = srv.reply("100", 11);
    assert!(!h.contains("slow question"), "{h}");
    // Another chat is not allowed: no reply, no LLM request.
    srv.say(555, "hello?");
    std::thread::sleep(Duration::from_secs(1));
    assert!(srv.sent_to("555").is_empty());
    assert_eq!(llm_requests(&srv).len(), 5);
    let _ = daemon.kill();
    let _ = daemon.wait();
}
