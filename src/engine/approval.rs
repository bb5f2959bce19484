//! Approval gates: who may decide, how votes add up, and recording a decision.
//!
//! A waiting approval step has a request in the store ([`ApprovalRequest`]); each decision is a
//! [`Vote`] row, written by whichever process the approver used (CLI today; Telegram and the
//! dashboard later). The process that owns the run polls the request and applies the outcome, so
//! a decision never needs the run's owner to be alive: the next owner applies it.

use crate::store::{Approval, ApprovalRequest, RunRecord, StepStatus, Vote};

use super::{Engine, EngineError, Result, now_ms};

/// The identity a decision is made as: `--as NAME` (a bare name means `cli:NAME`), or the local
/// OS user as `cli:<user>`.
pub fn identity(who: Option<&str>) -> String {
    match who.map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) if w.contains(':') => w.to_owned(),
        Some(w) => format!("cli:{w}"),
        None => crate::config::env::cli_actor(),
    }
}

/// Whether `identity` (`front:name`) may decide: an empty list allows anyone; an entry with a
/// front end (`telegram:123`) must match exactly; a bare entry (`alice`) matches that name on
/// any front end.
pub fn allowed(approvers: &[String], identity: &str) -> bool {
    if approvers.is_empty() {
        return true;
    }
    let bare = identity.split_once(':').map_or(identity, |(_, n)| n);
    approvers
        .iter()
        .any(|a| a == identity || (!a.contains(':') && a == bare))
}

pub use crate::steps::approval::{Resolution, describe, input_spec};

/// Decides a request from its votes, or from its deadline (`now` past it).
pub fn resolve(approval: &Approval, now: i64) -> Option<Resolution> {
    let req = &approval.request;
    if let Some(v) = approval.votes.iter().find(|v| v.decision == "reject") {
        if v.approver == TIMEOUT_ACTOR {
            return Some(Resolution::TimedOut {
                approve: false,
                at: v.decided_at,
            });
        }
        return Some(Resolution::Rejected {
            by: v.approver.clone(),
            reason: v.reason.clone(),
            at: v.decided_at,
        });
    }
    if let Some(v) = approval.votes.iter().find(|v| v.approver == TIMEOUT_ACTOR) {
        return Some(Resolution::TimedOut {
            approve: true,
            at: v.decided_at,
        });
    }
    let approvals: Vec<&Vote> = approval
        .votes
        .iter()
        .filter(|v| v.decision == "approve")
        .collect();
    if approvals.len() >= req.quorum.max(1) as usize {
        let mut input = defaults(&req.input);
        for v in &approvals {
            if let serde_json::Value::Object(m) = &v.input {
                input.extend(m.clone());
            }
        }
        return Some(Resolution::Approved {
            by: approvals.iter().map(|v| v.approver.clone()).collect(),
            at: approvals.iter().map(|v| v.decided_at).max().unwrap_or(now),
            input,
        });
    }
    match req.deadline {
        Some(d) if now >= d => Some(Resolution::TimedOut {
            approve: req.on_timeout == "approve",
            at: d,
        }),
        _ => None,
    }
}

/// The approver recorded when a deadline decides.
pub const TIMEOUT_ACTOR: &str = "claw:timeout";

fn defaults(spec: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for field in spec.as_array().into_iter().flatten() {
        if let (Some(name), Some(default)) = (
            field.get("name").and_then(serde_json::Value::as_str),
            field.get("default").filter(|d| !d.is_null()),
        ) {
            out.insert(name.to_owned(), default.clone());
        }
    }
    out
}

/// Checks `--input k=v` values against the request's fields, converting their types.
fn bind_input(
    req: &ApprovalRequest,
    given: &[(String, String)],
) -> std::result::Result<serde_json::Map<String, serde_json::Value>, String> {
    let fields: Vec<&serde_json::Value> = req.input.as_array().into_iter().flatten().collect();
    let name_of = |f: &serde_json::Value| {
        f.get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut out = serde_json::Map::new();
    let mut problems = Vec::new();
    for (k, v) in given {
        let Some(field) = fields.iter().find(|f| name_of(f) == *k) else {
            let names: Vec<String> = fields.iter().map(|f| name_of(f)).collect();
            problems.push(if names.is_empty() {
                format!("input `{k}`: this approval takes no input")
            } else {
                format!(
                    "unknown input `{k}` (expected one of: {}){}",
                    names.join(", "),
                    crate::diagnostic::did_you_mean(k, names.iter().map(String::as_str))
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default()
                )
            });
            continue;
        };
        let kind = match field.get("type").and_then(serde_json::Value::as_str) {
            Some("integer") => crate::params::ParamType::Integer,
            Some("number") => crate::params::ParamType::Number,
            Some("boolean") => crate::params::ParamType::Boolean,
            _ => crate::params::ParamType::String,
        };
        match kind.parse(v) {
            Ok(value) => {
                let choices = field
                    .get("enum")
                    .and_then(serde_json::Value::as_array)
                    .filter(|c| !c.is_empty());
                if let Some(choices) = choices
                    && !choices.contains(&value)
                {
                    let list: Vec<String> = choices.iter().map(ToString::to_string).collect();
                    problems.push(format!(
                        "input `{k}`: `{v}` is not one of {}",
                        list.join(", ")
                    ));
                } else {
                    out.insert(k.clone(), value);
                }
            }
            Err(e) => problems.push(format!("input `{k}`: {e}")),
        }
    }
    for field in &fields {
        let name = name_of(field);
        let required = field
            .get("required")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let has_default = field.get("default").is_some_and(|d| !d.is_null());
        if required && !has_default && !out.contains_key(&name) {
            problems.push(format!(
                "input `{name}` is required: add `--input {name}=VALUE`"
            ));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("\n"))
    }
}

/// What `claw run approve|reject` did.
#[derive(Debug, Clone, PartialEq)]
pub enum VoteResult {
    /// Recorded; `decided` is the outcome if this vote settled the request.
    Recorded {
        decided: Option<Resolution>,
        approvals: usize,
        quorum: u32,
    },
}

/// The step a sub-gate belongs to (`ask#tool-1.0` → `ask`).
pub fn sub_gate_owner(key: &str) -> Option<&str> {
    key.rsplit_once('#')
        .map(|(owner, _)| owner)
        .filter(|o| !o.is_empty())
}

/// The undecided sub-gate of a waiting step, if it has one.
pub fn open_sub_gate(
    store: &dyn crate::store::Store,
    run_id: &str,
    step: &str,
) -> crate::store::Result<Option<String>> {
    let prefix = format!("{step}#");
    Ok(store
        .pending_approvals()?
        .into_iter()
        .filter(|a| a.request.run_id == run_id && a.request.step.starts_with(&prefix))
        .map(|a| a.request.step)
        .next_back())
}

impl Engine {
    /// Records `who`'s decision on the approval step `step` of `run`. Refusals (not an allowed
    /// approver, already voted, bad input) are audited and returned as [`EngineError::Denied`]
    /// or [`EngineError::Invalid`].
    pub fn vote(
        &self,
        run: &RunRecord,
        step: &str,
        who: &str,
        approve: bool,
        reason: Option<&str>,
        input: &[(String, String)],
    ) -> Result<VoteResult> {
        let step_nfc = crate::names::nfc(step);
        let steps = self.store.steps(&run.id)?;
        let is_waiting = |name: &str| {
            steps
                .iter()
                .find(|s| s.name == name)
                .is_some_and(|s| s.status == StepStatus::Waiting)
        };
        // A sub-gate (`STEP#KEY`, an llm step's tool call) waits while its step does; a waiting
        // step without a request of its own is decided through its open sub-gate.
        let key = match sub_gate_owner(&step_nfc) {
            Some(owner) if !steps.iter().any(|s| s.name == step_nfc) => {
                is_waiting(owner).then(|| step_nfc.clone())
            }
            _ if is_waiting(&step_nfc) && self.store.approval(&run.id, &step_nfc)?.is_none() => {
                open_sub_gate(self.store.as_ref(), &run.id, &step_nfc)?
            }
            _ => is_waiting(&step_nfc).then(|| step_nfc.clone()),
        };
        let waiting = key.is_some();
        let key = key.unwrap_or(step_nfc);
        let step = key.as_str();
        let Some(approval) = self.store.approval(&run.id, step)?.filter(|_| waiting) else {
            return Err(EngineError::Invalid(format!(
                "step `{step}` of run {} is not waiting for approval",
                run.id
            )));
        };
        let req = &approval.request;
        let target = format!("{}/{step}", run.id);
        let refuse = |why: String| -> Result<VoteResult> {
            self.audit
                .record(&crate::audit::Event::new(
                    who,
                    crate::audit::Action::ApprovalRefused,
                    &target,
                    "denied",
                    serde_json::json!({"workflow": run.workflow, "why": why}),
                ))
                .map_err(|source| EngineError::Audit {
                    done: format!("refused: {why}"),
                    source,
                })?;
            Err(EngineError::Denied(why))
        };
        if !allowed(&req.approvers, who) {
            return refuse(format!(
                "{who} may not decide step `{step}` of run {} (allowed: {})",
                run.id,
                req.approvers.join(", ")
            ));
        }
        if let Some(prev) = approval.votes.iter().find(|v| v.approver == who) {
            return refuse(format!(
                "{who} has already decided step `{step}` of run {} ({}); quorum needs distinct approvers",
                run.id, prev.decision
            ));
        }
        if let Some(r) = resolve(&approval, now_ms()) {
            return Err(EngineError::Invalid(format!(
                "step `{step}` of run {} is already decided ({})",
                run.id,
                describe(&r)
            )));
        }
        let input = if approve {
            bind_input(req, input).map_err(EngineError::Invalid)?
        } else {
            serde_json::Map::new()
        };
        let vote = Vote {
            approver: who.to_owned(),
            decision: if approve { "approve" } else { "reject" }.to_owned(),
            reason: reason.map(str::to_owned),
            input: serde_json::Value::Object(input),
            decided_at: now_ms(),
        };
        // Audited before it counts: a decision that cannot be audited is not taken.
        self.audit
            .record(&crate::audit::Event::new(
                who,
                crate::audit::Action::ApprovalDecided,
                &target,
                &vote.decision,
                serde_json::json!({
                    "workflow": run.workflow,
                    "reason": reason,
                    "input": vote.input.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
                }),
            ))
            .map_err(|source| EngineError::Unaudited {
                what: format!("the decision on step `{step}`"),
                source,
            })?;
        if !self.store.add_vote(&run.id, step, &vote)? {
            return refuse(format!("{who} has already decided step `{step}`"));
        }
        // A gate of this process waits on the bell (another process's gates see the commit).
        self.ring_changes();
        let after = self
            .store
            .approval(&run.id, step)?
            .ok_or_else(|| EngineError::Invalid("the approval request vanished".into()))?;
        let approvals = after
            .votes
            .iter()
            .filter(|v| v.decision == "approve")
            .count();
        Ok(VoteResult::Recorded {
            decided: resolve(&after, now_ms()),
            approvals,
            quorum: after.request.quorum,
        })
    }
}

#[cfg(test)]
mod sub_gate_tests {
    use super::sub_gate_owner;

    #[test]
    fn a_sub_gate_belongs_to_the_step_before_its_last_hash() {
        assert_eq!(sub_gate_owner("ask#tool-1.0"), Some("ask"));
        assert_eq!(sub_gate_owner("a#b#tool-2.1"), Some("a#b"));
        assert_eq!(sub_gate_owner("ask"), None);
        assert_eq!(sub_gate_owner("#tool-1.0"), None);
    }
}
