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
