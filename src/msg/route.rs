//! Where a message is going, as workflows, cron jobs and gates name it: a profile of
//! `profiles.yaml`, or one `channel:target` (`telegram:123456`, `webhook:https://…`). The text
//! is queued in the outbox ([`super::outbox::enqueue`]); `claw serve` (or whoever queued it,
//! for a while) delivers it.

use std::time::Instant;

use super::{Creds, Target};
use crate::config::Dirs;
use crate::store::Store;

/// A recipient as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A profile of `profiles.yaml`.
    Profile(String),
    /// One target on one channel.
    Direct(Target),
}

impl Recipient {
    /// `channel:target` when the part before the first `:` is a channel name, else a profile.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        if let Some((channel, target)) = text.split_once(':')
            && super::CHANNELS.contains(&channel)
            && !target.trim().is_empty()
        {
            return Self::Direct(Target {
                channel: channel.to_owned(),
                target: target.trim().to_owned(),
            });
        }
        Self::Profile(text.to_owned())
    }

    /// Where it says to deliver (a profile is read from `profiles.yaml` now).
    pub fn targets(&self, dirs: &Dirs) -> Result<Vec<Target>, String> {
        match self {
            Self::Direct(t) => Ok(vec![t.clone()]),
            Self::Profile(name) => {
                let profiles = super::profiles::load(dirs).map_err(|e| e.render())?;
                Ok(profiles.get(name)?.targets.clone())
            }
        }
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Profile(p) => write!(f, "profile {p}"),
            Self::Direct(t) => write!(f, "{}:{}", t.channel, t.target),
        }
    }
}

/// The channels' settings (flag > env > vault > `.env` > `claw.yaml`), every secret among them
/// registered with the process-wide redactor.
pub fn creds(dirs: &Dirs) -> Creds {
    let (layers, _) = crate::vault::settings(&dirs.root, &dirs.home, Default::default());
    let creds = Creds::from_layers(&layers);
    crate::redact::register_global(creds.secret_values());
    creds
}

/// Queues `text` for every target of `to`; the outbox ids.
pub fn queue(
    store: &dyn Store,
    dirs: &Dirs,
    to: &Recipient,
    text: &str,
    source: &str,
) -> Result<Vec<i64>, String> {
    let targets = to.targets(dirs)?;
    if targets.is_empty() {
        return Err(format!("{to} has no targets"));
    }
    super::outbox::enqueue(store, &creds(dirs), &targets, text, source)
}

/// [`queue`] with Telegram's Approve / Reject buttons under the text (a gate's announcement;
/// the source must be `run:<run>/<step>/gate`, which a button press is traced back to).
pub fn queue_with_buttons(
    store: &dyn Store,
    dirs: &Dirs,
    to: &Recipient,
    text: &str,
    source: &str,
) -> Result<Vec<i64>, String> {
    let targets = to.targets(dirs)?;
    if targets.is_empty() {
        return Err(format!("{to} has no targets"));
    }
    let extra = serde_json::json!({"buttons": "gate"});
    super::outbox::enqueue_with(store, &creds(dirs), &targets, text, source, Some(&extra))
}

/// The run and step of a gate announcement's source (`run:<run>/<step>/gate`).
pub fn gate_of(source: &str) -> Option<(&str, &str)> {
    let rest = source.strip_prefix("run:")?.strip_suffix("/gate")?;
    let (run, step) = rest.split_once('/')?;
    (!run.is_empty() && !step.is_empty()).then_some((run, step))
}

/// How the messages `ids` stand: (sent, pending, dead).
pub fn tally(store: &dyn Store, ids: &[i64]) -> Result<(usize, usize, usize), String> {
    let msgs = store.messages(ids).map_err(|e| format!("outbox: {e}"))?;
    let count = |s: &str| msgs.iter().filter(|m| m.status == s).count();
    Ok((count("sent"), count("pending"), count("dead")))
}

/// Tries to deliver the messages `ids` now (and whatever else is due), until they are out or
/// `until`; what is left stays queued for the daemon.
pub async fn deliver(
    store: std::sync::Arc<dyn Store>,
    dirs: &Dirs,
    owner: &str,
    ids: &[i64],
    until: Instant,
) -> Result<(), String> {
    let client = super::client()?;
    let audit = crate::audit::AuditLog::in_dir(&dirs.home);
    super::outbox::drain(
        store,
        &client,
        &creds(dirs),
        owner,
        &audit,
        Some(ids),
        until,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_source_names_its_run_and_step() {
        assert_eq!(gate_of("run:17-ab/ok/gate"), Some(("17-ab", "ok")));
        assert_eq!(gate_of("run:17-ab/a/b/gate"), Some(("17-ab", "a/b")));
        assert_eq!(gate_of("run:17-ab/end"), None);
        assert_eq!(gate_of("run:/x/gate"), None);
        assert_eq!(gate_of("chat:telegram:1"), None);
    }

    #[test]
    fn a_channel_prefix_is_a_direct_target_and_anything_else_a_profile() {
        assert_eq!(
            Recipient::parse("telegram:123456"),
            Recipient::Direct(Target {
                channel: "telegram".into(),
                target: "123456".into()
            })
        );
        assert_eq!(
            Recipient::parse("webhook:https://h.example/x"),
            Recipient::Direct(Target {
                channel: "webhook".into(),
                target: "https://h.example/x".into()
            })
        );
        assert_eq!(
            Recipient::parse("critical"),
            Recipient::Profile("critical".into())
        );
        assert_eq!(
            Recipient::parse("ops:team"),
            Recipient::Profile("ops:team".into())
        );
        assert_eq!(
            Recipient::parse("telegram:"),
            Recipient::Profile("telegram:".into())
        );
    }
}
