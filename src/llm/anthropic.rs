//! Anthropic's Messages API, streamed: `POST {base}/v1/messages` with `stream: true`, the key in
//! `x-api-key`, `anthropic-version: 2023-06-01`. The reply is a server-sent event stream:
//! `message_start` (model, input tokens), `content_block_start` (a `text` or `tool_use` block),
//! `content_block_delta` (`text_delta`, `input_json_delta`), `content_block_stop`,
//! `message_delta` (stop reason, output tokens), `message_stop`, `ping`, and `error` (an
//! overloaded server says so mid-stream). A stream that ends before `message_stop` is cut.

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{LlmError, Message, ProviderConfig, Reply, Request, Sink, ToolCall};

const VERSION: &str = "2023-06-01";

/// The request body.
pub fn body(p: &ProviderConfig, req: &Request) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| match m {
            Message::User(t) => json!({"role": "user", "content": t}),
            Message::Assistant { text, calls } => {
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
                for c in calls {
                    content.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.input}),
                    );
                }
                json!({"role": "assistant", "content": content})
            }
            Message::ToolResults(results) => json!({
                "role": "user",
                "content": results.iter().map(|r| json!({
                    "type": "tool_result",
                    "tool_use_id": r.id,
                    "content": r.content,
                    "is_error": r.is_error,
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let mut b = json!({
        "model": req.model.as_deref().unwrap_or(&p.model),
        "max_tokens": req.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if let Some(s) = &req.system {
        b["system"] = json!(s);
    }
    if let Some(t) = req.temperature {
        b["temperature"] = json!(t);
    }
    if !req.tools.is_empty() {
        b["tools"] = req
            .tools
            .iter()
            .map(
                |t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}),
            )
            .collect();
    }
    b
}

/// One exchange.
pub async fn complete(
    client: &reqwest::Client,
    p: &ProviderConfig,
    req: &Request,
    sink: &mut dyn Sink,
) -> Result<Reply, LlmError> {
    let Some(key) = p.api_key.as_deref() else {
        return Err(LlmError::Unavailable(format!(
            "{}: no API key ({} is not set)",
            p.name,
            p.key_name.as_deref().unwrap_or("ANTHROPIC_API_KEY")
        )));
    };
    let resp = client
        .post(format!("{}/v1/messages", p.base_url))
        .header("x-api-key", key)
        .header("anthropic-version", VERSION)
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(body(p, req).to_string())
        .send()
        .await
        .map_err(|e| super::network(&e))?;
    if !resp.status().is_success() {
        return Err(super::status_error(resp).await);
    }
    let mut events = resp.bytes_stream().eventsource();
    let mut reply = Reply::default();
    // The tool_use block being streamed: its call and its JSON so far.
    let mut tool: Option<(ToolCall, String)> = None;
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| LlmError::Stream(format!("the stream broke off: {e}")))?;
        if ev.event == "ping" {
            continue;
        }
        let data: Value = serde_json::from_str(&ev.data).map_err(|e| {
            LlmError::Stream(format!(
                "a malformed `{}` event ({e}): {}",
                ev.event,
                ev.data.chars().take(120).collect::<String>()
            ))
        })?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(&ev.event);
        match kind {
            "message_start" => {
                let m = &data["message"];
                reply.model = m["model"].as_str().unwrap_or_default().to_owned();
                reply.usage.input_tokens = m["usage"]["input_tokens"].as_u64().unwrap_or(0);
                reply.usage.output_tokens = m["usage"]["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let b = &data["content_block"];
                if b["type"] == "tool_use" {
                    tool = Some((
                        ToolCall {
                            id: b["id"].as_str().unwrap_or_default().to_owned(),
                            name: b["name"].as_str().unwrap_or_default().to_owned(),
                            input: json!({}),
                        },
                        String::new(),
                    ));
                } else if let Some(t) = b["text"].as_str()
                    && !t.is_empty()
                {
                    reply.text.push_str(t);
                    sink.text(t);
                }
            }
            "content_block_delta" => {
                let d = &data["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        let t = d["text"].as_str().unwrap_or_default();
                        reply.text.push_str(t);
                        sink.text(t);
                    }
                    Some("input_json_delta") => {
                        if let Some((_, buf)) = tool.as_mut() {
                            buf.push_str(d["partial_json"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some((mut call, buf)) = tool.take() {
                    if !buf.trim().is_empty() {
                        call.input = serde_json::from_str(&buf).map_err(|e| {
                            LlmError::Stream(format!(
                                "the arguments of tool call `{}` are not JSON: {e}",
                                call.name
                            ))
                        })?;
                    }
                    reply.calls.push(call);
                }
            }
            "message_delta" => {
                if let Some(r) = data["delta"]["stop_reason"].as_str() {
                    r.clone_into(&mut reply.stop_reason);
                }
                if let Some(n) = data["usage"]["output_tokens"].as_u64() {
                    reply.usage.output_tokens = n;
                }
                if let Some(n) = data["usage"]["input_tokens"].as_u64() {
                    reply.usage.input_tokens = n;
                }
            }
            "message_stop" => return Ok(reply),
            "error" => {
                let kind = data["error"]["type"].as_str().unwrap_or("error");
                let message = data["error"]["message"].as_str().unwrap_or(kind).to_owned();
                // Mid-stream errors carry no status; name the one the same error has as a response.
                let status = match kind {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    "api_error" => 500,
                    "invalid_request_error" => 400,
                    "authentication_error" => 401,
                    "permission_error" => 403,
                    _ => 500,
                };
                return Err(LlmError::Status {
                    status,
                    message,
                    retry_after: None,
                });
            }
            _ => {}
        }
    }
    Err(LlmError::Stream(
        "the stream ended before `message_stop` (cut in the middle)".to_owned(),
    ))
}
