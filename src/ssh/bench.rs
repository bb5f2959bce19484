//! Fleet figures for `claw bench ssh`: `uptime` on one host then on every host of a target at
//! once (each on a fresh pool, so both pay their handshakes), with the CPU time this process
//! spent on each and the CPU time the machine's sshd processes spent (when the servers run on
//! this machine, their handshakes compete with claw's for its cores), and this process's
//! resident memory before and with every connection open.

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
    /// This process's CPU time (all threads) during `one` and during `all`.
    pub one_cpu: Duration,
    pub all_cpu: Duration,
    /// CPU time of this machine's sshd processes during `one` and `all` (zero for remote hosts).
    pub one_sshd_cpu: Duration,
    pub all_sshd_cpu: Duration,
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

/// This process's CPU time, every thread.
pub fn process_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Clock ticks per second of /proc's times (Linux reports them in USER_HZ, 100).
const USER_HZ: u64 = 100;

/// Fields 14–17 of a /proc/PID/stat line (utime, stime, cutime, cstime), in ticks.
fn stat_times(stat: &str) -> Option<[u64; 4]> {
    // The command name (field 2) may hold spaces: fields are counted after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is index 0, so field N is index N - 3.
    let t = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some([t(14)?, t(15)?, t(16)?, t(17)?])
}

fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * 1000 / USER_HZ)
}

/// CPU time of the children this process has waited for (and theirs), from /proc/self/stat.
pub fn children_cpu() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_times(&s))
        .map_or(Duration::ZERO, |[_, _, cu, cs]| ticks(cu + cs))
}

/// CPU time of every sshd process on this machine (listeners, sessions, and what they have
/// reaped: the commands' shells), in ticks of /proc. Sessions that ended are counted in their
/// listener's children's time, so two readings bracket the work done in between.
pub fn sshd_cpu() -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let path = e.path();
        let is_sshd = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|c| c.trim_end().starts_with("sshd"));
        if !is_sshd {
            continue;
        }
        if let Some([u, s, cu, cs]) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_times(&s))
        {
            total += u + s + cu + cs;
        }
    }
    ticks(total)
}

/// Waits until the servers have reaped the sessions just closed (their time is counted then).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let (sshd0, cpu0) = (sshd_cpu(), process_cpu());
    let started = Instant::now();
    if let Some(h) = hosts.first() {
        let _ = one_pool.run(h, &cmd, &cancel, &mut |_, _| {}).await;
    }
    let one = started.elapsed();
    let one_cpu = process_cpu().saturating_sub(cpu0);
    one_pool.close_all().await;
    settle().await;
    let one_sshd_cpu = sshd_cpu().saturating_sub(sshd0);

    let pool = Pool::new(settings.clone());
    let rss_before_kib = rss_kib();
    let (sshd0, cpu0) = (sshd_cpu(), process_cpu());
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
    let all_cpu = process_cpu().saturating_sub(cpu0);
    let connections = pool.open_connections().await;
    let rss_with_connections_kib = rss_kib();
    pool.close_all().await;
    settle().await;
    let all_sshd_cpu = sshd_cpu().saturating_sub(sshd0);
    Fleet {
        hosts: hosts.len(),
        one,
        all,
        one_cpu,
        all_cpu,
        one_sshd_cpu,
        all_sshd_cpu,
        failed: results.iter().filter(|(_, o)| !o.ok()).count(),
        rss_before_kib,
        rss_with_connections_kib,
        connections,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let line = "42 (sshd: root [priv]) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 11 5 20 0 1 0";
        assert_eq!(super::stat_times(line), Some([7, 3, 11, 5]));
    }
}
