//! Outbound messaging: channels (Telegram, Slack, Discord, ntfy, a JSON webhook), chunking to
//! each channel's limit, `profiles.yaml` and the concurrent fan-out of a profile.
//!
//! Credentials come from the settings (`config::resolve`: flag > env > vault > `.env` >
//! `claw.yaml`) with the seed's names; every text sent passes through the process-wide redactor
//! first. A send is retried on network errors, 429 and 5xx (honouring `Retry-After`), never on
//! another 4xx.

pub mod channels;
pub mod chunk;
pub mod profiles;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::resolve::{DEFS, Layers};

pub use channels::{Channel, SendError};
pub use profiles::{Profile, Target};

/// The channel names, in the order `claw msg channels` lists them.
pub const CHANNELS: &[&str] = &["telegram", "slack", "discord", "ntfy", "webhook"];

/// The settings the channels read, resolved once.
#[derive(Debug, Clone, Default)]
pub struct Creds {
    values: BTreeMap<String, String>,
}

impl Creds {
    pub fn from_layers(layers: &Layers) -> Self {
        let values = DEFS
            .iter()
            .filter_map(|d| layers.get(*d).value.map(|v| (d.name.to_owned(), v)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Self { values }
    }

    /// For tests: the given values only.
    pub fn from_map(values: BTreeMap<String, String>) -> Self {
        Self { values }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The secret values among them (registered with the redactor before anything is sent).
    pub fn secret_values(&self) -> Vec<&str> {
        DEFS.iter()
            .filter(|d| d.secret)
            .filter_map(|d| self.get(d.name))
            .collect()
    }
}

/// One delivery's result (the seed's `SendResult`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub channel: String,
    pub target: String,
    pub ok: bool,
    /// The provider's id of the (last) message when it says one, else a short note.
    pub message: String,
    pub error: Option<String>,
    pub attempts: u32,
}

/// How many times and how long a send is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    /// The longest wait, also the cap on a `Retry-After`.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    /// The seed's: 3 retries after 1, 2, 4 s.
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Sends `text` to one target: redacted, chunked, each chunk retried under `policy`.
pub async fn deliver(
    client: &reqwest::Client,
    creds: &Creds,
    channel: &str,
    target: &str,
    text: &str,
    policy: RetryPolicy,
) -> Delivery {
    let mut d = Delivery {
        channel: channel.to_owned(),
        target: target.to_owned(),
        ok: false,
        message: String::new(),
        error: None,
        attempts: 0,
    };
    let ch = match Channel::configure(channel, creds) {
        Ok(c) => c,
        Err(e) => {
            d.error = Some(e);
            return d;
        }
    };
    crate::redact::register_global(creds.secret_values());
    let redactor = crate::redact::global();
    let clean = redactor.redact(text).into_owned();
    for piece in chunk::chunk(&clean, ch.limit()) {
        let mut wait = policy.first_backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            d.attempts += 1;
            match ch.send(client, target, &piece).await {
                Ok(id) => {
                    d.message = id;
                    break;
                }
                Err(e) if !e.retryable || tries >= policy.attempts.max(1) => {
                    d.error = Some(redactor.redact(&e.message).into_owned());
                    return d;
                }
                Err(e) => {
                    let pause = e.retry_after.map_or(wait, |r| r.max(wait));
                    tokio::time::sleep(pause.min(policy.max_wait)).await;
                    wait = (wait * 2).min(policy.max_wait);
                }
            }
        }
    }
    d.ok = true;
    d
}

/// Sends `text` to every target of a profile at once; a failing target does not stop the others.
pub async fn fan_out(
    client: &reqwest::Client,
    creds: &Creds,
    targets: &[Target],
    text: &str,
    policy: RetryPolicy,
) -> Vec<Delivery> {
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let (client, creds, t, text) = (client.clone(), creds.clone(), t.clone(), text.to_owned());
        set.spawn(async move {
            let d = deliver(&client, &creds, &t.channel, &t.target, &text, policy).await;
            (i, d)
        });
    }
    let mut out: Vec<Option<Delivery>> = vec![None; targets.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, d)) = r
            && let Some(slot) = out.get_mut(i)
        {
            *slot = Some(d);
        }
    }
    out.into_iter()
        .zip(targets)
        .map(|(d, t)| {
            d.unwrap_or_else(|| Delivery {
                channel: t.channel.clone(),
                target: t.target.clone(),
                ok: false,
                message: String::new(),
                error: Some("the delivery task ended abnormally".to_owned()),
                attempts: 0,
            })
        })
        .collect()
}

/// The HTTP client every channel uses (15 s per request, the seed's).
pub fn client() -> Result<reqwest::Client, String> {
    channels::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("claw/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}
