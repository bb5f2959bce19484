//! The notify step (`type: notify`): a message to a profile of `profiles.yaml` or to one
//! `channel:target`, through the durable outbox.
//!
//! ```yaml
//! - name: tell-ops
//!   type: notify
//!   profile: critical                 # or  to: telegram:123456
//!   message: "Deployed ${{ params.env }} (run ${{ run.id }})"
//! ```
//!
//! `channel:` + `target:` is the same as `to: channel:target`. The message is committed to the
//! outbox before anything is sent ([`super::Services::send_message`]); the step then tries to
//! deliver it for a short while and leaves the rest to `claw serve`. A channel that fails never
//! fails the step (the seed's rule: messaging never fails the run); a profile that does not exist,
//! or a message that cannot be rendered, does. Its outputs: `message_ids`, `sent`, `pending`,
//! `failed`.

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport, WaitEnd};
use crate::yaml::Node;

/// A message to send.
#[derive(Debug, Clone)]
pub struct NotifyStep {
    /// `channel:target` or a profile name; may hold expressions.
    pub to: String,
    /// The text; may hold expressions.
    pub message: String,
}

/// How the step's messages stand when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// The outbox ids (one per target, more when a long text was cut).
    pub ids: Vec<i64>,
    pub sent: usize,
    pub pending: usize,
    pub failed: usize,
}

impl Kind for NotifyStep {
    const NAMES: &'static [&'static str] = &["notify"];
    const KEYS: &'static [&'static str] = &["profile", "to", "channel", "target", "message"];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let step = cx.step.to_owned();
        let field = |cx: &mut LoadCx<'_>, k: &str| {
            node.get(k)
                .and_then(|n| cx.template_string(n, k).map(|s| (n.pos, s)))
        };
        let profile = field(cx, "profile");
        let to = field(cx, "to");
        let channel = field(cx, "channel");
        let target = field(cx, "target");
        let message = field(cx, "message").or_else(|| field(cx, "command"));
        let mut ways = Vec::new();
        if let Some((_, p)) = &profile {
            ways.push(p.clone());
        }
        if let Some((_, t)) = &to {
            ways.push(t.clone());
        }
        match (&channel, &target) {
            (Some((_, c)), Some((_, t))) => {
                if !crate::msg::CHANNELS.contains(&c.as_str()) && !c.contains("${{") {
                    let help =
                        crate::diagnostic::did_you_mean(c, crate::msg::CHANNELS.iter().copied());
                    if let Some(n) = node.get("channel") {
                        cx.err_help(n.pos, format!("unknown channel `{c}`"), help);
                    }
                }
                ways.push(format!("{c}:{t}"));
            }
            (Some((pos, _)), None) => cx.err(*pos, "`channel:` needs `target:` beside it"),
            (None, Some((pos, _))) => cx.err(*pos, "`target:` needs `channel:` beside it"),
            (None, None) => {}
        }
        if ways.len() > 1 {
            cx.err(
                node.pos,
                format!("step `{step}` (notify) names more than one recipient: give one of `profile:`, `to:` or `channel:` + `target:`"),
            );
            return None;
        }
        let Some(to) = ways.pop() else {
            cx.err(
                node.pos,
                format!("step `{step}` (notify) needs `profile: NAME`, `to: channel:target` or `channel:` + `target:`"),
            );
            return None;
        };
        let Some((_, message)) = message else {
            cx.err(
                node.pos,
                format!("step `{step}` (notify) needs `message:` (the text to send)"),
            );
            return None;
        };
        Some(Self { to, message })
    }

    /// Sending a notification twice is harmless enough (DESIGN.md §4).
    fn idempotent(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("notify {}", crate::msg::route::Recipient::parse(&self.to))
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.to, &self.message]
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let to = cx
            .plain(&self.to)
            .map_err(|e| format!("cannot render the recipient: {e}"))?;
        let message = cx
            .plain(&self.message)
            .map_err(|e| format!("cannot render the message: {e}"))?;
        Ok(Self {
            to,
            message: cx.redactor.redact(&message).into_owned(),
        })
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let Some(services) = rt.services.as_deref() else {
            return StepReport::failed_for_good("a notify step needs a workflow run to send from");
        };
        match services.send_message(input, self, &rt.cancel).await {
            Ok(sent) => report(&self.to, &sent),
            Err(WaitEnd::Cancelled) => StepReport::cancelled(),
            Err(WaitEnd::Failed(why)) => StepReport::failed_for_good(why),
        }
    }

    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("to", self.to.clone().into()),
            ("message", self.message.clone().into()),
        ]
    }
}

/// A success whatever the channels said, with the tally as outputs.
pub fn report(to: &str, sent: &Sent) -> StepReport {
    let mut r = StepReport::succeeded();
    r.outputs.insert(
        "message_ids".into(),
        serde_json::Value::Array(sent.ids.iter().map(|i| (*i).into()).collect()),
    );
    r.outputs.insert("sent".into(), sent.sent.into());
    r.outputs.insert("pending".into(), sent.pending.into());
    r.outputs.insert("failed".into(), sent.failed.into());
    r.note = Some(format!(
        "notified {}: {} sent, {} pending, {} failed",
        crate::msg::route::Recipient::parse(to),
        sent.sent,
        sent.pending,
        sent.failed
    ));
    r
}
