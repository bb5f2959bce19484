//! The messaging tools: `list_channels`, `list_profiles`, `test_channel`, `send_message` and
//! `send_notification`. A message goes through the outbox as `claw msg send` sends it: queued,
//! then delivered (retried for up to 15 s here; what is left is delivered by the daemon or the
//! next `claw msg flush`). Deliveries are audited as the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{Answer, Server, arg_str};
use crate::msg::profiles::Target;
use crate::msg::{self, Channel, Creds};
use crate::store::Store;

/// How long a tool waits for its messages to be delivered.
const DELIVERY_WAIT: Duration = Duration::from_secs(15);

impl Server {
    /// The channels' credentials from the settings; every secret among them (and the vault's)
    /// registered with the redactor first.
    fn creds(&self) -> Creds {
        let (layers, _) = crate::vault::settings(
            &self.dirs.root,
            &self.dirs.home,
            std::collections::BTreeMap::new(),
        );
        let creds = Creds::from_layers(&layers);
        let vault_values: Vec<String> = layers.vault.values().cloned().collect();
        crate::redact::register_global(vault_values.iter().map(String::as_str));
        crate::redact::register_global(creds.secret_values());
        creds
    }

    pub(super) fn list_channels(&self) -> Answer {
        let creds = self.creds();
        let mut lines = Vec::new();
        let mut items = Vec::new();
        for name in msg::CHANNELS {
            let (configured, needs) = Channel::status(name, &creds);
            lines.push(format!(
                "  {name:<9} {:<15} {needs}",
                if configured {
                    "configured"
                } else {
                    "not configured"
                }
            ));
            items.push(json!({"name": name, "configured": configured, "needs": needs}));
        }
        Ok((
            format!("Channels:\n{}", lines.join("\n")),
            json!({"channels": items}),
        ))
    }

    pub(super) fn list_profiles(&self) -> Answer {
        let all = msg::profiles::load(&self.dirs)
            .map_err(|e| format!("Error reading profiles: {}", e.render()))?;
        let data = json!({"file": all.path.as_ref().map(|p| p.display().to_string()), "profiles": all.profiles});
        let Some(path) = &all.path else {
            return Ok(("No profiles.yaml.".into(), data));
        };
        let mut lines = vec![format!("{}:", path.display())];
        for p in &all.profiles {
            let ts: Vec<String> = p
                .targets
                .iter()
                .map(|t| format!("{}:{}", t.channel, t.target))
                .collect();
            lines.push(format!("  {:<16} {}", p.name, ts.join(", ")));
        }
        Ok((lines.join("\n"), data))
    }

    pub(super) async fn test_channel(&self, a: &Map<String, Value>) -> Answer {
        let name = arg_str(a, "channel");
        let fail = |e: String| format!("Error testing channel '{name}': {e}");
        let ch = Channel::configure(name, &self.creds()).map_err(fail)?;
        let client = msg::client().map_err(fail)?;
        match ch.check(&client).await {
            None => Ok((
                format!("{name}: configured (nothing to check without sending)"),
                json!({"channel": name, "ok": true, "checked": false}),
            )),
            Some(Ok(who)) => Ok((
                format!("{name}: ok ({who})"),
                json!({"channel": name, "ok": true, "checked": true, "account": who}),
            )),
            Some(Err(e)) => Err(fail(format!(
                "the service refused the credentials or could not be reached: {}",
                e.message
            ))),
        }
    }

    pub(super) async fn send_message(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let target = Target {
            channel: arg_str(a, "channel").to_owned(),
            target: arg_str(a, "target").to_owned(),
        };
        self.send(&[target], arg_str(a, "message"), actor, actor)
            .await
            .map_err(|e| format!("Error sending message: {e}"))
    }

    pub(super) async fn send_notification(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let name = arg_str(a, "profile");
        let fail = |e: String| format!("Error sending notification to profile '{name}': {e}");
        let all = msg::profiles::load(&self.dirs).map_err(|e| fail(e.render()))?;
        let profile = all.get(name).map_err(fail)?;
        if profile.targets.is_empty() {
            return Err(fail("the profile has no targets".into()));
        }
        let targets = profile.targets.clone();
        self.send(
            &targets,
            arg_str(a, "message"),
            &format!("{actor}:profile:{name}"),
            actor,
        )
        .await
        .map_err(fail)
    }

    /// Queues `text` for `targets`, delivers it (for a while), and says what became of it.
    async fn send(&self, targets: &[Target], text: &str, source: &str, actor: &str) -> Answer {
        if text.trim().is_empty() {
            return Err("the message is empty".into());
        }
        let creds = self.creds();
        self.dirs
            .ensure_home()
            .map_err(|e| format!("cannot create {}: {e}", self.dirs.home.display()))?;
        let store: Arc<dyn Store> = Arc::new(
            crate::store::SqliteStore::open(&self.dirs.db_path()).map_err(|e| e.to_string())?,
        );
        let ids = msg::outbox::enqueue(store.as_ref(), &creds, targets, text, source)?;
        let client = msg::client()?;
        msg::outbox::drain(
            store.clone(),
            &client,
            &creds,
            actor,
            &crate::audit::AuditLog::in_dir(&self.dirs.home),
            Some(&ids),
            Instant::now() + DELIVERY_WAIT,
        )
        .await?;
        let msgs = store.messages(&ids).map_err(|e| e.to_string())?;
        let mut lines = Vec::new();
        let mut results = Vec::new();
        let mut failed = false;
        for t in targets {
            let pieces: Vec<_> = msgs
                .iter()
                .filter(|m| m.channel == t.channel && m.target == t.target)
                .collect();
            let sent = !pieces.is_empty() && pieces.iter().all(|m| m.status == "sent");
            let dead = pieces.iter().any(|m| m.status == "dead");
            let error = pieces.iter().rev().find_map(|m| m.last_error.clone());
            let status = if sent {
                "sent"
            } else if dead {
                "failed"
            } else {
                "queued"
            };
            failed |= dead;
            lines.push(match (&error, status) {
                (Some(e), "failed") => format!("{}:{} — failed: {e}", t.channel, t.target),
                (_, s) => format!("{}:{} — {s}", t.channel, t.target),
            });
            results.push(json!({"channel": t.channel, "target": t.target, "status": status, "error": error, "ids": pieces.iter().map(|m| m.id).collect::<Vec<_>>()}));
        }
        let text = lines.join("\n");
        if failed {
            return Err(text);
        }
        Ok((text, json!({"results": results})))
    }
}
