//! claw: durable YAML workflows for homelabs and small ops, in one binary.
//!
//! # Layout
//! - [`audit`]: the hash-chained, append-only audit log.
//! - [`cli`]: the command line, one file per command group; no logic of its own.
//! - [`config`]: everything read from files and the environment: the spanned YAML tree,
//!   diagnostics, workflow files, `claw.yaml`, where the data directory and config root are.
//! - [`vault`]: the age-encrypted secrets vault (`vault.enc`, `age-identity.txt`).
//! - [`workflow`]: the resolved workflow model the engine runs, durations, `${{ }}` expressions.
//! - [`engine`]: creating, claiming, executing and resuming runs (the DAG loop).
//! - [`redact`]: masking secret values (and their encodings) in everything claw writes.
//! - [`skills`]: `skills/<name>/skill.yaml`: manifests, discovery, the sandboxed runner,
//!   Landlock, SkillHub.
//! - [`steps`]: one file per step kind; steps report outcomes, the engine records them.
//! - [`store`]: the only place with SQL; a trait of domain verbs with SQLite behind it.
//! - [`trace`]: the tracing subscriber (`CLAW_LOG`); every line is masked before stderr.
//! - [`scheduler`]: schedule expressions (cron, `every`, `daily at`), catch-up planning, the
//!   seed's `cron/jobs.json` and running one job.
//! - [`fsutil`]: lock files and atomic file replacement.
//! - [`watch`]: file watchers (`watchers.yaml`): inotify, debouncing, the rules' actions.
//! - [`webhook`]: `POST /hooks/<name>`: signature checks and the router the daemon mounts.
//! - [`launch`]: starting runs from triggers (find the workflow, bind params, queue or drive).

pub mod audit;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod engine;
pub mod expr;
pub mod fsutil;

pub mod params;
pub mod proc;
pub mod redact;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod skills;
pub mod steps;
pub mod store;
pub mod time;
pub mod trace;
pub mod triggers;
pub mod vault;

pub mod workflow;
pub mod yaml;
