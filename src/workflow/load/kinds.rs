//! Loading of the step kinds that have fields of their own beyond `command`: approval gates and
//! sub-workflows. Each returns the kind, reporting every bad field on the way.

use super::Cx;
use crate::diagnostic::did_you_mean;
use crate::params::{ParamSpec, ParamType};
use crate::workflow::{ApprovalStep, SubWorkflowStep, TimeoutDecision};
use crate::yaml::node::{Node, Value};

impl Cx<'_> {
    /// `type: approval` (or the seed's `approval_gate` with `args.prompt`).
    pub(super) fn approval_step(&mut self, node: &Node, name: &str) -> ApprovalStep {
        let message = match node.get("message") {
            Some(m) => {
                let text = self.string(m, "message").unwrap_or_default();
                self.template(m, &text);
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
                    _ => self.string(item, "approvers"),
                };
                let Some(text) = text else { continue };
                let text = text.trim().to_owned();
                if text.is_empty() || text.contains(char::is_whitespace) {
                    self.err(
                        item.pos,
                        format!("approver `{text}` must be one word such as `cli:alice`, `telegram:123456` or `dashboard:admin`"),
                    );
                    continue;
                }
                if let Some((front, who)) = text.split_once(':') {
                    const FRONTS: [&str; 3] = ["cli", "telegram", "dashboard"];
                    if !FRONTS.contains(&front) {
                        self.err_help(
                            item.pos,
                            format!("unknown approver kind `{front}:` (expected cli:, telegram: or dashboard:)"),
                            did_you_mean(front, FRONTS),
                        );
                        continue;
                    }
                    if who.is_empty() {
                        self.err(item.pos, format!("approver `{text}` names nobody"));
                        continue;
                    }
                }
                approvers.push(text);
            }
        }
        let quorum = match node.get("quorum") {
            Some(q) => self.positive_int(q, "quorum").unwrap_or(1),
            None => 1,
        };
        if !approvers.is_empty()
            && usize::try_from(quorum).is_ok_and(|q| q > approvers.len())
            && let Some(q) = node.get("quorum")
        {
            self.err(
                q.pos,
                format!(
                    "quorum {quorum} can never be reached: only {} approver(s) are allowed",
                    approvers.len()
                ),
            );
        }
        let timeout = node
            .get("timeout")
            .and_then(|t| self.duration(t, "timeout"));
        let on_timeout = match node.get("on_timeout") {
            None => TimeoutDecision::Reject,
            Some(v) => {
                let text = self.string(v, "on_timeout").unwrap_or_default();
                match text.as_str() {
                    "approve" => TimeoutDecision::Approve,
                    "reject" => TimeoutDecision::Reject,
                    other => {
                        self.err_help(
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
            self.err(
                v.pos,
                "`on_timeout` needs a `timeout` (how long to wait for a decision)",
            );
        }
        let input = match node.get("input") {
            None => Vec::new(),
            Some(list) => match &list.value {
                Value::Seq(items) => items
                    .iter()
                    .filter_map(|i| self.string(i, "input"))
                    .map(|name| ParamSpec {
                        name,
                        kind: ParamType::String,
                        default: None,
                        choices: Vec::new(),
                        required: true,
                        description: String::new(),
                    })
                    .collect(),
                Value::Map(_) => self.params(list),
                Value::Null => Vec::new(),
                _ => {
                    self.err(
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
                self.err(
                    node.get("input").map_or(node.pos, |n| n.pos),
                    format!(
                        "input field `{}` must be a simple name (letters, digits, `_`, `-`)",
                        field.name
                    ),
                );
            }
            if ["decision", "approved_by", "reason", "decided_at"].contains(&field.name.as_str()) {
                self.err(
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

    /// `type: workflow`: `workflow` (or the seed-style `command`) names the child.
    pub(super) fn workflow_step(&mut self, node: &Node, name: &str) -> Option<SubWorkflowStep> {
        let target = match node.get("workflow").or_else(|| node.get("command")) {
            Some(w) => self.string(w, "workflow")?,
            None => {
                self.err(
                    node.pos,
                    format!(
                        "step `{name}` (workflow) needs `workflow: NAME` (the workflow to run)"
                    ),
                );
                return None;
            }
        };
        if target.contains("${{") {
            if let Some(w) = node.get("workflow").or_else(|| node.get("command")) {
                self.err(
                    w.pos,
                    "the child workflow must be named literally (it is checked, and recursion detected, before the run)",
                );
            }
            return None;
        }
        let mut params = Vec::new();
        if let Some(p) = node.get("params") {
            for (k, v) in self.entries(p, &[], "`params`") {
                self.templates_in(v);
                params.push((k.to_owned(), v.to_json()));
            }
        }
        let wait = match node.get("wait") {
            Some(w) => self.boolean(w, "wait").unwrap_or(true),
            None => true,
        };
        Some(SubWorkflowStep {
            workflow: target,
            params,
            wait,
        })
    }
}
