//! Who executes a run, and whether that process is still alive.
//!
//! An owner is `host/boot-id/pid/start-time`. On the same boot of the same machine, liveness is
//! checked directly: the pid must exist with the same start time (so a reused pid is not mistaken
//! for the owner). Otherwise the owner's lease decides: a live owner renews it while it works.

use std::sync::OnceLock;

use crate::store::RunRecord;

/// How long an owner's claim lasts without renewal.
pub const LEASE_MS: i64 = 60_000;
/// How often a working owner renews its lease.
pub const HEARTBEAT_MS: i64 = 10_000;

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default())
}

fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| read_trimmed("/etc/hostname"))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The start time of a process, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This process's owner id.
pub fn current() -> String {
    let pid = std::process::id();
    format!(
        "{}/{}/{}/{}",
        hostname(),
        boot_id(),
        pid,
        start_time(pid).unwrap_or(0)
    )
}

/// Whether a run's owner is gone, so that another process may take the run over.
pub fn is_dead(run: &RunRecord, now_ms: i64) -> bool {
    let Some(owner) = run.owner.as_deref() else {
        return false;
    };
    let parts: Vec<&str> = owner.split('/').collect();
    if let [_, boot, pid, start] = parts.as_slice()
        && !boot.is_empty()
        && *boot == boot_id()
    {
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            return true;
        };
        return start_time(pid) != Some(start);
    }
    run.lease_until.is_none_or(|until| until < now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_owned_by(owner: &str, lease: Option<i64>) -> RunRecord {
        RunRecord {
            status: crate::store::RunStatus::Running,
            owner: Some(owner.into()),
            lease_until: lease,
            ..RunRecord::queued("r", "w", 0)
        }
    }

    #[test]
    fn this_process_is_alive_and_a_stale_pid_is_not() {
        assert!(!is_dead(&run_owned_by(&current(), None), 0));
        let fake = format!("h/{}/{}/1", boot_id(), std::process::id());
        assert!(is_dead(&run_owned_by(&fake, None), 0));
    }

    #[test]
    fn other_machines_are_judged_by_lease() {
        assert!(!is_dead(&run_owned_by("h/other-boot/1/1", Some(100)), 50));
        assert!(is_dead(&run_owned_by("h/other-boot/1/1", Some(100)), 150));
    }
}
