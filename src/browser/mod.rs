//! Headless Chromium for `browser` steps and `claw browse`, driven over the DevTools protocol
//! by chromiumoxide.
//!
//! - [`launch`]: finding Chromium (`CHROME_PATH`, else the usual names), starting it in its own
//!   process group through the `claw __chromium` launcher (which asks the kernel to kill it when
//!   claw dies), and reaping it and everything it started.
//! - [`manager`]: one browser per profile, started lazily, a tab per step out of a bounded
//!   number, closed after an idle period; a browser that died is noticed and replaced.
//! - [`actions`]: the actions of a step (`goto`, `click`, `fill`, ..., `eval`) and how each is
//!   performed on a tab.
//! - this file: the `browser:` section of `claw.yaml` (schemes, hosts, dialogs, tabs, idle time)
//!   and the profiles on disk (`<data>/browser/profiles/<name>`).
//!
//! *Invariants*: no Chromium outlives the claw process that started it (a clean exit closes it
//! gracefully, so cookies are written; a crash of claw kills it); a URL is checked against the
//! settings before the browser is asked to load it and again where the page ended up.

pub mod actions;
pub mod bench;
pub mod launch;
pub mod manager;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostic::FileErrors;
use crate::yaml::{self, Node, Reader, Value};

pub use manager::{Manager, Tab, close_all, shared};

/// The profile used when none is named (the seed's).
pub const DEFAULT_PROFILE: &str = "default";

/// The viewport when none is given (the seed's).
pub const DEFAULT_VIEWPORT: (u32, u32) = (1280, 720);

/// How a page's `alert()`, `confirm()` and `prompt()` are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialogs {
    Accept,
    Dismiss,
}

/// The `browser:` section of `claw.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Schemes allowed besides `http` and `https` (`file`, `data`, ...). `allow_schemes`.
    pub allow_schemes: Vec<String>,
    /// When not empty, the only hosts pages may load from (`example.com`, `*.example.com`).
    /// `allowed_hosts`.
    pub allowed_hosts: Vec<String>,
    /// How dialogs are answered. `dialogs: accept | dismiss` (default accept).
    pub dialogs: Dialogs,
    /// Tabs open at once per browser; a step waits for one. `max_tabs` (default 8).
    pub max_tabs: usize,
    /// A browser without tabs for this long is closed. `idle` (default 5m).
    pub idle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_schemes: Vec::new(),
            allowed_hosts: Vec::new(),
            dialogs: Dialogs::Accept,
            max_tabs: 8,
            idle: Duration::from_secs(300),
        }
    }
}

const FIELDS: &[&str] = &[
    "allow_schemes",
    "allowed_hosts",
    "dialogs",
    "max_tabs",
    "idle",
];

impl Settings {
    /// Reads the `browser:` section of `<root>/claw.yaml` (defaults when there is none).
    pub fn load(root: &Path) -> Result<Self, FileErrors> {
        let path = root.join("claw.yaml");
        let mut s = Self::default();
        if !path.exists() {
            return Ok(s);
        }
        let src = yaml::read_file(
            &path,
            crate::config::settings::MAX_FILE_BYTES,
            "claw.yaml file",
        )?;
        let mut r = Reader::new();
        if let Some(section) = src.root.get("browser") {
            s.apply(&mut r, section);
        }
        r.finish(&path, src.text)?;
        Ok(s)
    }

    fn apply(&mut self, r: &mut Reader, node: &Node) {
        if matches!(node.value, Value::Null) {
            return;
        }
        for (k, v) in r.entries(node, FIELDS, "`browser`") {
            let name = format!("browser.{k}");
            match k {
                "allow_schemes" => {
                    self.allow_schemes = r
                        .string_list(v, &name)
                        .into_iter()
                        .map(|(s, _)| s.trim_end_matches(':').to_ascii_lowercase())
                        .collect();
                }
                "allowed_hosts" => {
                    self.allowed_hosts = r
                        .string_list(v, &name)
                        .into_iter()
                        .map(|(s, _)| s.to_ascii_lowercase())
                        .collect();
                }
                "dialogs" => {
                    if let Some(c) = r.choice(v, &name, &["accept", "dismiss"]) {
                        self.dialogs = if c == "accept" {
                            Dialogs::Accept
                        } else {
                            Dialogs::Dismiss
                        };
                    }
                }
                "max_tabs" => {
                    if let Some(n) = r.positive_int(v, &name) {
                        self.max_tabs = n as usize;
                    }
                }
                "idle" => {
                    if let Some(d) = r.duration(v, &name) {
                        self.idle = d;
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether a page may be loaded from `url`; the error says why not and what to change.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL `{url}`: {e}"))?;
        let scheme = parsed.scheme();
        if url == "about:blank" {
            return Ok(());
        }
        if !matches!(scheme, "http" | "https") && !self.allow_schemes.iter().any(|s| s == scheme) {
            return Err(format!(
                "the scheme `{scheme}:` is refused (only http and https unless `browser.allow_schemes` in claw.yaml lists it): {url}"
            ));
        }
        if self.allowed_hosts.is_empty() || !matches!(scheme, "http" | "https") {
            return Ok(());
        }
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let allowed = self
            .allowed_hosts
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(base) => host == base || host.ends_with(&format!(".{base}")),
                None => host == *pattern,
            });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "the host `{host}` is not in `browser.allowed_hosts` of claw.yaml: {url}"
            ))
        }
    }
}

/// The folder of all profiles.
pub fn profiles_dir(home: &Path) -> PathBuf {
    home.join("browser").join("profiles")
}

/// Checks a profile name: letters, digits, `-`, `_` and `.`, not starting with a dot.
pub fn check_profile_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid profile name `{name}`: use letters, digits, `-`, `_` and `.` (at most 64, not starting with a dot)"
        ))
    }
}

/// One profile on disk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProfileInfo {
    pub name: String,
    pub path: PathBuf,
    /// Bytes under the folder.
    pub size: u64,
    /// Whether a Chromium is using it now.
    pub in_use: bool,
}

/// Every profile under `<data>/browser/profiles`, by name.
pub fn list_profiles(home: &Path) -> std::io::Result<Vec<ProfileInfo>> {
    let dir = profiles_dir(home);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        out.push(ProfileInfo {
            size: dir_size(&path),
            in_use: launch::running_chromium(&path).is_some(),
            name,
            path,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes a profile; refused while a Chromium uses it.
pub fn delete_profile(home: &Path, name: &str) -> Result<(), String> {
    check_profile_name(name)?;
    let path = profiles_dir(home).join(name);
    if !path.is_dir() {
        return Err(format!("no browser profile `{name}`"));
    }
    if let Some(pid) = launch::running_chromium(&path) {
        return Err(format!(
            "profile `{name}` is in use by Chromium (pid {pid}); stop what uses it first"
        ));
    }
    std::fs::remove_dir_all(&path).map_err(|e| format!("cannot delete {}: {e}", path.display()))
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Where a run's artifacts (screenshots, PDFs, downloads) are kept: beside its logs, so they
/// are deleted with the run.
pub fn artifacts_dir(run_log_dir: &Path) -> PathBuf {
    run_log_dir.join("artifacts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_against_schemes_and_hosts() {
        let mut s = Settings::default();
        assert!(s.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(s.check_url("about:blank").is_ok());
        let e = s.check_url("file:///etc/passwd").unwrap_err();
        assert!(e.contains("browser.allow_schemes"), "{e}");
        assert!(s.check_url("javascript:alert(1)").is_err());
        s.allow_schemes = vec!["file".into()];
        assert!(s.check_url("file:///etc/passwd").is_ok());
        s.allowed_hosts = vec!["example.com".into(), "*.internal".into()];
        assert!(s.check_url("https://example.com/").is_ok());
        assert!(s.check_url("https://a.b.internal/").is_ok());
        let e = s.check_url("https://evil.com/").unwrap_err();
        assert!(e.contains("allowed_hosts"), "{e}");
    }

    #[test]
    fn profile_names_are_plain() {
        assert!(check_profile_name("default").is_ok());
        assert!(check_profile_name("work-2.x").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(check_profile_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_section_is_read_with_positions() {
        let root = crate::yaml::node::parse(
            "browser:\n  allow_schemes: [file]\n  dialogs: dismis\n  max_tab: 3\n",
        )
        .unwrap();
        let mut r = Reader::new();
        let mut s = Settings::default();
        s.apply(&mut r, root.get("browser").unwrap());
        assert_eq!(s.allow_schemes, ["file"]);
        assert_eq!(r.diags.len(), 2, "{:?}", r.diags);
    }
}
