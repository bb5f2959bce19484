//! `claw ssh health`: per host, a TCP connect to the SSH port (no root needed for a ping) and an
//! `uptime` probe over SSH; written atomically to `<data>/ssh/health.json` in the seed's shape
//! `{timestamp, all_ok, hosts: [{alias, hostname, ping_ok, ssh_ok, uptime, load_avg, latency_ms,
//! error}]}`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Command, Host, Pool};

/// The ping's limit (the seed's 5 s).
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the report is written.
pub fn path(home: &Path) -> PathBuf {
    home.join("ssh").join("health.json")
}

async fn ping(host: &Host) -> (bool, Option<f64>, Option<String>) {
    let started = Instant::now();
    let addr = (host.hostname.as_str(), host.port);
    match tokio::time::timeout(PING_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => (true, Some(started.elapsed().as_secs_f64() * 1000.0), None),
        Ok(Err(e)) => (
            false,
            None,
            Some(format!("port {} unreachable: {e}", host.port)),
        ),
        Err(_) => (
            false,
            None,
            Some(format!("port {} did not answer within 5 s", host.port)),
        ),
    }
}

/// `load average: 0.00, 0.01, 0.05` from `uptime`'s line.
fn load_avg(uptime: &str) -> String {
    uptime
        .split_once("load average:")
        .map(|(_, l)| l.trim().to_owned())
        .unwrap_or_default()
}

/// Checks every host (all at once) and returns the report.
pub async fn check(pool: &Pool, hosts: &[Host]) -> serde_json::Value {
    let cancel = CancellationToken::new();
    let checks = hosts.iter().map(|h| {
        let cancel = cancel.clone();
        async move {
            let (ping_ok, latency, ping_err) = ping(h).await;
            let (mut ssh_ok, mut uptime, mut error) = (false, String::new(), ping_err);
            if ping_ok {
                let cmd = Command {
                    command: "uptime".into(),
                    env: Vec::new(),
                    timeout: Duration::from_secs(30),
                    sudo: false,
                };
                let out = pool.run(h, &cmd, &cancel, &mut |_, _| {}).await;
                super::audit(pool.settings(), h, &cmd.command, &out);
                ssh_ok = out.ok();
                uptime = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if !ssh_ok {
                    error = Some(
                        out.error
                            .unwrap_or_else(|| format!("uptime exited with {:?}", out.exit_code)),
                    );
                }
            }
            serde_json::json!({
                "alias": h.alias,
                "hostname": h.hostname,
                "ping_ok": ping_ok,
                "ssh_ok": ssh_ok,
                "load_avg": load_avg(&uptime),
                "uptime": uptime,
                "latency_ms": latency.map(|l| (l * 100.0).round() / 100.0),
                "error": error,
            })
        }
    });
    let results = futures_util::future::join_all(checks).await;
    let all_ok = results
        .iter()
        .all(|r| r["ping_ok"] == true && r["ssh_ok"] == true);
    serde_json::json!({
        "timestamp": crate::time::instant::iso_utc(chrono::Utc::now()),
        "all_ok": all_ok,
        "hosts": results,
    })
}

/// Writes the report atomically.
pub fn write(home: &Path, report: &serde_json::Value) -> Result<PathBuf, String> {
    let p = path(home);
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::fsutil::write_atomic(&p, ".health-", text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    Ok(p)
}
