//! Credential rotation policies, in the seed's file `rotation_policies.yaml` (data directory):
//! `KEY: {max_age_days: 90, last_rotated: <ISO time>}`. A secret is *expired* when it is as old
//! as its maximum age (or its rotation date is unknown), *due soon* from 80% of it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::time;
use crate::yaml::node::{self, Value};

pub const POLICY_FILE: &str = "rotation_policies.yaml";

/// One key's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub key: String,
    pub max_age_days: u32,
    pub last_rotated: Option<DateTime<Utc>>,
}

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    DueSoon,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::DueSoon => "due soon",
            Self::Expired => "expired",
        }
    }
}

impl Policy {
    /// Age in whole days (`None` if the last rotation is unknown) and state at `now`.
    pub fn check(&self, now: DateTime<Utc>) -> (Option<i64>, State) {
        let Some(at) = self.last_rotated else {
            return (None, State::Expired);
        };
        let days = (now - at).num_days();
        let max = i64::from(self.max_age_days);
        let state = if days >= max {
            State::Expired
        } else if days * 10 >= max * 8 {
            State::DueSoon
        } else {
            State::Ok
        };
        (Some(days), state)
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(POLICY_FILE)
}

/// Reads the policies (a missing file is none). Errors name the file, line and column.
pub fn load(dir: &Path) -> Result<Vec<Policy>, String> {
    let file = path(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let root = node::parse(&text).map_err(|d| d.in_file(&file).headline())?;
    let Value::Map(entries) = &root.value else {
        return if root.value == Value::Null {
            Ok(Vec::new())
        } else {
            Err(format!(
                "{}: expected a mapping of key names to policies",
                file.display()
            ))
        };
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let key = k.scalar_text().unwrap_or_default();
        let at = |n: &node::Node| format!("{}:{}:{}", file.display(), n.pos.line, n.pos.col);
        let max_age_days = match v.get("max_age_days").map(|n| (&n.value, n)) {
            None => 90,
            Some((Value::Int(d), _)) if *d > 0 => u32::try_from(*d).unwrap_or(u32::MAX),
            Some((_, n)) => {
                return Err(format!(
                    "{}: `max_age_days` must be a whole number of days",
                    at(n)
                ));
            }
        };
        let last_rotated = match v.get("last_rotated") {
            None => None,
            Some(n) if n.value == Value::Null => None,
            Some(n) => {
                let text = n.scalar_text().unwrap_or_default();
                // The seed wrote Python's `isoformat()`: with or without an offset.
                Some(time::parse_iso(&text).ok_or_else(|| {
                    format!(
                        "{}: `last_rotated` is not an ISO 8601 time: `{text}`",
                        at(n)
                    )
                })?)
            }
        };
        out.push(Policy {
            key,
            max_age_days,
            last_rotated,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Writes the policies atomically (temp file, fsync, rename, fsync the directory).
pub fn save(dir: &Path, policies: &[Policy]) -> Result<(), String> {
    let mut text =
        String::from("# Credential rotation policies (claw vault rotation policy set KEY DAYS)\n");
    for p in policies {
        text.push_str(&format!(
            "{}:\n  max_age_days: {}\n",
            yaml_key(&p.key),
            p.max_age_days
        ));
        match p.last_rotated {
            Some(t) => text.push_str(&format!("  last_rotated: '{}'\n", time::rfc3339(&t))),
            None => text.push_str("  last_rotated: null\n"),
        }
    }
    let file = path(dir);
    crate::fsutil::write_atomic(&file, &format!(".{POLICY_FILE}."), text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

fn yaml_key(key: &str) -> String {
    // Key names are `[A-Za-z0-9_.:-]`; quote them so `:` and leading digits stay strings.
    format!("'{key}'")
}

/// Sets a key's maximum age (keeping its last rotation time).
pub fn set_policy(dir: &Path, key: &str, days: u32) -> Result<(), String> {
    let mut all = load(dir)?;
    match all.iter_mut().find(|p| p.key == key) {
        Some(p) => p.max_age_days = days,
        None => all.push(Policy {
            key: key.to_owned(),
            max_age_days: days,
            last_rotated: None,
        }),
    }
    all.sort_by(|a, b| a.key.cmp(&b.key));
    save(dir, &all)
}

/// Records that a key was just given a new value (if it has a policy).
pub fn mark_rotated(dir: &Path, key: &str, now: DateTime<Utc>) -> Result<(), String> {
    let mut all = load(dir)?;
    let Some(p) = all.iter_mut().find(|p| p.key == key) else {
        return Ok(());
    };
    p.last_rotated = Some(now);
    save(dir, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_seed_thresholds() {
        let now = Utc::now();
        let p = |days: i64| Policy {
            key: "K".into(),
            max_age_days: 90,
            last_rotated: Some(now - chrono::Duration::days(days)),
        };
        assert_eq!(p(10).check(now).1, State::Ok);
        assert_eq!(p(72).check(now).1, State::DueSoon);
        assert_eq!(p(90).check(now).1, State::Expired);
        assert_eq!(
            Policy {
                key: "K".into(),
                max_age_days: 90,
                last_rotated: None
            }
            .check(now),
            (None, State::Expired)
        );
    }

    #[test]
    fn round_trip_and_seed_times() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(POLICY_FILE),
            "API_KEY:\n  max_age_days: 30\n  last_rotated: '2026-01-01T10:00:00.123456'\nssh:web:password:\n  max_age_days: 60\n",
        )
        .unwrap();
        let all = load(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].max_age_days, 30);
        assert!(all[0].last_rotated.is_some());
        set_policy(dir.path(), "NEW", 7).unwrap();
        mark_rotated(dir.path(), "NEW", Utc::now()).unwrap();
        let again = load(dir.path()).unwrap();
        assert_eq!(again.len(), 3);
        assert!(
            again
                .iter()
                .any(|p| p.key == "NEW" && p.last_rotated.is_some())
        );
        assert!(again.iter().any(|p| p.key == "ssh:web:password"));
    }
}
