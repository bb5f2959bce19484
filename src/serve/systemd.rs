//! Running the daemon as a systemd service (`claw daemon install`): as the seed did, a **user**
//! unit `claw.service` in `$XDG_CONFIG_HOME/systemd/user/` (default `~/.config/...`); or, where
//! there is no user session (no user bus: a server reached over `su`, a container), a **system**
//! unit in `/etc/systemd/system/` that runs as the installing user. Either starts `claw serve`
//! with this data directory and config root and restarts it on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const UNIT: &str = "claw.service";

/// Which systemd instance manages the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `systemctl --user`: the user's own manager (needs a user session and its bus).
    User,
    /// `systemctl`: the system manager; the unit says `User=`.
    System,
}

/// The directory of units: `CLAW_SYSTEMD_DIR` when set (packaging, tests), else the user's
/// `systemd/user/` or `/etc/systemd/system/`.
pub fn unit_dir(scope: Scope) -> Option<PathBuf> {
    if let Some(dir) = crate::config::env::var_os("CLAW_SYSTEMD_DIR") {
        return Some(PathBuf::from(dir));
    }
    if scope == Scope::System {
        return Some(PathBuf::from("/etc/systemd/system"));
    }
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

/// Why `systemctl` failed, said for a person: a missing user bus is explained, with what to do.
pub fn explain(scope: Scope, error: &str) -> String {
    let no_bus = error.contains("Failed to connect to bus")
        || error.contains("DBUS_SESSION_BUS_ADDRESS")
        || error.contains("XDG_RUNTIME_DIR")
        || error.contains("No medium found");
    if scope == Scope::User && no_bus {
        return format!(
            "there is no systemd user session here ({error}): `systemctl --user` needs one \
             (a login of this user, not `su`/`sudo`, or lingering: `loginctl enable-linger \
             $USER`). Or install a system unit that runs as you: `sudo claw daemon install \
             --system --user-name $USER`"
        );
    }
    if error.contains("cannot run systemctl")
        || error.contains("System has not been booted with systemd")
    {
        return format!(
            "systemd is not available here ({error}): run `claw serve` under your own supervisor"
        );
    }
    error.to_owned()
}

/// The unit file's text; `user`: the account a system unit runs as.
pub fn unit_text(
    exe: &Path,
    home: &Path,
    root: &Path,
    bind: Option<&str>,
    grace: Duration,
    user: Option<&str>,
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
         {user}ExecStart={exe} --home {home} --root {root} serve{bind} --grace {grace}s\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec={stop}\n\
         \n\
         [Install]\n\
         WantedBy={wanted}\n",
        exe = q(exe),
        user = user
            .map(|u| format!("User={}\n", systemd_quote(u)))
            .unwrap_or_default(),
        wanted = if user.is_some() {
            "multi-user.target"
        } else {
            "default.target"
        },
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

/// Runs `systemctl [--user] ARGS`; `Err` says why it could not (no systemd, no user session).
pub fn systemctl(scope: Scope, args: &[&str]) -> Result<String, String> {
    #[allow(
        clippy::disallowed_methods,
        reason = "the unit is managed through systemctl"
    )]
    let mut cmd = Command::new("systemctl");
    if scope == Scope::User {
        cmd.arg("--user");
    }
    let out = cmd
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
