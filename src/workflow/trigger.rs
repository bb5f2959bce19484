//! What starts a workflow besides the command line: the `triggers:` list of a workflow file.
//!
//! ```yaml
//! triggers:
//!   - webhook:
//!       name: github-push          # POST /hooks/github-push
//!       verify: hmac-sha256        # hmac-sha256 | slack | telegram | bearer
//!       secret: ${{ secrets.GITHUB_WEBHOOK_SECRET }}
//!   - command: deploy              # chat: `!deploy prod` (trigger.args = ["prod"])
//! ```

use crate::diagnostic::Pos;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub enum Trigger {
    Webhook(WebhookTrigger),
    /// A chat command (`!name args…`).
    Command {
        name: String,
        pos: Pos,
    },
}

/// `POST /hooks/<name>` starts the workflow, once the request passes `verify` with `secret`.
#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    pub name: String,
    pub verify: Method,
    /// `None`: no secret configured, so every request is refused (fail-closed).
    pub secret: Option<SecretRef>,
    pub pos: Pos,
}

/// Where a webhook's secret comes from.
#[derive(Debug, Clone)]
pub enum SecretRef {
    /// `${{ secrets.NAME }}`: read from the vault at request time.
    Vault(String),
    /// Written in the file (works, with a warning: the file is not a safe place for it).
    Literal(Secret),
}

impl WebhookTrigger {
    /// Advice about the configuration (not errors: the hook still works, or refuses safely).
    pub fn warnings(&self) -> Vec<String> {
        match &self.secret {
            None => vec![format!(
                "webhook `{}` has no `secret`: it refuses every request",
                self.name
            )],
            Some(SecretRef::Literal(_)) => vec![format!(
                "webhook `{}` has its secret written in the workflow file; keep it in the vault and write `secret: ${{{{ secrets.NAME }}}}`",
                self.name
            )],
            Some(SecretRef::Vault(_)) => Vec::new(),
        }
    }
}

/// How a hook checks that a request comes from whom it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    HmacSha256,
    /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:{timestamp}:{body}>` with
    /// `X-Slack-Request-Timestamp` within 5 minutes.
    Slack,
    /// Telegram: `X-Telegram-Bot-Api-Secret-Token: <secret>`.
    Telegram,
    /// `Authorization: Bearer <secret>`.
    Bearer,
}

impl Method {
    pub const ALL: [Self; 4] = [Self::HmacSha256, Self::Slack, Self::Telegram, Self::Bearer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::Slack => "slack",
            Self::Telegram => "telegram",
            Self::Bearer => "bearer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}
