//! Inbound messages: one channel-neutral type ([`Inbound`]) that every chat front end turns its
//! updates into, and Telegram's side of it (Bot API `getUpdates` long polling).

use std::time::Duration;

use serde_json::Value;

/// The longest chat text handled; longer text is cut here (a 1 MB message is data, not a
/// reason to hold a megabyte per chat).
pub const MAX_TEXT: usize = 4096;

/// One message from a chat, whatever the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// `telegram`, …
    pub channel: String,
    /// Where it was written (a Telegram chat id); replies go there.
    pub chat: String,
    /// Who wrote it (a Telegram user id).
    pub user: String,
    /// Their display name (username or first name), for the admin.
    pub name: String,
    /// The text, at most [`MAX_TEXT`] characters.
    pub text: String,
    /// The channel's id of the message, to reply to it.
    pub reply_to: Option<String>,
}

impl Inbound {
    /// `telegram:<user>`, as approvers are written.
    pub fn identity(&self) -> String {
        format!("{}:{}", self.channel, self.user)
    }
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The text message an update carries (`message` or `edited_message`); `None` for anything
/// else, or when a field it needs is missing (such an update is skipped, not an error).
pub fn telegram_update(update: &Value) -> Option<Inbound> {
    let m = update
        .get("message")
        .or_else(|| update.get("edited_message"))?;
    let chat = id_text(m.get("chat")?.get("id")?)?;
    let text = m.get("text")?.as_str()?;
    let from = m.get("from");
    let user = from
        .and_then(|f| f.get("id"))
        .and_then(id_text)
        .unwrap_or_else(|| chat.clone());
    let name = from
        .and_then(|f| f.get("username").or_else(|| f.get("first_name")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(64)
        .collect();
    Some(Inbound {
        channel: "telegram".to_owned(),
        chat,
        user,
        name,
        text: text.chars().take(MAX_TEXT).collect(),
        reply_to: m.get("message_id").and_then(id_text),
    })
}

/// A button pressed under a message (Telegram's `callback_query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub channel: String,
    /// The query's id (answered with `answerCallbackQuery`).
    pub id: String,
    /// The chat of the message the button is under.
    pub chat: String,
    /// That message's id.
    pub message_id: Option<String>,
    /// Who pressed it.
    pub user: String,
    pub name: String,
    /// The button's callback data.
    pub data: String,
}

impl Callback {
    /// `telegram:<user>`, as approvers are written.
    pub fn identity(&self) -> String {
        format!("{}:{}", self.channel, self.user)
    }

    /// A gate button: (approve?, the outbox id of the announcement it is under).
    pub fn gate_button(&self) -> Option<(bool, i64)> {
        use super::channels::{APPROVE_BUTTON, REJECT_BUTTON};
        let (approve, id) = if let Some(id) = self.data.strip_prefix(APPROVE_BUTTON) {
            (true, id)
        } else {
            (false, self.data.strip_prefix(REJECT_BUTTON)?)
        };
        Some((approve, id.parse().ok()?))
    }
}

/// The button press an update carries; `None` for anything else, or when a field it needs is
/// missing (the query's id, who pressed, the message's chat).
pub fn telegram_callback(update: &Value) -> Option<Callback> {
    let q = update.get("callback_query")?;
    let id = id_text(q.get("id")?)?;
    let from = q.get("from")?;
    let user = id_text(from.get("id")?)?;
    let m = q.get("message")?;
    let chat = id_text(m.get("chat")?.get("id")?)?;
    let name = from
        .get("username")
        .or_else(|| from.get("first_name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(64)
        .collect();
    Some(Callback {
        channel: "telegram".to_owned(),
        id,
        chat,
        message_id: m.get("message_id").and_then(id_text),
        user,
        name,
        data: q
            .get("data")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
    })
}

/// `answerCallbackQuery`: the little notice (or, with `alert`, the dialog) the presser sees.
pub async fn telegram_answer_callback(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    id: &str,
    text: &str,
    alert: bool,
) -> Result<(), String> {
    let text: String = text.chars().take(200).collect();
    let body = serde_json::json!({"callback_query_id": id, "text": text, "show_alert": alert});
    let resp = client
        .post(format!("{api}/bot{token}/answerCallbackQuery"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("answerCallbackQuery: {}", e.without_url()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    let d = v
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("no description");
    Err(format!("answerCallbackQuery: HTTP {status}: {d}"))
}

/// One long poll: the updates after `offset` (`None`: whatever Telegram kept), waiting up to
/// `wait` for one.
pub async fn telegram_updates(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    offset: Option<i64>,
    wait: Duration,
) -> Result<Vec<Value>, String> {
    let mut body = serde_json::json!({
        "timeout": wait.as_secs(),
        "allowed_updates": ["message", "edited_message", "callback_query"],
    });
    if let Some(o) = offset {
        body["offset"] = o.into();
    }
    let resp = client
        .post(format!("{api}/bot{token}/getUpdates"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .timeout(wait + Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| format!("getUpdates: {}", e.without_url()))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("getUpdates: HTTP {status}: {}", e.without_url()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("getUpdates: HTTP {status}: not JSON: {e}"))?;
    if v.get("ok") != Some(&Value::Bool(true)) {
        let d = v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        return Err(format!("getUpdates: HTTP {status}: {d}"));
    }
    Ok(v.get("result")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// `setWebhook`: Telegram posts updates to `url`, with `secret` in
/// `X-Telegram-Bot-Api-Secret-Token`.
pub async fn telegram_set_webhook(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    url: &str,
    secret: &str,
) -> Result<(), String> {
    let body = serde_json::json!({
        "url": url,
        "secret_token": secret,
        "allowed_updates": ["message", "edited_message", "callback_query"],
    });
    let resp = client
        .post(format!("{api}/bot{token}/setWebhook"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("setWebhook: {}", e.without_url()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    if v.get("ok") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let d = v
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("no description");
    Err(format!("setWebhook: HTTP {status}: {d}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_becomes_an_inbound_message_and_one_missing_fields_is_skipped() {
        let u = serde_json::json!({"update_id": 5, "message": {"message_id": 9, "chat": {"id": -100}, "from": {"id": 42, "username": "ann"}, "text": "!help"}});
        let m = telegram_update(&u).expect("a message");
        assert_eq!(
            (
                m.chat.as_str(),
                m.user.as_str(),
                m.name.as_str(),
                m.text.as_str()
            ),
            ("-100", "42", "ann", "!help")
        );
        assert_eq!(m.identity(), "telegram:42");
        assert_eq!(m.reply_to.as_deref(), Some("9"));
        for bad in [
            serde_json::json!({"update_id": 1}),
            serde_json::json!({"update_id": 1, "message": {"chat": {"id": 1}}}),
            serde_json::json!({"update_id": 1, "message": {"text": "x"}}),
            serde_json::json!({"update_id": 1, "message": {"chat": {}, "text": "x"}}),
            serde_json::json!({"update_id": 1, "message": {"chat": {"id": 1}, "text": 5}}),
        ] {
            assert_eq!(telegram_update(&bad), None, "{bad}");
        }
        let cb = serde_json::json!({"update_id": 6, "callback_query": {"id": "4242", "from": {"id": 7, "first_name": "ann"}, "message": {"message_id": 3, "chat": {"id": 100}}, "data": "ap:17"}});
        let c = telegram_callback(&cb).expect("a button press");
        assert_eq!(
            (c.chat.as_str(), c.identity()),
            ("100", "telegram:7".to_owned())
        );
        assert_eq!(c.gate_button(), Some((true, 17)));
        let mut other = c.clone();
        other.data = "rj:x".into();
        assert_eq!(other.gate_button(), None);
        other.data = "skill:foo".into();
        assert_eq!(other.gate_button(), None);
        for bad in [
            serde_json::json!({"update_id": 1, "callback_query": {"id": "1", "from": {"id": 7}}}),
            serde_json::json!({"update_id": 1, "callback_query": {"from": {"id": 7}, "message": {"chat": {"id": 1}}}}),
            serde_json::json!({"update_id": 1, "callback_query": {"id": "1", "message": {"chat": {"id": 1}}}}),
        ] {
            assert_eq!(telegram_callback(&bad), None, "{bad}");
        }
        let long = "x".repeat(1024 * 1024);
        let u = serde_json::json!({"update_id": 5, "message": {"chat": {"id": 1}, "text": long}});
        assert_eq!(telegram_update(&u).expect("a message").text.len(), MAX_TEXT);
    }
}
