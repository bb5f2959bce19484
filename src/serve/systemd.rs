//! Running the daemon as a systemd **user** service, as the seed did (`claw daemon install`):
//! the unit `claw.service` in `$XDG_CONFIG_HOME/systemd/user/` (default `~/.config/...`), which
//! starts `claw serve` with this data directory and config root and restarts it on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const UNIT: &str = "claw.service";

/// The directory of user units.
pub fn unit_dir() -> Option<PathBuf> {
    if let Some(x) = crate::config::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("systemd").join("user"));
    }
    crate::config::env::var_os("HOME").map(|h| {
        PathBuf::from(h)
            .join(".config")
            .join("systemd")
            .join("user")
    })
}

/// The unit file's text.
pub fn unit_text(
    exe: &Path,
    home: &Path,
    root: &Path,
    bind: Option<&str>,
    grace: Duration,
) -> String {
    let q = |p: &Path| systemd_quote(&p.display().to_string());
    let bind = match bind {
        Some(b) => format!(" --bind {}", systemd_quote(b)),
        None => " --no-http".to_owned(),
    };
    format!(
        "# Written by `claw daemon install`; `claw daemon uninstall` removes it.\n\
         [Unit]\n\
         Description=claw automation daemon (scheduler, file watchers, webhooks, runs)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exe} --home {home} --root {root} serve{bind} --grace {grace}s\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec={stop}\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe = q(exe),
        home = q(home),
        root = q(root),
        grace = grace.as_secs(),
        // systemd sends SIGKILL after this: leave room for the grace period and the kill grace.
        stop = grace.as_secs() + 30,
    )
}

/// Quotes a word for an `ExecStart=` line when it needs it.
fn systemd_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@+=,".contains(c))
    {
        return s.to_owned();
    }
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    format!("\"{escaped}\"")
}

/// Runs `systemctl --user ARGS`; `Err` says why it could not (no systemd, no user session).
pub fn systemctl(args: &[&str]) -> Result<String, String> {
    #[allow(
        clippy::disallowed_methods,
        reason = "the user unit is managed through systemctl"
    )]
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(text)
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(if err.is_empty() { text } else { err })
    }
}
