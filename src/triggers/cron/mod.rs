//! Cron: the seed's `cron/jobs.json` ([`jobs`]), running one job now ([`runner`]) and which
//! schedules exist ([`sources`]: jobs and workflows' `schedule:`). The schedule math and the
//! catch-up planner are pure and live in [`crate::scheduler`]; the daemon's loop is in `serve/`.

pub mod jobs;
pub mod runner;
pub mod sources;
