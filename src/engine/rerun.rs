//! Running a run again: all of it, or from one step (that step and everything downstream of it
//! run again; the steps before keep their results, copied into the new run).

use std::collections::HashSet;

use super::{Engine, EngineError, NewRun, Result};
use crate::store::{Phase, RunRecord, StepStatus};

impl Engine {
    /// Creates the new run of `old`'s workflow (as the file is now, or as stored if the file is
    /// gone) with `old`'s params; with `from`, the succeeded and skipped steps upstream of it are
    /// copied in as done. `claim`: this process executes it (else it waits in the queue).
    pub fn rerun(&self, old: &RunRecord, from: Option<&str>, claim: bool) -> Result<RunRecord> {
        let wf = match crate::workflow::load::load_file(std::path::Path::new(&old.workflow_path)) {
            Ok(wf) => wf,
            Err(_) => self.definition(old)?,
        };
        let mut keep = HashSet::new();
        if let Some(step) = from {
            let Some(start) = wf.step_index(step) else {
                let hint =
                    crate::diagnostic::did_you_mean(step, wf.steps.iter().map(|s| s.name.as_str()))
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default();
                return Err(EngineError::Invalid(format!(
                    "workflow `{}` has no step `{step}`{hint}",
                    wf.name
                )));
            };
            let mut again = vec![false; wf.steps.len()];
            again[start] = true;
            let mut changed = true;
            while changed {
                changed = false;
                for s in &wf.steps {
                    if !again[s.index] && s.needs.iter().any(|&d| again.get(d) == Some(&true)) {
                        again[s.index] = true;
                        changed = true;
                    }
                }
            }
            for s in &wf.steps {
                if !again[s.index] {
                    keep.insert(s.name.clone());
                }
            }
        }
        let run = self.create_run(&NewRun {
            workflow: &wf,
            params: old.params.clone(),
            trigger: serde_json::json!({"type": "rerun", "of": old.id, "from": from}),
            dry_run: old.dry_run,
            claim,
        })?;
        if !keep.is_empty() {
            let copied: Vec<_> = self
                .store
                .steps(&old.id)?
                .into_iter()
                .filter(|s| s.phase == Phase::Main && keep.contains(&s.name))
                .filter(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped))
                .map(|mut s| {
                    s.message = Some(format!("kept from run {}", old.id));
                    s
                })
                .collect();
            self.store.record_steps(&run.id, &copied, None)?;
        }
        Ok(run)
    }
}
