//! LLM providers: one request shape per wire format over reqwest (no SDK), a fallback chain, and
//! structured output.
//!
//! - `anthropic.rs`: the Messages API, streamed (SSE `message_start`, `content_block_*`,
//!   `message_delta` with usage, `message_stop`, `error`), `tool_use` blocks.
//! - `openai.rs`: Chat Completions, streamed (`choices[].delta`, `tool_calls`, `usage` with
//!   `stream_options.include_usage`, `[DONE]`); any compatible server through its base URL
//!   (Ollama's `/v1`, vLLM, llama.cpp, LM Studio). The `ollama` provider is this format at
//!   `OLLAMA_BASE_URL`.
//! - `cli.rs`: the seed's `claude -p PROMPT --output-format text`, through the process supervisor
//!   (its own process group, stopped at the timeout).
//! - `config.rs`: `claw.yaml`'s `llm:` section and the seed's variables (through the settings
//!   resolver: flag > env > vault > `.env` > `claw.yaml`), roles and the chain.
//! - `json.rs`: repairing a reply into JSON and checking it against a JSON Schema.
//!
//! [`complete`] asks each provider of a chain in turn: it moves on after a timeout, a network
//! error, a 5xx, a 529 (overloaded), a 429 whose retries (honouring `Retry-After`) are spent, a
//! stream cut in the middle or a missing key; never after another 4xx, which would fail again.
//! Each move is audited (`llm.fallback`) and reported to the caller. Every text delta is handed
//! to the caller's sink as it arrives (the step writes it to its log, masked).

pub mod anthropic;
pub mod cli;
pub mod config;
pub mod json;
pub mod openai;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ProviderConfig, ProviderKind, Role};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    User(String),
    /// A reply of the model: its text and the tools it asked for.
    Assistant {
        text: String,
        calls: Vec<ToolCall>,
    },
    /// The results of the tools the previous reply asked for.
    ToolResults(Vec<ToolResult>),
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// The JSON Schema of its arguments (an object schema).
    pub schema: Value,
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: Value,
}

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolResult {
    pub id: String,
    pub content: String,
    pub is_error: bool,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Self) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }

    pub fn total(self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// One request, whatever the provider.
#[derive(Debug, Clone)]
pub struct Request {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    /// Overrides the provider's configured model (for the first provider of a chain only: a
    /// model name rarely means anything to another provider).
    pub model: Option<String>,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub tools: Vec<ToolDef>,
    /// The limit of one provider's attempt (the whole exchange, streaming included).
    pub timeout: Duration,
}

impl Request {
    /// A single prompt with the defaults.
    pub fn prompt(text: &str) -> Self {
        Self {
            system: None,
            messages: vec![Message::User(text.to_owned())],
            model: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: None,
            tools: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `max_tokens` when nothing says otherwise.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The seed's timeout of the claude CLI (600 s) is long; one provider attempt gets 300 s unless
/// the step or the provider says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A provider's reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reply {
    pub text: String,
    /// The model that answered (as the provider names it).
    pub model: String,
    /// The provider (its name in the configuration).
    pub provider: String,
    pub usage: Usage,
    pub calls: Vec<ToolCall>,
    /// Why it stopped (`end_turn`, `tool_use`, `stop`, `length`, ...).
    pub stop_reason: String,
}

/// Why a provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("timed out after {}", crate::time::duration::format(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Network(String),
    /// The stream broke off or held something that is not the wire format.
    #[error("{0}")]
    Stream(String),
    /// The provider cannot be used as configured (no key, no program).
    #[error("{0}")]
    Unavailable(String),
    /// The claude CLI failed.
    #[error("{0}")]
    Process(String),
    #[error("cancelled")]
    Cancelled,
}

impl LlmError {
    /// Whether the next provider of a chain should be asked (a 4xx other than 429 would fail
    /// there the same way: a bad request, a bad key).
    pub fn falls_back(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout(_)
            | Self::Network(_)
            | Self::Stream(_)
            | Self::Unavailable(_)
            | Self::Process(_) => true,
            Self::Cancelled => false,
        }
    }

    /// Whether the same provider is worth asking again after a pause (a 429).
    fn retry_here(&self) -> Option<Option<Duration>> {
        match self {
            Self::Status {
                status: 429,
                retry_after,
                ..
            } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A provider that failed on the way to the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FallbackNote {
    pub provider: String,
    pub error: String,
    pub next: String,
}

/// Where streamed text goes as it arrives.
pub trait Sink: Send {
    /// A piece of the reply's text.
    fn text(&mut self, delta: &str);
    /// A line about the exchange (a retry, a fallback).
    fn note(&mut self, line: &str);
}

/// A sink that keeps nothing.
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn text(&mut self, _: &str) {}
    fn note(&mut self, _: &str) {}
}

/// How many times a 429 is retried on one provider before the chain moves on.
const RETRIES_429: u32 = 2;
/// The longest `Retry-After` honoured (a longer one moves on at once).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The shared HTTP client (no overall timeout: each exchange is bounded by its request's),
/// built once per process: building one loads the system's certificates.
pub fn client() -> Result<reqwest::Client, LlmError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    crate::msg::channels::install_crypto_provider();
    let c = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("claw/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LlmError::Network(format!("cannot build the HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

/// Asks one provider once.
async fn ask_one(
    client: &reqwest::Client,
    p: &ProviderConfig,
    req: &Request,
    sink: &mut dyn Sink,
    cancel: &CancellationToken,
    kill_grace: Duration,
) -> Result<Reply, LlmError> {
    let limit = p.timeout.map_or(req.timeout, |t| t.min(req.timeout));
    let work = async {
        match p.kind {
            ProviderKind::Anthropic => anthropic::complete(client, p, req, sink).await,
            ProviderKind::OpenAi | ProviderKind::Ollama => {
                openai::complete(client, p, req, sink).await
            }
            ProviderKind::ClaudeCli => cli::complete(p, req, sink, limit, kill_grace, cancel).await,
        }
    };
    tokio::select! {
        r = tokio::time::timeout(limit, work) => match r {
            Ok(r) => r.map(|mut reply| {
                reply.provider.clone_from(&p.name);
                reply
            }),
            Err(_) => Err(LlmError::Timeout(limit)),
        },
        () = cancel.cancelled() => Err(LlmError::Cancelled),
    }
}

/// What [`complete`] needs besides the request.
pub struct Ask<'a> {
    pub config: &'a Config,
    /// The providers to ask, in order.
    pub chain: &'a [String],
    pub sink: &'a mut dyn Sink,
    pub cancel: &'a CancellationToken,
    /// Who asks, for the audit entries of fallbacks (`engine`, `cli:alice`).
    pub actor: &'a str,
    /// What asks (a run and step, `claw llm ask`), for the audit entries.
    pub target: &'a str,
    /// Where the audit log is (`None`: fallbacks are not audited, as in unit tests).
    pub audit_home: Option<&'a std::path::Path>,
    pub kill_grace: Duration,
}

impl std::fmt::Debug for Ask<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("chain", &self.chain)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Asks the chain's providers in turn until one answers (see the module's notes).
pub async fn complete(
    ask: Ask<'_>,
    req: &Request,
) -> Result<(Reply, Vec<FallbackNote>), (LlmError, Vec<FallbackNote>)> {
    let Ask {
        config,
        chain,
        sink,
        cancel,
        actor,
        target,
        audit_home,
        kill_grace,
    } = ask;
    let mut notes = Vec::new();
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Err((e, notes)),
    };
    let mut last = LlmError::Unavailable("no provider is configured".to_owned());
    for (i, name) in chain.iter().enumerate() {
        let p = match config.provider(name) {
            Ok(p) => p,
            Err(e) => {
                last = LlmError::Unavailable(e);
                continue;
            }
        };
        let mut this = req.clone();
        if i > 0 {
            this.model = None;
        }
        let mut tries = 0;
        let result = loop {
            let started = Instant::now();
            let r = ask_one(&client, &p, &this, sink, cancel, kill_grace).await;
            match r {
                Err(e) if tries < RETRIES_429 => match e.retry_here() {
                    Some(wait) => {
                        let wait = wait.unwrap_or(Duration::from_secs(1 << tries));
                        if wait > MAX_RETRY_AFTER {
                            break Err(e);
                        }
                        tries += 1;
                        sink.note(&format!(
                            "{name}: {e}; retrying in {} ({} ms spent)",
                            crate::time::duration::format(wait),
                            started.elapsed().as_millis()
                        ));
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = cancel.cancelled() => break Err(LlmError::Cancelled),
                        }
                    }
                    None => break Err(e),
                },
                other => break other,
            }
        };
        match result {
            Ok(reply) => return Ok((reply, notes)),
            Err(e) if e.falls_back() => {
                let next = chain.get(i + 1).cloned().unwrap_or_default();
                let error = crate::redact::global().redact(&e.to_string()).into_owned();
                if next.is_empty() {
                    sink.note(&format!("{name}: {error}"));
                } else {
                    sink.note(&format!("{name}: {error}; falling back to {next}"));
                    let note = FallbackNote {
                        provider: name.clone(),
                        error,
                        next,
                    };
                    if let Some(home) = audit_home {
                        audit_fallback(home, actor, target, &note);
                    }
                    notes.push(note);
                }
                last = e;
            }
            Err(e) => return Err((e, notes)),
        }
    }
    Err((last, notes))
}

fn audit_fallback(home: &std::path::Path, actor: &str, target: &str, note: &FallbackNote) {
    let event = crate::audit::Event::new(
        actor,
        crate::audit::Action::LlmFallback,
        target,
        "fallback",
        serde_json::json!({"provider": note.provider, "error": note.error, "next": note.next}),
    );
    if let Err(e) = crate::audit::AuditLog::in_dir(home).record(&event) {
        tracing::warn!(target = %target, "llm fallback not audited: {e}");
    }
}

/// One conversational turn for a front end (the Telegram chat mode and the like): the `chat`
/// role's chain (first `provider` when the chat chose one) with `history` (oldest first) and the
/// new `text`; the reply's text is streamed to `sink` as it arrives and masked before it is
/// returned.
pub async fn chat(
    config: &Config,
    home: &std::path::Path,
    provider: Option<&str>,
    history: &[Message],
    text: &str,
    sink: &mut dyn Sink,
    cancel: &CancellationToken,
) -> Result<Reply, LlmError> {
    let chain = config.chain(Role::Chat, provider);
    let mut req = Request::prompt(text);
    let mut messages = history.to_vec();
    messages.push(Message::User(text.to_owned()));
    req.messages = messages;
    let ask = Ask {
        config,
        chain: &chain,
        sink,
        cancel,
        actor: "chat",
        target: "chat",
        audit_home: Some(home),
        kill_grace: Duration::from_secs(5),
    };
    let (mut reply, _) = complete(ask, &req).await.map_err(|(e, _)| e)?;
    reply.text = crate::redact::global().redact(&reply.text).into_owned();
    Ok(reply)
}

/// The status of an error response and its body's message, as the provider shaped it
/// (`{"error": {"message": ...}}` for both formats).
async fn status_error(resp: reqwest::Response) -> LlmError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    LlmError::Status {
        status,
        message,
        retry_after,
    }
}

/// A reqwest error as an [`LlmError`].
fn network(e: &reqwest::Error) -> LlmError {
    LlmError::Network(format!("cannot reach the provider: {e}"))
}

#[cfg(test)]
mod tests;
