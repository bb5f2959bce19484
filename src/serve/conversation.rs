//! The LLM chat mode of the chat front ends (the seed's conversation mode): a message from an
//! allowed chat that is neither a command nor a trigger goes to the `chat` role's provider chain
//! with the chat's history, kept in the store (the last [`MAX_MESSAGES`] messages, started
//! afresh after [`TTL`] of silence); the reply goes back through the outbox (chunked there).
//!
//! The commands, as in the seed: `/mode [chat|skill]`, `/model [PROVIDER|auto]` (a per-chat
//! provider; `auto` clears it), `/history` (the last 10 messages, each cut to 100 characters),
//! `/reset`, and `/cancel`, which really stops the reply being written for that chat.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::llm::{LlmError, Message};
use crate::msg::inbound::Inbound;
use crate::store::{ChatSession, ChatTurn, Store};

/// Messages kept per chat (user and assistant ones: 10 turns).
pub const MAX_MESSAGES: usize = 20;
/// A conversation silent for this long is started afresh.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// The seed's words when the provider took too long.
pub const TIMED_OUT: &str = "[Response timed out — try a shorter question]";

/// The replies being written, by chat (`channel:chat`): a number for each, and its token, for
/// `/cancel`.
type Pending = HashMap<String, (u64, CancellationToken)>;
static PENDING: Mutex<Option<Pending>> = Mutex::new(None);
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn pending<R>(f: impl FnOnce(&mut Pending) -> R) -> R {
    let mut guard = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(guard.get_or_insert_with(HashMap::new))
}

/// The chat's session, its history emptied when it is older than the TTL.
fn session(store: &dyn Store, m: &Inbound, now: i64) -> ChatSession {
    let mut s = store
        .chat_session(&m.channel, &m.chat)
        .ok()
        .flatten()
        .unwrap_or_else(|| ChatSession {
            channel: m.channel.clone(),
            chat: m.chat.clone(),
            mode: "chat".to_owned(),
            model: None,
            history: Vec::new(),
            updated_at: now,
        });
    let ttl = i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX);
    if now.saturating_sub(s.updated_at) > ttl {
        s.history.clear();
    }
    s
}

fn save(store: &dyn Store, s: &ChatSession) {
    if let Err(e) = store.set_chat_session(s) {
        tracing::warn!(target: crate::trace::DAEMON, "the conversation of {}:{} was not kept: {e}", s.channel, s.chat);
    }
}

/// The chat's conversation for `/status` (the seed shows its mode and history count).
pub fn status_line(store: &dyn Store, m: &Inbound) -> String {
    let s = session(store, m, crate::time::now_ms());
    format!(
        "chat mode: {}, model: {}, {} messages in the history",
        s.mode,
        s.model.as_deref().unwrap_or("auto"),
        s.history.len()
    )
}

/// A chat-mode command (`/mode`, `/model`, `/history`, `/reset`, `/cancel`): its reply, or `None`
/// when `cmd` is none of them.
pub fn command(
    store: &dyn Store,
    dirs: &crate::config::Dirs,
    m: &Inbound,
    cmd: &str,
    args: &[String],
) -> Option<String> {
    let now = crate::time::now_ms();
    let mut s = session(store, m, now);
    let reply = match cmd {
        "/mode" => match args.first().map(String::as_str) {
            None => format!("mode: {} (/mode chat or /mode skill)", s.mode),
            Some(mode @ ("chat" | "skill")) => {
                s.mode = mode.to_owned();
                save(store, &s);
                format!("mode set to {mode}")
            }
            Some(other) => format!("unknown mode {other}: /mode chat or /mode skill"),
        },
        "/model" => match args.first().map(String::as_str) {
            None => format!(
                "model: {} (/model PROVIDER, or /model auto for the chat role's)",
                s.model.as_deref().unwrap_or("auto")
            ),
            Some("auto") => {
                s.model = None;
                save(store, &s);
                "model: auto (the chat role's provider)".to_owned()
            }
            Some(name) => match crate::steps::llm::load_config(dirs).and_then(|c| c.provider(name))
            {
                Ok(p) => {
                    s.model = Some(p.name.clone());
                    save(store, &s);
                    format!("model set to {} ({})", p.name, p.model)
                }
                Err(e) => e,
            },
        },
        "/history" => {
            if s.history.is_empty() {
                "No history.".to_owned()
            } else {
                let start = s.history.len().saturating_sub(10);
                s.history[start..]
                    .iter()
                    .map(|t| {
                        let who = if t.role == "user" { "You" } else { "Assistant" };
                        let text: String = t.text.chars().take(100).collect();
                        let more = if t.text.chars().count() > 100 {
                            "…"
                        } else {
                            ""
                        };
                        format!("{who}: {text}{more}")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        "/reset" => {
            s.history.clear();
            s.updated_at = now;
            save(store, &s);
            "Conversation history cleared.".to_owned()
        }
        "/cancel" => {
            let key = format!("{}:{}", m.channel, m.chat);
            match pending(|p| p.remove(&key)) {
                Some((_, token)) => {
                    token.cancel();
                    "Cancelled.".to_owned()
                }
                None => "Nothing to cancel.".to_owned(),
            }
        }
        _ => return None,
    };
    Some(reply)
}

/// The reply to a free text of an allowed chat: in chat mode the LLM's answer (the history
/// kept), in skill mode the result of the text run as an intake request (`crate::intake`);
/// `None` when the reply was cancelled.
pub async fn reply(
    store: &dyn Store,
    dirs: &crate::config::Dirs,
    m: &Inbound,
    stop: &CancellationToken,
) -> Option<String> {
    let now = crate::time::now_ms();
    let mut s = session(store, m, now);
    if s.mode == "skill" {
        // The seed's skill mode: the text is an intake request (one requirement per line),
        // mapped to skills and run; the reply is the result.
        return Some(crate::intake::chat_request(dirs, &m.text, &m.identity(), stop).await);
    }
    let config = match crate::steps::llm::load_config(dirs) {
        Ok(c) => c,
        Err(e) => return Some(format!("The LLM is not configured: {e}")),
    };
    let history: Vec<Message> = s
        .history
        .iter()
        .map(|t| {
            if t.role == "user" {
                Message::User(t.text.clone())
            } else {
                Message::Assistant {
                    text: t.text.clone(),
                    calls: Vec::new(),
                }
            }
        })
        .collect();
    let key = format!("{}:{}", m.channel, m.chat);
    let cancel = stop.child_token();
    // A newer message of the same chat replaces (and stops) the older pending reply.
    let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some((_, old)) = pending(|p| p.insert(key.clone(), (number, cancel.clone()))) {
        old.cancel();
    }
    let mut sink = crate::llm::Discard;
    let result = crate::llm::chat(
        &config,
        &dirs.home,
        s.model.as_deref(),
        &history,
        &m.text,
        &mut sink,
        &cancel,
    )
    .await;
    pending(|p| {
        if p.get(&key).is_some_and(|(n, _)| *n == number) {
            p.remove(&key);
        }
    });
    let text = match result {
        Ok(r) => r.text,
        Err(LlmError::Cancelled) => return None,
        Err(LlmError::Timeout(_)) => return Some(TIMED_OUT.to_owned()),
        Err(e) => {
            return Some(format!(
                "LLM error: {}",
                crate::redact::global().redact(&e.to_string())
            ));
        }
    };
    let at = crate::time::now_ms();
    s.history.push(ChatTurn {
        role: "user".to_owned(),
        text: m.text.clone(),
        at,
    });
    s.history.push(ChatTurn {
        role: "assistant".to_owned(),
        text: text.clone(),
        at,
    });
    let over = s.history.len().saturating_sub(MAX_MESSAGES);
    s.history.drain(..over);
    s.updated_at = at;
    save(store, &s);
    Some(if text.trim().is_empty() {
        "(empty reply)".to_owned()
    } else {
        text
    })
}
