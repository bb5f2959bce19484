use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn which_errors_fall_back() {
    let status = |status| LlmError::Status {
        status,
        message: String::new(),
        retry_after: None,
    };
    for s in [429, 500, 502, 503, 529] {
        assert!(status(s).falls_back(), "{s}");
    }
    for s in [400, 401, 403, 404, 422] {
        assert!(!status(s).falls_back(), "{s}");
    }
    assert!(LlmError::Timeout(Duration::from_secs(1)).falls_back());
    assert!(LlmError::Stream("cut".into()).falls_back());
    assert!(!LlmError::Cancelled.falls_back());
}

#[test]
fn request_bodies_in_each_wire_format() {
    let c = Config::from_settings(&[("ANTHROPIC_API_KEY", "k")]);
    let mut req = Request::prompt("hi");
    req.system = Some("be brief".into());
    req.tools = vec![ToolDef {
        name: "disk".into(),
        description: "free space".into(),
        schema: json!({"type": "object"}),
    }];
    req.messages.push(Message::Assistant {
        text: String::new(),
        calls: vec![ToolCall {
            id: "t1".into(),
            name: "disk".into(),
            input: json!({"path": "/"}),
        }],
    });
    req.messages.push(Message::ToolResults(vec![ToolResult {
        id: "t1".into(),
        content: "12G".into(),
        is_error: false,
    }]));
    let a = anthropic::body(&c.provider("anthropic").expect("known"), &req);
    assert_eq!(a["system"], "be brief");
    assert_eq!(a["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(a["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(a["messages"][2]["content"][0]["tool_use_id"], "t1");
    let o = openai::body(&c.provider("openai").expect("known"), &req);
    assert_eq!(o["messages"][0]["role"], "system");
    assert_eq!(o["tools"][0]["function"]["name"], "disk");
    assert_eq!(
        o["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"path\":\"/\"}"
    );
    assert_eq!(o["messages"][3]["role"], "tool");
    assert_eq!(o["stream_options"]["include_usage"], true);
}

/// Serves `body` as a 200 event stream to one request.
fn one_shot(body: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = Vec::new();
            let mut b = [0u8; 4096];
            while let Ok(n) = conn.read(&mut b) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&b[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text[..i]
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break;
                    }
                }
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}"
            );
        }
    });
    format!("http://{addr}")
}

#[derive(Default)]
struct Keep(String);

impl Sink for Keep {
    fn text(&mut self, delta: &str) {
        self.0.push_str(delta);
    }
    fn note(&mut self, _: &str) {}
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn anthropic_tool_use_blocks_are_parsed() {
    let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let body = [
        ev("message_start", json!({"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 20, "output_tokens": 1}}})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "disk", "input": {}}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"pa"}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "th\": \"/\"}"}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}})),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    let url = one_shot(body);
    let c = Config::from_settings(&[("ANTHROPIC_API_KEY", "k"), ("ANTHROPIC_BASE_URL", &url)]);
    let p = c.provider("anthropic").expect("known");
    let client = client().expect("client");
    let mut sink = Keep::default();
    let reply = block_on(anthropic::complete(
        &client,
        &p,
        &Request::prompt("df"),
        &mut sink,
    ))
    .expect("reply");
    assert_eq!(sink.0, "Checking.");
    assert_eq!(reply.stop_reason, "tool_use");
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 20,
            output_tokens: 30
        }
    );
    assert_eq!(
        reply.calls,
        vec![ToolCall {
            id: "toolu_1".into(),
            name: "disk".into(),
            input: json!({"path": "/"}),
        }]
    );
}

#[test]
fn openai_tool_call_fragments_are_joined() {
    let chunk = |v: serde_json::Value| format!("data: {v}\n\n");
    let body = [
        chunk(json!({"model": "gpt-x", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "disk", "arguments": ""}}]}, "finish_reason": null}]})),
        chunk(json!({"model": "gpt-x", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\""}}]}, "finish_reason": null}]})),
        chunk(json!({"model": "gpt-x", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": \"/var\"}"}}]}, "finish_reason": null}]})),
        chunk(json!({"model": "gpt-x", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})),
        chunk(json!({"model": "gpt-x", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}})),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let url = one_shot(body);
    let c = Config::from_settings(&[("OPENAI_BASE_URL", &url)]);
    let p = c.provider("openai").expect("known");
    let reply = block_on(openai::complete(
        &client().expect("client"),
        &p,
        &Request::prompt("df"),
        &mut Keep::default(),
    ))
    .expect("reply");
    assert_eq!(reply.stop_reason, "tool_calls");
    assert_eq!(reply.model, "gpt-x");
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 9,
            output_tokens: 4
        }
    );
    assert_eq!(reply.calls.len(), 1);
    assert_eq!(reply.calls[0].id, "call_1");
    assert_eq!(reply.calls[0].input, json!({"path": "/var"}));
}
