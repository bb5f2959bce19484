//! claw: durable YAML workflows for homelabs and small ops, in one binary.
//!
//! # Layout
//!
//! Modules sit in layers; each uses only lower ones (`scripts/deps.py --check` enforces it).
//!
//! Foundations, which know nothing of workflows or runs:
//! - [`fsutil`]: lock files and atomic file replacement.
//! - [`redact`]: masking secret values (and their encodings) in everything claw writes.
//! - [`time`]: durations and timestamps as claw writes and reads them.
//! - [`diagnostic`]: positions and problems in files, rendered with the source line.
//! - [`error`]: the exit status each error type stands for.
//! - [`secret`]: a value that never prints.
//! - [`yaml`]: the one YAML reader (a spanned tree and typed access that collects problems).
//! - [`expr`]: `${{ }}` expressions and the shell quoting of their values.
//! - [`params`]: typed inputs (a workflow's params, an approval's input, a skill's args).
//!
//! State and settings:
//! - [`config`]: where the data directory and config root are, `claw.yaml`, settings, the
//!   process environment (the only reader of it).
//! - [`store`]: the only place with SQL; a trait of domain verbs with SQLite (embedded) or
//!   PostgreSQL (scale-out) behind it.
//! - [`audit`]: the hash-chained, append-only audit log.
//! - [`trace`]: the tracing subscriber (`CLAW_LOG`); every line is masked before it is written.
//! - [`vault`]: the age-encrypted secrets vault.
//! - [`scheduler`]: schedule expressions and the catch-up planner (pure: no clock, no processes).
//! - [`memory`]: `memory.db`, the seed's memory store, with full-text search.
//!
//! Doing work:
//! - [`proc`]: the one process supervisor (process groups, TERM then KILL, capped masked logs).
//! - [`llm`]: LLM providers (Anthropic, OpenAI-compatible, Ollama, the claude CLI), fallback,
//!   structured output.
//! - [`skills`]: `skills/<name>/skill.yaml`: manifests, discovery, launches, Landlock, SkillHub.
//! - [`steps`]: one module per step kind, each its keys, model, loading, preparation and run.
//! - [`workflow`]: the workflow model, its loader and the catalogue that finds workflows.
//! - [`engine`]: creating, claiming, executing and resuming runs (the DAG loop).
//!
//! Starting work and front ends:
//! - [`triggers`]: cron jobs, file watchers, webhooks, and the launcher they share.
//! - [`serve`]: the daemon (`claw serve`).
//! - [`worker`]: `claw worker`, executing queued runs from the shared PostgreSQL store.
//! - [`mcp`]: `claw mcp`, claw's tools over the Model Context Protocol.
//! - [`web`]: the dashboard and its JSON API, on the daemon's listener.
//! - [`cli`]: the command line, one file per command group; no logic of its own.

pub mod audit;
pub mod browser;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod engine;
pub mod error;
pub mod expr;
pub mod fsutil;
pub mod intake;
pub mod llm;
pub mod mcp;
pub mod memory;
pub mod msg;
pub mod packs;

pub mod names;
pub mod params;
pub mod policy;
pub mod proc;
pub mod redact;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod skills;
pub mod ssh;
pub mod steps;
pub mod store;
pub mod time;
pub mod trace;
pub mod triggers;
pub mod vault;
pub mod web;

pub mod worker;
pub mod workflow;
pub mod yaml;
