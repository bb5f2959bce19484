//! `claw.yaml`: global settings, each with a built-in default. An environment variable overrides
//! the file where one is named below. (The full resolution order of DESIGN.md §3, with the vault
//! and `.env`, extends this module.)

use std::path::Path;
use std::time::Duration;

use super::env::var as env_var;
use crate::diagnostic::FileErrors;
use crate::time::duration;
use crate::yaml::{self, Node, Reader, Value};

/// Settings that the engine uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Finished runs older than this are deleted (with their logs). `retention.max_age`.
    pub retention_max_age: Duration,
    /// At most this many finished runs are kept per workflow. `retention.max_runs`.
    pub retention_max_runs: u32,
    /// A step's log file is rotated when it reaches this size (one previous file is kept).
    /// `logs.max_step_bytes`.
    pub max_step_log_bytes: u64,
    /// How long a step gets between SIGTERM and SIGKILL. `engine.kill_grace`, env `CLAW_KILL_GRACE`.
    pub kill_grace: Duration,
    /// Where the store is: `None` for the embedded SQLite database in the data directory, or a
    /// `postgres://` URL (scale-out). `store:` in claw.yaml, env `CLAW_STORE_URL`.
    pub store: Option<StoreUrl>,
}

/// A store URL; it may carry a password, so its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(pub String);

impl StoreUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match self.0.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((auth, host)) => match auth.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                    None => self.0.clone(),
                },
                None => self.0.clone(),
            },
            None => "***".to_owned(),
        };
        write!(f, "StoreUrl({shown:?})")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retention_max_age: Duration::from_secs(30 * 86400),
            retention_max_runs: 200,
            max_step_log_bytes: 10 * 1024 * 1024,
            kill_grace: Duration::from_secs(5),
            store: None,
        }
    }
}

/// `claw.yaml` files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The sections this module reads, and the fields of each.
const SECTIONS: &[(&str, &[&str])] = &[
    ("retention", &["max_age", "max_runs"]),
    ("logs", &["max_step_bytes"]),
    ("engine", &["kill_grace"]),
];

/// Sections that belong to subsystems configured elsewhere (vault, channels, dashboard, …);
/// `settings` is read by [`super::resolve`].
const FOREIGN: &[&str] = &[
    "vault",
    "audit",
    "channels",
    "dashboard",
    "serve",
    "cron",
    "llm",
    "ssh",
    "browser",
    "memory",
    "settings",
    "store",
];

impl Settings {
    /// Reads `<root>/claw.yaml` if it exists; every problem is reported with its position.
    pub fn load(root: &Path) -> Result<Self, FileErrors> {
        let path = root.join("claw.yaml");
        let mut s = Self::default();
        if path.exists() {
            let src = yaml::read_file(&path, MAX_FILE_BYTES, "claw.yaml file")?;
            let mut r = Reader::new();
            s.apply(&mut r, &src.root);
            r.finish(&path, src.text)?;
        }
        if let Some(g) = env_var("CLAW_KILL_GRACE")
            && let Ok(d) = duration::parse(&g)
        {
            s.kill_grace = d;
        }
        if let Some(u) = env_var("CLAW_STORE_URL") {
            s.store = Some(StoreUrl(u));
        }
        Ok(s)
    }

    fn apply(&mut self, r: &mut Reader, root: &Node) {
        match root.value {
            Value::Null => return,
            Value::Map(_) => {}
            _ => {
                r.err(root.pos, "claw.yaml must be a mapping");
                return;
            }
        }
        let known: Vec<&str> = SECTIONS
            .iter()
            .map(|(s, _)| *s)
            .chain(FOREIGN.iter().copied())
            .collect();
        for (key, v) in r.entries(root, &known, "claw.yaml") {
            if key == "store" {
                // `store: postgres://user@host/db` (scale-out); absent: the embedded SQLite store.
                if let Some(u) = r.string(v, "store") {
                    if u.starts_with("postgres://") || u.starts_with("postgresql://") {
                        self.store = Some(StoreUrl(u));
                    } else {
                        r.err(
                            v.pos,
                            "`store` must be a PostgreSQL URL (postgres://user@host:5432/database); \
                             leave it out for the embedded SQLite store",
                        );
                    }
                }
                continue;
            }
            let Some((_, fields)) = SECTIONS.iter().find(|(s, _)| *s == key) else {
                // Sections of later subsystems are read by them.
                continue;
            };
            for (field, fv) in r.entries(v, fields, &format!("`{key}`")) {
                let name = format!("{key}.{field}");
                match (key, field) {
                    ("retention", "max_age") => {
                        if let Some(d) = r.duration_or_zero(fv, &name) {
                            self.retention_max_age = d;
                        }
                    }
                    ("retention", "max_runs") => {
                        if let Some(n) = r.whole_number(fv, &name, 0..=i64::MAX) {
                            self.retention_max_runs = u32::try_from(n).unwrap_or(u32::MAX);
                        }
                    }
                    ("logs", "max_step_bytes") => {
                        if let Some(n) = r.whole_number(fv, &name, 0..=i64::MAX) {
                            self.max_step_log_bytes = n.unsigned_abs().max(1024);
                        }
                    }
                    ("engine", "kill_grace") => {
                        if let Some(d) = r.duration_or_zero(fv, &name) {
                            self.kill_grace = d;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::node;

    #[test]
    fn reads_sections_and_reports_unknown_keys() {
        let mut s = Settings::default();
        let root = node::parse(
            "retention:\n  max_age: 7d\n  max_runs: 5\nlogs:\n  max_step_bytes: 2048\nvault: {x: 1}\n",
        )
        .unwrap_or_else(|d| panic!("{d:?}"));
        let mut r = Reader::new();
        s.apply(&mut r, &root);
        assert!(r.diags.is_empty(), "{:?}", r.diags);
        assert_eq!(s.retention_max_runs, 5);
        assert_eq!(s.retention_max_age, Duration::from_secs(7 * 86400));
        let root = node::parse("retention:\n  max_agee: 7d\nengine:\n  kill_grace: 0\nlog: {}\n")
            .unwrap_or_else(|d| panic!("{d:?}"));
        s.apply(&mut r, &root);
        assert_eq!(r.diags.len(), 2, "{:?}", r.diags);
        let helps: Vec<Option<&str>> = r.diags.iter().map(|d| d.help.as_deref()).collect();
        assert!(
            helps.contains(&Some("did you mean `max_age`?")),
            "{helps:?}"
        );
        assert!(helps.contains(&Some("did you mean `logs`?")), "{helps:?}");
        assert_eq!(s.kill_grace, Duration::ZERO, "a zero grace is allowed");
        let root = node::parse("logs:\n  max_step_bytes: -1\n").unwrap_or_else(|d| panic!("{d:?}"));
        let mut r = Reader::new();
        s.apply(&mut r, &root);
        assert_eq!(
            r.diags[0].message,
            "`logs.max_step_bytes` must be a whole number of at least 0"
        );
    }
}
