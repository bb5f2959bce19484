//! The approval gate (`type: approval`, the seed's `approval_gate` with `args.prompt`): the run
//! waits, durably, until enough allowed people approve, one rejects, or the deadline passes.
//!
//! ```yaml
//! - name: approve
//!   type: approval
//!   message: "Deploy ${{ steps.test.outputs.version }} to ${{ params.env }}?"
//!   approvers: [telegram:123456, dashboard:admin]
//!   quorum: 1
//!   timeout: 1h
//!   on_timeout: reject
//!   input: [ticket]           # fields the approver fills in; they become outputs
//! ```
//!
//! The gate's request lives in the store, so the process may exit while it waits; the engine
//! keeps it ([`super::Services::await_approval`]) and any process may decide it (`claw run approve`).
//! This module says what is asked and what the answer means for the step.

use std::time::Duration;

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport};
use crate::diagnostic::did_you_mean;
use crate::params::{ParamSpec, ParamType};
use crate::yaml::{Node, Value};

/// An approval gate.
#[derive(Debug, Clone)]
pub struct ApprovalStep {
    /// What the approvers are asked; may hold expressions (rendered when the gate opens).
    pub message: String,
    /// Who may decide (`cli:alice`, `telegram:123`, `dashboard:admin`, or a bare name that matches
    /// that name on any front end). Empty: anyone.
    pub approvers: Vec<String>,
    /// How many distinct approvers must approve.
    pub quorum: u32,
    /// How long to wait; `None` waits for as long as it takes.
    pub timeout: Option<Duration>,
    /// What the deadline decides.
    pub on_timeout: TimeoutDecision,
    /// Fields an approver fills in (`--input k=v`); they become the step's outputs.
    pub input: Vec<ParamSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutDecision {
    Approve,
    Reject,
}

impl TimeoutDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

/// What the gate asks the engine to wait for.
#[derive(Debug, Clone)]
pub struct GateRequest {
    /// The question, rendered and masked.
    pub message: String,
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub timeout: Option<Duration>,
    pub on_timeout: TimeoutDecision,
    /// The input fields, as stored with the request ([`input_spec`]).
    pub input: serde_json::Value,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Approved {
        by: Vec<String>,
        at: i64,
        /// The approvers' input, merged (later votes win), defaults filled in.
        input: serde_json::Map<String, serde_json::Value>,
    },
    Rejected {
        by: String,
        reason: Option<String>,
        at: i64,
    },
    /// The deadline passed with no decision; `approve` tells what `on_timeout` decided.
    TimedOut { approve: bool, at: i64 },
}

/// A resolution in words (`approved by cli:alice`).
pub fn describe(r: &Resolution) -> String {
    match r {
        Resolution::Approved { by, .. } => format!("approved by {}", by.join(", ")),
        Resolution::Rejected { by, reason, .. } => match reason {
            Some(why) => format!("rejected by {by}: {why}"),
            None => format!("rejected by {by}"),
        },
        Resolution::TimedOut { approve, at } => format!(
            "no decision before the deadline ({}): {}",
            crate::time::rfc3339_secs(crate::time::at(*at)),
            if *approve { "approved" } else { "rejected" }
        ),
    }
}

/// The input fields of an approval step as stored with its request.
pub fn input_spec(fields: &[ParamSpec]) -> serde_json::Value {
    fields
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "type": f.kind.as_str(),
                "required": f.required,
                "default": f.default,
                "enum": f.choices,
                "description": f.description,
            })
        })
        .collect()
}

impl Kind for ApprovalStep {
    const NAMES: &'static [&'static str] = &["approval", "approval_gate"];
    const KEYS: &'static [&'static str] =
        &["message", "approvers", "quorum", "on_timeout", "input"];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        Some(load_approval(cx, node))
    }

    fn describe(&self) -> String {
        self.message.clone()
    }

    fn dry_run(&self, _type_name: &str, _later: &str) -> String {
        "dry-run: gate auto-approved".to_owned()
    }

    fn templates(&self) -> Vec<&str> {
        vec![self.message.as_str()]
    }

    fn waits(&self) -> bool {
        true
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let message = cx
            .plain(&self.message)
            .map_err(|why| format!("cannot render the message: {why}"))?;
        Ok(Self {
            message: cx.redactor.redact(&message).into_owned(),
            ..self.clone()
        })
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let Some(services) = rt.services.as_deref() else {
            return StepReport::failed_for_good("an approval gate needs a workflow run to wait in");
        };
        let request = GateRequest {
            message: self.message.clone(),
            approvers: self.approvers.clone(),
            quorum: self.quorum,
            timeout: self.timeout,
            on_timeout: self.on_timeout,
            input: input_spec(&self.input),
        };
        match services.await_approval(input, request, &rt.cancel).await {
            Ok(resolution) => report(&resolution),
            Err(super::WaitEnd::Cancelled) => StepReport::cancelled(),
            Err(super::WaitEnd::Failed(why)) => StepReport::failed(why),
        }
    }
}

/// The step's outcome and outputs for a resolution (`decision`, `approved_by`/`rejected_by`,
/// `reason`, `decided_at`, `timed_out`, and the approvers' input fields).
pub fn report(r: &Resolution) -> StepReport {
    let mut report = StepReport::failed(describe(r));
    let at_text =
        |at: &i64| serde_json::Value::from(crate::time::rfc3339_secs(crate::time::at(*at)));
    match r {
        Resolution::Approved { by, at, input } => {
            report = StepReport::succeeded();
            report.note = Some(describe(r));
            report.outputs = input.clone();
            report.outputs.insert("decision".into(), "approved".into());
            report
                .outputs
                .insert("approved_by".into(), by.clone().into());
            report.outputs.insert("decided_at".into(), at_text(at));
        }
        Resolution::Rejected { by, reason, at } => {
            report.outputs.insert("decision".into(), "rejected".into());
            report
                .outputs
                .insert("rejected_by".into(), by.clone().into());
            report
                .outputs
                .insert("reason".into(), reason.clone().into());
            report.outputs.insert("decided_at".into(), at_text(at));
        }
        Resolution::TimedOut { approve, at } => {
            if *approve {
                report = StepReport::succeeded();
                report.note = Some(describe(r));
            }
            report.finished_at = Some(*at);
            report.outputs.insert(
                "decision".into(),
                if *approve { "approved" } else { "rejected" }.into(),
            );
            report.outputs.insert("timed_out".into(), true.into());
            report.outputs.insert("decided_at".into(), at_text(at));
        }
    }
    report
}

/// `type: approval` (or the seed's `approval_gate` with `args.prompt`).
fn load_approval(cx: &mut LoadCx<'_>, node: &Node) -> ApprovalStep {
    let name = cx.step.to_owned();
    let message = match node.get("message") {
        Some(m) => {
            let text = cx.string(m, "message").unwrap_or_default();
            cx.template(m, &text);
            text
        }
        None => node
            .get("args")
            .and_then(|a| a.get("prompt"))
            .and_then(Node::scalar_text)
            .unwrap_or_else(|| format!("Approve step '{name}'?")),
    };
    let mut approvers = Vec::new();
    if let Some(list) = node.get("approvers") {
        let items: Vec<&Node> = match &list.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            _ => vec![list],
        };
        for item in items {
            let text = match &item.value {
                // A bare Telegram id is a number in YAML.
                Value::Int(i) => Some(i.to_string()),
                _ => cx.string(item, "approvers"),
            };
            let Some(text) = text else { continue };
            let text = text.trim().to_owned();
            if text.is_empty() || text.contains(char::is_whitespace) {
                cx.err(
                    item.pos,
                    format!("approver `{text}` must be one word such as `cli:alice`, `telegram:123456` or `dashboard:admin`"),
                );
                continue;
            }
            if let Some((front, who)) = text.split_once(':') {
                const FRONTS: [&str; 3] = ["cli", "telegram", "dashboard"];
                if !FRONTS.contains(&front) {
                    cx.err_help(
                        item.pos,
                        format!("unknown approver kind `{front}:` (expected cli:, telegram: or dashboard:)"),
                        did_you_mean(front, FRONTS),
                    );
                    continue;
                }
                if who.is_empty() {
                    cx.err(item.pos, format!("approver `{text}` names nobody"));
                    continue;
                }
            }
            approvers.push(text);
        }
    }
    let quorum = match node.get("quorum") {
        Some(q) => cx.positive_int(q, "quorum").unwrap_or(1),
        None => 1,
    };
    if !approvers.is_empty()
        && usize::try_from(quorum).is_ok_and(|q| q > approvers.len())
        && let Some(q) = node.get("quorum")
    {
        cx.err(
            q.pos,
            format!(
                "quorum {quorum} can never be reached: only {} approver(s) are allowed",
                approvers.len()
            ),
        );
    }
    let timeout = cx.timeout;
    let on_timeout = match node.get("on_timeout") {
        None => TimeoutDecision::Reject,
        Some(v) => {
            let text = cx.string(v, "on_timeout").unwrap_or_default();
            match text.as_str() {
                "approve" => TimeoutDecision::Approve,
                "reject" => TimeoutDecision::Reject,
                other => {
                    cx.err_help(
                        v.pos,
                        format!("unknown on_timeout `{other}` (expected approve or reject)"),
                        did_you_mean(other, ["approve", "reject"]),
                    );
                    TimeoutDecision::Reject
                }
            }
        }
    };
    if let Some(v) = node.get("on_timeout")
        && node.get("timeout").is_none()
    {
        cx.err(
            v.pos,
            "`on_timeout` needs a `timeout` (how long to wait for a decision)",
        );
    }
    let input = match node.get("input") {
        None => Vec::new(),
        Some(list) => match &list.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| cx.string(i, "input"))
                .map(|name| ParamSpec {
                    name,
                    kind: ParamType::String,
                    default: None,
                    choices: Vec::new(),
                    required: true,
                    description: String::new(),
                })
                .collect(),
            Value::Map(_) => crate::params::load(cx.r, list, "input", "input field"),
            Value::Null => Vec::new(),
            _ => {
                cx.err(
                    list.pos,
                    format!(
                        "`input` must be a list of field names or a mapping of fields (like `params`), found {}",
                        list.kind()
                    ),
                );
                Vec::new()
            }
        },
    };
    for field in &input {
        if !field
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || field.name.is_empty()
        {
            cx.err(
                node.get("input").map_or(node.pos, |n| n.pos),
                format!(
                    "input field `{}` must be a simple name (letters, digits, `_`, `-`)",
                    field.name
                ),
            );
        }
        if ["decision", "approved_by", "reason", "decided_at"].contains(&field.name.as_str()) {
            cx.err(
                node.get("input").map_or(node.pos, |n| n.pos),
                format!(
                    "input field `{}` is reserved (the step's outputs already have it)",
                    field.name
                ),
            );
        }
    }
    ApprovalStep {
        message,
        approvers,
        quorum,
        timeout,
        on_timeout,
        input,
    }
}
