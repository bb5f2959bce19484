//! Fleet figures for `claw bench ssh`: `uptime` on one host then on every host of a target at
//! once (each on a fresh pool, so both pay their handshakes), and this process's resident
//! memory before and with every connection open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Command, FanOut, Host, Pool, Settings};

/// What [`fleet`] measured.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub hosts: usize,
    /// `uptime` on the first host, connection included.
    pub one: Duration,
    /// `uptime` on every host at once, connections included.
    pub all: Duration,
    /// Hosts whose command failed in the fan-out.
    pub failed: usize,
    /// VmRSS of this process before connecting and with every connection open (KiB).
    pub rss_before_kib: u64,
    pub rss_with_connections_kib: u64,
    pub connections: usize,
}

/// This process's resident set (KiB), from /proc/self/status.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Measures `uptime` on `hosts[0]`, then on every host with `parallel = hosts.len()`.
pub async fn fleet(settings: &Settings, hosts: &[Host]) -> Fleet {
    let cmd = Command {
        command: "uptime".into(),
        env: Vec::new(),
        timeout: Duration::from_secs(30),
        sudo: false,
    };
    let cancel = CancellationToken::new();
    let one_pool = Pool::new(settings.clone());
    let started = Instant::now();
    if let Some(h) = hosts.first() {
        let _ = one_pool.run(h, &cmd, &cancel, &mut |_, _| {}).await;
    }
    let one = started.elapsed();
    one_pool.close_all().await;

    let pool = Pool::new(settings.clone());
    let rss_before_kib = rss_kib();
    let started = Instant::now();
    let results = super::fan_out(
        &pool,
        hosts,
        &cmd,
        FanOut {
            parallel: hosts.len().max(1),
            fail_fast: false,
        },
        &cancel,
        Arc::new(|_: &str, _: bool, _: &[u8]| {}),
    )
    .await;
    let all = started.elapsed();
    let connections = pool.open_connections().await;
    let rss_with_connections_kib = rss_kib();
    pool.close_all().await;
    Fleet {
        hosts: hosts.len(),
        one,
        all,
        failed: results.iter().filter(|(_, o)| !o.ok()).count(),
        rss_before_kib,
        rss_with_connections_kib,
        connections,
    }
}
