//! The resolved workflow model: what the engine runs.
//!
//! Nothing here is `Deserialize`. Files are parsed into a spanned YAML tree and checked by
//! [`load`], which builds these types only when the whole file is valid, so the engine never
//! sees a workflow with an unknown dependency, a cycle or a bad duration. What each step does is
//! its kind's business ([`crate::steps`]); a [`Step`] holds the fields every kind shares.

pub mod catalogue;
pub mod load;
pub mod trigger;

use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostic::Pos;
use crate::params::ParamSpec;
pub use crate::steps::StepKind;

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
    /// `runs_on:`: labels a `claw worker` must all have to run it (the PostgreSQL store keeps
    /// them beside each run, read from the stored definition).
    pub runs_on: Vec<String>,
    /// Limit for the whole run.
    pub timeout: Option<Duration>,
    pub max_parallel: usize,
    /// Seed key: a profile that gets the summary after the run.
    pub notify_profile: Option<String>,
    /// `notify:`: who is told what (a profile or `channel:target` per event).
    pub notify: Vec<(NotifyOn, String)>,
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

/// A moment of a run that `notify:` can announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    Failure,
    Success,
    /// The run waits for an approval.
    Waiting,
}

impl NotifyOn {
    pub const NAMES: &'static [&'static str] = &["failure", "success", "waiting"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "failure" => Some(Self::Failure),
            "success" => Some(Self::Success),
            "waiting" | "wait" => Some(Self::Waiting),
            _ => None,
        }
    }
}

impl Workflow {
    /// Who is told about `event` (`notify:`; the end of a run also `notify_profile`), each once.
    pub fn recipients(&self, event: NotifyOn) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if event != NotifyOn::Waiting
            && let Some(p) = &self.notify_profile
        {
            out.push(p.clone());
        }
        for (on, to) in &self.notify {
            if *on == event && !out.contains(to) {
                out.push(to.clone());
            }
        }
        out
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind that runs has its page in `docs/steps/`, whose example loads and uses it.
    #[test]
    fn every_step_kind_has_a_page_with_an_example() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/steps");
        let mut kinds = std::collections::BTreeSet::new();
        for name in crate::steps::type_names() {
            if let Some(canonical) = crate::steps::canonical_type(name) {
                kinds.insert(canonical);
            }
        }
        let mut documented = 0;
        for kind in kinds {
            let page = docs.join(format!("{kind}.md"));
            let Ok(text) = std::fs::read_to_string(&page) else {
                // A planned kind has no page until it runs.
                let probe = format!("steps:\n  - name: x\n    type: {kind}\n    command: y\n");
                let wf = load::load_str(std::path::Path::new("probe.yaml"), probe)
                    .unwrap_or_else(|e| panic!("{}", e.render()));
                assert!(
                    matches!(wf.steps[0].kind, StepKind::Unavailable(_)),
                    "step kind `{kind}` runs but has no page {}",
                    page.display()
                );
                continue;
            };
            // `yml` marks an example that needs other files (a sub-workflow's child).
            let example = text
                .split("```yaml\n")
                .nth(1)
                .or_else(|| text.split("```yml\n").nth(1))
                .and_then(|rest| rest.split("```").next())
                .unwrap_or_else(|| panic!("{} has no yaml example", page.display()));
            let wf = load::load_str(&page, example.to_owned())
                .unwrap_or_else(|e| panic!("{}: {}", page.display(), e.render()));
            assert!(
                wf.steps.iter().any(|s| s.kind.type_name() == kind),
                "the example of {} has no `{kind}` step",
                page.display()
            );
            documented += 1;
        }
        assert!(documented >= 5, "only {documented} kinds documented");
    }

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
