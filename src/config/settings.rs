//! `claw.yaml`: global settings, each with a built-in default. An environment variable overrides
//! the file where one is named below. (The full resolution order of DESIGN.md §3, with the vault
//! and `.env`, extends this module.)

use std::path::Path;
use std::time::Duration;

use super::env::var as env_var;
use crate::diagnostic::FileErrors;
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::time::duration;
use crate::yaml::node::{self, Node, Value};

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retention_max_age: Duration::from_secs(30 * 86400),
            retention_max_runs: 200,
            max_step_log_bytes: 10 * 1024 * 1024,
            kill_grace: Duration::from_secs(5),
        }
    }
}

impl Settings {
    /// Reads `<root>/claw.yaml` if it exists; every problem is reported with its position.
    pub fn load(root: &Path) -> Result<Self, FileErrors> {
        let path = root.join("claw.yaml");
        let mut s = Self::default();
        if let Ok(text) = std::fs::read_to_string(&path) {
            s.apply_file(&path, text)?;
        }
        if let Some(g) = env_var("CLAW_KILL_GRACE")
            && let Ok(d) = duration::parse(&g)
        {
            s.kill_grace = d;
        }
        Ok(s)
    }

    fn apply_file(&mut self, path: &Path, text: String) -> Result<(), FileErrors> {
        let mut diags = Vec::new();
        match node::parse(&text) {
            Err(d) => diags.push(d),
            Ok(root) => self.apply(&root, &mut diags),
        }
        if diags.is_empty() {
            return Ok(());
        }
        Err(FileErrors {
            path: path.to_path_buf(),
            diagnostics: diags.into_iter().map(|d| d.in_file(path)).collect(),
            source: Some(text),
        })
    }

    fn apply(&mut self, root: &Node, diags: &mut Vec<Diagnostic>) {
        const SECTIONS: &[&str] = &["retention", "logs", "engine"];
        let Value::Map(entries) = &root.value else {
            if root.value != Value::Null {
                diags.push(Diagnostic::error(root.pos, "claw.yaml must be a mapping"));
            }
            return;
        };
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let fields: &[&str] = match key {
                "retention" => &["max_age", "max_runs"],
                "logs" => &["max_step_bytes"],
                "engine" => &["kill_grace"],
                // Sections of later subsystems are read by them.
                _ if !SECTIONS.contains(&key) && is_foreign_section(key) => continue,
                _ => {
                    diags.push(
                        Diagnostic::error(k.pos, format!("unknown key `{key}` in claw.yaml"))
                            .with_help_opt(did_you_mean(key, SECTIONS.iter().copied())),
                    );
                    continue;
                }
            };
            let Value::Map(inner) = &v.value else {
                diags.push(Diagnostic::error(
                    v.pos,
                    format!("`{key}` must be a mapping"),
                ));
                continue;
            };
            for (fk, fv) in inner {
                let field = fk.as_str().unwrap_or_default();
                if !fields.contains(&field) {
                    diags.push(
                        Diagnostic::error(fk.pos, format!("unknown key `{field}` in `{key}`"))
                            .with_help_opt(did_you_mean(field, fields.iter().copied())),
                    );
                    continue;
                }
                let dur = || match &fv.value {
                    Value::Int(i) if *i >= 0 => Ok(Duration::from_secs(i.unsigned_abs())),
                    Value::Str(s) => duration::parse(s),
                    _ => Err("expected a duration such as 30s, 5m or 30d".to_owned()),
                };
                let int = || match fv.value {
                    Value::Int(i) if i >= 0 => Ok(i.unsigned_abs()),
                    _ => Err("expected a whole number".to_owned()),
                };
                let result = match (key, field) {
                    ("retention", "max_age") => dur().map(|d| self.retention_max_age = d),
                    ("retention", "max_runs") => int().map(|n| {
                        self.retention_max_runs = u32::try_from(n).unwrap_or(u32::MAX);
                    }),
                    ("logs", "max_step_bytes") => {
                        int().map(|n| self.max_step_log_bytes = n.max(1024))
                    }
                    ("engine", "kill_grace") => dur().map(|d| self.kill_grace = d),
                    _ => Ok(()),
                };
                if let Err(why) = result {
                    diags.push(Diagnostic::error(
                        fv.pos,
                        format!("invalid `{key}.{field}`: {why}"),
                    ));
                }
            }
        }
    }
}

/// Sections that belong to subsystems configured elsewhere (vault, channels, dashboard, …).
fn is_foreign_section(key: &str) -> bool {
    matches!(
        key,
        "vault"
            | "audit"
            | "channels"
            | "dashboard"
            | "serve"
            | "cron"
            | "llm"
            | "ssh"
            | "browser"
            | "memory"
            | "settings"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sections_and_reports_unknown_keys() {
        let mut s = Settings::default();
        let root = node::parse(
            "retention:\n  max_age: 7d\n  max_runs: 5\nlogs:\n  max_step_bytes: 2048\n",
        )
        .unwrap_or_else(|d| panic!("{d:?}"));
        let mut diags = Vec::new();
        s.apply(&root, &mut diags);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(s.retention_max_runs, 5);
        assert_eq!(s.retention_max_age, Duration::from_secs(7 * 86400));
        let root = node::parse("retention:\n  max_agee: 7d\n").unwrap_or_else(|d| panic!("{d:?}"));
        s.apply(&root, &mut diags);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `max_age`?"));
    }
}
