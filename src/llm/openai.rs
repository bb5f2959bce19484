//! OpenAI Chat Completions, streamed: `POST {base}/chat/completions` (the base URL ends in `/v1`,
//! as `OPENAI_BASE_URL` does for the official SDKs) with `stream: true` and
//! `stream_options.include_usage`. Each event's data is a chunk: `choices[0].delta` holds text
//! (`content`) or pieces of tool calls (`tool_calls[].index`, `id`, `function.name`,
//! `function.arguments` in fragments), `finish_reason` ends the choice, a last chunk holds
//! `usage`; `data: [DONE]` ends the stream. A stream that ends before `[DONE]` is cut. Any
//! compatible server works the same way (Ollama's `/v1`, vLLM, llama.cpp, LM Studio).

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{LlmError, Message, ProviderConfig, ProviderKind, Reply, Request, Sink, ToolCall};

/// The most tool calls one reply may hold.
const MAX_CALLS: usize = 64;

/// The request body.
pub fn body(p: &ProviderConfig, req: &Request) -> Value {
    let mut messages = Vec::new();
    if let Some(s) = &req.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    for m in &req.messages {
        match m {
            Message::User(t) => messages.push(json!({"role": "user", "content": t})),
            Message::Assistant { text, calls } => {
                let mut a = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    a["tool_calls"] = calls
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.name, "arguments": c.input.to_string()},
                            })
                        })
                        .collect();
                }
                messages.push(a);
            }
            Message::ToolResults(results) => {
                for r in results {
                    messages
                        .push(json!({"role": "tool", "tool_call_id": r.id, "content": r.content}));
                }
            }
        }
    }
    let mut b = json!({
        "model": req.model.as_deref().unwrap_or(&p.model),
        "messages": messages,
        "max_tokens": req.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(t) = req.temperature {
        b["temperature"] = json!(t);
    }
    if !req.tools.is_empty() {
        b["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.schema},
                })
            })
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
    let mut r = client
        .post(format!("{}/chat/completions", p.base_url))
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(body(p, req).to_string());
    match (&p.api_key, p.kind) {
        (Some(k), _) => r = r.bearer_auth(k),
        // A local server needs no key; api.openai.com does.
        (None, ProviderKind::OpenAi) if p.base_url.contains("api.openai.com") => {
            return Err(LlmError::Unavailable(format!(
                "{}: no API key ({} is not set)",
                p.name,
                p.key_name.as_deref().unwrap_or("OPENAI_API_KEY")
            )));
        }
        (None, _) => {}
    }
    let resp = r.send().await.map_err(|e| super::network(&e))?;
    if !resp.status().is_success() {
        return Err(super::status_error(resp).await);
    }
    let mut events = resp.bytes_stream().eventsource();
    let mut reply = Reply::default();
    // Tool calls by index: the call and its arguments so far.
    let mut calls: Vec<(ToolCall, String)> = Vec::new();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| LlmError::Stream(format!("the stream broke off: {e}")))?;
        let data = ev.data.trim();
        if data == "[DONE]" {
            for (mut call, args) in calls {
                if !args.trim().is_empty() {
                    call.input = serde_json::from_str(&args).map_err(|e| {
                        LlmError::Stream(format!(
                            "the arguments of tool call `{}` are not JSON: {e}",
                            call.name
                        ))
                    })?;
                }
                reply.calls.push(call);
            }
            if reply.model.is_empty() {
                reply.model.clone_from(&p.model);
            }
            return Ok(reply);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            LlmError::Stream(format!(
                "a malformed event ({e}): {}",
                data.chars().take(120).collect::<String>()
            ))
        })?;
        if let Some(err) = chunk.get("error") {
            let message = err["message"].as_str().unwrap_or("error").to_owned();
            let status = err["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            return Err(LlmError::Status {
                status,
                message,
                retry_after: None,
            });
        }
        if let Some(m) = chunk["model"].as_str()
            && reply.model.is_empty()
        {
            m.clone_into(&mut reply.model);
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            reply.usage.input_tokens = u["prompt_tokens"].as_u64().unwrap_or(0);
            reply.usage.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0);
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let d = &choice["delta"];
        if let Some(t) = d["content"].as_str()
            && !t.is_empty()
        {
            reply.text.push_str(t);
            sink.text(t);
        }
        if let Some(tc) = d["tool_calls"].as_array() {
            for piece in tc {
                let i = piece["index"]
                    .as_u64()
                    .and_then(|i| usize::try_from(i).ok())
                    .unwrap_or(calls.len());
                if i > MAX_CALLS {
                    return Err(LlmError::Stream(format!(
                        "tool call index {i} is beyond {MAX_CALLS}"
                    )));
                }
                while calls.len() <= i {
                    calls.push((
                        ToolCall {
                            id: String::new(),
                            name: String::new(),
                            input: json!({}),
                        },
                        String::new(),
                    ));
                }
                let (call, args) = &mut calls[i];
                if let Some(id) = piece["id"].as_str() {
                    id.clone_into(&mut call.id);
                }
                if let Some(n) = piece["function"]["name"].as_str() {
                    call.name.push_str(n);
                }
                if let Some(a) = piece["function"]["arguments"].as_str() {
                    args.push_str(a);
                }
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            f.clone_into(&mut reply.stop_reason);
        }
    }
    Err(LlmError::Stream(
        "the stream ended before `[DONE]` (cut in the middle)".to_owned(),
    ))
}
