//! The sub-workflow step (`type: workflow`): another workflow run as a child of this run.
//!
//! ```yaml
//! - name: deploy-db
//!   type: workflow
//!   workflow: migrate          # a name, or a path relative to this file
//!   params: {env: ${{ params.env }}}
//!   wait: true                 # default; false: succeed once the child is queued
//! ```
//!
//! The child is a run of its own (`claw run list` shows it, linked by `parent_run`), executed
//! by a process of its own so that it survives this one; the engine creates it, or finds it
//! again after a restart, through [`super::Services::await_child`]. The child must be named literally:
//! it is checked, and recursion refused, before the run starts (`workflow::catalogue`). Its
//! outputs are the child's `outputs:` plus `run_id` and `status`.

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport, WaitEnd};
use crate::store::RunStatus;
use crate::yaml::Node;

/// A sub-workflow: another workflow run as a child of this run.
#[derive(Debug, Clone)]
pub struct SubWorkflowStep {
    /// The workflow, as `claw workflow run` takes it (a name or a path relative to this file).
    pub workflow: String,
    /// Params for the child; values may hold expressions (rendered to text for an attempt).
    pub params: Vec<(String, serde_json::Value)>,
    /// Whether the step waits for the child (default) or succeeds once it is queued.
    pub wait: bool,
}

/// A child run as the step sees it at its end.
#[derive(Debug, Clone)]
pub struct ChildEnd {
    pub run_id: String,
    /// Its final status; `None` when the step did not wait for it.
    pub status: Option<RunStatus>,
    pub outputs: serde_json::Value,
    pub error: Option<String>,
}

impl Kind for SubWorkflowStep {
    const NAMES: &'static [&'static str] = &["workflow"];
    const KEYS: &'static [&'static str] = &["workflow", "params", "wait"];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        load_child(cx, node)
    }

    fn describe(&self) -> String {
        format!("run workflow {}", self.workflow)
    }

    fn templates(&self) -> Vec<&str> {
        self.params.iter().filter_map(|(_, v)| v.as_str()).collect()
    }

    fn waits(&self) -> bool {
        true
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let mut params = Vec::with_capacity(self.params.len());
        for (k, v) in &self.params {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let text = cx
                .plain(&text)
                .map_err(|e| format!("cannot render param `{k}`: {e}"))?;
            params.push((k.clone(), serde_json::Value::String(text)));
        }
        Ok(Self {
            params,
            ..self.clone()
        })
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let Some(services) = rt.services.as_deref() else {
            return StepReport::failed_for_good("a sub-workflow needs a workflow run to start in");
        };
        match services.await_child(input, self, &rt.cancel).await {
            Ok(end) => report(&end),
            Err(WaitEnd::Cancelled) => StepReport::cancelled(),
            Err(WaitEnd::Failed(why)) => StepReport::failed(why),
        }
    }
}

impl SubWorkflowStep {
    /// The params as text, for binding to the child's declared types.
    pub fn given(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

/// The step's outcome for a child's end: succeeded with the child, outputs `run_id`, `status`
/// and the child's own outputs.
pub fn report(end: &ChildEnd) -> StepReport {
    let Some(status) = end.status else {
        let mut report = StepReport::succeeded();
        report
            .outputs
            .insert("run_id".into(), end.run_id.clone().into());
        report.note = Some(format!("started child run {} (not waited for)", end.run_id));
        return report;
    };
    let mut report = match status {
        RunStatus::Succeeded => StepReport::succeeded(),
        status => StepReport::failed(format!(
            "child run {} {status}{}",
            end.run_id,
            end.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
    };
    if let serde_json::Value::Object(m) = &end.outputs {
        report.outputs = m.clone();
    }
    report
        .outputs
        .insert("run_id".into(), end.run_id.clone().into());
    report
        .outputs
        .insert("status".into(), status.as_str().into());
    if status == RunStatus::Succeeded {
        report.note = Some(format!("child run {} succeeded", end.run_id));
    }
    report
}

/// `type: workflow`: `workflow` (or the seed-style `command`) names the child.
fn load_child(cx: &mut LoadCx<'_>, node: &Node) -> Option<SubWorkflowStep> {
    let name = cx.step.to_owned();
    let target = match node.get("workflow").or_else(|| node.get("command")) {
        Some(w) => cx.string(w, "workflow")?,
        None => {
            cx.err(
                node.pos,
                format!("step `{name}` (workflow) needs `workflow: NAME` (the workflow to run)"),
            );
            return None;
        }
    };
    if target.contains("${{") {
        if let Some(w) = node.get("workflow").or_else(|| node.get("command")) {
            cx.err(
                w.pos,
                "the child workflow must be named literally (it is checked, and recursion detected, before the run)",
            );
        }
        return None;
    }
    let mut params = Vec::new();
    if let Some(p) = node.get("params") {
        for (k, v) in cx.entries(p, &[], "`params`") {
            cx.templates_in(v);
            params.push((k.to_owned(), v.to_json()));
        }
    }
    let wait = match node.get("wait") {
        Some(w) => cx.boolean(w, "wait").unwrap_or(true),
        None => true,
    };
    Some(SubWorkflowStep {
        workflow: target,
        params,
        wait,
    })
}
