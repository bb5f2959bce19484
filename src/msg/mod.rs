//! Outbound messaging: channels (Telegram, Slack, Discord, email, ntfy, a JSON webhook), chunking to
//! each channel's limit, `profiles.yaml`, and the durable outbox that delivers every target of
//! a send concurrently.
//!
//! Credentials come from the settings (`config::resolve`: flag > env > vault > `.env` >
//! `claw.yaml`) with the seed's names; every text passes through the process-wide redactor
//! before it is queued (`outbox`), and is sent with retries on network errors, 429 and 5xx
//! (honouring `Retry-After`), never on another 4xx.

pub mod channels;
pub mod chunk;
pub mod email;
pub mod inbound;
pub mod outbox;
pub mod profiles;
pub mod route;
pub mod triggers;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::resolve::{DEFS, Layers};

pub use channels::{Channel, SendError};
pub use profiles::{Profile, Target};

/// The channel names, in the order `claw msg channels` lists them.
pub const CHANNELS: &[&str] = &["telegram", "slack", "discord", "email", "ntfy", "webhook"];

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
