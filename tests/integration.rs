//! End-to-end tests: the real `claw` binary in a temporary data directory.
//! One test binary (`autotests = false`), one module per topic, named after the subsystem (and
//! its page in docs/) it exercises.
#![allow(unreachable_pub)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests start real programs and set up their environment"
)]

mod approval;
mod architecture;
mod audit;
mod bad_input;
mod browser;
mod cctv;
mod cli;
mod common;
mod crash;
mod cron;
mod dag;
mod dashboard;
mod diagnostics;
mod docs;
mod doctor;
mod hardening;
mod http;
mod injection;
mod intake;
mod llm;
mod mcp;
mod memory;
mod messaging;
mod notify;
mod packs;
mod passphrase;
mod policies;
mod retry_timeout;
mod scale_out;
mod scale_out_store;
mod secrets;
mod seed_examples;
mod seed_semantics;
mod serve;
mod setup;
mod skills;
mod ssh;
mod subworkflow;
mod telegram;
mod templates;
mod tracing;
mod vault;
mod watchers;
mod webhooks;
