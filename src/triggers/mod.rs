//! What starts runs besides `claw workflow run`: cron jobs and schedules ([`cron`]), file
//! watchers ([`watch`]) and webhooks ([`webhook`]), and the one way each of them starts a run
//! ([`launch`]). Each trigger works without the daemon (`claw cron run`, `claw watcher start`, the
//! webhook router in tests); `serve/` runs them all in one long-lived process.

pub mod cron;
pub mod launch;
pub mod watch;
pub mod webhook;
