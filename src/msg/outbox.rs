//! The durable outbox: a message is committed to the store (redacted, cut to its channel's
//! limit, one row per piece) before anything is sent; `drain` sends the head of each
//! (channel, target) queue, one attempt at a time, and records each outcome: sent, again later
//! (429, 5xx, network: backoff or the service's `Retry-After`), or dead (another 4xx, no
//! credentials, or [`MAX_ATTEMPTS`] used).
//!
//! Crash window: a message whose send reached the service but whose `sent` mark was not
//! committed (a crash between the two) is sent again after the claim's lease runs out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Channel, Creds, Target, chunk};
use crate::store::{MessageOutcome, NewMessage, OutboxMessage, Store};

/// Attempts before a message is dead.
pub const MAX_ATTEMPTS: i64 = 10;
/// How long a claim holds a message (longer than one request's 15 s timeout).
const LEASE_MS: i64 = 60_000;
const MAX_BACKOFF_MS: i64 = 60_000;

/// Queues `text` for each target; the ids, in order. Unknown channels are refused here.
pub fn enqueue(
    store: &dyn Store,
    creds: &Creds,
    targets: &[Target],
    text: &str,
    source: &str,
) -> Result<Vec<i64>, String> {
    enqueue_with(store, creds, targets, text, source, None)
}

/// [`enqueue`], with `extra` (see [`NewMessage::extra`]) on the last piece of each Telegram
/// target's text (other channels have no buttons, nor edits).
pub fn enqueue_with(
    store: &dyn Store,
    creds: &Creds,
    targets: &[Target],
    text: &str,
    source: &str,
    extra: Option<&serde_json::Value>,
) -> Result<Vec<i64>, String> {
    let rows = rows(creds, targets, text, source, extra)?;
    store
        .enqueue_messages(&rows, crate::time::now_ms())
        .map_err(|e| format!("cannot queue the message: {e}"))
}

/// The outbox rows of a message: redacted, cut to each channel's limit.
pub fn rows(
    creds: &Creds,
    targets: &[Target],
    text: &str,
    source: &str,
    extra: Option<&serde_json::Value>,
) -> Result<Vec<NewMessage>, String> {
    crate::redact::register_global(creds.secret_values());
    let clean = crate::redact::global().redact(text).into_owned();
    let mut rows = Vec::new();
    for t in targets {
        if !super::CHANNELS.contains(&t.channel.as_str()) {
            Channel::configure(&t.channel, creds)?;
        }
        let limit = Channel::configure(&t.channel, creds).map_or(4000, |c| c.limit());
        let pieces = chunk::chunk(&clean, limit);
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.into_iter().enumerate() {
            let extra = extra
                .filter(|_| i == last && t.channel == "telegram")
                .map(serde_json::Value::to_string);
            rows.push(NewMessage {
                channel: t.channel.clone(),
                target: t.target.clone(),
                body: piece,
                source: source.to_owned(),
                extra,
            });
        }
    }
    Ok(rows)
}

/// Sends what is due until `until`; with `wait_for`, returns as soon as none of those ids is
/// pending, else when nothing is due right now. Messages are sent concurrently across targets.
pub async fn drain(
    store: Arc<dyn Store>,
    client: &reqwest::Client,
    creds: &Creds,
    owner: &str,
    audit: &crate::audit::AuditLog,
    wait_for: Option<&[i64]>,
    until: Instant,
) -> Result<(), String> {
    let db = |e: crate::store::StoreError| format!("outbox: {e}");
    loop {
        let now = crate::time::now_ms();
        let claimed = store
            .claim_messages(owner, now, now + LEASE_MS, 64)
            .map_err(db)?;
        if claimed.is_empty() {
            let pending = match wait_for {
                Some(ids) => store
                    .messages(ids)
                    .map_err(db)?
                    .iter()
                    .any(|m| m.status == "pending"),
                None => false,
            };
            if !pending || Instant::now() >= until {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for mut m in claimed {
            if stale_buttons(store.as_ref(), &m) {
                m.extra = None;
            }
            let (client, creds) = (client.clone(), creds.clone());
            set.spawn(async move {
                let outcome = attempt(&client, &creds, &m).await;
                (m, outcome)
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok((m, outcome)) = r {
                store
                    .finish_message(m.id, &outcome, crate::time::now_ms())
                    .map_err(db)?;
                record(audit, owner, &m, &outcome);
            }
        }
    }
}

/// A gate's announcement whose step has finished (decided before the message could go, e.g.
/// while Telegram was down): sent without its buttons.
fn stale_buttons(store: &dyn Store, m: &OutboxMessage) -> bool {
    let Some((run, step)) = m
        .extra
        .as_deref()
        .filter(|e| e.contains("\"gate\""))
        .and_then(|_| super::route::gate_of(&m.source))
    else {
        return false;
    };
    store.steps(run).is_ok_and(|steps| {
        steps
            .iter()
            .any(|s| s.name == step && s.status.is_finished())
    })
}

async fn attempt(client: &reqwest::Client, creds: &Creds, m: &OutboxMessage) -> MessageOutcome {
    let redactor = crate::redact::global();
    let ch = match Channel::configure(&m.channel, creds) {
        Ok(c) => c,
        Err(error) => return MessageOutcome::Dead { error },
    };
    let extra = m
        .extra
        .as_deref()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok());
    match ch
        .send_extra(client, &m.target, &m.body, m.id, extra.as_ref())
        .await
    {
        Ok(provider_id) => MessageOutcome::Sent { provider_id },
        Err(e) => {
            let error = redactor.redact(&e.message).into_owned();
            let attempts = m.attempts + 1;
            if !e.retryable || attempts >= MAX_ATTEMPTS {
                return MessageOutcome::Dead { error };
            }
            let backoff = 1000_i64 << (attempts - 1).clamp(0, 6);
            let asked = e.retry_after.map_or(0, |d| {
                i64::try_from(d.as_millis()).unwrap_or(MAX_BACKOFF_MS)
            });
            let wait = backoff.max(asked).min(MAX_BACKOFF_MS);
            MessageOutcome::Retry {
                next_at: crate::time::now_ms() + wait,
                error,
            }
        }
    }
}

/// One `message.sent` entry per piece sent or given up on (never its text).
fn record(
    audit: &crate::audit::AuditLog,
    owner: &str,
    m: &OutboxMessage,
    outcome: &MessageOutcome,
) {
    let (result, error, provider) = match outcome {
        MessageOutcome::Sent { provider_id } => ("success", None, Some(provider_id)),
        MessageOutcome::Dead { error } => ("failure", Some(error), None),
        MessageOutcome::Retry { .. } => return,
    };
    let mut detail = serde_json::json!({
        "id": m.id,
        "channel": m.channel,
        "source": m.source,
        "chars": m.body.chars().count(),
        "attempts": m.attempts + 1,
    });
    if let Some(e) = error {
        detail["error"] = e.clone().into();
    }
    if let Some(p) = provider {
        detail["provider_id"] = p.clone().into();
    }
    let entry = crate::audit::Event::new(
        owner,
        crate::audit::Action::MessageSent,
        &format!("{}:{}", m.channel, m.target),
        result,
        detail,
    );
    if let Err(e) = audit.record(&entry) {
        tracing::warn!(
            "message {} to {}:{} was not audited: {e}",
            m.id,
            m.channel,
            m.target
        );
    }
}
