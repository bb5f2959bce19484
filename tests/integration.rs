//! End-to-end tests: the real `claw` binary in a temporary data directory.
#![allow(unreachable_pub)]
//! One test binary (`autotests = false`), one module per topic.

mod common;
mod crash;
mod docs;
mod seed_semantics;
mod dag;
mod retry_timeout;
mod injection;
mod diagnostics;
mod seed_examples;
mod bad_input;
mod cli;
