//! End-to-end tests: the real `claw` binary in a temporary data directory.
//! One test binary (`autotests = false`), one module per topic.

mod common;
