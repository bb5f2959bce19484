//! Webhooks: `POST /hooks/<name>` starts the workflow that declares the hook in its
//! `triggers:`, once the request passes the hook's verification ([`verify`]: GitHub HMAC-SHA256,
//! Slack v0, Telegram secret token, bearer). Fail-closed: a hook without a secret refuses every
//! request. [`server::router`] is the `axum::Router` the daemon mounts.

pub mod server;
pub mod verify;

pub use server::{Registry, WebhookState, router};

#[cfg(test)]
mod tests;
