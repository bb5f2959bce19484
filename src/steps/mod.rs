//! Step kinds: one file each. The engine renders a step's fields and hands the step a
//! [`StepInput`]; the step does its work and returns a [`StepReport`]. Steps never touch the
//! store: the engine records what they report. A failed step is an outcome, not an `Err`.

pub mod shell;
pub mod skill;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::workflow::{OutputMode, StepKind};

/// What a step was told to do, with every expression already substituted.
#[derive(Debug, Clone)]
pub struct StepInput {
    pub kind: StepKind,
    /// The rendered command (shell steps).
    pub command: String,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub stdin: Option<String>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub log_path: PathBuf,
    pub max_log_bytes: u64,
    /// The file named by `$CLAW_OUTPUT`.
    pub outputs_path: PathBuf,
    /// Masks secret values in everything the step's output turns into (log, stored output,
    /// outputs).
    pub redactor: crate::redact::Redactor,
    /// A skill step's prepared launch (program, stripped environment, confinement).
    pub skill: Option<Box<crate::skills::runner::Launch>>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Succeeded,
    Failed { reason: String },
    Cancelled,
}

/// What a step reports back to the engine.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub outcome: StepOutcome,
    pub exit_code: Option<i32>,
    /// stdout, kept up to [`shell::STDOUT_CAPTURE`] bytes (the end is kept if longer).
    pub stdout: String,
    pub stderr_tail: String,
    pub outputs: serde_json::Map<String, serde_json::Value>,
}

impl StepReport {
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            outcome: StepOutcome::Failed {
                reason: reason.into(),
            },
            exit_code: None,
            stdout: String::new(),
            stderr_tail: String::new(),
            outputs: serde_json::Map::new(),
        }
    }
}

/// Runs one attempt of a step.
pub async fn run(input: &StepInput, cancel: &CancellationToken) -> StepReport {
    match &input.kind {
        StepKind::Shell(shell) => {
            let program = shell.shell.as_deref().unwrap_or("/bin/sh");
            shell::run(program, input, shell.outputs == OutputMode::Json, cancel).await
        }
        StepKind::Skill(_) => skill::run(input, cancel).await,
        StepKind::Unavailable { written: kind, .. } => StepReport::failed(format!(
            "step type `{kind}` is not available yet in this version of claw"
        )),
    }
}
