//! The scheduler core, pure: schedule expressions and their next fire ([`Schedule`]), and
//! per-schedule policies with the catch-up planner ([`plan()`]). The seed's `cron/jobs.json` and
//! running one job are the cron trigger's ([`crate::triggers::cron`]).
//!
//! Nothing here reads a clock, loops or starts a process: the daemon asks [`plan()`] what is due, persists each fire
//! as the row `(schedule, scheduled_for)` and sleeps until the next one. The next fire always comes
//! from the persisted last fire, never from the time the process started.

pub mod plan;
pub mod schedule;
pub mod seed;

pub use plan::{CatchUp, Fire, MissReason, Missed, Overlap, Plan, Policy, jitter_offset, plan};
pub use schedule::{Schedule, local_zone, parse_tz};

use crate::diagnostic::Pos;

/// One schedule of a workflow (`schedule:` and the policy keys beside it or in its list item).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// The expression as written.
    pub expr: String,
    /// The zone as written (`None`: the machine's local zone).
    pub tz: Option<String>,
    pub schedule: Schedule,
    pub policy: Policy,
    /// Where the expression stands in the file.
    pub pos: Pos,
}

impl ScheduleSpec {
    /// The stable id of a workflow's schedule (the key of its fires and the seed of its jitter):
    /// `workflow:<name>:<expr>` plus `@<tz>` when a zone is given. Editing the expression or the
    /// zone makes it a new schedule.
    pub fn id(&self, workflow: &str) -> String {
        match &self.tz {
            Some(tz) => format!("workflow:{workflow}:{}@{tz}", self.expr),
            None => format!("workflow:{workflow}:{}", self.expr),
        }
    }
}

/// The id of a `jobs.json` job's schedule: `job:<uuid>`.
pub fn job_schedule_id(job_id: &str) -> String {
    format!("job:{job_id}")
}
