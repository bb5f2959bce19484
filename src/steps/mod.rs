//! Step kinds: one file each. The engine renders a step's fields and hands the step a
//! [`StepInput`]; the step does its work and returns a [`StepReport`]. Steps never touch the
//! store: the engine records what they report. A failed step is an outcome, not an `Err`.

pub mod http;
pub mod shell;
pub mod skill;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::workflow::{OutputMode, StepKind};

/// What a step was told to do, with every expression already substituted.
#[derive(Debug, Clone)]
pub struct StepInput {
    /// The step's kind; an http step's fields are already rendered.
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
    /// What to say about a success (an approval's approvers, a child run's id).
    pub note: Option<String>,
    /// When the step ended, if not now (an approval decided by its deadline while claw was
    /// down is dated at the deadline).
    pub finished_at: Option<i64>,
    /// Whether another attempt could go differently (a failed step is retried, when its `retry`
    /// allows, only if this is true). An HTTP 400 is not worth retrying; a 503 is.
    pub retryable: bool,
    /// The wait the other side asked for before another attempt (`Retry-After`).
    pub retry_after: Option<Duration>,
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
            note: None,
            finished_at: None,
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that another attempt would repeat.
    pub fn failed_for_good(reason: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::failed(reason)
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
        // Run by the engine itself (they need the store), never through here.
        StepKind::Approval(_) | StepKind::Workflow(_) => {
            StepReport::failed("internal error: this step kind is run by the engine")
        }
        StepKind::Http(http) => http::run(http, input, cancel).await,
        StepKind::Skill(_) => skill::run(input, cancel).await,
        StepKind::Unavailable { written: kind, .. } => StepReport::failed(format!(
            "step type `{kind}` is not available yet in this version of claw"
        )),
    }
}
