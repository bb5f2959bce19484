//! The channels: one request shape each, from the providers' public API documentation.

use std::sync::Once;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Creds;

/// Why a send failed, and whether trying again may help.
#[derive(Debug, Clone)]
pub struct SendError {
    pub message: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl SendError {
    fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// A configured channel.
#[derive(Debug, Clone)]
pub enum Channel {
    Telegram { api: String, token: String },
    Slack { api: String, token: Option<String> },
    Discord { api: String, token: Option<String> },
    Ntfy { base: String, token: Option<String> },
    Webhook,
    Email(super::email::Smtp),
}

const TELEGRAM_API: &str = "https://api.telegram.org";
const SLACK_API: &str = "https://slack.com/api";
const DISCORD_API: &str = "https://discord.com/api/v10";
const NTFY_URL: &str = "https://ntfy.sh";

fn base(creds: &Creds, name: &str, default: &str) -> String {
    creds
        .get(name)
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_owned()
}

pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Channel {
    /// The channel `name` with the credentials it needs, or why it cannot be used.
    pub fn configure(name: &str, creds: &Creds) -> Result<Self, String> {
        install_crypto_provider();
        let token = |n: &str| creds.get(n).map(str::to_owned);
        match name {
            "telegram" => Ok(Self::Telegram {
                api: base(creds, "TELEGRAM_API_URL", TELEGRAM_API),
                token: token("TELEGRAM_BOT_TOKEN").ok_or_else(|| {
                    "telegram is not configured: set TELEGRAM_BOT_TOKEN (environment, vault, .env or claw.yaml settings)".to_owned()
                })?,
            }),
            "slack" => Ok(Self::Slack {
                api: base(creds, "SLACK_API_URL", SLACK_API),
                token: token("SLACK_BOT_TOKEN"),
            }),
            "discord" => Ok(Self::Discord {
                api: base(creds, "DISCORD_API_URL", DISCORD_API),
                token: token("DISCORD_BOT_TOKEN"),
            }),
            "ntfy" => Ok(Self::Ntfy {
                base: base(creds, "NTFY_URL", NTFY_URL),
                token: token("NTFY_TOKEN"),
            }),
            "webhook" => Ok(Self::Webhook),
            "email" => Ok(Self::Email(super::email::Smtp::configure(creds)?)),
            other => Err(format!(
                "unknown channel: {other} (channels: {})",
                super::CHANNELS.join(", ")
            )),
        }
    }

    /// Whether the channel can send anywhere without a target-specific URL, and what it needs.
    pub fn status(name: &str, creds: &Creds) -> (bool, &'static str) {
        match name {
            "telegram" => (
                creds.get("TELEGRAM_BOT_TOKEN").is_some(),
                "TELEGRAM_BOT_TOKEN; target: a chat id",
            ),
            "slack" => (
                creds.get("SLACK_BOT_TOKEN").is_some(),
                "SLACK_BOT_TOKEN; target: a channel id, or an incoming-webhook URL (no token)",
            ),
            "discord" => (
                creds.get("DISCORD_BOT_TOKEN").is_some(),
                "DISCORD_BOT_TOKEN; target: a channel id, or a webhook URL (no token)",
            ),
            "ntfy" => (
                true,
                "NTFY_URL (default https://ntfy.sh), NTFY_TOKEN optional; target: a topic",
            ),
            "webhook" => (true, "target: the URL that receives a JSON POST"),
            "email" => (
                creds.get("SMTP_HOST").is_some(),
                "SMTP_HOST, SMTP_PORT (587), SMTP_USER, SMTP_PASS, SMTP_FROM, SMTP_TLS (starttls|tls|none); target: an address",
            ),
            _ => (false, ""),
        }
    }

    /// The longest text one message may carry.
    pub fn limit(&self) -> usize {
        match self {
            Self::Telegram { .. } => 4096,
            Self::Slack { .. } | Self::Ntfy { .. } => 4000,
            Self::Discord { .. } => 2000,
            Self::Webhook | Self::Email(_) => 100_000,
        }
    }

    /// Sends one piece of text; the provider's message id (or a note) on success.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        target: &str,
        text: &str,
    ) -> Result<String, SendError> {
        self.send_extra(client, target, text, 0, None).await
    }

    /// [`Channel::send`] of the outbox message `id`, with what it carries besides its text
    /// (Telegram only): `{"buttons": "gate"}` adds Approve / Reject buttons whose callback data
    /// names the message (`ap:<id>`, `rj:<id>`); `{"reply_markup": {…}}` is sent as it is (the
    /// `/skills` buttons); `{"edit": "<message id>"}` replaces the text
    /// of a message sent before (`editMessageText`) and takes its buttons away.
    pub async fn send_extra(
        &self,
        client: &reqwest::Client,
        target: &str,
        text: &str,
        id: i64,
        extra: Option<&Value>,
    ) -> Result<String, SendError> {
        match self {
            Self::Telegram { api, token } => {
                let extra = extra.unwrap_or(&Value::Null);
                if let Some(message_id) = extra["edit"].as_str() {
                    return telegram_edit(client, api, token, target, message_id, text).await;
                }
                let markup = if extra["buttons"].as_str() == Some("gate") {
                    Some(gate_keyboard(id))
                } else {
                    extra.get("reply_markup").filter(|m| m.is_object()).cloned()
                };
                telegram(client, api, token, target, text, markup.as_ref()).await
            }
            Self::Slack { api, token } => {
                if is_url(target) {
                    let (_, body) =
                        post(client.post(target).json_body(&json!({ "text": text }))).await?;
                    Ok(format!("webhook: {}", body.trim()))
                } else {
                    let token = token.as_deref().ok_or_else(|| {
                        SendError::fatal("slack needs SLACK_BOT_TOKEN for a channel id target (or use an incoming-webhook URL)")
                    })?;
                    let (_, body) = post(
                        client
                            .post(format!("{api}/chat.postMessage"))
                            .bearer_auth(token)
                            .json_body(&json!({ "channel": target, "text": text })),
                    )
                    .await?;
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if v["ok"].as_bool() == Some(true) {
                        Ok(format!("ts={}", v["ts"].as_str().unwrap_or("")))
                    } else {
                        let err = v["error"].as_str().unwrap_or("unexpected answer");
                        Err(SendError {
                            message: format!("slack: {err}"),
                            retryable: err == "ratelimited",
                            retry_after: None,
                        })
                    }
                }
            }
            Self::Discord { api, token } => {
                let (_, body) = if is_url(target) {
                    let sep = if target.contains('?') { '&' } else { '?' };
                    post(
                        client
                            .post(format!("{target}{sep}wait=true"))
                            .json_body(&json!({ "content": text })),
                    )
                    .await?
                } else {
                    let token = token.as_deref().ok_or_else(|| {
                        SendError::fatal("discord needs DISCORD_BOT_TOKEN for a channel id target (or use a webhook URL)")
                    })?;
                    post(
                        client
                            .post(format!("{api}/channels/{target}/messages"))
                            .header("Authorization", format!("Bot {token}"))
                            .json_body(&json!({ "content": text })),
                    )
                    .await?
                };
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                Ok(format!("id={}", v["id"].as_str().unwrap_or("")))
            }
            Self::Ntfy { base, token } => {
                let url = if is_url(target) {
                    target.to_owned()
                } else {
                    format!("{base}/{}", target.trim_start_matches('/'))
                };
                let mut req = client
                    .post(url)
                    .header("Title", "claw")
                    .header("Tags", "robot")
                    .body(text.to_owned());
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let (_, body) = post(req).await?;
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                Ok(format!("id={}", v["id"].as_str().unwrap_or("")))
            }
            Self::Email(smtp) => smtp.send(target, text).await,
            Self::Webhook => {
                if !is_url(target) {
                    return Err(SendError::fatal(format!(
                        "webhook: the target must be an http(s) URL, not {target:?}"
                    )));
                }
                let (status, _) = post(
                    client
                        .post(target)
                        .json_body(&json!({ "text": text, "source": "claw" })),
                )
                .await?;
                Ok(format!("HTTP {}", status.as_u16()))
            }
        }
    }

    /// Checks the credentials against the service (Telegram getMe, Slack auth.test, Discord
    /// users/@me); `None` for channels that have nothing to check.
    pub async fn check(&self, client: &reqwest::Client) -> Option<Result<String, SendError>> {
        let r = match self {
            Self::Telegram { api, token } => {
                let (_, body) = match post(client.get(format!("{api}/bot{token}/getMe"))).await {
                    Ok(x) => x,
                    Err(e) => return Some(Err(e)),
                };
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                Ok(format!(
                    "bot @{}",
                    v["result"]["username"].as_str().unwrap_or("?")
                ))
            }
            Self::Slack {
                api,
                token: Some(token),
            } => {
                let (_, body) =
                    match post(client.post(format!("{api}/auth.test")).bearer_auth(token)).await {
                        Ok(x) => x,
                        Err(e) => return Some(Err(e)),
                    };
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if v["ok"].as_bool() == Some(true) {
                    Ok(format!("team {}", v["team"].as_str().unwrap_or("?")))
                } else {
                    Err(SendError::fatal(format!(
                        "slack: {}",
                        v["error"].as_str().unwrap_or("unexpected answer")
                    )))
                }
            }
            Self::Discord {
                api,
                token: Some(token),
            } => {
                let (_, body) = match post(
                    client
                        .get(format!("{api}/users/@me"))
                        .header("Authorization", format!("Bot {token}")),
                )
                .await
                {
                    Ok(x) => x,
                    Err(e) => return Some(Err(e)),
                };
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                Ok(format!("bot {}", v["username"].as_str().unwrap_or("?")))
            }
            Self::Email(smtp) => smtp.check().await,
            _ => return None,
        };
        Some(r)
    }
}

fn is_url(target: &str) -> bool {
    target.starts_with("https://") || target.starts_with("http://")
}

/// Telegram's HTML parse mode needs exactly these three escaped.
pub fn telegram_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The prefixes of a gate button's callback data (`ap:<outbox id>`, `rj:<outbox id>`).
pub const APPROVE_BUTTON: &str = "ap:";
pub const REJECT_BUTTON: &str = "rj:";

/// Telegram's inline keyboard of a gate's announcement (the outbox message `id`).
pub fn gate_keyboard(id: i64) -> Value {
    json!({"inline_keyboard": [[
        {"text": "Approve", "callback_data": format!("{APPROVE_BUTTON}{id}")},
        {"text": "Reject", "callback_data": format!("{REJECT_BUTTON}{id}")},
    ]]})
}

/// `editMessageText` with no buttons left; "message is not modified" (the same text sent again
/// after a crash) counts as done.
async fn telegram_edit(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    chat: &str,
    message_id: &str,
    text: &str,
) -> Result<String, SendError> {
    let url = format!("{api}/bot{token}/editMessageText");
    let message_id: i64 = message_id
        .parse()
        .map_err(|_| SendError::fatal(format!("not a Telegram message id: {message_id}")))?;
    let body = json!({
        "chat_id": chat, "message_id": message_id, "text": text,
        "reply_markup": {"inline_keyboard": []},
    });
    match post(client.post(&url).json_body(&body)).await {
        Ok(_) => Ok(format!("edited message_id={message_id}")),
        Err(e) if e.message.contains("message is not modified") => {
            Ok(format!("edited message_id={message_id}"))
        }
        Err(e) => Err(e),
    }
}

async fn telegram(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    chat: &str,
    text: &str,
    markup: Option<&Value>,
) -> Result<String, SendError> {
    let url = format!("{api}/bot{token}/sendMessage");
    let escaped = telegram_html(text);
    let with_markup = |mut v: Value| {
        if let Some(m) = markup {
            v["reply_markup"] = m.clone();
        }
        v
    };
    let first = if escaped.chars().count() <= 4096 {
        post(client.post(&url).json_body(&with_markup(json!({
            "chat_id": chat, "text": escaped, "parse_mode": "HTML"
        }))))
        .await
    } else {
        Err(SendError::fatal(
            "can't parse entities: too long once escaped",
        ))
    };
    let body = match first {
        Ok((_, body)) => body,
        Err(e) if e.message.contains("can't parse entities") => {
            post(
                client
                    .post(&url)
                    .json_body(&with_markup(json!({ "chat_id": chat, "text": text }))),
            )
            .await?
            .1
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(format!(
        "message_id={}",
        v["result"]["message_id"].as_i64().unwrap_or(0)
    ))
}

/// Sends a request; a 2xx answer's status and body, else a classified error (network, 429 and
/// 5xx retryable with the server's `Retry-After`; other statuses not).
async fn post(req: reqwest::RequestBuilder) -> Result<(StatusCode, String), SendError> {
    let resp = req.send().await.map_err(|e| SendError {
        message: format!("cannot reach the service: {}", without_url(&e)),
        retryable: true,
        retry_after: None,
    })?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok((status, body));
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    // Telegram's `description`, Discord's and Slack's `message`/`error`, else the body's start.
    let said = v["description"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .or_else(|| v["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(200).collect());
    let retry_after = retry_after.or_else(|| {
        v["parameters"]["retry_after"]
            .as_u64()
            .map(Duration::from_secs)
    });
    Err(SendError {
        message: format!("HTTP {}: {}", status.as_u16(), said.trim()),
        retryable: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
        retry_after,
    })
}

/// reqwest's error text without the URL (a Telegram URL carries the token).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A JSON body (reqwest is built without its `json` feature).
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(v.to_string())
    }
}
