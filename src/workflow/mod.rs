//! The resolved workflow model: what the engine runs.
//!
//! Nothing here is `Deserialize`. Files are parsed into a spanned YAML tree and checked by
//! [`crate::workflow::load`], which builds these types only when the whole file is valid,
//! so the engine never sees a workflow with an unknown dependency, a cycle or a bad duration.

pub mod catalogue;
pub mod http;
pub mod load;
pub mod trigger;

use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostic::Pos;
use crate::params::ParamSpec;
pub use http::HttpStep;

/// A workflow ready to run.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// The file it came from.
    pub path: PathBuf,
    /// The file's text, kept so that a run can be resumed with exactly the definition it started with.
    pub source: String,
    pub params: Vec<ParamSpec>,
    /// Environment for every step; values may hold expressions.
    pub env: Vec<(String, String)>,
    pub concurrency: Option<Concurrency>,
    /// Limit for the whole run.
    pub timeout: Option<Duration>,
    pub max_parallel: usize,
    /// Seed key: a profile that gets the summary after the run (sent once channels exist).
    pub notify_profile: Option<String>,
    /// Workflow outputs: name → template over the finished run's context.
    pub outputs: Vec<(String, String)>,
    pub steps: Vec<Step>,
    /// Seed key: run (all of them) when a step with `on_failure: rollback` fails.
    pub rollback: Vec<Step>,
    /// `schedule:` with its policy keys (empty: the workflow runs only when started).
    pub schedules: Vec<crate::scheduler::ScheduleSpec>,
    /// What else starts it: webhooks, chat commands.
    pub triggers: Vec<trigger::Trigger>,
}

impl Workflow {
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// Binds text values (`-p key=value`) to the workflow's typed params, defaults filled in.
    pub fn bind_params(
        &self,
        given: &[(String, String)],
    ) -> Result<serde_json::Value, Vec<String>> {
        crate::params::bind(&self.name, &self.params, given)
    }
}

/// A skill step: the skill's name (`skill:`, or the seed's `command:`); its arguments are the
/// step's `args` (they reach the script as `SKILL_<KEY>`).
#[derive(Debug, Clone)]
pub struct SkillStep {
    pub name: String,
    /// The step's own `timeout:`, which overrides the skill's; without one the manifest decides.
    pub timeout: Option<Duration>,
}

/// How many runs of one workflow may be active at once, and what happens to one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub limit: u32,
    pub on_busy: OnBusy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBusy {
    /// Wait for a slot.
    Queue,
    /// Do not start the new run (it is recorded as cancelled, with the reason).
    Skip,
    /// Cancel the active runs, then start.
    CancelRunning,
}

/// One step of a workflow.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// Position in `steps:` (or in `rollback:`).
    pub index: usize,
    pub kind: StepKind,
    /// Indices of the steps this one waits for.
    pub needs: Vec<usize>,
    pub condition: Option<Condition>,
    /// An expression; the step runs only when it is true.
    pub if_expr: Option<String>,
    pub on_failure: OnFailure,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    /// Seed `args`: exported as `WF_<KEY>`.
    pub args: Vec<(String, serde_json::Value)>,
    /// Whether running the step twice is harmless (decides what happens after a crash).
    pub idempotent: bool,
    /// A compensation step, run when the run fails after this step succeeded.
    pub compensation: Option<Box<Step>>,
    pub pos: Pos,
}

/// The default step timeout, as in the seed.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    Shell(ShellStep),
    /// A durable approval gate (`type: approval`, seed `approval_gate`).
    Approval(ApprovalStep),
    /// Runs another workflow as a child run (`type: workflow`).
    Workflow(SubWorkflowStep),
    Http(HttpStep),
    /// Runs a skill from `skills/` (`type: skill`).
    Skill(SkillStep),
    /// A kind claw recognises but cannot run yet: a run reaching it fails the step with a clear
    /// "not available yet" outcome.
    Unavailable {
        /// The canonical kind (`llm` for `claude_prompt`).
        kind: String,
        /// The `type:` as written in the file.
        written: String,
        /// What it would do: its `command`, or its main field (`prompt`, `url`, `skill`, ...).
        summary: String,
    },
}

impl StepKind {
    pub fn type_name(&self) -> &str {
        match self {
            Self::Shell(_) => "shell",
            Self::Approval(_) => "approval",
            Self::Workflow(_) => "workflow",
            Self::Http(_) => "http",
            Self::Skill(_) => "skill",
            Self::Unavailable { written, .. } => written,
        }
    }

    /// What a dry run says the step would do.
    pub fn describe(&self) -> String {
        match self {
            Self::Shell(s) => s.command.clone(),
            Self::Approval(a) => a.message.clone(),
            Self::Workflow(w) => format!("run workflow {}", w.workflow),
            Self::Http(h) => h.describe(),
            Self::Skill(s) => format!("run skill {}", s.name),
            Self::Unavailable { summary, .. } => summary.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShellStep {
    /// The command, run by `/bin/sh -c` (or by `shell`).
    pub command: String,
    /// An interpreter other than `/bin/sh` (`bash`, `zsh`, …), invoked as `<shell> -c`.
    pub shell: Option<String>,
    pub cwd: Option<String>,
    pub stdin: Option<String>,
    pub outputs: OutputMode,
}

/// An approval gate: the run waits, durably, until enough allowed people approve (or one rejects,
/// or the deadline passes).
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

/// A sub-workflow: another workflow run as a child of this run.
#[derive(Debug, Clone)]
pub struct SubWorkflowStep {
    /// The workflow, as `claw workflow run` takes it (a name or a path relative to this file).
    pub workflow: String,
    /// Params for the child; values may hold expressions.
    pub params: Vec<(String, serde_json::Value)>,
    /// Whether the step waits for the child (default) or succeeds once it is queued.
    pub wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// `key=value` lines written to `$CLAW_OUTPUT`.
    File,
    /// stdout is a JSON object.
    Json,
}

/// The seed's `condition:` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    PreviousOk,
    PreviousFailed,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Abort,
    Continue,
    Rollback,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Abort => "abort",
            Self::Continue => "continue",
            Self::Rollback => "rollback",
        }
    }
}

/// Retries after a failure: `limit` more attempts, waiting `delay * backoff^n` (at most `max_delay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub limit: u32,
    pub delay: Duration,
    pub backoff: f64,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const NONE: Self = Self {
        limit: 0,
        delay: Duration::from_secs(1),
        backoff: 2.0,
        max_delay: Duration::from_secs(300),
    };

    /// The wait before attempt `attempt` (2 = the first retry).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let n = attempt.saturating_sub(2);
        let factor = self.backoff.powi(i32::try_from(n).unwrap_or(i32::MAX));
        let secs = self.delay.as_secs_f64() * factor;
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Names that step `type:` accepts, with the seed's aliases.
pub const STEP_TYPES: &[&str] = &[
    "shell",
    "llm",
    "claude_prompt",
    "skill",
    "http",
    "ssh",
    "browser",
    "approval",
    "approval_gate",
    "notify",
    "workflow",
    "auto_agent",
];

/// The canonical kind for a `type:` name (seed aliases folded).
pub fn canonical_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "shell" => "shell",
        "llm" | "claude_prompt" => "llm",
        "skill" => "skill",
        "http" => "http",
        "ssh" => "ssh",
        "browser" => "browser",
        "approval" | "approval_gate" => "approval",
        "notify" => "notify",
        "workflow" => "workflow",
        "auto_agent" => "auto_agent",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            limit: 5,
            delay: Duration::from_secs(1),
            backoff: 2.0,
            max_delay: Duration::from_secs(5),
        };
        assert_eq!(p.delay_before(2), Duration::from_secs(1));
        assert_eq!(p.delay_before(3), Duration::from_secs(2));
        assert_eq!(p.delay_before(4), Duration::from_secs(4));
        assert_eq!(p.delay_before(5), Duration::from_secs(5));
    }
}
