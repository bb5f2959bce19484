//! The SSH fleet: `hosts.yaml` ([`hosts`]), host keys ([`known_hosts`]), pooled, verified
//! connections and commands on them ([`client`]), and running one command on many hosts with
//! bounded parallelism ([`fan_out`]), each audited. A host's failure (unreachable, key, auth,
//! exit status) is that host's result; the others go on.

pub mod bench;
pub mod client;
pub mod health;
pub mod hosts;
pub mod journal;
pub mod known_hosts;
pub mod transfer;

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

pub use client::{Command, Output, Pool, Settings, SshError};
pub use hosts::{Auth, Host, Registry};

use crate::audit::{Action, Event};

/// Every shared pool of this process, by data directory.
static POOLS: std::sync::Mutex<Vec<(std::path::PathBuf, Arc<Pool>)>> =
    std::sync::Mutex::new(Vec::new());

/// The process's pool for a data directory: the `ssh` steps and jobs of every run in this
/// process (the daemon's included) share its connections.
pub fn shared_pool(home: &std::path::Path) -> Arc<Pool> {
    let Ok(mut pools) = POOLS.lock() else {
        return Arc::new(Pool::new(Settings::from_env(home, "engine")));
    };
    if let Some((_, p)) = pools.iter().find(|(h, _)| h == home) {
        return p.clone();
    }
    let pool = Arc::new(Pool::new(Settings::from_env(home, "engine")));
    pools.push((home.to_path_buf(), pool.clone()));
    pool
}

fn shared() -> Vec<Arc<Pool>> {
    POOLS
        .lock()
        .map(|p| p.iter().map(|(_, p)| p.clone()).collect())
        .unwrap_or_default()
}

/// Closes the shared pools' connections idle for [`client::IDLE`] (the daemon, every minute).
pub async fn sweep_idle() -> usize {
    let mut n = 0;
    for p in shared() {
        n += p.close_idle(client::IDLE).await;
    }
    n
}

/// Closes every connection of the shared pools (the daemon, when it stops).
pub async fn close_shared() {
    for p in shared() {
        p.close_all().await;
    }
}

/// Sees each host's output as it arrives: `(alias, is_stderr, bytes)`.
pub type OnData = Arc<dyn Fn(&str, bool, &[u8]) + Send + Sync>;

/// How a command fans out over hosts.
#[derive(Debug, Clone, Copy)]
pub struct FanOut {
    /// Hosts at once (at least 1).
    pub parallel: usize,
    /// After the first failed host, start no more (those not started report "not run").
    pub fail_fast: bool,
}

/// The audit entry of one remote command (`ssh.run`): host, command masked, exit, duration.
pub fn audit(settings: &Settings, host: &Host, command: &str, out: &Output) {
    let masked = crate::redact::global().redact(command).into_owned();
    let outcome = if out.ok() {
        "ok"
    } else if out.cancelled {
        "cancelled"
    } else {
        "failed"
    };
    let _ = crate::audit::AuditLog::in_dir(&settings.home).record(&Event::new(
        &settings.actor,
        Action::SshRun,
        &host.alias,
        outcome,
        serde_json::json!({
            "hostname": host.hostname,
            "port": host.port,
            "user": host.username,
            "command": masked,
            "exit_code": out.exit_code,
            "duration_ms": out.duration.as_millis() as u64,
            "error": out.error.as_deref().map(|e| crate::redact::global().redact(e).into_owned()),
        }),
    ));
}

/// Runs `cmd` on every host (in order of `hosts` in the result), at most `how.parallel` at once;
/// `on_data(host, is_stderr, bytes)` sees output as it arrives. Every command is audited.
pub async fn fan_out(
    pool: &Pool,
    hosts: &[Host],
    cmd: &Command,
    how: FanOut,
    cancel: &CancellationToken,
    on_data: OnData,
) -> Vec<(Host, Output)> {
    fan_out_journaled(pool, hosts, cmd, how, cancel, on_data, None).await
}

/// As [`fan_out`]; each host's end is also recorded in `journal` (synced) as it happens.
pub async fn fan_out_journaled(
    pool: &Pool,
    hosts: &[Host],
    cmd: &Command,
    how: FanOut,
    cancel: &CancellationToken,
    on_data: OnData,
    journal: Option<Arc<journal::Journal>>,
) -> Vec<(Host, Output)> {
    let stop = cancel.child_token();
    let failed_fast = CancellationToken::new();
    let results = stream::iter(hosts.iter().cloned().enumerate())
        .map(|(i, host)| {
            let stop = stop.clone();
            let failed_fast = failed_fast.clone();
            let on_data = on_data.clone();
            let journal = journal.clone();
            async move {
                if failed_fast.is_cancelled() {
                    let out = Output {
                        error: Some("not run: an earlier host failed (fail_fast)".into()),
                        ..Output::default()
                    };
                    return (i, host, out);
                }
                let alias = host.alias.clone();
                let mut sink = |err: bool, b: &[u8]| on_data(&alias, err, b);
                let out = pool.run(&host, cmd, &stop, &mut sink).await;
                // The audit append syncs to disk: on the runtime's thread it would stall every
                // other host's handshake and reads while it waits (20 hosts: 20 fsyncs in a row).
                let (settings, h, command) =
                    (pool.settings().clone(), host.clone(), cmd.command.clone());
                let o = Output {
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    error: out.error.clone(),
                    ..out
                };
                let _ = tokio::task::spawn_blocking(move || {
                    audit(&settings, &h, &command, &o);
                    if let Some(j) = journal {
                        j.record(&h.alias, &o);
                    }
                })
                .await;
                if !out.ok() && how.fail_fast {
                    failed_fast.cancel();
                }
                (i, host, out)
            }
        })
        .buffer_unordered(how.parallel.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut results = results;
    results.sort_by_key(|(i, _, _)| *i);
    results.into_iter().map(|(_, h, o)| (h, o)).collect()
}

/// `min_success`: how many hosts must succeed, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinSuccess {
    All,
    Count(u32),
    Percent(u32),
}

impl MinSuccess {
    /// Parses `3` or `50%`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => Ok(Self::Percent(n)),
                _ => Err(format!(
                    "`min_success` `{text}` must be a percentage from 1% to 100%"
                )),
            };
        }
        match t.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Self::Count(n)),
            _ => Err(format!(
                "`min_success` `{text}` must be a whole number of hosts (at least 1) or a percentage like 50%"
            )),
        }
    }

    /// The number of hosts needed out of `total` (a percentage rounds up).
    pub fn needed(self, total: usize) -> usize {
        match self {
            Self::All => total,
            Self::Count(n) => n as usize,
            Self::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_success() {
        assert_eq!(MinSuccess::parse("50%").map(|m| m.needed(3)), Ok(2));
        assert_eq!(MinSuccess::parse("2").map(|m| m.needed(10)), Ok(2));
        assert_eq!(MinSuccess::All.needed(4), 4);
        assert!(MinSuccess::parse("0").is_err());
        assert!(MinSuccess::parse("120%").is_err());
        assert!(MinSuccess::parse("half").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(client::quote("it's"), r"'it'\''s'");
    }
}
