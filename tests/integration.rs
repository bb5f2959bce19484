//! End-to-end tests: the real `claw` binary in a temporary data directory.

mod common;
